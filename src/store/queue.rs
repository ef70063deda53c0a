//! The queue: one entry per copy waiting for the transport, keyed by
//! when it is due and its id, so the delivery task reads due copies in
//! order with one range scan. Its key codec lives here beside its reads;
//! [`crate::delivery`] is its one reader, and writes go through
//! [`super::Transaction::queue`] and [`super::Transaction::dequeue`].

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::clock::Timestamp;
use crate::config::ListName;

use super::{pair_key, unframe, Store, StoreError};

/// One member's copy, encrypted, waiting for the transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedCopy {
    /// The copy's id (64 random bits), as the ledger and marks name it.
    pub id: u64,
    /// Spool id of the message it is a copy of.
    pub message: u64,
    /// The case of the message, when known.
    #[serde(default)]
    pub case: Option<String>,
    /// The list it goes out as.
    pub list: ListName,
    /// The member's id (or `reporter`, `announce`).
    pub member: String,
    /// The recipient's address (RCPT TO).
    pub to: String,
    /// The certificate it is encrypted to, hex; empty for unencrypted copies (a reporter without a key, the announcement).
    pub fingerprint: String,
    /// Message-ID header of this copy.
    pub message_id: String,
    /// A copy of a notice: its failure is logged, not noticed again.
    pub notice: bool,
    /// When it was first queued, in ms; the retry age counts from here.
    pub queued: Timestamp,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last temporary failure, as the relay said it.
    pub last_error: Option<String>,
    /// The job it is made from when it is sent (a member's copy); `None`
    /// when [`QueuedCopy::bytes`] is the message.
    #[serde(default)]
    pub job: Option<u64>,
    /// The whole RFC 5322 message, for a copy without a job.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A queue slot: when the copy is due, in ms, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// When the copy is due, in ms since the epoch.
    pub due: Timestamp,
    /// The copy's id.
    pub id: u64,
}

impl QueueKey {
    pub(super) fn to_bytes(self) -> [u8; 16] {
        pair_key(self.due.millis(), self.id)
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Result<QueueKey, StoreError> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("queue key of wrong length".into()))?;
        Ok(QueueKey {
            due: Timestamp::from_millis(u64::from_be_bytes(
                bytes[..8].try_into().expect("8 bytes"),
            )),
            id: u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
        })
    }
}

impl Store {
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
        now: Timestamp,
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
            let (meta, bytes): (QueuedCopy, Vec<u8>) =
                unframe(self.unseal_queued(key.id, &value)?)?;
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
                let (meta, _): (QueuedCopy, Vec<u8>) =
                    unframe(self.unseal_queued(key.id, &value)?)?;
                Ok((key, meta))
            })
            .collect()
    }

    /// Makes queued copy `id` due at `now` (an admin's "retry now").
    /// False when no such copy is queued.
    pub fn retry_now(&self, id: u64, now: Timestamp) -> Result<bool, StoreError> {
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

    /// Copies in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// The queue's entries due at `now` (ms), in due order.
    fn due_range(&self, now: Timestamp) -> sled::Iter {
        self.queue.range(
            ..QueueKey {
                due: now + std::time::Duration::from_millis(1),
                id: 0,
            }
            .to_bytes(),
        )
    }

    /// Whether a copy of job `id` is due at `now` (ms).
    pub fn job_due(&self, id: u64, now: Timestamp) -> Result<bool, StoreError> {
        for item in self.due_range(now) {
            let (key, value) = item?;
            let key = QueueKey::from_bytes(&key)?;
            let (meta, _): (QueuedCopy, Vec<u8>) = unframe(self.unseal_queued(key.id, &value)?)?;
            if meta.job == Some(id) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
