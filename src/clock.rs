//! Wall-clock time that tests can move.
//!
//! Retries (and, later, embargo releases and reminders) are due at wall-clock
//! times kept in the store. The daemon asks a [`Clock`] for "now" and sleeps
//! through it; tests hand the daemon a manual clock and advance it instead of
//! sleeping.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The daemon's source of wall-clock time.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
enum Inner {
    System,
    /// Moves only when [`Clock::advance`] is called.
    Manual(watch::Sender<DateTime<Utc>>),
}

/// A sleeping task wakes at least this often on the system clock, so a
/// jump of the wall clock (NTP, suspend) delays nothing for long.
const MAX_NAP: Duration = Duration::from_secs(30);

impl Clock {
    /// The real wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Inner::System))
    }

    /// A clock standing still at `start` until advanced.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Inner::Manual(watch::Sender::new(start))))
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Inner::System => Utc::now(),
            Inner::Manual(now) => *now.borrow(),
        }
    }

    /// Moves a manual clock forward and wakes its sleepers.
    ///
    /// # Panics
    /// On the system clock, which nobody may move.
    pub fn advance(&self, by: Duration) {
        match &*self.0 {
            Inner::System => panic!("the system clock cannot be advanced"),
            Inner::Manual(now) => now.send_modify(|now| {
                *now += chrono::Duration::from_std(by).expect("duration in range")
            }),
        }
    }

    /// Returns once `when` has come, or earlier: callers re-check their
    /// due times in a loop, so an early wake-up is harmless.
    pub async fn sleep_until(&self, when: DateTime<Utc>) {
        match &*self.0 {
            Inner::System => {
                let left = (when - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(left.min(MAX_NAP)).await;
            }
            Inner::Manual(now) => {
                let mut rx = now.subscribe();
                // The sender lives as long as `self`, so this only ends when
                // the time has come.
                let _ = rx.wait_for(|now| *now >= when).await;
            }
        }
    }
}

/// A point in time as records, events and store keys keep it:
/// milliseconds since the Unix epoch, UTC. Serialized as the bare number,
/// so stored records and keys read the same as before the type existed.
/// Times before the epoch are the epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The time `millis` ms after the epoch.
    pub const fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// As a chrono time; a value out of chrono's range gives the epoch.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0 as i64).unwrap_or_default()
    }

    /// `2026-12-01 16:00 UTC`, as [`format_time`] writes it. (No
    /// `Display`: a timestamp written into the store or a key stays a
    /// number, never this text by accident.)
    pub fn formatted(self) -> String {
        format_time(self.to_datetime())
    }

    /// How long after `earlier` this is; zero when it is not after.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Timestamp {
        Timestamp(time.timestamp_millis().max(0) as u64)
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(time: std::time::SystemTime) -> Timestamp {
        Timestamp::from(DateTime::<Utc>::from(time))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(time: Timestamp) -> DateTime<Utc> {
        time.to_datetime()
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the end of `u64` milliseconds.
    fn add(self, by: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(whole_millis(by)))
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the epoch.
    fn sub(self, by: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(whole_millis(by)))
    }
}

/// `by` in whole milliseconds, at most `u64::MAX`.
fn whole_millis(by: Duration) -> u64 {
    u64::try_from(by.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-12-01 16:00 UTC`: how notices, replies and the CLI show a time
/// (to the minute, always UTC).
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `Tuesday 2026-12-08 16:00 UTC (2026-12-08T16:00:00Z)`: how every
/// notice about an embargo states its time, in UTC and as RFC 3339, so
/// that nobody misreads it across time zones.
pub fn format_disclosure(time: DateTime<Utc>) -> String {
    format!(
        "{} ({})",
        time.format("%A %Y-%m-%d %H:%M UTC"),
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Clock::manual(start);
        let due = start + chrono::Duration::seconds(90);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(due).await }
        });
        clock.advance(Duration::from_secs(60));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke 30 s early");
        clock.advance(Duration::from_secs(30));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), due);
    }

    #[test]
    fn timestamps_round_trip_and_saturate() {
        let t = DateTime::from_timestamp_millis(1_800_000_000_123).unwrap();
        assert_eq!(Timestamp::from(t).to_datetime(), t);
        assert_eq!(
            serde_json::to_string(&Timestamp::from(t)).unwrap(),
            "1800000000123"
        );
        let epoch = Timestamp::default();
        assert_eq!(epoch - Duration::from_secs(1), epoch);
        assert_eq!(epoch.since(Timestamp::from(t)), Duration::ZERO);
        let before = DateTime::from_timestamp_millis(-5).unwrap();
        assert_eq!(Timestamp::from(before), epoch);
    }
}
