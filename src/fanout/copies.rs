//! Sealing the copies of one message: one inner entity per recipient,
//! marked for that recipient, signed and encrypted to them alone, on every
//! core at once.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use tracing::warn;

use crate::clock::to_millis;
use crate::config::{ListName, Member};
use crate::keys::Keys;
use crate::mark::{copy_id_hex, mark_text, patch::add_trailer, visible_line, MarkSecret};
use crate::mime::edit::{splice, TextSlot};
use crate::mime::outbound::{inner_entity, outer_message, Envelope, ListIdentity};
use crate::pgp::seal::{seal, SealError};
use crate::store::{CopyInfo, DeliveryRecord, Outcome, QueueKey, QueuedCopy};

/// What every copy of one message carries; each recipient's copy adds its
/// marks and its own outer header fields.
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
    /// The prose that carries each copy's invisible mark (the first text
    /// part); `None` for what is not embargoed content (notices) or cannot
    /// be read (encrypted to others).
    pub prose: Option<TextSlot>,
    /// `git format-patch` attachments that get an `Embargo-Copy:` trailer.
    pub patches: Vec<TextSlot>,
}

impl Outgoing {
    /// What goes to every recipient. `marked`: the prose carries each
    /// copy's marks (everything embargoed); `mark_patches`: patches get
    /// the copy's trailer too.
    pub fn new(
        headers: Vec<u8>,
        info: String,
        content: Vec<u8>,
        case: Option<String>,
        marked: bool,
        mark_patches: bool,
    ) -> Outgoing {
        // Marks change the signed text, so a sender's signature would no
        // longer verify in the copy; the daemon checked it, and the info
        // part says what it found.
        let content = if marked {
            crate::mime::edit::unsigned(&content)
        } else {
            content
        };
        let prose = marked
            .then(|| crate::mime::edit::first_text(&content))
            .flatten();
        let patches = if marked && mark_patches {
            crate::mime::edit::text_parts(&content, crate::mark::patch::is_format_patch)
        } else {
            Vec::new()
        };
        Outgoing {
            headers,
            info,
            content,
            case,
            prose,
            patches,
        }
    }
}

/// What sealing produced: queue entries with their records and index
/// entries, and the recipients who got nothing, with the reason.
#[derive(Debug, Default)]
pub struct Sealed {
    pub copies: Vec<(QueueKey, QueuedCopy)>,
    pub records: Vec<DeliveryRecord>,
    pub index: Vec<CopyInfo>,
    pub problems: Vec<(String, String)>,
}

/// Seals one copy for each of `members`.
#[allow(clippy::too_many_arguments)]
pub fn seal_copies(
    keys: &Keys,
    marks: &MarkSecret,
    identity: &ListIdentity,
    list: ListName,
    members: &[&Member],
    outgoing: &Outgoing,
    message: u64,
    notice: bool,
    now: DateTime<Utc>,
) -> Sealed {
    let results: Vec<(&Member, u64, Result<SealedCopy, SealError>)> = members
        .par_iter()
        .map(|member| {
            // 64 random bits: unique per (message, recipient), and not
            // guessable from any other copy's.
            let copy_id = crate::random::u64();
            (
                *member,
                copy_id,
                seal_one(keys, marks, identity, member, copy_id, outgoing, now),
            )
        })
        .collect();

    let mut out = Sealed::default();
    let queued = to_millis(now);
    for (member, id, result) in results {
        let mut record = DeliveryRecord::new(
            queued,
            message,
            outgoing.case.clone(),
            list,
            &member.id,
            Outcome::Queued,
        );
        match result {
            Ok(copy) => {
                record.copy_id = Some(id);
                record.fingerprint = Some(copy.fingerprint.clone());
                record.encryption_subkey = Some(copy.subkey.clone());
                record.message_id = Some(copy.message_id.clone());
                record.plaintext_sha256 = Some(sha256_hex(&copy.plaintext));
                record.ciphertext_sha256 = Some(sha256_hex(&copy.bytes));
                out.records.push(record);
                out.index.push(CopyInfo {
                    copy_id: id,
                    message,
                    member: member.id.clone(),
                    email: member.email.to_string(),
                    list,
                    case: outgoing.case.clone(),
                });
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
                warn!(msg = message, member = %member.id, %error, "no copy: key unusable");
                record.outcome = Outcome::NoKey(error.to_string());
                out.records.push(record);
                out.problems.push((member.id.clone(), error.to_string()));
            }
        }
    }
    out
}

/// One recipient's sealed copy.
pub struct SealedCopy {
    /// The signed inner entity.
    pub plaintext: Vec<u8>,
    /// The whole outgoing message.
    pub bytes: Vec<u8>,
    pub message_id: String,
    /// The recipient's certificate.
    pub fingerprint: String,
    /// The encryption subkey it went to (the newest).
    pub subkey: String,
}

fn seal_one(
    keys: &Keys,
    marks: &MarkSecret,
    identity: &ListIdentity,
    member: &Member,
    copy_id: u64,
    outgoing: &Outgoing,
    now: DateTime<Utc>,
) -> Result<SealedCopy, SealError> {
    let cert = keys.member(&member.id)?;
    let (headers, info, content) = mark(marks, member, copy_id, outgoing);
    seal_entity(
        keys,
        identity,
        member.email.as_ref(),
        cert,
        &headers,
        &info,
        &content,
        now,
    )
}

/// A PGP/MIME message to `to`, signed by the list key and encrypted to
/// `cert` alone: the inner entity of `headers`, `info` and `content`.
#[allow(clippy::too_many_arguments)]
pub fn seal_entity(
    keys: &Keys,
    identity: &ListIdentity,
    to: &str,
    cert: &sequoia_openpgp::Cert,
    headers: &[u8],
    info: &str,
    content: &[u8],
    now: DateTime<Utc>,
) -> Result<SealedCopy, SealError> {
    let message_id = identity.message_id();
    let envelope = Envelope {
        list: identity,
        to,
        message_id: &message_id,
        date: now,
    };
    let plaintext = inner_entity(&envelope, headers, info, content);
    let sealed = seal(&keys.list_key, cert, &plaintext, SystemTime::from(now))?;
    Ok(SealedCopy {
        bytes: outer_message(&envelope, &sealed.armored),
        plaintext,
        message_id,
        fingerprint: cert.fingerprint().to_hex(),
        subkey: sealed.subkey,
    })
}

/// The marks of one copy: its id in a header field, a visible line naming
/// the recipient, the invisible mark in the prose, trailers in patches.
fn mark(
    marks: &MarkSecret,
    member: &Member,
    copy_id: u64,
    outgoing: &Outgoing,
) -> (Vec<u8>, String, Vec<u8>) {
    let Some(prose) = &outgoing.prose else {
        return (
            outgoing.headers.clone(),
            outgoing.info.clone(),
            outgoing.content.clone(),
        );
    };
    let hex = copy_id_hex(copy_id);
    let mut headers = outgoing.headers.clone();
    headers.extend_from_slice(format!("X-Embargod-Copy: {hex}\r\n").as_bytes());
    let info = format!(
        "{}\n{}",
        outgoing.info,
        visible_line(&member.id, member.email.as_ref(), copy_id)
    );
    let mut edits = vec![(prose, mark_text(&prose.text, &marks.copy_key(copy_id)))];
    edits.extend(
        outgoing
            .patches
            .iter()
            .map(|slot| (slot, add_trailer(&slot.text, &hex))),
    );
    (headers, info, splice(&outgoing.content, &edits))
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
