//! Fuzzes the keyword-command parser: the `X-Name: value` block at the top
//! of a signed post (`keywords::split`) and the parsers of the values the
//! daemon acts on — case IDs, RFC 3339 embargo times, milestones and CVSS
//! vectors — and the advisory's data (`X-Affected:`, `X-Credit:`, …) with
//! the CVE JSON 5 and OSV records made from it.
//!
//! Nothing may panic; the text left after the block must be a suffix of
//! the input; without keywords it must be the input itself; and a block
//! written back from the parsed keywords must parse to the same keywords.
//! What the advisory data keeps holds no control character, and its
//! records serialize.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use embargod::advisory::records::{self, Source};
use embargod::advisory::{is_keyword, AdvisoryData};
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
    let mut data = AdvisoryData::default();
    let mut seen = std::collections::HashSet::new();
    for Keyword { name, value } in &keywords {
        let first = seen.insert(name.as_str());
        let _ = match name.as_str() {
            "case" => CaseId::parse(&CONFIG, value).is_ok(),
            "embargo-until" => parse_time(value).is_ok(),
            "done" => Milestone::parse(value).is_ok(),
            "cvss" => score(value).is_ok(),
            advisory if is_keyword(advisory) => data.apply(advisory, value, first).is_ok(),
            _ => true,
        };
    }
    let kept = serde_json::to_value(&data).expect("advisory data serializes");
    assert!(
        strings(&kept).all(|s| !s.chars().any(char::is_control)),
        "a control character was kept: {kept}"
    );
    let source = Source {
        case: "KAP-2026-0001",
        data: &data,
        cvss: None,
        subject: text,
        text: &rest,
        published: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    };
    let (files, _) = records::render(&CONFIG, &source);
    for (_, json) in files {
        serde_json::from_str::<serde_json::Value>(&json).expect("records are JSON");
    }
});

/// Every string in `value`, nested ones too.
fn strings(value: &serde_json::Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        serde_json::Value::String(s) => Box::new(std::iter::once(s.as_str())),
        serde_json::Value::Array(items) => Box::new(items.iter().flat_map(strings)),
        serde_json::Value::Object(map) => Box::new(map.values().flat_map(strings)),
        _ => Box::new(std::iter::empty()),
    }
}
