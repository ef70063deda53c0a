//! Sealing the copies of one message: one inner entity per member, signed
//! and encrypted to that member alone, on every core at once.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use tracing::warn;

use crate::clock::to_millis;
use crate::config::{ListName, Member};
use crate::keys::Keys;
use crate::mime::outbound::{inner_entity, outer_message, Envelope, ListIdentity};
use crate::pgp::seal::{seal, SealError};
use crate::store::{DeliveryRecord, Outcome, QueueKey, QueuedCopy};

/// What every copy of one message carries; each member's copy adds its
/// own outer header fields.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Header fields carried into the protected headers.
    pub headers: Vec<u8>,
    /// The info part at the top: how the message arrived (and the
    /// embargo banner).
    pub info: String,
    /// The content entity.
    pub content: Vec<u8>,
    /// The case it belongs to, when known.
    pub case: Option<String>,
}

/// What sealing produced: queue entries with their records, and the
/// members who got nothing, with the reason.
#[derive(Debug, Default)]
pub struct Sealed {
    pub copies: Vec<(QueueKey, QueuedCopy)>,
    pub records: Vec<DeliveryRecord>,
    pub problems: Vec<(String, String)>,
}

/// Seals one copy for each of `members`.
#[allow(clippy::too_many_arguments)]
pub fn seal_copies(
    keys: &Keys,
    identity: &ListIdentity,
    list: ListName,
    members: &[&Member],
    outgoing: &Outgoing,
    message: u64,
    notice: bool,
    now: DateTime<Utc>,
) -> Sealed {
    let results: Vec<(&Member, Result<SealedCopy, SealError>)> = members
        .par_iter()
        .map(|member| (*member, seal_one(keys, identity, member, outgoing, now)))
        .collect();

    let mut out = Sealed::default();
    let queued = to_millis(now);
    for (member, result) in results {
        let mut record = DeliveryRecord {
            time: queued,
            message,
            case: outgoing.case.clone(),
            copy_id: None,
            list,
            member: member.id.clone(),
            fingerprint: None,
            message_id: None,
            plaintext_sha256: None,
            ciphertext_sha256: None,
            outcome: Outcome::Queued,
        };
        match result {
            Ok(copy) => {
                let id = copy_id();
                record.copy_id = Some(id);
                record.fingerprint = Some(copy.fingerprint.clone());
                record.message_id = Some(copy.message_id.clone());
                record.plaintext_sha256 = Some(sha256_hex(&copy.plaintext));
                record.ciphertext_sha256 = Some(sha256_hex(&copy.bytes));
                out.records.push(record);
                out.copies.push((
                    QueueKey { due: queued, id },
                    QueuedCopy {
                        id,
                        message,
                        case: outgoing.case.clone(),
                        list,
                        member: member.id.clone(),
                        to: member.email.to_string(),
                        fingerprint: copy.fingerprint,
                        message_id: copy.message_id,
                        notice,
                        queued,
                        attempts: 0,
                        last_error: None,
                        bytes: copy.bytes,
                    },
                ));
            }
            Err(error) => {
                warn!(message, member = %member.id, %error, "no copy: key unusable");
                record.outcome = Outcome::NoKey(error.to_string());
                out.records.push(record);
                out.problems.push((member.id.clone(), error.to_string()));
            }
        }
    }
    out
}

/// A random 64-bit copy id: unique per (message, member), and not
/// guessable from any other copy's.
fn copy_id() -> u64 {
    crate::random::u64()
}

/// One member's sealed copy.
struct SealedCopy {
    /// The signed inner entity.
    plaintext: Vec<u8>,
    /// The whole outgoing message.
    bytes: Vec<u8>,
    message_id: String,
    fingerprint: String,
}

fn seal_one(
    keys: &Keys,
    identity: &ListIdentity,
    member: &Member,
    outgoing: &Outgoing,
    now: DateTime<Utc>,
) -> Result<SealedCopy, SealError> {
    let cert = keys.member(&member.id)?;
    let domain = identity
        .address
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .unwrap_or("localhost");
    let message_id = format!("<{}@{domain}>", crate::random::token());
    let to = member.email.to_string();
    let envelope = Envelope {
        list: identity,
        to: &to,
        message_id: &message_id,
        date: now,
    };
    let plaintext = inner_entity(
        &envelope,
        &outgoing.headers,
        &outgoing.info,
        &outgoing.content,
    );
    let armored = seal(&keys.list_key, cert, &plaintext, SystemTime::from(now))?;
    Ok(SealedCopy {
        bytes: outer_message(&envelope, &armored),
        plaintext,
        message_id,
        fingerprint: cert.fingerprint().to_hex(),
    })
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sequoia_openpgp::types::HashAlgorithm;
    let mut ctx = HashAlgorithm::SHA256
        .context()
        .expect("SHA-256 is supported")
        .for_digest();
    ctx.update(bytes);
    let digest = ctx.into_digest().expect("digest");
    sequoia_openpgp::fmt::hex::encode(digest).to_ascii_lowercase()
}
