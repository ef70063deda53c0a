//! Leak marks measured on a corpus of realistic reports and advisories
//! (`tests/marks/corpus`, every line labelled `P|` prose or `X|` exact by
//! the person who wrote it, not by the classifier under test):
//!
//! - exactness: in 20 copies of each, every `X|` line, every code span and
//!   every token of a prose line that is not a plain word is byte-identical
//!   to the original, in the text part and the HTML part;
//! - attribution, 20 recipients, for each shape a leak takes: the right
//!   member, a wrong member, or nobody named;
//! - the unmarked original traces to nobody.
//!
//! It prints the table quoted in the README:
//! `cargo test --release --test marks -- --nocapture`.

use std::collections::BTreeMap;
use std::path::Path;

use embargod::config::Marks;
use embargod::fanout::{Marking, Outgoing};
use embargod::mark::html::render;
use embargod::mark::trace::{trace, Verdict};
use embargod::mark::{canonical, copy_id_hex, MarkSecret};
use embargod::sandbox::index_copies;
use embargod::store::{Store, StoreKey, KEY_LEN};

const RECIPIENTS: u64 = 20;
const EXCERPT: usize = 400;

/// One advisory of the corpus: its lines and whether each must stay exact.
struct Advisory {
    name: String,
    lines: Vec<(bool, String)>,
}

impl Advisory {
    fn plain(&self) -> String {
        self.lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// The HTML part a mail client's composer would write: prose paragraphs
    /// as `<p>` (lines joined), runs of exact lines as `<pre>`, code spans
    /// as `<code>`.
    fn html(&self) -> String {
        let mut out = String::from("<html><body>\n");
        let mut i = 0;
        while i < self.lines.len() {
            let (exact, line) = &self.lines[i];
            if line.trim().is_empty() {
                i += 1;
                continue;
            }
            let run: Vec<&str> = self.lines[i..]
                .iter()
                .take_while(|(e, l)| e == exact && !l.trim().is_empty())
                .map(|(_, l)| l.as_str())
                .collect();
            i += run.len();
            if *exact {
                out.push_str(&format!("<pre>{}</pre>\n", escape(&run.join("\n"))));
            } else {
                let text = escape(&run.join(" "));
                let mut paragraph = String::new();
                for (n, piece) in text.split('`').enumerate() {
                    if n % 2 == 1 {
                        paragraph.push_str(&format!("<code>{piece}</code>"));
                    } else {
                        paragraph.push_str(piece);
                    }
                }
                out.push_str(&format!("<p>{paragraph}</p>\n"));
            }
        }
        out.push_str("</body></html>\n");
        out
    }

    /// The entity as a reporter's client sends it.
    fn entity(&self) -> Vec<u8> {
        format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n\
             --alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n\
             --alt--\r\n",
            self.plain().replace('\n', "\r\n"),
            self.html().replace('\n', "\r\n")
        )
        .into_bytes()
    }

    /// The longest run of prose lines.
    fn longest_paragraph(&self) -> std::ops::Range<usize> {
        let mut best = 0..0;
        let mut start = None;
        for (i, (exact, line)) in self
            .lines
            .iter()
            .enumerate()
            .chain([(self.lines.len(), &(true, String::new()))])
        {
            let prose = !exact && !line.trim().is_empty();
            match (prose, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    let len = |r: &std::ops::Range<usize>| {
                        self.lines[r.clone()]
                            .iter()
                            .map(|(_, l)| l.len())
                            .sum::<usize>()
                    };
                    if len(&(s..i)) > len(&best) {
                        best = s..i;
                    }
                    start = None;
                }
                _ => {}
            }
        }
        best
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn corpus() -> Vec<Advisory> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/marks/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let lines = text
                .lines()
                .map(|line| match line.split_at_checked(2) {
                    Some(("P|", rest)) => (false, rest.to_string()),
                    Some(("X|", rest)) => (true, rest.to_string()),
                    _ => panic!("{}: unlabelled line {line:?}", path.display()),
                })
                .collect();
            Advisory {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                lines,
            }
        })
        .collect()
}

/// The decoded text/plain and text/html of an entity.
fn parts(entity: &[u8]) -> (String, String) {
    let message = embargod::mime::parse(entity).unwrap();
    let mut plain = String::new();
    let mut html = String::new();
    for part in &message.parts {
        match &part.body {
            mail_parser::PartType::Text(t) => plain = t.to_string(),
            mail_parser::PartType::Html(h) => html = h.to_string(),
            _ => {}
        }
    }
    (plain, html)
}

/// Whether a token of a prose line may differ in a copy: a plain word
/// (letters only, edge punctuation aside) outside code spans and quotes.
fn may_change(token: &str) -> bool {
    let core = token.trim_matches(|c: char| ".,;:!?()\"".contains(c));
    !core.is_empty() && core.chars().all(char::is_alphabetic) && !token.starts_with('\'')
}

/// Every difference between an original plain text and a copy's that marks
/// may not make.
fn exactness_faults(advisory: &Advisory, copy: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let copy_lines: Vec<&str> = copy.lines().collect();
    if copy_lines.len() != advisory.lines.len() {
        return vec![format!(
            "{} lines instead of {}",
            copy_lines.len(),
            advisory.lines.len()
        )];
    }
    for ((exact, original), marked) in advisory.lines.iter().zip(copy_lines) {
        if *exact {
            if original != marked {
                faults.push(format!("exact line changed: {original:?}"));
            }
            continue;
        }
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        if squeeze(&canonical(marked)) != squeeze(original) {
            faults.push(format!("more than marks changed: {original:?}"));
            continue;
        }
        let mut in_code = false;
        for (a, b) in original.split_whitespace().zip(marked.split_whitespace()) {
            let code = in_code || a.contains('`');
            if a.matches('`').count() % 2 == 1 {
                in_code = !in_code;
            }
            if a != b && (code || !may_change(a)) {
                faults.push(format!("token {a:?} changed in {original:?}"));
            }
        }
    }
    faults
}

/// What the HTML part must keep byte for byte: its `<pre>` and `<code>`
/// elements and everything that is not text.
fn html_faults(original: &str, marked: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for (open, close) in [("<pre>", "</pre>"), ("<code>", "</code>")] {
        for piece in original.split(open).skip(1) {
            let element = format!("{open}{}{close}", &piece[..piece.find(close).unwrap()]);
            if !marked.contains(&element) {
                faults.push(format!("{element:?} changed"));
            }
        }
    }
    let tags = |s: &str| -> Vec<String> {
        s.split('<')
            .skip(1)
            .map(|t| t[..t.find('>').unwrap_or(t.len())].to_string())
            .collect()
    };
    if tags(original) != tags(marked) {
        faults.push("tags or attributes changed".into());
    }
    faults
}

/// What a leaker's confusables pass (UTS #39) does: every character that is
/// not ASCII becomes its skeleton.
fn fold(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii() {
                vec![c]
            } else {
                unicode_security::skeleton(&c.to_string()).collect()
            }
        })
        .collect()
}

/// Re-wrapping as fmt or a mail client's "rewrap" does it: the lines of a
/// paragraph joined with one space and broken again at `width`, the
/// spacing inside a line kept.
fn rewrap(text: &str, width: usize) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    let mut line = String::new();
    let mut rest = joined.as_str();
    while !rest.is_empty() {
        let word_end = rest.find(' ').unwrap_or(rest.len());
        let word = &rest[..word_end];
        let after = &rest[word_end..];
        let space_len = after.len() - after.trim_start_matches(' ').len();
        if !line.is_empty() && line.trim_end().chars().count() + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clear();
        }
        line.push_str(word);
        line.push_str(&after[..space_len]);
        rest = &after[space_len..];
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

fn quote(text: &str) -> String {
    text.lines().map(|l| format!("> {l}\n")).collect()
}

/// At most `len` characters of `text`.
fn cut(text: &str, len: usize) -> String {
    text.chars().take(len).collect()
}

fn as_message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
        body.replace('\n', "\r\n")
    )
    .into_bytes()
}

#[derive(Default)]
struct Tally {
    right: usize,
    wrong: usize,
    nobody: usize,
    examples: Vec<String>,
}

#[test]
fn marks_keep_code_exact_and_name_the_recipient() {
    let corpus = corpus();
    assert!(corpus.len() >= 20, "{} advisories", corpus.len());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("state"),
        StoreKey::from_bytes(&[3; KEY_LEN]),
    )
    .unwrap();
    let secret: MarkSecret = store.mark_secret().clone();

    // What changed that must not, and in how many copies.
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut unmarked = Tally::default();
    let (mut words, mut prose_words) = (0, 0);
    for (m, advisory) in corpus.iter().enumerate() {
        let message = m as u64;
        let outgoing = Outgoing::new(
            b"Subject: advisory\r\n".to_vec(),
            String::new(),
            advisory.entity(),
            None,
            Marking {
                marks: Marks::Invisible,
                patches: false,
            },
        );
        index_copies(&store, message, outgoing.shingles(&secret), RECIPIENTS).unwrap();
        let (original_plain, original_html) = parts(&outgoing.content);
        prose_words += embargod::mark::read(&original_plain, embargod::mark::Layout::Plain)
            .words
            .len();
        words += advisory
            .lines
            .iter()
            .filter(|(exact, _)| !exact)
            .map(|(_, l)| l.split_whitespace().filter(|t| may_change(t)).count())
            .sum::<usize>();
        let paragraph = advisory.longest_paragraph();
        for r in 0..RECIPIENTS {
            let copy_id = message * RECIPIENTS + r + 1;
            let member = format!("member{r:03}");
            let content = outgoing.marked_content(&secret, copy_id).concat();
            let (plain, html) = parts(&content);
            for fault in exactness_faults(advisory, &plain)
                .into_iter()
                .chain(html_faults(&original_html, &html))
            {
                *faults
                    .entry(format!("{}: {fault}", advisory.name))
                    .or_default() += 1;
            }

            // The leaks.
            let marked_lines: Vec<&str> = plain.lines().collect();
            let excerpt = cut(&marked_lines[paragraph.clone()].join("\n"), EXCERPT);
            let rendered = render(&html).unwrap();
            let first: String = canonical(&advisory.lines[paragraph.start].1)
                .chars()
                .take(30)
                .collect();
            let html_excerpt = rendered
                .lines()
                .find(|l| {
                    canonical(l)
                        .replace("  ", " ")
                        .starts_with(&first.replace("  ", " "))
                })
                .map(|l| cut(l, EXCERPT))
                .unwrap_or_else(|| panic!("{}: paragraph not in {rendered}", advisory.name));
            let full = [
                format!(
                    "From: list@kappital.example\r\nX-Embargod-Copy: {}\r\n",
                    copy_id_hex(copy_id)
                )
                .into_bytes(),
                content.clone(),
            ]
            .concat();
            let forwarded = [
                b"From: leaker@example.org\r\nSubject: Fwd: advisory\r\nContent-Type: multipart/mixed; boundary=\"fwd\"\r\n\r\n\
--fwd\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--fwd\r\nContent-Type: message/rfc822\r\n\r\nFrom: list@kappital.example\r\n"
                    .to_vec(),
                content.clone(),
                b"\r\n--fwd--\r\n".to_vec(),
            ]
            .concat();
            let digest = format!(
                "From: lists@example.net\r\nSubject: Digest, Vol 3, Issue 7\r\n\
Content-Type: multipart/digest; boundary=\"dig\"\r\n\r\n\
--dig\r\n\r\nFrom: someone@example.net\r\nSubject: build failure on arm64\r\n\r\n\
The nightly build fails on the arm64 runners again; the linker runs out of memory.\r\n\
--dig\r\n\r\nFrom: poster@example.net\r\nSubject: Re: that problem\r\n\r\n\
Someone sent me this, is it real?\r\n\r\n{}\r\n--dig--\r\n",
                quote(&excerpt).replace('\n', "\r\n")
            );
            let whole_prose: String = advisory
                .lines
                .iter()
                .zip(&marked_lines)
                .filter(|((exact, _), _)| !exact)
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            let leaks: Vec<(&str, Vec<u8>)> = vec![
                ("full copy", full),
                ("400-character prose excerpt", excerpt.clone().into_bytes()),
                (
                    "quoted and re-wrapped",
                    quote(&rewrap(&excerpt, 60)).into_bytes(),
                ),
                ("HTML view copied as text", html_excerpt.into_bytes()),
                ("forwarded as an attachment", forwarded),
                ("inside a digest", digest.into_bytes()),
                ("excerpt, confusables pass", fold(&excerpt).into_bytes()),
                (
                    "excerpt, confusables pass and re-wrapped",
                    rewrap(&fold(&excerpt), 60).into_bytes(),
                ),
                (
                    "whole text, confusables pass",
                    as_message("leaker@example.org", "x", &fold(&plain)),
                ),
                (
                    "all prose, confusables pass and re-wrapped",
                    rewrap(&fold(&whole_prose), 66).into_bytes(),
                ),
            ];
            for (shape, leak) in leaks {
                let verdict = trace(&store, &secret, &leak).unwrap();
                let tally = tallies.entry(shape).or_default();
                match &verdict {
                    Verdict::Attributed { copy, .. } if copy.member == member => tally.right += 1,
                    Verdict::Attributed { .. } => {
                        tally.wrong += 1;
                        tally
                            .examples
                            .push(format!("{} {member}: {verdict}", advisory.name));
                    }
                    _ => {
                        tally.nobody += 1;
                        if tally.examples.len() < 2 {
                            tally
                                .examples
                                .push(format!("{} {member}: {verdict}", advisory.name));
                        }
                    }
                }
            }
        }
        // The original, never marked: nobody.
        for leak in [
            original_plain.clone(),
            cut(&original_plain, EXCERPT * 2),
            render(&original_html).unwrap(),
        ] {
            match trace(&store, &secret, leak.as_bytes()).unwrap() {
                Verdict::NoMatch { .. } => unmarked.nobody += 1,
                other => {
                    unmarked.wrong += 1;
                    unmarked
                        .examples
                        .push(format!("{}: {other}", advisory.name));
                }
            }
        }
    }

    let copies = corpus.len() * RECIPIENTS as usize;
    println!(
        "\n{} advisories x {RECIPIENTS} recipients = {copies} copies; {} of {} plain prose words carry marks ({:.0} %)\n",
        corpus.len(),
        prose_words,
        words,
        100.0 * prose_words as f64 / words as f64
    );
    println!(
        "exactness: {} changes that must not be, in {copies} copies (text and HTML parts)",
        faults.values().sum::<usize>()
    );
    println!("\n| leak | right member | wrong member | nobody named |\n|---|---|---|---|");
    for (shape, t) in &tallies {
        let pct = |n: usize| 100.0 * n as f64 / copies as f64;
        println!(
            "| {shape} | {:.1} % | {:.1} % | {:.1} % |",
            pct(t.right),
            pct(t.wrong),
            pct(t.nobody)
        );
    }
    println!(
        "| unmarked original (whole, excerpt, HTML) | — | {} of {} | {} of {} |\n",
        unmarked.wrong,
        unmarked.wrong + unmarked.nobody,
        unmarked.nobody,
        unmarked.wrong + unmarked.nobody
    );
    for (shape, t) in &tallies {
        for example in t.examples.iter().take(2) {
            println!("{shape}: {example}");
        }
    }

    assert!(
        faults.is_empty(),
        "{}",
        faults
            .iter()
            .map(|(fault, n)| format!("{fault} (in {n} copies)"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(unmarked.wrong, 0, "{}", unmarked.examples.join("\n"));
    for (shape, t) in &tallies {
        assert_eq!(t.wrong, 0, "{shape}: {}", t.examples.join("\n"));
        if !shape.contains("confusables") {
            assert!(
                t.right * 100 >= copies * 99,
                "{shape}: {} of {copies}\n{}",
                t.right,
                t.examples.join("\n")
            );
        }
    }
}
