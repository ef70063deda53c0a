//! The delivery worker: sends queued copies through the transport, in due
//! order, and records each outcome.
//!
//! A temporary failure puts the copy back with an exponential backoff; a
//! permanent one, or a copy still undelivered after `retry_max_age`, fails
//! for good and the PST gets a notice. A restart resumes from the queue.
//! The only window for a duplicate is between the transport's success and
//! the commit of its record.

pub mod transport;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::{from_millis, to_millis};
use crate::daemon::Shared;
use crate::store::{Batch, DeliveryRecord, Outcome, QueueKey, QueuedCopy};
pub use transport::{SendError, Transport};

/// Runs until `shutdown`, then lets sends in progress finish.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut sending: JoinSet<(QueueKey, QueuedCopy, Result<(), SendError>)> = JoinSet::new();
    let mut busy: HashSet<u64> = HashSet::new();
    loop {
        let config = shared.config();
        let free = config.delivery.concurrency.saturating_sub(sending.len());
        let now = shared.clock.now();
        if free > 0 {
            let store = shared.store.clone();
            let skip = busy.clone();
            match crate::blocking(move || store.due_copies(to_millis(now), free, &skip)).await {
                Ok(due) => {
                    for (key, copy) in due {
                        busy.insert(key.id);
                        let transport = shared.transport();
                        let from = config.delivery.from.clone();
                        sending.spawn(async move {
                            let result = match copy.to.parse() {
                                Ok(to) => transport.send(&from, &to, &copy.bytes).await,
                                Err(e) => {
                                    Err(SendError::Permanent(format!("recipient {}: {e}", copy.to)))
                                }
                            };
                            (key, copy, result)
                        });
                    }
                }
                Err(e) => error!(error = %e, "cannot read the queue"),
            }
        }
        let next_due = match shared.store.first_queued() {
            Ok(Some(key)) if !busy.contains(&key.id) => Some(from_millis(key.due)),
            // The first is in flight: its result wakes us.
            _ => None,
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(joined) = sending.join_next() => {
                if let Ok((key, copy, result)) = joined {
                    busy.remove(&key.id);
                    settle(&shared, key, copy, result).await;
                }
            }
            _ = shared.wake_delivery.notified() => {}
            _ = sleep_until(&shared, next_due) => {}
        }
    }
    // Finish what the transport already has; the caller bounds this with
    // the grace period.
    while let Some(joined) = sending.join_next().await {
        if let Ok((key, copy, result)) = joined {
            settle(&shared, key, copy, result).await;
        }
    }
}

async fn sleep_until(shared: &Shared, due: Option<DateTime<Utc>>) {
    match due {
        Some(due) => shared.clock.sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Records the outcome of one send and moves the copy on.
async fn settle(
    shared: &Arc<Shared>,
    key: QueueKey,
    copy: QueuedCopy,
    result: Result<(), SendError>,
) {
    let config = shared.config();
    let now = shared.clock.now();
    let mut batch = Batch {
        remove_queue: vec![key],
        ..Batch::default()
    };
    let record = |outcome| DeliveryRecord {
        time: to_millis(now),
        message: copy.message,
        case: copy.case.clone(),
        copy_id: Some(copy.id),
        list: copy.list,
        member: copy.member.clone(),
        fingerprint: Some(copy.fingerprint.clone()),
        encryption_subkey: None,
        message_id: Some(copy.message_id.clone()),
        plaintext_sha256: None,
        ciphertext_sha256: None,
        outcome,
    };
    let age = Duration::from_millis(to_millis(now).saturating_sub(copy.queued));
    let failure = match result {
        Ok(()) => {
            info!(msg = copy.message, member = %copy.member, copy = copy.id, "sent");
            shared.metrics.copy("sent", 1);
            batch.records.push(record(Outcome::Sent));
            None
        }
        Err(SendError::Temporary(reason)) if age < config.delivery.retry_max_age => {
            let delay = backoff(
                config.delivery.retry_initial,
                config.delivery.retry_max_delay,
                copy.attempts,
            );
            let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
            warn!(msg = copy.message, member = %copy.member, copy = copy.id, %reason, retry_in = ?delay, "deferred");
            batch
                .records
                .push(record(Outcome::Deferred(reason.clone())));
            shared.metrics.copy("deferred", 1);
            batch.add_queue.push((
                QueueKey {
                    due: to_millis(due),
                    id: copy.id,
                },
                QueuedCopy {
                    attempts: copy.attempts + 1,
                    last_error: Some(reason),
                    ..copy.clone()
                },
            ));
            None
        }
        Err(SendError::Temporary(reason)) => Some(format!(
            "still failing after {}: {reason}",
            humantime::format_duration(config.delivery.retry_max_age)
        )),
        Err(SendError::Permanent(reason)) => Some(reason),
    };
    if let Some(reason) = failure {
        error!(msg = copy.message, member = %copy.member, copy = copy.id, %reason, "delivery failed");
        batch.records.push(record(Outcome::Failed(reason.clone())));
        shared.metrics.copy("failed", 1);
        if !copy.notice {
            batch.add_spool.push(crate::notice::to_pst(
                &config,
                now,
                &format!("delivery to {} failed", copy.member),
                &format!(
                    "The copy of message {} for {} <{}> could not be delivered:\n\n  {reason}\n\n\
                     It is not retried. Check the address and the relay's logs.\n",
                    copy.message, copy.member, copy.to
                ),
            ));
        }
    }
    let notice = !batch.add_spool.is_empty();
    // Flushed before the next send: an outcome lost to a crash means the
    // copy goes out again on restart.
    let store = shared.store.clone();
    let recorded = match crate::blocking(move || store.apply(batch)).await {
        Ok(()) => shared.store.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        // The copy stays queued under its old key and is tried again.
        error!(error = %e, copy = copy.id, "cannot record a delivery outcome");
    }
    if notice {
        shared.wake_fanout.notify_one();
    }
}

/// `initial · 2^attempts`, at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    initial
        .checked_mul(1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(60), s(3600), 0), s(60));
        assert_eq!(backoff(s(60), s(3600), 1), s(120));
        assert_eq!(backoff(s(60), s(3600), 5), s(1920));
        assert_eq!(backoff(s(60), s(3600), 6), s(3600));
        assert_eq!(backoff(s(60), s(3600), 400), s(3600));
    }
}
