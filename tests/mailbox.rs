//! The mailbox intakes. IMAP against a real Dovecot (Debian's `dovecot-imapd`,
//! `.ci/deps` installs it): started by each test in its own folder with
//! its own configuration, on a loopback port, with one plaintext-login
//! account; no system service is touched. Mail is put into the mailbox
//! with IMAP APPEND, as the hosting provider's delivery would.
//!
//! What a project without a mail server checks: mail in the mailbox
//! reaches every member and leaves the mailbox; IDLE takes it within a
//! second; a SIGKILL between spooling and removal, a changed UIDVALIDITY,
//! a wrong password and a server that goes away lose nothing and take
//! nothing twice; SIGKILLs at random moments lose nothing. And a maildir
//! filled the way getmail does (`tmp/`, then renamed into `new/`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::dovecot::{free_port, walk, Dovecot, PASSWORD, USER};
use embargod::sandbox::{open_copy, OutboxMail, Sandbox};
use sequoia_openpgp::Cert;

/// A report as the provider's delivery leaves it in the mailbox: with the
/// envelope sender in `Return-Path:`.
fn delivered(subject: &str, canary: &str) -> Vec<u8> {
    [
        format!("Return-Path: <{}>\r\n", common::REPORTER).into_bytes(),
        common::report(subject, canary),
    ]
    .concat()
}

/// Members and their secret keys, for reading their copies.
struct Members {
    list_key: embargod::pgp::ListKey,
    secrets: Vec<(String, Cert)>,
}

impl Members {
    fn add(sandbox: &mut Sandbox, ids: &[&str]) -> Members {
        let secrets = ids
            .iter()
            .map(|id| {
                let cert = sandbox.generate_member(id, ListName::Security).unwrap();
                (format!("{id}@example.org"), cert)
            })
            .collect();
        Members {
            list_key: sandbox.list_key.clone(),
            secrets,
        }
    }

    /// How many copies each member has that read `canary`.
    fn copies_of(&self, outbox: &[OutboxMail], canary: &str) -> HashMap<String, usize> {
        self.secrets
            .iter()
            .map(|(address, secret)| {
                let n = outbox
                    .iter()
                    .filter(|m| m.to.iter().any(|to| to == address))
                    .filter_map(|m| open_copy(&m.bytes, secret, &self.list_key).ok())
                    .filter(|opened| common::readable(&opened.content).contains(canary))
                    .count();
                (address.clone(), n)
            })
            .collect()
    }

    /// Waits (up to 60 s) until every member has a copy of every canary.
    async fn wait_for_all(&self, outbox: &Path, canaries: &[&str]) -> Vec<OutboxMail> {
        for _ in 0..600 {
            let mail = common::outbox(outbox);
            if canaries
                .iter()
                .all(|c| self.copies_of(&mail, c).values().all(|&n| n >= 1))
            {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mail = common::outbox(outbox);
        let seen: Vec<_> = canaries.iter().map(|c| self.copies_of(&mail, c)).collect();
        panic!("not every member got every report: {seen:?}");
    }

    /// Asserts every member has exactly one copy of each canary.
    fn assert_once(&self, outbox: &Path, canaries: &[&str]) {
        let mail = common::outbox(outbox);
        for canary in canaries {
            let copies = self.copies_of(&mail, canary);
            assert!(
                copies.values().all(|&n| n == 1),
                "{canary}: copies per member {copies:?}"
            );
        }
    }
}

/// How many messages the security list's intakes counted with `outcome`.
fn intake_count(daemon: &common::TestDaemon, outcome: &str) -> u64 {
    daemon
        .shared
        .metrics
        .intake
        .get_or_create(&embargod::metrics::IntakeLabel {
            list: "security".into(),
            outcome: outcome.into(),
        })
        .get()
}

async fn wait_until<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_the_mailbox_reaches_every_member_and_idle_takes_it_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice", "bob"]);
    sandbox.extra = dovecot.intake(dir.path(), "");

    // Mail that arrived while the daemon was not running.
    let waiting: Vec<String> = (0..3).map(|_| common::canary()).collect();
    for canary in &waiting {
        dovecot.append("INBOX", &delivered("Waiting", canary)).await;
    }
    let daemon = common::start(&sandbox, Clock::system()).await;
    let canaries: Vec<&str> = waiting.iter().map(String::as_str).collect();
    members.wait_for_all(&daemon.outbox, &canaries).await;
    wait_until(
        "the mailbox is emptied",
        Duration::from_secs(10),
        || async { dovecot.count("INBOX").await == 0 },
    )
    .await;

    // The daemon now waits in IDLE (the poll interval is 60 s): new mail
    // is taken at once.
    wait_until("the intake is idle", Duration::from_secs(10), || async {
        daemon
            .shared
            .intakes
            .all()
            .iter()
            .any(|i| matches!(i.state, embargod::intake::IntakeState::Idle))
    })
    .await;
    let live = common::canary();
    let appended = Instant::now();
    dovecot.append("INBOX", &delivered("Live", &live)).await;
    wait_until(
        "IDLE takes the new message",
        Duration::from_secs(10),
        || async { dovecot.count("INBOX").await == 0 },
    )
    .await;
    let taken_in = appended.elapsed();
    assert!(
        taken_in < Duration::from_secs(1),
        "IDLE took {taken_in:?} to take a new message"
    );
    members.wait_for_all(&daemon.outbox, &[&live]).await;
    daemon.settle().await;
    let mut all = canaries.clone();
    all.push(&live);
    members.assert_once(&daemon.outbox, &all);

    // Each copy says where the report came from; the reporter was
    // acknowledged at the envelope sender of the delivery.
    let mail = common::outbox(&daemon.outbox);
    let (alice, secret) = &members.secrets[0];
    let copy = mail
        .iter()
        .filter(|m| m.to.contains(alice))
        .filter_map(|m| open_copy(&m.bytes, secret, &members.list_key).ok())
        .map(|o| common::readable(&o.content))
        .find(|t| t.contains(&live))
        .unwrap();
    assert!(
        copy.contains(&format!(
            "taken from the mailbox {USER}@127.0.0.1:{}/INBOX",
            dovecot.port
        )),
        "{copy}"
    );
    let acks = embargod::sandbox::read_outbox(&daemon.outbox)
        .unwrap()
        .into_iter()
        .filter(|m| m.to == [common::REPORTER])
        .count();
    assert_eq!(acks, 4, "one acknowledgement per report");
    let status = embargod::status::report(&daemon.shared);
    assert!(status.contains("idle (IMAP IDLE), 4 taken"), "{status}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_intake_cannot_take_is_quarantined_or_left_never_looped() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    Members::add(&mut sandbox, &["alice"]);
    sandbox.lmtp_extra = "max_message_size = 20000\n".into();
    sandbox.extra = dovecot.intake(dir.path(), "");
    // No From: (LMTP refuses it); and one over the size limit.
    dovecot
        .append("INBOX", b"Subject: no sender\r\n\r\nwho wrote this?\r\n")
        .await;
    let huge = [delivered("Huge", &common::canary()), vec![b'x'; 30_000]].concat();
    dovecot.append("INBOX", &huge).await;
    let daemon = common::start(&sandbox, Clock::system()).await;
    wait_until(
        "the bad message is quarantined",
        Duration::from_secs(20),
        || async { !daemon.held().is_empty() },
    )
    .await;
    let held = daemon.held();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].contains("no From"), "{held:?}");
    // The PST hears of it, encrypted.
    daemon.wait_outbox(1).await;
    daemon.settle().await;
    // The huge message stays where it is, unread, and is not taken again
    // and again.
    assert_eq!(dovecot.count("INBOX").await, 1);
    assert_eq!(intake_count(&daemon, "left"), 1);
    assert_eq!(intake_count(&daemon, "quarantined"), 1);
    daemon.stop().await;
}

/// The daemon as a process, on this sandbox's config.
fn spawn(config: &Path) -> common::Running {
    common::spawn_binary(config, "info")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_spooling_and_removal_takes_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice", "bob"]);
    // Taken messages are moved to a folder that does not exist yet: the
    // daemon spools them and then cannot remove them — the state a crash
    // between the two steps leaves.
    sandbox.extra = dovecot.intake(dir.path(), "processed_mailbox = \"Processed\"");
    let config = sandbox.write_config().unwrap();
    let canaries: Vec<String> = (0..3).map(|_| common::canary()).collect();
    for canary in &canaries {
        dovecot.append("INBOX", &delivered("Once", canary)).await;
    }
    let mut daemon = spawn(&config);
    let refs: Vec<&str> = canaries.iter().map(String::as_str).collect();
    members.wait_for_all(&sandbox.outbox_dir(), &refs).await;
    // A failing removal does not hold up new mail.
    let meanwhile = common::canary();
    dovecot
        .append("INBOX", &delivered("Meanwhile", &meanwhile))
        .await;
    members
        .wait_for_all(&sandbox.outbox_dir(), &[&meanwhile])
        .await;
    assert_eq!(
        dovecot.count("INBOX").await,
        4,
        "not removed: no Processed folder"
    );
    // SIGKILL, then the folder appears and the daemon starts again.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    dovecot.create("Processed").await;
    let daemon = spawn(&config);
    wait_until(
        "the messages are moved",
        Duration::from_secs(30),
        || async { dovecot.count("INBOX").await == 0 && dovecot.count("Processed").await == 4 },
    )
    .await;
    // One more message goes the normal way.
    let after = common::canary();
    dovecot.append("INBOX", &delivered("After", &after)).await;
    members.wait_for_all(&sandbox.outbox_dir(), &[&after]).await;
    drop(daemon);
    let mut all = refs.clone();
    all.extend([meanwhile.as_str(), after.as_str()]);
    members.assert_once(&sandbox.outbox_dir(), &all);
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains("moving taken messages there"),
        "the failed move is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_uidvalidity_takes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice"]);
    sandbox.extra = dovecot.intake(dir.path(), "processed_mailbox = \"Processed\"");
    let old: Vec<String> = (0..2).map(|_| common::canary()).collect();
    for canary in &old {
        dovecot.append("INBOX", &delivered("Before", canary)).await;
    }
    let daemon = common::start(&sandbox, Clock::system()).await;
    let refs: Vec<&str> = old.iter().map(String::as_str).collect();
    members.wait_for_all(&daemon.outbox, &refs).await;
    daemon.settle().await;
    daemon.stop().await;
    assert_eq!(
        dovecot.count("INBOX").await,
        2,
        "still there: no Processed folder"
    );

    // The server loses its UIDs (a restore, a migration): same messages,
    // new UIDVALIDITY, and one new message.
    let before = dovecot.uid_validity("INBOX").await;
    dovecot.stop();
    dovecot.forget_uids();
    std::thread::sleep(Duration::from_secs(1)); // UIDVALIDITY is a time in seconds
    dovecot.run();
    assert_ne!(dovecot.uid_validity("INBOX").await, before);
    let new = common::canary();
    dovecot.append("INBOX", &delivered("New", &new)).await;
    dovecot.create("Processed").await;

    let daemon = common::start(&sandbox, Clock::system()).await;
    members.wait_for_all(&daemon.outbox, &[&new]).await;
    wait_until("all three are moved", Duration::from_secs(20), || async {
        dovecot.count("INBOX").await == 0 && dovecot.count("Processed").await == 3
    })
    .await;
    daemon.settle().await;
    let mut all = refs.clone();
    all.push(&new);
    members.assert_once(&daemon.outbox, &all);
    let duplicates = intake_count(&daemon, "duplicate");
    assert_eq!(duplicates, 2, "both old messages recognised");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_a_server_away_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice"]);
    // A server that goes away without closing the IDLE connection is
    // noticed at the next check, every poll_interval.
    sandbox.extra = dovecot
        .intake(dir.path(), "")
        .replace("poll_interval = \"60s\"", "poll_interval = \"2s\"");
    let password = dir.path().join("imap-password");
    std::fs::write(&password, "not the password\n").unwrap();
    let first = common::canary();
    dovecot.append("INBOX", &delivered("First", &first)).await;
    let daemon = common::start(&sandbox, Clock::system()).await;

    // A clear error, in status and the log, and nothing taken.
    let status = || embargod::status::report(&daemon.shared);
    wait_until(
        "the login failure shows",
        Duration::from_secs(10),
        || async { status().contains("reconnecting since") },
    )
    .await;
    assert!(
        status().contains(&format!("login as {USER:?} refused")),
        "{}",
        status()
    );
    assert_eq!(dovecot.count("INBOX").await, 1);
    // The admin fixes the password file: the next attempt logs in.
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    members.wait_for_all(&daemon.outbox, &[&first]).await;

    // The server goes away for a while; mail delivered meanwhile is
    // taken when it is back.
    wait_until("the intake is idle", Duration::from_secs(10), || async {
        status().contains("idle (IMAP IDLE)")
    })
    .await;
    dovecot.stop();
    wait_until("the lost server shows", Duration::from_secs(20), || async {
        status().contains("reconnecting since")
    })
    .await;
    dovecot.run();
    let second = common::canary();
    dovecot.append("INBOX", &delivered("Second", &second)).await;
    members.wait_for_all(&daemon.outbox, &[&second]).await;
    daemon.settle().await;
    members.assert_once(&daemon.outbox, &[&first, &second]);
    daemon.stop().await;
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    Members::add(&mut sandbox, &["alice"]);
    let port = free_port();
    let password = dir.path().join("imap-password");
    std::fs::write(&password, "secret\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    sandbox.extra = format!(
        "[lists.security.imap]\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         username = \"u\"\npassword_file = \"imap-password\"\n"
    );
    let config = sandbox.write_config().unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(&config)
        .args(["check", "--offline"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).to_string()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{said}");
    assert!(said.contains("readable by others (mode 644)"), "{said}");
}

#[test]
fn a_plaintext_login_to_another_host_is_refused_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    Members::add(&mut sandbox, &["alice"]);
    sandbox.extra = "[lists.security.imap]\nserver = \"imap.example.net\"\ntls = \"none\"\n\
                     username = \"u\"\npassword_file = \"p\"\n"
        .into();
    let config = sandbox.write_config().unwrap();
    let error = embargod::config::Config::load(&config)
        .unwrap_err()
        .to_string();
    assert!(error.contains("lists.security.imap.tls"), "{error}");
    assert!(error.contains("only for a server on loopback"), "{error}");
}

/// The case IDs (`[KAP-…]` in the subject) of the copies that read `canary`.
fn cases_of(
    members: &Members,
    outbox: &[OutboxMail],
    canary: &str,
) -> std::collections::BTreeSet<String> {
    let mut cases = std::collections::BTreeSet::new();
    for (address, secret) in &members.secrets {
        for mail in outbox
            .iter()
            .filter(|m| m.to.iter().any(|to| to == address))
        {
            let Ok(opened) = open_copy(&mail.bytes, secret, &members.list_key) else {
                continue;
            };
            let text = common::readable(&opened.content);
            if !text.contains(canary) {
                continue;
            }
            if let Some(start) = text.find("[KAP-") {
                let end = text[start..]
                    .find(']')
                    .map_or(text.len(), |e| start + e + 1);
                cases.insert(text[start..end].to_string());
            }
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_while_taking_from_the_mailbox_lose_nothing_and_take_nothing_twice() {
    const MESSAGES: usize = 20;
    const KILLS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice", "bob", "carol"]);
    sandbox.extra = dovecot.intake(dir.path(), "");
    let config = sandbox.write_config().unwrap();
    let canaries: Vec<String> = (0..MESSAGES).map(|_| common::canary()).collect();
    for canary in &canaries {
        dovecot.append("INBOX", &delivered("Killed", canary)).await;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill seed {seed}");
    let mut random = seed;
    let mut daemon = spawn(&config);
    for _ in 0..KILLS {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(150 + (random >> 33) % 750)).await;
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        daemon = spawn(&config);
    }
    let refs: Vec<&str> = canaries.iter().map(String::as_str).collect();
    members.wait_for_all(&sandbox.outbox_dir(), &refs).await;
    wait_until(
        "the mailbox is emptied",
        Duration::from_secs(30),
        || async { dovecot.count("INBOX").await == 0 },
    )
    .await;
    drop(daemon);
    let mail = common::outbox(&sandbox.outbox_dir());
    let mut resent = 0;
    for canary in &refs {
        // Taken once: one case; each member has it (a copy sent twice is
        // the delivery's send-then-record window, counted, not the intake).
        let cases = cases_of(&members, &mail, canary);
        assert_eq!(cases.len(), 1, "{canary} taken as {cases:?} (seed {seed})");
        for n in members.copies_of(&mail, canary).values() {
            assert!(*n >= 1, "{canary} lost (seed {seed})");
            resent += n - 1;
        }
    }
    println!(
        "{MESSAGES} messages, {KILLS} SIGKILLs: 0 lost, 0 taken twice, {resent} copies sent twice"
    );
}

/// Writes `message` into the maildir as getmail does: into `tmp/`, then
/// renamed into `new/`.
fn deliver_to_maildir(maildir: &Path, name: &str, message: &[u8]) {
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, message).unwrap();
    std::fs::rename(&tmp, maildir.join("new").join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_filled_by_getmail_reaches_every_member_once() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice", "bob"]);
    sandbox.extra =
        "[lists.security.maildir]\npath = \"Maildir\"\npoll_interval = \"200ms\"\n".into();
    let canaries: Vec<String> = (0..3).map(|_| common::canary()).collect();
    deliver_to_maildir(
        &maildir,
        "1700000001.M1P1.host",
        &delivered("One", &canaries[0]),
    );
    deliver_to_maildir(
        &maildir,
        "1700000002.M1P1.host",
        &delivered("Two", &canaries[1]),
    );
    // One a mail client already looked at: in cur/, with flags.
    std::fs::write(
        maildir.join("cur/1700000003.M1P1.host:2,S"),
        delivered("Three", &canaries[2]),
    )
    .unwrap();
    // A delivery still being written is not touched.
    let writing = common::canary();
    std::fs::write(
        maildir.join("tmp/1700000004.M1P1.host"),
        delivered("Writing", &writing),
    )
    .unwrap();

    let daemon = common::start(&sandbox, Clock::system()).await;
    let refs: Vec<&str> = canaries.iter().map(String::as_str).collect();
    members.wait_for_all(&daemon.outbox, &refs).await;
    wait_until(
        "new/ and cur/ are emptied",
        Duration::from_secs(10),
        || async { walk(&maildir.join("new")).is_empty() && walk(&maildir.join("cur")).is_empty() },
    )
    .await;
    daemon.settle().await;
    daemon.stop().await;
    assert!(maildir.join("tmp/1700000004.M1P1.host").exists());
    let mail = common::outbox(&sandbox.outbox_dir());
    assert!(members.copies_of(&mail, &writing).values().all(|&n| n == 0));

    // A crash after spooling and before the file was removed leaves the
    // file behind: the next start removes it without taking it again.
    std::fs::write(
        maildir.join("new/1700000001.M1P1.host"),
        delivered("One", &canaries[0]),
    )
    .unwrap();
    let daemon = common::start(&sandbox, Clock::system()).await;
    wait_until(
        "the leftover is removed",
        Duration::from_secs(10),
        || async { walk(&maildir.join("new")).is_empty() },
    )
    .await;
    daemon.settle().await;
    members.assert_once(&daemon.outbox, &refs);
    let duplicates = intake_count(&daemon, "duplicate");
    assert_eq!(duplicates, 1);
    let status = embargod::status::report(&daemon.shared);
    assert!(status.contains("maildir:"), "{status}");
    daemon.stop().await;
}

/// `embargod check` (online) on the sandbox with `intake` as the
/// security list's mailbox: success, and what it printed.
fn check_with(sandbox: &mut Sandbox, intake: &str, ca_file: Option<&Path>) -> (bool, String) {
    sandbox.extra = intake.to_string();
    let config = sandbox.write_config().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_embargod"));
    command.arg("--config").arg(&config).arg("check");
    // The platform's trust store (rustls-native-certs) reads SSL_CERT_FILE.
    match ca_file {
        Some(ca) => command.env("SSL_CERT_FILE", ca),
        None => command.env("SSL_CERT_FILE", "/nonexistent"),
    };
    let out = command.output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_logs_in_over_tls_and_starttls_and_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start_with_tls(dir.path());
    let (imaps, ca) = dovecot.tls.clone().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    Members::add(&mut sandbox, &["alice"]);
    // The password file, mode 0600, as the intake writes it.
    dovecot.intake(dir.path(), "");
    dovecot
        .append("INBOX", &delivered("Waiting", &common::canary()))
        .await;
    let intake = |port: u16, tls: &str| {
        format!(
            "[lists.security.imap]\nserver = \"localhost\"\nport = {port}\ntls = \"{tls}\"\n\
             username = \"{USER}\"\npassword_file = \"imap-password\"\n"
        )
    };

    for (port, tls) in [(imaps, "tls"), (dovecot.port, "starttls")] {
        let (ok, said) = check_with(&mut sandbox, &intake(port, tls), Some(&ca));
        assert!(ok, "{tls}: {said}");
        assert!(said.contains(&format!("logged in as {USER:?}")), "{said}");
        assert!(said.contains("1 message(s) in \"INBOX\" waiting"), "{said}");
        assert!(said.contains("IDLE: new mail is taken at once"), "{said}");
    }
    // A certificate no trusted CA signed: no login, a clear error.
    let (ok, said) = check_with(&mut sandbox, &intake(imaps, "tls"), None);
    assert!(!ok, "{said}");
    assert!(said.contains("TLS with localhost"), "{said}");
    // `--offline` does not connect.
    let config = sandbox.write_config().unwrap();
    let offline = Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(&config)
        .args(["check", "--offline"])
        .env("SSL_CERT_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert!(offline.status.success());
    // A wrong password and a missing folder are named.
    std::fs::write(dir.path().join("imap-password"), "wrong\n").unwrap();
    let (ok, said) = check_with(&mut sandbox, &intake(imaps, "tls"), Some(&ca));
    assert!(!ok && said.contains("refused"), "{said}");
    dovecot.intake(dir.path(), "");
    let (ok, said) = check_with(
        &mut sandbox,
        &(intake(imaps, "tls") + "processed_mailbox = \"Taken\"\n"),
        Some(&ca),
    );
    assert!(!ok && said.contains("mailbox \"Taken\""), "{said}");
    assert_eq!(dovecot.count("INBOX").await, 1, "check takes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_left_and_the_rest_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let members = Members::add(&mut sandbox, &["alice"]);
    sandbox.extra = dovecot.intake(dir.path(), "");
    // Two reports without a Message-ID, with the same body: two reports.
    let body = common::canary();
    for sender in ["one", "two"] {
        let message = format!(
            "Return-Path: <{sender}@reporter.example>\r\nFrom: <{sender}@reporter.example>\r\n\
             Subject: from {sender}\r\n\r\n{body}\r\n"
        );
        dovecot.append("INBOX", message.as_bytes()).await;
    }
    // And one the server cannot read (its file is unreadable to Dovecot).
    let unreadable = common::canary();
    dovecot
        .append("INBOX", &delivered("Unreadable", &unreadable))
        .await;
    let last = dovecot
        .inbox_files()
        .into_iter()
        .find(|f| std::fs::read_to_string(f).unwrap().contains(&unreadable))
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&last, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let after = common::canary();
    dovecot.append("INBOX", &delivered("After", &after)).await;

    let daemon = common::start(&sandbox, Clock::system()).await;
    members.wait_for_all(&daemon.outbox, &[&after]).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(members.copies_of(&mail, &body)["alice@example.org"], 2);
    assert_eq!(
        members.copies_of(&mail, &unreadable)["alice@example.org"],
        0
    );
    assert_eq!(
        dovecot.count("INBOX").await,
        1,
        "the unreadable one is left"
    );
    let left = intake_count(&daemon, "left");
    assert_eq!(left, 1, "reported once, though looked at each round");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_mailbox_is_retried_with_backoff_not_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    Members::add(&mut sandbox, &["alice"]);
    sandbox.extra = dovecot.intake(dir.path(), "mailbox = \"Security\"");
    let before = dovecot.logins();
    let daemon = common::start(&sandbox, Clock::system()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status = embargod::status::report(&daemon.shared);
    assert!(status.contains("create it, or set `mailbox`"), "{status}");
    // Attempts at 0, 1, 3 s (then 7 s): not six or more.
    let logins = dovecot.logins() - before;
    assert!((2..=4).contains(&logins), "{logins} logins in 6 s");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_serves_both_lists_from_two_folders() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    dovecot.create("Distributors").await;
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = Members::add(&mut sandbox, &["alice"]);
    let dave = sandbox
        .generate_member("dave", ListName::Distributors)
        .unwrap();
    sandbox.extra = dovecot.intake(dir.path(), "")
        + &format!(
            "[lists.distributors.imap]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             username = \"{USER}\"\npassword_file = \"imap-password\"\nmailbox = \"Distributors\"\n",
            dovecot.port
        );
    // A report to the security address, and the PST's signed embargo
    // notice to the distributors address, each filed in its folder.
    let report = common::canary();
    dovecot.append("INBOX", &delivered("Report", &report)).await;
    let patch = common::canary();
    let until = chrono::Utc::now() + chrono::Duration::days(5);
    let post = common::sequoia_signed_post(
        &pst.secrets[0].1,
        "alice@example.org",
        embargod::sandbox::DISTRIBUTORS,
        "Embargoed fix",
        &format!(
            "X-Case: KAP-2026-0001\r\nX-Embargo-Until: {}\r\n\r\n{patch}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        std::time::SystemTime::now(),
    );
    dovecot
        .append(
            "Distributors",
            &[b"Return-Path: <alice@example.org>\r\n".as_slice(), &post].concat(),
        )
        .await;
    let daemon = common::start(&sandbox, Clock::system()).await;
    pst.wait_for_all(&daemon.outbox, &[&report]).await;
    let distributors = Members {
        list_key: sandbox.list_key.clone(),
        secrets: vec![("dave@example.org".into(), dave)],
    };
    distributors.wait_for_all(&daemon.outbox, &[&patch]).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    // Each list's mail went to that list alone.
    assert_eq!(
        distributors.copies_of(&mail, &report)["dave@example.org"],
        0
    );
    assert!(dovecot.count("INBOX").await == 0 && dovecot.count("Distributors").await == 0);
    let embargoes = embargod::embargo::all(&daemon.shared.store).unwrap();
    assert_eq!(embargoes.len(), 1, "the embargo is open");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bounces_filed_in_a_folder_of_the_hosted_mailbox_mark_the_member() {
    // The hosted setup: copies leave through the provider's submission
    // server from security-owner+TOKEN@…, and the provider files the
    // bounces that come back in a folder the daemon takes as bounces.
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    dovecot.create("Bounces").await;
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = Members::add(&mut sandbox, &["alice", "bob"]);
    sandbox.extra = dovecot.intake(dir.path(), "")
        + &format!(
            "[bounces]\nthreshold = 1\n[bounces.imap]\nserver = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nusername = \"{USER}\"\npassword_file = \"imap-password\"\n\
             mailbox = \"Bounces\"\n",
            dovecot.port
        );
    let report = common::canary();
    dovecot.append("INBOX", &delivered("Report", &report)).await;
    let daemon = common::start(&sandbox, Clock::system()).await;
    let mail = pst.wait_for_all(&daemon.outbox, &[&report]).await;
    daemon.settle().await;
    let alice_from = mail
        .iter()
        .find(|m| m.to == ["alice@example.org"])
        .and_then(|m| m.from.clone())
        .unwrap();
    // The provider's DSN, as its delivery leaves it in the folder.
    let dsn = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bounces/postfix.eml"
    ))
    .unwrap()
    .replace("carol@example.org", "alice@example.org")
    .replace(
        "security-owner+0a1b2c3d4e5f60718293@kappital.example",
        &alice_from,
    );
    dovecot
        .append(
            "Bounces",
            &[
                format!("Delivered-To: {alice_from}\r\n").as_bytes(),
                dsn.as_bytes(),
            ]
            .concat(),
        )
        .await;
    wait_until("alice is probed", Duration::from_secs(30), || async {
        embargod::bounce::standing::get(&daemon.shared.store, "alice", "alice@example.org")
            .is_ok_and(|s| s.bounces == 1)
    })
    .await;
    assert_eq!(dovecot.count("Bounces").await, 0, "taken from the folder");
    let status = embargod::status::report(&daemon.shared);
    assert!(status.contains("bounces"), "{status}");
    daemon.stop().await;
}
