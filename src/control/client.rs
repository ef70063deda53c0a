//! The command-line side: one request to the running daemon.

use std::io;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Command, Request, Response, VERSION};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum ClientError {
    /// No daemon listens on the socket: act on the store directly.
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("control socket: bad response: {0}")]
    BadResponse(String),
}

/// Sends `command` to the daemon listening on `socket`.
pub async fn request(socket: &Path, command: Command) -> Result<Response, ClientError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(socket.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&Request {
        v: VERSION,
        command,
    })
    .expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await?;
    let response = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| ClientError::BadResponse("connection closed".into()))?;
    serde_json::from_str(&response).map_err(|e| ClientError::BadResponse(e.to_string()))
}
