//! What serde reads from the file, and the checks that turn it into a
//! [`Config`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::Address;
use serde::Deserialize;

use super::{
    BouncesConfig, Config, ConfigError, ControlConfig, DeliveryConfig, EmbargoConfig, ImapIntake,
    ImapTls, KeysConfig, LeakConfig, LimitsConfig, List, ListName, ListenAddr, Lists, LmtpConfig,
    MaildirIntake, Member, MetricsConfig, Project, PublishConfig, SignaturesConfig, SmtpTls,
    StoreConfig, TimelineConfig, Transport,
};

/// The configuration file as written: every table and key optional, checked into [`super::Config`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    project: RawProject,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    lmtp: RawLmtp,
    delivery: RawDelivery,
    list_key: RawListKey,
    lists: RawLists,
    #[serde(default)]
    member: Vec<RawMember>,
    #[serde(default)]
    embargo: RawEmbargo,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    leak: RawLeak,
    #[serde(default)]
    timeline: RawTimeline,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    signatures: RawSignatures,
    #[serde(default)]
    bounces: RawBounces,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    publish: RawPublish,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPublish {
    dir: PathBuf,
    oss_security: Option<String>,
    cna_org_id: Option<String>,
    cna_short_name: Option<String>,
    osv_id_prefix: String,
    ecosystem: Option<String>,
    product: Option<String>,
}

impl Default for RawPublish {
    fn default() -> Self {
        RawPublish {
            dir: PathBuf::from("public"),
            oss_security: None,
            cna_org_id: None,
            cna_short_name: None,
            osv_id_prefix: "x_".into(),
            ecosystem: None,
            product: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBounces {
    threshold: u32,
    #[serde(with = "humantime_serde")]
    stale_after: Duration,
    #[serde(with = "humantime_serde")]
    probe_wait: Duration,
    imap: Option<RawImap>,
    maildir: Option<RawMaildir>,
}

impl Default for RawBounces {
    fn default() -> Self {
        // Mailman 3's defaults are a threshold of 5 and 7 days; a security
        // list wants to hear sooner.
        RawBounces {
            threshold: 3,
            stale_after: Duration::from_secs(7 * 86400),
            probe_wait: Duration::from_secs(3 * 86400),
            imap: None,
            maildir: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKeys {
    warn_before: Vec<humantime_serde::Serde<Duration>>,
}

impl Default for RawKeys {
    fn default() -> Self {
        RawKeys {
            warn_before: [30, 14, 3]
                .map(|days| Duration::from_secs(days * 86400).into())
                .to_vec(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSignatures {
    #[serde(with = "humantime_serde")]
    max_age: Duration,
    #[serde(with = "humantime_serde")]
    clock_skew: Duration,
}

impl Default for RawSignatures {
    fn default() -> Self {
        RawSignatures {
            max_age: Duration::from_secs(7 * 24 * 3600),
            clock_skew: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    spool_messages: u64,
    spool_bytes: u64,
    acks_per_hour: u32,
    acks_per_hour_total: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            spool_messages: 10_000,
            spool_bytes: 1 << 30,
            acks_per_hour: 10,
            acks_per_hour_total: 60,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimeline {
    #[serde(with = "humantime_serde")]
    team: Duration,
    #[serde(with = "humantime_serde")]
    fix: Duration,
    #[serde(with = "humantime_serde")]
    users: Duration,
    #[serde(with = "humantime_serde")]
    distributors: Duration,
    #[serde(with = "humantime_serde")]
    release: Duration,
    #[serde(with = "humantime_serde")]
    reminder_before: Duration,
    #[serde(with = "humantime_serde")]
    slow_by: Duration,
}

impl Default for RawTimeline {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 86400);
        RawTimeline {
            team: days(1),
            fix: days(7),
            users: days(7),
            distributors: days(14),
            release: days(21),
            reminder_before: days(1),
            slow_by: days(14),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLeak {
    max_strikes: u32,
}

impl Default for RawLeak {
    fn default() -> Self {
        RawLeak { max_strikes: 2 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEmbargo {
    max_embargo_days: u32,
    #[serde(with = "humantime_serde")]
    reminder_before: Duration,
    #[serde(with = "humantime_serde")]
    status_digest_before: Duration,
    #[serde(with = "humantime_serde")]
    min_notice: Duration,
    release_days: Vec<String>,
    release_time: Option<String>,
    release_zone: String,
}

impl Default for RawEmbargo {
    fn default() -> Self {
        RawEmbargo {
            max_embargo_days: 14,
            reminder_before: Duration::from_secs(24 * 3600),
            status_digest_before: Duration::from_secs(48 * 3600),
            min_notice: Duration::from_secs(7 * 86400),
            release_days: Vec::new(),
            release_time: None,
            release_zone: "UTC".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawControl {
    socket: PathBuf,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            socket: "/run/embargod/control.sock".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: String,
    case_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: PathBuf,
    key: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: "state".into(),
            key: "keys/store.key".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLmtp {
    listen: Vec<String>,
    max_message_size: usize,
    max_header_size: usize,
    max_sessions: usize,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
}

impl Default for RawLmtp {
    fn default() -> Self {
        RawLmtp {
            listen: vec!["127.0.0.1:2424".into()],
            max_message_size: 25 * 1024 * 1024,
            max_header_size: 256 * 1024,
            max_sessions: 64,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    transport: RawTransport,
    file_dir: Option<PathBuf>,
    smtp_relay: Option<String>,
    #[serde(default)]
    tls: RawTls,
    credentials: Option<PathBuf>,
    sendmail_command: Option<PathBuf>,
    from: String,
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    retry_initial: Duration,
    #[serde(default = "default_retry_max_delay", with = "humantime_serde")]
    retry_max_delay: Duration,
    #[serde(default = "default_retry_max_age", with = "humantime_serde")]
    retry_max_age: Duration,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
}

fn default_retry_initial() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_max_delay() -> Duration {
    Duration::from_secs(3600)
}
fn default_retry_max_age() -> Duration {
    Duration::from_secs(5 * 24 * 3600)
}
/// Two copies in flight per core: one being sealed (CPU) while the other
/// waits on the relay (network).
fn default_concurrency() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawTransport {
    Smtp,
    Sendmail,
    File,
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum RawTls {
    #[default]
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListKey {
    secret: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLists {
    security: RawList,
    distributors: Option<RawList>,
    announce: Option<RawAnnounce>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    address: String,
    #[serde(default)]
    members: Vec<String>,
    /// `invisible`, `visible` or `off`; default: invisible on distributors,
    /// visible on security.
    marks: Option<String>,
    #[serde(default)]
    mark_patches: bool,
    imap: Option<RawImap>,
    maildir: Option<RawMaildir>,
}

/// `[lists.NAME.maildir]`: a maildir another program fills (getmail,
/// fetchmail, an MDA).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaildir {
    path: PathBuf,
    #[serde(default = "default_maildir_poll", with = "humantime_serde")]
    poll_interval: Duration,
}

fn default_maildir_poll() -> Duration {
    Duration::from_secs(2)
}

/// `[lists.NAME.imap]`: a hosted mailbox polled for the list's mail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    server: String,
    port: Option<u16>,
    /// Default `tls` (implicit TLS on 993).
    tls: Option<RawTls>,
    username: String,
    password_file: PathBuf,
    #[serde(default = "default_mailbox")]
    mailbox: String,
    processed_mailbox: Option<String>,
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
}

fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnounce {
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: String,
    email: String,
    key: PathBuf,
    fingerprint: String,
    #[serde(default)]
    away: bool,
}

/// Collects the file name for error messages and the folder relative
/// paths are resolved against.
struct Checker<'a> {
    file: &'a Path,
    dir: PathBuf,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    fn address(&self, key: &str, text: &str) -> Result<Address, ConfigError> {
        text.trim()
            .parse()
            .map_err(|e| self.invalid(key, format!("{text:?} is not an email address ({e})")))
    }

    fn listen(&self, text: &str) -> Result<ListenAddr, ConfigError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(self.invalid("lmtp.listen", "\"unix:\" needs a socket path"));
            }
            return Ok(ListenAddr::Unix(self.path(Path::new(path))));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            self.invalid(
                "lmtp.listen",
                format!("{text:?} is neither IP:PORT nor unix:PATH"),
            )
        })
    }

    fn transport(&self, raw: &RawDelivery) -> Result<Transport, ConfigError> {
        Ok(match raw.transport {
            RawTransport::File => {
                let dir = raw.file_dir.as_deref().ok_or_else(|| {
                    self.invalid("delivery.file_dir", "required by transport = \"file\"")
                })?;
                Transport::File {
                    dir: self.path(dir),
                }
            }
            RawTransport::Smtp => {
                let relay = raw.smtp_relay.as_deref().ok_or_else(|| {
                    self.invalid("delivery.smtp_relay", "required by transport = \"smtp\"")
                })?;
                let (host, port) = split_host_port(relay).ok_or_else(|| {
                    self.invalid("delivery.smtp_relay", format!("{relay:?} is not HOST:PORT"))
                })?;
                if matches!(raw.tls, RawTls::None)
                    && raw.credentials.is_some()
                    && !is_loopback(&host)
                {
                    return Err(self.invalid(
                        "delivery.tls",
                        format!(
                            "\"none\" (the default) would send delivery.credentials in the clear \
                             to {host}: set tls = \"starttls\" (port 587) or \"tls\" (465)"
                        ),
                    ));
                }
                Transport::Smtp {
                    host,
                    port,
                    tls: match raw.tls {
                        RawTls::None => SmtpTls::None,
                        RawTls::Starttls => SmtpTls::Starttls,
                        RawTls::Tls => SmtpTls::Tls,
                    },
                    credentials: raw.credentials.as_deref().map(|p| self.path(p)),
                }
            }
            RawTransport::Sendmail => Transport::Sendmail {
                command: raw.sendmail_command.as_deref().map(|p| self.path(p)),
            },
        })
    }

    fn list(
        &self,
        name: ListName,
        raw: &RawList,
        known: &BTreeMap<String, Member>,
    ) -> Result<List, ConfigError> {
        let key = format!("lists.{name}");
        let address = self.address(&format!("{key}.address"), &raw.address)?;
        let marks = match raw.marks.as_deref() {
            Some("invisible") => super::Marks::Invisible,
            Some("visible") => super::Marks::Visible,
            Some("off") => super::Marks::Off,
            Some(other) => {
                return Err(self.invalid(
                    format!("{key}.marks"),
                    format!("{other:?} is not one of \"invisible\", \"visible\", \"off\""),
                ))
            }
            // Distributors get embargoed patches and advisories: a leak
            // there must be traceable. The security list carries reports
            // the PST must read exactly as sent.
            None if name == ListName::Distributors => super::Marks::Invisible,
            None => super::Marks::Visible,
        };
        let mut seen = HashSet::new();
        for id in &raw.members {
            if !known.contains_key(id) {
                return Err(self.invalid(
                    format!("{key}.members"),
                    format!("{id:?} has no [[member]] entry"),
                ));
            }
            if !seen.insert(id) {
                return Err(
                    self.invalid(format!("{key}.members"), format!("{id:?} is listed twice"))
                );
            }
        }
        Ok(List {
            name,
            address,
            members: raw.members.clone(),
            marks,
            mark_patches: raw.mark_patches,
            imap: raw
                .imap
                .as_ref()
                .map(|imap| self.imap(&format!("{key}.imap"), imap))
                .transpose()?,
            maildir: raw
                .maildir
                .as_ref()
                .map(|m| self.maildir(&format!("{key}.maildir"), m))
                .transpose()?,
        })
    }

    fn maildir(&self, key: &str, raw: &RawMaildir) -> Result<MaildirIntake, ConfigError> {
        if raw.poll_interval < Duration::from_millis(100) {
            return Err(self.invalid(format!("{key}.poll_interval"), "must be at least 100ms"));
        }
        Ok(MaildirIntake {
            path: self.path(&raw.path),
            poll_interval: raw.poll_interval,
        })
    }

    fn imap(&self, key: &str, raw: &RawImap) -> Result<ImapIntake, ConfigError> {
        let server = raw.server.trim();
        if server.is_empty() || server.contains(['/', ' ', ':']) && !server.contains("::") {
            return Err(self.invalid(
                format!("{key}.server"),
                format!("{server:?} is not a host name or address (the port goes in `port`)"),
            ));
        }
        let tls = match raw.tls.unwrap_or(RawTls::Tls) {
            RawTls::Tls => ImapTls::Tls,
            RawTls::Starttls => ImapTls::Starttls,
            RawTls::None if is_loopback(server) => ImapTls::None,
            RawTls::None => {
                return Err(self.invalid(
                    format!("{key}.tls"),
                    format!(
                        "\"none\" sends the password in the clear: only for a server on \
                         loopback, not {server:?}; use \"tls\" (port 993) or \"starttls\" (143)"
                    ),
                ))
            }
        };
        let port = raw.port.unwrap_or(match tls {
            ImapTls::Tls => 993,
            ImapTls::Starttls | ImapTls::None => 143,
        });
        for (name, value) in [("username", &raw.username), ("mailbox", &raw.mailbox)]
            .into_iter()
            .chain(
                raw.processed_mailbox
                    .as_ref()
                    .map(|m| ("processed_mailbox", m)),
            )
        {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(self.invalid(
                    format!("{key}.{name}"),
                    "must be non-empty text without control characters",
                ));
            }
        }
        if raw.processed_mailbox.as_deref() == Some(raw.mailbox.as_str()) {
            return Err(self.invalid(
                format!("{key}.processed_mailbox"),
                "must differ from `mailbox`, or every message would be taken again",
            ));
        }
        if raw.poll_interval < Duration::from_secs(1) {
            return Err(self.invalid(format!("{key}.poll_interval"), "must be at least 1s"));
        }
        Ok(ImapIntake {
            server: server.to_string(),
            port,
            tls,
            username: raw.username.clone(),
            password_file: self.path(&raw.password_file),
            mailbox: raw.mailbox.clone(),
            processed_mailbox: raw.processed_mailbox.clone(),
            poll_interval: raw.poll_interval,
        })
    }

    /// `release_days` and `release_time` of `[embargo]`, in UTC.
    fn release_slot(
        &self,
        raw: &RawEmbargo,
    ) -> Result<(Vec<chrono::Weekday>, Option<chrono::NaiveTime>), ConfigError> {
        if !raw.release_zone.eq_ignore_ascii_case("UTC") {
            return Err(self.invalid(
                "embargo.release_zone",
                format!(
                    "{:?}: only \"UTC\" is supported, so that no notice is misread across \
                     time zones; give release_time in UTC",
                    raw.release_zone
                ),
            ));
        }
        let mut days = Vec::new();
        for text in &raw.release_days {
            let day: chrono::Weekday = text.parse().map_err(|_| {
                self.invalid(
                    "embargo.release_days",
                    format!("{text:?} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun"),
                )
            })?;
            if !days.contains(&day) {
                days.push(day);
            }
        }
        days.sort_by_key(|d| d.num_days_from_monday());
        let time = raw
            .release_time
            .as_deref()
            .map(|text| {
                chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| {
                    self.invalid(
                        "embargo.release_time",
                        format!("{text:?} is not a time of day like \"16:00\" (UTC)"),
                    )
                })
            })
            .transpose()?;
        if time.is_none() && !days.is_empty() {
            return Err(self.invalid(
                "embargo.release_time",
                "required with release_days: the time of day (UTC) releases happen at",
            ));
        }
        Ok((days, time))
    }

    /// `[publish]`.
    fn publish(&self, raw: &RawPublish, project: &str) -> Result<PublishConfig, ConfigError> {
        let oss_security = raw
            .oss_security
            .as_deref()
            .map(|text| self.address("publish.oss_security", text))
            .transpose()?;
        if let Some(id) = &raw.cna_org_id {
            let uuid = id.len() == 36
                && id.char_indices().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_hexdigit(),
                });
            if !uuid {
                return Err(self.invalid(
                    "publish.cna_org_id",
                    format!("{id:?} is not a UUID: the CNA's organisation id from CVE Services"),
                ));
            }
        }
        let prefix_ok = raw
            .osv_id_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !prefix_ok {
            return Err(self.invalid(
                "publish.osv_id_prefix",
                format!(
                    "{:?}: letters, digits, '-' and '_' only (\"x_\" for a local database)",
                    raw.osv_id_prefix
                ),
            ));
        }
        if let Some(ecosystem) = &raw.ecosystem {
            let base = ecosystem.split(':').next().unwrap_or(ecosystem);
            if !OSV_ECOSYSTEMS.contains(&base) {
                let near = OSV_ECOSYSTEMS
                    .iter()
                    .find(|e| e.eq_ignore_ascii_case(base))
                    .map(|e| format!(" (did you mean {e:?}?)"))
                    .unwrap_or_default();
                return Err(self.invalid(
                    "publish.ecosystem",
                    format!(
                        "{ecosystem:?} is not an OSV ecosystem{near}; use one of: {}",
                        OSV_ECOSYSTEMS.join(", ")
                    ),
                ));
            }
        }
        let product = raw
            .product
            .clone()
            .unwrap_or_else(|| project.to_ascii_lowercase());
        if product.trim().is_empty() {
            return Err(self.invalid("publish.product", "must not be empty"));
        }
        Ok(PublishConfig {
            dir: self.path(&raw.dir),
            oss_security,
            cna_org_id: raw.cna_org_id.as_ref().map(|id| id.to_ascii_lowercase()),
            cna_short_name: raw.cna_short_name.clone(),
            osv_id_prefix: raw.osv_id_prefix.clone(),
            ecosystem: raw.ecosystem.clone(),
            product,
        })
    }

    fn member(&self, raw: &RawMember) -> Result<Member, ConfigError> {
        let valid_id = !raw.id.is_empty()
            && raw
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_id {
            return Err(self.invalid(
                "member.id",
                format!("{:?}: use letters, digits, '-', '_' and '.'", raw.id),
            ));
        }
        if raw.id == crate::case::reporter::LEDGER_NAME {
            return Err(self.invalid(
                "member.id",
                format!("{:?} is reserved for the reporters of cases", raw.id),
            ));
        }
        let key = |field: &str| format!("member[{}].{field}", raw.id);
        let fingerprint: String = raw
            .fingerprint
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if !(fingerprint.len() == 40 || fingerprint.len() == 64)
            || !fingerprint.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(self.invalid(
                key("fingerprint"),
                format!(
                    "{:?} is not a 40 or 64 digit hex fingerprint",
                    raw.fingerprint
                ),
            ));
        }
        Ok(Member {
            id: raw.id.clone(),
            email: self.address(&key("email"), &raw.email)?,
            key: self.path(&raw.key),
            fingerprint,
            away: raw.away,
        })
    }
}

/// The ecosystems the OSV schema names (`$defs/ecosystemName`, as
/// vendored in tests/schemas), spelled as OSV spells them; a `:suffix`
/// (a release, `Debian:12`) may follow.
const OSV_ECOSYSTEMS: &[&str] = &[
    "AlmaLinux",
    "Alpaquita",
    "Alpine",
    "Android",
    "Azure Linux",
    "BellSoft Hardened Containers",
    "Bioconductor",
    "Bitnami",
    "Chainguard",
    "CleanStart",
    "ConanCenter",
    "CRAN",
    "crates.io",
    "Debian",
    "Docker Hardened Images",
    "Echo",
    "FreeBSD",
    "GHC",
    "GitHub Actions",
    "Go",
    "Hackage",
    "Hex",
    "Julia",
    "Kubernetes",
    "Linux",
    "Mageia",
    "Maven",
    "MinimOS",
    "npm",
    "NuGet",
    "opam",
    "openEuler",
    "openSUSE",
    "OSS-Fuzz",
    "Packagist",
    "Photon OS",
    "Pub",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "Root",
    "RubyGems",
    "SUSE",
    "SwiftURL",
    "TuxCare",
    "Ubuntu",
    "VSCode",
    "Wolfi",
];

/// Whether `host` names this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits "host:port", "[v6]:port".
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

impl RawConfig {
    /// Checks every value and resolves paths against `file`'s folder.
    pub fn check(self, file: &Path) -> Result<Config, ConfigError> {
        // `embargod.toml` alone has the empty path as its parent: ".".
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let c = Checker { file, dir };

        if self.project.name.trim().is_empty() {
            return Err(c.invalid("project.name", "must not be empty"));
        }
        let prefix = &self.project.case_prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
        {
            return Err(c.invalid(
                "project.case_prefix",
                format!("{prefix:?}: use upper-case letters and digits, like \"KAP\""),
            ));
        }

        let mut members = BTreeMap::new();
        let mut emails = HashSet::new();
        for raw in &self.member {
            let member = c.member(raw)?;
            if !emails.insert(member.email.to_string().to_ascii_lowercase()) {
                return Err(c.invalid(
                    format!("member[{}].email", member.id),
                    format!("{} belongs to another member too", member.email),
                ));
            }
            if members.insert(member.id.clone(), member).is_some() {
                return Err(c.invalid("member.id", format!("{:?} is defined twice", raw.id)));
            }
        }

        let security = c.list(ListName::Security, &self.lists.security, &members)?;
        let distributors = self
            .lists
            .distributors
            .as_ref()
            .map(|raw| c.list(ListName::Distributors, raw, &members))
            .transpose()?;
        let announce = self
            .lists
            .announce
            .as_ref()
            .map(|raw| c.address("lists.announce.address", &raw.address))
            .transpose()?;
        if distributors.is_some() && announce.is_none() {
            return Err(c.invalid(
                "lists.announce",
                "required with lists.distributors: released advisories are published there",
            ));
        }
        let mut addresses = HashSet::new();
        for address in std::iter::once(&security.address)
            .chain(distributors.as_ref().map(|l| &l.address))
            .chain(announce.as_ref())
        {
            if !addresses.insert(address.to_string().to_ascii_lowercase()) {
                return Err(c.invalid("lists", format!("{address} is used by two lists")));
            }
        }
        let bounce_imap = self
            .bounces
            .imap
            .as_ref()
            .map(|imap| c.imap("bounces.imap", imap))
            .transpose()?;
        let bounce_maildir = self
            .bounces
            .maildir
            .as_ref()
            .map(|m| c.maildir("bounces.maildir", m))
            .transpose()?;
        // Each intake needs its own mailbox, or mail would be taken for
        // the wrong list (or a report as a bounce).
        let intakes: Vec<(&str, Option<&ImapIntake>, Option<&MaildirIntake>)> = [
            (
                "lists.security",
                security.imap.as_ref(),
                security.maildir.as_ref(),
            ),
            (
                "lists.distributors",
                distributors.as_ref().and_then(|l| l.imap.as_ref()),
                distributors.as_ref().and_then(|l| l.maildir.as_ref()),
            ),
            ("bounces", bounce_imap.as_ref(), bounce_maildir.as_ref()),
        ]
        .into_iter()
        .collect();
        for (i, (first, a_imap, a_maildir)) in intakes.iter().enumerate() {
            for (second, b_imap, b_maildir) in &intakes[i + 1..] {
                if let (Some(a), Some(b)) = (a_maildir, b_maildir) {
                    if a.path == b.path {
                        return Err(c.invalid(
                            format!("{second}.maildir.path"),
                            format!(
                                "{} is {first}'s maildir too: each needs its own",
                                b.path.display()
                            ),
                        ));
                    }
                }
                let (Some(a), Some(b)) = (a_imap, b_imap) else {
                    continue;
                };
                let same_server = a.server.eq_ignore_ascii_case(&b.server)
                    || (is_loopback(&a.server) && is_loopback(&b.server));
                let same_account =
                    same_server && a.port == b.port && a.username.eq_ignore_ascii_case(&b.username);
                let moves_into = |x: &ImapIntake, y: &ImapIntake| {
                    same_account && x.processed_mailbox.as_deref() == Some(y.mailbox.as_str())
                };
                if moves_into(a, b) || moves_into(b, a) {
                    return Err(c.invalid(
                        format!("{second}.imap.processed_mailbox"),
                        format!(
                            "{first}'s and {second}'s mailboxes: one's processed_mailbox is \
                             the other's mailbox, so every message taken for one would be \
                             taken again for the other"
                        ),
                    ));
                }
                if same_account && a.mailbox == b.mailbox {
                    return Err(c.invalid(
                        format!("{second}.imap"),
                        format!(
                            "{} is {first}'s mailbox too: each needs its own mailbox (or \
                             folder), or mail would be taken for the wrong one",
                            b.label()
                        ),
                    ));
                }
            }
        }

        if self.lmtp.listen.is_empty() {
            return Err(c.invalid("lmtp.listen", "needs at least one address"));
        }
        let listen = self
            .lmtp
            .listen
            .iter()
            .map(|text| c.listen(text))
            .collect::<Result<Vec<_>, _>>()?;
        if self.lmtp.max_message_size < 1024 {
            return Err(c.invalid("lmtp.max_message_size", "must be at least 1024 bytes"));
        }
        if self.lmtp.max_sessions == 0 {
            return Err(c.invalid("lmtp.max_sessions", "must be at least 1"));
        }

        let from = c.address("delivery.from", &self.delivery.from)?;
        if addresses.contains(&from.to_string().to_ascii_lowercase()) {
            return Err(c.invalid(
                "delivery.from",
                "must differ from every list address, or the daemon would read its own mail",
            ));
        }
        if from.user().contains('+') {
            return Err(c.invalid(
                "delivery.from",
                "must have no '+' in its local part: each copy is sent from \
                 LOCAL+TOKEN@DOMAIN so that its bounce names it (VERP)",
            ));
        }
        if self.bounces.threshold == 0 {
            return Err(c.invalid("bounces.threshold", "must be at least 1"));
        }
        if self.bounces.stale_after < Duration::from_secs(86400) {
            return Err(c.invalid(
                "bounces.stale_after",
                "must be at least 1d: the score counts days with a bounce",
            ));
        }
        if self.bounces.probe_wait < Duration::from_secs(3600) {
            return Err(c.invalid(
                "bounces.probe_wait",
                "must be at least 1h: a probe's bounce takes time to come back",
            ));
        }
        let longest = Duration::from_secs(u64::from(self.embargo.max_embargo_days) * 86400);
        if self.embargo.status_digest_before >= longest {
            return Err(c.invalid(
                "embargo.status_digest_before",
                format!(
                    "must be shorter than the longest embargo (embargo.max_embargo_days, {} \
                     days); \"0s\" turns the digest off",
                    self.embargo.max_embargo_days
                ),
            ));
        }
        if self.keys.warn_before.iter().any(|d| d.is_zero()) {
            return Err(c.invalid(
                "keys.warn_before",
                "each warning must be ahead of the expiry",
            ));
        }
        if self.delivery.concurrency == 0 {
            return Err(c.invalid("delivery.concurrency", "must be at least 1"));
        }
        if self.embargo.max_embargo_days == 0 {
            return Err(c.invalid("embargo.max_embargo_days", "must be at least 1"));
        }
        if self.signatures.max_age.is_zero() {
            return Err(c.invalid("signatures.max_age", "must be longer than zero"));
        }
        if self.signatures.clock_skew > Duration::from_secs(24 * 3600) {
            return Err(c.invalid(
                "signatures.clock_skew",
                "must be at most 1 day: a larger skew lets signatures dated ahead be stored up",
            ));
        }
        if self.delivery.retry_initial.is_zero() {
            return Err(c.invalid("delivery.retry_initial", "must be longer than zero"));
        }
        let (release_days, release_time) = c.release_slot(&self.embargo)?;
        if self.embargo.min_notice >= longest {
            return Err(c.invalid(
                "embargo.min_notice",
                format!(
                    "must be shorter than the longest embargo (embargo.max_embargo_days, {} \
                     days), or no embargo could be set; \"0s\" turns the rule off",
                    self.embargo.max_embargo_days
                ),
            ));
        }
        let publish = c.publish(&self.publish, &self.project.name)?;

        Ok(Config {
            file: file.to_path_buf(),
            project: Project {
                name: self.project.name.clone(),
                case_prefix: prefix.clone(),
            },
            store: StoreConfig {
                path: c.path(&self.store.path),
                key: c.path(&self.store.key),
            },
            lmtp: LmtpConfig {
                listen,
                max_message_size: self.lmtp.max_message_size,
                max_header_size: self.lmtp.max_header_size,
                max_sessions: self.lmtp.max_sessions,
                idle_timeout: self.lmtp.idle_timeout,
            },
            delivery: DeliveryConfig {
                transport: c.transport(&self.delivery)?,
                from,
                retry_initial: self.delivery.retry_initial,
                retry_max_delay: self
                    .delivery
                    .retry_max_delay
                    .max(self.delivery.retry_initial),
                retry_max_age: self.delivery.retry_max_age,
                concurrency: self.delivery.concurrency,
            },
            list_key: c.path(&self.list_key.secret),
            lists: Lists {
                security,
                distributors,
                announce,
            },
            members,
            embargo: EmbargoConfig {
                max_embargo_days: self.embargo.max_embargo_days,
                reminder_before: self.embargo.reminder_before,
                status_digest_before: self.embargo.status_digest_before,
                min_notice: self.embargo.min_notice,
                release_days,
                release_time,
            },
            publish,
            bounces: BouncesConfig {
                threshold: self.bounces.threshold,
                stale_after: self.bounces.stale_after,
                probe_wait: self.bounces.probe_wait,
                imap: bounce_imap,
                maildir: bounce_maildir,
            },
            keys: KeysConfig {
                warn_before: {
                    let mut warn: Vec<Duration> =
                        self.keys.warn_before.iter().map(|d| **d).collect();
                    warn.sort_unstable_by(|a, b| b.cmp(a));
                    warn.dedup();
                    warn
                },
            },
            control: ControlConfig {
                socket: c.path(&self.control.socket),
            },
            leak: LeakConfig {
                max_strikes: self.leak.max_strikes.max(1),
            },
            limits: LimitsConfig {
                spool_messages: self.limits.spool_messages,
                spool_bytes: self.limits.spool_bytes,
                acks_per_hour: self.limits.acks_per_hour,
                acks_per_hour_total: self.limits.acks_per_hour_total,
            },
            signatures: SignaturesConfig {
                max_age: self.signatures.max_age,
                clock_skew: self.signatures.clock_skew,
            },
            metrics: MetricsConfig {
                listen: self
                    .metrics
                    .listen
                    .as_deref()
                    .map(|text| {
                        text.parse().map_err(|_| {
                            c.invalid("metrics.listen", format!("{text:?} is not IP:PORT"))
                        })
                    })
                    .transpose()?,
            },
            timeline: TimelineConfig {
                team: self.timeline.team,
                fix: self.timeline.fix,
                users: self.timeline.users,
                distributors: self.timeline.distributors,
                release: self.timeline.release,
                reminder_before: self.timeline.reminder_before,
                slow_by: self.timeline.slow_by,
            },
        })
    }
}
