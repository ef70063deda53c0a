//! embargod: the daemon behind a project's private security mailing lists.
//!
//! The path of one message, in the order the modules take it:
//!
//! 1. [`lmtp`] receives it from the local MTA (RFC 2033) and answers `250`
//!    only once it is sealed into the spool of the [`store`] and flushed;
//!    or [`imap`] and [`maildir`] take it from a mailbox, spooling it
//!    before they remove it there ([`intake`]).
//! 2. [`fanout::worker`] takes each spooled message and asks [`lists`]
//!    what becomes of it: [`lists::security`] routes a report into the
//!    case process ([`case`]), [`lists::distributors`] checks a signed PST
//!    post ([`freshness`], [`keywords`]) and opens or moves an embargo
//!    ([`embargo`]), [`lists::notices`] carries the daemon's own words.
//!    The answer is one [`store::Transaction`]: nothing is written before
//!    it commits.
//! 3. [`fanout`] turns "these members get this message" into one job and
//!    a queue entry per member.
//! 4. [`delivery`] makes each member's copy when it sends it — marked
//!    ([`mark`]), signed by the list key and encrypted to that member's
//!    key alone ([`pgp`], [`mime`], [`keys`]) — and appends who got what
//!    to the [`ledger`].
//! 5. [`schedule`] fires what falls due later: an embargo's reminder and
//!    release ([`embargo::release`]), a case's deadlines
//!    ([`case::timeline`]). A release publishes the paperwork [`advisory`]
//!    makes: the actionable announcement, CVE JSON 5 and OSV records, the
//!    oss-security post, and (approved) the case's sanitized archive.
//! 6. After a leak, [`mark::trace`] leads a leaked text back to its copy,
//!    and [`strikes`] keeps the member's record.
//!
//! Around it: [`config`] (the TOML file, checked before anything starts),
//! [`daemon`] (the tasks and an orderly stop), [`state`] (what the tasks
//! share), [`context`] (what a message's handlers read), [`signal`],
//! [`control`] (admin commands over a socket), [`commands`] (`init`,
//! `check`, `demo`), [`status`], [`metrics`], [`notice`], [`clock`],
//! [`digest`], [`random`], [`sandbox`] (a throwaway installation for
//! tests and the demo). Nothing embargoed leaves, or rests on disk, in
//! plaintext.

#![deny(unsafe_code)]
// Every public item says what it is, with units for times and sizes.
#![warn(missing_docs)]

pub mod advisory;
pub mod bounce;
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
pub mod imap;
pub mod intake;
pub mod keyhealth;
pub mod keyrefresh;
pub mod keys;
pub mod keywords;
pub mod ledger;
pub mod lists;
pub mod lmtp;
pub mod maildir;
pub mod mark;
pub mod metrics;
pub mod mime;
pub mod notice;
pub mod pgp;
pub mod random;
pub mod sandbox;
pub mod schedule;
pub mod signal;
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
