//! Fuzzes the intake path: raw message bytes, as they arrive at the end of
//! LMTP DATA, up to the per-member copies that would be queued.
//!
//! Each input goes through `mime::inbound::precheck` (the checks that
//! refuse mail over LMTP) and, when it passes, through `lists::process`
//! (OpenPGP unwrapping, posting rules, one signed and encrypted copy per
//! member) for a sandbox with two security list members, one distributor
//! and an empty store. Nothing may panic, and every queued copy (a member's
//! sealed from its job, as the delivery worker does) must hold an armored
//! OpenPGP message (the acknowledgement to a reporter whose key is
//! unknown: a signature) and no verbatim plaintext of the input's body.

#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

use embargod::case::reporter::LEDGER_NAME;
use embargod::config::{Config, ListName};
use embargod::context::Context;
use embargod::fanout::copies::{seal_copy, Outgoing};
use embargod::keys::Keys;
use embargod::lists;
use embargod::mime::inbound::precheck;
use embargod::mime::outbound::{outer_message, ListHeader, ListIdentity};
use embargod::sandbox::Sandbox;
use embargod::store::{Incoming, IncomingMeta, Intake, Source, Store, StoreKey, Transaction};

/// The header size limit the daemon applies by default.
const MAX_HEADER_SIZE: usize = 256 * 1024;

/// Length of the input window searched for in the copies.
const WINDOW: usize = 32;

/// Body windows checked per input.
const MAX_WINDOWS: usize = 4;

/// A loaded installation, built once per process.
struct Setup {
    config: Config,
    keys: Keys,
    store: Store,
    /// The acknowledgement a plain report gets: the fixed text and MIME
    /// structure of every acknowledgement, which inputs may well contain.
    acknowledgement: Vec<u8>,
    /// Holds the store's folder. A static is never dropped, so the folder
    /// outlives the process (a few KiB in the temp dir); the keys and the
    /// config file are deleted as soon as they are loaded.
    _dir: tempfile::TempDir,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut sandbox = Sandbox::new(dir.path()).expect("sandbox");
    sandbox
        .generate_member("alice", ListName::Security)
        .expect("member key");
    sandbox
        .generate_member("bob", ListName::Security)
        .expect("member key");
    sandbox
        .generate_member("distro", ListName::Distributors)
        .expect("member key");
    let file = sandbox.write_config().expect("config file");
    let config = Config::load(&file).expect("sandbox config loads");
    let keys = Keys::load(&config).expect("sandbox keys load");
    let store_key = StoreKey::load(&config.store.key).expect("sandbox store key");
    let store = Store::open(&config.store.path, store_key).expect("sandbox store");
    // Everything is loaded: no secret key needs to stay on disk.
    std::fs::remove_dir_all(dir.path().join("keys")).expect("remove sandbox keys");
    std::fs::remove_file(&file).expect("remove sandbox config");
    let report = b"From: r@example.net\r\nSubject: a report\r\n\r\nA report.\r\n";
    let ctx = Context {
        config: &config,
        keys: &keys,
        store: &store,
        now: Utc::now(),
    };
    let acknowledgement = process(&ctx, report)
        .queued()
        .iter()
        .find(|(_, copy)| copy.member == LEDGER_NAME)
        .expect("a plain report is acknowledged")
        .1
        .bytes
        .clone();
    Setup {
        config,
        keys,
        store,
        acknowledgement,
        _dir: dir,
    }
});

/// The fan-out of `data` as it arrives over LMTP from a reporter.
fn process(ctx: &Context<'_>, data: &[u8]) -> Transaction {
    let incoming = Incoming {
        meta: IncomingMeta {
            received: embargod::clock::Timestamp::default(),
            source: Source::Mail {
                mail_from: "r@example.net".into(),
                lists: vec![ListName::Security, ListName::Distributors],
                via: Intake::Lmtp,
            },
        },
        raw: data.to_vec(),
    };
    lists::process(ctx, 1, incoming)
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    if precheck(data, MAX_HEADER_SIZE).is_err() {
        return;
    }
    let now = Utc::now();
    let ctx = Context {
        config: &setup.config,
        keys: &setup.keys,
        store: &setup.store,
        now,
    };
    let batch = process(&ctx, data);

    let windows = body_windows(data);
    for (_, copy) in batch.queued() {
        let sealed;
        let bytes: &[u8] = match copy.job {
            Some(job) => {
                let job = batch
                    .job(job)
                    .expect("a queued copy names a job of its batch");
                let (meta, outgoing) = Outgoing::from_job(job.clone());
                let list = setup.config.list(meta.list).expect("a configured list");
                let identity = ListIdentity::new(&setup.config, list);
                sealed = seal_copy(
                    &setup.keys,
                    setup.store.mark_secret(),
                    &identity,
                    &meta,
                    &outgoing,
                    copy,
                    now,
                )
                .expect("a decided copy seals");
                &sealed.bytes
            }
            None => &copy.bytes,
        };
        // The one message that may go out unencrypted: the acknowledgement
        // to a reporter whose key is unknown, signed, and holding nothing of
        // the report (the windows below check that).
        let acknowledgement = copy.member == LEDGER_NAME && copy.fingerprint.is_empty();
        let armor: &[u8] = if acknowledgement {
            b"-----BEGIN PGP SIGNATURE-----"
        } else {
            b"-----BEGIN PGP MESSAGE-----"
        };
        assert!(
            contains(bytes, armor),
            "copy for {} holds no armored OpenPGP {}",
            copy.member,
            if acknowledgement {
                "signature"
            } else {
                "message"
            }
        );
        if windows.is_empty() {
            continue;
        }
        // What the daemon writes around the ciphertext by itself; a window
        // that occurs there proves nothing about leaked input.
        let mut boilerplate =
            boilerplate(&setup.config, copy.list, &copy.to, &copy.message_id, now);
        if acknowledgement {
            boilerplate.extend_from_slice(&setup.acknowledgement);
        }
        for window in windows
            .iter()
            .filter(|window| !contains(&boilerplate, window))
        {
            assert!(
                !contains(bytes, window),
                "copy for {} carries input text in the clear: {:?}",
                copy.member,
                String::from_utf8_lossy(window)
            );
        }
    }
});

/// Up to [`MAX_WINDOWS`] distinctive windows of the input's body: the
/// first [`WINDOW`] bytes of each run of printable ASCII (no line end)
/// that is at least twice that long. The header section is left out: its
/// lines are short and largely the same in every message, the copies'
/// own header among them.
fn body_windows(data: &[u8]) -> Vec<&[u8]> {
    let Some(body) = body(data) else {
        return Vec::new();
    };
    let mut windows: Vec<&[u8]> = Vec::new();
    for run in body.split(|byte| !(b' '..=b'~').contains(byte)) {
        if windows.len() == MAX_WINDOWS {
            break;
        }
        if run.len() < 2 * WINDOW {
            continue;
        }
        let window = &run[..WINDOW];
        // All one byte ("-----", "=====", spaces) is not distinctive.
        if window.iter().all(|&byte| byte == window[0]) || windows.contains(&window) {
            continue;
        }
        windows.push(window);
    }
    windows
}

/// The input after its header section, if it has an empty line.
fn body(data: &[u8]) -> Option<&[u8]> {
    let mut line_start = 0;
    for (i, &byte) in data.iter().enumerate() {
        if byte == b'\n' {
            let line = &data[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(&data[i + 1..]);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The outer message of a copy of `list` to `to` without its ciphertext:
/// everything in a copy that does not come from the sealed content.
fn boilerplate(
    config: &Config,
    list: ListName,
    to: &str,
    message_id: &str,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let list = config.list(list).expect("copies go to configured lists");
    let identity = ListIdentity::new(config, list);
    let header = ListHeader {
        list: &identity,
        to,
        message_id,
        date: now,
    };
    outer_message(&header, b"")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
