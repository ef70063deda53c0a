//! Each mailbox intake's state, for `embargod status`: kept apart from
//! the intakes themselves, since the daemon's shared state holds it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::clock::Timestamp;
/// What an intake's mail is for (defined with the config, which lists
/// every intake).
pub use crate::config::IntakeTarget as Target;

/// What an intake is doing, for `embargod status`.
#[derive(Debug, Clone)]
pub enum IntakeState {
    /// Connecting or logging in.
    Connecting,
    /// Logged in, waiting in IMAP IDLE (RFC 2177) for new mail.
    Idle,
    /// Checking every `poll_interval`.
    Polling,
    /// The last attempt failed; the next is after a backoff.
    Reconnecting {
        /// Since when it has been failing.
        since: Timestamp,
    },
}

/// One intake's line in `embargod status`.
#[derive(Debug, Clone)]
pub struct IntakeStatus {
    /// What its mail is for.
    pub target: Target,
    /// The mailbox: `user@server:port/mailbox`, or `maildir:PATH`.
    pub mailbox: String,
    /// What it is doing.
    pub state: IntakeState,
    /// Messages taken (spooled or quarantined) since the daemon started.
    pub taken: u64,
    /// The last error and when, if any.
    pub last_error: Option<(Timestamp, String)>,
}

/// Every intake's status, by mailbox.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, IntakeStatus>>);

impl Board {
    /// The intakes' statuses, ordered by mailbox.
    pub fn all(&self) -> Vec<IntakeStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, IntakeStatus>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn update(
        &self,
        target: Target,
        mailbox: &str,
        change: impl FnOnce(&mut IntakeStatus),
    ) {
        let mut board = self.lock();
        let status = board
            .entry(mailbox.to_string())
            .or_insert_with(|| IntakeStatus {
                target,
                mailbox: mailbox.to_string(),
                state: IntakeState::Connecting,
                taken: 0,
                last_error: None,
            });
        change(status);
    }
}
