//! Fan-out benchmark: one signed+encrypted copy per member of a 100-member
//! list, embargod against the one-`gpg`-process-per-member approach.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench fanout
//! ```
//!
//! What is measured, for a plain-text report of 20 KiB and of 1 MiB:
//!
//! - **embargod**: the real code path, [`embargod::fanout::process`], on a
//!   sandbox installation with 100 members (Sequoia Cv25519 keys), for a
//!   post to the security list arriving over LMTP. For an unencrypted,
//!   unsigned message it parses the message, then builds, signs (list
//!   key) and encrypts (member key) one PGP/MIME copy per member on every
//!   core (rayon). The median of several rounds is taken.
//!   Untimed, one copy per size is opened with its member's secret key to
//!   check the list signature and the content.
//! - **gpg per member**: what list managers built on GnuPG do (Schleuder,
//!   for one): one `gpg --sign --encrypt` process per member, run one
//!   after the other, in a throwaway `GNUPGHOME` holding the same list key
//!   and member certificates. The message goes in on stdin and the armored
//!   OpenPGP message is read back from stdout. Only the 100-member loop is
//!   timed; a warm-up call starts `gpg-agent` first.
//!
//! The figures are wall-clock milliseconds per copy (loop time / 100).
//! embargod's copies are complete PGP/MIME messages; gpg's are the bare
//! armored OpenPGP message, so embargod does somewhat more work per copy.
//! gpg also compresses (its default), so its copies are smaller. The copy
//! sizes are printed alongside the timings.
//! The targets (embargod at least 10x faster at 20 KiB and 2x at 1 MiB) are
//! reported, not enforced: a miss prints `BELOW TARGET` and the process
//! still exits 0. Without `gpg` on `PATH` only embargod's figures appear.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use sequoia_openpgp::serialize::Serialize;
use sequoia_openpgp::Cert;

use embargod::clock::to_millis;
use embargod::config::{Config, ListName};
use embargod::fanout::Context;
use embargod::keys::Keys;
use embargod::pgp::open::{open, Signers};
use embargod::sandbox::{open_copy, Sandbox, SECURITY};
use embargod::store::{Batch, Incoming, IncomingMeta, Source, Store, StoreKey};

/// Members of the list, each getting their own copy.
const MEMBERS: usize = 100;

/// One benchmarked message size, with its rounds and target.
struct Case {
    label: &'static str,
    /// Size of the message body in bytes.
    body: usize,
    /// Timed rounds of embargod's fan-out (median reported).
    embargod_rounds: usize,
    /// Most rounds of the gpg loop (median reported).
    gpg_rounds: usize,
    /// No further gpg round starts once this much time went into them.
    gpg_budget: Duration,
    /// Required speed-up of embargod over the gpg loop.
    target: f64,
}

const CASES: [Case; 2] = [
    Case {
        label: "20 KiB",
        body: 20 * 1024,
        embargod_rounds: 5,
        gpg_rounds: 3,
        gpg_budget: Duration::from_secs(120),
        target: 10.0,
    },
    Case {
        label: "1 MiB",
        body: 1024 * 1024,
        embargod_rounds: 3,
        gpg_rounds: 3,
        gpg_budget: Duration::from_secs(60),
        target: 2.0,
    },
];

/// Figures for one size.
struct Figures {
    embargod_ms_per_copy: f64,
    /// `None` when gpg is not available.
    gpg_ms_per_copy: Option<f64>,
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores available: {cores}");

    let dir = tempfile::Builder::new()
        .prefix("embargod-bench-")
        .tempdir()
        .expect("temporary folder");
    eprintln!("generating the list key and {MEMBERS} member keys ...");
    let (sandbox, first_member) = build_sandbox(dir.path());
    let config_file = sandbox.write_config().expect("writing the config");
    let config = Config::load(&config_file).expect("loading the sandbox config");
    let keys = Keys::load(&config).expect("loading the sandbox keys");
    // Posts to the security list never touch the store, but processing
    // takes one (embargoes live there).
    let store_key = StoreKey::load(&config.store.key).expect("loading the store key");
    let store = Store::open(&config.store.path, store_key).expect("opening the store");

    let gpg = match Gpg::version() {
        Some(version) => {
            println!("gpg: {version}");
            eprintln!("importing the keys into a temporary GNUPGHOME ...");
            Some(Gpg::setup(&sandbox, &first_member))
        }
        None => {
            println!("gpg: not found on PATH; the gpg-per-member comparison is skipped");
            None
        }
    };
    println!();

    // An untimed call first, so the rayon thread pool is already up.
    let warm_up = message(1024, Utc::now());
    fan_out(&config, &keys, &store, 0, &warm_up);

    let mut figures = Vec::new();
    for case in &CASES {
        let raw = message(case.body, Utc::now());

        let mut rounds = Vec::new();
        for round in 0..case.embargod_rounds {
            let (elapsed, batch) = fan_out(&config, &keys, &store, round as u64 + 1, &raw);
            rounds.push(elapsed);
            if round == 0 {
                check_copy(&batch, &sandbox, &first_member, &raw);
                let bytes: usize = batch.add_queue.iter().map(|(_, c)| c.bytes.len()).sum();
                println!(
                    "{}: message {} bytes; embargod copy {} bytes (PGP/MIME)",
                    case.label,
                    raw.len(),
                    bytes / MEMBERS
                );
            }
        }
        print_rounds(case.label, "embargod", &rounds);
        let embargod_ms_per_copy = per_copy_ms(median(&rounds));

        let gpg_ms_per_copy = gpg.as_ref().map(|gpg| {
            let mut rounds = Vec::new();
            let mut spent = Duration::ZERO;
            while rounds.len() < case.gpg_rounds && (rounds.is_empty() || spent < case.gpg_budget) {
                let (elapsed, bytes) = gpg.fan_out(&raw);
                spent += elapsed;
                rounds.push(elapsed);
                if rounds.len() == 1 {
                    println!(
                        "{}: gpg copy {} bytes (armored OpenPGP only)",
                        case.label,
                        bytes / MEMBERS
                    );
                }
            }
            print_rounds(case.label, "gpg-per-member", &rounds);
            per_copy_ms(median(&rounds))
        });

        figures.push(Figures {
            embargod_ms_per_copy,
            gpg_ms_per_copy,
        });
    }

    println!();
    print_table(&figures);
    // `gpg` drops here: its agent is stopped and its GNUPGHOME removed.
}

/// The sandbox: list key, store key and [`MEMBERS`] members on the
/// security list. Also returns the first member's secret key.
fn build_sandbox(dir: &Path) -> (Sandbox, Cert) {
    let mut sandbox = Sandbox::new(dir).expect("creating the sandbox");
    let secrets: Vec<Cert> = (0..MEMBERS)
        .map(|i| {
            sandbox
                .generate_member(&format!("member{i:03}"), ListName::Security)
                .expect("generating a member key")
        })
        .collect();
    let first = secrets.into_iter().next().expect("at least one member");
    (sandbox, first)
}

/// Runs the real fan-out of `raw` as spool entry `id` and checks that
/// every member got a copy. Returns the time taken and the batch.
fn fan_out(config: &Config, keys: &Keys, store: &Store, id: u64, raw: &[u8]) -> (Duration, Batch) {
    let ctx = Context {
        config,
        keys,
        store,
        now: Utc::now(),
    };
    let incoming = Incoming {
        meta: IncomingMeta {
            received: to_millis(ctx.now),
            source: Source::Lmtp {
                mail_from: "reporter@example.net".into(),
                lists: vec![ListName::Security],
            },
        },
        raw: raw.to_vec(),
    };
    let start = Instant::now();
    let batch = embargod::fanout::process(&ctx, id, incoming);
    let elapsed = start.elapsed();
    assert_eq!(
        batch.add_queue.len(),
        MEMBERS,
        "every member should get a copy (quarantined: {}, notices: {})",
        batch.quarantine.len(),
        batch.add_spool.len()
    );
    (elapsed, batch)
}

/// Opens the first member's copy with their secret key (untimed): it must
/// carry a good list signature and the report's text.
fn check_copy(batch: &Batch, sandbox: &Sandbox, secret: &Cert, raw: &[u8]) {
    let member = &sandbox.members[0].id;
    let (_, copy) = batch
        .add_queue
        .iter()
        .find(|(_, copy)| &copy.member == member)
        .expect("a copy for the first member");
    let opened = open_copy(&copy.bytes, secret, &sandbox.list_key).expect("opening a copy");
    assert!(
        opened
            .signatures
            .good_signers()
            .any(|signer| signer == "list"),
        "copy not signed by the list key: {}",
        opened.signatures
    );
    let body_start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator")
        + 4;
    let sample = &raw[body_start..body_start + 60];
    assert!(
        opened.content.windows(sample.len()).any(|w| w == sample),
        "copy does not hold the report text"
    );
}

/// A plain RFC 5322 report: From, To, Subject and Date, then a text body
/// of exactly `body_size` bytes in CRLF lines of at most 77 characters.
/// The words are picked pseudo-randomly (fixed seed) so that the body
/// compresses about as well as real prose, not like one repeated line.
fn message(body_size: usize, date: DateTime<Utc>) -> Vec<u8> {
    const WORDS: &str = "\
         the a of to in and is when parser buffer overflow length header field request \
         server client input crafted remote attacker can trigger read write beyond end \
         allocated memory function returns without checking value leads crash denial \
         service possibly code execution version affected patch attached reproduce \
         steps following configuration default build release branch commit fix upstream \
         embargo disclosure date proposed coordinate distributors CVE identifier \
         requested impact severity high low moderate integer signed unsigned cast \
         truncation loop index array pointer null dereference freed use after free \
         double race condition lock thread timing side channel key certificate \
         validation bypass authentication";
    const WIDTH: usize = 72;
    assert!(body_size >= 2, "a body holds at least one line break");
    let words: Vec<&str> = WORDS.split_whitespace().collect();

    // xorshift64: deterministic, good enough to pick words.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_word = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        words[(state % words.len() as u64) as usize]
    };
    let mut line = |max: usize| {
        let mut text = String::from(next_word());
        loop {
            let word = next_word();
            if text.len() + 1 + word.len() > max {
                return text;
            }
            text.push(' ');
            text.push_str(word);
        }
    };

    let mut body = Vec::with_capacity(body_size);
    // Whole lines while plenty of room is left; a line plus CRLF is at
    // most WIDTH + 2 bytes, so at least 6 bytes remain for the last one.
    while body_size - body.len() >= WIDTH + 8 {
        body.extend_from_slice(line(WIDTH).as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    // The last line fills the body to the exact size and ends in a full stop.
    let last = body_size - body.len() - 2;
    let mut text = line(last + 20);
    while text.len() < last {
        text.push_str(" and more");
    }
    text.truncate(last.saturating_sub(1));
    if last > 0 {
        text.push('.');
    }
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(b"\r\n");
    assert_eq!(body.len(), body_size);
    assert!(
        body.split_inclusive(|&b| b == b'\n')
            .all(|line| line.len() <= 79 && line.ends_with(b"\r\n")),
        "every line ends in CRLF and has at most 77 characters"
    );

    let mut raw = format!(
        "From: Reporter <reporter@example.net>\r\n\
         To: {SECURITY}\r\n\
         Subject: Heap overflow in the header parser ({body_size} byte report)\r\n\
         Date: {}\r\n\
         \r\n",
        date.to_rfc2822()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw
}

/// A throwaway GnuPG home holding the list's secret key and the members'
/// certificates. Dropping it stops the agent, then removes the folder.
struct Gpg {
    home: tempfile::TempDir,
    list_fingerprint: String,
    member_fingerprints: Vec<String>,
}

impl Gpg {
    /// The first line of `gpg --version`, or `None` if gpg cannot be run.
    fn version() -> Option<String> {
        let output = Command::new("gpg").arg("--version").output().ok()?;
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines().next().map(str::to_string)
    }

    /// Imports the sandbox's keys and makes one warm-up call so that
    /// `gpg-agent` is running before anything is timed. The warm-up copy
    /// goes to the first member and is opened with `first_secret`, to show
    /// that gpg signs and encrypts as embargod does.
    fn setup(sandbox: &Sandbox, first_secret: &Cert) -> Gpg {
        // gpg-agent may put its socket in GNUPGHOME, and unix socket paths
        // are limited to about 100 bytes: keep the folder name short and
        // directly under /tmp rather than under a possibly long TMPDIR.
        let home = tempfile::Builder::new()
            .prefix("fgpg")
            .tempdir_in("/tmp")
            .expect("temporary GNUPGHOME");
        let gpg = Gpg {
            home,
            list_fingerprint: sandbox.list_key.fingerprint(),
            member_fingerprints: sandbox
                .members
                .iter()
                .map(|m| m.cert.fingerprint().to_hex())
                .collect(),
        };

        let mut keyring = Vec::new();
        sandbox
            .list_key
            .cert()
            .as_tsk()
            .armored()
            .serialize(&mut keyring)
            .expect("serializing the list key");
        for member in &sandbox.members {
            member
                .cert
                .armored()
                .serialize(&mut keyring)
                .expect("serializing a member certificate");
        }
        let (status, _, stderr) = gpg.run(&["--batch", "--quiet", "--import"], &keyring);
        assert!(
            status,
            "gpg --import failed:\n{}",
            String::from_utf8_lossy(&stderr)
        );

        let raw = message(1024, Utc::now());
        let copy = gpg.seal(&gpg.member_fingerprints[0], &raw);
        let signers = Signers::new(vec![(
            "list".into(),
            sandbox.list_key.cert().clone().strip_secret_key_material(),
        )]);
        let opened = open(first_secret, &copy, &signers, 1 << 20, SystemTime::now())
            .expect("opening gpg's copy");
        assert!(opened.encrypted && opened.plaintext == raw);
        assert!(
            opened
                .signatures
                .good_signers()
                .any(|signer| signer == "list"),
            "gpg's copy not signed by the list key: {}",
            opened.signatures
        );
        gpg
    }

    /// A `gpg` command using this home.
    fn command(&self) -> Command {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", self.home.path());
        command
    }

    /// Runs gpg with `input` on stdin: success, stdout, stderr. stdin is
    /// written from a second thread, because gpg starts writing output
    /// before it has read all of a large input.
    fn run(&self, args: &[&str], input: &[u8]) -> (bool, Vec<u8>, Vec<u8>) {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting gpg");
        let mut stdin = child.stdin.take().expect("gpg stdin");
        let output = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(input));
            let output = child.wait_with_output().expect("waiting for gpg");
            let written: io::Result<()> = writer.join().expect("stdin writer");
            written.expect("writing gpg's stdin");
            output
        });
        (output.status.success(), output.stdout, output.stderr)
    }

    /// One copy, the way a gpg-based list manager makes it: sign with the
    /// list key, encrypt to one member, one process. Returns the copy.
    fn seal(&self, member: &str, raw: &[u8]) -> Vec<u8> {
        let (status, stdout, stderr) = self.run(
            &[
                "--batch",
                "--yes",
                "--quiet",
                "--trust-model",
                "always",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--armor",
                "--sign",
                "--local-user",
                &self.list_fingerprint,
                "--encrypt",
                "--recipient",
                member,
                "--output",
                "-",
            ],
            raw,
        );
        assert!(
            status && stdout.starts_with(b"-----BEGIN PGP MESSAGE-----"),
            "gpg --sign --encrypt failed:\n{}",
            String::from_utf8_lossy(&stderr)
        );
        stdout
    }

    /// One copy per member, one process after the other. Returns the time
    /// taken and the total size of the copies.
    fn fan_out(&self, raw: &[u8]) -> (Duration, usize) {
        let start = Instant::now();
        let bytes = self
            .member_fingerprints
            .iter()
            .map(|member| self.seal(member, raw).len())
            .sum();
        (start.elapsed(), bytes)
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Leave no agent running; the folder itself goes right after this.
        let stopped = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
        if !matches!(stopped, Ok(status) if status.success()) {
            eprintln!("warning: `gpgconf --kill all` failed; a gpg-agent may still run");
        }
    }
}

fn median(rounds: &[Duration]) -> Duration {
    let mut sorted = rounds.to_vec();
    sorted.sort();
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2
    }
}

fn per_copy_ms(total: Duration) -> f64 {
    total.as_secs_f64() * 1000.0 / MEMBERS as f64
}

/// One line with every round's total, so outliers are visible.
fn print_rounds(size: &str, who: &str, rounds: &[Duration]) {
    let totals: Vec<String> = rounds
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{size}: {who}, {MEMBERS} copies per round, round totals (ms): {}",
        totals.join(" ")
    );
}

fn print_table(figures: &[Figures]) {
    println!("fan-out to {MEMBERS} members, one signed+encrypted copy each");
    println!(
        "{:<10}{:<19}{:<25}{:<11}target",
        "size", "embargod ms/copy", "gpg-per-member ms/copy", "speed-up"
    );
    for (case, figures) in CASES.iter().zip(figures) {
        let target = format!(">= {}x", case.target);
        let (gpg, speed_up, verdict) = match figures.gpg_ms_per_copy {
            Some(gpg) => {
                let speed_up = gpg / figures.embargod_ms_per_copy;
                let verdict = if speed_up >= case.target {
                    "ok"
                } else {
                    "BELOW TARGET"
                };
                (format!("{gpg:.2}"), format!("{speed_up:.1}x"), verdict)
            }
            None => ("-".into(), "-".into(), "not compared"),
        };
        println!(
            "{:<10}{:<19}{:<25}{:<11}{:<8}{verdict}",
            case.label,
            format!("{:.2}", figures.embargod_ms_per_copy),
            gpg,
            speed_up,
            target
        );
    }
}
