//! Members that stay reachable, end to end with the real daemon, LMTP and
//! GnuPG: bounces that come back to a copy's VERP address mark the member
//! (and the PST hears once); distributors' signed `X-Status:` replies
//! build the PST's table of who has the patch; keys near their expiry are
//! warned about at 30, 14 and 3 days, with an injected clock.

mod common;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{addressed_to, open_copy, signed_text, start, TestDaemon, World};
use embargod::config::ListName;
use embargod::control::{client::request, Command};
use embargod::ledger::Outcome;
use embargod::sandbox::{read_outbox, OutboxMail, DISTRIBUTORS, OWNER, SECURITY};

/// Waits until the outbox (reporters' mail aside) holds exactly `n`
/// messages and the daemon is idle.
async fn outbox(daemon: &TestDaemon, n: usize) -> Vec<OutboxMail> {
    daemon.wait_outbox(n).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(mail.len(), n, "expected exactly {n} messages");
    mail
}

async fn control(daemon: &TestDaemon, command: Command) -> String {
    request(&daemon.config.control.socket, command)
        .await
        .unwrap()
        .text()
        .expect("the command succeeds")
}

/// The newest message to `address` (the file transport's names are
/// random: by the time the file was written).
fn newest<'a>(mail: &'a [OutboxMail], address: &str) -> &'a OutboxMail {
    addressed_to(mail, address)
        .into_iter()
        .max_by_key(|m| {
            std::fs::metadata(&m.eml)
                .and_then(|m| m.modified())
                .unwrap()
        })
        .expect("a message to that address")
}

/// A Postfix DSN (the fixture) about `recipient`.
fn dsn(recipient: &str) -> Vec<u8> {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bounces/postfix.eml"
    ))
    .unwrap()
    .replace("carol@example.org", recipient)
    .into_bytes()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/bounces/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The mail whose text, decrypted, contains `needle`.
fn opened_with(w: &World, mail: &[OutboxMail], needle: &str) -> Vec<String> {
    mail.iter()
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| t.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bounces_to_a_copys_verp_address_mark_the_member_and_the_pst_hears_once() {
    let mut w = World::new(
        &[
            ("alice", Some(ListName::Security)),
            ("bob", Some(ListName::Security)),
        ],
        None,
    );
    w.sandbox.extra.push_str("[bounces]\nthreshold = 2\n");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let report = common::report("overflow", &common::canary());
    daemon.send(common::REPORTER, &[SECURITY], &report).await;
    let mail = outbox(&daemon, 2).await;

    // Each member's copy has its own envelope sender; it names neither
    // the member nor the copy, and the reporter's acknowledgement leaves
    // from the owner address itself.
    let alice_copy = newest(&mail, "alice@example.org");
    let bob_copy = newest(&mail, "bob@example.org");
    let alice_from = alice_copy.from.clone().unwrap();
    assert!(
        alice_from.starts_with("security-owner+") && alice_from.ends_with("@kappital.example"),
        "{alice_from}"
    );
    assert!(!alice_from.contains("alice"));
    assert_ne!(Some(alice_from.clone()), bob_copy.from);
    let ack = read_outbox(&daemon.outbox)
        .unwrap()
        .into_iter()
        .find(|m| m.to == [common::REPORTER])
        .expect("the reporter's acknowledgement");
    assert_eq!(ack.from.as_deref(), Some(OWNER));

    // What must count for nothing: a bounce to the bare owner address or
    // with a made-up token (anyone can send those), a vacation reply, a
    // delay warning.
    let forged_token = "security-owner+00112233445566778899@kappital.example";
    for (rcpt, message) in [
        (OWNER, dsn("alice@example.org")),
        (forged_token, dsn("alice@example.org")),
        (alice_from.as_str(), fixture("vacation.eml")),
        (alice_from.as_str(), fixture("postfix-delayed.eml")),
    ] {
        let replies = daemon.send("", &[rcpt], &message).await;
        assert_eq!(replies[0].code, 250, "{replies:?}");
    }
    // A bounce sent to the list address instead (a server that bounces to
    // the From field) opens no case.
    daemon
        .send("", &[SECURITY], &dsn("alice@example.org"))
        .await;
    daemon.settle().await;
    assert_eq!(embargod::case::all(&daemon.shared.store).unwrap().len(), 1);
    let members = control(&daemon, Command::Members).await;
    let alice_line = members.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        alice_line.contains("reachable") && !alice_line.contains("bounce(s)"),
        "{members}"
    );

    // A real bounce of alice's copy counts; sent again (a replay, or the
    // MTA's second report) it counts once.
    for _ in 0..2 {
        daemon
            .send("", &[&alice_from], &dsn("alice@example.org"))
            .await;
    }
    daemon.settle().await;
    let members = control(&daemon, Command::Members).await;
    assert!(
        members.contains("1 bounce(s), score 1") && members.contains("5.1.1"),
        "{members}"
    );
    // A second day with a bounce reaches the threshold: a probe to alice
    // alone, encrypted, from its own VERP address.
    // (The day also brings the case's first overdue notices.)
    w.clock.advance(Duration::from_secs(86400));
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.settle().await;
    let mut n = common::outbox(&daemon.outbox).len();
    daemon.send(common::REPORTER, &[SECURITY], &report).await;
    n += 2;
    let mail = outbox(&daemon, n).await;
    let second = newest(&mail, "alice@example.org").from.clone().unwrap();
    daemon.send("", &[&second], &dsn("alice@example.org")).await;
    n += 1;
    let mail = outbox(&daemon, n).await;
    let probe = newest(&mail, "alice@example.org");
    let probe_text = open_copy(&w.gpg, probe);
    assert!(
        probe_text.contains("This message is a probe"),
        "{probe_text}"
    );
    assert!(!String::from_utf8_lossy(&probe.bytes).contains("probe"));
    assert!(control(&daemon, Command::Members)
        .await
        .contains("probing since"));

    // The probe bounces: the PST is told, once, encrypted.
    let probe_from = probe.from.clone().unwrap();
    daemon.send("", &[&probe_from], &fixture("exim.eml")).await;
    n += 2;
    let mail = outbox(&daemon, n).await;
    let told = opened_with(&w, &mail, "alice <alice@example.org> bounce");
    assert_eq!(told.len(), 2, "to alice and bob");
    assert!(told[0].contains("not delivered"), "{}", told[0]);
    let members = control(&daemon, Command::Members).await;
    assert!(members.contains("BOUNCING since"), "{members}");

    // More bounces of a bouncing member: no more notices.
    daemon.send(common::REPORTER, &[SECURITY], &report).await;
    n += 2;
    let mail = outbox(&daemon, n).await;
    let third = newest(&mail, "alice@example.org").from.clone().unwrap();
    daemon.send("", &[&third], &fixture("qmail.eml")).await;
    daemon.settle().await;
    outbox(&daemon, n).await;

    // Every counted bounce is in the ledger, against its copy.
    let bounced = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.outcome, Outcome::Bounced(_)))
        .filter(|r| r.member == "alice" && r.copy_id.is_some())
        .count();
    assert_eq!(bounced, 4);

    // The daemon's own copy coming back to a list (a member forwarding
    // to it) is a loop, dropped like mail from the owner address.
    let cases = embargod::case::all(&daemon.shared.store).unwrap().len();
    daemon
        .send(&third, &[SECURITY], &common::report("looped", "l1"))
        .await;
    daemon.settle().await;
    assert_eq!(
        embargod::case::all(&daemon.shared.store).unwrap().len(),
        cases
    );

    // The admin fixed the address: the member is reachable again.
    let cleared = control(
        &daemon,
        Command::MemberClearBounces {
            member: "alice".into(),
        },
    )
    .await;
    assert!(cleared.contains("reachable"), "{cleared}");
    assert!(!control(&daemon, Command::Members)
        .await
        .contains("BOUNCING"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_for_a_list_and_for_the_owner_address_is_never_mixed() {
    let w = World::new(&[("alice", Some(ListName::Security))], None);
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let replies = daemon
        .send("", &[SECURITY, OWNER], &dsn("alice@example.org"))
        .await;
    // RCPT for the owner address after a list's gets 452: the MTA sends
    // it again in a transaction of its own.
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 452], "{replies:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_person_writes_to_the_owner_address_reaches_the_pst() {
    let w = World::new(&[("alice", Some(ListName::Security))], None);
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let question = common::canary();
    let replies = daemon
        .send(
            common::REPORTER,
            &[OWNER],
            &mail_with(
                common::REPORTER,
                "",
                &format!("\r\nA question: {question}\r\n"),
            ),
        )
        .await;
    assert_eq!(replies[0].code, 250);
    let mail = outbox(&daemon, 1).await;
    let text = open_copy(&w.gpg, &mail[0]);
    assert!(text.contains(&question), "{text}");
    assert!(!String::from_utf8_lossy(&mail[0].bytes).contains(&question));
    daemon.stop().await;
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn distributors_statuses_reach_the_pst_alone_and_build_its_table() {
    let w = World::new(
        &[
            ("alice", Some(ListName::Security)),
            ("bob", Some(ListName::Security)),
            ("distro-a", Some(ListName::Distributors)),
            ("distro-b", Some(ListName::Distributors)),
            ("distro-c", Some(ListName::Distributors)),
        ],
        // Keys made a day ago, so a signature can be backdated.
        Some(&common::gpg_time(Utc::now() - chrono::Duration::days(1))),
    );
    // Someone with a key the list does not know.
    w.gpg
        .gen_key("mallory <mallory@example.org>", "future-default");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::days(5);
    let post = signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "patch",
        &format!(
            "X-Case: KAP-2026-0007\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        "The patch for the parser overflow.",
        None,
    );
    daemon
        .send("alice@example.org", &[DISTRIBUTORS], &post)
        .await;
    outbox(&daemon, 5).await;

    let status = |signer: &str, keywords: &str| {
        signed_text(
            &w.gpg,
            signer,
            DISTRIBUTORS,
            "Re: [EMBARGOED] [KAP-2026-0007] patch",
            keywords,
            "Thanks.",
            None,
        )
    };
    let received = status(
        "distro-a@example.org",
        "X-Case: KAP-2026-0007\r\nX-Status: received\r\n",
    );
    daemon
        .send("distro-a@example.org", &[DISTRIBUTORS], &received)
        .await;
    // The PST gets it; distro-a gets a confirmation; the others nothing.
    let mail = outbox(&daemon, 8).await;
    let told = opened_with(
        &w,
        &mail,
        "Status from distributor distro-a on KAP-2026-0007: received",
    );
    assert_eq!(told.len(), 2, "alice and bob");
    for other in ["distro-b@example.org", "distro-c@example.org"] {
        assert_eq!(
            addressed_to(&mail, other).len(),
            1,
            "{other} got only the patch"
        );
    }
    let to_a = addressed_to(&mail, "distro-a@example.org");
    assert_eq!(to_a.len(), 2);
    let patch = to_a
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .find(|t| t.contains("The patch for the parser overflow"))
        .unwrap();
    assert!(
        patch.contains("X-Case: KAP-2026-0007") && patch.contains("X-Status: received"),
        "the copy shows how to answer:\n{patch}"
    );
    assert_eq!(opened_with(&w, &mail, "is recorded: received").len(), 1);

    // distro-b: affected, with a note; then ready. Both to the PST only.
    w.clock.advance(Duration::from_secs(2));
    let affected = status(
        "distro-b@example.org",
        "X-Case: KAP-2026-0007\r\nX-Status: affected; packages build on Thursday\r\n",
    );
    daemon
        .send("distro-b@example.org", &[DISTRIBUTORS], &affected)
        .await;
    outbox(&daemon, 11).await;

    // Refused and held: the same reply again (a replay), a status from a
    // key the list does not know, an unsigned one, an unknown word, and
    // one whose case is named only by the unsigned Subject.
    daemon
        .send("distro-a@example.org", &[DISTRIBUTORS], &received)
        .await;
    let forged = status(
        "mallory@example.org",
        "X-Case: KAP-2026-0007\r\nX-Status: ready\r\n",
    );
    daemon
        .send("distro-c@example.org", &[DISTRIBUTORS], &forged)
        .await;
    let unsigned = format!(
        "From: distro-c@example.org\r\nTo: {DISTRIBUTORS}\r\nSubject: status\r\n\r\n\
         X-Case: KAP-2026-0007\r\nX-Status: ready\r\n"
    );
    daemon
        .send("distro-c@example.org", &[DISTRIBUTORS], unsigned.as_bytes())
        .await;
    let unknown = status(
        "distro-c@example.org",
        "X-Case: KAP-2026-0007\r\nX-Status: shipped\r\n",
    );
    daemon
        .send("distro-c@example.org", &[DISTRIBUTORS], &unknown)
        .await;
    let subject_only = status("distro-c@example.org", "X-Status: received\r\n");
    daemon
        .send("distro-c@example.org", &[DISTRIBUTORS], &subject_only)
        .await;
    daemon.settle().await;
    let held = daemon.held();
    assert_eq!(held.len(), 5, "{held:?}");
    for reason in [
        "already used",
        "no valid signature",
        "not signed;",
        "\"shipped\" is not understood",
        "names its case in an X-Case: line",
    ] {
        assert!(
            held.iter().any(|h| h.contains(reason)),
            "{reason}: {held:?}"
        );
    }

    // A status signed before the last one (delayed, or replayed from an
    // earlier reply) cannot replace it.
    let earlier = signed_text(
        &w.gpg,
        "distro-b@example.org",
        DISTRIBUTORS,
        "status",
        "X-Case: KAP-2026-0007\r\nX-Status: not-affected\r\n",
        "",
        Some(w.clock.now() - chrono::Duration::minutes(10)),
    );
    daemon
        .send("distro-b@example.org", &[DISTRIBUTORS], &earlier)
        .await;
    daemon.settle().await;
    assert!(daemon
        .held()
        .iter()
        .any(|h| h.contains("cannot replace a later one")));

    // The PST's table: `embargoes` and `case show`.
    let listing = control(&daemon, Command::Embargoes).await;
    let line = |who: &str| {
        listing
            .lines()
            .find(|l| l.trim_start().starts_with(who))
            .unwrap_or_else(|| panic!("{who} in {listing}"))
            .to_string()
    };
    assert!(line("distro-a").contains("received"), "{listing}");
    assert!(
        line("distro-b").contains("affected")
            && line("distro-b").contains("packages build on Thursday"),
        "{listing}"
    );
    assert!(line("distro-c").contains("no status yet"), "{listing}");
    let show = control(
        &daemon,
        Command::CaseShow {
            id: "KAP-2026-0007".into(),
        },
    )
    .await;
    assert!(
        show.contains("distro-b") && show.contains("affected"),
        "{show}"
    );

    // The ledger holds each status, with the key that signed it.
    let statuses: Vec<_> = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.outcome, Outcome::Status(_)))
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.iter().all(|r| r.fingerprint.is_some()));
    assert!(
        statuses.iter().all(
            |r| r.outcome.detail() != Some("affected; packages build on Thursday")
                && !r.outcome.detail().unwrap_or("").contains("Thursday")
        ),
        "the note is embargoed: it stays out of the plain ledger"
    );

    // 48 hours before the release: the PST's digest names who has not
    // confirmed receipt.
    // (The case's own deadlines fall due on the way.)
    w.clock.advance(
        (until - chrono::Duration::hours(48) - w.clock.now())
            .to_std()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    let digest = opened_with(&w, &mail, "Each distributor's latest X-Status");
    assert_eq!(digest.len(), 2, "to alice and bob");
    assert!(
        digest[0].contains("Not yet confirmed (no X-Status at all): distro-c."),
        "{}",
        digest[0]
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_near_expiry_is_warned_about_at_30_14_and_3_days_once_each() {
    let mut w = World::new(&[("bob", Some(ListName::Security))], None);
    // alice's key (a distributor's) expires in 31 days.
    let uid = "alice <alice@example.org>";
    w.gpg.ok(
        &["--quick-gen-key", uid, "future-default", "default", "31d"],
        b"",
    );
    let cert = w.gpg.cert("alice@example.org");
    w.sandbox
        .add_member("alice", "alice@example.org", ListName::Distributors, &cert)
        .unwrap();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    daemon.settle().await;
    assert!(
        common::outbox(&daemon.outbox).is_empty(),
        "31 days: nothing yet"
    );

    let mut expected = 0;
    // Days from now to each step: 30, 14 and 3 days left.
    for (advance, left) in [(1, "30"), (15, "14"), (10, "3")] {
        w.clock.advance(Duration::from_secs(advance * 86400));
        expected += 2;
        let mail = outbox(&daemon, expected).await;
        let warning = open_copy(&w.gpg, newest(&mail, "alice@example.org"));
        assert!(
            warning.contains(&format!("(in {left} days)")),
            "{left}: {warning}"
        );
        let summary = open_copy(&w.gpg, newest(&mail, "bob@example.org"));
        assert!(
            summary.contains("- alice: ") && summary.contains("warned today"),
            "{summary}"
        );
        // The next day brings nothing new.
        w.clock.advance(Duration::from_secs(86400));
        tokio::time::sleep(Duration::from_millis(300)).await;
        outbox(&daemon, expected).await;
    }
    // Never in plaintext.
    for mail in common::outbox(&daemon.outbox) {
        assert!(!String::from_utf8_lossy(&mail.bytes).contains("expires"));
    }
    daemon.stop().await;
}

/// A plain mail from `from` to the security list with extra header
/// lines `headers` and `body` (a MIME body with its Content-Type header
/// at the top, or plain text).
fn mail_with(from: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{SECURITY}>\r\nSubject: hello\r\n\
         Date: Tue, 01 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n{headers}{body}"
    )
    .into_bytes()
}

fn autocrypt(addr: &str, cert: &[u8]) -> String {
    use base64::Engine;
    let keydata = base64::engine::general_purpose::STANDARD.encode(cert);
    let folded: Vec<String> = keydata
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "Autocrypt: addr={addr}; keydata=\r\n {}\r\n",
        folded.join("\r\n ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_mail_refreshes_their_key_under_the_same_pin_only() {
    let mut w = World::new(&[("bob", Some(ListName::Security))], None);
    let uid = "alice <alice@example.org>";
    w.gpg.ok(
        &["--quick-gen-key", uid, "future-default", "default", "20d"],
        b"",
    );
    let fpr = w.gpg.fingerprint("alice@example.org");
    let cert = w.gpg.cert("alice@example.org");
    w.sandbox
        .add_member("alice", "alice@example.org", ListName::Security, &cert)
        .unwrap();
    w.sandbox.extra.push_str("[keys]\nwarn_before = []\n");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let key_file = daemon.config.members["alice"].key.clone();
    let usable_until = |daemon: &TestDaemon| {
        let keys = daemon.shared.keys();
        let cert = keys.member("alice").unwrap().clone();
        embargod::pgp::expiration(&cert, std::time::SystemTime::now()).unwrap()
    };
    let before = usable_until(&daemon);

    // alice extends her key by a year and replies to the expiry warning
    // (from the owner address) from a client that sends an Autocrypt
    // header (unsigned: the key material signs itself).
    w.gpg.ok(&["--quick-set-expire", &fpr, "1y"], b"");
    w.gpg.ok(&["--quick-set-expire", &fpr, "1y", "*"], b"");
    let extended = w.gpg.ok(&["--export", "alice@example.org"], b"");
    let headers = autocrypt("alice@example.org", &extended);
    daemon
        .send(
            "alice@example.org",
            &[OWNER],
            &mail_with("alice@example.org", &headers, "\r\nSee you.\r\n"),
        )
        .await;
    daemon.settle().await;
    assert!(
        embargod::case::all(&daemon.shared.store)
            .unwrap()
            .is_empty(),
        "a key refresh opens no case"
    );
    let after = usable_until(&daemon);
    assert!(
        after.duration_since(before).unwrap() > Duration::from_secs(300 * 86400),
        "the key in force is extended"
    );
    let on_disk = embargod::pgp::load_member_cert(&daemon.config.members["alice"]).unwrap();
    assert_eq!(
        embargod::pgp::expiration(&on_disk, std::time::SystemTime::now()),
        Some(after),
        "written back to {}",
        key_file.display()
    );
    let members = control(&daemon, Command::Members).await;
    assert!(members.contains("(refreshed from mail)"), "{members}");
    let records = embargod::ledger::records(&daemon.shared.store).unwrap();
    let refreshed: Vec<_> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::KeyRefreshed(_)))
        .collect();
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].fingerprint.as_deref(), Some(fpr.as_str()));
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(
        opened_with(&w, &mail, "alice's certificate").len(),
        2,
        "the PST (alice and bob) is told, encrypted"
    );
    // The same key again changes nothing.
    daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &mail_with("alice@example.org", &headers, "\r\nAgain.\r\n"),
        )
        .await;
    daemon.settle().await;
    let records = embargod::ledger::records(&daemon.shared.store).unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::KeyRefreshed(_)))
            .count(),
        1
    );

    // bob adds a new encryption subkey and attaches his key: merged, and
    // the next copy to bob goes to the new subkey.
    let bob_fpr = w.gpg.fingerprint("bob@example.org");
    w.gpg
        .ok(&["--quick-add-key", &bob_fpr, "cv25519", "encr", "2y"], b"");
    // The daemon's clock stands still; the new subkey must not be in
    // its future.
    w.clock.advance(Duration::from_secs(60));
    let bob_key =
        String::from_utf8(w.gpg.ok(&["--armor", "--export", "bob@example.org"], b"")).unwrap();
    let body = format!(
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nMy new subkey.\r\n--b\r\n\
         Content-Type: application/pgp-keys; name=\"bob.asc\"\r\n\r\n{bob_key}\r\n--b--\r\n"
    );
    daemon
        .send(
            "bob@example.org",
            &[SECURITY],
            &mail_with("bob@example.org", "", &body),
        )
        .await;
    daemon.settle().await;
    let listing = String::from_utf8(
        w.gpg
            .ok(&["--with-colons", "--list-keys", "bob@example.org"], b""),
    )
    .unwrap();
    let newest_subkey = listing
        .lines()
        .filter(|l| l.starts_with("fpr:"))
        .filter_map(|l| l.split(':').nth(9))
        .next_back()
        .unwrap()
        .to_string();
    daemon
        .send(
            common::REPORTER,
            &[SECURITY],
            &common::report("later", "c2"),
        )
        .await;
    daemon.settle().await;
    let records = embargod::ledger::records(&daemon.shared.store).unwrap();
    let last_to_bob = records
        .iter()
        .rfind(|r| r.member == "bob" && r.outcome == Outcome::Sent)
        .unwrap();
    assert_eq!(
        last_to_bob.encryption_subkey.as_deref(),
        Some(newest_subkey.as_str())
    );

    // Someone offers another key for alice's address: never taken, the
    // PST is told once that day however often it comes.
    let mallory = common::Gpg::new();
    mallory.gen_key("alice <alice@example.org>", "future-default");
    let other = mallory.ok(&["--export", "alice@example.org"], b"");
    for _ in 0..3 {
        daemon
            .send(
                "alice@example.org",
                &[SECURITY],
                &mail_with(
                    "alice@example.org",
                    &autocrypt("alice@example.org", &other),
                    "\r\nNew key!\r\n",
                ),
            )
            .await;
    }
    daemon.settle().await;
    let keys = daemon.shared.keys();
    assert_eq!(
        keys.member("alice").unwrap().fingerprint().to_hex(),
        fpr,
        "the pin holds"
    );
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(
        opened_with(&w, &mail, "was not taken: a new key needs a config change").len(),
        2,
        "one notice, to alice and bob"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bounce_about_the_message_or_naming_a_token_twice_counts_once_or_not_at_all() {
    let w = World::new(&[("alice", Some(ListName::Security))], None);
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    daemon
        .send(common::REPORTER, &[SECURITY], &common::report("big", "b1"))
        .await;
    let mail = outbox(&daemon, 1).await;
    let from = mail[0].from.clone().unwrap();
    // Anyone can send a report too large for a member's server, or one
    // its spam filter refuses: that says nothing about the address.
    let too_large = String::from_utf8(dsn("alice@example.org"))
        .unwrap()
        .replace("Status: 5.1.1", "Status: 5.3.4")
        .replace(
            "User unknown in virtual mailbox table",
            "message size exceeds fixed limit",
        );
    daemon.send("", &[&from], too_large.as_bytes()).await;
    daemon.settle().await;
    let standing =
        embargod::bounce::standing::get(&daemon.shared.store, "alice", "alice@example.org")
            .unwrap();
    assert_eq!(standing.bounces, 0, "{standing:?}");
    // A second copy's bounce, sent to its token in several spellings at
    // once: one bounce.
    daemon
        .send(
            common::REPORTER,
            &[SECURITY],
            &common::report("again", "b2"),
        )
        .await;
    let mail = outbox(&daemon, 2).await;
    let second = newest(&mail, "alice@example.org").from.clone().unwrap();
    let upper = second.replacen("security-owner", "SECURITY-OWNER", 1);
    daemon
        .send("", &[&second, &upper, &second], &dsn("alice@example.org"))
        .await;
    daemon.settle().await;
    let standing =
        embargod::bounce::standing::get(&daemon.shared.store, "alice", "alice@example.org")
            .unwrap();
    assert_eq!((standing.bounces, standing.score), (1, 1));
    daemon.stop().await;
}
