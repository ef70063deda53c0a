//! embargod: the daemon behind a project's private security mailing lists.
//!
//! Mail arrives over LMTP from the local MTA ([`lmtp`]), is sealed into the
//! spool of the [`store`], and the fan-out task ([`fanout::worker`])
//! decides each message once: one job, one queue entry per member. The
//! [`delivery`] task seals each member's copy when it sends it — signed by
//! the list key and encrypted to that member's key alone ([`pgp`],
//! [`mime`], [`fanout::copies`]) — and records who got what. Nothing
//! embargoed leaves, or rests on disk, in plaintext.
//!
//! - [`config`]: the TOML file, read and checked before anything starts.
//! - [`keys`]: the list key and the members' pinned certificates.
//! - [`context`]: what a message's handlers read (config, keys, store, time).
//! - [`state`]: what every task of the running daemon shares.
//! - [`daemon`]: the running daemon, its tasks and an orderly stop.
//! - [`digest`]: SHA-256 in the ledger's hex form.
//! - [`commands`]: `init`, `check` and `demo`.
//! - [`clock`]: wall-clock time that tests can advance.

#![deny(unsafe_code)]

pub mod case;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod control;
pub mod daemon;
pub mod delivery;
pub mod digest;
pub mod embargo;
pub mod fanout;
pub mod freshness;
mod fsutil;
pub mod keys;
pub mod keywords;
pub mod ledger;
pub mod lists;
pub mod lmtp;
pub mod mark;
pub mod metrics;
pub mod mime;
pub mod notice;
pub mod pgp;
pub mod random;
pub mod sandbox;
pub mod schedule;
pub mod state;
pub mod status;
pub mod store;
pub mod strikes;

/// Runs CPU-bound or blocking work (OpenPGP, sled) off the async
/// runtime's threads. A panic in `work` is re-raised in the caller.
pub async fn blocking<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
