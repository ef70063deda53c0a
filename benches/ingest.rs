//! LMTP ingest with durable accept: 5 KiB messages from concurrent LMTP
//! sessions to the real daemon on loopback, each `250` sent only once the
//! message is flushed to the spool (concurrent sessions share a flush).
//! Prints messages per second and accept latency, next to the disk's own
//! fsync rate measured in the same folder in the same run. Target: 1,000
//! messages/s or more on 2 cores.
//!
//! Two rounds: the ingest path alone (the fan-out held back, as during a
//! burst it lags behind), and with the fan-out signing and encrypting each
//! message's copy on the same two cores at the same time.
//!
//! Then the mailbox intake next to it, as issue 15 asks: 1,000 messages
//! of 5 KiB put into a real Dovecot mailbox at once (one `UID MOVE` from a
//! staging folder), timed until every one is spooled and expunged, with
//! LMTP ingest of the same 1,000 over one session beside it; the fan-out
//! held back in both.
//!
//! `cargo bench --bench ingest` (needs `dovecot`, which `.ci/deps` installs)

use std::io::Write;
use std::time::{Duration, Instant};

use embargod::config::{Config, ListName};
use embargod::daemon::{Daemon, Options, Sockets};
use embargod::lmtp::client;
use embargod::sandbox::dovecot::Dovecot;
use embargod::sandbox::{Sandbox, SECURITY};

const MESSAGES: usize = 5_000;
const SESSIONS: usize = 32;
const SIZE: usize = 5 * 1024;
/// Messages in the mailbox-intake comparison.
const MAILBOX_MESSAGES: usize = 1_000;

fn message(i: usize) -> Vec<u8> {
    let mut text = format!(
        "From: Flood <flood@example.net>\r\nTo: <{SECURITY}>\r\nSubject: message {i}\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\n"
    );
    while text.len() < SIZE {
        text.push_str("The quick brown fox jumps over the lazy dog, once more with feeling.\r\n");
    }
    text.into_bytes()
}

/// fsyncs per second of a 4 KiB write in `dir`, over one second.
fn fsync_rate(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let block = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(1) {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fsync");
        n += 1;
    }
    let _ = std::fs::remove_file(path);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Sends `count` messages over `sessions` sessions and prints one row;
/// returns the messages per second.
async fn round(
    name: &str,
    lmtp: &embargod::config::ListenAddr,
    (first, count, sessions_n): (usize, usize, usize),
    fsyncs: f64,
) -> f64 {
    let started = Instant::now();
    let mut sessions = Vec::new();
    for s in 0..sessions_n {
        let lmtp = lmtp.clone();
        sessions.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut session = client::connect(&lmtp).await.expect("connect");
            for i in (s..count).step_by(sessions_n) {
                let body = message(first + i);
                let start = Instant::now();
                let replies = session
                    .send("flood@example.net", &[SECURITY], &body)
                    .await
                    .expect("send");
                latencies.push(start.elapsed());
                assert_eq!(replies[0].code, 250, "{replies:?}");
            }
            let _ = session.quit().await;
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for session in sessions {
        latencies.extend(session.await.expect("session"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let rate = count as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<22} {rate:>10.0}   {:>6.1}   {:>6.1}   {:>6.1}   {fsyncs:>13.0}   >= 1000/s {}",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().expect("latencies").as_secs_f64() * 1e3,
        if rate >= 1000.0 { "ok" } else { "BELOW TARGET" }
    );
    rate
}

/// Moves `count` staged messages into the intake's mailbox at once and
/// waits until every one is spooled and the mailbox is empty: messages/s.
async fn mailbox_round(dovecot: &Dovecot, shared: &embargod::state::Shared, count: usize) -> f64 {
    let mut client = dovecot.client().await;
    for i in 0..count {
        client
            .append("Staging", None, None, &message(2 * MESSAGES + i))
            .await
            .expect("append");
    }
    client.select("Staging").await.expect("SELECT");
    let spooled = || {
        shared
            .metrics
            .intake
            .get_or_create(&embargod::metrics::IntakeLabel {
                list: "security".into(),
                outcome: "spooled".into(),
            })
            .get() as usize
    };
    let before = spooled();
    let started = Instant::now();
    client.uid_mv("1:*", "Bench").await.expect("UID MOVE");
    client.logout().await.expect("logout");
    while spooled() < before + count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while dovecot.count("Bench").await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut sandbox = Sandbox::new(dir.path()).expect("sandbox");
        sandbox
            .generate_member("alice", ListName::Security)
            .expect("member");
        let dovecot = Dovecot::start(dir.path());
        dovecot.create("Bench").await;
        dovecot.create("Staging").await;
        sandbox.extra = dovecot.intake(dir.path(), "mailbox = \"Bench\"");
        // Acknowledgements to the flooding sender would add work: at the
        // limit after the first few, as in production.
        let file = sandbox.write_config().expect("config");
        let config = Config::load(&file).expect("config loads");
        let sockets = Sockets::bind(&config).await.expect("bind");
        let lmtp = sockets.lmtp[0].local_addr().expect("address");
        let daemon = Daemon::open(config, Options::default()).expect("daemon");
        let shared = daemon.shared();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(daemon.run(sockets, async {
            let _ = stopped.await;
        }));

        let fsyncs = fsync_rate(&dir.path().join("state"));
        println!("disk: {fsyncs:.0} fsyncs/s (4 KiB write + fdatasync, in the store's folder)");
        println!();
        println!(
            "LMTP ingest, durable accept, {SESSIONS} sessions, {SIZE}-byte messages, {} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
        println!(
            "round                  messages/s   p50 ms   p99 ms   max ms   disk fsyncs/s   target"
        );
        {
            // The fan-out waits for this lock: the ingest path alone.
            let _held = shared.embargo_lock.lock().await;
            round("ingest alone", &lmtp, (0, MESSAGES, SESSIONS), fsyncs).await;
        }
        shared.wake_fanout.notify_one();
        while shared.store.spool_len() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        round(
            "with fan-out running",
            &lmtp,
            (MESSAGES, MESSAGES, SESSIONS),
            fsyncs,
        )
        .await;
        println!("(a transaction per message: MAIL, RCPT, DATA, 250 after the flush)");
        while shared.store.spool_len() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        println!();
        println!(
            "Mailbox intake vs LMTP: {MAILBOX_MESSAGES} messages of {SIZE} bytes, fan-out held"
        );
        println!(
            "round                  messages/s   p50 ms   p99 ms   max ms   disk fsyncs/s   target"
        );
        let (imap, lmtp_one) = {
            let _held = shared.embargo_lock.lock().await;
            let lmtp_one = round(
                "LMTP, 1 session",
                &lmtp,
                (3 * MESSAGES, MAILBOX_MESSAGES, 1),
                fsyncs,
            )
            .await;
            (
                mailbox_round(&dovecot, &shared, MAILBOX_MESSAGES).await,
                lmtp_one,
            )
        };
        println!(
            "IMAP (Dovecot), 1 connection: {imap:.0} messages/s, spooled and expunged \
             ({:.2}x LMTP over one session)",
            imap / lmtp_one
        );
        let _ = stop.send(());
        let _ = running.await;
    });
}
