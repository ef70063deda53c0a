//! MIME: reading incoming mail ([`inbound`]) and writing the copies the
//! members receive ([`outbound`]).

pub mod edit;
pub mod inbound;
pub mod outbound;
mod parsed;
pub mod smime;

pub use parsed::{parse, parse_headers, Parsed};

/// `text` on one line: every control character (CR and LF included, as
/// decoded RFC 2047 words can carry them) becomes a space, so a value taken
/// from a message can never start a header field or line of its own.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A header field value: as it is when ASCII, else RFC 2047 encoded
/// words (UTF-8, base64), each within the 75-character limit. Control
/// characters are never written ([`one_line`]).
pub fn encode_header_value(text: &str) -> String {
    use base64::Engine;
    let text = &one_line(text);
    if text.is_ascii() {
        return text.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in text.chars() {
        if chunk.len() + ch.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(ch);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// A text/plain UTF-8 entity for `text`: 7bit when it can be, else
/// quoted-printable — readable, and safe through any transport, which a
/// signed part must be (RFC 3156 §3).
pub fn text_part(text: &str) -> Vec<u8> {
    text_part_for(text, edit::Transfer::Transport)
}

/// [`text_part`] for the way it travels: inside encryption, UTF-8 text is
/// sent as `8bit` (RFC 2045 §2.8) instead of doubling through
/// quoted-printable.
pub fn text_part_for(text: &str, transfer: edit::Transfer) -> Vec<u8> {
    let normalized = String::from_utf8(inbound::crlf(text.as_bytes())).expect("still UTF-8");
    let short_lines = normalized.split("\r\n").all(|line| line.len() <= 998);
    let mut out = String::from("Content-Type: text/plain; charset=utf-8\r\n");
    if short_lines && normalized.is_ascii() {
        out.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
        out.push_str(&normalized);
    } else if short_lines && transfer == edit::Transfer::Encrypted {
        out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
        out.push_str(&normalized);
    } else {
        out.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        let encoded = quoted_printable::encode_to_str(normalized.as_bytes());
        out.push_str(&inbound::crlf_str(&encoded));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parts_round_trip_through_a_parser() {
        for text in ["plain ascii\nline two", "grüße, 日本"] {
            let part = text_part(text);
            let parsed = mail_parser::MessageParser::default().parse(&part).unwrap();
            assert_eq!(
                parsed.body_text(0).unwrap().replace("\r\n", "\n"),
                text.replace("\r\n", "\n")
            );
        }
    }

    #[test]
    fn header_values_are_encoded_when_not_ascii() {
        assert_eq!(encode_header_value("plain"), "plain");
        let encoded = encode_header_value(&"überlauf ".repeat(10));
        let message = format!("Subject: {encoded}\r\n\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(message.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject().unwrap().trim_end(),
            "überlauf ".repeat(10).trim_end()
        );
        assert!(encoded.lines().all(|l| l.len() <= 76), "{encoded}");
    }
}
