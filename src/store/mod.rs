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
//! - `quarantine`: mail that could not be processed or may not be
//!   forwarded (held for moderation), sealed, with the reason.
//!
//! Those are the store's own: the durable path of a message from its
//! `250` to its last copy. Every other tree is a domain's [`Table`],
//! declared beside the code that owns it, with its key codec and types:
//! the ledger's chain ([`crate::ledger`]), cases ([`crate::case`]),
//! embargoes and advisories ([`crate::embargo`]), scheduled events
//! ([`crate::schedule`]), the copies' trace index ([`crate::mark::index`])
//! and members' strikes ([`crate::strikes`]).
//!
//! Every value that comes from a post or may quote one is sealed with the
//! store key, bound to its tree and key: the queue too, where a copy to a
//! reporter without a key is signed plaintext. Every state change is one
//! [`Transaction`] applied atomically by [`Store::apply`].

mod io;
mod queue;
mod seal;
mod table;
mod transaction;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::clock::Timestamp;
use crate::config::ListName;
pub use queue::{QueueKey, QueuedCopy};
pub use seal::{StoreKey, KEY_LEN};
pub use table::{Chain, Table};
pub use transaction::Transaction;

/// A key and its (opened) value, as read from a table.
pub type KeyValue = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
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
    /// When and how it came in.
    pub meta: IncomingMeta,
    /// The RFC 5322 message, exactly as received.
    pub raw: Vec<u8>,
}

/// What is kept in the clear about spooled mail: when and how it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingMeta {
    /// Milliseconds since the epoch.
    pub received: Timestamp,
    /// How it came: over LMTP, or written by the daemon.
    pub source: Source,
}

/// How a spooled message came in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Source {
    /// Mail received for these lists (over LMTP, from a mailbox, a pipe).
    // Spool entries written before other intakes existed say `Lmtp`.
    #[serde(alias = "Lmtp")]
    Mail {
        /// The envelope sender (RFC 5321 MAIL FROM; a polled message's
        /// `Return-Path:`); empty for a bounce.
        mail_from: String,
        /// The lists it was addressed to (RCPT TO; a mailbox's list).
        lists: Vec<ListName>,
        /// How it came in.
        #[serde(default)]
        via: Intake,
    },
    /// Mail to the owner address, `delivery.from` with or without a VERP
    /// token: bounces ([`crate::bounce`]). Never forwarded.
    Bounce {
        /// The envelope sender; empty for a DSN.
        mail_from: String,
        /// The owner addresses it came for (RCPT TO, or a polled
        /// message's `Delivered-To:` and the like), tokens included.
        rcpts: Vec<String>,
        /// How it came in.
        #[serde(default)]
        via: Intake,
    },
    /// Written by the daemon (a member without a key, a quarantined
    /// message, a failed delivery, an embargo reminder). Notices never
    /// cause further notices.
    Notice {
        /// Who the notice is for.
        to: Audience,
    },
}

/// The way mail came in, shown to the PST in each copy's info part.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Intake {
    /// LMTP from the local MTA, or `embargod deliver` from a pipe.
    #[default]
    Lmtp,
    /// Taken from an IMAP mailbox (`user@server:port/mailbox`).
    Imap(String),
    /// Taken from a maildir (`maildir:PATH`).
    Maildir(String),
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

/// A message's fan-out to one list, decided: what each member's copy is
/// made of when it is sent (see [`crate::fanout::copies`]).
#[derive(Debug, Clone)]
pub struct Job {
    /// What every copy shares.
    pub meta: JobMeta,
    /// Header fields carried into each copy's protected headers.
    pub headers: Vec<u8>,
    /// The content entity, before each copy's marks.
    pub content: Vec<u8>,
}

/// A job's metadata, stored sealed beside its header fields and content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMeta {
    /// Spool id of the message.
    pub message: u64,
    /// The list the copies go out as.
    pub list: ListName,
    /// The info part at the top of each copy.
    pub info: String,
    /// The case of the message, when known.
    pub case: Option<String>,
    /// How the copies are marked.
    pub marks: crate::config::Marks,
    /// Whether patches get the copy's trailer too.
    pub mark_patches: bool,
    /// A notice's copies: failures are logged, not noticed again.
    pub notice: bool,
    /// The copies' Date, in ms: the same in every attempt.
    pub date: Timestamp,
    /// Length of [`Job::headers`] in the stored value.
    #[serde(default)]
    pub headers_len: usize,
}

/// Quarantined mail: why, and the sealed original.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineMeta {
    /// When it was quarantined, in ms since the epoch.
    pub time: Timestamp,
    /// Why, for the PST and the logs.
    pub reason: String,
    /// How the message came in.
    pub incoming: IncomingMeta,
}

/// The open store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    spool: sled::Tree,
    queue: sled::Tree,
    quarantine: sled::Tree,
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
        if !path.exists() {
            // Said, because a typo in `store.path` looks like every case
            // and queued copy gone.
            tracing::warn!(path = %path.display(), "no store here: creating a new, empty one");
        }
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
            quarantine: db.open_tree("quarantine")?,
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
        let embargoes = self.db.open_tree("embargoes")?;
        let cases = self.db.open_tree("cases")?;
        let mut resealed: Vec<(usize, sled::IVec, Vec<u8>)> = Vec::new();
        for (index, (tree, prefix)) in [
            (&self.queue, &b"queue/"[..]),
            (&embargoes, b"embargo/"),
            (&cases, b"cases/"),
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
        let trees = [&self.queue, &embargoes, &cases, &*self.db];
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
            Some(sealed) => {
                self.key
                    .unseal(SLOT, &sealed)
                    .map(|_| ())
                    .map_err(|_| StoreError::Key {
                        file: "(store key)".into(),
                        reason: "this store was sealed with a different store key".into(),
                    })
            }
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

    /// [`Store::flush`] for a caller off the runtime: blocks until every earlier write is durable.
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
            .unseal(&slot(b"spool/", &key), &sealed)
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

    /// Job `id`, opened; `None` once it is done.
    pub fn job(&self, id: u64) -> Result<Option<Job>, StoreError> {
        let key = id.to_be_bytes();
        if !self.jobs.contains_key(key)? {
            return Ok(None);
        }
        let sealed = std::fs::read(self.job_file(id))
            .map_err(|e| StoreError::Corrupt(format!("job {id}: {e}")))?;
        let framed = self.key.unseal_in_place(&slot(b"job/", &key), sealed)?;
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

    /// The secret the copies' marks derive from.
    pub fn mark_secret(&self) -> &crate::mark::MarkSecret {
        self.key.mark_secret()
    }

    /// The tree of a domain's table.
    fn tree(&self, table: &Table) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(table.name)?)
    }

    /// Opens a value of `table` read under `key`.
    fn unseal_value(&self, table: &Table, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        match table.slot(key) {
            Some(aad) => self.key.unseal(&aad, value),
            None => Ok(value.to_vec()),
        }
    }

    /// The value under `key` in a domain's table, opened.
    pub fn get(&self, table: &Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree(table)?
            .get(key)?
            .map(|value| self.unseal_value(table, key, &value))
            .transpose()
    }

    /// Every key and value of `table` under `prefix`, in key order,
    /// opened.
    pub fn scan(&self, table: &Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.entries_under(table, prefix)?.collect()
    }

    /// Keys of `table` under `prefix`, in order, at most `limit`.
    pub fn keys(
        &self,
        table: &Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(table)?
            .scan_prefix(prefix)
            .keys()
            .take(limit)
            .map(|key| Ok(key?.to_vec()))
            .collect()
    }

    /// Keys of `table` before `end`, in order.
    pub fn keys_before(&self, table: &Table, end: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(table)?
            .range(..end)
            .keys()
            .map(|key| Ok(key?.to_vec()))
            .collect()
    }

    /// The first key of `table`.
    pub fn first_key(&self, table: &Table) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(table)?.first()?.map(|(key, _)| key.to_vec()))
    }

    /// Every entry of `table` in key order, each read on its own so a
    /// damaged one does not hide the rest (for verification); values
    /// opened.
    pub fn entries<'a>(
        &'a self,
        table: &'a Table,
    ) -> Result<impl Iterator<Item = Result<KeyValue, StoreError>> + 'a, StoreError> {
        self.entries_under(table, b"")
    }

    /// The entries of `table` under `prefix`, one at a time, opened.
    fn entries_under<'a>(
        &'a self,
        table: &'a Table,
        prefix: &[u8],
    ) -> Result<impl Iterator<Item = Result<KeyValue, StoreError>> + 'a, StoreError> {
        Ok(self.tree(table)?.scan_prefix(prefix).map(move |item| {
            let (key, value) = item?;
            let value = self.unseal_value(table, &key, &value)?;
            Ok((key.to_vec(), value))
        }))
    }

    /// A queued copy's framed value, opened.
    fn unseal_queued(&self, id: u64, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.unseal(&slot(b"queue/", &id.to_be_bytes()), sealed)
    }

    /// Quarantined mail: reason and metadata, oldest first.
    pub fn quarantined(&self) -> Result<Vec<(u64, QuarantineMeta)>, StoreError> {
        self.quarantine
            .iter()
            .map(|item| {
                let (key, sealed) = item?;
                let framed = self.key.unseal(&slot(b"quarantine/", &key), &sealed)?;
                let (meta, _raw): (QuarantineMeta, Vec<u8>) = unframe(framed)?;
                Ok((be_u64(&key)?, meta))
            })
            .collect()
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
pub fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

/// The associated data a sealed value is bound to: its tree and key.
fn slot(tree: &[u8], key: &[u8]) -> Vec<u8> {
    [tree, key].concat()
}

/// The big-endian `u64` a key holds; an error when it is not 8 bytes.
pub fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
        StoreError::Corrupt("id key of wrong length".into())
    })?))
}

/// `[json length: u32 BE][json meta][body]`: metadata readable without
/// copying the (possibly large) body through JSON.
pub fn frame<M: Serialize>(meta: &M, body: &[u8]) -> Vec<u8> {
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
pub fn unframe<M: DeserializeOwned>(mut bytes: Vec<u8>) -> Result<(M, Vec<u8>), StoreError> {
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
                received: Timestamp::from_millis(1),
                source: Source::Mail {
                    mail_from: "r@example.org".into(),
                    lists: vec![ListName::Security],
                    via: Intake::Lmtp,
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
        let ms = Timestamp::from_millis;
        let copy = |id: u64, due: u64| {
            (
                QueueKey { due: ms(due), id },
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
                    queued: Timestamp::default(),
                    attempts: 0,
                    last_error: None,
                    job: None,
                    bytes: vec![b'c'; 10],
                },
            )
        };
        let mut tx = Transaction::new();
        tx.unspool(id);
        tx.queue(copy(10, 500).0, copy(10, 500).1);
        tx.queue(copy(11, 100).0, copy(11, 100).1);
        store.apply(tx).unwrap();
        assert!(store.next_spooled(0).unwrap().is_none());
        let due = store.due_copies(ms(200), 10, &Default::default()).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].0,
            QueueKey {
                due: ms(100),
                id: 11
            }
        );
        assert_eq!(due[0].1.bytes, vec![b'c'; 10]);
        assert_eq!(
            store.first_queued().unwrap(),
            Some(QueueKey {
                due: ms(100),
                id: 11
            })
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
