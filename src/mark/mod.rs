//! Marking each copy so that a leaked one can be traced to its recipient.
//!
//! Four marks, from the easiest to strip to the hardest:
//! 1. an `X-Embargod-Copy` header field in the encrypted entity;
//! 2. a visible line naming the recipient (a deterrent);
//! 3. look-alike letters: in each prose word, a keyed pseudo-random bit
//!    decides whether one letter is swapped for its Cyrillic look-alike
//!    (`a` → `а`);
//! 4. spacing: between two sentences on one line, a second keyed bit
//!    decides between one space and two (in HTML, a space and a no-break
//!    space); at the end of a wrapped prose line, a third decides whether
//!    a space trails it (not in format=flowed text, where a trailing space
//!    is a soft break). All of these are ordinary
//!    typing or invisible, and a Unicode confusables pass (UTS #39
//!    skeleton) leaves them alone, so this mark survives a leaker who
//!    strips the look-alikes. It carries a few bits per sentence and line,
//!    far fewer than (3), so it names a recipient from a longer text, and
//!    re-wrapping loses the line ends.
//!
//! Marks (3) and (4) go only into prose ([`prose`] decides, and when unsure
//! nothing is prose): commands, code, identifiers, fingerprints, URLs,
//! armor and patches are never changed. Their bits depend on the copy and
//! on the words around them, never on a position in the text, so the
//! look-alikes survive what a leak does: quoting, re-wrapping, HTML and
//! back, cutting to an excerpt. Every mark of the excerpt is a vote; [`trace`] counts
//! them. Attachments are never touched, so a patch still applies.

pub mod html;
pub mod index;
pub mod patch;
pub mod prose;
pub mod trace;

use std::ops::Range;

// OpenSSL's SHA-256 (SHA-NI where the CPU has it); a context is cheap to clone,
// so each copy absorbs its key once and every word hashes on from there.
use openssl::sha::Sha256;

pub use prose::Layout;

/// Words shorter than this carry no mark.
const MIN_WORD: usize = 2;
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

/// A word as every version of it reads the same after a Unicode
/// confusables pass (UTS #39 skeleton), look-alikes or not.
fn skeleton(word: &str) -> String {
    let once: String = unicode_security::skeleton(word).collect();
    unicode_security::skeleton(&once.to_lowercase()).collect()
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
    /// The secret of the marks: a domain-separated hash of the store
    /// key, so there is no second secret to keep.
    pub fn derive(store_key: &[u8]) -> MarkSecret {
        MarkSecret(digest(&[b"embargod-mark-v1", store_key]))
    }

    /// The key of one copy's marks.
    pub fn copy_key(&self, copy_id: u64) -> CopyKey {
        CopyKey::new(digest(&[b"copy", &self.0, &copy_id.to_be_bytes()]))
    }

    /// The keyed hash of a shingle of [`Word::skeleton`]s: what the trace
    /// index holds for each message.
    pub fn shingle(&self, skeletons: &[&str]) -> u64 {
        self.keyed(b"shingle-v2", skeletons)
    }

    /// The same over [`Word::canonical`]s: the index of messages marked
    /// before the skeleton shingles (read by [`trace`] only).
    pub fn legacy_shingle(&self, canonicals: &[&str]) -> u64 {
        self.keyed(b"shingle", canonicals)
    }

    /// A keyed 64-bit name for `value` (an address, a Message-ID) in store
    /// keys, so the store never holds it in clear. The same function as
    /// [`MarkSecret::legacy_shingle`], so keys written before stay valid.
    pub fn pseudonym(&self, value: &str) -> u64 {
        self.keyed(b"shingle", &[value])
    }

    /// The id of `member`'s copy of spool entry `message` on `list`: a
    /// keyed hash, so a fan-out re-run after a crash makes the same copy
    /// with the same marks, and nobody without the store key can tell
    /// one member's id from another's.
    pub fn copy_id(&self, message: u64, list: &str, member: &str) -> u64 {
        let d = digest(&[
            b"copy-id",
            &self.0,
            &message.to_be_bytes(),
            list.as_bytes(),
            b"\0",
            member.as_bytes(),
        ]);
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    }

    /// The local part of copy `copy_id`'s Message-ID (32 hex digits):
    /// the same for every attempt, so a recipient's client folds a
    /// duplicate into one, and unlinkable to the copy id.
    pub fn message_id_local(&self, copy_id: u64) -> String {
        let d = digest(&[b"message-id", &self.0, &copy_id.to_be_bytes()]);
        d[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The VERP token of copy `copy_id` (20 hex digits, 80 bits of a
    /// keyed hash): its envelope sender is `OWNER+TOKEN@DOMAIN`, so a
    /// bounce names the copy, and the envelope names neither the member
    /// nor the copy id to anyone without the store key.
    pub fn verp_token(&self, copy_id: u64) -> String {
        let d = digest(&[b"verp", &self.0, &copy_id.to_be_bytes()]);
        crate::digest::hex(&d[..10])
    }

    fn keyed(&self, label: &[u8], words: &[&str]) -> u64 {
        let joined = words.join(" ");
        let d = digest(&[label, &self.0, joined.as_bytes()]);
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    }
}

/// The key of one copy's marks.
pub struct CopyKey {
    /// SHA-256 with the key absorbed: a look-alike bit hashes on from a
    /// clone of it (no new context per word).
    bit: Sha256,
    /// The same after the spacing labels and the key.
    sentence: Sha256,
    line_end: Sha256,
}

impl CopyKey {
    fn new(key: [u8; 32]) -> CopyKey {
        let after = |label: &[u8]| {
            let mut state = Sha256::new();
            state.update(label);
            state.update(&key);
            state
        };
        CopyKey {
            bit: after(b""),
            sentence: after(b"space"),
            line_end: after(b"line-end"),
        }
    }

    /// The look-alike bit of `word` after `prev` ([`Word::canonical`]s):
    /// the low bit of SHA-256(key ‖ prev ‖ 0 ‖ word).
    pub fn bit(&self, prev: &str, word: &str) -> bool {
        let mut state = self.bit.clone();
        state.update(prev.as_bytes());
        state.update(b"\0");
        state.update(word.as_bytes());
        state.finish()[0] & 1 == 1
    }

    /// The spacing of a gap between `before` and `after`
    /// ([`Word::skeleton`]s): between sentences 0 (one space) or 1 (two);
    /// at a line end, how many spaces trail it, up to [`LINE_END_MAX`].
    pub fn spacing(&self, kind: Spacing, before: &str, after: &str) -> u8 {
        let (mut state, mask) = match kind {
            Spacing::Sentence => (self.sentence.clone(), 1),
            Spacing::LineEnd => (self.line_end.clone(), LINE_END_MAX),
        };
        state.update(before.as_bytes());
        state.update(b"\0");
        state.update(after.as_bytes());
        state.finish()[0] & mask
    }
}

/// Most spaces a line-end mark leaves after a line's last word: one bit
/// per wrapped line. (Two or more trailing spaces are a hard line break in
/// Markdown, where an advisory's text often ends up.)
pub const LINE_END_MAX: u8 = 1;

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut state = Sha256::new();
    for part in parts {
        state.update(part);
    }
    state.finish()
}

/// A word of prose: where it is, its canonical forms, and whether it
/// carries a look-alike letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Its first byte in the text.
    pub start: usize,
    /// The byte after its last.
    pub end: usize,
    /// Lower case, look-alikes mapped back to Latin: what the look-alike
    /// bits are keyed on.
    pub canonical: String,
    /// Lower case after a confusables pass: what shingles and spacing
    /// bits are keyed on, so they survive one.
    pub skeleton: String,
    /// Carries a look-alike letter in this copy.
    pub marked: bool,
    /// Has a letter that can take a look-alike.
    pub markable: bool,
}

/// The kinds of white space that carry a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Between two sentences on one line: one space or two.
    Sentence,
    /// At the end of a wrapped prose line: no trailing space or one (not
    /// in HTML, nor in format=flowed text, where a space is a soft break).
    LineEnd,
}

/// White space that carries a mark: where it is, the spacing it shows
/// (see [`CopyKey::spacing`]), and the words on either side (indices into
/// [`Reading::words`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Which kind of white space.
    pub kind: Spacing,
    /// Its first byte in the text.
    pub start: usize,
    /// The byte after its last.
    pub end: usize,
    /// How many spaces it shows (1 or 2; 0 or 1 at a line end).
    pub spacing: u8,
    /// The word before it.
    pub before: usize,
    /// The word after it.
    pub after: usize,
}

/// The places of a text that can carry marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The prose words, in text order.
    pub words: Vec<Word>,
    /// The marked white space between them.
    pub gaps: Vec<Gap>,
    /// When read from several texts (the parts of a leak): the index of
    /// each one's first word. A word's look-alike bit is keyed on the word
    /// before it in its own text.
    pub part_starts: Vec<usize>,
}

/// Reads the prose of `text` (see [`prose`]).
pub fn read(text: &str, layout: Layout) -> Reading {
    let prose = prose::read(text, layout);
    let words = prose
        .words
        .iter()
        .map(|range| {
            let core = &text[range.clone()];
            Word {
                start: range.start,
                end: range.end,
                canonical: canonical(core).to_ascii_lowercase(),
                skeleton: skeleton(core),
                marked: core.chars().any(|c| latin(c).is_some()),
                markable: core
                    .chars()
                    .any(|c| look_alike(c).is_some() || latin(c).is_some()),
            }
        })
        .collect();
    let sentences = prose.gaps.into_iter().map(|(range, before, after)| Gap {
        kind: Spacing::Sentence,
        spacing: u8::from(text[range.clone()].chars().count() > 1),
        start: range.start,
        end: range.end,
        before,
        after,
    });
    let line_ends = prose
        .line_ends
        .into_iter()
        .map(|(range, before, after)| Gap {
            kind: Spacing::LineEnd,
            spacing: range.len().min(usize::from(LINE_END_MAX)) as u8,
            start: range.start,
            end: range.end,
            before,
            after,
        });
    let mut gaps: Vec<Gap> = sentences.chain(line_ends).collect();
    gaps.sort_by_key(|g| g.start);
    Reading {
        words,
        gaps,
        part_starts: vec![0],
    }
}

/// One copy's changes to a text: (byte range, what replaces it), in order
/// and never overlapping.
pub fn edits(
    text: &str,
    reading: &Reading,
    key: &CopyKey,
    layout: Layout,
) -> Vec<(Range<usize>, String)> {
    let mut out = Vec::new();
    let mut gaps = reading.gaps.iter().peekable();
    let mut prev = "";
    for word in &reading.words {
        while let Some(gap) = gaps.next_if(|g| g.end <= word.start) {
            let spacing = key.spacing(
                gap.kind,
                &reading.words[gap.before].skeleton,
                &reading.words[gap.after].skeleton,
            );
            // At most one trailing space (LINE_END_MAX).
            const _: () = assert!(LINE_END_MAX == 1);
            let space = match (gap.kind, spacing, layout) {
                (Spacing::LineEnd, 0, _) => "",
                (Spacing::LineEnd, _, _) => " ",
                (Spacing::Sentence, 0, _) => " ",
                (Spacing::Sentence, _, Layout::Html) => " \u{a0}",
                (Spacing::Sentence, _, _) => "  ",
            };
            if &text[gap.start..gap.end] != space {
                out.push((gap.start..gap.end, space.to_string()));
            }
        }
        // Look-alikes already in the word (a member quoting their own
        // copy) are set back to Latin, so one copy's marks never pass into
        // another's; then the copy's own, one letter at most. One edit per
        // letter, so an edit never spans two HTML text nodes.
        let mut swap = word.markable && key.bit(prev, &word.canonical);
        prev = &word.canonical;
        let letters = &text[word.start..word.end];
        // Look-alikes are never ASCII: a plain ASCII word without a mark
        // of its own is left as it is.
        if !swap && letters.is_ascii() {
            continue;
        }
        for (i, c) in letters.char_indices() {
            let plain = if c.is_ascii() {
                c
            } else {
                latin(c).unwrap_or(c)
            };
            let wanted = match look_alike(plain).filter(|_| swap) {
                Some(cyr) => {
                    swap = false;
                    cyr
                }
                None => plain,
            };
            if wanted != c {
                let at = word.start + i;
                out.push((at..at + c.len_utf8(), wanted.to_string()));
            }
        }
    }
    out
}

/// `text` with `edits` made.
pub fn apply(text: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(text.len() + edits.len() * 2);
    let mut copied = 0;
    for (range, replacement) in edits {
        out.push_str(&text[copied..range.start]);
        out.push_str(replacement);
        copied = range.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Plain `text` with the marks of `key`.
pub fn mark_text(text: &str, key: &CopyKey) -> String {
    let reading = read(text, Layout::Plain);
    apply(text, &edits(text, &reading, key, Layout::Plain))
}

/// The keyed shingles of a text's words, for the trace index.
pub fn shingles(secret: &MarkSecret, words: &[Word]) -> Vec<u64> {
    let skeletons: Vec<&str> = words.iter().map(|w| w.skeleton.as_str()).collect();
    let mut out: Vec<u64> = skeletons
        .windows(SHINGLE)
        .map(|w| secret.shingle(w))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The keyed shingles of a plain text's prose.
pub fn text_shingles(secret: &MarkSecret, text: &str) -> Vec<u64> {
    shingles(secret, &read(text, Layout::Plain).words)
}

/// The visible line that names the recipient of a copy.
pub fn visible_line(member: &str, email: &str, copy_id: u64) -> String {
    format!(
        "This copy was prepared for {member} <{email}>, copy {}. \
         Do not forward it: every copy is marked and a leaked one can be traced.\n",
        copy_id_hex(copy_id)
    )
}

/// A copy id as 16 lower-case hex digits, as the copy's `X-Embargod-Copy:` field and the ledger show it.
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
        assert_eq!(canonical(&a).replace("  ", " "), PROSE);
        // URLs and identifiers are left alone.
        assert!(a.contains("https://example.org/x") && a.contains("KAP-2026-0001"));
        let words = read(&a, Layout::Plain).words;
        let marked = words.iter().filter(|w| w.marked).count();
        let all = words.iter().filter(|w| w.markable).count();
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

    #[test]
    fn look_alikes_that_came_in_are_replaced_by_the_copy_own() {
        let secret = MarkSecret::derive(&[9; 32]);
        let quoted = mark_text(PROSE, &secret.copy_key(1));
        let again = mark_text(&quoted, &secret.copy_key(2));
        assert_eq!(again, mark_text(PROSE, &secret.copy_key(2)));
    }

    #[test]
    fn copy_keys_hash_as_one_sha256_over_key_and_words() {
        // The cloned-context bits equal one SHA-256 over the whole input:
        // copies marked before read back the same.
        let secret = MarkSecret::derive(b"store key");
        let key = digest(&[b"copy", &secret.0, &42u64.to_be_bytes()]);
        let copy = secret.copy_key(42);
        for (prev, word) in [("", "the"), ("the", "parser"), ("parser", "copies")] {
            let whole = digest(&[&key, prev.as_bytes(), b"\0", word.as_bytes()]);
            assert_eq!(copy.bit(prev, word), whole[0] & 1 == 1);
            let space = digest(&[b"space", &key, prev.as_bytes(), b"\0", word.as_bytes()]);
            assert_eq!(copy.spacing(Spacing::Sentence, prev, word), space[0] & 1);
            let end = digest(&[b"line-end", &key, prev.as_bytes(), b"\0", word.as_bytes()]);
            assert_eq!(
                copy.spacing(Spacing::LineEnd, prev, word),
                end[0] & LINE_END_MAX
            );
        }
    }

    #[test]
    fn copy_ids_are_stable_keyed_and_unambiguous() {
        let secret = MarkSecret::derive(b"store key");
        let id = secret.copy_id(7, "security", "alice");
        assert_eq!(
            id,
            secret.copy_id(7, "security", "alice"),
            "a re-run makes the same copy"
        );
        let others = [
            secret.copy_id(7, "security", "bob"),
            secret.copy_id(8, "security", "alice"),
            secret.copy_id(7, "distributors", "alice"),
            MarkSecret::derive(b"another store").copy_id(7, "security", "alice"),
        ];
        assert!(others.iter().all(|other| *other != id), "{others:?}");
        assert_ne!(secret.copy_id(7, "ab", "c"), secret.copy_id(7, "a", "bc"));
        let local = secret.message_id_local(id);
        assert_eq!(local.len(), 32);
        assert_eq!(local, secret.message_id_local(id));
        assert!(
            !local.contains(&copy_id_hex(id)),
            "the Message-ID does not show the copy id"
        );
        assert_ne!(local, secret.message_id_local(others[0]));
    }

    #[test]
    fn spacing_marks_survive_a_confusables_pass() {
        let secret = MarkSecret::derive(&[9; 32]);
        let text = "The tool fails. It writes outside the tree. We have a fix.\n\
Please test it. Release is next week. Tell nobody yet.\n";
        let spacings: Vec<Vec<u8>> = (0..8)
            .map(|id| {
                let marked = mark_text(text, &secret.copy_key(id));
                // What a leaker's confusables pass leaves.
                let stripped: String = marked
                    .chars()
                    .flat_map(|c| {
                        if c.is_ascii() {
                            vec![c]
                        } else {
                            unicode_security::skeleton(&c.to_string()).collect()
                        }
                    })
                    .collect();
                assert!(stripped.is_ascii());
                read(&stripped, Layout::Plain)
                    .gaps
                    .iter()
                    .map(|g| g.spacing)
                    .collect()
            })
            .collect();
        assert_eq!(spacings[0].len(), 5);
        let distinct: std::collections::HashSet<_> = spacings.iter().collect();
        assert!(distinct.len() >= 6, "{spacings:?}");
    }
}
