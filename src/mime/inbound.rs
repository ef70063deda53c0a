//! Reading what arrives: the checks made before a message is accepted,
//! and the unwrapping of its OpenPGP layers before fan-out.

use std::time::SystemTime;

use mail_parser::{HeaderName, Message, MessagePart, MimeHeaders, PartType};

use crate::pgp::open::{open, verify_detached, OpenError, Signatures, Signers};
use sequoia_openpgp::Cert;

/// Deepest MIME nesting accepted. Real mail stays under ten; hundreds of
/// levels only serve to hurt the readers' mail clients.
pub const MAX_DEPTH: usize = 100;
/// Most MIME parts accepted in one message.
pub const MAX_PARTS: usize = 10_000;

/// Why a message is refused at the end of DATA; each maps to an LMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum Refusal {
    #[error("empty message")]
    Empty,
    #[error("header section over {0} bytes")]
    HeaderTooLarge(usize),
    #[error("not an Internet message: no header section")]
    NoHeader,
    #[error("no From header field")]
    NoFrom,
    #[error("MIME structure nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("more than {MAX_PARTS} MIME parts")]
    TooManyParts,
}

impl Refusal {
    /// A short name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty",
            Refusal::HeaderTooLarge(_) => "header-too-large",
            Refusal::NoHeader => "no-header",
            Refusal::NoFrom => "no-from",
            Refusal::TooDeep => "too-deep",
            Refusal::TooManyParts => "too-many-parts",
        }
    }
}

/// Cheap structural checks before a message is accepted: what fails here
/// is refused over LMTP (the sender hears of it) instead of being spooled.
pub fn precheck(raw: &[u8], max_header_size: usize) -> Result<(), Refusal> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::Empty);
    }
    let header_len = header_section_len(raw);
    if header_len > max_header_size {
        return Err(Refusal::HeaderTooLarge(max_header_size));
    }
    let message = super::parse(raw).ok_or(Refusal::NoHeader)?;
    if message.header(HeaderName::From).is_none() {
        return Err(Refusal::NoFrom);
    }
    check_structure(&message, 0)
}

/// Length of the header section: up to the first empty line, or all of it.
fn header_section_len(raw: &[u8]) -> usize {
    let mut line_start = 0;
    for (i, &byte) in raw.iter().enumerate() {
        if byte == b'\n' {
            let line = &raw[line_start..i];
            if line.is_empty() || line == b"\r" {
                return line_start;
            }
            line_start = i + 1;
        }
    }
    raw.len()
}

fn check_structure(message: &Message<'_>, outer_depth: usize) -> Result<(), Refusal> {
    if message.parts.len() > MAX_PARTS {
        return Err(Refusal::TooManyParts);
    }
    let mut stack = vec![(0u32, outer_depth)];
    while let Some((id, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(Refusal::TooDeep);
        }
        match message.parts.get(id as usize).map(|p| &p.body) {
            Some(PartType::Multipart(children)) => {
                stack.extend(children.iter().map(|&child| (child, depth + 1)))
            }
            // Bounded: the depth check above stops at MAX_DEPTH.
            Some(PartType::Message(inner)) => check_structure(inner, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

/// How the message reached the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// In plaintext.
    None,
    /// Encrypted to the list key and decrypted.
    ToList,
    /// Some of it was encrypted to the list key and is decrypted in place:
    /// armored blocks in a text (a greeting, then the report), encrypted
    /// attachments, a wrapped PGP/MIME part, a forwarded message. Each is
    /// marked as such; the rest crossed the network in plaintext.
    Partly,
    /// Encrypted to other keys: passed on as received, flagged.
    ToOthers,
}

/// A message unwrapped for fan-out.
#[derive(Debug)]
pub struct Unwrapped {
    /// Raw header lines (name, value and line end) of the fields carried
    /// into each copy: From, To, Cc, Subject, Date, Message-ID, threading.
    pub headers: Vec<u8>,
    /// The sender as written in the From field (decoded), for the info part.
    pub sender: String,
    /// The Subject, decoded (from the protected headers when there are).
    pub subject: String,
    /// The member whose good signature covers `subject` and the protected
    /// header fields in `headers`: RFC 9788 protected headers inside the
    /// signed part of a multipart/signed, or the header of an entity signed
    /// as a whole inside its encryption. `None` for the outer header
    /// section, which anyone on the mail path can edit. Only the signature
    /// that authorises a post may vouch for its Subject.
    pub headers_signer: Option<String>,
    /// The address in the From field.
    pub from_address: Option<String>,
    /// Message-ID, In-Reply-To and References, for threading.
    pub message_ids: Threading,
    /// How it reached the list.
    pub encryption: Encryption,
    /// Every signature found over the message as a whole, checked.
    pub signatures: Signatures,
    /// How parts that are not the message as a whole arrived, one line per
    /// part: signatures that cover only some parts (an inline-signed text
    /// next to an unsigned attachment) and attached messages decrypted
    /// here (a forwarded report). For the info part and the reasons a post
    /// is held; they authorise nothing.
    pub part_notes: Vec<String>,
    /// The content as one MIME entity: its Content-* header fields, an
    /// empty line, the body.
    pub content: Vec<u8>,
}

/// The message's place in a thread.
#[derive(Debug, Clone, Default)]
pub struct Threading {
    /// The Message-ID, with angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To and References, nearest first.
    pub refers_to: Vec<String>,
}

impl Threading {
    fn of(message: &Message<'_>) -> Threading {
        let ids = |name: HeaderName<'_>| -> Vec<String> {
            message
                .header(name)
                .map(|value| match value {
                    mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
                    mail_parser::HeaderValue::TextList(list) => {
                        list.iter().map(|t| t.to_string()).collect()
                    }
                    _ => Vec::new(),
                })
                .unwrap_or_default()
        };
        let mut refers_to = ids(HeaderName::InReplyTo);
        refers_to.extend(ids(HeaderName::References).into_iter().rev());
        Threading {
            message_id: message.message_id().map(str::to_string),
            refers_to,
        }
    }
}

/// Why a message cannot be forwarded; it goes to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum UnwrapError {
    #[error("unparsable message")]
    Unparsable,
    #[error("PGP/MIME message without an encrypted part")]
    NoEncryptedPart,
    #[error("{0}")]
    Pgp(OpenError),
    #[error("what its S/MIME or OpenPGP parts hold: {0}")]
    Structure(Refusal),
}

/// Header fields copied from the original into each copy's protected
/// headers.
const CARRIED: &[&str] = &[
    "From",
    "Sender",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
];

/// Decrypts (with `key`: the list key, or in tests and the demo a
/// member's key) and verifies as far as it allows. `limit` caps the
/// decrypted size.
pub fn unwrap(
    raw: &[u8],
    key: &Cert,
    signers: &Signers,
    limit: usize,
    time: SystemTime,
) -> Result<Unwrapped, UnwrapError> {
    let (smime, mut notes) = match opaque_smime(raw) {
        Some((unwrapped, note)) => (Some(unwrapped), vec![note]),
        None => (None, Vec::new()),
    };
    let raw = smime.as_deref().unwrap_or(raw);
    if smime.is_some() {
        check_built(raw)?;
    }
    let opened = std::cell::Cell::new(0);
    let keys = Opener {
        key,
        signers,
        limit,
        time,
        opened: &opened,
    };
    let (opened, attached) = open_attached(raw, keys);
    notes.extend(attached);
    if let Some(opened) = &opened {
        check_built(opened)?;
    }
    // The shape was decided on the message as it came: what was spliced
    // in is content, never a reason to read the whole differently.
    let shape = if opened.is_some() {
        Shape::Spliced
    } else {
        Shape::AsItCame
    };
    let mut unwrapped = unwrap_one(opened.as_deref().unwrap_or(raw), keys, shape)?;
    if opened.is_some() && unwrapped.encryption == Encryption::None {
        // Parts of it were encrypted to the list: "NOT encrypted" would
        // be untrue. The part lines say which.
        unwrapped.encryption = Encryption::Partly;
    }
    unwrapped.part_notes.extend(notes);
    Ok(unwrapped)
}

/// Whether [`unwrap_one`] may read a message as Exchange's mixed-up
/// PGP/MIME: only as it came, not after payloads were spliced into it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The message as it arrived (or an attached message as it was).
    AsItCame,
    /// Payloads decrypted here were spliced into it.
    Spliced,
}

/// The limits [`precheck`] puts on what arrives, on an entity built here
/// (unwrapped S/MIME, spliced payloads): no more parts, no deeper nesting.
fn check_built(raw: &[u8]) -> Result<(), UnwrapError> {
    let message = super::parse(raw).ok_or(UnwrapError::Unparsable)?;
    check_structure(&message, 0).map_err(UnwrapError::Structure)
}

/// A message whose body is S/MIME opaque signed-data (Outlook's
/// `smime.p7m`): the same message with the signed entity as its body, and
/// the note on the signature ([`super::smime`]).
fn opaque_smime(raw: &[u8]) -> Option<(Vec<u8>, String)> {
    let message = super::parse(raw)?;
    let root = message.root_part();
    let ct = root.content_type()?;
    let pkcs7 = ct.ctype().eq_ignore_ascii_case("application")
        && ct.subtype().is_some_and(|s| {
            s.eq_ignore_ascii_case("pkcs7-mime") || s.eq_ignore_ascii_case("x-pkcs7-mime")
        })
        && ct
            .attribute("smime-type")
            .is_none_or(|t| t.eq_ignore_ascii_case("signed-data"));
    if !pkcs7 {
        return None;
    }
    let (entity, note) = super::smime::opaque(root.contents())?;
    let mut out = fields(raw, message.headers(), false);
    out.extend_from_slice(&crlf(&entity));
    Some((out, note))
}

/// What opening a message's OpenPGP payloads needs: the key to decrypt
/// with (the list key), the certificates signatures are checked against,
/// the most plaintext one payload may give (bytes), and the time.
#[derive(Clone, Copy)]
struct Opener<'a> {
    key: &'a Cert,
    signers: &'a Signers,
    limit: usize,
    time: SystemTime,
    /// OpenPGP messages opened so far for this message, successful or
    /// not: each can cost up to `limit` bytes of decompression.
    opened: &'a std::cell::Cell<usize>,
}

/// Most OpenPGP messages opened for one message: real mail has a few.
const MAX_PAYLOADS: usize = 32;

impl Opener<'_> {
    /// [`open`] of `data` with these keys; refused past [`MAX_PAYLOADS`].
    fn open(&self, data: &[u8]) -> Result<crate::pgp::open::Opened, OpenError> {
        if self.opened.get() >= MAX_PAYLOADS {
            return Err(OpenError::Malformed(format!(
                "more than {MAX_PAYLOADS} OpenPGP messages in one message"
            )));
        }
        self.opened.set(self.opened.get() + 1);
        open(self.key, data, self.signers, self.limit, self.time)
    }

    /// The same, allowing at most `limit` bytes of plaintext.
    fn limited(&self, limit: usize) -> Self {
        Opener { limit, ..*self }
    }
}

/// OpenPGP payloads inside a message that is not encrypted or signed as a
/// whole, decrypted in place: attached messages (`message/rfc822`, a
/// forwarded report), `multipart/encrypted` below the top (PGP/MIME that a
/// gateway wrapped with its footer), and encrypted attachments (`*.pgp`,
/// `*.gpg`, `*.asc`, `application/pgp-encrypted`, or an armored message in
/// `application/octet-stream`; Thunderbird's and K-9's per-attachment
/// encryption). Returns `raw` with each replaced by what it holds, and a
/// line per payload saying how it arrived; `None` when there is none. One
/// level deep: what an attached message attaches stays as it is.
fn open_attached(raw: &[u8], keys: Opener<'_>) -> (Option<Vec<u8>>, Vec<String>) {
    let Some(message) = super::parse(raw) else {
        return (None, Vec::new());
    };
    // A message encrypted or signed as a whole is read as such; nothing
    // inside a signed message may change.
    if exchange_mixed_up(&message) || kind(message.root_part()) != Kind::Other {
        return (None, Vec::new());
    }
    let mut replacements: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut notes = Vec::new();
    // One budget for all payloads together: many small compressed
    // attachments must not add up to a bomb.
    let mut budget = keys.limit;
    let boundaries: Vec<Vec<u8>> = message
        .parts
        .iter()
        .filter_map(|part| part.content_type()?.attribute("boundary"))
        .map(|b| format!("--{b}").into_bytes())
        .collect();
    for part in message.parts.iter().skip(1) {
        let inside = |at: usize| replacements.iter().any(|(s, e, _)| *s <= at && at < *e);
        if inside(part.offset_header as usize) || budget == 0 {
            continue;
        }
        let keys = keys.limited(budget);
        let opened = match &part.body {
            PartType::Message(_) => open_attached_message(raw, part, keys),
            PartType::Multipart(children) if kind(part) == Kind::PgpMimeEncrypted => {
                open_nested_pgp_mime(&message, children, keys).map(|(entity, signatures)| {
                    let range = (part.offset_header as usize, part.offset_end as usize);
                    let note = format!(
                        "a PGP/MIME part inside the message (wrapped on the way, e.g. with \
                             a footer): encrypted to the list key and decrypted here; {signatures}"
                    );
                    (range, entity, note)
                })
            }
            PartType::Multipart(_) => None,
            PartType::Text(_) if part.attachment_name().is_none() => {
                open_inline_text(raw, part, keys)
            }
            _ => open_encrypted_attachment(part, keys),
        };
        if let Some(((start, end), mut replacement, note)) = opened {
            budget = budget.saturating_sub(replacement.len());
            // Decrypted bytes must stay inside their part: anyone can
            // encrypt to the list key, and a boundary line in them would
            // rewrite the message around them.
            if boundaries.iter().any(|b| find(&replacement, b).is_some()) {
                notes.push(format!(
                    "{note} — NOT opened in place: its content holds this message's MIME \
                     boundaries; passed on as it came"
                ));
                continue;
            }
            // The line end before the next boundary belongs to the boundary.
            while replacement.ends_with(b"\r\n") {
                replacement.truncate(replacement.len() - 2);
            }
            notes.push(note);
            replacements.push((start, end, replacement));
        }
    }
    if replacements.is_empty() {
        return (None, notes);
    }
    replacements.sort_by_key(|(start, _, _)| *start);
    let mut out = raw.to_vec();
    for (start, end, replacement) in replacements.into_iter().rev() {
        out.splice(start..end, replacement);
    }
    (Some(out), notes)
}

/// What [`open_attached`] replaces: the byte range, the new bytes, and
/// the note for the info part.
type Opened = ((usize, usize), Vec<u8>, String);

/// An attached message encrypted to the list key: its header fields and
/// decrypted content, in place of its body.
fn open_attached_message(raw: &[u8], part: &MessagePart<'_>, keys: Opener<'_>) -> Option<Opened> {
    // Only an attachment as it is (7bit/8bit) can be replaced in place.
    let encoded = part.content_transfer_encoding().is_some_and(|e| {
        !["7bit", "8bit", "binary"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    });
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let inner_raw = raw.get(start..end).filter(|_| !encoded)?;
    let inner = unwrap_one(inner_raw, keys, Shape::AsItCame).ok()?;
    if !matches!(inner.encryption, Encryption::ToList | Encryption::Partly) {
        return None;
    }
    let name = part
        .attachment_name()
        .map(super::one_line)
        .unwrap_or_else(|| "(no name)".into());
    let note = format!(
        "attached message {name} (Subject {:?}): encrypted to the list key and decrypted \
         here; {}",
        inner.subject, inner.signatures
    );
    let mut opened = inner.headers;
    opened.extend_from_slice(b"MIME-Version: 1.0\r\n");
    opened.extend_from_slice(&inner.content);
    Some(((start, end), opened, note))
}

/// A `multipart/encrypted` part below the top: its decrypted entity and
/// the signatures inside.
fn open_nested_pgp_mime(
    message: &Message<'_>,
    children: &[u32],
    keys: Opener<'_>,
) -> Option<(Vec<u8>, Signatures)> {
    let ciphertext = children
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .find(|part| part.contents().trim_ascii_start().starts_with(ARMOR_BEGIN))?;
    let opened = keys.open(ciphertext.contents()).ok()?;
    opened
        .encrypted
        .then(|| (canonical_entity(&opened.plaintext), opened.signatures))
}

/// A text part (not the whole message) with armored blocks encrypted to
/// the list key: decrypted in place, as [`inline_blocks`] does for a text
/// body (Enigmail's inline mode next to attachments).
fn open_inline_text(raw: &[u8], part: &MessagePart<'_>, keys: Opener<'_>) -> Option<Opened> {
    let inline = inline_blocks(raw, part, keys).ok()??;
    // Signed-only text parts are reported by `signed_parts`.
    let entity = inline.encrypted.then_some(inline.entity)?;
    let mut note = "text part: armored blocks in it were encrypted to the list key and are \
                    decrypted here, between lines that say so"
        .to_string();
    for signed in inline.notes {
        note.push_str(&format!("; {signed}"));
    }
    Some((
        (part.offset_header as usize, part.offset_end as usize),
        entity,
        note,
    ))
}

/// Suffixes of attachments that OpenPGP encrypted.
const ENCRYPTED_SUFFIXES: &[&str] = &[".pgp", ".gpg", ".asc"];

/// An attachment encrypted to the list key: the decrypted file as an
/// attachment named without the `.pgp`/`.gpg`/`.asc` suffix.
fn open_encrypted_attachment(part: &MessagePart<'_>, keys: Opener<'_>) -> Option<Opened> {
    use base64::Engine;
    let name = part.attachment_name().map(super::one_line);
    let suffix = name.as_deref().and_then(|n| {
        ENCRYPTED_SUFFIXES
            .iter()
            .find(|s| n.to_ascii_lowercase().ends_with(*s))
    });
    let typed = part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("application")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("pgp-encrypted")
                    || (s.eq_ignore_ascii_case("octet-stream")
                        && part.contents().trim_ascii_start().starts_with(ARMOR_BEGIN))
            })
    });
    if suffix.is_none() && !typed {
        return None;
    }
    let opened = keys.open(part.contents()).ok()?;
    if !opened.encrypted {
        return None;
    }
    let shown = name.clone().unwrap_or_else(|| "(no name)".into());
    let file = match suffix {
        Some(suffix) => shown[..shown.len() - suffix.len()].to_string(),
        None => format!("{shown}.decrypted"),
    }
    .replace(['"', '\\'], "_");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&opened.plaintext);
    let mut entity = format!(
        "Content-Type: application/octet-stream; name=\"{file}\"\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(76) {
        entity.extend_from_slice(line);
        entity.extend_from_slice(b"\r\n");
    }
    let note = format!(
        "attachment {shown}: encrypted to the list key, decrypted here as {file}; {}",
        opened.signatures
    );
    Some((
        (part.offset_header as usize, part.offset_end as usize),
        entity,
        note,
    ))
}

/// [`unwrap`] for one message, its attachments as they are.
fn unwrap_one(raw: &[u8], keys: Opener<'_>, shape: Shape) -> Result<Unwrapped, UnwrapError> {
    let message = super::parse(raw).ok_or(UnwrapError::Unparsable)?;
    let mut headers = carried_headers(&message);
    let sender = message
        .from()
        .and_then(|from| from.first())
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(name), Some(address)) => format!("{name} <{address}>"),
            (None, Some(address)) => address.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => "(unknown)".into(),
        })
        .map(|sender| super::one_line(&sender))
        .unwrap_or_else(|| "(unknown)".into());
    let mut subject = message.subject().unwrap_or_default().to_string();
    // Which signatures cover the header fields: those at the OpenPGP
    // layer over the whole entity, or the detached one over its signed part.
    let mut headers_signed_by: Option<Signatures> = None;
    let mut part_notes = Vec::new();
    let from_address = message
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address())
        .map(str::to_string);
    let message_ids = Threading::of(&message);
    let root = message.root_part();
    let original_content = entity_bytes(raw, root);

    let shape = if shape == Shape::AsItCame && exchange_mixed_up(&message) {
        Kind::PgpMimeEncrypted
    } else {
        kind(root)
    };
    let (encryption, signatures, content) = match shape {
        Kind::PgpMimeEncrypted => {
            let armored = encrypted_part(&message).ok_or(UnwrapError::NoEncryptedPart)?;
            match keys.open(armored) {
                Ok(opened) => {
                    let opened_encrypted = opened.encrypted;
                    let mut signatures = opened.signatures;
                    let decrypted = canonical_entity(&opened.plaintext);
                    let mut content = None;
                    if let Some(inner) = super::parse(&decrypted) {
                        // Protected headers of the sender override the
                        // outer, possibly obscured, ones. A signature over
                        // the whole plaintext covers them.
                        let protected = carried_headers(&inner);
                        if !protected.is_empty() {
                            headers = merge_headers(&headers, &protected);
                        }
                        if let Some(inner_subject) = inner.subject() {
                            subject = inner_subject.to_string();
                            headers_signed_by = Some(signatures.clone());
                        }
                        if kind(inner.root_part()) == Kind::PgpMimeSigned {
                            let (checks, signed_entity) =
                                detached(&inner, &decrypted, keys.signers, keys.time);
                            if let Some(signed) = signed_protected_headers(&inner) {
                                headers = merge_headers(&headers, &signed.fields);
                                subject = signed.subject;
                                headers_signed_by = Some(checks.clone());
                            }
                            signatures.0.extend(checks.0);
                            content = signed_entity;
                        }
                    }
                    let content = content.unwrap_or(decrypted);
                    (encrypted(&opened_encrypted), signatures, content)
                }
                Err(OpenError::NotForList) => (
                    Encryption::ToOthers,
                    Signatures::default(),
                    original_content,
                ),
                Err(e) => return Err(UnwrapError::Pgp(e)),
            }
        }
        Kind::PgpMimeSigned => {
            // What is acted on and passed on is the signed entity exactly
            // as verified, never a second parse of the whole message.
            let (signatures, signed_entity) = detached(&message, raw, keys.signers, keys.time);
            if let Some(signed) = signed_protected_headers(&message) {
                headers = merge_headers(&headers, &signed.fields);
                subject = signed.subject;
                headers_signed_by = Some(signatures.clone());
            }
            (
                Encryption::None,
                signatures,
                signed_entity.unwrap_or(original_content),
            )
        }
        Kind::Text => match inline_pgp(raw, root) {
            Some(InlinePgp::Encrypted(inline)) => match keys.open(&inline.bytes) {
                Ok(opened) => (
                    encrypted(&opened.encrypted),
                    opened.signatures,
                    text_entity(&opened.plaintext, inline.charset.as_deref()),
                ),
                Err(OpenError::NotForList) => (
                    Encryption::ToOthers,
                    Signatures::default(),
                    original_content,
                ),
                Err(e) => return Err(UnwrapError::Pgp(e)),
            },
            Some(InlinePgp::ClearSigned(inline)) => {
                // The text Sequoia verified comes out of its armor, as for
                // PGP/MIME: its keyword lines count, the copies' marks
                // would break the signature anyway, and the info part
                // reports this check. Nothing outside what was verified is
                // ever taken for signed text. The signature is over the
                // bytes in the part's own charset, so those are checked.
                match keys.open(&inline.bytes) {
                    Ok(opened) => (
                        Encryption::None,
                        opened.signatures,
                        text_entity(&opened.plaintext, inline.charset.as_deref()),
                    ),
                    Err(e) => (
                        Encryption::None,
                        Signatures(vec![crate::pgp::open::SignatureCheck::Bad {
                            reason: e.to_string(),
                        }]),
                        original_content,
                    ),
                }
            }
            None => match inline_blocks(raw, root, keys)? {
                Some(inline) => {
                    part_notes.extend(inline.notes);
                    let encryption = if inline.encrypted {
                        Encryption::Partly
                    } else {
                        Encryption::None
                    };
                    (encryption, Signatures::default(), inline.entity)
                }
                None => (Encryption::None, Signatures::default(), original_content),
            },
        },
        Kind::Other => {
            part_notes = signed_parts(&message, keys);
            part_notes.extend(detached_smime(&message, raw));
            (Encryption::None, Signatures::default(), original_content)
        }
    };

    // Header fields count as signed only under a member's good signature.
    let headers_signer = headers_signed_by
        .as_ref()
        .and_then(|sigs| sigs.good().next().map(|sig| sig.member.to_string()));
    Ok(Unwrapped {
        headers,
        sender,
        subject: super::one_line(&subject),
        headers_signer,
        part_notes,
        from_address,
        message_ids,
        encryption,
        signatures,
        content,
    })
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    PgpMimeEncrypted,
    PgpMimeSigned,
    Text,
    Other,
}

fn kind(part: &MessagePart<'_>) -> Kind {
    let Some(ct) = part.content_type() else {
        return Kind::Text;
    };
    let ctype = ct.ctype();
    let subtype = ct.subtype().unwrap_or_default();
    let protocol = ct.attribute("protocol").unwrap_or_default();
    if ctype.eq_ignore_ascii_case("multipart") {
        if subtype.eq_ignore_ascii_case("encrypted")
            && protocol.eq_ignore_ascii_case("application/pgp-encrypted")
        {
            return Kind::PgpMimeEncrypted;
        }
        if subtype.eq_ignore_ascii_case("signed")
            && protocol.eq_ignore_ascii_case("application/pgp-signature")
        {
            return Kind::PgpMimeSigned;
        }
    }
    if ctype.eq_ignore_ascii_case("text") && subtype.eq_ignore_ascii_case("plain") {
        return Kind::Text;
    }
    Kind::Other
}

/// PGP/MIME after Exchange or Microsoft 365 rewrote it (the "mixed-up"
/// shape that Thunderbird and Delta Chat repair): `multipart/mixed` whose
/// parts are the `application/pgp-encrypted` version part, the
/// `application/octet-stream` ciphertext, and nothing else but empty text
/// parts. Read as the `multipart/encrypted` it was.
fn exchange_mixed_up(message: &Message<'_>) -> bool {
    let root = message.root_part();
    let mixed = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("mixed"))
    });
    let Some(children) = root.sub_parts().filter(|_| mixed) else {
        return false;
    };
    let typed = |part: &MessagePart<'_>, subtype: &str| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("application")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
        })
    };
    let (mut version, mut ciphertext) = (false, false);
    for part in children
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        if typed(part, "pgp-encrypted") {
            version = true;
        } else if typed(part, "octet-stream")
            && part
                .contents()
                .trim_ascii_start()
                .starts_with(b"-----BEGIN PGP MESSAGE-----")
        {
            ciphertext = true;
        } else if !part
            .text_contents()
            .is_some_and(|text| text.trim().is_empty())
        {
            return false;
        }
    }
    version && ciphertext
}

/// The second part of a PGP/MIME encrypted message: the ciphertext.
fn encrypted_part<'m>(message: &'m Message<'_>) -> Option<&'m [u8]> {
    let children = message.root_part().sub_parts()?;
    children
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .find(|part| {
            part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("application")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("octet-stream"))
            })
        })
        .map(|part| part.contents())
}

/// Checks a multipart/signed entity in `message` (parsed from `raw`):
/// exactly two parts, the first, with CRLF line ends, against the detached
/// signature (RFC 3156 §5). Returns the signatures and the signed entity
/// exactly as verified.
fn detached(
    message: &Message<'_>,
    raw: &[u8],
    signers: &Signers,
    time: SystemTime,
) -> (Signatures, Option<Vec<u8>>) {
    let children = message.root_part().sub_parts().unwrap_or_default();
    let parts: Vec<&MessagePart<'_>> = children
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .collect();
    let [signed, signature] = parts[..] else {
        return (
            Signatures(vec![crate::pgp::open::SignatureCheck::Bad {
                reason: format!("multipart/signed with {} parts instead of two", parts.len()),
            }]),
            None,
        );
    };
    let signed_bytes = crlf(&raw[signed.offset_header as usize..signed.offset_end as usize]);
    let signatures = verify_detached(&signed_bytes, signature.contents(), signers, time);
    let mut entity = signed_bytes;
    entity.extend_from_slice(b"\r\n");
    (signatures, Some(entity))
}

/// [`Encryption::ToList`] when the OpenPGP message really was encrypted;
/// a signed-only message in an encrypted-looking wrapper was not.
fn encrypted(encrypted: &bool) -> Encryption {
    if *encrypted {
        Encryption::ToList
    } else {
        Encryption::None
    }
}

enum InlinePgp {
    Encrypted(Inline),
    ClearSigned(Inline),
}

/// An inline PGP text body: its bytes after the transfer encoding is
/// undone, in the part's own charset (what was encrypted or signed), and
/// that charset's label.
struct Inline {
    bytes: Vec<u8>,
    charset: Option<String>,
}

/// A text/plain body that is an inline PGP message (`part` of `raw`).
fn inline_pgp(raw: &[u8], part: &MessagePart<'_>) -> Option<InlinePgp> {
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    // A large attachment is not decoded whole only to learn that it is
    // not armor: its first bytes tell.
    let encoding = part.content_transfer_encoding();
    let head = transfer_decoded(&encoded_head(body, encoding), encoding);
    let head = &head[head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len())..];
    if body.len() > HEAD && !(head.is_empty() || head.starts_with(b"-----BEGIN PGP ")) {
        return None;
    }
    let bytes = transfer_decoded(body, part.content_transfer_encoding());
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let bytes = bytes[start..].to_vec();
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_string);
    let inline = Inline { bytes, charset };
    // One armored message and nothing else; text around a block is read
    // by `inline_blocks`, so that none of it is lost.
    let alone = find(&inline.bytes, ARMOR_END).is_some_and(|end| {
        inline.bytes[end + ARMOR_END.len()..]
            .iter()
            .all(u8::is_ascii_whitespace)
    });
    let signed_alone = find(&inline.bytes, SIGNATURE_END).is_some_and(|end| {
        inline.bytes[end + SIGNATURE_END.len()..]
            .iter()
            .all(u8::is_ascii_whitespace)
    });
    if inline.bytes.starts_with(ARMOR_BEGIN) && alone {
        Some(InlinePgp::Encrypted(inline))
    } else if inline.bytes.starts_with(CLEARSIGN_BEGIN) && signed_alone {
        Some(InlinePgp::ClearSigned(inline))
    } else {
        None
    }
}

/// Bytes of a body enough to see how it begins.
const HEAD: usize = 4096;

/// About the first [`HEAD`] bytes of an encoded `body`, cut where they
/// decode whole: for base64 after a multiple of four characters (lines
/// may be of any length), else at a line end.
fn encoded_head<'b>(body: &'b [u8], encoding: Option<&str>) -> std::borrow::Cow<'b, [u8]> {
    if body.len() <= HEAD {
        return body.into();
    }
    if encoding.is_some_and(|e| e.eq_ignore_ascii_case("base64")) {
        let mut letters: Vec<u8> = body[..HEAD]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        letters.truncate(letters.len() / 4 * 4);
        return letters.into();
    }
    let cut = body[..HEAD]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(HEAD, |at| at + 1);
    body[..cut].into()
}

/// `body` with its Content-Transfer-Encoding (RFC 2045 §6) undone:
/// quoted-printable and base64 decoded, anything else as it is.
fn transfer_decoded(body: &[u8], encoding: Option<&str>) -> Vec<u8> {
    use base64::Engine;
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("quoted-printable") => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .unwrap_or_else(|_| body.to_vec())
        }
        Some("base64") => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// Protected header fields (RFC 9788) on the signed part of the
/// multipart/signed `message`: the carried fields and the Subject among
/// them, covered by the detached signature.
struct SignedHeaders {
    fields: Vec<u8>,
    subject: String,
}

fn signed_protected_headers(message: &Message<'_>) -> Option<SignedHeaders> {
    let first = *message.root_part().sub_parts()?.first()?;
    let part = message.parts.get(first as usize)?;
    let subject = part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::Subject)?
        .value
        .as_text()?
        .to_string();
    Some(SignedHeaders {
        fields: carried_fields(message.raw_message.as_ref(), &part.headers),
        subject,
    })
}

/// The raw header lines of the carried fields, in their original order.
fn carried_headers(message: &Message<'_>) -> Vec<u8> {
    carried_fields(message.raw_message.as_ref(), message.headers())
}

/// The carried fields among `fields` (parsed from `raw`), raw.
fn carried_fields(raw: &[u8], fields: &[mail_parser::Header<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for header in fields {
        if CARRIED
            .iter()
            .any(|name| header.name.as_str().eq_ignore_ascii_case(name))
        {
            let line = &raw[header.offset_field as usize..header.offset_end as usize];
            out.extend_from_slice(&crlf(line));
            if !out.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

/// `block` with its `name` field set to `value`, encoded and folded by
/// [`super::HeaderSection`]; the other fields stay byte for byte.
pub fn with_header(block: &[u8], name: &'static str, value: &str) -> Vec<u8> {
    merge_headers(
        block,
        &super::HeaderSection::new().text(name, value).to_bytes(),
    )
}

/// `base` with every field that `over` has replaced by `over`'s lines.
fn merge_headers(base: &[u8], over: &[u8]) -> Vec<u8> {
    let names = |block: &[u8]| -> Vec<String> {
        header_lines(block)
            .iter()
            .filter_map(|line| field_name(line))
            .collect()
    };
    let overridden = names(over);
    let mut out: Vec<u8> = header_lines(base)
        .into_iter()
        .filter(|line| field_name(line).is_none_or(|name| !overridden.contains(&name)))
        .flatten()
        .copied()
        .collect();
    out.extend_from_slice(over);
    out
}

/// Splits a header block into fields, each with its continuation lines.
fn header_lines(block: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < block.len() {
        if block[i] == b'\n' {
            let next = block.get(i + 1);
            if !matches!(next, Some(b' ' | b'\t')) {
                fields.push(&block[start..=i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < block.len() {
        fields.push(&block[start..]);
    }
    fields
}

fn field_name(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some(
        String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The raw lines (CRLF) of the `Content-*` fields among `headers` when
/// `content`, of all the others otherwise.
fn fields(raw: &[u8], headers: &[mail_parser::Header<'_>], content: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for header in headers {
        let is_content = header
            .name
            .as_str()
            .to_ascii_lowercase()
            .starts_with("content-");
        if is_content == content {
            out.extend_from_slice(&crlf(
                &raw[header.offset_field as usize..header.offset_end as usize],
            ));
        }
    }
    out
}

/// The root entity of a message: its Content-* fields (RFC 2045's
/// default type made explicit when absent) and its body.
fn entity_bytes(raw: &[u8], root: &MessagePart<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if root.content_type().is_none() {
        out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    out.extend_from_slice(&fields(raw, &root.headers, true));
    out.extend_from_slice(b"\r\n");
    let body = raw
        .get(root.offset_body as usize..root.offset_end as usize)
        .unwrap_or_default();
    crlf_into(&mut out, body);
    out
}

/// A decrypted PGP/MIME payload is already a MIME entity; only its line
/// ends are made canonical.
fn canonical_entity(plaintext: &[u8]) -> Vec<u8> {
    crlf(plaintext)
}

/// Decrypted or verified inline-PGP text as a (UTF-8) text/plain entity
/// ([`decode_text`]).
fn text_entity(text: &[u8], charset: Option<&str>) -> Vec<u8> {
    super::text_part(&decode_text(text, charset))
}

/// Text bytes read as UTF-8 when they are, else in the part's declared
/// `charset` (the WHATWG set of encoding_rs), else as Windows-1252: clients
/// often label the armor `us-ascii` while the text inside is UTF-8, and
/// Latin-1 text is what an undeclared 8-bit body most likely is.
fn decode_text<'t>(text: &'t [u8], charset: Option<&str>) -> std::borrow::Cow<'t, str> {
    match std::str::from_utf8(text) {
        Ok(utf8) => std::borrow::Cow::Borrowed(utf8),
        Err(_) => {
            let encoding = charset
                .and_then(|label| encoding_rs::Encoding::for_label(label.trim().as_bytes()))
                .filter(|e| *e != encoding_rs::UTF_8)
                .unwrap_or(encoding_rs::WINDOWS_1252);
            encoding.decode_without_bom_handling(text).0
        }
    }
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const ARMOR_END: &[u8] = b"-----END PGP MESSAGE-----";

const CLEARSIGN_BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_END: &[u8] = b"-----END PGP SIGNATURE-----";

/// A text with OpenPGP blocks opened in place ([`inline_blocks`]).
struct InlineText {
    /// The new text/plain entity.
    entity: Vec<u8>,
    /// Some block was encrypted to the list key.
    encrypted: bool,
    /// A line per signed block: by whom, covering that block only.
    notes: Vec<String>,
}

/// A text body with armored blocks inside it (not only the whole of it):
/// each block encrypted to the list key is decrypted in place, and each
/// cleartext-signed block verified and taken out of its armor, between
/// two lines saying so; the text around them is kept. `None` when no block
/// opened.
///
/// A signature inside a block covers that block only, never the text
/// around it (anyone can put a captured signed block next to keyword lines
/// of their own): it is named in the block's opening line and authorises
/// nothing, so the result carries no signatures.
fn inline_blocks(
    raw: &[u8],
    part: &MessagePart<'_>,
    keys: Opener<'_>,
) -> Result<Option<InlineText>, UnwrapError> {
    let Some(body) = raw.get(part.offset_body as usize..part.offset_end as usize) else {
        return Ok(None);
    };
    let bytes = transfer_decoded(body, part.content_transfer_encoding());
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_string);
    let mut text = String::new();
    let (mut encrypted, mut opened_any) = (false, false);
    let mut notes = Vec::new();
    let mut at = 0;
    // Each kind's next marker, searched forward only: one pass over the
    // text however many blocks it holds.
    let kinds = [(ARMOR_BEGIN, ARMOR_END), (CLEARSIGN_BEGIN, SIGNATURE_END)];
    let mut next: [Option<usize>; 2] = [0, 1].map(|k| find_line(&bytes, 0, kinds[k].0));
    for _ in 0..MAX_INLINE_BLOCKS {
        let Some(k) = (0..2)
            .filter(|&k| next[k].is_some())
            .min_by_key(|&k| next[k])
        else {
            break;
        };
        let (begin_marker, end_marker) = kinds[k];
        let begin = next[k].expect("chosen");
        let Some(end) = find_line(&bytes, begin, end_marker).map(|e| e + end_marker.len()) else {
            // No end after this begin: none after any later one either.
            next[k] = None;
            continue;
        };
        let is_encrypted = begin_marker == ARMOR_BEGIN;
        text.push_str(&defang(&decode_text(&bytes[at..begin], charset.as_deref())));
        let block = &bytes[begin..end];
        let limited = keys.limited(keys.limit.saturating_sub(text.len()));
        match limited.open(block) {
            Ok(opened) if opened.encrypted || !is_encrypted => {
                opened_any = true;
                let plaintext = decode_text(&opened.plaintext, charset.as_deref());
                if opened.encrypted {
                    encrypted = true;
                    text.push_str(&format!(
                        "[The following was encrypted to the list key; {} (this block only)]\n",
                        opened.signatures
                    ));
                    text.push_str(defang(&plaintext).trim_end());
                    text.push_str("\n[End of the encrypted text]");
                } else {
                    notes.push(format!(
                        "text: a block with {}, covering that block only; the text around \
                         it is not signed",
                        opened.signatures
                    ));
                    text.push_str(&format!(
                        "[The following was signed; {} (this block only)]\n",
                        opened.signatures
                    ));
                    text.push_str(defang(&plaintext).trim_end());
                    text.push_str("\n[End of the signed text]");
                }
            }
            // Not for the list, or not readable: passed on as it came.
            Ok(_) | Err(OpenError::NotForList | OpenError::Malformed(_)) => {
                text.push_str(&decode_text(block, charset.as_deref()));
            }
            Err(e @ OpenError::TooLarge(_)) => return Err(UnwrapError::Pgp(e)),
        }
        at = end;
        for j in 0..2 {
            if next[j].is_some_and(|n| n < at) {
                next[j] = find_line(&bytes, at, kinds[j].0);
            }
        }
    }
    if !opened_any {
        return Ok(None);
    }
    text.push_str(&defang(&decode_text(&bytes[at..], charset.as_deref())));
    Ok(Some(InlineText {
        entity: super::text_part(&text),
        encrypted,
        notes,
    }))
}

/// For a multipart message that is not signed as a whole: one line per
/// leaf part saying whether an inline signature covers it, and whose —
/// when at least one does. Verified like any inline signature, over the
/// bytes in the part's charset.
fn signed_parts(message: &Message<'_>, keys: Opener<'_>) -> Vec<String> {
    let raw = message.raw_message.as_ref();
    let mut lines = Vec::new();
    let mut any = false;
    for part in message.parts.iter().skip(1) {
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let name = part
            .attachment_name()
            .map(|n| format!("attachment {}", super::one_line(n)))
            .unwrap_or_else(|| {
                let ct = part.content_type();
                format!(
                    "{}/{} part",
                    ct.map_or("text", |ct| ct.ctype()),
                    ct.and_then(|ct| ct.subtype()).unwrap_or("plain")
                )
            });
        let status = match inline_pgp(raw, part) {
            Some(InlinePgp::ClearSigned(inline)) => {
                any = true;
                match keys.open(&inline.bytes) {
                    Ok(opened) => opened.signatures.to_string(),
                    Err(e) => format!("BAD signature: {e}"),
                }
            }
            _ => "not signed".to_string(),
        };
        lines.push(format!("{name}: {status}"));
    }
    if any {
        lines
    } else {
        Vec::new()
    }
}

/// The note on a detached S/MIME signature (`multipart/signed` with
/// `application/pkcs7-signature`), which the copies keep as evidence.
fn detached_smime(message: &Message<'_>, raw: &[u8]) -> Option<String> {
    let root = message.root_part();
    let ct = root.content_type()?;
    let smime = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("signed"))
        && ct.attribute("protocol").is_some_and(|p| {
            p.eq_ignore_ascii_case("application/pkcs7-signature")
                || p.eq_ignore_ascii_case("application/x-pkcs7-signature")
        });
    if !smime {
        return None;
    }
    let children = root.sub_parts()?;
    let signed = message.parts.get(*children.first()? as usize)?;
    let signature = message.parts.get(*children.get(1)? as usize)?;
    let signed_bytes = crlf(&raw[signed.offset_header as usize..signed.offset_end as usize]);
    Some(super::smime::detached(&signed_bytes, signature.contents()))
}

/// Most OpenPGP blocks opened in one text; real mail has one or two.
const MAX_INLINE_BLOCKS: usize = 32;

/// Where `needle` first occurs in `haystack` at or after `from`, at the
/// start of a line (a quoted or dash-escaped marker is no marker).
fn find_line(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(found) = find(haystack.get(at..)?, needle).map(|f| at + f) {
        if found == 0 || haystack[found - 1] == b'\n' {
            return Some(found);
        }
        at = found + 1;
    }
    None
}

/// `text` with every line that looks like one of the daemon's markers
/// (`[The following was …]`, `[End of the …]`) quoted, so that a sender
/// cannot make plain text look encrypted or signed.
fn defang(text: &str) -> std::borrow::Cow<'_, str> {
    const MARKERS: [&str; 2] = ["[The following was", "[End of the"];
    if !MARKERS.iter().any(|m| text.contains(m)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let lines: Vec<String> = text
        .split_inclusive('\n')
        .map(|line| {
            if MARKERS.iter().any(|m| line.trim_start().starts_with(m)) {
                format!("(quoted) {line}")
            } else {
                line.to_string()
            }
        })
        .collect();
    std::borrow::Cow::Owned(lines.concat())
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// [`crlf`] for text.
pub fn crlf_str(text: &str) -> String {
    String::from_utf8(crlf(text.as_bytes())).expect("line ends only")
}

/// Converts bare LF (and bare CR) line ends to CRLF.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crlf_into(&mut out, bytes);
    out
}

/// [`crlf`], appended to `out`.
pub fn crlf_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // A bare line end gains a byte: room for one per 32 bytes, reserved
    // once, so a large body is not copied to grow.
    out.reserve(bytes.len() + bytes.len() / 32);
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\r\n");
        let skip = if rest[at..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[at + skip..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_base64_part_is_read_as_inline_pgp_whatever_its_line_length() {
        use base64::Engine;
        let armor = format!(
            "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
            "hQIMA0Jk".repeat(1500)
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(armor);
        for width in [75, 76, 77] {
            let mut raw =
                b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
            for line in encoded.as_bytes().chunks(width) {
                raw.extend_from_slice(line);
                raw.extend_from_slice(b"\r\n");
            }
            let message = super::super::parse(&raw).unwrap();
            assert!(
                matches!(
                    inline_pgp(&raw, message.root_part()),
                    Some(InlinePgp::Encrypted(_))
                ),
                "lines of {width}"
            );
        }
        // A large attachment that is not armor is told from its head.
        let other = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 100_000]);
        let raw = [
            &b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"[..],
            other.as_bytes(),
        ]
        .concat();
        let message = super::super::parse(&raw).unwrap();
        assert!(inline_pgp(&raw, message.root_part()).is_none());
    }

    #[test]
    fn precheck_refuses_what_is_no_mail() {
        assert_eq!(precheck(b"", 1024), Err(Refusal::Empty));
        assert_eq!(precheck(b"\r\n\r\n", 1024), Err(Refusal::Empty));
        assert_eq!(precheck(b"just text\r\n", 1024), Err(Refusal::NoHeader));
        assert_eq!(
            precheck(b"Subject: x\r\n\r\nbody", 1024),
            Err(Refusal::NoFrom)
        );
        let big = format!("From: a@b.c\r\nX-Big: {}\r\n\r\nbody", "a".repeat(2000));
        assert_eq!(
            precheck(big.as_bytes(), 1024),
            Err(Refusal::HeaderTooLarge(1024))
        );
        assert_eq!(precheck(b"From: a@b.c\r\n\r\nbody", 1024), Ok(()));
    }

    #[test]
    fn precheck_refuses_deep_nesting() {
        let mut deep =
            String::from("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
        for i in 1..1000 {
            deep.push_str(&format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
                i - 1
            ));
        }
        assert_eq!(precheck(deep.as_bytes(), 1 << 20), Err(Refusal::TooDeep));
    }

    #[test]
    fn crlf_normalises_line_ends() {
        assert_eq!(crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }

    #[test]
    fn protected_headers_override_outer_ones() {
        let outer = b"From: a@b.c\r\nSubject: [...]\r\nTo: l@b.c\r\n";
        let inner = b"Subject: Real subject\r\n";
        let merged = merge_headers(outer, inner);
        assert_eq!(
            merged,
            b"From: a@b.c\r\nTo: l@b.c\r\nSubject: Real subject\r\n".to_vec()
        );
    }
}
