//! Crash safety: the daemon is killed with SIGKILL twenty times at random
//! moments while it takes in fifty messages for twenty members and fans
//! them out, and an embargo falls due in the middle of it. Restarted each
//! time (a store left by a killed process must open and serve), then left
//! to finish: every accepted message reaches every member, the release
//! happens once, duplicates come only from the window between a send and
//! its record (they are counted), and the ledger verifies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embargod::config::ListName;
use embargod::sandbox::{open_copy, read_outbox, Sandbox, ANNOUNCE, DISTRIBUTORS, SECURITY};
use sequoia_openpgp::Cert;

const MEMBERS: usize = 20;
const MESSAGES: usize = 50;
const KILLS: usize = 20;

/// A small deterministic generator for the kill times (printed seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A PST post opening an embargo, signed with a member's key (Sequoia).
fn embargo_post(signer: &Cert, until: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let text = format!(
        "X-Case: KAP-2026-0042\r\nX-Embargo-Until: {}\r\n\r\nThe embargoed fix.",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    common::sequoia_signed_post(
        signer,
        "m00@example.org",
        DISTRIBUTORS,
        "embargoed fix",
        &text,
        std::time::SystemTime::now(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_sigkills_lose_nothing_and_release_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let secrets: Vec<Cert> = (0..MEMBERS)
        .map(|i| {
            sandbox
                .generate_member(&format!("m{i:02}"), ListName::Security)
                .unwrap()
        })
        .collect();
    let distributor = sandbox
        .generate_member("distro", ListName::Distributors)
        .unwrap();
    let (config, addr) = common::config_on_fixed_port(&sandbox);

    // The running daemon, swapped at each restart; killed when dropped.
    let daemon = Arc::new(Mutex::new(Some(common::spawn_binary(&config, "info"))));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");

    // The killer: twenty SIGKILLs at random moments, a restart after each.
    let killer = {
        let slot = daemon.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let mut rng = Lcg(seed);
            for _ in 0..KILLS {
                tokio::time::sleep(Duration::from_millis(150 + rng.next(400))).await;
                let mut slot = slot.lock().unwrap();
                if let Some(mut running) = slot.take() {
                    running.0.kill().unwrap();
                    running.0.wait().unwrap();
                }
                *slot = Some(common::spawn_binary(&config, "info"));
            }
        })
    };

    // The sender: like an MTA, it retries each message until it gets 250.
    // The embargo post goes first, due a few seconds later, mid-storm.
    let until = chrono::Utc::now() + chrono::Duration::seconds(4);
    let mut outgoing: Vec<(String, &str, Vec<u8>)> = vec![(
        "embargo".into(),
        DISTRIBUTORS,
        embargo_post(&secrets[0], until),
    )];
    for i in 0..MESSAGES {
        let tag = format!("crash-{i:02}-{}", embargod::random::token());
        outgoing.push((
            tag.clone(),
            SECURITY,
            common::report(&format!("report {i}"), &tag),
        ));
    }
    let mut accepted = Vec::new();
    for (tag, rcpt, message) in &outgoing {
        common::send_until_accepted(
            &addr,
            "m00@example.org",
            rcpt,
            message,
            Duration::from_secs(300),
        )
        .await;
        if rcpt == &SECURITY {
            accepted.push(tag.clone());
        }
    }
    killer.await.unwrap();

    // Now let it finish: every member's copy of every accepted message.
    let wanted = MESSAGES * MEMBERS;
    let mut copies: BTreeMap<(String, String), usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut announcements: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        for mail in read_outbox(&sandbox.outbox_dir()).unwrap() {
            if !seen.insert(mail.eml.clone()) {
                continue;
            }
            let to = mail.to[0].clone();
            if to == ANNOUNCE {
                let text = String::from_utf8_lossy(&mail.bytes);
                let id = text
                    .lines()
                    .find(|l| l.starts_with("Message-ID:"))
                    .unwrap_or_default()
                    .to_string();
                announcements.push(id);
                continue;
            }
            let Some(index) = to
                .strip_prefix('m')
                .and_then(|r| r.strip_suffix("@example.org"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue; // the distributor, the reporter
            };
            let opened = open_copy(&mail.bytes, &secrets[index], &sandbox.list_key).unwrap();
            let text = common::readable(&opened.content);
            // Members also get the PST's notices (the release, reminders).
            if let Some(tag) = accepted.iter().find(|t| text.contains(t.as_str())) {
                *copies.entry((tag.clone(), to)).or_default() += 1;
            }
        }
        if copies.len() == wanted && !announcements.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(config.with_file_name("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("listening") && !l.contains("sent msg"))
                .rev()
                .take(60)
                .collect();
            panic!(
                "{} of {wanted} copies after the storm; the log ends:\n{}",
                copies.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Settled: the queue is empty once the ledger shows no more work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(daemon);

    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    let distinct: BTreeSet<&String> = announcements.iter().collect();
    eprintln!(
        "{KILLS} kills: {} messages accepted, {} of {wanted} copies to {MEMBERS} members, {} lost, \
         {duplicates} duplicate(s); {} announcement(s), {} distinct",
        accepted.len(),
        copies.len(),
        wanted - copies.len(),
        announcements.len(),
        distinct.len()
    );
    assert_eq!(
        copies.len(),
        wanted,
        "every accepted message reached every member"
    );
    assert_eq!(distinct.len(), 1, "one release: {announcements:?}");
    // A kill can catch at most the copies in flight (`delivery.concurrency`,
    // two per core) and those whose record is being committed (as many)
    // between the transport's success and their record.
    let concurrency = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        duplicates <= KILLS * 2 * concurrency,
        "duplicates only from the send-to-record window: {duplicates}"
    );
    let _ = distributor;

    let verify = Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(&config)
        .args(["ledger", "verify"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains("ledger intact"), "{out}");
}

/// A report of about `size` bytes of prose, carrying `tag`.
fn long_report(tag: &str, size: usize) -> Vec<u8> {
    let mut text =
        String::from(std::str::from_utf8(&common::report("a long report", tag)).unwrap());
    let sentences = [
        "The parser trusts the length field of the header and copies that many bytes. ",
        "When the field is larger than the buffer, the copy runs past its end. ",
        "We found it while fuzzing the configuration loader over the weekend. ",
        "A remote client can reach it before any authentication takes place. ",
    ];
    let mut i = 0;
    while text.len() < size {
        text.push_str(sentences[i % sentences.len()]);
        if i % 5 == 4 {
            text.push_str("\r\n");
        }
        i += 1;
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Messages in the outbox to members (cheap: the envelope files only).
fn to_members(sandbox: &Sandbox) -> usize {
    std::fs::read_dir(sandbox.outbox_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
        .filter(|entry| {
            std::fs::read_to_string(entry.path()).is_ok_and(|json| json.contains("\"m"))
        })
        .count()
}

/// The copies of the message tagged `tag` in the outbox, by recipient
/// index.
fn copies_of(sandbox: &Sandbox, secrets: &[Cert], tag: &str) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    for mail in read_outbox(&sandbox.outbox_dir()).unwrap() {
        let Some(index) = mail.to[0]
            .strip_prefix('m')
            .and_then(|r| r.strip_suffix("@example.org"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let opened = open_copy(&mail.bytes, &secrets[index], &sandbox.list_key).unwrap();
        if common::readable(&opened.content).contains(tag) {
            found.insert(index);
        }
    }
    found
}

/// A message whose copies are being made each time the daemon dies (an
/// out-of-memory kill, say) is made at most three times: at the fourth
/// start its remaining copies fail, it goes to the quarantine, the PST is
/// told, and the list goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_keeps_killing_the_daemon_is_quarantined_and_the_list_serves_on() {
    const PST: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let secrets: Vec<Cert> = (0..PST)
        .map(|i| {
            sandbox
                .generate_member(&format!("m{i:02}"), ListName::Security)
                .unwrap()
        })
        .collect();
    // One copy in flight at a time: each start makes a few before the kill.
    sandbox.delivery.push_str("concurrency = 1\n");
    let (config, addr) = common::config_on_fixed_port(&sandbox);
    let poison = format!("poison-{}", embargod::random::token());
    let mut daemon = common::spawn_binary(&config, "info");
    common::send_until_accepted(
        &addr,
        "rita@reporter.example",
        SECURITY,
        &long_report(&poison, 4 << 20),
        Duration::from_secs(60),
    )
    .await;

    // Three times: once a copy more went out, SIGKILL, start again.
    for kill in 1..=3 {
        let before = to_members(&sandbox);
        let deadline = Instant::now() + Duration::from_secs(120);
        while to_members(&sandbox) == before {
            assert!(Instant::now() < deadline, "no copy before kill {kill}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        daemon = common::spawn_binary(&config, "info");
    }
    let delivered = copies_of(&sandbox, &secrets, &poison);
    assert!(delivered.len() < PST, "the fan-out finished: {delivered:?}");

    // The fourth start: the list works again.
    let after = format!("after-{}", embargod::random::token());
    common::send_until_accepted(
        &addr,
        "rita@reporter.example",
        SECURITY,
        &common::report("next report", &after),
        Duration::from_secs(60),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let told = loop {
        let told = read_outbox(&sandbox.outbox_dir())
            .unwrap()
            .into_iter()
            .filter(|mail| mail.to[0] == "m00@example.org")
            .filter_map(|mail| open_copy(&mail.bytes, &secrets[0], &sandbox.list_key).ok())
            .any(|opened| common::readable(&opened.content).contains("daemon stopped, 3 times"));
        if told && copies_of(&sandbox, &secrets, &after).len() == PST {
            break told;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(config.with_file_name("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "the next report or the notice did not arrive; the log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(told);
    drop(daemon);
    assert_eq!(
        copies_of(&sandbox, &secrets, &poison),
        delivered,
        "no copy of it after the third kill"
    );

    let loaded = embargod::config::Config::load(&config).unwrap();
    let store = embargod::store::Store::open(
        &loaded.store.path,
        embargod::store::StoreKey::load(&loaded.store.key).unwrap(),
    )
    .unwrap();
    let quarantined = store.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].1.reason.contains("stopped 3 times"),
        "{}",
        quarantined[0].1.reason
    );
    // Every member's copy of it has one final record: sent, or failed
    // with the quarantine (a copy the transport took just before a kill
    // is in the outbox with a "failed" record: the send-to-record window).
    let records: Vec<_> = embargod::ledger::records(&store)
        .unwrap()
        .into_iter()
        .filter(|r| r.message == 0 && r.member.starts_with('m'))
        .collect();
    let outcome = |label: &str| {
        records
            .iter()
            .filter(|r| r.outcome.label() == label)
            .map(|r| r.member.clone())
            .collect::<BTreeSet<String>>()
    };
    let (sent, failed) = (outcome("sent"), outcome("failed"));
    assert_eq!(sent.len() + failed.len(), PST, "{sent:?} {failed:?}");
    assert!(sent.is_disjoint(&failed));
    assert!(sent.len() <= delivered.len());
    assert_eq!(store.queue_len(), 0);
}

/// The same for the decision itself: a spooled message whose processing
/// was under way at three deaths of the daemon is not taken up a fourth
/// time; it is quarantined, the PST is told, and nothing of it is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_spooled_message_processed_at_three_deaths_is_quarantined_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    let file = sandbox.write_config().unwrap();
    let config = embargod::config::Config::load(&file).unwrap();
    let tag = format!("deadly-{}", embargod::random::token());
    {
        // As three killed daemons left it: spooled, three starts counted.
        let store = embargod::store::Store::open(
            &config.store.path,
            embargod::store::StoreKey::load(&config.store.key).unwrap(),
        )
        .unwrap();
        let id = store
            .spool(&embargod::store::Incoming {
                meta: embargod::store::IncomingMeta {
                    received: embargod::clock::Timestamp::from(chrono::Utc::now()),
                    source: embargod::store::Source::Mail {
                        mail_from: "rita@reporter.example".into(),
                        lists: vec![ListName::Security],
                        via: embargod::store::Intake::Lmtp,
                    },
                },
                raw: common::report("deadly", &tag),
            })
            .unwrap();
        for _ in 0..3 {
            store
                .begin_attempt(embargod::store::Attempt::Spool, id)
                .await
                .unwrap();
        }
    }
    let daemon = common::start_with_config(&file, embargod::clock::Clock::system()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.shared.store.quarantined().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "not quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.settle().await;
    let quarantined = daemon.shared.store.quarantined().unwrap();
    assert!(
        quarantined[0].1.reason.contains("stopped 3 times"),
        "{}",
        quarantined[0].1.reason
    );
    let mut told = false;
    for mail in read_outbox(&daemon.outbox).unwrap() {
        assert!(
            mail.to[0] != "rita@reporter.example",
            "the reporter was answered"
        );
        if mail.to[0] == "alice@example.org" {
            let text = common::readable(
                &open_copy(&mail.bytes, &alice, &sandbox.list_key)
                    .unwrap()
                    .content,
            );
            assert!(!text.contains(&tag), "a copy of it went out");
            told |= text.contains("quarantined");
        }
    }
    assert!(told, "the PST was told");
    daemon.stop().await;
}
