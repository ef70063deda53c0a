//! The `embargod` command line: parses arguments, loads the config, and
//! hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing::error;

use embargod::commands::{self, Level};
use embargod::config::{self, Config};
use embargod::control::Command as AdminCommand;
use embargod::daemon::{Daemon, Options, Sockets};

/// sysexits: a configuration problem.
const EX_CONFIG: u8 = 78;
/// sysexits: the service cannot start for another reason.
const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "embargod",
    version,
    about = "Private security mailing lists under an embargo policy"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the list key (and store key) if missing; print the list's public certificate.
    Init,
    /// Validate the configuration and every key, like `nginx -t`.
    Check,
    /// Run the daemon.
    Run,
    /// Walk through the whole flow in a temporary folder.
    Demo,
    /// List pending embargoes: case, public time, poster, recipients.
    Embargoes,
    /// Release a case's advisory now, or move its disclosure time.
    Release {
        /// The case, like KAP-2026-0001.
        case: String,
        /// Publish now, before the agreed time.
        #[arg(long, requires = "reason", conflicts_with = "at")]
        now: bool,
        /// Why the embargo ends early (sent to the PST and distributors).
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
enum QueueCommand {
    /// Retry a queued copy now.
    Retry { id: String },
}

#[derive(Subcommand)]
enum CaseCommand {
    /// Everything about a case.
    Show { id: String },
    /// Change a case (each option is the keyword command of the same name).
    Set {
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
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Who got what in a case, when, under which key.
    Show { case: String },
    /// Walk the hash chain; name the first bad entry.
    Verify,
}

#[derive(Subcommand)]
enum LeakCommand {
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
enum MemberCommand {
    /// Lift a member's suspension.
    Reinstate { member: String },
    /// Members with strikes, and who is suspended.
    List,
}

fn main() -> ExitCode {
    return_large_buffers();
    let cli = Cli::parse();
    // The demo narrates on stdout; its daemon only speaks up for problems.
    let default_level = match cli.command {
        Command::Demo => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::Demo => runtime().block_on(async {
            match commands::demo(&mut std::io::stdout()).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }),
        command => {
            let config = match Config::load(&cli.config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("embargod: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            match command {
                Command::Init => init(&config),
                Command::Check => check(&config),
                Command::Run => match runtime().block_on(run(config)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        error!("{e:#}");
                        eprintln!("embargod: {e:#}");
                        ExitCode::from(EX_UNAVAILABLE)
                    }
                },
                Command::Embargoes => admin(config, AdminCommand::Embargoes),
                Command::Release {
                    case,
                    now,
                    reason,
                    at,
                } => admin(
                    config,
                    AdminCommand::Release {
                        case,
                        now,
                        reason,
                        at,
                    },
                ),
                Command::Trace { file } => match read_leak(&file) {
                    Ok(leak) => {
                        use base64::Engine;
                        let leak = base64::engine::general_purpose::STANDARD.encode(leak);
                        admin(config, AdminCommand::Trace { leak })
                    }
                    Err(e) => {
                        eprintln!("embargod: {}: {e}", file.display());
                        ExitCode::FAILURE
                    }
                },
                Command::Ledger(LedgerCommand::Show { case }) => {
                    admin(config, AdminCommand::LedgerShow { case })
                }
                Command::Ledger(LedgerCommand::Verify) => admin(config, AdminCommand::LedgerVerify),
                Command::Leak(LeakCommand::Record { case, member, what }) => {
                    admin(config, AdminCommand::LeakRecord { case, member, what })
                }
                Command::Member(MemberCommand::Reinstate { member }) => {
                    admin(config, AdminCommand::MemberReinstate { member })
                }
                Command::Member(MemberCommand::List) => admin(config, AdminCommand::Members),
                Command::Cases => admin(config, AdminCommand::Cases),
                Command::Requests => admin(config, AdminCommand::Requests),
                Command::Status => admin(config, AdminCommand::Status),
                Command::Queue { command: None } => admin(config, AdminCommand::Queue),
                Command::Queue {
                    command: Some(QueueCommand::Retry { id }),
                } => admin(config, AdminCommand::QueueRetry { id }),
                Command::Case(CaseCommand::Show { id }) => {
                    admin(config, AdminCommand::CaseShow { id })
                }
                Command::Case(CaseCommand::Set {
                    id,
                    lead,
                    cvss,
                    public,
                    done,
                    add,
                    remove,
                    slow,
                }) => {
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
                    admin(config, AdminCommand::CaseSet { id, keywords })
                }
                Command::Demo => unreachable!("handled above"),
            }
        }
    }
}

/// An admin command, through the daemon or on the store.
fn admin(config: Config, command: AdminCommand) -> ExitCode {
    let response = runtime().block_on(commands::admin(config, command));
    if response.ok {
        print!("{}", response.text.unwrap_or_default());
        ExitCode::from(response.exit.unwrap_or(0))
    } else {
        eprintln!(
            "embargod: {}",
            response.error.unwrap_or_else(|| "failed".into())
        );
        ExitCode::FAILURE
    }
}

/// A leak from a file, or from standard input for `-`.
fn read_leak(file: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut leak = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut leak)?;
        Ok(leak)
    } else {
        std::fs::read(file)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Logs go to stderr (the journal under systemd); `RUST_LOG` takes
/// a tracing filter such as `debug` or `embargod::lmtp=debug`.
fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only for a person at a terminal: a file or the journal
    // would keep the escape codes.
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        // `embargod status` shows the latest warnings and errors.
        .with(embargod::status::RecentErrors);
    match format {
        LogFormat::Text => registry.with(lines).init(),
        LogFormat::Json => registry.with(lines.json()).init(),
    }
}

fn init(config: &Config) -> ExitCode {
    match commands::init(config) {
        Ok(done) => {
            if done.created_list_key {
                eprintln!(
                    "created list key {} in {}",
                    done.list_key.fingerprint(),
                    config.list_key.display()
                );
            } else {
                eprintln!(
                    "list key {} already in {}; left as it is",
                    done.list_key.fingerprint(),
                    config.list_key.display()
                );
            }
            if done.created_store_key {
                eprintln!("created store key in {}", config.store.key.display());
            }
            print!("{}", done.list_key.public_armored());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embargod: {e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn check(config: &Config) -> ExitCode {
    let findings = commands::check(config, SystemTime::now());
    for finding in &findings {
        println!("{finding}");
    }
    let mut errors = findings.iter().filter(|f| f.level == Level::Error).count();
    // Suspensions live in the store: ask the daemon, or read the store.
    if errors == 0 && config.store.path.exists() {
        let response = runtime().block_on(commands::admin(config.clone(), AdminCommand::Members));
        match (response.ok, response.text, response.error) {
            (true, Some(text), _) => {
                for line in text.lines().filter(|l| l.contains("SUSPENDED")) {
                    println!("warning member {line}: gets no copies; `embargod member reinstate` lifts it");
                }
            }
            (_, _, error) => {
                println!("error   store: {}", error.unwrap_or_default());
                errors += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!("embargod: {errors} problem(s) in {}", config.file.display());
        ExitCode::from(EX_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let sockets = Sockets::bind(&config)
        .await
        .context("cannot bind the listeners")?;
    let daemon = Daemon::open(config, Options::default()).context("cannot start")?;
    let shared = daemon.shared();
    daemon.run(sockets, signals(shared)).await;
    Ok(())
}

/// Handles signals until SIGTERM or SIGINT: SIGHUP reloads the config and
/// the keys (a bad new config is refused and the old one stays).
async fn signals(shared: std::sync::Arc<embargod::state::Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading, sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading"))]);
                match shared.reload() {
                    Ok(restart) if restart.is_empty() => tracing::info!("configuration reloaded"),
                    Ok(restart) => tracing::warn!(?restart, "configuration reloaded; these settings change only at a restart"),
                    Err(e) => tracing::error!(error = %e, "reload refused; the previous configuration stays in force"),
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
}

/// glibc raises its mmap threshold to the size of any large block freed
/// (up to 32 MiB), after which buffers below that come from arenas that
/// keep their memory, one arena per thread up to 8 per core. After one
/// large report the daemon would hold several of its size for good. A
/// fixed 8 MiB threshold hands every buffer of a large report back when it
/// is freed, while the 4 MiB packet buffers Sequoia's writers reserve for
/// each copy (and mostly leave untouched) stay in the heap instead of
/// costing an mmap, an munmap and a TLB shootdown per copy; the heap is
/// trimmed past 8 MiB, and two arenas bound what small buffers keep.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers() {
    // SAFETY: mallopt only sets allocator parameters, and runs first
    // thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers() {}
