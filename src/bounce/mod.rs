//! Bounces: which member's copies do not arrive, found from the mail that
//! comes back, the way Mailman does it — and told to the PST once.
//!
//! Each member's copy leaves with its own envelope sender (VERP):
//! `OWNER+TOKEN@DOMAIN`, `OWNER@DOMAIN` being `delivery.from` and `TOKEN`
//! a keyed hash of the copy id ([`crate::mark::MarkSecret::verp_token`]),
//! so the envelope names neither the member nor the copy to anyone
//! without the store key. The MTA hands mail for the owner address (with
//! any `+TOKEN`) to the daemon over LMTP, or `embargod deliver
//! --recipient`; [`post`] reads it ([`dsn`]) and looks the token up:
//!
//! - only a bounce naming a copy of ours counts — a bounce without a
//!   valid token, an auto-reply, or a person writing to the owner address
//!   is logged and dropped, so a forged bounce can do nothing;
//! - a permanent failure (RFC 3464 `Action: failed`, 5.X.X, and the
//!   non-standard shapes) adds to the member's score ([`standing`]); a
//!   delay counts for nothing;
//! - each copy counts once, however often its bounce comes back.
//!
//! A bounce is never answered, forwarded or quoted: the PST's notice
//! names the member, the copy and the server's status line only.

pub mod dsn;
pub mod standing;

use tracing::info;

use crate::clock::Timestamp;
use crate::config::Config;
use crate::context::Context;
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mark::index::CopyInfo;
use crate::mark::MarkSecret;
use crate::store::{be_u64, Incoming, Store, StoreError, Table, Transaction};

/// VERP token → copy id and queue time (both big-endian u64, ms), then
/// one byte: 1 once a bounce of the copy was counted. Plain: it names a
/// copy, never a member or content.
static TOKENS: Table = Table::plain("bounce_tokens");

/// A copy a bounce is about, as the standing needs it.
#[derive(Debug, Clone)]
pub struct Bounced {
    /// The copy (member, list, case, message).
    pub copy: CopyInfo,
    /// When the copy was first queued.
    pub queued: Timestamp,
    /// The RFC 3463 status and the server's words, on one line.
    pub diagnostic: String,
}

/// Records `copy_id`'s VERP token when `tx` is applied; `queued` is when
/// the copy was queued.
pub fn put_token(tx: &mut Transaction, marks: &MarkSecret, copy_id: u64, queued: Timestamp) {
    tx.put(
        &TOKENS,
        marks.verp_token(copy_id).into_bytes(),
        token_value(copy_id, queued, false),
    );
}

fn token_value(copy_id: u64, queued: Timestamp, counted: bool) -> Vec<u8> {
    let mut value = copy_id.to_be_bytes().to_vec();
    value.extend_from_slice(&queued.millis().to_be_bytes());
    value.push(u8::from(counted));
    value
}

/// The envelope sender of copy `copy_id`: `LOCAL+TOKEN@DOMAIN` of
/// `delivery.from` (RFC 5321 §4.1.2 reverse-path).
pub fn verp_sender(config: &Config, marks: &MarkSecret, copy_id: u64) -> lettre::Address {
    let from = &config.delivery.from;
    let user = format!("{}+{}", from.user(), marks.verp_token(copy_id));
    lettre::Address::new(user, from.domain()).unwrap_or_else(|_| from.clone())
}

/// Whether `address` is the owner address (`delivery.from`), and if so
/// the VERP token it carries: `Some(None)` for the bare address.
pub fn owner_token(config: &Config, address: &str) -> Option<Option<String>> {
    let from = &config.delivery.from;
    let (local, domain) = address.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(from.domain()) {
        return None;
    }
    if local.eq_ignore_ascii_case(from.user()) {
        return Some(None);
    }
    let (user, token) = local.split_once('+')?;
    user.eq_ignore_ascii_case(from.user())
        .then(|| Some(token.to_ascii_lowercase()))
}

/// The owner addresses a message taken from a mailbox was delivered to,
/// from the header fields mail systems add (`Delivered-To:`,
/// `X-Original-To:`, `Envelope-To:`) and `To:` (a DSN is addressed to the
/// envelope sender it returns to). Anyone can write these fields: what
/// counts is the token, which only the copy's envelope carried.
pub fn delivered_to(config: &Config, raw: &[u8]) -> Vec<String> {
    let Some(headers) = crate::mime::parse_headers(raw) else {
        return Vec::new();
    };
    let mut found: Vec<String> = Vec::new();
    for name in ["Delivered-To", "X-Original-To", "Envelope-To", "To"] {
        for value in headers.header_values(name) {
            let text = match value {
                mail_parser::HeaderValue::Address(address) => address
                    .iter()
                    .filter_map(|a| a.address())
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
                other => other
                    .as_text()
                    .map(|t| vec![t.trim().trim_matches(['<', '>']).to_string()])
                    .unwrap_or_default(),
            };
            for address in text {
                if owner_token(config, &address).is_some()
                    && !found.iter().any(|f| f.eq_ignore_ascii_case(&address))
                {
                    found.push(address);
                }
            }
        }
    }
    found.truncate(8);
    found
}

/// What became of mail to the owner address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A bounce, a delay warning, an auto-reply or a key refresh: done.
    Done,
    /// Written by a person: it goes to the PST like mail to the security
    /// list, so nothing written to the owner address is lost.
    ToThePst,
}

/// Handles spool entry `id`, mail to the owner address `rcpts`: a bounce
/// of one of our copies counts against its member; a delay warning or an
/// auto-reply is dropped with a log line; a member's reply carrying their
/// refreshed key ([`crate::keyrefresh`]) refreshes it; anything else is
/// for the PST.
pub fn post(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: u64,
    rcpts: &[String],
    incoming: &Incoming,
) -> Handled {
    let report = dsn::read(&incoming.raw);
    let mut tokens: Vec<String> = rcpts
        .iter()
        .filter_map(|rcpt| owner_token(ctx.config, rcpt).flatten())
        .collect();
    // One message counts once per copy and once per member, however many
    // times (or spellings) it names a token.
    tokens.sort();
    tokens.dedup();
    let mut members_counted = std::collections::HashSet::new();
    match report.kind {
        dsn::Kind::Failed => {}
        dsn::Kind::Other => {
            // A reply to a key warning: the key is taken, no case opened.
            if crate::keyrefresh::offered_in(ctx, batch, id, &incoming.raw, &incoming.raw) {
                return Handled::Done;
            }
            info!(
                msg = id,
                "mail to the owner address, not a bounce: to the PST"
            );
            return Handled::ToThePst;
        }
        kind => {
            info!(
                msg = id,
                ?kind,
                shape = report.shape,
                "mail to the owner address: not a failure, dropped"
            );
            return Handled::Done;
        }
    }
    if tokens.is_empty() {
        info!(
            msg = id,
            shape = report.shape,
            "bounce without a VERP token: it names no copy of ours, dropped"
        );
        return Handled::Done;
    }
    let recipient = report.recipients.first().cloned().unwrap_or_default();
    let diagnostic = match (&recipient.status, recipient.diagnostic.as_str()) {
        (Some(status), "") => status.clone(),
        (Some(status), words) if !words.contains(status.as_str()) => format!("{status} {words}"),
        (None, "") => format!("(a {} bounce with no status given)", report.shape),
        (_, words) => words.to_string(),
    };
    for token in tokens {
        match lookup(ctx.store, &token) {
            Ok(Some((copy_id, queued, counted))) => {
                if counted {
                    info!(msg = id, copy = %crate::mark::copy_id_hex(copy_id), "bounce of a copy already counted, dropped");
                    continue;
                }
                let Ok(Some(copy)) = crate::mark::index::copy(ctx.store, copy_id) else {
                    info!(msg = id, "bounce of a copy no longer indexed, dropped");
                    continue;
                };
                batch.put(
                    &TOKENS,
                    token.into_bytes(),
                    token_value(copy_id, queued, true),
                );
                if !members_counted.insert(copy.member.clone()) {
                    continue;
                }
                info!(msg = id, copy = %crate::mark::copy_id_hex(copy_id), member = %copy.member, shape = report.shape, %diagnostic, "bounce");
                let mut record = DeliveryRecord::new(
                    Timestamp::from(ctx.now),
                    copy.message,
                    copy.case.clone(),
                    copy.list,
                    &copy.member,
                    Outcome::Bounced(diagnostic.clone()),
                );
                record.copy_id = Some(copy_id);
                crate::ledger::append(batch, record);
                if !recipient.about_the_address() {
                    info!(msg = id, member = %copy.member, "the bounce is about the message, not the address: not counted against the member");
                    continue;
                }
                standing::register(
                    ctx,
                    batch,
                    &Bounced {
                        copy,
                        queued,
                        diagnostic: diagnostic.clone(),
                    },
                );
            }
            Ok(None) => info!(msg = id, "bounce with an unknown VERP token, dropped"),
            Err(e) => tracing::warn!(msg = id, error = %e, "cannot read a VERP token"),
        }
    }
    Handled::Done
}

fn lookup(store: &Store, token: &str) -> Result<Option<(u64, Timestamp, bool)>, StoreError> {
    let Some(value) = store.get(&TOKENS, token.as_bytes())? else {
        return Ok(None);
    };
    if value.len() != 17 {
        return Err(StoreError::Corrupt("bounce token".into()));
    }
    Ok(Some((
        be_u64(&value[..8])?,
        Timestamp::from_millis(be_u64(&value[8..16])?),
        value[16] == 1,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_address_and_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = crate::sandbox::Sandbox::new(dir.path()).unwrap();
        let config = Config::load(&sandbox.write_config().unwrap()).unwrap();
        let marks = MarkSecret::derive(&[7; 32]);
        let sender = verp_sender(&config, &marks, 42).to_string();
        assert!(sender.starts_with("security-owner+") && sender.ends_with("@kappital.example"));
        assert!(!sender.contains("42"));
        assert_eq!(
            owner_token(&config, &sender),
            Some(Some(marks.verp_token(42)))
        );
        assert_eq!(
            owner_token(&config, "Security-Owner@KAPPITAL.example"),
            Some(None)
        );
        assert_eq!(owner_token(&config, "security@kappital.example"), None);
        assert_eq!(
            owner_token(&config, "security-owner@elsewhere.example"),
            None
        );
        assert_ne!(marks.verp_token(42), marks.verp_token(43));
    }
}
