//! LMTP as the MTA sees it (RFC 2033): replies per recipient, limits,
//! pipelining, Unix sockets, and bad input answered clearly while the
//! daemon keeps serving.

mod common;

use std::time::Duration;

use common::{report, start, TestDaemon};
use embargod::clock::Clock;
use embargod::config::{ListName, ListenAddr};
use embargod::lmtp::client;
use embargod::sandbox::{Sandbox, DISTRIBUTORS, SECURITY};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn daemon_with(dir: &std::path::Path, lmtp_extra: &str) -> (Sandbox, TestDaemon) {
    let mut sandbox = Sandbox::new(dir).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    sandbox
        .generate_member("distro-a", ListName::Distributors)
        .unwrap();
    sandbox.lmtp_extra = lmtp_extra.to_string();
    let daemon = start(&sandbox, Clock::system()).await;
    (sandbox, daemon)
}

/// A raw conversation: writes `input` at once (pipelined) and reads
/// replies until `replies` final lines have arrived.
async fn converse(addr: &ListenAddr, input: &[u8], replies: usize) -> Vec<String> {
    let ListenAddr::Tcp(addr) = addr else {
        panic!("tcp")
    };
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut out = Vec::new();
    let greeting = lines.next_line().await.unwrap().unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    write.write_all(input).await.unwrap();
    let mut finals = 0;
    while finals < replies {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("reply in time")
            .unwrap()
            .expect("connection open");
        if line.as_bytes().get(3) == Some(&b' ') {
            finals += 1;
        }
        out.push(line);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_session_gets_one_reply_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, daemon) = daemon_with(dir.path(), "").await;
    let message = String::from_utf8(client::dot_stuff(&report("pipelined", "x"))).unwrap();
    let input = format!(
        "LHLO mta.example\r\nMAIL FROM:<rita@reporter.example> SIZE=500\r\n\
         RCPT TO:<{SECURITY}>\r\nRCPT TO:<nobody@kappital.example>\r\nRCPT TO:<{DISTRIBUTORS}>\r\n\
         DATA\r\n{message}.\r\nQUIT\r\n"
    );
    let lines = converse(&daemon.lmtp, input.as_bytes(), 9).await;
    let text = lines.join("\n");
    assert!(text.contains("250-PIPELINING"), "{text}");
    assert!(text.contains("250-8BITMIME"), "{text}");
    assert!(text.contains("250 SIZE 26214400"), "{text}");
    let codes: Vec<&str> = lines
        .iter()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    // LHLO, MAIL, RCPT ok, RCPT unknown, RCPT ok, DATA 354, two replies
    // (one per accepted recipient), QUIT.
    assert_eq!(
        codes,
        ["250", "250", "250", "550", "250", "354", "250", "250", "221"],
        "{text}"
    );
    assert!(
        text.contains("550 5.1.1 <nobody@kappital.example>"),
        "{text}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_mistakes_get_clear_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, daemon) = daemon_with(dir.path(), "").await;
    let input = "EHLO mta.example\r\nMAIL FROM:<a@b.example>\r\nLHLO mta.example\r\nDATA\r\n\
                 RCPT TO:<security@kappital.example>\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n\
                 BOGUS\r\nMAIL FROM:<a@b.example> SIZE=999999999\r\nNOOP\r\nRSET\r\nQUIT\r\n";
    let lines = converse(&daemon.lmtp, input.as_bytes(), 12).await;
    let finals: Vec<&String> = lines
        .iter()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .collect();
    let expect = [
        "500 5.5.1", // EHLO: this is LMTP
        "503 5.5.1", // MAIL before LHLO
        "250 SIZE",  // LHLO
        "503 5.5.1", // DATA before MAIL
        "503 5.5.1", // RCPT before MAIL
        "250 2.1.0", // MAIL
        "503 5.5.1", // DATA without recipients
        "500 5.5.1", // unknown command
        "503 5.5.1", // nested MAIL
        "250 2.0.0", // NOOP
        "250 2.0.0", // RSET
        "221 2.0.0", // QUIT
    ];
    for (line, want) in finals.iter().zip(expect) {
        assert!(
            line.starts_with(want),
            "{line:?} should start with {want:?}; all: {lines:#?}"
        );
    }
    // Each command is parsed on its own: a malformed one (no colon) gets
    // its 501 and cannot swallow the next; an over-long line gets 500.
    let long = "X".repeat(5000);
    let input = format!("LHLO x\r\nMAIL FROM <a@b.example>\r\nNOOP\r\n{long}\r\nNOOP\r\nQUIT\r\n");
    let lines = converse(&daemon.lmtp, input.as_bytes(), 6).await;
    let finals: Vec<&str> = lines
        .iter()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..9])
        .collect();
    assert_eq!(
        finals,
        [
            "250 SIZE ",
            "501 5.5.4",
            "250 2.0.0",
            "500 5.5.2",
            "250 2.0.0",
            "221 2.0.0"
        ],
        "{lines:#?}"
    );

    // After RSET a fresh transaction is possible: SIZE over the limit.
    let lines = converse(
        &daemon.lmtp,
        b"LHLO x\r\nMAIL FROM:<a@b.example> SIZE=999999999\r\nQUIT\r\n",
        3,
    )
    .await;
    assert!(
        lines.iter().any(|l| l.starts_with("552 5.3.4")),
        "{lines:#?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, daemon) = daemon_with(
        dir.path(),
        "max_message_size = 2000000\nmax_header_size = 65536\n",
    )
    .await;
    let from = "x@attacker.example";
    let header = "From: x@attacker.example\r\nSubject: t\r\n";

    let mut deep = format!("{header}Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for i in 1..1000 {
        deep.push_str(&format!(
            "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
            i - 1
        ));
    }
    let junk: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "554 5.6.0"),
        (
            "no header",
            b"just some words\r\nand more\r\n".to_vec(),
            "554 5.6.0",
        ),
        ("binary junk", junk, "554 5.6.0"),
        (
            "1 MiB header",
            format!("{header}X-Big: {}\r\n\r\nbody\r\n", "a".repeat(1 << 20)).into_bytes(),
            "552 5.3.4",
        ),
        ("1000-deep nesting", deep.into_bytes(), "554 5.6.0"),
        (
            "no From",
            b"Subject: hello\r\n\r\nbody\r\n".to_vec(),
            "554 5.6.0",
        ),
        (
            "over the size limit",
            format!("{header}\r\n{}", "y".repeat(2_100_000)).into_bytes(),
            "552 5.3.4",
        ),
    ];
    for (what, message, want) in &cases {
        let replies = client::send_one(&daemon.lmtp, from, &[SECURITY], message)
            .await
            .unwrap();
        assert_eq!(replies.len(), 1, "{what}");
        let got = format!("{} {}", replies[0].code, replies[0].text);
        assert!(got.starts_with(want), "{what}: got {got:?}, want {want}");
    }
    // Nothing of it was spooled, and a real report still goes through.
    let replies = daemon
        .send(
            "rita@reporter.example",
            &[SECURITY],
            &report("real", "still-works"),
        )
        .await;
    assert_eq!(replies[0].code, 250);
    daemon.wait_outbox(2).await;
    daemon.settle().await;
    assert_eq!(common::outbox(&sandbox.outbox_dir()).len(), 2);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_openpgp_is_quarantined_and_the_pst_told() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, daemon) = daemon_with(dir.path(), "").await;
    let message = format!(
        "From: x@attacker.example\r\nTo: <{SECURITY}>\r\nSubject: broken\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\r\n\
         -----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1234567890ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n-----END PGP MESSAGE-----\r\n--b--\r\n"
    );
    let replies = daemon
        .send("x@attacker.example", &[SECURITY], message.as_bytes())
        .await;
    assert_eq!(
        replies[0].code, 250,
        "accepted: the problem shows only when decrypting"
    );
    // Two notices (one per PST member), and no forwarded copy.
    let notices = daemon.wait_outbox(2).await;
    daemon.settle().await;
    let quarantined = daemon.shared.store.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].1.reason.contains("OpenPGP"),
        "{}",
        quarantined[0].1.reason
    );
    assert_eq!(notices.len(), 2);
    let pst: Vec<String> = sandbox
        .members
        .iter()
        .filter(|m| m.list == Some(ListName::Security))
        .map(|m| m.email.clone())
        .collect();
    for notice in &notices {
        assert!(pst.contains(&notice.to[0]), "notice to {:?}", notice.to);
        assert!(String::from_utf8_lossy(&notice.bytes).contains("multipart/encrypted"));
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_and_a_third_party_lmtp_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lmtp.sock");
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    // Listen on both TCP and the Unix socket.
    sandbox.lmtp_extra = String::new();
    let file = sandbox.write_config().unwrap();
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:0\", \"unix:{}\"]", socket.display()),
    );
    std::fs::write(&file, text).unwrap();
    let config = embargod::config::Config::load(&file).unwrap();
    let sockets = embargod::daemon::Sockets::bind(&config).await.unwrap();
    let tcp = sockets.lmtp[0].local_addr().unwrap();
    let daemon = embargod::daemon::Daemon::open(config, Default::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(sockets, async {
        let _ = stopped.await;
    }));

    let replies = client::send_one(
        &ListenAddr::Unix(socket.clone()),
        "rita@reporter.example",
        &[SECURITY],
        &report("over unix", "u1"),
    )
    .await
    .unwrap();
    assert_eq!(replies[0].code, 250);

    // Python's smtplib.LMTP: an independent LMTP client implementation.
    let ListenAddr::Tcp(tcp) = tcp else { panic!() };
    let script = format!(
        "import smtplib\n\
         c = smtplib.LMTP('{}', {})\n\
         r = c.sendmail('rita@reporter.example', ['{SECURITY}', 'nobody@kappital.example'], \
         'From: rita@reporter.example\\r\\nSubject: py\\r\\n\\r\\n.leading dot\\r\\nbody\\r\\n')\n\
         print(sorted(r.keys()))\n\
         c.quit()\n",
        tcp.ip(),
        tcp.port()
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // sendmail() returns the refused recipients.
    assert_eq!(stdout.trim(), "['nobody@kappital.example']");

    let copies = common::wait_outbox(&sandbox.outbox_dir(), 2).await;
    assert_eq!(copies.len(), 2);
    let _ = stop.send(());
    running.await.unwrap();
    assert!(!socket.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, daemon) = daemon_with(dir.path(), "idle_timeout = \"300ms\"\n").await;
    let ListenAddr::Tcp(addr) = daemon.lmtp else {
        panic!()
    };
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with("220"));
    let bye = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("closed in time")
        .unwrap()
        .unwrap();
    assert!(bye.starts_with("421 4.4.2"), "{bye}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_beyond_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, daemon) = daemon_with(dir.path(), "max_sessions = 1\n").await;
    let first = client::connect(&daemon.lmtp).await.unwrap();
    let ListenAddr::Tcp(addr) = daemon.lmtp else {
        panic!()
    };
    let second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = BufReader::new(second).lines();
    let early = tokio::time::timeout(Duration::from_millis(300), second.next_line()).await;
    assert!(
        early.is_err(),
        "second session served while the first holds the only slot"
    );
    first.quit().await.unwrap();
    let greeting = tokio::time::timeout(Duration::from_secs(10), second.next_line())
        .await
        .expect("served once the slot is free")
        .unwrap()
        .unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    daemon.stop().await;
}
