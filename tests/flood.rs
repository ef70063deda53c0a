//! Floods: 10,000 reports from one forged sender as fast as one LMTP
//! client can send them, then 10,000 more from twenty clients at once,
//! against the real binary with a small spool limit. The daemon must stay
//! up with bounded memory (its peak RSS is printed), answer 452 when the
//! spool is full so that the MTA keeps the mail, deliver every message it
//! accepted, get a real report sent in the middle of the flood to the PST,
//! and send the forged sender no more acknowledgements than its hourly
//! allowance.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use embargod::config::{ListName, ListenAddr};
use embargod::lmtp::client;
use embargod::sandbox::{open_copy, read_outbox, OutboxMail, Sandbox, SECURITY};
use sequoia_openpgp::Cert;

/// The figure, for one client and again for twenty.
const FLOOD: usize = 10_000;
const CLIENTS: usize = 20;
const SPOOL_LIMIT: usize = 2_000;
const ACKS_PER_HOUR: usize = 5;
const FORGED: &str = "victim@forged.example";

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A small flood message; the sender is the forged address.
fn junk(n: usize) -> Vec<u8> {
    format!(
        "From: <{FORGED}>\r\nTo: <{SECURITY}>\r\nSubject: flood {n}\r\n\
         Message-ID: <flood-{n}@forged.example>\r\n\r\nflood {n}\r\n"
    )
    .into_bytes()
}

/// Accepted and refused-with-452 counts of one client's share.
#[derive(Default, Debug)]
struct Tally {
    accepted: usize,
    full: usize,
}

/// One LMTP connection sending `range` as fast as the replies come.
async fn flood(addr: ListenAddr, range: std::ops::Range<usize>) -> Tally {
    let mut tally = Tally::default();
    let mut session = client::connect(&addr).await.expect("connect");
    for n in range {
        let replies = session
            .send(FORGED, &[SECURITY], &junk(n))
            .await
            .expect("the daemon answers");
        match replies[0].code {
            250 => tally.accepted += 1,
            // The MTA keeps these and tries again later.
            452 | 451 => tally.full += 1,
            other => panic!("unexpected reply {other}: {replies:?}"),
        }
    }
    session.quit().await.expect("quit");
    tally
}

/// `embargod status` against the running daemon: spooled messages and
/// queued copies.
fn backlog(config: &Path) -> (usize, usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(config)
        .arg("status")
        .output()
        .expect("embargod status");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("spool "))
        .unwrap_or_else(|| panic!("no spool line in status: {text}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Waits until everything accepted is sent, with the daemon up.
async fn drain(config: &Path, daemon: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while backlog(config) != (0, 0) {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
        assert!(
            Instant::now() < deadline,
            "still not drained: {:?}",
            backlog(config)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
}

/// Opens, oldest first, the copies to `email` written since `since` until
/// one holds `tag`.
fn finds_copy(
    outbox: &[OutboxMail],
    email: &str,
    since: SystemTime,
    secret: &Cert,
    sandbox: &Sandbox,
    tag: &str,
) -> bool {
    let mut candidates: Vec<(SystemTime, &OutboxMail)> = outbox
        .iter()
        .filter(|m| m.to == [email.to_string()])
        .filter_map(|m| {
            let written = std::fs::metadata(&m.eml).ok()?.modified().ok()?;
            (written >= since).then_some((written, m))
        })
        .collect();
    candidates.sort_by_key(|(written, _)| *written);
    candidates.iter().any(|(_, mail)| {
        open_copy(&mail.bytes, secret, &sandbox.list_key)
            .is_ok_and(|opened| common::readable(&opened.content).contains(tag))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_leave_the_daemon_up_bounded_and_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let bob = sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox.extra =
        format!("[limits]\nspool_messages = {SPOOL_LIMIT}\nacks_per_hour = {ACKS_PER_HOUR}\n");
    let (config, addr) = common::config_on_fixed_port(&sandbox);
    let mut daemon = common::spawn_binary(&config, "warn");
    let pid = daemon.0.id();
    // Wait for the listener with the real report's first half: nothing
    // counts until the daemon answers.
    let warmup = common::report("warm-up", &common::canary());
    common::send_until_accepted(
        &addr,
        common::REPORTER,
        SECURITY,
        &warmup,
        Duration::from_secs(60),
    )
    .await;

    // Phase 1: one client, as fast as it can; a real report in the middle.
    let started = Instant::now();
    let one = tokio::spawn(flood(addr.clone(), 0..FLOOD));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tag = common::canary();
    let real_sent = SystemTime::now();
    let attempts = common::send_until_accepted(
        &addr,
        common::REPORTER,
        SECURITY,
        &common::report("a real report, mid-flood", &tag),
        Duration::from_secs(300),
    )
    .await;
    let one = one.await.unwrap();
    let one_took = started.elapsed();

    // Phase 2, on an empty spool: twenty clients at once.
    drain(&config, &mut daemon.0).await;
    let started = Instant::now();
    let share = FLOOD / CLIENTS;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(flood(
                addr.clone(),
                FLOOD + c * share..FLOOD + (c + 1) * share,
            ))
        })
        .collect();
    let mut many = Tally::default();
    for client in clients {
        let tally = client.await.unwrap();
        many.accepted += tally.accepted;
        many.full += tally.full;
    }
    let many_took = started.elapsed();

    drain(&config, &mut daemon.0).await;
    let peak = peak_rss_kib(pid);
    let outbox = read_outbox(&sandbox.outbox_dir()).unwrap();
    let to = |email: &str| {
        outbox
            .iter()
            .filter(|m| m.to == [email.to_string()])
            .count()
    };
    let acks = to(FORGED);
    eprintln!(
        "one client: {} accepted, {} answered 452, {:.1} s ({:.0} msg/s); \
         {CLIENTS} clients: {} accepted, {} answered 452, {:.1} s ({:.0} msg/s); \
         real report accepted after {attempts} attempt(s); \
         {acks} acknowledgement(s) to the forged sender; peak RSS {} MiB",
        one.accepted,
        one.full,
        one_took.as_secs_f64(),
        FLOOD as f64 / one_took.as_secs_f64(),
        many.accepted,
        many.full,
        many_took.as_secs_f64(),
        FLOOD as f64 / many_took.as_secs_f64(),
        peak / 1024
    );

    assert_eq!(one.accepted + one.full, FLOOD, "every message answered");
    assert_eq!(many.accepted + many.full, FLOOD, "every message answered");
    // Ingest outruns encryption, so the spool fills and the limit answers.
    assert!(
        one.full > 0 && many.full > 0,
        "the flood never met the spool limit"
    );
    // Everything accepted was delivered: the warm-up, the real report and
    // the accepted flood, to each PST member (who may also get notices).
    let accepted = 2 + one.accepted + many.accepted;
    for email in ["alice@example.org", "bob@example.org"] {
        assert!(
            to(email) >= accepted,
            "{email} got {} copies of {accepted} accepted messages",
            to(email)
        );
    }
    for (email, secret) in [("alice@example.org", &alice), ("bob@example.org", &bob)] {
        assert!(
            finds_copy(&outbox, email, real_sent, secret, &sandbox, &tag),
            "{email} got the real report sent mid-flood"
        );
    }
    assert!(
        acks <= ACKS_PER_HOUR,
        "{acks} acknowledgements to the forged sender"
    );
    // The spool limit is what bounds memory; copies are encrypted one by
    // one. The bound leaves room for the debug build and sled's cache.
    assert!(peak < 512 * 1024, "peak RSS {} MiB", peak / 1024);
}
