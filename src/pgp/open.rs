//! Incoming: decrypt what was encrypted to the list key and check every
//! signature against the members' pinned certificates.
//!
//! A signature by a key that is no member's is *noted*, never trusted: the
//! result names the issuer so the PST can see who claims to have signed.

use std::fmt;

use crate::clock::Timestamp;
use std::io::Read;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};

use super::POLICY;

/// The certificates signatures are checked against, each with the id of
/// the member it is pinned for.
#[derive(Debug, Default, Clone)]
pub struct Signers {
    certs: Vec<(String, Cert)>,
}

impl Signers {
    /// The signers to check signatures against: each member id with their pinned certificate.
    pub fn new(certs: Vec<(String, Cert)>) -> Signers {
        Signers { certs }
    }

    fn matching(&self, handles: &[KeyHandle]) -> Vec<Cert> {
        self.certs
            .iter()
            .filter(|(_, cert)| {
                cert.keys()
                    .any(|ka| handles.iter().any(|h| h.aliases(ka.key().key_handle())))
            })
            .map(|(_, cert)| cert.clone())
            .collect()
    }

    fn member_of(&self, cert: &Cert) -> Option<&str> {
        let fpr = cert.fingerprint();
        self.certs
            .iter()
            .find(|(_, c)| c.fingerprint() == fpr)
            .map(|(id, _)| id.as_str())
    }
}

/// The outcome of checking one signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignatureCheck {
    /// Valid, by the pinned certificate of this member.
    Good {
        /// The member's id.
        member: String,
        /// The certificate (primary key) fingerprint.
        fingerprint: String,
        /// The key that made the signature: the primary key or a signing
        /// subkey. It must still be in force when the signature is used
        /// ([`crate::pgp::signing_key_in_force`]).
        #[serde(default)]
        key: String,
        /// When the signature says it was made, ms since the epoch.
        created: Timestamp,
        /// What identifies the signature for replay protection:
        /// [`signed_data_digest`], over what was signed, never over the
        /// unhashed area or the transport encoding.
        digest: String,
    },
    /// Made by a key that belongs to no member; not trusted.
    UnknownKey {
        /// The issuer fingerprint or key ID the signature names.
        issuer: String,
    },
    /// By a member's key but invalid: bad, expired or revoked key, broken
    /// packet.
    Bad {
        /// Why, as Sequoia says it.
        reason: String,
    },
}

impl fmt::Display for SignatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureCheck::Good {
                member,
                fingerprint,
                ..
            } => write!(f, "good signature by {member} ({fingerprint})"),
            SignatureCheck::UnknownKey { issuer } => {
                write!(f, "signature by unknown key {issuer} (not trusted)")
            }
            SignatureCheck::Bad { reason } => write!(f, "BAD signature: {reason}"),
        }
    }
}

/// Every signature found on a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signatures(pub Vec<SignatureCheck>);

/// A good signature by a member, as the rules that authorise state
/// changes see it ([`crate::freshness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoodSignature<'a> {
    /// The member whose pinned key made it.
    pub member: &'a str,
    /// Fingerprint of the key that made it (primary or subkey).
    pub key: &'a str,
    /// Signature creation time, ms since the epoch.
    pub created: Timestamp,
    /// [`signed_data_digest`], hex.
    pub digest: &'a str,
}

impl Signatures {
    /// Every good signature, in order.
    pub fn good(&self) -> impl Iterator<Item = GoodSignature<'_>> {
        self.0.iter().filter_map(|check| match check {
            SignatureCheck::Good {
                member,
                key,
                created,
                digest,
                ..
            } => Some(GoodSignature {
                member,
                key,
                created: *created,
                digest,
            }),
            _ => None,
        })
    }

    /// The members whose signatures verified.
    pub fn good_signers(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|check| match check {
            SignatureCheck::Good { member, .. } => Some(member.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Signatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("not signed");
        }
        for (i, check) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{check}")?;
        }
        Ok(())
    }
}

/// A message after [`open`].
#[derive(Debug)]
pub struct Opened {
    /// What was signed and encrypted: the inner message.
    pub plaintext: Vec<u8>,
    /// It was encrypted (to the list key, or it would not have opened).
    pub encrypted: bool,
    /// Every signature found on it, checked.
    pub signatures: Signatures,
}

/// Why a message could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum OpenError {
    /// Encrypted, but not to the list key: it is passed on as it is.
    #[error("encrypted to other keys, not to the list key")]
    NotForList,
    #[error("decrypted content exceeds {0} bytes (compression bomb?)")]
    TooLarge(usize),
    #[error("broken OpenPGP data: {0}")]
    Malformed(String),
}

/// Decrypts (when encrypted, with the secret keys of `key`, normally the
/// list key) and verifies an OpenPGP message — binary, armored or
/// cleartext-signed. The plaintext is limited to `limit` bytes so a
/// compressed bomb cannot exhaust memory.
pub fn open(
    key: &Cert,
    data: &[u8],
    signers: &Signers,
    limit: usize,
    time: SystemTime,
) -> Result<Opened, OpenError> {
    let helper = Helper {
        key,
        signers,
        signatures: Signatures::default(),
        encrypted: false,
        addressed_to_list: false,
        tried_decryption: false,
    };
    // Sequoia's Decryptor does not read the cleartext signature framework;
    // its Verifier does (and there is nothing to decrypt).
    let cleartext = data
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----");
    let (plaintext, helper) = if cleartext {
        let mut verifier = VerifierBuilder::from_bytes(data)
            .and_then(|b| b.with_policy(&POLICY, skewed(time), helper))
            .map_err(classify)?;
        let plaintext = read_limited(&mut verifier, limit)?;
        if !verifier.message_processed() {
            return Err(OpenError::Malformed("message ends early".into()));
        }
        (plaintext, verifier.into_helper())
    } else {
        let mut decryptor = DecryptorBuilder::from_bytes(data)
            .and_then(|b| b.with_policy(&POLICY, skewed(time), helper))
            .map_err(classify)?;
        let plaintext = read_limited(&mut decryptor, limit)?;
        if !decryptor.message_processed() {
            return Err(OpenError::Malformed("message ends early".into()));
        }
        (plaintext, decryptor.into_helper())
    };
    Ok(Opened {
        plaintext,
        encrypted: helper.encrypted,
        signatures: helper.signatures,
    })
}

/// Reads all of `reader`, refusing more than `limit` bytes.
fn read_limited(reader: &mut impl Read, limit: usize) -> Result<Vec<u8>, OpenError> {
    let mut plaintext = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| OpenError::Malformed(e.to_string()))?;
    if plaintext.len() > limit {
        return Err(OpenError::TooLarge(limit));
    }
    Ok(plaintext)
}

/// Verifies a detached signature (PGP/MIME multipart/signed) over `data`.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    signers: &Signers,
    time: SystemTime,
) -> Signatures {
    let helper = VerifyOnly {
        signers,
        signatures: Signatures::default(),
    };
    let result = DetachedVerifierBuilder::from_bytes(signature)
        .and_then(|b| b.with_policy(&POLICY, skewed(time), helper))
        .and_then(|mut verifier| {
            verifier.verify_bytes(data)?;
            Ok(verifier.into_helper().signatures)
        });
    result.unwrap_or_else(|e| {
        Signatures(vec![SignatureCheck::Bad {
            reason: e.to_string(),
        }])
    })
}

/// The reference time for signature checks. Given an explicit time,
/// Sequoia allows no clock skew, so a signature made by a sender whose
/// clock runs a little ahead would count as "not yet valid"; allow
/// Sequoia's own tolerance for its default case (30 minutes).
fn skewed(time: SystemTime) -> SystemTime {
    time + openpgp::packet::signature::subpacket::CLOCK_SKEW_TOLERANCE
}

/// What identifies a verified signature for replay protection: SHA-256
/// over the signing key's fingerprint, the hash algorithm and the digest
/// the signature was checked against. That digest covers the signed data
/// and the hashed subpacket area with its trailer (RFC 9580 §5.2.4) — and
/// nothing else, so adding or changing unhashed subpackets, re-armoring or
/// re-encoding the mail gives the same value, while a fresh signature over
/// the same text (new creation time) gives another.
pub fn signed_data_digest(key: &openpgp::Fingerprint, sig: &openpgp::packet::Signature) -> String {
    let mut data = Vec::with_capacity(128);
    data.extend_from_slice(b"embargod-signed-data-v1\n");
    data.extend_from_slice(key.as_bytes());
    data.push(u8::from(sig.hash_algo()));
    data.extend_from_slice(sig.computed_digest().unwrap_or_default());
    crate::digest::sha256_hex(&data)
}

/// Tells "not for us" apart from real breakage. Sequoia reports both as
/// errors, so the helper records whether any PKESK named the list key.
fn classify(error: anyhow::Error) -> OpenError {
    if error.downcast_ref::<NotAddressedToList>().is_some() {
        OpenError::NotForList
    } else {
        OpenError::Malformed(error.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not encrypted to the list key")]
struct NotAddressedToList;

struct Helper<'a> {
    key: &'a Cert,
    signers: &'a Signers,
    signatures: Signatures,
    encrypted: bool,
    addressed_to_list: bool,
    tried_decryption: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.signers.matching(ids))
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => self.encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    record(self.signers, &mut self.signatures, results)
                }
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        self.tried_decryption = true;
        let cert = self.key;
        let keys = cert
            .keys()
            .unencrypted_secret()
            .with_policy(&POLICY, None)
            .for_transport_encryption()
            .for_storage_encryption();
        for ka in keys {
            let handle = ka.key().key_handle();
            for pkesk in pkesks {
                let addressed = match pkesk.recipient() {
                    Some(recipient) => recipient.aliases(&handle),
                    // Anonymous recipient: try our key on it.
                    None => true,
                };
                if !addressed {
                    continue;
                }
                self.addressed_to_list = true;
                let mut keypair = ka.key().clone().into_keypair()?;
                if pkesk
                    .decrypt(&mut keypair, sym_algo)
                    .map(|(algo, key)| decrypt(algo, &key))
                    .unwrap_or(false)
                {
                    return Ok(Some(cert.clone()));
                }
            }
        }
        if self.addressed_to_list {
            Err(anyhow::anyhow!(
                "the list key could not decrypt the session key"
            ))
        } else {
            Err(NotAddressedToList.into())
        }
    }
}

/// Verification for multipart/signed: no decryption involved.
struct VerifyOnly<'a> {
    signers: &'a Signers,
    signatures: Signatures,
}

impl VerificationHelper for VerifyOnly<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.signers.matching(ids))
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                record(self.signers, &mut self.signatures, results);
            }
        }
        Ok(())
    }
}

fn record(
    signers: &Signers,
    into: &mut Signatures,
    results: Vec<Result<openpgp::parse::stream::GoodChecksum<'_>, VerificationError<'_>>>,
) {
    for result in results {
        into.0.push(match result {
            Ok(good) => {
                let cert = good.ka.cert();
                match signers.member_of(cert) {
                    Some(member) => SignatureCheck::Good {
                        member: member.to_string(),
                        fingerprint: cert.fingerprint().to_hex(),
                        key: good.ka.key().fingerprint().to_hex(),
                        created: good
                            .sig
                            .signature_creation_time()
                            .map(Timestamp::from)
                            .unwrap_or_default(),
                        digest: signed_data_digest(&good.ka.key().fingerprint(), good.sig),
                    },
                    // `get_certs` only hands out member certs, so this is
                    // unreachable in practice; stay safe regardless.
                    None => SignatureCheck::UnknownKey {
                        issuer: cert.fingerprint().to_hex(),
                    },
                }
            }
            Err(VerificationError::MissingKey { sig }) => SignatureCheck::UnknownKey {
                issuer: sig
                    .get_issuers()
                    .first()
                    .map(|issuer| issuer.to_hex())
                    .unwrap_or_else(|| "(no issuer)".into()),
            },
            Err(other) => SignatureCheck::Bad {
                reason: other.to_string(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::{generate_cert, seal::seal, ListKey};

    fn list_key() -> ListKey {
        ListKey::from_cert(generate_cert("List <security@kappital.example>").unwrap()).unwrap()
    }

    #[test]
    fn sealed_copy_opens_for_its_recipient_only() {
        let list = list_key();
        let alice = generate_cert("Alice <alice@example.org>").unwrap();
        let bob = generate_cert("Bob <bob@example.org>").unwrap();
        let now = SystemTime::now();
        let sealed = seal(&list, &alice, b"the report", now).unwrap().armored;

        // Alice's key, used as if it were the list key, opens it, and the
        // list's signature verifies.
        let signers = Signers::new(vec![("list".into(), list.cert().clone())]);
        let opened = open(&alice, &sealed, &signers, 1 << 20, now).unwrap();
        assert_eq!(opened.plaintext, b"the report");
        assert!(opened.encrypted);
        assert_eq!(
            opened.signatures.good_signers().collect::<Vec<_>>(),
            ["list"]
        );

        assert_eq!(
            open(&bob, &sealed, &signers, 1 << 20, now).unwrap_err(),
            OpenError::NotForList
        );
    }

    #[test]
    fn plaintext_over_the_limit_is_refused() {
        let list = list_key();
        let sealed = seal(&list, list.cert(), &[b'x'; 5000], SystemTime::now())
            .unwrap()
            .armored;
        let err = open(
            list.cert(),
            &sealed,
            &Signers::default(),
            4096,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(err, OpenError::TooLarge(4096));
    }

    #[test]
    fn unknown_signers_are_noted_not_trusted() {
        let list = list_key();
        let sealed = seal(&list, list.cert(), b"hi", SystemTime::now())
            .unwrap()
            .armored;
        let opened = open(
            list.cert(),
            &sealed,
            &Signers::default(),
            4096,
            SystemTime::now(),
        )
        .unwrap();
        assert!(matches!(
            &opened.signatures.0[..],
            [SignatureCheck::UnknownKey { .. }]
        ));
        assert_eq!(opened.signatures.good_signers().count(), 0);
    }

    #[test]
    fn a_sender_clock_slightly_ahead_is_tolerated() {
        let list = list_key();
        let alice = generate_cert("Alice <alice@example.org>").unwrap();
        let now = SystemTime::now();
        // Signed "five minutes from now" by the list key, checked now.
        let sealed = seal(
            &list,
            &alice,
            b"x",
            now + std::time::Duration::from_secs(300),
        )
        .unwrap();
        let signers = Signers::new(vec![("list".into(), list.cert().clone())]);
        let opened = open(&alice, &sealed.armored, &signers, 1024, now).unwrap();
        assert_eq!(
            opened.signatures.good_signers().count(),
            1,
            "{}",
            opened.signatures
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let list = list_key();
        let err = open(
            list.cert(),
            b"\x85\x01garbage",
            &Signers::default(),
            4096,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, OpenError::Malformed(_)), "{err:?}");
    }

    /// A detached signature by `signer` over `data`, made at `time`.
    fn detached_sig(signer: &Cert, data: &[u8], time: SystemTime) -> openpgp::packet::Signature {
        let keypair = signer
            .keys()
            .with_policy(&POLICY, time)
            .secret()
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        openpgp::packet::signature::SignatureBuilder::new(openpgp::types::SignatureType::Binary)
            .set_signature_creation_time(time)
            .unwrap()
            .sign_message(&mut keypair.clone(), data)
            .unwrap()
    }

    fn armored(sig: &openpgp::packet::Signature) -> Vec<u8> {
        use openpgp::serialize::SerializeInto;
        openpgp::Packet::from(sig.clone())
            .to_vec()
            .map(|binary| {
                let mut out = Vec::new();
                let mut w =
                    openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::Signature).unwrap();
                std::io::Write::write_all(&mut w, &binary).unwrap();
                w.finalize().unwrap();
                out
            })
            .unwrap()
    }

    fn digest_of(signatures: &Signatures) -> String {
        match &signatures.0[..] {
            [SignatureCheck::Good { digest, .. }] => digest.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_replay_digest_covers_what_was_signed_and_nothing_else() {
        use openpgp::packet::signature::subpacket::{NotationData, Subpacket, SubpacketValue};
        use openpgp::serialize::SerializeInto;
        let alice = generate_cert("Alice <alice@example.org>").unwrap();
        let signers = Signers::new(vec![("alice".into(), alice.clone())]);
        let now = SystemTime::now();
        let data = b"X-Case: KAP-2026-0001\r\nX-Add: dave\r\n";
        let sig = detached_sig(&alice, data, now);
        let first = digest_of(&verify_detached(data, &armored(&sig), &signers, now));

        // One more subpacket in the unhashed area: still verifies, same digest.
        let mut tampered = sig.clone();
        tampered
            .unhashed_area_mut()
            .add(
                Subpacket::new(
                    SubpacketValue::NotationData(NotationData::new(
                        "replay@example.org",
                        b"again",
                        None,
                    )),
                    false,
                )
                .unwrap(),
            )
            .unwrap();
        assert_ne!(armored(&tampered), armored(&sig));
        assert_eq!(
            digest_of(&verify_detached(data, &armored(&tampered), &signers, now)),
            first
        );
        // Another transport encoding (binary instead of armor): same digest.
        let binary = openpgp::Packet::from(sig.clone()).to_vec().unwrap();
        assert_eq!(
            digest_of(&verify_detached(data, &binary, &signers, now)),
            first
        );
        // A new signature over the same text (a later time): another digest.
        let later = detached_sig(&alice, data, now + std::time::Duration::from_secs(2));
        assert_ne!(
            digest_of(&verify_detached(
                data,
                &armored(&later),
                &signers,
                now + std::time::Duration::from_secs(2)
            )),
            first
        );
    }
}
