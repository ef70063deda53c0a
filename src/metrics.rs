//! Prometheus metrics, served as text on a loopback address when
//! `[metrics] listen` is set: messages received and refused by reason,
//! copies queued, sent, deferred and failed, the queue, pending embargoes,
//! the next release, and how long processing takes.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use chrono::{DateTime, Utc};

use crate::store::Store;

/// The `list` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabel {
    /// `security` or `distributors`.
    pub list: String,
}

/// The `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why mail was refused (`size`, `syntax`, ...).
    pub reason: String,
}

/// The `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What became of a copy (`queued`, `sent`, `deferred`, ...).
    pub outcome: String,
}

/// The `list` and `outcome` labels of the mailbox intakes (IMAP, maildir).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntakeLabel {
    /// `security` or `distributors`.
    pub list: String,
    /// `spooled`, `quarantined`, `duplicate`, `left` or `error`.
    pub outcome: String,
}

/// The daemon's metrics. Counters are cheap to bump from any task.
pub struct Metrics {
    registry: Registry,
    /// Messages accepted, per list.
    pub received: Family<ListLabel, Counter>,
    /// Messages refused at LMTP, per reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// Copies, per outcome.
    pub copies: Family<OutcomeLabel, Counter>,
    /// Messages taken from IMAP mailboxes and maildirs (and attempts
    /// ended by an error), per list and outcome.
    pub intake: Family<IntakeLabel, Counter>,
    /// Seconds from acceptance to the fan-out committed.
    pub processing: Histogram,
    queue_depth: Gauge,
    deferred: Gauge,
    pending_embargoes: Gauge,
    next_release: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("embargod");
        let metrics = Metrics {
            received: Family::default(),
            refused: Family::default(),
            copies: Family::default(),
            intake: Family::default(),
            processing: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            queue_depth: Gauge::default(),
            deferred: Gauge::default(),
            pending_embargoes: Gauge::default(),
            next_release: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "Messages accepted over LMTP, by list",
            metrics.received.clone(),
        );
        registry.register(
            "messages_refused",
            "Messages refused, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "copies",
            "Member copies by outcome: queued, sent, deferred, failed",
            metrics.copies.clone(),
        );
        registry.register(
            "mailbox_intake",
            "Messages taken from IMAP mailboxes and maildirs, by list and outcome: spooled, \
             quarantined, duplicate, left, error",
            metrics.intake.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time from accepting a message to its copies being queued",
            metrics.processing.clone(),
        );
        registry.register(
            "queue_depth",
            "Copies waiting for the transport",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "queue_deferred",
            "Queued copies that failed at least once",
            metrics.deferred.clone(),
        );
        registry.register(
            "embargoes_pending",
            "Embargoes not yet released",
            metrics.pending_embargoes.clone(),
        );
        registry.register(
            "next_release_seconds",
            "Seconds until the next embargo release (0 when none is pending)",
            metrics.next_release.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts a refusal for `reason`.
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts `n` copies with `outcome`.
    pub fn copy(&self, outcome: &str, n: u64) {
        self.copies
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc_by(n);
    }

    /// Counts a mailbox intake `outcome` for `list`.
    pub fn intake(&self, list: &str, outcome: &str) {
        self.intake
            .get_or_create(&IntakeLabel {
                list: list.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a message accepted for `list`.
    pub fn received(&self, list: &str) {
        self.received
            .get_or_create(&ListLabel { list: list.into() })
            .inc();
    }

    /// The text exposition, with the gauges read from `store` at `now`.
    pub fn render(&self, store: &Store, now: DateTime<Utc>) -> String {
        let queued = store.queued().unwrap_or_default();
        self.queue_depth.set(queued.len() as i64);
        self.deferred
            .set(queued.iter().filter(|(_, c)| c.attempts > 0).count() as i64);
        let pending: Vec<_> = crate::embargo::all(store)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.released.is_none())
            .collect();
        self.pending_embargoes.set(pending.len() as i64);
        let next = pending
            .iter()
            .map(|e| {
                e.until()
                    .signed_duration_since(now)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0
            })
            .fold(None, |min: Option<f64>, s| {
                Some(min.map_or(s, |m| m.min(s)))
            });
        self.next_release.set(next.unwrap_or(0.0));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `stop`, each answer the
/// text `render` returns then (run off the runtime: it reads the store).
pub async fn serve<R>(listener: TcpListener, render: R, stop: CancellationToken)
where
    R: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "metrics listening");
    }
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut request),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let line = String::from_utf8_lossy(&request[..n]);
            let response = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
                let body = crate::blocking(move || render()).await;
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
