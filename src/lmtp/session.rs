//! One LMTP session over a socket: drives the protocol [`Machine`], and at
//! the end of DATA answers once per accepted recipient, only after the
//! message is durably in the spool.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::machine::{sanitize, Delivery, Event, Machine, Rcpt};
use crate::clock::Timestamp;
use crate::config::ListName;
use crate::mime::inbound::{precheck, Refusal};
use crate::state::Shared;
use crate::store::{Incoming, IncomingMeta, Intake, Source};

/// Serves one connection until QUIT, EOF, idle timeout or shutdown.
pub async fn serve<S>(mut stream: S, peer: String, shared: Arc<Shared>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = shared.config();
    let idle = config.lmtp.idle_timeout;
    let mut machine = Machine::new(config);
    let mut out = machine.greeting().into_bytes();
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
            _ = shutdown.cancelled(), if machine.is_idle() => {
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
        let mut input = &buf[..n];
        let limits = &shared.config().limits;
        machine.storage_full = shared
            .store
            .spool_full(limits.spool_messages, limits.spool_bytes);
        while let Some(event) = machine.feed(&mut input, &mut out) {
            match event {
                Event::Message(delivery) => {
                    out.extend_from_slice(deliver(&shared, &peer, delivery).await.as_bytes())
                }
                Event::Quit => {
                    let _ = stream.write_all(&out).await;
                    return;
                }
                Event::Refused(reason) => {
                    info!(%peer, reason, "refused while reading DATA");
                    shared.metrics.refused(reason)
                }
            }
        }
    }
}

/// Checks, spools and flushes the message; one reply line per recipient.
async fn deliver(shared: &Arc<Shared>, peer: &str, delivery: Delivery) -> String {
    let config = shared.config();
    let Delivery {
        mail_from,
        rcpts,
        raw,
    } = delivery;
    let per_rcpt = |line: &str| line.repeat(rcpts.len());
    if let Err(refusal) = precheck(&raw, config.lmtp.max_header_size) {
        info!(%peer, %refusal, bytes = raw.len(), "refused at end of DATA");
        shared.metrics.refused(refusal.label());
        let code = match refusal {
            Refusal::HeaderTooLarge(_) => "552 5.3.4",
            _ => "554 5.6.0",
        };
        return per_rcpt(&format!("{code} Refused: {refusal}\r\n"));
    }
    let limits = &config.limits;
    if shared
        .store
        .spool_full(limits.spool_messages, limits.spool_bytes)
    {
        warn!(%peer, "spool full; asking the client to retry later");
        shared.metrics.refused("spool-full");
        return per_rcpt("452 4.3.1 Insufficient system storage; try again later\r\n");
    }
    let mut lists: Vec<ListName> = rcpts
        .iter()
        .filter_map(|(_, rcpt)| match rcpt {
            Rcpt::List(list) => Some(*list),
            Rcpt::Owner => None,
        })
        .collect();
    lists.sort();
    lists.dedup();
    let bytes = raw.len();
    let source = if lists.is_empty() {
        Source::Bounce {
            mail_from,
            rcpts: rcpts.iter().map(|(address, _)| address.clone()).collect(),
            via: Intake::Lmtp,
        }
    } else {
        Source::Mail {
            mail_from,
            lists: lists.clone(),
            via: Intake::Lmtp,
        }
    };
    let incoming = Incoming {
        meta: IncomingMeta {
            received: Timestamp::from(shared.clock.now()),
            source,
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
            for list in &lists {
                shared.metrics.received(list.as_str());
            }
            shared.wake_fanout.notify_one();
            rcpts
                .iter()
                .map(|(address, _)| {
                    format!("250 2.0.0 <{}> accepted as {id}\r\n", sanitize(address))
                })
                .collect()
        }
        Err(error) => {
            warn!(%peer, %error, "could not spool; asking the client to retry");
            shared.metrics.refused("store-unavailable");
            per_rcpt("451 4.3.0 Cannot store the message now; try again later\r\n")
        }
    }
}
