//! What the daemon writes stays well formed under hostile header values
//! and part parameters: no field of the sender's making, no line over 998
//! octets (RFC 5322 §2.1.1), inside the encryption and outside it. End to
//! end (LMTP in, the file transport out, copies opened with GnuPG), then
//! the writers alone.

mod common;

use std::time::Duration;

use common::{addressed_to, armored_part, canary, start, TestDaemon, World};
use embargod::config::ListName;
use embargod::mime::edit::{first_text, splice, Transfer};
use embargod::mime::{text_part_for, HeaderSection};
use embargod::sandbox::{read_outbox, OutboxMail, SECURITY};

const FINDER: &str = "finder@elsewhere.example";

fn world() -> World {
    World::new(
        &[
            ("alice", Some(ListName::Security)),
            ("bob", Some(ListName::Security)),
            ("distro-a", Some(ListName::Distributors)),
        ],
        None,
    )
}

async fn settle(daemon: &TestDaemon) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.settle().await;
}

fn all_mail(daemon: &TestDaemon) -> Vec<OutboxMail> {
    read_outbox(&daemon.outbox).unwrap()
}

fn raw_report(head: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Finder <{FINDER}>\r\nTo: <{SECURITY}>\r\n{head}Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{}@elsewhere.example>\r\nMIME-Version: 1.0\r\n{body}",
        embargod::random::token()
    )
    .into_bytes()
}

/// alice's copy, decrypted: the raw inner entity.
fn alice_plaintext(w: &World, mail: &[OutboxMail]) -> Vec<u8> {
    let copy = addressed_to(mail, "alice@example.org");
    assert_eq!(copy.len(), 1, "one copy for alice");
    let (plain, status) = w.gpg.decrypt(&armored_part(&copy[0].bytes));
    assert!(status.contains("GOODSIG"), "{status}");
    plain
}

fn header_of(entity: &[u8]) -> String {
    let text = String::from_utf8_lossy(entity).into_owned();
    text.split("\r\n\r\n").next().unwrap().to_string()
}

/// Every line of every message the daemon wrote is at most 998 octets
/// (RFC 5322 §2.1.1), outside and inside the encryption.
#[tokio::test(flavor = "multi_thread")]
async fn a_subject_of_one_long_word_is_folded_in_the_copies() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    // 40 encoded words of 50 letters each: mail_parser joins adjacent
    // encoded words without a space (RFC 2047 §6.2), one 2000-letter word.
    let words: Vec<String> = (0..40)
        .map(|_| format!("=?us-ascii?q?{}?=", "A".repeat(50)))
        .collect();
    let subject = words.join("\r\n ");
    let secret = canary();
    let report = raw_report(
        &format!("Subject: {subject}\r\n"),
        &format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{secret}\r\n"),
    );
    daemon.send(FINDER, &[SECURITY], &report).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let plain = alice_plaintext(&w, &mail);
    let head = header_of(&plain);
    let longest = head.split("\r\n").map(str::len).max().unwrap();
    let subject_line = head
        .split("\r\n")
        .find(|l| l.starts_with("Subject:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        longest <= 998,
        "alice's copy has a header line of {longest} octets: {}…",
        &subject_line[..subject_line.len().min(80)]
    );
    daemon.stop().await;
}

/// A parameter of the report's text part decodes (RFC 2231 or RFC 2047)
/// to a line break: the part header the marking splice writes must not
/// gain a field.
#[tokio::test(flavor = "multi_thread")]
async fn a_text_part_parameter_adds_no_field_to_the_members_copy() {
    let mut w = world();
    // Invisible marks: the report's text part is rewritten per copy.
    w.sandbox.security_extra = "marks = \"invisible\"\n".into();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let secret = canary();
    let report = raw_report(
        "Subject: overflow\r\n",
        &format!(
            "Content-Type: text/plain; charset=utf-8; x*0*=utf-8''%0D%0AContent-Transfer-Encoding%3A%20base64%0D%0AX-Injected%3A%20yes\r\n\r\n\
             The parser overflows when the input is long. It crashes the server.\r\n{secret}\r\n"
        ),
    );
    daemon.send(FINDER, &[SECURITY], &report).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let plain = alice_plaintext(&w, &mail);
    let text = String::from_utf8_lossy(&plain).into_owned();
    let injected = text
        .split("\r\n")
        .any(|line| line.starts_with("X-Injected:"));
    let readable = common::readable(&plain);
    assert!(
        !injected,
        "a field was injected into the copy's text part:\n{text}"
    );
    assert!(
        readable.contains(&secret),
        "alice cannot read the report:\n{text}"
    );
    daemon.stop().await;
}

/// A Subject whose encoded word decodes to CR LF and a field: no new
/// field anywhere in the copy, inside or out, nor in the acknowledgement.
#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_crlf_in_the_subject_adds_no_field() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let secret = canary();
    let report = raw_report(
        "Subject: =?utf-8?q?hi=0D=0ABcc:_evil@attacker.example=0D=0A=0D=0Abody?= \x00 =?utf-8?b?w7w=?=\r\n",
        &format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{secret}\r\n"),
    );
    daemon.send(FINDER, &[SECURITY], &report).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    for m in &mail {
        let outer = String::from_utf8_lossy(&m.bytes).into_owned();
        assert!(!outer.contains("Bcc:"), "outer: {outer}");
        assert!(!outer.contains(&secret), "plaintext leak: {outer}");
        assert!(outer.split("\r\n").all(|l| l.len() <= 998));
    }
    let plain = alice_plaintext(&w, &mail);
    let head = header_of(&plain);
    assert!(!head.split("\r\n").any(|l| l.starts_with("Bcc:")), "{head}");
    assert!(common::readable(&plain).contains(&secret));
    daemon.stop().await;
}

/// The PST answers a report whose Subject is one long word (X-To-Reporter):
/// the reporter has no key, so the answer goes as signed plaintext, and
/// its Subject line must still be at most 998 octets outside any
/// encryption, where relays see it.
#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_answer_to_the_reporter_keeps_its_lines_short() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let long = "A".repeat(2000);
    let words: Vec<String> = long
        .as_bytes()
        .chunks(50)
        .map(|c| format!("=?us-ascii?q?{}?=", String::from_utf8_lossy(c)))
        .collect();
    let report = raw_report(
        &format!("Subject: {}\r\n", words.join("\r\n ")),
        "Content-Type: text/plain; charset=utf-8\r\n\r\nthe details\r\n",
    );
    daemon.send(FINDER, &[SECURITY], &report).await;
    settle(&daemon).await;
    // alice's client answers, writing the Subject again as encoded words.
    let answer = common::signed_text(
        &w.gpg,
        "alice@example.org",
        SECURITY,
        &format!("Re: [KAP-2026-0001] {}", words.join("\r\n ")),
        "X-Case: KAP-2026-0001\r\nX-To-Reporter: yes\r\n",
        "Thanks, we are looking into it.",
        None,
    );
    daemon.send("alice@example.org", &[SECURITY], &answer).await;
    settle(&daemon).await;
    let mail = all_mail(&daemon);
    let to_reporter = addressed_to(&mail, FINDER);
    assert_eq!(to_reporter.len(), 2, "the acknowledgement and the answer");
    for m in to_reporter {
        let text = String::from_utf8_lossy(&m.bytes);
        assert!(!text.contains("BEGIN PGP MESSAGE"), "plaintext: no key");
        let longest = text.split("\r\n").map(str::len).max().unwrap();
        assert!(
            longest <= 998,
            "mail to the reporter has a line of {longest} octets, in plaintext"
        );
    }
    daemon.stop().await;
}

/// A report whose From address lettre's grammar does not take: the PST's
/// answer writes `To: <address>` as it is.
#[tokio::test(flavor = "multi_thread")]
async fn an_odd_reporter_from_address_adds_no_recipient() {
    let w = world();
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    for (n, from) in [
        "\"fin der\\\">, <evil@attacker.example\"@elsewhere.example",
        "finder@elsewhere.example>, <evil@attacker.example",
    ]
    .iter()
    .enumerate()
    {
        let report = format!(
            "From: Finder <{from}>\r\nTo: <{SECURITY}>\r\nSubject: report {n}\r\nMessage-ID: <odd{n}@elsewhere.example>\r\n\r\ndetails\r\n"
        );
        daemon.send(FINDER, &[SECURITY], report.as_bytes()).await;
        settle(&daemon).await;
        let case = format!("KAP-2026-000{}", n + 1);
        let answer = common::signed_text(
            &w.gpg,
            "alice@example.org",
            SECURITY,
            &format!("Re: [{case}] report"),
            &format!("X-Case: {case}\r\nX-To-Reporter: yes\r\n"),
            "Thanks.",
            None,
        );
        daemon.send("alice@example.org", &[SECURITY], &answer).await;
        settle(&daemon).await;
    }
    for m in all_mail(&daemon) {
        let text = String::from_utf8_lossy(&m.bytes);
        let to_lines = text.split("\r\n").filter(|l| l.starts_with("To:")).count();
        assert!(to_lines <= 1, "one To field: {text}");
        assert!(!m.to.iter().any(|t| t.contains("attacker")), "{:?}", m.to);
    }
    daemon.stop().await;
}

#[test]
fn a_long_word_is_written_as_short_lines() {
    // What mail_parser gives for a Subject of adjacent encoded words:
    // one word of 2000 letters.
    let subject = format!("[KAP-2026-0001] {}", "A".repeat(2000));
    let bytes = HeaderSection::new().text("Subject", &subject).to_bytes();
    let longest = bytes.split(|&b| b == b'\n').map(|l| l.len()).max().unwrap();
    assert!(longest <= 80, "a header line of {longest} octets");
}

#[test]
fn a_text_part_parameter_cannot_add_a_field() {
    for ct in [
        // RFC 2231 extended parameter, percent-encoded CRLF
        "text/plain; charset=utf-8; x*0*=utf-8''%0D%0AContent-Transfer-Encoding%3A%20base64",
        // RFC 2047 word inside a quoted parameter
        "text/plain; charset=utf-8; x=\"=?utf-8?q?a=0D=0AContent-Transfer-Encoding:_base64?=\"",
    ] {
        let entity = format!(
            "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: {ct}\r\n\r\nhello world\r\n--m--\r\n"
        );
        let slot = first_text(entity.as_bytes()).expect("a text part");
        let edited = splice(
            entity.as_bytes(),
            &[(&slot, "hello world, marked\r\n".into())],
        );
        let text = String::from_utf8_lossy(&edited).into_owned();
        let fields = text.matches("Content-Transfer-Encoding").count();
        assert_eq!(
            fields, 1,
            "a field was injected into the part's header:\n{text}"
        );
        let slot = first_text(&edited).expect("still a text part");
        assert_eq!(slot.text.trim_end(), "hello world, marked", "{text}");
    }
}

#[test]
fn text_parts_decode_to_their_text() {
    let cases: Vec<(&str, String)> = vec![
        ("nul", "a\0b\r\n".into()),
        ("line 998", format!("{}\r\n", "x".repeat(998))),
        ("line 999", format!("{}\r\n", "x".repeat(999))),
        ("utf8 line 998 octets", format!("{}\r\n", "é".repeat(499))),
        ("utf8 line 1000 octets", format!("{}\r\n", "é".repeat(500))),
        ("mixed line ends", "a\nb\r\nc\r\n".into()),
        ("dot line", "a\r\n.\r\nb\r\n".into()),
        ("trailing spaces", "a   \r\nb\t\r\n".into()),
        ("from line", "From me\r\n".into()),
        ("no final line end", "last".into()),
        ("only line ends", "\r\n\r\n\r\n".into()),
        ("equals", "a=b =3D\r\n".into()),
    ];
    for transfer in [Transfer::Transport, Transfer::Encrypted] {
        for (name, text) in &cases {
            let part = text_part_for(text, transfer);
            let lines_ok = part.split(|&b| b == b'\n').all(|l| l.len() <= 999);
            assert!(lines_ok, "{name} {transfer:?}: a line over 998 octets");
            if transfer == Transfer::Transport {
                assert!(part.is_ascii(), "{name}: 8-bit data in a transport part");
            }
            let parsed = mail_parser::MessageParser::default().parse(&part).unwrap();
            let decoded = parsed.body_text(0).unwrap_or_default().into_owned();
            assert_eq!(
                decoded.trim_end_matches("\r\n"),
                text.replace("\r\n", "\n")
                    .replace('\n', "\r\n")
                    .trim_end_matches("\r\n"),
                "{name} {transfer:?}: {:?}",
                String::from_utf8_lossy(&part)
            );
        }
    }
}
