//! Sealing the copies of one message: one inner entity per recipient,
//! marked for that recipient, signed and encrypted to them alone, on every
//! core at once.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use tracing::warn;

use crate::clock::to_millis;
use crate::config::{ListName, Marks, Member};
use crate::keys::Keys;
use crate::mark::html::MarkableHtml;
use crate::mark::{
    apply, copy_id_hex, edits, patch::add_trailer, read, visible_line, CopyKey, Layout, MarkSecret,
    Reading,
};
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
    /// How each copy is marked.
    pub marks: Marks,
    /// The text parts that carry each copy's invisible marks: every part a
    /// mail client shows, plain and HTML. Empty unless marks are
    /// invisible.
    pub prose: Vec<ProsePart>,
    /// `git format-patch` attachments that get an `Embargo-Copy:` trailer.
    pub patches: Vec<TextSlot>,
}

/// A text part read once, to be marked for each copy.
#[derive(Debug, Clone)]
pub struct ProsePart {
    slot: TextSlot,
    text: ProseText,
}

#[derive(Debug, Clone)]
enum ProseText {
    Plain(Reading, Layout),
    Html(MarkableHtml),
}

impl ProsePart {
    fn new(slot: TextSlot) -> Option<ProsePart> {
        let text = if slot.html {
            ProseText::Html(MarkableHtml::new(&slot.text)?)
        } else {
            ProseText::Plain(read(&slot.text, slot.layout()), slot.layout())
        };
        Some(ProsePart { slot, text })
    }

    /// The prose words, as [`crate::mark::trace`] reads them back.
    pub fn words(&self) -> &[crate::mark::Word] {
        match &self.text {
            ProseText::Plain(reading, _) => &reading.words,
            ProseText::Html(html) => html.words(),
        }
    }

    /// The part's text with the marks of `key` (`None`: left as it is).
    fn marked(&self, key: &CopyKey) -> Option<String> {
        match &self.text {
            ProseText::Plain(reading, layout) => Some(apply(
                &self.slot.text,
                &edits(&self.slot.text, reading, key, *layout),
            )),
            ProseText::Html(html) => html.mark(key),
        }
    }
}

/// The marks a list's copies of `unwrapped` get: ciphertext to other keys
/// is passed on untouched, so it gets no invisible marks.
pub fn marks_for(list: Marks, unwrapped: &crate::mime::inbound::Unwrapped) -> Marks {
    match (list, &unwrapped.encryption) {
        (Marks::Invisible, crate::mime::inbound::Encryption::ToOthers) => Marks::Visible,
        (marks, _) => marks,
    }
}

impl Outgoing {
    /// What goes to every recipient, marked as `marks` says;
    /// `mark_patches`: with invisible marks, patches get the copy's
    /// trailer too.
    pub fn new(
        headers: Vec<u8>,
        info: String,
        content: Vec<u8>,
        case: Option<String>,
        marks: Marks,
        mark_patches: bool,
    ) -> Outgoing {
        let invisible = marks == Marks::Invisible;
        // Marks change the signed text, so a sender's signature would no
        // longer verify in the copy; the daemon checked it, and the info
        // part says what it found. Without them the signature stays, for
        // members to check themselves.
        let content = if invisible {
            crate::mime::edit::unsigned(&content)
        } else {
            content
        };
        // An inline `git send-email` patch is a patch, not prose: it gets
        // the trailer (below), never look-alikes in its commit message.
        let prose = if invisible {
            crate::mime::edit::body_texts(&content)
                .into_iter()
                .filter(|slot| !crate::mark::patch::is_format_patch(&slot.text))
                .filter_map(ProsePart::new)
                .collect()
        } else {
            Vec::new()
        };
        let patches = if invisible && mark_patches {
            crate::mime::edit::text_parts(&content, crate::mark::patch::is_format_patch)
        } else {
            Vec::new()
        };
        Outgoing {
            headers,
            info,
            content,
            case,
            marks,
            prose,
            patches,
        }
    }

    /// The content entity of copy `copy_id`: every prose part with the
    /// copy's invisible marks, every patch with its trailer (only with
    /// invisible marks; otherwise the content as it is).
    pub fn marked_content(&self, secret: &MarkSecret, copy_id: u64) -> Vec<u8> {
        let key = secret.copy_key(copy_id);
        let hex = copy_id_hex(copy_id);
        let mut edits: Vec<(&TextSlot, String)> = self
            .prose
            .iter()
            .filter_map(|part| Some((&part.slot, part.marked(&key)?)))
            .collect();
        edits.extend(
            self.patches
                .iter()
                .map(|slot| (slot, add_trailer(&slot.text, &hex))),
        );
        if edits.is_empty() {
            return self.content.clone();
        }
        splice(&self.content, &edits)
    }

    /// The keyed shingles of every marked part, for the trace index.
    pub fn shingles(&self, secret: &MarkSecret) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .prose
            .iter()
            .flat_map(|part| crate::mark::shingles(secret, part.words()))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
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
/// the recipient, the invisible marks in every prose part, trailers in
/// patches — as far as the list's `marks` setting goes.
fn mark(
    marks: &MarkSecret,
    member: &Member,
    copy_id: u64,
    outgoing: &Outgoing,
) -> (Vec<u8>, String, Vec<u8>) {
    if outgoing.marks == Marks::Off {
        return (
            outgoing.headers.clone(),
            outgoing.info.clone(),
            outgoing.content.clone(),
        );
    }
    let hex = copy_id_hex(copy_id);
    let mut headers = outgoing.headers.clone();
    headers.extend_from_slice(format!("X-Embargod-Copy: {hex}\r\n").as_bytes());
    let info = format!(
        "{}\n{}",
        outgoing.info,
        visible_line(&member.id, member.email.as_ref(), copy_id)
    );
    (headers, info, outgoing.marked_content(marks, copy_id))
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
