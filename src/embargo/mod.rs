//! Embargoes: each case's agreed public disclosure time, the reminder
//! before it, and the release when it comes.
//!
//! A PST-signed post to the distributors list opens or moves a case's
//! embargo ([`crate::lists::distributors`]); [`crate::schedule`] fires the
//! reminder and the release at their times, read from the store so that a restart loses
//! none; [`release`] publishes the advisory, signed but not encrypted,
//! exactly once per case.

pub mod release;
pub mod statuses;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::{format_disclosure, format_time, Timestamp};
use crate::config::Config;
use crate::schedule::{Event, EventKind};
use crate::store::{frame, unframe, Store, StoreError, Table, Transaction};

/// A case's embargo as kept in the store. Only metadata: the content of
/// the post is in the sealed [`Advisory`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Embargo {
    /// The case ID.
    pub case: String,
    /// Agreed public disclosure time, ms since the epoch.
    pub until: Timestamp,
    /// Member id of the PST member whose post set the current date.
    pub poster: String,
    /// When the embargo was first set, in ms since the epoch.
    pub opened: Timestamp,
    /// When it last changed, in ms since the epoch.
    pub updated: Timestamp,
    /// Copies of the latest post sent (distributors and PST).
    pub recipients: usize,
    /// Every time the date was set or moved.
    pub history: Vec<Change>,
    /// The release, once it happened.
    pub released: Option<Released>,
    /// Creation time (ms since the epoch) of the signature behind the
    /// last change; for a change from the command line, its own time. A
    /// change needs a signature at least as new ([`Embargo::accepts`]), so
    /// an older post, replayed or reordered, can never move the date back.
    #[serde(default)]
    pub signed: Timestamp,
    /// Each distributor's latest signed `X-Status:` on the case, by
    /// member id: VINCE's vendor-status table, by mail.
    #[serde(default)]
    pub statuses: std::collections::BTreeMap<String, DistributorStatus>,
    /// Why distributors got less than `embargo.min_notice`, when they did.
    #[serde(default)]
    pub short_notice: Option<ShortNotice>,
}

/// Less notice than `embargo.min_notice`, allowed: the issue is public,
/// or the case's Fix Lead gave a reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShortNotice {
    /// The member id of who allowed it.
    pub by: String,
    /// Why, as they gave it (`X-Short-Notice:`), or that it is public.
    pub reason: String,
}

/// A distributor's latest word on a case, from a signed reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DistributorStatus {
    /// What they said.
    pub status: Ack,
    /// Their note (`X-Note:`, or the words after the status), one line.
    #[serde(default)]
    pub note: Option<String>,
    /// When it was processed, ms since the epoch.
    pub at: Timestamp,
    /// Creation time of the signature behind it: an older one, replayed
    /// or delayed, does not replace it.
    pub signed: Timestamp,
}

/// The `X-Status:` words a distributor may send, in the order a case
/// usually takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Ack {
    /// They have the patch.
    Received,
    /// Their product is affected.
    Affected,
    /// Their product is not affected.
    NotAffected,
    /// Their fixed packages are ready for the disclosure time.
    Ready,
}

impl Ack {
    /// Every status, as written in `X-Status:`.
    pub const ALL: [Ack; 4] = [Ack::Received, Ack::Affected, Ack::NotAffected, Ack::Ready];

    /// `received`, `affected`, `not-affected`, `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ack::Received => "received",
            Ack::Affected => "affected",
            Ack::NotAffected => "not-affected",
            Ack::Ready => "ready",
        }
    }

    /// The status `word` names (any case; `not_affected` too).
    pub fn parse(word: &str) -> Option<Ack> {
        let word = word.trim().to_ascii_lowercase().replace('_', "-");
        Ack::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

/// One setting or move of the disclosure time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// When, in ms since the epoch.
    pub at: Timestamp,
    /// The member id (or `admin`) who set it.
    pub by: String,
    /// The disclosure time set, in ms since the epoch.
    pub until: Timestamp,
}

/// How and when a case's advisory was published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Released {
    /// When, in ms since the epoch.
    pub at: Timestamp,
    /// Message-ID of the announcement: one per case, so a release that is
    /// retried after a crash is the same message.
    pub message_id: String,
    /// Who released it early and why; `None` when the time came.
    pub early: Option<EarlyRelease>,
}

/// A release before the agreed time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EarlyRelease {
    /// Who released it (a PST member's id, or `admin`).
    pub by: String,
    /// Why, as they gave it.
    pub reason: String,
}

impl Embargo {
    /// A new embargo for `case`, set by `change` under a signature made at
    /// `signed` (ms).
    pub fn new(case: &str, change: Change, signed: Timestamp) -> Embargo {
        Embargo {
            case: case.to_string(),
            until: change.until,
            poster: change.by.clone(),
            opened: change.at,
            updated: change.at,
            recipients: 0,
            history: vec![change],
            released: None,
            signed,
            statuses: Default::default(),
            short_notice: None,
        }
    }

    /// Whether a change authorised by a signature made at `signed`
    /// may apply: only one not older than the last change's. OpenPGP
    /// signature times have a resolution of one second, so two posts made
    /// in the same second both pass; the used-signature rule
    /// ([`crate::freshness`]) refuses the replay of either.
    pub fn accepts(&self, signed: Timestamp) -> bool {
        signed >= self.signed
    }

    /// Applies `change` (already checked with [`Embargo::accepts`]),
    /// authorised at `signed`. Returns the old time when it moved.
    pub fn change(&mut self, change: Change, signed: Timestamp) -> Option<Timestamp> {
        let moved_from = (self.until != change.until).then_some(self.until);
        self.until = change.until;
        self.poster = change.by.clone();
        self.updated = change.at;
        self.signed = self.signed.max(signed);
        self.history.push(change);
        moved_from
    }

    /// The agreed disclosure time.
    pub fn until(&self) -> DateTime<Utc> {
        self.until.to_datetime()
    }

    /// The reminder and release events of the current date, and the
    /// PST's digest of distributor statuses: `status_digest_before` the
    /// date, or half-way there for an embargo opened later than that; none
    /// for an embargo shorter than a quarter of `status_digest_before`
    /// (12 hours by default: nobody could answer in time), nor when it is
    /// zero.
    pub fn events(&self, config: &Config) -> Vec<Event> {
        let event = |due, kind| Event {
            due,
            kind,
            case: self.case.clone(),
        };
        let reminder = self.until - config.embargo.reminder_before;
        let mut events = vec![
            event(reminder, EventKind::Reminder),
            event(self.until, EventKind::Release),
        ];
        let before = config.embargo.status_digest_before;
        if !before.is_zero() {
            let mut digest = self.until - before;
            let length = self.until.since(self.opened);
            if digest <= self.opened {
                digest = self.opened + length / 2;
            }
            if length >= before / 4 && digest > self.opened {
                events.push(event(digest, EventKind::StatusDigest));
            }
        }
        events
    }
}

/// The post an embargo will publish: its subject and content entity,
/// keyword lines removed. Stored sealed with the store key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// The Subject it is published under.
    pub subject: String,
    /// The content entity: its MIME header fields and body.
    pub content: Vec<u8>,
}

/// Each case's [`Embargo`], by case ID, sealed (it holds the reason of
/// an early release).
static EMBARGOES: Table = Table::sealed("embargoes", b"embargo/");
/// Each case's [`Advisory`], by case ID, sealed.
static ADVISORIES: Table = Table::sealed("advisories", b"advisory/");

/// Stores `embargo` under its case when `tx` is applied.
pub fn put(tx: &mut Transaction, embargo: &Embargo) {
    let json = serde_json::to_vec(embargo).expect("embargo serializes");
    tx.put(&EMBARGOES, embargo.case.as_bytes(), json);
}

/// Stores `embargo` (new, or changed from `old` as stored) and moves its
/// schedule: `old`'s reminder and release are cancelled, and those of
/// `embargo` still ahead of `now` (ms since the epoch) scheduled.
pub fn put_scheduled(
    config: &Config,
    tx: &mut Transaction,
    old: Option<&Embargo>,
    embargo: &Embargo,
    now: Timestamp,
) {
    for event in old.map(|old| old.events(config)).unwrap_or_default() {
        crate::schedule::cancel(tx, &event);
    }
    for event in embargo.events(config).into_iter().filter(|e| e.due > now) {
        crate::schedule::add(tx, &event);
    }
    put(tx, embargo);
}

/// Stores the advisory `case`'s release will publish.
pub fn put_advisory(tx: &mut Transaction, case: &str, advisory: &Advisory) {
    let framed = frame(&advisory.subject, &advisory.content);
    tx.put(&ADVISORIES, case.as_bytes(), framed);
}

/// The embargo of `case`, if it has one.
pub fn get(store: &Store, case: &str) -> Result<Option<Embargo>, StoreError> {
    store
        .get(&EMBARGOES, case.as_bytes())?
        .map(|json| decode(case.as_bytes(), &json))
        .transpose()
}

/// Every embargo, by case ID.
pub fn all(store: &Store) -> Result<Vec<Embargo>, StoreError> {
    store
        .scan(&EMBARGOES, b"")?
        .into_iter()
        .map(|(case, json)| decode(&case, &json))
        .collect()
}

fn decode(case: &[u8], json: &[u8]) -> Result<Embargo, StoreError> {
    let mut embargo: Embargo = serde_json::from_slice(json).map_err(|e| {
        StoreError::Corrupt(format!("embargo {}: {e}", String::from_utf8_lossy(case)))
    })?;
    // Kept before signature times were: no post signed before the last
    // change was received may change it.
    if embargo.signed == Timestamp::default() {
        embargo.signed = embargo.updated;
    }
    Ok(embargo)
}

/// The advisory of `case`, opened.
pub fn advisory(store: &Store, case: &str) -> Result<Option<Advisory>, StoreError> {
    store
        .get(&ADVISORIES, case.as_bytes())?
        .map(|framed| {
            let (subject, content): (String, Vec<u8>) = unframe(framed)?;
            Ok(Advisory { subject, content })
        })
        .transpose()
}

/// Why an embargo could not be set, moved or released. Each message is
/// written for whoever asked (the PST in a reply, an admin at the CLI).
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum EmbargoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{text:?} is not an RFC 3339 time like 2026-12-01T16:00:00Z ({source})")]
    BadTime {
        text: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("the disclosure time {} is not in the future", format_disclosure(*.0))]
    NotInFuture(DateTime<Utc>),
    #[error("the disclosure time {} is more than {max_days} days away (max_embargo_days)", format_disclosure(*until))]
    TooFar { until: DateTime<Utc>, max_days: u32 },
    #[error("case {0} has no embargo")]
    NoEmbargo(String),
    #[error(
        "distributors would get {given} of notice, less than the policy's {min} \
         (embargo.min_notice): choose a disclosure time from {} on; or, as the case's Fix Lead, \
         add X-Short-Notice: <reason>; or X-Public: yes when the issue is already public",
        format_disclosure(*earliest)
    )]
    ShortNotice {
        given: String,
        min: String,
        earliest: DateTime<Utc>,
    },
    #[error("case {case} was already released at {}", format_time(*at))]
    Released { case: String, at: DateTime<Utc> },
    #[error("case {0} has no advisory to publish")]
    NoAdvisory(String),
    #[error("no [lists.announce] address is configured")]
    NoAnnounceList,
    #[error("cannot sign the announcement: {0}")]
    Sign(#[from] crate::pgp::seal::SealError),
}

/// Parses an RFC 3339 time (any offset) into UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, EmbargoError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| EmbargoError::BadTime {
            text: text.trim().to_string(),
            source,
        })
}

/// Checks a proposed disclosure time: in the future, and no further out
/// than `max_embargo_days`.
pub fn check_until(
    config: &Config,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), EmbargoError> {
    let max_days = config.embargo.max_embargo_days;
    if until <= now {
        return Err(EmbargoError::NotInFuture(until));
    }
    if until > now + chrono::Duration::days(max_days as i64) {
        return Err(EmbargoError::TooFar { until, max_days });
    }
    Ok(())
}

/// The release slot at or after `asked`: the next allowed day
/// (`embargo.release_days`, any day when empty) at `embargo.release_time`
/// (UTC). Without a `release_time` the time asked for stands.
pub fn snap(config: &Config, asked: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    let Some(time) = config.embargo.release_time else {
        return asked;
    };
    let days = &config.embargo.release_days;
    let mut date = asked.date_naive();
    // A week (and one day for a slot earlier today) holds every weekday.
    for _ in 0..8 {
        let slot = date.and_time(time).and_utc();
        let allowed = days.is_empty() || days.contains(&date.weekday());
        if allowed && slot >= asked {
            return slot;
        }
        date = date.succ_opt().unwrap_or(date);
    }
    asked
}

/// Checks that distributors, first told of the case at `first_notice`,
/// get at least `embargo.min_notice` before `until`.
pub fn check_notice(
    config: &Config,
    first_notice: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(), EmbargoError> {
    let min = config.embargo.min_notice;
    let given = (until - first_notice).to_std().unwrap_or_default();
    if given >= min {
        return Ok(());
    }
    let earliest = first_notice
        + chrono::Duration::from_std(min).unwrap_or_else(|_| chrono::Duration::days(7));
    Err(EmbargoError::ShortNotice {
        given: humantime::format_duration(std::time::Duration::from_secs(
            given.as_secs() / 60 * 60,
        ))
        .to_string(),
        min: humantime::format_duration(min).to_string(),
        earliest: snap(config, earliest),
    })
}

/// The banner every embargoed copy starts with.
pub fn banner(config: &Config, case: &str, until: DateTime<Utc>) -> String {
    format!(
        "EMBARGOED until {}, case {case}\n\
         This information must not be made public, shared, nor even hinted at\n\
         beyond the need-to-know within your team until then, except with the\n\
         list's explicit approval; whoever you share it with must agree to the\n\
         same terms ({} security release process, Embargo Policy).\n",
        format_disclosure(until),
        config.project.name,
    )
}

/// `[EMBARGOED] ` before a Subject (and the case ID, when it does not
/// name it yet).
pub fn embargoed_subject(subject: &str, case: &str) -> String {
    let subject = subject.trim();
    if subject.contains(case) {
        format!("[EMBARGOED] {subject}")
    } else {
        format!("[EMBARGOED] [{case}] {subject}")
    }
}

/// The Subject of the public announcement: no `[EMBARGOED]`, the case ID.
pub fn public_subject(subject: &str, case: &str) -> String {
    let subject = subject.trim().trim_start_matches("[EMBARGOED]").trim();
    if subject.contains(case) {
        subject.to_string()
    } else {
        format!("[{case}] {subject}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_time_and_round_trip() {
        let a = Event {
            due: Timestamp::from_millis(5),
            kind: EventKind::Release,
            case: "KAP-2026-0002".into(),
        };
        let b = Event {
            due: Timestamp::from_millis(300),
            kind: EventKind::Reminder,
            case: "KAP-2026-0001".into(),
        };
        assert!(a.key() < b.key());
        assert_eq!(Event::from_key(&a.key()), Some(a));
    }

    #[test]
    fn subjects() {
        assert_eq!(
            embargoed_subject("Fix for X", "KAP-2026-0001"),
            "[EMBARGOED] [KAP-2026-0001] Fix for X"
        );
        assert_eq!(
            embargoed_subject("KAP-2026-0001: fix", "KAP-2026-0001"),
            "[EMBARGOED] KAP-2026-0001: fix"
        );
        assert_eq!(
            public_subject("[EMBARGOED] [KAP-2026-0001] Fix", "KAP-2026-0001"),
            "[KAP-2026-0001] Fix"
        );
        assert_eq!(
            public_subject("Fix", "KAP-2026-0001"),
            "[KAP-2026-0001] Fix"
        );
    }

    #[test]
    fn disclosure_times_snap_to_the_next_slot_and_notice_is_counted() {
        let mut config = crate::sandbox::Sandbox::config();
        let t = |s: &str| parse_time(s).unwrap();
        // Without a slot the time stands.
        assert_eq!(
            snap(&config, t("2026-12-05T09:13:00Z")),
            t("2026-12-05T09:13:00Z")
        );
        use chrono::Weekday::*;
        config.embargo.release_days = vec![Mon, Tue, Wed, Thu];
        config.embargo.release_time = chrono::NaiveTime::from_hms_opt(16, 0, 0);
        // Tuesday morning: that afternoon. Thursday evening: Monday.
        assert_eq!(
            snap(&config, t("2026-12-01T09:13:00Z")),
            t("2026-12-01T16:00:00Z")
        );
        assert_eq!(
            snap(&config, t("2026-12-03T16:00:01Z")),
            t("2026-12-07T16:00:00Z")
        );
        assert_eq!(
            snap(&config, t("2026-12-03T16:00:00Z")),
            t("2026-12-03T16:00:00Z")
        );
        assert_eq!(
            snap(&config, t("2026-12-05T12:00:00+05:00")),
            t("2026-12-07T16:00:00Z")
        );

        config.embargo.min_notice = std::time::Duration::from_secs(7 * 86400);
        let first = t("2026-12-01T10:00:00Z");
        assert!(check_notice(&config, first, t("2026-12-08T10:00:00Z")).is_ok());
        let short = check_notice(&config, first, t("2026-12-04T10:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(short.contains("3days of notice"), "{short}");
        assert!(
            short.contains("Tuesday 2026-12-08 16:00 UTC (2026-12-08T16:00:00Z)"),
            "{short}"
        );
        assert!(short.contains("X-Short-Notice"), "{short}");
    }

    #[test]
    fn times_in_any_offset_become_utc() {
        let t = parse_time("2026-12-01T17:00:00+01:00").unwrap();
        assert_eq!(format_time(t), "2026-12-01 16:00 UTC");
        assert!(parse_time("tomorrow")
            .unwrap_err()
            .to_string()
            .contains("RFC 3339"));
    }
}
