//! Tracing speed: a 1 KiB excerpt of one marked copy, traced against a
//! ledger of 100,000 copies (1,000 messages to 100 recipients each).
//! Target: under 100 ms.
//!
//! Side by side with the alternative the shingle index spares us: checking
//! the excerpt's marks against every copy in the ledger.
//!
//! `cargo bench --bench trace`

use std::time::{Duration, Instant};

use embargod::mark::trace::trace;
use embargod::mark::{mark_text, read, Layout, MarkSecret};
use embargod::sandbox::index_copies;
use embargod::store::{Store, StoreKey, KEY_LEN};

const MESSAGES: u64 = 1_000;
const COPIES: u64 = 100;
const EXCERPT: usize = 1024;
const ROUNDS: usize = 25;

/// Prose of about 1.5 KiB, different for every message.
fn prose(seed: u64) -> String {
    const WORDS: &[&str] = &[
        "the",
        "parser",
        "buffer",
        "attacker",
        "configuration",
        "server",
        "memory",
        "length",
        "heap",
        "overflow",
        "release",
        "patch",
        "process",
        "upload",
        "feature",
        "section",
        "name",
        "check",
        "control",
        "flow",
        "crash",
        "service",
        "network",
        "trusted",
        "report",
        "private",
        "advisory",
        "distribution",
        "maintainers",
        "upstream",
        "version",
        "exploit",
        "public",
        "before",
        "after",
        "without",
        "every",
        "install",
        "remote",
        "privilege",
        "escalation",
        "mitigation",
        "workaround",
    ];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = String::new();
    while out.len() < 1536 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        out.push(if state % 11 == 0 { '\n' } else { ' ' });
    }
    out
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Store::open(
        &dir.path().join("state"),
        StoreKey::from_bytes(&[7; KEY_LEN]),
    )
    .expect("store");
    let secret: MarkSecret = store.mark_secret().clone();

    println!(
        "building a ledger of {} copies ({MESSAGES} messages x {COPIES}) ...",
        MESSAGES * COPIES
    );
    let started = Instant::now();
    for message in 0..MESSAGES {
        index_copies(
            &store,
            message,
            embargod::mark::text_shingles(store.mark_secret(), &prose(message)),
            COPIES,
        )
        .expect("index");
    }
    println!("built in {:.1} s", started.elapsed().as_secs_f64());

    // The leaked copy: message 500, recipient 37, cut to 1 KiB.
    let (message, recipient) = (500, 37);
    let copy_id = message * COPIES + recipient + 1;
    let marked = mark_text(&prose(message), &secret.copy_key(copy_id));
    let excerpt: String = marked.chars().skip(200).take(EXCERPT).collect();
    println!(
        "excerpt: {} bytes, {} words",
        excerpt.len(),
        read(&excerpt, Layout::Plain).words.len()
    );

    let mut indexed = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let verdict = trace(&store, &secret, excerpt.as_bytes()).expect("trace");
        indexed.push(start.elapsed());
        match verdict {
            embargod::mark::trace::Verdict::Attributed { copy, .. } => {
                assert_eq!(copy.copy_id, copy_id)
            }
            other => panic!("not attributed: {other}"),
        }
    }

    // The alternative: every copy's mark checked against the excerpt.
    let ws = read(&excerpt, Layout::Plain).words;
    let mut scan = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut best = (0, 0usize);
        for id in 1..=MESSAGES * COPIES {
            let key = secret.copy_key(id);
            let agree = ws
                .windows(2)
                .filter(|w| {
                    w[1].markable && key.bit(&w[0].canonical, &w[1].canonical) == w[1].marked
                })
                .count();
            if agree > best.1 {
                best = (id, agree);
            }
        }
        scan.push(start.elapsed());
        assert_eq!(best.0, copy_id);
    }

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let worst = *indexed.iter().max().expect("rounds");
    let (indexed_median, scan_median) = (median(&mut indexed), median(&mut scan));
    println!();
    println!(
        "trace a {EXCERPT}-byte excerpt against {} copies",
        MESSAGES * COPIES
    );
    println!("method                         median ms    worst ms   target");
    println!(
        "embargod (shingle index)       {:>9.2}   {:>9.2}   < 100 ms  {}",
        indexed_median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        if worst < Duration::from_millis(100) {
            "ok"
        } else {
            "ABOVE TARGET"
        }
    );
    println!(
        "every copy checked            {:>9.2}",
        scan_median.as_secs_f64() * 1e3
    );
    println!(
        "speed-up: {:.0}x",
        scan_median.as_secs_f64() / indexed_median.as_secs_f64()
    );
}
