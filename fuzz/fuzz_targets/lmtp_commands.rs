//! Fuzzes the LMTP session: the bytes a client sends, through the
//! daemon's own protocol state machine (`lmtp::machine::Machine`, which
//! `lmtp::session` drives over the socket), and every finished message
//! through `precheck` as at the end of DATA.
//!
//! Each input is fed in three ways — as one read, one byte per read, and
//! in reads of an input-derived length — and once more with a tiny size
//! limit to reach the discarding path. Nothing may panic; `feed` must use
//! up its input (the session would spin otherwise); replies must be
//! CRLF-terminated lines with a three-digit code.

#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;

use embargod::config::{Config, ListName};
use embargod::lmtp::machine::{Event, Machine};
use embargod::mime::inbound::precheck;
use embargod::sandbox::Sandbox;

/// The session's read buffer: no read is longer.
const READ_BUFFER: usize = 64 * 1024;

/// A configuration with a security and a distributors list, and one with a
/// message size limit that fuzzed messages do cross.
static CONFIGS: LazyLock<(Arc<Config>, Arc<Config>)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut sandbox = Sandbox::new(dir.path()).expect("sandbox");
    sandbox
        .generate_member("alice", ListName::Security)
        .expect("member");
    sandbox
        .generate_member("distro", ListName::Distributors)
        .expect("member");
    let file = sandbox.write_config().expect("config file");
    let config = Config::load(&file).expect("sandbox config loads");
    let mut small = config.clone();
    small.lmtp.max_message_size = 64;
    (Arc::new(config), Arc::new(small))
});

fuzz_target!(|data: &[u8]| {
    let (config, small) = &*CONFIGS;
    run(data, READ_BUFFER, config);
    run(data, 1, config);
    run(data, read_len(data), config);
    run(data, read_len(data), small);
});

/// A read length in 2..=64 that varies with the input, so that command
/// and message ends fall at every position of a read.
fn read_len(data: &[u8]) -> usize {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    2 + (hash % 63) as usize
}

/// One session over `data`, delivered in reads of `read_len` bytes.
fn run(data: &[u8], read_len: usize, config: &Arc<Config>) {
    let mut machine = Machine::new(config.clone());
    let mut out = machine.greeting().into_bytes();
    'session: for chunk in data.chunks(read_len) {
        let mut input = chunk;
        while let Some(event) = machine.feed(&mut input, &mut out) {
            match event {
                Event::Message(delivery) => {
                    assert!(!delivery.rcpts.is_empty(), "DATA without a recipient");
                    let _ = precheck(&delivery.raw, config.lmtp.max_header_size);
                }
                // The refusal replies are checked with the rest below.
                Event::Refused(_) => {}
                Event::Quit => break 'session,
            }
        }
        assert!(
            input.is_empty(),
            "feed returned with input left and no event"
        );
    }
    for line in out.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {line:?}");
        assert!(
            line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit),
            "reply without a code: {line:?}"
        );
    }
}
