//! One LMTP session (RFC 2033): commands in, replies out, and at the end of
//! DATA one reply per accepted recipient, sent only once the message is
//! durably in the spool.

use std::sync::Arc;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::to_millis;
use crate::config::ListName;
use crate::daemon::Shared;
use crate::mime::inbound::{precheck, Refusal};
use crate::store::{Incoming, IncomingMeta, Source};

/// Most recipients taken in one transaction; each is a list, so a handful
/// is already generous.
const MAX_RECIPIENTS: usize = 100;

enum State {
    Command,
    /// Reading the message; the buffer starts with a CRLF so the data
    /// receiver sees the line end that preceded it (an empty message is a
    /// lone ".").
    Data(DataReceiver),
    /// Over the size limit: reading on to the final dot, keeping nothing.
    Discard(DummyDataReceiver),
}

/// The transaction being built.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    /// (address as given, list)
    rcpts: Vec<(String, ListName)>,
}

/// Serves one connection until QUIT, EOF, idle timeout or shutdown.
pub async fn serve<S>(mut stream: S, peer: String, shared: Arc<Shared>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = shared.config();
    let hostname = config.lists.security.address.domain().to_string();
    let max_size = config.lmtp.max_message_size;
    let idle = config.lmtp.idle_timeout;

    let mut out = format!("220 {hostname} LMTP embargod ready\r\n").into_bytes();
    let mut greeted = false;
    let mut tx = Transaction::default();
    let mut state = State::Command;
    let mut requests = RequestReceiver::default();
    let mut message: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let read = tokio::select! {
            read = tokio::time::timeout(idle, stream.read(&mut buf)) => read,
            // Between transactions a session can stop at once; a message
            // being received is read to its end (within the grace period).
            _ = shutdown.cancelled(), if matches!(state, State::Command) => {
                let _ = stream.write_all(b"421 4.3.2 Shutting down, try again later\r\n").await;
                return;
            }
        };
        let n = match read {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "read failed");
                return;
            }
            Err(_) => {
                let _ = stream
                    .write_all(b"421 4.4.2 Idle for too long, closing\r\n")
                    .await;
                return;
            }
        };
        let chunk = &buf[..n];
        let mut iter = chunk.iter();
        loop {
            match &mut state {
                State::Command => match requests.ingest(&mut iter, chunk) {
                    Ok(request) => {
                        let reply = command(request, &shared, &mut greeted, &mut tx, max_size);
                        match reply {
                            Reply::Line(line) => out.extend_from_slice(line.as_bytes()),
                            Reply::StartData => {
                                out.extend_from_slice(
                                    b"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
                                );
                                message.clear();
                                message.extend_from_slice(b"\r\n");
                                let mut receiver = DataReceiver::new();
                                let mut seed = Vec::new();
                                receiver.ingest(&mut b"\r\n".iter(), &mut seed);
                                state = State::Data(receiver);
                            }
                            Reply::Quit => {
                                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                        }
                    }
                    Err(ProtoError::NeedsMoreData { .. }) => break,
                    Err(error) => out.extend_from_slice(protocol_error(&error).as_bytes()),
                },
                State::Data(receiver) => {
                    let done = receiver.ingest(&mut iter, &mut message);
                    if done {
                        let raw = finish_message(&mut message);
                        let replies = deliver(&shared, &peer, &tx, raw).await;
                        out.extend_from_slice(replies.as_bytes());
                        tx = Transaction::default();
                        state = State::Command;
                    } else if message.len() > max_size + 2 {
                        warn!(%peer, limit = max_size, "message over the size limit; discarding");
                        state = State::Discard(DummyDataReceiver::new_data(receiver));
                        message = Vec::new();
                    } else {
                        break;
                    }
                }
                State::Discard(receiver) => {
                    if receiver.ingest(&mut iter) {
                        let line = format!(
                            "552 5.3.4 Message exceeds the size limit of {max_size} bytes\r\n"
                        );
                        out.extend_from_slice(line.repeat(tx.rcpts.len()).as_bytes());
                        tx = Transaction::default();
                        state = State::Command;
                    } else {
                        break;
                    }
                }
            }
            if iter.len() == 0 {
                break;
            }
        }
    }
}

/// Strips the seeded CRLF and restores the final line end the data
/// receiver drops with the terminating dot.
fn finish_message(message: &mut Vec<u8>) -> Vec<u8> {
    let mut raw = std::mem::take(message);
    raw.drain(..2.min(raw.len()));
    if !raw.is_empty() {
        raw.extend_from_slice(b"\r\n");
    }
    raw
}

enum Reply {
    Line(String),
    StartData,
    Quit,
}

fn command(
    request: Request<String>,
    shared: &Shared,
    greeted: &mut bool,
    tx: &mut Transaction,
    max_size: usize,
) -> Reply {
    let line = |text: &str| Reply::Line(format!("{text}\r\n"));
    match request {
        Request::Lhlo { host } => {
            *greeted = true;
            *tx = Transaction::default();
            let hostname = shared.config().lists.security.address.domain().to_string();
            Reply::Line(format!(
                "250-{hostname} greets {host}\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250 SIZE {max_size}\r\n"
            ))
        }
        Request::Ehlo { .. } | Request::Helo { .. } => {
            line("500 5.5.1 This is an LMTP server: say LHLO (RFC 2033)")
        }
        Request::Mail { from } => {
            if !*greeted {
                line("503 5.5.1 Say LHLO first")
            } else if tx.mail_from.is_some() {
                line("503 5.5.1 Nested MAIL command")
            } else if from.size > max_size {
                line(&format!(
                    "552 5.3.4 Message exceeds the size limit of {max_size} bytes"
                ))
            } else {
                tx.mail_from = Some(from.address);
                line("250 2.1.0 Sender OK")
            }
        }
        Request::Rcpt { to } => {
            if tx.mail_from.is_none() {
                return line("503 5.5.1 MAIL first");
            }
            if tx.rcpts.len() >= MAX_RECIPIENTS {
                return line("452 4.5.3 Too many recipients");
            }
            let config = shared.config();
            match config.list_for_address(&to.address) {
                Some(list) => {
                    tx.rcpts.push((to.address, list.name));
                    line("250 2.1.5 Recipient OK")
                }
                None => line(&format!(
                    "550 5.1.1 <{}>: no such list here",
                    sanitize(&to.address)
                )),
            }
        }
        Request::Data => {
            if tx.mail_from.is_none() {
                line("503 5.5.1 MAIL first")
            } else if tx.rcpts.is_empty() {
                line("503 5.5.1 No valid recipients")
            } else {
                Reply::StartData
            }
        }
        Request::Rset => {
            *tx = Transaction::default();
            line("250 2.0.0 Reset")
        }
        Request::Noop { .. } => line("250 2.0.0 OK"),
        Request::Quit => Reply::Quit,
        Request::Vrfy { .. } => line("252 2.5.0 Not verifying; send mail and see"),
        _ => line("502 5.5.1 Command not implemented"),
    }
}

fn protocol_error(error: &ProtoError) -> String {
    match error {
        ProtoError::UnknownCommand => "500 5.5.1 Unknown command\r\n".into(),
        ProtoError::ResponseTooLong => "500 5.5.2 Line too long\r\n".into(),
        ProtoError::InvalidSenderAddress => "501 5.1.7 Bad sender address syntax\r\n".into(),
        ProtoError::InvalidRecipientAddress => "501 5.1.3 Bad recipient address syntax\r\n".into(),
        ProtoError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}\r\n"),
        ProtoError::InvalidParameter { param } => {
            format!("501 5.5.4 Invalid parameter {param}\r\n")
        }
        ProtoError::UnsupportedParameter { param } => {
            format!("555 5.5.4 Unsupported parameter {}\r\n", sanitize(param))
        }
        other => format!("500 5.5.1 {other:?}\r\n"),
    }
}

/// Keeps client-supplied text in a reply printable and short.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

/// Checks, spools and flushes the message; one reply line per recipient.
async fn deliver(shared: &Arc<Shared>, peer: &str, tx: &Transaction, raw: Vec<u8>) -> String {
    let config = shared.config();
    let per_rcpt = |line: &str| line.repeat(tx.rcpts.len());
    if let Err(refusal) = precheck(&raw, config.lmtp.max_header_size) {
        info!(%peer, %refusal, bytes = raw.len(), "refused at end of DATA");
        let code = match refusal {
            Refusal::HeaderTooLarge(_) => "552 5.3.4",
            _ => "554 5.6.0",
        };
        return per_rcpt(&format!("{code} Refused: {refusal}\r\n"));
    }
    let mut lists: Vec<ListName> = tx.rcpts.iter().map(|(_, list)| *list).collect();
    lists.sort();
    lists.dedup();
    let bytes = raw.len();
    let incoming = Incoming {
        meta: IncomingMeta {
            received: to_millis(shared.clock.now()),
            source: Source::Lmtp {
                mail_from: tx.mail_from.clone().unwrap_or_default(),
                lists: lists.clone(),
            },
        },
        raw,
    };
    let store = shared.store.clone();
    let spooled = crate::blocking(move || store.spool(&incoming)).await;
    let result = match spooled {
        Ok(id) => shared.store.flush().await.map(|()| id),
        Err(e) => Err(e),
    };
    match result {
        Ok(id) => {
            info!(%peer, msg = id, bytes, lists = ?lists, "accepted");
            shared.wake_fanout.notify_one();
            tx.rcpts
                .iter()
                .map(|(address, _)| {
                    format!("250 2.0.0 <{}> accepted as {id}\r\n", sanitize(address))
                })
                .collect()
        }
        Err(error) => {
            warn!(%peer, %error, "could not spool; asking the client to retry");
            per_rcpt("451 4.3.0 Cannot store the message now; try again later\r\n")
        }
    }
}
