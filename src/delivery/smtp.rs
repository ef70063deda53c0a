//! The SMTP relay client: lettre's protocol engine (RFC 5321, STARTTLS,
//! AUTH) on connections we open and keep.
//!
//! Two things lettre's own transport does not do, and a fan-out of a
//! hundred copies needs:
//! - **TCP_NODELAY.** lettre writes a message and its final `.` in two
//!   writes; with Nagle's algorithm on, the `.` waits for the relay's
//!   delayed ACK, about 40 ms per message. We open the socket, set
//!   `TCP_NODELAY`, and hand it to lettre.
//! - **Reuse.** A connection that delivered a message goes back to an
//!   idle set and carries the next (RSET-free: each transaction ends with
//!   the relay's reply to the `.`), so a worker pays for the TCP and TLS
//!   handshakes once, not per copy.
//!
//! The message is handed to lettre in 64 KiB chunks, so its dot-stuffing
//! buffer stays small however large the copy is. Implicit TLS (port 465)
//! goes through lettre's own connect, without TCP_NODELAY: use STARTTLS
//! or a local relay for the full speed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error;

use crate::config::SmtpTls;

use super::error::SendError;

/// Longest a connection waits in the idle set: relays drop idle clients
/// after a minute or more (Postfix: 300 s).
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Each write of message data to lettre.
const CHUNK: usize = 64 * 1024;

/// A relay and the connections kept open to it.
pub struct SmtpRelay {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpRelay {
    pub fn new(
        host: &str,
        port: u16,
        tls: SmtpTls,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> SmtpRelay {
        SmtpRelay {
            host: host.to_string(),
            port,
            tls,
            credentials,
            timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `message` with `envelope` in one SMTP transaction (MAIL,
    /// RCPT, DATA), on an idle connection if there is one. A reused
    /// connection the relay closed in the meantime is replaced once, before
    /// any of the message went out.
    ///
    /// Errors: a 5xx reply is [`SendError::Permanent`]; a 4xx reply, a
    /// network failure or a timeout [`SendError::Temporary`].
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        if let Some(mut connection) = self.take_idle() {
            match self.transaction(&mut connection, envelope, message).await {
                Ok(()) => {
                    self.put_back(connection);
                    return Ok(());
                }
                // Closed while idle (or closing: 421): the relay never
                // took this message.
                Err(Failure::BeforeData(e)) if closed_while_idle(&e) => {
                    connection.abort().await;
                }
                Err(failure) => {
                    connection.abort().await;
                    return Err(failure.into());
                }
            }
        }
        let mut connection = self.connect().await?;
        match self.transaction(&mut connection, envelope, message).await {
            Ok(()) => {
                self.put_back(connection);
                Ok(())
            }
            Err(failure) => {
                connection.abort().await;
                Err(failure.into())
            }
        }
    }

    /// Connects, says EHLO, starts TLS and logs in as a delivery would,
    /// then QUITs: what `embargod check` reports about a relay or a
    /// submission server (RFC 6409).
    ///
    /// Errors: as [`SmtpRelay::send`]'s, before any message.
    pub async fn probe(&self) -> Result<String, SendError> {
        let mut connection = self.connect().await?;
        let _ = connection.quit().await;
        let tls = match self.tls {
            SmtpTls::None => "no TLS",
            SmtpTls::Starttls => "STARTTLS",
            SmtpTls::Tls => "implicit TLS",
        };
        let login = if self.credentials.is_some() {
            ", logged in"
        } else {
            ""
        };
        Ok(format!(
            "{}:{} answers ({tls}{login})",
            self.host, self.port
        ))
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().expect("idle connections");
        while let Some((connection, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !connection.has_broken() {
                return Some(connection);
            }
        }
        None
    }

    fn put_back(&self, connection: AsyncSmtpConnection) {
        self.idle
            .lock()
            .expect("idle connections")
            .push((connection, Instant::now()));
    }

    /// A new connection, greeted, upgraded to TLS and logged in as the
    /// configuration says.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tls = || TlsParameters::new(self.host.clone()).map_err(classify);
        let mut connection = match self.tls {
            SmtpTls::Tls => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(tls()?),
                None,
            )
            .await
            .map_err(classify)?,
            SmtpTls::None | SmtpTls::Starttls => {
                let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
                let socket = tokio::time::timeout(self.timeout, connect)
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
                    .and_then(|connected| connected)
                    .map_err(|e| {
                        SendError::Temporary(format!("SMTP: {}:{}: {e}", self.host, self.port))
                    })?;
                socket
                    .set_nodelay(true)
                    .map_err(|e| SendError::Temporary(format!("SMTP: TCP_NODELAY: {e}")))?;
                let mut connection =
                    AsyncSmtpConnection::connect_with_transport(Box::new(socket), &self.hello)
                        .await
                        .map_err(classify)?;
                if self.tls == SmtpTls::Starttls {
                    connection
                        .starttls(tls()?, &self.hello)
                        .await
                        .map_err(classify)?;
                }
                connection
            }
        };
        if let Some(credentials) = &self.credentials {
            if let Err(e) = connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
            {
                connection.abort().await;
                // The account's problem, not the copy's: it waits for
                // the admin (delivery.credentials), it is never dropped.
                return Err(SendError::Temporary(format!(
                    "SMTP: the relay refuses the login in delivery.credentials: {e}"
                )));
            }
        }
        Ok(connection)
    }
}

/// Where a transaction failed: before the relay took any of the message,
/// or after; or it was not tried.
enum Failure {
    BeforeData(Error),
    AfterData(Error),
    Refused(SendError),
}

impl From<Failure> for SendError {
    fn from(failure: Failure) -> SendError {
        match failure {
            Failure::BeforeData(e) | Failure::AfterData(e) => classify(e),
            Failure::Refused(e) => e,
        }
    }
}

impl SmtpRelay {
    /// [`transaction`] within the relay timeout, plus a second for every
    /// 100 KiB of the message: a relay that stops answering frees its slot.
    async fn transaction(
        &self,
        connection: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), Failure> {
        let limit = self.timeout + Duration::from_secs((message.len() / (100 << 10)) as u64);
        tokio::time::timeout(limit, transaction(connection, envelope, message))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Refused(SendError::Temporary(format!(
                    "SMTP: no answer from the relay within {}",
                    humantime::format_duration(limit)
                ))))
            })
    }
}

/// MAIL, RCPT, DATA, the message, the final `.`.
async fn transaction(
    connection: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), Failure> {
    let mut parameters = Vec::new();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|address| !address.to_string().is_ascii());
    if non_ascii {
        if !connection
            .server_info()
            .supports_feature(Extension::SmtpUtfEight)
        {
            return Err(Failure::Refused(SendError::Permanent(
                "SMTP: the address is not ASCII and the relay does not offer SMTPUTF8".into(),
            )));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
        {
            return Err(Failure::Refused(SendError::Permanent(
                "SMTP: the message is 8-bit and the relay does not offer 8BITMIME".into(),
            )));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let before = Failure::BeforeData;
    connection
        .command(Mail::new(envelope.from().cloned(), parameters))
        .await
        .map_err(|e| match e.is_permanent() {
            // A refused envelope sender is the account's problem (a
            // submission server that does not let it send as
            // delivery.from), not the copy's: it waits, never dropped.
            true => Failure::Refused(SendError::Temporary(format!(
                "SMTP: the relay refuses the envelope sender (delivery.from): {e}"
            ))),
            false => before(e),
        })?;
    for to in envelope.to() {
        connection
            .command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(|e| match refuses_the_relay_itself(&e, envelope.from()) {
                // Postfix, with smtpd_delay_reject (its default), refuses
                // a sender only at RCPT: the copy is not at fault.
                Some(why) => Failure::Refused(SendError::Temporary(format!(
                    "SMTP: the relay refuses {why}: {e}; allow delivery.from with any \
                     +TOKEN (each member's copy is sent from its own VERP address)"
                ))),
                // Only a refused recipient says anything about the address.
                None if e.is_permanent() => {
                    Failure::Refused(SendError::Rejected(format!("SMTP: {e}")))
                }
                None => before(e),
            })?;
    }
    connection.command(Data).await.map_err(before)?;
    // lettre ends the data with CRLF "." CRLF; the message's own last line
    // end is that first CRLF, so the relay takes exactly `message`.
    let message = message.strip_suffix(b"\r\n").unwrap_or(message);
    connection
        .message_iter(message.chunks(CHUNK))
        .await
        .map_err(Failure::AfterData)?;
    Ok(())
}

/// Whether a reused connection failed because the relay had closed it
/// (a network error, or `421` closing): not an answer about the message.
fn closed_while_idle(e: &Error) -> bool {
    let replied = e.is_permanent() || e.is_transient();
    !replied || e.status().is_some_and(|code| code.to_string() == "421")
}

/// Whether a refused RCPT is about the sender or the relay's own rules,
/// not the recipient: Postfix names a refused sender at RCPT time
/// ("Sender address rejected"), and "Relay access denied" is the relay's
/// configuration. What it is about, or `None` for the recipient's own
/// refusal (a bounce).
fn refuses_the_relay_itself(e: &Error, from: Option<&lettre::Address>) -> Option<&'static str> {
    if !e.is_permanent() {
        return None;
    }
    let text = e.to_string().to_ascii_lowercase();
    let names_sender =
        from.is_some_and(|from| text.contains(&from.to_string().to_ascii_lowercase()));
    if text.contains("sender") || names_sender {
        Some("the envelope sender")
    } else if text.contains("relay access denied") || text.contains("relaying denied") {
        Some("to relay for the daemon")
    } else {
        None
    }
}

/// A relay's 5xx is final; anything else may pass.
fn classify(e: Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(format!("SMTP: {e}"))
    } else {
        SendError::Temporary(format!("SMTP: {e}"))
    }
}
