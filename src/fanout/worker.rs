//! The fan-out task: takes each spooled message in turn, decides what
//! becomes of it ([`crate::lists::process`]) and commits the decision; the
//! delivery task ([`crate::delivery`]) makes and sends the copies.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::state::Shared;
use crate::store::{QuarantineMeta, Transaction};

/// The fan-out task: turns every spooled message into queued copies.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let retry_soon = !fanout_pass(&shared).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.wake_fanout.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)), if retry_soon => {}
        }
    }
}

/// Processes the spool from its oldest entry; returns false when it had
/// to stop early (the store failed) and should be retried.
async fn fanout_pass(shared: &Arc<Shared>) -> bool {
    let mut from = 0;
    loop {
        let store = shared.store.clone();
        let next = crate::blocking(move || store.next_spooled(from)).await;
        let (id, incoming) = match next {
            Ok(Some(entry)) => entry,
            Ok(None) => return true,
            Err(e) => {
                error!(error = %e, "cannot read the spool");
                return false;
            }
        };
        from = id + 1;
        let incoming = match incoming {
            Ok(incoming) => incoming,
            Err(e) => {
                // Left in place: a damaged entry is never thrown away.
                error!(msg = id, error = %e, "spooled message cannot be read; left in the spool");
                continue;
            }
        };
        let meta = incoming.meta.clone();
        let received = meta.received;
        // Counted before the work, so a message that kills the daemon
        // (out of memory, a crash) is not taken up for ever.
        let starts = match shared
            .store
            .begin_attempt(crate::store::Attempt::Spool, id)
            .await
        {
            Ok(starts) => starts,
            Err(e) => {
                error!(msg = id, error = %e, "cannot count a start on a spooled message");
                return false;
            }
        };
        let _embargoes = shared.embargo_lock.lock().await;
        let batch = if starts > MAX_SPOOL_STARTS {
            error!(
                msg = id,
                starts, "processing stopped the daemon; quarantining"
            );
            quarantined(
                shared,
                id,
                meta,
                format!(
                    "the daemon stopped {} times while processing it (out of memory? a bug?)",
                    starts - 1
                ),
            )
            .await
        } else {
            match shared
                .try_in_context(move |ctx| crate::lists::process(ctx, id, incoming))
                .await
            {
                Ok(batch) => batch,
                Err(_) => {
                    // A bug, not the sender's fault; keep the message where
                    // the PST can see it rather than retrying it forever.
                    error!(msg = id, "processing panicked; quarantining");
                    quarantined(
                        shared,
                        id,
                        meta,
                        "internal error while processing (the daemon's fault; please report it)"
                            .to_string(),
                    )
                    .await
                }
            }
        };
        if let Err(e) = shared.commit(batch).await {
            error!(msg = id, error = %e, "cannot commit the fan-out");
            // The store's failure, not a death: no strike against it.
            let _ = shared.store.clear_attempt(crate::store::Attempt::Spool, id);
            return false;
        }
        let took = crate::clock::Timestamp::from(shared.clock.now()).since(received);
        shared.metrics.processing.observe(took.as_secs_f64());
    }
}

/// Starts on one spool entry after which a fourth is refused: the first,
/// and two retries after a restart.
pub const MAX_SPOOL_STARTS: u32 = 3;

/// The batch for a message that could not be processed (a panic, or it
/// kept stopping the daemon): into quarantine, with a notice.
async fn quarantined(
    shared: &Arc<Shared>,
    id: u64,
    meta: crate::store::IncomingMeta,
    reason: String,
) -> Transaction {
    let store = shared.store.clone();
    let raw = crate::blocking(move || store.next_spooled(id))
        .await
        .ok()
        .flatten()
        .filter(|(found, _)| *found == id)
        .and_then(|(_, incoming)| incoming.ok())
        .map(|incoming| incoming.raw)
        .unwrap_or_default();
    let config = shared.config();
    let now = shared.clock.now();
    let notice = (!matches!(meta.source, crate::store::Source::Notice { .. })).then(|| {
        crate::notice::to_pst(
            &config,
            now,
            &format!("message {id} quarantined"),
            &format!("Message {id} could not be processed: {reason}.\n"),
        )
    });
    let mut tx = Transaction::new();
    tx.unspool(id);
    if let Some(notice) = notice {
        tx.spool(notice);
    }
    tx.quarantine(
        QuarantineMeta {
            time: crate::clock::Timestamp::from(now),
            reason,
            incoming: meta,
        },
        raw,
    );
    tx
}
