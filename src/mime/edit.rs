//! Small edits to a MIME entity that leave every other byte alone: a text
//! part rewritten (keyword lines removed, a copy marked, a trailer added),
//! a multipart/signed wrapper taken off.
//!
//! A [`TextSlot`] is found once per message and spliced once per copy.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// A text part of an entity: where it is, and its decoded text.
#[derive(Debug, Clone)]
pub struct TextSlot {
    start: usize,
    end: usize,
    /// Header fields written again with the new text: its type (now
    /// UTF-8), disposition and description.
    headers: String,
    /// The decoded text of the part.
    pub text: String,
    /// text/html rather than text/plain (or another text type).
    pub html: bool,
    /// text/plain; format=flowed.
    flowed: bool,
}

impl TextSlot {
    /// How the part's text is laid out, for marks: format=flowed text
    /// (RFC 3676) ends its soft-broken lines with a space.
    pub fn layout(&self) -> crate::mark::Layout {
        if self.html {
            crate::mark::Layout::Html
        } else if self.flowed {
            crate::mark::Layout::Flowed
        } else {
            crate::mark::Layout::Plain
        }
    }

    fn new(entity: &[u8], part: &MessagePart<'_>) -> Option<TextSlot> {
        let text = part.text_contents()?.to_string();
        let ct = part.content_type();
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        };
        let mut content_type = match ct {
            Some(ct) if token(ct.ctype()) && ct.subtype().is_none_or(token) => {
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("plain"))
            }
            _ => "text/plain".into(),
        };
        // The sender's other parameters (format, delsp, name …) stay, as
        // tokens and short printable values only: a decoded value may hold
        // line ends or quotes that would write fields of the sender's
        // choosing into the part's header.
        for attribute in ct.and_then(|ct| ct.attributes()).unwrap_or_default() {
            let value = &attribute.value;
            let printable = value.len() <= 200 && value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if token(&attribute.name)
                && printable
                && !attribute.name.eq_ignore_ascii_case("charset")
            {
                let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
                content_type.push_str(&format!("; {}=\"{quoted}\"", attribute.name));
            }
        }
        content_type.push_str("; charset=utf-8");
        let mut headers = String::from_utf8(
            super::HeaderSection::new()
                .text("Content-Type", &content_type)
                .to_bytes(),
        )
        .expect("lettre writes ASCII header fields");
        for h in &part.headers {
            let name = h.name.as_str().to_ascii_lowercase();
            if name == "content-disposition" || name == "content-description" {
                let line = &entity[h.offset_field as usize..h.offset_end as usize];
                headers.push_str(&String::from_utf8_lossy(line));
            }
        }
        Some(TextSlot {
            start: part.offset_header as usize,
            end: part.offset_end as usize,
            headers,
            text,
            html: matches!(part.body, PartType::Html(_)),
            flowed: ct
                .and_then(|ct| ct.attribute("format"))
                .is_some_and(|f| f.eq_ignore_ascii_case("flowed")),
        })
    }
}

/// The first text/plain part that is not an attachment, depth first.
pub fn first_text(entity: &[u8]) -> Option<TextSlot> {
    let message = super::parse(entity)?;
    let part = leaves(&message).find(|part| {
        matches!(part.body, PartType::Text(_))
            && part
                .content_type()
                .is_none_or(|ct| ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain")))
            && !is_attachment(part)
    })?;
    TextSlot::new(entity, part)
}

/// Every text/plain and text/html part that is not an attachment, depth
/// first: what a mail client shows (iPhone and Apple Mail split a body
/// at each inline image, so a report may be its third text part).
pub fn body_texts(entity: &[u8]) -> Vec<TextSlot> {
    let Some(message) = super::parse(entity) else {
        return Vec::new();
    };
    leaves(&message)
        .filter(|part| {
            matches!(part.body, PartType::Text(_) | PartType::Html(_))
                && part.content_type().is_none_or(|ct| {
                    ct.subtype().is_none_or(|s| {
                        s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("html")
                    })
                })
                && !is_attachment(part)
        })
        .filter_map(|part| TextSlot::new(entity, part))
        .collect()
}

fn is_attachment(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|cd| cd.ctype().eq_ignore_ascii_case("attachment"))
}

/// Every text part (attachments included) whose text `wanted` accepts.
pub fn text_parts(entity: &[u8], wanted: impl Fn(&str) -> bool) -> Vec<TextSlot> {
    let Some(message) = super::parse(entity) else {
        return Vec::new();
    };
    leaves(&message)
        .filter(|part| part.text_contents().is_some_and(&wanted))
        .filter_map(|part| TextSlot::new(entity, part))
        .collect()
}

/// `entity` with each slot's part replaced by its new text (UTF-8, 7bit
/// or quoted-printable).
pub fn splice(entity: &[u8], edits: &[(&TextSlot, String)]) -> Vec<u8> {
    splice_pieces(entity, edits, Transfer::Transport).concat()
}

/// How a rewritten text part will travel: where its 8-bit UTF-8 is kept
/// as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Inside an OpenPGP message: relays see only the armor, so text is
    /// `8bit` (quoted-printable only for lines over 998 octets).
    Encrypted,
    /// As it is through relays: `7bit` or quoted-printable.
    Transport,
}

/// [`splice`] as pieces: the unchanged stretches of `entity` borrowed,
/// the new parts owned, so a large attachment is never copied per copy.
pub fn splice_pieces<'e>(
    entity: &'e [u8],
    edits: &[(&TextSlot, String)],
    transfer: Transfer,
) -> Vec<std::borrow::Cow<'e, [u8]>> {
    use std::borrow::Cow;
    let mut edits: Vec<&(&TextSlot, String)> = edits.iter().collect();
    edits.sort_by_key(|(slot, _)| slot.start);
    let mut out = Vec::with_capacity(2 * edits.len() + 1);
    let mut copied = 0;
    for (slot, text) in edits {
        if slot.start < copied {
            continue; // overlapping slots cannot happen for leaves; stay safe
        }
        out.push(Cow::Borrowed(&entity[copied..slot.start]));
        // The slot's own header fields stay; the new text brings its
        // transfer encoding.
        let part = super::text_single_part(text, transfer);
        let encoding = part
            .headers()
            .get_raw("Content-Transfer-Encoding")
            .map(|value| format!("Content-Transfer-Encoding: {value}\r\n"))
            .unwrap_or_default();
        let head = format!("{}{encoding}\r\n", slot.headers);
        let mut new_part = Vec::with_capacity(head.len() + part.raw_body().len());
        new_part.extend_from_slice(head.as_bytes());
        new_part.extend_from_slice(part.raw_body());
        // The line end before a boundary belongs to the boundary.
        if new_part.ends_with(b"\r\n") && slot.end < entity.len() {
            new_part.truncate(new_part.len() - 2);
        }
        out.push(Cow::Owned(new_part));
        copied = slot.end;
    }
    out.push(Cow::Borrowed(&entity[copied..]));
    out
}

/// `entity` with its first text part replaced by `text`; `None` when it
/// has no text part.
pub fn replace_first_text(entity: &[u8], text: &str) -> Option<Vec<u8>> {
    let slot = first_text(entity)?;
    Some(splice(entity, &[(&slot, text.to_string())]))
}

/// The signed content of an OpenPGP multipart/signed entity (its first
/// part); anything else as it is.
pub fn unsigned(entity: &[u8]) -> Vec<u8> {
    let Some(message) = super::parse(entity) else {
        return entity.to_vec();
    };
    let root = message.root_part();
    // Only OpenPGP's: an S/MIME signature stays with the content as the
    // evidence the info part reports on.
    let signed = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("signed"))
            && ct
                .attribute("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"))
    });
    let first = root
        .sub_parts()
        .and_then(|children| children.first())
        .and_then(|&id| message.parts.get(id as usize));
    match (signed, first) {
        (true, Some(part)) => {
            let mut out = entity[part.offset_header as usize..part.offset_end as usize].to_vec();
            out.extend_from_slice(b"\r\n");
            out
        }
        _ => entity.to_vec(),
    }
}

/// The leaf parts of a message, depth first in document order (nested
/// messages are not entered).
fn leaves<'m>(message: &'m Message<'m>) -> impl Iterator<Item = &'m MessagePart<'m>> {
    let mut stack = vec![0u32];
    std::iter::from_fn(move || {
        while let Some(id) = stack.pop() {
            let part = message.parts.get(id as usize)?;
            match &part.body {
                PartType::Multipart(children) => stack.extend(children.iter().rev()),
                _ => return Some(part),
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Disposition: inline\r\n\r\nX-Case: KAP-2026-0001\r\n\r\nHello\r\n\
--m\r\nContent-Type: text/x-diff; name=\"fix.patch\"\r\nContent-Disposition: attachment; filename=\"fix.patch\"\r\n\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-old\r\n+new\r\n\
--m--\r\n";

    #[test]
    fn first_text_part_is_replaced_and_the_patch_kept_byte_for_byte() {
        assert_eq!(
            first_text(MIXED).unwrap().text,
            "X-Case: KAP-2026-0001\r\n\r\nHello"
        );
        let edited = replace_first_text(MIXED, "Hellö\r\n").unwrap();
        assert_eq!(first_text(&edited).unwrap().text.trim_end(), "Hellö");
        let patch = b"--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-old\r\n+new\r\n";
        assert!(edited.windows(patch.len()).any(|w| w == patch));
        let text = String::from_utf8_lossy(&edited);
        assert!(text.contains("Content-Disposition: inline"), "{text}");
        assert!(
            text.contains("charset=utf-8") && !text.contains("iso-8859-1"),
            "{text}"
        );
        assert!(!text.contains("X-Case"), "{text}");
    }

    #[test]
    fn attachments_can_be_edited_keeping_their_type() {
        let slots = text_parts(MIXED, |t| t.starts_with("--- a/x"));
        assert_eq!(slots.len(), 1);
        let edited = splice(
            MIXED,
            &[(&slots[0], format!("{}\r\n+extra", slots[0].text))],
        );
        let text = String::from_utf8_lossy(&edited);
        assert!(
            text.contains("Content-Type: text/x-diff; name=\"fix.patch\"; charset=utf-8"),
            "{text}"
        );
        assert!(text.contains("+new\r\n+extra"), "{text}");
        assert!(
            text.contains("X-Case: KAP-2026-0001"),
            "the other part is untouched"
        );
    }

    #[test]
    fn multipart_signed_is_unwrapped() {
        let signed = b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n\r\n\
--s\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n";
        assert_eq!(
            unsigned(signed),
            b"Content-Type: text/plain\r\n\r\nsigned text\r\n"
        );
        assert_eq!(unsigned(MIXED), MIXED);
    }
}
