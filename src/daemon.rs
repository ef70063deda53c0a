//! The running daemon: its background tasks and an orderly stop (the
//! state they share is [`crate::state`]).
//!
//! [`Daemon::run`] takes listeners that are already bound and a shutdown future,
//! so `main` binds the configured addresses and waits for signals while
//! tests bind port 0 and stop it when they are done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::transport::{Transport, TransportError};
use crate::keys::Keys;
use crate::lmtp::Listener;
use crate::pgp::ListKeyError;
use crate::state::Shared;
use crate::store::{Store, StoreError, StoreKey};

/// What can stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
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
    /// The clock; tests pass a manual one.
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
    /// Bound LMTP listeners.
    pub lmtp: Vec<Listener>,
    /// The bound control socket, if any.
    pub control: Option<tokio::net::UnixListener>,
    /// The bound metrics listener, if any.
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

/// Everything [`Daemon::run`] needs, opened before the first connection is taken.
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
        Ok(Daemon {
            shared: Arc::new(Shared::new(config, keys, transport, store, options.clock)),
            grace: options.grace,
        })
    }

    /// What every task of the daemon shares.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves the `sockets` until `shutdown` completes, then stops taking
    /// mail and gives work in progress the grace period to finish. Tells
    /// systemd (when it runs us) that it is ready, feeds its watchdog, and
    /// says when it stops.
    pub async fn run(self, sockets: Sockets, shutdown: impl Future<Output = ()>) {
        let Daemon { shared, grace } = self;
        shared
            .serving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let sessions = TaskTracker::new();
        tasks.spawn(crate::lmtp::serve(
            sockets.lmtp,
            shared.clone(),
            stop.clone(),
            sessions.clone(),
        ));
        for (target, imap, maildir) in shared.config().intakes() {
            if let Some(imap) = imap {
                let run = crate::imap::run(shared.clone(), target, imap.clone(), stop.clone());
                tasks.spawn(run);
            }
            if let Some(maildir) = maildir {
                let run =
                    crate::maildir::run(shared.clone(), target, maildir.clone(), stop.clone());
                tasks.spawn(run);
            }
        }
        tasks.spawn(crate::fanout::worker::run(shared.clone(), stop.clone()));
        tasks.spawn(crate::delivery::run(shared.clone(), stop.clone()));
        tasks.spawn(crate::schedule::task::run(shared.clone(), stop.clone()));
        if let Some(control) = sockets.control {
            tasks.spawn(crate::control::serve(control, shared.clone(), stop.clone()));
        }
        if let Some(metrics) = sockets.metrics {
            let shared = shared.clone();
            let render = move || shared.metrics.render(&shared.store, shared.clock.now());
            tasks.spawn(crate::metrics::serve(metrics, render, stop.clone()));
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
