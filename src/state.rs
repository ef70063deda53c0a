//! The state every task of the running daemon reads: the configuration,
//! keys and transport in force (a reload swaps them), the store, the
//! clock, the wake-ups between tasks, and the metrics.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;
use tracing::warn;

use crate::clock::Clock;
use crate::config::Config;
use crate::context::Context;
use crate::delivery::transport::Transport;
use crate::keys::Keys;
use crate::store::{Store, StoreError, Transaction};

/// State every task reads.
pub struct Shared {
    /// Config, keys and transport in force; a reload swaps all three.
    live: RwLock<Live>,
    /// The store.
    pub store: Store,
    /// The clock; tests pass a manual one.
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
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// What each IMAP intake is doing.
    pub intakes: crate::intake::board::Board,
    /// When the daemon started.
    pub started: chrono::DateTime<chrono::Utc>,
    /// Whether the daemon's tasks run (`embargod run`), or an admin
    /// command opened the store with no daemon running.
    pub serving: std::sync::atomic::AtomicBool,
}

/// What a reload replaces.
struct Live {
    config: Arc<Config>,
    keys: Arc<Keys>,
    transport: Arc<Transport>,
    loaded: chrono::DateTime<chrono::Utc>,
}

impl Shared {
    /// The state of a daemon starting with `config`, `keys`, `transport`
    /// and `store`, on `clock`.
    pub fn new(
        config: Config,
        keys: Keys,
        transport: Transport,
        store: Store,
        clock: Clock,
    ) -> Shared {
        let now = clock.now();
        let keys = refreshed_keys(&config, &store, keys);
        Shared {
            live: RwLock::new(Live {
                config: Arc::new(config),
                keys: Arc::new(keys),
                transport: Arc::new(transport),
                loaded: now,
            }),
            store,
            clock,
            wake_fanout: Notify::new(),
            wake_delivery: Notify::new(),
            wake_scheduler: Notify::new(),
            embargo_lock: tokio::sync::Mutex::new(()),
            metrics: crate::metrics::Metrics::default(),
            intakes: crate::intake::board::Board::default(),
            started: now,
            serving: std::sync::atomic::AtomicBool::new(false),
        }
    }

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
        let keys = refreshed_keys(&config, &self.store, keys);
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
        // The intakes keep the mailbox they started with.
        if config.intakes() != old.intakes() {
            restart.push("lists.*.imap / lists.*.maildir / bounces.imap / bounces.maildir");
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
        // Changed keys and warning steps are looked at now.
        if let Err(e) = crate::keyhealth::run_now(&self.store, self.clock.now()) {
            warn!(error = %e, "cannot schedule the key and bounce check");
        }
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
    pub async fn commit(&self, batch: Transaction) -> Result<(), StoreError> {
        let refreshed = crate::keyrefresh::changes(&batch);
        let spooled = batch.spools();
        let queued = !batch.queued().is_empty();
        self.metrics.copy("queued", batch.queued().len() as u64);
        let scheduled = crate::schedule::changes(&batch);
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
        if refreshed {
            let (config, keys) = (self.config(), self.keys());
            let store = self.store.clone();
            let keys =
                crate::blocking(move || refreshed_keys(&config, &store, (*keys).clone())).await;
            self.live.write().expect("live lock").keys = Arc::new(keys);
        }
        Ok(())
    }
}

/// `keys` with the refreshed certificates the store keeps
/// ([`crate::keyrefresh`]); as loaded when the store cannot be read.
fn refreshed_keys(config: &Config, store: &Store, keys: Keys) -> Keys {
    match crate::keyrefresh::apply(config, store, &keys) {
        Ok(refreshed) => refreshed,
        Err(e) => {
            warn!(error = %e, "cannot read the refreshed keys; using the key files as they are");
            keys
        }
    }
}
