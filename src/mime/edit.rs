//! Small edits to a MIME entity that leave every other byte alone: the
//! first text part replaced (keyword lines removed), a multipart/signed
//! wrapper taken off. Attachments — patches above all — are never touched.

use mail_parser::{MessagePart, MimeHeaders, PartType};

/// The decoded text of the first text/plain part, depth first.
pub fn first_text(entity: &[u8]) -> Option<String> {
    let message = super::parse(entity)?;
    let part = first_text_part(&message)?;
    part.text_contents().map(str::to_string)
}

/// `entity` with its first text/plain part replaced by `text` (UTF-8,
/// re-encoded as needed). `None` when it has no text part.
pub fn replace_first_text(entity: &[u8], text: &str) -> Option<Vec<u8>> {
    let message = super::parse(entity)?;
    let part = first_text_part(&message)?;
    let (start, end) = (part.offset_header as usize, part.offset_end as usize);
    let mut new_part = super::text_part(text);
    // Keep the disposition and description of the part (inline, file name).
    let kept: Vec<u8> = part
        .headers
        .iter()
        .filter(|h| {
            let name = h.name.as_str().to_ascii_lowercase();
            name == "content-disposition" || name == "content-description"
        })
        .flat_map(|h| entity[h.offset_field as usize..h.offset_end as usize].to_vec())
        .collect();
    new_part.splice(0..0, kept);
    // text_part ends with a line end; the boundary's CRLF follows `end`.
    if new_part.ends_with(b"\r\n") && end < entity.len() {
        new_part.truncate(new_part.len() - 2);
    }
    let mut out = Vec::with_capacity(entity.len() + 64);
    out.extend_from_slice(&entity[..start]);
    out.extend_from_slice(&new_part);
    out.extend_from_slice(&entity[end..]);
    Some(out)
}

/// The signed content of a multipart/signed entity (its first part);
/// anything else as it is.
pub fn unsigned(entity: &[u8]) -> Vec<u8> {
    let Some(message) = super::parse(entity) else {
        return entity.to_vec();
    };
    let root = message.root_part();
    let signed = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("signed"))
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

/// Depth-first, in document order: the first text/plain part that is not
/// an attachment.
fn first_text_part<'m>(message: &'m mail_parser::Message<'_>) -> Option<&'m MessagePart<'m>> {
    let mut stack = vec![0u32];
    while let Some(id) = stack.pop() {
        let part = message.parts.get(id as usize)?;
        match &part.body {
            PartType::Multipart(children) => stack.extend(children.iter().rev()),
            PartType::Text(_) => {
                let plain = part
                    .content_type()
                    .is_none_or(|ct| ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain")));
                let attachment = part
                    .content_disposition()
                    .is_some_and(|cd| cd.ctype().eq_ignore_ascii_case("attachment"));
                if plain && !attachment {
                    return Some(part);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n\r\nX-Case: KAP-2026-0001\r\n\r\nHello\r\n\
--m\r\nContent-Type: text/x-diff\r\nContent-Disposition: attachment; filename=\"fix.patch\"\r\n\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-old\r\n+new\r\n\
--m--\r\n";

    #[test]
    fn first_text_part_is_replaced_and_the_patch_kept_byte_for_byte() {
        assert_eq!(
            first_text(MIXED).unwrap(),
            "X-Case: KAP-2026-0001\r\n\r\nHello"
        );
        let edited = replace_first_text(MIXED, "Hello\r\n").unwrap();
        assert_eq!(first_text(&edited).unwrap().trim_end(), "Hello");
        let patch = b"--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-old\r\n+new\r\n";
        assert!(edited.windows(patch.len()).any(|w| w == patch));
        let text = String::from_utf8_lossy(&edited);
        assert!(text.contains("Content-Disposition: inline"), "{text}");
        assert!(!text.contains("X-Case"), "{text}");
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
