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
    /// Config, keys and transport in force; a reload swaps all three.
    live: RwLock<Live>,
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
    pub metrics: crate::metrics::Metrics,
    pub started: chrono::DateTime<chrono::Utc>,
}

/// What a reload replaces.
struct Live {
    config: Arc<Config>,
    keys: Arc<Keys>,
    transport: Arc<Transport>,
    loaded: chrono::DateTime<chrono::Utc>,
}

impl Shared {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.read().expect("live lock").config.clone()
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.live.read().expect("live lock").keys.clone()
    }

    /// The transport in force.
    pub fn transport(&self) -> Arc<Transport> {
        self.live.read().expect("live lock").transport.clone()
    }

    /// When the configuration in force was loaded.
    pub fn loaded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.live.read().expect("live lock").loaded
    }

    /// Re-reads the config file and the keys (SIGHUP). A config or key
    /// that does not load is refused and the old one stays in force, as
    /// nginx does; work in progress keeps what it started with. Returns
    /// the settings that only a restart changes, when they differ.
    pub fn reload(&self) -> Result<Vec<&'static str>, String> {
        let old = self.config();
        let config = Config::load(&old.file).map_err(|e| e.to_string())?;
        let keys = Keys::load(&config).map_err(|e| e.to_string())?;
        let transport = Transport::new(&config.delivery.transport).map_err(|e| e.to_string())?;
        let mut restart = Vec::new();
        if config.lmtp.listen != old.lmtp.listen {
            restart.push("lmtp.listen");
        }
        if config.store.path != old.store.path || config.store.key != old.store.key {
            restart.push("store");
        }
        if config.control.socket != old.control.socket {
            restart.push("control.socket");
        }
        if config.metrics.listen != old.metrics.listen {
            restart.push("metrics.listen");
        }
        for (member, problem) in keys
            .members
            .iter()
            .filter_map(|(id, k)| Some((id, k.as_ref().err()?)))
        {
            warn!(%member, %problem, "member key unusable: this member gets no copies");
        }
        *self.live.write().expect("live lock") = Live {
            config: Arc::new(config),
            keys: Arc::new(keys),
            transport: Arc::new(transport),
            loaded: self.clock.now(),
        };
        // New members may be owed queued work; let every task look again.
        self.wake_fanout.notify_one();
        self.wake_delivery.notify_one();
        self.wake_scheduler.notify_one();
        Ok(restart)
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
        self.metrics.copy("queued", batch.add_queue.len() as u64);
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

/// The sockets the daemon serves, bound before it starts.
#[derive(Debug, Default)]
pub struct Sockets {
    pub lmtp: Vec<Listener>,
    pub control: Option<tokio::net::UnixListener>,
    pub metrics: Option<tokio::net::TcpListener>,
}

impl Sockets {
    /// Binds what `config` asks for.
    pub async fn bind(config: &Config) -> std::io::Result<Sockets> {
        let lmtp = crate::lmtp::bind(&config.lmtp.listen).await?;
        let control = Some(crate::control::bind(&config.control.socket)?);
        let metrics = match config.metrics.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("metrics listen {addr}: {e}"))
            })?),
            None => None,
        };
        Ok(Sockets {
            lmtp,
            control,
            metrics,
        })
    }
}

/// Everything [`run`] needs, opened before the first connection is taken.
pub struct Daemon {
    shared: Arc<Shared>,
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
        let now = options.clock.now();
        Ok(Daemon {
            shared: Arc::new(Shared {
                live: RwLock::new(Live {
                    config: Arc::new(config),
                    keys: Arc::new(keys),
                    transport: Arc::new(transport),
                    loaded: now,
                }),
                store,
                clock: options.clock,
                wake_fanout: Notify::new(),
                wake_delivery: Notify::new(),
                wake_scheduler: Notify::new(),
                embargo_lock: tokio::sync::Mutex::new(()),
                metrics: crate::metrics::Metrics::default(),
                started: now,
            }),
            grace: options.grace,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves the `sockets` until `shutdown` completes, then stops taking
    /// mail and gives work in progress the grace period to finish. Tells
    /// systemd (when it runs us) that it is ready, feeds its watchdog, and
    /// says when it stops.
    pub async fn run(self, sockets: Sockets, shutdown: impl Future<Output = ()>) {
        let Daemon { shared, grace } = self;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let sessions = TaskTracker::new();
        tasks.spawn(crate::lmtp::serve(
            sockets.lmtp,
            shared.clone(),
            stop.clone(),
            sessions.clone(),
        ));
        tasks.spawn(fanout(shared.clone(), stop.clone()));
        tasks.spawn(crate::delivery::run(shared.clone(), stop.clone()));
        tasks.spawn(crate::embargo::scheduler::run(shared.clone(), stop.clone()));
        if let Some(control) = sockets.control {
            tasks.spawn(crate::control::serve(control, shared.clone(), stop.clone()));
        }
        if let Some(metrics) = sockets.metrics {
            tasks.spawn(crate::metrics::serve(metrics, shared.clone(), stop.clone()));
        }
        if let Some(period) = sd_notify::watchdog_enabled() {
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(period / 2);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
                    }
                }
            });
        }
        info!(
            spooled = shared.store.spool_len(),
            queued = shared.store.queue_len(),
            "embargod running"
        );
        // Listeners are bound and the store is open: ready.
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("serving"),
        ]);

        shutdown.await;
        info!("shutting down");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
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
                .try_in_context(move |ctx| crate::fanout::process(ctx, id, incoming))
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
        let took = crate::clock::to_millis(shared.clock.now()).saturating_sub(received);
        shared.metrics.processing.observe(took as f64 / 1000.0);
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
) -> Batch {
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
