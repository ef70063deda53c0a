//! Leak tracing: every recipient's copy, put through what a leak does to
//! text, traced back to that recipient and nobody else; unmarked text to
//! nobody; an excerpt from two copies to both, as candidates. And the
//! ledger: intact, then one entry changed on disk and named by `verify`.

mod common;

use common::{start, TestDaemon};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::mark::html::render;
use embargod::mark::trace::{trace, Verdict};
use embargod::sandbox::{open_copy, Sandbox, SECURITY};
use sequoia_openpgp::Cert;

const RECIPIENTS: usize = 20;

/// A report of some length, in plain prose.
const REPORT: &str = "We found a heap overflow in the configuration parser of the server. When a \
configuration file contains a section name longer than the internal buffer, the parser copies \
the whole name without checking its length, and overwrites the memory that follows the buffer \
on the heap. An attacker who can place or change a configuration file, for example through the \
upload feature of the administration interface, can use this to take over the server process. \
We were able to crash the service reliably, and with some more effort we could redirect the \
control flow to code of our choosing on the test machine.\n\n\
The problem appears in every release since the parser was rewritten two years ago. Older releases \
used a different reader and are not affected. We have not seen this being exploited in the wild, \
but the upload feature is enabled by default and many public installations expose it. Please \
treat this with priority. We suggest checking the length of every name before it is copied, and \
rejecting configuration files with names that are longer than the limit, with a clear message for \
the operator. A workaround until then is to disable the upload feature in the settings, or to \
restrict it to trusted networks. We are happy to test a fix before it is released, and we would \
like to be credited as the finders of this problem when the advisory is published. Thank you for \
your work on this project, and for handling this report privately until a fix is available.\n";

struct Traced {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    daemon: TestDaemon,
    /// (member id, the prose of their decrypted copy, the whole entity)
    copies: Vec<(String, String, Vec<u8>)>,
}

async fn traced() -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    // The security list's copies are byte-identical by default; these
    // tests are about the invisible marks.
    sandbox.security_extra = "marks = \"invisible\"\n".into();
    let secrets: Vec<Cert> = (0..RECIPIENTS)
        .map(|i| {
            sandbox
                .generate_member(&format!("m{i:02}"), ListName::Security)
                .unwrap()
        })
        .collect();
    let daemon = start(&sandbox, Clock::system()).await;
    let message = format!(
        "From: Rita <rita@reporter.example>\r\nTo: <{SECURITY}>\r\nSubject: Heap overflow\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
        REPORT.replace('\n', "\r\n")
    );
    assert_eq!(
        daemon
            .send("rita@reporter.example", &[SECURITY], message.as_bytes())
            .await[0]
            .code,
        250
    );
    let mail = daemon.wait_outbox(RECIPIENTS).await;
    daemon.settle().await;
    let mut copies = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let email = format!("m{i:02}@example.org");
        let copy = mail.iter().find(|m| m.to == [email.clone()]).unwrap();
        let opened = open_copy(&copy.bytes, secret, &sandbox.list_key).unwrap();
        let prose = embargod::mime::edit::first_text(&inner_content(&opened.content))
            .unwrap()
            .text;
        copies.push((format!("m{i:02}"), prose, opened.content));
    }
    Traced {
        _dir: dir,
        sandbox,
        daemon,
        copies,
    }
}

/// The original content part of a decrypted copy (after the info part).
fn inner_content(entity: &[u8]) -> Vec<u8> {
    let parsed = embargod::mime::parse(entity).unwrap();
    let children = parsed.root_part().sub_parts().unwrap().to_vec();
    let part = &parsed.parts[children[1] as usize];
    entity[part.offset_header as usize..part.offset_end as usize].to_vec()
}

fn quote(text: &str) -> String {
    text.lines().map(|l| format!("> {l}\n")).collect()
}

fn rewrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if line.len() + word.len() + 1 > width && !line.is_empty() {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

fn whitespace(text: &str) -> String {
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i % 3 == 0 {
                format!("{w}  ")
            } else if i % 7 == 0 {
                format!("{w}\t")
            } else {
                format!("{w} ")
            }
        })
        .collect()
}

fn to_html_and_back(text: &str) -> String {
    let html: String = text
        .split("\n\n")
        .map(|p| {
            format!(
                "<p>{}</p>",
                p.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('\n', "<br>\n")
            )
        })
        .collect();
    render(&html).expect("HTML")
}

/// About `len` characters from the middle, cut at character boundaries.
fn excerpt(text: &str, len: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len() / 3;
    chars[start..(start + len).min(chars.len())]
        .iter()
        .collect()
}

fn attributed_to(verdict: &Verdict) -> Option<&str> {
    match verdict {
        Verdict::Attributed { copy, .. } => Some(&copy.member),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_transformation_of_every_copy_is_traced_to_its_recipient() {
    let t = traced().await;
    let store = &t.daemon.shared.store;
    let secret = store.mark_secret();
    type Transform = fn(&str) -> String;
    let transforms: Vec<(&str, Transform)> = vec![
        ("prose only (headers and visible line removed)", |t| {
            t.to_string()
        }),
        ("quoted", |t| quote(t)),
        ("re-wrapped to 50", |t| rewrap(t, 50)),
        ("re-wrapped to 100", |t| rewrap(t, 100)),
        ("whitespace changed", |t| whitespace(t)),
        ("HTML and back", |t| to_html_and_back(t)),
        ("400-character excerpt", |t| excerpt(t, 400)),
        ("300-character excerpt", |t| excerpt(t, 300)),
        ("re-wrapped, quoted, excerpt", |t| {
            excerpt(&quote(&rewrap(t, 60)), 450)
        }),
        ("HTML and back, excerpt", |t| {
            excerpt(&to_html_and_back(t), 400)
        }),
        ("whitespace, re-wrapped, quoted, HTML, excerpt", |t| {
            excerpt(&to_html_and_back(&quote(&rewrap(&whitespace(t), 72))), 500)
        }),
    ];
    let mut checked = 0;
    for (member, prose, entity) in &t.copies {
        // The whole decrypted copy: header, visible line and mark agree.
        let verdict = trace(store, secret, entity).unwrap();
        assert_eq!(
            attributed_to(&verdict),
            Some(member.as_str()),
            "whole copy of {member}: {verdict}"
        );
        if let Verdict::Attributed { evidence, .. } = &verdict {
            let evidence = evidence.join("\n");
            assert!(
                evidence.contains("header")
                    && evidence.contains("visible line")
                    && evidence.contains("invisible mark"),
                "{evidence}"
            );
        }
        for (name, transform) in &transforms {
            let leak = transform(prose);
            assert!(
                !leak.contains("This copy was prepared"),
                "the visible line is gone"
            );
            let verdict = trace(store, secret, leak.as_bytes()).unwrap();
            assert_eq!(
                attributed_to(&verdict),
                Some(member.as_str()),
                "{member}, {name}: {verdict}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, RECIPIENTS * transforms.len());

    // Unmarked text: the report as the reporter wrote it, and other prose.
    for (name, text) in [
        ("the original report", excerpt(REPORT, 400)),
        ("the original, re-wrapped", rewrap(REPORT, 70)),
        ("unrelated text", "Minutes of the release meeting: the next release is planned for March, \
            with the new plugin interface and the documentation rewrite. Volunteers for testing are welcome, \
            and the call for talks of the conference closes at the end of the month.".to_string()),
    ] {
        let verdict = trace(store, secret, text.as_bytes()).unwrap();
        assert!(attributed_to(&verdict).is_none(), "{name}: {verdict}");
        assert!(matches!(verdict, Verdict::NoMatch { .. }), "{name}: {verdict}");
    }
    t.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_excerpt_from_two_copies_names_both_as_candidates() {
    let t = traced().await;
    let store = &t.daemon.shared.store;
    let (a, b) = (&t.copies[3], &t.copies[11]);
    let a_words: Vec<&str> = a.1.split_whitespace().collect();
    let b_words: Vec<&str> = b.1.split_whitespace().collect();
    // The first half from one copy, the second from the other.
    let half = a_words.len() / 2;
    let mixed = format!(
        "{} {}",
        a_words[half - 60..half].join(" "),
        b_words[half..half + 60].join(" ")
    );
    let verdict = trace(store, store.mark_secret(), mixed.as_bytes()).unwrap();
    match &verdict {
        Verdict::Candidates { copies, .. } => {
            let mut names: Vec<&str> = copies.iter().map(|c| c.member.as_str()).collect();
            names.sort();
            assert_eq!(names, [a.0.as_str(), b.0.as_str()], "{verdict}");
        }
        other => panic!("expected two candidates, got {other}"),
    }
    t.daemon.stop().await;
}

/// A leaker strips their own copy's look-alikes and adds the visible line
/// of a colleague's copy (quoted in a reply, say): the line alone names a
/// candidate, never a culprit.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_visible_line_does_not_name_its_member() {
    let t = traced().await;
    let store = &t.daemon.shared.store;
    let (_, leaker, _) = &t.copies[3];
    let (victim, _, victim_entity) = &t.copies[7];
    let victim_copy = String::from_utf8_lossy(victim_entity)
        .lines()
        .find_map(|l| l.strip_prefix("X-Embargod-Copy: ").map(str::to_string))
        .unwrap();
    let stripped = embargod::mark::canonical(&excerpt(leaker, 400));
    let leak = format!(
        "{stripped}\n\n> This copy was prepared for {victim} <{victim}@example.org>, copy {}.\n",
        victim_copy.trim()
    );
    let verdict = trace(store, store.mark_secret(), leak.as_bytes()).unwrap();
    assert_eq!(attributed_to(&verdict), None, "{verdict}");
    assert!(format!("{verdict}").contains(victim.as_str()), "{verdict}");
    t.daemon.stop().await;
}

/// A leaker scrambles which words carry look-alikes and repeats the
/// excerpt to make up votes: a scrambled pattern names nobody, and
/// repeats add no votes.
#[tokio::test(flavor = "multi_thread")]
async fn scrambled_and_repeated_marks_name_nobody() {
    let t = traced().await;
    let store = &t.daemon.shared.store;
    let (_, prose, _) = &t.copies[5];
    // About ten words: few enough that some copy of twenty matches a random
    // pattern by chance, if each repeat counted.
    let piece = embargod::mark::canonical(&excerpt(prose, 64));
    for seed in 0..20u8 {
        let scrambled = embargod::mark::mark_text(
            &piece,
            &embargod::mark::MarkSecret::derive(&[seed; 32]).copy_key(1),
        );
        let leak = [scrambled.as_str(); 4].join("\n\n");
        let verdict = trace(store, store.mark_secret(), leak.as_bytes()).unwrap();
        assert_eq!(attributed_to(&verdict), None, "{verdict}");
    }
    t.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_traces_and_the_ledger_shows_tampering() {
    let t = traced().await;
    t.daemon.settle().await;
    let config = t.sandbox.dir.join("embargod.toml");
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_embargod"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };

    // Through the running daemon's control socket.
    let (member, prose, _) = &t.copies[7];
    let leak = excerpt(&rewrap(prose, 64), 400);
    let (code, text) = run(&["trace", "-"], leak.as_bytes());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("attributed to") && text.contains(member.as_str()),
        "{text}"
    );
    let (code, text) = run(
        &["trace", "-"],
        b"Nothing to see here, just some unmarked words of prose to trace.",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no match"), "{text}");
    let (code, text) = run(&["ledger", "verify"], b"");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ledger intact"), "{text}");
    t.daemon.stop().await;

    // With the daemon stopped, change one stored entry behind its back.
    // sled lets go of its lock a moment after the daemon stopped.
    let db = (0..100)
        .find_map(|_| {
            sled::open(t.sandbox.dir.join("state"))
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                .ok()
        })
        .expect("the store opens");
    let records = db.open_tree("records").unwrap();
    let key = 5u64.to_be_bytes();
    let entry = String::from_utf8(records.get(key).unwrap().unwrap().to_vec()).unwrap();
    let forged = entry.replacen("\"member\":\"m", "\"member\":\"x", 1);
    assert_ne!(entry, forged);
    records.insert(key, forged.as_bytes()).unwrap();
    db.flush().unwrap();
    drop(records);
    drop(db);
    let (code, text) = run(&["ledger", "verify"], b"");
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("entry 5 was changed"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_strikes_suspend_a_member_until_reinstated() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.generate_member("bob", ListName::Security).unwrap();
    let daemon = start(&sandbox, Clock::system()).await;
    let socket = &daemon.config.control.socket;
    use embargod::control::{client::request, Command};
    let record = |what: &str| Command::LeakRecord {
        case: "KAP-2026-0001".into(),
        member: "bob".into(),
        what: what.into(),
    };
    let first = request(socket, record("told a colleague outside the need-to-know"))
        .await
        .unwrap();
    assert!(first.is_done() && first.text().unwrap().contains("strike 1 of 2"));
    let second = request(socket, record("posted the patch on a public tracker"))
        .await
        .unwrap();
    assert!(
        second.is_done() && second.text().unwrap().contains("suspended"),
        "suspended at the second strike"
    );
    // Notices to the PST about both (bob is still sent the first one).
    daemon.settle().await;

    let before = common::outbox(&daemon.outbox).len();
    daemon
        .send(
            "rita@reporter.example",
            &[SECURITY],
            &common::report("after", "s1"),
        )
        .await;
    daemon.settle().await;
    let mail = common::outbox(&daemon.outbox);
    assert_eq!(mail.len(), before + 1, "only alice gets the report");
    let records: Vec<_> = embargod::ledger::records(&daemon.shared.store)
        .unwrap()
        .into_iter()
        .collect();
    assert!(records
        .iter()
        .any(|r| r.member == "bob" && r.outcome == embargod::ledger::Outcome::Suspended));
    let listing = request(socket, Command::Members)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(listing.contains("bob: 2 strike(s), SUSPENDED"), "{listing}");
    // `embargod check` shows it too.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_embargod"))
        .arg("--config")
        .arg(dir.path().join("embargod.toml"))
        .arg("check")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning member bob") && l.contains("SUSPENDED")),
        "{out}"
    );

    let back = request(
        socket,
        Command::MemberReinstate {
            member: "bob".into(),
        },
    )
    .await
    .unwrap();
    assert!(back.is_done(), "{back:?}");
    daemon.settle().await;
    let before = common::outbox(&daemon.outbox).len();
    daemon
        .send(
            "rita@reporter.example",
            &[SECURITY],
            &common::report("again", "s2"),
        )
        .await;
    daemon.wait_outbox(before + 2).await;
    daemon.stop().await;
}

/// Text that many messages share (a template's paragraph) matches none of
/// them, and costs no more than that; what is each message's own still
/// names the copy.
#[test]
fn boilerplate_shared_by_many_messages_names_nobody() {
    const BOILERPLATE: &str = "This information must not be made public, shared, nor even \
hinted at beyond the need to know within your team until then, except with the explicit \
approval of the list; whoever you share it with must agree to the same terms.\n";
    const WORDS: [&str; 16] = [
        "parser",
        "buffer",
        "upload",
        "archive",
        "server",
        "session",
        "token",
        "cookie",
        "template",
        "folder",
        "account",
        "backup",
        "preview",
        "thumbnail",
        "import",
        "export",
    ];
    let own = |message: u64| -> String {
        let mut state = message.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = String::from("The problem is that the");
        for _ in 0..60 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(' ');
            out.push_str(WORDS[(state % 16) as usize]);
        }
        out.push_str(" is not checked.\n");
        out
    };
    let dir = tempfile::tempdir().unwrap();
    let store = embargod::store::Store::open(
        &dir.path().join("state"),
        embargod::store::StoreKey::from_bytes(&[5; embargod::store::KEY_LEN]),
    )
    .unwrap();
    let secret = store.mark_secret().clone();
    for message in 0..100 {
        let text = format!("{BOILERPLATE}\n{}", own(message));
        let shingles = embargod::mark::text_shingles(&secret, &text);
        embargod::sandbox::index_copies(&store, message, shingles, 3).unwrap();
    }
    let copy_id = 42 * 3 + 2;
    let marked = embargod::mark::mark_text(
        &format!("{BOILERPLATE}\n{}", own(42)),
        &secret.copy_key(copy_id),
    );
    match trace(&store, &secret, marked.as_bytes()).unwrap() {
        Verdict::Attributed { copy, .. } => assert_eq!(copy.copy_id, copy_id),
        other => panic!("{other}"),
    }
    let shared = embargod::mark::mark_text(BOILERPLATE, &secret.copy_key(copy_id));
    let verdict = trace(&store, &secret, shared.as_bytes()).unwrap();
    assert!(matches!(verdict, Verdict::NoMatch { .. }), "{verdict}");
}
