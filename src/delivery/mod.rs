//! The delivery worker: makes and sends queued copies through the
//! transport, in due order, and records the outcomes.
//!
//! A member's copy is sealed here, from its job, just before it is sent
//! ([`crate::fanout::copies::seal_copy`]): at most `delivery.concurrency`
//! copies are in flight, and fewer when the message is large (their
//! estimated size stays under [`IN_FLIGHT_BYTES`]), so memory goes with
//! the message, not with the number of members. Outcomes are recorded in
//! batches: every send that finished while the last batch committed goes
//! into the next, one transaction and one flush (group commit).
//!
//! A temporary failure puts the copy back with an exponential backoff; a
//! permanent one, or a copy still undelivered after `retry_max_age`, fails
//! for good and the PST gets a notice. A copy whose key became unusable
//! since the fan-out was decided is not sent: a "no key" record and a
//! notice. A restart resumes from the queue and makes the same copies
//! (same ids, marks and Message-IDs). The only window for a duplicate is
//! between the transport's success and the commit of its record.
//!
//! A job whose sealing was under way three times when the daemon died
//! (an out-of-memory kill, a panic) is not tried a fourth time: its
//! remaining copies fail, its message goes to the quarantine and the PST
//! is told, so one message cannot keep every list down.

mod error;
mod sealers;
mod smtp;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Timestamp;
use crate::fanout::copies::{seal_copy, Outgoing};
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mime::outbound::ListIdentity;
use crate::pgp::seal::SealError;
use crate::state::Shared;
use crate::store::{
    Attempt, IncomingMeta, Intake, JobMeta, QuarantineMeta, QueueKey, QueuedCopy, Source,
    Transaction,
};
pub use transport::{SendError, Transport};

/// Estimated bytes of sealed copies in flight at once, unless a single
/// copy is larger (it then goes alone).
pub const IN_FLIGHT_BYTES: usize = 64 << 20;

/// Longest an outcome waits for its commit, so that several share one
/// transaction and one flush (the copy is out; only its record waits).
pub const COMMIT_AFTER: Duration = Duration::from_millis(10);

/// Starts on one job's sealing after which a fourth is refused.
pub const MAX_JOB_STARTS: u32 = 3;

/// A job read back from the store, shared by the copies in flight.
struct Loaded {
    meta: JobMeta,
    outgoing: Outgoing,
    /// Estimated size of one sealed copy, bytes.
    copy_size: usize,
}

/// What became of one copy.
struct Attempted {
    key: QueueKey,
    copy: QueuedCopy,
    /// Size it was counted at in the in-flight budget.
    size: usize,
    result: Result<Sent, Unsent>,
}

/// Details of a copy the transport took.
struct Sent {
    /// The certificate it was encrypted to, when sealed here (the one in
    /// force when it was sent).
    fingerprint: Option<String>,
    subkey: Option<String>,
    plaintext_sha256: Option<String>,
    ciphertext_sha256: String,
}

enum Unsent {
    /// The member's key cannot be used now: no copy, never plaintext.
    NoKey(String),
    Send(SendError),
}

/// The worker's own state.
struct Worker {
    /// One thread per core: sealing is CPU work, sending is waiting.
    sealers: Arc<sealers::Sealers>,
    /// Jobs read back, by id.
    jobs: HashMap<u64, Arc<Loaded>>,
    /// Copies in flight per job.
    per_job: HashMap<u64, usize>,
    /// Jobs whose start this process counted.
    started: HashSet<u64>,
    /// Jobs quarantined by this process: their copies are gone.
    poisoned: HashSet<u64>,
    busy: HashSet<u64>,
    in_flight_bytes: usize,
}

/// A commit under way: its outcomes, back when it ends.
type Commit = tokio::task::JoinHandle<Result<Vec<Attempted>, Vec<Attempted>>>;

/// Runs until `shutdown`, then lets sends in progress finish.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut sending: JoinSet<Attempted> = JoinSet::new();
    let mut worker = Worker {
        sealers: Arc::new(sealers::Sealers::start(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        jobs: HashMap::new(),
        per_job: HashMap::new(),
        started: HashSet::new(),
        poisoned: HashSet::new(),
        busy: HashSet::new(),
        in_flight_bytes: 0,
    };
    // Outcomes waiting for the next commit, and the commit under way:
    // copies go on being sealed and sent while outcomes are flushed.
    let mut finished: Vec<Attempted> = Vec::new();
    let mut first_finished: Option<tokio::time::Instant> = None;
    let mut committing: Option<Commit> = None;
    remove_finished_jobs(&shared).await;
    loop {
        let config = shared.config();
        let free = config.delivery.concurrency.saturating_sub(sending.len());
        let now = shared.clock.now();
        if free > 0 {
            // A few small values read from sled's cache: in place, not
            // worth a thread hop per round.
            match shared
                .store
                .due_copies(Timestamp::from(now), free, &worker.busy)
            {
                Ok(due) => {
                    for (key, copy) in due {
                        if !start(&shared, &mut worker, &mut sending, key, copy).await {
                            break;
                        }
                    }
                }
                Err(e) => error!(error = %e, "cannot read the queue"),
            }
        }
        // A commit for every `concurrency` outcomes, or after
        // COMMIT_AFTER, or when nothing else is in flight.
        let commit_at = first_finished.map(|first| {
            if finished.len() >= config.delivery.concurrency || sending.is_empty() {
                first
            } else {
                first + COMMIT_AFTER
            }
        });
        if committing.is_none() && commit_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
            first_finished = None;
            committing = Some(tokio::spawn(commit(
                shared.clone(),
                std::mem::take(&mut finished),
            )));
        }
        let next_due = match shared.store.first_queued() {
            Ok(Some(key)) if !worker.busy.contains(&key.id) => Some(key.due.to_datetime()),
            // The first is in flight: its result wakes us.
            _ => None,
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(joined) = sending.join_next() => {
                first_finished.get_or_insert_with(tokio::time::Instant::now);
                let before = finished.len();
                finished.extend(joined);
                while let Some(joined) = sending.try_join_next() {
                    finished.extend(joined);
                }
                for attempted in &finished[before..] {
                    worker.sent(attempted);
                }
            }
            committed = async { committing.as_mut().expect("a commit").await }, if committing.is_some() => {
                committing = None;
                match committed {
                    Ok(Ok(recorded)) => closed(&shared, &mut worker, recorded).await,
                    // Not recorded: into the next commit, still taken.
                    Ok(Err(unrecorded)) => {
                        first_finished.get_or_insert_with(tokio::time::Instant::now);
                        finished.extend(unrecorded);
                    }
                    Err(e) => error!(error = %e, "a commit of delivery outcomes failed"),
                }
            }
            _ = async { tokio::time::sleep_until(commit_at.expect("a commit time")).await }, if committing.is_none() && commit_at.is_some() => {}
            _ = shared.wake_delivery.notified() => {}
            _ = sleep_until(&shared, next_due) => {}
        }
    }
    // Finish what the transport already has and record it; the caller
    // bounds this with the grace period.
    if let Some(committing) = committing {
        if let Ok(Err(unrecorded)) = committing.await {
            finished.extend(unrecorded);
        }
    }
    while let Some(joined) = sending.join_next().await {
        finished.extend(joined);
    }
    if commit(shared.clone(), finished).await.is_ok() {
        // A clean stop: the jobs under way did not stop the daemon.
        for job in worker.started {
            let _ = shared.store.clear_attempt(Attempt::Job, job);
        }
    }
}

async fn sleep_until(shared: &Shared, due: Option<DateTime<Utc>>) {
    match due {
        Some(due) => shared.clock.sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Starts sealing and sending `copy`; false when the in-flight budget is
/// spent (it waits for the next round).
async fn start(
    shared: &Arc<Shared>,
    worker: &mut Worker,
    sending: &mut JoinSet<Attempted>,
    key: QueueKey,
    copy: QueuedCopy,
) -> bool {
    let job = match copy.job {
        Some(id) => match load(shared, worker, id).await {
            Ok(Some(job)) => Some(job),
            // Quarantined with its copies.
            Ok(None) => return true,
            Err(unsent) => {
                worker.busy.insert(key.id);
                sending.spawn(async move {
                    Attempted {
                        key,
                        copy,
                        size: 0,
                        result: Err(unsent),
                    }
                });
                return true;
            }
        },
        None => None,
    };
    let size = job.as_ref().map_or(copy.bytes.len(), |job| job.copy_size);
    if worker.in_flight_bytes > 0 && worker.in_flight_bytes + size > IN_FLIGHT_BYTES {
        return false;
    }
    worker.in_flight_bytes += size;
    worker.busy.insert(key.id);
    if let Some(id) = copy.job {
        *worker.per_job.entry(id).or_default() += 1;
    }
    let (shared, sealers) = (shared.clone(), worker.sealers.clone());
    sending.spawn(async move {
        let result = attempt(&shared, &sealers, job, &copy).await;
        Attempted {
            key,
            copy,
            size,
            result,
        }
    });
    true
}

/// Seals `copy` (when it has a job) and hands it to the transport.
async fn attempt(
    shared: &Arc<Shared>,
    sealers: &sealers::Sealers,
    job: Option<Arc<Loaded>>,
    copy: &QueuedCopy,
) -> Result<Sent, Unsent> {
    let (bytes, sent) = match job {
        Some(job) => {
            let (keys, config, secret, now) = (
                shared.keys(),
                shared.config(),
                shared.store.mark_secret().clone(),
                shared.clock.now(),
            );
            let copy = copy.clone();
            let sealed = sealers
                .run(move || {
                    let list = config.list(job.meta.list).unwrap_or(&config.lists.security);
                    let identity = ListIdentity::new(&config, list);
                    let sealed = seal_copy(
                        &keys,
                        &secret,
                        &identity,
                        &job.meta,
                        &job.outgoing,
                        &copy,
                        now,
                    )?;
                    let ciphertext_sha256 = crate::digest::sha256_hex(&sealed.bytes);
                    Ok::<_, SealError>((sealed, ciphertext_sha256))
                })
                .await
                // A bug, not the member's key: tried again later.
                .map_err(|_| {
                    Unsent::Send(SendError::Temporary(
                        "sealing failed (the daemon's fault; please report it)".into(),
                    ))
                })?
                .map_err(|e| match e {
                    SealError::Key(problem) => Unsent::NoKey(problem.to_string()),
                    other => Unsent::Send(SendError::Temporary(other.to_string())),
                })?;
            let (sealed, ciphertext_sha256) = sealed;
            let sent = Sent {
                fingerprint: Some(sealed.fingerprint),
                subkey: Some(sealed.subkey),
                plaintext_sha256: Some(sealed.plaintext_sha256),
                ciphertext_sha256,
            };
            (sealed.bytes, sent)
        }
        None => (
            copy.bytes.clone(),
            Sent {
                fingerprint: None,
                subkey: None,
                plaintext_sha256: None,
                ciphertext_sha256: crate::digest::sha256_hex(&copy.bytes),
            },
        ),
    };
    let transport = shared.transport();
    let config = shared.config();
    // A member's copy goes out from its own VERP address, so its bounce
    // names it; the rest (acknowledgements, the announcement) from the
    // owner address itself.
    let from = match copy.job {
        Some(_) => crate::bounce::verp_sender(&config, shared.store.mark_secret(), copy.id),
        None => config.delivery.from.clone(),
    };
    let to = copy
        .to
        .parse()
        .map_err(|e| Unsent::Send(SendError::Permanent(format!("recipient {}: {e}", copy.to))))?;
    transport
        .send(&from, &to, &bytes)
        .await
        .map_err(Unsent::Send)?;
    Ok(sent)
}

/// Job `id`, from the worker's cache or the store. The first time this
/// process makes its copies counts as a start (made durable first); a job
/// started more than [`MAX_JOB_STARTS`] times is quarantined instead and
/// `Ok(None)` returned.
async fn load(
    shared: &Arc<Shared>,
    worker: &mut Worker,
    id: u64,
) -> Result<Option<Arc<Loaded>>, Unsent> {
    if let Some(job) = worker.jobs.get(&id) {
        return Ok(Some(job.clone()));
    }
    if worker.poisoned.contains(&id) {
        return Ok(None);
    }
    let store_error = |e: crate::store::StoreError| {
        Unsent::Send(SendError::Temporary(format!(
            "cannot read its fan-out: {e}"
        )))
    };
    if !worker.started.contains(&id) {
        let starts = shared
            .store
            .begin_attempt(Attempt::Job, id)
            .await
            .map_err(store_error)?;
        worker.started.insert(id);
        if starts > MAX_JOB_STARTS {
            worker.poisoned.insert(id);
            poison(shared, id, starts - 1).await;
            return Ok(None);
        }
    }
    let store = shared.store.clone();
    let job = crate::blocking(move || store.job(id).map(|job| job.map(Outgoing::from_job)))
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            Unsent::Send(SendError::Permanent(
                "the message it is a copy of is gone from the store".into(),
            ))
        })?;
    let (meta, outgoing) = job;
    let size = outgoing.headers.len() + outgoing.info.len() + outgoing.content.len();
    let job = Arc::new(Loaded {
        meta,
        outgoing,
        // Armor: 4/3, line ends, packet headers.
        copy_size: size * 4 / 3 + size / 32 + 8192,
    });
    worker.jobs.insert(id, job.clone());
    Ok(Some(job))
}

/// Job `id` stopped the daemon `crashes` times while its copies were
/// made: its remaining copies fail, its message goes to the quarantine,
/// the PST is told.
async fn poison(shared: &Arc<Shared>, id: u64, crashes: u32) {
    let store = shared.store.clone();
    let found = crate::blocking(move || {
        let job = store.job(id)?;
        let copies: Vec<(QueueKey, QueuedCopy)> = store
            .queued()?
            .into_iter()
            .filter(|(_, copy)| copy.job == Some(id))
            .collect();
        Ok::<_, crate::store::StoreError>((job, copies))
    })
    .await;
    let (job, copies) = match found {
        Ok(found) => found,
        Err(e) => {
            error!(job = id, error = %e, "cannot read a job that keeps stopping the daemon");
            return;
        }
    };
    let config = shared.config();
    let now = shared.clock.now();
    let reason = format!(
        "the daemon stopped {crashes} times while making the copies of this message \
         (out of memory? a bug?); not tried again"
    );
    error!(
        job = id,
        msg = job.as_ref().map(|job| job.meta.message),
        crashes,
        "fan-out quarantined: it keeps stopping the daemon"
    );
    let mut batch = Transaction::new();
    batch.finish_job(id);
    for (key, copy) in &copies {
        batch.dequeue(*key);
        batch.copy_done(id, copy.id);
        crate::ledger::append(
            &mut batch,
            record(&copy_record(copy, now), Outcome::Failed(reason.clone())),
        );
    }
    if let Some(job) = job {
        let message = job.meta.message;
        if !job.meta.notice {
            batch.spool(crate::notice::to_pst(
                &config,
                now,
                &format!("message {message} quarantined"),
                &format!(
                    "The copies of message {message} to the {} list were being made when the\n\
                     daemon stopped, {crashes} times. Its {} remaining copies were not sent; the\n\
                     message is held in the quarantine so the lists keep working.\n",
                    job.meta.list,
                    copies.len()
                ),
            ));
        }
        batch.quarantine(
            QuarantineMeta {
                time: Timestamp::from(now),
                reason,
                incoming: IncomingMeta {
                    received: job.meta.date,
                    source: Source::Mail {
                        mail_from: String::new(),
                        lists: vec![job.meta.list],
                        via: Intake::Lmtp,
                    },
                },
            },
            [job.headers, job.content].concat(),
        );
    }
    if let Err(e) = shared.commit(batch).await {
        error!(job = id, error = %e, "cannot quarantine a fan-out");
    }
}

/// A delivery record about `copy`, as of `now`, to be given its outcome.
fn copy_record(copy: &QueuedCopy, now: DateTime<Utc>) -> DeliveryRecord {
    DeliveryRecord {
        time: Timestamp::from(now),
        message: copy.message,
        case: copy.case.clone(),
        copy_id: Some(copy.id),
        list: copy.list,
        member: copy.member.clone(),
        fingerprint: Some(copy.fingerprint.clone()),
        encryption_subkey: None,
        message_id: Some(copy.message_id.clone()),
        plaintext_sha256: None,
        ciphertext_sha256: None,
        outcome: Outcome::Queued,
    }
}

fn record(base: &DeliveryRecord, outcome: Outcome) -> DeliveryRecord {
    DeliveryRecord {
        outcome,
        ..base.clone()
    }
}

/// Records the outcomes of `done` in one transaction and one flush, and
/// moves each copy on: sent, back into the queue for later, or failed
/// (with a notice). Returns `done` for the worker's books; `Err(done)`
/// when nothing could be recorded (the store refused the transaction):
/// the copies stay taken, so none goes out again before its record.
async fn commit(
    shared: Arc<Shared>,
    done: Vec<Attempted>,
) -> Result<Vec<Attempted>, Vec<Attempted>> {
    if done.is_empty() {
        return Ok(done);
    }
    let config = shared.config();
    let now = shared.clock.now();
    let mut batch = Transaction::new();
    for attempted in &done {
        outcome(&shared, &config, now, &mut batch, attempted);
    }
    let notice = batch.spools();
    // Flushed before the copies count as done: an outcome lost to a crash
    // means the copy goes out again on restart.
    let store = shared.store.clone();
    if let Err(e) = crate::blocking(move || store.apply(batch)).await {
        error!(error = %e, "cannot record delivery outcomes; trying again in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Err(done);
    }
    if let Err(e) = shared.store.flush().await {
        // Applied: the next flush makes it durable (a crash before that
        // sends these copies again).
        error!(error = %e, "cannot flush delivery outcomes");
    }
    if notice {
        shared.wake_fanout.notify_one();
    }
    Ok(done)
}

impl Worker {
    /// `attempted` is back from the transport: its memory is free.
    fn sent(&mut self, attempted: &Attempted) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(attempted.size);
        if let Some(job) = attempted.copy.job {
            if let Some(n) = self.per_job.get_mut(&job) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// After `done` was recorded: its copies may be taken up again (the
/// deferred ones), and a job with nothing in flight or due is put down,
/// and removed once every copy is recorded.
async fn closed(shared: &Arc<Shared>, worker: &mut Worker, done: Vec<Attempted>) {
    let mut jobs = HashSet::new();
    for attempted in &done {
        worker.busy.remove(&attempted.key.id);
        jobs.extend(attempted.copy.job);
    }
    let now = Timestamp::from(shared.clock.now());
    for job in jobs {
        if worker.per_job.get(&job).is_some_and(|n| *n > 0) {
            continue;
        }
        let store = shared.store.clone();
        let due = crate::blocking(move || store.job_due(job, now)).await;
        if due.unwrap_or(true) {
            continue;
        }
        // Nothing of it in flight or due: this start is over (its
        // deferred copies, if any, read it again when they are due).
        worker.per_job.remove(&job);
        worker.jobs.remove(&job);
        worker.started.remove(&job);
        let store = shared.store.clone();
        let finished = crate::blocking(move || {
            store.clear_attempt(Attempt::Job, job)?;
            if store.job_pending(job)? {
                return Ok(false);
            }
            let mut tx = Transaction::new();
            tx.finish_job(job);
            store.apply(tx)?;
            Ok::<_, crate::store::StoreError>(true)
        })
        .await;
        match finished {
            Ok(true) => info!(job, "fan-out finished"),
            Ok(false) => {}
            Err(e) => warn!(job, error = %e, "cannot close a fan-out; retried at the next start"),
        }
    }
}

/// Adds what became of one copy to `batch`.
fn outcome(
    shared: &Shared,
    config: &crate::config::Config,
    now: DateTime<Utc>,
    batch: &mut Transaction,
    attempted: &Attempted,
) {
    let Attempted {
        key, copy, result, ..
    } = attempted;
    batch.dequeue(*key);
    let base = copy_record(copy, now);
    let age = Timestamp::from(now).since(copy.queued);
    let failure = match result {
        Ok(sent) => {
            info!(msg = copy.message, member = %copy.member, copy = %crate::mark::copy_id_hex(copy.id), case = copy.case.as_deref().unwrap_or("-"), "sent");
            shared.metrics.copy("sent", 1);
            crate::ledger::append(
                batch,
                DeliveryRecord {
                    fingerprint: sent.fingerprint.clone().or(base.fingerprint.clone()),
                    encryption_subkey: sent.subkey.clone(),
                    plaintext_sha256: sent.plaintext_sha256.clone(),
                    ciphertext_sha256: Some(sent.ciphertext_sha256.clone()),
                    ..record(&base, Outcome::Sent)
                },
            );
            None
        }
        Err(Unsent::Send(SendError::Temporary(reason))) if age < config.delivery.retry_max_age => {
            let delay = backoff(
                config.delivery.retry_initial,
                config.delivery.retry_max_delay,
                copy.attempts,
            );
            let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
            warn!(msg = copy.message, member = %copy.member, copy = %crate::mark::copy_id_hex(copy.id), case = copy.case.as_deref().unwrap_or("-"), %reason, retry_in = ?delay, "deferred");
            crate::ledger::append(batch, record(&base, Outcome::Deferred(reason.clone())));
            shared.metrics.copy("deferred", 1);
            batch.queue(
                QueueKey {
                    due: Timestamp::from(due),
                    id: copy.id,
                },
                QueuedCopy {
                    attempts: copy.attempts + 1,
                    last_error: Some(reason.clone()),
                    ..copy.clone()
                },
            );
            return;
        }
        Err(Unsent::Send(SendError::Temporary(reason))) => Some(format!(
            "still failing after {}: {reason}",
            humantime::format_duration(config.delivery.retry_max_age)
        )),
        Err(Unsent::Send(SendError::Rejected(reason))) if copy.job.is_some() => {
            // The relay refused the member's address for good: a bounce
            // like any other, counted once; the PST hears when the
            // member's standing changes, not per copy. (A refusal of the
            // message itself — too large, its content — is no bounce.)
            error!(msg = copy.message, member = %copy.member, copy = %crate::mark::copy_id_hex(copy.id), case = copy.case.as_deref().unwrap_or("-"), %reason, "delivery failed");
            crate::ledger::append(batch, record(&base, Outcome::Failed(reason.clone())));
            shared.metrics.copy("failed", 1);
            let keys = shared.keys();
            let ctx = crate::context::Context {
                config,
                keys: &keys,
                store: &shared.store,
                now,
            };
            crate::bounce::standing::register(
                &ctx,
                batch,
                &crate::bounce::Bounced {
                    copy: crate::mark::index::CopyInfo {
                        copy_id: copy.id,
                        message: copy.message,
                        member: copy.member.clone(),
                        email: copy.to.clone(),
                        list: copy.list,
                        case: copy.case.clone(),
                    },
                    queued: copy.queued,
                    diagnostic: crate::bounce::dsn::one_line(reason),
                },
            );
            if let Some(job) = copy.job {
                batch.copy_done(job, copy.id);
            }
            return;
        }
        Err(Unsent::Send(SendError::Permanent(reason) | SendError::Rejected(reason))) => {
            Some(reason.clone())
        }
        Err(Unsent::NoKey(reason)) => {
            warn!(msg = copy.message, member = %copy.member, copy = %crate::mark::copy_id_hex(copy.id), case = copy.case.as_deref().unwrap_or("-"), %reason, "no copy: key unusable");
            crate::ledger::append(
                batch,
                DeliveryRecord {
                    fingerprint: None,
                    ..record(&base, Outcome::NoKey(reason.clone()))
                },
            );
            shared.metrics.copy("failed", 1);
            if !copy.notice {
                batch.spool(crate::notice::to_pst(
                    config,
                    now,
                    &format!("{} got no copy", copy.member),
                    &format!(
                        "The copy of message {} for {} was not made, because their key\n\
                         cannot be used now: {reason}\n\nNothing was sent to them in plaintext. \
                         Fix the key file (see `embargod check`) and reload.\n",
                        copy.message, copy.member
                    ),
                ));
            }
            None
        }
    };
    if let Some(reason) = failure {
        error!(msg = copy.message, member = %copy.member, copy = %crate::mark::copy_id_hex(copy.id), case = copy.case.as_deref().unwrap_or("-"), %reason, "delivery failed");
        crate::ledger::append(batch, record(&base, Outcome::Failed(reason.clone())));
        shared.metrics.copy("failed", 1);
        if !copy.notice {
            batch.spool(crate::notice::to_pst(
                config,
                now,
                &format!("delivery to {} failed", copy.member),
                &format!(
                    "The copy of message {} for {} <{}> could not be delivered:\n\n  {reason}\n\n\
                     It is not retried. Check the address and the relay's logs.\n",
                    copy.message, copy.member, copy.to
                ),
            ));
        }
    }
    if let Some(job) = copy.job {
        batch.copy_done(job, copy.id);
    }
}

/// Removes jobs a crash left with every copy recorded.
async fn remove_finished_jobs(shared: &Arc<Shared>) {
    let store = shared.store.clone();
    let result = crate::blocking(move || {
        let done = store.finished_jobs()?;
        if !done.is_empty() {
            let mut tx = Transaction::new();
            for job in done {
                tx.finish_job(job);
            }
            store.apply(tx)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await;
    if let Err(e) = result {
        warn!(error = %e, "cannot remove finished fan-outs");
    }
}

/// `initial · 2^attempts`, at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    initial
        .checked_mul(1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(60), s(3600), 0), s(60));
        assert_eq!(backoff(s(60), s(3600), 1), s(120));
        assert_eq!(backoff(s(60), s(3600), 5), s(1920));
        assert_eq!(backoff(s(60), s(3600), 6), s(3600));
        assert_eq!(backoff(s(60), s(3600), 400), s(3600));
    }
}
