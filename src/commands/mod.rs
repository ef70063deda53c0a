//! The one-shot commands: `init` makes the keys, `check` validates a
//! configuration the way `nginx -t` does, `demo` walks through the whole
//! flow in a temporary folder.

pub mod deliver;
mod demo;

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::pgp::{self, ListKey, ListKeyError};
use crate::store::StoreKey;

pub use demo::{demo, DemoError};

/// Runs an admin command: through the running daemon's control socket,
/// or — when no daemon is running — on the store directly, through the
/// same code.
pub async fn admin(config: Config, command: crate::control::Command) -> crate::control::Response {
    use crate::control::client::{request, ClientError};
    use crate::control::Response;
    match request(&config.control.socket, command.clone()).await {
        Ok(response) => response,
        Err(ClientError::NotRunning(_)) => {
            let nobody = format!(
                "no daemon answers on {} (control.socket)",
                config.control.socket.display()
            );
            let daemon = match open_offline(config, &nobody) {
                Ok(daemon) => daemon,
                Err(why) => return Response::error(why),
            };
            let shared = daemon.shared();
            let response = crate::control::handle(&shared, command).await;
            match shared.store.flush().await {
                Ok(()) => response,
                Err(e) => Response::error(e.to_string()),
            }
        }
        Err(e) => Response::error(e.to_string()),
    }
}

/// The daemon's state on the store, for a command that found no daemon
/// running (`nobody` says what did not answer). Never creates a store: one
/// that does not exist, or that another process holds, is an error naming
/// it.
pub(crate) fn open_offline(config: Config, nobody: &str) -> Result<crate::daemon::Daemon, String> {
    if !config.store.path.exists() {
        return Err(format!(
            "{nobody} and there is no store at {} (store.path): check the paths against \
             the running daemon's config; `embargod run` creates the store at its first start",
            config.store.path.display()
        ));
    }
    crate::daemon::Daemon::open(config, crate::daemon::Options::default()).map_err(|e| {
        format!("{nobody}, and the store cannot be opened: {e}; if a daemon runs, check the paths")
    })
}

/// A certificate expiring sooner than this is warned about when
/// `keys.warn_before` is empty (warnings to members off).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

/// What `init` did.
#[derive(Debug)]
pub struct Init {
    /// The list key, created or as found.
    pub list_key: ListKey,
    /// Whether the list key was created now.
    pub created_list_key: bool,
    /// Whether the store key was created now.
    pub created_store_key: bool,
}

/// Creates the list key and the store key where missing; never overwrites.
pub fn init(config: &Config) -> Result<Init, ListKeyError> {
    let file = &config.list_key;
    let (list_key, created_list_key) = if file.exists() {
        crate::fsutil::check_private(file).map_err(|reason| ListKeyError::Unusable {
            file: file.display().to_string(),
            reason,
        })?;
        (ListKey::load(file)?, false)
    } else {
        let name = format!("{} security list", config.project.name);
        let address = config.lists.security.address.to_string();
        (ListKey::create(file, &name, &address)?, true)
    };
    let created_store_key = if config.store.key.exists() {
        false
    } else {
        StoreKey::create(&config.store.key).map_err(|e| ListKeyError::Unusable {
            file: config.store.key.display().to_string(),
            reason: format!("cannot create the store key: {e}"),
        })?;
        true
    };
    Ok(Init {
        list_key,
        created_list_key,
        created_store_key,
    })
}

/// How serious a `check` finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Works, but needs attention soon (a key expiring).
    Warning,
    /// Will not work until fixed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: `check` lines its columns up with `{:<8}`.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        })
    }
}

/// One line of `check` output.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How serious.
    pub level: Level,
    /// What it is about (`config`, `member alice`, `list key`).
    pub subject: String,
    /// What was found, and how to fix it.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An error that names its own subject is not prefixed twice.
        let detail = self
            .detail
            .strip_prefix(&format!("{}: ", self.subject))
            .unwrap_or(&self.detail);
        write!(f, "{:<8}{}: {detail}", self.level, self.subject)
    }
}

/// Checks the keys a configuration refers to, as of `now`: the list key,
/// the store key, and every member's certificate (parses, matches its pin,
/// alive, unrevoked, can encrypt; expiring within the longest of
/// `keys.warn_before` — 30 days by default — is a warning).
pub fn check(config: &Config, now: SystemTime) -> Vec<Finding> {
    let warn = config
        .keys
        .warn_before
        .first()
        .copied()
        .unwrap_or(EXPIRY_WARNING);
    let mut findings = vec![Finding {
        level: Level::Ok,
        subject: format!("config {}", config.file.display()),
        detail: format!(
            "{} list(s), {} member(s)",
            config.lists().count(),
            config.members.len()
        ),
    }];
    let list_subject = format!("list key {}", config.list_key.display());
    let list_finding = crate::fsutil::check_private(&config.list_key)
        .and_then(|()| ListKey::load(&config.list_key).map_err(|e| e.to_string()));
    match list_finding {
        Ok(key) => {
            findings.push(expiry_finding(
                list_subject.clone(),
                key.cert(),
                now,
                warn,
                true,
            ));
            findings.push(aead_finding(list_subject, key.cert(), now));
        }
        Err(detail) => findings.push(Finding {
            level: Level::Error,
            subject: list_subject,
            detail,
        }),
    }
    findings.push(match StoreKey::load(&config.store.key) {
        Ok(_) => Finding {
            level: Level::Ok,
            subject: format!("store key {}", config.store.key.display()),
            detail: "readable by the service user only".into(),
        },
        Err(e) => Finding {
            level: Level::Error,
            subject: format!("store key {}", config.store.key.display()),
            detail: e.to_string(),
        },
    });
    for (target, imap, maildir) in config.intakes() {
        if let Some(intake) = imap {
            let (level, detail) = match crate::imap::check_password(intake) {
                Ok(()) => (
                    Level::Ok,
                    format!(
                        "password file {} is readable and private (mode 0600); the daemon's \
                         user must own it",
                        intake.password_file.display()
                    ),
                ),
                Err(e) => (Level::Error, e.to_string()),
            };
            findings.push(Finding {
                level,
                subject: format!("{} mailbox {}", intake_name(target), intake.label()),
                detail,
            });
        }
        if let Some(maildir) = maildir {
            let subject = format!("{} maildir {}", intake_name(target), maildir.path.display());
            findings.push(match crate::maildir::check(maildir) {
                Ok(()) => Finding {
                    level: Level::Ok,
                    subject,
                    detail: format!(
                        "new/ and cur/ are there; scanned every {}",
                        humantime::format_duration(maildir.poll_interval)
                    ),
                },
                Err(e) => Finding {
                    level: Level::Error,
                    subject,
                    detail: e.to_string(),
                },
            });
        }
    }
    findings.push(publish_finding(config));
    for member in config.members.values() {
        let subject = format!(
            "member {} <{}> ({})",
            member.id,
            member.email,
            member.key.display()
        );
        let usable = pgp::load_member_cert(member)
            .and_then(|cert| pgp::usable_for_encryption(&cert, now).map(|()| cert));
        findings.push(match usable {
            Ok(cert) => expiry_finding(subject, &cert, now, warn, false),
            Err(problem) => Finding {
                level: Level::Error,
                subject,
                detail: problem.to_string(),
            },
        });
    }
    findings
}

/// Where releases write their records: a folder the daemon can make or
/// write to; without a CNA id no CVE record is made (a warning).
fn publish_finding(config: &Config) -> Finding {
    let dir = &config.publish.dir;
    let subject = format!("publish {}", dir.display());
    // The folder, or the nearest existing folder above it.
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    let writable = std::fs::metadata(existing)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    let (level, mut detail) = if writable {
        (
            Level::Ok,
            "releases write CASE/cve.json and CASE/osv.json here".to_string(),
        )
    } else {
        (
            Level::Warning,
            format!(
                "{} is not a writable folder: the records of a release would only be attached \
                 to its announcement",
                existing.display()
            ),
        )
    };
    let level = if config.publish.cna_org_id.is_none() {
        detail
            .push_str("; no CVE JSON records are made without publish.cna_org_id (the CNA's UUID)");
        Level::Warning
    } else {
        level
    };
    Finding {
        level,
        subject,
        detail,
    }
}

/// `list security`, `bounces`: what a mailbox's mail is for, in findings.
fn intake_name(target: crate::intake::Target) -> String {
    match target {
        crate::intake::Target::List(list) => format!("list {list}"),
        crate::intake::Target::Bounces => "bounces".into(),
    }
}

/// What `check` finds on the servers the configuration names: each
/// IMAP mailbox (login, IDLE, messages waiting; the lists' and the
/// bounces') and the SMTP relay or submission server (connect, TLS,
/// login). `check --offline` skips it.
pub async fn check_servers(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (target, imap, _) in config.intakes() {
        let Some(intake) = imap else { continue };
        // A password file problem is reported by `check` already.
        if crate::imap::check_password(intake).is_err() {
            continue;
        }
        let subject = format!("{} mailbox {}", intake_name(target), intake.label());
        findings.push(match crate::imap::probe(intake).await {
            Ok(detail) => Finding {
                level: Level::Ok,
                subject,
                detail,
            },
            Err(e) => Finding {
                level: Level::Error,
                subject,
                detail: e.to_string(),
            },
        });
    }
    // Only an SMTP transport has a server; making a file transport would
    // clear the running daemon's staging folder.
    if !matches!(
        config.delivery.transport,
        crate::config::Transport::Smtp { .. }
    ) {
        return findings;
    }
    match crate::delivery::Transport::new(&config.delivery.transport) {
        Ok(transport) => match transport.probe().await {
            Some(Ok(detail)) => findings.push(Finding {
                level: Level::Ok,
                subject: "delivery smtp".into(),
                detail,
            }),
            Some(Err(e)) => findings.push(Finding {
                level: Level::Error,
                subject: "delivery smtp".into(),
                detail: e.to_string(),
            }),
            None => {}
        },
        Err(e) => findings.push(Finding {
            level: Level::Error,
            subject: "delivery".into(),
            detail: e.to_string(),
        }),
    }
    findings
}

/// Which AEAD modes (RFC 9580 SEIPDv2) the list can read, and whether its
/// key advertises any it cannot: senders follow the key's preferences.
fn aead_finding(subject: String, cert: &sequoia_openpgp::Cert, now: SystemTime) -> Finding {
    let readable = pgp::readable_aead().join(", ");
    let unreadable = pgp::unreadable_advertised(cert, now);
    if unreadable.is_empty() {
        Finding {
            level: Level::Ok,
            subject,
            detail: format!("reads SEIPDv1 and SEIPDv2 with AEAD {readable}"),
        }
    } else {
        Finding {
            level: Level::Error,
            subject,
            detail: format!(
                "advertises {} but this build reads only AEAD {readable}: senders would \
                 write mail the list cannot open; make a new list key with `embargod init`",
                unreadable.join(", ")
            ),
        }
    }
}

/// `warn`: the longest of `keys.warn_before`, as the daily job warns;
/// `list_key`: its signing key counts too.
fn expiry_finding(
    subject: String,
    cert: &sequoia_openpgp::Cert,
    now: SystemTime,
    warn: Duration,
    list_key: bool,
) -> Finding {
    let fingerprint = cert.fingerprint().to_hex();
    let expires = match list_key {
        true => pgp::list_key_expiration(cert, now),
        false => pgp::expiration(cert, now),
    };
    match expires {
        Some(when) if when <= now + warn => {
            let days = crate::keyhealth::days_left(when, now.into());
            Finding {
                level: Level::Warning,
                subject,
                detail: format!(
                    "{fingerprint} expires on {} (in {days} days): extend it or replace it",
                    crate::clock::format_time(when.into())
                ),
            }
        }
        Some(when) => Finding {
            level: Level::Ok,
            subject,
            detail: format!(
                "{fingerprint}, expires {}",
                crate::clock::format_time(when.into())
            ),
        },
        None => Finding {
            level: Level::Ok,
            subject,
            detail: format!("{fingerprint}, does not expire"),
        },
    }
}
