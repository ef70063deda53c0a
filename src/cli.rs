//! The command line (clap): the daemon's own commands, and the admin
//! commands, each of which is one control request ([`Request`], the same
//! enum the control socket speaks).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use embargod::config;
use embargod::control::Command as Request;

#[derive(Parser)]
#[command(
    name = "embargod",
    version,
    about = "Private security mailing lists under an embargo policy"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the list key (and store key) if missing; print the list's public certificate.
    Init,
    /// Validate the configuration and every key, like `nginx -t`; then log
    /// in to each mailbox and the SMTP server the configuration names.
    Check {
        /// Do not connect to any server: files and keys only.
        #[arg(long)]
        offline: bool,
    },
    /// Run the daemon.
    Run,
    /// Walk through the whole flow in a temporary folder.
    Demo,
    /// Deliver one message from standard input to a list, for an MTA's
    /// pipe transport; exits with a sysexits.h status (0, 65, 67, 75, 77).
    Deliver {
        /// The list: security or distributors; `bounces` for the owner
        /// address (`delivery.from`), where bounces come back.
        #[arg(long, value_enum)]
        list: IntakeList,
        /// The recipient address as the MTA has it (Postfix `${recipient}`,
        /// Exim `$local_part$local_part_suffix@$domain`): needed for bounces,
        /// whose `+TOKEN` names the copy. Must be the list's address, or
        /// the owner address with or without a token.
        #[arg(long)]
        recipient: Option<String>,
        /// The envelope sender (MAIL FROM); empty for a bounce.
        #[arg(long, short = 'f', default_value = "")]
        from: String,
    },
    /// Admin commands: through the running daemon's control socket, or on
    /// the store when no daemon runs.
    #[command(flatten)]
    Admin(Admin),
}

/// The addresses mail can be delivered to.
#[derive(Clone, Copy, ValueEnum)]
pub enum IntakeList {
    Security,
    Distributors,
    Bounces,
}

impl IntakeList {
    /// The list, or `None` for the owner address.
    pub fn list(self) -> Option<config::ListName> {
        match self {
            IntakeList::Security => Some(config::ListName::Security),
            IntakeList::Distributors => Some(config::ListName::Distributors),
            IntakeList::Bounces => None,
        }
    }
}

#[derive(Subcommand)]
pub enum Admin {
    /// List pending embargoes: case, public time, poster, recipients.
    Embargoes,
    /// Release a case's advisory now, or move its disclosure time.
    Release {
        /// The case, like KAP-2026-0001.
        case: String,
        /// Publish now, before the agreed time.
        #[arg(long, requires = "reason", conflicts_with = "at")]
        now: bool,
        /// Why the embargo ends early (sent to the PST and distributors); with
        /// --at, why distributors get less than embargo.min_notice.
        #[arg(long)]
        reason: Option<String>,
        /// Move the disclosure time (RFC 3339, e.g. 2026-12-01T16:00:00Z).
        #[arg(long, required_unless_present = "now")]
        at: Option<String>,
    },
    /// Trace a suspected leak (a message, a forwarded copy, an excerpt) to its recipient.
    Trace {
        /// The leaked text; `-` reads standard input.
        file: PathBuf,
    },
    /// The ledger of who got what.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Leak incidents.
    #[command(subcommand)]
    Leak(LeakCommand),
    /// Member standing: strikes and suspensions.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Open cases: lead, severity, next deadline, overdue items.
    Cases,
    /// One case: show it, or change it as the PST's keyword commands do.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Membership requests for the distributors list.
    Requests,
    /// What the daemon is doing: uptime, config, lists, queue, embargoes, last errors.
    Status,
    /// Copies waiting for the transport; `queue retry ID` sends one now.
    Queue {
        #[command(subcommand)]
        command: Option<QueueCommand>,
    },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Retry a queued copy now.
    Retry { id: String },
}

#[derive(Subcommand)]
pub enum CaseCommand {
    /// Everything about a case.
    Show { id: String },
    /// Change a case (each option is the keyword command of the same name).
    Set(Box<CaseSet>),
    /// Send the PST (only, encrypted) the draft of what the release will
    /// publish: the announcement, the CVE JSON 5 and OSV records, and what
    /// is still missing.
    Draft { id: String },
}

/// `case set`'s options: each is the keyword command of the same name.
#[derive(Args)]
pub struct CaseSet {
    id: String,
    /// Fix Lead (a PST member).
    #[arg(long)]
    lead: Option<String>,
    /// CVSS vector, e.g. CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H.
    #[arg(long)]
    cvss: Option<String>,
    /// The issue is already public: every deadline becomes now.
    #[arg(long)]
    public: bool,
    /// A milestone met: team, fix, users, distributors, release.
    #[arg(long)]
    done: Vec<String>,
    /// Add to the Fix Team.
    #[arg(long)]
    add: Vec<String>,
    /// Remove from the Fix Team.
    #[arg(long)]
    remove: Vec<String>,
    /// Slow a low-severity case down, with the reason.
    #[arg(long)]
    slow: Option<String>,
    /// One-line title of the advisory.
    #[arg(long)]
    summary: Option<String>,
    /// Affected versions, e.g. ">=1.0.0, <1.4.2" (repeat for more; replaces the list).
    #[arg(long)]
    affected: Vec<String>,
    /// A version to upgrade to (repeat for more; replaces the list).
    #[arg(long)]
    fixed: Vec<String>,
    /// The weakness, e.g. CWE-122 (repeat for more).
    #[arg(long)]
    cwe: Vec<String>,
    /// A credit, "ROLE: NAME", e.g. "finder: Jane Doe" (repeat for more).
    #[arg(long)]
    credit: Vec<String>,
    /// A reference, "[KIND] URL", e.g. "fix https://…" (repeat for more).
    #[arg(long)]
    reference: Vec<String>,
    /// The CVE ID, once assigned.
    #[arg(long)]
    cve: Option<String>,
    /// What users can do until they upgrade.
    #[arg(long)]
    mitigation: Option<String>,
    /// Where the case was published, when embargod did not announce it.
    #[arg(long)]
    announced: Option<String>,
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Who got what in a case, when, under which key.
    Show { case: String },
    /// Walk the hash chain; name the first bad entry.
    Verify,
}

#[derive(Subcommand)]
pub enum LeakCommand {
    /// Record a leak by a member; at max_strikes they are suspended.
    Record {
        case: String,
        #[arg(long)]
        member: String,
        /// What leaked, and to whom.
        #[arg(long)]
        what: String,
    },
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Lift a member's suspension.
    Reinstate { member: String },
    /// Every member: lists, key expiry, bounce standing; strikes and
    /// suspensions.
    List,
    /// Clear a member's bounce score once their address is fixed.
    ClearBounces { member: String },
}

impl TryFrom<Admin> for Request {
    type Error = String;

    /// The control request a command line asks for; reading a leak from
    /// a file or standard input is the only step taken here.
    fn try_from(admin: Admin) -> Result<Request, String> {
        Ok(match admin {
            Admin::Embargoes => Request::Embargoes,
            Admin::Release {
                case,
                now,
                reason,
                at,
            } => Request::Release {
                case,
                now,
                reason,
                at,
            },
            Admin::Trace { file } => {
                use base64::Engine;
                let leak = read_leak(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                Request::Trace {
                    leak: base64::engine::general_purpose::STANDARD.encode(leak),
                }
            }
            Admin::Ledger(LedgerCommand::Show { case }) => Request::LedgerShow { case },
            Admin::Ledger(LedgerCommand::Verify) => Request::LedgerVerify,
            Admin::Leak(LeakCommand::Record { case, member, what }) => {
                Request::LeakRecord { case, member, what }
            }
            Admin::Member(MemberCommand::Reinstate { member }) => {
                Request::MemberReinstate { member }
            }
            Admin::Member(MemberCommand::List) => Request::Members,
            Admin::Member(MemberCommand::ClearBounces { member }) => {
                Request::MemberClearBounces { member }
            }
            Admin::Cases => Request::Cases,
            Admin::Requests => Request::Requests,
            Admin::Status => Request::Status,
            Admin::Queue { command: None } => Request::Queue,
            Admin::Queue {
                command: Some(QueueCommand::Retry { id }),
            } => Request::QueueRetry { id },
            Admin::Case(CaseCommand::Show { id }) => Request::CaseShow { id },
            Admin::Case(CaseCommand::Set(set)) => {
                let CaseSet {
                    id,
                    lead,
                    cvss,
                    public,
                    done,
                    add,
                    remove,
                    slow,
                    summary,
                    affected,
                    fixed,
                    cwe,
                    credit,
                    reference,
                    cve,
                    mitigation,
                    announced,
                } = *set;
                // Each option is the keyword command of the same name.
                let mut keywords: Vec<(String, String)> = Vec::new();
                keywords.extend(lead.map(|v| ("lead".into(), v)));
                keywords.extend(cvss.map(|v| ("cvss".into(), v)));
                if public {
                    keywords.push(("public".into(), "yes".into()));
                }
                keywords.extend(done.into_iter().map(|v| ("done".into(), v)));
                keywords.extend(add.into_iter().map(|v| ("add".into(), v)));
                keywords.extend(remove.into_iter().map(|v| ("remove".into(), v)));
                keywords.extend(slow.map(|v| ("slow".into(), v)));
                keywords.extend(summary.map(|v| ("summary".into(), v)));
                for (name, values) in [
                    ("affected", affected),
                    ("fixed", fixed),
                    ("cwe", cwe),
                    ("credit", credit),
                    ("reference", reference),
                ] {
                    keywords.extend(values.into_iter().map(|v| (name.into(), v)));
                }
                keywords.extend(cve.map(|v| ("cve".into(), v)));
                keywords.extend(mitigation.map(|v| ("mitigation".into(), v)));
                keywords.extend(announced.map(|v| ("announced".into(), v)));
                Request::CaseSet { id, keywords }
            }
            Admin::Case(CaseCommand::Draft { id }) => Request::CaseSet {
                id,
                keywords: vec![("draft".into(), "yes".into())],
            },
        })
    }
}

/// A leak from a file, or from standard input for `-`.
fn read_leak(file: &Path) -> std::io::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut leak = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut leak)?;
        Ok(leak)
    } else {
        std::fs::read(file)
    }
}
