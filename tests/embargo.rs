//! The distributors list and the embargo, end to end with GnuPG: PST posts
//! signed by `gpg` open an embargo, every copy carries the banner, and the
//! advisory is published — once — when the injected clock reaches the
//! agreed time. Forged and unsigned posts never reach a distributor.

mod common;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{
    addressed_to, canary, list_public, open_copy, signed_parts, signed_post, start, Gpg,
    TestDaemon, World,
};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::control::{client::request, Command};
use embargod::sandbox::{OutboxMail, ANNOUNCE, DISTRIBUTORS};

const PATCH: &str = "From 1234 Mon Sep 17 00:00:00 2001\r\nSubject: [PATCH] parser: check length\r\n\r\n\
--- a/src/parser.c\r\n+++ b/src/parser.c\r\n@@ -10,3 +10,4 @@\r\n int parse(char *p, size_t n) {\r\n+    if (n > MAX) return -1;\r\n     memcpy(buf, p, n);\r\n }\r\n";

/// Two PST members and two distributors.
fn world() -> World {
    World::new(
        &[
            ("alice", Some(ListName::Security)),
            ("bob", Some(ListName::Security)),
            ("distro-a", Some(ListName::Distributors)),
            ("distro-b", Some(ListName::Distributors)),
        ],
        None,
    )
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Waits until the outbox holds `n` messages and the daemon is idle.
async fn outbox(daemon: &TestDaemon, n: usize) -> Vec<OutboxMail> {
    let mail = daemon.wait_outbox(n).await;
    daemon.settle().await;
    let mail_now = common::outbox(&daemon.outbox);
    assert_eq!(
        mail_now.len(),
        n,
        "expected exactly {n} messages, got {}",
        mail_now.len()
    );
    mail
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_pst_post_is_embargoed_then_published_at_its_time() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::minutes(1);
    let secret = canary();
    let post = signed_post(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Fix for heap overflow in the parser",
        &format!(
            "X-Case: KAP-2026-0001\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        &format!("Please test the attached patch.\r\n{secret}"),
        PATCH,
    );
    assert_eq!(
        daemon
            .send("alice@example.org", &[DISTRIBUTORS], &post)
            .await[0]
            .code,
        250
    );

    // Each distributor and each PST member: an encrypted copy with the banner.
    let copies = outbox(&daemon, 4).await;
    for mail in &copies {
        assert!(
            !String::from_utf8_lossy(&mail.bytes).contains(&secret),
            "plaintext leaked"
        );
        let text = open_copy(&w.gpg, mail);
        assert!(
            text.contains(&format!(
                "EMBARGOED until {}, case KAP-2026-0001",
                embargod::clock::format_disclosure(until)
            )),
            "{text}"
        );
        assert!(text.contains("need-to-know"), "{text}");
        // The outer Subject is not signed: the copies name the signed
        // text, and show the outer one labelled.
        assert!(
            text.contains("Subject: [EMBARGOED] [KAP-2026-0001] Please test the attached patch."),
            "{text}"
        );
        assert!(
            text.contains("Subject (not signed): Fix for heap overflow in the parser"),
            "{text}"
        );
        // (The hint to distributors shows the lines to send, indented.)
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("X-Case:") || l.starts_with("X-Embargo-Until:")),
            "keyword lines stay out:\n{text}"
        );
        assert!(text.contains(&secret));
        assert!(text.contains(PATCH), "the patch arrives byte for byte");
        assert!(text.contains("good signature by alice"), "{text}");
    }
    for member in ["alice", "bob", "distro-a", "distro-b"] {
        assert_eq!(
            addressed_to(&copies, &format!("{member}@example.org")).len(),
            1,
            "{member}"
        );
    }

    // `embargod embargoes`, through the control socket.
    let listing = request(&daemon.config.control.socket, Command::Embargoes)
        .await
        .unwrap();
    let text = listing.text().unwrap();
    assert!(
        text.contains("KAP-2026-0001") && text.contains("alice") && text.contains(" 4"),
        "{text}"
    );

    // Not a second early.
    w.clock.advance(Duration::from_secs(59));
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.settle().await;
    assert!(
        addressed_to(&common::outbox(&daemon.outbox), ANNOUNCE).is_empty(),
        "published early"
    );

    w.clock.advance(Duration::from_secs(1));
    // The announcement, and "embargo lifted" to the four members.
    let mail = outbox(&daemon, 4 + 1 + 4).await;
    let announcements = addressed_to(&mail, ANNOUNCE);
    assert_eq!(announcements.len(), 1);
    let announcement = &announcements[0].bytes;
    let raw = String::from_utf8_lossy(announcement);
    assert!(
        !raw.contains("multipart/encrypted"),
        "the advisory is public"
    );
    assert!(
        raw.contains("Subject: [KAP-2026-0001] Please test the attached patch."),
        "{raw}"
    );
    assert!(
        raw.contains("Message-ID: <KAP-2026-0001.release@kappital.example>"),
        "{raw}"
    );
    assert!(raw.contains(&secret) && raw.contains(PATCH));
    assert!(
        !raw.contains("EMBARGOED") && !raw.contains("X-Case"),
        "{raw}"
    );
    assert!(
        !raw.contains("distro-a") && !raw.contains("prepared for"),
        "no recipient marking"
    );

    // Anyone with the list's public key can check it.
    let (signed, signature) = signed_parts(announcement);
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("advisory"), &signed).unwrap();
    std::fs::write(files.path().join("advisory.asc"), &signature).unwrap();
    let anyone = Gpg::new();
    anyone.import(&list_public(&w.sandbox));
    let verify = anyone.run(
        &[
            "--status-fd",
            "2",
            "--verify",
            files.path().join("advisory.asc").to_str().unwrap(),
            files.path().join("advisory").to_str().unwrap(),
        ],
        b"",
    );
    let status = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && status.contains("GOODSIG"),
        "{status}"
    );

    let lifted = mail
        .iter()
        .filter(|m| !m.to.iter().any(|t| t == ANNOUNCE))
        .map(|m| open_copy(&w.gpg, m))
        .filter(|text| text.contains("embargo of case KAP-2026-0001 is lifted"))
        .count();
    assert_eq!(lifted, 4, "each PST member and distributor is told");

    // Time goes on: still exactly one announcement.
    w.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
    assert_eq!(
        addressed_to(&common::outbox(&daemon.outbox), ANNOUNCE).len(),
        1
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inline_clearsigned_pst_post_is_embargoed_like_a_pgp_mime_one() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::hours(2);
    let secret = canary();
    // What `gpg --clearsign` in a mail client's editor produces.
    let text = format!(
        "X-Case: KAP-2026-0003\nX-Embargo-Until: {}\n\nPlease test the fix.\n{secret}\n",
        rfc3339(until)
    );
    let signed = w.gpg.ok(
        &["--clearsign", "--local-user", "bob@example.org"],
        text.as_bytes(),
    );
    let post = format!(
        "From: bob <bob@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: inline fix\r\n\r\n{}",
        String::from_utf8(signed).unwrap()
    );
    let reply = daemon
        .send("bob@example.org", &[DISTRIBUTORS], post.as_bytes())
        .await;
    assert_eq!(reply[0].code, 250, "{reply:?}");
    let copies = outbox(&daemon, 4).await;
    for mail in &copies {
        let text = open_copy(&w.gpg, mail);
        assert!(
            text.contains("EMBARGOED until") && text.contains("KAP-2026-0003"),
            "{text}"
        );
        assert!(text.contains(&secret), "{text}");
        assert!(
            !text.contains("X-Embargo-Until"),
            "keyword lines removed: {text}"
        );
        assert!(!text.contains("BEGIN PGP SIGNED MESSAGE"), "{text}");
    }

    // The same post with its signed text changed goes nowhere.
    let tampered = post.replace("Please test the fix.", "Please skip the fix.");
    let reply = daemon
        .send("bob@example.org", &[DISTRIBUTORS], tampered.as_bytes())
        .await;
    assert_eq!(reply[0].code, 250, "{reply:?}");
    daemon.settle().await;
    for mail in addressed_to(&common::outbox(&daemon.outbox), "distro-a@example.org") {
        assert!(
            !open_copy(&w.gpg, mail).contains("skip"),
            "tampered post forwarded"
        );
    }
    assert!(
        addressed_to(&common::outbox(&daemon.outbox), "alice@example.org")
            .iter()
            .any(|m| open_copy(&w.gpg, m).contains("held")),
        "the PST hears of the held post"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reminder_moves_and_early_release() {
    let mut w = world();
    // (No digest of distributor statuses here.)
    w.sandbox
        .embargo
        .push_str("reminder_before = \"24h\"\nstatus_digest_before = \"0s\"\n");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let t0 = w.clock.now();
    let post = |signer: &str, keywords: String, text: &str| {
        signed_post(
            &w.gpg,
            signer,
            DISTRIBUTORS,
            "Embargoed fix",
            &keywords,
            text,
            PATCH,
        )
    };
    let first = t0 + chrono::Duration::days(3);
    let keywords = format!(
        "X-Case: KAP-2026-0007\r\nX-Embargo-Until: {}\r\n",
        rfc3339(first)
    );
    daemon
        .send(
            "alice@example.org",
            &[DISTRIBUTORS],
            &post("alice@example.org", keywords, "v1"),
        )
        .await;
    let mut expected = 4;
    outbox(&daemon, expected).await;

    // The reminder, 24 hours before.
    w.clock.advance(Duration::from_secs(2 * 86400 - 1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
    assert_eq!(
        common::outbox(&daemon.outbox).len(),
        expected,
        "reminded early"
    );
    w.clock.advance(Duration::from_secs(1));
    expected += 4;
    let mail = outbox(&daemon, expected).await;
    let reminders = mail
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| t.contains("goes public in 24 hours"))
        .count();
    assert_eq!(
        reminders, 4,
        "one reminder to each PST member and distributor"
    );

    // Bob moves the date with a later signed post; distributors are told.
    let second = t0 + chrono::Duration::days(5);
    let keywords = format!(
        "X-Case: KAP-2026-0007\r\nX-Embargo-Until: {}\r\n",
        rfc3339(second)
    );
    daemon
        .send(
            "bob@example.org",
            &[DISTRIBUTORS],
            &post("bob@example.org", keywords, "v2"),
        )
        .await;
    expected += 4;
    let mail = outbox(&daemon, expected).await;
    let moved = mail
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| t.contains("The disclosure time moved from"))
        .count();
    assert_eq!(moved, 4);

    // The old time passes: nothing is published.
    w.clock.advance(Duration::from_secs(86400 + 60));
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
    assert!(addressed_to(&common::outbox(&daemon.outbox), ANNOUNCE).is_empty());

    // An admin moves it once more from the command line.
    let third = t0 + chrono::Duration::days(6);
    let moved = request(
        &daemon.config.control.socket,
        Command::Release {
            case: "KAP-2026-0007".into(),
            now: false,
            reason: None,
            at: Some(rfc3339(third)),
        },
    )
    .await
    .unwrap();
    assert!(moved.is_done(), "{moved:?}");
    expected += 4;
    outbox(&daemon, expected).await;
    let listing = request(&daemon.config.control.socket, Command::Embargoes)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        listing.contains(&embargod::clock::format_time(third)),
        "{listing}"
    );

    // A distributor broke the embargo: the PST goes public now.
    let keywords = "X-Case: KAP-2026-0007\r\nX-Release: now\r\nX-Reason: a distributor published the fix early\r\n".to_string();
    // Signed now by the injected clock: after the command line's change,
    // which outranks every post signed before it.
    let release = common::signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Embargoed fix",
        &keywords,
        "",
        Some(w.clock.now()),
    );
    daemon
        .send("alice@example.org", &[DISTRIBUTORS], &release)
        .await;
    expected += 1 + 4;
    let mail = outbox(&daemon, expected).await;
    let announcement = addressed_to(&mail, ANNOUNCE);
    assert_eq!(announcement.len(), 1);
    // The advisory is the latest post's content.
    assert!(String::from_utf8_lossy(&announcement[0].bytes).contains("v2"));
    let lifted = mail
        .iter()
        .filter(|m| !m.to.iter().any(|t| t == ANNOUNCE))
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| {
            t.contains("Released early") && t.contains("a distributor published the fix early")
        })
        .count();
    assert_eq!(lifted, 4);

    // Its old release time passes: no second announcement.
    w.clock.advance(Duration::from_secs(7 * 86400));
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
    assert_eq!(
        addressed_to(&common::outbox(&daemon.outbox), ANNOUNCE).len(),
        1
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_announcement_across_restarts_and_downtime() {
    let w = world();
    let t0 = w.clock.now();
    let until = t0 + chrono::Duration::hours(2);
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let post = signed_post(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Restart",
        &format!(
            "X-Case: KAP-2026-0002\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        "text",
        PATCH,
    );
    daemon
        .send("alice@example.org", &[DISTRIBUTORS], &post)
        .await;
    outbox(&daemon, 4).await;
    daemon.stop().await;

    // Started again an hour later: still embargoed.
    let daemon = start(&w.sandbox, Clock::manual(t0 + chrono::Duration::hours(1))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.settle().await;
    assert!(addressed_to(&common::outbox(&daemon.outbox), ANNOUNCE).is_empty());
    daemon.stop().await;

    // The release fell due while the daemon was down: it fires on start.
    let daemon = start(&w.sandbox, Clock::manual(t0 + chrono::Duration::hours(5))).await;
    let mail = outbox(&daemon, 4 + 1 + 4).await;
    assert_eq!(addressed_to(&mail, ANNOUNCE).len(), 1);
    daemon.stop().await;

    // And once more: nothing new.
    let daemon = start(&w.sandbox, Clock::manual(t0 + chrono::Duration::hours(9))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.settle().await;
    assert_eq!(common::outbox(&daemon.outbox).len(), 9);
    let released = request(&daemon.config.control.socket, Command::Embargoes)
        .await
        .unwrap();
    assert_eq!(released.text().unwrap().trim(), "no pending embargoes");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_releases_early_from_the_command_line() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::days(2);
    // Signed and encrypted to the list key, as gpg does it (RFC 3156 §6.2).
    let entity = format!(
        "Content-Type: text/plain; charset=utf-8\r\n\r\nX-Case: KAP-2026-0003\r\nX-Embargo-Until: {}\r\n\r\nEncrypted patch notes.\r\n",
        rfc3339(until)
    );
    let ciphertext = w.gpg.ok(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--local-user",
            "bob@example.org",
            "--sign",
            "--encrypt",
            "--recipient",
            &w.sandbox.list_key.fingerprint(),
        ],
        entity.as_bytes(),
    );
    let post = format!(
        "From: <bob@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: encrypted fix\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--e--\r\n",
        String::from_utf8(ciphertext).unwrap()
    );
    daemon
        .send("bob@example.org", &[DISTRIBUTORS], post.as_bytes())
        .await;
    let copies = outbox(&daemon, 4).await;
    let text = open_copy(&w.gpg, &copies[0]);
    assert!(
        text.contains("case KAP-2026-0003") && text.contains("Encrypted patch notes."),
        "{text}"
    );
    assert!(
        text.contains("Encryption: encrypted to the list key"),
        "{text}"
    );

    let refused = request(
        &daemon.config.control.socket,
        Command::Release {
            case: "KAP-2026-0003".into(),
            now: true,
            reason: None,
            at: None,
        },
    )
    .await
    .unwrap();
    assert!(!refused.is_done() && refused.failure().unwrap().contains("--reason"));
    let released = request(
        &daemon.config.control.socket,
        Command::Release {
            case: "KAP-2026-0003".into(),
            now: true,
            reason: Some("exploit seen in the wild".into()),
            at: None,
        },
    )
    .await
    .unwrap();
    assert!(released.is_done(), "{released:?}");
    let mail = outbox(&daemon, 4 + 1 + 4).await;
    assert_eq!(addressed_to(&mail, ANNOUNCE).len(), 1);
    let again = request(
        &daemon.config.control.socket,
        Command::Release {
            case: "KAP-2026-0003".into(),
            now: true,
            reason: Some("again".into()),
            at: None,
        },
    )
    .await
    .unwrap();
    assert!(!again.is_done() && again.failure().unwrap().contains("already released"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_unsigned_and_unauthorised_posts_never_reach_a_distributor() {
    let mut w = world();
    // Carol (PST) has a key that was valid when she signed, and is expired now.
    let old = "20200101T000000";
    w.gpg.ok(
        &[
            "--faked-system-time",
            old,
            "--quick-gen-key",
            "carol <carol@example.org>",
            "future-default",
            "default",
            "1y",
        ],
        b"",
    );
    w.sandbox
        .add_member(
            "carol",
            "carol@example.org",
            ListName::Security,
            &w.gpg.cert("carol@example.org"),
        )
        .unwrap();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = rfc3339(w.clock.now() + chrono::Duration::days(2));
    let keywords = format!("X-Case: KAP-2026-0009\r\nX-Embargo-Until: {until}\r\n");
    let canaries: Vec<String> = (0..6).map(|_| canary()).collect();

    let unsigned = format!(
        "From: someone@elsewhere.example\r\nTo: <{DISTRIBUTORS}>\r\nSubject: p\r\n\r\n{keywords}\r\n{}\r\n",
        canaries[0]
    );
    let forged_from = format!(
        "From: alice <alice@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: p\r\n\r\n{keywords}\r\n{}\r\n",
        canaries[1]
    );
    let by_distributor = signed_post(
        &w.gpg,
        "distro-a@example.org",
        DISTRIBUTORS,
        "p",
        &keywords,
        &canaries[2],
        PATCH,
    );
    let stranger = Gpg::new();
    stranger.gen_key("Alice Impostor <alice@example.org>", "future-default");
    let by_stranger = signed_post(
        &stranger,
        "alice@example.org",
        DISTRIBUTORS,
        "p",
        &keywords,
        &canaries[3],
        PATCH,
    );
    let part = format!(
        "Content-Type: text/plain\r\n\r\n{keywords}\r\n{}",
        canaries[4]
    );
    let expired_sig = w.gpg.ok(
        &[
            "--faked-system-time",
            "20200601T000000",
            "--armor",
            "--detach-sign",
            "--local-user",
            "carol@example.org",
        ],
        part.as_bytes(),
    );
    let by_expired = format!(
        "From: <carol@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: p\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"o\"\r\n\r\n\
         --o\r\n{part}\r\n--o\r\nContent-Type: application/pgp-signature\r\n\r\n{}\r\n--o--\r\n",
        String::from_utf8(expired_sig).unwrap()
    );
    let too_far = signed_post(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "p",
        &format!(
            "X-Case: KAP-2026-0009\r\nX-Embargo-Until: {}\r\n",
            rfc3339(w.clock.now() + chrono::Duration::days(20))
        ),
        &canaries[5],
        PATCH,
    );
    for post in [
        unsigned.as_bytes(),
        forged_from.as_bytes(),
        &by_distributor,
        &by_stranger,
        by_expired.as_bytes(),
        &too_far,
    ] {
        assert_eq!(
            daemon.send("x@example.org", &[DISTRIBUTORS], post).await[0].code,
            250
        );
    }
    daemon.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.settle().await;

    assert_eq!(
        daemon.shared.store.quarantined().unwrap().len(),
        6,
        "all six held for moderation"
    );
    let mail = common::outbox(&daemon.outbox);
    let mut reasons = String::new();
    for mail in &mail {
        let text = open_copy(&w.gpg, mail);
        for c in &canaries {
            assert!(
                !text.contains(c.as_str()),
                "held post content reached {:?}",
                mail.to
            );
        }
        if mail.to.iter().any(|t| t.starts_with("distro-")) {
            // Only distro-a, about its own refused post.
            assert_eq!(mail.to, ["distro-a@example.org"]);
            assert!(text.contains("only PST members may set"), "{text}");
        } else {
            reasons.push_str(&text);
        }
    }
    for reason in [
        "not signed",
        "only PST members may set",
        "signature by unknown key",
        "not in force now",
        "more than 14 days away",
    ] {
        assert!(
            reasons.contains(reason),
            "the PST is told: {reason}\n{reasons}"
        );
    }
    assert!(request(&daemon.config.control.socket, Command::Embargoes)
        .await
        .unwrap()
        .text()
        .unwrap()
        .contains("no pending"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributor_replies_reach_the_pst_and_distributors_with_the_banner() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::days(1);
    let post = signed_post(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Fix for KAP-2026-0004",
        &format!(
            "X-Case: KAP-2026-0004\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        "Please test.",
        PATCH,
    );
    daemon
        .send("alice@example.org", &[DISTRIBUTORS], &post)
        .await;
    outbox(&daemon, 4).await;
    // A distributor reports back; the case comes from the Subject.
    let reply = signed_post(
        &w.gpg,
        "distro-b@example.org",
        DISTRIBUTORS,
        "Re: [EMBARGOED] Fix for KAP-2026-0004",
        "",
        "Tested on our build farm: the fix works.",
        PATCH,
    );
    assert_eq!(
        daemon
            .send("distro-b@example.org", &[DISTRIBUTORS], &reply)
            .await[0]
            .code,
        250
    );
    let mail = outbox(&daemon, 8).await;
    let replies: Vec<String> = mail
        .iter()
        .map(|m| open_copy(&w.gpg, m))
        .filter(|t| t.contains("the fix works"))
        .collect();
    assert_eq!(
        replies.len(),
        4,
        "to both PST members and both distributors"
    );
    for text in &replies {
        assert!(
            text.contains("EMBARGOED until") && text.contains("case KAP-2026-0004"),
            "{text}"
        );
        assert!(text.contains("good signature by distro-b"), "{text}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_release_command_works_with_the_daemon_stopped() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let until = w.clock.now() + chrono::Duration::days(3);
    let post = signed_post(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Offline release",
        &format!(
            "X-Case: KAP-2026-0005\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        "text",
        PATCH,
    );
    daemon
        .send("alice@example.org", &[DISTRIBUTORS], &post)
        .await;
    outbox(&daemon, 4).await;
    daemon.stop().await;

    let config = w.sandbox.dir.join("embargod.toml");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_embargod"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = run(&["embargoes"]);
    assert!(
        ok && text.contains("KAP-2026-0005") && text.contains("alice"),
        "{text}"
    );
    let (ok, text) = run(&["release", "KAP-2026-0005", "--now"]);
    assert!(!ok && text.contains("--reason"), "{text}");
    let (ok, text) = run(&[
        "release",
        "KAP-2026-0005",
        "--now",
        "--reason",
        "fix already public upstream",
    ]);
    assert!(ok && text.contains("released"), "{text}");
    let (ok, text) = run(&["embargoes"]);
    assert!(ok && text.contains("no pending embargoes"), "{text}");

    // The next start sends what the command queued (it ran on the system
    // clock, a little ahead of the test's).
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    w.clock.advance(Duration::from_secs(60));
    let mail = outbox(&daemon, 4 + 1 + 4).await;
    assert_eq!(addressed_to(&mail, ANNOUNCE).len(), 1);
    daemon.stop().await;
}
