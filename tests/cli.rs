//! The `embargod` binary as an admin uses it: `init`, `check`, config
//! errors, and `run` surviving a SIGKILL right after accepting mail.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use embargod::config::{ListName, ListenAddr};
use embargod::sandbox::{Sandbox, SECURITY};
use sequoia_openpgp::cert::prelude::*;

fn embargod(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("embargod runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A config in `dir` with alice on the security list; returns its path.
fn config_with_alice(dir: &Path) -> std::path::PathBuf {
    let mut sandbox = Sandbox::new(dir).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.write_config().unwrap()
}

#[test]
fn init_creates_keys_once_and_prints_the_public_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A config written by an admin, keys not there yet.
    let config = config_with_alice(dir.path());
    std::fs::remove_file(dir.path().join("keys/list.key")).unwrap();
    std::fs::remove_file(dir.path().join("keys/store.key")).unwrap();

    let first = embargod(&config, &["init"]);
    assert!(first.status.success(), "{}", text(&first));
    let public = String::from_utf8(first.stdout.clone()).unwrap();
    assert!(
        public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{public}"
    );
    assert!(!public.contains("PRIVATE KEY"));
    for key in ["keys/list.key", "keys/store.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let before = std::fs::read(dir.path().join("keys/list.key")).unwrap();

    let second = embargod(&config, &["init"]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(second.stdout, first.stdout, "same key printed again");
    assert!(text(&second).contains("left as it is"));
    assert_eq!(
        std::fs::read(dir.path().join("keys/list.key")).unwrap(),
        before,
        "never overwritten"
    );
}

/// With no daemon running, an admin command reads the store, and says so;
/// a store path with a typo is named, never created empty.
#[test]
fn offline_commands_say_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_alice(dir.path());

    let typo = std::fs::read_to_string(&config)
        .unwrap()
        .replace("path = \"state\"", "path = \"stat\"");
    let typo_file = dir.path().join("typo.toml");
    std::fs::write(&typo_file, typo).unwrap();
    let cases = embargod(&typo_file, &["cases"]);
    let out = text(&cases);
    assert!(!cases.status.success(), "{out}");
    assert!(
        out.contains("there is no store at") && out.contains("store.path"),
        "{out}"
    );
    assert!(!dir.path().join("stat").exists(), "no store made by a typo");

    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let status = embargod(&config, &["status"]);
    let out = text(&status);
    assert!(status.status.success(), "{out}");
    assert!(out.contains("no daemon is running"), "{out}");
    assert!(!out.contains(" up "), "{out}");
    let members = embargod(&config, &["member", "list"]);
    assert!(
        text(&members).contains("no member has a strike"),
        "{}",
        text(&members)
    );
}

#[test]
fn check_reports_each_member_and_fails_on_problems() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    // Bob's key expires in ten days: a warning, not an error.
    let (bob, _) = CertBuilder::general_purpose(Some("bob <bob@example.org>"))
        .set_validity_period(Duration::from_secs(10 * 86400))
        .generate()
        .unwrap();
    sandbox
        .add_member("bob", "bob@example.org", ListName::Security, &bob)
        .unwrap();
    let config = sandbox.write_config().unwrap();

    let ok = embargod(&config, &["check"]);
    let out = text(&ok);
    assert!(ok.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("member alice")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning") && l.contains("member bob") && l.contains("expires")),
        "{out}"
    );
    assert!(out.contains("list key"), "{out}");

    // Carol's file holds someone else's certificate than her pin says.
    let (other, _) = CertBuilder::general_purpose(Some("mallory <m@example.org>"))
        .generate()
        .unwrap();
    let (carol, _) = CertBuilder::general_purpose(Some("carol <carol@example.org>"))
        .generate()
        .unwrap();
    sandbox
        .add_member("carol", "carol@example.org", ListName::Security, &carol)
        .unwrap();
    sandbox.write_config().unwrap();
    let mut armored = Vec::new();
    use sequoia_openpgp::serialize::Serialize;
    other.armored().serialize(&mut armored).unwrap();
    std::fs::write(dir.path().join("keys/carol.asc"), armored).unwrap();
    // And the list key became world-readable.
    std::fs::set_permissions(
        dir.path().join("keys/list.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let bad = embargod(&config, &["check"]);
    let out = text(&bad);
    assert_eq!(bad.status.code(), Some(78), "{out}");
    let carol_line = out
        .lines()
        .find(|l| l.contains("member carol"))
        .expect("a line for carol");
    assert!(carol_line.starts_with("error"), "{carol_line}");
    assert!(
        carol_line.contains("keys/carol.asc") && carol_line.contains("not the pinned"),
        "{carol_line}"
    );
    let list_line = out.lines().find(|l| l.contains("list key")).unwrap();
    assert!(
        list_line.starts_with("error") && list_line.contains("0644"),
        "{list_line}"
    );
}

#[test]
fn a_bad_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("embargod.toml");
    std::fs::write(
        &file,
        "[project]\nname = \"K\"\ncase_prefix = \"K\"\n[delivery]\ntransport = \"file\"\nfile_dir = \"o\"\n\
         from = \"owner@example.org\"\n[list_key]\nsecret = \"k\"\n\
         [lists.security]\naddress = \"security@example.org\"\nmembers = [\"ghost\"]\n",
    )
    .unwrap();
    for command in ["check", "run", "init"] {
        let output = embargod(&file, &[command]);
        let out = text(&output);
        assert_eq!(output.status.code(), Some(78), "{command}: {out}");
        assert!(
            out.contains("embargod.toml")
                && out.contains("lists.security.members")
                && out.contains("ghost"),
            "{out}"
        );
    }
}

/// An LMTP session with the daemon at `addr`, once it listens.
async fn when_up(
    addr: &ListenAddr,
) -> embargod::lmtp::client::Client<Box<dyn embargod::lmtp::client::Stream>> {
    for _ in 0..200 {
        if let Ok(client) = embargod::lmtp::client::connect(addr).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon did not come up");
}

/// `embargod deliver`, as an MTA's pipe transport runs it, with the
/// message on standard input: to the running daemon, then with no daemon
/// (spooled in the store, sent at the next start); the exit status is the
/// sysexits code the MTA acts on.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_delivers_with_the_daemon_up_and_down() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox.lmtp_extra = "max_message_size = 65536\n".into();
    let (config, addr) = common::config_on_fixed_port(&sandbox);
    let pipe = |list: &str, message: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_embargod"))
            .arg("--config")
            .arg(&config)
            .args(["deliver", "--list", list, "-f", "rita@reporter.example"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A deliver that exits before reading (a refused config, say)
        // closes its stdin: its exit status and stderr say why.
        let _ = child.stdin.take().unwrap().write_all(message);
        child.wait_with_output().unwrap()
    };

    // Up: through the daemon's LMTP listener.
    let daemon = common::spawn_binary(&config, "info");
    drop(when_up(&addr).await);
    let up = pipe("security", &common::report("by pipe", "pipe-up"));
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    // What the daemon refuses, the MTA bounces: not a message at all.
    let garbage = pipe("security", b"\x00\x01 not a message\r\n");
    assert_eq!(garbage.status.code(), Some(65), "{}", text(&garbage));
    // Larger than the listener takes: refused before any of it is sent.
    let huge = pipe("security", &vec![b'x'; 100_000]);
    assert_eq!(huge.status.code(), Some(65), "{}", text(&huge));
    assert!(text(&huge).contains("max_message_size"), "{}", text(&huge));
    // Whether alice has a copy that reads `canary`.
    let alice_reads = |canary: &str| {
        embargod::sandbox::read_outbox(&sandbox.outbox_dir())
            .unwrap()
            .iter()
            .filter(|m| m.to[0] == "alice@example.org")
            .filter_map(|m| embargod::sandbox::open_copy(&m.bytes, &alice, &sandbox.list_key).ok())
            .any(|opened| common::readable(&opened.content).contains(canary))
    };
    let until_alice_reads = |canary: &'static str| async move {
        for _ in 0..600 {
            if alice_reads(canary) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("alice never got the report {canary}");
    };
    until_alice_reads("pipe-up").await;
    drop(daemon);

    // Down: the same checks in process, into the spool; the copies go at
    // the next start.
    let down = pipe(
        "security",
        &common::report("by pipe, no daemon", "pipe-down"),
    );
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert!(!alice_reads("pipe-down"), "nothing is sent with no daemon");
    let _daemon = common::spawn_binary(&config, "info");
    until_alice_reads("pipe-down").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_accepted_before_a_sigkill_is_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    for id in ["alice", "bob", "carol"] {
        sandbox.generate_member(id, ListName::Security).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = sandbox.write_config().unwrap();
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text_config).unwrap();
    let addr = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap());

    let spawn = || common::spawn_binary(&config, "info");
    let mut daemon = spawn();
    let connect = || when_up(&addr);
    let mut client = connect().await;
    let replies = client
        .send(
            "rita@reporter.example",
            &[SECURITY],
            &common::report("crash", "k1"),
        )
        .await
        .unwrap();
    assert_eq!(replies[0].code, 250);
    // Killed the moment it said 250: no chance to fan out or flush more.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let mut daemon = spawn();
    // Each PST member's copy (the reporter's acknowledgement aside).
    let mail = common::wait_outbox(&sandbox.outbox_dir(), 3).await;
    let mut recipients: Vec<String> = mail.iter().map(|m| m.to[0].clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(
        recipients,
        ["alice@example.org", "bob@example.org", "carol@example.org"]
    );
    // Let it finish, then stop it the polite way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_sigterm(daemon.0.id());
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

/// SIGTERM through the `kill` command (no libc needed in the tests).
fn send_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_bounce_pipe_without_its_recipient_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let config = sandbox.write_config().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(&config)
        .args(["deliver", "--list", "bounces", "-f", ""])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // EX_USAGE: the MTA keeps the bounce and the admin sees why.
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--recipient"), "{}", text(&out));
}
