//! MIME: reading incoming mail ([`inbound`]) and writing the copies the
//! members receive ([`outbound`]).

pub mod inbound;
pub mod outbound;

/// A random MIME boundary, or Message-ID local part: 128 bits of hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    sequoia_openpgp::crypto::random(&mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A text/plain UTF-8 entity for `text`: 7bit when it can be, base64
/// otherwise, so no line ever breaks the transport's limits.
pub fn text_part(text: &str) -> Vec<u8> {
    let normalized = String::from_utf8(inbound::crlf(text.as_bytes())).expect("still UTF-8");
    let seven_bit = normalized.is_ascii() && normalized.split("\r\n").all(|line| line.len() <= 998);
    let mut out = String::from("Content-Type: text/plain; charset=utf-8\r\n");
    if seven_bit {
        out.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
        out.push_str(&normalized);
    } else {
        use base64::Engine;
        out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(normalized.as_bytes());
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push_str("\r\n");
        }
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
    fn tokens_are_unique() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 32);
    }
}
