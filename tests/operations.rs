//! Operations: reload on SIGHUP (a new member gets mail, a broken config is
//! refused and the old one stays), `status`, `queue`, and the metrics.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{report, start};
use embargod::clock::Clock;
use embargod::config::{ListName, ListenAddr};
use embargod::control::{client::request, Command as Admin};
use embargod::sandbox::{Sandbox, SECURITY};

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_members_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = sandbox.write_config().unwrap();
    let fix_port = |file: &std::path::Path| {
        let text = std::fs::read_to_string(file)
            .unwrap()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(file, text).unwrap();
    };
    fix_port(&config);
    let addr = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    let daemon = common::spawn_binary(&config, "info");
    let send = |subject: &'static str| {
        let addr = addr.clone();
        async move {
            for _ in 0..200 {
                if let Ok(replies) = embargod::lmtp::client::send_one(
                    &addr,
                    "rita@reporter.example",
                    &[SECURITY],
                    &report(subject, subject),
                )
                .await
                {
                    return replies;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("daemon not reachable");
        }
    };
    assert_eq!(send("first").await[0].code, 250);
    common::wait_outbox(&sandbox.outbox_dir(), 1).await;

    // Bob joins: config and key file, then SIGHUP.
    sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox.write_config().unwrap();
    fix_port(&config);
    signal(&daemon.0, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send("second").await[0].code, 250);
    let mail = common::wait_outbox(&sandbox.outbox_dir(), 3).await;
    assert_eq!(
        mail.iter().filter(|m| m.to == ["bob@example.org"]).count(),
        1,
        "bob gets mail after the reload"
    );

    // A broken config is refused; the one in force goes on.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("[lmtp]", "[lmtp]\nlisten_typo = 1")).unwrap();
    signal(&daemon.0, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send("third").await[0].code, 250);
    common::wait_outbox(&sandbox.outbox_dir(), 5).await;
    let status = request(&sandbox.dir.join("control.sock"), Admin::Status)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        status.contains("reload refused") && status.contains("listen_typo"),
        "{status}"
    );
    assert!(
        status.contains("list security") && status.contains("2 member(s), 2 with a usable key"),
        "{status}"
    );
    std::fs::write(&config, good).unwrap();

    signal(&daemon.0, "TERM");
    let mut daemon = daemon;
    let exit = daemon.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_queue_and_metrics_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    // The relay is down: copies wait in the queue.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{port}\"\nfrom = \"{}\"\nretry_initial = \"1h\"\n",
        embargod::sandbox::OWNER
    );
    sandbox.extra = "[metrics]\nlisten = \"127.0.0.1:0\"\n".into();
    let daemon = start(&sandbox, Clock::manual(chrono::Utc::now())).await;
    daemon
        .send("rita@reporter.example", &[SECURITY], &report("queued", "q"))
        .await;
    let socket = &daemon.config.control.socket;
    for _ in 0..100 {
        if daemon
            .shared
            .store
            .queued()
            .unwrap()
            .iter()
            .all(|(_, c)| c.attempts == 1)
            && daemon.shared.store.queue_len() == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queue = request(socket, Admin::Queue).await.unwrap().text().unwrap();
    assert!(
        queue.contains("alice@example.org") && queue.contains("Connection refused"),
        "{queue}"
    );
    let status = request(socket, Admin::Status)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(status.contains("queue 2 copy(ies), 2 deferred"), "{status}");
    assert!(status.contains("list security"), "{status}");

    let copy = daemon.shared.store.queued().unwrap()[0].1.id;
    let retried = request(
        socket,
        Admin::QueueRetry {
            id: embargod::mark::copy_id_hex(copy),
        },
    )
    .await
    .unwrap();
    assert!(retried.is_done(), "{retried:?}");
    let bad = request(socket, Admin::QueueRetry { id: "zz".into() })
        .await
        .unwrap();
    assert!(!bad.is_done() && bad.failure().unwrap().contains("not a copy id"));

    // Prometheus text on the metrics address.
    let addr = daemon.metrics.expect("metrics listening");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    for line in [
        "embargod_messages_received_total{list=\"security\"} 1",
        "embargod_copies_total{outcome=\"queued\"} 2",
        "embargod_copies_total{outcome=\"deferred\"}",
        "embargod_queue_depth 2",
        "embargod_embargoes_pending 0",
        "embargod_processing_seconds_count 1",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_protocol_answers_bad_requests_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    let daemon = start(&sandbox, Clock::system()).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&daemon.config.control.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the service user's alone"
    );
    let stream = tokio::net::UnixStream::connect(&daemon.config.control.socket)
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(read).lines();
    for (request, expect) in [
        ("this is not json", "bad request"),
        (
            "{\"v\":1,\"cmd\":\"status\"}",
            "protocol version 1 not supported",
        ),
        // The version is read first: a command of another version is not
        // a "bad request".
        (
            "{\"v\":1,\"cmd\":\"no-such-command\"}",
            "protocol version 1 not supported",
        ),
        ("{\"v\":2,\"cmd\":\"frobnicate\"}", "bad request"),
        (
            "{\"v\":2,\"cmd\":\"case-show\",\"id\":\"KAP-2026-9999\"}",
            "no such case",
        ),
    ] {
        write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        let line = lines.next_line().await.unwrap().unwrap();
        let response: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(response["outcome"], "failed", "{line}");
        if expect.starts_with("protocol version") {
            // What a version 1 client reads: `ok` and `error`.
            assert_eq!(response["ok"], false, "{line}");
        }
        assert!(
            response["error"].as_str().unwrap().contains(expect),
            "{request}: {line}"
        );
    }
    write
        .write_all(b"{\"v\":2,\"cmd\":\"status\"}\n")
        .await
        .unwrap();
    let line = lines.next_line().await.unwrap().unwrap();
    assert!(
        line.contains("\"outcome\":\"done\"") && line.contains("list security"),
        "{line}"
    );
    daemon.stop().await;
}
