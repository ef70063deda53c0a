//! Marking each copy so that a leaked one can be traced to its recipient.
//!
//! Three marks, from the easiest to strip to the hardest:
//! 1. an `X-Embargod-Copy` header field in the encrypted entity;
//! 2. a visible line naming the recipient (a deterrent);
//! 3. an invisible mark spread through the prose of the first text part:
//!    in each word, a keyed pseudo-random bit decides whether one letter is
//!    swapped for its Cyrillic look-alike (`a` → `а`). The bit depends on
//!    the copy and on the word and the word before it, never on a position
//!    in the text, so the mark survives what a leak does: quoting,
//!    re-wrapping, whitespace changes, HTML and back, cutting to an
//!    excerpt. Every word of the excerpt is a vote; [`trace`] counts them.
//!
//! Patches (from the first line of a diff on) and attachments are never
//! touched, so a patch still applies.

pub mod patch;
pub mod trace;

use sequoia_openpgp::types::HashAlgorithm;

/// Words shorter than this carry no mark.
const MIN_WORD: usize = 2;
/// What may surround a word without making it something else.
const PUNCTUATION: &str = "\"'`()[]{}<>.,;:!?*_";
/// Words per shingle: the unit by which a leak is matched to a message.
pub const SHINGLE: usize = 4;

/// Latin letters and their Cyrillic look-alikes.
const HOMOGLYPHS: &[(char, char)] = &[
    ('a', 'а'),
    ('c', 'с'),
    ('e', 'е'),
    ('o', 'о'),
    ('p', 'р'),
    ('x', 'х'),
    ('y', 'у'),
    ('i', 'і'),
    ('j', 'ј'),
    ('s', 'ѕ'),
    ('A', 'А'),
    ('B', 'В'),
    ('C', 'С'),
    ('E', 'Е'),
    ('H', 'Н'),
    ('I', 'І'),
    ('J', 'Ј'),
    ('K', 'К'),
    ('M', 'М'),
    ('O', 'О'),
    ('P', 'Р'),
    ('S', 'Ѕ'),
    ('T', 'Т'),
    ('X', 'Х'),
];

fn look_alike(c: char) -> Option<char> {
    HOMOGLYPHS
        .iter()
        .find(|(latin, _)| *latin == c)
        .map(|(_, cyr)| *cyr)
}

fn latin(c: char) -> Option<char> {
    HOMOGLYPHS
        .iter()
        .find(|(_, cyr)| *cyr == c)
        .map(|(latin, _)| *latin)
}

/// `text` with every look-alike letter mapped back to Latin: what a
/// reader sees.
pub fn canonical(text: &str) -> String {
    text.chars().map(|c| latin(c).unwrap_or(c)).collect()
}

/// The secret all marks of one installation derive from (itself derived
/// from the store key, so it is as private as the spool).
#[derive(Clone)]
pub struct MarkSecret([u8; 32]);

impl std::fmt::Debug for MarkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarkSecret(..)")
    }
}

impl MarkSecret {
    pub fn derive(store_key: &[u8]) -> MarkSecret {
        MarkSecret(digest(&[b"embargod-mark-v1", store_key]))
    }

    /// The key of one copy's invisible mark.
    pub fn copy_key(&self, copy_id: u64) -> CopyKey {
        CopyKey(digest(&[b"copy", &self.0, &copy_id.to_be_bytes()]))
    }

    /// The keyed hash of a shingle (SHINGLE canonical words).
    pub fn shingle(&self, words: &[String]) -> u64 {
        let joined = words.join(" ");
        let d = digest(&[b"shingle", &self.0, joined.as_bytes()]);
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    }
}

/// The key of one copy's mark.
pub struct CopyKey([u8; 32]);

impl CopyKey {
    /// The mark bit of `word` after `prev` (both canonical).
    pub fn bit(&self, prev: &str, word: &str) -> bool {
        digest(&[&self.0, prev.as_bytes(), b"\0", word.as_bytes()])[0] & 1 == 1
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = HashAlgorithm::SHA256
        .context()
        .expect("SHA-256 is supported")
        .for_digest();
    for part in parts {
        ctx.update(part);
    }
    ctx.into_digest()
        .expect("digest")
        .try_into()
        .expect("32 bytes")
}

/// A word of prose: where it is, its canonical form, and whether it
/// carries a look-alike letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub start: usize,
    pub end: usize,
    /// Lower case, look-alikes mapped back to Latin.
    pub canonical: String,
    pub marked: bool,
    /// Has a letter that can take a look-alike.
    pub markable: bool,
}

/// The words of `text` that can carry the mark: whitespace-separated
/// chunks whose core (without surrounding punctuation) is letters only.
/// URLs, addresses, identifiers and numbers are left out. Reading stops at
/// the first line of a diff, so patches are never part of it.
pub fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(['>', ' ', '\t']);
        if ["diff --git ", "--- a/", "+++ b/", "Index: ", "@@ "]
            .iter()
            .any(|start| trimmed.starts_with(start))
        {
            break;
        }
        let mut pos = 0;
        for chunk in line.split(|c: char| c.is_whitespace()) {
            let chunk_start = offset + pos;
            pos += chunk.len()
                + line[pos + chunk.len()..]
                    .chars()
                    .next()
                    .map_or(0, char::len_utf8);
            let core = chunk.trim_matches(|c: char| PUNCTUATION.contains(c));
            if core.chars().count() < MIN_WORD
                || !core
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || latin(c).is_some())
            {
                continue;
            }
            let lead = chunk.len()
                - chunk
                    .trim_start_matches(|c: char| PUNCTUATION.contains(c))
                    .len();
            let canonical: String = core
                .chars()
                .map(|c| latin(c).unwrap_or(c).to_ascii_lowercase())
                .collect();
            out.push(Word {
                start: chunk_start + lead,
                end: chunk_start + lead + core.len(),
                marked: core.chars().any(|c| latin(c).is_some()),
                markable: core
                    .chars()
                    .any(|c| look_alike(c).is_some() || latin(c).is_some()),
                canonical,
            });
        }
        offset += line.len();
    }
    out
}

/// `text` with the invisible mark of `key`: in each markable word whose
/// bit is set, its first markable letter swapped for the look-alike.
pub fn mark_text(text: &str, key: &CopyKey) -> String {
    let words = words(text);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut copied = 0;
    let mut prev = String::new();
    for word in &words {
        if word.markable && key.bit(&prev, &word.canonical) {
            out.push_str(&text[copied..word.start]);
            let mut swapped = false;
            for c in text[word.start..word.end].chars() {
                match look_alike(c).filter(|_| !swapped) {
                    Some(cyr) => {
                        out.push(cyr);
                        swapped = true;
                    }
                    None => out.push(c),
                }
            }
            copied = word.end;
        }
        prev.clone_from(&word.canonical);
    }
    out.push_str(&text[copied..]);
    out
}

/// The keyed shingles of a text's words, for the trace index.
pub fn shingles(secret: &MarkSecret, words: &[Word]) -> Vec<u64> {
    let canonical: Vec<String> = words.iter().map(|w| w.canonical.clone()).collect();
    let mut out: Vec<u64> = canonical
        .windows(SHINGLE)
        .map(|w| secret.shingle(w))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The visible line that names the recipient of a copy.
pub fn visible_line(member: &str, email: &str, copy_id: u64) -> String {
    format!(
        "This copy was prepared for {member} <{email}>, copy {}. \
         Do not forward it: every copy is marked and a leaked one can be traced.\n",
        copy_id_hex(copy_id)
    )
}

pub fn copy_id_hex(copy_id: u64) -> String {
    format!("{copy_id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "We found that the parser copies the input into a fixed buffer without \
checking its length. An attacker who controls the configuration file can overwrite the heap \
and, with some effort, execute code as the service user. Please keep this private until \
the fix is released; see https://example.org/x and KAP-2026-0001 for details.\n";

    #[test]
    fn marks_are_invisible_to_canonical_reading_and_differ_per_copy() {
        let secret = MarkSecret::derive(&[9; 32]);
        let a = mark_text(PROSE, &secret.copy_key(1));
        let b = mark_text(PROSE, &secret.copy_key(2));
        assert_ne!(a, b);
        assert_eq!(canonical(&a), PROSE);
        // URLs and identifiers are left alone.
        assert!(a.contains("https://example.org/x") && a.contains("KAP-2026-0001"));
        let marked = words(&a).iter().filter(|w| w.marked).count();
        let all = words(&a).iter().filter(|w| w.markable).count();
        assert!(
            marked * 3 > all && marked * 3 < all * 2,
            "about half: {marked} of {all}"
        );
    }

    #[test]
    fn patches_are_never_marked() {
        let text = "Please test this.\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old code here\n+new code here\n";
        let secret = MarkSecret::derive(&[9; 32]);
        for id in 0..20 {
            let marked = mark_text(text, &secret.copy_key(id));
            assert!(marked.ends_with("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old code here\n+new code here\n"));
        }
    }
}
