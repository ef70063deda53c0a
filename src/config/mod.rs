//! The TOML file admins edit, read in two stages.
//!
//! [`RawConfig`] is what serde reads from the file (and from `EMBARGOD_…`
//! environment overrides); [`Config::load`] checks it and resolves relative
//! paths against the file's folder, so nothing binds or opens a key before
//! the whole configuration is known to be sound. Every error names the file
//! and the key it is about.

mod raw;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::Address;

pub use raw::RawConfig;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/embargod/embargod.toml";

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("{file}: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// Why, as the `config` crate says.
        #[source]
        source: config::ConfigError,
    },
    /// A value is missing, of the wrong type, or refused by a check.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// The key, as written in the file (`lists.security.members`).
        key: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
}

/// The checked configuration every other module works from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths in it were resolved
    /// against its folder.
    pub file: PathBuf,
    /// `[project]`: name and case prefix.
    pub project: Project,
    /// `[store]`: where the store is and the key that seals it.
    pub store: StoreConfig,
    /// `[lmtp]`: where mail comes in, and its limits.
    pub lmtp: LmtpConfig,
    /// `[delivery]`: how copies leave, and their retries.
    pub delivery: DeliveryConfig,
    /// The list's own OpenPGP secret key (signs every copy, decrypts reports).
    pub list_key: PathBuf,
    /// `[lists.*]`: the lists and their members.
    pub lists: Lists,
    /// Everyone with a key, by id; lists refer to these.
    pub members: BTreeMap<String, Member>,
    /// `[embargo]`: limits and reminders of embargoes.
    pub embargo: EmbargoConfig,
    /// `[control]`: the admin socket.
    pub control: ControlConfig,
    /// `[leak]`: strikes before suspension.
    pub leak: LeakConfig,
    /// `[timeline]`: the policy's deadlines of a case.
    pub timeline: TimelineConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[limits]`: flood limits.
    pub limits: LimitsConfig,
    /// `[signatures]`: how fresh a signed command must be.
    pub signatures: SignaturesConfig,
    /// `[bounces]`: when a member whose copies bounce counts as bouncing.
    pub bounces: BouncesConfig,
    /// `[keys]`: warnings ahead of a key's expiry.
    pub keys: KeysConfig,
    /// `[publish]`: what a release leaves behind, and where.
    pub publish: PublishConfig,
}

/// `[publish]`: the records a release writes and the posts it makes
/// ([`crate::advisory`]).
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Folder the CVE JSON 5 and OSV records (and approved archives) are
    /// written to, one sub-folder per case: the project's website or
    /// advisory repository picks them up there.
    pub dir: PathBuf,
    /// The second, plain-text post of each release (oss-security's
    /// customary form); `None`: no such post.
    pub oss_security: Option<Address>,
    /// The CNA's organisation UUID (CVE `assignerOrgId` and the CNA
    /// container's `providerMetadata.orgId`); without it no CVE record
    /// is made.
    pub cna_org_id: Option<String>,
    /// The CNA's short name (`assignerShortName`), when known.
    pub cna_short_name: Option<String>,
    /// Put before the case ID to make the OSV `id`: `x_` (a local
    /// database, OSV schema) unless the project has a registered prefix.
    pub osv_id_prefix: String,
    /// The OSV ecosystem of the project's package (`crates.io`, `PyPI`…);
    /// `None`: the records name no package.
    pub ecosystem: Option<String>,
    /// The product the versions are of, unless `X-Affected:` names one.
    pub product: String,
}

/// `[bounces]`: Mailman's bounce score, per member ([`crate::bounce`]).
/// Each day with a permanent failure of one of the member's copies adds
/// one point; a score older than `stale_after` starts again from zero.
#[derive(Debug, Clone)]
pub struct BouncesConfig {
    /// Points at which a probe goes out (3); a bounced probe makes the
    /// member "bouncing".
    pub threshold: u32,
    /// A score with no new bounce for this long is forgotten (7 days).
    pub stale_after: Duration,
    /// A probe not bounced within this long clears the score (3 days).
    pub probe_wait: Duration,
    /// `[bounces.imap]`: a mailbox the owner address's mail lands in,
    /// for a daemon with no MTA in front of it.
    pub imap: Option<ImapIntake>,
    /// `[bounces.maildir]`: likewise, a maildir.
    pub maildir: Option<MaildirIntake>,
}

/// `[keys]`: key health ahead of time ([`crate::keyhealth`]).
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// How long before a key expires its holder is warned, longest first
    /// (30, 14 and 3 days): one encrypted notice at each.
    pub warn_before: Vec<Duration>,
}

/// The freshness rule for signed input that changes state
/// ([`crate::freshness`]).
#[derive(Debug, Clone)]
pub struct SignaturesConfig {
    /// Oldest a signature may be to authorise a post or command (7 days).
    pub max_age: Duration,
    /// How far in the future a signature may be dated, for senders whose
    /// clocks run ahead (30 minutes, Sequoia's own tolerance).
    pub clock_skew: Duration,
}

/// What keeps a flood from hurting.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Past this many spooled messages, new mail gets 452 (the MTA keeps it).
    pub spool_messages: u64,
    /// Past this many spooled bytes, likewise.
    pub spool_bytes: u64,
    /// Acknowledgements one address may get per hour: a forged sender
    /// cannot turn the list into a mail cannon.
    pub acks_per_hour: u32,
    /// Acknowledgements to all senders together per hour: forging many
    /// addresses cannot multiply `acks_per_hour`.
    pub acks_per_hour_total: u32,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where Prometheus metrics are served (loopback!); off when unset.
    pub listen: Option<SocketAddr>,
}

/// The policy's timeline for a case, from the report.
#[derive(Debug, Clone)]
pub struct TimelineConfig {
    /// Fix Team organised.
    pub team: Duration,
    /// Fix developed.
    pub fix: Duration,
    /// Users told of a forthcoming fix.
    pub users: Duration,
    /// Distributors told.
    pub distributors: Duration,
    /// Fix Release Day.
    pub release: Duration,
    /// The Fix Lead's reminder ahead of each deadline.
    pub reminder_before: Duration,
    /// How much later every open deadline moves when a low-severity case
    /// is slowed down (`X-Slow`).
    pub slow_by: Duration,
}

/// `[leak]`: what a recorded leak costs.
#[derive(Debug, Clone)]
pub struct LeakConfig {
    /// Recorded leaks after which a member is suspended from every list.
    pub max_strikes: u32,
}

/// `[embargo]`.
#[derive(Debug, Clone)]
pub struct EmbargoConfig {
    /// Longest embargo a post may ask for (the Openwall distros list
    /// allows 14 days).
    pub max_embargo_days: u32,
    /// When the reminder goes out, before the disclosure time.
    pub reminder_before: Duration,
    /// When the PST gets the digest of distributors who have not said
    /// `X-Status: received`, before the disclosure time (48 hours).
    pub status_digest_before: Duration,
    /// Least notice distributors get: a disclosure time sooner than this
    /// after their first notice of the case is refused, unless the issue
    /// is public or the Fix Lead overrides it with a reason (7 days).
    pub min_notice: Duration,
    /// Days a release may fall on, Monday first; empty: any day.
    pub release_days: Vec<chrono::Weekday>,
    /// Time of day (UTC) of the release slot on those days; `None`: the
    /// time asked for is kept.
    pub release_time: Option<chrono::NaiveTime>,
}

/// `[control]`.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Unix socket the admin commands talk to the running daemon through.
    pub socket: PathBuf,
}

/// `[project]`.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project's name, as the lists' display names and notices say it ("Kappital").
    pub name: String,
    /// The first part of every case ID (`KAP` in KAP-2026-0001).
    pub case_prefix: String,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Folder of the sled database (spool, queue, records).
    pub path: PathBuf,
    /// 32 random bytes that seal embargoed mail at rest; `embargod init`
    /// creates it next to the list key.
    pub key: PathBuf,
}

/// `[lmtp]`.
#[derive(Debug, Clone)]
pub struct LmtpConfig {
    /// Loopback TCP addresses or Unix sockets the MTA delivers to.
    pub listen: Vec<ListenAddr>,
    /// Largest message accepted at DATA, in bytes (RFC 1870 SIZE); larger ones get 552.
    pub max_message_size: usize,
    /// A header section longer than this is refused at the end of DATA: no
    /// honest report needs it and parsers should not have to chew on it.
    pub max_header_size: usize,
    /// Sessions served at once; further connections wait for a free slot.
    pub max_sessions: usize,
    /// A session that sends nothing for this long is closed (421).
    pub idle_timeout: Duration,
}

/// One LMTP listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address (`127.0.0.1:2424`).
    Tcp(SocketAddr),
    /// A Unix socket (`unix:/run/embargod/lmtp.sock`).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How copies leave: file, SMTP or sendmail.
    pub transport: Transport,
    /// Envelope sender of everything the daemon sends; bounces go there,
    /// and mail from it is never taken in (loop protection).
    pub from: Address,
    /// First retry delay after a temporary failure; doubles each time.
    pub retry_initial: Duration,
    /// Longest delay between two attempts.
    pub retry_max_delay: Duration,
    /// A copy still undelivered this long after it was queued fails for good.
    pub retry_max_age: Duration,
    /// Copies handed to the transport at once.
    pub concurrency: usize,
}

/// How copies leave the daemon.
#[derive(Debug, Clone)]
pub enum Transport {
    /// lettre's file transport with envelope: `NAME.eml` + `NAME.json`.
    File {
        /// Folder the files are written to.
        dir: PathBuf,
    },
    /// SMTP to a relay (RFC 5321), the production transport.
    Smtp {
        /// The relay's host name or address.
        host: String,
        /// The relay's port (25, 465 or 587).
        port: u16,
        /// Whether and how the connection is encrypted.
        tls: SmtpTls,
        /// A file holding `username:password` on one line.
        credentials: Option<PathBuf>,
    },
    /// A local `sendmail` program.
    Sendmail {
        /// Its path; `sendmail` on `PATH` when unset.
        command: Option<PathBuf>,
    },
}

/// TLS to the SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// No TLS: loopback relays only.
    None,
    /// STARTTLS after connecting (RFC 3207), port 587 or 25.
    Starttls,
    /// TLS from the start (RFC 8314), port 465.
    Tls,
}

/// `[lists]`: the security list, the distributors list when configured, and the announce address.
#[derive(Debug, Clone)]
pub struct Lists {
    /// `[lists.security]`: reporters write to it; its members are the PST.
    pub security: List,
    /// `[lists.distributors]`: embargoed patches from the PST to distributors.
    pub distributors: Option<List>,
    /// The public announce list; the daemon only ever sends to it.
    pub announce: Option<Address>,
}

/// A list the daemon receives mail for.
#[derive(Debug, Clone)]
pub struct List {
    /// Which list this is.
    pub name: ListName,
    /// The list's address, where reporters and members write.
    pub address: Address,
    /// Member ids, each defined in a `[[member]]` table.
    pub members: Vec<String>,
    /// How each member's copy is marked.
    pub marks: Marks,
    /// Add an `Embargo-Copy:` trailer to `git format-patch` attachments
    /// (when `marks` is not `off`).
    pub mark_patches: bool,
    /// `[lists.NAME.imap]`: a mailbox the daemon polls for this list's
    /// mail, besides LMTP.
    pub imap: Option<ImapIntake>,
    /// `[lists.NAME.maildir]`: a maildir the daemon takes this list's
    /// mail from, besides LMTP.
    pub maildir: Option<MaildirIntake>,
}

/// What a mailbox intake's mail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IntakeTarget {
    /// A list's mail.
    List(ListName),
    /// Mail to the owner address: bounces ([`crate::bounce`]).
    Bounces,
}

impl IntakeTarget {
    /// `security`, `distributors`, `bounces`: in logs, metrics, status
    /// and the store's keys of the mailbox.
    pub fn as_str(self) -> &'static str {
        match self {
            IntakeTarget::List(list) => list.as_str(),
            IntakeTarget::Bounces => "bounces",
        }
    }
}

/// A maildir another program fills (getmail, fetchmail, an MDA): every
/// message in its `new/` and `cur/` is spooled, then its file removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirIntake {
    /// The maildir: the folder holding `new/`, `cur/` and `tmp/`.
    pub path: PathBuf,
    /// How often it is scanned (default 2 s).
    pub poll_interval: Duration,
}

/// A hosted mailbox taken in as a list's mail: every message in it is
/// spooled, then removed (RFC 9051 `\Deleted` and `EXPUNGE`, or `MOVE`
/// to `processed_mailbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapIntake {
    /// The server's host name or address.
    pub server: String,
    /// Its port: 993 for `tls`, 143 otherwise, unless set.
    pub port: u16,
    /// How the connection is encrypted.
    pub tls: ImapTls,
    /// The login name.
    pub username: String,
    /// A file holding the password (one line, mode 0600); read at each login.
    pub password_file: PathBuf,
    /// The mailbox taken in (`INBOX` by default).
    pub mailbox: String,
    /// Where taken messages are moved instead of being expunged.
    pub processed_mailbox: Option<String>,
    /// How often the mailbox is checked when the server has no IDLE
    /// (RFC 2177), and how long one IDLE lasts before a fresh check.
    pub poll_interval: Duration,
}

impl ImapIntake {
    /// `user@server:port/mailbox`: names the mailbox in logs, status and
    /// the store (where its position is kept).
    pub fn label(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.username, self.server, self.port, self.mailbox
        )
    }
}

/// TLS to the IMAP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    /// Implicit TLS (RFC 8314), port 993.
    Tls,
    /// STARTTLS after the greeting (RFC 9051 section 6.2.1), port 143.
    Starttls,
    /// None: a server on loopback only.
    None,
}

/// How each member's copy of a list's mail is marked, so that a leaked
/// copy names its recipient (`marks = …` on a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Marks {
    /// The copy header field, the visible line, and the invisible marks in
    /// the prose (look-alike letters, sentence spacing): a leaked excerpt
    /// is traced. Commands, code and identifiers are never changed, but
    /// the prose is not byte-identical between copies.
    Invisible,
    /// The copy header field and the visible line only: every copy's text
    /// is byte-identical; a leak that drops the line is not traced.
    Visible,
    /// Nothing per recipient but the encryption.
    Off,
}

/// The lists: two embargod serves over LMTP, and the public one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    /// The PST's list: reports, cases, commands.
    Security,
    /// Embargoed patches from the PST to distributors.
    Distributors,
    /// The public list: only ever sent to, only with released advisories.
    Announce,
}

impl ListName {
    /// The list's name as config and logs write it (`security`).
    pub fn as_str(self) -> &'static str {
        match self {
            ListName::Security => "security",
            ListName::Distributors => "distributors",
            ListName::Announce => "announce",
        }
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `[[member]]`: someone with a key, on one or more lists.
#[derive(Debug, Clone)]
pub struct Member {
    /// A short id that lists, logs and the ledger name the member by (`alice`).
    pub id: String,
    /// Where the member's copies go.
    pub email: Address,
    /// Armored OpenPGP certificate.
    pub key: PathBuf,
    /// Upper-case hex fingerprint the key file must hold, without spaces.
    pub fingerprint: String,
    /// Away: skipped when Fix Leads are assigned.
    pub away: bool,
}

impl Config {
    /// Reads `file` with `EMBARGOD_…` overrides from the process environment.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Reads `file`; `env` replaces the process environment when given,
    /// so tests can exercise overrides without touching global state.
    pub fn load_with_env(
        file: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        };
        if !file.is_file() {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                key: "(file)".into(),
                problem:
                    "no such file; `embargod init` needs one too, start from config/embargod.toml"
                        .into(),
            });
        }
        let env = config::Environment::with_prefix("EMBARGOD")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("lmtp.listen")
            .source(env);
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(file).format(config::FileFormat::Toml))
            .add_source(env)
            .build()
            .map_err(read_err)?
            .try_deserialize()
            .map_err(read_err)?;
        raw.check(file)
    }

    /// The list an LMTP recipient address belongs to, if any.
    pub fn list_for_address(&self, address: &str) -> Option<&List> {
        self.lists()
            .find(|list| address.eq_ignore_ascii_case(list.address.as_ref()))
    }

    /// The lists that receive mail.
    pub fn lists(&self) -> impl Iterator<Item = &List> {
        std::iter::once(&self.lists.security).chain(self.lists.distributors.as_ref())
    }

    /// The list `name` when it is configured.
    pub fn list(&self, name: ListName) -> Option<&List> {
        self.lists().find(|list| list.name == name)
    }

    /// Every mailbox the daemon takes mail from: each list's and the
    /// owner address's, with what its mail is for.
    pub fn intakes(&self) -> Vec<(IntakeTarget, Option<&ImapIntake>, Option<&MaildirIntake>)> {
        self.lists()
            .map(|l| {
                (
                    IntakeTarget::List(l.name),
                    l.imap.as_ref(),
                    l.maildir.as_ref(),
                )
            })
            .chain(std::iter::once((
                IntakeTarget::Bounces,
                self.bounces.imap.as_ref(),
                self.bounces.maildir.as_ref(),
            )))
            .collect()
    }

    /// The members of a list, in config order.
    pub fn members_of(&self, list: &List) -> Vec<&Member> {
        list.members
            .iter()
            .filter_map(|id| self.members.get(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[project]
name = "Kappital"
case_prefix = "KAP"

[store]
path = "state"

[lmtp]
listen = ["127.0.0.1:2424", "unix:lmtp.sock"]

[delivery]
transport = "file"
file_dir = "outbox"
from = "security-owner@kappital.example"

[list_key]
secret = "keys/list.key"

[lists.security]
address = "security@kappital.example"
members = ["alice"]

[[member]]
id = "alice"
email = "alice@example.org"
key = "keys/alice.asc"
fingerprint = "0123 4567 89AB CDEF 0123  4567 89ab cdef 0123 4567"
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("embargod.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    fn problem(text: &str) -> String {
        let (_dir, file) = write(text);
        Config::load_with_env(&file, Some(HashMap::new()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let (dir, file) = write(MINIMAL);
        let config = Config::load_with_env(&file, Some(HashMap::new())).unwrap();
        assert_eq!(config.store.path, dir.path().join("state"));
        assert_eq!(config.store.key, dir.path().join("keys/store.key"));
        assert_eq!(config.list_key, dir.path().join("keys/list.key"));
        assert_eq!(
            config.lmtp.listen[1],
            ListenAddr::Unix(dir.path().join("lmtp.sock"))
        );
        let alice = &config.members["alice"];
        assert_eq!(
            alice.fingerprint,
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert!(
            matches!(&config.delivery.transport, Transport::File { dir: d } if *d == dir.path().join("outbox"))
        );
        assert_eq!(config.lmtp.max_message_size, 26_214_400);
        assert_eq!(
            config.delivery.retry_max_age,
            Duration::from_secs(5 * 86400)
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let (_dir, file) = write(MINIMAL);
        let env = HashMap::from([
            (
                "EMBARGOD_LMTP__MAX_MESSAGE_SIZE".to_string(),
                "100000".to_string(),
            ),
            ("EMBARGOD_PROJECT__NAME".to_string(), "Other".to_string()),
        ]);
        let config = Config::load_with_env(&file, Some(env)).unwrap();
        assert_eq!(config.lmtp.max_message_size, 100_000);
        assert_eq!(config.project.name, "Other");
    }

    #[test]
    fn unknown_member_on_a_list_is_named() {
        let text = MINIMAL.replace(
            r#"members = ["alice"]"#,
            r#"members = ["alice", "mallory"]"#,
        );
        let msg = problem(&text);
        assert!(msg.contains("lists.security.members"), "{msg}");
        assert!(msg.contains("mallory"), "{msg}");
    }

    #[test]
    fn marks_default_per_list_and_bad_ones_are_named() {
        let (_dir, file) = write(MINIMAL);
        let config = Config::load_with_env(&file, Some(HashMap::new())).unwrap();
        assert_eq!(config.lists.security.marks, Marks::Visible);
        let msg = problem(&MINIMAL.replace(
            r#"members = ["alice"]"#,
            "members = [\"alice\"]\nmarks = \"loud\"",
        ));
        assert!(
            msg.contains("lists.security.marks") && msg.contains("\"off\""),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let msg = problem(&MINIMAL.replace("alice@example.org", "not an address"));
        assert!(msg.contains("member[alice].email"), "{msg}");
        let msg = problem(&MINIMAL.replace("0123 4567", "XYZ"));
        assert!(msg.contains("member[alice].fingerprint"), "{msg}");
        let msg = problem(&MINIMAL.replace("\"127.0.0.1:2424\"", "\"localhost\""));
        assert!(msg.contains("lmtp.listen"), "{msg}");
        let msg = problem(&MINIMAL.replace("transport = \"file\"", "transport = \"pigeon\""));
        assert!(msg.contains("pigeon"), "{msg}");
        let msg = problem(&MINIMAL.replace("[lmtp]", "[lmtp]\nlisten_typo = 1"));
        assert!(msg.contains("listen_typo"), "{msg}");
        let msg = problem(&MINIMAL.replace("\"alice\"", "\"reporter\""));
        assert!(msg.contains("reserved"), "{msg}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/embargod.toml");
        let config = Config::load_with_env(&file, Some(HashMap::new())).unwrap();
        assert_eq!(config.members.len(), 3);
        assert_eq!(config.lmtp.listen.len(), 2);
        assert!(matches!(
            config.delivery.transport,
            Transport::Smtp { port: 25, .. }
        ));
        assert_eq!(config.lists.distributors.unwrap().members, ["distro-a"]);
    }

    #[test]
    fn release_slots_and_publishing_are_checked() {
        let with = |table: &str| format!("{MINIMAL}\n{table}");
        let (_dir, file) = write(&with(
            "[embargo]\nrelease_days = [\"Mon\", \"thu\", \"Tue\"]\nrelease_time = \"16:00\"\n",
        ));
        let config = Config::load_with_env(&file, Some(HashMap::new())).unwrap();
        use chrono::Weekday::*;
        assert_eq!(config.embargo.release_days, [Mon, Tue, Thu]);
        assert_eq!(config.embargo.min_notice, Duration::from_secs(7 * 86400));
        for (table, key) in [
            (
                "[embargo]\nrelease_days = [\"Funday\"]\nrelease_time = \"16:00\"",
                "release_days",
            ),
            ("[embargo]\nrelease_days = [\"Mon\"]", "release_time"),
            ("[embargo]\nrelease_time = \"4pm\"", "release_time"),
            (
                "[embargo]\nrelease_zone = \"Europe/Berlin\"",
                "release_zone",
            ),
            ("[embargo]\nmin_notice = \"15d\"", "min_notice"),
            ("[publish]\ncna_org_id = \"mitre\"", "cna_org_id"),
            (
                "[publish]\noss_security = \"not an address\"",
                "oss_security",
            ),
            ("[publish]\nosv_id_prefix = \"a b\"", "osv_id_prefix"),
            ("[publish]\necosystem = \"PyPi\"", "did you mean \"PyPI\""),
        ] {
            let msg = problem(&with(table));
            assert!(msg.contains(key), "{table}: {msg}");
        }
    }

    #[test]
    fn a_missing_file_is_explained() {
        let msg = Config::load(Path::new("/nonexistent/embargod.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no such file"), "{msg}");
    }
}
