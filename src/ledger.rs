//! The ledger: who got what, when, under which key — append-only and
//! hash-chained, so that nobody can quietly rewrite it.
//!
//! Each entry holds its sequence number, the hash of the entry before it
//! and its own hash over both and its record. Changing, removing or
//! reordering an entry breaks the chain from there on; [`verify`] names
//! the first bad entry. The head (last sequence number and hash) goes into
//! every public release announcement, so a rewrite of the whole chain
//! after a publication shows too. No content is kept: only digests.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::ListName;
use crate::store::{be_u64, Chain, KeyValue, Store, StoreError, Table, Transaction};

/// What happened to one recipient's copy of one message. Each attempt
/// adds a record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryRecord {
    /// Milliseconds since the epoch.
    pub time: Timestamp,
    /// Spool id of the message.
    pub message: u64,
    /// The case the message belongs to, when known.
    #[serde(default)]
    pub case: Option<String>,
    /// The list the copy went out as.
    pub list: ListName,
    /// The member's id (or `reporter`, `announce`).
    pub member: String,
    /// The copy's id (64 random bits), marked into the copy.
    #[serde(default)]
    pub copy_id: Option<u64>,
    /// Certificate the copy was encrypted to (none when there was no
    /// usable one).
    pub fingerprint: Option<String>,
    /// The encryption subkey of that certificate the copy went to (the
    /// newest valid one). Left out of older entries, whose hashes stay
    /// as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_subkey: Option<String>,
    /// Message-ID of the copy.
    pub message_id: Option<String>,
    /// SHA-256 of the signed plaintext entity, hex.
    pub plaintext_sha256: Option<String>,
    /// SHA-256 of the whole encrypted message as sent, hex.
    pub ciphertext_sha256: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

impl DeliveryRecord {
    /// A record with no copy details yet (no key, suspended, or to be
    /// filled in).
    pub fn new(
        time: Timestamp,
        message: u64,
        case: Option<String>,
        list: ListName,
        member: &str,
        outcome: Outcome,
    ) -> DeliveryRecord {
        DeliveryRecord {
            time,
            message,
            case,
            list,
            member: member.to_string(),
            copy_id: None,
            fingerprint: None,
            encryption_subkey: None,
            message_id: None,
            plaintext_sha256: None,
            ciphertext_sha256: None,
            outcome,
        }
    }
}

/// What happened to a copy: its state after one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    /// Decided and waiting for the transport.
    Queued,
    /// Accepted by the transport (the relay's 250).
    Sent,
    /// Temporary failure; retried later.
    Deferred(String),
    /// Permanent failure, or retried for too long.
    Failed(String),
    /// The member's certificate was missing, expired or revoked: nothing
    /// was sent to them.
    NoKey(String),
    /// The member is suspended for leaking: nothing was sent to them.
    Suspended,
    /// A bounce came back for the copy (RFC 3464 status and diagnostic),
    /// or the relay refused it for good.
    Bounced(String),
    /// A distributor's signed `X-Status:` about the case (`received`,
    /// `affected`, `not-affected`, `ready`); the record's message is
    /// their reply, the fingerprint the key that signed it.
    Status(String),
    /// The member's certificate was refreshed from their mail (same
    /// fingerprint; what changed).
    KeyRefreshed(String),
}

impl Outcome {
    /// The words that came with it (a relay's reply, a status note), if
    /// any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Deferred(d)
            | Outcome::Failed(d)
            | Outcome::NoKey(d)
            | Outcome::Bounced(d)
            | Outcome::Status(d)
            | Outcome::KeyRefreshed(d) => Some(d),
            Outcome::Queued | Outcome::Sent | Outcome::Suspended => None,
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Sent => "sent",
            Outcome::Deferred(_) => "deferred",
            Outcome::Failed(_) => "failed",
            Outcome::NoKey(_) => "no-key",
            Outcome::Suspended => "suspended",
            Outcome::Bounced(_) => "bounced",
            Outcome::Status(_) => "status",
            Outcome::KeyRefreshed(_) => "key-refreshed",
        }
    }
}

/// One link of the chain, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Its place in the chain, from 0.
    pub seq: u64,
    /// Hash of the entry before (zeros for the first).
    pub prev: String,
    /// SHA-256 over `seq`, `prev` and the record.
    pub hash: String,
    /// What it records.
    pub record: DeliveryRecord,
}

/// The end of the chain: the next sequence number and the last hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    /// The sequence number the next entry gets.
    pub next: u64,
    /// The last entry's hash, hex (zeros before the first).
    pub hash: String,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            next: 0,
            hash: "0".repeat(64),
        }
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} entries, head {}", self.next, self.hash)
    }
}

impl Head {
    /// Appends `record`: returns its entry and moves the head on.
    pub fn append(&mut self, record: DeliveryRecord) -> Entry {
        let entry = Entry {
            seq: self.next,
            hash: link(self.next, &self.hash, &record),
            prev: std::mem::take(&mut self.hash),
            record,
        };
        self.next += 1;
        self.hash = entry.hash.clone();
        entry
    }
}

/// The hash of an entry.
fn link(seq: u64, prev: &str, record: &DeliveryRecord) -> String {
    let mut data = Vec::with_capacity(256);
    data.extend_from_slice(b"embargod-ledger-v1\n");
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(prev.as_bytes());
    data.extend_from_slice(&serde_json::to_vec(record).expect("records serialize"));
    crate::digest::sha256_hex(&data)
}

/// The chain's entries, keyed by big-endian sequence number; plain JSON
/// (a record names who got a copy and its hash, never its content).
static RECORDS: Table = Table::plain("records");
/// The chain's head, under [`HEAD`].
static LEDGER_META: Table = Table::plain("ledger_meta");
const HEAD: &[u8] = b"head";

/// The ledger as a [`Chain`] of the store.
struct Ledger;

static LEDGER: Ledger = Ledger;

impl Chain for Ledger {
    fn entries(&self) -> &'static Table {
        &RECORDS
    }

    fn head(&self) -> (&'static Table, &'static [u8]) {
        (&LEDGER_META, HEAD)
    }

    fn link(
        &self,
        head: Option<&[u8]>,
        items: &[Vec<u8>],
    ) -> Result<(Vec<u8>, Vec<KeyValue>), String> {
        let mut head = read_head(head).map_err(|e| e.to_string())?;
        let mut linked = Vec::with_capacity(items.len());
        for item in items {
            let record: DeliveryRecord =
                serde_json::from_slice(item).map_err(|e| format!("a record to append: {e}"))?;
            let entry = head.append(record);
            let json = serde_json::to_vec(&entry).expect("entries serialize");
            linked.push((entry.seq.to_be_bytes().to_vec(), json));
        }
        Ok((serde_json::to_vec(&head).expect("head serializes"), linked))
    }
}

fn read_head(value: Option<&[u8]>) -> Result<Head, StoreError> {
    match value {
        None => Ok(Head::default()),
        Some(json) => serde_json::from_slice(json)
            .map_err(|e| StoreError::Corrupt(format!("ledger head: {e}"))),
    }
}

/// Appends `record` to the ledger when `tx` is applied: after every
/// record appended before it, in this transaction or an earlier one.
pub fn append(tx: &mut Transaction, record: DeliveryRecord) {
    let json = serde_json::to_vec(&record).expect("records serialize");
    tx.link(&LEDGER, json);
}

/// The ledger's head.
pub fn head(store: &Store) -> Result<Head, StoreError> {
    read_head(store.get(&LEDGER_META, HEAD)?.as_deref())
}

/// An entry as read, with the sequence number of its key; an entry that
/// cannot be read is kept as why, so verification names it.
pub type Numbered = (u64, Result<Entry, String>);

/// The ledger's entries in key order, each with the sequence number its
/// key says, for [`verify`].
/// They are read one at a time: a long ledger is never held whole.
pub fn entries(store: &Store) -> Result<impl Iterator<Item = Numbered> + '_, StoreError> {
    Ok(store.entries(&RECORDS)?.map(|item| match item {
        Ok((key, value)) => (
            be_u64(&key).unwrap_or(u64::MAX),
            serde_json::from_slice(&value).map_err(|e| e.to_string()),
        ),
        Err(e) => (u64::MAX, Err(e.to_string())),
    }))
}

/// Every delivery record, oldest first.
pub fn records(store: &Store) -> Result<Vec<DeliveryRecord>, StoreError> {
    entries(store)?
        .map(|(seq, entry)| {
            entry
                .map(|e| e.record)
                .map_err(|e| StoreError::Corrupt(format!("ledger entry {seq}: {e}")))
        })
        .collect()
}

/// Why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum Broken {
    #[error("entry {0} was changed: its hash does not match its contents")]
    Changed(u64),
    #[error("entry {expected} is missing or out of order (found {found} in its place)")]
    Gap { expected: u64, found: u64 },
    #[error("entry {0} does not link to the entry before it (removed, reordered or replaced)")]
    Unlinked(u64),
    #[error("entry {0} cannot be read: {1}")]
    Unreadable(u64, String),
    #[error("the chain ends at entry {found} but its head says {expected} entries ending in {hash}: entries were removed from the end")]
    Truncated {
        expected: u64,
        found: u64,
        hash: String,
    },
}

/// Walks `entries` (in key order, each with the sequence number its key
/// says) and checks every link, and the end against `head`.
pub fn verify(entries: impl Iterator<Item = Numbered>, head: &Head) -> Result<u64, Broken> {
    let mut expected = Head::default();
    for (key, entry) in entries {
        let entry = entry.map_err(|e| Broken::Unreadable(key, e))?;
        if key != expected.next || entry.seq != expected.next {
            return Err(Broken::Gap {
                expected: expected.next,
                found: key,
            });
        }
        if entry.hash != link(entry.seq, &entry.prev, &entry.record) {
            return Err(Broken::Changed(entry.seq));
        }
        if entry.prev != expected.hash {
            return Err(Broken::Unlinked(entry.seq));
        }
        expected.append(entry.record);
    }
    if expected != *head {
        return Err(Broken::Truncated {
            expected: head.next,
            found: expected.next,
            hash: head.hash.clone(),
        });
    }
    Ok(expected.next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(member: &str) -> DeliveryRecord {
        DeliveryRecord {
            time: Timestamp::from_millis(1),
            message: 7,
            case: Some("KAP-2026-0001".into()),
            list: ListName::Distributors,
            member: member.into(),
            copy_id: Some(42),
            fingerprint: None,
            encryption_subkey: None,
            message_id: None,
            plaintext_sha256: None,
            ciphertext_sha256: None,
            outcome: Outcome::Sent,
        }
    }

    fn chain(n: usize) -> (Vec<Entry>, Head) {
        let mut head = Head::default();
        let entries = (0..n)
            .map(|i| head.append(record(&format!("m{i}"))))
            .collect();
        (entries, head)
    }

    fn check(entries: &[Entry], head: &Head) -> Result<u64, Broken> {
        verify(entries.iter().map(|e| (e.seq, Ok(e.clone()))), head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (entries, head) = chain(5);
        assert_eq!(check(&entries, &head), Ok(5));
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let (entries, head) = chain(5);

        let mut changed = entries.clone();
        changed[2].record.member = "someone-else".into();
        assert_eq!(check(&changed, &head), Err(Broken::Changed(2)));

        let mut removed = entries.clone();
        removed.remove(2);
        assert_eq!(
            verify(removed.iter().map(|e| (e.seq, Ok(e.clone()))), &head),
            Err(Broken::Gap {
                expected: 2,
                found: 3
            })
        );

        // Removed and renumbered, hashes recomputed from there: the link
        // to the entry before no longer holds.
        let mut rewritten = entries[..2].to_vec();
        let mut forged = Head {
            next: 2,
            hash: "f".repeat(64),
        };
        rewritten.extend(entries[3..].iter().map(|e| forged.append(e.record.clone())));
        assert_eq!(check(&rewritten, &head), Err(Broken::Unlinked(2)));

        let mut reordered = entries.clone();
        reordered.swap(1, 3);
        assert!(check(&reordered, &head).is_err());

        let truncated = &entries[..4];
        assert!(matches!(
            check(truncated, &head),
            Err(Broken::Truncated { found: 4, .. })
        ));
    }
}
