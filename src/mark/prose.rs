//! Which text is natural-language prose: the only text a copy's marks may
//! change.
//!
//! A security team copies commands, code, settings, fingerprints, hashes
//! and URLs out of what it reads; a mark in any of them breaks the copy
//! (`ѕudo` is "command not found", `fаlse` a setting silently not
//! applied). So the rule is the other way round: a line is prose only when
//! nothing about it looks like anything else, and within a prose line a
//! word is marked only when it is plainly a word. When unsure, not prose.
//!
//! The same reading runs when a copy is marked and when a leak is traced,
//! so both see the same words.

use std::ops::Range;

/// What one line is, for marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Sentences a mark may change.
    Prose,
    /// An empty line.
    Blank,
    /// Not prose, and the rule that said so.
    Other(&'static str),
}

/// How the text is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// text/plain: line ends and indentation mean something.
    Plain,
    /// text/plain; format=flowed (RFC 3676): as plain, but a space at a
    /// line end is a soft line break, so line ends carry no mark.
    Flowed,
    /// The text of HTML blocks, one block a line: a run of white space
    /// shows as one space, a no-break space as one more.
    Html,
}

/// The prose of a text: where its words are and the places between two
/// sentences, as byte ranges into the text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prose {
    /// The letters of each prose word, in order.
    pub words: Vec<Range<usize>>,
    /// The white space between a sentence's last word and the next
    /// sentence's first, on one prose line: (the space, index of the word
    /// before it, index of the word after it).
    pub gaps: Vec<(Range<usize>, usize, usize)>,
    /// The white space at the end of a prose line that ends with a word
    /// and goes on with a word on the next prose line (plain layout
    /// only): (the white space, maybe empty; the word before; the word
    /// after).
    pub line_ends: Vec<(Range<usize>, usize, usize)>,
}

/// More tokens than this make a line a paragraph, judged sentence by
/// sentence.
const LONG_LINE: usize = 24;

/// Most tokens in a run of lines without a sentence end that is taken
/// for headings rather than prose (a cut excerpt of a paragraph has more).
const HEADING_TOKENS: usize = 16;

/// First lines of a patch: from there on nothing is prose.
const PATCH: [&str; 6] = [
    "diff --git ",
    "diff -",
    "--- a/",
    "+++ b/",
    "Index: ",
    "@@ -",
];

/// Words that begin a command or a statement and never an English
/// sentence. (English words that also start code — `for`, `if`, `use`,
/// `make` — are left to the punctuation and short-line rules, or every
/// wrapped line starting with them would lose its marks.)
const COMMANDS: &[&str] = &[
    "apt",
    "apt-get",
    "awk",
    "bash",
    "brew",
    "cargo",
    "cd",
    "chmod",
    "chown",
    "clang",
    "cp",
    "curl",
    "def",
    "dnf",
    "docker",
    "echo",
    "elif",
    "env",
    "export",
    "fn",
    "func",
    "gcc",
    "git",
    "gpg",
    "grep",
    "helm",
    "import",
    "journalctl",
    "kubectl",
    "ls",
    "mkdir",
    "mv",
    "npm",
    "npx",
    "openssl",
    "pacman",
    "perl",
    "pip",
    "pip3",
    "printf",
    "python",
    "python3",
    "rm",
    "rsync",
    "scp",
    "sed",
    "sh",
    "ssh",
    "sudo",
    "systemctl",
    "tar",
    "unset",
    "wget",
    "yarn",
    "yum",
];

/// Header field names that start a quoted or forwarded header line.
const HEADER_FIELDS: &[&str] = &[
    "bcc", "cc", "date", "from", "received", "sent", "subject", "to",
];

/// Reads the prose of `text` laid out as `layout`.
pub fn read(text: &str, layout: Layout) -> Prose {
    let mut reader = Reader::default();
    // Each line: where it starts, its kind, its body, whether it may
    // continue a URL.
    let mut lines = Vec::new();
    let mut offset = 0;
    let mut skips = Vec::new();
    for line in text.split_inclusive('\n') {
        let (kind, body, continues_url) = reader.line(line);
        // `body` is a slice of `line`.
        let at = offset + (body.as_ptr() as usize - line.as_ptr() as usize);
        lines.push((at, kind, body, continues_url));
        skips.push(std::mem::take(&mut reader.skip));
        offset += line.len();
    }
    // A short run of prose lines that ends no sentence is headings, a
    // title block or commands, not prose.
    let mut heading = vec![false; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..]
            .iter()
            .take_while(|(_, kind, _, _)| *kind == Line::Prose)
            .count();
        let tokens: usize = lines[i..i + run]
            .iter()
            .map(|(_, _, body, _)| body.split_whitespace().count())
            .sum();
        if run > 0
            && tokens <= HEADING_TOKENS
            && !lines[i..i + run]
                .iter()
                .any(|(_, _, body, _)| ends_sentence(body))
        {
            heading[i..i + run].iter_mut().for_each(|h| *h = true);
        }
        i += run.max(1);
    }
    let mut prose = Prose::default();
    // The previous line's end, when it was prose ending with a word.
    let mut open_end: Option<(Range<usize>, usize)> = None;
    for (i, &(at, kind, body, continues_url)) in lines.iter().enumerate() {
        // After "Run this:", a line that ends no sentence is what to run.
        let after_colon = i > 0 && lines[i - 1].2.trim_end().ends_with(':') && !ends_sentence(body);
        if kind != Line::Prose || heading[i] || after_colon {
            open_end = None;
            continue;
        }
        let (first, last) = reader.words(body, at, continues_url, &skips[i], layout, &mut prose);
        if let (Some((end, before)), Some(after)) = (open_end.take(), first) {
            prose.line_ends.push((end, before, after));
        }
        let content = body.trim_end_matches([' ', '\t']);
        open_end = last
            .filter(|_| layout == Layout::Plain)
            .map(|last| (at + content.len()..at + body.len(), last));
    }
    prose
}

/// What the lines before this one opened.
#[derive(Default)]
struct Reader {
    /// Inside a fenced code block opened by this fence.
    fence: Option<&'static str>,
    /// Inside an armored OpenPGP block.
    armor: bool,
    /// Everything from here on is not prose (a patch, a signature).
    rest: Option<&'static str>,
    /// Everything up to the next blank line is not prose (a traceback).
    until_blank: Option<&'static str>,
    /// The sentences of the last long line that are not prose (byte
    /// ranges of its body).
    skip: Vec<Range<usize>>,
    /// Inside a URL in angle brackets that runs over the line end.
    open_url: bool,
    /// The line before ended with a URL: this line's first token may be
    /// its wrapped continuation.
    url_tail: bool,
}

impl Reader {
    /// The kind of `line`, its body without quote marks and line end, and
    /// whether its first token may continue a URL from the line before.
    fn line<'l>(&mut self, line: &'l str) -> (Line, &'l str, bool) {
        let content = line.trim_end_matches(['\n', '\r']);
        let body = unquote(content);
        self.skip.clear();
        let code_spans_out = outside_code_spans(body);
        let kind = self.kind(body, &code_spans_out);
        let continues_url = self.url_tail;
        self.url_state(body);
        (kind, body, continues_url)
    }

    /// `visible`: the body with its `code spans` blanked out.
    fn kind(&mut self, body: &str, visible: &str) -> Line {
        let trimmed = body.trim();
        if let Some(rule) = self.rest {
            return Line::Other(rule);
        }
        if self.armor {
            self.armor = !trimmed.starts_with("-----END ");
            return Line::Other("armor");
        }
        if trimmed.starts_with("-----BEGIN ") {
            self.armor = true;
            return Line::Other("armor");
        }
        if let Some(fence) = self.fence {
            if trimmed.starts_with(fence) {
                self.fence = None;
            }
            return Line::Other("fenced code");
        }
        if let Some(fence) = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f)) {
            self.fence = Some(fence);
            return Line::Other("fenced code");
        }
        if PATCH.iter().any(|p| trimmed.starts_with(p)) {
            self.rest = Some("patch");
            return Line::Other("patch");
        }
        if body.trim_end_matches(' ') == "--" {
            self.rest = Some("signature");
            return Line::Other("signature");
        }
        if trimmed.is_empty() {
            self.until_blank = None;
            return Line::Blank;
        }
        if trimmed.starts_with("Traceback (most recent call last)") {
            self.until_blank = Some("log or dump");
        }
        if let Some(rule) = self.until_blank {
            return Line::Other(rule);
        }
        if self.open_url {
            return Line::Other("wrapped URL");
        }
        if body.starts_with("    ") || body.starts_with('\t') {
            return Line::Other("indented");
        }
        let visible = visible.trim();
        let tokens: Vec<&str> = visible.split_whitespace().collect();
        if is_config_line(body, &tokens) {
            return Line::Other("config key");
        }
        if tokens.len() <= LONG_LINE {
            return other_line(visible, &tokens).map_or(Line::Prose, Line::Other);
        }
        // A long line is a paragraph (HTML, format=flowed, pasted text):
        // each sentence is judged on its own, so one command in it does not
        // take the marks out of the rest.
        let mut any = None;
        for sentence in sentences(body) {
            let text = outside_code_spans(&body[sentence.clone()]);
            let text = text.trim();
            let tokens: Vec<&str> = text.split_whitespace().collect();
            match other_line(text, &tokens) {
                Some(rule) => {
                    any.get_or_insert(Line::Other(rule));
                    self.skip.push(sentence);
                }
                None => any = Some(Line::Prose),
            }
        }
        let kind = any.unwrap_or(Line::Blank);
        if kind != Line::Prose {
            self.skip.clear();
        }
        kind
    }

    fn url_state(&mut self, body: &str) {
        if let Some(close) = self.open_url.then(|| body.find('>')).flatten() {
            self.open_url = false;
            self.url_state(&body[close + 1..]);
            return;
        }
        if self.open_url {
            return;
        }
        if let Some(open) = body.rfind("<http").or_else(|| body.rfind("<www.")) {
            self.open_url = !body[open..].contains('>');
        }
        // A line that is one token and continues a URL goes on continuing
        // it.
        let single = body.split_whitespace().count() == 1;
        self.url_tail = (self.url_tail && single)
            || body
                .split_whitespace()
                .last()
                .is_some_and(|t| t.contains("://") || t.starts_with("www."))
                && !ends_sentence(body);
    }

    /// The prose words and sentence gaps of a prose line whose body starts
    /// at byte `at` of the text; the indices of its first and last words
    /// when the line starts and ends with one.
    fn words(
        &self,
        body: &str,
        at: usize,
        continues_url: bool,
        skip: &[Range<usize>],
        layout: Layout,
        prose: &mut Prose,
    ) -> (Option<usize>, Option<usize>) {
        let mut first = None;
        let mut tokens_seen = 0;
        let mut spans = Spans::default();
        let mut skip_first = continues_url;
        // (token, its range in body, index of its word in prose.words)
        let mut before: Option<(&str, usize)> = None;
        let mut end_of_last = 0;
        for (start, token) in tokens(body) {
            tokens_seen += 1;
            let gap = end_of_last..start;
            end_of_last = start + token.len();
            let skipped = skip.iter().any(|r| r.contains(&start));
            let word = if std::mem::take(&mut skip_first) || skipped {
                None
            } else {
                Self::word(token, &mut spans)
            };
            let Some(core) = word else {
                before = None;
                continue;
            };
            prose
                .words
                .push(at + start + core.start..at + start + core.end);
            let index = prose.words.len() - 1;
            if tokens_seen == 1 {
                first = Some(index);
            }
            if let Some((previous, previous_index)) = before {
                // A capital starts the next sentence; `l` is what a
                // confusables pass makes of `I`.
                let sentence = ends_sentence(previous)
                    && token[core.clone()]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_uppercase() || c == 'l');
                if sentence && is_sentence_space(&body[gap.clone()], layout) {
                    prose
                        .gaps
                        .push((at + gap.start..at + gap.end, previous_index, index));
                }
            }
            before = Some((token, index));
        }
        // `before` is the last token when that was a word.
        (first, before.map(|(_, index)| index))
    }

    /// The range of a token's letters when it is a prose word.
    fn word(token: &str, state: &mut Spans) -> Option<Range<usize>> {
        if token.contains('`') {
            if token.matches('`').count() % 2 == 1 {
                state.code = !state.code;
            }
            return None;
        }
        if state.code {
            return None;
        }
        // 'single' and "double" quoted literals, over one token or more.
        let lead = token.len() - token.trim_start_matches(['(', '[', '*']).len();
        let tail = token.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '*']);
        for (quote, inside) in [('\'', &mut state.single), ('"', &mut state.double)] {
            let opens = token[lead..].starts_with(quote);
            let closes = tail.ends_with(quote) && (!opens || tail.len() > lead + 1);
            if *inside || opens {
                *inside = !closes;
                return None;
            }
        }
        // The value after a setting's name (`PermitRootLogin no`,
        // `verify_ssl: false`), and words that are usually values.
        let after_identifier = std::mem::replace(&mut state.after_identifier, is_identifier(token));
        let core_start = token.len() - token.trim_start_matches(['(', '[', '*']).len();
        let core_end = tail.len();
        if core_start >= core_end || after_identifier {
            return None;
        }
        let core = &token[core_start..core_end];
        let value = VALUES.contains(&super::canonical(core).to_ascii_lowercase().as_str());
        (is_word(core) && !value).then_some(core_start..core_end)
    }
}

/// What the tokens before this one on the line opened.
#[derive(Default)]
struct Spans {
    /// Inside `backticks`.
    code: bool,
    /// Inside 'single quotes'.
    single: bool,
    /// Inside "double quotes".
    double: bool,
    /// The token before was a setting's name.
    after_identifier: bool,
}

/// Words that are more often a setting's value than prose.
/// (`no`, `on`, `off` are too common in sentences: the word after a
/// setting's name is left alone instead.)
const VALUES: &[&str] = &[
    "admin", "changeme", "disabled", "enabled", "false", "guest", "nil", "none", "null", "root",
    "true", "yes",
];

/// A setting's name: `snake_case`, `dotted.name`, `CamelCase`, `ALL_CAPS`,
/// or a name followed by `:` or `=`.
fn is_identifier(token: &str) -> bool {
    // As it was before any marks (the trace reads marked text).
    let token = super::canonical(token);
    let core = token.trim_matches(|c: char| "\"'()[],".contains(c));
    let name = core.trim_end_matches([':', '=']);
    let inner = name.trim_end_matches('.');
    let camel = inner.chars().skip(1).any(|c| c.is_ascii_uppercase())
        && inner.chars().any(|c| c.is_ascii_lowercase());
    let caps = inner.len() >= 2
        && inner
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
    !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && (inner.contains(['_', '.'])
            || camel
            || (caps && inner.contains('_'))
            || name.len() < core.len())
}

/// The rule that makes a non-blank line something other than prose.
fn other_line(trimmed: &str, tokens: &[&str]) -> Option<&'static str> {
    let first = tokens.first().copied().unwrap_or_default();
    if first.starts_with('[') || trimmed.starts_with("(quoted) [") {
        return Some("marker");
    }
    if is_header_line(first) {
        return Some("header field");
    }
    if ["wrote:", "écrit :", "écrit:", "schrieb:", "escribió:"]
        .iter()
        .any(|end| trimmed.ends_with(end))
    {
        return Some("attribution line");
    }
    if ["$", "#", ">>>", "%", "PS>", "...", "C:\\>"].contains(&first)
        || first.starts_with("C:\\")
        || ((first.ends_with('$') || first.ends_with('#') || first.ends_with('>'))
            && (first.contains('@') || first.contains(':')))
    {
        return Some("prompt");
    }
    if has_code_punctuation(trimmed, tokens) {
        return Some("code punctuation");
    }
    if is_log_line(tokens)
        || (first == "File" && tokens.get(1).is_some_and(|t| t.starts_with("\"/")))
    {
        return Some("log or dump");
    }
    if trimmed.contains("   ") {
        return Some("table columns");
    }
    if !ends_sentence(trimmed)
        && tokens
            .iter()
            .filter(|t| t.len() > 3)
            .all(|t| t.starts_with(|c: char| c.is_uppercase() || c.is_ascii_digit()))
    {
        return Some("title");
    }
    // A command name anywhere: "run git bisect start", "pip install …".
    // (`import` and `export` are English words too: only at the start.)
    let english = ["import", "export"];
    if english.contains(&first)
        || tokens.iter().any(|t| {
            let t = t.trim_matches(|c: char| "\"'(),.;:".contains(c));
            COMMANDS.contains(&t) && !english.contains(&t)
        })
    {
        return Some("command");
    }
    if tokens.len() < 4 && !ends_sentence(trimmed) {
        return Some("short line without a sentence end");
    }
    let hex = tokens.iter().filter(|t| is_hex_group(t)).count();
    if hex * 2 >= tokens.len() {
        return Some("hex groups");
    }
    // Look-alikes count as what they are: Cyrillic text made of letters
    // that look Latin is still not Latin (a marked Latin line has one in
    // about five letters).
    let (ascii, other) = trimmed
        .chars()
        .filter(|c| c.is_alphabetic())
        .fold((0, 0), |(a, o), c| {
            if c.is_ascii_alphabetic() {
                (a + 1, o)
            } else {
                (a, o + 1)
            }
        });
    if other > ascii {
        return Some("non-Latin script");
    }
    None
}

/// A YAML, JSON or INI-like `key: value` line, or a label on its own line:
/// `  description: the upload …`, `"note": "…"`, `max_size: 10`,
/// `uploads:`.
fn is_config_line(body: &str, tokens: &[&str]) -> bool {
    let Some(first) = tokens.first() else {
        return false;
    };
    let first = super::canonical(first);
    let Some(key) = first.trim_start_matches('-').strip_suffix(':') else {
        return false;
    };
    let quoted = key.starts_with('"') || key.starts_with('\'');
    let key = key.trim_matches(['"', '\'']);
    let identifier = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    let indented = body.starts_with(' ') || body.starts_with('\t');
    identifier && (indented || quoted || tokens.len() == 1 || key.contains(['_', '.']))
}

/// `Subject:`, `X-Case:`, `Content-Type:`, `Embargo-Copy:` … as the first
/// token of a line.
fn is_header_line(first: &str) -> bool {
    let Some(name) = first.strip_suffix(':') else {
        return false;
    };
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && (name.contains('-') || HEADER_FIELDS.contains(&name.to_ascii_lowercase().as_str()))
}

fn has_code_punctuation(line: &str, tokens: &[&str]) -> bool {
    const ANYWHERE: [&str; 14] = [
        "=", "{", "}", "|", "$", "\\", "&&", "->", "::", "()", "#include", "<<", ">>", "!=",
    ];
    if ANYWHERE.iter().any(|p| line.contains(p)) {
        return true;
    }
    // A semicolon ends a statement unless a word follows it.
    let statement_end = line.match_indices(';').any(|(i, _)| {
        let after = &line[i + 1..];
        !(after.starts_with(' ') && after[1..].starts_with(|c: char| c.is_alphabetic()))
    });
    // A call: a name directly followed by a parenthesis.
    let call = line
        .match_indices('(')
        .any(|(i, _)| line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
    let code_token = tokens.iter().any(|t| {
        ["/", "./", "../", "~/", "<", ">", "<=", ">="]
            .iter()
            .any(|p| t.starts_with(p) && (p.len() > 1 || t.len() == 1 || *p == "/"))
            || (t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
            || (t.starts_with("--") && t.len() > 2)
    });
    statement_end || call || code_token
}

/// Log output and memory dumps: a hex literal (`0x7f3a…`), a `prog[pid]:`
/// tag, a log level, or a timestamp among the first tokens.
fn is_log_line(tokens: &[&str]) -> bool {
    const LEVELS: [&str; 8] = [
        "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "TRACE", "FATAL", "CRITICAL",
    ];
    let bare = |t: &str| t.trim_matches(|c: char| "[](),;".contains(c)).to_string();
    let hex_literal = |t: &str| {
        let t = bare(t);
        t.strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .is_some_and(|h| h.len() >= 2 && h.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let tag = |t: &str| {
        t.strip_suffix("]:")
            .and_then(|t| t.split_once('['))
            .is_some_and(|(name, pid)| !name.is_empty() && pid.chars().all(|c| c.is_ascii_digit()))
    };
    let level = |t: &str| LEVELS.contains(&bare(t).trim_end_matches(':'));
    // 09:40:52, 14:39, 2026-03-11T09:40:52Z, 2026-03-11
    let timestamp = |t: &str| {
        let t = bare(t);
        let digits_and = |s: &str, sep: char| {
            s.split(sep).count() >= 2
                && s.split(sep)
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        };
        let clock = t.trim_end_matches('Z');
        let clock = clock.split('.').next().unwrap_or_default();
        digits_and(clock, ':')
            || t.split(['T', ' '])
                .next()
                .is_some_and(|d| d.len() == 10 && digits_and(d, '-'))
    };
    tokens.iter().any(|t| hex_literal(t) || tag(t))
        || tokens.first().is_some_and(|t| level(t))
        || tokens.iter().take(3).any(|t| timestamp(t))
}

/// Letters only (Latin, or the look-alikes a mark puts in), at least two,
/// neither an identifier (CamelCase, ALL CAPS) nor a hex group.
fn is_word(core: &str) -> bool {
    let latin = |c: char| c.is_ascii_alphabetic() || super::latin(c).is_some();
    if core.chars().count() < super::MIN_WORD || !core.chars().all(latin) {
        return false;
    }
    let plain: String = super::canonical(core);
    let upper = plain.chars().filter(char::is_ascii_uppercase).count();
    let all_caps = upper >= 2 && upper == plain.len();
    let camel = plain.chars().skip(1).any(|c| c.is_ascii_uppercase());
    !all_caps && !camel && !is_hex_group(&plain)
}

/// Four or more hex digits and nothing else (`deadbeef`, `ACDC`).
fn is_hex_group(token: &str) -> bool {
    let plain = super::canonical(token);
    plain.len() >= 4 && plain.chars().all(|c| c.is_ascii_hexdigit())
}

/// Ends like a sentence or a clause: `.`, `!`, `?`, `:`, `,`, `;`, maybe
/// followed by closing quotes or brackets.
pub(super) fn ends_sentence(text: &str) -> bool {
    text.trim_end()
        .trim_end_matches(['"', '\'', ')', ']', '*'])
        .ends_with(['.', '!', '?', ':', ',', ';'])
}

/// White space that shows as one or two spaces: the room a copy's
/// sentence mark may set. In HTML, a run of white space shows as one
/// space and each no-break space as one more.
fn is_sentence_space(space: &str, layout: Layout) -> bool {
    match layout {
        Layout::Plain | Layout::Flowed => space == " " || space == "  ",
        Layout::Html => {
            let nbsp = space.chars().filter(|&c| c == '\u{a0}').count();
            let collapsible = space.chars().any(|c| c != '\u{a0}');
            (1..=2).contains(&(nbsp + usize::from(collapsible)))
        }
    }
}

/// `line` with each code span (backticks and all) as one `code` token:
/// what line rules judge (a `--flag` in a code span does not make a
/// sentence code).
fn outside_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut inside = false;
    for c in line.chars() {
        if c == '`' {
            if !inside {
                out.push_str("`code`");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// The body of a line without its quote marks (`> > text` → `text`).
fn unquote(line: &str) -> &str {
    let mut rest = line;
    loop {
        let stripped = rest.trim_start_matches(' ');
        match stripped.strip_prefix('>') {
            Some(after) if !after.starts_with(">>") && rest.len() - stripped.len() <= 3 => {
                rest = after.strip_prefix(' ').unwrap_or(after);
            }
            _ => return rest,
        }
    }
}

/// The sentences of a long line: byte ranges that end after a token ending
/// in `.`, `!` or `?` when a capital follows.
fn sentences(body: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut previous_end: Option<usize> = None;
    for (at, token) in tokens(body) {
        if let Some(end) = previous_end.take() {
            if token.starts_with(|c: char| c.is_uppercase()) {
                out.push(start..end);
                start = at;
            }
        }
        if ends_sentence(token) && !token.ends_with([',', ';', ':']) {
            previous_end = Some(at + token.len());
        }
    }
    out.push(start..body.len());
    out
}

/// The whitespace-separated tokens of a line with their byte offsets.
fn tokens(body: &str) -> impl Iterator<Item = (usize, &str)> {
    body.split(char::is_whitespace)
        .scan(0, |at, token| {
            let start = *at;
            *at += token.len();
            *at += body[*at..].chars().next().map_or(0, char::len_utf8);
            Some((start, token))
        })
        .filter(|(_, t)| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, prose?) — one line each, read on its own.
    const TABLE: &[(&str, bool)] = &[
        (
            "We found that the parser copies the input into a fixed buffer.",
            true,
        ),
        (
            "An attacker who controls the file can overwrite the heap and, with",
            true,
        ),
        ("effort, run code as the service user (see below).", true),
        (
            "Please keep this private until the fix is released; see the notes.",
            true,
        ),
        ("> Thanks, we will look at it this week.", true),
        ("Hi all,", true),
        ("Note: the fix also covers the older branch.", true),
        ("Thanks.", true),
        ("curl -sSL https://get.example.sh | sudo bash", false),
        ("systemctl restart kappital", false),
        ("sudo systemctl restart kappital now please", false),
        (
            "for example through the upload feature, can use this to take over",
            true,
        ),
        (
            "if the attacker controls the name of the file, the server writes",
            true,
        ),
        ("    if (len > max) return error;", false),
        ("\tmemcpy(buf, input, len);", false),
        ("import os", false),
        ("export PATH", false),
        ("allow_upload = false", false),
        (
            "Set allow_upload = false in the configuration file to disable it.",
            false,
        ),
        (
            "Run gpg --verify on the tarball before you install it.",
            false,
        ),
        ("if (len > size) goto fail;", false),
        ("$ ./configure --prefix /usr", false),
        ("# make install", false),
        (">>> import kappital", false),
        ("root@host:~# kappital --version", false),
        ("ABCD EFAB CDEF ACDC BEEF CAFE FACE DEAD BEAD FADE", false),
        ("deadbeef", false),
        ("/etc/passwd", false),
        ("Edit /etc/kappital.conf and restart the service.", false),
        ("https://example.com/login?user=admin", false),
        ("paypal.com", false),
        ("alice.secure@example.org", false),
        ("-----BEGIN PGP SIGNATURE-----", false),
        ("diff --git a/src/x.c b/src/x.c", false),
        ("Subject: [KAP-2026-0001] archive extraction", false),
        ("> From: Rita Reporter <rita@example.net>", false),
        ("X-Case: KAP-2026-0001", false),
        ("Embargo-Copy: 0011223344556677", false),
        (
            "[The following was signed; good signature (this block only)]",
            false,
        ),
        ("(quoted) [End of the signed text]", false),
        ("```", false),
        ("脆弱性の詳細は以下の通りです。", false),
        ("Уязвимость позволяет выполнить код на сервере.", false),
        ("-- ", false),
        ("SELECT * FROM users WHERE name = 'admin';", false),
        ("fn main() {", false),
        ("let x = vec![1, 2, 3];", false),
        (
            "Please run git bisect start and git bisect bad on the branch.",
            false,
        ),
        (
            "Run pip install kappital and then start the server as usual.",
            false,
        ),
        (
            "  description: the upload feature for all of the users here",
            false,
        ),
        (
            "  \"note\": \"this is the admin account of the whole site\",",
            false,
        ),
        ("uploads:", false),
        (
            "  File \"/usr/lib/kappital/sync.py\", line 42, in handle_upload",
            false,
        ),
        (
            "Серверу ее хорошо, ох уж эти расчеты, ересь и сор на сервере.",
            false,
        ),
        ("WRITE of size 65536 at 0x7f3a2c810800 thread T3", false),
        (
            "Mar 11 09:40:52 lab kappitald[2210]: worker 3 killed by signal 11 while",
            false,
        ),
        (
            "2026-03-11T09:40:52Z worker started the upload of the archive",
            false,
        ),
        (
            "ERROR: the upload of the archive failed for every user",
            false,
        ),
        (
            "The embargo ends on the fifth of December, at four in the afternoon.",
            true,
        ),
        ("  2.9 LTS   2.9.3 to 2.9.14    2.9.15", false),
        (
            "Title:      Share token check bypass in kappital-sync",
            false,
        ),
        ("Kappital Security Advisory KSA-2026-007", false),
        ("Impact and Affected Versions", false),
        (
            "On Tue, 26 May 2026 10:15:00 +0000, the fix lead wrote:",
            false,
        ),
    ];

    /// The kind of each line of a plain text.
    fn lines(text: &str) -> Vec<Line> {
        let mut reader = Reader::default();
        text.lines().map(|line| reader.line(line).0).collect()
    }

    #[test]
    fn lines_from_the_table() {
        let wrong: Vec<String> = TABLE
            .iter()
            .filter(|(line, prose)| (lines(line)[0] == Line::Prose) != *prose)
            .map(|(line, prose)| {
                format!("{line:?}: expected prose={prose}, got {:?}", lines(line)[0])
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    fn words(text: &str) -> Vec<&str> {
        read(text, Layout::Plain)
            .words
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn words_in_prose_lines_leave_out_identifiers_literals_and_code_spans() {
        assert_eq!(
            words(
                "Set the `strict` option and the 'admin' user, as OpenSSL and NIST say (really).\n"
            ),
            // (the word after an identifier may be its value: not marked)
            ["Set", "the", "option", "and", "the", "user", "as", "say", "really"]
        );
        assert_eq!(
            words("Use `git log --all` to list the faced commits, then decide.\n"),
            ["Use", "to", "list", "the", "commits", "then", "decide"]
        );
        assert_eq!(
            words("It is \"unsafe\" to call it, don't do it twice now.\n"),
            ["It", "is", "to", "call", "it", "do", "it", "twice", "now"]
        );
        assert_eq!(
            words("The log says \"permission denied while opening\" and stops here.\n"),
            ["The", "log", "says", "and", "stops", "here"]
        );
        assert_eq!(
            words("Set PermitRootLogin no and verify_ssl: false, and the login is admin here.\n"),
            ["Set", "and", "and", "the", "login", "is", "here"]
        );
    }

    #[test]
    fn blocks_that_span_lines_are_not_prose() {
        let text = "Steps to see it:\n\n```\nrun the tool here\n```\n\
-----BEGIN PGP MESSAGE-----\n\nhQEMA some armor text\n-----END PGP MESSAGE-----\n\
See the notes at <https://kappital.example/very/long/path/\nadvisory> for the whole story.\n\
Read it at https://kappital.example/a/very/long/\npath and then tell us what you think.\n\
Here is the fix for everyone to test.\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n\
-old text here\n+new text here\n\nAnd some more prose after the patch.\n";
        let kinds = lines(text);
        let prose: Vec<&str> = text
            .lines()
            .zip(&kinds)
            .filter(|(_, k)| **k == Line::Prose)
            .map(|(l, _)| l)
            .collect();
        assert_eq!(
            prose,
            [
                "Steps to see it:",
                "See the notes at <https://kappital.example/very/long/path/",
                "Read it at https://kappital.example/a/very/long/",
                "path and then tell us what you think.",
                "Here is the fix for everyone to test."
            ]
        );
        let all = words(text);
        assert!(
            !all.contains(&"advisory") && !all.contains(&"path"),
            "{all:?}"
        );
        assert!(all.contains(&"tell"), "{all:?}");
    }

    #[test]
    fn a_paragraph_of_one_line_without_a_sentence_end_is_not_prose() {
        let text = "LDAP filter injection in web login\n\nThe login form passes the name on \
to the directory as it is.\n\nsystemctl restart the kappital service now\n\nThanks,\n";
        let words = words(text);
        assert_eq!(words.first(), Some(&"The"));
        assert_eq!(words.last(), Some(&"Thanks"));
        for heading in ["filter", "injection", "systemctl", "service"] {
            assert!(!words.contains(&heading), "{words:?}");
        }
    }

    #[test]
    fn a_line_after_a_colon_that_ends_no_sentence_is_not_prose() {
        let text = "To reproduce, run this in a fresh checkout of the tree:\n\
kappital import the evil archive now\nand then watch the log for a while.\n";
        let words = words(text);
        assert!(
            !words.contains(&"evil") && words.contains(&"watch"),
            "{words:?}"
        );
    }

    #[test]
    fn a_long_line_is_judged_sentence_by_sentence() {
        let text = "The server copies the name of the file into a buffer on the stack \
without a check. Run sudo systemctl restart kappital after the update. Every release since \
the rewrite is affected, and we have seen it in the wild.\n";
        let words = words(text);
        assert!(
            words.contains(&"buffer") && words.contains(&"affected"),
            "{words:?}"
        );
        assert!(
            !words.contains(&"restart") && !words.contains(&"update"),
            "{words:?}"
        );
    }

    #[test]
    fn a_signature_ends_the_prose() {
        let kinds =
            lines("Thanks for the quick fix, all.\n-- \nRita Reporter, who writes prose here.\n");
        assert_eq!(kinds[0], Line::Prose);
        assert_eq!(kinds[2], Line::Other("signature"));
    }

    #[test]
    fn sentence_gaps_are_between_sentences_on_one_line() {
        let text = "The parser is broken.  We found it today. It is bad, really bad.\nNext line. e.g. Not this.\n";
        let prose = read(text, Layout::Plain);
        let gaps: Vec<(&str, &str, &str)> = prose
            .gaps
            .iter()
            .map(|(r, a, b)| {
                (
                    &text[r.clone()],
                    &text[prose.words[*a].clone()],
                    &text[prose.words[*b].clone()],
                )
            })
            .collect();
        assert_eq!(gaps, [("  ", "broken", "We"), (" ", "today", "It")]);
    }

    #[test]
    fn html_spacing_counts_what_shows() {
        let text = "It broke.\u{a0} Then it ran. Then it stopped.\n";
        assert_eq!(read(text, Layout::Html).gaps.len(), 2);
        assert_eq!(read(text, Layout::Plain).gaps.len(), 1);
    }
}
