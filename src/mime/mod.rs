//! MIME: reading incoming mail ([`inbound`]) and writing the copies the
//! members receive ([`outbound`]).

pub mod edit;
pub mod inbound;
pub mod offered;
pub mod outbound;
mod parsed;
pub mod smime;

pub use parsed::{parse, parse_headers, Parsed};

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use email_encoding::headers::writer::EmailWriter;
use lettre::message::header::{
    self as field, ContentTransferEncoding, HeaderName, HeaderValue, Headers,
};
use lettre::message::{Body, Mailbox, Mailboxes, SinglePart};

/// `text` on one line: every control character (CR and LF included, as
/// decoded RFC 2047 words can carry them) becomes a space, so a value taken
/// from a message can never start a header field or line of its own.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Whether `c` is invisible itself yet changes the text around it: a
/// format character (Unicode category Cf: bidi controls, zero-width
/// characters, tags) or a line or paragraph separator. A name that reads
/// one way and is stored another is built from these, so values a reader
/// must trust keep none.
pub fn is_invisible(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory};
    matches!(
        get_general_category(c),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `text` on one line ([`one_line`]), without invisible characters
/// ([`is_invisible`]), at most `max` characters: a note from a signed
/// post, as the PST reads it in a listing.
pub fn note(text: &str, max: usize) -> String {
    one_line(text)
        .chars()
        .filter(|c| !is_invisible(*c))
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The longest header line written, line end not counted (RFC 5322
/// §2.1.1's recommendation).
const MAX_LINE: usize = 78;

/// A header section written by lettre's encoder: each value RFC
/// 2047-encoded where it is not ASCII (UTF-8, base64 words of at most 75
/// characters, RFC 2047 §2) and folded at white space (RFC 5322 §2.2.3);
/// a mailbox's display name quoted or encoded as RFC 5322 §3.4 needs.
/// Control characters never reach a value ([`one_line`]). Fields stay in
/// the order they were first added; adding a name again replaces its
/// value.
#[derive(Debug, Clone, Default)]
pub struct HeaderSection(Headers);

impl HeaderSection {
    /// An empty header section.
    pub fn new() -> HeaderSection {
        HeaderSection::default()
    }

    /// `From: "display" <address>`.
    pub fn from(mut self, display: Option<&str>, address: &str) -> HeaderSection {
        match mailbox(display, address) {
            Some(mailbox) => self.0.set(field::From::from(Mailboxes::from(mailbox))),
            None => return self.text("From", &format!("<{address}>")),
        }
        self
    }

    /// `To: <address>`.
    pub fn to(mut self, address: &str) -> HeaderSection {
        match mailbox(None, address) {
            Some(mailbox) => self.0.set(field::To::from(Mailboxes::from(mailbox))),
            None => return self.text("To", &format!("<{address}>")),
        }
        self
    }

    /// `Date:` in RFC 5322 §3.3 form.
    pub fn date(mut self, date: DateTime<Utc>) -> HeaderSection {
        self.0.set(field::Date::new(SystemTime::from(date)));
        self
    }

    /// Any unstructured or ASCII-structured field: `Subject`, `List-Id`,
    /// `Message-ID`, a `Content-Type` with its parameters.
    ///
    /// lettre folds at white space only, so a value with a word too long
    /// for a line (a Subject of one 2,000-letter word, made of adjacent
    /// encoded words, RFC 2047 §6.2) is written whole as encoded words,
    /// which split anywhere and join again without a space: no line of
    /// the section is over 78 octets (RFC 5322 §2.1.1).
    pub fn text(mut self, name: &'static str, value: &str) -> HeaderSection {
        let value = one_line(value);
        let field = HeaderName::new_from_ascii_str(name);
        let fits = |word: &str| name.len() + 2 + word.len() <= MAX_LINE;
        let header = if value.split(' ').all(fits) {
            HeaderValue::new(field, value)
        } else {
            let mut encoded = String::new();
            {
                let mut writer = EmailWriter::new(&mut encoded, name.len() + 2, 0, false);
                email_encoding::headers::rfc2047::encode(&value, &mut writer)
                    .expect("writing to a String");
            }
            HeaderValue::dangerous_new_pre_encoded(field, value, encoded)
        };
        self.0.insert_raw(header);
        self
    }

    /// The section as it is written: each field with its line end, no
    /// blank line after.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_string().into_bytes()
    }

    /// Each field as written, folded lines included, without its final
    /// line end: for quoting fields inside another (`HP-Outer`).
    pub fn fields(&self) -> Vec<String> {
        let text = self.0.to_string();
        let mut fields: Vec<String> = Vec::new();
        for line in text.split_terminator("\r\n") {
            match fields.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => {
                    last.push_str("\r\n");
                    last.push_str(line);
                }
                _ => fields.push(line.to_string()),
            }
        }
        fields
    }
}

/// `address` as a lettre mailbox; `None` when lettre's address grammar
/// does not take it (the caller writes it as it is, on one line).
fn mailbox(display: Option<&str>, address: &str) -> Option<Mailbox> {
    let address = address.parse().ok()?;
    Some(Mailbox::new(display.map(one_line), address))
}

/// A text/plain UTF-8 entity for `text`: 7bit when it can be, else
/// quoted-printable — readable, and safe through any transport, which a
/// signed part must be (RFC 3156 §3).
pub fn text_part(text: &str) -> Vec<u8> {
    text_part_for(text, edit::Transfer::Transport)
}

/// [`text_part`] for the way it travels: inside encryption, UTF-8 text is
/// sent as `8bit` (RFC 2045 §2.8) instead of doubling through
/// quoted-printable. Lines over 998 octets (RFC 5322 §2.1.1) are always
/// quoted-printable. Written by lettre; the entity ends where the text
/// ends (lettre's own closing line end is not kept, so a caller that
/// puts a boundary after it decides the line end).
pub fn text_part_for(text: &str, transfer: edit::Transfer) -> Vec<u8> {
    // Written from lettre's parts, not SinglePart::formatted, which adds a
    // line end of its own after the body (and, for a large part, a
    // second copy of it to make room).
    let part = text_single_part(text, transfer);
    let headers = part.headers().to_string();
    let mut out = Vec::with_capacity(headers.len() + 2 + part.raw_body().len());
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(part.raw_body());
    out
}

/// [`text_part_for`] as lettre's part: for its message builder, and for
/// [`edit::splice_pieces`], which puts the body under a part's own header.
pub(crate) fn text_single_part(text: &str, transfer: edit::Transfer) -> SinglePart {
    let normalized = String::from_utf8(inbound::crlf(text.as_bytes())).expect("still UTF-8");
    // 7bit and 8bit data: lines of at most 998 octets, no NUL (RFC 2045
    // §2.7, §2.8). Checked once here, so lettre takes the text as it is
    // instead of scanning a large part again for every copy.
    let as_is =
        !normalized.contains('\0') && normalized.split("\r\n").all(|line| line.len() <= 998);
    let body = if as_is && normalized.is_ascii() {
        Body::dangerous_pre_encoded(normalized.into_bytes(), ContentTransferEncoding::SevenBit)
    } else if as_is && transfer == edit::Transfer::Encrypted {
        Body::dangerous_pre_encoded(normalized.into_bytes(), ContentTransferEncoding::EightBit)
    } else {
        Body::new_with_encoding(normalized, ContentTransferEncoding::QuotedPrintable)
            .expect("quoted-printable takes any text")
    };
    SinglePart::builder()
        .header(field::ContentType::TEXT_PLAIN)
        .body(body)
}

/// An attachment part (`Content-Disposition: attachment`) of
/// `content_type` holding `bytes`, named `filename`, in base64: 7bit-safe
/// (RFC 3156 signs only such parts), and the file saved from it is
/// byte for byte the one given.
pub fn attachment_part(filename: &str, content_type: &str, bytes: Vec<u8>) -> Vec<u8> {
    let content_type = field::ContentType::parse(content_type).expect("a valid content type");
    let body = Body::new_with_encoding(bytes, ContentTransferEncoding::Base64)
        .expect("base64 takes any bytes");
    let part = lettre::message::Attachment::new(filename.to_string()).body(body, content_type);
    let headers = part.headers().to_string();
    let mut out = headers.into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(part.raw_body());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parts_are_seven_bit_eight_bit_or_quoted_printable_as_they_must() {
        let encoding = |text: &str, transfer| {
            let part = String::from_utf8(text_part_for(text, transfer)).unwrap();
            let line = part
                .lines()
                .find(|l| l.starts_with("Content-Transfer-Encoding"))
                .unwrap()
                .to_string();
            line.rsplit(' ').next().unwrap().to_string()
        };
        use edit::Transfer::{Encrypted, Transport};
        assert_eq!(encoding("ascii\n", Transport), "7bit");
        assert_eq!(encoding("grüße\n", Transport), "quoted-printable");
        assert_eq!(encoding("grüße\n", Encrypted), "8bit");
        assert_eq!(encoding(&"x".repeat(999), Encrypted), "quoted-printable");
        assert_eq!(encoding(&"x".repeat(998), Encrypted), "7bit");
        assert_eq!(encoding("nul\0byte", Encrypted), "quoted-printable");
    }

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
        let field = |value: &str| {
            String::from_utf8(HeaderSection::new().text("Subject", value).to_bytes()).unwrap()
        };
        assert_eq!(field("plain"), "Subject: plain\r\n");
        let subject = "überlauf ".repeat(10);
        let message = format!("{}\r\n", field(&subject));
        let parsed = mail_parser::MessageParser::default()
            .parse(message.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject().unwrap().trim_end(), subject.trim_end());
        assert!(message.lines().all(|l| l.len() <= 78), "{message}");
        // A line break in a value cannot start a field of its own.
        let injected = field("hi\r\nBcc: everyone@example.org");
        assert_eq!(injected.matches('\n').count(), 1, "{injected}");
        // One word longer than a line: encoded words, every line short,
        // and the same word when read back.
        let long = format!("[KAP-2026-0001] {}", "A".repeat(2000));
        let written = field(&long);
        assert!(written.lines().all(|l| l.len() <= 78), "{written}");
        let message = format!("{written}\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(message.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some(long.as_str()));
    }

    #[test]
    fn mailboxes_quote_or_encode_display_names() {
        let section = HeaderSection::new()
            .from(
                Some("Kappital \"security\" list"),
                "security@kappital.example",
            )
            .to("alice@example.org")
            .text("Subject", "Grüße")
            .to_bytes();
        let message = [&section[..], b"\r\n"].concat();
        let parsed = mail_parser::MessageParser::default()
            .parse(&message)
            .unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Kappital \"security\" list"));
        assert_eq!(from.address(), Some("security@kappital.example"));
        assert_eq!(parsed.subject(), Some("Grüße"));
        let fields = HeaderSection::new()
            .text("Subject", &"long words ".repeat(20))
            .fields();
        assert_eq!(fields.len(), 1);
        assert!(fields[0].contains("\r\n "), "folded: {fields:?}");
    }
}
