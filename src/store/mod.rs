//! The sled store: everything the daemon has accepted and not yet finished.
//!
//! Trees:
//! - `spool`: mail accepted over LMTP and notices the daemon wrote, keyed
//!   by id, sealed with the store key. An entry stays until its fan-out
//!   commits, so a crash at any point re-runs the fan-out instead of
//!   losing the message.
//! - `jobs`: a message's fan-out to one list, decided. Its content (the
//!   entity every member's copy is made of) is a file in `jobs/`, sealed
//!   with the store key and synced before the transaction that names it,
//!   so a large report is written once and never held in sled's cache.
//!   It replaces the spool entry in one transaction and stays until every
//!   copy is recorded; `job_copies` (job ++ copy id) says which copies
//!   are still to go.
//! - `queue`: copies waiting for the transport, keyed by big-endian
//!   `(due, id)` so the next due copy is the first key. A member's copy
//!   names its job and is sealed only when it is sent, never stored as
//!   ciphertext; a single message (to a reporter, an announcement) is
//!   stored whole.
//! - `attempts`: how many times the daemon started on a spool entry or a
//!   job without finishing it (a crash, an out-of-memory kill), so one
//!   message can never keep it in a crash loop.
//! - `records`: the ledger, an append-only hash chain of who got what
//!   (see [`crate::ledger`]), keyed by sequence number; `ledger_meta`
//!   holds its head.
//! - `quarantine`: mail that could not be processed or may not be
//!   forwarded (held for moderation), sealed, with the reason.
//! - `embargoes`: each case's embargo, sealed (it holds the reason of an
//!   early release); `advisories`: the post each embargo will publish,
//!   sealed; `schedule`: reminder and release events keyed by big-endian
//!   due time.
//! - `cases`: cases, references, counters, used signatures, requests —
//!   every value sealed (case records hold reporters' addresses and the
//!   PST's keyword values).
//!
//! Every value that comes from a post or may quote one is sealed with the
//! store key, bound to its tree and key: the queue too, where a copy to a
//! reporter without a key is signed plaintext. Every state change is one
//! [`Batch`] applied in a single transaction.

mod io;
mod seal;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::config::ListName;
use crate::embargo::{Advisory, Embargo, Event};
pub use crate::ledger::{DeliveryRecord, Outcome};
use crate::ledger::{Entry, Head};
use crate::strikes::MemberState;
pub use seal::{StoreKey, KEY_LEN};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store key {file}: {reason}")]
    Key { file: String, reason: String },
    #[error("store holds a damaged value: {0}")]
    Corrupt(String),
    #[error("store {0} is in use by another process (a running daemon?)")]
    Busy(String),
}

/// Mail the daemon has accepted or written, waiting in the spool.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub meta: IncomingMeta,
    /// The RFC 5322 message, exactly as received.
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingMeta {
    /// Milliseconds since the epoch.
    pub received: u64,
    pub source: Source,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Source {
    /// Received over LMTP for these lists.
    Lmtp {
        mail_from: String,
        lists: Vec<ListName>,
    },
    /// Written by the daemon (a member without a key, a quarantined
    /// message, a failed delivery, an embargo reminder). Notices never
    /// cause further notices.
    Notice { to: Audience },
}

/// Who a notice is for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Audience {
    /// The security list: the PST.
    Pst,
    /// The members of these lists, each once.
    Lists(Vec<ListName>),
    /// One member (a refused poster).
    Member(String),
}

/// One member's copy, encrypted, waiting for the transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedCopy {
    pub id: u64,
    /// Spool id of the message it is a copy of.
    pub message: u64,
    /// The case of the message, when known.
    #[serde(default)]
    pub case: Option<String>,
    pub list: ListName,
    pub member: String,
    pub to: String,
    pub fingerprint: String,
    /// Message-ID header of this copy.
    pub message_id: String,
    /// A copy of a notice: its failure is logged, not noticed again.
    pub notice: bool,
    /// When it was first queued, in ms; the retry age counts from here.
    pub queued: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The job it is made from when it is sent (a member's copy); `None`
    /// when [`QueuedCopy::bytes`] is the message.
    #[serde(default)]
    pub job: Option<u64>,
    /// The whole RFC 5322 message, for a copy without a job.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A message's fan-out to one list, decided: what each member's copy is
/// made of when it is sent (see [`crate::fanout::copies`]).
#[derive(Debug, Clone)]
pub struct Job {
    pub meta: JobMeta,
    /// Header fields carried into each copy's protected headers.
    pub headers: Vec<u8>,
    /// The content entity, before each copy's marks.
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMeta {
    /// Spool id of the message.
    pub message: u64,
    pub list: ListName,
    /// The info part at the top of each copy.
    pub info: String,
    pub case: Option<String>,
    pub marks: crate::config::Marks,
    pub mark_patches: bool,
    /// A notice's copies: failures are logged, not noticed again.
    pub notice: bool,
    /// The copies' Date, in ms: the same in every attempt.
    pub date: u64,
    /// Length of [`Job::headers`] in the stored value.
    #[serde(default)]
    pub headers_len: usize,
}

/// A queue slot: when the copy is due, in ms, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub due: u64,
    pub id: u64,
}

impl QueueKey {
    fn to_bytes(self) -> [u8; 16] {
        pair_key(self.due, self.id)
    }

    fn from_bytes(bytes: &[u8]) -> Result<QueueKey, StoreError> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("queue key of wrong length".into()))?;
        Ok(QueueKey {
            due: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            id: u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
        })
    }
}

/// One recipient's copy, as the tracer needs it: who got it, of what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CopyInfo {
    pub copy_id: u64,
    pub message: u64,
    pub member: String,
    pub email: String,
    pub list: ListName,
    pub case: Option<String>,
}

/// Quarantined mail: why, and the sealed original.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineMeta {
    pub time: u64,
    pub reason: String,
    pub incoming: IncomingMeta,
}

/// A set of changes applied atomically.
#[derive(Debug, Default)]
pub struct Batch {
    pub remove_spool: Vec<u64>,
    pub add_spool: Vec<Incoming>,
    pub remove_queue: Vec<QueueKey>,
    pub add_queue: Vec<(QueueKey, QueuedCopy)>,
    pub records: Vec<DeliveryRecord>,
    pub quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    pub embargoes: Vec<Embargo>,
    pub advisories: Vec<(String, Advisory)>,
    pub schedule_add: Vec<Event>,
    pub schedule_remove: Vec<Event>,
    /// Copies made, for tracing.
    pub copy_index: Vec<CopyInfo>,
    /// Keyed shingles of a message's marked prose, for tracing.
    pub shingles: Vec<(u64, Vec<u64>)>,
    pub member_states: Vec<(String, MemberState)>,
    /// Case records and their indexes, by key (see [`crate::case`]).
    pub cases: Vec<(String, Vec<u8>)>,
    /// Keys of the cases tree to remove.
    pub cases_remove: Vec<String>,
    /// Fan-outs decided, by job id (from [`Store::next_id`]).
    pub add_jobs: Vec<(u64, Job)>,
    /// Jobs whose every copy is recorded.
    pub remove_jobs: Vec<u64>,
    /// Copies of a job recorded for good: `(job, copy id)`.
    pub job_copies_done: Vec<(u64, u64)>,
}

impl Batch {
    /// Adds everything in `other` to this batch.
    pub fn merge(&mut self, other: Batch) {
        self.remove_spool.extend(other.remove_spool);
        self.add_spool.extend(other.add_spool);
        self.remove_queue.extend(other.remove_queue);
        self.add_queue.extend(other.add_queue);
        self.records.extend(other.records);
        self.quarantine.extend(other.quarantine);
        self.embargoes.extend(other.embargoes);
        self.advisories.extend(other.advisories);
        self.schedule_add.extend(other.schedule_add);
        self.schedule_remove.extend(other.schedule_remove);
        self.copy_index.extend(other.copy_index);
        self.shingles.extend(other.shingles);
        self.member_states.extend(other.member_states);
        self.cases.extend(other.cases);
        self.cases_remove.extend(other.cases_remove);
        self.add_jobs.extend(other.add_jobs);
        self.remove_jobs.extend(other.remove_jobs);
        self.job_copies_done.extend(other.job_copies_done);
    }
}

/// The open store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    spool: sled::Tree,
    queue: sled::Tree,
    records: sled::Tree,
    ledger_meta: sled::Tree,
    quarantine: sled::Tree,
    embargoes: sled::Tree,
    advisories: sled::Tree,
    schedule: sled::Tree,
    /// copy id → [`CopyInfo`]
    copies: sled::Tree,
    /// message ++ copy id
    message_copies: sled::Tree,
    /// shingle ++ message
    shingles: sled::Tree,
    /// member id → [`MemberState`]
    members: sled::Tree,
    /// Cases, their references, counters, seen signatures, requests.
    cases: sled::Tree,
    jobs: sled::Tree,
    /// job ++ copy id: the copies of a job still to be recorded.
    job_copies: sled::Tree,
    /// b"s" or b"j" ++ id → attempts (u32 BE).
    attempts: sled::Tree,
    key: StoreKey,
    /// The sealed contents of jobs, one file each.
    jobs_dir: std::path::PathBuf,
    /// Spooled messages and their sealed bytes, kept up to date so the
    /// LMTP sessions can check the limits cheaply.
    spooled: Arc<SpoolGauge>,
    io: io::IoLock,
    flusher: io::GroupFlush,
}

#[derive(Debug, Default)]
struct SpoolGauge {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store at `path`, sealing with `key`. sled
    /// recovers from its log on open, so a store left by a killed process
    /// opens with every flushed write.
    pub fn open(path: &Path, key: StoreKey) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Sled(e.into()))?;
        // The spool holds only sealed values, but its metadata is still
        // nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        crate::fsutil::check_private(path).map_err(|reason| StoreError::Key {
            file: path.display().to_string(),
            reason: format!("the store must be the service user's alone: {reason}"),
        })?;
        let db = open_db(path)?;
        let jobs_dir = path.join("jobs");
        std::fs::create_dir_all(&jobs_dir).map_err(|e| StoreError::Sled(e.into()))?;
        let io_lock = io::IoLock::default();
        let store = Store {
            spool: db.open_tree("spool")?,
            queue: db.open_tree("queue")?,
            records: db.open_tree("records")?,
            ledger_meta: db.open_tree("ledger_meta")?,
            quarantine: db.open_tree("quarantine")?,
            embargoes: db.open_tree("embargoes")?,
            advisories: db.open_tree("advisories")?,
            schedule: db.open_tree("schedule")?,
            copies: db.open_tree("copies")?,
            message_copies: db.open_tree("message_copies")?,
            shingles: db.open_tree("shingles")?,
            members: db.open_tree("members")?,
            cases: db.open_tree("cases")?,
            jobs: db.open_tree("jobs")?,
            job_copies: db.open_tree("job_copies")?,
            attempts: db.open_tree("attempts")?,
            flusher: io::GroupFlush::start(db.clone(), io_lock.clone()),
            io: io_lock,
            db,
            key,
            jobs_dir,
            spooled: Arc::default(),
        };
        // sled switches every later operation to its transaction lock the
        // first time a transaction runs, spinning until no plain operation
        // is in flight; under a flood of spool writes and flushes that
        // wait may never end. Make the switch now, while nothing else runs.
        store
            .spool
            .transaction(|_| Ok::<(), ConflictableTransactionError<()>>(()))
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Corrupt("store".into()),
            })?;
        for value in store.spool.iter().values() {
            store.spooled.messages.fetch_add(1, Ordering::Relaxed);
            store
                .spooled
                .bytes
                .fetch_add(value?.len() as u64, Ordering::Relaxed);
        }
        store.check_key()?;
        store.remove_orphan_job_files()?;
        store.seal_legacy_values()?;
        Ok(store)
    }

    /// Stores written before the queue, embargoes and cases were sealed
    /// held those values in plaintext: seal them once, in one transaction,
    /// and mark the store so it is never done twice.
    fn seal_legacy_values(&self) -> Result<(), StoreError> {
        const FORMAT: &[u8] = b"format";
        const SEALED: &[u8] = b"2";
        if self.db.get(FORMAT)?.as_deref() == Some(SEALED) {
            return Ok(());
        }
        let mut resealed: Vec<(usize, sled::IVec, Vec<u8>)> = Vec::new();
        for (index, (tree, prefix)) in [
            (&self.queue, &b"queue/"[..]),
            (&self.embargoes, b"embargo/"),
            (&self.cases, b"cases/"),
        ]
        .into_iter()
        .enumerate()
        {
            for item in tree.iter() {
                let (key, plain) = item?;
                // Queue values are bound to the copy id, the key's tail.
                let bound = if index == 0 { &key[8..] } else { &key[..] };
                resealed.push((
                    index,
                    key.clone(),
                    self.key.seal(&slot(prefix, bound), &plain),
                ));
            }
        }
        let _alone = self.io.transaction();
        let trees = [&self.queue, &self.embargoes, &self.cases, &*self.db];
        trees
            .as_slice()
            .transaction(|trees: &Vec<TransactionalTree>| {
                for (index, key, sealed) in &resealed {
                    trees[*index].insert(key, sealed.as_slice())?;
                }
                trees[3].insert(FORMAT, SEALED)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Corrupt("format".into()),
            })?;
        self.db.flush()?;
        Ok(())
    }

    /// A store sealed with another key would open but never read: say so
    /// at start instead.
    fn check_key(&self) -> Result<(), StoreError> {
        const SLOT: &[u8] = b"key-check";
        match self.db.get(SLOT)? {
            Some(sealed) => self
                .key
                .open(SLOT, &sealed)
                .map(|_| ())
                .map_err(|_| StoreError::Key {
                    file: "(store key)".into(),
                    reason: "this store was sealed with a different store key".into(),
                }),
            None => {
                self.db.insert(SLOT, self.key.seal(SLOT, b"embargod"))?;
                Ok(())
            }
        }
    }

    /// A fresh id, unique for the life of the store.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Puts accepted mail into the spool. Not durable until [`Store::flush`].
    pub fn spool(&self, incoming: &Incoming) -> Result<u64, StoreError> {
        let _writes = self.io.write();
        let id = self.next_id()?;
        let key = id.to_be_bytes();
        let sealed = self.seal_incoming(&key, incoming);
        let size = sealed.len() as u64;
        self.spool.insert(key, sealed)?;
        self.spooled.messages.fetch_add(1, Ordering::Relaxed);
        self.spooled.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(id)
    }

    /// Makes every earlier write durable.
    /// Group commit: concurrent callers share one fsync.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher
            .flush()
            .await
            .map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e))))
    }

    pub fn flush_sync(&self) -> Result<(), StoreError> {
        let _writes = self.io.write();
        self.db.flush()?;
        Ok(())
    }

    fn seal_incoming(&self, key: &[u8; 8], incoming: &Incoming) -> Vec<u8> {
        let mut framed = frame(&incoming.meta, &incoming.raw);
        self.key.seal_in_place(&slot(b"spool/", key), &mut framed);
        framed
    }

    /// The oldest spooled message at or after `from`: its id, and the
    /// message unless it cannot be opened (then the id lets the caller
    /// step over it).
    #[allow(clippy::type_complexity)]
    pub fn next_spooled(
        &self,
        from: u64,
    ) -> Result<Option<(u64, Result<Incoming, StoreError>)>, StoreError> {
        let Some((key, sealed)) = self.spool.range(from.to_be_bytes()..).next().transpose()? else {
            return Ok(None);
        };
        let id = be_u64(&key)?;
        let incoming = self
            .key
            .open(&slot(b"spool/", &key), &sealed)
            .and_then(unframe)
            .map(|(meta, raw)| Incoming { meta, raw });
        Ok(Some((id, incoming)))
    }

    /// Messages in the spool.
    pub fn spool_len(&self) -> usize {
        self.spooled.messages.load(Ordering::Relaxed) as usize
    }

    /// Whether the spool holds `messages` or `bytes` or more.
    pub fn spool_full(&self, messages: u64, bytes: u64) -> bool {
        self.spooled.messages.load(Ordering::Relaxed) >= messages
            || self.spooled.bytes.load(Ordering::Relaxed) >= bytes
    }

    /// The first queued copy, due or not.
    pub fn first_queued(&self) -> Result<Option<QueueKey>, StoreError> {
        self.queue
            .first()?
            .map(|(key, _)| QueueKey::from_bytes(&key))
            .transpose()
    }

    /// Copies due at `now` (ms), in due order, skipping `busy` ids.
    pub fn due_copies(
        &self,
        now: u64,
        limit: usize,
        busy: &std::collections::HashSet<u64>,
    ) -> Result<Vec<(QueueKey, QueuedCopy)>, StoreError> {
        let mut out = Vec::new();
        for item in self.due_range(now) {
            let (key, value) = item?;
            let key = QueueKey::from_bytes(&key)?;
            if busy.contains(&key.id) {
                continue;
            }
            let (meta, bytes): (QueuedCopy, Vec<u8>) = unframe(self.open_queued(key.id, &value)?)?;
            out.push((key, QueuedCopy { bytes, ..meta }));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every queued copy's metadata (not its bytes).
    pub fn queued(&self) -> Result<Vec<(QueueKey, QueuedCopy)>, StoreError> {
        self.queue
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let key = QueueKey::from_bytes(&key)?;
                let (meta, _): (QueuedCopy, Vec<u8>) = unframe(self.open_queued(key.id, &value)?)?;
                Ok((key, meta))
            })
            .collect()
    }

    /// Makes queued copy `id` due at `now` (an admin's "retry now").
    /// False when no such copy is queued.
    pub fn retry_now(&self, id: u64, now: u64) -> Result<bool, StoreError> {
        for item in self.queue.iter() {
            let (key, value) = item?;
            if QueueKey::from_bytes(&key)?.id == id {
                let new = QueueKey { due: now, id }.to_bytes();
                let _alone = self.io.transaction();
                self.queue
                    .transaction(|queue| {
                        queue.remove(&*key)?;
                        queue.insert(&new, &*value)?;
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| match e {
                        TransactionError::Storage(e) => StoreError::Sled(e),
                        TransactionError::Abort(()) => StoreError::Corrupt("queue".into()),
                    })?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Job `id`, opened; `None` once it is done.
    pub fn job(&self, id: u64) -> Result<Option<Job>, StoreError> {
        let key = id.to_be_bytes();
        if !self.jobs.contains_key(key)? {
            return Ok(None);
        }
        let sealed = std::fs::read(self.job_file(id))
            .map_err(|e| StoreError::Corrupt(format!("job {id}: {e}")))?;
        let framed = self.key.open_in_place(&slot(b"job/", &key), sealed)?;
        let (meta, mut content): (JobMeta, Vec<u8>) = unframe(framed)?;
        if meta.headers_len > content.len() {
            return Err(StoreError::Corrupt(format!("job {id}: headers cut short")));
        }
        let headers = content.drain(..meta.headers_len).collect();
        Ok(Some(Job {
            meta,
            headers,
            content,
        }))
    }

    fn job_file(&self, id: u64) -> std::path::PathBuf {
        self.jobs_dir.join(format!("{id:016x}"))
    }

    /// Writes job `id`'s content to its file, sealed, and syncs it: before
    /// the transaction that names it.
    fn write_job(&self, id: u64, job: Job) -> Result<(), StoreError> {
        use std::io::Write;
        let io = |e: std::io::Error| StoreError::Sled(e.into());
        let meta = JobMeta {
            headers_len: job.headers.len(),
            ..job.meta
        };
        let json = serde_json::to_vec(&meta).expect("metadata serializes");
        // The head goes in front of the content in place (no second copy).
        let mut framed = job.content;
        let head: Vec<u8> = (json.len() as u32)
            .to_be_bytes()
            .into_iter()
            .chain(json)
            .chain(job.headers)
            .collect();
        framed.splice(0..0, head);
        self.key
            .seal_in_place(&slot(b"job/", &id.to_be_bytes()), &mut framed);
        let file = self.job_file(id);
        let partial = file.with_extension("partial");
        let mut out = std::fs::File::create(&partial).map_err(io)?;
        out.write_all(&framed).map_err(io)?;
        out.sync_all().map_err(io)?;
        std::fs::rename(&partial, &file).map_err(io)?;
        std::fs::File::open(&self.jobs_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io)
    }

    /// Job files no job names: left by a crash before their transaction.
    fn remove_orphan_job_files(&self) -> Result<(), StoreError> {
        let entries = std::fs::read_dir(&self.jobs_dir).map_err(|e| StoreError::Sled(e.into()))?;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let named = name
                .to_str()
                .and_then(|name| u64::from_str_radix(name, 16).ok())
                .map(|id| self.jobs.contains_key(id.to_be_bytes()))
                .transpose()?
                .unwrap_or(false);
            if !named {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Whether job `id` still has copies to record.
    pub fn job_pending(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self
            .job_copies
            .scan_prefix(id.to_be_bytes())
            .next()
            .transpose()?
            .is_some())
    }

    /// The queue's entries due at `now` (ms), in due order.
    fn due_range(&self, now: u64) -> sled::Iter {
        self.queue.range(
            ..QueueKey {
                due: now + 1,
                id: 0,
            }
            .to_bytes(),
        )
    }

    /// Whether a copy of job `id` is due at `now` (ms).
    pub fn job_due(&self, id: u64, now: u64) -> Result<bool, StoreError> {
        for item in self.due_range(now) {
            let (key, value) = item?;
            let key = QueueKey::from_bytes(&key)?;
            let (meta, _): (QueuedCopy, Vec<u8>) = unframe(self.open_queued(key.id, &value)?)?;
            if meta.job == Some(id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Jobs whose every copy is recorded (left by a crash between the
    /// last record and the job's removal).
    pub fn finished_jobs(&self) -> Result<Vec<u64>, StoreError> {
        let mut done = Vec::new();
        for key in self.jobs.iter().keys() {
            let id = be_u64(&key?)?;
            if !self.job_pending(id)? {
                done.push(id);
            }
        }
        Ok(done)
    }

    /// Forgets the starts counted on `id`: the work ended normally.
    pub fn clear_attempt(&self, kind: Attempt, id: u64) -> Result<(), StoreError> {
        let _writes = self.io.write();
        self.attempts.remove(attempt_key(kind, id))?;
        Ok(())
    }

    /// Counts one more start on spool entry or job `id` and makes it
    /// durable before the work begins; returns the count, this start
    /// included. The count goes with the entry.
    pub async fn begin_attempt(&self, kind: Attempt, id: u64) -> Result<u32, StoreError> {
        let key = attempt_key(kind, id);
        let count = {
            let _writes = self.io.write();
            let before = self
                .attempts
                .get(key)?
                .and_then(|v| <[u8; 4]>::try_from(&v[..]).ok())
                .map_or(0, u32::from_be_bytes);
            let count = before.saturating_add(1);
            self.attempts.insert(key, &count.to_be_bytes())?;
            count
        };
        self.flush().await?;
        Ok(count)
    }

    /// Every delivery record, oldest first.
    pub fn records(&self) -> impl Iterator<Item = Result<DeliveryRecord, StoreError>> + '_ {
        self.ledger_entries().map(|(seq, entry)| {
            entry
                .map(|e| e.record)
                .map_err(|e| StoreError::Corrupt(format!("ledger entry {seq}: {e}")))
        })
    }

    /// The ledger's entries in key order, each with the sequence number
    /// its key says, for [`crate::ledger::verify`].
    pub fn ledger_entries(&self) -> impl Iterator<Item = (u64, Result<Entry, String>)> + '_ {
        self.records.iter().map(|item| match item {
            Ok((key, value)) => {
                let seq = be_u64(&key).unwrap_or(u64::MAX);
                (
                    seq,
                    serde_json::from_slice(&value).map_err(|e| e.to_string()),
                )
            }
            Err(e) => (u64::MAX, Err(e.to_string())),
        })
    }

    /// The secret the copies' marks derive from.
    pub fn mark_secret(&self) -> &crate::mark::MarkSecret {
        self.key.mark_secret()
    }

    /// The copy with this id.
    pub fn copy(&self, copy_id: u64) -> Result<Option<CopyInfo>, StoreError> {
        self.copies
            .get(copy_id.to_be_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("copy: {e}")))
            })
            .transpose()
    }

    /// Every copy of `message`.
    pub fn copies_of(&self, message: u64) -> Result<Vec<CopyInfo>, StoreError> {
        self.message_copies
            .scan_prefix(message.to_be_bytes())
            .keys()
            .filter_map(|key| match key {
                Ok(key) => be_u64(&key[8..]).ok().map(|id| self.copy(id)),
                Err(e) => Some(Err(e.into())),
            })
            .filter_map(Result::transpose)
            .collect()
    }

    /// The messages whose marked prose holds this shingle, at most `limit`
    /// of them (more than that: `limit + 1`, so the caller can tell).
    pub fn messages_with_shingle(
        &self,
        shingle: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.shingles
            .scan_prefix(shingle.to_be_bytes())
            .keys()
            .take(limit + 1)
            .map(|key| be_u64(&key?[8..]))
            .collect()
    }

    /// What the store knows of a member (strikes, suspension).
    pub fn member_state(&self, member: &str) -> Result<MemberState, StoreError> {
        self.members
            .get(member.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("member {member}: {e}")))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Every member with strikes or a suspension.
    pub fn member_states(&self) -> Result<Vec<(String, MemberState)>, StoreError> {
        self.members
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let state = serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(format!("member: {e}")))?;
                Ok((String::from_utf8_lossy(&key).into_owned(), state))
            })
            .collect()
    }

    /// A value of the cases tree.
    pub fn case_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.cases
            .get(key.as_bytes())?
            .map(|sealed| self.key.open(&slot(b"cases/", key.as_bytes()), &sealed))
            .transpose()
    }

    /// Every value of the cases tree under `prefix`, in key order.
    pub fn case_values(&self, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .case_entries(prefix)?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    /// Every key and value of the cases tree under `prefix`, in key order.
    pub fn case_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.cases
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (key, sealed) = item?;
                let value = self.key.open(&slot(b"cases/", &key), &sealed)?;
                Ok((String::from_utf8_lossy(&key).into_owned(), value))
            })
            .collect()
    }

    /// A queued copy's framed value, opened.
    fn open_queued(&self, id: u64, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.open(&slot(b"queue/", &id.to_be_bytes()), sealed)
    }

    /// The ledger's head.
    pub fn ledger_head(&self) -> Result<Head, StoreError> {
        read_head(self.ledger_meta.get(HEAD)?.as_deref())
    }

    /// Quarantined mail: reason and metadata, oldest first.
    pub fn quarantined(&self) -> Result<Vec<(u64, QuarantineMeta)>, StoreError> {
        self.quarantine
            .iter()
            .map(|item| {
                let (key, sealed) = item?;
                let framed = self.key.open(&slot(b"quarantine/", &key), &sealed)?;
                let (meta, _raw): (QuarantineMeta, Vec<u8>) = unframe(framed)?;
                Ok((be_u64(&key)?, meta))
            })
            .collect()
    }

    /// The embargo of `case`, if it has one.
    pub fn embargo(&self, case: &str) -> Result<Option<Embargo>, StoreError> {
        self.embargoes
            .get(case.as_bytes())?
            .map(|sealed| self.open_embargo(case.as_bytes(), &sealed))
            .transpose()
    }

    /// Every embargo, by case ID.
    pub fn embargoes(&self) -> Result<Vec<Embargo>, StoreError> {
        self.embargoes
            .iter()
            .map(|item| {
                let (case, sealed) = item?;
                self.open_embargo(&case, &sealed)
            })
            .collect()
    }

    fn open_embargo(&self, case: &[u8], sealed: &[u8]) -> Result<Embargo, StoreError> {
        let json = self.key.open(&slot(b"embargo/", case), sealed)?;
        let mut embargo: Embargo = serde_json::from_slice(&json).map_err(|e| {
            StoreError::Corrupt(format!("embargo {}: {e}", String::from_utf8_lossy(case)))
        })?;
        // Kept before signature times were: no post signed before the last
        // change was received may change it.
        if embargo.signed == 0 {
            embargo.signed = embargo.updated;
        }
        Ok(embargo)
    }

    /// The sealed advisory of `case`, opened.
    pub fn advisory(&self, case: &str) -> Result<Option<Advisory>, StoreError> {
        let Some(sealed) = self.advisories.get(case.as_bytes())? else {
            return Ok(None);
        };
        let framed = self
            .key
            .open(&slot(b"advisory/", case.as_bytes()), &sealed)?;
        let (subject, content): (String, Vec<u8>) = unframe(framed)?;
        Ok(Some(Advisory { subject, content }))
    }

    /// Events due at `now` (ms), oldest first.
    pub fn due_events(&self, now: u64) -> Result<Vec<Event>, StoreError> {
        let end = (now + 1).to_be_bytes();
        self.schedule
            .range(..end.as_slice())
            .keys()
            .map(|key| {
                let key = key?;
                Event::from_key(&key).ok_or_else(|| StoreError::Corrupt("schedule key".into()))
            })
            .collect()
    }

    /// The next event, due or not.
    pub fn next_event(&self) -> Result<Option<Event>, StoreError> {
        self.schedule
            .first()?
            .map(|(key, _)| {
                Event::from_key(&key).ok_or_else(|| StoreError::Corrupt("schedule key".into()))
            })
            .transpose()
    }

    /// Applies `batch` in one transaction. Ids for new entries are drawn
    /// first, so a retried transaction writes the same keys.
    pub fn apply(&self, mut batch: Batch) -> Result<(), StoreError> {
        // Job contents go to their files first, outside the lock: a large
        // one never holds up the LMTP sessions' spool writes.
        let jobs_new: Vec<u64> = batch.add_jobs.iter().map(|(id, _)| *id).collect();
        let forget_files = |store: &Store| {
            for id in &jobs_new {
                let _ = std::fs::remove_file(store.job_file(*id));
            }
        };
        for (id, job) in std::mem::take(&mut batch.add_jobs) {
            if let Err(e) = self.write_job(id, job) {
                forget_files(self);
                return Err(e);
            }
        }
        let _alone = self.io.transaction();
        let spool_new: Vec<([u8; 8], Vec<u8>)> = batch
            .add_spool
            .iter()
            .map(|incoming| {
                let key = self.next_id()?.to_be_bytes();
                Ok((key, self.seal_incoming(&key, incoming)))
            })
            .collect::<Result<_, StoreError>>()?;
        let quarantine_new: Vec<([u8; 8], Vec<u8>)> = batch
            .quarantine
            .iter()
            .map(|(meta, raw)| {
                let key = self.next_id()?.to_be_bytes();
                let sealed = self
                    .key
                    .seal(&slot(b"quarantine/", &key), &frame(meta, raw));
                Ok((key, sealed))
            })
            .collect::<Result<_, StoreError>>()?;
        let embargo_new: Vec<(Vec<u8>, Vec<u8>)> = batch
            .embargoes
            .iter()
            .map(|e| {
                let json = serde_json::to_vec(e).expect("embargo serializes");
                let sealed = self.key.seal(&slot(b"embargo/", e.case.as_bytes()), &json);
                (e.case.as_bytes().to_vec(), sealed)
            })
            .collect();
        let advisory_new: Vec<(Vec<u8>, Vec<u8>)> = batch
            .advisories
            .iter()
            .map(|(case, advisory)| {
                let sealed = self.key.seal(
                    &slot(b"advisory/", case.as_bytes()),
                    &frame(&advisory.subject, &advisory.content),
                );
                (case.as_bytes().to_vec(), sealed)
            })
            .collect();
        let copy_new: Vec<([u8; 8], Vec<u8>)> = batch
            .copy_index
            .iter()
            .map(|c| {
                (
                    c.copy_id.to_be_bytes(),
                    serde_json::to_vec(c).expect("copies serialize"),
                )
            })
            .collect();
        let message_copy_new: Vec<[u8; 16]> = batch
            .copy_index
            .iter()
            .map(|c| pair_key(c.message, c.copy_id))
            .collect();
        let shingle_new: Vec<[u8; 16]> = batch
            .shingles
            .iter()
            .flat_map(|(message, shingles)| shingles.iter().map(move |s| pair_key(*s, *message)))
            .collect();
        let member_new: Vec<(String, Vec<u8>)> = batch
            .member_states
            .iter()
            .map(|(m, state)| {
                (
                    m.clone(),
                    serde_json::to_vec(state).expect("states serialize"),
                )
            })
            .collect();
        let queue_new: Vec<([u8; 16], Vec<u8>)> = batch
            .add_queue
            .iter()
            .map(|(key, copy)| {
                let sealed = self.key.seal(
                    &slot(b"queue/", &key.id.to_be_bytes()),
                    &frame(copy, &copy.bytes),
                );
                (key.to_bytes(), sealed)
            })
            .collect();
        let job_copies_new: Vec<[u8; 16]> = batch
            .add_queue
            .iter()
            .filter_map(|(key, copy)| Some(pair_key(copy.job?, key.id)))
            .collect();
        let cases_new: Vec<(&str, Vec<u8>)> = batch
            .cases
            .iter()
            .map(|(key, value)| {
                let sealed = self.key.seal(&slot(b"cases/", key.as_bytes()), value);
                (key.as_str(), sealed)
            })
            .collect();

        let trees = [
            &self.spool,
            &self.queue,
            &self.records,
            &self.ledger_meta,
            &self.quarantine,
            &self.embargoes,
            &self.advisories,
            &self.schedule,
            &self.copies,
            &self.message_copies,
            &self.shingles,
            &self.members,
            &self.cases,
            &self.jobs,
            &self.job_copies,
            &self.attempts,
        ];
        let removed_bytes: u64 = batch
            .remove_spool
            .iter()
            .filter_map(|id| self.spool.get(id.to_be_bytes()).ok().flatten())
            .map(|v| v.len() as u64)
            .sum();
        let removed = batch
            .remove_spool
            .iter()
            .filter(|id| self.spool.contains_key(id.to_be_bytes()).unwrap_or(false))
            .count() as u64;
        let added_bytes: u64 = spool_new.iter().map(|(_, v)| v.len() as u64).sum();
        let result = trees
            .as_slice()
            .transaction(|trees: &Vec<TransactionalTree>| {
                let [spool, queue, records, ledger_meta, quarantine, embargoes, advisories, schedule, copies, message_copies, shingles, members, cases, jobs, job_copies, attempts] =
                    trees.as_slice()
                else {
                    unreachable!("sixteen trees");
                };
                for id in &batch.remove_spool {
                    spool.remove(&id.to_be_bytes())?;
                    attempts.remove(&attempt_key(Attempt::Spool, *id)[..])?;
                }
                for id in &jobs_new {
                    jobs.insert(&id.to_be_bytes()[..], &[][..])?;
                }
                for key in &job_copies_new {
                    job_copies.insert(&key[..], &[][..])?;
                }
                for (job, copy) in &batch.job_copies_done {
                    job_copies.remove(&pair_key(*job, *copy)[..])?;
                }
                for id in &batch.remove_jobs {
                    jobs.remove(&id.to_be_bytes())?;
                    attempts.remove(&attempt_key(Attempt::Job, *id)[..])?;
                }
                for (key, value) in &spool_new {
                    spool.insert(key, value.as_slice())?;
                }
                for key in &batch.remove_queue {
                    queue.remove(&key.to_bytes())?;
                }
                for (key, value) in &queue_new {
                    queue.insert(key, value.as_slice())?;
                }
                if !batch.records.is_empty() {
                    // Read and moved inside the transaction: concurrent
                    // batches conflict and retry, so the chain stays one.
                    let mut head = read_head(ledger_meta.get(HEAD)?.as_deref())
                        .map_err(|_| ConflictableTransactionError::Abort(()))?;
                    for record in &batch.records {
                        let entry = head.append(record.clone());
                        let json = serde_json::to_vec(&entry).expect("entries serialize");
                        records.insert(&entry.seq.to_be_bytes(), json)?;
                    }
                    ledger_meta.insert(HEAD, serde_json::to_vec(&head).expect("head serializes"))?;
                }
                for (key, value) in &quarantine_new {
                    quarantine.insert(key, value.as_slice())?;
                }
                for (key, value) in &embargo_new {
                    embargoes.insert(key.as_slice(), value.as_slice())?;
                }
                for (key, value) in &advisory_new {
                    advisories.insert(key.as_slice(), value.as_slice())?;
                }
                for event in &batch.schedule_remove {
                    schedule.remove(event.key())?;
                }
                for event in &batch.schedule_add {
                    schedule.insert(event.key(), &[][..])?;
                }
                for (key, info) in &copy_new {
                    copies.insert(&key[..], info.as_slice())?;
                }
                for key in &message_copy_new {
                    message_copies.insert(&key[..], &[][..])?;
                }
                for key in &shingle_new {
                    shingles.insert(&key[..], &[][..])?;
                }
                for (member, state) in &member_new {
                    members.insert(member.as_bytes(), state.as_slice())?;
                }
                for key in &batch.cases_remove {
                    cases.remove(key.as_bytes())?;
                }
                for (key, value) in &cases_new {
                    cases.insert(key.as_bytes(), value.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        if result.is_err() {
            // Named by no job: not left to the next start's sweep.
            forget_files(self);
        }
        result.map_err(|e| match e {
            TransactionError::Storage(e) => StoreError::Sled(e),
            TransactionError::Abort(()) => {
                StoreError::Corrupt("the ledger head cannot be read".into())
            }
        })?;
        for id in &batch.remove_jobs {
            // Every copy of it is recorded: nothing reads it again.
            let _ = std::fs::remove_file(self.job_file(*id));
        }
        let gauge = &self.spooled;
        gauge
            .messages
            .fetch_add(spool_new.len() as u64, Ordering::Relaxed);
        let _ = gauge
            .messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(removed))
            });
        gauge.bytes.fetch_add(added_bytes, Ordering::Relaxed);
        let _ = gauge
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(removed_bytes))
            });
        Ok(())
    }
}

/// Opens the sled database, waiting out a lock that a previous run (in
/// this process or a just-stopped one) is still letting go of: sled's
/// flusher thread holds it for a moment after the database is dropped.
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Busy(path.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// sled's page cache (its default is 1 GiB). The daemon's hot values are
/// small; a large message's spool entry and job are read once or twice, so
/// they need not stay in memory after their write.
const CACHE_BYTES: u64 = 32 << 20;

/// Two big-endian u64s: an index key.
fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

/// Key of the ledger head in `ledger_meta`.
const HEAD: &[u8] = b"head";

fn read_head(value: Option<&[u8]>) -> Result<Head, StoreError> {
    match value {
        None => Ok(Head::default()),
        Some(json) => serde_json::from_slice(json)
            .map_err(|e| StoreError::Corrupt(format!("ledger head: {e}"))),
    }
}

/// The associated data a sealed value is bound to: its tree and key.
fn slot(tree: &[u8], key: &[u8]) -> Vec<u8> {
    [tree, key].concat()
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
        StoreError::Corrupt("id key of wrong length".into())
    })?))
}

/// `[json length: u32 BE][json meta][body]`: metadata readable without
/// copying the (possibly large) body through JSON.
fn frame<M: Serialize>(meta: &M, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(meta).expect("metadata serializes");
    // Room for the seal's nonce and tag: sealed in place, never regrown.
    let mut out = Vec::with_capacity(4 + json.len() + body.len() + 64);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    out
}

/// The metadata and body of a [`frame`]; the body is `bytes` itself with
/// the head cut off, so a large body is not copied.
fn unframe<M: DeserializeOwned>(mut bytes: Vec<u8>) -> Result<(M, Vec<u8>), StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_string());
    let len = bytes.get(..4).ok_or_else(|| corrupt("frame too short"))?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    let json = bytes
        .get(4..4 + len)
        .ok_or_else(|| corrupt("frame metadata cut short"))?;
    let meta =
        serde_json::from_slice(json).map_err(|e| corrupt(&format!("frame metadata: {e}")))?;
    bytes.drain(..4 + len);
    Ok((meta, bytes))
}

/// What an attempt counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Processing a spool entry (the fan-out decision).
    Spool,
    /// Sealing and sending a job's copies.
    Job,
}

fn attempt_key(kind: Attempt, id: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = match kind {
        Attempt::Spool => b's',
        Attempt::Job => b'j',
    };
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(&dir.join("state"), StoreKey::from_bytes(&[1; KEY_LEN])).unwrap()
    }

    fn incoming(text: &str) -> Incoming {
        Incoming {
            meta: IncomingMeta {
                received: 1,
                source: Source::Lmtp {
                    mail_from: "r@example.org".into(),
                    lists: vec![ListName::Security],
                },
            },
            raw: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn spool_survives_reopen_and_is_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(dir.path());
            store
                .spool(&incoming("Subject: canary-1234567\r\n\r\nbody"))
                .unwrap();
            store.flush_sync().unwrap();
        }
        let store = store(dir.path());
        let (_, got) = store.next_spooled(0).unwrap().unwrap();
        assert_eq!(got.unwrap().raw, b"Subject: canary-1234567\r\n\r\nbody");
        drop(store);
        for entry in walk(&dir.path().join("state")) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(14).any(|w| w == b"canary-1234567"),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn another_store_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(store(dir.path()));
        let err = Store::open(
            &dir.path().join("state"),
            StoreKey::from_bytes(&[2; KEY_LEN]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("different store key"), "{err}");
    }

    #[test]
    fn batch_moves_spool_to_queue_atomically_in_due_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let id = store.spool(&incoming("x")).unwrap();
        let copy = |id: u64, due: u64| {
            (
                QueueKey { due, id },
                QueuedCopy {
                    id,
                    message: 1,
                    case: None,
                    list: ListName::Security,
                    member: "alice".into(),
                    to: "alice@example.org".into(),
                    fingerprint: "F".into(),
                    message_id: "<m>".into(),
                    notice: false,
                    queued: 0,
                    attempts: 0,
                    last_error: None,
                    job: None,
                    bytes: vec![b'c'; 10],
                },
            )
        };
        store
            .apply(Batch {
                remove_spool: vec![id],
                add_queue: vec![copy(10, 500), copy(11, 100)],
                ..Batch::default()
            })
            .unwrap();
        assert!(store.next_spooled(0).unwrap().is_none());
        let due = store.due_copies(200, 10, &Default::default()).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, QueueKey { due: 100, id: 11 });
        assert_eq!(due[0].1.bytes, vec![b'c'; 10]);
        assert_eq!(
            store.first_queued().unwrap(),
            Some(QueueKey { due: 100, id: 11 })
        );
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
