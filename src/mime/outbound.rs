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

/// The per-copy values of the outer header.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub list: &'a ListIdentity,
    pub to: &'a str,
    /// With angle brackets.
    pub message_id: &'a str,
    pub date: DateTime<Utc>,
}

impl Envelope<'_> {
    /// The header fields outside the encryption, in order.
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "From",
                format!("\"{}\" <{}>", self.list.display, self.list.address),
            ),
            ("To", format!("<{}>", self.to)),
            ("Subject", OBSCURED_SUBJECT.to_string()),
            ("Date", self.date.to_rfc2822()),
            ("Message-ID", self.message_id.to_string()),
        ]
    }
}

/// The entity that is signed and encrypted for one member:
/// multipart/mixed of an info part (who sent it, how it arrived) and the
/// original content, under the protected header fields.
pub fn inner_entity(
    envelope: &Envelope<'_>,
    carried_headers: &[u8],
    info: &str,
    content: &[u8],
) -> Vec<u8> {
    let (head, tail) = inner_entity_around(
        envelope,
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
pub fn inner_entity_around(
    envelope: &Envelope<'_>,
    carried_headers: &[u8],
    info: &str,
    transfer: crate::mime::edit::Transfer,
    content_ends_in_crlf: bool,
) -> (Vec<u8>, Vec<u8>) {
    let boundary = format!("embargod-{}", crate::random::token());
    let mut head = String::new();
    let _ = write!(
        head,
        "Content-Type: multipart/mixed; boundary=\"{boundary}\";\r\n protected-headers=\"v1\"; hp=\"cipher\"\r\n"
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(carried_headers);
    let mut tail = String::new();
    let _ = write!(tail, "Reply-To: <{}>\r\n", envelope.list.address);
    let _ = write!(tail, "List-Id: {}\r\n", envelope.list.list_id_header());
    for (name, value) in envelope.fields() {
        let _ = write!(tail, "HP-Outer: {name}: {value}\r\n");
    }
    let _ = write!(tail, "\r\n--{boundary}\r\n");
    out.extend_from_slice(tail.as_bytes());
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
pub fn outer_message(envelope: &Envelope<'_>, armored: &[u8]) -> Vec<u8> {
    let (mut bytes, boundary) = outer_head(envelope);
    bytes.extend_from_slice(&super::inbound::crlf(armored));
    outer_tail(&mut bytes, &boundary);
    bytes
}

/// The header section and parts of [`outer_message`] up to where the
/// armored ciphertext goes, and the boundary [`outer_tail`] closes.
pub fn outer_head(envelope: &Envelope<'_>) -> (Vec<u8>, String) {
    let boundary = format!("embargod-{}", crate::random::token());
    let list = envelope.list;
    let mut out = String::with_capacity(1024);
    for (name, value) in envelope.fields() {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Reply-To: <{}>\r\n", list.address);
    let _ = write!(out, "List-Id: {}\r\n", list.list_id_header());
    let _ = write!(out, "List-Post: <mailto:{}>\r\n", list.address);
    let _ = write!(out, "X-Loop: {}\r\n", list.address);
    out.push_str("Precedence: list\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    let _ = write!(
        out,
        "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{boundary}\"\r\n"
    );
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

/// A message from the list to `to`, not encrypted, `entity` signed by the
/// list key as RFC 3156 multipart/signed: the public announcement, and
/// mail to a reporter whose key is unknown.
pub fn signed_message(
    list_key: &crate::pgp::ListKey,
    identity: &ListIdentity,
    to: &str,
    subject: &str,
    message_id: &str,
    entity: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<u8>, crate::pgp::seal::SealError> {
    // The signed data ends before the line end that precedes the boundary.
    let mut signed = entity.to_vec();
    while signed.ends_with(b"\r\n") {
        signed.truncate(signed.len() - 2);
    }
    let signature = crate::pgp::seal::sign_detached(list_key, &signed, SystemTime::from(now))?;
    let boundary = format!("embargod-{}", crate::random::token());
    let mut head = String::new();
    let _ = write!(
        head,
        "From: \"{}\" <{}>\r\n",
        identity.display, identity.address
    );
    let _ = write!(head, "To: <{to}>\r\n");
    let _ = write!(head, "Subject: {}\r\n", super::encode_header_value(subject));
    let _ = write!(head, "Date: {}\r\n", now.to_rfc2822());
    let _ = write!(head, "Message-ID: {message_id}\r\n");
    let _ = write!(head, "X-Loop: {}\r\n", identity.address);
    head.push_str("MIME-Version: 1.0\r\n");
    let _ = write!(
        head,
        "Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\";\r\n boundary=\"{boundary}\"\r\n\r\n"
    );
    head.push_str("This is an OpenPGP/MIME signed message (RFC 3156).\r\n");
    let _ = write!(head, "--{boundary}\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&signed);
    let mut tail = format!("\r\n--{boundary}\r\n");
    tail.push_str("Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n");
    let _ = write!(
        tail,
        "Content-Description: OpenPGP signature by {} ({})\r\n",
        identity.display,
        list_key.fingerprint()
    );
    tail.push_str("Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n");
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(&super::inbound::crlf(&signature));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// A plain RFC 5322 message the daemon writes to the PST (a notice). It
/// goes through the spool and fan-out like any report, so it is sent
/// only encrypted.
pub fn notice_message(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    date: DateTime<Utc>,
) -> Vec<u8> {
    let mut out = String::new();
    let _ = write!(out, "From: \"embargod\" <{from}>\r\n");
    let _ = write!(out, "To: <{to}>\r\n");
    let _ = write!(out, "Subject: [embargod] {subject}\r\n");
    let _ = write!(out, "Date: {}\r\n", date.to_rfc2822());
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
    let _ = write!(
        out,
        "Message-ID: <notice.{}@{domain}>\r\n",
        crate::random::token()
    );
    out.push_str("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&super::text_part(body));
    bytes
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
        let envelope = Envelope {
            list: &list,
            to: "alice@example.org",
            message_id: "<x@kappital.example>",
            date: Utc::now(),
        };
        let outer = outer_message(
            &envelope,
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
        let envelope = Envelope {
            list: &list,
            to: "alice@example.org",
            message_id: "<x@kappital.example>",
            date: Utc::now(),
        };
        let inner = inner_entity(
            &envelope,
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
