//! One authenticated IMAP session: TCP, TLS (implicit, RFC 8314, or
//! STARTTLS, RFC 9051 section 6.2.1), the greeting and LOGIN.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_imap::{Client, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig};
use tokio_rustls::TlsConnector;

use super::ImapError;
use crate::config::{ImapIntake, ImapTls};

/// How long connecting, TLS, the greeting and LOGIN may take together.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection under the IMAP client: plain TCP (loopback only) or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

/// A logged-in session.
pub(crate) type ImapSession = Session<Box<dyn Io>>;

/// Connects to `intake`'s server and logs in, within 30 s.
///
/// Errors: [`ImapError::Connect`], [`ImapError::Tls`],
/// [`ImapError::Password`], [`ImapError::Login`] (the server's words), or
/// [`ImapError::Timeout`].
pub(crate) async fn login(intake: &ImapIntake) -> Result<ImapSession, ImapError> {
    let password = read_password(&intake.password_file)?;
    tokio::time::timeout(LOGIN_TIMEOUT, async {
        let client = open(intake).await?;
        client
            .login(&intake.username, password.as_str())
            .await
            .map_err(|(error, _)| ImapError::Login {
                username: intake.username.clone(),
                reason: format!(
                    "{} (check the password in {})",
                    super::server_words(&error),
                    intake.password_file.display()
                ),
            })
    })
    .await
    .map_err(|_| ImapError::Timeout("login"))?
}

/// A client past the greeting, on TLS unless the server is on loopback
/// and `tls = "none"`.
async fn open(intake: &ImapIntake) -> Result<Client<Box<dyn Io>>, ImapError> {
    let addr = format!("{}:{}", intake.server, intake.port);
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| ImapError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = match intake.tls {
        ImapTls::Tls => Box::new(tls(intake, tcp).await?),
        ImapTls::None => Box::new(tcp),
        ImapTls::Starttls => {
            let mut client = Client::new(tcp);
            greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| ImapError::Tls {
                    server: intake.server.clone(),
                    reason: format!("STARTTLS refused: {}", super::server_words(&e)),
                })?;
            // Nothing the server said before TLS is kept (RFC 9051
            // section 6.2.1): the client is made anew on the TLS stream.
            let client =
                Client::new(Box::new(tls(intake, client.into_inner()).await?) as Box<dyn Io>);
            return Ok(client);
        }
    };
    let mut client = Client::new(stream);
    greeting(&mut client).await?;
    Ok(client)
}

async fn greeting<T: Io>(client: &mut Client<T>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Protocol(
            async_imap::error::Error::ConnectionLost,
        )),
        Err(e) => Err(ImapError::Protocol(e.into())),
    }
}

async fn tls(
    intake: &ImapIntake,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let failed = |reason: String| ImapError::Tls {
        server: intake.server.clone(),
        reason,
    };
    let name = ServerName::try_from(intake.server.clone())
        .map_err(|e| failed(format!("not a server name: {e}")))?;
    TlsConnector::from(client_config().map_err(|e| failed(e.to_string()))?)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let hint = match e.to_string() {
                text if text.contains("corrupt message") => {
                    " (the server did not answer in TLS: port 993 is implicit TLS, \
                     143 plaintext or STARTTLS: tls = \"starttls\")"
                }
                text if text.contains("certificate") => {
                    " (no trusted CA vouches for it in the system store, for this name)"
                }
                _ => "",
            };
            failed(format!("{e}{hint}"))
        })
}

/// rustls with the ring provider and the platform's trust store (the
/// system's CA certificates), as lettre uses for SMTP.
fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth(),
    ))
}

/// The password in `path`: its first line. The file must be readable by
/// its owner alone (mode 0600 or stricter), like an SMTP credentials file.
pub(crate) fn read_password(path: &Path) -> Result<String, ImapError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |reason: String| ImapError::Password {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => failed(format!(
            "{e}: the daemon's user must own it (chown embargod, chmod 600)"
        )),
        _ => failed(e.to_string()),
    })?;
    let mode = file
        .metadata()
        .map_err(|e| failed(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(failed(format!(
            "readable by others (mode {:o}); chmod 600 it",
            mode & 0o777
        )));
    }
    let text = std::io::read_to_string(file).map_err(|e| failed(e.to_string()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(failed("empty: the password goes on its first line".into()));
    }
    Ok(password)
}
