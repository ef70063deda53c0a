//! The case process, end to end with GnuPG: reports open cases and are
//! acknowledged (encrypted when the reporter gave a key), the PST's signed
//! keyword commands change cases (replays and stale commands refused), the
//! Fix Lead rotates, a Fix Team member sees their case only, and the
//! timeline's reminders and overdue notices come on the injected clock.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{addressed_to, canary, open_copy, start, Gpg, TestDaemon, World};
use embargod::config::ListName;
use embargod::control::{client::request, Command};
use embargod::sandbox::{read_outbox, OutboxMail, SECURITY};

/// The reporter of these tests (not [`common::REPORTER`]): a finder
/// outside the project, with a key.
const FINDER: &str = "finder@elsewhere.example";

/// PST alice, bob, carol (keys made 30 days ago, so that old signatures
/// are possible), engineer dave (on no list), distributor distro-a, and a
/// reporter with a key.
fn world(extra: &str) -> World {
    let month_ago = (Utc::now() - chrono::Duration::days(30))
        .format("%Y%m%dT%H%M%S")
        .to_string();
    let members = [
        ("alice", Some(ListName::Security)),
        ("bob", Some(ListName::Security)),
        ("carol", Some(ListName::Security)),
        ("dave", None),
        ("distro-a", Some(ListName::Distributors)),
    ];
    let mut world = World::new(&members, Some(&month_ago)).with_reporter(FINDER);
    world.sandbox.extra = extra.to_string();
    world
}

/// A report; with the reporter's key attached when `key` is given.
fn report(subject: &str, body: &str, key: Option<&[u8]>) -> Vec<u8> {
    let head = format!("From: Finder <{FINDER}>\r\nTo: <{SECURITY}>\r\nSubject: {subject}\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{}@elsewhere.example>\r\nMIME-Version: 1.0\r\n", embargod::random::token());
    match key {
        None => format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").into_bytes(),
        Some(key) => format!(
            "{head}Content-Type: multipart/mixed; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
             --r\r\nContent-Type: application/pgp-keys; name=\"key.asc\"\r\nContent-Disposition: attachment; filename=\"key.asc\"\r\n\r\n{}\r\n--r--\r\n",
            String::from_utf8_lossy(key)
        )
        .into_bytes(),
    }
}

/// A post signed by `signer` with `keywords` and `text`.
fn command(
    gpg: &Gpg,
    signer: &str,
    subject: &str,
    keywords: &str,
    text: &str,
    faked_time: Option<&str>,
) -> Vec<u8> {
    let part = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{keywords}\r\n{text}");
    let mut args = vec!["--armor", "--detach-sign", "--local-user", signer];
    if let Some(time) = faked_time {
        args.splice(0..0, ["--faked-system-time", time]);
    }
    let signature = gpg.ok(&args, part.as_bytes());
    format!(
        "From: <{signer}>\r\nTo: <{SECURITY}>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"o\"\r\n\r\n\
         --o\r\n{part}\r\n--o\r\nContent-Type: application/pgp-signature\r\n\r\n{}\r\n--o--\r\n",
        String::from_utf8(signature).unwrap()
    )
    .into_bytes()
}

fn all_mail(daemon: &TestDaemon) -> Vec<OutboxMail> {
    read_outbox(&daemon.outbox).unwrap()
}

async fn settle(daemon: &TestDaemon) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_open_cases_and_reporters_are_acknowledged() {
    let w = world("");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let secret = canary();
    let key = w.reporter().ok(&["--armor", "--export", FINDER], b"");
    daemon
        .send(
            FINDER,
            &[SECURITY],
            &report(
                "RCE in the config parser",
                &format!("Details: {secret}"),
                Some(&key),
            ),
        )
        .await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    // Three PST copies and one acknowledgement.
    assert_eq!(
        mail.len(),
        4,
        "{:?}",
        mail.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    let ack = addressed_to(&mail, FINDER);
    assert_eq!(ack.len(), 1);
    assert!(
        String::from_utf8_lossy(&ack[0].bytes).contains("multipart/encrypted"),
        "encrypted: the key was attached"
    );
    let text = open_copy(w.reporter(), ack[0]);
    assert!(text.contains("It is case KAP-2026-0001"), "{text}");
    assert!(
        text.contains("Fix Release Day") || text.contains("the fix is released"),
        "{text}"
    );
    assert!(
        !text.contains(&secret) && !text.contains("RCE in the config parser"),
        "the acknowledgement quotes nothing"
    );
    let copy = open_copy(&w.gpg, addressed_to(&mail, "alice@example.org")[0]);
    assert!(
        copy.contains("Subject: [KAP-2026-0001] RCE in the config parser"),
        "{copy}"
    );
    assert!(
        copy.contains("New case KAP-2026-0001. Fix Lead: alice."),
        "{copy}"
    );
    assert!(copy.contains("encrypted acknowledgement"), "{copy}");

    // A report without a key: a plaintext acknowledgement, signed, quoting nothing.
    daemon
        .send(
            FINDER,
            &[SECURITY],
            &report("Second problem", &format!("More: {secret}"), None),
        )
        .await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let acks = addressed_to(&mail, FINDER);
    assert_eq!(acks.len(), 2);
    let plain = acks
        .iter()
        .find(|m| !String::from_utf8_lossy(&m.bytes).contains("multipart/encrypted"))
        .unwrap();
    let raw = String::from_utf8_lossy(&plain.bytes);
    assert!(
        raw.contains("multipart/signed") && raw.contains("KAP-2026-0002"),
        "{raw}"
    );
    assert!(
        !raw.contains(&secret) && !raw.contains("Second problem"),
        "{raw}"
    );
    let (signed, signature) = common::signed_parts(&plain.bytes);
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("m"), signed).unwrap();
    std::fs::write(files.path().join("m.asc"), signature).unwrap();
    let verify = w.reporter().run(
        &[
            "--verify",
            files.path().join("m.asc").to_str().unwrap(),
            files.path().join("m").to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // A reply joins its case: no new case, no new acknowledgement.
    daemon
        .send(
            FINDER,
            &[SECURITY],
            &report(
                "Re: [KAP-2026-0001] RCE in the config parser",
                "One more detail.",
                None,
            ),
        )
        .await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    assert_eq!(addressed_to(&mail, FINDER).len(), 2);
    let cases = request(&daemon.config.control.socket, Command::Cases)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        cases.contains("KAP-2026-0001")
            && cases.contains("KAP-2026-0002")
            && !cases.contains("KAP-2026-0003"),
        "{cases}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_commands_change_the_case_and_replays_are_refused() {
    let w = world("");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    daemon
        .send(FINDER, &[SECURITY], &report("Overflow", "details", None))
        .await;
    settle(&daemon).await;

    let cmd = command(
        &w.gpg,
        "alice@example.org",
        "Re: [KAP-2026-0001] Overflow",
        "X-Case: KAP-2026-0001\r\nX-CVSS: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\r\nX-Add: dave\r\nX-Slow: holidays\r\n",
        "Dave knows the parser; adding him.",
        None,
    );
    daemon.send("alice@example.org", &[SECURITY], &cmd).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let replies: Vec<String> = addressed_to(&mail, "alice@example.org")
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| t.contains("Commands for case KAP-2026-0001"))
        .collect();
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].contains("done:    CVSS 9.8 critical"),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("dave added to the Fix Team"),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("REFUSED: X-Slow: the CVSS score is 9.8"),
        "{}",
        replies[0]
    );
    // Dave got the post (the text after the keywords), as the Fix Team.
    let dave = addressed_to(&mail, "dave@example.org");
    assert_eq!(dave.len(), 1);
    assert!(open_copy(&w.gpg, dave[0]).contains("Dave knows the parser"));
    let shown = request(
        &daemon.config.control.socket,
        Command::CaseShow {
            id: "KAP-2026-0001".into(),
        },
    )
    .await
    .unwrap()
    .text()
    .unwrap();
    assert!(
        shown.contains("9.8 critical") && shown.contains("team      dave"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.contains("team") && l.contains("done")),
        "a Fix Team named meets the milestone: {shown}"
    );

    // The same signed mail again: a replay.
    let before = all_mail(&daemon).len();
    daemon.send("alice@example.org", &[SECURITY], &cmd).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let refusal = addressed_to(&mail, "alice@example.org")
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .find(|t| t.contains("already used"));
    assert!(refusal.is_some(), "the replay is refused");
    assert_eq!(
        mail.len(),
        before + 3,
        "only the refusal, to each of the PST; nothing forwarded"
    );

    // A signature made eight days ago: stale.
    let old = (Utc::now() - chrono::Duration::days(8))
        .format("%Y%m%dT%H%M%S")
        .to_string();
    let stale = command(
        &w.gpg,
        "bob@example.org",
        "Re: [KAP-2026-0001] Overflow",
        "X-Case: KAP-2026-0001\r\nX-Lead: bob\r\n",
        "",
        Some(&old),
    );
    daemon.send("bob@example.org", &[SECURITY], &stale).await;
    settle(&daemon).await;
    let bob: Vec<String> = addressed_to(&all_mail(&daemon), "bob@example.org")
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .collect();
    assert!(
        bob.iter()
            .any(|t| t.contains("must be less than 7days old")),
        "stale command refused"
    );

    // An unknown keyword refuses the whole mail: the lead stays alice.
    let unknown = command(
        &w.gpg,
        "bob@example.org",
        "Re: [KAP-2026-0001] Overflow",
        "X-Case: KAP-2026-0001\r\nX-Lead: bob\r\nX-Frobnicate: now\r\n",
        "",
        None,
    );
    daemon.send("bob@example.org", &[SECURITY], &unknown).await;
    settle(&daemon).await;
    let shown = request(
        &daemon.config.control.socket,
        Command::CaseShow {
            id: "KAP-2026-0001".into(),
        },
    )
    .await
    .unwrap()
    .text()
    .unwrap();
    assert!(shown.contains("lead      alice"), "{shown}");
    let bob: Vec<String> = addressed_to(&all_mail(&daemon), "bob@example.org")
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .collect();
    assert!(
        bob.iter()
            .any(|t| t.contains("unknown keyword X-frobnicate")),
        "{bob:?}"
    );

    // A second case: dave, on the first case's team only, gets nothing of it.
    let dave_before = addressed_to(&all_mail(&daemon), "dave@example.org").len();
    daemon
        .send(
            FINDER,
            &[SECURITY],
            &report("Another one", "other details", None),
        )
        .await;
    settle(&daemon).await;
    assert_eq!(
        addressed_to(&all_mail(&daemon), "dave@example.org").len(),
        dave_before,
        "need-to-know"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fix_lead_rotates_fairly_and_skips_who_is_away() {
    let w = world("");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    for i in 0..10 {
        daemon
            .send(
                FINDER,
                &[SECURITY],
                &report(&format!("Report {i}"), "text", None),
            )
            .await;
    }
    settle(&daemon).await;
    let cases = embargod::case::all(&daemon.shared.store).unwrap();
    let leads: Vec<&str> = cases.iter().map(|c| c.lead.as_deref().unwrap()).collect();
    assert_eq!(
        leads,
        ["alice", "bob", "carol", "alice", "bob", "carol", "alice", "bob", "carol", "alice"]
    );
    daemon.stop().await;

    // Carol is away: the rotation goes on without her.
    let config = w.sandbox.dir.join("embargod.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("id = \"carol\"\n", "id = \"carol\"\naway = true\n");
    std::fs::write(&config, text).unwrap();
    let file_config = embargod::config::Config::load(&config).unwrap();
    assert!(file_config.members["carol"].away);
    let daemon = common::start_with_config(&config, w.clock.clone()).await;
    for i in 0..4 {
        daemon
            .send(
                FINDER,
                &[SECURITY],
                &report(&format!("Later {i}"), "text", None),
            )
            .await;
    }
    settle(&daemon).await;
    let cases = embargod::case::all(&daemon.shared.store).unwrap();
    let leads: Vec<&str> = cases[10..]
        .iter()
        .map(|c| c.lead.as_deref().unwrap())
        .collect();
    assert_eq!(leads, ["bob", "alice", "bob", "alice"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_remind_the_lead_and_tell_the_pst_when_overdue() {
    let w = world("");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    daemon
        .send(FINDER, &[SECURITY], &report("Timeline", "text", None))
        .await;
    settle(&daemon).await;
    let count = |daemon: &TestDaemon, who: &str, what: &str| -> usize {
        addressed_to(&all_mail(daemon), who)
            .iter()
            .map(|m| open_copy(&w.gpg, m))
            .filter(|t| t.contains(what))
            .count()
    };
    // A day on: the Fix Team was due; the PST hears of it.
    w.clock.advance(Duration::from_secs(86400 + 60));
    settle(&daemon).await;
    assert_eq!(
        count(
            &daemon,
            "bob@example.org",
            "KAP-2026-0001 OVERDUE: Fix Team organised"
        ),
        1
    );
    // Six days: the Fix Lead is reminded of the fix and the users' notice.
    assert_eq!(
        count(&daemon, "alice@example.org", "fix developed due"),
        0,
        "not yet"
    );
    w.clock.advance(Duration::from_secs(5 * 86400));
    settle(&daemon).await;
    assert_eq!(count(&daemon, "alice@example.org", "fix developed due"), 1);
    assert_eq!(
        count(&daemon, "bob@example.org", "fix developed due"),
        0,
        "reminders go to the lead only"
    );
    // The fix is done (from the command line); the users' notice is not.
    let done = request(
        &daemon.config.control.socket,
        Command::CaseSet {
            id: "KAP-2026-0001".into(),
            keywords: vec![("done".into(), "fix".into())],
        },
    )
    .await
    .unwrap();
    assert!(done.is_done(), "{done:?}");
    w.clock.advance(Duration::from_secs(86400));
    settle(&daemon).await;
    assert_eq!(
        count(&daemon, "bob@example.org", "OVERDUE: fix developed"),
        0,
        "met in time"
    );
    assert_eq!(count(&daemon, "bob@example.org", "OVERDUE: users told"), 1);
    let cases = request(&daemon.config.control.socket, Command::Cases)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        cases.contains("alice") && cases.contains("team,users"),
        "lead and overdue items: {cases}"
    );

    // Already public: everything is as soon as possible, reminded daily.
    let public = request(
        &daemon.config.control.socket,
        Command::CaseSet {
            id: "KAP-2026-0001".into(),
            keywords: vec![("public".into(), "yes".into())],
        },
    )
    .await
    .unwrap();
    assert!(public.is_done(), "{public:?}");
    settle(&daemon).await;
    let before = count(&daemon, "bob@example.org", "OVERDUE: distributors told");
    assert_eq!(before, 1, "due at once");
    w.clock.advance(Duration::from_secs(86400));
    settle(&daemon).await;
    assert_eq!(
        count(&daemon, "bob@example.org", "OVERDUE: distributors told"),
        2,
        "and again the next day"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pst_answers_the_reporter_and_distributors_apply() {
    let w = world("");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let key = w.reporter().ok(&["--armor", "--export", FINDER], b"");
    daemon
        .send(FINDER, &[SECURITY], &report("Bug", "details", Some(&key)))
        .await;
    settle(&daemon).await;
    let answer = command(
        &w.gpg,
        "bob@example.org",
        "Re: [KAP-2026-0001] Bug",
        "X-Case: KAP-2026-0001\r\nX-To-Reporter: yes\r\n",
        "Thanks! We reproduced it and are working on a fix.",
        None,
    );
    daemon.send("bob@example.org", &[SECURITY], &answer).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let to_reporter: Vec<String> = addressed_to(&mail, FINDER)
        .iter()
        .map(|m| open_copy(w.reporter(), m))
        .collect();
    assert!(
        to_reporter.iter().any(|t| t.contains("We reproduced it")),
        "{to_reporter:?}"
    );
    assert!(to_reporter.iter().all(|t| !t.contains("X-To-Reporter")));
    // The PST sees it too.
    assert!(addressed_to(&mail, "carol@example.org")
        .iter()
        .any(|m| open_copy(&w.gpg, m).contains("We reproduced it")));

    // Someone asks to join the distributors list; a distributor vouches.
    let join = format!(
        "From: Sec Team <security@newdistro.example>\r\nTo: <{SECURITY}>\r\nSubject: Joining\r\n\r\nX-Join: distributors\r\n\r\nWe ship the project to many users.\r\n"
    );
    daemon
        .send("security@newdistro.example", &[SECURITY], join.as_bytes())
        .await;
    settle(&daemon).await;
    let vouch = command(
        &w.gpg,
        "distro-a@example.org",
        "Vouch",
        "X-Vouch: REQ-2026-0001\r\n",
        "",
        None,
    );
    daemon
        .send("distro-a@example.org", &[SECURITY], &vouch)
        .await;
    settle(&daemon).await;
    let requests = request(&daemon.config.control.socket, Command::Requests)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        requests.contains("REQ-2026-0001 distributors list, from security@newdistro.example"),
        "{requests}"
    );
    assert!(
        requests.contains("[ ] an active distributor of the project"),
        "{requests}"
    );
    assert!(requests.contains("vouched for by distro-a"), "{requests}");
    daemon.stop().await;
}
