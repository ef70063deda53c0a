//! Marks in HTML: the text a mail client shows by default for a
//! `multipart/alternative` post carries the same marks as the plain text.
//!
//! A real HTML rewriter (lol_html) walks the document; each block (`<p>`,
//! `<div>`, `<li>`, a `<br>`-separated line …) is read as one line of
//! prose by [`super::prose`], with the text of `<code>`, `<kbd>`, `<samp>`,
//! `<tt>` and `<var>` standing in it as a `code span` and `<pre>` blocks,
//! scripts, styles and the head left out. Only the text nodes that get a
//! mark are written anew, entities decoded and escaped again; tags,
//! attributes and URLs are never touched.
//!
//! [`render`] turns HTML into the text a reader copies out of a mail
//! client, by the same walk, so that a leaked HTML view reads as the
//! marked copy was read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use lol_html::html_content::{ContentType, TextType};
use lol_html::{doc_text, element, rewrite_str, RewriteStrSettings};

use super::{edits, read, CopyKey, Layout, Reading};

/// Elements that start and end a line of text.
const BLOCKS: &str = "address, article, aside, blockquote, br, center, dd, div, dl, dt, \
figcaption, figure, footer, form, h1, h2, h3, h4, h5, h6, header, hr, li, main, nav, ol, p, \
pre, section, table, td, th, tr, ul";
/// Elements whose text is code: never marked. Besides the tags, what
/// mail clients write for monospace: Gmail's `<font face=monospace>`,
/// Outlook's Courier New and Consolas, Apple Mail's Menlo.
const CODE: &str = "code, kbd, samp, tt, var, font[face*=mono i], font[face*=courier i], \
[style*=monospace i], [style*=courier i], [style*=consolas i], [style*=menlo i], \
[style*=\"white-space:pre\" i], [style*=\"white-space: pre\" i]";
/// Elements whose text is a block of code.
const PRE: &str = "pre, listing, xmp, plaintext";
/// Elements whose text is not shown.
const HIDDEN: &str = "head, script, style, template, title, textarea, noscript";

/// What a text node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prose,
    Code,
    Pre,
    Hidden,
}

/// A document's text as the walk meets it.
#[derive(Debug)]
enum Piece {
    /// A text node (as decoded text) and its index among all text nodes.
    Text(usize, String, Kind),
    /// The end of a line: of a paragraph (`true`: `<p>`, `<div>`, `<li>` …)
    /// or only of a line (`<br>`).
    Break(bool),
}

#[derive(Default)]
struct Walk {
    pieces: Vec<Piece>,
    code: usize,
    pre: usize,
    hidden: usize,
}

/// Walks `html`: each whole text node (raw, with its index and kind) goes
/// to `replace`, which may give new raw HTML for it. `None` when the
/// document cannot be parsed.
fn walk(
    html: &str,
    mut replace: impl FnMut(usize, &str, Kind) -> Option<String>,
) -> Option<(String, Vec<Piece>)> {
    let state = Rc::new(RefCell::new(Walk::default()));
    let depth = |select: fn(&mut Walk) -> &mut usize| {
        let state = state.clone();
        move |el: &mut lol_html::html_content::Element<'_, '_>| {
            *select(&mut state.borrow_mut()) += 1;
            let state = state.clone();
            if let Some(handlers) = el.end_tag_handlers() {
                handlers.push(Box::new(move |_| {
                    let mut walk = state.borrow_mut();
                    let counter = select(&mut walk);
                    *counter = counter.saturating_sub(1);
                    Ok(())
                }));
            }
            Ok(())
        }
    };
    let breaks = {
        let state = state.clone();
        move |el: &mut lol_html::html_content::Element<'_, '_>| {
            let paragraph = !el.tag_name().eq_ignore_ascii_case("br");
            state.borrow_mut().pieces.push(Piece::Break(paragraph));
            let state = state.clone();
            if let Some(handlers) = el.end_tag_handlers() {
                handlers.push(Box::new(move |_| {
                    state.borrow_mut().pieces.push(Piece::Break(paragraph));
                    Ok(())
                }));
            }
            Ok(())
        }
    };
    let mut buffer = String::new();
    let mut nodes = 0;
    let text_state = state.clone();
    let output = rewrite_str(
        html,
        RewriteStrSettings::new()
            .append_element_content_handler(element!(BLOCKS, breaks))
            .append_element_content_handler(element!(CODE, depth(|w| &mut w.code)))
            .append_element_content_handler(element!(PRE, depth(|w| &mut w.pre)))
            .append_element_content_handler(element!(HIDDEN, depth(|w| &mut w.hidden)))
            .append_document_content_handler(doc_text!(|chunk| {
                buffer.push_str(chunk.as_str());
                if !chunk.last_in_text_node() {
                    chunk.remove();
                    return Ok(());
                }
                let raw = std::mem::take(&mut buffer);
                let mut walk = text_state.borrow_mut();
                let kind = if walk.hidden > 0 || chunk.text_type() != TextType::Data {
                    Kind::Hidden
                } else if walk.pre > 0 {
                    Kind::Pre
                } else if walk.code > 0 {
                    Kind::Code
                } else {
                    Kind::Prose
                };
                let new = replace(nodes, &raw, kind);
                let decoded = html_escape::decode_html_entities(&raw).into_owned();
                walk.pieces.push(Piece::Text(nodes, decoded, kind));
                nodes += 1;
                chunk.replace(new.as_deref().unwrap_or(&raw), ContentType::Html);
                Ok(())
            })),
    )
    .ok()?;
    let pieces = std::mem::take(&mut state.borrow_mut().pieces);
    Some((output, pieces))
}

/// One line of an HTML document's text: its text as read for marks, where
/// each prose text node's text lies in it, and whether a paragraph ends
/// before it (it then follows a blank line, as in plain text).
#[derive(Debug, Default)]
struct Block {
    text: String,
    nodes: Vec<(usize, Range<usize>)>,
    paragraph: bool,
}

/// The lines of text of a walked document. `<pre>` text is indented as a
/// plain text's code block; code in a line stands between backticks.
fn blocks(pieces: &[Piece]) -> Vec<Block> {
    let mut out = vec![Block::default()];
    for piece in pieces {
        match piece {
            Piece::Break(paragraph) => {
                let last = out.last_mut().expect("never empty");
                if last.text.trim().is_empty() {
                    // An empty line (`<div><br></div>`) adds to the break.
                    last.paragraph |= paragraph;
                    last.text.clear();
                    last.nodes.clear();
                } else {
                    out.push(Block {
                        paragraph: *paragraph,
                        ..Block::default()
                    });
                }
            }
            Piece::Text(_, _, Kind::Hidden) => {}
            Piece::Text(index, text, Kind::Prose) => {
                let block = out.last_mut().expect("never empty");
                let start = block.text.len();
                block.text.push_str(text);
                block.nodes.push((*index, start..block.text.len()));
            }
            Piece::Text(_, text, Kind::Code) => {
                let block = out.last_mut().expect("never empty");
                block.text.push('`');
                block.text.push_str(&collapse(text));
                block.text.push('`');
            }
            Piece::Text(_, text, Kind::Pre) => {
                let block = out.last_mut().expect("never empty");
                for line in text.lines() {
                    block.text.push_str("    ");
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    out.retain(|b| !b.text.trim().is_empty());
    out
}

/// White space as a browser shows it: each run of ASCII white space one
/// space, no-break spaces kept.
fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_ascii_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// The text a reader copies out of a mail client showing `html`: one line
/// per block, white space collapsed, no-break spaces as spaces, code
/// between backticks and `<pre>` indented. `None` when it cannot be
/// parsed.
pub fn render(html: &str) -> Option<String> {
    let (_, pieces) = walk(html, |_, _, _| None)?;
    let mut out = String::new();
    for block in blocks(&pieces) {
        if block.paragraph && !out.is_empty() {
            out.push('\n');
        }
        if block.text.starts_with("    ") {
            out.push_str(&block.text);
        } else {
            out.push_str(collapse(&block.text).trim());
            out.push('\n');
        }
    }
    Some(out.replace('\u{a0}', " "))
}

/// An HTML part read once, to be marked for each copy.
#[derive(Debug, Clone)]
pub struct MarkableHtml {
    html: String,
    /// The document's lines of text as one text: prose blocks without
    /// their leading white space and with inner line ends as spaces,
    /// `<pre>` blocks indented. Read in one pass, so that what a line opens
    /// (a fence, an armor block) and the words before a line hold over the
    /// next, as when the rendered text is traced.
    text: String,
    /// Each prose text node: its index, where its text lies in `text`
    /// (in order), and how many bytes of its text come before that (the
    /// white space a block starts with).
    nodes: Vec<(usize, Range<usize>, usize)>,
    reading: Reading,
}

impl MarkableHtml {
    /// `None` when `html` cannot be parsed: it is then left unmarked.
    pub fn new(html: &str) -> Option<MarkableHtml> {
        let (_, pieces) = walk(html, |_, _, _| None)?;
        let mut text = String::new();
        let mut nodes = Vec::new();
        for block in blocks(&pieces) {
            if block.paragraph && !text.is_empty() {
                text.push('\n');
            }
            if block.text.starts_with("    ") {
                text.push_str(&block.text);
                continue;
            }
            let lead = block.text.len() - block.text.trim_start().len();
            let base = text.len();
            text.push_str(&block.text[lead..].replace(['\n', '\r'], " "));
            text.push('\n');
            nodes.extend(block.nodes.into_iter().map(|(node, span)| {
                (
                    node,
                    base + span.start.saturating_sub(lead)..base + span.end.saturating_sub(lead),
                    lead.saturating_sub(span.start),
                )
            }));
        }
        let reading = read(&text, Layout::Html);
        Some(MarkableHtml {
            html: html.to_string(),
            text,
            nodes,
            reading,
        })
    }

    /// The prose words, as [`render`] and [`super::trace`] read them back.
    pub fn words(&self) -> &[super::Word] {
        &self.reading.words
    }

    /// The document with the marks of `key` in its prose; `None` when the
    /// rewriter fails (the copy then goes without HTML marks).
    pub fn mark(&self, key: &CopyKey) -> Option<String> {
        let mut per_node: HashMap<usize, Vec<(Range<usize>, String)>> = HashMap::new();
        for (range, replacement) in edits(&self.text, &self.reading, key, Layout::Html) {
            // An edit lands in the one node that holds all of it; a space
            // that spans two nodes is left as it is.
            let at = self
                .nodes
                .partition_point(|(_, span, _)| span.end <= range.start);
            let Some((node, span, skipped)) = self
                .nodes
                .get(at)
                .filter(|(_, span, _)| span.start <= range.start && range.end <= span.end)
            else {
                continue;
            };
            let local = range.start - span.start + skipped;
            per_node
                .entry(*node)
                .or_default()
                .push((local..local + range.len(), replacement));
        }
        let (marked, _) = walk(&self.html, |index, raw, _| {
            let edits = per_node.get(&index)?;
            let text = html_escape::decode_html_entities(raw);
            let new = super::apply(&text, edits);
            Some(html_escape::encode_text(&new).replace('\u{a0}', "&nbsp;"))
        })?;
        Some(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mark::{MarkSecret, Spacing};

    const HTML: &str = "<html><head><style>p { color: red; }</style>\
<title>Advisory for everyone here</title></head><body>\n\
<p>The parser copies the input into a fixed buffer without checking its length. An attacker\n\
    who controls the file can overwrite the heap. We have a fix. It is small.</p>\n\
<p>Run <code>sudo systemctl restart kappital</code> after the update, and read \
<a href=\"https://kappital.example/advisory\" title=\"the whole story\">the advisory on \
the site</a> for the whole story.</p>\n\
<pre>if (len &gt; max) return error;\nimport os</pre>\n\
<p>Thanks &amp; regards, from the whole team here at the project.</p></body></html>";

    #[test]
    fn html_text_is_marked_and_nothing_else() {
        let markable = MarkableHtml::new(HTML).unwrap();
        let secret = MarkSecret::derive(&[7; 32]);
        for id in 0..6 {
            let key = secret.copy_key(id);
            let marked = markable.mark(&key).unwrap();
            assert_ne!(marked, HTML);
            for kept in [
                "<code>sudo systemctl restart kappital</code>",
                "<pre>if (len &gt; max) return error;\nimport os</pre>",
                "href=\"https://kappital.example/advisory\" title=\"the whole story\"",
                "<style>p { color: red; }</style>",
                "<title>Advisory for everyone here</title>",
                "&amp;",
            ] {
                assert!(marked.contains(kept), "{kept} changed: {marked}");
            }
            // What a reader copies out of the marked HTML carries the
            // copy's marks, read back as the trace reads them.
            let rendered = render(&marked).unwrap();
            let reading = read(&rendered, Layout::Plain);
            assert_eq!(reading.words.len(), markable.words().len());
            let mut prev = "";
            for word in &reading.words {
                if word.markable {
                    assert_eq!(key.bit(prev, &word.canonical), word.marked, "{rendered}");
                }
                prev = &word.canonical;
            }
            // Rendered lines end without a space: the line-end mark is not
            // in HTML (and the trace reads it as absent).
            for gap in reading.gaps.iter().filter(|g| g.kind == Spacing::Sentence) {
                let (before, after) = (&reading.words[gap.before], &reading.words[gap.after]);
                assert_eq!(
                    key.spacing(gap.kind, &before.skeleton, &after.skeleton),
                    gap.spacing
                );
            }
            let sentences = reading.gaps.iter().filter(|g| g.kind == Spacing::Sentence);
            assert_eq!(sentences.count(), 3, "{rendered}");
        }
    }

    #[test]
    fn blocks_with_leading_white_space_are_marked_in_place() {
        let html = "<p>\n  We met at the café after the release, and everyone was happy. \
Then we went home.</p><div>\n   <span>Run</span> <font face=\"monospace\">kappital serve now</font> \
after that, as the notes say.</div>";
        let markable = MarkableHtml::new(html).unwrap();
        let secret = MarkSecret::derive(&[7; 32]);
        for id in 0..16 {
            let marked = markable.mark(&secret.copy_key(id)).unwrap();
            let squeeze = |s: &str| {
                crate::mark::canonical(&render(s).unwrap())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(squeeze(&marked), squeeze(html), "{marked}");
            assert!(marked.contains(">kappital serve now</font>"), "{marked}");
        }
    }

    #[test]
    fn render_reads_as_a_mail_client_shows() {
        assert_eq!(
            render("<p>Fix &amp; test &#1072;&#x430;</p><p>next<br>line&nbsp; two</p><pre>a  b\nc</pre>")
                .unwrap(),
            "Fix & test аа\n\nnext\nline  two\n\n    a  b\n    c\n"
        );
    }
}
