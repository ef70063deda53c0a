//! The regression corpus of nasty messages: each one, sent to the real
//! binary over LMTP, gets a clear outcome (an LMTP refusal, delivery to the
//! PST, quarantine or moderation) and a log line that says which, and the
//! daemon keeps serving. The messages are built here rather than stored:
//! some are tens of megabytes, and the code says what each one is.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use embargod::config::{ListName, ListenAddr};
use embargod::lmtp::client;
use embargod::sandbox::{open_copy, read_outbox, Sandbox, DISTRIBUTORS, SECURITY};
use sequoia_openpgp::cert::prelude::*;
use sequoia_openpgp::serialize::stream::{
    Armorer, Compressor, Encryptor, LiteralWriter, Message, Recipient,
};
use sequoia_openpgp::types::CompressionAlgorithm;
use sequoia_openpgp::Cert;

const FROM: &str = "From: <mallory@hostile.example>\r\nTo: <security@kappital.example>\r\n";

/// What should become of a message, and the log line that says so.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Refused over LMTP with this code; the log says `log`.
    Refused(u16, &'static str),
    /// Accepted, then fanned out to the list.
    Delivered,
    /// Accepted, then held in the quarantine with a reason containing this.
    Quarantined(&'static str),
    /// Accepted, then held for moderation with a reason containing this.
    Moderated(&'static str),
}

fn text(header: &str, body: &str) -> Vec<u8> {
    format!("{FROM}{header}\r\n{body}").into_bytes()
}

fn malformed_boundaries() -> Vec<u8> {
    // Declared boundary never used, a part never closed, a boundary line
    // with trailing garbage, and a missing boundary parameter inside.
    text(
        "Subject: boundaries\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n",
        "preamble\r\n--b\r\nContent-Type: multipart/alternative\r\n\r\nno boundary here\r\n\
         --bogus\r\nContent-Type: text/plain\r\n\r\nhalf\r\n--b garbage\r\n\
         Content-Type: text/plain\r\n\r\nnever closed\r\n",
    )
}

fn deep_nesting(levels: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..levels {
        body.push_str(&format!(
            "--n{i}\r\nContent-Type: multipart/mixed; boundary=\"n{}\"\r\n\r\n",
            i + 1
        ));
    }
    body.push_str(&format!("--n{levels}\r\n\r\ncore\r\n"));
    for i in (0..=levels).rev() {
        body.push_str(&format!("--n{i}--\r\n"));
    }
    text(
        "Subject: nesting\r\nContent-Type: multipart/mixed; boundary=\"n0\"\r\n",
        &body,
    )
}

fn many_parts(parts: usize) -> Vec<u8> {
    let mut body = String::with_capacity(parts * 12);
    for _ in 0..parts {
        body.push_str("--p\r\n\r\nx\r\n");
    }
    body.push_str("--p--\r\n");
    text(
        "Subject: parts\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n",
        &body,
    )
}

fn invalid_utf8_headers() -> Vec<u8> {
    let mut raw = FROM.as_bytes().to_vec();
    raw.extend_from_slice(
        b"Subject: bad \xff\xfe\xc3\x28 bytes\r\nX-Junk: \xed\xa0\x80\r\n\r\nbody\r\n",
    );
    raw
}

fn encoded_word_bomb() -> Vec<u8> {
    // 15,000 encoded words (about 200 KiB) in one Subject, each decoding
    // to a few bytes, in several charsets, some malformed.
    let words: Vec<&str> = [
        "=?utf-8?b?w6k=?=",
        "=?iso-8859-1?q?=E9?=",
        "=?utf-8?q?=ZZ?=",
        "=?x-unknown?b?////?=",
        "=?utf-8?b?",
    ]
    .into_iter()
    .cycle()
    .take(15_000)
    .collect();
    text(&format!("Subject: {}\r\n", words.join(" ")), "body\r\n")
}

fn nul_bytes() -> Vec<u8> {
    let mut raw = FROM.as_bytes().to_vec();
    raw.extend_from_slice(b"Subject: nul\0here\r\n\r\nbody with \0 a NUL\r\n\0\0\0\r\n");
    raw
}

fn bare_lf() -> Vec<u8> {
    String::from_utf8(text("Subject: bare LF\r\n", "line one\r\nline two\r\n"))
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

fn bare_cr() -> Vec<u8> {
    let mut raw = text("Subject: bare CR\r\n", "");
    raw.extend_from_slice(b"line one\rline two\rline three\r\n");
    raw
}

fn big_attachment() -> Vec<u8> {
    // 25 MiB of attachment is about 34 MiB once in base64: over the limit.
    let line = format!("{}\r\n", "A".repeat(76));
    let lines = 25 * 1024 * 1024 / 57;
    let mut body = String::with_capacity(lines * line.len() + 200);
    body.push_str("--a\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--a\r\n");
    body.push_str(
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    for _ in 0..lines {
        body.push_str(&line);
    }
    body.push_str("--a--\r\n");
    text(
        "Subject: big\r\nContent-Type: multipart/mixed; boundary=\"a\"\r\n",
        &body,
    )
}

/// A PGP/MIME message: `plaintext` encrypted to `recipients`, compressed
/// first when `compress` is set.
fn pgp_mime(
    recipients: Vec<Recipient<'_>>,
    plaintext: &mut dyn FnMut(&mut dyn Write),
    compress: bool,
) -> Vec<u8> {
    let mut armored = Vec::new();
    let message = Message::new(&mut armored);
    let message = Armorer::new(message).build().unwrap();
    let message = Encryptor::for_recipients(message, recipients)
        .build()
        .unwrap();
    let message = if compress {
        Compressor::new(message)
            .algo(CompressionAlgorithm::Zip)
            .level(sequoia_openpgp::types::CompressionLevel::best())
            .build()
            .unwrap()
    } else {
        message
    };
    let mut literal = LiteralWriter::new(message).build().unwrap();
    plaintext(&mut literal);
    literal.finalize().unwrap();
    format!(
        "{FROM}Subject: ...\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--e--\r\n",
        String::from_utf8(armored).unwrap()
    )
    .into_bytes()
}

fn recipients_of(cert: &Cert) -> Vec<Recipient<'_>> {
    cert.keys()
        .with_policy(&embargod::pgp::POLICY, None)
        .supported()
        .for_transport_encryption()
        .map(|ka| ka.into())
        .collect()
}

fn compression_bomb(list: &Cert) -> Vec<u8> {
    // 200 MiB of zeros, a few hundred KiB compressed: more than the daemon
    // lets anything decompress to (four times the message size limit).
    pgp_mime(
        recipients_of(list),
        &mut |w| {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..200 {
                w.write_all(&zeros).unwrap();
            }
        },
        true,
    )
}

fn thousand_recipients<'a>(list: &'a Cert, stranger: &'a Cert) -> Vec<u8> {
    let mut recipients: Vec<Recipient<'_>> = Vec::new();
    for _ in 0..999 {
        recipients.extend(recipients_of(stranger));
    }
    recipients.extend(recipients_of(list));
    pgp_mime(
        recipients,
        &mut |w| {
            w.write_all(b"Content-Type: text/plain\r\n\r\nto many\r\n")
                .unwrap()
        },
        false,
    )
}

/// Sends `message` and returns the reply, or the spool id when accepted.
async fn send(addr: &ListenAddr, rcpt: &str, message: &[u8]) -> client::Reply {
    let replies = client::send_one(addr, "mallory@hostile.example", &[rcpt], message)
        .await
        .expect("the daemon answers");
    replies.into_iter().next().unwrap()
}

/// Waits for a log line with all of `needles`.
async fn log_line(log: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}; the log ends:\n{}",
            text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nasty_messages_each_get_a_clear_outcome_and_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let alice = sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    // PST members whose keys can no longer sign: one expired, one revoked
    // after signing the post below.
    let (expired, _) = CertBuilder::general_purpose(Some("carol <carol@example.org>"))
        .set_creation_time(SystemTime::now() - Duration::from_secs(10 * 86400))
        .set_validity_period(Duration::from_secs(9 * 86400))
        .generate()
        .unwrap();
    let (revoked, revocation) = CertBuilder::general_purpose(Some("dave <dave@example.org>"))
        .generate()
        .unwrap();
    let by_expired = common::sequoia_signed_post(
        &expired,
        "carol@example.org",
        DISTRIBUTORS,
        "signed by an expired key",
        "X-Case: KAP-2026-0007\r\nX-Embargo-Until: 2099-01-01T00:00:00Z\r\n\r\nfix\r\n",
        SystemTime::now() - Duration::from_secs(5 * 86400),
    );
    let by_revoked = common::sequoia_signed_post(
        &revoked,
        "dave@example.org",
        DISTRIBUTORS,
        "signed by a revoked key",
        "X-Case: KAP-2026-0008\r\nX-Embargo-Until: 2099-01-01T00:00:00Z\r\n\r\nfix\r\n",
        SystemTime::now(),
    );
    let revoked = revoked.insert_packets(revocation).unwrap().0;
    sandbox
        .add_member("carol", "carol@example.org", ListName::Security, &expired)
        .unwrap();
    sandbox
        .add_member("dave", "dave@example.org", ListName::Security, &revoked)
        .unwrap();
    sandbox
        .generate_member("distro", ListName::Distributors)
        .unwrap();
    let (stranger, _) = CertBuilder::general_purpose(Some("stranger"))
        .generate()
        .unwrap();
    let list = sandbox.list_key.cert().clone();

    let (config, addr) = common::config_on_fixed_port(&sandbox);
    let log = config.with_file_name("daemon.log");
    let mut daemon = common::spawn_binary(&config, "info");
    common::send_until_accepted(
        &addr,
        common::REPORTER,
        SECURITY,
        &common::report("warm-up", "warm-up"),
        Duration::from_secs(60),
    )
    .await;

    let corpus: Vec<(&str, &str, Vec<u8>, Outcome)> = vec![
        (
            "malformed MIME boundaries",
            SECURITY,
            malformed_boundaries(),
            Outcome::Delivered,
        ),
        (
            "1,000-deep nesting",
            SECURITY,
            deep_nesting(1000),
            Outcome::Refused(554, "nested more than"),
        ),
        (
            "100,000 parts",
            SECURITY,
            many_parts(100_000),
            Outcome::Refused(554, "MIME parts"),
        ),
        (
            "invalid UTF-8 in headers",
            SECURITY,
            invalid_utf8_headers(),
            Outcome::Delivered,
        ),
        (
            "encoded-word bomb",
            SECURITY,
            encoded_word_bomb(),
            Outcome::Delivered,
        ),
        (
            "OpenPGP compression bomb",
            SECURITY,
            compression_bomb(&list),
            Outcome::Quarantined("compression bomb"),
        ),
        (
            "signed by an expired key",
            DISTRIBUTORS,
            by_expired,
            Outcome::Moderated("expired"),
        ),
        (
            "signed by a revoked key",
            DISTRIBUTORS,
            by_revoked,
            // Sequoia refuses the signature of a revoked certificate
            // outright; the log names the kind, the PST notice the reason.
            Outcome::Moderated("no member signature"),
        ),
        (
            "encrypted to 1,000 recipients",
            SECURITY,
            thousand_recipients(&list, &stranger),
            Outcome::Delivered,
        ),
        (
            "25 MiB attachment",
            SECURITY,
            big_attachment(),
            Outcome::Refused(552, "reason=\"too-large\""),
        ),
        ("NUL bytes", SECURITY, nul_bytes(), Outcome::Delivered),
        ("bare LF line ends", SECURITY, bare_lf(), Outcome::Delivered),
        ("bare CR line ends", SECURITY, bare_cr(), Outcome::Delivered),
    ];
    let corpus_delivered = corpus
        .iter()
        .filter(|(.., outcome)| matches!(outcome, Outcome::Delivered))
        .count();
    for (name, rcpt, message, outcome) in corpus {
        let started = Instant::now();
        let reply = send(&addr, rcpt, &message).await;
        let line = match outcome {
            Outcome::Refused(code, log_says) => {
                assert_eq!(reply.code, code, "{name}: {reply:?}");
                log_line(&log, &["refused", log_says]).await
            }
            accepted => {
                assert_eq!(reply.code, 250, "{name}: {reply:?}");
                let id = reply.text.rsplit(' ').next().unwrap().to_string();
                let msg = format!("msg={id} ");
                match accepted {
                    Outcome::Delivered => {
                        let sent = format!("msg={id} member=alice ");
                        log_line(&log, &["sent", &sent]).await;
                        log_line(&log, &[&msg, "fanned out"]).await
                    }
                    Outcome::Quarantined(why) => log_line(&log, &[&msg, "quarantined", why]).await,
                    Outcome::Moderated(why) => {
                        log_line(&log, &[&msg, "held for moderation", why]).await
                    }
                    Outcome::Refused(..) => unreachable!(),
                }
            }
        };
        eprintln!(
            "{name}: {} in {:.2?}\n    {line}",
            reply.code,
            started.elapsed()
        );
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "the daemon died on {name}"
        );
    }
    drop(daemon);

    // What was delivered reached the PST member with a working key as a
    // copy she can open: the warm-up and each delivered case.
    let delivered = 1 + corpus_delivered;
    let copies: Vec<_> = read_outbox(&sandbox.outbox_dir())
        .unwrap()
        .into_iter()
        .filter(|m| m.to == ["alice@example.org".to_string()])
        .collect();
    for copy in &copies {
        open_copy(&copy.bytes, &alice, &sandbox.list_key).expect("alice opens her copy");
    }
    assert!(
        copies.len() >= delivered,
        "{} copies to alice, {delivered} messages delivered",
        copies.len()
    );
}
