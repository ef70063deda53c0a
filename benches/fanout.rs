//! End-to-end fan-out benchmark: what a user sees, through the production
//! transport, next to what they would use instead.
//!
//! ```text
//! cargo bench --bench fanout
//! FANOUT_BENCH_ONLY="25 MiB" cargo bench --bench fanout   # one size
//! ```
//!
//! **embargod**: the release binary, started on a sandbox installation with
//! 100 members (Sequoia Cv25519 keys) and its SMTP transport pointed at a
//! minimal SMTP server in this program on loopback (it answers `250` to
//! every transaction and counts messages). A report goes in over LMTP; the
//! time runs from the LMTP connect to the moment the server has taken the
//! 100th member's copy (the final `.` answered). Each size runs on a fresh
//! daemon, whose peak RSS (`VmHWM`) is read from `/proc` afterwards.
//!
//! **gpg loop**: one `gpg --sign --encrypt --armor` process per member, one
//! after the other, in a throwaway `GNUPGHOME` holding the same list key
//! and member certificates, the report on stdin: what list managers built
//! on GnuPG do. Its copies are not sent anywhere (in its favour). For
//! 25 MiB, ten members are timed and the figure scaled to 100.
//!
//! Bodies: 20 KiB and 1 MiB of prose (words drawn from a security
//! report's vocabulary: it compresses like prose, about 3:1, not like
//! Lorem ipsum); and a short report with a packet capture attached
//! (base64, about 24 MiB in all, within the default `max_message_size`).
//!
//! Also: the LMTP accept latency of 5 KiB reports sent every 20 ms while
//! a 1 MiB fan-out runs (p50 and p99).
//!
//! Targets (2 cores): 20 KiB ≤ 60 ms and ≥ 10× the gpg loop; 1 MiB
//! ≤ 1.2 s and ≥ 4×; 25 MiB peak RSS ≤ 3 × message + 64 MiB and under 2×
//! the gpg loop's time; accept p99 ≤ 20 ms. A miss prints `MISSED`; the
//! process exits 0 either way. Without `gpg` on `PATH` its column is
//! empty.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use sequoia_openpgp::serialize::Serialize;
use sequoia_openpgp::Cert;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

use embargod::config::{ListName, ListenAddr};
use embargod::lmtp::client;
use embargod::pgp::open::{open, Signers};
use embargod::sandbox::{Sandbox, SECURITY};

/// Members of the list, each getting their own copy.
const MEMBERS: usize = 100;

/// The report's shape.
#[derive(Clone, Copy)]
enum Body {
    /// A plain-text report of this many bytes of prose.
    Prose(usize),
    /// A short report with a packet capture attached; this many bytes of
    /// capture before base64.
    Capture(usize),
}

/// One benchmarked message, its rounds and targets.
struct Case {
    label: &'static str,
    body: Body,
    rounds: usize,
    /// Members timed in the gpg loop (scaled to [`MEMBERS`]).
    gpg_members: usize,
    /// End-to-end time to reach, ms.
    target_ms: Option<f64>,
    /// Speed-up over the gpg loop to reach (0.5: at most twice its time).
    target_ratio: f64,
    /// Whether peak RSS is held to 3 × message + 64 MiB.
    rss_target: bool,
}

const CASES: [Case; 3] = [
    Case {
        label: "20 KiB",
        body: Body::Prose(20 * 1024),
        rounds: 7,
        gpg_members: MEMBERS,
        target_ms: Some(60.0),
        target_ratio: 10.0,
        rss_target: false,
    },
    Case {
        label: "1 MiB",
        body: Body::Prose(1024 * 1024),
        rounds: 3,
        gpg_members: MEMBERS,
        target_ms: Some(1200.0),
        target_ratio: 4.0,
        rss_target: false,
    },
    Case {
        label: "25 MiB",
        body: Body::Capture(18 * 1024 * 1024),
        rounds: 1,
        gpg_members: 10,
        target_ms: None,
        target_ratio: 0.5,
        rss_target: true,
    },
];

/// One size's figures.
struct Row {
    label: &'static str,
    message: usize,
    copy: usize,
    rounds: Vec<Duration>,
    /// The daemon's CPU time (user and system) per round.
    cpu: Duration,
    gpg: Option<Duration>,
    rss: u64,
    case: &'static Case,
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores available: {cores}");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("embargod-bench-")
        .tempdir()
        .expect("temporary folder");
    eprintln!("generating the list key and {MEMBERS} member keys ...");
    let mut sandbox = Sandbox::new(dir.path()).expect("sandbox");
    let secrets: Vec<Cert> = (0..MEMBERS)
        .map(|i| {
            sandbox
                .generate_member(&format!("member{i:03}"), ListName::Security)
                .expect("member key")
        })
        .collect();
    let sink = runtime.block_on(Sink::start());
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{}\"\ntls = \"none\"\nfrom = \"{}\"\n",
        sink.port,
        embargod::sandbox::OWNER
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = sandbox.write_config().expect("config");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    let lmtp = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().expect("address"));

    let gpg = match Gpg::version() {
        Some(version) => {
            println!("gpg: {version}");
            Some(Gpg::setup(&sandbox, &secrets[0]))
        }
        None => {
            println!("gpg: not found on PATH; its column stays empty");
            None
        }
    };
    let mut rows = Vec::new();
    let mut accept = None;
    let only = std::env::var("FANOUT_BENCH_ONLY").ok();
    for case in CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.label))
    {
        let raw = report(case.body, Utc::now());
        eprintln!("{}: {} bytes, {MEMBERS} members ...", case.label, raw.len());
        let mut daemon = Daemon::start(&config, &lmtp, &runtime);
        // Warm: keys read, relay connections open.
        runtime.block_on(fan_out(
            &lmtp,
            &sink,
            &report(Body::Prose(2048), Utc::now()),
        ));
        let mut rounds = Vec::new();
        let cpu_before = daemon.cpu();
        for _ in 0..case.rounds {
            rounds.push(runtime.block_on(fan_out(&lmtp, &sink, &raw)));
        }
        let cpu = (daemon.cpu() - cpu_before) / case.rounds as u32;
        let copy = sink.last_size.load(Ordering::Relaxed);
        if matches!(case.body, Body::Prose(n) if n == 1024 * 1024) {
            accept = Some(runtime.block_on(accept_during_fan_out(&lmtp, &sink, &raw)));
        }
        let rss = daemon.peak_rss();
        daemon.stop();
        let gpg = gpg.as_ref().map(|gpg| {
            let members = &gpg.member_fingerprints[..case.gpg_members];
            let start = Instant::now();
            for member in members {
                gpg.seal(member, &raw);
            }
            start.elapsed() * (MEMBERS / case.gpg_members) as u32
        });
        rows.push(Row {
            label: case.label,
            message: raw.len(),
            copy,
            rounds,
            cpu,
            gpg,
            rss,
            case,
        });
    }
    println!();
    print_table(&rows, accept);
    in_process(&config);
}

/// The second table: one copy sealed in process, on one thread, as the
/// delivery worker's sealing threads do (marks, signature, encryption,
/// armor), without the store, LMTP or SMTP. Per copy, median of 100.
fn in_process(config: &Path) {
    use embargod::config::Marks;
    use embargod::context::Origin;
    use embargod::fanout::copies::{seal_copy, Marking, Outgoing};
    let config = embargod::config::Config::load(config).expect("config");
    let keys = embargod::keys::Keys::load(&config).expect("keys");
    let secret = embargod::mark::MarkSecret::derive(b"bench");
    let identity = embargod::mime::outbound::ListIdentity::new(&config, &config.lists.security);
    println!("\nIn process, one thread: sealing one member's copy (ms, median of 100)");
    println!("{:<8} {:>10} {:>10}", "message", "visible", "invisible");
    for case in &CASES {
        let raw = report(case.body, Utc::now());
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers")
            + 2;
        let content = [
            &b"Content-Type: text/plain; charset=utf-8\r\n"[..],
            &raw[split..],
        ]
        .concat();
        let mut row = Vec::new();
        for marks in [Marks::Visible, Marks::Invisible] {
            let outgoing = Outgoing::new(
                raw[..split].to_vec(),
                "Message to the security list\n".into(),
                content.clone(),
                None,
                Marking {
                    marks,
                    patches: false,
                },
            );
            let job = outgoing
                .clone()
                .into_job(1, ListName::Security, Origin::Mail, Utc::now());
            let rounds = if raw.len() > 4 << 20 { 5 } else { 100 };
            let mut times: Vec<Duration> = (0..rounds)
                .map(|i| {
                    let member = &config.members_of(&config.lists.security)[i % MEMBERS];
                    let copy = embargod::store::QueuedCopy {
                        id: i as u64 + 1,
                        message: 1,
                        case: None,
                        list: ListName::Security,
                        member: member.id.clone(),
                        to: member.email.to_string(),
                        fingerprint: String::new(),
                        message_id: "<bench@example.org>".into(),
                        notice: false,
                        queued: embargod::clock::Timestamp::default(),
                        attempts: 0,
                        last_error: None,
                        job: Some(1),
                        bytes: Vec::new(),
                    };
                    let start = Instant::now();
                    seal_copy(
                        &keys,
                        &secret,
                        &identity,
                        &job.meta,
                        &outgoing,
                        &copy,
                        Utc::now(),
                    )
                    .expect("seal");
                    start.elapsed()
                })
                .collect();
            times.sort();
            row.push(ms(times[times.len() / 2]));
        }
        println!("{:<8} {:>10.2} {:>10.2}", case.label, row[0], row[1]);
    }
}

/// Sends `raw` over LMTP and waits until the sink has taken every
/// member's copy: the time from connect to the last copy.
async fn fan_out(lmtp: &ListenAddr, sink: &Sink, raw: &[u8]) -> Duration {
    let goal = sink.count.load(Ordering::SeqCst) + MEMBERS;
    let start = Instant::now();
    let replies = client::send_one(lmtp, "reporter@example.net", &[SECURITY], raw)
        .await
        .expect("LMTP");
    assert_eq!(replies[0].code, 250, "{replies:?}");
    sink.wait_for(goal).await;
    start.elapsed()
}

/// LMTP accept latencies (connect to `250`) of 5 KiB reports sent every
/// 20 ms while `raw` fans out; their own fan-outs are waited for too.
async fn accept_during_fan_out(lmtp: &ListenAddr, sink: &Sink, raw: &[u8]) -> Vec<Duration> {
    const PROBES: usize = 40;
    let goal = sink.count.load(Ordering::SeqCst) + MEMBERS * (PROBES + 1);
    let big = {
        let (lmtp, raw) = (lmtp.clone(), raw.to_vec());
        tokio::spawn(async move {
            client::send_one(&lmtp, "reporter@example.net", &[SECURITY], &raw)
                .await
                .expect("LMTP")
        })
    };
    assert_eq!(big.await.expect("send")[0].code, 250);
    let small = report(Body::Prose(5 * 1024), Utc::now());
    let mut latencies = Vec::new();
    for _ in 0..PROBES {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let replies = client::send_one(lmtp, "reporter@example.net", &[SECURITY], &small)
            .await
            .expect("LMTP");
        latencies.push(start.elapsed());
        assert_eq!(replies[0].code, 250, "{replies:?}");
    }
    sink.wait_for(goal).await;
    latencies.sort();
    latencies
}

/// The release binary on the bench's config.
struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, lmtp: &ListenAddr, runtime: &tokio::runtime::Runtime) -> Daemon {
        let log = std::fs::File::create(config.with_file_name("daemon.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_embargod"))
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start embargod");
        let deadline = Instant::now() + Duration::from_secs(30);
        while runtime.block_on(client::connect(lmtp)).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon(child)
    }

    /// CPU time used so far (user and system, all threads).
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        // utime and stime, in clock ticks (1/100 s), after the command
        // name in parentheses.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| {
            fields
                .get(n)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let ticks = field(11) + field(12);
        Duration::from_millis(ticks * 10)
    }

    /// Peak resident set size so far, bytes.
    fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal SMTP server on loopback (RFC 5321: EHLO, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT) that takes every message and counts it.
struct Sink {
    port: u16,
    count: Arc<AtomicUsize>,
    /// Size of the last message taken, bytes.
    last_size: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("sink");
        let sink = Sink {
            port: listener.local_addr().expect("sink").port(),
            count: Arc::default(),
            last_size: Arc::default(),
            arrived: Arc::default(),
        };
        let (count, last_size, arrived) = (
            sink.count.clone(),
            sink.last_size.clone(),
            sink.arrived.clone(),
        );
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (count, last_size, arrived) =
                    (count.clone(), last_size.clone(), arrived.clone());
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::with_capacity(256 * 1024, read);
                    write.write_all(b"220 sink ESMTP\r\n").await?;
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        if read.read_until(b'\n', &mut line).await? == 0 {
                            return Ok::<(), io::Error>(());
                        }
                        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                        let reply: &[u8] = match &verb[..] {
                            b"EHLO" => b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n",
                            b"DATA" => {
                                write.write_all(b"354 go on\r\n").await?;
                                let mut size = 0;
                                loop {
                                    line.clear();
                                    if read.read_until(b'\n', &mut line).await? == 0 {
                                        return Ok(());
                                    }
                                    if line == b".\r\n" {
                                        break;
                                    }
                                    size += line.len();
                                }
                                last_size.store(size, Ordering::Relaxed);
                                count.fetch_add(1, Ordering::SeqCst);
                                arrived.notify_waiters();
                                b"250 taken\r\n"
                            }
                            b"QUIT" => {
                                write.write_all(b"221 bye\r\n").await?;
                                return Ok(());
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(reply).await?;
                    }
                });
            }
        });
        sink
    }

    /// Returns once `goal` messages were taken in all.
    async fn wait_for(&self, goal: usize) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let notified = self.arrived.notified();
            if self.count.load(Ordering::SeqCst) >= goal {
                return;
            }
            assert!(Instant::now() < deadline, "copies missing after 10 minutes");
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

/// The report: headers, then the body `body` asks for.
fn report(body: Body, date: DateTime<Utc>) -> Vec<u8> {
    match body {
        Body::Prose(size) => message(size, date),
        Body::Capture(size) => {
            let prose = message(4 * 1024, date);
            let split = prose
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header end")
                + 2;
            let mut raw = prose[..split].to_vec();
            raw.extend_from_slice(
                b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n\
                  --b0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            );
            raw.extend_from_slice(&prose[split + 2..]);
            raw.extend_from_slice(
                b"--b0\r\nContent-Type: application/vnd.tcpdump.pcap; name=\"crash.pcap\"\r\n\
                  Content-Transfer-Encoding: base64\r\n\
                  Content-Disposition: attachment; filename=\"crash.pcap\"\r\n\r\n",
            );
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(capture(size));
            for line in encoded.as_bytes().chunks(76) {
                raw.extend_from_slice(line);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"--b0--\r\n");
            raw
        }
    }
}

/// `size` bytes shaped like a packet capture: a pcap header, then packets
/// of a 16-byte record header, repetitive IP/TCP headers and payloads of
/// printable protocol text mixed with random bytes (compresses about 2:1).
fn capture(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    out.resize(24, 0);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seq = 0u32;
    while out.len() < size {
        let payload = 200 + (next() % 1200) as usize;
        seq = seq.wrapping_add(1);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&((payload + 54) as u32).to_le_bytes());
        out.extend_from_slice(&((payload + 54) as u32).to_le_bytes());
        out.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0x1c, 0x46, 0x40, 0, 0x40, 6]);
        out.resize(out.len() + 44, 0x11);
        for i in 0..payload {
            let r = next();
            out.push(if i % 3 == 0 {
                r as u8
            } else {
                b"GET /index HTTP/1.1 Host: example Accept: */*"[(r % 45) as usize]
            });
        }
    }
    out.truncate(size);
    out
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
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_table(rows: &[Row], accept: Option<Vec<Duration>>) {
    println!(
        "End to end: LMTP connect → the {MEMBERS}th copy accepted by an SMTP server on loopback"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8} {:>10}  rounds (ms)",
        "message",
        "bytes",
        "copy",
        "embargod ms",
        "ms/copy",
        "CPU ms",
        "gpg loop ms",
        "ms/copy",
        "ratio",
        "peak RSS"
    );
    let mut verdicts = Vec::new();
    for row in rows {
        let took = median(&row.rounds);
        let gpg = row.gpg.map(ms);
        let ratio = gpg.map(|g| g / ms(took));
        println!(
            "{:<8} {:>10} {:>10} {:>12.1} {:>10.2} {:>8.0} {:>12} {:>10} {:>8} {:>9.1}M  {}",
            row.label,
            row.message,
            row.copy,
            ms(took),
            ms(took) / MEMBERS as f64,
            ms(row.cpu),
            gpg.map_or("-".into(), |g| format!("{g:.0}")),
            gpg.map_or("-".into(), |g| format!("{:.2}", g / MEMBERS as f64)),
            ratio.map_or("-".into(), |r| format!("{r:.1}x")),
            mib(row.rss),
            row.rounds
                .iter()
                .map(|r| format!("{:.0}", ms(*r)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Some(target) = row.case.target_ms {
            verdicts.push((
                format!("{}: ≤ {target:.0} ms end to end", row.label),
                ms(took) <= target,
            ));
        }
        if let Some(ratio) = ratio {
            let wanted = row.case.target_ratio;
            let text = if wanted >= 1.0 {
                format!("{}: ≥ {wanted:.0}x the gpg loop", row.label)
            } else {
                format!(
                    "{}: under {:.0}x the gpg loop's time",
                    row.label,
                    1.0 / wanted
                )
            };
            verdicts.push((text, ratio >= wanted));
        }
        if row.case.rss_target {
            let limit = 3 * row.message as u64 + (64 << 20);
            verdicts.push((
                format!(
                    "{}: peak RSS ≤ 3 × message + 64 MiB = {:.1} MiB",
                    row.label,
                    mib(limit)
                ),
                row.rss <= limit,
            ));
        }
    }
    if let Some(latencies) = accept {
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "\nLMTP accept (5 KiB, connect → 250) while a 1 MiB fan-out runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} sends)",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*latencies.last().expect("probes")),
            latencies.len()
        );
        verdicts.push((
            "accept p99 ≤ 20 ms during a fan-out".into(),
            ms(at(0.99)) <= 20.0,
        ));
    }
    println!();
    for (target, met) in verdicts {
        println!("{} {target}", if met { "met   " } else { "MISSED" });
    }
}
