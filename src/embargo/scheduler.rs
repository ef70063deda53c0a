//! The scheduler task: fires reminders and releases when they fall due.
//!
//! Events live in the store under big-endian due-time keys, so the next
//! one is the first key and a restart loses none; one that fell due while
//! the daemon was down fires as soon as it starts.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::clock::{from_millis, to_millis};
use crate::embargo::EventKind;
use crate::state::Shared;

pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        if let Err(e) = fire_due(&shared).await {
            error!(error = %e, "scheduler cannot read or write the store");
        }
        let next = shared
            .store
            .next_event()
            .ok()
            .flatten()
            .map(|e| from_millis(e.due));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.wake_scheduler.notified() => {}
            _ = async {
                match next {
                    Some(due) => shared.clock.sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Fires every event due now, each in its own transaction.
async fn fire_due(shared: &Arc<Shared>) -> Result<(), crate::store::StoreError> {
    let _embargoes = shared.embargo_lock.lock().await;
    let now = shared.clock.now();
    let store = shared.store.clone();
    let due = crate::blocking(move || store.due_events(to_millis(now))).await?;
    for event in due {
        let batch = shared
            .in_context(move |ctx| match event.kind {
                EventKind::Reminder | EventKind::Release => {
                    crate::embargo::release::fire(ctx, &event)
                }
                EventKind::Deadline | EventKind::Overdue => {
                    crate::case::timeline::fire(ctx, &event)
                }
            })
            .await;
        shared.commit(batch).await?;
    }
    Ok(())
}
