//! IMAP intake: a hosted mailbox taken in as a list's mail, for projects
//! that run no mail server (RFC 9051; IDLE, RFC 2177; MOVE, RFC 6851;
//! UIDPLUS, RFC 4315).
//!
//! One task per configured mailbox ([`run`]) keeps one connection: it
//! logs in, selects the mailbox, takes every message in it, then waits in
//! IDLE (or sleeps `poll_interval` when the server has no IDLE) and takes
//! again. A lost connection or a refused login is retried with backoff,
//! 1 s doubling to 5 min; what was spooled stays spooled.
//!
//! **Never lost, never taken twice.** A message is spooled (sealed,
//! flushed) in the same store transaction that moves the mailbox's
//! [`position`] past its UID; only then is it removed from the mailbox
//! (`\Deleted` and `UID EXPUNGE`, or `MOVE` to `processed_mailbox`). A
//! crash between the two leaves it in the mailbox at or below the
//! position: the next round removes it without taking it again. A UID
//! means nothing under another UIDVALIDITY (RFC 9051 section 2.3.1.1):
//! when that changes, or the store has no position for the mailbox yet,
//! each message is compared by identity (its Message-ID and body,
//! digested) with those taken in the last 30 days instead.
//!
//! A message the LMTP intake would refuse (no header, no `From:`, nesting
//! too deep) is quarantined with the reason and the PST told, never left
//! to loop; one larger than `lmtp.max_message_size` is left in the
//! mailbox, unread, with a warning.

mod connect;
pub(crate) mod position;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::Timestamp;
use crate::config::{ImapIntake, ListName};
use crate::intake::{IntakeState, Mailbox, Taken};
use crate::state::Shared;
use crate::store::{Intake, StoreError, Transaction};
use connect::ImapSession;
use position::Position;

/// How long one command (SELECT, a FETCH, STORE, EXPUNGE) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages fetched and spooled before the ones taken are removed.
const BATCH: usize = 100;
/// The first and the longest wait before reconnecting.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a session with the mailbox ended.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum ImapError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error("password file {}: {reason}", path.display())]
    Password { path: PathBuf, reason: String },
    #[error("login as {username:?} refused: {reason}")]
    Login { username: String, reason: String },
    #[error("mailbox {mailbox:?}: {reason}")]
    Mailbox { mailbox: String, reason: String },
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error("no answer to {0} within the time allowed")]
    Timeout(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the password file of `intake` (readable, mode 0600, not
/// empty) without connecting.
///
/// Errors: [`ImapError::Password`].
pub fn check_password(intake: &ImapIntake) -> Result<(), ImapError> {
    connect::read_password(&intake.password_file).map(drop)
}

/// Logs in to `intake`'s server and looks at its mailbox (and the
/// `processed_mailbox`), for `embargod check`: what the server offers and
/// how many messages wait. Takes nothing.
///
/// Errors: any [`ImapError`] of connecting, logging in, or a mailbox
/// that does not exist.
pub async fn probe(intake: &ImapIntake) -> Result<String, ImapError> {
    let mut session = connect::login(intake).await?;
    let capabilities = within("CAPABILITY", session.capabilities()).await?;
    let mut detail = format!("logged in as {:?}", intake.username);
    for mailbox in std::iter::once(&intake.mailbox).chain(intake.processed_mailbox.as_ref()) {
        let status = within("STATUS", session.status(mailbox, "(MESSAGES)"))
            .await
            .map_err(|e| ImapError::Mailbox {
                mailbox: mailbox.clone(),
                reason: e.to_string(),
            })?;
        if *mailbox == intake.mailbox {
            detail.push_str(&format!(
                "; {} message(s) in {mailbox:?} waiting to be taken",
                status.exists
            ));
        } else {
            detail.push_str(&format!("; taken messages are moved to {mailbox:?}"));
        }
    }
    if capabilities.has_str("IDLE") {
        detail.push_str("; IDLE: new mail is taken at once");
    } else {
        detail.push_str(&format!(
            "; no IDLE: checked every {}",
            humantime::format_duration(intake.poll_interval)
        ));
    }
    let _ = session.logout().await;
    Ok(detail)
}

/// Takes in `list`'s mailbox until `shutdown`, reconnecting with backoff.
/// The configuration is read again at each connection, so a reload that
/// changes the mailbox takes effect at the next one.
pub async fn run(shared: Arc<Shared>, list: ListName, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_FIRST;
    let mut failing_since = None;
    loop {
        let Some(intake) = shared.config().list(list).and_then(|l| l.imap.clone()) else {
            return;
        };
        let mailbox = Mailbox {
            shared: &shared,
            list,
            via: Intake::Imap(intake.label()),
        };
        mailbox.set_state(IntakeState::Connecting);
        let mut logged_in = false;
        let ended = tokio::select! {
            ended = session(&mailbox, &intake, &shutdown, &mut logged_in) => ended,
            // Each message is taken in one transaction: stopping between
            // any two steps leaves it either untaken or taken, never half.
            _ = shutdown.cancelled() => return,
        };
        if logged_in {
            backoff = BACKOFF_FIRST;
            failing_since = None;
        }
        let error = match ended {
            Ok(()) => return,
            Err(error) => error,
        };
        let since = *failing_since.get_or_insert(Timestamp::from(shared.clock.now()));
        mailbox.failed(&error, since, backoff);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: rounds of taking, with IDLE or a sleep between them.
/// Returns `Ok` only at shutdown.
async fn session(
    mailbox: &Mailbox<'_>,
    intake: &ImapIntake,
    shutdown: &CancellationToken,
    logged_in: &mut bool,
) -> Result<(), ImapError> {
    let (shared, list, label) = (mailbox.shared, mailbox.list, mailbox.label());
    let mut session = connect::login(intake).await?;
    *logged_in = true;
    let capabilities = within("CAPABILITY", session.capabilities()).await?;
    let idle = capabilities.has_str("IDLE");
    let mailbox_key = position::key(list.as_str(), label);
    let before = Timestamp::from(shared.clock.now()) - crate::intake::REMEMBERED;
    crate::blocking({
        let (store, mailbox_key) = (shared.store.clone(), mailbox_key.clone());
        move || crate::intake::forget_before(&store, &mailbox_key, before)
    })
    .await?;
    info!(list = list.as_str(), mailbox = %label, idle, "IMAP intake logged in");
    let mut round = Round {
        mailbox,
        intake,
        key: &mailbox_key,
        can_move: capabilities.has_str("MOVE"),
        uidplus: capabilities.has_str("UIDPLUS"),
    };
    loop {
        round.take_all(&mut session).await?;
        let state = if idle {
            IntakeState::Idle
        } else {
            IntakeState::Polling
        };
        mailbox.set_state(state);
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if idle {
            session = wait_idle(session, intake.poll_interval).await?;
        } else {
            tokio::time::sleep(intake.poll_interval).await;
        }
    }
}

/// Waits in IDLE until the server reports a change, or `at_most` passed.
async fn wait_idle(session: ImapSession, at_most: Duration) -> Result<ImapSession, ImapError> {
    let mut idle = session.idle();
    within("IDLE", idle.init()).await?;
    let (wait, _stop) = idle.wait_with_timeout(at_most);
    match wait.await? {
        async_imap::extensions::idle::IdleResponse::NewData(data) => {
            debug!(response = ?data.parsed(), "IDLE: mailbox changed")
        }
        _ => debug!("IDLE: checking again"),
    }
    within("DONE", idle.done()).await
}

/// Runs an IMAP command with [`COMMAND_TIMEOUT`].
async fn within<T>(
    what: &'static str,
    command: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(COMMAND_TIMEOUT, command)
        .await
        .map_err(|_| ImapError::Timeout(what))?
        .map_err(ImapError::from)
}

/// What one round reads: the mailbox and where it is kept.
struct Round<'a> {
    mailbox: &'a Mailbox<'a>,
    intake: &'a ImapIntake,
    key: &'a [u8],
    /// The server has MOVE (RFC 6851) and UIDPLUS (RFC 4315).
    can_move: bool,
    uidplus: bool,
}

impl Round<'_> {
    /// Selects the mailbox, takes every new message in UID order, and
    /// removes what is taken.
    async fn take_all(&mut self, session: &mut ImapSession) -> Result<(), ImapError> {
        let mailbox = within("SELECT", session.select(&self.intake.mailbox))
            .await
            .map_err(|e| ImapError::Mailbox {
                mailbox: self.intake.mailbox.clone(),
                reason: e.to_string(),
            })?;
        let validity = mailbox.uid_validity.ok_or_else(|| ImapError::Mailbox {
            mailbox: self.intake.mailbox.clone(),
            reason: "the server gave no UIDVALIDITY".into(),
        })?;
        let store = &self.mailbox.shared.store;
        let saved = position::load(store, self.key)?;
        let (mut position, by_identity) = match saved {
            Some(p) if p.uid_validity == validity => (p, false),
            Some(p) => {
                warn!(
                    list = self.mailbox.list.as_str(),
                    mailbox = %self.mailbox.label(),
                    was = p.uid_validity,
                    now = validity,
                    "IMAP intake: UIDVALIDITY changed; messages are matched by Message-ID and body \
                     against those taken in the last 30 days, so none is taken twice"
                );
                (Position::new(validity), true)
            }
            None => (Position::new(validity), true),
        };
        if mailbox.exists == 0 {
            return Ok(());
        }
        let mut uids: Vec<u32> = within("UID SEARCH", session.uid_search("ALL"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        // Left messages that are gone need no more remembering.
        position.left.retain(|uid| uids.binary_search(uid).is_ok());
        let (done, new): (Vec<u32>, Vec<u32>) =
            uids.into_iter().partition(|&uid| uid <= position.last_uid);
        let done: Vec<u32> = done
            .into_iter()
            .filter(|uid| !position.left.contains(uid))
            .collect();
        self.remove(session, &done).await?;
        for batch in new.chunks(BATCH) {
            let sizes = self.sizes(session, batch).await?;
            let mut taken = Vec::new();
            for &uid in batch {
                let limits = &self.mailbox.shared.config().limits;
                if store.spool_full(limits.spool_messages, limits.spool_bytes) {
                    warn!(mailbox = %self.mailbox.label(), "spool full; taking the rest later");
                    self.remove(session, &taken).await?;
                    return Ok(());
                }
                let size = sizes.get(&uid).copied().unwrap_or(0);
                let outcome = self
                    .take(session, &mut position, uid, size, by_identity)
                    .await?;
                self.mailbox.report(&format!("UID {uid}"), &outcome);
                if !matches!(outcome, Taken::Left(_)) {
                    taken.push(uid);
                }
            }
            self.remove(session, &taken).await?;
        }
        Ok(())
    }

    /// RFC822.SIZE of each message in `uids`.
    async fn sizes(
        &self,
        session: &mut ImapSession,
        uids: &[u32],
    ) -> Result<HashMap<u32, u32>, ImapError> {
        let fetched: Vec<_> = within("UID FETCH", async {
            session
                .uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
                .await?
                .try_collect()
                .await
        })
        .await?;
        Ok(fetched
            .iter()
            .filter_map(|f| Some((f.uid?, f.size?)))
            .collect())
    }

    /// Takes message `uid`: spools (or quarantines) it and moves the
    /// position past it in one transaction, flushed before this returns.
    async fn take(
        &self,
        session: &mut ImapSession,
        position: &mut Position,
        uid: u32,
        size: u32,
        by_identity: bool,
    ) -> Result<Taken, ImapError> {
        let config = self.mailbox.shared.config();
        let now = Timestamp::from(self.mailbox.shared.clock.now());
        let mut next = position.clone();
        next.last_uid = uid;
        let mut tx = Transaction::new();
        let outcome = if size as usize > config.lmtp.max_message_size {
            next.left.push(uid);
            Taken::Left(size.into())
        } else {
            let raw = self.fetch(session, uid).await?;
            let identity = position::identity(&raw);
            let seen = by_identity && {
                let (store, key) = (self.mailbox.shared.store.clone(), self.key.to_vec());
                crate::blocking(move || crate::intake::was_taken(&store, &key, &identity)).await?
            };
            if seen {
                Taken::Duplicate
            } else {
                crate::intake::remember(&mut tx, self.key, &identity, now);
                self.mailbox.admit(&mut tx, raw, now)
            }
        };
        position::save(&mut tx, self.key, &next);
        let store = self.mailbox.shared.store.clone();
        crate::blocking(move || store.apply(tx)).await?;
        self.mailbox.shared.store.flush().await?;
        *position = next;
        Ok(outcome)
    }

    async fn fetch(&self, session: &mut ImapSession, uid: u32) -> Result<Vec<u8>, ImapError> {
        let fetched: Vec<_> = within("UID FETCH", async {
            session
                .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                .await?
                .try_collect()
                .await
        })
        .await?;
        fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| ImapError::Mailbox {
                mailbox: self.intake.mailbox.clone(),
                reason: format!("UID {uid} came back without its content"),
            })
    }

    /// Removes `uids` from the mailbox: MOVE to `processed_mailbox`, or
    /// `\Deleted` and UID EXPUNGE (EXPUNGE without UIDPLUS).
    async fn remove(&self, session: &mut ImapSession, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        if let Some(processed) = &self.intake.processed_mailbox {
            let moved = if self.can_move {
                within("UID MOVE", session.uid_mv(&set, processed)).await
            } else {
                within("UID COPY", session.uid_copy(&set, processed)).await
            };
            moved.map_err(|e| ImapError::Mailbox {
                mailbox: processed.clone(),
                reason: format!("moving taken messages there: {e}"),
            })?;
            if self.can_move {
                return Ok(());
            }
        }
        within("UID STORE", async {
            session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        within("EXPUNGE", async {
            // Without UIDPLUS, EXPUNGE removes every \Deleted message,
            // also one a person flagged: the most a server allows.
            if self.uidplus {
                session
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            } else {
                session.expunge().await?.try_collect::<Vec<_>>().await
            }
        })
        .await?;
        debug!(mailbox = %self.mailbox.label(), removed = uids.len(), "removed from the mailbox");
        Ok(())
    }
}

impl Position {
    fn new(uid_validity: u32) -> Position {
        Position {
            uid_validity,
            ..Position::default()
        }
    }
}

/// `1,2,5` for the UIDs given.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
