//! The copies of one message: one inner entity per recipient, marked for
//! that recipient, signed and encrypted to them alone.
//!
//! A fan-out is decided once ([`Outgoing::into_job`], stored sealed with
//! the store key) and each copy is sealed only when the delivery worker
//! sends it ([`seal_copy`]), streamed from the job's shared content into
//! the transport's buffer: memory goes with the copies in flight, never
//! with the number of members, and no copy is stored as ciphertext. Copy
//! ids are keyed hashes of message, list and member, so a copy made again
//! after a crash carries the same marks and Message-ID.

use std::borrow::Cow;
use std::io::Write;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use openssl::sha::Sha256;

use crate::clock::Timestamp;
use crate::config::{ListName, Marks};
use crate::context::Origin;
use crate::keys::Keys;
use crate::mark::html::MarkableHtml;
use crate::mark::{
    apply, copy_id_hex, edits, patch::add_trailer, read, visible_line, CopyKey, Layout, MarkSecret,
    Reading,
};
use crate::mime::edit::{splice_pieces, TextSlot, Transfer};
use crate::mime::outbound::{
    inner_entity, inner_entity_around, outer_head, outer_message, outer_tail, ListHeader,
    ListIdentity,
};
use crate::pgp::seal::{seal, seal_into, SealError};
use crate::store::{Job, JobMeta, QueuedCopy};

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
    /// With invisible marks, `git format-patch` attachments get the
    /// copy's trailer too.
    pub mark_patches: bool,
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

/// How the copies of one message are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marking {
    /// Which marks: invisible, visible or none.
    pub marks: Marks,
    /// With invisible marks, patches get the copy's trailer too.
    pub patches: bool,
}

impl Marking {
    /// No marks: the daemon's own notices, which hold nothing to trace.
    pub const OFF: Marking = Marking {
        marks: Marks::Off,
        patches: false,
    };

    /// The marking `list` sets for its copies of `unwrapped`: ciphertext
    /// to other keys is passed on untouched, so it gets no invisible
    /// marks.
    pub fn for_list(
        list: &crate::config::List,
        unwrapped: &crate::mime::inbound::Unwrapped,
    ) -> Marking {
        let marks = match (list.marks, &unwrapped.encryption) {
            (Marks::Invisible, crate::mime::inbound::Encryption::ToOthers) => Marks::Visible,
            (marks, _) => marks,
        };
        Marking {
            marks,
            patches: list.mark_patches,
        }
    }
}

impl Outgoing {
    /// What goes to every recipient: `headers` (the header section the
    /// copies carry inside the encryption), the `info` part's text and
    /// the `content` entity, marked as `marking` says.
    pub fn new(
        headers: Vec<u8>,
        info: String,
        content: Vec<u8>,
        case: Option<String>,
        marking: Marking,
    ) -> Outgoing {
        let Marking {
            marks,
            patches: mark_patches,
        } = marking;
        // Marks change the signed text, so a sender's signature would no
        // longer verify in the copy; the daemon checked it, and the info
        // part says what it found. Without them the signature stays, for
        // members to check themselves.
        let content = if marks == Marks::Invisible {
            crate::mime::edit::unsigned(&content)
        } else {
            content
        };
        Outgoing::prepared(headers, info, content, case, marks, mark_patches)
    }

    /// Reads the parts that get marks out of a content already made
    /// ready by [`Outgoing::new`].
    fn prepared(
        headers: Vec<u8>,
        info: String,
        content: Vec<u8>,
        case: Option<String>,
        marks: Marks,
        mark_patches: bool,
    ) -> Outgoing {
        let invisible = marks == Marks::Invisible;
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
            mark_patches,
            prose,
            patches,
        }
    }

    /// The job that makes this message's copies to `list` when they are
    /// sent: spool entry `message`, decided at `date`.
    pub fn into_job(
        self,
        message: u64,
        list: ListName,
        origin: Origin,
        date: DateTime<Utc>,
    ) -> Job {
        let notice = origin == Origin::Notice;
        Job {
            meta: JobMeta {
                message,
                list,
                info: self.info,
                case: self.case,
                marks: self.marks,
                mark_patches: self.mark_patches,
                notice,
                date: Timestamp::from(date),
                headers_len: 0,
            },
            headers: self.headers,
            content: self.content,
        }
    }

    /// The message of a stored job, read again for its copies.
    pub fn from_job(job: Job) -> (JobMeta, Outgoing) {
        let meta = job.meta;
        let outgoing = Outgoing::prepared(
            job.headers,
            meta.info.clone(),
            job.content,
            meta.case.clone(),
            meta.marks,
            meta.mark_patches,
        );
        (meta, outgoing)
    }

    /// The content entity of copy `copy_id`, in pieces: every prose part
    /// with the copy's invisible marks, every patch with its trailer
    /// (only with invisible marks; otherwise the content as it is). The
    /// rest is borrowed from the shared content.
    pub fn marked_content(&self, secret: &MarkSecret, copy_id: u64) -> Vec<Cow<'_, [u8]>> {
        if self.prose.is_empty() && self.patches.is_empty() {
            return vec![Cow::Borrowed(&self.content)];
        }
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
        splice_pieces(&self.content, &edits, Transfer::Encrypted)
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

/// One recipient's sealed copy.
pub struct SealedCopy {
    /// The whole outgoing message (RFC 5322, PGP/MIME).
    pub bytes: Vec<u8>,
    /// SHA-256 of the signed inner entity, hex.
    pub plaintext_sha256: String,
    /// The copy's Message-ID.
    pub message_id: String,
    /// The recipient's certificate.
    pub fingerprint: String,
    /// The encryption subkey it went to (the newest).
    pub subkey: String,
}

/// Seals `copy` of a job's message (`meta`, `outgoing`) for its member as
/// of `now`: marked for them, signed by the list key, encrypted to their
/// key alone — the key in force now, checked now (one that expired or was
/// revoked since the fan-out was decided gets nothing). The copy's Date is
/// the decision's, the same in every attempt.
/// The plaintext is streamed from the shared content through the
/// encryption, and the armor straight into the message: only the finished
/// message (about 4/3 of the content) is held.
///
/// Errors: the member's key is missing or unusable now
/// ([`SealError::Key`]); OpenPGP failed.
pub fn seal_copy(
    keys: &Keys,
    secret: &MarkSecret,
    identity: &ListIdentity,
    meta: &JobMeta,
    outgoing: &Outgoing,
    copy: &QueuedCopy,
    now: DateTime<Utc>,
) -> Result<SealedCopy, SealError> {
    let cert = keys.member(&copy.member)?;
    let date = meta.date.to_datetime();
    let header = ListHeader {
        list: identity,
        to: &copy.to,
        message_id: &copy.message_id,
        date,
    };
    let (headers, info) = copy_header_and_info(outgoing, &copy.member, &copy.to, copy.id);
    let content = match outgoing.marks {
        Marks::Off => vec![Cow::Borrowed(&outgoing.content[..])],
        _ => outgoing.marked_content(secret, copy.id),
    };
    let ends_in_crlf = content
        .iter()
        .rev()
        .find(|piece| !piece.is_empty())
        .is_some_and(|piece| piece.ends_with(b"\r\n"));
    let (head, tail) =
        inner_entity_around(&header, &headers, &info, Transfer::Encrypted, ends_in_crlf);
    let size: usize =
        content.iter().map(|piece| piece.len()).sum::<usize>() + head.len() + tail.len();
    let (mut bytes, boundary) = outer_head(&header);
    bytes.reserve(armored_size(size));
    let mut plaintext_hash = Sha256::new();
    let subkey = seal_into(
        &keys.list_key,
        cert,
        SystemTime::from(now),
        CrlfWriter(&mut bytes),
        |literal| {
            for piece in std::iter::once(&head[..])
                .chain(content.iter().map(|piece| &piece[..]))
                .chain(std::iter::once(&tail[..]))
            {
                plaintext_hash.update(piece);
                literal.write_all(piece)?;
            }
            Ok(())
        },
    )?;
    outer_tail(&mut bytes, &boundary);
    Ok(SealedCopy {
        bytes,
        plaintext_sha256: crate::digest::hex(&plaintext_hash.finish()),
        message_id: copy.message_id.clone(),
        fingerprint: cert.fingerprint().to_hex(),
        subkey,
    })
}

/// An upper bound of the armored size of a sealed `plaintext` bytes: the
/// OpenPGP packets add at most 1 in 1024 and a few KiB (signature,
/// PKESK, chunk tags), base64 4 in 3, and each 64-character armor line
/// its CRLF. Reserved at once, so a large copy is never copied to grow.
fn armored_size(plaintext: usize) -> usize {
    let packets = plaintext + plaintext / 1024 + 4096;
    let base64 = packets.div_ceil(3) * 4;
    base64 + base64.div_ceil(64) * 2 + 1024
}

/// Writes ASCII armor (LF line ends) with CRLF line ends, as a MIME part
/// has them on the wire.
struct CrlfWriter<'a>(&'a mut Vec<u8>);

impl Write for CrlfWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = buf.split(|&b| b == b'\n');
        if let Some(first) = lines.next() {
            self.0.extend_from_slice(first);
        }
        for line in lines {
            self.0.extend_from_slice(b"\r\n");
            self.0.extend_from_slice(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A PGP/MIME message under `header`, signed by the list key and
/// encrypted to `cert` alone: the inner entity of `headers`, `info` and
/// `content`. For single messages (an answer to a reporter);
/// members' copies are [`seal_copy`]'s.
pub fn seal_entity(
    keys: &Keys,
    header: &ListHeader<'_>,
    cert: &sequoia_openpgp::Cert,
    headers: &[u8],
    info: &str,
    content: &[u8],
) -> Result<SealedCopy, SealError> {
    let plaintext = inner_entity(header, headers, info, content);
    let sealed = seal(
        &keys.list_key,
        cert,
        &plaintext,
        SystemTime::from(header.date),
    )?;
    Ok(SealedCopy {
        bytes: outer_message(header, &sealed.armored),
        plaintext_sha256: crate::digest::sha256_hex(&plaintext),
        message_id: header.message_id.to_string(),
        fingerprint: cert.fingerprint().to_hex(),
        subkey: sealed.subkey,
    })
}

/// The copy's own header field and info part: its id in a header field
/// and a visible line naming the recipient, unless the list's marks are
/// off.
fn copy_header_and_info(
    outgoing: &Outgoing,
    member: &str,
    email: &str,
    copy_id: u64,
) -> (Vec<u8>, String) {
    if outgoing.marks == Marks::Off {
        return (outgoing.headers.clone(), outgoing.info.clone());
    }
    let hex = copy_id_hex(copy_id);
    let mut headers = outgoing.headers.clone();
    headers.extend_from_slice(format!("X-Embargod-Copy: {hex}\r\n").as_bytes());
    let info = format!(
        "{}\n{}",
        outgoing.info,
        visible_line(member, email, copy_id)
    );
    (headers, info)
}
