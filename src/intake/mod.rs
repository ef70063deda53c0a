//! What the polled intakes share — an IMAP mailbox ([`crate::imap`]) and
//! a maildir ([`crate::maildir`]): how a message taken from a mailbox
//! enters the spool, what became of it, and each intake's line in
//! `embargod status`.
//!
//! Nobody is there to hear a refusal, as an LMTP client would: what the
//! LMTP intake refuses as not mail (no header, no `From:`, nesting too
//! deep) is quarantined with the reason and the PST told, never left in
//! the mailbox to be read again.

pub mod board;

use std::sync::Arc;

use tracing::{info, warn};

use crate::clock::Timestamp;
use crate::config::ListName;
use crate::mime::inbound::precheck;
use crate::state::Shared;
use crate::store::{
    Incoming, IncomingMeta, Intake, QuarantineMeta, Source, Store, StoreError, Table, Transaction,
};
pub use board::{Board, IntakeState, IntakeStatus};

/// What became of one message found in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Spooled: its size in bytes.
    Spooled(usize),
    /// Quarantined, with why.
    Quarantined(String),
    /// Taken before (under another UIDVALIDITY, or before a crash):
    /// only removed.
    Duplicate,
    /// Larger than `lmtp.max_message_size` (its size in bytes): left in
    /// the mailbox, unread.
    Left(u64),
}

/// One mailbox being taken in as a list's mail.
pub(crate) struct Mailbox<'a> {
    pub shared: &'a Arc<Shared>,
    pub list: ListName,
    /// How the spool entries say they came in.
    pub via: Intake,
}

impl Mailbox<'_> {
    /// The mailbox's name in logs and status.
    pub fn label(&self) -> &str {
        match &self.via {
            Intake::Imap(label) | Intake::Maildir(label) => label,
            Intake::Lmtp => "lmtp",
        }
    }

    /// Adds `raw` to `tx`: to the spool, or to the quarantine with a
    /// notice to the PST when the LMTP intake would have refused it.
    pub fn admit(&self, tx: &mut Transaction, raw: Vec<u8>, now: Timestamp) -> Taken {
        let config = self.shared.config();
        let meta = IncomingMeta {
            received: now,
            source: Source::Mail {
                mail_from: return_path(&raw),
                lists: vec![self.list],
                via: self.via.clone(),
            },
        };
        match precheck(&raw, config.lmtp.max_header_size) {
            Ok(()) => {
                let bytes = raw.len();
                tx.spool(Incoming { meta, raw });
                Taken::Spooled(bytes)
            }
            Err(refusal) => {
                let label = self.label();
                let reason = format!("taken from {label} but not mail: {refusal}");
                tx.spool(crate::notice::to_pst(
                    &config,
                    now.to_datetime(),
                    "message from the mailbox quarantined",
                    &format!(
                        "A message taken from the mailbox {label} could not be accepted and is\n\
                         held in the quarantine: {refusal}.\n\nIts content is not included here.\n"
                    ),
                ));
                tx.quarantine(
                    QuarantineMeta {
                        time: now,
                        reason: reason.clone(),
                        incoming: meta,
                    },
                    raw,
                );
                Taken::Quarantined(reason)
            }
        }
    }

    /// Logs and counts what became of `message` (a UID, a file name),
    /// and wakes the fan-out for what entered the spool. Call it once
    /// the transaction is durable.
    pub fn report(&self, message: &str, outcome: &Taken) {
        let (list, mailbox) = (self.list.as_str(), self.label());
        let metrics = &self.shared.metrics;
        match outcome {
            Taken::Spooled(bytes) => {
                info!(list, %mailbox, message, bytes, "taken from the mailbox");
                metrics.received(list);
                metrics.intake(list, "spooled");
            }
            Taken::Quarantined(reason) => {
                warn!(list, %mailbox, message, %reason, "quarantined");
                metrics.intake(list, "quarantined");
            }
            Taken::Duplicate => {
                info!(list, %mailbox, message, "taken before; removed only");
                metrics.intake(list, "duplicate");
            }
            Taken::Left(size) => {
                warn!(
                    list,
                    %mailbox,
                    message,
                    size,
                    "larger than lmtp.max_message_size; left in the mailbox"
                );
                metrics.intake(list, "too-large");
            }
        }
        if matches!(outcome, Taken::Spooled(_) | Taken::Quarantined(_)) {
            self.shared.wake_fanout.notify_one();
            self.update(|s| s.taken += 1);
        }
    }

    /// Sets the intake's state in `embargod status`.
    pub fn set_state(&self, state: IntakeState) {
        self.update(|s| s.state = state);
    }

    /// Records a failure: logged, counted, and shown in `embargod status`
    /// as reconnecting since `since`.
    pub fn failed(
        &self,
        error: &dyn std::fmt::Display,
        since: Timestamp,
        retry_in: std::time::Duration,
    ) {
        let (list, mailbox) = (self.list.as_str(), self.label());
        warn!(list, %mailbox, %error, ?retry_in, "mailbox intake failed; retrying");
        self.shared.metrics.intake(list, "error");
        let now = Timestamp::from(self.shared.clock.now());
        self.update(|s| {
            s.state = IntakeState::Reconnecting { since };
            s.last_error = Some((now, error.to_string()));
        });
    }

    fn update(&self, change: impl FnOnce(&mut IntakeStatus)) {
        self.shared.intakes.update(self.list, self.label(), change);
    }
}

/// mailbox digest (8 bytes) ++ message identity (16 bytes) → when it was
/// taken (ms, big-endian u64). Digests only: no content, no addresses.
static TAKEN: Table = Table::plain("intake_taken");

/// How long a taken message's identity is remembered: a server restored
/// from a backup older than this may hand a message over again.
pub(crate) const REMEMBERED: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

fn taken_key(mailbox: &[u8], identity: &[u8; 16]) -> Vec<u8> {
    let digest = openssl::sha::sha256(mailbox);
    [&digest[..8], &identity[..]].concat()
}

/// Records, in `tx`, that the message `identity` was taken from `mailbox` at `now`.
pub(crate) fn remember(tx: &mut Transaction, mailbox: &[u8], identity: &[u8; 16], now: Timestamp) {
    tx.put(
        &TAKEN,
        taken_key(mailbox, identity),
        now.millis().to_be_bytes().to_vec(),
    );
}

/// Whether the message `identity` was taken from `mailbox` in the last
/// [`REMEMBERED`].
pub(crate) fn was_taken(
    store: &Store,
    mailbox: &[u8],
    identity: &[u8; 16],
) -> Result<bool, StoreError> {
    Ok(store.get(&TAKEN, &taken_key(mailbox, identity))?.is_some())
}

/// Forgets identities taken from `mailbox` before `before`.
pub(crate) fn forget_before(
    store: &Store,
    mailbox: &[u8],
    before: Timestamp,
) -> Result<usize, StoreError> {
    let prefix = openssl::sha::sha256(mailbox);
    let mut tx = Transaction::new();
    let mut forgotten = 0;
    for (key, value) in store.scan(&TAKEN, &prefix[..8])? {
        let when = crate::store::be_u64(&value)?;
        if when < before.millis() {
            tx.remove(&TAKEN, key);
            forgotten += 1;
        }
    }
    if forgotten > 0 {
        store.apply(tx)?;
    }
    Ok(forgotten)
}

/// The envelope sender the delivering server wrote as `Return-Path:`
/// (RFC 5321 section 4.4): the first one, the last server's; empty when
/// there is none, so no automatic reply goes anywhere.
fn return_path(raw: &[u8]) -> String {
    crate::mime::parse_headers(raw)
        .and_then(|m| m.return_address().map(str::to_owned))
        .unwrap_or_default()
}
