//! One state change, applied atomically: [`Transaction`] collects the
//! writes of every domain a message touches, and [`Store::apply`] runs
//! them in one sled transaction (one flush makes them durable).

use std::fmt;
use std::sync::atomic::Ordering;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::table::{Chain, Table};
use super::{
    attempt_key, frame, pair_key, slot, Attempt, Incoming, Job, QuarantineMeta, QueueKey,
    QueuedCopy, Store, StoreError,
};

/// A set of changes applied atomically by [`Store::apply`]. Ids of new
/// spool and quarantine entries are drawn when it is applied.
#[derive(Default)]
pub struct Transaction {
    spool_add: Vec<Incoming>,
    spool_remove: Vec<u64>,
    queue_add: Vec<(QueueKey, QueuedCopy)>,
    queue_remove: Vec<QueueKey>,
    quarantine: Vec<(QuarantineMeta, Vec<u8>)>,
    jobs_add: Vec<(u64, Job)>,
    jobs_remove: Vec<u64>,
    job_copies_done: Vec<(u64, u64)>,
    writes: Vec<Write>,
    links: Vec<(&'static dyn Chain, Vec<u8>)>,
}

/// A write to a domain's table, in the order it was asked for.
enum Write {
    Put {
        table: &'static Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        table: &'static Table,
        key: Vec<u8>,
    },
}

impl Write {
    fn table(&self) -> &'static Table {
        match self {
            Write::Put { table, .. } | Write::Remove { table, .. } => table,
        }
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: values may hold embargoed content.
        f.debug_struct("Transaction")
            .field("spool_add", &self.spool_add.len())
            .field("spool_remove", &self.spool_remove)
            .field("queue_add", &self.queue_add.len())
            .field("queue_remove", &self.queue_remove.len())
            .field("quarantine", &self.quarantine.len())
            .field("jobs_add", &self.jobs_add.len())
            .field("writes", &self.writes.len())
            .field("links", &self.links.len())
            .finish()
    }
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Puts mail (a notice the daemon wrote) into the spool.
    pub fn spool(&mut self, incoming: Incoming) {
        self.spool_add.push(incoming);
    }

    /// Removes spool entry `id` (its fan-out is decided) and its count of
    /// attempts.
    pub fn unspool(&mut self, id: u64) {
        self.spool_remove.push(id);
    }

    /// Queues one copy for the transport; a member's copy also becomes
    /// one of its job's copies still to record.
    pub fn queue(&mut self, key: QueueKey, copy: QueuedCopy) {
        self.queue_add.push((key, copy));
    }

    /// Removes a queued copy (sent, failed for good, or moved to `due`).
    pub fn dequeue(&mut self, key: QueueKey) {
        self.queue_remove.push(key);
    }

    /// Quarantines a message with why.
    pub fn quarantine(&mut self, meta: QuarantineMeta, raw: Vec<u8>) {
        self.quarantine.push((meta, raw));
    }

    /// Stores a decided fan-out as job `id` (from [`Store::next_id`]).
    pub fn add_job(&mut self, id: u64, job: Job) {
        self.jobs_add.push((id, job));
    }

    /// Removes job `id`, every copy of which is recorded.
    pub fn finish_job(&mut self, id: u64) {
        self.jobs_remove.push(id);
    }

    /// Copy `copy` of job `job` is recorded for good.
    pub fn copy_done(&mut self, job: u64, copy: u64) {
        self.job_copies_done.push((job, copy));
    }

    /// Puts `value` under `key` in a domain's table (sealed if the table
    /// is).
    pub fn put(&mut self, table: &'static Table, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.writes.push(Write::Put {
            table,
            key: key.into(),
            value,
        });
    }

    /// Removes `key` from a domain's table.
    pub fn remove(&mut self, table: &'static Table, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Remove {
            table,
            key: key.into(),
        });
    }

    /// Appends `item` to `chain`.
    pub fn link(&mut self, chain: &'static dyn Chain, item: Vec<u8>) {
        self.links.push((chain, item));
    }

    /// Whether this transaction puts a value under `key` in `table`:
    /// what a later step of the same change must see as already there.
    pub fn puts(&self, table: &'static Table, key: &[u8]) -> bool {
        self.writes.iter().any(|w| match w {
            Write::Put {
                table: t, key: k, ..
            } => std::ptr::eq(*t, table) && k == key,
            Write::Remove { .. } => false,
        })
    }

    /// What this transaction last writes under `key` in `table`:
    /// `Some(Some(value))` for a put, `Some(None)` for a removal, `None`
    /// when it does not touch the key — so a later step of the same
    /// change reads its own writes.
    pub fn pending(&self, table: &'static Table, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.iter().rev().find_map(|w| match w {
            Write::Put {
                table: t,
                key: k,
                value,
            } if std::ptr::eq(*t, table) && k == key => Some(Some(value.as_slice())),
            Write::Remove { table: t, key: k } if std::ptr::eq(*t, table) && k == key => Some(None),
            _ => None,
        })
    }

    /// Whether this transaction writes to `table` at all.
    pub fn touches(&self, table: &'static Table) -> bool {
        self.writes.iter().any(|w| std::ptr::eq(w.table(), table))
    }

    /// Whether it spools anything (a notice for the fan-out task).
    pub fn spools(&self) -> bool {
        !self.spool_add.is_empty()
    }

    /// The copies it queues.
    pub fn queued(&self) -> &[(QueueKey, QueuedCopy)] {
        &self.queue_add
    }

    /// Job `id`, if this transaction adds it.
    pub fn job(&self, id: u64) -> Option<&Job> {
        self.jobs_add
            .iter()
            .find(|(j, _)| *j == id)
            .map(|(_, job)| job)
    }

    /// Adds everything in `other`, after what is here.
    pub fn merge(&mut self, other: Transaction) {
        self.spool_add.extend(other.spool_add);
        self.spool_remove.extend(other.spool_remove);
        self.queue_add.extend(other.queue_add);
        self.queue_remove.extend(other.queue_remove);
        self.quarantine.extend(other.quarantine);
        self.jobs_add.extend(other.jobs_add);
        self.jobs_remove.extend(other.jobs_remove);
        self.job_copies_done.extend(other.job_copies_done);
        self.writes.extend(other.writes);
        self.links.extend(other.links);
    }
}

/// The trees of the domain tables a transaction touches, by name.
struct DomainTrees {
    names: Vec<&'static str>,
    trees: Vec<sled::Tree>,
}

impl DomainTrees {
    fn open(
        store: &Store,
        tables: impl Iterator<Item = &'static Table>,
    ) -> Result<Self, StoreError> {
        let mut names: Vec<&'static str> = Vec::new();
        let mut trees = Vec::new();
        for table in tables {
            if !names.contains(&table.name) {
                names.push(table.name);
                trees.push(store.tree(table)?);
            }
        }
        Ok(DomainTrees { names, trees })
    }

    /// Index of `table` among the transaction's trees (after the core's).
    fn index(&self, table: &Table) -> usize {
        CORE_TREES
            + self
                .names
                .iter()
                .position(|n| *n == table.name)
                .expect("every table written is opened")
    }
}

/// spool, queue, quarantine, jobs, job_copies, attempts.
const CORE_TREES: usize = 6;

impl Store {
    /// Applies `tx` in one transaction. Ids for new entries are drawn
    /// first and values sealed before the lock, so a retried transaction
    /// writes the same keys and large values hold nobody up.
    ///
    /// Errors: sled's, or [`StoreError::Corrupt`] when a chain's head
    /// cannot be read; nothing of `tx` is applied then.
    pub fn apply(&self, mut tx: Transaction) -> Result<(), StoreError> {
        // Job contents go to their files first, outside the lock: a large
        // one never holds up the LMTP sessions' spool writes.
        let jobs_new: Vec<u64> = tx.jobs_add.iter().map(|(id, _)| *id).collect();
        let forget_files = |store: &Store| {
            for id in &jobs_new {
                let _ = std::fs::remove_file(store.job_file(*id));
            }
        };
        for (id, job) in std::mem::take(&mut tx.jobs_add) {
            if let Err(e) = self.write_job(id, job) {
                forget_files(self);
                return Err(e);
            }
        }
        let domain = DomainTrees::open(
            self,
            tx.writes.iter().map(Write::table).chain(
                tx.links
                    .iter()
                    .flat_map(|(chain, _)| [chain.entries(), chain.head().0]),
            ),
        )?;
        // (tree index, key, sealed value or `None` to remove)
        type Planned<'a> = (usize, &'a [u8], Option<Vec<u8>>);
        let writes: Vec<Planned> = tx
            .writes
            .iter()
            .map(|w| match w {
                Write::Put { table, key, value } => {
                    let value = match table.slot(key) {
                        Some(aad) => self.key.seal(&aad, value),
                        None => value.clone(),
                    };
                    (domain.index(table), key.as_slice(), Some(value))
                }
                Write::Remove { table, key } => (domain.index(table), key.as_slice(), None),
            })
            .collect();
        let mut chains: Vec<(&'static dyn Chain, Vec<Vec<u8>>)> = Vec::new();
        for (chain, item) in std::mem::take(&mut tx.links) {
            // By the chain's entries table: a trait object's address may differ
            // between codegen units, a static's does not.
            match chains
                .iter_mut()
                .find(|(c, _)| std::ptr::eq(c.entries(), chain.entries()))
            {
                Some((_, items)) => items.push(item),
                None => chains.push((chain, vec![item])),
            }
        }

        let _alone = self.io.transaction();
        let spool_new: Vec<([u8; 8], Vec<u8>)> = tx
            .spool_add
            .iter()
            .map(|incoming| {
                let key = self.next_id()?.to_be_bytes();
                Ok((key, self.seal_incoming(&key, incoming)))
            })
            .collect::<Result<_, StoreError>>()?;
        let quarantine_new: Vec<([u8; 8], Vec<u8>)> = tx
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
        let queue_new: Vec<([u8; 16], Vec<u8>)> = tx
            .queue_add
            .iter()
            .map(|(key, copy)| {
                let sealed = self.key.seal(
                    &slot(b"queue/", &key.id.to_be_bytes()),
                    &frame(copy, &copy.bytes),
                );
                (key.to_bytes(), sealed)
            })
            .collect();
        let job_copies_new: Vec<[u8; 16]> = tx
            .queue_add
            .iter()
            .filter_map(|(key, copy)| Some(pair_key(copy.job?, key.id)))
            .collect();

        let mut trees = vec![
            &self.spool,
            &self.queue,
            &self.quarantine,
            &self.jobs,
            &self.job_copies,
            &self.attempts,
        ];
        trees.extend(domain.trees.iter());
        let (removed, removed_bytes) = self.spooled_sizes(&tx.spool_remove);
        let added_bytes: u64 = spool_new.iter().map(|(_, v)| v.len() as u64).sum();
        let result = trees
            .as_slice()
            .transaction(|trees: &Vec<TransactionalTree>| {
                let [spool, queue, quarantine, jobs, job_copies, attempts] = &trees[..CORE_TREES]
                else {
                    unreachable!("six core trees");
                };
                for id in &tx.spool_remove {
                    spool.remove(&id.to_be_bytes())?;
                    attempts.remove(&attempt_key(Attempt::Spool, *id)[..])?;
                }
                for id in &jobs_new {
                    jobs.insert(&id.to_be_bytes()[..], &[][..])?;
                }
                for key in &job_copies_new {
                    job_copies.insert(&key[..], &[][..])?;
                }
                for (job, copy) in &tx.job_copies_done {
                    job_copies.remove(&pair_key(*job, *copy)[..])?;
                }
                for id in &tx.jobs_remove {
                    jobs.remove(&id.to_be_bytes())?;
                    attempts.remove(&attempt_key(Attempt::Job, *id)[..])?;
                }
                for (key, value) in &spool_new {
                    spool.insert(key, value.as_slice())?;
                }
                for key in &tx.queue_remove {
                    queue.remove(&key.to_bytes())?;
                }
                for (key, value) in &queue_new {
                    queue.insert(key, value.as_slice())?;
                }
                for (key, value) in &quarantine_new {
                    quarantine.insert(key, value.as_slice())?;
                }
                for (index, key, value) in &writes {
                    match value {
                        Some(value) => trees[*index].insert(*key, value.as_slice())?,
                        None => trees[*index].remove(*key)?,
                    };
                }
                for (chain, items) in &chains {
                    let (head_table, head_key) = chain.head();
                    let head_tree = &trees[domain.index(head_table)];
                    let entries = &trees[domain.index(chain.entries())];
                    let (head, linked) = chain
                        .link(head_tree.get(head_key)?.as_deref(), items)
                        .map_err(ConflictableTransactionError::Abort)?;
                    for (key, entry) in linked {
                        entries.insert(key, entry)?;
                    }
                    head_tree.insert(head_key, head)?;
                }
                Ok::<(), ConflictableTransactionError<String>>(())
            });
        if result.is_err() {
            // Named by no job: not left to the next start's sweep.
            forget_files(self);
        }
        result.map_err(|e| match e {
            TransactionError::Storage(e) => StoreError::Sled(e),
            TransactionError::Abort(reason) => StoreError::Corrupt(reason),
        })?;
        for id in &tx.jobs_remove {
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

    /// How many of spool entries `ids` exist, and their sealed bytes.
    fn spooled_sizes(&self, ids: &[u64]) -> (u64, u64) {
        ids.iter()
            .filter_map(|id| self.spool.get(id.to_be_bytes()).ok().flatten())
            .fold((0, 0), |(n, bytes), v| (n + 1, bytes + v.len() as u64))
    }
}
