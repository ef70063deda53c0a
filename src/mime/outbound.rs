//! Writing a member's copy: the inner entity that gets signed and
//! encrypted, and the PGP/MIME envelope around the ciphertext.
//!
//! The inner entity carries the real header fields (RFC 9788 header
//! protection, `hp="cipher"`, plus `protected-headers="v1"` for
//! Thunderbird); the outer header shows only what transport needs and an
//! obscured Subject.

use std::fmt::Write as _;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, Message};
use lettre::Address;

use super::HeaderSection;
use crate::config::{Config, List};

/// The Subject every copy shows outside the encryption.
pub const OBSCURED_SUBJECT: &str = "[...]";

/// How a list names itself in the header fields of its copies.
#[derive(Debug, Clone)]
pub struct ListIdentity {
    /// "Kappital security list"
    pub display: String,
    /// security@kappital.example
    pub address: String,
    /// RFC 2919 list-id: security.kappital.example
    pub list_id: String,
}

impl ListIdentity {
    /// How `list` of `config` names itself.
    pub fn new(config: &Config, list: &List) -> ListIdentity {
        let address = list.address.to_string();
        ListIdentity {
            display: format!("{} {} list", config.project.name, list.name),
            list_id: address.replacen('@', ".", 1),
            address,
        }
    }

    /// A new, unique Message-ID in the list's domain.
    pub fn message_id(&self) -> String {
        self.message_id_with(&crate::random::token())
    }

    /// The Message-ID `<local@domain>` in the list's domain.
    pub fn message_id_with(&self, local: &str) -> String {
        let domain = self
            .address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("localhost");
        format!("<{local}@{domain}>")
    }

    /// `List-Id: Kappital security list <security.kappital.example>`.
    pub fn list_id_header(&self) -> String {
        format!("{} <{}>", self.display, self.list_id)
    }
}

/// The header fields of one message from a list: the list as From, one
/// recipient, the Message-ID and the Date. (The SMTP envelope is the
/// transport's, not this.)
#[derive(Debug, Clone)]
pub struct ListHeader<'a> {
    /// The list it comes from.
    pub list: &'a ListIdentity,
    /// The recipient's address.
    pub to: &'a str,
    /// With angle brackets.
    pub message_id: &'a str,
    /// The Date field.
    pub date: DateTime<Utc>,
}

impl ListHeader<'_> {
    /// From, To, `subject`, Date and Message-ID, in that order.
    fn section(&self, subject: &str) -> HeaderSection {
        HeaderSection::new()
            .from(Some(&self.list.display), &self.list.address)
            .to(self.to)
            .text("Subject", subject)
            .date(self.date)
            .text("Message-ID", self.message_id)
    }

    /// The fields a copy shows outside the encryption, Subject obscured.
    fn outer(&self) -> HeaderSection {
        self.section(OBSCURED_SUBJECT)
    }

    /// The list fields of RFC 2369 and RFC 2919 and the loop guard, after
    /// `section`.
    fn with_list_fields(&self, section: HeaderSection) -> HeaderSection {
        let address = &self.list.address;
        section
            .text("Reply-To", &format!("<{address}>"))
            .text("List-Id", &self.list.list_id_header())
            .text("List-Post", &format!("<mailto:{address}>"))
            .text("X-Loop", address)
    }
}

/// A fresh MIME boundary; random, so no content can contain it.
fn boundary() -> String {
    format!("embargod-{}", crate::random::token())
}

/// The entity that is signed and encrypted for one member:
/// multipart/mixed of an info part (who sent it, how it arrived) and the
/// original content, under the protected header fields.
pub fn inner_entity(
    header: &ListHeader<'_>,
    carried_headers: &[u8],
    info: &str,
    content: &[u8],
) -> Vec<u8> {
    let (head, tail) = inner_entity_around(
        header,
        carried_headers,
        info,
        crate::mime::edit::Transfer::Transport,
        content.ends_with(b"\r\n"),
    );
    [&head[..], content, &tail[..]].concat()
}

/// [`inner_entity`] in the two pieces that go before and after the
/// content, so a large content is written straight from where it is;
/// `content_ends_in_crlf`: whether the content ends with a line end.
/// The MIME structure is written here, not by a builder, for that reason.
pub fn inner_entity_around(
    header: &ListHeader<'_>,
    carried_headers: &[u8],
    info: &str,
    transfer: crate::mime::edit::Transfer,
    content_ends_in_crlf: bool,
) -> (Vec<u8>, Vec<u8>) {
    let boundary = boundary();
    let mut out = HeaderSection::new()
        .text(
            "Content-Type",
            &format!(
                "multipart/mixed; boundary=\"{boundary}\"; protected-headers=\"v1\"; hp=\"cipher\""
            ),
        )
        .to_bytes();
    out.extend_from_slice(carried_headers);
    let list = HeaderSection::new()
        .text("Reply-To", &format!("<{}>", header.list.address))
        .text("List-Id", &header.list.list_id_header());
    out.extend_from_slice(&list.to_bytes());
    // RFC 9788 §2.2: what the outer header section shows, field by field.
    for field in header.outer().fields() {
        out.extend_from_slice(format!("HP-Outer: {field}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&super::text_part_for(info, transfer));
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    let mut tail = Vec::new();
    if !content_ends_in_crlf {
        tail.extend_from_slice(b"\r\n");
    }
    tail.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (out, tail)
}

/// The message as it travels: RFC 3156 multipart/encrypted around the
/// armored ciphertext, with list header fields (RFC 2369, RFC 2919).
pub fn outer_message(header: &ListHeader<'_>, armored: &[u8]) -> Vec<u8> {
    let (mut bytes, boundary) = outer_head(header);
    bytes.extend_from_slice(&super::inbound::crlf(armored));
    outer_tail(&mut bytes, &boundary);
    bytes
}

/// The header section and parts of [`outer_message`] up to where the
/// armored ciphertext goes, and the boundary [`outer_tail`] closes. The
/// ciphertext is written into place after it, never copied again.
pub fn outer_head(header: &ListHeader<'_>) -> (Vec<u8>, String) {
    let boundary = boundary();
    let section = header
        .with_list_fields(header.outer())
        .text("Precedence", "list")
        .text("MIME-Version", "1.0")
        .text(
            "Content-Type",
            &format!(
                "multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{boundary}\""
            ),
        );
    let mut out = String::from_utf8(section.to_bytes()).expect("lettre writes ASCII fields");
    out.reserve(1024);
    out.push_str("\r\nThis is an OpenPGP/MIME encrypted message (RFC 3156, RFC 9788).\r\n");
    let _ = write!(out, "--{boundary}\r\n");
    out.push_str("Content-Type: application/pgp-encrypted\r\n");
    out.push_str("Content-Description: PGP/MIME version identification\r\n\r\n");
    out.push_str("Version: 1\r\n\r\n");
    let _ = write!(out, "--{boundary}\r\n");
    out.push_str("Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n");
    out.push_str("Content-Description: OpenPGP encrypted message\r\n");
    out.push_str("Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n");
    (out.into_bytes(), boundary)
}

/// Closes an [`outer_head`] after the ciphertext.
pub fn outer_tail(bytes: &mut Vec<u8>, boundary: &str) {
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
}

/// A message from the list, not encrypted, `entity` signed by the list
/// key as RFC 3156 multipart/signed: the public announcement, and mail to
/// a reporter whose key is unknown. The signed entity is carried byte for
/// byte, so the MIME structure around it is written here.
pub fn signed_message(
    list_key: &crate::pgp::ListKey,
    header: &ListHeader<'_>,
    subject: &str,
    entity: &[u8],
) -> Result<Vec<u8>, crate::pgp::seal::SealError> {
    // The signed data ends before the line end that precedes the boundary
    // (RFC 3156 §5).
    let mut signed = entity.to_vec();
    while signed.ends_with(b"\r\n") {
        signed.truncate(signed.len() - 2);
    }
    let signature =
        crate::pgp::seal::sign_detached(list_key, &signed, SystemTime::from(header.date))?;
    let boundary = boundary();
    let section = header
        .section(subject)
        .text("X-Loop", &header.list.address)
        .text("MIME-Version", "1.0")
        .text(
            "Content-Type",
            &format!(
                "multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"{boundary}\""
            ),
        );
    let mut out = section.to_bytes();
    out.extend_from_slice(b"\r\nThis is an OpenPGP/MIME signed message (RFC 3156).\r\n");
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&signed);
    let mut tail = format!("\r\n--{boundary}\r\n");
    tail.push_str("Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n");
    let _ = write!(
        tail,
        "Content-Description: OpenPGP signature by {} ({})\r\n",
        header.list.display,
        list_key.fingerprint()
    );
    tail.push_str("Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n");
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(&super::inbound::crlf(&signature));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// `Auto-Submitted:` (RFC 3834 §5), for lettre's message builder.
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(text: &str) -> Result<AutoSubmitted, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(text.trim().to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// A plain RFC 5322 message the daemon writes to the PST (a notice),
/// built by lettre's message builder. It goes through the spool and
/// fan-out like any report, so it is sent only encrypted.
pub fn notice_message(
    from: &Address,
    to: &Address,
    subject: &str,
    body: &str,
    date: DateTime<Utc>,
) -> Vec<u8> {
    Message::builder()
        .from(Mailbox::new(Some("embargod".into()), from.clone()))
        .to(Mailbox::new(None, to.clone()))
        .subject(super::one_line(&format!("[embargod] {subject}")))
        .date(SystemTime::from(date))
        .message_id(Some(format!(
            "<notice.{}@{}>",
            crate::random::token(),
            from.domain()
        )))
        .header(AutoSubmitted("auto-generated".into()))
        .singlepart(super::text_single_part(
            body,
            crate::mime::edit::Transfer::Transport,
        ))
        .expect("a notice has a From and a To")
        .formatted()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn identity() -> ListIdentity {
        ListIdentity {
            display: "Kappital security list".into(),
            address: "security@kappital.example".into(),
            list_id: "security.kappital.example".into(),
        }
    }

    #[test]
    fn outer_message_hides_the_subject_and_names_the_list() {
        let list = identity();
        let header = ListHeader {
            list: &list,
            to: "alice@example.org",
            message_id: "<x@kappital.example>",
            date: Utc::now(),
        };
        let outer = outer_message(
            &header,
            b"-----BEGIN PGP MESSAGE-----\n\nabc\n-----END PGP MESSAGE-----\n",
        );
        let parsed = MessageParser::default().parse(&outer).unwrap();
        assert_eq!(parsed.subject(), Some(OBSCURED_SUBJECT));
        let ct = parsed.content_type().unwrap();
        assert_eq!(ct.subtype(), Some("encrypted"));
        assert_eq!(ct.attribute("protocol"), Some("application/pgp-encrypted"));
        assert_eq!(parsed.parts.len(), 3);
        assert_eq!(parsed.part(1).unwrap().contents(), b"Version: 1\r\n");
        assert!(parsed
            .header_raw("List-Id")
            .unwrap()
            .contains("<security.kappital.example>"));
        assert!(String::from_utf8_lossy(parsed.part(2).unwrap().contents()).contains("abc"));
    }

    #[test]
    fn inner_entity_carries_the_real_headers_and_content() {
        let list = identity();
        let header = ListHeader {
            list: &list,
            to: "alice@example.org",
            message_id: "<x@kappital.example>",
            date: Utc::now(),
        };
        let inner = inner_entity(
            &header,
            b"From: Reporter <r@example.net>\r\nSubject: RCE in parser\r\n",
            "Encryption: none",
            b"Content-Type: text/plain\r\n\r\nthe details\r\n",
        );
        let parsed = MessageParser::default().parse(&inner).unwrap();
        assert_eq!(parsed.subject(), Some("RCE in parser"));
        let ct = parsed.content_type().unwrap();
        assert_eq!(ct.attribute("protected-headers"), Some("v1"));
        assert_eq!(ct.attribute("hp"), Some("cipher"));
        assert_eq!(parsed.body_text(0).unwrap(), "Encryption: none");
        assert_eq!(parsed.body_text(1).unwrap().trim_end(), "the details");
    }
}
