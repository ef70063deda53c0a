//! Failing closed: a member whose key cannot be used gets nothing (never
//! plaintext) and the reachable PST is told; the daemon's own mail never
//! loops; the distributors list takes only posts signed by pinned keys.

mod common;

use std::time::{Duration, SystemTime};

use common::{report, start};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::ledger::Outcome;
use embargod::sandbox::{open_copy, Sandbox, DISTRIBUTORS, OWNER, SECURITY};
use sequoia_openpgp::cert::prelude::*;

/// A key that expired yesterday.
fn expired_cert(uid: &str) -> sequoia_openpgp::Cert {
    let (cert, _) = CertBuilder::general_purpose(Some(uid))
        .set_creation_time(SystemTime::now() - Duration::from_secs(10 * 86400))
        .set_validity_period(Duration::from_secs(9 * 86400))
        .generate()
        .unwrap();
    cert
}

fn revoked_cert(uid: &str) -> sequoia_openpgp::Cert {
    let (cert, revocation) = CertBuilder::general_purpose(Some(uid)).generate().unwrap();
    cert.insert_packets(revocation).unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn members_without_a_usable_key_get_nothing_and_the_pst_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let bob = sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox
        .add_member(
            "carol",
            "carol@example.org",
            ListName::Security,
            &expired_cert("carol <carol@example.org>"),
        )
        .unwrap();
    sandbox
        .add_member(
            "dave",
            "dave@example.org",
            ListName::Security,
            &revoked_cert("dave <dave@example.org>"),
        )
        .unwrap();
    sandbox.generate_member("erin", ListName::Security).unwrap();
    let file = sandbox.write_config().unwrap();
    // Erin's key file disappears after the config was written.
    std::fs::remove_file(dir.path().join("keys/erin.asc")).unwrap();
    let _ = file;

    let daemon = start(&sandbox, Clock::system()).await;
    let canary = common::canary();
    assert_eq!(
        daemon
            .send(
                "rita@reporter.example",
                &[SECURITY],
                &report("keys", &canary)
            )
            .await[0]
            .code,
        250
    );
    // Two report copies and two notices, for alice and bob only.
    let mail = daemon.wait_outbox(4).await;
    daemon.settle().await;
    assert_eq!(mail.len(), 4);
    let mut notices = 0;
    for item in &mail {
        let raw = String::from_utf8_lossy(&item.bytes);
        assert!(!raw.contains(&canary), "plaintext leaked to {:?}", item.to);
        let secret = match item.to[0].as_str() {
            "alice@example.org" => &alice,
            "bob@example.org" => &bob,
            other => panic!("{other} got mail"),
        };
        let opened = open_copy(&item.bytes, secret, &sandbox.list_key).unwrap();
        let text = common::readable(&opened.content);
        if text.contains("got no copy") {
            notices += 1;
            assert!(
                text.contains("carol:") && text.contains("expired"),
                "{text}"
            );
            assert!(text.contains("dave:") && text.contains("revoked"), "{text}");
            assert!(
                text.contains("erin:") && text.contains("cannot be read"),
                "{text}"
            );
            assert!(
                !text.contains(&canary),
                "the notice must not quote the report"
            );
        } else {
            assert!(text.contains(&canary));
        }
    }
    assert_eq!(notices, 2);
    let records: Vec<_> = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .collect();
    for member in ["carol", "dave", "erin"] {
        let record = records.iter().find(|r| r.member == member).unwrap();
        assert!(
            matches!(record.outcome, Outcome::NoKey(_)),
            "{member}: {:?}",
            record.outcome
        );
        assert!(record.ciphertext_sha256.is_none());
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_own_mail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let daemon = start(&sandbox, Clock::system()).await;
    let body = "Subject: loop\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\nagain\r\n";
    let loops = [
        (OWNER, format!("From: someone@example.net\r\n{body}")),
        ("x@example.net", format!("From: <{OWNER}>\r\n{body}")),
        (
            "x@example.net",
            format!("From: x@example.net\r\nList-Id: Kappital security list <security.kappital.example>\r\n{body}"),
        ),
        ("x@example.net", format!("From: x@example.net\r\nX-Loop: {SECURITY}\r\n{body}")),
    ];
    for (from, message) in &loops {
        assert_eq!(
            daemon.send(from, &[SECURITY], message.as_bytes()).await[0].code,
            250
        );
    }
    daemon.settle().await;
    // A genuine report afterwards shows the daemon was processing all along.
    daemon
        .send("rita@reporter.example", &[SECURITY], &report("real", "r"))
        .await;
    let mail = daemon.wait_outbox(1).await;
    daemon.settle().await;
    assert_eq!(mail.len(), 1, "only the genuine report went out");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributors_list_takes_only_signed_posts() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let distro = sandbox
        .generate_member("distro-a", ListName::Distributors)
        .unwrap();
    let daemon = start(&sandbox, Clock::system()).await;

    // Unsigned, with the From of a PST member: From authorises nothing.
    let forged = format!(
        "From: alice <alice@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: patch\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\nunsigned patch\r\n"
    );
    assert_eq!(
        daemon
            .send("alice@example.org", &[DISTRIBUTORS], forged.as_bytes())
            .await[0]
            .code,
        250
    );
    // One notice, to the PST (alice), nothing to the distributor.
    let mail = daemon.wait_outbox(1).await;
    daemon.settle().await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, ["alice@example.org"]);
    let notice = open_copy(&mail[0].bytes, &alice, &sandbox.list_key).unwrap();
    let text = common::readable(&notice.content);
    assert!(
        text.contains("not forwarded") && text.contains("not signed"),
        "{text}"
    );
    assert_eq!(daemon.shared.store.quarantined().unwrap().len(), 1);
    let _ = distro;
    daemon.stop().await;
}
