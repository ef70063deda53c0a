//! Fuzzes marking: the prose reader and a copy's marks on plain text and
//! HTML (`mark::read`, `mark::edits`, `mark::html::MarkableHtml`) — what
//! every copy of untrusted mail goes through.
//!
//! Nothing may panic; a marked plain text reads back as the original
//! (look-alikes in both mapped to Latin, one space where marks set two);
//! marking HTML either fails cleanly or adds no tag; and rendering HTML
//! for the trace never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

use embargod::mark::html::{render, MarkableHtml};
use embargod::mark::{apply, canonical, edits, read, Layout, MarkSecret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = MarkSecret::derive(&[5; 32]).copy_key(7);
    for layout in [Layout::Plain, Layout::Html] {
        let reading = read(text, layout);
        let marked = apply(text, &edits(text, &reading, &key, layout));
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        // Look-alikes that came in may be set back to Latin.
        assert_eq!(squeeze(&canonical(&marked)), squeeze(&canonical(text)));
        if layout == Layout::Plain {
            assert_eq!(marked.lines().count(), text.lines().count());
        }
    }
    if let Some(html) = MarkableHtml::new(text) {
        if let Some(marked) = html.mark(&key) {
            let tags = |s: &str| s.matches('<').count();
            assert!(tags(&marked) <= tags(text), "a tag appeared");
        }
    }
    let _ = render(text);
});
