//! LMTP ingest: the local MTA hands over mail for the list addresses.
//!
//! [`bind`] opens every configured address (TCP or Unix socket) before
//! anything else starts; [`serve`] accepts on all of them, with a bound on
//! concurrent sessions, until shutdown.

pub mod client;
pub mod machine;
pub(crate) mod session;

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::ListenAddr;
use crate::state::Shared;

/// A bound LMTP socket.
#[derive(Debug)]
pub enum Listener {
    /// A loopback TCP listener.
    Tcp(TcpListener),
    /// A Unix socket listener.
    Unix(UnixListener),
}

impl Listener {
    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        Ok(match self {
            Listener::Tcp(l) => ListenAddr::Tcp(l.local_addr()?),
            Listener::Unix(l) => ListenAddr::Unix(
                l.local_addr()?
                    .as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
        })
    }
}

/// Binds every address; a stale Unix socket file left by a previous run
/// is replaced, any other file in its place is an error.
pub async fn bind(addresses: &[ListenAddr]) -> io::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for address in addresses {
        let listener = match address {
            ListenAddr::Tcp(addr) => Listener::Tcp(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("LMTP listen {addr}: {e}")))?,
            ),
            ListenAddr::Unix(path) => Listener::Unix(bind_unix(path)?),
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    // The MTA runs as another user; the socket is as open as a loopback
    // TCP port, and what it accepts is public mail anyway.
    crate::fsutil::bind_unix_socket(path, 0o666, "LMTP socket")
}

/// Accepts sessions on every listener until `shutdown`; sessions in
/// progress are tracked by `sessions` so the caller can drain them.
pub async fn serve(
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(shared.config().lmtp.max_sessions));
    let accepting = TaskTracker::new();
    for listener in listeners {
        let (shared, shutdown, sessions, limit) = (
            shared.clone(),
            shutdown.clone(),
            sessions.clone(),
            limit.clone(),
        );
        accepting.spawn(async move {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            info!(listen = %addr, "LMTP listening");
            loop {
                // Wait for a free session slot before accepting, so excess
                // clients queue in the kernel's backlog.
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = limit.clone().acquire_owned() => permit.expect("never closed"),
                };
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = accept(&listener) => accepted,
                };
                match accepted {
                    Ok(Connection::Tcp(stream, peer)) => {
                        let (shared, shutdown) = (shared.clone(), shutdown.clone());
                        sessions.spawn(async move {
                            session::serve(stream, peer, shared, shutdown).await;
                            drop(permit);
                        });
                    }
                    Ok(Connection::Unix(stream)) => {
                        let (shared, shutdown) = (shared.clone(), shutdown.clone());
                        sessions.spawn(async move {
                            session::serve(stream, "unix".into(), shared, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        warn!(listen = %addr, error = %e, "accept failed");
                        // Out of file descriptors and the like: back off.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
            if let Listener::Unix(l) = &listener {
                if let Some(path) = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                {
                    let _ = std::fs::remove_file(path);
                }
            }
        });
    }
    accepting.close();
    accepting.wait().await;
}

enum Connection {
    Tcp(tokio::net::TcpStream, String),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Connection> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok(Connection::Tcp(stream, peer.to_string()))
        }
        Listener::Unix(l) => Ok(Connection::Unix(l.accept().await?.0)),
    }
}
