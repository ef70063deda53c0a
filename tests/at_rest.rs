//! Nothing embargoed rests in plaintext: a report and a distributors post
//! carrying a random canary are processed (the embargo left pending), the
//! daemon is stopped, and every byte under the state directory, in the
//! outbox and in the logs is searched for the canary — as it is, and in
//! its base64 and quoted-printable forms. Zero hits.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::{list_public, signed_post, Gpg};
use embargod::config::ListName;
use embargod::sandbox::{Sandbox, DISTRIBUTORS, SECURITY};

/// The canary as it would appear encoded: itself, and base64 at each of
/// the three alignments (quoted-printable leaves this ASCII text as it is).
fn forms(canary: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![canary.as_bytes().to_vec()];
    for shift in 0..3 {
        let padded = format!("{}{canary}", "x".repeat(shift));
        let encoded = base64::engine::general_purpose::STANDARD.encode(padded);
        // Drop the characters that depend on the neighbours.
        let start = (shift * 4).div_ceil(3) + 1;
        forms.push(encoded.as_bytes()[start..encoded.len() - 4].to_vec());
    }
    forms
}

#[tokio::test(flavor = "multi_thread")]
async fn the_canary_is_nowhere_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let gpg = Gpg::new();
    for (id, list) in [
        ("alice", ListName::Security),
        ("distro-a", ListName::Distributors),
    ] {
        let email = format!("{id}@example.org");
        gpg.gen_key(&format!("{id} <{email}>"), "future-default");
        sandbox
            .add_member(id, &email, list, &gpg.cert(&email))
            .unwrap();
    }
    gpg.import(&list_public(&sandbox));
    let (config, addr) = common::config_on_fixed_port(&sandbox);
    let log = dir.path().join("daemon.log");
    // The real binary, logging everything it says at debug level.
    let mut daemon = common::spawn_binary(&config, "debug");
    let canary = common::canary();
    let report = common::report("Canary report", &canary);
    let until = (chrono::Utc::now() + chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let post = signed_post(
        &gpg,
        "alice@example.org",
        DISTRIBUTORS,
        &format!("Fix {canary}"),
        &format!("X-Case: KAP-2026-0001\r\nX-Embargo-Until: {until}\r\n"),
        &format!("Patch notes {canary}"),
        &format!("--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-{canary}\r\n+fixed\r\n"),
    );
    for (rcpt, message) in [(SECURITY, report), (DISTRIBUTORS, post)] {
        common::send_until_accepted(
            &addr,
            "alice@example.org",
            rcpt,
            &message,
            Duration::from_secs(10),
        )
        .await;
    }
    // Security copy to alice, distributors copies to alice and distro-a.
    common::wait_outbox(&sandbox.outbox_dir(), 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(daemon.0.wait().unwrap().success());

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("embargo set"),
        "the embargo is pending:\n{logged}"
    );
    let forms = forms(&canary);
    let mut searched = 0;
    for file in common::files(&dir.path().join("state"))
        .into_iter()
        .chain(common::files(&sandbox.outbox_dir()))
        .chain([log.clone()])
    {
        let bytes = std::fs::read(&file).unwrap();
        searched += bytes.len();
        for form in &forms {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                "{} holds the canary ({:?})",
                file.display(),
                String::from_utf8_lossy(form)
            );
        }
    }
    assert!(
        searched > 20_000,
        "searched {searched} bytes: the store, the outbox and the log"
    );
}

#[test]
fn the_base64_forms_find_an_encoded_canary() {
    // The search itself can fail: it finds the canary however it is aligned.
    let canary = "canary-0123456789abcdef";
    for prefix in ["", "a", "ab", "abc"] {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{canary} and more"));
        assert!(
            forms(canary).iter().any(|f| encoded
                .as_bytes()
                .windows(f.len())
                .any(|w| w == f.as_slice())),
            "{prefix:?}"
        );
    }
}
