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
use crate::mime::inbound::precheck;
use crate::state::Shared;
use crate::store::{
    Incoming, IncomingMeta, Intake, QuarantineMeta, Source, Store, StoreError, Table, Transaction,
};
pub use board::{Board, IntakeState, IntakeStatus, Target};

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
    /// Left in the mailbox, untaken, with why: larger than
    /// `lmtp.max_message_size`, or the server gives no content for it.
    Left(String),
}

/// One mailbox being taken in as a list's mail, or as bounces.
pub(crate) struct Mailbox<'a> {
    pub shared: &'a Arc<Shared>,
    pub target: Target,
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
            source: match self.target {
                Target::List(list) => Source::Mail {
                    mail_from: return_path(&raw),
                    lists: vec![list],
                    via: self.via.clone(),
                },
                Target::Bounces => Source::Bounce {
                    mail_from: return_path(&raw),
                    rcpts: crate::bounce::delivered_to(&config, &raw),
                    via: self.via.clone(),
                },
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
        let (list, mailbox) = (self.target.as_str(), self.label());
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
            Taken::Left(why) => {
                warn!(list, %mailbox, message, %why, "left in the mailbox, untaken");
                metrics.intake(list, "left");
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

    /// Adds to `tx` a notice telling the PST that `message` is left in the
    /// mailbox and why: nobody else would see it.
    pub fn notice_left(&self, tx: &mut Transaction, message: &str, why: &str, now: Timestamp) {
        let label = self.label();
        tx.spool(crate::notice::to_pst(
            &self.shared.config(),
            now.to_datetime(),
            "message left in the mailbox",
            &format!(
                "Message {message} in the mailbox {label} was not taken: {why}.\n\
                 It stays there, unread by embargod. Raise lmtp.max_message_size and restart,\n\
                 or read it in the mailbox and remove it.\n"
            ),
        ));
    }

    /// Records a failure that does not end the intake (a removal that
    /// failed): logged and shown in `embargod status`.
    pub fn note_error(&self, error: &dyn std::fmt::Display) {
        let (list, mailbox) = (self.target.as_str(), self.label());
        warn!(list, %mailbox, %error, "mailbox intake");
        self.shared.metrics.intake(list, "error");
        let now = Timestamp::from(self.shared.clock.now());
        self.update(|s| s.last_error = Some((now, error.to_string())));
    }

    /// Records a failure: logged, counted, and shown in `embargod status`
    /// as reconnecting since `since`.
    pub fn failed(
        &self,
        error: &dyn std::fmt::Display,
        since: Timestamp,
        retry_in: std::time::Duration,
    ) {
        let (list, mailbox) = (self.target.as_str(), self.label());
        warn!(list, %mailbox, %error, ?retry_in, "mailbox intake failed; retrying");
        self.shared.metrics.intake(list, "error");
        let now = Timestamp::from(self.shared.clock.now());
        self.update(|s| {
            s.state = IntakeState::Reconnecting { since };
            s.last_error = Some((now, error.to_string()));
        });
    }

    fn update(&self, change: impl FnOnce(&mut IntakeStatus)) {
        self.shared
            .intakes
            .update(self.target, self.label(), change);
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

/// When the message `identity` was taken from `mailbox`, if within the
/// last [`REMEMBERED`].
pub(crate) fn taken_at(
    store: &Store,
    mailbox: &[u8],
    identity: &[u8; 16],
) -> Result<Option<Timestamp>, StoreError> {
    store
        .get(&TAKEN, &taken_key(mailbox, identity))?
        .map(|value| crate::store::be_u64(&value).map(Timestamp::from_millis))
        .transpose()
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
/// (RFC 5321 section 4.4): the first one, on top, the last server's (a
/// sender may have written others below it); empty for `<>` (a bounce)
/// and when there is none, so no automatic reply goes anywhere. Never
/// the `From:`.
fn return_path(raw: &[u8]) -> String {
    use mail_parser::{HeaderName, HeaderValue};
    let Some(message) = crate::mime::parse_headers(raw) else {
        return String::new();
    };
    let first = message
        .headers()
        .iter()
        .find(|h| h.name == HeaderName::ReturnPath);
    match first.map(|h| &h.value) {
        Some(HeaderValue::Address(address)) => address
            .first()
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string(),
        Some(HeaderValue::Text(text)) => text.trim_matches(['<', '>', ' ']).to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::return_path;

    #[test]
    fn the_return_path_is_the_first_and_never_the_from() {
        let from = "From: Rita <rita@reporter.example>\r\n";
        assert_eq!(return_path(format!("{from}\r\nbody").as_bytes()), "");
        assert_eq!(
            return_path(format!("Return-Path: <>\r\n{from}\r\nbody").as_bytes()),
            ""
        );
        let forged = format!(
            "Return-Path: <bounce@provider.example>\r\nReceived: by mx\r\n\
             Return-Path: <victim@elsewhere.example>\r\n{from}\r\nbody"
        );
        assert_eq!(return_path(forged.as_bytes()), "bounce@provider.example");
    }
}
