//! Attacks on release day: the sanitized archive, the advisory keyword
//! values, and the embargo's notice window and release slots. Each test
//! is an attack that once worked (found by review); the doc comment says
//! the attack, the test what holds now.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{signed_text, start, TestDaemon, World, REPORTER};
use embargod::advisory::AdvisoryData;
use embargod::config::ListName;
use embargod::control::{client::request, Command};
use embargod::sandbox::{DISTRIBUTORS, SECURITY};

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A daemon with PST alice (Fix Lead of every case: the only PST member),
/// distributor distro-a and engineer dave (on no list).
struct Flow {
    w: World,
    daemon: TestDaemon,
}

impl Flow {
    async fn new() -> Flow {
        Flow::with(|_| {}).await
    }

    async fn with(setup: impl FnOnce(&mut World)) -> Flow {
        let mut w = World::new(
            &[
                ("alice", Some(ListName::Security)),
                ("distro-a", Some(ListName::Distributors)),
                ("dave", None),
            ],
            None,
        );
        setup(&mut w);
        let daemon = start(&w.sandbox, w.clock.clone()).await;
        Flow { w, daemon }
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.daemon.settle().await;
    }

    /// `signer` (`<id>@example.org`) signs `keywords` + `text` now and
    /// sends it to `rcpts`, with the outer (unsigned) `subject`. The clock
    /// moves a second first, so that each signature is newer.
    async fn signed(
        &self,
        signer: &str,
        rcpts: &[&str],
        subject: &str,
        keywords: &str,
        text: &str,
    ) {
        self.w.clock.advance(Duration::from_secs(1));
        let from = format!("{signer}@example.org");
        let message = signed_text(
            &self.w.gpg,
            &from,
            rcpts[0],
            subject,
            keywords,
            text,
            Some(self.w.clock.now()),
        );
        self.daemon.send(&from, rcpts, &message).await;
        self.settle().await;
    }

    /// A plain report from [`REPORTER`]; its text is `body`.
    async fn report(&self, subject: &str, body: &str) {
        let message = format!(
            "From: Rita Reporter <{REPORTER}>\r\nTo: <{SECURITY}>\r\nSubject: {subject}\r\n\
             Message-ID: <{}@reporter.example>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
            embargod::random::token()
        );
        self.daemon
            .send(REPORTER, &[SECURITY], message.as_bytes())
            .await;
        self.settle().await;
    }

    /// alice opens `case`'s embargo 8 days out (no short notice needed).
    async fn embargo(&self, case: &str, text: &str) {
        let until = self.w.clock.now() + chrono::Duration::days(8);
        self.signed(
            "alice",
            &[DISTRIBUTORS],
            "advisory",
            &format!("X-Case: {case}\r\nX-Embargo-Until: {}\r\n", rfc3339(until)),
            text,
        )
        .await;
        assert!(
            embargod::embargo::get(&self.daemon.shared.store, case)
                .unwrap()
                .is_some(),
            "the embargo of {case} is set: {:?}",
            self.daemon.held()
        );
    }

    /// alice releases `case` now and approves its archive; returns the
    /// archive's mbox and HTML.
    async fn release_and_archive(&self, case: &str) -> (String, String) {
        self.signed(
            "alice",
            &[DISTRIBUTORS],
            "release",
            &format!("X-Case: {case}\r\nX-Release: now\r\nX-Reason: fixed upstream\r\n"),
            "",
        )
        .await;
        let embargo = embargod::embargo::get(&self.daemon.shared.store, case)
            .unwrap()
            .unwrap();
        assert!(
            embargo.released.is_some(),
            "{case} released: {:?}",
            self.daemon.held()
        );
        self.signed(
            "alice",
            &[SECURITY],
            "archive",
            &format!("X-Case: {case}\r\nX-Archive: approve\r\n"),
            "",
        )
        .await;
        let dir = self.public(case);
        let mbox = std::fs::read_to_string(dir.join("archive.mbox"))
            .unwrap_or_else(|e| panic!("the archive of {case} is written: {e}"));
        let html = std::fs::read_to_string(dir.join("archive.html")).unwrap();
        (mbox, html)
    }

    fn public(&self, case: &str) -> PathBuf {
        self.w.sandbox.dir.join("public").join(case)
    }
}

const CASE_A: &str = "KAP-2026-0001";
const CASE_B: &str = "KAP-2026-0002";

/// README: the archive holds "not distributors' `X-Status` replies". A
/// distributor who answers to both lists (reply-all: the PST's copies come
/// from the security list too) has the status recorded on the
/// distributors list, and the security list keeps the very same mail,
/// keyword lines and all, as the distributor's post in the case's thread.
/// The status and its note end up in the public archive.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_reply_sent_to_both_lists_stays_out_of_the_archive() {
    let f = Flow::new().await;
    f.report("crash in the parser", "REPORT-TEXT: a crash.")
        .await;
    f.embargo(CASE_A, "ADVISORY-TEXT").await;
    f.signed(
        "distro-a",
        &[DISTRIBUTORS, SECURITY],
        &format!("Re: [EMBARGOED] [{CASE_A}] advisory"),
        &format!("X-Case: {CASE_A}\r\nX-Status: affected STATUS-SECRET our build farm is down\r\n"),
        "",
    )
    .await;
    let embargo = embargod::embargo::get(&f.daemon.shared.store, CASE_A)
        .unwrap()
        .unwrap();
    assert!(
        embargo.statuses.contains_key("distro-a"),
        "the status is recorded as a status: {:?}",
        f.daemon.held()
    );
    let (mbox, html) = f.release_and_archive(CASE_A).await;
    for archive in [&mbox, &html] {
        assert!(archive.contains("REPORT-TEXT"), "{archive}");
        assert!(
            !archive.contains("STATUS-SECRET") && !archive.contains("X-Status"),
            "a distributor's X-Status reply is in the public archive:\n{archive}"
        );
    }
    f.daemon.stop().await;
}

/// A distributor's signed reply without an `X-Case:` line is filed into
/// the thread of whatever case its outer Subject names — a Subject anyone
/// on the mail path can edit (the README refuses exactly this for
/// statuses). A reply about case A, still under embargo, whose Subject
/// names case B is published with B's archive.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_subject_cannot_file_another_cases_words_into_the_archive() {
    let f = Flow::new().await;
    f.report("crash in the parser", "REPORT-A").await;
    f.report("leak in the cache", "REPORT-B").await;
    f.embargo(CASE_A, "ADVISORY-A").await;
    f.embargo(CASE_B, "ADVISORY-B").await;
    // Signed by distro-a about case A; the outer Subject (edited on the
    // way, or a reply in the wrong thread) names case B.
    f.signed(
        "distro-a",
        &[DISTRIBUTORS],
        &format!("Re: [EMBARGOED] [{CASE_B}] advisory"),
        "",
        "About the parser crash (case A): A-EMBARGOED-SECRET, the overflow is in parse_header().",
    )
    .await;
    let (mbox, html) = f.release_and_archive(CASE_B).await;
    let a = embargod::embargo::get(&f.daemon.shared.store, CASE_A)
        .unwrap()
        .unwrap();
    assert!(a.released.is_none(), "case A is still under embargo");
    for archive in [&mbox, &html] {
        assert!(archive.contains("ADVISORY-B"), "{archive}");
        assert!(
            !archive.contains("A-EMBARGOED-SECRET"),
            "words the signature does not tie to case B (the case came from the \
             unsigned Subject) are published in B's archive while A is embargoed:\n{archive}"
        );
    }
    f.daemon.stop().await;
}

/// README: "every key id or fingerprint of the members, the reporter and
/// the list" is removed. A public key pasted into a report (as many
/// reporters do: "here is my key") is kept verbatim: its armor carries
/// the reporter's fingerprint and their mail address (the User ID), in
/// base64 that the address and hex patterns never see.
#[tokio::test(flavor = "multi_thread")]
async fn a_pasted_public_key_is_removed_from_the_archive() {
    let reporter_address = "finder@elsewhere.example";
    let f = Flow::with(|w| {
        let reporter = common::Gpg::new();
        reporter.gen_key(&format!("Finder <{reporter_address}>"), "future-default");
        reporter.import(&common::list_public(&w.sandbox));
        w.reporter = Some(reporter);
    })
    .await;
    let key = String::from_utf8(
        f.w.reporter()
            .ok(&["--armor", "--export", reporter_address], b""),
    )
    .unwrap()
    .replace("\r\n", "\n")
    .replace('\n', "\r\n");
    f.report(
        "crash in the parser",
        &format!("REPORT-TEXT: a crash.\r\n\r\nPlease encrypt to my key:\r\n\r\n{key}"),
    )
    .await;
    f.embargo(CASE_A, "ADVISORY-TEXT").await;
    let (mbox, _html) = f.release_and_archive(CASE_A).await;
    assert!(mbox.contains("REPORT-TEXT"), "{mbox}");
    let fpr = f.w.reporter().fingerprint(reporter_address);
    if let (Some(start), Some(end)) = (
        mbox.find("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        mbox.find("-----END PGP PUBLIC KEY BLOCK-----"),
    ) {
        use sequoia_openpgp::parse::Parse;
        let block = &mbox[start..end + "-----END PGP PUBLIC KEY BLOCK-----".len()];
        if let Ok(cert) = sequoia_openpgp::Cert::from_bytes(block.as_bytes()) {
            let uids: Vec<String> = cert
                .userids()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect();
            panic!(
                "the archive carries the reporter's key {} with User IDs {uids:?} (the reporter's \
                 fingerprint {fpr} and address, base64-encoded)",
                cert.fingerprint()
            );
        }
    }
    f.daemon.stop().await;
}

/// README: every key id of the members is removed. A member's key id in
/// its short (32-bit, `0x` + 8 hex digits) form, as GnuPG printed it for
/// years and people still write it, is left in; so is a fingerprint whose
/// groups are separated by no-break spaces (as pasted from a web page).
#[tokio::test(flavor = "multi_thread")]
async fn short_key_ids_and_nbsp_grouped_fingerprints_are_removed() {
    let f = Flow::new().await;
    let alice = f.w.sandbox.members[0].cert.fingerprint().to_hex();
    let short = &alice[alice.len() - 8..];
    let grouped: Vec<&str> = (0..10).map(|i| &alice[i * 4..i * 4 + 4]).collect();
    let nbsp = grouped.join("\u{a0}");
    f.report(
        "crash in the parser",
        &format!(
            "REPORT-TEXT. I wrote to alice first (key 0x{short}).\r\n\
             Her fingerprint, from the project's web page: {nbsp}\r\n"
        ),
    )
    .await;
    f.embargo(CASE_A, "ADVISORY-TEXT").await;
    let (mbox, _html) = f.release_and_archive(CASE_A).await;
    assert!(mbox.contains("REPORT-TEXT"), "{mbox}");
    let upper = mbox.to_ascii_uppercase();
    assert!(
        !upper.contains(&short.to_ascii_uppercase()),
        "alice's short key id 0x{short} is in the archive:\n{mbox}"
    );
    assert!(
        !mbox.contains(&nbsp),
        "alice's fingerprint (no-break spaces between groups) is in the archive:\n{mbox}"
    );
    f.daemon.stop().await;
}

/// README: the archive holds no "mail from unverified outsiders"; the
/// Reporter is recognised by the case's reporter address in the From
/// field of unsigned mail — which anyone can write. Once the case is
/// released its ID is public (and IDs are sequential anyway): an outsider
/// who knows or guesses the reporter's address posts as them, and their
/// words go into the project's public record under "Reporter".
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_reporter_from_does_not_reach_the_archive() {
    let f = Flow::new().await;
    f.report("crash in the parser", "REPORT-TEXT").await;
    f.embargo(CASE_A, "ADVISORY-TEXT").await;
    f.signed(
        "alice",
        &[DISTRIBUTORS],
        "release",
        &format!("X-Case: {CASE_A}\r\nX-Release: now\r\nX-Reason: fixed upstream\r\n"),
        "",
    )
    .await;
    // Mallory, after the announcement named the case, as the reporter.
    let forged = format!(
        "From: Rita Reporter <{REPORTER}>\r\nTo: <{SECURITY}>\r\n\
         Subject: Re: [{CASE_A}] crash in the parser\r\nMessage-ID: <forged@evil.example>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         FORGED-WORDS: the vendor ignored me for a year; the real fix is at https://evil.example/\r\n"
    );
    f.daemon
        .send("mallory@evil.example", &[SECURITY], forged.as_bytes())
        .await;
    f.settle().await;
    f.signed(
        "alice",
        &[SECURITY],
        "archive",
        &format!("X-Case: {CASE_A}\r\nX-Archive: approve\r\n"),
        "",
    )
    .await;
    let mbox = std::fs::read_to_string(f.public(CASE_A).join("archive.mbox")).unwrap();
    assert!(mbox.contains("REPORT-TEXT"), "{mbox}");
    assert!(
        !mbox.contains("FORGED-WORDS"),
        "an unsigned mail with a forged From (envelope sender mallory@evil.example) is \
         published as the Reporter's:\n{mbox}"
    );
    f.daemon.stop().await;
}

/// README: "A command signed before the case's last command changes
/// nothing (a delayed `X-Add` cannot undo a later `X-Remove`)", and the
/// admins set advisory data with `embargod case set`, which "runs the same
/// code". But an admin's change does not count as the case's last
/// command: a PST command signed *before* it, delayed on the way (or
/// replayed by whoever holds it, when never delivered), arrives after it
/// and undoes it — the CVE ID goes back, and a removed engineer is back
/// on the need-to-know Fix Team.
#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_signed_command_cannot_undo_a_later_admin_change() {
    let f = Flow::new().await;
    f.report("crash in the parser", "REPORT-TEXT").await;
    let set = |keywords: Vec<(&str, &str)>| {
        request(
            &f.daemon.config.control.socket,
            Command::CaseSet {
                id: CASE_A.into(),
                keywords: keywords
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    };
    assert!(set(vec![("add", "dave")]).await.unwrap().is_done());
    // alice signs at T0: the old CVE ID, and dave on the team...
    f.w.clock.advance(Duration::from_secs(60));
    let signed_at = f.w.clock.now();
    let delayed = signed_text(
        &f.w.gpg,
        "alice@example.org",
        SECURITY,
        "data",
        &format!("X-Case: {CASE_A}\r\nX-CVE: CVE-2026-1111\r\nX-Add: dave\r\n"),
        "",
        Some(signed_at),
    );
    // ... at T0 + 10 minutes the admins correct both ...
    f.w.clock.advance(Duration::from_secs(600));
    let reply = set(vec![("cve", "CVE-2026-2222"), ("remove", "dave")])
        .await
        .unwrap();
    assert!(reply.is_done(), "{reply:?}");
    // ... and alice's mail, delayed, arrives at T0 + 1 hour.
    f.w.clock.advance(Duration::from_secs(3000));
    f.daemon
        .send("alice@example.org", &[SECURITY], &delayed)
        .await;
    f.settle().await;
    let case = embargod::case::all(&f.daemon.shared.store)
        .unwrap()
        .into_iter()
        .find(|c| c.id == CASE_A)
        .unwrap();
    assert_eq!(
        case.advisory.cve.as_deref(),
        Some("CVE-2026-2222"),
        "a command signed before the admin's change undid it"
    );
    assert!(
        !case.team.iter().any(|m| m == "dave"),
        "dave, removed by an admin, is back on the Fix Team by an older signed X-Add"
    );
    f.daemon.stop().await;
}

/// README: values with "no control, zero-width or bidi characters". The
/// check lists U+200B–U+200F, U+202A–U+202E, U+2060–U+2069 and U+FEFF,
/// and misses the Arabic letter mark U+061C (a bidi control, as
/// U+200E/U+200F are), the line and paragraph separators U+2028/U+2029
/// (not `is_control`: a Subject or a summary row breaks in readers), and
/// the invisible tag characters U+E0000–U+E007F.
#[test]
fn advisory_values_keep_no_bidi_separators_or_tags() {
    for sneaky in [
        "Eve\u{061C}gnp.exe",
        "Heap overflow\u{2028}Upgrade to: 9.9.9",
        "Heap overflow\u{2029}",
        "Jane\u{E0041}\u{E0042}Doe",
    ] {
        // Refused, or (a separator at the end) trimmed away.
        let mut data = AdvisoryData::default();
        let kept = data
            .apply("summary", sneaky, true)
            .ok()
            .and(data.summary.clone());
        assert!(
            kept.is_none_or(|k| !k.chars().any(embargod::mime::is_invisible)),
            "X-Summary: {sneaky:?} is kept"
        );
        let credited = data
            .apply("credit", &format!("finder: {sneaky}"), true)
            .ok()
            .and(data.credits.first().map(|c| c.name.clone()));
        assert!(
            credited.is_none_or(|k| !k.chars().any(embargod::mime::is_invisible)),
            "X-Credit: {sneaky:?} is kept"
        );
    }
}

/// README: "A refused value changes nothing and the reply says why." A
/// list keyword with more than 64 entries is refused — after the old list
/// was cleared and replaced by the first 64 new entries.
#[test]
fn a_refused_overlong_list_changes_nothing() {
    let mut data = AdvisoryData::default();
    data.apply("fixed", "1.4.2, 1.3.9", true).unwrap();
    let many: Vec<String> = (0..70).map(|i| format!("9.{i}.0")).collect();
    let result = data.apply("fixed", &many.join(", "), true);
    assert!(result.is_err(), "70 entries are refused");
    assert_eq!(
        data.fixed,
        ["1.4.2", "1.3.9"],
        "the refused X-Fixed changed the list"
    );
}

/// README: "a disclosure time is moved to the next slot at or after the
/// one asked for". `embargod release CASE --at TIME` used to set any time,
/// off every release slot and without the notice window (a move from 8
/// days to about one was neither held nor marked SHORT NOTICE). Now the
/// command line keeps the same rules, a reason standing for the Fix
/// Lead's X-Short-Notice.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_keeps_to_release_slots_and_the_notice_window() {
    let f = Flow::with(|w| {
        w.sandbox.embargo = "release_days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\"]\n\
                             release_time = \"16:00\"\n"
            .into();
    })
    .await;
    f.report("crash in the parser", "REPORT-TEXT").await;
    f.embargo(CASE_A, "ADVISORY-TEXT").await;
    // Tomorrow at 03:07 UTC: no release slot.
    let asked = (f.w.clock.now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(3, 7, 0)
        .unwrap()
        .and_utc();
    let release_at = |reason: Option<&str>| {
        request(
            &f.daemon.config.control.socket,
            Command::Release {
                case: CASE_A.into(),
                now: false,
                reason: reason.map(str::to_string),
                at: Some(rfc3339(asked)),
            },
        )
    };
    // A day's notice is refused without a reason...
    let refused = release_at(None).await.unwrap();
    assert!(format!("{refused:?}").contains("--reason"), "{refused:?}");
    let before = embargod::embargo::get(&f.daemon.shared.store, CASE_A)
        .unwrap()
        .unwrap();
    assert_ne!(before.until(), asked);
    // ...and with one, it is recorded, and the time is a release slot.
    let moved = release_at(Some("exploit public")).await.unwrap();
    assert!(moved.is_done(), "{moved:?}");
    let embargo = embargod::embargo::get(&f.daemon.shared.store, CASE_A)
        .unwrap()
        .unwrap();
    let until = embargo.until();
    assert!(until > asked, "{until}");
    assert_eq!(until.format("%H:%M").to_string(), "16:00", "{until}");
    assert!(
        chrono::Datelike::weekday(&until).num_days_from_monday() < 4,
        "{until}"
    );
    assert_eq!(
        embargo.short_notice.as_ref().map(|s| s.reason.as_str()),
        Some("exploit public")
    );
    f.daemon.stop().await;
}

/// A PST post held for a date more than `max_embargo_days` away kept its
/// signature unspent: replayed by whoever captured it once the date came
/// within range, it set an embargo (and sent the advisory to every
/// distributor) days after the PST had given up on it. A held post's
/// signature is spent now, as on the security list.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_distributors_post_cannot_be_replayed_once_its_date_is_in_range() {
    let f = Flow::new().await;
    f.report("crash in the parser", "REPORT-TEXT").await;
    f.w.clock.advance(Duration::from_secs(1));
    let until = f.w.clock.now() + chrono::Duration::days(20);
    let post = signed_text(
        &f.w.gpg,
        "alice@example.org",
        DISTRIBUTORS,
        "advisory",
        &format!(
            "X-Case: {CASE_A}\r\nX-Embargo-Until: {}\r\n",
            rfc3339(until)
        ),
        "REPLAYED-ADVISORY",
        Some(f.w.clock.now()),
    );
    f.daemon
        .send("alice@example.org", &[DISTRIBUTORS], &post)
        .await;
    f.settle().await;
    assert!(
        f.daemon.held().last().unwrap().contains("max_embargo_days"),
        "{:?}",
        f.daemon.held()
    );
    // Six days on, 20 days is within the 14 allowed; the signature is
    // still young enough (signatures.max_age is 7 days).
    f.w.clock.advance(Duration::from_secs(6 * 86400 + 3600));
    f.daemon
        .send("mallory@evil.example", &[DISTRIBUTORS], &post)
        .await;
    f.settle().await;
    assert!(
        embargod::embargo::get(&f.daemon.shared.store, CASE_A)
            .unwrap()
            .is_none(),
        "the replayed post set an embargo"
    );
    assert!(
        f.daemon.held().last().unwrap().contains("already"),
        "{:?}",
        f.daemon.held()
    );
    f.daemon.stop().await;
}
