//! Keyword lines: commands at the top of a post's first text part,
//! Schleuder-style (`X-Case: KAP-2026-0001`).
//!
//! The block starts at the first non-empty line and ends at the first line
//! that is not `X-Name: value`. Keywords count only in signed text; the
//! callers make sure of that.

use std::fmt;

/// One keyword line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// Lower-case, without the `x-`: `case`, `embargo-until`.
    pub name: String,
    /// The value after the colon, as written.
    pub value: String,
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X-{}: {}", self.name, self.value)
    }
}

/// The keywords at the top of `text`, and the text without them.
pub fn split(text: &str) -> (Vec<Keyword>, String) {
    let mut keywords = Vec::new();
    let mut rest_at = 0;
    let mut offset = 0;
    let mut started = false;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        if !started && content.trim().is_empty() {
            offset += line.len();
            rest_at = offset;
            continue;
        }
        started = true;
        match parse_line(content) {
            Some(keyword) => {
                keywords.push(keyword);
                offset += line.len();
                rest_at = offset;
            }
            None => break,
        }
    }
    if keywords.is_empty() {
        return (keywords, text.to_string());
    }
    // One blank line after the block belongs to it.
    let mut rest = &text[rest_at..];
    if let Some(stripped) = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
    {
        rest = stripped;
    }
    (keywords, rest.to_string())
}

fn parse_line(line: &str) -> Option<Keyword> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    let bare = name
        .strip_prefix("X-")
        .or_else(|| name.strip_prefix("x-"))?;
    let valid = !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| Keyword {
        name: bare.to_ascii_lowercase(),
        value: value.trim().to_string(),
    })
}

/// The value of keyword `name`, if given.
pub fn get<'a>(keywords: &'a [Keyword], name: &str) -> Option<&'a str> {
    keywords
        .iter()
        .find(|k| k.name == name)
        .map(|k| k.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_at_the_top_is_split_off() {
        let (keywords, rest) = split(
            "\r\nX-Case: KAP-2026-0001\r\nx-embargo-until:  2026-12-01T16:00:00Z \r\n\r\nPatch below.\r\nX-Not: a keyword\r\n",
        );
        assert_eq!(
            keywords,
            [
                Keyword {
                    name: "case".into(),
                    value: "KAP-2026-0001".into()
                },
                Keyword {
                    name: "embargo-until".into(),
                    value: "2026-12-01T16:00:00Z".into()
                },
            ]
        );
        assert_eq!(rest, "Patch below.\r\nX-Not: a keyword\r\n");
        assert_eq!(get(&keywords, "case"), Some("KAP-2026-0001"));
    }

    #[test]
    fn text_without_keywords_is_untouched() {
        let text = "Hello\nX-Case: late, not a keyword\n";
        let (keywords, rest) = split(text);
        assert!(keywords.is_empty());
        assert_eq!(rest, text);
    }

    #[test]
    fn ordinary_header_like_lines_are_not_keywords() {
        let (keywords, _) = split("Subject: hi\nX-Case: KAP-1\n");
        assert!(keywords.is_empty());
    }
}
