//! The cases under `../shared/cases/`, replayed byte for byte: each
//! folder's mail, keys and config, on an injected clock set to when its
//! signatures were made (2026-11-30), each checked for what its README says
//! must happen. The adversarial tests (tests/adversary.rs) make fresh mail
//! of the same kinds; these prove the examples themselves.
//!
//! The folders sit beside this repository, as on the developers' machines
//! and in CI; a checkout without them skips loudly.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{armored_part, start_with_config, Gpg, TestDaemon};
use embargod::clock::Clock;
use embargod::sandbox::{read_outbox, OutboxMail, ANNOUNCE, DISTRIBUTORS, SECURITY};

/// Everything the daemon logs in this test binary, at debug level.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("embargod=debug"))
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .try_init();
}

fn cases_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cases");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is missing; the shared cases are not checked",
            dir.display()
        );
        None
    }
}

/// One case's folder copied into a temporary one (so the store, the
/// outbox and the control socket land there), listening on an ephemeral
/// loopback port, with a new store key.
struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
    gpg: Gpg,
}

fn case(name: &str) -> Option<Case> {
    let from = cases_dir()?.join(name);
    let dir = tempfile::tempdir().unwrap();
    // A case may come with the store of the installation it happened on.
    if from.join("state").is_dir() {
        std::fs::create_dir(dir.path().join("state")).unwrap();
        for entry in std::fs::read_dir(from.join("state")).unwrap() {
            let path = entry.unwrap().path();
            let to = dir.path().join("state").join(path.file_name().unwrap());
            std::fs::write(&to, std::fs::read(&path).unwrap()).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for entry in std::fs::read_dir(from.join("keys")).unwrap() {
        let path = entry.unwrap().path();
        let to = dir.path().join("keys").join(path.file_name().unwrap());
        std::fs::write(&to, std::fs::read(&path).unwrap()).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    let list_key = dir.path().join("keys/list.key");
    std::fs::set_permissions(&list_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store_key = dir.path().join("keys/store.key");
    if store_key.exists() {
        std::fs::set_permissions(&store_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    } else {
        embargod::store::StoreKey::create(&store_key).unwrap();
    }
    // The cases' posts give distributors 3 to 10 days of notice: they
    // were written before the policy's 7-day notice window was enforced,
    // and are about other things (replays, edits, charsets).
    let config = std::fs::read_to_string(from.join("embargod.toml"))
        .unwrap()
        .replace("127.0.0.1:2424", "127.0.0.1:0")
        + "\n[embargo]\nmin_notice = \"0s\"\n";
    std::fs::write(dir.path().join("embargod.toml"), config).unwrap();
    let gpg = Gpg::new();
    gpg.import(&std::fs::read(from.join("keys/member-secret-keys.asc")).unwrap());
    let list = embargod::pgp::ListKey::load(&list_key).unwrap();
    gpg.import(list.public_armored().as_bytes());
    Some(Case {
        dir,
        input: from.join("input"),
        gpg,
    })
}

impl Case {
    async fn start(&self, at: &str) -> (TestDaemon, Clock) {
        capture_logs();
        let clock = Clock::manual(
            DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
        );
        let daemon = start_with_config(&self.dir.path().join("embargod.toml"), clock.clone()).await;
        (daemon, clock)
    }

    fn input(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.input.join(name)).unwrap()
    }

    /// Sends input `name` from `from` to `to`, and waits until all it
    /// caused is done.
    async fn send(&self, daemon: &TestDaemon, name: &str, from: &str, to: &str) {
        let replies = daemon.send(from, &[to], &self.input(name)).await;
        assert_eq!(replies[0].code, 250, "{name}: {replies:?}");
        daemon.settle().await;
    }

    fn decrypt(&self, mail: &OutboxMail) -> String {
        let (plaintext, status) = self.gpg.decrypt(&armored_part(&mail.bytes));
        assert!(status.contains("GOODSIG"), "{status}");
        common::readable(&plaintext)
    }
}

fn all(daemon: &TestDaemon) -> Vec<OutboxMail> {
    read_outbox(&daemon.outbox).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_distributors_post() {
    let Some(case) = case("integrity/replay-distributors-post") else {
        return;
    };
    let (daemon, clock) = case.start("2026-11-30T13:51:00Z").await;
    case.send(
        &daemon,
        "01-first-post.eml",
        "alice@example.org",
        DISTRIBUTORS,
    )
    .await;
    case.send(
        &daemon,
        "02-move-post.eml",
        "alice@example.org",
        DISTRIBUTORS,
    )
    .await;
    case.send(&daemon, "03-replay.eml", "alice@example.org", DISTRIBUTORS)
        .await;
    let reasons = daemon.held();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("already used"), "{reasons:?}");
    let embargo = embargod::embargo::get(&daemon.shared.store, "KAP-2026-0001")
        .unwrap()
        .unwrap();
    assert_eq!(
        embargod::clock::format_time(embargo.until()),
        "2026-12-10 13:50 UTC"
    );
    // The PST is told.
    let notices: Vec<String> = all(&daemon)
        .iter()
        .filter(|m| m.to == ["bob@example.org"])
        .map(|m| case.decrypt(m))
        .filter(|text| text.contains("was not forwarded"))
        .collect();
    assert_eq!(notices.len(), 1);
    // The first post's time passes: nothing is published.
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.settle().await;
    assert!(all(&daemon).iter().all(|m| m.to != [ANNOUNCE]));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn command_replay_unhashed() {
    let Some(case) = case("integrity/command-replay-unhashed") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:52:30Z").await;
    let report = b"From: <rita@example.net>\r\nTo: <security@kappital.example>\r\nSubject: bug\r\n\r\nA bug.\r\n";
    let replies = daemon.send("rita@example.net", &[SECURITY], report).await;
    assert_eq!(replies[0].code, 250);
    daemon.settle().await;
    let team = || {
        let shared = daemon.shared.clone();
        async move {
            shared
                .in_context(|ctx| embargod::case::get(ctx, "KAP-2026-0001"))
                .await
                .unwrap()
                .expect("the case")
                .team
        }
    };
    case.send(&daemon, "01-add.eml", "alice@example.org", SECURITY)
        .await;
    assert_eq!(team().await, ["dave"]);
    case.send(&daemon, "02-remove.eml", "alice@example.org", SECURITY)
        .await;
    assert!(team().await.is_empty());
    case.send(
        &daemon,
        "03-replay-tampered.eml",
        "alice@example.org",
        SECURITY,
    )
    .await;
    assert!(team().await.is_empty(), "the replay did not run");
    let refused = all(&daemon)
        .iter()
        .filter(|m| m.to == ["bob@example.org"])
        .map(|m| case.decrypt(m))
        .any(|text| text.contains("already used"));
    assert!(refused, "the PST is told of the replay");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retired_signing_subkey() {
    let Some(case) = case("integrity/retired-signing-subkey") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:53:00Z").await;
    case.send(&daemon, "erin.eml", "erin@example.org", DISTRIBUTORS)
        .await;
    case.send(&daemon, "frank.eml", "frank@example.org", DISTRIBUTORS)
        .await;
    let reasons = daemon.held();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("expired"), "{reasons:?}");
    assert!(reasons[1].contains("revoked"), "{reasons:?}");
    assert!(embargod::embargo::all(&daemon.shared.store)
        .unwrap()
        .is_empty());
    assert!(all(&daemon).iter().all(|m| !m.to[0].starts_with("distro")));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_subject_published() {
    let Some(case) = case("integrity/unsigned-subject-published") else {
        return;
    };
    let (daemon, clock) = case.start("2026-11-30T13:52:40Z").await;
    case.send(
        &daemon,
        "02-subject-edited.eml",
        "alice@example.org",
        DISTRIBUTORS,
    )
    .await;
    let copies = all(&daemon);
    assert_eq!(copies.len(), 5, "three PST members, two distributors");
    for copy in &copies {
        let text = case.decrypt(copy);
        assert!(
            text.contains("Subject: [EMBARGOED] [KAP-2026-0001] Advisory: upgrade to 1.2.4."),
            "{text}"
        );
        assert!(
            text.contains("Subject (not signed): Kappital is abandoned"),
            "{text}"
        );
    }
    clock.advance(Duration::from_secs(6 * 86400));
    for _ in 0..100 {
        if all(&daemon).iter().any(|m| m.to == [ANNOUNCE]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.settle().await;
    let announcement = all(&daemon)
        .into_iter()
        .find(|m| m.to == [ANNOUNCE])
        .expect("the release");
    let text = String::from_utf8_lossy(&announcement.bytes);
    assert!(
        !text.contains("evil.example") && !text.contains("abandoned"),
        "{text}"
    );
    assert!(
        text.contains("Subject: [KAP-2026-0001] Advisory: upgrade to 1.2.4."),
        "{text}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ack_backscatter() {
    let Some(case) = case("integrity/ack-backscatter") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:54:00Z").await;
    for (name, envelope) in [
        ("from-announce-list.eml", ANNOUNCE),
        ("dsn-bounce.eml", "MAILER-DAEMON@mx.example.com"),
        ("precedence-bulk.eml", "newsletter@example.com"),
    ] {
        case.send(&daemon, name, envelope, SECURITY).await;
    }
    let mail = all(&daemon);
    assert_eq!(mail.len(), 9, "each reaches the three PST members");
    assert!(
        mail.iter().all(|m| m.to[0].ends_with("@example.org")),
        "no acknowledgement: {:?}",
        mail.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_encryption_subkeys() {
    use sequoia_openpgp::parse::Parse;
    let Some(case) = case("integrity/all-encryption-subkeys") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:54:30Z").await;
    case.send(&daemon, "report.eml", "rita@example.net", SECURITY)
        .await;
    let zoe = sequoia_openpgp::Cert::from_file(case.dir.path().join("keys/zoe.asc")).unwrap();
    let newest = zoe
        .keys()
        .subkeys()
        .map(|ka| ka.key().clone())
        .filter(|k| k.pk_algo().for_encryption())
        .max_by_key(|k| k.creation_time())
        .unwrap();
    let copy = all(&daemon)
        .into_iter()
        .find(|m| m.to == ["zoe@example.org"])
        .expect("zoe's copy");
    let packets = case.gpg.list_packets(&armored_part(&copy.bytes));
    let to: Vec<&str> = packets
        .lines()
        .filter(|l| l.contains(":pubkey enc packet:"))
        .collect();
    assert_eq!(to.len(), 1, "{packets}");
    assert!(to[0].contains(&newest.keyid().to_hex()), "{packets}");
    let record = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .find(|r| r.member == "zoe" && r.outcome.label() == "sent")
        .unwrap();
    assert_eq!(
        record.encryption_subkey.as_deref(),
        Some(newest.fingerprint().to_hex().as_str())
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_in_logs_and_state() {
    let Some(case) = case("integrity/content-in-logs-and-state") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:54:00Z").await;
    case.send(&daemon, "01-report.eml", "rita@example.net", SECURITY)
        .await;
    case.send(
        &daemon,
        "02-bad-embargo-value.eml",
        "alice@example.org",
        DISTRIBUTORS,
    )
    .await;
    case.send(&daemon, "03-to-reporter.eml", "alice@example.org", SECURITY)
        .await;
    case.send(&daemon, "04-embargo.eml", "alice@example.org", DISTRIBUTORS)
        .await;
    case.send(
        &daemon,
        "05-release-now.eml",
        "alice@example.org",
        DISTRIBUTORS,
    )
    .await;
    let embargo = embargod::embargo::get(&daemon.shared.store, "KAP-2026-0001")
        .unwrap()
        .unwrap();
    let early = embargo.released.expect("released early").early.unwrap();
    assert!(early.reason.contains("CANARYREASON"), "kept, sealed");
    // The reporter (no key) was written to: the text went out as signed
    // plaintext, as the README says; it does not rest in the state.
    assert!(all(&daemon).iter().any(|m| m.to == ["rita@example.net"]
        && String::from_utf8_lossy(&m.bytes).contains("CANARYSTATE")));
    daemon.stop().await;

    let logged = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(
        logged.contains("held for moderation"),
        "the log is captured"
    );
    for canary in ["CANARYLOG", "CANARYSTATE", "CANARYREASON", "parse_header"] {
        assert!(!logged.contains(canary), "the log holds {canary}");
        for file in common::files(&case.dir.path().join("state")) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} holds {canary}",
                file.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ocb_report_quarantined() {
    let Some(case) = case("intake/ocb-report-quarantined") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T14:00:00Z").await;
    case.send(&daemon, "report.eml", "reporter@example.net", SECURITY)
        .await;
    assert!(daemon.held().is_empty(), "{:?}", daemon.held());
    let copies: Vec<OutboxMail> = all(&daemon)
        .into_iter()
        .filter(|m| m.to[0].ends_with("@example.org"))
        .collect();
    assert_eq!(copies.len(), 3, "alice, bob and carol");
    for copy in &copies {
        let text = case.decrypt(copy);
        assert!(
            text.contains("Encryption: encrypted to the list key"),
            "{text}"
        );
        assert!(!text.contains("BEGIN PGP MESSAGE"), "decrypted: {text}");
    }
    daemon.stop().await;
}

/// The PST members' copies of what `daemon` sent, decrypted.
fn pst_copies(case: &Case, daemon: &TestDaemon) -> Vec<String> {
    all(daemon)
        .iter()
        .filter(|m| {
            ["alice", "bob", "carol"]
                .iter()
                .any(|id| m.to == [format!("{id}@example.org")])
        })
        .map(|m| case.decrypt(m))
        .collect()
}

/// Starts `case`'s daemon at `at`, sends its input `name` from `from` to
/// the security list, and returns the three PST members' copies,
/// decrypted.
async fn report_copies(case: &Case, at: &str, name: &str, from: &str) -> (TestDaemon, Vec<String>) {
    let (daemon, _clock) = case.start(at).await;
    case.send(&daemon, name, from, SECURITY).await;
    let copies = pst_copies(case, &daemon);
    assert_eq!(copies.len(), 3, "alice, bob and carol");
    (daemon, copies)
}

#[tokio::test(flavor = "multi_thread")]
async fn cjk_legacy_charsets() {
    let Some(case) = case("intake/cjk-legacy-charsets") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T14:40:00Z").await;
    for (name, text) in [
        ("GB2312.eml", "上传接口没有检查文件类型"),
        ("Shift_JIS.eml", "ログイン画面でパスワードを間違えると"),
    ] {
        case.send(&daemon, name, "reporter@example.asia", SECURITY)
            .await;
        let copies: Vec<String> = pst_copies(&case, &daemon)
            .into_iter()
            .filter(|copy| copy.contains(name.trim_end_matches(".eml")))
            .collect();
        assert_eq!(copies.len(), 3, "{name}");
        for copy in copies {
            assert!(copy.contains(text), "{name}: {copy}");
            assert!(!copy.contains('\u{FFFD}'), "{name}: {copy}");
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_pgp_latin1() {
    let Some(case) = case("intake/inline-pgp-latin1") else {
        return;
    };
    let (daemon, copies) = report_copies(
        &case,
        "2026-11-30T13:45:00Z",
        "report.eml",
        "melder@example.de",
    )
    .await;
    for copy in copies {
        assert!(
            copy.contains("Encryption: encrypted to the list key"),
            "{copy}"
        );
        assert!(
            ['ö', 'ü', 'ß'].iter().any(|c| copy.contains(*c)) && !copy.contains('\u{FFFD}'),
            "{copy}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_signed_latin1() {
    let Some(case) = case("intake/inline-signed-latin1") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:45:00Z").await;
    case.send(&daemon, "post.eml", "alice@example.org", DISTRIBUTORS)
        .await;
    assert!(daemon.held().is_empty(), "{:?}", daemon.held());
    let copies: Vec<String> = all(&daemon).iter().map(|m| case.decrypt(m)).collect();
    assert_eq!(copies.len(), 5, "three PST members, two distributors");
    for copy in copies {
        assert!(copy.contains("good signature by alice"), "{copy}");
        // Marks may change Latin letters of the prose; not these.
        assert!(copy.contains("L1SIG-b7fbc49e"), "{copy}");
        assert!(copy.contains('Ü') && copy.contains('ü'), "{copy}");
        assert!(!copy.contains('\u{FFFD}'), "{copy}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exchange_mixed_up() {
    let Some(case) = case("intake/exchange-mixed-up") else {
        return;
    };
    let (daemon, copies) = report_copies(
        &case,
        "2026-11-30T13:46:00Z",
        "report.eml",
        "reporter@example.net",
    )
    .await;
    for copy in copies {
        assert!(
            copy.contains("Encryption: encrypted to the list key"),
            "{copy}"
        );
        assert!(!copy.contains("BEGIN PGP MESSAGE"), "decrypted: {copy}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_pgp_after_text() {
    let Some(case) = case("intake/inline-pgp-after-text") else {
        return;
    };
    let (daemon, copies) = report_copies(
        &case,
        "2026-11-30T13:45:00Z",
        "report.eml",
        "reporter@example.net",
    )
    .await;
    for copy in copies {
        assert!(copy.contains("Encryption: PARTLY encrypted"), "{copy}");
        assert!(
            copy.contains(
                "[The following was encrypted to the list key; not signed (this block only)]"
            ),
            "{copy}"
        );
        assert!(copy.contains("[End of the encrypted text]"), "{copy}");
        assert!(
            !copy.contains("BEGIN PGP MESSAGE"),
            "decrypted in place: {copy}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_text_unsigned_attachment() {
    let Some(case) = case("intake/signed-text-unsigned-attachment") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T13:43:00Z").await;
    case.send(&daemon, "post.eml", "alice@example.org", DISTRIBUTORS)
        .await;
    let reasons = daemon.held();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("text/plain part: good signature by alice")
            && reasons[0].contains("attachment dec.patch: not signed"),
        "{reasons:?}"
    );
    let notice = pst_copies(&case, &daemon)
        .pop()
        .expect("a notice to the PST");
    assert!(
        notice.contains("no signature covers the whole post"),
        "{notice}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_encrypted_report() {
    let Some(case) = case("intake/forwarded-encrypted-report") else {
        return;
    };
    let name = std::fs::read_dir(&case.input)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let name = name.to_str().unwrap();
    let (daemon, copies) = report_copies(
        &case,
        "2026-11-30T14:40:00Z",
        name,
        "maintainer@kappital.example",
    )
    .await;
    for copy in copies {
        assert!(
            copy.contains("Part: attached message report.eml")
                && copy.contains("encrypted to the list key and decrypted here"),
            "{copy}"
        );
        assert!(!copy.contains("BEGIN PGP MESSAGE"), "decrypted: {copy}");
        assert!(copy.contains("From: researcher@example.com"), "{copy}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smime_opaque_signed() {
    let Some(case) = case("intake/smime-opaque-signed") else {
        return;
    };
    let (daemon, copies) = report_copies(
        &case,
        "2026-11-30T14:40:00Z",
        "report.eml",
        "reporter@example.net",
    )
    .await;
    for copy in copies {
        assert!(
            copy.contains(
                "Part: S/MIME signature (opaque signed-data, smime.p7m) by a certificate naming"
            ) && copy.contains("NOT checked against any authority"),
            "{copy}"
        );
        assert!(copy.contains("poc.py"), "the attachment is there: {copy}");
        assert!(
            !copy.contains("smime.p7m\"") && !copy.contains("pkcs7-mime"),
            "{copy}"
        );
    }
    daemon.stop().await;
}

/// The decoded text of every text part of a decrypted copy, as the member's
/// mail client shows it (no look-alike letters read back).
fn shown_texts(entity: &str) -> Vec<String> {
    let Some(message) = embargod::mime::parse(entity.as_bytes()) else {
        return Vec::new();
    };
    message
        .parts
        .iter()
        .filter_map(|p| p.text_contents().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn homoglyph_marks_code() {
    for marks in ["", "marks = \"invisible\"\n"] {
        let Some(case) = case("marks/homoglyph-marks-code") else {
            return;
        };
        // As the case comes (the security list's default), and with the
        // invisible marks the kind is about.
        let config = case.dir.path().join("embargod.toml");
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "members = [\"m0\", \"m1\", \"m2\", \"m3\", \"m4\", \"m5\"]\n",
            &format!("members = [\"m0\", \"m1\", \"m2\", \"m3\", \"m4\", \"m5\"]\n{marks}"),
        );
        std::fs::write(&config, text).unwrap();
        let (daemon, _clock) = case.start("2026-11-30T14:00:00Z").await;
        case.send(
            &daemon,
            "report.eml",
            "rita@example.net",
            "security@kappital.example",
        )
        .await;
        let input = String::from_utf8(case.input("report.eml")).unwrap();
        let body = &input[input.find("\r\n\r\n").or(input.find("\n\n")).unwrap()..];
        let exact: Vec<&str> = body
            .lines()
            .filter(|l| !l.is_empty() && !["Steps:", "Thanks."].contains(l))
            .collect();
        assert_eq!(exact.len(), 15);
        let copies: Vec<String> = all(&daemon)
            .iter()
            .filter(|m| m.to[0].starts_with('m'))
            .map(|m| {
                let (plaintext, status) = case.gpg.decrypt(&armored_part(&m.bytes));
                assert!(status.contains("GOODSIG"), "{status}");
                String::from_utf8(plaintext).unwrap()
            })
            .collect();
        assert_eq!(copies.len(), 6, "{marks}");
        for copy in &copies {
            let report = shown_texts(copy)
                .into_iter()
                .find(|t| embargod::mark::canonical(t).contains("Steps"))
                .expect("the report part");
            for line in &exact {
                assert!(
                    report.lines().any(|l| l == *line),
                    "{marks}: {line:?} is not byte-identical in:\n{report}"
                );
            }
        }
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_forwarded_as_attachment() {
    let Some(case) = case("marks/trace-forwarded-as-attachment") else {
        return;
    };
    let (daemon, _clock) = case.start("2026-11-30T15:00:00Z").await;
    let store = &daemon.shared.store;
    for name in ["leak-unwrapped.eml", "leak.eml", "leak-with-headers.eml"] {
        let verdict =
            embargod::mark::trace::trace(store, store.mark_secret(), &case.input(name)).unwrap();
        match &verdict {
            embargod::mark::trace::Verdict::Attributed { copy, .. } => {
                assert_eq!(copy.member, "distro-a", "{name}: {verdict}")
            }
            other => panic!("{name}: {other}"),
        }
    }
    daemon.stop().await;
}
