//! OpenPGP certificates a message carries for its sender: attached
//! `application/pgp-keys` parts (RFC 3156 §7) and `Autocrypt:` header
//! fields (Autocrypt Level 1 §2.1, `addr=…; [prefer-encrypt=…;]
//! keydata=BASE64`). The reporter's key ([`crate::case::reporter`]) and a
//! member's refreshed key ([`crate::keyrefresh`]) are both found here;
//! each caller decides what a certificate may be used for.

use mail_parser::MimeHeaders;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

/// Where a certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `application/pgp-keys` part of the content.
    Attached,
    /// An `Autocrypt:` header field, with the `addr` it names
    /// (lower-case).
    Autocrypt(Option<String>),
}

/// One certificate a message offers.
#[derive(Debug, Clone)]
pub struct Offered {
    /// The certificate as sent (public parts are all anyone should use).
    pub cert: Cert,
    /// Where it came from.
    pub source: Source,
}

/// The certificates `content` (the content entity: signed, decrypted, or
/// the message itself) attaches, then those the header fields of `raw`
/// carry in `Autocrypt:`. Unparsable ones are skipped.
pub fn certificates(raw: &[u8], content: &[u8]) -> Vec<Offered> {
    let mut found = Vec::new();
    // Most mail attaches no key: no second parse of a large message.
    if contains_ignore_case(content, b"application/pgp-keys") {
        if let Some(message) = super::parse(content) {
            for part in &message.parts {
                let is_key = part.content_type().is_some_and(|ct| {
                    ct.ctype().eq_ignore_ascii_case("application")
                        && ct
                            .subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("pgp-keys"))
                });
                if is_key {
                    found.extend(Cert::from_bytes(part.contents()).ok().map(|cert| Offered {
                        cert,
                        source: Source::Attached,
                    }));
                }
            }
        }
    }
    if let Some(headers) = super::parse_headers(raw) {
        for value in headers
            .header_values("Autocrypt")
            .filter_map(|v| v.as_text())
        {
            found.extend(autocrypt(value).map(|(addr, cert)| Offered {
                cert,
                source: Source::Autocrypt(addr),
            }));
        }
    }
    found
}

/// The `addr` (lower-case) and certificate of one `Autocrypt:` value.
pub fn autocrypt(value: &str) -> Option<(Option<String>, Cert)> {
    use base64::Engine;
    let mut addr = None;
    let mut keydata = None;
    for attribute in value.split(';') {
        let (name, v) = attribute.split_once('=')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "addr" => addr = Some(v.trim().to_ascii_lowercase()),
            "keydata" => keydata = Some(v),
            _ => {}
        }
    }
    let keydata: String = keydata?.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(keydata)
        .ok()?;
    Some((addr, Cert::from_bytes(&bytes).ok()?))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocrypt_header_values_are_read_and_bounded() {
        use base64::Engine;
        let cert = crate::pgp::generate_cert("a <a@example.org>").unwrap();
        let public = cert.strip_secret_key_material();
        use sequoia_openpgp::serialize::SerializeInto;
        let keydata = base64::engine::general_purpose::STANDARD.encode(public.to_vec().unwrap());
        let folded: String = keydata
            .as_bytes()
            .chunks(70)
            .map(|c| format!(" {}", String::from_utf8_lossy(c)))
            .collect();
        let (addr, read) = autocrypt(&format!(
            "addr=A@example.org; prefer-encrypt=mutual; keydata={folded}"
        ))
        .unwrap();
        assert_eq!(addr.as_deref(), Some("a@example.org"));
        assert_eq!(read.fingerprint(), public.fingerprint());
        assert!(autocrypt("addr=a@example.org; keydata=!!!").is_none());
        let huge = "A".repeat(crate::keyrefresh::MAX_OFFERED * 2);
        assert!(autocrypt(&format!("addr=a@example.org; keydata={huge}")).is_none());
    }
}
