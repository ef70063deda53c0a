//! OpenPGP: the list key, the members' pinned certificates, and the two
//! directions of traffic — [`open`] for what comes in (decrypt with the list
//! key, verify signatures against members), [`seal`] for what goes out (sign
//! with the list key, encrypt to one member).
//!
//! Every call here is CPU work; async callers run it through
//! [`crate::blocking`], never on the runtime's threads.

pub mod open;
pub mod seal;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Serialize;
use openpgp::types::RevocationStatus;
use openpgp::Cert;

use crate::config::Member;

/// The one policy all checks run under: Sequoia's standard policy, which
/// rejects SHA-1 signatures and weak algorithms.
pub static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Why a member's certificate cannot be used. The daemon sends such a
/// member nothing — never plaintext — and tells the PST.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum KeyProblem {
    #[error("key file {file} cannot be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("key file {file} is not an OpenPGP certificate: {reason}")]
    NotACertificate { file: String, reason: String },
    #[error("key file {file} holds {count} certificates, the pin allows exactly one")]
    SeveralCertificates { file: String, count: usize },
    #[error(
        "key file {file} holds the member's secret key: it belongs with the member only; \
         put their public certificate there instead (`gpg --armor --export FINGERPRINT`)"
    )]
    SecretKeyMaterial { file: String },
    #[error("key file {file} holds {found}, not the pinned {pinned}")]
    PinMismatch {
        file: String,
        found: String,
        pinned: String,
    },
    #[error("key {fingerprint} is not valid under the standard policy: {reason}")]
    Invalid { fingerprint: String, reason: String },
    #[error("key {fingerprint} expired on {when}")]
    Expired { fingerprint: String, when: String },
    #[error("key {fingerprint} is revoked")]
    Revoked { fingerprint: String },
    #[error("key {fingerprint} has no usable encryption subkey (expired, revoked or none)")]
    NoEncryptionKey { fingerprint: String },
    #[error("signing key {key} of {fingerprint} expired on {when}")]
    SigningKeyExpired {
        fingerprint: String,
        key: String,
        when: String,
    },
    #[error("signing key {key} of {fingerprint} is revoked ({reason})")]
    SigningKeyRevoked {
        fingerprint: String,
        key: String,
        reason: String,
    },
    #[error("key {key} of {fingerprint} is not bound as a signing key now")]
    NotSigningKey { fingerprint: String, key: String },
}

impl KeyProblem {
    /// A short label for logs and metrics, without file names or
    /// fingerprints.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyProblem::Unreadable { .. } => "key file unreadable",
            KeyProblem::NotACertificate { .. } => "not a certificate",
            KeyProblem::SeveralCertificates { .. } => "several certificates",
            KeyProblem::SecretKeyMaterial { .. } => "secret key in key file",
            KeyProblem::PinMismatch { .. } => "pin mismatch",
            KeyProblem::Invalid { .. } => "key invalid under the policy",
            KeyProblem::Expired { .. } => "key expired",
            KeyProblem::Revoked { .. } => "key revoked",
            KeyProblem::NoEncryptionKey { .. } => "no encryption subkey",
            KeyProblem::SigningKeyExpired { .. } => "signing key expired",
            KeyProblem::SigningKeyRevoked { .. } => "signing key revoked",
            KeyProblem::NotSigningKey { .. } => "not a signing key",
        }
    }
}

/// A member's certificate, read from their key file and checked against
/// the pin. Validity over time (expiry, revocation) is checked per use by
/// [`usable_for_encryption`].
pub fn load_member_cert(member: &Member) -> Result<Cert, KeyProblem> {
    let file = member.key.display().to_string();
    let bytes = std::fs::read(&member.key).map_err(|e| KeyProblem::Unreadable {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let certs = openpgp::cert::CertParser::from_bytes(&bytes)
        .and_then(|parser| parser.collect::<openpgp::Result<Vec<Cert>>>())
        .map_err(|e| KeyProblem::NotACertificate {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    let cert = match certs.len() {
        0 => {
            return Err(KeyProblem::NotACertificate {
                file,
                reason: "no certificate found".into(),
            })
        }
        1 => certs.into_iter().next().expect("one cert"),
        count => return Err(KeyProblem::SeveralCertificates { file, count }),
    };
    let found = cert.fingerprint().to_hex();
    if found != member.fingerprint {
        return Err(KeyProblem::PinMismatch {
            file,
            found,
            pinned: member.fingerprint.clone(),
        });
    }
    // A member's secret key has no business on the list's server: the
    // file is refused (no copies, the PST told), not quietly used.
    if cert.is_tsk() {
        return Err(KeyProblem::SecretKeyMaterial { file });
    }
    Ok(cert)
}

/// Whether `cert` can receive an encrypted copy at `time`: valid under
/// the policy, not expired, not revoked, with a live encryption subkey.
pub fn usable_for_encryption(cert: &Cert, time: SystemTime) -> Result<(), KeyProblem> {
    let valid = alive(cert, time)?;
    if encryption_keys(&valid).next().is_none() {
        return Err(KeyProblem::NoEncryptionKey {
            fingerprint: cert.fingerprint().to_hex(),
        });
    }
    Ok(())
}

/// Whether `cert` itself is in force at `time`: valid under the policy,
/// not revoked, not expired. A signature only authorises a post when its
/// key passes this now, not just when it signed.
pub fn alive(cert: &Cert, time: SystemTime) -> Result<ValidCert<'_>, KeyProblem> {
    let fingerprint = cert.fingerprint().to_hex();
    if let RevocationStatus::Revoked(_) = cert.revocation_status(&POLICY, time) {
        return Err(KeyProblem::Revoked { fingerprint });
    }
    let valid = cert
        .with_policy(&POLICY, time)
        .map_err(|e| KeyProblem::Invalid {
            fingerprint: fingerprint.clone(),
            reason: e.to_string(),
        })?;
    if valid.alive().is_err() {
        let when = valid
            .primary_key()
            .key_expiration_time()
            .map(|time| crate::clock::format_time(time.into()))
            .unwrap_or_else(|| "an unknown date".into());
        return Err(KeyProblem::Expired { fingerprint, when });
    }
    Ok(valid)
}

/// Whether the key `key` (a fingerprint, hex) of `cert` may still
/// authorise something at `time`: the certificate is in force ([`alive`])
/// and the key itself is bound, live, unrevoked — a soft revocation such
/// as "superseded" counts too — and signing-capable under the policy.
/// Sequoia's verifier checks the key as of the signature's creation time;
/// this is the second half of the rule: valid when it signed *and* now.
pub fn signing_key_in_force(cert: &Cert, key: &str, time: SystemTime) -> Result<(), KeyProblem> {
    let valid = alive(cert, time)?;
    let fingerprint = cert.fingerprint().to_hex();
    let not_signing = || KeyProblem::NotSigningKey {
        fingerprint: fingerprint.clone(),
        key: key.to_string(),
    };
    let ka = valid
        .keys()
        .find(|ka| ka.key().fingerprint().to_hex().eq_ignore_ascii_case(key))
        .ok_or_else(not_signing)?;
    if let RevocationStatus::Revoked(revocations) = ka.revocation_status() {
        let reason = revocations
            .first()
            .and_then(|sig| sig.reason_for_revocation())
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| "no reason given".into());
        return Err(KeyProblem::SigningKeyRevoked {
            fingerprint,
            key: key.to_string(),
            reason,
        });
    }
    if ka.alive().is_err() {
        let when = ka
            .key_expiration_time()
            .map(|time| crate::clock::format_time(time.into()))
            .unwrap_or_else(|| "an unknown date".into());
        return Err(KeyProblem::SigningKeyExpired {
            fingerprint,
            key: key.to_string(),
            when,
        });
    }
    if !ka.for_signing() {
        return Err(not_signing());
    }
    Ok(())
}

/// The one subkey a copy is encrypted to: the newest (by creation time)
/// supported, live, unrevoked encryption-capable key, as GnuPG and RNP
/// choose. An old subkey that was never expired gets nothing.
pub(crate) fn encryption_key<'a>(
    valid: &'a ValidCert<'a>,
) -> Option<ValidErasedKeyAmalgamation<'a, openpgp::packet::key::PublicParts>> {
    encryption_keys(valid).max_by_key(|ka| ka.key().creation_time())
}

/// Every supported, live, unrevoked key flagged for transport or storage
/// encryption.
pub(crate) fn encryption_keys<'a>(
    valid: &'a ValidCert<'a>,
) -> impl Iterator<Item = ValidErasedKeyAmalgamation<'a, openpgp::packet::key::PublicParts>> + 'a {
    valid
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .for_storage_encryption()
}

/// When a certificate stops being usable for encryption: the earlier of the
/// primary key's expiry and the last encryption subkey's; `None` if never.
pub fn expiration(cert: &Cert, time: SystemTime) -> Option<SystemTime> {
    let valid = cert.with_policy(&POLICY, time).ok()?;
    let primary = valid.primary_key().key_expiration_time();
    // Copies go to the newest encryption key alone: its expiry is what
    // counts (an older, longer-lived one is not used).
    let subkey = encryption_key(&valid).and_then(|ka| ka.key_expiration_time());
    match (primary, subkey) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When the list key stops working: the earliest of [`expiration`] (it
/// decrypts reports) and its newest signing key's expiry (it signs every
/// copy); `None` if never.
pub fn list_key_expiration(cert: &Cert, time: SystemTime) -> Option<SystemTime> {
    let valid = cert.with_policy(&POLICY, time).ok()?;
    let signing = valid
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .max_by_key(|ka| ka.key().creation_time())
        .and_then(|ka| ka.key_expiration_time());
    match (expiration(cert, time), signing) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The AEAD modes (RFC 9580 §5.13.2) this build's crypto backend can
/// decrypt, e.g. `["OCB", "GCM"]` with OpenSSL.
pub fn readable_aead() -> Vec<String> {
    openpgp::types::AEADAlgorithm::variants()
        .filter(|aead| aead.is_supported())
        .map(|aead| aead.to_string())
        .collect()
}

/// The AEAD ciphersuites `cert` advertises (its preferences, RFC 9580
/// §5.2.3.15) that this build cannot decrypt: a sender following them
/// would write mail the list cannot read. Empty is right.
pub fn unreadable_advertised(cert: &Cert, time: SystemTime) -> Vec<String> {
    let Ok(valid) = cert.with_policy(&POLICY, time) else {
        return Vec::new();
    };
    valid
        .preferred_aead_ciphersuites()
        .unwrap_or_default()
        .iter()
        .filter(|(cipher, aead)| !(cipher.is_supported() && aead.is_supported()))
        .map(|(cipher, aead)| format!("{cipher}-{aead}"))
        .collect()
}

/// The list's own key: signs every copy and decrypts what reporters
/// encrypted to the list.
#[derive(Clone)]
pub struct ListKey {
    cert: Cert,
    signer: KeyPair,
}

impl fmt::Debug for ListKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret material.
        f.debug_struct("ListKey")
            .field("fingerprint", &self.cert.fingerprint().to_hex())
            .finish()
    }
}

/// Why the list key cannot be used.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum ListKeyError {
    #[error("list key {file}: {reason}")]
    Unusable { file: String, reason: String },
    #[error("list key {file} already exists; embargod never overwrites a key")]
    Exists { file: String },
}

impl ListKey {
    /// Reads the armored secret key from `file`.
    pub fn load(file: &Path) -> Result<ListKey, ListKeyError> {
        let unusable = |reason: String| ListKeyError::Unusable {
            file: file.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(file).map_err(|e| {
            unusable(if e.kind() == std::io::ErrorKind::NotFound {
                "missing; create it with `embargod init`".into()
            } else {
                e.to_string()
            })
        })?;
        let cert = Cert::from_bytes(&bytes).map_err(|e| unusable(e.to_string()))?;
        Self::from_cert(cert).map_err(unusable)
    }

    /// Checks that `cert` carries what the list needs: an unencrypted
    /// signing key and an unencrypted encryption key, valid now.
    pub fn from_cert(cert: Cert) -> Result<ListKey, String> {
        let now = SystemTime::now();
        let valid = cert
            .with_policy(&POLICY, now)
            .map_err(|e| format!("not valid under the standard policy: {e}"))?;
        valid
            .alive()
            .map_err(|_| "expired: the list cannot sign; extend or replace it".to_string())?;
        let signer = valid
            .keys()
            .unencrypted_secret()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .ok_or("holds no usable unencrypted signing key")?
            .key()
            .clone()
            .into_keypair()
            .map_err(|e| e.to_string())?;
        if valid
            .keys()
            .unencrypted_secret()
            .for_transport_encryption()
            .for_storage_encryption()
            .next()
            .is_none()
        {
            return Err("holds no unencrypted decryption key".into());
        }
        Ok(ListKey { cert, signer })
    }

    /// Makes a new list key for `address` (Cv25519, v4 so that GnuPG 2.2
    /// reads it) and writes it to `file` with mode 0600. Refuses to touch
    /// an existing file.
    pub fn create(file: &Path, name: &str, address: &str) -> Result<ListKey, ListKeyError> {
        let unusable = |reason: String| ListKeyError::Unusable {
            file: file.display().to_string(),
            reason,
        };
        let cert =
            generate_cert(&format!("{name} <{address}>")).map_err(|e| unusable(e.to_string()))?;
        let mut armored = Vec::new();
        cert.as_tsk()
            .armored()
            .serialize(&mut armored)
            .map_err(|e| unusable(e.to_string()))?;
        write_secret_file(file, &armored).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ListKeyError::Exists {
                file: file.display().to_string(),
            },
            _ => unusable(e.to_string()),
        })?;
        Self::from_cert(cert).map_err(unusable)
    }

    /// The list key's certificate, with its secret keys.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The list key's fingerprint, upper-case hex.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// The armored public certificate, to publish.
    pub fn public_armored(&self) -> String {
        let mut out = Vec::new();
        self.cert
            .armored()
            .serialize(&mut out)
            .expect("serializing to memory");
        String::from_utf8(out).expect("armor is ASCII")
    }
}

/// A general-purpose certificate (sign + encrypt subkeys) for `userid`.
/// Used for the list key, and for members in the demo, tests and benchmark.
pub fn generate_cert(userid: &str) -> openpgp::Result<Cert> {
    let (cert, _revocation) = CertBuilder::general_purpose(Some(userid))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()?;
    Ok(cert)
}

/// Writes `bytes` to a new file readable by the owner alone; fails if the
/// file exists.
pub fn write_secret_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    out.write_all(bytes)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_list_keys_signing_subkey_counts_for_its_expiry() {
        use openpgp::types::KeyFlags;
        let now = SystemTime::now();
        let day = std::time::Duration::from_secs(86400);
        let (cert, _) = CertBuilder::new()
            .add_userid("List <list@example.org>")
            .set_validity_period(None)
            .add_subkey(KeyFlags::empty().set_signing(), 5 * day, None)
            .add_subkey(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
                None,
                None,
            )
            .generate()
            .unwrap();
        assert_eq!(expiration(&cert, now), None, "it can encrypt for ever");
        let until = list_key_expiration(&cert, now).unwrap();
        assert!(until > now + 4 * day && until < now + 6 * day);
    }

    #[test]
    fn created_list_key_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys/list.key");
        let key = ListKey::create(&file, "Kappital security", "security@kappital.example").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ListKey::create(&file, "x", "y@example.org").unwrap_err();
        assert!(matches!(again, ListKeyError::Exists { .. }), "{again}");
        assert_eq!(
            ListKey::load(&file).unwrap().fingerprint(),
            key.fingerprint()
        );
        assert!(key
            .public_armored()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(!key.public_armored().contains("PRIVATE"));
    }

    #[test]
    fn the_list_key_advertises_only_what_it_reads() {
        // OCB is mandatory in RFC 9580 and what OpenPGP.js 6 uses.
        assert!(
            readable_aead().iter().any(|a| a == "OCB"),
            "{:?}",
            readable_aead()
        );
        let cert = generate_cert("List <l@example.org>").unwrap();
        assert_eq!(
            unreadable_advertised(&cert, SystemTime::now()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn member_cert_must_match_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let cert = generate_cert("Alice <alice@example.org>").unwrap();
        let file = dir.path().join("alice.asc");
        let mut armored = Vec::new();
        cert.armored().serialize(&mut armored).unwrap();
        std::fs::write(&file, armored).unwrap();
        let mut member = Member {
            id: "alice".into(),
            email: "alice@example.org".parse().unwrap(),
            key: file,
            fingerprint: cert.fingerprint().to_hex(),
            away: false,
        };
        assert_eq!(
            load_member_cert(&member).unwrap().fingerprint(),
            cert.fingerprint()
        );
        member.fingerprint = "0".repeat(40);
        let problem = load_member_cert(&member).unwrap_err();
        assert!(problem.to_string().contains("not the pinned"), "{problem}");
    }

    #[test]
    fn a_member_key_file_holding_a_secret_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = generate_cert("Ben <ben@example.org>").unwrap();
        let file = dir.path().join("ben.asc");
        let mut armored = Vec::new();
        cert.as_tsk().armored().serialize(&mut armored).unwrap();
        std::fs::write(&file, armored).unwrap();
        let member = Member {
            id: "ben".into(),
            email: "ben@example.org".parse().unwrap(),
            key: file,
            fingerprint: cert.fingerprint().to_hex(),
            away: false,
        };
        let problem = load_member_cert(&member).unwrap_err();
        assert!(
            matches!(problem, KeyProblem::SecretKeyMaterial { .. }),
            "{problem}"
        );
        assert!(
            problem.to_string().contains("gpg --armor --export"),
            "{problem}"
        );
    }

    #[test]
    fn expired_and_revoked_keys_are_unusable() {
        let cert = generate_cert("Bob <bob@example.org>").unwrap();
        let now = SystemTime::now();
        assert_eq!(usable_for_encryption(&cert, now), Ok(()));
        // general_purpose keys expire after three years.
        let later = now + std::time::Duration::from_secs(4 * 366 * 86400);
        assert!(matches!(
            usable_for_encryption(&cert, later),
            Err(KeyProblem::Expired { .. })
        ));

        let (cert, revocation) = CertBuilder::general_purpose(Some("Carol <c@example.org>"))
            .generate()
            .unwrap();
        let (revoked, _) = cert.insert_packets(revocation).unwrap();
        assert!(matches!(
            usable_for_encryption(&revoked, SystemTime::now()),
            Err(KeyProblem::Revoked { .. })
        ));
    }
}
