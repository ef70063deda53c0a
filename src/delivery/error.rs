//! How a send can fail, for every transport.

/// Why a send did not go through.
#[derive(Debug, Clone, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum SendError {
    /// Worth retrying: connection refused, 4xx, a full disk.
    #[error("temporary: {0}")]
    Temporary(String),
    /// Retrying will not help: 5xx from the relay about the message
    /// (too large, refused content) or the transport.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The relay refused the recipient for good (5xx to RCPT): a bounce
    /// of the member's address ([`crate::bounce`]).
    #[error("recipient refused: {0}")]
    Rejected(String),
}
