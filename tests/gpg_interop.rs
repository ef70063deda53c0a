//! GnuPG interop, end to end: members' keys made by `gpg`, reports sent
//! over LMTP, and every delivered copy decrypted and verified by `gpg`
//! itself. Reports that `gpg` encrypted or signed are read by the daemon.

mod common;

use common::{armored_part, canary, list_public, report, start, Gpg};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::{Sandbox, SECURITY};

/// Three PST members whose keys live in one gpg home: two Curve25519
/// keys and one RSA key.
struct Pst {
    gpg: Gpg,
    members: Vec<(String, String)>, // (id, email)
}

fn pst(sandbox: &mut Sandbox) -> Pst {
    let gpg = Gpg::new();
    let mut members = Vec::new();
    for (id, algo) in [
        ("alice", "future-default"),
        ("bob", "future-default"),
        ("carol", "rsa3072"),
    ] {
        let email = format!("{id}@example.org");
        gpg.gen_key(&format!("{id} <{email}>"), algo);
        sandbox
            .add_member(id, &email, ListName::Security, &gpg.cert(&email))
            .unwrap();
        members.push((id.to_string(), email));
    }
    gpg.import(&list_public(sandbox));
    Pst { gpg, members }
}

/// The key ids of `email`'s encryption subkeys, as gpg prints them.
fn encryption_keyids(gpg: &Gpg, email: &str) -> Vec<String> {
    let out = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys", email], b"")).unwrap();
    out.lines()
        .filter(|l| l.starts_with("sub:") && l.split(':').nth(11).unwrap_or("").contains('e'))
        .map(|l| l.split(':').nth(4).unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_report_reaches_each_member_encrypted_to_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;
    let canary = canary();

    let replies = daemon
        .send(
            "rita@reporter.example",
            &[SECURITY],
            &report("Heap overflow in parser", &canary),
        )
        .await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, 250, "{:?}", replies[0]);

    let copies = daemon.wait_outbox(3).await;
    daemon.settle().await;
    assert_eq!(copies.len(), 3, "one copy per member, nothing else");
    let list_fpr = sandbox.list_key.fingerprint();
    for (id, email) in &pst.members {
        let copy = copies
            .iter()
            .find(|c| c.to == [email.clone()])
            .unwrap_or_else(|| panic!("no copy for {id}"));
        // Each copy's own envelope sender (VERP), so its bounce names it.
        let from = copy.from.as_deref().unwrap();
        assert!(
            from.starts_with("security-owner+") && from.ends_with("@kappital.example"),
            "{from}"
        );
        let raw = String::from_utf8(copy.bytes.clone()).unwrap();
        assert!(!raw.contains(&canary), "plaintext leaked in {id}'s copy");
        assert!(
            !raw.contains("Heap overflow"),
            "subject leaked in {id}'s copy"
        );
        assert!(raw.contains("Subject: [...]"));
        assert!(raw.contains("multipart/encrypted; protocol=\"application/pgp-encrypted\""));
        assert!(raw.contains("List-Id: Kappital security list <security.kappital.example>"));

        let armored = armored_part(&copy.bytes);
        // Encrypted to this member's key and no other.
        let packets = pst.gpg.list_packets(&armored);
        let pkesks: Vec<&str> = packets
            .lines()
            .filter(|l| l.contains(":pubkey enc packet:"))
            .collect();
        assert_eq!(pkesks.len(), 1, "{id}: {packets}");
        let keyids = encryption_keyids(&pst.gpg, email);
        assert!(
            keyids.iter().any(|k| pkesks[0].contains(k.as_str())),
            "{id}: {} not for {keyids:?}",
            pkesks[0]
        );

        let (plaintext, status) = pst.gpg.decrypt(&armored);
        let plaintext = common::readable(&plaintext);
        assert!(status.contains("DECRYPTION_OKAY"), "{status}");
        assert!(
            status.contains(&format!("VALIDSIG {}", list_fpr)) || status.contains("VALIDSIG"),
            "{status}"
        );
        assert!(status.contains("GOODSIG"), "{status}");
        assert!(plaintext.contains(&canary));
        assert!(plaintext.contains("Subject: [KAP-2026-0001] Heap overflow in parser"));
        assert!(plaintext.contains("From: Rita Reporter <rita@reporter.example>"));
        assert!(plaintext.contains("protected-headers=\"v1\"; hp=\"cipher\""));
        assert!(plaintext.contains("Encryption: NOT encrypted"));
    }
    // The signing key in VALIDSIG is a subkey; the primary is the list's.
    let (_, status) = pst.gpg.decrypt(&armored_part(&copies[0].bytes));
    assert!(
        status.contains(&list_fpr),
        "list key {list_fpr} not in {status}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn report_gpg_encrypted_to_the_list_is_decrypted_and_reencrypted() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;

    // The reporter has their own key, unknown to the list, and signs too.
    let reporter = Gpg::new();
    reporter.gen_key("Rita <rita@reporter.example>", "future-default");
    reporter.import(&list_public(&sandbox));
    let list_fpr = sandbox.list_key.fingerprint();
    let canary = canary();

    // PGP/MIME (RFC 3156): the encrypted payload is a MIME entity.
    let entity =
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\nSecret details: {canary}\r\n");
    let ciphertext = reporter.ok(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--sign",
            "--encrypt",
            "--recipient",
            &list_fpr,
        ],
        entity.as_bytes(),
    );
    let message = format!(
        "From: Rita <rita@reporter.example>\r\nTo: <{SECURITY}>\r\nSubject: [encrypted]\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--b1--\r\n",
        String::from_utf8(ciphertext).unwrap()
    );
    // And the same report as inline PGP, the way `gpg -ea | mail` sends it.
    let inline_canary = canary_suffix(&canary, "inline");
    let inline = reporter.ok(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--encrypt",
            "--recipient",
            &list_fpr,
        ],
        format!("Inline details: {inline_canary}\n").as_bytes(),
    );
    let inline_message = format!(
        "From: Rita <rita@reporter.example>\r\nTo: <{SECURITY}>\r\nSubject: inline\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\n{}",
        String::from_utf8(inline).unwrap()
    );

    assert_eq!(
        daemon
            .send("rita@reporter.example", &[SECURITY], message.as_bytes())
            .await[0]
            .code,
        250
    );
    assert_eq!(
        daemon
            .send(
                "rita@reporter.example",
                &[SECURITY],
                inline_message.as_bytes()
            )
            .await[0]
            .code,
        250
    );
    let copies = daemon.wait_outbox(6).await;
    daemon.settle().await;
    assert_eq!(copies.len(), 6);

    let mut seen = (0, 0);
    for copy in &copies {
        let raw = String::from_utf8_lossy(&copy.bytes);
        assert!(
            !raw.contains(&canary) && !raw.contains(&inline_canary),
            "plaintext leaked"
        );
        let (plaintext, status) = pst.gpg.decrypt(&armored_part(&copy.bytes));
        assert!(status.contains("GOODSIG"), "{status}");
        let plaintext = common::readable(&plaintext);
        assert!(
            plaintext.contains("Encryption: encrypted to the list key"),
            "{plaintext}"
        );
        if plaintext.contains(&format!("Secret details: {canary}")) {
            seen.0 += 1;
            // The reporter's signature inside the encryption was checked:
            // their key is no member's, so it is noted, not trusted.
            assert!(
                plaintext.contains("signature by unknown key"),
                "{plaintext}"
            );
        } else if plaintext.contains(&format!("Inline details: {inline_canary}")) {
            seen.1 += 1;
        } else {
            panic!("copy without either report:\n{plaintext}");
        }
    }
    assert_eq!(seen, (3, 3));
    daemon.stop().await;
}

fn canary_suffix(canary: &str, suffix: &str) -> String {
    format!("{canary}-{suffix}")
}

#[tokio::test(flavor = "multi_thread")]
async fn member_signatures_are_verified_and_forgeries_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;

    // RFC 3156: the signed data is the first part up to, not including,
    // the line end before the boundary.
    let part = "Content-Type: text/plain; charset=utf-8\r\n\r\nPatch review: looks good.";
    let signature = pst.gpg.ok(
        &[
            "--armor",
            "--detach-sign",
            "--local-user",
            "alice@example.org",
        ],
        part.as_bytes(),
    );
    let signed = |body: &str| {
        format!(
            "From: alice <alice@example.org>\r\nTo: <{SECURITY}>\r\nSubject: signed\r\n\
             Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"s1\"\r\n\r\n\
             --s1\r\n{body}\r\n--s1\r\nContent-Type: application/pgp-signature\r\n\r\n{}\r\n--s1--\r\n",
            String::from_utf8(signature.clone()).unwrap()
        )
    };
    let genuine = signed(part);
    let tampered = signed(&part.replace("good", "bad!"));
    assert_eq!(
        daemon
            .send("alice@example.org", &[SECURITY], genuine.as_bytes())
            .await[0]
            .code,
        250
    );
    daemon.wait_outbox(3).await;
    assert_eq!(
        daemon
            .send("alice@example.org", &[SECURITY], tampered.as_bytes())
            .await[0]
            .code,
        250
    );
    let copies = daemon.wait_outbox(6).await;
    daemon.settle().await;

    let (mut good, mut bad) = (0, 0);
    for copy in &copies {
        let (plaintext, _) = pst.gpg.decrypt(&armored_part(&copy.bytes));
        let plaintext = common::readable(&plaintext);
        if plaintext.contains("looks good") {
            assert!(
                plaintext.contains("Signature: good signature by alice"),
                "{plaintext}"
            );
            // The copy is marked, so the sender's signature part, which
            // would no longer verify, is left out; the info part reports it.
            assert!(!plaintext.contains("Content-Type: application/pgp-signature"));
            good += 1;
        } else {
            assert!(plaintext.contains("looks bad!"));
            assert!(
                plaintext.contains("Signature: BAD signature"),
                "{plaintext}"
            );
            bad += 1;
        }
    }
    assert_eq!((good, bad), (3, 3));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_cleartext_signed_reports_arrive_as_checked_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;
    let tag = canary();
    // A dash-escaped line too: "- -- " in the armor is "--" in the text.
    let clearsigned = pst.gpg.ok(
        &["--clearsign", "--local-user", "bob@example.org"],
        format!("Inline signed report {tag}\n-- \nbob\n").as_bytes(),
    );
    let message = format!(
        "From: bob <bob@example.org>\r\nTo: <{SECURITY}>\r\nSubject: inline\r\n\r\n{}",
        String::from_utf8(clearsigned).unwrap()
    );
    assert_eq!(
        daemon
            .send("bob@example.org", &[SECURITY], message.as_bytes())
            .await[0]
            .code,
        250
    );
    let copies = daemon.wait_outbox(3).await;
    daemon.settle().await;
    for copy in &copies {
        let (plaintext, _) = pst.gpg.decrypt(&armored_part(&copy.bytes));
        let plaintext = common::readable(&plaintext);
        assert!(
            plaintext.contains("Signature: good signature by bob"),
            "{plaintext}"
        );
        // The marks change the text, so the sender's armor, which would
        // then show a bad signature, is taken off; the info part reports it.
        assert!(plaintext.contains(&tag), "{plaintext}");
        // The text is what Sequoia verified: dash-escaping undone, and
        // trailing white space, which a cleartext signature does not
        // cover (RFC 9580 §7.2), left off.
        assert!(plaintext.contains("\n--\r\nbob"), "{plaintext}");
        assert!(
            !plaintext.contains("BEGIN PGP SIGNED MESSAGE"),
            "{plaintext}"
        );
        assert!(!plaintext.contains("BEGIN PGP SIGNATURE"), "{plaintext}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_encrypted_to_another_key_is_passed_on_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;

    let stranger = Gpg::new();
    let stranger_fpr = stranger.gen_key("Stranger <s@elsewhere.example>", "future-default");
    let ciphertext = stranger.ok(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--encrypt",
            "--recipient",
            &stranger_fpr,
        ],
        b"only the stranger can read this\n",
    );
    let message = format!(
        "From: Someone <someone@elsewhere.example>\r\nTo: <{SECURITY}>\r\nSubject: wrong key\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\n{}",
        String::from_utf8(ciphertext.clone()).unwrap()
    );
    assert_eq!(
        daemon
            .send("someone@elsewhere.example", &[SECURITY], message.as_bytes())
            .await[0]
            .code,
        250
    );
    let copies = daemon.wait_outbox(3).await;
    daemon.settle().await;
    for copy in &copies {
        let (plaintext, _) = pst.gpg.decrypt(&armored_part(&copy.bytes));
        let plaintext = common::readable(&plaintext);
        assert!(plaintext.contains("encrypted to other keys"), "{plaintext}");
        // The original ciphertext is inside, untouched.
        let original = String::from_utf8(ciphertext.clone()).unwrap();
        let first_line = original.lines().nth(2).unwrap();
        assert!(plaintext.contains(first_line));
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_attachments_and_footer_wrapped_pgp_mime_are_opened() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let list = sandbox.list_key.fingerprint();
    let daemon = start(&sandbox, Clock::system()).await;
    let encrypt = |data: &[u8], armor: bool| {
        let mut args = vec!["--trust-model", "always", "--encrypt", "--recipient", &list];
        if armor {
            args.insert(0, "--armor");
        }
        pst.gpg.ok(&args, data)
    };
    let poc = format!("#!/bin/sh\necho {}\n", canary());
    let notes = format!("notes {}\n", canary());
    // The body is inline PGP too (Enigmail's inline mode with attachments).
    let body_tag = canary();
    let inline = format!("The body {body_tag}\n");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // Inline text, then a binary poc.sh.gpg and an armored notes.txt.asc,
    // each encrypted to the list on its own (per-attachment encryption).
    let attachments = format!(
        "From: <r@example.net>\r\nTo: <{SECURITY}>\r\nSubject: poc\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/plain\r\n\r\nSee the attachments.\r\n{}\r\n\
         --m\r\nContent-Type: application/octet-stream; name=\"poc.sh.gpg\"\r\n\
         Content-Disposition: attachment; filename=\"poc.sh.gpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --m\r\nContent-Type: application/pgp-encrypted; name=\"notes.txt.asc\"\r\n\
         Content-Disposition: attachment; filename=\"notes.txt.asc\"\r\n\r\n{}\r\n--m--\r\n",
        String::from_utf8_lossy(&encrypt(inline.as_bytes(), true)),
        b64(&encrypt(poc.as_bytes(), false)),
        String::from_utf8_lossy(&encrypt(notes.as_bytes(), true)),
    );
    // PGP/MIME wrapped by a gateway inside multipart/mixed with a footer.
    let secret = canary();
    let inner = encrypt(
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\nThe report {secret}\r\n")
            .as_bytes(),
        true,
    );
    let footer = format!(
        "From: <r@example.net>\r\nTo: <{SECURITY}>\r\nSubject: wrapped\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n\
         --enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
         --enc\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--enc--\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\nThis message was scanned by the corporate gateway.\r\n--outer--\r\n",
        String::from_utf8_lossy(&inner)
    );
    for message in [attachments, footer] {
        assert_eq!(
            daemon
                .send("r@example.net", &[SECURITY], message.as_bytes())
                .await[0]
                .code,
            250
        );
        daemon.settle().await;
    }
    let copies: Vec<String> = common::outbox(&daemon.outbox)
        .iter()
        .filter(|m| m.to == ["alice@example.org"])
        .map(|m| {
            let (plaintext, status) = pst.gpg.decrypt(&armored_part(&m.bytes));
            assert!(status.contains("GOODSIG"), "{status}");
            common::readable(&plaintext)
        })
        .collect();
    assert_eq!(copies.len(), 2);
    let with_attachments = copies.iter().find(|c| c.contains("poc.sh")).unwrap();
    assert!(
        with_attachments
            .contains("attachment poc.sh.gpg: encrypted to the list key, decrypted here as poc.sh")
            && with_attachments.contains(
                "attachment notes.txt.asc: encrypted to the list key, decrypted here as notes.txt"
            ),
        "{with_attachments}"
    );
    assert!(
        with_attachments.contains(&b64(poc.as_bytes())[..40]),
        "poc.sh byte for byte"
    );
    assert!(
        with_attachments.contains("filename=\"notes.txt\""),
        "{with_attachments}"
    );
    assert!(
        with_attachments.contains(&body_tag),
        "inline body decrypted: {with_attachments}"
    );
    assert!(
        with_attachments.contains("Encryption: PARTLY encrypted"),
        "{with_attachments}"
    );
    assert!(
        !with_attachments.contains("BEGIN PGP MESSAGE"),
        "{with_attachments}"
    );
    let wrapped = copies.iter().find(|c| c.contains("scanned by")).unwrap();
    assert!(
        wrapped.contains("a PGP/MIME part inside the message"),
        "{wrapped}"
    );
    assert!(wrapped.contains(&secret), "decrypted: {wrapped}");
    assert!(!wrapped.contains("BEGIN PGP MESSAGE"), "{wrapped}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cleartext_signed_block_inside_a_text_is_verified_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let pst = pst(&mut sandbox);
    let daemon = start(&sandbox, Clock::system()).await;
    let tag = canary();
    let footer = canary();
    let signed = pst.gpg.ok(
        &["--clearsign", "--local-user", "bob@example.org"],
        format!("Signed details {tag}\n").as_bytes(),
    );
    let message = format!(
        "From: bob <bob@example.org>\r\nTo: <{SECURITY}>\r\nSubject: inline\r\n\r\n\
         Hello,\r\n\r\n{}\r\nFooter {footer}\r\n",
        String::from_utf8(signed).unwrap()
    );
    assert_eq!(
        daemon
            .send("bob@example.org", &[SECURITY], message.as_bytes())
            .await[0]
            .code,
        250
    );
    let copies = daemon.wait_outbox(3).await;
    daemon.settle().await;
    for copy in &copies {
        let (plaintext, _) = pst.gpg.decrypt(&armored_part(&copy.bytes));
        let text = common::readable(&plaintext);
        assert!(
            text.contains("[The following was signed; good signature by bob"),
            "{text}"
        );
        assert!(text.contains(&tag) && text.contains(&footer), "{text}");
        assert!(text.contains("Signature: not signed"), "{text}");
        assert!(text.contains("covering that block only"), "{text}");
        assert!(!text.contains("BEGIN PGP SIGNATURE"), "{text}");
    }
    daemon.stop().await;
}
