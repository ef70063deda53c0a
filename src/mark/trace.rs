//! Tracing a leak: from a suspected leaked text (a whole message, a
//! forwarded copy, a digest, an HTML view, a pasted excerpt) back to the
//! copy it came from.
//!
//! Every text the leak holds is read: each text and HTML part, attached
//! messages and digest entries at any depth, and copy header fields and
//! visible lines wherever they appear. The excerpt's words are matched to
//! a message through the keyed shingle index (no content is stored, only
//! keyed hashes of word 4-grams). For each copy of that message, each
//! place that can carry a mark is a vote: a prose word (look-alike letter
//! or not) and a space between two sentences (one space or two). The copy
//! the leak came from agrees with all of them, any other copy with about
//! half. A copy is named only when it alone agrees with nearly all votes,
//! and there are enough of them; two copies that together explain the
//! excerpt (and neither alone) are named as candidates — a collusion, or
//! an excerpt pasted from two sources.
//!
//! A leak with no look-alike letter at all where a copy would have about
//! one in two was stripped (or never marked): only its sentence spacing
//! votes then, which a confusables pass leaves alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::{read, CopyKey, Layout, MarkSecret, Reading, Spacing, SHINGLE};
use crate::mark::index::CopyInfo;
use crate::store::{Store, StoreError};

/// Fewest votes that can name anyone.
pub const MIN_VOTES: usize = 16;
/// Share of the votes a copy must agree with to be named.
pub const AGREEMENT: f64 = 0.9;
/// Shingles found in more messages than this are boilerplate: they match
/// no message.
const BOILERPLATE: usize = 64;
/// Most expected number of copies of the message that would agree as well
/// by chance, for a copy to be named: at the limit, one trace in 100,000
/// could name someone by chance (21 votes all agreeing, with 20 copies).
pub const SIGNIFICANCE: f64 = 1e-5;

/// P(X ≥ k) for X ~ Binomial(n, ½): the chance that a copy the leak did not
/// come from agrees with `k` of `n` votes.
fn tail(n: usize, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // C(n, i) / 2^n from i = n down to k; 2^-n underflows to 0 for very
    // long leaks, which are significant anyway.
    let mut term = 0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX));
    let mut sum = 0.0;
    for i in (k..=n).rev() {
        sum += term;
        term *= i as f64 / (n - i + 1) as f64;
    }
    sum.min(1.0)
}

/// What the tracer concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// One copy: its recipient.
    Attributed {
        /// The copy, and so its recipient.
        copy: CopyInfo,
        /// What points to it, one line each, for the PST to weigh.
        evidence: Vec<String>,
    },
    /// Several copies are possible; none is named alone.
    Candidates {
        /// The copies that agree as well as any.
        copies: Vec<CopyInfo>,
        /// What points to them, one line each.
        evidence: Vec<String>,
    },
    /// No copy is named.
    NoMatch {
        /// Why: no marks found, too few votes, or no copy of that message.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, c: &CopyInfo| {
            writeln!(
                f,
                "  {} <{}>  copy {}  case {}  list {}  message {}",
                c.member,
                c.email,
                super::copy_id_hex(c.copy_id),
                c.case.as_deref().unwrap_or("-"),
                c.list,
                c.message
            )
        };
        match self {
            Verdict::Attributed { copy, evidence } => {
                writeln!(f, "attributed to:")?;
                line(f, copy)?;
                writeln!(f, "evidence:")?;
                evidence.iter().try_for_each(|e| writeln!(f, "  - {e}"))
            }
            Verdict::Candidates { copies, evidence } => {
                match copies.len() {
                    1 => writeln!(
                        f,
                        "1 candidate, not attributed: the evidence is too weak to name its recipient:"
                    )?,
                    n => writeln!(f, "{n} candidates; the evidence names no single recipient:")?,
                }
                copies.iter().try_for_each(|c| line(f, c))?;
                writeln!(f, "evidence:")?;
                evidence.iter().try_for_each(|e| writeln!(f, "  - {e}"))
            }
            Verdict::NoMatch { reason } => writeln!(f, "no match: {reason}"),
        }
    }
}

/// Whether `bytes` hold an armored OpenPGP message: a copy as it was
/// sent, which shows nothing of its marks until decrypted.
fn is_ciphertext(bytes: &[u8]) -> bool {
    bytes
        .windows(27)
        .any(|w| w == b"-----BEGIN PGP MESSAGE-----")
}

/// Traces `leak` against the copies recorded in `store`.
pub fn trace(store: &Store, secret: &MarkSecret, leak: &[u8]) -> Result<Verdict, StoreError> {
    let leak_bytes = leak;
    let leak = Leak::read(leak);
    let mut evidence = Vec::new();
    let mut direct: Vec<CopyInfo> = Vec::new();
    let mut named = |id: u64, what: &str, direct: &mut Vec<CopyInfo>| -> Result<(), StoreError> {
        if let Some(copy) = crate::mark::index::copy(store, id)? {
            evidence.push(format!(
                "{what} names copy {} ({})",
                super::copy_id_hex(id),
                copy.member
            ));
            if !direct.iter().any(|c| c.copy_id == id) {
                direct.push(copy);
            }
        }
        Ok(())
    };
    for id in &leak.headers {
        named(*id, "header X-Embargod-Copy", &mut direct)?;
    }
    for id in visible_copy_ids(&leak.text) {
        named(id, "visible line", &mut direct)?;
    }

    let (reading, cut) = leak.reading();
    let invisible = invisible_mark(store, secret, &leak.text, &reading, &cut)?;
    match invisible {
        Mark::One(copy, note) => {
            evidence.push(note);
            if direct.iter().any(|c| c.copy_id != copy.copy_id) {
                let mut copies = direct;
                if !copies.iter().any(|c| c.copy_id == copy.copy_id) {
                    copies.push(copy);
                }
                evidence.push(
                    "the marks disagree; someone may have planted a copy's header or line".into(),
                );
                return Ok(Verdict::Candidates { copies, evidence });
            }
            Ok(Verdict::Attributed { copy, evidence })
        }
        Mark::Several(copies, note) => {
            evidence.push(note);
            let mut all = copies;
            for copy in direct {
                if !all.iter().any(|c| c.copy_id == copy.copy_id) {
                    all.push(copy);
                }
            }
            Ok(Verdict::Candidates {
                copies: all,
                evidence,
            })
        }
        // A header field or a visible line is text anyone can copy into a
        // leak (a member quoting their own copy's line, say): on its own it
        // names a candidate, never the culprit.
        Mark::None(_) if direct.is_empty() && is_ciphertext(leak_bytes) => Ok(Verdict::NoMatch {
            reason: "this is an encrypted copy (an OpenPGP message): decrypt it with the \
                     member's key first, then trace what it says"
                .into(),
        }),
        Mark::None(reason) if direct.is_empty() => Ok(Verdict::NoMatch { reason }),
        Mark::None(reason) => {
            evidence.push(format!("invisible mark: {reason}"));
            evidence.push(
                "only plain text names this copy, and anyone can copy a header field or a \
                 visible line into a leak"
                    .into(),
            );
            Ok(Verdict::Candidates {
                copies: direct,
                evidence,
            })
        }
    }
}

enum Mark {
    One(CopyInfo, String),
    Several(Vec<CopyInfo>, String),
    None(String),
}

/// One place of the leak that can carry a mark.
enum Vote {
    /// A prose word (index into the reading's words): look-alike or not.
    Letter(usize),
    /// The white space between sentences or at a line end (index into the
    /// reading's gaps).
    Spacing(usize),
}

/// The votes of `reading` for the copies of the message it comes from.
fn invisible_mark(
    store: &Store,
    secret: &MarkSecret,
    text: &str,
    reading: &Reading,
    cut: &[bool],
) -> Result<Mark, StoreError> {
    let words = &reading.words;
    if words.len() < SHINGLE {
        return Ok(Mark::None("too little prose".into()));
    }
    // Which message does each position's shingle come from? Shingles of
    // skeletons (what the index holds), and of canonical words for
    // messages marked before those.
    let skeletons: Vec<&str> = words.iter().map(|w| w.skeleton.as_str()).collect();
    let canonicals: Vec<&str> = words.iter().map(|w| w.canonical.as_str()).collect();
    // message → (shingle ends, matched by a skeleton shingle)
    let mut positions: BTreeMap<u64, (Vec<usize>, bool)> = BTreeMap::new();
    let mut cache: HashMap<u64, Vec<u64>> = HashMap::new();
    for end in SHINGLE - 1..words.len() {
        let span = end + 1 - SHINGLE..=end;
        for (shingle, modern) in [
            (secret.shingle(&skeletons[span.clone()]), true),
            (secret.legacy_shingle(&canonicals[span]), false),
        ] {
            let messages = match cache.get(&shingle) {
                Some(m) => m.clone(),
                None => {
                    // Boilerplate that many messages share (a template's
                    // greeting, a standard paragraph) says nothing of which
                    // message the leak is; it would only cost time.
                    let mut m =
                        crate::mark::index::messages_with_shingle(store, shingle, BOILERPLATE)?;
                    if m.len() > BOILERPLATE {
                        m.clear();
                    }
                    cache.insert(shingle, m.clone());
                    m
                }
            };
            for message in messages {
                let entry = positions.entry(message).or_default();
                if entry.0.last() != Some(&end) {
                    entry.0.push(end);
                }
                entry.1 |= modern;
            }
        }
    }
    let Some((&message, (ends, modern))) = positions.iter().max_by_key(|(_, (ends, _))| ends.len())
    else {
        return Ok(Mark::None("the text matches no marked message".into()));
    };
    // The words inside matched shingles vote (each needs its word before).
    let mut covered = vec![false; words.len()];
    for &end in ends {
        covered[end + 1 - SHINGLE..=end]
            .iter_mut()
            .for_each(|c| *c = true);
    }
    let letters: Vec<(usize, Vote)> = (1..words.len())
        .filter(|&i| {
            // The first word of a paragraph: a leak often puts other text
            // before it, so the word its bit is keyed on is not there.
            let paragraph_start = text[words[i - 1].end..words[i].start]
                .split('\n')
                .skip(1)
                .any(|line| {
                    line.trim_matches(|c: char| c.is_whitespace() || c == '>')
                        .is_empty()
                });
            covered[i]
                && words[i].markable
                && !cut[i]
                && !paragraph_start
                && !reading.part_starts.contains(&i)
        })
        .map(|i| (words[i].start, Vote::Letter(i)))
        .collect();
    // Messages marked before the spacing marks have none to read.
    let gaps = |kind: Spacing| -> Vec<usize> {
        reading
            .gaps
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                g.kind == kind
                    && *modern
                    && covered[g.before]
                    && covered[g.after]
                    && !cut[g.before]
                    && !cut[g.after]
            })
            .map(|(i, _)| i)
            .collect()
    };
    let shows = |vote: &Vote| match vote {
        Vote::Letter(i) => words[*i].marked,
        Vote::Spacing(g) => reading.gaps[*g].spacing == 1,
    };
    // A mark that shows one form only in the whole leak was stripped (or
    // the lines re-wrapped), or the text was never marked: its votes say
    // nothing of any copy.
    let mut channels = Vec::new();
    let mut sites: Vec<(usize, Vote)> = Vec::new();
    if letters.iter().any(|(_, v)| shows(v)) {
        channels.push(format!("{} words", letters.len()));
        sites.extend(letters);
    } else if letters.len() >= MIN_VOTES {
        channels.push(format!(
            "no look-alike letter in {} words that would carry about half: stripped, or never marked",
            letters.len()
        ));
    }
    let varied = |gaps: &[usize]| {
        gaps.iter()
            .any(|&g| reading.gaps[g].spacing != reading.gaps[gaps[0]].spacing)
    };
    // Line ends of format=flowed text nearly all end in one space (its
    // soft breaks); a copy's marks leave one at about half of them.
    let line_ends = gaps(Spacing::LineEnd);
    let flowed = line_ends
        .iter()
        .filter(|&&g| reading.gaps[g].spacing == 1)
        .count();
    let line_ends_read = varied(&line_ends) && flowed * 100 < line_ends.len() * 85;
    // Sentence spacing is read when it varies, or when the line ends show
    // that the leak's white space was left as it came (a copy may well have
    // one spacing at its few sentence ends).
    let sentences = gaps(Spacing::Sentence);
    if varied(&sentences) || line_ends_read {
        channels.push(format!("{} sentence spaces", sentences.len()));
        sites.extend(
            sentences
                .iter()
                .map(|&g| (reading.gaps[g].start, Vote::Spacing(g))),
        );
    }
    if line_ends_read {
        channels.push(format!("{} line ends", line_ends.len()));
        sites.extend(
            line_ends
                .iter()
                .map(|&g| (reading.gaps[g].start, Vote::Spacing(g))),
        );
    }
    // Each keyed input votes once, however often the leak repeats it (an
    // excerpt pasted twice, the same text in a plain and an HTML part);
    // one that shows both ways votes not at all.
    let input = |vote: &Vote| match vote {
        Vote::Letter(i) => (
            0,
            words[i - 1].canonical.as_str(),
            words[*i].canonical.as_str(),
        ),
        Vote::Spacing(g) => {
            let gap = &reading.gaps[*g];
            let kind = 1 + u8::from(gap.kind == Spacing::LineEnd);
            (
                kind,
                words[gap.before].skeleton.as_str(),
                words[gap.after].skeleton.as_str(),
            )
        }
    };
    let mut seen: HashMap<(u8, &str, &str), (bool, bool)> = HashMap::new();
    for (_, vote) in &sites {
        let entry = seen.entry(input(vote)).or_insert((shows(vote), false));
        entry.1 |= entry.0 != shows(vote);
    }
    sites.sort_by_key(|(at, _)| *at);
    let mut kept = std::collections::HashSet::new();
    sites.retain(|(_, vote)| {
        let key = input(vote);
        !seen[&key].1 && kept.insert(key)
    });
    let channels = channels.join("; ");
    if sites.len() < MIN_VOTES {
        return Ok(Mark::None(format!(
            "only {} marks match message {message} ({channels}); at least {MIN_VOTES} are needed to name anyone",
            sites.len()
        )));
    }
    let copies = crate::mark::index::copies_of(store, message)?;
    // One bit per site per copy: does the copy agree with what the leak shows?
    let agree: Vec<Vec<bool>> = copies
        .iter()
        .map(|copy| {
            let key: CopyKey = secret.copy_key(copy.copy_id);
            sites
                .iter()
                .map(|(_, vote)| {
                    let expected = match vote {
                        Vote::Letter(i) => key.bit(&words[i - 1].canonical, &words[*i].canonical),
                        Vote::Spacing(g) => {
                            let gap = &reading.gaps[*g];
                            key.spacing(
                                gap.kind,
                                &words[gap.before].skeleton,
                                &words[gap.after].skeleton,
                            ) == 1
                        }
                    };
                    expected == shows(vote)
                })
                .collect()
        })
        .collect();
    let n = sites.len();
    let needed = (n as f64 * AGREEMENT).ceil() as usize;
    let score = |votes: &[bool]| votes.iter().filter(|&&v| v).count();
    // Strong: agrees with nearly all votes, and no copy of this many would
    // agree as well by chance (a copy that is not the source agrees with
    // each vote at even odds).
    let chance = |agreed: usize, votes: usize| copies.len() as f64 * tail(votes, agreed);
    let mut strong: Vec<usize> = (0..copies.len())
        .filter(|&c| score(&agree[c]) >= needed && chance(score(&agree[c]), n) <= SIGNIFICANCE)
        .collect();
    strong.sort_by_key(|&c| std::cmp::Reverse(score(&agree[c])));
    let summary = |c: usize| format!("{} of {n} marks agree ({channels})", score(&agree[c]));
    match strong.as_slice() {
        [one] => {
            return Ok(Mark::One(
                copies[*one].clone(),
                format!(
                    "invisible mark: {} (message {message}; other copies at most {})",
                    summary(*one),
                    {
                        (0..copies.len())
                            .filter(|c| c != one)
                            .map(|c| score(&agree[c]))
                            .max()
                            .unwrap_or(0)
                    }
                ),
            ))
        }
        [] => {}
        several => {
            return Ok(Mark::Several(
                several.iter().map(|&c| copies[c].clone()).collect(),
                format!(
                    "invisible mark: {} copies agree with {needed} or more of {n} marks",
                    several.len()
                ),
            ))
        }
    }
    // No copy alone: is it an excerpt from one copy followed by one from
    // another? Each side must name its copy on its own terms (enough votes,
    // nearly all agreeing). Two random copies together "explain" most
    // votes of any text, so a looser rule would name people for nothing.
    let agreed_before: Vec<Vec<usize>> = agree
        .iter()
        .map(|votes| {
            std::iter::once(0)
                .chain(votes.iter().scan(0, |sum, &v| {
                    *sum += usize::from(v);
                    Some(*sum)
                }))
                .collect()
        })
        .collect();
    let enough = |agreed: usize, votes: usize| {
        votes >= MIN_VOTES
            && agreed as f64 >= votes as f64 * AGREEMENT
            && chance(agreed, votes) * copies.len() as f64 <= SIGNIFICANCE
    };
    // The two copies that agree most with a span, best first.
    let top_two = |agreed: &dyn Fn(usize) -> usize| {
        let mut top: [Option<(usize, usize)>; 2] = [None, None]; // (agreeing, copy)
        for c in 0..copies.len() {
            let entry = Some((agreed(c), c));
            if entry > top[0] {
                top = [entry, top[0]];
            } else if entry > top[1] {
                top[1] = entry;
            }
        }
        top
    };
    // (first, second, split, agreeing): linear in copies for each split.
    let mut best: Option<(usize, usize, usize, usize)> = None;
    for split in MIN_VOTES..=n.saturating_sub(MIN_VOTES) {
        let heads = top_two(&|c| agreed_before[c][split]);
        let tails = top_two(&|c| agreed_before[c][n] - agreed_before[c][split]);
        for (head, first) in heads.into_iter().flatten() {
            for (tail, second) in tails.into_iter().flatten() {
                if first != second
                    && enough(head, split)
                    && enough(tail, n - split)
                    && best.is_none_or(|(.., total)| head + tail > total)
                {
                    best = Some((first, second, split, head + tail));
                }
            }
        }
    }
    match best {
        Some((first, second, split, _)) => {
            let head = agreed_before[first][split];
            let tail = agreed_before[second][n] - agreed_before[second][split];
            Ok(Mark::Several(
                vec![copies[first].clone(), copies[second].clone()],
                format!(
                    "invisible mark: no single copy explains the text, but its first {split} marks \
                     agree with one copy ({head} of them) and the other {} with another ({tail}): \
                     an excerpt from two copies",
                    n - split
                ),
            ))
        }
        None => Ok(Mark::None(format!(
            "{n} marks match message {message} ({channels}), but no copy agrees with enough of them"
        ))),
    }
}

/// Nested messages read at most this deep.
const MAX_DEPTH: usize = 8;

/// What a leak holds: all its text, each part with how it is laid out,
/// and the copy ids of any header fields.
#[derive(Debug, Default)]
struct Leak {
    text: String,
    parts: Vec<(String, Layout)>,
    headers: Vec<u64>,
}

impl Leak {
    /// Reads `bytes` as a message (every part, attached messages and digest
    /// entries too; HTML as shown) or else as text (or HTML) on its own.
    /// No-break spaces read as spaces, as a copy from a browser gives them.
    fn read(bytes: &[u8]) -> Leak {
        use mail_parser::MimeHeaders;
        let mut leak = Leak::default();
        if let Some(message) = crate::mime::parse(bytes)
            .filter(|m| m.header("From").is_some() || m.content_type().is_some())
        {
            leak.message(&message, 0);
        }
        if leak.text.trim().is_empty() {
            leak.text.clear();
            leak.parts.clear();
            let text = String::from_utf8_lossy(bytes);
            match looks_like_html(&text)
                .then(|| super::html::render(&text))
                .flatten()
            {
                Some(rendered) => leak.push(&rendered, Layout::Flowed),
                None => leak.push(&text, Layout::Plain),
            }
        }
        // A copy's header forwarded inline is text.
        let inline: Vec<u64> = leak
            .text
            .lines()
            .filter_map(|line| {
                let value = line
                    .trim_start_matches(['>', ' '])
                    .strip_prefix("X-Embargod-Copy:")?;
                u64::from_str_radix(value.trim(), 16).ok()
            })
            .collect();
        leak.headers.extend(inline);
        leak
    }

    /// Every part read on its own (what one part opens, a fence or a
    /// signature, does not hold over the next), as one reading; and for
    /// each word whether it is in a sentence the leak cut (its first when
    /// the part starts inside one, its last when it stops inside one).
    /// Whether a sentence is prose can hang on the part cut away, so
    /// those words do not vote.
    fn reading(&self) -> (Reading, Vec<bool>) {
        let mut out = Reading::default();
        let mut cut = Vec::new();
        let mut base = 0;
        for (text, layout) in &self.parts {
            let words = out.words.len();
            let part = read(text, *layout);
            let (head, tail) = cut_sentences(text);
            cut.extend(part.words.iter().map(|w| w.start < head || w.start >= tail));
            out.words
                .extend(part.words.into_iter().map(|w| super::Word {
                    start: w.start + base,
                    end: w.end + base,
                    ..w
                }));
            out.gaps.extend(part.gaps.into_iter().map(|g| super::Gap {
                start: g.start + base,
                end: g.end + base,
                before: g.before + words,
                after: g.after + words,
                ..g
            }));
            out.part_starts.push(words);
            base += text.len() + 1;
        }
        (out, cut)
    }

    fn message(&mut self, message: &mail_parser::Message<'_>, depth: usize) {
        use mail_parser::{MimeHeaders, PartType};
        for part in &message.parts {
            if let Some(id) = part
                .headers
                .iter()
                .find(|h| h.name.as_str().eq_ignore_ascii_case("X-Embargod-Copy"))
                .and_then(|h| h.value.as_text())
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            {
                self.headers.push(id);
            }
            match &part.body {
                PartType::Text(text) => {
                    let flowed = part
                        .content_type()
                        .and_then(|ct| ct.attribute("format"))
                        .is_some_and(|f| f.eq_ignore_ascii_case("flowed"));
                    self.push(
                        text,
                        if flowed {
                            Layout::Flowed
                        } else {
                            Layout::Plain
                        },
                    );
                }
                // Rendered lines end with nothing: no line-end marks.
                PartType::Html(html) => match super::html::render(html) {
                    Some(rendered) => self.push(&rendered, Layout::Flowed),
                    None => self.push(html, Layout::Plain),
                },
                PartType::Message(inner) if depth < MAX_DEPTH => self.message(inner, depth + 1),
                _ => {}
            }
        }
    }

    /// Adds a part; no-break spaces read as spaces, as a copy from a
    /// browser gives them.
    fn push(&mut self, text: &str, layout: Layout) {
        let text = text.replace('\u{a0}', " ");
        self.text.push_str(&text);
        self.text.push('\n');
        self.parts.push((text, layout));
    }
}

/// Where the whole lines and sentences of `text` start and end (byte
/// offsets). When the text starts inside a sentence (with a small letter),
/// the first line or sentence, whichever ends first, is cut; when it stops
/// inside one, the last line or sentence, whichever starts last.
fn cut_sentences(text: &str) -> (usize, usize) {
    let body = text.trim_start_matches(|c: char| c.is_whitespace() || c == '>');
    let ends: Vec<usize> = text
        .match_indices(['.', '!', '?'])
        .map(|(at, _)| at + 1)
        .filter(|&at| text[at..].starts_with(char::is_whitespace) || at == text.len())
        .collect();
    let trimmed = text.trim_end();
    let head = if body.starts_with(|c: char| c.is_lowercase()) {
        let first_line = text.len() - body.len() + body.find('\n').unwrap_or(body.len());
        ends.first().copied().unwrap_or(text.len()).min(first_line)
    } else {
        0
    };
    let tail = if super::prose::ends_sentence(trimmed) {
        text.len()
    } else {
        let last_line = trimmed.rfind('\n').map_or(0, |n| n + 1);
        ends.last().copied().unwrap_or(0).max(last_line).max(head)
    };
    (head, tail)
}

fn looks_like_html(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["</", "<br", "<p", "<div", "<html"]
        .iter()
        .any(|tag| lower.contains(tag))
}

/// The copy ids in visible "This copy was prepared for …, copy X" lines.
fn visible_copy_ids(text: &str) -> Vec<u64> {
    text.match_indices("This copy was prepared for ")
        .filter_map(|(at, _)| {
            // The line may be re-wrapped: read on to the next sentence end,
            // within a window.
            let rest = &text[at..];
            let mut window = rest.len().min(400);
            while !rest.is_char_boundary(window) {
                window -= 1;
            }
            let rest = &rest[..window];
            let rest = &rest[..rest.find(". ").unwrap_or(rest.len())];
            let copy = rest.rfind("copy ")?;
            let hex: String = rest[copy + 5..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect();
            (hex.len() == 16)
                .then(|| u64::from_str_radix(&hex, 16).ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visible_line_gives_its_copy_id_even_re_wrapped() {
        let line = super::super::visible_line("distro-a", "d@example.org", 0xfeed);
        assert_eq!(visible_copy_ids(&format!("> {line}")), [0xfeed]);
        let wrapped = line.replace(", copy ", ",\n> copy ");
        assert_eq!(visible_copy_ids(&wrapped), [0xfeed]);
        let long = format!("This copy was prepared for {}", "é".repeat(300));
        assert!(visible_copy_ids(&long).is_empty());
    }

    #[test]
    fn binomial_tail() {
        assert!((tail(16, 16) - 1.0 / 65536.0).abs() < 1e-12);
        assert!((tail(16, 15) - 17.0 / 65536.0).abs() < 1e-12);
        assert!((tail(4, 0) - 1.0).abs() < 1e-12);
        assert!(tail(2000, 1900) < 1e-300);
    }

    #[test]
    fn attached_messages_and_html_are_read() {
        let leak = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n\
From: list@example.org\r\nX-Embargod-Copy: 00000000000000ff\r\nContent-Type: text/html\r\n\r\n\
<p>The inner&nbsp;text.</p>\r\n--b--\r\n";
        let read = Leak::read(leak);
        assert_eq!(read.headers, [0xff]);
        assert!(
            read.text.contains("See attached.") && read.text.contains("The inner text."),
            "{}",
            read.text
        );
    }
}
