//! S/MIME-signed mail (RFC 8551), as Outlook sends it: opaque signed-data
//! (`application/pkcs7-mime; smime-type=signed-data`, one `smime.p7m`
//! blob no other client shows) and detached signatures (`multipart/signed`
//! with `application/pkcs7-signature`).
//!
//! The list reads OpenPGP; S/MIME is only reported. The signature is
//! checked against the certificate it carries — whether the content was
//! changed — and the certificate's subject is named as what it *claims*:
//! no certificate authority is consulted, and the info part says so. An
//! S/MIME signature authorises nothing.

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

/// The signed MIME entity inside opaque signed-data `der`, and a line
/// for the info part. `None` when `der` is no PKCS#7 signed-data.
pub fn opaque(der: &[u8]) -> Option<(Vec<u8>, String)> {
    let pkcs7 = Pkcs7::from_der(der).ok()?;
    let mut content = Vec::new();
    let checked = verify(&pkcs7, None, Some(&mut content));
    if !checked {
        // The content is still the sender's words; the note says the
        // signature did not match.
        content.clear();
        verify_flags(
            &pkcs7,
            None,
            Some(&mut content),
            Pkcs7Flags::NOVERIFY | Pkcs7Flags::NOSIGS,
        )
        .then_some(())?;
    }
    Some((
        content,
        note(&pkcs7, checked, "opaque signed-data, smime.p7m"),
    ))
}

/// A line for the info part on the detached S/MIME signature `der` over
/// `signed` (the first part of a `multipart/signed`, with CRLF line ends).
pub fn detached(signed: &[u8], der: &[u8]) -> String {
    match Pkcs7::from_der(der) {
        Ok(pkcs7) => {
            let checked = verify(&pkcs7, Some(signed), None);
            note(
                &pkcs7,
                checked,
                "detached, kept as the attachment smime.p7s",
            )
        }
        Err(_) => "S/MIME signature (detached) that cannot be read".to_string(),
    }
}

/// Whether the signature matches the certificate it carries (no chain).
fn verify(pkcs7: &Pkcs7, data: Option<&[u8]>, out: Option<&mut Vec<u8>>) -> bool {
    verify_flags(pkcs7, data, out, Pkcs7Flags::NOVERIFY)
}

fn verify_flags(
    pkcs7: &Pkcs7,
    data: Option<&[u8]>,
    out: Option<&mut Vec<u8>>,
    flags: Pkcs7Flags,
) -> bool {
    let (Ok(certs), Ok(store)) = (Stack::<X509>::new(), X509StoreBuilder::new()) else {
        return false;
    };
    pkcs7
        .verify(&certs, &store.build(), data, out, flags)
        .is_ok()
}

fn note(pkcs7: &Pkcs7, checked: bool, shape: &str) -> String {
    let signer = Stack::<X509>::new()
        .ok()
        .and_then(|certs| pkcs7.signers(&certs, Pkcs7Flags::empty()).ok())
        .and_then(|signers| signers.iter().next().map(subject))
        .unwrap_or_else(|| "(no certificate)".into());
    let verdict = if checked {
        "the content matches that signature; the certificate itself was NOT checked \
         against any authority"
    } else {
        "the signature does NOT match the content (changed on the way, or broken)"
    };
    format!("S/MIME signature ({shape}) by a certificate naming {signer}: {verdict}")
}

/// `CN=…, emailAddress=…` of a certificate's subject, on one line.
fn subject(cert: &openssl::x509::X509Ref) -> String {
    let parts: Vec<String> = cert
        .subject_name()
        .entries()
        .filter_map(|entry| {
            let name = entry.object().nid().short_name().ok()?;
            let value = entry.data().to_string().ok()?;
            Some(format!("{name}={value}"))
        })
        .collect();
    super::one_line(&parts.join(", "))
}
