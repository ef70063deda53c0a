//! Routing: what each list does with a message, returned as one store
//! [`Transaction`] per spool entry (the copies to queue, records, notices,
//! embargo and case changes, or a quarantine entry). Nothing is written
//! until it commits, so a crash half-way re-runs the decision.
//!
//! - [`security`]: anyone may write; the message goes into the case
//!   process ([`crate::case`]) and to the PST and the case's Fix Team;
//! - [`distributors`]: only posts signed by pinned keys, with the embargo
//!   keywords ([`crate::embargo`]);
//! - [`notices`]: the daemon's own messages to the PST, lists or a member;
//! - the announce list receives nothing; the release publishes to it
//!   ([`crate::embargo::release`]).
//!
//! Each route returns who gets what; [`crate::fanout`] makes the copies.

pub mod distributors;
pub mod hold;
pub mod notices;
pub mod security;

use std::time::SystemTime;

use tracing::{info, warn};

use crate::clock::{from_millis, to_millis};
use crate::config::{Config, ListName};
use crate::context::{Context, Origin};
use crate::mime::inbound::{unwrap, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::store::{Audience, Incoming, QuarantineMeta, Source, Transaction};

/// A message being routed: what every route reads of it.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// Its spool id, which names it in logs, the ledger and notices.
    pub id: u64,
    /// As received (kept byte for byte for the quarantine).
    pub incoming: &'a Incoming,
    /// As read: decrypted, its signatures checked, its text found.
    pub unwrapped: &'a Unwrapped,
}

/// Decides what becomes of spool entry `id`.
pub fn process(ctx: &Context<'_>, id: u64, incoming: Incoming) -> Transaction {
    let config = ctx.config;
    let mut batch = Transaction::new();
    batch.unspool(id);
    if let Source::Lmtp { mail_from, .. } = &incoming.meta.source {
        if let Some(reason) = loop_reason(config, mail_from, &incoming.raw) {
            info!(msg = id, reason, "dropped: mail loop");
            return batch;
        }
    }
    let origin = Origin::from(&incoming.meta.source);
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
            if let Some(notice) = ctx.notice(
                origin,
                Audience::Pst,
                &format!("message {id} quarantined"),
                &format!(
                    "Message {id}, received {}, could not be processed and is held in the\n\
                     quarantine: {reason}.\n\nIts content is not included here.\n",
                    from_millis(incoming.meta.received).to_rfc2822(),
                ),
            ) {
                batch.spool(notice);
            };
            batch.quarantine(
                QuarantineMeta {
                    time: to_millis(ctx.now),
                    reason,
                    incoming: incoming.meta,
                },
                incoming.raw,
            );
            return batch;
        }
    };

    let post = Post {
        id,
        incoming: &incoming,
        unwrapped: &unwrapped,
    };
    match &incoming.meta.source {
        Source::Notice { to } => notices::post(ctx, &mut batch, id, to, &unwrapped),
        Source::Lmtp { lists, .. } => {
            for &name in lists {
                match name {
                    ListName::Security => security::post(ctx, &mut batch, post),
                    ListName::Distributors => distributors::post(ctx, &mut batch, post),
                    // The announce list receives nothing over LMTP.
                    ListName::Announce => {}
                }
            }
        }
    }
    batch
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
