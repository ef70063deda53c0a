//! Release day, end to end on an injected clock: a report becomes a case,
//! the PST gives its advisory data by signed keyword lines, reviews the
//! draft, opens the embargo within the notice window (refused first, then
//! with the Fix Lead's override, then moved to a release slot), and the
//! release leaves behind an actionable announcement with valid CVE JSON 5
//! and OSV records (attached and written to `publish.dir`), a post to
//! oss-security and, once approved, a sanitized archive of the thread.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use common::{open_copy, signed_text, start, TestDaemon, World};
use embargod::config::ListName;
use embargod::control::{client::request, Command};
use embargod::sandbox::{OutboxMail, ANNOUNCE, DISTRIBUTORS, SECURITY};
use mail_parser::MimeHeaders;

const OSS: &str = "oss-security@lists.openwall.example";
const CNA: &str = "8254265b-2729-46b6-b9e3-3dfca2d5bfca";
const PATCH: &str = "--- a/src/header.c\r\n+++ b/src/header.c\r\n@@ -1 +1 @@\r\n-len = n;\r\n+len = min(n, MAX);\r\n";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The mail written since the last call, by the outbox's file names.
struct Outbox {
    seen: HashSet<PathBuf>,
}

impl Outbox {
    async fn new_mail(&mut self, daemon: &TestDaemon) -> Vec<OutboxMail> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        daemon.settle().await;
        // Every message, the post to oss-security's outside address too.
        let mail: Vec<OutboxMail> = embargod::sandbox::read_outbox(&daemon.outbox)
            .unwrap()
            .into_iter()
            .filter(|m| !self.seen.contains(&m.eml))
            .collect();
        self.seen.extend(mail.iter().map(|m| m.eml.clone()));
        mail
    }
}

/// The decrypted texts of the mail to `member@example.org`.
fn texts_to(w: &World, mail: &[OutboxMail], member: &str) -> Vec<String> {
    common::addressed_to(mail, &format!("{member}@example.org"))
        .into_iter()
        .map(|m| open_copy(&w.gpg, m))
        .collect()
}

/// Every attachment of a message as (file name, decoded bytes).
fn attachments(message: &[u8]) -> Vec<(String, Vec<u8>)> {
    let parsed = embargod::mime::parse(message).expect("a message");
    parsed
        .parts
        .iter()
        .filter_map(|part| {
            let name = part.attachment_name()?.to_string();
            Some((name, part.contents().to_vec()))
        })
        .collect()
}

/// The release slot the config below asks for: the first Monday to
/// Thursday at 16:00 UTC not before `asked`.
fn expected_slot(asked: DateTime<Utc>) -> DateTime<Utc> {
    let mut day = asked.date_naive();
    loop {
        let slot = day.and_hms_opt(16, 0, 0).unwrap().and_utc();
        if day.weekday().num_days_from_monday() < 4 && slot >= asked {
            return slot;
        }
        day = day.succ_opt().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_from_report_to_release_leaves_its_paperwork_behind() {
    let mut w = World::new(
        &[
            ("alice", Some(ListName::Security)),
            ("bob", Some(ListName::Security)),
            ("distro-a", Some(ListName::Distributors)),
        ],
        None,
    );
    // The policy's defaults: 7 days' notice; releases Monday to Thursday
    // at 16:00 UTC.
    w.sandbox.embargo = "release_days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\"]\n\
                         release_time = \"16:00\"\n"
        .into();
    w.sandbox.extra = format!(
        "[publish]\ndir = \"public\"\noss_security = \"{OSS}\"\ncna_org_id = \"{CNA}\"\n\
         cna_short_name = \"kappital\"\n"
    );
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let mut outbox = Outbox {
        seen: HashSet::new(),
    };
    let alice_fpr = w.sandbox.members[0].cert.fingerprint().to_hex();
    let key_id = &alice_fpr[alice_fpr.len() - 16..];
    let sign = |signer: &str, to: &str, keywords: &str, text: &str| {
        signed_text(
            &w.gpg,
            signer,
            to,
            "about the parser",
            keywords,
            text,
            Some(w.clock.now()),
        )
    };

    // 1. The report.
    let report = format!(
        "From: Rita Reporter <rita@reporter.example>\r\nTo: <{SECURITY}>\r\n\
         Subject: heap overflow in the header parser\r\nMessage-ID: <r1@reporter.example>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         A header over 64 KiB overflows. Reply to rita@reporter.example; I also told\r\n\
         alice@example.org, whose key {key_id} I used.\r\n"
    );
    daemon
        .send("rita@reporter.example", &[SECURITY], report.as_bytes())
        .await;
    outbox.new_mail(&daemon).await;
    let case = "KAP-2026-0001";

    // 2. The Fix Lead (alice, by rotation) gives the advisory data.
    let data = format!(
        "X-Case: {case}\r\nX-CVSS: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\r\n\
         X-Summary: Heap overflow in the header parser\r\nX-Affected: >=1.0.0, <1.4.2\r\n\
         X-Fixed: 1.4.2\r\nX-CWE: CWE-122\r\nX-Credit: finder: Rita Reporter\r\n\
         X-Credit: remediation developer: Bob Builder\r\n\
         X-Reference: fix https://git.kappital.example/commit/1a2b3c\r\nX-CVE: CVE-2026-12345\r\n\
         X-Mitigation: Set max_header_size = 8192 until you can upgrade.\r\n\
         X-Affected: kappital-cli 1.0\r\n"
    );
    daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &sign(
                "alice@example.org",
                SECURITY,
                &data,
                "Confirmed; the fix is ready.",
            ),
        )
        .await;
    let mail = outbox.new_mail(&daemon).await;
    let reply = texts_to(&w, &mail, "alice")
        .into_iter()
        .find(|t| t.contains("your commands"))
        .expect("a command reply");
    assert!(reply.contains("CVE ID: CVE-2026-12345"), "{reply}");
    assert!(
        reply.contains("REFUSED: X-Affected: \"kappital-cli 1.0\""),
        "a bad range is refused with why: {reply}"
    );
    assert!(reply.contains("affected: >=1.0.0, <1.4.2"), "{reply}");

    // 3. The notice window: 3 days is too short, and only the Fix Lead
    //    may allow it, with a reason.
    let soon = w.clock.now() + chrono::Duration::days(3);
    let post = |signer: &str, until: DateTime<Utc>, extra: &str, text: &str| {
        let keywords = format!(
            "X-Case: {case}\r\nX-Embargo-Until: {}\r\n{extra}",
            rfc3339(until)
        );
        let part = format!(
            "Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n\
             --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{keywords}\r\n{text}\r\n\
             --inner\r\nContent-Type: text/x-diff; name=\"fix.patch\"\r\n\
             Content-Disposition: attachment; filename=\"fix.patch\"\r\n\r\n{PATCH}\r\n--inner--"
        );
        let signature = common::detach_sign(&w.gpg, signer, &part, Some(w.clock.now()));
        common::multipart_signed(signer, DISTRIBUTORS, "advisory", &part, &signature)
    };
    daemon
        .send(
            "alice@example.org",
            &[DISTRIBUTORS],
            &post("alice@example.org", soon, "", "DRAFT-ONE of the advisory."),
        )
        .await;
    outbox.new_mail(&daemon).await;
    let held = daemon.held();
    assert!(
        held.last()
            .unwrap()
            .contains("less than the policy's 7days"),
        "{held:?}"
    );
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "bob@example.org",
            &[DISTRIBUTORS],
            &post(
                "bob@example.org",
                soon,
                "X-Short-Notice: in a hurry\r\n",
                "DRAFT-ONE of the advisory.",
            ),
        )
        .await;
    outbox.new_mail(&daemon).await;
    assert!(
        daemon.held().last().unwrap().contains("only the Fix Lead"),
        "{:?}",
        daemon.held()
    );
    assert!(embargod::embargo::get(&daemon.shared.store, case)
        .unwrap()
        .is_none());
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "alice@example.org",
            &[DISTRIBUTORS],
            &post(
                "alice@example.org",
                soon,
                "X-Short-Notice: exploited in the wild\r\n",
                "DRAFT-ONE of the advisory.",
            ),
        )
        .await;
    let mail = outbox.new_mail(&daemon).await;
    let copy = &texts_to(&w, &mail, "distro-a")[0];
    assert!(
        copy.contains("SHORT NOTICE") && copy.contains("exploited in the wild"),
        "{copy}"
    );
    let embargo = embargod::embargo::get(&daemon.shared.store, case)
        .unwrap()
        .unwrap();
    assert_eq!(
        embargo.short_notice.as_ref().unwrap().reason,
        "exploited in the wild"
    );
    let listing = request(&daemon.config.control.socket, Command::Embargoes)
        .await
        .unwrap()
        .text()
        .unwrap();
    assert!(
        listing.contains("SHORT NOTICE allowed by alice: exploited in the wild"),
        "{listing}"
    );

    // 4. The advisory is moved out, to a time that is snapped to the next
    //    release slot; the notice says when in UTC and RFC 3339.
    w.clock.advance(Duration::from_secs(1));
    let asked = (w.clock.now() + chrono::Duration::days(8))
        .with_hour(9)
        .unwrap()
        .with_minute(13)
        .unwrap()
        .with_second(0)
        .unwrap();
    let slot = expected_slot(asked);
    daemon
        .send(
            "alice@example.org",
            &[DISTRIBUTORS],
            &post(
                "alice@example.org",
                asked,
                "",
                "A crafted header of more than 64 KiB overflows a heap buffer in Kappital.\r\n\r\nFINAL ADVISORY text.",
            ),
        )
        .await;
    let mail = outbox.new_mail(&daemon).await;
    let copy = &texts_to(&w, &mail, "distro-a")[0];
    assert!(
        copy.contains(&format!(
            "EMBARGOED until {}",
            embargod::clock::format_disclosure(slot)
        )),
        "{copy}"
    );
    assert!(
        copy.contains(&rfc3339(slot)) && copy.contains(" UTC"),
        "{copy}"
    );
    assert!(copy.contains("next release slot"), "{copy}");
    let embargo = embargod::embargo::get(&daemon.shared.store, case)
        .unwrap()
        .unwrap();
    assert_eq!(embargo.until(), slot);
    assert!(embargo.short_notice.is_none(), "7 days' notice now");

    // 5. The distributor answers: a status (for the PST only) and a reply.
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "distro-a@example.org",
            &[DISTRIBUTORS],
            &sign(
                "distro-a@example.org",
                DISTRIBUTORS,
                &format!("X-Case: {case}\r\nX-Status: received STATUS-NOTE-SECRET\r\n"),
                "",
            ),
        )
        .await;
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "distro-a@example.org",
            &[DISTRIBUTORS],
            &sign(
                "distro-a@example.org",
                DISTRIBUTORS,
                &format!("X-Case: {case}\r\n"),
                "Our packages build with the patch; contact distro-a@example.org.",
            ),
        )
        .await;
    outbox.new_mail(&daemon).await;

    // An outsider names the case in a Subject: the PST reads it, the
    // public archive will not carry it.
    let outsider = format!(
        "From: <mallory@evil.example>\r\nTo: <{SECURITY}>\r\nSubject: Re: [{case}] more\r\n\
         Content-Type: text/plain\r\n\r\nOUTSIDER-WORDS for the public record.\r\n"
    );
    daemon
        .send("mallory@evil.example", &[SECURITY], outsider.as_bytes())
        .await;
    outbox.new_mail(&daemon).await;

    // 6. The draft: to the PST only, encrypted, with both records.
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "bob@example.org",
            &[SECURITY],
            &sign(
                "bob@example.org",
                SECURITY,
                &format!("X-Case: {case}\r\nX-Draft: yes\r\n"),
                "",
            ),
        )
        .await;
    let mail = outbox.new_mail(&daemon).await;
    let draft = texts_to(&w, &mail, "alice")
        .into_iter()
        .find(|t| t.contains("DRAFT of what the release"))
        .expect("the draft reaches the PST");
    assert!(
        draft.contains("FINAL ADVISORY") && draft.contains("\"cveId\": \"CVE-2026-12345\""),
        "{draft}"
    );
    assert!(
        draft.contains("x_KAP-2026-0001") && draft.contains(OSS),
        "{draft}"
    );
    assert!(
        texts_to(&w, &mail, "distro-a").is_empty(),
        "the draft is for the PST only"
    );
    for m in &mail {
        assert!(
            !String::from_utf8_lossy(&m.bytes).contains("FINAL ADVISORY"),
            "encrypted"
        );
    }
    let public = w.sandbox.dir.join("public").join(case);
    assert!(!public.exists(), "nothing is written before the release");

    // 7. No archive while embargoed.
    w.clock.advance(Duration::from_secs(1));
    daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &sign(
                "alice@example.org",
                SECURITY,
                &format!("X-Case: {case}\r\nX-Archive: approve\r\n"),
                "",
            ),
        )
        .await;
    let mail = outbox.new_mail(&daemon).await;
    let reply = texts_to(&w, &mail, "alice")
        .into_iter()
        .find(|t| t.contains("your commands"))
        .unwrap();
    assert!(reply.contains("still under embargo"), "{reply}");
    assert!(!public.join("archive.mbox").exists());

    // 8. The release, at the slot.
    w.clock
        .advance(slot.signed_duration_since(w.clock.now()).to_std().unwrap());
    let mail = outbox.new_mail(&daemon).await;
    let announcement = &common::addressed_to(&mail, ANNOUNCE)[0].bytes;
    let text = String::from_utf8_lossy(announcement);
    assert!(
        text.contains(
            "Subject: [KAP-2026-0001] Heap overflow in the header parser\r\n (CVE-2026-12345)"
        ) || text.contains(
            "Subject: [KAP-2026-0001] Heap overflow in the header parser (CVE-2026-12345)"
        ),
        "{text}"
    );
    for line in [
        "Kappital security advisory KAP-2026-0001 (CVE-2026-12345)",
        "Heap overflow in the header parser",
        "Upgrade to: 1.4.2",
        "Severity:   critical 9.8",
        "Affected:   kappital >=1.0.0, <1.4.2",
        "Mitigation: Set max_header_size = 8192",
        "Weakness:   CWE-122",
        "Rita Reporter (finder); Bob Builder (remediation developer)",
        "fix        https://git.kappital.example/commit/1a2b3c",
        "FINAL ADVISORY",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(
        !text.contains("DRAFT-ONE"),
        "the superseded draft is not published"
    );
    let attached = attachments(announcement);
    let cve_json = &attached
        .iter()
        .find(|(n, _)| n == "KAP-2026-0001.cve.json")
        .expect("the CVE record is attached")
        .1;
    let osv_json = &attached
        .iter()
        .find(|(n, _)| n == "KAP-2026-0001.osv.json")
        .expect("the OSV record is attached")
        .1;
    let cve: serde_json::Value = serde_json::from_slice(cve_json).unwrap();
    let osv: serde_json::Value = serde_json::from_slice(osv_json).unwrap();
    assert!(common::schema("cve-5.1.1.json").is_valid(&cve), "{cve:#}");
    assert!(common::schema("osv.json").is_valid(&osv), "{osv:#}");
    assert_eq!(cve["containers"]["cna"]["datePublic"], rfc3339(slot));
    assert_eq!(osv["published"], rfc3339(slot));
    assert_eq!(std::fs::read(public.join("cve.json")).unwrap(), *cve_json);
    assert_eq!(std::fs::read(public.join("osv.json")).unwrap(), *osv_json);

    let oss = &common::addressed_to(&mail, OSS)
        .first()
        .expect("the oss-security post")
        .bytes;
    let oss_text = String::from_utf8_lossy(oss);
    assert!(
        oss_text.contains("Subject: CVE-2026-12345: Kappital: Heap overflow in the header parser"),
        "{oss_text}"
    );
    assert!(oss_text.contains("Upgrade to: 1.4.2") && oss_text.contains("FINAL ADVISORY"));
    let lifted = texts_to(&w, &mail, "distro-a")
        .into_iter()
        .find(|t| t.contains("is lifted"))
        .unwrap();
    assert!(
        lifted.contains(OSS) && lifted.contains("cve.json, osv.json"),
        "{lifted}"
    );
    assert!(
        !lifted.contains(&public.display().to_string()),
        "the server's folders are the PST's: {lifted}"
    );
    let files_note = texts_to(&w, &mail, "bob")
        .into_iter()
        .find(|t| t.contains("is lifted"))
        .unwrap();
    assert!(
        files_note.contains(&public.display().to_string()),
        "{files_note}"
    );

    // 9. The archive, once approved by the PST: an admin cannot.
    let by_admin = request(
        &daemon.config.control.socket,
        Command::CaseSet {
            id: case.into(),
            keywords: vec![("archive".into(), "approve".into())],
        },
    )
    .await
    .unwrap();
    assert!(
        format!("{by_admin:?}").contains("only a PST member's signed post"),
        "{by_admin:?}"
    );
    assert!(!public.join("archive.mbox").exists());

    daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &sign(
                "alice@example.org",
                SECURITY,
                &format!("X-Case: {case}\r\nX-Archive: approve\r\n"),
                "",
            ),
        )
        .await;
    outbox.new_mail(&daemon).await;
    let mbox = std::fs::read_to_string(public.join("archive.mbox")).unwrap();
    let html = std::fs::read_to_string(public.join("archive.html")).unwrap();
    for archive in [&mbox, &html] {
        assert!(
            archive.contains("A header over 64 KiB overflows"),
            "the report"
        );
        assert!(
            archive.contains("Confirmed; the fix is ready."),
            "the PST's post"
        );
        assert!(
            archive.contains("Our packages build with the patch"),
            "a distributor's reply"
        );
        assert!(archive.contains("FINAL ADVISORY"), "the advisory");
        assert!(!archive.contains("DRAFT-ONE"), "no superseded draft");
        assert!(!archive.contains("STATUS-NOTE-SECRET"), "no status reply");
        assert!(!archive.contains("OUTSIDER-WORDS"), "no outsider's words");
        assert!(!archive.contains("X-CVE:"), "no keyword lines");
        for address in [
            "rita@reporter.example",
            "alice@example.org",
            "distro-a@example.org",
        ] {
            assert!(!archive.contains(address), "{address} in the archive");
        }
        assert!(
            !archive
                .to_ascii_uppercase()
                .contains(&key_id.to_ascii_uppercase()),
            "a key id"
        );
        assert!(archive.contains("[address removed]"));
    }
    assert_eq!(
        mbox.lines()
            .filter(|l| l.starts_with("From embargod "))
            .count(),
        4,
        "the report, the PST's post, the advisory, the distributor's reply:\n{mbox}"
    );
    assert!(
        !mbox.contains("Subject: about the parser"),
        "an unsigned Subject of a signed post is not published"
    );
    assert!(mbox.contains("From: \"Reporter via the Kappital security list\""));
    assert!(html.contains("Distributor") && html.starts_with("<!DOCTYPE html>"));
    let shown = request(
        &daemon.config.control.socket,
        Command::CaseShow { id: case.into() },
    )
    .await
    .unwrap()
    .text()
    .unwrap();
    assert!(shown.contains("CVE-2026-12345"), "{shown}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_without_a_public_post_is_reminded_daily() {
    let w = World::new(&[("alice", Some(ListName::Security))], None);
    let daemon = start(&w.sandbox, w.clock.clone()).await;
    let mut outbox = Outbox {
        seen: HashSet::new(),
    };
    daemon
        .send(
            common::REPORTER,
            &[SECURITY],
            &common::report("crash", &common::canary()),
        )
        .await;
    outbox.new_mail(&daemon).await;
    let set = |keywords: Vec<(&str, &str)>| {
        request(
            &daemon.config.control.socket,
            Command::CaseSet {
                id: "KAP-2026-0001".into(),
                keywords: keywords
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    };
    assert!(set(vec![("done", "release")]).await.unwrap().is_done());
    w.clock.advance(Duration::from_secs(86400));
    let mail = outbox.new_mail(&daemon).await;
    let reminders: Vec<String> = texts_to(&w, &mail, "alice")
        .into_iter()
        .filter(|t| t.contains("without a public post"))
        .collect();
    assert_eq!(reminders.len(), 1, "one daily reminder");
    assert!(reminders[0].contains("X-Announced"), "{}", reminders[0]);

    assert!(
        set(vec![("announced", "https://kappital.example/sa/2026-1")])
            .await
            .unwrap()
            .is_done()
    );
    w.clock.advance(Duration::from_secs(86400));
    let mail = outbox.new_mail(&daemon).await;
    assert!(
        !texts_to(&w, &mail, "alice")
            .iter()
            .any(|t| t.contains("without a public post")),
        "accounted for"
    );
    daemon.stop().await;
}
