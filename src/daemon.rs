//! The running daemon: shared state, the background tasks, and an orderly
//! stop.
//!
//! [`run`] takes listeners that are already bound and a shutdown future,
//! so `main` binds the configured addresses and waits for signals while
//! tests bind port 0 and stop it when they are done.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::transport::{Transport, TransportError};
use crate::fanout::Context;
use crate::keys::Keys;
use crate::lmtp::Listener;
use crate::pgp::ListKeyError;
use crate::store::{Batch, QuarantineMeta, Store, StoreError, StoreKey};

/// State every task reads.
pub struct Shared {
    config: RwLock<Arc<Config>>,
    keys: RwLock<Arc<Keys>>,
    pub store: Store,
    pub clock: Clock,
    /// Something entered the spool.
    pub wake_fanout: Notify,
    /// Something entered the queue.
    pub wake_delivery: Notify,
    /// The schedule changed.
    pub wake_scheduler: Notify,
    /// Held while embargoes are read and changed (fan-out, scheduler,
    /// admin commands), so no change is lost to another.
    pub embargo_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().expect("keys lock").clone()
    }

    /// Runs `work` off the runtime with what processing reads: the config
    /// and keys in force, the store, the time now. A panic in `work` comes
    /// back as the error.
    pub async fn try_in_context<T, F>(&self, work: F) -> Result<T, tokio::task::JoinError>
    where
        F: FnOnce(&Context<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (config, keys, store, now) = (
            self.config(),
            self.keys(),
            self.store.clone(),
            self.clock.now(),
        );
        tokio::task::spawn_blocking(move || {
            work(&Context {
                config: &config,
                keys: &keys,
                store: &store,
                now,
            })
        })
        .await
    }

    /// [`Shared::try_in_context`], re-raising a panic in the caller.
    pub async fn in_context<T, F>(&self, work: F) -> T
    where
        F: FnOnce(&Context<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.try_in_context(work).await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Applies `batch` durably and wakes the tasks it gave work to.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let spooled = !batch.add_spool.is_empty();
        let queued = !batch.add_queue.is_empty();
        let scheduled = !batch.schedule_add.is_empty();
        let store = self.store.clone();
        crate::blocking(move || store.apply(batch)).await?;
        self.store.flush().await?;
        if spooled {
            self.wake_fanout.notify_one();
        }
        if queued {
            self.wake_delivery.notify_one();
        }
        if scheduled {
            self.wake_scheduler.notify_one();
        }
        Ok(())
    }
}

/// What can stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    ListKey(#[from] ListKeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Knobs the command line does not expose.
#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Clock,
    /// How long work in progress may take to finish after shutdown.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::system(),
            grace: Duration::from_secs(30),
        }
    }
}

/// Everything [`run`] needs, opened before the first connection is taken.
pub struct Daemon {
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    grace: Duration,
}

impl Daemon {
    /// Loads keys, opens the store and the transport.
    pub fn open(config: Config, options: Options) -> Result<Daemon, StartError> {
        let keys = Keys::load(&config)?;
        for (member, problem) in keys
            .members
            .iter()
            .filter_map(|(id, k)| Some((id, k.as_ref().err()?)))
        {
            warn!(%member, %problem, "member key unusable: this member gets no copies");
        }
        let store_key = StoreKey::load(&config.store.key)?;
        let store = Store::open(&config.store.path, store_key)?;
        let transport = Transport::new(&config.delivery.transport)?;
        Ok(Daemon {
            shared: Arc::new(Shared {
                config: RwLock::new(Arc::new(config)),
                keys: RwLock::new(Arc::new(keys)),
                store,
                clock: options.clock,
                wake_fanout: Notify::new(),
                wake_delivery: Notify::new(),
                wake_scheduler: Notify::new(),
                embargo_lock: tokio::sync::Mutex::new(()),
            }),
            transport: Arc::new(transport),
            grace: options.grace,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves `listeners` (and admin commands on `control`) until
    /// `shutdown` completes, then stops taking mail and gives work in
    /// progress the grace period to finish.
    pub async fn run(
        self,
        listeners: Vec<Listener>,
        control: Option<tokio::net::UnixListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let Daemon {
            shared,
            transport,
            grace,
        } = self;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let sessions = TaskTracker::new();
        tasks.spawn(crate::lmtp::serve(
            listeners,
            shared.clone(),
            stop.clone(),
            sessions.clone(),
        ));
        tasks.spawn(fanout(shared.clone(), stop.clone()));
        tasks.spawn(crate::delivery::run(
            shared.clone(),
            transport,
            stop.clone(),
        ));
        tasks.spawn(crate::embargo::scheduler::run(shared.clone(), stop.clone()));
        if let Some(control) = control {
            tasks.spawn(crate::control::serve(control, shared.clone(), stop.clone()));
        }
        info!(
            spooled = shared.store.spool_len(),
            queued = shared.store.queue_len(),
            "embargod running"
        );

        shutdown.await;
        info!("shutting down");
        stop.cancel();
        tasks.close();
        sessions.close();
        let drained = tokio::time::timeout(grace, async {
            tasks.wait().await;
            sessions.wait().await;
        })
        .await;
        if drained.is_err() {
            warn!(
                ?grace,
                "work still in progress after the grace period; it resumes at the next start"
            );
        }
        if let Err(e) = shared.store.flush().await {
            error!(error = %e, "final flush failed");
        }
        info!("stopped");
    }
}

/// The fan-out task: turns every spooled message into queued copies.
async fn fanout(shared: Arc<Shared>, stop: CancellationToken) {
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
        let _embargoes = shared.embargo_lock.lock().await;
        let meta = incoming.meta.clone();
        let batch = match shared
            .try_in_context(move |ctx| crate::fanout::process(ctx, id, incoming))
            .await
        {
            Ok(batch) => batch,
            Err(_) => {
                // A bug, not the sender's fault; keep the message where
                // the PST can see it rather than retrying it forever.
                error!(msg = id, "processing panicked; quarantining");
                panicked(shared, id, meta).await
            }
        };
        if let Err(e) = shared.commit(batch).await {
            error!(msg = id, error = %e, "cannot commit the fan-out");
            return false;
        }
    }
}

/// The batch for a message whose processing panicked: into quarantine,
/// with a notice.
async fn panicked(shared: &Arc<Shared>, id: u64, meta: crate::store::IncomingMeta) -> Batch {
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
    let reason =
        "internal error while processing (the daemon's fault; please report it)".to_string();
    let notice = (!matches!(meta.source, crate::store::Source::Notice { .. })).then(|| {
        crate::notice::to_pst(
            &config,
            now,
            &format!("message {id} quarantined"),
            &format!("Message {id} could not be processed: {reason}.\n"),
        )
    });
    Batch {
        remove_spool: vec![id],
        add_spool: notice.into_iter().collect(),
        quarantine: vec![(
            QuarantineMeta {
                time: crate::clock::to_millis(now),
                reason,
                incoming: meta,
            },
            raw,
        )],
        ..Batch::default()
    }
}
