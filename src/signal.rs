//! The signals a running daemon answers: SIGTERM and SIGINT stop it in
//! order, SIGHUP reloads the config and the keys (a bad new config is
//! refused and the old one stays), with systemd told of each reload.

use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::state::Shared;

/// Handles signals until SIGTERM or SIGINT. The reload reads files and
/// parses OpenPGP certificates, so it runs off the runtime's threads.
///
/// Panics if the signal handlers cannot be installed (at start only).
pub async fn until_stopped(shared: Arc<Shared>) {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(&shared).await,
        }
    }
}

/// Reloads the config and keys (systemd's `ExecReload`, or `kill -HUP`).
async fn reload(shared: &Arc<Shared>) {
    let _ = sd_notify::notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
    let result = crate::blocking({
        let shared = shared.clone();
        move || shared.reload()
    })
    .await;
    match result {
        Ok(restart) if restart.is_empty() => info!("configuration reloaded"),
        Ok(restart) => {
            warn!(
                ?restart,
                "configuration reloaded; these settings change only at a restart"
            )
        }
        Err(e) => error!(error = %e, "reload refused; the previous configuration stays in force"),
    }
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}
