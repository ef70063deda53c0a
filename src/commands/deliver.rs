//! `embargod deliver --list NAME`: one message from standard input, for
//! an MTA's pipe transport (Exim, OpenSMTPD, Postfix `pipe`, procmail,
//! fetchmail or getmail). It speaks LMTP to the running daemon; when none
//! answers, it speaks LMTP to the same session code in this process, on
//! the store. Either way every check and the durable accept (a sealed,
//! flushed spool entry before success) are the daemon's own, and the
//! daemon takes the message from the spool when it runs.
//!
//! The exit status is what a delivery agent returns (sysexits.h): the MTA
//! keeps the message and retries on [`EX_TEMPFAIL`], and bounces it on
//! the others.

use std::sync::Arc;

use crate::config::{Config, ListName};
use crate::lmtp::client::Reply;

/// Delivered: the message is in the spool.
pub const EX_OK: u8 = 0;
/// The message was refused for what it is: too large, malformed.
pub const EX_DATAERR: u8 = 65;
/// No such list here.
pub const EX_NOUSER: u8 = 67;
/// Try again later: the daemon or the store cannot take it now.
pub const EX_TEMPFAIL: u8 = 75;
/// Refused by policy (RFC 3463 class 5.7).
pub const EX_NOPERM: u8 = 77;
/// The command line is wrong (`--list bounces` without `--recipient`).
pub const EX_USAGE: u8 = 64;

/// What happened to the message: the exit status, and a line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A sysexits.h status.
    pub status: u8,
    /// The LMTP reply or the error, for the MTA's log.
    pub message: String,
}

/// Delivers `message` from envelope sender `sender` (empty for a bounce)
/// to `list`, or to the owner address when `list` is `None`; at
/// `recipient` when given (a VERP address), which must be that list's
/// address or the owner address.
pub async fn deliver(
    config: Config,
    list: Option<ListName>,
    recipient: Option<String>,
    sender: &str,
    message: &[u8],
) -> Outcome {
    let expected = match list {
        Some(list) => match config.list(list) {
            Some(l) => l.address.to_string(),
            None => {
                return Outcome {
                    status: EX_NOUSER,
                    message: format!("the {list} list is not configured"),
                }
            }
        },
        None => config.delivery.from.to_string(),
    };
    if list.is_none() && recipient.is_none() {
        return Outcome {
            status: EX_USAGE,
            message: "--list bounces needs --recipient: the address the bounce came to, \
                      with its +TOKEN (Postfix ${recipient}); without it no bounce can be \
                      counted"
                .into(),
        };
    }
    let address = recipient.unwrap_or(expected.clone());
    let matches = match list {
        Some(_) => address.eq_ignore_ascii_case(&expected),
        None => crate::bounce::owner_token(&config, &address).is_some(),
    };
    if !matches {
        return Outcome {
            status: EX_NOUSER,
            message: format!("{address} is not the address of --list (expected {expected})"),
        };
    }
    let rcpts = [address.as_str()];
    let running = match config.lmtp.listen.first() {
        Some(listen) => crate::lmtp::client::connect(listen).await.ok(),
        None => None,
    };
    let replies = match running {
        Some(mut client) => send(&mut client, sender, &rcpts, message).await,
        None => in_process(config, sender, &rcpts, message).await,
    };
    match replies {
        Ok(reply) => outcome(&reply),
        Err(message) => Outcome {
            status: EX_TEMPFAIL,
            message,
        },
    }
}

/// One transaction on an open session; the reply for the one recipient.
async fn send(
    client: &mut crate::lmtp::client::Client<Box<dyn crate::lmtp::client::Stream>>,
    sender: &str,
    rcpts: &[&str],
    message: &[u8],
) -> Result<Reply, String> {
    let replies = client
        .send(sender, rcpts, message)
        .await
        .map_err(|e| format!("LMTP: {e}"))?;
    replies
        .into_iter()
        .next()
        .ok_or_else(|| "LMTP: no reply for the recipient".to_string())
}

/// No daemon answers: the daemon's LMTP session, in this process, on the
/// store. A store another process holds, or none at `store.path`, is a
/// temporary failure: the MTA keeps the message.
async fn in_process(
    config: Config,
    sender: &str,
    rcpts: &[&str],
    message: &[u8],
) -> Result<Reply, String> {
    let daemon = super::open_offline(config, "no daemon answers on the LMTP listener")?;
    let shared = daemon.shared();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let stop = tokio_util::sync::CancellationToken::new();
    let session = tokio::spawn(crate::lmtp::session::serve(
        theirs,
        "pipe".into(),
        Arc::clone(&shared),
        stop.clone(),
    ));
    let mut client = crate::lmtp::client::over(Box::new(ours))
        .await
        .map_err(|e| format!("LMTP in process: {e}"))?;
    let reply = send(&mut client, sender, rcpts, message).await;
    let _ = client.quit().await;
    stop.cancel();
    let _ = session.await;
    reply
}

/// The exit status for an LMTP reply (RFC 2033, RFC 3463 codes).
fn outcome(reply: &Reply) -> Outcome {
    let status = match reply.code {
        250 => EX_OK,
        400..=499 => EX_TEMPFAIL,
        550 if reply.text.starts_with("5.1.") => EX_NOUSER,
        _ if reply.text.starts_with("5.7.") => EX_NOPERM,
        _ => EX_DATAERR,
    };
    Outcome {
        status,
        message: format!("{} {}", reply.code, reply.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_what_an_mta_understands() {
        let status = |code, text: &str| {
            outcome(&Reply {
                code,
                text: text.into(),
            })
            .status
        };
        assert_eq!(status(250, "2.0.0 <x> accepted as 7"), EX_OK);
        assert_eq!(
            status(452, "4.3.1 Insufficient system storage"),
            EX_TEMPFAIL
        );
        assert_eq!(
            status(451, "4.3.0 Cannot store the message now"),
            EX_TEMPFAIL
        );
        assert_eq!(
            status(552, "5.3.4 Refused: header section too large"),
            EX_DATAERR
        );
        assert_eq!(status(554, "5.6.0 Refused: not a message"), EX_DATAERR);
        assert_eq!(status(550, "5.1.1 <x>: no such list here"), EX_NOUSER);
        assert_eq!(status(550, "5.7.1 refused"), EX_NOPERM);
    }
}
