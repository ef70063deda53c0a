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
//! position past its UID; only then is it removed from the mailbox
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
use crate::config::ImapIntake;
use crate::intake::Target;
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
    #[error("IMAP: {}", server_words(.0))]
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
        let setting = if *mailbox == intake.mailbox {
            "mailbox"
        } else {
            "processed_mailbox"
        };
        let status = within("STATUS", session.status(mailbox, "(MESSAGES)"))
            .await
            .map_err(|e| ImapError::Mailbox {
                mailbox: mailbox.clone(),
                reason: format!("{e} (create it, or change `{setting}`)"),
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
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(detail)
}

/// Takes in `list`'s mailbox `intake` until `shutdown`, reconnecting
/// with backoff. It keeps the mailbox it started with: a reload that
/// changes it is reported as needing a restart.
pub async fn run(
    shared: Arc<Shared>,
    target: Target,
    intake: ImapIntake,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut failing_since = None;
    loop {
        let mailbox = Mailbox {
            shared: &shared,
            target,
            via: Intake::Imap(intake.label()),
        };
        mailbox.set_state(IntakeState::Connecting);
        let mut served = false;
        let ended = tokio::select! {
            ended = session(&mailbox, &intake, &shutdown, &mut served) => ended,
            // Each message is taken in one transaction: stopping between
            // any two steps leaves it either untaken or taken, never half.
            _ = shutdown.cancelled() => return,
        };
        // Only a session that took the mailbox once counts as recovered: an
        // error right after each login must not retry every second.
        if served {
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
    served: &mut bool,
) -> Result<(), ImapError> {
    let (shared, list, label) = (mailbox.shared, mailbox.target, mailbox.label());
    let mut session = connect::login(intake).await?;
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
        *served = true;
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

/// What the server said, without the client library's debug framing
/// (`code: None, info: Some("…")`).
pub(crate) fn server_words(error: &async_imap::error::Error) -> String {
    use async_imap::error::Error;
    let text = match error {
        Error::No(text) | Error::Bad(text) => text,
        other => return other.to_string(),
    };
    text.split_once("Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(words, _)| words.replace("\\\"", "\""))
        .unwrap_or_else(|| text.clone())
}

impl ImapError {
    /// Whether the connection is gone (or can no longer be trusted), as
    /// opposed to a command the server refused on a working connection.
    fn connection_lost(&self) -> bool {
        !matches!(
            self,
            ImapError::Mailbox { .. }
                | ImapError::Protocol(async_imap::error::Error::No(_))
                | ImapError::Protocol(async_imap::error::Error::Bad(_))
        )
    }
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

/// A message found in the mailbox, to be taken.
struct Found {
    uid: u32,
    /// Its RFC822.SIZE, when the server gave one.
    size: Option<u32>,
    /// After a UIDVALIDITY change (or with no position yet): it is a
    /// duplicate if its identity was taken before this time.
    taken_before: Option<Timestamp>,
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
                reason: format!("{e} (create it, or set `mailbox`)"),
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
                    list = self.mailbox.target.as_str(),
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
        let round_started = Timestamp::from(self.mailbox.shared.clock.now());
        let mut uids: Vec<u32> = within("UID SEARCH", session.uid_search("ALL"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        // Left messages that are gone need no more remembering; those
        // still there are looked at again (the limit may have been raised).
        position.left.retain(|uid| uids.binary_search(uid).is_ok());
        position
            .unreadable
            .retain(|uid| uids.binary_search(uid).is_ok());
        let (old, new): (Vec<u32>, Vec<u32>) =
            uids.into_iter().partition(|&uid| uid <= position.last_uid);
        let done: Vec<u32> = old
            .into_iter()
            .filter(|uid| !position.left.contains(uid) && !position.unreadable.contains(uid))
            .collect();
        self.remove_or_note(session, &done).await?;
        // New mail first: a message left behind never holds it up.
        let candidates: Vec<u32> = new.into_iter().chain(position.left.clone()).collect();
        for batch in candidates.chunks(BATCH) {
            let sizes = self.sizes(session, batch).await?;
            let mut taken = Vec::new();
            for &uid in batch {
                let limits = &self.mailbox.shared.config().limits;
                if store.spool_full(limits.spool_messages, limits.spool_bytes) {
                    warn!(mailbox = %self.mailbox.label(), "spool full; taking the rest later");
                    return self.remove_or_note(session, &taken).await;
                }
                let was_left = position.left.contains(&uid);
                let found = Found {
                    uid,
                    size: sizes.get(&uid).copied(),
                    // After a UIDVALIDITY change, only what was taken before
                    // this round: two copies of one message in the mailbox
                    // are two deliveries, as over LMTP.
                    taken_before: by_identity.then_some(round_started),
                };
                let outcome = self.take(session, &mut position, found).await?;
                match outcome {
                    Taken::Left(_) if was_left => {}
                    Taken::Left(_) => self.mailbox.report(&format!("UID {uid}"), &outcome),
                    _ => {
                        self.mailbox.report(&format!("UID {uid}"), &outcome);
                        taken.push(uid);
                    }
                }
            }
            self.remove_or_note(session, &taken).await?;
        }
        Ok(())
    }

    /// Removes `uids`; a refusal (a `processed_mailbox` that does not
    /// exist, a read-only mailbox) is shown in status and retried next
    /// round, and does not stop new mail being taken. A lost connection
    /// ends the session.
    async fn remove_or_note(
        &self,
        session: &mut ImapSession,
        uids: &[u32],
    ) -> Result<(), ImapError> {
        match self.remove(session, uids).await {
            Err(e) if e.connection_lost() => Err(e),
            Err(e) => {
                self.mailbox.note_error(&e);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// RFC822.SIZE of each message in `uids` (a server may leave it out).
    async fn sizes(
        &self,
        session: &mut ImapSession,
        uids: &[u32],
    ) -> Result<HashMap<u32, u32>, ImapError> {
        let fetched = uid_fetch(session, &uid_set(uids), "(UID RFC822.SIZE)").await?;
        Ok(fetched
            .iter()
            .filter_map(|f| Some((f.uid?, f.size?)))
            .collect())
    }

    /// Takes message `found`: spools (or quarantines) it, or leaves it
    /// (too large, no content) with a notice to the PST the first time,
    /// and moves the position past it, in one transaction flushed before
    /// this returns.
    async fn take(
        &self,
        session: &mut ImapSession,
        position: &mut Position,
        found: Found,
    ) -> Result<Taken, ImapError> {
        let Found {
            uid,
            size,
            taken_before,
        } = found;
        let shared = self.mailbox.shared;
        let limit = shared.config().lmtp.max_message_size;
        let now = Timestamp::from(shared.clock.now());
        let too_large =
            |bytes: usize| format!("{bytes} bytes, over lmtp.max_message_size ({limit})");
        let mut next = position.clone();
        next.last_uid = next.last_uid.max(uid);
        next.left.retain(|&u| u != uid);
        let mut tx = Transaction::new();
        // The size the server states is checked first; the content itself
        // after fetching, since a server may state none or a wrong one.
        // (why, whether to look again next round)
        let fetched = match size {
            Some(size) if size as usize > limit => Err((too_large(size as usize), true)),
            _ => match self.fetch(session, uid).await? {
                None => Err(("the server gives no content for it".to_string(), false)),
                Some(raw) if raw.len() > limit => Err((too_large(raw.len()), true)),
                Some(raw) => Ok(raw),
            },
        };
        let outcome = match fetched {
            Err((why, again)) => {
                if !position.left.contains(&uid) {
                    self.mailbox
                        .notice_left(&mut tx, &format!("UID {uid}"), &why, now);
                }
                match again {
                    true => next.left.push(uid),
                    false => next.unreadable.push(uid),
                }
                Taken::Left(why)
            }
            Ok(raw) => {
                let identity = position::identity(&raw);
                let seen = match taken_before {
                    Some(before) => {
                        let (store, key) = (shared.store.clone(), self.key.to_vec());
                        crate::blocking(move || crate::intake::taken_at(&store, &key, &identity))
                            .await?
                            .is_some_and(|at| at < before)
                    }
                    None => false,
                };
                if seen {
                    Taken::Duplicate
                } else {
                    crate::intake::remember(&mut tx, self.key, &identity, now);
                    self.mailbox.admit(&mut tx, raw, now)
                }
            }
        };
        position::save(&mut tx, self.key, &next);
        let store = shared.store.clone();
        crate::blocking(move || store.apply(tx)).await?;
        shared.store.flush().await?;
        *position = next;
        Ok(outcome)
    }

    /// The content of `uid`; `None` when the server answers without it.
    async fn fetch(
        &self,
        session: &mut ImapSession,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, ImapError> {
        let fetched = uid_fetch(session, &uid.to_string(), "(UID BODY.PEEK[])").await?;
        Ok(fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec))
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
                reason: format!(
                    "moving taken messages there (processed_mailbox): {e}; create it, or \
                     unset processed_mailbox"
                ),
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

/// UID FETCH of `items` for the UIDs in `set`, every answer collected.
async fn uid_fetch(
    session: &mut ImapSession,
    set: &str,
    items: &str,
) -> Result<Vec<async_imap::types::Fetch>, ImapError> {
    within("UID FETCH", async {
        session.uid_fetch(set, items).await?.try_collect().await
    })
    .await
}

/// `1,2,5` for the UIDs given.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::server_words;
    use async_imap::error::Error;

    #[test]
    fn the_server_speaks_without_the_library_framing() {
        let no = Error::No(
            "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")".into(),
        );
        assert_eq!(
            server_words(&no),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_words(&Error::Bad("plain".into())), "plain");
        assert_eq!(server_words(&Error::ConnectionLost), "connection lost");
    }
}
