//! The trace index: which copies were made of which message, and the
//! keyed shingles of each message's marked prose, so a leaked text leads
//! back to its message and copy ([`crate::mark::trace`]).

use serde::{Deserialize, Serialize};

use crate::config::ListName;
use crate::store::{be_u64, pair_key, Store, StoreError, Table, Transaction};

/// copy id → [`CopyInfo`] (JSON). Plain: it names who got a copy, never
/// what it said.
static COPIES: Table = Table::plain("copies");
/// message ++ copy id, both big-endian; empty values.
static MESSAGE_COPIES: Table = Table::plain("message_copies");
/// shingle ++ message, both big-endian; empty values.
static SHINGLES: Table = Table::plain("shingles");

/// One recipient's copy, as the tracer needs it: who got it, of what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CopyInfo {
    /// The copy's id, marked into it.
    pub copy_id: u64,
    /// The spool id of the message it is a copy of.
    pub message: u64,
    /// The recipient's member id.
    pub member: String,
    /// The recipient's address.
    pub email: String,
    /// The list it went out as.
    pub list: ListName,
    /// The case, when known.
    pub case: Option<String>,
}

/// Indexes `copy` when `tx` is applied.
pub fn put_copy(tx: &mut Transaction, copy: &CopyInfo) {
    let json = serde_json::to_vec(copy).expect("copies serialize");
    tx.put(&COPIES, copy.copy_id.to_be_bytes(), json);
    tx.put(
        &MESSAGE_COPIES,
        pair_key(copy.message, copy.copy_id),
        Vec::new(),
    );
}

/// Indexes the keyed shingles of `message`'s marked prose.
pub fn put_shingles(tx: &mut Transaction, message: u64, shingles: &[u64]) {
    for shingle in shingles {
        tx.put(&SHINGLES, pair_key(*shingle, message), Vec::new());
    }
}

/// The copy with this id.
pub fn copy(store: &Store, copy_id: u64) -> Result<Option<CopyInfo>, StoreError> {
    store
        .get(&COPIES, &copy_id.to_be_bytes())?
        .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("copy: {e}"))))
        .transpose()
}

/// Every copy of `message`.
pub fn copies_of(store: &Store, message: u64) -> Result<Vec<CopyInfo>, StoreError> {
    store
        .keys(&MESSAGE_COPIES, &message.to_be_bytes(), usize::MAX)?
        .iter()
        .filter_map(|key| match be_u64(&key[8..]) {
            Ok(id) => copy(store, id).transpose(),
            Err(e) => Some(Err(e)),
        })
        .collect()
}

/// The messages whose marked prose holds this shingle, at most `limit`
/// of them (more than that: `limit + 1`, so the caller can tell).
pub fn messages_with_shingle(
    store: &Store,
    shingle: u64,
    limit: usize,
) -> Result<Vec<u64>, StoreError> {
    store
        .keys(&SHINGLES, &shingle.to_be_bytes(), limit + 1)?
        .iter()
        .map(|key| be_u64(&key[8..]))
        .collect()
}
