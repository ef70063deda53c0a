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

use crate::clock::Timestamp;
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

impl Post<'_> {
    /// Its envelope sender (RFC 5321 MAIL FROM), when it came by mail.
    pub fn envelope_sender(&self) -> Option<&str> {
        match &self.incoming.meta.source {
            Source::Mail { mail_from, .. } => Some(mail_from),
            _ => None,
        }
    }
}

/// Whether words a member signed name `case`: an `X-Case:` line, or a
/// Subject the same signature covers. (The outer Subject and References
/// are anyone's to edit.)
pub(crate) fn names_case(
    ctx: &Context<'_>,
    unwrapped: &Unwrapped,
    keywords: &[crate::keywords::Keyword],
    case: &str,
) -> bool {
    let Some(signer) = unwrapped.signatures.good_signers().next() else {
        return false;
    };
    crate::keywords::get(keywords, "case")
        .and_then(|named| crate::case::id_in(ctx.config, named))
        .is_some_and(|named| named == case)
        || (unwrapped.headers_signer.as_deref() == Some(signer)
            && crate::case::id_in(ctx.config, &unwrapped.subject)
                .is_some_and(|named| named == case))
}

/// Decides what becomes of spool entry `id`.
pub fn process(ctx: &Context<'_>, id: u64, incoming: Incoming) -> Transaction {
    let config = ctx.config;
    let mut batch = Transaction::new();
    batch.unspool(id);
    let mut incoming = incoming;
    if let Source::Bounce {
        mail_from,
        rcpts,
        via,
    } = &incoming.meta.source
    {
        match crate::bounce::post(ctx, &mut batch, id, rcpts, &incoming) {
            crate::bounce::Handled::Done => return batch,
            // A person wrote to the owner address: the PST reads it.
            crate::bounce::Handled::ToThePst => {
                incoming.meta.source = Source::Mail {
                    mail_from: mail_from.clone(),
                    lists: vec![ListName::Security],
                    via: via.clone(),
                }
            }
        }
    }
    if let Source::Mail { mail_from, .. } = &incoming.meta.source {
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
                    incoming.meta.received.to_datetime().to_rfc2822(),
                ),
            ) {
                batch.spool(notice);
            };
            batch.quarantine(
                QuarantineMeta {
                    time: Timestamp::from(ctx.now),
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
        Source::Bounce { .. } => {}
        Source::Mail { lists, .. } => {
            crate::keyrefresh::offered_in(ctx, &mut batch, id, &incoming.raw, &unwrapped.content);
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
    if crate::bounce::owner_token(config, mail_from).is_some() {
        return Some("envelope sender is the daemon's own");
    }
    // A server that bounces to the From field instead of the envelope
    // sender: a report about delivery, never a report for the PST.
    if mail_from.is_empty()
        && matches!(
            crate::bounce::dsn::read(raw).kind,
            crate::bounce::dsn::Kind::Failed
                | crate::bounce::dsn::Kind::Delayed
                | crate::bounce::dsn::Kind::Delivered
        )
    {
        return Some("a delivery status notification sent to a list address");
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

#[cfg(test)]
mod tests {
    //! The routing step alone: a spool entry in, a transaction out, with
    //! nothing written — what each list decides, checked on the
    //! transaction itself.

    use super::*;
    use crate::config::Config;
    use crate::keys::Keys;
    use crate::sandbox::{Sandbox, DISTRIBUTORS, OWNER, SECURITY};
    use crate::store::{IncomingMeta, Intake, Store, StoreKey};

    struct World {
        _dir: tempfile::TempDir,
        config: Config,
        keys: Keys,
        store: Store,
    }

    /// Two PST members and one distributor, a fresh store.
    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(dir.path()).unwrap();
        sandbox
            .generate_member("alice", ListName::Security)
            .unwrap();
        sandbox.generate_member("bob", ListName::Security).unwrap();
        sandbox
            .generate_member("dora", ListName::Distributors)
            .unwrap();
        let config = Config::load(&sandbox.write_config().unwrap()).unwrap();
        let keys = Keys::load(&config).unwrap();
        let store = Store::open(
            &config.store.path,
            StoreKey::load(&config.store.key).unwrap(),
        )
        .unwrap();
        World {
            _dir: dir,
            config,
            keys,
            store,
        }
    }

    impl World {
        fn route(&self, mail_from: &str, list: ListName, raw: &str) -> Transaction {
            let ctx = Context {
                config: &self.config,
                keys: &self.keys,
                store: &self.store,
                now: chrono::Utc::now(),
            };
            let incoming = Incoming {
                meta: IncomingMeta {
                    received: Timestamp::from(ctx.now),
                    source: Source::Mail {
                        mail_from: mail_from.into(),
                        lists: vec![list],
                        via: Intake::Lmtp,
                    },
                },
                raw: raw.as_bytes().to_vec(),
            };
            process(&ctx, 7, incoming)
        }
    }

    fn recipients(tx: &Transaction) -> Vec<String> {
        let mut to: Vec<String> = tx.queued().iter().map(|(_, c)| c.to.clone()).collect();
        to.sort();
        to
    }

    #[test]
    fn a_report_opens_a_case_and_goes_to_each_pst_member() {
        let w = world();
        let tx = w.route(
            "rita@reporter.example",
            ListName::Security,
            &format!(
                "From: Rita <rita@reporter.example>\r\nTo: {SECURITY}\r\n\
                 Subject: overflow in the parser\r\nMessage-ID: <r1@reporter.example>\r\n\r\n\
                 The parser overflows on long input.\r\n"
            ),
        );
        assert_eq!(
            recipients(&tx),
            [
                "alice@example.org",
                "bob@example.org",
                "rita@reporter.example"
            ],
            "a copy per PST member and the reporter's acknowledgement, none to the distributor"
        );
        assert!(tx.queued().iter().all(|(_, c)| c.case.is_some()));
        let (_, ack) = tx
            .queued()
            .iter()
            .find(|(_, c)| c.to == "rita@reporter.example")
            .unwrap();
        let ack = String::from_utf8_lossy(&ack.bytes);
        assert!(
            ack.contains("KAP-") && !ack.contains("overflows"),
            "the plaintext acknowledgement names the case and quotes nothing"
        );
        w.store.apply(tx).unwrap();
        let cases = crate::case::all(&w.store).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].reporter.as_deref(), Some("rita@reporter.example"));
        let records = crate::ledger::records(&w.store).unwrap();
        let queued: Vec<&str> = records
            .iter()
            .filter(|r| r.outcome == crate::ledger::Outcome::Queued)
            .map(|r| r.member.as_str())
            .collect();
        assert_eq!(
            queued.len(),
            3,
            "alice, bob and the acknowledgement: {queued:?}"
        );
    }

    #[test]
    fn an_unsigned_distributors_post_is_held_not_forwarded() {
        let w = world();
        let tx = w.route(
            "mallory@example.net",
            ListName::Distributors,
            &format!(
                "From: PST <alice@example.org>\r\nTo: {DISTRIBUTORS}\r\nSubject: patch\r\n\r\n\
                 X-Case: KAP-2026-0001\r\nX-Embargo-Until: 2099-01-01T16:00:00Z\r\n\r\nthe patch\r\n"
            ),
        );
        assert!(tx.queued().is_empty(), "nothing goes out");
        assert!(tx.spools(), "the PST is told");
        w.store.apply(tx).unwrap();
        assert!(
            crate::embargo::all(&w.store).unwrap().is_empty(),
            "no embargo is set by a From field"
        );
    }

    #[test]
    fn mail_from_the_daemon_itself_is_dropped() {
        let w = world();
        let tx = w.route(
            OWNER,
            ListName::Security,
            &format!("From: {OWNER}\r\nTo: {SECURITY}\r\nSubject: bounce\r\n\r\nx\r\n"),
        );
        assert!(tx.queued().is_empty() && !tx.spools());
    }
}
