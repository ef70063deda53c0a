//! The `embargod` command line: parses arguments, loads the config, and
//! hands over to the library.

mod cli;

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;
use tracing::error;

use cli::{Cli, Command, LogFormat};

use embargod::commands::{self, Level};
use embargod::config::Config;
use embargod::control::{Command as Request, Response};
use embargod::daemon::{Daemon, Options, Sockets};
use embargod::strikes::MemberState;

/// sysexits: a configuration problem.
const EX_CONFIG: u8 = 78;
/// sysexits: the service cannot start for another reason.
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    return_large_buffers();
    let cli = Cli::parse();
    // The demo narrates on stdout; its daemon only speaks up for problems.
    let default_level = match cli.command {
        // A pipe transport's log: only what went wrong.
        Command::Demo | Command::Deliver { .. } => "warn",
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
                Command::Deliver {
                    list,
                    recipient,
                    from,
                } => deliver(config, list.list(), recipient, &from),
                Command::Check { offline } => check(&config, offline),
                Command::Run => match runtime().block_on(run(config)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        error!("{e:#}");
                        eprintln!("embargod: {e:#}");
                        ExitCode::from(EX_UNAVAILABLE)
                    }
                },
                Command::Admin(command) => match Request::try_from(command) {
                    Ok(request) => admin(config, request),
                    Err(e) => {
                        eprintln!("embargod: {e}");
                        ExitCode::FAILURE
                    }
                },
                Command::Demo => unreachable!("handled above"),
            }
        }
    }
}

/// `deliver`: standard input to `list` (or the owner address), the exit
/// status a pipe transport reads.
fn deliver(
    config: Config,
    list: Option<embargod::config::ListName>,
    recipient: Option<String>,
    from: &str,
) -> ExitCode {
    use std::io::Read;
    // Never more than the LMTP listener would take, plus one byte to
    // know it was more.
    let limit = config.lmtp.max_message_size;
    let mut message = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(limit as u64 + 1)
        .read_to_end(&mut message)
    {
        eprintln!("embargod: standard input: {e}");
        return ExitCode::from(commands::deliver::EX_TEMPFAIL);
    }
    if message.len() > limit {
        eprintln!("embargod: 552 5.3.4 message larger than lmtp.max_message_size ({limit} bytes)");
        return ExitCode::from(commands::deliver::EX_DATAERR);
    }
    let outcome = runtime().block_on(commands::deliver::deliver(
        config, list, recipient, from, &message,
    ));
    if outcome.status != commands::deliver::EX_OK {
        eprintln!("embargod: {}", outcome.message);
    }
    ExitCode::from(outcome.status)
}

/// An admin command, through the daemon or on the store.
fn admin(config: Config, command: Request) -> ExitCode {
    match runtime().block_on(commands::admin(config, command)) {
        Response::Done { text, exit, .. } => {
            print!("{text}");
            ExitCode::from(exit)
        }
        Response::Failed { error } => {
            eprintln!("embargod: {error}");
            ExitCode::FAILURE
        }
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

fn check(config: &Config, offline: bool) -> ExitCode {
    let mut findings = commands::check(config, SystemTime::now());
    if !offline {
        findings.extend(runtime().block_on(commands::check_servers(config)));
    }
    for finding in &findings {
        println!("{finding}");
    }
    if offline {
        println!("(--offline: no mailbox or SMTP server was contacted)");
    }
    let mut errors = findings.iter().filter(|f| f.level == Level::Error).count();
    // Suspensions live in the store: ask the daemon, or read the store.
    if errors == 0 && config.store.path.exists() {
        let response = runtime().block_on(commands::admin(config.clone(), Request::Members));
        let (states, error) = match response {
            Response::Done { data, .. } => (
                data.map(serde_json::from_value::<Vec<(String, MemberState)>>),
                None,
            ),
            Response::Failed { error } => (None, Some(error)),
        };
        match states {
            Some(Ok(states)) => {
                for (member, _) in states.iter().filter(|(_, s)| s.suspended.is_some()) {
                    println!("warning member {member}: SUSPENDED, gets no copies; `embargod member reinstate {member}` lifts it");
                }
            }
            Some(Err(e)) => {
                println!("error   store: the daemon's answer: {e}");
                errors += 1;
            }
            None => {
                let why = error.unwrap_or_else(|| {
                    "the running daemon gave no member data (an older version?); restart it".into()
                });
                println!("error   store: {why}");
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
    daemon
        .run(sockets, embargod::signal::until_stopped(shared))
        .await;
    Ok(())
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
