//! From one spooled message to one encrypted copy per member.
//!
//! [`process`] is the whole decision for one spool entry, returned as a
//! store [`Batch`]: the copies to queue, the records of who got what (and
//! who could not), notices for the PST, or a quarantine entry. Nothing is
//! written until the batch commits, so a crash half-way re-runs it.

mod copies;

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::clock::to_millis;
use crate::config::{Config, List, ListName};
use crate::keys::Keys;
use crate::mime::inbound::{unwrap, Encryption, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::store::{Batch, Incoming, IncomingMeta, QuarantineMeta, Source};

pub use copies::seal_copies;

/// Decides what becomes of spool entry `id`.
pub fn process(
    config: &Config,
    keys: &Keys,
    id: u64,
    incoming: Incoming,
    now: DateTime<Utc>,
) -> Batch {
    let mut batch = Batch {
        remove_spool: vec![id],
        ..Batch::default()
    };
    let lists = match &incoming.meta.source {
        Source::Lmtp { mail_from, lists } => {
            if let Some(reason) = loop_reason(config, mail_from, &incoming.raw) {
                info!(msg = id, reason, "dropped: mail loop");
                return batch;
            }
            lists.clone()
        }
        Source::Notice => vec![ListName::Security],
    };
    let notice = incoming.meta.source == Source::Notice;
    let limit = config.lmtp.max_message_size.saturating_mul(4);
    let unwrapped = match unwrap(
        &incoming.raw,
        keys.list_key.cert(),
        &keys.signers,
        limit,
        SystemTime::from(now),
    ) {
        Ok(unwrapped) => unwrapped,
        Err(error) => {
            let reason = error.to_string();
            warn!(msg = id, %reason, "quarantined");
            batch.add_spool.extend(notice_for_pst(
                config,
                notice,
                now,
                &format!("message {id} quarantined"),
                &format!(
                    "Message {id}, received {}, could not be processed and is held in the\n\
                     quarantine: {reason}.\n\nIts content is not included here.\n",
                    crate::clock::from_millis(incoming.meta.received).to_rfc2822(),
                ),
            ));
            batch.quarantine.push((
                QuarantineMeta {
                    time: to_millis(now),
                    reason,
                    incoming: incoming.meta,
                },
                incoming.raw,
            ));
            return batch;
        }
    };

    for name in lists {
        let Some(list) = config.list(name) else {
            continue;
        };
        if let Some(refusal) = posting_refusal(config, list, &unwrapped) {
            warn!(msg = id, list = %name, %refusal, "held for moderation");
            batch.add_spool.extend(notice_for_pst(
                config,
                notice,
                now,
                &format!("post to the {name} list held"),
                &format!(
                    "Message {id} to {} from {} was not forwarded: {refusal}.\n\
                     It is held in the quarantine.\n",
                    list.address, unwrapped.sender
                ),
            ));
            batch.quarantine.push((
                QuarantineMeta {
                    time: to_millis(now),
                    reason: format!("{name}: {refusal}"),
                    incoming: incoming.meta.clone(),
                },
                incoming.raw.clone(),
            ));
            continue;
        }
        let identity = ListIdentity::new(config, list);
        let info = info_text(&identity, &unwrapped, &incoming.meta, notice);
        let members = config.members_of(list);
        let outcome = seal_copies(
            keys, &identity, list, &members, &unwrapped, &info, id, notice, now,
        );
        info!(
            msg = id,
            list = %name,
            copies = outcome.copies.len(),
            without_key = outcome.problems.len(),
            "fanned out"
        );
        if !outcome.problems.is_empty() {
            let lines: String = outcome
                .problems
                .iter()
                .map(|(member, problem)| format!("- {member}: {problem}\n"))
                .collect();
            batch.add_spool.extend(notice_for_pst(
                config,
                notice,
                now,
                &format!(
                    "{} member(s) of the {name} list got no copy",
                    outcome.problems.len()
                ),
                &format!(
                    "Message {id} to {} was not sent to these members, because their\n\
                     keys cannot be used. Nothing was sent to them in plaintext.\n\n{lines}\n\
                     Fix the key files (see `embargod check`) and reload.\n",
                    list.address
                ),
            ));
        }
        batch.add_queue.extend(outcome.copies);
        batch.records.extend(outcome.records);
    }
    batch
}

/// Why mail must not be processed again: it is the daemon's own.
fn loop_reason(config: &Config, mail_from: &str, raw: &[u8]) -> Option<&'static str> {
    let own = config.delivery.from.to_string();
    if mail_from.eq_ignore_ascii_case(&own) {
        return Some("envelope sender is the daemon's own");
    }
    let parsed = mail_parser::MessageParser::default().parse_headers(raw)?;
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

/// Who may post where. Anyone may write to the security list; the
/// distributors list takes only posts signed by a PST member or a
/// distributor, checked against their pinned keys (the From field
/// authorises nothing).
fn posting_refusal(config: &Config, list: &List, unwrapped: &Unwrapped) -> Option<String> {
    if list.name == ListName::Security {
        return None;
    }
    let allowed: Vec<&str> = config
        .lists
        .security
        .members
        .iter()
        .chain(&list.members)
        .map(String::as_str)
        .collect();
    if unwrapped
        .signatures
        .good_signers()
        .any(|signer| allowed.contains(&signer))
    {
        return None;
    }
    Some(if unwrapped.signatures.0.is_empty() {
        "not signed; posts to this list must be signed by a PST member or distributor".to_string()
    } else {
        format!(
            "no valid signature by a PST member or distributor ({})",
            unwrapped.signatures
        )
    })
}

/// The text part at the top of every copy: how the message arrived.
fn info_text(
    list: &ListIdentity,
    unwrapped: &Unwrapped,
    meta: &IncomingMeta,
    notice: bool,
) -> String {
    if notice {
        return format!(
            "Notice from embargod, the daemon of {} <{}>.\n",
            list.display, list.address
        );
    }
    let envelope = match &meta.source {
        Source::Lmtp { mail_from, .. } if mail_from.is_empty() => "<> (a bounce)".to_string(),
        Source::Lmtp { mail_from, .. } => mail_from.clone(),
        Source::Notice => String::new(),
    };
    let encryption = match unwrapped.encryption {
        Encryption::ToList => "encrypted to the list key",
        Encryption::None => "NOT encrypted: it crossed the network in plaintext",
        Encryption::ToOthers => {
            "encrypted to other keys, not the list's: passed on as received, the list could not read it"
        }
    };
    format!(
        "Message to {} <{}>\n\
         From: {}\n\
         Envelope sender: {envelope}\n\
         Received: {}\n\
         Encryption: {encryption}\n\
         Signature: {}\n",
        list.display,
        list.address,
        unwrapped.sender,
        crate::clock::from_millis(meta.received).to_rfc2822(),
        unwrapped.signatures,
    )
}

/// A notice to the PST about a problem — unless the problem arose while
/// handling a notice: notices never beget notices.
fn notice_for_pst(
    config: &Config,
    about_notice: bool,
    now: DateTime<Utc>,
    subject: &str,
    body: &str,
) -> Option<Incoming> {
    if about_notice {
        warn!(subject, "problem while sending a notice; logged only");
        return None;
    }
    Some(crate::notice::to_pst(config, now, subject, body))
}
