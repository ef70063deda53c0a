//! The ways a copy leaves: SMTP relay, sendmail, or lettre's file transport.

use std::path::PathBuf;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncFileTransport, AsyncSendmailTransport, AsyncTransport, Tokio1Executor};

pub use super::error::SendError;
use super::smtp::SmtpRelay;
use crate::config::Transport as TransportConfig;

/// A transport ready to send.
pub enum Transport {
    /// lettre's file transport writes into a staging folder; each message
    /// is then renamed into the outbox, envelope last, so a reader (or a
    /// crash) never sees half a message.
    File {
        /// lettre's file transport, writing into `staging_dir`.
        staging: AsyncFileTransport<Tokio1Executor>,
        /// Where messages are written first.
        staging_dir: PathBuf,
        /// The outbox they are renamed into.
        dir: PathBuf,
    },
    /// A relay, over connections kept open (see `delivery/smtp.rs`).
    Smtp(SmtpRelay),
    /// A local `sendmail` program.
    Sendmail(AsyncSendmailTransport<Tokio1Executor>),
}

/// A transport that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("delivery transport: {0}")]
pub struct TransportError(String);

impl Transport {
    /// The transport `config` describes; an error names what is wrong with it.
    pub fn new(config: &TransportConfig) -> Result<Transport, TransportError> {
        Ok(match config {
            TransportConfig::File { dir } => {
                let staging_dir = dir.join(".staging");
                // What a crash left half-written is garbage: its copy was
                // never recorded as sent and goes again.
                let _ = std::fs::remove_dir_all(&staging_dir);
                std::fs::create_dir_all(&staging_dir)
                    .map_err(|e| TransportError(format!("file_dir {}: {e}", dir.display())))?;
                Transport::File {
                    staging: AsyncFileTransport::with_envelope(&staging_dir),
                    staging_dir,
                    dir: dir.clone(),
                }
            }
            TransportConfig::Smtp {
                host,
                port,
                tls,
                credentials,
            } => {
                let credentials = credentials.as_deref().map(read_credentials).transpose()?;
                Transport::Smtp(SmtpRelay::new(
                    host,
                    *port,
                    *tls,
                    credentials,
                    Duration::from_secs(60),
                ))
            }
            TransportConfig::Sendmail { command } => Transport::Sendmail(match command {
                Some(command) => AsyncSendmailTransport::new_with_command(command.as_os_str()),
                None => AsyncSendmailTransport::new(),
            }),
        })
    }

    /// Connects to the SMTP relay or submission server and logs in
    /// (connect, TLS, login, QUIT); `None` for transports with no server.
    pub async fn probe(&self) -> Option<Result<String, SendError>> {
        match self {
            Transport::Smtp(relay) => Some(relay.probe().await),
            _ => None,
        }
    }

    /// Sends `message` from `from` to `to`.
    pub async fn send(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
    ) -> Result<(), SendError> {
        let envelope = Envelope::new(Some(from.clone()), vec![to.clone()])
            .map_err(|e| SendError::Permanent(format!("envelope: {e}")))?;
        match self {
            Transport::File {
                staging,
                staging_dir,
                dir,
            } => {
                let temporary = |e: &dyn std::fmt::Display| {
                    SendError::Temporary(format!("file transport: {e}"))
                };
                let id = staging
                    .send_raw(&envelope, message)
                    .await
                    .map_err(|e| temporary(&e))?;
                for extension in ["eml", "json"] {
                    let name = format!("{id}.{extension}");
                    tokio::fs::rename(staging_dir.join(&name), dir.join(&name))
                        .await
                        .map_err(|e| temporary(&e))?;
                }
                Ok(())
            }
            Transport::Smtp(relay) => relay.send(&envelope, message).await,
            Transport::Sendmail(t) => t
                .send_raw(&envelope, message)
                .await
                .map(drop)
                .map_err(|e| SendError::Temporary(format!("sendmail: {e}"))),
        }
    }
}

/// `username:password` on the first line of `file`, which only the
/// service user may read.
fn read_credentials(file: &std::path::Path) -> Result<Credentials, TransportError> {
    let problem =
        |reason: String| TransportError(format!("credentials {}: {reason}", file.display()));
    crate::fsutil::check_private(file).map_err(problem)?;
    let text = std::fs::read_to_string(file).map_err(|e| problem(e.to_string()))?;
    let line = text.lines().next().unwrap_or_default();
    let (user, password) = line
        .split_once(':')
        .ok_or_else(|| problem("expected username:password".into()))?;
    Ok(Credentials::new(user.to_string(), password.to_string()))
}
