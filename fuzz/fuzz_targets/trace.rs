//! Fuzzes the trace reader: `embargod trace` input (a whole message, a
//! forwarded or quoted copy, HTML, a pasted excerpt) against a store that
//! knows two messages sent as four marked copies each.
//!
//! Nothing may panic; the same input gives the same verdict; a named copy
//! is one the store knows; and one copy is never both attributed and a
//! mere candidate.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use embargod::mark::index::CopyInfo;
use embargod::mark::trace::{trace, Verdict};
use embargod::mark::MarkSecret;
use embargod::sandbox::index_copies;
use embargod::store::{Store, StoreKey, KEY_LEN};

/// The prose of the two messages; the seeds in `corpus/trace` are marked
/// copies of it made with the same store key.
pub const PROSE: [&str; 2] = [
    include_str!("trace_prose_0.txt"),
    include_str!("trace_prose_1.txt"),
];

/// Copies per message; copy ids are `message * COPIES + recipient + 1`.
const COPIES: u64 = 4;

struct Setup {
    store: Store,
    secret: MarkSecret,
    /// Holds the store's folder (never dropped: a static).
    _dir: tempfile::TempDir,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Store::open(
        &dir.path().join("state"),
        StoreKey::from_bytes(&[7; KEY_LEN]),
    )
    .expect("store");
    let secret = store.mark_secret().clone();
    for (message, text) in (0u64..).zip(PROSE) {
        index_copies(
            &store,
            message,
            embargod::mark::text_shingles(store.mark_secret(), text),
            COPIES,
        )
        .expect("index");
    }
    Setup {
        store,
        secret,
        _dir: dir,
    }
});

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let verdict = trace(&setup.store, &setup.secret, data).expect("the store answers");
    let again = trace(&setup.store, &setup.secret, data).expect("the store answers");
    assert_eq!(verdict, again, "two traces of one input disagree");
    let known = |copy: &CopyInfo| (1..=PROSE.len() as u64 * COPIES).contains(&copy.copy_id);
    match &verdict {
        Verdict::Attributed { copy, evidence } => {
            assert!(known(copy), "attributed to an unknown copy: {copy:?}");
            assert!(!evidence.is_empty(), "attributed without evidence");
        }
        // One candidate: only a header field or visible line names it.
        Verdict::Candidates { copies, evidence } => {
            assert!(
                copies.len() >= 2 || evidence.iter().any(|e| e.contains("only plain text")),
                "one candidate on invisible evidence: {copies:?} {evidence:?}"
            );
            assert!(copies.iter().all(known), "unknown candidate: {copies:?}");
        }
        Verdict::NoMatch { .. } => {}
    }
    let _ = verdict.to_string();
});
