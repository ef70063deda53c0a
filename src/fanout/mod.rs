//! From one spooled message to one encrypted copy per member.
//!
//! [`process`] is the whole decision for one spool entry, returned as a
//! store [`Batch`]: the copies to queue, the records of who got what (and
//! who could not), notices, embargo changes, or a quarantine entry.
//! Nothing is written until the batch commits, so a crash half-way re-runs
//! it.
//!
//! - the security list ([`process`] itself): anyone may write; every PST
//!   member gets the message as it arrived;
//! - the distributors list (`distributors.rs`): only posts signed by pinned
//!   keys, with embargo keywords;
//! - notices: the daemon's own messages to the PST or a member.

pub mod copies;
mod distributors;
pub mod worker;

use std::time::SystemTime;

use tracing::{info, warn};

use crate::clock::{from_millis, to_millis};
use crate::config::{Config, ListName, Member};
use crate::mime::inbound::{unwrap, Encryption, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::store::{
    Audience, Batch, CopyInfo, Incoming, IncomingMeta, QuarantineMeta, QueueKey, QueuedCopy, Source,
};

use crate::context::Context;
pub use copies::{marks_for, seal_copy, Outgoing};

/// Decides what becomes of spool entry `id`.
pub fn process(ctx: &Context<'_>, id: u64, incoming: Incoming) -> Batch {
    let config = ctx.config;
    let mut batch = Batch {
        remove_spool: vec![id],
        ..Batch::default()
    };
    if let Source::Lmtp { mail_from, .. } = &incoming.meta.source {
        if let Some(reason) = loop_reason(config, mail_from, &incoming.raw) {
            info!(msg = id, reason, "dropped: mail loop");
            return batch;
        }
    }
    let notice = matches!(incoming.meta.source, Source::Notice { .. });
    let limit = config.lmtp.max_message_size.saturating_mul(4);
    let unwrapped = match unwrap(
        &incoming.raw,
        ctx.keys.list_key.cert(),
        &ctx.keys.signers,
        limit,
        SystemTime::from(ctx.now),
    ) {
        Ok(unwrapped) => unwrapped,
        Err(error) => {
            let reason = error.to_string();
            warn!(msg = id, %reason, "quarantined");
            batch.add_spool.extend(ctx.notice(
                notice,
                Audience::Pst,
                &format!("message {id} quarantined"),
                &format!(
                    "Message {id}, received {}, could not be processed and is held in the\n\
                     quarantine: {reason}.\n\nIts content is not included here.\n",
                    from_millis(incoming.meta.received).to_rfc2822(),
                ),
            ));
            batch.quarantine.push((
                QuarantineMeta {
                    time: to_millis(ctx.now),
                    reason,
                    incoming: incoming.meta,
                },
                incoming.raw,
            ));
            return batch;
        }
    };

    match &incoming.meta.source {
        Source::Notice { to } => {
            let members = audience(config, to);
            let identity = ListIdentity::new(config, &config.lists.security);
            let info = format!(
                "Notice from embargod, the daemon of {} <{}>.\n",
                identity.display, identity.address
            );
            // Notices are the daemon's own words: nothing to trace.
            let outgoing = Outgoing::new(
                unwrapped.headers.clone(),
                info,
                unwrapped.content.clone(),
                None,
                crate::config::Marks::Off,
                false,
            );
            fan_out(
                ctx,
                &mut batch,
                id,
                ListName::Security,
                &identity,
                &members,
                outgoing,
                true,
            );
        }
        Source::Lmtp { lists, .. } => {
            for &name in lists {
                match name {
                    ListName::Security => {
                        crate::case::intake::security(ctx, &mut batch, id, &incoming, &unwrapped)
                    }
                    ListName::Distributors => {
                        distributors::post(ctx, &mut batch, id, &incoming, &unwrapped)
                    }
                    // The announce list receives nothing over LMTP.
                    ListName::Announce => {}
                }
            }
        }
    }
    batch
}

/// Decides a copy of `outgoing` for each of `members`: one job holding
/// the message once, and a queue entry, a ledger record and a trace index
/// entry per member with a usable key (each copy is sealed when it is
/// sent); for members without one, a record and a notice. Returns how many
/// copies will go.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fan_out(
    ctx: &Context<'_>,
    batch: &mut Batch,
    id: u64,
    list: ListName,
    identity: &ListIdentity,
    members: &[&Member],
    outgoing: Outgoing,
    notice: bool,
) -> usize {
    let now = to_millis(ctx.now);
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
        if ctx
            .store
            .member_state(&member.id)
            .is_ok_and(|state| state.suspended.is_some())
        {
            batch
                .records
                .push(record(&member.id, crate::ledger::Outcome::Suspended));
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
                batch.records.push(no_key);
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
        batch.records.push(queued);
        batch.copy_index.push(CopyInfo {
            copy_id,
            message: id,
            member: member.id.clone(),
            email: member.email.to_string(),
            list,
            case: outgoing.case.clone(),
        });
        if let Some(case) = &outgoing.case {
            // Replies to any copy join the case.
            crate::case::put_reference(ctx, batch, &message_id, case);
        }
        batch.add_queue.push((
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
        ));
        copies += 1;
    }
    if !outgoing.prose.is_empty() {
        batch.shingles.push((id, outgoing.shingles(marks)));
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
        batch.add_spool.extend(ctx.notice(
            notice,
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
        ));
    }
    if copies > 0 {
        batch
            .add_jobs
            .push((job, outgoing.into_job(id, list, notice, ctx.now)));
    }
    copies
}

/// Why a post is held for moderation: `detail` goes to the PST in an
/// encrypted notice and may quote the post; `kind` goes to the log and
/// `status`, and never carries a value from the post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub kind: &'static str,
    pub detail: String,
}

impl Held {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Held {
        Held {
            kind,
            detail: detail.into(),
        }
    }
}

/// Holds a post to `list` for moderation (sealed in the quarantine) and
/// tells the PST — and the poster, when a member's key signed it and they
/// are not on the PST — why.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hold(
    ctx: &Context<'_>,
    batch: &mut Batch,
    id: u64,
    incoming: &Incoming,
    unwrapped: &Unwrapped,
    list: ListName,
    poster: Option<&str>,
    held: &Held,
) {
    let config = ctx.config;
    warn!(msg = id, %list, reason = held.kind, "held for moderation");
    let address = config
        .list(list)
        .map(|l| l.address.to_string())
        .unwrap_or_default();
    let body = format!(
        "Message {id} to {address} from {} was not forwarded: {}.\n\
         It is held for moderation; nothing reached the {list} list.\n",
        unwrapped.sender, held.detail
    );
    let subject = format!("post to the {list} list held");
    batch
        .add_spool
        .extend(ctx.notice(false, Audience::Pst, &subject, &body));
    if let Some(poster) = poster.filter(|p| !config.lists.security.members.iter().any(|m| m == p)) {
        batch.add_spool.extend(ctx.notice(
            false,
            Audience::Member(poster.to_string()),
            &format!("your post to the {list} list was not forwarded"),
            &body,
        ));
    }
    batch.quarantine.push((
        QuarantineMeta {
            time: to_millis(ctx.now),
            reason: format!("{list}: {}", held.detail),
            incoming: incoming.meta.clone(),
        },
        incoming.raw.clone(),
    ));
}

/// The members a notice goes to, each once.
pub(crate) fn audience<'c>(config: &'c Config, to: &Audience) -> Vec<&'c Member> {
    let mut members: Vec<&Member> = match to {
        Audience::Pst => config.members_of(&config.lists.security),
        Audience::Lists(lists) => lists
            .iter()
            .filter_map(|name| config.list(*name))
            .flat_map(|list| config.members_of(list))
            .collect(),
        Audience::Member(id) => config.members.get(id).into_iter().collect(),
    };
    let mut seen = std::collections::HashSet::new();
    members.retain(|m| seen.insert(m.id.clone()));
    members
}

/// Why mail must not be processed again: it is the daemon's own.
fn loop_reason(config: &Config, mail_from: &str, raw: &[u8]) -> Option<&'static str> {
    let own = config.delivery.from.to_string();
    if mail_from.eq_ignore_ascii_case(&own) {
        return Some("envelope sender is the daemon's own");
    }
    let parsed = crate::mime::parse_headers(raw)?;
    let own_lists: Vec<ListIdentity> = config
        .lists()
        .map(|list| ListIdentity::new(config, list))
        .collect();
    let list_id = parsed
        .header_raw("List-Id")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if own_lists
        .iter()
        .any(|list| list_id.contains(&format!("<{}>", list.list_id.to_ascii_lowercase())))
    {
        return Some("carries the list's own List-Id");
    }
    if parsed
        .header_values("X-Loop")
        .filter_map(|value| value.as_text())
        .any(|value| {
            own_lists
                .iter()
                .any(|list| value.trim().eq_ignore_ascii_case(&list.address))
        })
    {
        return Some("carries the list's own X-Loop");
    }
    let from_own = parsed
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address())
        .is_some_and(|addr| addr.eq_ignore_ascii_case(&own));
    from_own.then_some("From is the daemon's own sender")
}

/// The lines at the top of every copy's info part: how the message
/// arrived.
pub(crate) fn info_text(list: &ListIdentity, unwrapped: &Unwrapped, meta: &IncomingMeta) -> String {
    let envelope = match &meta.source {
        Source::Lmtp { mail_from, .. } if mail_from.is_empty() => "<> (a bounce)".to_string(),
        Source::Lmtp { mail_from, .. } => mail_from.clone(),
        Source::Notice { .. } => String::new(),
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
        from_millis(meta.received).to_rfc2822(),
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
