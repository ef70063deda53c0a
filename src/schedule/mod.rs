//! Deadlines: every event of a case or an embargo that falls due at a
//! time, and the task that fires them.
//!
//! Events live in the store under big-endian due-time keys, so the next
//! one is the first key and a restart loses none; one that fell due while
//! the daemon was down fires as soon as it starts. Embargoes register
//! their reminder and release ([`crate::embargo::Embargo::events`]), cases
//! their milestones ([`crate::case::timeline`]); [`task`] hands each event
//! back to its domain when it is due.

pub mod task;

use crate::clock::Timestamp;
use crate::store::{Store, StoreError, Table, Transaction};

/// Events by [`Event::key`]; the value is empty.
static SCHEDULE: Table = Table::plain("schedule");

/// Something due at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// When, in ms since the epoch.
    pub due: Timestamp,
    /// What is due.
    pub kind: EventKind,
    /// The case it belongs to (`case#milestone` for deadlines).
    pub case: String,
}

/// What an event does when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// An embargo's reminder to the PST and distributors.
    Reminder = 1,
    /// An embargo's release.
    Release = 2,
    /// A case deadline's reminder to the Fix Lead (`case#milestone`).
    Deadline = 3,
    /// A case deadline passed (`case#milestone`): the PST is told.
    Overdue = 4,
    /// The PST's digest of which distributors have not confirmed
    /// receipt of an embargoed patch.
    StatusDigest = 5,
    /// The daily look at every member: keys near expiry, bounce probes
    /// ([`crate::keyhealth`]); its `case` is empty.
    Daily = 6,
}

impl Event {
    /// Store key: big-endian due time, kind, case — ordered by time.
    pub fn key(&self) -> Vec<u8> {
        let mut key = self.due.millis().to_be_bytes().to_vec();
        key.push(self.kind as u8);
        key.extend_from_slice(self.case.as_bytes());
        key
    }

    /// The event a store key names; `None` for a key not of [`Event::key`]'s shape.
    pub fn from_key(key: &[u8]) -> Option<Event> {
        let due = Timestamp::from_millis(u64::from_be_bytes(key.get(..8)?.try_into().ok()?));
        let kind = match key.get(8)? {
            1 => EventKind::Reminder,
            2 => EventKind::Release,
            3 => EventKind::Deadline,
            4 => EventKind::Overdue,
            5 => EventKind::StatusDigest,
            6 => EventKind::Daily,
            _ => return None,
        };
        let case = String::from_utf8(key.get(9..)?.to_vec()).ok()?;
        Some(Event { due, kind, case })
    }
}

/// Schedules `event` when `tx` is applied.
pub fn add(tx: &mut Transaction, event: &Event) {
    tx.put(&SCHEDULE, event.key(), Vec::new());
}

/// Cancels `event` when `tx` is applied.
pub fn cancel(tx: &mut Transaction, event: &Event) {
    tx.remove(&SCHEDULE, event.key());
}

/// Whether `tx` schedules or cancels anything (the task must look again).
pub fn changes(tx: &Transaction) -> bool {
    tx.touches(&SCHEDULE)
}

/// Events due at `now` (ms since the epoch), oldest first.
pub fn due(store: &Store, now: Timestamp) -> Result<Vec<Event>, StoreError> {
    store
        .keys_before(
            &SCHEDULE,
            &(now + std::time::Duration::from_millis(1))
                .millis()
                .to_be_bytes(),
        )?
        .iter()
        .map(|key| decode(key))
        .collect()
}

/// Every scheduled event, oldest first.
pub fn all(store: &Store) -> Result<Vec<Event>, StoreError> {
    store
        .keys(&SCHEDULE, b"", usize::MAX)?
        .iter()
        .map(|key| decode(key))
        .collect()
}

/// The next event, due or not.
pub fn next(store: &Store) -> Result<Option<Event>, StoreError> {
    store
        .first_key(&SCHEDULE)?
        .map(|key| decode(&key))
        .transpose()
}

fn decode(key: &[u8]) -> Result<Event, StoreError> {
    Event::from_key(key).ok_or_else(|| StoreError::Corrupt("schedule key".into()))
}
