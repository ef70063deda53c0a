//! The attacks on the embargo's integrity, one test each, with real
//! GnuPG signatures (Sequoia where GnuPG cannot be scripted) and an
//! injected clock: replayed and reordered distributors posts, backdated
//! signatures, a command replayed with an edited unhashed area, retired
//! signing subkeys, an outer Subject edited in transit, and
//! acknowledgement backscatter. Each ends with nothing forwarded or
//! changed and, where a member's signature was involved, a notice to the
//! PST saying why.

mod common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::{armored_part, readable, signed_text, start, GpgWorld, TestDaemon};
use embargod::config::ListName;
use embargod::sandbox::{OutboxMail, ANNOUNCE, DISTRIBUTORS, SECURITY};

const PST: &[(&str, Option<ListName>)] = &[
    ("alice", Some(ListName::Security)),
    ("bob", Some(ListName::Security)),
    ("distro-a", Some(ListName::Distributors)),
];

fn rfc3339(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Sends `message` and asserts the `250`.
async fn send(daemon: &TestDaemon, from: &str, to: &str, message: &[u8]) {
    let replies = daemon.send(from, &[to], message).await;
    assert_eq!(replies[0].code, 250, "{replies:?}");
}

/// Waits until the outbox holds exactly `n` messages, acknowledgements
/// to reporters included, and all is done.
async fn everything(daemon: &TestDaemon, n: usize) -> Vec<OutboxMail> {
    for _ in 0..600 {
        if embargod::sandbox::read_outbox(&daemon.outbox)
            .unwrap()
            .len()
            >= n
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.settle().await;
    let mail = embargod::sandbox::read_outbox(&daemon.outbox).unwrap();
    assert_eq!(mail.len(), n, "expected {n} messages in the outbox");
    mail
}

/// Waits until the outbox holds exactly `n` messages (acknowledgements
/// to reporters aside) and all is done.
async fn outbox(daemon: &TestDaemon, n: usize) -> Vec<OutboxMail> {
    daemon.wait_outbox(n).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(mail.len(), n, "expected {n} messages in the outbox");
    mail
}

fn to<'a>(mail: &'a [OutboxMail], address: &str) -> Vec<&'a OutboxMail> {
    mail.iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .collect()
}

/// The decrypted, readable text of each of `mail` (alice's key opens
/// what is hers; the world's gpg home has every member's key).
fn decrypted(w: &GpgWorld, mail: &[&OutboxMail]) -> Vec<String> {
    mail.iter()
        .map(|m| {
            let (plaintext, status) = w.gpg.decrypt(&armored_part(&m.bytes));
            assert!(status.contains("GOODSIG"), "{status}");
            readable(&plaintext)
        })
        .collect()
}

/// Asserts that the one post held names each of `words` and that case
/// KAP-2026-0001 got no embargo.
fn held_without_embargo(daemon: &TestDaemon, words: &[&str]) {
    let reasons = daemon.held();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        words.iter().all(|w| reasons[0].contains(w)),
        "{words:?}: {reasons:?}"
    );
    assert!(
        embargod::embargo::get(&daemon.shared.store, "KAP-2026-0001")
            .unwrap()
            .is_none()
    );
}

fn embargo_until(daemon: &TestDaemon, case: &str) -> chrono::DateTime<Utc> {
    embargod::embargo::get(&daemon.shared.store, case)
        .unwrap()
        .expect("an embargo")
        .until()
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_reordered_and_backdated_posts_never_move_an_embargo_back() {
    let w = GpgWorld::new(PST, chrono::Duration::days(40));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let now = w.clock.now();
    let case = "KAP-2026-0001";
    let post = |until: chrono::DateTime<Utc>, signed: chrono::DateTime<Utc>, text: &str| {
        signed_text(
            &w.gpg,
            "alice@example.org",
            DISTRIBUTORS,
            "Embargoed fix",
            &format!("X-Case: {case}\r\nX-Embargo-Until: {}\r\n", rfc3339(until)),
            text,
            Some(signed),
        )
    };
    let soon = now + chrono::Duration::seconds(70);
    let later = now + chrono::Duration::days(10);
    let first = post(soon, now - chrono::Duration::seconds(30), "First draft.");
    let reordered = post(
        now + chrono::Duration::days(2),
        now - chrono::Duration::seconds(20),
        "Second draft, delayed on the way.",
    );
    let second = post(later, now - chrono::Duration::seconds(10), "Final text.");

    send(&daemon, "alice@example.org", DISTRIBUTORS, &first).await;
    outbox(&daemon, 3).await;
    send(&daemon, "alice@example.org", DISTRIBUTORS, &second).await;
    outbox(&daemon, 6).await;
    assert_eq!(embargo_until(&daemon, case), later);

    // The first post again, byte for byte: refused, the PST told.
    send(&daemon, "alice@example.org", DISTRIBUTORS, &first).await;
    let mail = outbox(&daemon, 8).await;
    assert!(
        daemon.held()[0].contains("already used"),
        "{:?}",
        daemon.held()
    );
    let notice = decrypted(&w, &to(&mail, "bob@example.org"))
        .into_iter()
        .find(|text| text.contains("was not forwarded"))
        .expect("a notice to the PST");
    assert!(notice.contains("already used"), "{notice}");
    assert!(
        to(&mail, "distro-a@example.org").len() == 2,
        "no third copy"
    );

    // A post signed between the two, arriving last: older than the last
    // change, refused though never seen.
    send(&daemon, "alice@example.org", DISTRIBUTORS, &reordered).await;
    outbox(&daemon, 10).await;
    assert!(
        daemon.held()[1].contains("before the signature behind the last change"),
        "{:?}",
        daemon.held()
    );

    // Signed 30 days ago (the key is 40 days old): too old.
    let backdated = post(
        now + chrono::Duration::days(3),
        now - chrono::Duration::days(30),
        "Stale.",
    );
    send(&daemon, "alice@example.org", DISTRIBUTORS, &backdated).await;
    outbox(&daemon, 12).await;
    assert!(daemon.held()[2].contains("old"), "{:?}", daemon.held());
    assert_eq!(embargo_until(&daemon, case), later, "the date never moved");

    // The first post's time comes and goes: nothing is published.
    w.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    assert!(to(&mail, ANNOUNCE).is_empty(), "published early");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_replayed_with_an_edited_unhashed_area_is_refused() {
    use sequoia_openpgp::packet::signature::subpacket::{NotationData, Subpacket, SubpacketValue};
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;

    let mut members = PST.to_vec();
    members.push(("dave", None));
    let w = GpgWorld::new(&members, chrono::Duration::days(2));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let now = w.clock.now();
    let report = common::report("Heap overflow", "The parser overflows.");
    send(&daemon, common::REPORTER, SECURITY, &report).await;
    outbox(&daemon, 2).await; // alice and bob (the acknowledgement aside)
    let case = format!("KAP-{}-0001", now.format("%Y"));
    let command = |keyword: &str, signed: chrono::DateTime<Utc>| {
        signed_text(
            &w.gpg,
            "alice@example.org",
            SECURITY,
            &format!("[{case}] team"),
            &format!("X-Case: {case}\r\n{keyword}\r\n"),
            "",
            Some(signed),
        )
    };
    let add = command("X-Add: dave", now - chrono::Duration::seconds(20));
    let remove = command("X-Remove: dave", now - chrono::Duration::seconds(10));
    let team = |daemon: &TestDaemon| {
        let case = case.clone();
        let shared = daemon.shared.clone();
        async move {
            shared
                .in_context(move |ctx| embargod::case::get(ctx, &case))
                .await
                .unwrap()
                .expect("the case")
                .team
        }
    };
    send(&daemon, "alice@example.org", SECURITY, &add).await;
    outbox(&daemon, 3).await; // the reply to alice (no text to forward)
    assert_eq!(team(&daemon).await, ["dave"]);
    send(&daemon, "alice@example.org", SECURITY, &remove).await;
    outbox(&daemon, 4).await;
    assert!(team(&daemon).await.is_empty());

    // The add again, with one notation added to the unhashed area: the
    // signature still verifies, and is still the same signature.
    let (part, signature) = common::signed_parts(&add);
    let mut sig = match sequoia_openpgp::Packet::from_bytes(&signature).unwrap() {
        sequoia_openpgp::Packet::Signature(sig) => sig,
        other => panic!("{other:?}"),
    };
    sig.unhashed_area_mut()
        .add(
            Subpacket::new(
                SubpacketValue::NotationData(NotationData::new("x@example.org", b"y", None)),
                false,
            )
            .unwrap(),
        )
        .unwrap();
    let tampered = sequoia_openpgp::Packet::from(sig).to_vec().unwrap();
    let mut armored = Vec::new();
    let mut writer =
        sequoia_openpgp::armor::Writer::new(&mut armored, sequoia_openpgp::armor::Kind::Signature)
            .unwrap();
    std::io::Write::write_all(&mut writer, &tampered).unwrap();
    writer.finalize().unwrap();
    assert_ne!(armored, signature, "the signature bytes differ");
    let replay = common::multipart_signed(
        "alice@example.org",
        SECURITY,
        &format!("[{case}] team"),
        std::str::from_utf8(&part).unwrap(),
        &armored,
    );
    send(&daemon, "alice@example.org", SECURITY, &replay).await;
    let mail = outbox(&daemon, 6).await; // a notice to alice and bob
    assert!(team(&daemon).await.is_empty(), "dave stays off the team");
    let notice = decrypted(&w, &to(&mail, "bob@example.org"))
        .into_iter()
        .find(|text| text.contains("was not forwarded"))
        .expect("a notice to the PST");
    assert!(notice.contains("already used"), "{notice}");

    // An add signed between the add and the remove, delayed on the way:
    // never seen, but older than the last change, so it cannot undo it.
    let delayed = command("X-Add: dave", now - chrono::Duration::seconds(15));
    send(&daemon, "alice@example.org", SECURITY, &delayed).await;
    outbox(&daemon, 8).await;
    assert!(team(&daemon).await.is_empty(), "the remove stands");
    assert!(
        daemon
            .held()
            .iter()
            .any(|r| r.contains("older than the one behind the last change")),
        "{:?}",
        daemon.held()
    );

    // A fresh command naming no case: the outer Subject, which anyone can
    // edit to point at another case, does not choose one.
    let caseless = signed_text(
        &w.gpg,
        "alice@example.org",
        SECURITY,
        &format!("[{case}] team"),
        "X-Add: dave\r\n",
        "",
        Some(now),
    );
    send(&daemon, "alice@example.org", SECURITY, &caseless).await;
    daemon.settle().await;
    assert!(team(&daemon).await.is_empty(), "no case, no change");
    assert!(
        daemon.held().iter().any(|r| r.contains("no case")),
        "{:?}",
        daemon.held()
    );

    // A third part added to a signed post: the signature no longer
    // covers the message, and its keyword lines are only text.
    let thanks = command("", now);
    let stuffed = String::from_utf8(thanks).unwrap().replace(
        "--outer--",
        &format!(
            "--outer\r\nContent-Type: text/plain\r\n\r\nX-Case: {case}\r\nX-Add: dave\r\n\r\n--outer--"
        ),
    );
    assert!(stuffed.contains("X-Add: dave"));
    send(&daemon, "alice@example.org", SECURITY, stuffed.as_bytes()).await;
    daemon.settle().await;
    assert!(
        team(&daemon).await.is_empty(),
        "the unsigned part did nothing"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_part_smuggled_behind_a_second_content_type_authorises_only_itself() {
    let w = GpgWorld::new(PST, chrono::Duration::days(1));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let now = w.clock.now();
    let case = "KAP-2026-0001";
    let embargo = signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Fix",
        &format!(
            "X-Case: {case}\r\nX-Embargo-Until: {}\r\n",
            rfc3339(now + chrono::Duration::days(2))
        ),
        "Patch follows.",
        Some(now - chrono::Duration::seconds(10)),
    );
    send(&daemon, "alice@example.org", DISTRIBUTORS, &embargo).await;
    outbox(&daemon, 3).await;

    // A fresh signed part of alice's that says nothing, captured, and
    // sent with the attacker's text in a second multipart hidden behind a
    // bare CR in the Content-Type field (each order of the two).
    let harmless = signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Thanks",
        "",
        "Thanks all.",
        None,
    );
    let (part, signature) = common::signed_parts(&harmless);
    let (part, sig) = (
        String::from_utf8_lossy(&part),
        String::from_utf8_lossy(&signature),
    );
    let signed = format!(
        "--A\r\n{part}\r\n--A\r\nContent-Type: application/pgp-signature\r\n\r\n{sig}\r\n--A--\r\n"
    );
    let stuffed = format!(
        "--Z\r\nContent-Type: text/plain\r\n\r\nX-Case: {case}\r\nX-Release: now\r\n\
         X-Reason: the attacker says so\r\n\r\n\
         --Z\r\nContent-Type: application/pgp-signature\r\n\r\n{sig}\r\n--Z--\r\n"
    );
    let field = |boundary: &str| {
        format!("multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha512; boundary=\"{boundary}\"")
    };
    for (first, second) in [("A", "Z"), ("Z", "A")] {
        let attack = format!(
            "From: <alice@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: Thanks\r\n\
             MIME-Version: 1.0\r\nContent-Type: {}\rContent-Type: {}\r\n\r\n{stuffed}{signed}",
            field(first),
            field(second),
        );
        send(
            &daemon,
            "alice@example.org",
            DISTRIBUTORS,
            attack.as_bytes(),
        )
        .await;
        daemon.settle().await;
    }
    // A captured block alice signed and encrypted to the list, with the
    // attacker's keyword lines in plain text above it: her signature covers
    // the block only.
    let block = w.gpg.ok(
        &[
            "--trust-model",
            "always",
            "--armor",
            "--sign",
            "--encrypt",
            "--local-user",
            "alice@example.org",
            "--recipient",
            &w.sandbox.list_key.fingerprint(),
        ],
        b"Thanks all.\n",
    );
    let around = format!(
        "From: <alice@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: Thanks\r\n\r\n\
         X-Case: {case}\r\nX-Release: now\r\nX-Reason: the attacker says so\r\n\r\n{}",
        String::from_utf8_lossy(&block)
    );
    send(
        &daemon,
        "alice@example.org",
        DISTRIBUTORS,
        around.as_bytes(),
    )
    .await;
    daemon.settle().await;

    // alice's captured inline-signed post with the attacker's lines after
    // its signature: only the signed block is hers.
    let clearsigned = w.gpg.ok(
        &["--clearsign", "--local-user", "alice@example.org"],
        format!("X-Case: {case}\nX-Reason: none\n\nThanks all.\n").as_bytes(),
    );
    let appended = format!(
        "From: <alice@example.org>\r\nTo: <{DISTRIBUTORS}>\r\nSubject: Thanks\r\n\r\n{}\r\n\
         X-Case: {case}\r\nX-Release: now\r\nX-Reason: the attacker says so\r\n",
        String::from_utf8_lossy(&clearsigned)
    );
    send(
        &daemon,
        "alice@example.org",
        DISTRIBUTORS,
        appended.as_bytes(),
    )
    .await;
    daemon.settle().await;

    let mail = common::outbox(&daemon.outbox);
    assert!(to(&mail, ANNOUNCE).is_empty(), "released by unsigned text");
    assert_eq!(daemon.held().len(), 4, "{:?}", daemon.held());
    assert!(
        daemon.held()[3].contains("no signature covers the whole post"),
        "{:?}",
        daemon.held()
    );
    let pending = embargod::embargo::get(&daemon.shared.store, case)
        .unwrap()
        .unwrap();
    assert!(pending.released.is_none());
    for copy in decrypted(&w, &to(&mail, "distro-a@example.org")) {
        assert!(!copy.contains("the attacker says so"), "{copy}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_by_an_expired_signing_subkey_authorises_nothing() {
    let mut w = GpgWorld::new(PST, chrono::Duration::days(3));
    // erin (PST) signs with a subkey that expires in a day; her
    // certificate on file is the one with that subkey.
    let primary = w.make_key("erin");
    w.gpg
        .ok(&["--quick-add-key", &primary, "ed25519", "sign", "1d"], b"");
    let subkey = w.newest_key("erin");
    w.enroll("erin", Some(ListName::Security));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let now = w.clock.now();
    let post = signed_text(
        &w.gpg,
        &format!("{subkey}!"),
        DISTRIBUTORS,
        "Fix",
        &format!(
            "X-Case: KAP-2026-0001\r\nX-Embargo-Until: {}\r\n",
            rfc3339(now + chrono::Duration::days(5))
        ),
        "Patch follows.",
        None,
    );
    // Two days on, the signature is fresh enough; its subkey is not.
    w.clock.advance(Duration::from_secs(2 * 86400));
    send(&daemon, "erin@example.org", DISTRIBUTORS, &post).await;
    outbox(&daemon, 3).await; // a notice to alice, bob and erin
    held_without_embargo(&daemon, &["signing key", "expired"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_by_a_superseded_subkey_authorises_nothing() {
    use sequoia_openpgp::cert::prelude::*;
    use sequoia_openpgp::types::ReasonForRevocation;

    let mut w = GpgWorld::new(PST, chrono::Duration::days(3));
    let now = w.clock.now();
    let hour = Duration::from_secs(3600);
    let then = std::time::SystemTime::from(now) - 5 * hour;
    let (frank, _) = CertBuilder::general_purpose(Some("frank <frank@example.org>"))
        .set_creation_time(then - hour)
        .generate()
        .unwrap();
    // Signed while the subkey was current; superseded an hour later.
    let post = common::sequoia_signed_post(
        &frank,
        "frank@example.org",
        DISTRIBUTORS,
        "Fix",
        &format!(
            "X-Case: KAP-2026-0001\r\nX-Embargo-Until: {}\r\n\r\nPatch follows.",
            rfc3339(now + chrono::Duration::days(5))
        ),
        then,
    );
    let policy = sequoia_openpgp::policy::StandardPolicy::new();
    let subkey = frank
        .keys()
        .subkeys()
        .with_policy(&policy, then)
        .for_signing()
        .next()
        .unwrap()
        .key()
        .clone();
    let mut primary = frank
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let revocation = SubkeyRevocationBuilder::new()
        .set_signature_creation_time(then + hour)
        .unwrap()
        .set_reason_for_revocation(ReasonForRevocation::KeySuperseded, b"new subkey")
        .unwrap()
        .build(&mut primary, &frank, &subkey, None)
        .unwrap();
    let (frank, _) = frank.insert_packets(revocation).unwrap();
    w.sandbox
        .add_member(
            "frank",
            "frank@example.org",
            ListName::Security,
            &frank.strip_secret_key_material(),
        )
        .unwrap();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    send(&daemon, "frank@example.org", DISTRIBUTORS, &post).await;
    outbox(&daemon, 3).await; // alice, bob and frank are told
    held_without_embargo(&daemon, &["revoked", "superseded"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outer_subject_edited_in_transit_is_never_shown_as_signed_nor_published() {
    let w = GpgWorld::new(PST, chrono::Duration::days(1));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let now = w.clock.now();
    let genuine = signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "Kappital 1.2.4 security fix",
        &format!(
            "X-Case: KAP-2026-0001\r\nX-Embargo-Until: {}\r\n",
            rfc3339(now + chrono::Duration::minutes(10))
        ),
        "Advisory: upgrade to 1.2.4.",
        None,
    );
    let evil = "Kappital is abandoned - install https://evil.example/kappital";
    let edited = String::from_utf8(genuine).unwrap().replace(
        "Subject: Kappital 1.2.4 security fix",
        &format!("Subject: {evil}"),
    );
    send(
        &daemon,
        "alice@example.org",
        DISTRIBUTORS,
        edited.as_bytes(),
    )
    .await;
    let mail = outbox(&daemon, 3).await;
    for text in decrypted(&w, &mail.iter().collect::<Vec<_>>()) {
        assert!(
            text.contains("Subject: [EMBARGOED] [KAP-2026-0001] Advisory: upgrade to 1.2.4."),
            "{text}"
        );
        assert!(
            text.contains(&format!("Subject (not signed): {evil}")),
            "{text}"
        );
        assert!(text.contains("good signature by alice"), "{text}");
    }

    // Protected headers inside the signed part are signed: they are shown.
    let part = "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
                Subject: Kappital 1.2.5 fix\r\n\r\n\
                X-Case: KAP-2026-0002\r\nX-Embargo-Until: UNTIL\r\n\r\nUpgrade to 1.2.5.\r\n"
        .replace("UNTIL", &rfc3339(now + chrono::Duration::minutes(10)));
    let signature = common::detach_sign(&w.gpg, "alice@example.org", &part, None);
    let protected = common::multipart_signed(
        "alice@example.org",
        DISTRIBUTORS,
        "[...]",
        &part,
        &signature,
    );
    send(&daemon, "alice@example.org", DISTRIBUTORS, &protected).await;
    let mail = outbox(&daemon, 6).await;
    let copy = decrypted(&w, &to(&mail, "distro-a@example.org"))
        .into_iter()
        .find(|text| text.contains("case KAP-2026-0002"))
        .expect("the second post's copy");
    assert!(
        copy.contains("Subject: [EMBARGOED] [KAP-2026-0002] Kappital 1.2.5 fix"),
        "{copy}"
    );
    assert!(!copy.contains("not signed"), "{copy}");

    // A client without protected headers names the Subject in a signed
    // keyword line.
    let named = signed_text(
        &w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "whatever the outer says",
        &format!(
            "X-Case: KAP-2026-0003\r\nX-Embargo-Until: {}\r\nX-Subject: Kappital 1.2.6 fix\r\n",
            rfc3339(now + chrono::Duration::minutes(10))
        ),
        "Upgrade to 1.2.6.",
        None,
    );
    send(&daemon, "alice@example.org", DISTRIBUTORS, &named).await;
    outbox(&daemon, 9).await;

    // Release: the announcements carry only signed words.
    w.clock.advance(Duration::from_secs(11 * 60));
    let mail = outbox(&daemon, 9 + 3 + 3 * 3).await;
    let announced = to(&mail, ANNOUNCE);
    assert_eq!(announced.len(), 3);
    let all = announced
        .iter()
        .map(|m| String::from_utf8_lossy(&m.bytes).into_owned())
        .collect::<String>();
    assert!(
        !all.contains("evil.example") && !all.contains("abandoned"),
        "{all}"
    );
    assert!(
        all.contains("Subject: [KAP-2026-0001] Advisory: upgrade to 1.2.4."),
        "{all}"
    );
    assert!(
        all.contains("Subject: [KAP-2026-0002] Kappital 1.2.5 fix"),
        "{all}"
    );
    assert!(
        all.contains("Subject: [KAP-2026-0003] Kappital 1.2.6 fix") && !all.contains("whatever"),
        "{all}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledgements_follow_rfc_3834_and_a_budget_across_all_senders() {
    let mut w = GpgWorld::new(PST, chrono::Duration::days(1));
    w.sandbox.extra = "[limits]\nacks_per_hour = 5\nacks_per_hour_total = 3\n".into();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let mail = |from: &str, extra: &str, subject: &str| {
        format!(
            "From: <{from}>\r\nTo: <{SECURITY}>\r\nSubject: {subject}\r\n{extra}\
             Message-ID: <{}@example.net>\r\n\r\nA report.\r\n",
            embargod::random::token()
        )
        .into_bytes()
    };
    // None of these is answered.
    let automatic = [
        (ANNOUNCE, mail(ANNOUNCE, "", "hello")),
        ("rita@example.net", mail(ANNOUNCE, "", "forged From")),
        (
            "mx-notify@mx.example.com",
            mail(
                "MAILER-DAEMON@mx.example.com",
                "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                "Undelivered Mail",
            ),
        ),
        (
            "news@example.com",
            mail("news@example.com", "Precedence: bulk\r\n", "news"),
        ),
        (
            "news@example.com",
            mail(
                "news@example.com",
                "List-Id: <news.example.com>\r\n",
                "list",
            ),
        ),
        (
            "rita@example.net",
            mail(
                "rita@example.net",
                "Auto-Submitted: auto-replied\r\n",
                "away",
            ),
        ),
    ];
    for (envelope, message) in &automatic {
        send(&daemon, envelope, SECURITY, message).await;
    }
    // Each still reaches the PST (alice and bob), unanswered.
    let all = everything(&daemon, 2 * automatic.len()).await;
    assert!(all.iter().all(|m| m.to[0].ends_with("@example.org")));

    // The answer goes to the envelope sender, not the From field.
    send(
        &daemon,
        "bounces+rita@example.net",
        SECURITY,
        &mail("rita@example.net", "", "a real report"),
    )
    .await;
    let all = everything(&daemon, 2 * automatic.len() + 3).await;
    let answer = to(&all, "bounces+rita@example.net");
    assert_eq!(answer.len(), 1);
    assert!(
        answer[0]
            .bytes
            .starts_with(b"Auto-Submitted: auto-replied\r\n"),
        "RFC 3834 section 5"
    );
    assert!(to(&all, "rita@example.net").is_empty());

    // Ten forged senders: only the budget's two more are answered.
    for n in 0..10 {
        let forged = format!("victim{n}@example.net");
        send(&daemon, &forged, SECURITY, &mail(&forged, "", "report")).await;
    }
    let all = everything(&daemon, 2 * automatic.len() + 3 + 20 + 2).await;
    let answers = all
        .iter()
        .filter(|m| m.to[0].ends_with("@example.net"))
        .count();
    assert_eq!(answers, 3, "acks_per_hour_total caps the answers");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_copy_goes_to_the_newest_encryption_subkey_alone() {
    let mut w = GpgWorld::new(&PST[..1], chrono::Duration::days(2));
    // bob gets a second, newer encryption subkey; the old one stays valid.
    let bob = w.make_key("bob");
    let day_ago = common::gpg_time(Utc::now() - chrono::Duration::days(1));
    w.gpg.ok(
        &[
            "--faked-system-time",
            &day_ago,
            "--quick-add-key",
            &bob,
            "cv25519",
            "encr",
            "never",
        ],
        b"",
    );
    let newest = w.newest_key("bob");
    w.enroll("bob", Some(ListName::Security));
    let cert = w.gpg.cert("bob@example.org");
    let created: Vec<_> = cert
        .keys()
        .subkeys()
        .map(|ka| (ka.key().fingerprint().to_hex(), ka.key().creation_time()))
        .collect();
    assert_eq!(created.len(), 2);
    assert!(created[0].1 != created[1].1, "{created:?}");
    let newest_by_time = &created.iter().max_by_key(|(_, t)| *t).unwrap().0;
    assert_eq!(&newest, newest_by_time, "{created:?}");
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    send(
        &daemon,
        common::REPORTER,
        SECURITY,
        &common::report("Report", "text"),
    )
    .await;
    let mail = outbox(&daemon, 2).await;
    let copy = to(&mail, "bob@example.org")[0];
    let packets = w.gpg.list_packets(&armored_part(&copy.bytes));
    let recipients: Vec<&str> = packets
        .lines()
        .filter(|l| l.contains(":pubkey enc packet:"))
        .collect();
    assert_eq!(recipients.len(), 1, "{packets}");
    assert!(
        recipients[0].contains(&newest[24..]),
        "to {}: {packets}",
        &newest[24..]
    );
    let record = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .find(|r| r.member == "bob" && r.outcome.label() == "sent")
        .unwrap();
    assert_eq!(record.encryption_subkey.as_deref(), Some(newest.as_str()));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decoded_subject_cannot_add_header_fields_to_the_copies() {
    use base64::Engine;
    let w = GpgWorld::new(PST, chrono::Duration::days(1));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let word = base64::engine::general_purpose::STANDARD
        .encode("Bug\r\nReply-To: <attacker@evil.example>\r\nX-Injected: yes");
    let report = format!(
        "From: Mallory\r\n =?utf-8?b?{word}?= <mallory@example.net>\r\nTo: <{SECURITY}>\r\n\
         Subject: =?utf-8?b?{word}?=\r\nMessage-ID: <inject@example.net>\r\n\r\nA report.\r\n"
    );
    send(&daemon, "mallory@example.net", SECURITY, report.as_bytes()).await;
    let mail = outbox(&daemon, 2).await;
    for text in decrypted(&w, &mail.iter().collect::<Vec<_>>()) {
        assert!(
            !text.contains("\nReply-To: <attacker") && !text.contains("\nX-Injected"),
            "{text}"
        );
        assert!(
            text.contains("Reply-To: <security@kappital.example>"),
            "{text}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypted_text_cannot_forge_markers_nor_rewrite_the_message_around_it() {
    let w = GpgWorld::new(PST, chrono::Duration::days(1));
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let list = w.sandbox.list_key.fingerprint();
    let encrypt = |data: &[u8]| {
        w.gpg.ok(
            &[
                "--trust-model",
                "always",
                "--armor",
                "--encrypt",
                "--recipient",
                &list,
            ],
            data,
        )
    };
    // Plain text that imitates the daemon's markers, next to a real block.
    let fake = "[The following was signed; good signature by alice (this block only)]\n\
                Install the fix from evil.example\n[End of the signed text]\n";
    let block = encrypt(b"The real report.\n");
    let forged = format!(
        "From: <m@example.net>\r\nTo: <{SECURITY}>\r\nSubject: r\r\n\r\n{fake}\r\n{}",
        String::from_utf8_lossy(&block)
    );
    send(&daemon, "m@example.net", SECURITY, forged.as_bytes()).await;
    // A wrapped PGP/MIME part whose plaintext carries the outer boundary.
    let inner = encrypt(
        b"Content-Type: text/plain\r\n\r\nhi\r\n--outer\r\nContent-Type: text/plain\r\n\r\nX-Case: KAP-2026-0001\r\n",
    );
    let wrapped = format!(
        "From: <m@example.net>\r\nTo: <{SECURITY}>\r\nSubject: w\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n\
         --enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
         --enc\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--enc--\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\nfooter\r\n--outer--\r\n",
        String::from_utf8_lossy(&inner)
    );
    send(&daemon, "m@example.net", SECURITY, wrapped.as_bytes()).await;
    let mail = outbox(&daemon, 4).await;
    let copies = decrypted(&w, &to(&mail, "alice@example.org"));
    let first = copies.iter().find(|c| c.contains("evil.example")).unwrap();
    assert!(
        first.contains("(quoted) [The following was signed") && first.contains("(quoted) [End of"),
        "{first}"
    );
    let second = copies.iter().find(|c| c.contains("footer")).unwrap();
    assert!(second.contains("NOT opened in place"), "{second}");
    daemon.stop().await;
}
