//! From a routed message to one encrypted copy per member: the job that
//! holds the message once, a queue entry, a ledger record and a trace
//! index entry per member (`fan_out`), each copy marked, signed and
//! encrypted when it is sent ([`copies`]). Which members a message goes
//! to is decided by the list it came to ([`crate::lists`]); the task that
//! takes spooled mail to them is [`worker`].

pub mod copies;
pub mod worker;

use std::time::SystemTime;

use tracing::{info, warn};

use crate::clock::Timestamp;
use crate::config::{ListName, Member};
use crate::mark::index::CopyInfo;
use crate::mime::inbound::{Encryption, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::store::{Audience, IncomingMeta, Intake, QueueKey, QueuedCopy, Source, Transaction};

use crate::context::{Context, Origin};
pub use copies::{seal_copy, Marking, Outgoing};

/// Who gets a copy of a message, as members of which list.
#[derive(Debug, Clone, Copy)]
pub struct Recipients<'a> {
    /// The list the copies go out as.
    pub list: ListName,
    /// How the list names itself in the copies.
    pub identity: &'a ListIdentity,
    /// The members who get a copy.
    pub members: &'a [&'a Member],
}

/// Decides a copy of `outgoing` for each of `members`: one job holding
/// the message once, and a queue entry, a ledger record and a trace index
/// entry per member with a usable key (each copy is sealed when it is
/// sent); for members without one, a record and a notice. Returns how many
/// copies will go.
pub(crate) fn fan_out(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: u64,
    to: Recipients<'_>,
    outgoing: Outgoing,
    origin: Origin,
) -> usize {
    let Recipients {
        list,
        identity,
        members,
    } = to;
    let notice = origin == Origin::Notice;
    let now = Timestamp::from(ctx.now);
    let record = |member: &str, outcome| {
        crate::ledger::DeliveryRecord::new(now, id, outgoing.case.clone(), list, member, outcome)
    };
    let marks = ctx.store.mark_secret();
    // Without an id nothing can be decided; the panic sends the message
    // to the quarantine with a notice (see the daemon's fan-out task),
    // never to nobody.
    let job = ctx
        .store
        .next_id()
        .unwrap_or_else(|e| panic!("the store hands out no id for a fan-out: {e}"));
    let mut copies = 0;
    let mut problems = Vec::new();
    for member in members {
        // Suspended for leaking: no copies, only a record.
        if crate::strikes::state(ctx.store, &member.id).is_ok_and(|state| state.suspended.is_some())
        {
            crate::ledger::append(batch, record(&member.id, crate::ledger::Outcome::Suspended));
            continue;
        }
        // A key that cannot be used now gets no copy, never a plaintext
        // one; sealing checks again when the copy goes.
        let fingerprint = match ctx.keys.member(&member.id).and_then(|cert| {
            crate::pgp::usable_for_encryption(cert, SystemTime::from(ctx.now))?;
            Ok(cert.fingerprint().to_hex())
        }) {
            Ok(fingerprint) => fingerprint,
            Err(problem) => {
                warn!(msg = id, member = %member.id, %problem, "no copy: key unusable");
                let mut no_key = record(
                    &member.id,
                    crate::ledger::Outcome::NoKey(problem.to_string()),
                );
                no_key.fingerprint = None;
                crate::ledger::append(batch, no_key);
                problems.push((member.id.clone(), problem.to_string()));
                continue;
            }
        };
        let copy_id = marks.copy_id(id, &list.to_string(), &member.id);
        let message_id = identity.message_id_with(&marks.message_id_local(copy_id));
        let mut queued = record(&member.id, crate::ledger::Outcome::Queued);
        queued.copy_id = Some(copy_id);
        queued.fingerprint = Some(fingerprint.clone());
        queued.message_id = Some(message_id.clone());
        crate::ledger::append(batch, queued);
        crate::mark::index::put_copy(
            batch,
            &CopyInfo {
                copy_id,
                message: id,
                member: member.id.clone(),
                email: member.email.to_string(),
                list,
                case: outgoing.case.clone(),
            },
        );
        crate::bounce::put_token(batch, marks, copy_id, now);
        if let Some(case) = &outgoing.case {
            // Replies to any copy join the case.
            crate::case::put_reference(ctx, batch, &message_id, case);
        }
        batch.queue(
            QueueKey {
                due: now,
                id: copy_id,
            },
            QueuedCopy {
                id: copy_id,
                message: id,
                case: outgoing.case.clone(),
                list,
                member: member.id.clone(),
                to: member.email.to_string(),
                fingerprint,
                message_id,
                notice,
                queued: now,
                attempts: 0,
                last_error: None,
                job: Some(job),
                bytes: Vec::new(),
            },
        );
        copies += 1;
    }
    if !outgoing.prose.is_empty() {
        crate::mark::index::put_shingles(batch, id, &outgoing.shingles(marks));
    }
    info!(
        msg = id,
        %list,
        copies,
        without_key = problems.len(),
        "fanned out"
    );
    if !problems.is_empty() {
        let lines: String = problems
            .iter()
            .map(|(member, problem)| format!("- {member}: {problem}\n"))
            .collect();
        if let Some(notice) = ctx.notice(
            origin,
            Audience::Pst,
            &format!(
                "{} member(s) of the {list} list got no copy",
                problems.len()
            ),
            &format!(
                "Message {id} to {} was not sent to these members, because their\n\
                 keys cannot be used. Nothing was sent to them in plaintext.\n\n{lines}\n\
                 Fix the key files (see `embargod check`) and reload.\n",
                identity.address
            ),
        ) {
            batch.spool(notice);
        };
    }
    if copies > 0 {
        batch.add_job(job, outgoing.into_job(id, list, origin, ctx.now));
    }
    copies
}

/// The lines at the top of every copy's info part: how the message
/// arrived.
pub(crate) fn info_text(list: &ListIdentity, unwrapped: &Unwrapped, meta: &IncomingMeta) -> String {
    let envelope = match &meta.source {
        Source::Mail { mail_from, via, .. } => {
            let sender = match mail_from.as_str() {
                "" => "<> (a bounce)",
                sender => sender,
            };
            match via {
                Intake::Lmtp => sender.to_string(),
                Intake::Imap(mailbox) | Intake::Maildir(mailbox) => {
                    format!("{sender}, taken from the mailbox {mailbox}")
                }
            }
        }
        // Bounces are never fanned out.
        Source::Notice { .. } | Source::Bounce { .. } => String::new(),
    };
    let encryption = match unwrapped.encryption {
        Encryption::ToList => "encrypted to the list key",
        Encryption::Partly => {
            "PARTLY encrypted: what the Part lines below and the lines \
             \"[The following was encrypted to the list key …]\" … \"[End of the encrypted text]\" \
             name was encrypted to the list key; the rest crossed the network in plaintext"
        }
        Encryption::None => "NOT encrypted: it crossed the network in plaintext",
        Encryption::ToOthers => {
            "encrypted to other keys, not the list's: passed on as received, the list could not read it"
        }
    };
    let mut text = format!(
        "Message to {} <{}>\n\
         From: {}\n\
         Envelope sender: {envelope}\n\
         Received: {}\n\
         Encryption: {encryption}\n\
         Signature: {}\n",
        list.display,
        list.address,
        unwrapped.sender,
        meta.received.to_datetime().to_rfc2822(),
        unwrapped.signatures,
    );
    for line in &unwrapped.part_notes {
        text.push_str(&format!("Part: {line}\n"));
    }
    // A signature over the body says nothing of the outer header fields:
    // say so next to it, so nobody reads the Subject as signed.
    if !unwrapped.signatures.0.is_empty() && unwrapped.headers_signer.is_none() {
        text.push_str(&format!(
            "Subject (not signed): {}\n",
            unwrapped.subject.trim()
        ));
    }
    text
}
