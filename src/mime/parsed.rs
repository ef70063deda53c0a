//! Parsing untrusted mail without handing the parser's weak spots to the
//! sender.
//!
//! mail-parser nests `message/rfc822` parts without limit and drops the
//! result recursively: a ~1 MB message of stacked `message/rfc822` headers
//! overflows the stack when it is dropped. [`Parsed`] takes such a tree
//! apart level by level instead. A panic inside the parser (it has debug
//! assertions on malformed nesting) becomes "unparsable", not a dead
//! session.

use std::ops::Deref;

use mail_parser::{Message, MessageParser, PartType};

/// A parsed message that drops without recursion.
pub struct Parsed<'x>(Option<Message<'x>>);

/// Parses `raw`; `None` when it is no message at all (or the parser gave
/// up).
pub fn parse(raw: &[u8]) -> Option<Parsed<'_>> {
    std::panic::catch_unwind(|| MessageParser::default().parse(raw))
        .ok()
        .flatten()
        .map(|message| Parsed(Some(message)))
}

/// Parses only the header section of `raw`.
pub fn parse_headers(raw: &[u8]) -> Option<Parsed<'_>> {
    std::panic::catch_unwind(|| MessageParser::default().parse_headers(raw))
        .ok()
        .flatten()
        .map(|message| Parsed(Some(message)))
}

impl<'x> Deref for Parsed<'x> {
    type Target = Message<'x>;

    fn deref(&self) -> &Message<'x> {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack: Vec<Message<'_>> = self.0.take().into_iter().collect();
        while let Some(mut message) = stack.pop() {
            for part in &mut message.parts {
                if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                    stack.push(inner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_messages_drop_on_a_small_stack() {
        let raw = "Content-Type: message/rfc822\r\n\r\n".repeat(100_000);
        // A 256 KiB stack: the recursive drop needs far more for this.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let parsed = parse(raw.as_bytes()).expect("parses");
                assert!(!parsed.parts.is_empty());
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn parser_panics_become_unparsable() {
        // Trips a debug assertion in mail-parser 0.11.
        let raw = b"From: a@example.net\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n\r\n--b--\r\n";
        let _ = parse(raw);
    }
}
