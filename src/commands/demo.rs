//! `embargod demo`: the whole flow in a temporary folder, narrated.
//!
//! Generates a list key and three PST members, starts the daemon on a
//! loopback port with the file transport, sends a sample report over LMTP,
//! lists the copies and opens one with its member's key.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, ListName};
use crate::daemon::{Daemon, Options};
use crate::lmtp::client;
use crate::mime::outbound::OBSCURED_SUBJECT;
use crate::sandbox::{open_copy, read_outbox, Sandbox, SECURITY};

/// A step of the demo that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("demo: {step}: {reason}")]
pub struct DemoError {
    step: &'static str,
    reason: String,
}

fn step<T, E: std::fmt::Display>(step: &'static str, result: Result<T, E>) -> Result<T, DemoError> {
    result.map_err(|e| DemoError {
        step,
        reason: e.to_string(),
    })
}

const REPORT: &str = "From: Rita Reporter <rita@reporter.example>\r\n\
To: <security@kappital.example>\r\n\
Subject: Heap overflow in the config parser\r\n\
Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\
Message-ID: <demo-report@reporter.example>\r\n\
\r\n\
Hello PST,\r\n\
\r\n\
a crafted config file overflows a heap buffer in the parser.\r\n\
Reproducer attached in a follow-up. Please keep this private.\r\n\
\r\n\
Rita\r\n";

/// Runs the walkthrough, narrating to `out`; returns the folder it left
/// behind for inspection.
pub async fn demo(out: &mut (dyn Write + Send)) -> Result<PathBuf, DemoError> {
    let dir = step(
        "temporary folder",
        tempfile::Builder::new().prefix("embargod-demo-").tempdir(),
    )?
    .keep();
    let say = |out: &mut (dyn Write + Send), text: String| {
        let _ = writeln!(out, "{text}");
    };
    say(out, format!("1. Working in {}", dir.display()));

    let mut sandbox = step("list key", Sandbox::new(&dir))?;
    say(
        out,
        format!("2. Made the list key {}", sandbox.list_key.fingerprint()),
    );
    let mut secrets = Vec::new();
    for id in ["alice", "bob", "carol"] {
        let secret = step(
            "member key",
            sandbox.generate_member(id, ListName::Security),
        )?;
        say(
            out,
            format!(
                "   PST member {id:<6} key {}",
                secret.fingerprint().to_hex()
            ),
        );
        secrets.push(secret);
    }
    let config_file = step("config", sandbox.write_config())?;
    let config = step("config", Config::load(&config_file))?;

    let sockets = step("listen", crate::daemon::Sockets::bind(&config).await)?;
    let lmtp = step("LMTP listen", sockets.lmtp[0].local_addr())?;
    let daemon = step("start", Daemon::open(config, Options::default()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(sockets, async {
        let _ = stopped.await;
    }));
    say(out, format!("3. embargod is listening for LMTP on {lmtp}"));

    let replies = step(
        "send report",
        client::send_one(
            &lmtp,
            "rita@reporter.example",
            &[SECURITY],
            REPORT.as_bytes(),
        )
        .await,
    )?;
    for reply in &replies {
        say(
            out,
            format!(
                "4. Sent a plaintext report; embargod replied: {} {}",
                reply.code, reply.text
            ),
        );
    }

    let outbox = sandbox.outbox_dir();
    let mut copies = Vec::new();
    for _ in 0..300 {
        copies = step("read outbox", read_outbox(&outbox))?;
        if copies.len() >= secrets.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = running.await;
    if copies.len() < secrets.len() {
        return Err(DemoError {
            step: "delivery",
            reason: format!("{} of {} copies arrived", copies.len(), secrets.len()),
        });
    }

    say(
        out,
        format!("5. {} copies in {}:", copies.len(), outbox.display()),
    );
    for copy in &copies {
        use mail_parser::MimeHeaders;
        let parsed = crate::mime::parse(&copy.bytes);
        let content_type = parsed
            .as_ref()
            .and_then(|m| m.content_type())
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()))
            .unwrap_or_default();
        say(
            out,
            format!(
                "   to {:<22} {:>6} bytes  Subject: {}  ({content_type})",
                copy.to.join(","),
                copy.bytes.len(),
                parsed
                    .as_ref()
                    .and_then(|m| m.subject())
                    .unwrap_or(OBSCURED_SUBJECT),
            ),
        );
    }

    let alice = &secrets[0];
    let alice_email = &sandbox.members[0].email;
    let copy = copies
        .iter()
        .find(|c| c.to.iter().any(|to| to == alice_email))
        .ok_or(DemoError {
            step: "decrypt",
            reason: "no copy for alice".into(),
        })?;
    let opened = step("decrypt", open_copy(&copy.bytes, alice, &sandbox.list_key))?;
    say(
        out,
        format!(
            "6. Alice's copy, decrypted with her key ({}):",
            copy.eml.display()
        ),
    );
    say(out, format!("   list signature: {}", opened.signatures));
    let text = String::from_utf8_lossy(&opened.content);
    for line in text.lines().take(40) {
        say(out, format!("   | {line}"));
    }
    say(
        out,
        format!(
            "Done. The folder stays for you to look at: keys/, embargod.toml, state/ (sealed), outbox/.\n\
             Try: {} --config {} check",
            std::env::args().next().unwrap_or_else(|| "embargod".into()),
            config_file.display()
        ),
    );
    Ok(dir)
}
