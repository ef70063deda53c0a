//! Mail to a case's reporter: the acknowledgement, and the PST's answers
//! (`X-To-Reporter: yes`).
//!
//! Encrypted to the reporter's certificate when they gave one (attached to
//! the report, in an Autocrypt header, or the key that signed it); signed
//! by the list key either way. Without a key, only what may travel in
//! plaintext goes: an acknowledgement never quotes or summarises the
//! report, not even its Subject.

use std::time::SystemTime;

use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::Cert;

use crate::clock::Timestamp;
use crate::config::ListName;
use crate::context::Context;
use crate::digest::sha256_hex;
use crate::fanout::copies::seal_entity;
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mime::inbound::Unwrapped;
use crate::mime::offered::{self, Source};
use crate::mime::outbound::{signed_message, ListHeader, ListIdentity};
use crate::mime::HeaderSection;
use crate::store::{QueueKey, QueuedCopy, Transaction};

use super::{Case, Milestone};

/// How the reporter appears in the ledger and the queue, where members
/// appear by id; no member may take this id.
pub const LEDGER_NAME: &str = "reporter";

/// The reporter's certificate, from an attached key or an Autocrypt
/// header: one that can take encryption now and names their address or
/// made a signature on the report.
pub fn find_cert(
    ctx: &Context<'_>,
    raw: &[u8],
    unwrapped: &Unwrapped,
    address: &str,
) -> Option<Cert> {
    // Attached keys, and an Autocrypt header's for this address.
    let candidates = offered::certificates(raw, &unwrapped.content)
        .into_iter()
        .filter(|o| match &o.source {
            Source::Attached => true,
            Source::Autocrypt(addr) => addr
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(address)),
        })
        .map(|o| o.cert);
    let signers: Vec<&str> = unwrapped
        .signatures
        .0
        .iter()
        .filter_map(|s| match s {
            crate::pgp::open::SignatureCheck::UnknownKey { issuer } => Some(issuer.as_str()),
            _ => None,
        })
        .collect();
    let now = SystemTime::from(ctx.now);
    candidates.into_iter().find(|cert| {
        let names_address = cert.userids().any(|uid| {
            uid.userid().email().ok().flatten().is_some_and(|e| {
                e.eq_ignore_ascii_case(address)
                    || unwrapped
                        .from_address
                        .as_deref()
                        .is_some_and(|from| e.eq_ignore_ascii_case(from))
            })
        });
        let signed_report = cert.keys().any(|ka| {
            signers.iter().any(|issuer| {
                issuer.eq_ignore_ascii_case(&ka.key().fingerprint().to_hex())
                    || issuer.eq_ignore_ascii_case(&ka.key().keyid().to_hex())
            })
        });
        (names_address || signed_report) && crate::pgp::usable_for_encryption(cert, now).is_ok()
    })
}

/// The acknowledgement of a new report: the case ID, thanks, and what
/// happens next — nothing of the report itself.
pub fn acknowledgement(ctx: &Context<'_>, case: &Case) -> (String, String) {
    let project = &ctx.config.project.name;
    let deadline = |m: Milestone| {
        case.deadline(m)
            .map(|d| d.due.formatted())
            .unwrap_or_default()
    };
    let text = format!(
        "Thank you for your report to the {project} Product Security Team.\n\n\
         It is case {id}. Please keep this ID in the Subject of anything you\n\
         send about it, and keep the report private until the fix is released.\n\n\
         What happens next, by our security release process:\n\
         - a Fix Lead and a Fix Team take it on, by {team};\n\
         - the fix is developed, by {fix};\n\
         - users hear that a fix is coming, by {users};\n\
         - distributors get it under embargo when it warrants, by {distributors};\n\
         - the fix is released, by {release} at the latest.\n\n\
         We will publicly thank you when the advisory is published; tell us if you\n\
         would rather not be named. Questions and additions: reply to this message.\n",
        id = case.id,
        team = deadline(Milestone::Team),
        fix = deadline(Milestone::Fix),
        users = deadline(Milestone::Users),
        distributors = deadline(Milestone::Distributors),
        release = deadline(Milestone::Release),
    );
    (format!("[{}] Your report was received", case.id), text)
}

/// Where mail about a case goes on the reporter's side.
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// The case's reporter (the From address of the report).
    Reporter,
    /// An automatic response's recipient: the report's envelope sender
    /// (RFC 3834 §4), checked by [`super::autoreply`].
    Address(&'a str),
}

/// Queues `text` (with `subject`) for the case's reporter: encrypted to
/// their certificate when known, else signed plaintext. Does nothing for a
/// case without a reporter.
pub fn send(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    case: &Case,
    to: To<'_>,
    message: u64,
    subject: &str,
    text: &str,
) -> Result<(), super::CaseError> {
    let Some(reporter) = &case.reporter else {
        return Ok(());
    };
    let (to, automatic) = match to {
        To::Reporter => (reporter.clone(), false),
        To::Address(address) => (address.to_string(), true),
    };
    let to = &to;
    let identity = ListIdentity::new(ctx.config, &ctx.config.lists.security);
    let content = crate::mime::text_part(text);
    let cert = case
        .reporter_cert
        .as_deref()
        .and_then(|armored| Cert::from_bytes(armored.as_bytes()).ok());
    let message_id = identity.message_id();
    let header = ListHeader {
        list: &identity,
        to,
        message_id: &message_id,
        date: ctx.now,
    };
    let (bytes, fingerprint, subkey, plaintext_sha256, message_id) = match cert {
        Some(cert) => {
            let protected = HeaderSection::new()
                .from(Some(&identity.display), &identity.address)
                .to(to)
                .text("Subject", subject)
                .to_bytes();
            let info = format!("From the {} <{}>.\n", identity.display, identity.address);
            let sealed = seal_entity(ctx.keys, &header, &cert, &protected, &info, &content)?;
            (
                sealed.bytes,
                sealed.fingerprint,
                Some(sealed.subkey),
                Some(sealed.plaintext_sha256),
                sealed.message_id,
            )
        }
        None => {
            let bytes = signed_message(&ctx.keys.list_key, &header, subject, &content)?;
            (bytes, String::new(), None, None, message_id.clone())
        }
    };
    // An automatic response says so (RFC 3834 §5), so that the other
    // side's responders leave it alone. A header field at the top is as
    // good as anywhere in the section, and changes nothing signed.
    let bytes = if automatic {
        [&b"Auto-Submitted: auto-replied\r\n"[..], &bytes].concat()
    } else {
        bytes
    };
    let id = crate::random::u64();
    let now = Timestamp::from(ctx.now);
    crate::ledger::append(
        batch,
        DeliveryRecord {
            time: now,
            message,
            case: Some(case.id.clone()),
            list: ListName::Security,
            member: LEDGER_NAME.into(),
            copy_id: Some(id),
            fingerprint: (!fingerprint.is_empty()).then(|| fingerprint.clone()),
            encryption_subkey: subkey,
            message_id: Some(message_id.clone()),
            plaintext_sha256,
            ciphertext_sha256: Some(sha256_hex(&bytes)),
            outcome: Outcome::Queued,
        },
    );
    super::put_reference(ctx, batch, &message_id, &case.id);
    batch.queue(
        QueueKey { due: now, id },
        QueuedCopy {
            id,
            message,
            case: Some(case.id.clone()),
            list: ListName::Security,
            member: LEDGER_NAME.into(),
            to: to.clone(),
            fingerprint,
            message_id,
            // A failure to reach a reporter is worth a notice.
            notice: false,
            queued: now,
            attempts: 0,
            last_error: None,
            job: None,
            bytes,
        },
    );
    Ok(())
}

/// The armored form of a certificate, for the case record.
pub fn armored(cert: &Cert) -> Option<String> {
    cert.armored()
        .to_vec()
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}
