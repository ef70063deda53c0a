//! Delivery through a real SMTP server started by the test: temporary
//! failures retried on the injected clock's schedule, permanent failures
//! recorded and reported to the PST, and a queue that survives a restart.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{report, start};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::{Sandbox, SECURITY};
use mailin_embedded::{response, Handler, Response, Server};

/// What the SMTP server saw.
#[derive(Default)]
struct Seen {
    /// Every recipient offered, with the reply code given.
    attempts: Vec<(String, u16)>,
    /// Messages accepted: (recipients, bytes).
    accepted: Vec<(Vec<String>, Vec<u8>)>,
}

/// Refuses recipients in `refuse` with 550, the first `fail_first` other
/// recipients with 451 (a greylisting relay), and keeps everything else;
/// refuses every RCPT for `SENDER_REFUSED` in `refuse` the way Postfix
/// refuses a sender (at RCPT, with smtpd_delay_reject).
#[derive(Clone)]
struct Relay {
    seen: Arc<Mutex<Seen>>,
    fail_first: usize,
    refuse: Vec<String>,
    from: String,
    rcpts: Vec<String>,
    data: Vec<u8>,
}

const SENDER_REFUSED: &str = "(the sender)";

impl Handler for Relay {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_string();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let mut seen = self.seen.lock().unwrap();
        if self.refuse.iter().any(|r| r == SENDER_REFUSED) {
            seen.attempts.push((to.to_string(), 554));
            return Response::custom(
                554,
                format!(
                    "5.7.1 <{}>: Sender address rejected: Access denied",
                    self.from
                ),
            );
        }
        let code = if self.refuse.iter().any(|r| r == to) {
            550
        } else if seen
            .attempts
            .iter()
            .filter(|(_, code)| *code != 550)
            .count()
            < self.fail_first
        {
            451
        } else {
            250
        };
        seen.attempts.push((to.to_string(), code));
        match code {
            550 => response::NO_MAILBOX,
            451 => Response::custom(451, "4.7.1 Greylisted, try again later".into()),
            _ => response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.rcpts = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut seen = self.seen.lock().unwrap();
        seen.accepted
            .push((self.rcpts.clone(), std::mem::take(&mut self.data)));
        response::OK
    }
}

/// Starts the relay on a loopback port; returns the port and its log.
fn relay(fail_first: usize, refuse: &[&str]) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = Relay {
        seen: seen.clone(),
        fail_first,
        refuse: refuse.iter().map(|s| s.to_string()).collect(),
        from: String::new(),
        rcpts: Vec::new(),
        data: Vec::new(),
    };
    std::thread::spawn(move || {
        let mut server = Server::new(handler);
        server.with_name("relay.test").with_tcp_listener(listener);
        let _ = server.serve();
    });
    (port, seen)
}

/// alice and bob on the security list in `dir`, their copies sent
/// through the relay on `port` (`delivery_extra`: more `[delivery]` keys).
fn alice_and_bob_through(dir: &std::path::Path, port: u16, delivery_extra: &str) -> Sandbox {
    let mut sandbox = Sandbox::new(dir).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{port}\"\ntls = \"none\"\n\
         from = \"{}\"\nretry_initial = \"10m\"\n{delivery_extra}",
        embargod::sandbox::OWNER
    );
    sandbox
}

/// A message from a PST member (a new case, but nobody to acknowledge).
fn member_report(subject: &str, canary: &str) -> Vec<u8> {
    String::from_utf8(report(subject, canary))
        .unwrap()
        .replace(
            "From: Rita Reporter <rita@reporter.example>",
            "From: alice <alice@example.org>",
        )
        .into_bytes()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_retry_on_schedule_and_permanent_ones_are_reported() {
    let (port, seen) = relay(1, &["bob@example.org"]);
    let dir = tempfile::tempdir().unwrap();
    let sandbox = alice_and_bob_through(dir.path(), port, "concurrency = 1\n");
    let clock = Clock::manual(chrono::Utc::now());
    let daemon = start(&sandbox, clock.clone()).await;

    assert_eq!(
        daemon
            .send(
                "alice@example.org",
                &[SECURITY],
                &member_report("retry me", "r1")
            )
            .await[0]
            .code,
        250
    );

    // Alice's copy is deferred (451); Bob's fails for good (550): a
    // bounce, counted against Bob's standing. The PST hears when that
    // standing changes (bounces.threshold days), not per copy.
    eventually("both first attempts", || {
        let seen = seen.lock().unwrap();
        seen.attempts.len() == 2 && seen.accepted.is_empty()
    })
    .await;
    eventually("the report copy waits in the queue", || {
        daemon.shared.store.queue_len() == 1
    })
    .await;
    let queued = daemon.shared.store.queued().unwrap();
    assert_eq!(queued[0].1.member, "alice");
    assert_eq!(queued[0].1.attempts, 1);
    assert!(
        queued[0]
            .1
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("451"),
        "{:?}",
        queued[0].1.last_error
    );
    let bob =
        embargod::bounce::standing::get(&daemon.shared.store, "bob", "bob@example.org").unwrap();
    assert_eq!((bob.score, bob.bounces), (1, 1));
    assert!(bob.last_diagnostic.contains("550"), "{bob:?}");

    // Not a second early.
    clock.advance(Duration::from_secs(599));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().unwrap().attempts.len(),
        2,
        "retried before its time"
    );
    clock.advance(Duration::from_secs(1));
    eventually("the retry goes through", || {
        seen.lock().unwrap().accepted.len() == 1
    })
    .await;
    daemon.settle().await;

    let records: Vec<_> = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .collect();
    let outcomes = |member: &str, notice: bool| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.member == member && (r.message != records[0].message) == notice)
            .map(|r| r.outcome.label().to_string())
            .collect()
    };
    assert_eq!(outcomes("alice", false), ["queued", "deferred", "sent"]);
    assert_eq!(outcomes("bob", false), ["queued", "failed"]);
    assert!(outcomes("alice", true).is_empty(), "no notice");
    assert!(outcomes("bob", true).is_empty(), "no notice");
    // The record of the copy that went names exactly the bytes the relay
    // took, and the plaintext they carry.
    let sent = records
        .iter()
        .find(|r| {
            r.member == "alice" && r.message == records[0].message && r.outcome.label() == "sent"
        })
        .unwrap();
    assert_eq!(sent.plaintext_sha256.as_ref().map(String::len), Some(64));
    let taken = seen.lock().unwrap().accepted[0].1.clone();
    assert!(
        String::from_utf8_lossy(&taken).contains("multipart/encrypted"),
        "copies go out encrypted"
    );
    assert_eq!(
        sent.ciphertext_sha256.as_deref(),
        Some(embargod::digest::sha256_hex(&taken).as_str())
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_refusing_the_verp_sender_at_rcpt_keeps_the_copies_and_blames_nobody() {
    let (port, seen) = relay(0, &[SENDER_REFUSED]);
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = alice_and_bob_through(dir.path(), port, "");
    sandbox.extra.push_str("[bounces]\nthreshold = 1\n");
    let clock = Clock::manual(chrono::Utc::now());
    let daemon = start(&sandbox, clock.clone()).await;
    daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &member_report("sender refused", "s1"),
        )
        .await;
    eventually("both copies tried", || {
        seen.lock().unwrap().attempts.len() >= 2
    })
    .await;
    eventually("both copies wait in the queue", || {
        let queued = daemon.shared.store.queued().unwrap();
        queued.len() == 2 && queued.iter().all(|(_, c)| c.attempts == 1)
    })
    .await;
    let queued = daemon.shared.store.queued().unwrap();
    let error = queued[0].1.last_error.clone().unwrap_or_default();
    assert!(error.contains("refuses the envelope sender"), "{error}");
    for member in ["alice", "bob"] {
        let standing = embargod::bounce::standing::get(
            &daemon.shared.store,
            member,
            &format!("{member}@example.org"),
        )
        .unwrap();
        assert_eq!(standing.bounces, 0, "{member} is not to blame");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_resumes_the_queue() {
    // First run: the relay is down (nothing listens on the port).
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    const MEMBERS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    for i in 1..MEMBERS {
        sandbox
            .generate_member(&format!("m{i:02}"), ListName::Security)
            .unwrap();
    }
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{port}\"\nfrom = \"{}\"\nretry_initial = \"1h\"\n",
        embargod::sandbox::OWNER
    );
    let clock = Clock::manual(chrono::Utc::now());
    let daemon = start(&sandbox, clock.clone()).await;
    let state = dir.path().join("state");
    let before = folder_size(&state);
    // A 1 MiB report: twenty copies staged as ciphertext would be 27 MiB.
    let mut report = member_report("restart", "r2");
    while report.len() < 1 << 20 {
        report.extend_from_slice(
            b"The header parser copies the field without checking its length.\r\n",
        );
    }
    assert_eq!(
        daemon.send("alice@example.org", &[SECURITY], &report).await[0].code,
        250
    );
    eventually("every copy is deferred", || {
        let queued = daemon.shared.store.queued().unwrap();
        queued.len() == MEMBERS && queued.iter().all(|(_, c)| c.attempts == 1)
    })
    .await;
    let queued = daemon.shared.store.queued().unwrap();
    daemon.stop().await;
    // The copies wait as what they are made of, not as ciphertext: the
    // store grew by the message (spool, then its job), not by the members.
    let grown = folder_size(&state).saturating_sub(before);
    assert!(
        grown < 6 * report.len() as u64,
        "the store grew by {grown} bytes for a {} byte report to {MEMBERS}",
        report.len()
    );
    assert!(queued.iter().all(|(_, c)| c.job.is_some()));

    // Second run: the relay is up on that port; an hour later the copy goes.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = Relay {
        seen: seen.clone(),
        fail_first: 0,
        refuse: Vec::new(),
        from: String::new(),
        rcpts: Vec::new(),
        data: Vec::new(),
    };
    std::thread::spawn(move || {
        let mut server = Server::new(handler);
        server.with_tcp_listener(listener);
        let _ = server.serve();
    });
    let clock = Clock::manual(clock.now() + chrono::Duration::hours(1));
    let daemon = start(&sandbox, clock).await;
    eventually("the copies are delivered after the restart", || {
        seen.lock().unwrap().accepted.len() == MEMBERS
    })
    .await;
    daemon.settle().await;
    // Made after the restart, alice's copy is the one the first run
    // decided: the same copy id (and so the same marks), the same
    // Message-ID, as the ledger says.
    let accepted = seen.lock().unwrap().accepted.clone();
    let (_, bytes) = accepted
        .iter()
        .find(|(to, _)| to == &["alice@example.org"])
        .unwrap();
    let decided = queued
        .iter()
        .find(|(_, c)| c.member == "alice")
        .map(|(_, c)| c.clone())
        .unwrap();
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains(&format!("Message-ID: {}\r\n", decided.message_id)),
        "{}",
        &text[..400]
    );
    let opened = embargod::sandbox::open_copy(bytes, &alice, &sandbox.list_key).unwrap();
    let inner = String::from_utf8_lossy(&opened.content);
    assert!(
        inner.contains(&format!(
            "X-Embargod-Copy: {}",
            embargod::mark::copy_id_hex(decided.id)
        )),
        "{inner}"
    );
    daemon.stop().await;
}

/// Bytes in the files under `dir`.
fn folder_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                folder_size(&path)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// A key that expires while its copy waits for a retry gets nothing: the
/// copy is sealed when it goes, and the key is checked then. The PST is
/// told; the other member's copy goes as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_expires_while_its_copy_waits_gets_no_copy() {
    use sequoia_openpgp::cert::prelude::*;
    // The first three attempts are deferred: carol's, bob's and the
    // reporter's acknowledgement.
    let (port, seen) = relay(3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let now = std::time::SystemTime::now();
    let (short, _) = CertBuilder::general_purpose(Some("carol <carol@example.org>"))
        .set_creation_time(now - Duration::from_secs(3600))
        .set_validity_period(Duration::from_secs(3 * 3600))
        .generate()
        .unwrap();
    sandbox
        .add_member("carol", "carol@example.org", ListName::Security, &short)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{port}\"\ntls = \"none\"\n\
         from = \"{}\"\nretry_initial = \"10m\"\nconcurrency = 1\n",
        embargod::sandbox::OWNER
    );
    // No expiry warnings: the copies here are the report's alone.
    sandbox.extra.push_str("[keys]\nwarn_before = []\n");
    let clock = Clock::manual(chrono::Utc::now());
    let daemon = start(&sandbox, clock.clone()).await;
    assert_eq!(
        daemon
            .send(
                "rita@reporter.example",
                &[SECURITY],
                &report("expiring", "x1")
            )
            .await[0]
            .code,
        250
    );
    eventually("every copy deferred", || {
        let queued = daemon.shared.store.queued().unwrap();
        queued.len() == 3 && queued.iter().all(|(_, c)| c.attempts >= 1)
    })
    .await;
    // Three hours on: carol's key expired an hour ago.
    clock.advance(Duration::from_secs(3 * 3600));
    eventually("bob's copy and the notice go", || {
        seen.lock()
            .unwrap()
            .accepted
            .iter()
            .filter(|(to, _)| to == &["bob@example.org"])
            .count()
            >= 2
    })
    .await;
    daemon.settle().await;
    assert!(
        seen.lock()
            .unwrap()
            .accepted
            .iter()
            .all(|(to, _)| to != &["carol@example.org"]),
        "nothing to an expired key"
    );
    let records: Vec<_> = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .collect();
    let carol: Vec<&str> = records
        .iter()
        .filter(|r| r.member == "carol" && r.message == records[0].message)
        .map(|r| r.outcome.label())
        .collect();
    assert_eq!(carol, ["queued", "deferred", "no-key"], "{records:?}");
    daemon.stop().await;
}
