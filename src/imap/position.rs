//! Where each mailbox's intake stands, kept in the store so it survives
//! crashes: the UIDVALIDITY and the highest UID taken (RFC 9051 section
//! 2.3.1.1), and the UIDs deliberately left in the mailbox; and a
//! message's identity, for [`crate::intake::remember`].
//!
//! The position is written in the same transaction as the spool entry of
//! the message it names, so "spooled" and "taken" are one fact.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Table, Transaction};

/// mailbox key → [`Position`] (JSON).
static POSITIONS: Table = Table::plain("imap_positions");

/// One mailbox's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The UIDVALIDITY the UIDs below belong to.
    pub uid_validity: u32,
    /// Every message with a UID up to this one is taken (or left).
    pub last_uid: u32,
    /// UIDs at or below `last_uid` left in the mailbox on purpose, too
    /// large to take: never removed, looked at again each round (the
    /// limit may have been raised).
    #[serde(default)]
    pub left: Vec<u32>,
    /// UIDs the server gave no content for: never removed, never
    /// fetched again (a server may drop the connection over them).
    #[serde(default)]
    pub unreadable: Vec<u32>,
}

/// A mailbox's key in the store: its list and label.
pub(crate) fn key(list: &str, label: &str) -> Vec<u8> {
    format!("{list}\0{label}").into_bytes()
}

/// The saved position of `mailbox`, if it was ever read.
pub(crate) fn load(store: &Store, mailbox: &[u8]) -> Result<Option<Position>, StoreError> {
    store
        .get(&POSITIONS, mailbox)?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("IMAP position: {e}")))
        })
        .transpose()
}

/// Writes `position` for `mailbox` as part of `tx`.
pub(crate) fn save(tx: &mut Transaction, mailbox: &[u8], position: &Position) {
    let json = serde_json::to_vec(position).expect("position serializes");
    tx.put(&POSITIONS, mailbox.to_vec(), json);
}

/// A message's identity: its Message-ID, `From:`, `Date:`, `Subject:`
/// and body, digested. A server may add header fields (`Received:`,
/// `Return-Path:`) when it restores a message, but keeps these; two
/// different reports without a Message-ID differ in them.
pub(crate) fn identity(raw: &[u8]) -> [u8; 16] {
    let parsed = crate::mime::parse_headers(raw);
    let mut input = Vec::new();
    for name in ["Message-ID", "From", "Date", "Subject"] {
        let value = parsed
            .as_ref()
            .and_then(|m| m.header_raw(name))
            .unwrap_or_default();
        input.extend_from_slice(value.trim().as_bytes());
        input.push(0);
    }
    input.extend_from_slice(body_of(raw));
    let digest = openssl::sha::sha256(&input);
    digest[..16].try_into().expect("16 of 32 bytes")
}

/// What follows the first empty line (all of `raw` when there is none).
fn body_of(raw: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some(end) = raw[start..].iter().position(|&b| b == b'\n') {
        let line = &raw[start..start + end];
        start += end + 1;
        if line.is_empty() || line == b"\r" {
            return &raw[start..];
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ignores_headers_but_not_message_id_or_body() {
        let a = b"Message-ID: <1@x>\r\nReceived: by a\r\nFrom: r@x\r\n\r\nbody\r\n";
        let b = b"Received: by b\r\nMessage-ID: <1@x>\r\nFrom: r@x\r\n\r\nbody\r\n";
        let c = b"Message-ID: <2@x>\r\nFrom: r@x\r\n\r\nbody\r\n";
        let d = b"Message-ID: <1@x>\r\nFrom: r@x\r\n\r\nother body\r\n";
        let e = b"From: a@x\r\nSubject: one\r\n\r\nsame\r\n";
        let f = b"From: b@x\r\nSubject: two\r\n\r\nsame\r\n";
        assert_ne!(identity(e), identity(f));
        assert_eq!(identity(a), identity(b));
        assert_ne!(identity(a), identity(c));
        assert_ne!(identity(a), identity(d));
        // Without a header/body split the whole text is the body.
        assert_eq!(body_of(b"no split"), b"no split");
        assert_eq!(body_of(b"A: b\n\nbody"), b"body");
    }
}
