//! The store key: embargoed mail is sealed before it touches the disk.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value. The tree and
//! key a value lives under are authenticated too, so a value copied to
//! another slot does not open there.

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::StoreError;
use crate::mark::MarkSecret;

const NONCE_LEN: usize = 24;
/// Length of a store key, in bytes (XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;

/// The symmetric key that seals spool and quarantine values, and the
/// secret the copies' marks derive from.
#[derive(Clone)]
pub struct StoreKey {
    cipher: XChaCha20Poly1305,
    mark: MarkSecret,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// Reads the 32-byte key file, refusing one others can read.
    pub fn load(file: &Path) -> Result<StoreKey, StoreError> {
        let problem = |reason: String| StoreError::Key {
            file: file.display().to_string(),
            reason,
        };
        crate::fsutil::check_private(file).map_err(problem)?;
        let bytes = std::fs::read(file).map_err(|e| {
            problem(if e.kind() == std::io::ErrorKind::NotFound {
                "missing; create it with `embargod init`".into()
            } else {
                e.to_string()
            })
        })?;
        if bytes.len() != KEY_LEN {
            return Err(problem(format!(
                "holds {} bytes, expected {KEY_LEN}",
                bytes.len()
            )));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Creates a new random key file (mode 0600); never overwrites.
    pub fn create(file: &Path) -> std::io::Result<()> {
        crate::pgp::write_secret_file(file, &crate::random::bytes::<KEY_LEN>())
    }

    /// A key from its 32 bytes.
    ///
    /// # Panics
    /// When `bytes` is not [`KEY_LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> StoreKey {
        StoreKey {
            cipher: XChaCha20Poly1305::new_from_slice(bytes).expect("32-byte key"),
            mark: MarkSecret::derive(bytes),
        }
    }

    /// The secret of the leak marks, derived from this key.
    pub fn mark_secret(&self) -> &MarkSecret {
        &self.mark
    }

    /// Seals `plaintext` for the slot named by `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = crate::random::bytes::<NONCE_LEN>();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("encryption into memory cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// [`StoreKey::seal`] in place: `buffer` becomes the sealed value, so
    /// a large value is never held twice.
    pub fn seal_in_place(&self, aad: &[u8], buffer: &mut Vec<u8>) {
        let nonce = crate::random::bytes::<NONCE_LEN>();
        self.cipher
            .encrypt_in_place(XNonce::from_slice(&nonce), aad, buffer)
            .expect("encryption into memory cannot fail");
        buffer.splice(0..0, nonce);
    }

    /// [`StoreKey::unseal`] in place.
    pub fn unseal_in_place(&self, aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Corrupt("sealed value too short".into()));
        }
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("nonce length");
        sealed.drain(..NONCE_LEN);
        self.cipher
            .decrypt_in_place(XNonce::from_slice(&nonce), aad, &mut sealed)
            .map_err(|_| {
                StoreError::Corrupt("sealed value does not open with the store key".into())
            })?;
        Ok(sealed)
    }

    /// Opens a value sealed for the slot named by `aad`.
    pub fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Corrupt("sealed value too short".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| {
                StoreError::Corrupt("sealed value does not open with the store key".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_slot() {
        let key = StoreKey::from_bytes(&[7; KEY_LEN]);
        let sealed = key.seal(b"spool/1", b"secret report");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(key.unseal(b"spool/1", &sealed).unwrap(), b"secret report");
        assert!(key.unseal(b"spool/2", &sealed).is_err());
        let other = StoreKey::from_bytes(&[8; KEY_LEN]);
        assert!(other.unseal(b"spool/1", &sealed).is_err());
    }
}
