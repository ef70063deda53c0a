//! Fuzzes the keyword-command parser: the `X-Name: value` block at the top
//! of a signed post (`keywords::split`) and the parsers of the values the
//! daemon acts on — case IDs, RFC 3339 embargo times, milestones and CVSS
//! vectors.
//!
//! Nothing may panic; the text left after the block must be a suffix of
//! the input; without keywords it must be the input itself; and a block
//! written back from the parsed keywords must parse to the same keywords.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use embargod::case::id::CaseId;
use embargod::case::{score, Milestone};
use embargod::config::Config;
use embargod::embargo::parse_time;
use embargod::keywords::{split, Keyword};
use embargod::sandbox::Sandbox;

/// The sandbox's configuration (case prefix KAP), loaded once.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary folder");
    let sandbox = Sandbox::new(dir.path()).expect("sandbox");
    let file = sandbox.write_config().expect("config file");
    Config::load(&file).expect("sandbox config loads")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (keywords, rest) = split(text);
    assert!(text.ends_with(&rest), "the rest is not the input's tail");
    if keywords.is_empty() {
        assert_eq!(rest, text, "text changed without keywords");
        return;
    }
    let block: String = keywords.iter().map(|k| format!("{k}\r\n")).collect();
    let (again, _) = split(&block);
    assert_eq!(again, keywords, "keywords do not survive a round trip");
    for Keyword { name, value } in &keywords {
        let _ = match name.as_str() {
            "case" => CaseId::parse(&CONFIG, value).is_ok(),
            "embargo-until" => parse_time(value).is_ok(),
            "done" => Milestone::parse(value).is_ok(),
            "cvss" => score(value).is_ok(),
            _ => true,
        };
    }
});
