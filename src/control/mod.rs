//! The control socket: admin commands reach the running daemon here (the
//! store is single-process), or, with no daemon running, act on the store
//! directly through the same [`handle`].
//!
//! Protocol, version 2: one JSON request per line, one JSON response line.
//! `{"v":2,"cmd":"embargoes"}` →
//! `{"outcome":"done","text":"…","exit":0}` or
//! `{"outcome":"failed","error":"…"}`. A request of another version is
//! answered with `"ok":false` too, so a version 1 client shows why.
//! Only root and the daemon's own user may connect.

mod cases;
pub mod client;
mod embargoes;
mod ledger;
mod members;
mod server;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::Shared;

pub use server::{bind, serve};

/// The protocol's version, checked on every request. 2: responses are
/// tagged `done` or `failed` ([`Response`]).
pub const VERSION: u32 = 2;

/// A request, as sent over the socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// The protocol version the client speaks ([`VERSION`]).
    pub v: u32,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// What an admin asks of the running daemon (or, with none, of the store).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Command {
    /// Pending embargoes with their times, posters and recipient counts.
    Embargoes,
    /// Release a case now (`reason` required) or move its time (`at`).
    Release {
        /// The case ID.
        case: String,
        /// Release now (needs `reason`).
        #[serde(default)]
        now: bool,
        /// Why the embargo ends early; recorded and told to the lists.
        #[serde(default)]
        reason: Option<String>,
        /// The new disclosure time, RFC 3339.
        #[serde(default)]
        at: Option<String>,
    },
    /// Trace a suspected leak (base64 of its bytes) to a copy.
    Trace {
        /// The leaked bytes, base64.
        leak: String,
    },
    /// Who got what in a case.
    LedgerShow {
        /// The case ID.
        case: String,
    },
    /// Walk the ledger's hash chain.
    LedgerVerify,
    /// Record a leak by a member in a case.
    LeakRecord {
        /// The case the leak was in.
        case: String,
        /// The member who leaked.
        member: String,
        /// What leaked, and to whom.
        what: String,
    },
    /// Lift a member's suspension.
    MemberReinstate {
        /// The member's id.
        member: String,
    },
    /// Every member's key and bounce standing; strikes and suspensions.
    Members,
    /// Clear a member's bounce score (the address was fixed).
    MemberClearBounces {
        /// The member's id.
        member: String,
    },
    /// Open cases: lead, severity, next deadline, overdue items.
    Cases,
    /// One case in full.
    CaseShow {
        /// The case ID.
        id: String,
    },
    /// Keyword commands on a case, as an admin: `[["lead","bob"], …]`.
    CaseSet {
        /// The case ID.
        id: String,
        /// Keyword and value pairs, as in a command mail.
        keywords: Vec<(String, String)>,
    },
    /// Membership requests with their checklists and vouches.
    Requests,
    /// Uptime, config, lists, queue, pending embargoes, last errors.
    Status,
    /// Deferred and waiting copies, with next retry and last error.
    Queue,
    /// Retry a queued copy now (its id in hex, as `queue` shows it).
    QueueRetry {
        /// The copy's id in hex.
        id: String,
    },
}

/// A response line: `{"outcome":"done",...}` or
/// `{"outcome":"failed","error":...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Response {
    /// The command ran.
    Done {
        /// For people.
        text: String,
        /// The exit status the command line ends with: 0, or another
        /// that is not an error (`trace` without an attribution: 1).
        #[serde(default)]
        exit: u8,
        /// The answer for programs, for commands that have one;
        /// `members`: `[[member id, {"strikes": [...], "suspended": ms or
        /// null}], ...]`. Callers read this, never `text`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
    /// The command was refused or failed, and why.
    Failed {
        /// Why, for people.
        error: String,
    },
}

impl Response {
    /// Done, with `text` for people.
    pub fn ok(text: String) -> Response {
        Response::Done {
            text,
            exit: 0,
            data: None,
        }
    }

    /// Failed, with why.
    pub fn error(error: impl std::fmt::Display) -> Response {
        Response::Failed {
            error: error.to_string(),
        }
    }

    /// Whether the command ran.
    pub fn is_done(&self) -> bool {
        matches!(self, Response::Done { .. })
    }

    /// The text for people, when the command ran.
    pub fn text(self) -> Option<String> {
        match self {
            Response::Done { text, .. } => Some(text),
            Response::Failed { .. } => None,
        }
    }

    /// Why the command failed, when it did.
    pub fn failure(self) -> Option<String> {
        match self {
            Response::Failed { error } => Some(error),
            Response::Done { .. } => None,
        }
    }

    /// This response with `data` for programs (a failure stays as it is).
    pub fn with_data(self, value: impl Serialize) -> Response {
        match self {
            Response::Done { text, exit, .. } => Response::Done {
                text,
                exit,
                data: serde_json::to_value(value).ok(),
            },
            failed => failed,
        }
    }

    /// This response with the exit status `code` (a failure stays as it
    /// is, and exits 1).
    pub fn with_exit(self, code: u8) -> Response {
        match self {
            Response::Done { text, data, .. } => Response::Done {
                text,
                exit: code,
                data,
            },
            failed => failed,
        }
    }
}

async fn queue(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    match crate::blocking(move || store.queued()).await {
        Ok(queued) if queued.is_empty() => Response::ok("the queue is empty\n".into()),
        Ok(queued) => {
            let mut text = format!(
                "{:<16}  {:<20}  {:<28}  {:>8}  {}\n",
                "COPY", "NEXT ATTEMPT (UTC)", "TO", "ATTEMPTS", "LAST ERROR"
            );
            for (key, copy) in queued {
                text.push_str(&format!(
                    "{:<16}  {:<20}  {:<28}  {:>8}  {}\n",
                    crate::mark::copy_id_hex(copy.id),
                    key.due.to_datetime().format("%Y-%m-%d %H:%M:%S"),
                    copy.to,
                    copy.attempts,
                    copy.last_error.as_deref().unwrap_or("-"),
                ));
            }
            Response::ok(text)
        }
        Err(e) => Response::error(e.to_string()),
    }
}

async fn retry(shared: &Arc<Shared>, id: &str) -> Response {
    let Ok(id) = u64::from_str_radix(id.trim(), 16) else {
        return Response::error(format!(
            "{id:?} is not a copy id (16 hex digits, as `embargod queue` shows)"
        ));
    };
    let store = shared.store.clone();
    let now = crate::clock::Timestamp::from(shared.clock.now());
    match crate::blocking(move || store.retry_now(id, now)).await {
        Ok(true) => {
            shared.wake_delivery.notify_one();
            Response::ok(format!("{} is due now\n", crate::mark::copy_id_hex(id)))
        }
        Ok(false) => Response::error("no such copy in the queue"),
        Err(e) => Response::error(e.to_string()),
    }
}

/// Carries out `command` against the daemon's state.
pub async fn handle(shared: &Arc<Shared>, command: Command) -> Response {
    use embargoes::{embargoes, release_now, reschedule};
    match command {
        Command::Trace { leak } => ledger::trace(shared, &leak).await,
        Command::LedgerShow { case } => ledger::show(shared, &case).await,
        Command::LedgerVerify => ledger::verify(shared).await,
        Command::LeakRecord { case, member, what } => {
            members::record(shared, case, member, what).await
        }
        Command::MemberReinstate { member } => members::reinstate(shared, member).await,
        Command::Members => members::list(shared).await,
        Command::MemberClearBounces { member } => members::clear_bounces(shared, member).await,
        Command::Cases => cases::list(shared).await,
        Command::CaseShow { id } => cases::show(shared, id).await,
        Command::CaseSet { id, keywords } => cases::set(shared, id, keywords).await,
        Command::Requests => cases::requests(shared).await,
        Command::Status => {
            let shared = shared.clone();
            Response::ok(crate::blocking(move || crate::status::report(&shared)).await)
        }
        Command::Queue => queue(shared).await,
        Command::QueueRetry { id } => retry(shared, &id).await,
        Command::Embargoes => embargoes(shared).await,
        Command::Release {
            case,
            now,
            reason,
            at,
        } => match (now, at) {
            (true, None) => match reason.filter(|r| !r.trim().is_empty()) {
                Some(reason) => release_now(shared, &case, reason).await,
                None => Response::error("--now needs --reason: say why the embargo ends early"),
            },
            (false, Some(at)) => reschedule(shared, &case, &at, reason).await,
            _ => Response::error("give either --now --reason TEXT or --at TIME"),
        },
    }
}
