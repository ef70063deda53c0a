//! Tracing a leak: from a suspected leaked text (a whole message, a
//! forwarded copy, a pasted excerpt) back to the copy it came from.
//!
//! The excerpt's words are matched to a message through the keyed shingle
//! index (no content is stored, only keyed hashes of word 4-grams). For
//! each copy of that message, every marked-or-not word is a vote: the copy
//! the leak came from agrees with all of them, any other copy with about
//! half. A copy is named only when it alone agrees with nearly all votes,
//! and there are enough of them; two copies that together explain the
//! excerpt (and neither alone) are named as candidates — a collusion, or
//! an excerpt pasted from two sources.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::{words, CopyKey, MarkSecret, Word, SHINGLE};
use crate::store::{CopyInfo, Store, StoreError};

/// Fewest votes that can name anyone.
pub const MIN_VOTES: usize = 16;
/// Share of the votes a copy must agree with to be named.
pub const AGREEMENT: f64 = 0.9;

/// What the tracer concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// One copy: its recipient.
    Attributed {
        copy: CopyInfo,
        evidence: Vec<String>,
    },
    /// Several copies are possible; none is named alone.
    Candidates {
        copies: Vec<CopyInfo>,
        evidence: Vec<String>,
    },
    NoMatch {
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
                writeln!(
                    f,
                    "{} candidates; the evidence names no single recipient:",
                    copies.len()
                )?;
                copies.iter().try_for_each(|c| line(f, c))?;
                writeln!(f, "evidence:")?;
                evidence.iter().try_for_each(|e| writeln!(f, "  - {e}"))
            }
            Verdict::NoMatch { reason } => writeln!(f, "no match: {reason}"),
        }
    }
}

/// Traces `leak` against the copies recorded in `store`.
pub fn trace(store: &Store, secret: &MarkSecret, leak: &[u8]) -> Result<Verdict, StoreError> {
    let (text, header) = leak_text(leak);
    let mut evidence = Vec::new();
    let mut direct: Vec<CopyInfo> = Vec::new();
    if let Some(id) = header {
        if let Some(copy) = store.copy(id)? {
            evidence.push(format!(
                "header X-Embargod-Copy names copy {}",
                super::copy_id_hex(id)
            ));
            direct.push(copy);
        }
    }
    if let Some(id) = visible_copy_id(&text) {
        if let Some(copy) = store.copy(id)? {
            evidence.push(format!(
                "visible line names copy {} ({})",
                super::copy_id_hex(id),
                copy.member
            ));
            if !direct.iter().any(|c| c.copy_id == id) {
                direct.push(copy);
            }
        }
    }

    let words = words(&text);
    let invisible = invisible_mark(store, secret, &words)?;
    match invisible {
        Mark::One(copy, note) => {
            evidence.push(note);
            if direct.iter().any(|c| c.copy_id != copy.copy_id) {
                let mut copies = direct;
                copies.push(copy);
                copies.dedup_by_key(|c| c.copy_id);
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
        Mark::None(reason) => match direct.len() {
            0 => Ok(Verdict::NoMatch { reason }),
            1 => {
                evidence.push(format!("invisible mark: {reason}"));
                Ok(Verdict::Attributed {
                    copy: direct.remove(0),
                    evidence,
                })
            }
            _ => Ok(Verdict::Candidates {
                copies: direct,
                evidence,
            }),
        },
    }
}

enum Mark {
    One(CopyInfo, String),
    Several(Vec<CopyInfo>, String),
    None(String),
}

/// The votes of `words` for the copies of the messages they come from.
fn invisible_mark(store: &Store, secret: &MarkSecret, words: &[Word]) -> Result<Mark, StoreError> {
    if words.len() < SHINGLE {
        return Ok(Mark::None("too little text".into()));
    }
    // Which message does each position's shingle come from?
    let canonical: Vec<String> = words.iter().map(|w| w.canonical.clone()).collect();
    let mut positions: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut cache: HashMap<u64, Vec<u64>> = HashMap::new();
    for end in SHINGLE - 1..words.len() {
        let shingle = secret.shingle(&canonical[end + 1 - SHINGLE..=end]);
        let messages = match cache.get(&shingle) {
            Some(m) => m.clone(),
            None => {
                let m = store.messages_with_shingle(shingle)?;
                cache.insert(shingle, m.clone());
                m
            }
        };
        for message in messages {
            positions.entry(message).or_default().push(end);
        }
    }
    let Some((&message, sites)) = positions.iter().max_by_key(|(_, sites)| sites.len()) else {
        return Ok(Mark::None("the text matches no marked message".into()));
    };
    let sites: Vec<usize> = sites
        .iter()
        .copied()
        .filter(|&i| words[i].markable)
        .collect();
    if sites.len() < MIN_VOTES {
        return Ok(Mark::None(format!(
            "only {} marked words match message {message}; at least {MIN_VOTES} are needed to name anyone",
            sites.len()
        )));
    }
    let copies = store.copies_of(message)?;
    // One bit per site per copy: does the copy agree with what the leak shows?
    let agree: Vec<Vec<bool>> = copies
        .iter()
        .map(|copy| {
            let key: CopyKey = secret.copy_key(copy.copy_id);
            sites
                .iter()
                .map(|&i| key.bit(&words[i - 1].canonical, &words[i].canonical) == words[i].marked)
                .collect()
        })
        .collect();
    let n = sites.len();
    let needed = (n as f64 * AGREEMENT).ceil() as usize;
    let score = |votes: &[bool]| votes.iter().filter(|&&v| v).count();
    let mut strong: Vec<usize> = (0..copies.len())
        .filter(|&c| score(&agree[c]) >= needed)
        .collect();
    strong.sort_by_key(|&c| std::cmp::Reverse(score(&agree[c])));
    let summary = |c: usize| format!("{} of {} marked words agree", score(&agree[c]), n);
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
                    "invisible mark: {} copies agree with {needed} or more of {n} marked words",
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
        votes >= MIN_VOTES && agreed as f64 >= votes as f64 * AGREEMENT
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
                    "invisible mark: no single copy explains the text, but its first {split} marked words \
                     agree with one copy ({head} of them) and the other {} with another ({tail}): \
                     an excerpt from two copies",
                    n - split
                ),
            ))
        }
        None => Ok(Mark::None(format!(
            "{n} marked words match message {message}, but no copy agrees with enough of them"
        ))),
    }
}

/// The text of a leak and any copy id in its header: a whole message is
/// read part by part (HTML turned into text); anything else as text.
fn leak_text(leak: &[u8]) -> (String, Option<u64>) {
    use mail_parser::{MimeHeaders, PartType};
    if let Some(message) = crate::mime::parse(leak)
        .filter(|m| m.header("From").is_some() || m.content_type().is_some())
    {
        let mut header = None;
        let mut text = String::new();
        for part in &message.parts {
            if let Some(value) = part
                .headers
                .iter()
                .find(|h| h.name.as_str().eq_ignore_ascii_case("X-Embargod-Copy"))
                .and_then(|h| h.value.as_text())
            {
                header = u64::from_str_radix(value.trim(), 16).ok();
            }
            match &part.body {
                PartType::Text(t) => {
                    text.push_str(t);
                    text.push('\n');
                }
                PartType::Html(h) => {
                    text.push_str(&html_to_text(h));
                    text.push('\n');
                }
                _ => {}
            }
        }
        if !text.trim().is_empty() {
            return (text, header);
        }
    }
    let text = String::from_utf8_lossy(leak).into_owned();
    if text.contains("</") || text.contains("<br") || text.contains("<p") {
        (html_to_text(&text), None)
    } else {
        (text, None)
    }
}

/// The copy id in a visible "This copy was prepared for …, copy X" line.
fn visible_copy_id(text: &str) -> Option<u64> {
    let at = text.find("This copy was prepared for ")?;
    let rest = &text[at..];
    let copy = rest.find(", copy ")?;
    let hex: String = rest[copy + 7..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (hex.len() == 16)
        .then(|| u64::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// Text from HTML: tags dropped (block tags become line ends), entities
/// decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = &rest[open..];
            break;
        };
        let tag = rest[open + 1..open + close]
            .trim_start_matches('/')
            .to_ascii_lowercase();
        if [
            "p",
            "br",
            "div",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "blockquote",
            "pre",
        ]
        .iter()
        .any(|t| {
            tag == *t || tag.starts_with(&format!("{t} ")) || tag.starts_with(&format!("{t}/"))
        }) {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    decode_entities(&out)
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text("<p>Fix &amp; test &#1072;&#x430;</p><p>next<br/>line</p>"),
            "\nFix & test аа\n\nnext\nline\n"
        );
    }

    #[test]
    fn the_visible_line_gives_its_copy_id() {
        let line = super::super::visible_line("distro-a", "d@example.org", 0xfeed);
        assert_eq!(visible_copy_id(&format!("> {line}")), Some(0xfeed));
    }
}
