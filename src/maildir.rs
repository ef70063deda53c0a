//! Maildir intake: a maildir another program fills — getmail or
//! fetchmail on an isolated host, as kernel.org's remail runs, or a
//! local MDA — taken in as a list's mail.
//!
//! Every `poll_interval` the task ([`run`]) lists `new/` and `cur/`
//! (never `tmp/`, where deliveries are still being written), oldest name
//! first. Each message is spooled (sealed, flushed) in the same store
//! transaction that records its unique name (the file name up to the
//! `:2,` flags, which a mail client may change) as taken; only then is
//! its file removed. A crash between the two leaves a file whose name is
//! recorded: the next scan removes it without taking it again. A file
//! larger than `lmtp.max_message_size` is left in place with one warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Timestamp;
use crate::config::MaildirIntake;
use crate::intake::Target;
use crate::intake::{IntakeState, Mailbox, Taken};
use crate::state::Shared;
use crate::store::{Intake, StoreError, Transaction};

/// Why a scan of the maildir stopped.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum MaildirError {
    #[error("maildir {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that `maildir` is a maildir the daemon can take from: `new/`
/// and `cur/` exist and their files can be removed.
///
/// Errors: [`MaildirError::Io`] naming the folder.
pub fn check(maildir: &MaildirIntake) -> Result<(), MaildirError> {
    for sub in ["new", "cur"] {
        let path = maildir.path.join(sub);
        let meta = std::fs::metadata(&path).map_err(|source| MaildirError::Io {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(MaildirError::Io {
                path,
                source: std::io::Error::other("not a folder"),
            });
        }
    }
    Ok(())
}

/// Takes in `list`'s `maildir` every `poll_interval` until `shutdown`.
/// It keeps the maildir it started with: a reload that changes it is
/// reported as needing a restart.
pub async fn run(
    shared: Arc<Shared>,
    target: Target,
    maildir: MaildirIntake,
    shutdown: CancellationToken,
) {
    let mut left = HashSet::new();
    let mut failing_since = None;
    let mut pruned: Option<std::time::Instant> = None;
    loop {
        let mailbox = Mailbox {
            shared: &shared,
            target,
            via: Intake::Maildir(format!("maildir:{}", maildir.path.display())),
        };
        if pruned.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(24 * 3600)) {
            let before = Timestamp::from(shared.clock.now()) - crate::intake::REMEMBERED;
            let (store, key) = (shared.store.clone(), mailbox_key(&mailbox));
            match crate::blocking(move || crate::intake::forget_before(&store, &key, before)).await
            {
                Ok(_) => pruned = Some(std::time::Instant::now()),
                Err(e) => tracing::warn!(error = %e, "could not prune the maildir's taken names"),
            }
        }
        match scan(&mailbox, &maildir, &mut left).await {
            Ok(()) => {
                failing_since = None;
                mailbox.set_state(IntakeState::Polling);
            }
            Err(error) => {
                let since = *failing_since.get_or_insert(Timestamp::from(shared.clock.now()));
                mailbox.failed(&error, since, maildir.poll_interval);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(maildir.poll_interval) => {}
        }
    }
}

/// One scan: takes every message in `new/` and `cur/`, oldest name first.
/// `left` holds the files left as too large, warned about once.
async fn scan(
    mailbox: &Mailbox<'_>,
    maildir: &MaildirIntake,
    left: &mut HashSet<PathBuf>,
) -> Result<(), MaildirError> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let dir = maildir.path.join(sub);
        let entries = std::fs::read_dir(&dir).map_err(|source| MaildirError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push((name, entry.path()));
            }
        }
    }
    files.sort();
    let key = mailbox_key(mailbox);
    left.retain(|path| path.exists());
    for (name, path) in files {
        if left.contains(&path) {
            continue;
        }
        let limits = &mailbox.shared.config().limits;
        if mailbox
            .shared
            .store
            .spool_full(limits.spool_messages, limits.spool_bytes)
        {
            tracing::warn!(mailbox = %mailbox.label(), "spool full; taking the rest later");
            return Ok(());
        }
        let outcome = take(mailbox, &key, &name, &path).await?;
        mailbox.report(&name, &outcome);
        match outcome {
            Taken::Left(_) => {
                left.insert(path);
            }
            _ => remove(&path)?,
        }
    }
    Ok(())
}

/// Spools (or quarantines) the message in `path` and records its unique
/// name as taken, in one transaction flushed before this returns.
async fn take(
    mailbox: &Mailbox<'_>,
    key: &[u8],
    name: &str,
    path: &Path,
) -> Result<Taken, MaildirError> {
    let shared = mailbox.shared;
    let io = |source| MaildirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let unique = unique_name(name);
    let identity = digest16(unique.as_bytes());
    let taken = crate::blocking({
        let (store, key) = (shared.store.clone(), key.to_vec());
        move || crate::intake::taken_at(&store, &key, &identity)
    })
    .await?
    .is_some();
    if taken {
        return Ok(Taken::Duplicate);
    }
    let size = std::fs::metadata(path).map_err(io)?.len();
    let limit = shared.config().lmtp.max_message_size;
    if size > limit as u64 {
        let why = format!("{size} bytes, over lmtp.max_message_size ({limit})");
        let mut tx = Transaction::new();
        mailbox.notice_left(&mut tx, name, &why, Timestamp::from(shared.clock.now()));
        let store = shared.store.clone();
        crate::blocking(move || store.apply(tx)).await?;
        return Ok(Taken::Left(why));
    }
    let raw = tokio::fs::read(path).await.map_err(io)?;
    let now = Timestamp::from(shared.clock.now());
    let mut tx = Transaction::new();
    crate::intake::remember(&mut tx, key, &identity, now);
    let outcome = mailbox.admit(&mut tx, raw, now);
    let store = shared.store.clone();
    crate::blocking(move || store.apply(tx)).await?;
    shared.store.flush().await?;
    Ok(outcome)
}

fn remove(path: &Path) -> Result<(), MaildirError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Moved or removed by someone else meanwhile: taken all the same.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MaildirError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The maildir's key among the taken identities: its list and path.
fn mailbox_key(mailbox: &Mailbox<'_>) -> Vec<u8> {
    format!("{}\0{}", mailbox.target.as_str(), mailbox.label()).into_bytes()
}

/// A maildir message's unique name: its file name without the `:2,FLAGS`
/// info a mail client may change (the maildir specification; `;` on
/// systems where `:` is not allowed in names).
fn unique_name(name: &str) -> &str {
    name.split([':', ';']).next().unwrap_or(name)
}

fn digest16(bytes: &[u8]) -> [u8; 16] {
    openssl::sha::sha256(bytes)[..16]
        .try_into()
        .expect("16 of 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unique_name_ignores_flags() {
        assert_eq!(
            unique_name("1700000000.M1P2.host:2,S"),
            "1700000000.M1P2.host"
        );
        assert_eq!(
            unique_name("1700000000.M1P2.host;2,RS"),
            "1700000000.M1P2.host"
        );
        assert_eq!(unique_name("1700000000.M1P2.host"), "1700000000.M1P2.host");
    }
}
