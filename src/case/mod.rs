//! The case process: a report becomes a case with an ID, a Fix Lead, a Fix
//! Team, a CVSS score and the policy's timeline, so that nothing depends
//! on someone remembering.
//!
//! - [`crate::lists::security`] routes mail to the security list here:
//!   which case it belongs to, or the new case it opens (with the
//!   reporter's acknowledgement);
//! - [`commands`]: the PST's keyword commands (`X-Lead:`, `X-CVSS:`, …);
//! - [`reporter`]: mail to the reporter, encrypted when their key is known;
//! - [`timeline`]: deadlines, reminders to the Fix Lead, overdue notices.
//!
//! Cases live in the store's `cases` table as sealed JSON (metadata only:
//! no content), with `ref/<pseudonym of Message-ID>` keys for threading
//! and `seq/<year>` counters for the IDs.

pub mod autoreply;
pub mod commands;
pub mod id;
pub mod reporter;
pub mod timeline;

use id::CaseId;

use std::fmt;

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::{Config, TimelineConfig};
use crate::context::Context;
use crate::store::{Store, StoreError, Table, Transaction};

/// A case as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    /// The case ID (KAP-2026-0001).
    pub id: String,
    /// When the report came in (ms); the timeline counts from here.
    pub opened: Timestamp,
    /// The reporter's address, for acknowledgements and answers; `None`
    /// for cases the PST opened.
    pub reporter: Option<String>,
    /// The reporter's certificate (armored), when they gave one.
    pub reporter_cert: Option<String>,
    /// The Fix Lead's member id; `None` when every PST member was away or suspended.
    pub lead: Option<String>,
    /// Engineers added to this case only (need-to-know).
    pub team: Vec<String>,
    /// The severity, once a PST member gave the vector (`X-CVSS:`).
    pub cvss: Option<Cvss>,
    /// Already public: every deadline is "as soon as possible".
    pub public: bool,
    /// Slowed down (low severity), and why.
    pub slow: Option<String>,
    /// One deadline per milestone of the policy's timeline.
    pub deadlines: Vec<Deadline>,
    /// When the fix was released (the case is closed).
    pub closed: Option<Timestamp>,
    /// Creation time (ms) of the newest signature whose commands changed
    /// the case: an older signed command, replayed or delayed on the way,
    /// changes nothing (a removed team member is not added back).
    #[serde(default)]
    pub signed: Timestamp,
    /// What the release's records and announcement say (`X-Affected:`,
    /// `X-CVE:`, …).
    #[serde(default)]
    pub advisory: crate::advisory::AdvisoryData,
}

/// A CVSS vector and what RustSec's `cvss` crate makes of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cvss {
    /// As given, e.g. `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`.
    pub vector: String,
    /// The base score, 0.0 to 10.0.
    pub score: f64,
    /// `none`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
}

/// A milestone of the policy's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Milestone {
    /// Fix Team organised.
    Team,
    /// Fix developed.
    Fix,
    /// Users told of a forthcoming fix.
    Users,
    /// Distributors told.
    Distributors,
    /// Fix Release Day.
    Release,
}

impl Milestone {
    /// Every milestone, in the policy's order.
    pub const ALL: [Milestone; 5] = [
        Milestone::Team,
        Milestone::Fix,
        Milestone::Users,
        Milestone::Distributors,
        Milestone::Release,
    ];

    /// The name keyword lines use (`X-Done: fix`).
    pub fn name(self) -> &'static str {
        match self {
            Milestone::Team => "team",
            Milestone::Fix => "fix",
            Milestone::Users => "users",
            Milestone::Distributors => "distributors",
            Milestone::Release => "release",
        }
    }

    /// What the policy asks for.
    pub fn label(self) -> &'static str {
        match self {
            Milestone::Team => "Fix Team organised",
            Milestone::Fix => "fix developed",
            Milestone::Users => "users told of a forthcoming fix",
            Milestone::Distributors => "distributors told",
            Milestone::Release => "Fix Release Day",
        }
    }

    /// The milestone named `text` (any case, e.g. `fix`).
    pub fn parse(text: &str) -> Result<Milestone, CaseError> {
        Milestone::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| CaseError::NoMilestone {
                text: text.trim().to_string(),
            })
    }

    fn after(self, timeline: &TimelineConfig) -> std::time::Duration {
        match self {
            Milestone::Team => timeline.team,
            Milestone::Fix => timeline.fix,
            Milestone::Users => timeline.users,
            Milestone::Distributors => timeline.distributors,
            Milestone::Release => timeline.release,
        }
    }
}

impl fmt::Display for Milestone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a milestone is due, and whether it was met.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deadline {
    /// Which milestone.
    pub milestone: Milestone,
    /// ms since the epoch.
    pub due: Timestamp,
    /// When and by whom it was met; `None` while pending.
    pub done: Option<Done>,
}

/// A milestone met.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Done {
    /// When, in ms since the epoch.
    pub at: Timestamp,
    /// A member id, or what met it ("distributors post").
    pub by: String,
}

impl Case {
    /// The deadline of `milestone`.
    pub fn deadline(&self, milestone: Milestone) -> Option<&Deadline> {
        self.deadlines.iter().find(|d| d.milestone == milestone)
    }

    /// Open deadlines, earliest first.
    pub fn pending_deadlines(&self) -> Vec<&Deadline> {
        let mut open: Vec<&Deadline> = self.deadlines.iter().filter(|d| d.done.is_none()).collect();
        open.sort_by_key(|d| d.due);
        open
    }

    /// Marks `milestone` met; false when it already was.
    pub fn meet(&mut self, milestone: Milestone, at: Timestamp, by: &str) -> bool {
        match self.deadlines.iter_mut().find(|d| d.milestone == milestone) {
            Some(deadline) if deadline.done.is_none() => {
                deadline.done = Some(Done { at, by: by.into() });
                if milestone == Milestone::Release {
                    self.closed = Some(at);
                }
                true
            }
            _ => false,
        }
    }

    /// A one-line summary for listings.
    pub fn severity(&self) -> String {
        self.cvss
            .as_ref()
            .map(|c| format!("{} {:.1}", c.severity, c.score))
            .unwrap_or_else(|| "-".into())
    }
}

/// Store keys in the `cases` tree.
fn case_key(id: &str) -> String {
    format!("case/{id}")
}
/// A Message-ID is kept only as a keyed hash: it is the sender's text,
/// and nothing the sender wrote rests in the store unsealed.
fn ref_key(ctx: &Context<'_>, message_id: &str) -> String {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    format!("ref/{:016x}", ctx.store.mark_secret().pseudonym(id))
}

/// Cases (`case/<id>`), references (`ref/<pseudonym>`), counters
/// (`seq/<year>`, `lead`), join requests (`req/<id>`): every value sealed,
/// since case records hold reporters' addresses and the PST's keyword
/// values.
pub(crate) static CASES: Table = Table::sealed("cases", b"cases/");

/// The value under `key` in the cases table.
pub(crate) fn value(store: &Store, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    store.get(&CASES, key.as_bytes())
}

/// Every value under `prefix`, in key order.
pub(crate) fn values(store: &Store, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .scan(&CASES, prefix.as_bytes())?
        .into_iter()
        .map(|(_, value)| value)
        .collect())
}

/// Puts `value` under `key` when `tx` is applied.
pub(crate) fn put_value(tx: &mut Transaction, key: String, value: Vec<u8>) {
    tx.put(&CASES, key, value);
}

/// Whether `tx` already puts a value under `key`.
pub(crate) fn pending(tx: &Transaction, key: &str) -> bool {
    tx.puts(&CASES, key.as_bytes())
}

/// Why a case operation failed. Each message is written for whoever
/// asked (the PST in a reply, an admin at the CLI) and names the fix.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum CaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record that does not parse: a store from a newer
    /// version, or damage.
    #[error("the stored {what} cannot be read: {source}")]
    Unreadable {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no case {0}")]
    NoCase(String),
    /// A command mail that names no case in what its signature covers.
    #[error("no case: name it with an X-Case: line (the Subject and References are not signed)")]
    NotNamed,
    #[error("{text:?} is no milestone; use one of: {known}", known = Milestone::ALL.map(Milestone::name).join(", "))]
    NoMilestone { text: String },
    #[error("{vector:?} is not a valid CVSS vector: {reason}")]
    Cvss { vector: String, reason: String },
    #[error("unknown keyword X-{name}: nothing in this mail was done (known: {known})")]
    UnknownKeyword { name: String, known: String },
    #[error("X-Join: {0:?}: only the distributors list takes requests")]
    NotJoinable(String),
    #[error("X-Vouch: no request {0}")]
    NoRequest(String),
    #[error("X-Vouch: {voucher} vouched for {request} already")]
    VouchedAlready { voucher: String, request: String },
    /// The reply to a reporter could not be signed or encrypted.
    #[error("mail to the reporter: {0}")]
    Seal(#[from] crate::pgp::seal::SealError),
}

/// Parses a stored JSON record, naming `what` when it does not.
pub(crate) fn parse_stored<T: serde::de::DeserializeOwned>(
    what: impl Into<String>,
    bytes: &[u8],
) -> Result<T, CaseError> {
    serde_json::from_slice(bytes).map_err(|source| CaseError::Unreadable {
        what: what.into(),
        source,
    })
}

/// The case with `id`.
pub fn get(ctx: &Context<'_>, id: &str) -> Result<Option<Case>, CaseError> {
    crate::case::value(ctx.store, &case_key(id))?
        .map(|v| parse_stored(format!("case {id}"), &v))
        .transpose()
}

/// Every case, by ID.
pub fn all(store: &crate::store::Store) -> Result<Vec<Case>, CaseError> {
    crate::case::values(store, "case/")?
        .iter()
        .map(|v| parse_stored("case", v))
        .collect()
}

/// The case a Message-ID was seen in.
pub fn by_reference(ctx: &Context<'_>, message_id: &str) -> Result<Option<String>, CaseError> {
    Ok(crate::case::value(ctx.store, &ref_key(ctx, message_id))?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Adds `case` (new or changed) to `batch`.
pub fn put(batch: &mut Transaction, case: &Case) {
    crate::case::put_value(
        batch,
        case_key(&case.id),
        serde_json::to_vec(case).expect("cases serialize"),
    );
}

/// Remembers that `message_id` belongs to `case`, for replies.
/// The first case a Message-ID was seen with keeps it: a later message
/// cannot move a known Message-ID (and the replies to it) to another case.
pub fn put_reference(ctx: &Context<'_>, batch: &mut Transaction, message_id: &str, case: &str) {
    if message_id.trim().is_empty() {
        return;
    }
    let key = ref_key(ctx, message_id);
    let known =
        crate::case::value(ctx.store, &key).ok().flatten().is_some() || pending(batch, &key);
    if !known {
        crate::case::put_value(batch, key, case.as_bytes().to_vec());
    }
}

/// Creates a new case now: the next ID of the year, a Fix Lead by rotation,
/// the policy's deadlines (and their reminders) from now.
pub fn create(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    reporter: Option<String>,
    reporter_cert: Option<String>,
) -> Result<Case, CaseError> {
    let year = ctx.now.year();
    let seq_key = format!("seq/{year}");
    let seq = counter(ctx, &seq_key)? + 1;
    crate::case::put_value(batch, seq_key, seq.to_string().into_bytes());
    let id = format!("{}-{year}-{seq:04}", ctx.config.project.case_prefix);
    let case = new_case(ctx, batch, id, reporter, reporter_cert)?;
    Ok(case)
}

/// Creates the case `id`, named by a distributors post for a case that
/// started elsewhere: what comes before telling distributors happened
/// there, so only the release is left on its timeline.
pub fn create_named(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: &str,
) -> Result<Case, CaseError> {
    let now = Timestamp::from(ctx.now);
    let mut case = new_case(ctx, batch, id.to_string(), None, None)?;
    let old = case.clone();
    for milestone in [Milestone::Team, Milestone::Fix, Milestone::Users] {
        case.meet(milestone, now, "elsewhere");
    }
    timeline::schedule(ctx.config, batch, Some(&old), &case, now);
    put(batch, &case);
    Ok(case)
}

fn new_case(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: String,
    reporter: Option<String>,
    reporter_cert: Option<String>,
) -> Result<Case, CaseError> {
    let now = Timestamp::from(ctx.now);
    let lead = next_lead(ctx, batch)?;
    let deadlines = Milestone::ALL
        .into_iter()
        .map(|milestone| Deadline {
            milestone,
            due: now + milestone.after(&ctx.config.timeline),
            done: None,
        })
        .collect();
    let case = Case {
        id,
        opened: now,
        reporter,
        reporter_cert,
        lead,
        team: Vec::new(),
        cvss: None,
        public: false,
        slow: None,
        deadlines,
        closed: None,
        signed: Timestamp::default(),
        advisory: Default::default(),
    };
    timeline::schedule(ctx.config, batch, None, &case, now);
    put(batch, &case);
    Ok(case)
}

fn counter(ctx: &Context<'_>, key: &str) -> Result<u64, CaseError> {
    Ok(crate::case::value(ctx.store, key)?
        .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
        .unwrap_or(0))
}

/// The next Fix Lead, round-robin over the PST in config order, skipping
/// members who are away or suspended.
fn next_lead(ctx: &Context<'_>, batch: &mut Transaction) -> Result<Option<String>, CaseError> {
    let pst = &ctx.config.lists.security.members;
    if pst.is_empty() {
        return Ok(None);
    }
    let turn = counter(ctx, "rotation")?;
    for step in 0..pst.len() as u64 {
        let index = ((turn + step) % pst.len() as u64) as usize;
        let id = &pst[index];
        let away = ctx.config.members.get(id).is_some_and(|m| m.away);
        let suspended = crate::strikes::state(ctx.store, id)?.suspended.is_some();
        if !away && !suspended {
            crate::case::put_value(
                batch,
                "rotation".into(),
                (index as u64 + 1).to_string().into_bytes(),
            );
            return Ok(Some(id.clone()));
        }
    }
    Ok(None)
}

/// Validates a CVSS vector (3.0, 3.1, 4.0) and scores it with RustSec's
/// `cvss` crate.
pub fn score(vector: &str) -> Result<Cvss, CaseError> {
    let vector = vector.trim();
    let parsed: cvss::Cvss = vector.parse().map_err(|e: cvss::Error| CaseError::Cvss {
        vector: vector.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Cvss {
        vector: vector.to_string(),
        score: parsed.score(),
        severity: parsed.severity().as_str().to_string(),
    })
}

/// The case, if `config`'s prefix makes `text` an ID.
pub fn id_in(config: &Config, text: &str) -> Option<String> {
    CaseId::find_in(config, text).map(CaseId::into_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_vectors_are_scored_by_the_crate() {
        let high = score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!(high.score, 9.8);
        assert_eq!(high.severity, "critical");
        let low = score("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N").unwrap();
        assert!(low.score < 4.0, "{}", low.score);
        assert!(score("CVSS:3.1/AV:X").is_err());
        let v4 = score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N").unwrap();
        assert!(v4.score > 9.0, "{}", v4.score);
    }

    #[test]
    fn milestones_parse_by_name() {
        assert_eq!(Milestone::parse(" Fix ").unwrap(), Milestone::Fix);
        assert!(Milestone::parse("lunch")
            .unwrap_err()
            .to_string()
            .contains("team, fix, users"));
    }
}
