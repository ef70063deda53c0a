//! The socket side: accepts admin connections, checks who is calling,
//! answers one request per line.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{handle, Request, Response, VERSION};
use crate::state::Shared;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Binds the control socket (mode 0600), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    crate::fsutil::bind_unix_socket(path, 0o600, "control socket")
}

/// Serves admin connections until `stop`; removes the socket file then.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, stop: CancellationToken) {
    let own_uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    if let Some(path) = &path {
        info!(socket = %path.display(), "control socket listening");
    }
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "control accept failed");
                    continue;
                }
            },
        };
        let uid = stream.peer_cred().ok().map(|cred| cred.uid());
        let allowed = matches!(uid, Some(0)) || (uid.is_some() && uid == own_uid);
        let shared = shared.clone();
        tokio::spawn(async move {
            if allowed {
                session(stream, shared).await;
            } else {
                warn!(
                    ?uid,
                    "control connection refused: not root or the service user"
                );
                let mut stream = stream;
                let _ = reply(
                    &mut stream,
                    &Response::error("permission denied: only root and the service user"),
                )
                .await;
            }
        });
    }
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

async fn session(stream: UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE as u64 * 16)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = if line.len() > MAX_LINE {
            Response::error("request line too long")
        } else {
            // The version first: an older client's request may name a
            // command this version does not have.
            match serde_json::from_str::<Version>(&line).map(|v| v.v) {
                Ok(v) if v != VERSION => {
                    if old_version(&mut write, v).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => handle(&shared, request.command).await,
                    Err(e) => Response::error(format!("bad request: {e}")),
                },
            }
        };
        if reply(&mut write, &response).await.is_err() {
            return;
        }
    }
}

/// The version field of a request, read before the rest.
#[derive(serde::Deserialize)]
struct Version {
    v: u32,
}

/// The answer to a client of another protocol version, in a shape both
/// versions read: version 1's `ok` and `error` beside this version's
/// `outcome`.
async fn old_version<W: AsyncWriteExt + Unpin>(write: &mut W, v: u32) -> std::io::Result<()> {
    let error = format!(
        "protocol version {v} not supported; this daemon speaks {VERSION}: \
         use the embargod command of the same version"
    );
    let mut line = serde_json::to_vec(&serde_json::json!({
        "ok": false,
        "outcome": "failed",
        "error": error,
    }))
    .expect("a JSON object serializes");
    line.push(b'\n');
    write.write_all(&line).await
}

async fn reply<W: AsyncWriteExt + Unpin>(
    write: &mut W,
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).expect("responses serialize");
    line.push(b'\n');
    write.write_all(&line).await
}
