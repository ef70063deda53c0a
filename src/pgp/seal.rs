//! Outgoing: one copy, signed by the list key and encrypted to one member.
//!
//! The signature and the encryption are one OpenPGP message (RFC 3156
//! §6.2, the combined method), which every PGP/MIME client and `gpg
//! --decrypt` handle. The encryption container follows the recipient's
//! advertised features: SEIPDv2 only for keys that announce it, SEIPDv1
//! (what GnuPG 2.2 reads) for the rest.

use std::io::Write;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Signer};
use openpgp::Cert;

use super::{encryption_key, usable_for_encryption, KeyProblem, ListKey, POLICY};

/// Why a copy could not be sealed.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum SealError {
    /// The recipient's certificate cannot be used: no copy for them.
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error("OpenPGP error while sealing: {0}")]
    Crypto(String),
}

/// A sealed message and the key it was encrypted to.
#[derive(Debug, Clone)]
pub struct SealedMessage {
    /// The ASCII-armored OpenPGP message.
    pub armored: Vec<u8>,
    /// Fingerprint (hex) of the one encryption subkey it was encrypted to:
    /// the recipient's newest.
    pub subkey: String,
}

/// Signs `plaintext` with the list key and encrypts it to `recipient`
/// alone — to the newest valid encryption-capable subkey of their
/// certificate, as GnuPG does — as of `time`.
pub fn seal(
    list_key: &ListKey,
    recipient: &Cert,
    plaintext: &[u8],
    time: SystemTime,
) -> Result<SealedMessage, SealError> {
    // Armor adds a third; headers and packets a little more.
    let mut armored = Vec::with_capacity(plaintext.len() * 4 / 3 + 4096);
    let subkey = seal_into(list_key, recipient, time, &mut armored, |literal| {
        literal.write_all(plaintext)
    })?;
    Ok(SealedMessage { armored, subkey })
}

/// [`seal`], streaming: what `plaintext` writes is signed and encrypted
/// as it is written, and the ASCII armor (RFC 9580 §6.2, LF line ends)
/// goes to `sink`, so neither whole is ever held here. Returns the
/// fingerprint (hex) of the subkey it was encrypted to.
pub fn seal_into<W: Write + Send + Sync>(
    list_key: &ListKey,
    recipient: &Cert,
    time: SystemTime,
    sink: W,
    plaintext: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<String, SealError> {
    usable_for_encryption(recipient, time)?;
    let valid = recipient
        .with_policy(&POLICY, time)
        .map_err(|e| SealError::Crypto(e.to_string()))?;
    let crypto = |e: anyhow::Error| SealError::Crypto(e.to_string());
    let subkey = encryption_key(&valid).ok_or_else(|| KeyProblem::NoEncryptionKey {
        fingerprint: recipient.fingerprint().to_hex(),
    })?;
    let subkey_fingerprint = subkey.key().fingerprint().to_hex();

    let message = Message::new(sink);
    let message = Armorer::new(message).build().map_err(crypto)?;
    let message = Encryptor::for_recipients(message, [subkey])
        .build()
        .map_err(crypto)?;
    let message = Signer::new(message, list_key.signer.clone())
        .map_err(crypto)?
        .creation_time(time)
        .build()
        .map_err(crypto)?;
    let mut literal = LiteralWriter::new(message).build().map_err(crypto)?;
    plaintext(&mut literal).map_err(|e| SealError::Crypto(e.to_string()))?;
    literal.finalize().map_err(crypto)?;
    Ok(subkey_fingerprint)
}

/// An armored detached signature by the list key over `data`, SHA-512
/// (so the announcement's `micalg=pgp-sha512` is always right).
pub fn sign_detached(
    list_key: &ListKey,
    data: &[u8],
    time: SystemTime,
) -> Result<Vec<u8>, SealError> {
    let crypto = |e: anyhow::Error| SealError::Crypto(e.to_string());
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Armorer::new(message)
        .kind(openpgp::armor::Kind::Signature)
        .build()
        .map_err(crypto)?;
    let mut signer = Signer::new(message, list_key.signer.clone())
        .map_err(crypto)?
        .detached()
        .hash_algo(openpgp::types::HashAlgorithm::SHA512)
        .map_err(crypto)?
        .creation_time(time)
        .build()
        .map_err(crypto)?;
    signer
        .write_all(data)
        .map_err(|e| SealError::Crypto(e.to_string()))?;
    signer.finalize().map_err(crypto)?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::generate_cert;
    use openpgp::cert::prelude::*;
    use openpgp::parse::Parse;
    use openpgp::types::Features;
    use openpgp::{Packet, PacketPile};

    /// The SEIPD version of a sealed message.
    fn container_version(sealed: &[u8]) -> u8 {
        PacketPile::from_bytes(sealed)
            .unwrap()
            .descendants()
            .find_map(|p| match p {
                Packet::SEIP(seip) => Some(seip.version()),
                _ => None,
            })
            .expect("an encryption container")
    }

    #[test]
    fn container_follows_the_recipients_features() {
        let list = ListKey::from_cert(generate_cert("List <l@example.org>").unwrap()).unwrap();
        let now = SystemTime::now();
        // Like a GnuPG 2.2 key: only SEIPDv1 (MDC) advertised.
        let (v1_only, _) = CertBuilder::general_purpose(Some("Old <old@example.org>"))
            .set_features(Features::empty().set_seipdv1())
            .unwrap()
            .generate()
            .unwrap();
        assert_eq!(
            container_version(&seal(&list, &v1_only, b"x", now).unwrap().armored),
            1
        );
        let modern = generate_cert("New <new@example.org>").unwrap();
        assert_eq!(
            container_version(&seal(&list, &modern, b"x", now).unwrap().armored),
            2
        );
    }

    #[test]
    fn only_the_newest_encryption_subkey_gets_the_copy() {
        use openpgp::types::KeyFlags;
        let list = ListKey::from_cert(generate_cert("List <l@example.org>").unwrap()).unwrap();
        let now = SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        let (cert, _) = CertBuilder::new()
            .add_userid("Zoe <zoe@example.org>")
            .set_creation_time(now - 48 * hour)
            .add_signing_subkey()
            .add_transport_encryption_subkey()
            .generate()
            .unwrap();
        let old = cert
            .keys()
            .subkeys()
            .find(|ka| {
                ka.self_signatures()
                    .next()
                    .and_then(|s| s.key_flags())
                    .is_some_and(|f| f.for_transport_encryption())
            })
            .unwrap()
            .key()
            .fingerprint();
        let valid = cert.with_policy(&POLICY, None).unwrap();
        let cert = KeyBuilder::new(KeyFlags::empty().set_transport_encryption())
            .set_creation_time(now - hour)
            .subkey(valid)
            .unwrap()
            .attach_cert()
            .unwrap();
        let newest = cert
            .keys()
            .subkeys()
            .map(|ka| ka.key().clone())
            .max_by_key(|k| k.creation_time())
            .unwrap()
            .fingerprint();
        assert_ne!(old, newest);

        let sealed = seal(&list, &cert, b"x", now).unwrap();
        assert_eq!(sealed.subkey, newest.to_hex());
        let recipients: Vec<_> = PacketPile::from_bytes(&sealed.armored)
            .unwrap()
            .descendants()
            .filter_map(|p| match p {
                Packet::PKESK(pkesk) => pkesk.recipient(),
                _ => None,
            })
            .collect();
        assert_eq!(recipients.len(), 1, "one recipient key, not every subkey");
        assert!(recipients[0].aliases(openpgp::KeyHandle::from(&newest)));
    }
}
