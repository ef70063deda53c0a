//! The scheduler task: fires each event when it falls due, through the
//! domain that registered it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::clock::Timestamp;
use crate::schedule::EventKind;
use crate::state::Shared;

/// Runs until `stop`: fires what is due, then sleeps until the next
/// event or a wake-up (a transaction that changed the schedule).
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    if let Err(e) = crate::keyhealth::run_now(&shared.store, shared.clock.now()) {
        error!(error = %e, "cannot schedule the daily key and bounce check");
    }
    loop {
        if let Err(e) = fire_due(&shared).await {
            error!(error = %e, "scheduler cannot read or write the store");
        }
        let next = super::next(&shared.store)
            .ok()
            .flatten()
            .map(|e| e.due.to_datetime());
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
    let due = crate::blocking(move || super::due(&store, Timestamp::from(now))).await?;
    for event in due {
        let batch = shared
            .in_context(move |ctx| match event.kind {
                EventKind::Reminder | EventKind::Release | EventKind::StatusDigest => {
                    crate::embargo::release::fire(ctx, &event)
                }
                EventKind::Daily => crate::keyhealth::daily(ctx, &event),
                EventKind::Deadline | EventKind::Overdue => {
                    crate::case::timeline::fire(ctx, &event)
                }
            })
            .await;
        shared.commit(batch).await?;
    }
    Ok(())
}
