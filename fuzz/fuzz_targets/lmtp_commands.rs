//! Fuzzes the LMTP input path: the bytes a client sends, through the
//! `smtp-proto` receivers exactly as `lmtp::session::serve` drives them.
//!
//! The session itself is async and needs a running daemon, so this target
//! mirrors its read loop: each read chunk is both the iterator and the
//! `buf` of `RequestReceiver::ingest`; an accepted DATA switches to a
//! `DataReceiver` seeded with "\r\n", a message over the size limit
//! switches to a `DummyDataReceiver`, and a finished message goes through
//! `finish_message` and `precheck` as at the end of DATA. The transaction
//! rules (LHLO before MAIL, MAIL before RCPT, a recipient before DATA)
//! follow the session's replies; any recipient address counts as a list.
//!
//! Each input is fed in three ways: as one read, one byte per read, and in
//! reads of a length derived from the input, plus once more with a small
//! size limit to reach the discarding path. Nothing may panic, and every
//! turn of the read loop must consume input or change state (the session
//! loops forever otherwise).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};

use embargod::mime::inbound::precheck;

/// The session's read buffer: no read is longer.
const READ_BUFFER: usize = 64 * 1024;

/// A size limit no input of the default `-max_len` reaches.
const LARGE_LIMIT: usize = 1024 * 1024;

/// A size limit that fuzzed messages do cross.
const SMALL_LIMIT: usize = 512;

/// The header size limit the daemon applies by default.
const MAX_HEADER_SIZE: usize = 256 * 1024;

/// As in the session.
const MAX_RECIPIENTS: usize = 100;

fuzz_target!(|data: &[u8]| {
    run(data, READ_BUFFER, LARGE_LIMIT);
    run(data, 1, LARGE_LIMIT);
    run(data, read_len(data), LARGE_LIMIT);
    run(data, read_len(data), SMALL_LIMIT);
});

/// A read length in 2..=64 that varies with the input, so that command
/// and message ends fall at every position of a read.
fn read_len(data: &[u8]) -> usize {
    let hash = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    2 + (hash % 63) as usize
}

enum State {
    Command,
    Data(DataReceiver),
    Discard(DummyDataReceiver),
}

/// The part of the session's transaction that decides when DATA starts.
#[derive(Default)]
struct Transaction {
    mail_from: bool,
    rcpts: usize,
}

/// One session over `data`, delivered in reads of `read_len` bytes, with
/// messages limited to `max_size` bytes.
fn run(data: &[u8], read_len: usize, max_size: usize) {
    let mut greeted = false;
    let mut tx = Transaction::default();
    let mut state = State::Command;
    let mut requests = RequestReceiver::default();
    let mut message: Vec<u8> = Vec::new();

    for chunk in data.chunks(read_len) {
        let mut iter = chunk.iter();
        loop {
            let before = iter.len();
            match &mut state {
                State::Command => {
                    match requests.ingest(&mut iter, chunk) {
                        Ok(request) => match command(request, &mut greeted, &mut tx, max_size) {
                            Next::Stay => {}
                            Next::StartData => {
                                message.clear();
                                message.extend_from_slice(b"\r\n");
                                let mut receiver = DataReceiver::new();
                                let mut seed = Vec::new();
                                receiver.ingest(&mut b"\r\n".iter(), &mut seed);
                                state = State::Data(receiver);
                            }
                            Next::Quit => return,
                        },
                        Err(ProtoError::NeedsMoreData { .. }) => break,
                        Err(_) => {}
                    }
                    assert!(
                        iter.len() < before,
                        "the command receiver returned without consuming input: \
                         the session would loop forever"
                    );
                }
                State::Data(receiver) => {
                    if receiver.ingest(&mut iter, &mut message) {
                        let raw = finish_message(&mut message);
                        let _ = precheck(&raw, MAX_HEADER_SIZE);
                        tx = Transaction::default();
                        state = State::Command;
                    } else if message.len() > max_size + 2 {
                        state = State::Discard(DummyDataReceiver::new_data(receiver));
                        message = Vec::new();
                    } else {
                        break;
                    }
                }
                State::Discard(receiver) => {
                    if receiver.ingest(&mut iter) {
                        tx = Transaction::default();
                        state = State::Command;
                    } else {
                        break;
                    }
                }
            }
            if iter.len() == 0 {
                break;
            }
        }
    }
}

enum Next {
    Stay,
    StartData,
    Quit,
}

/// The session's `command`, reduced to its effect on the state.
fn command(
    request: Request<String>,
    greeted: &mut bool,
    tx: &mut Transaction,
    max_size: usize,
) -> Next {
    match request {
        Request::Lhlo { .. } => {
            *greeted = true;
            *tx = Transaction::default();
        }
        Request::Mail { from } => {
            if *greeted && !tx.mail_from && from.size <= max_size {
                tx.mail_from = true;
            }
        }
        Request::Rcpt { .. } => {
            if tx.mail_from && tx.rcpts < MAX_RECIPIENTS {
                tx.rcpts += 1;
            }
        }
        Request::Data => {
            if tx.mail_from && tx.rcpts > 0 {
                return Next::StartData;
            }
        }
        Request::Rset => *tx = Transaction::default(),
        Request::Quit => return Next::Quit,
        _ => {}
    }
    Next::Stay
}

/// As in the session: strips the seeded CRLF and restores the final line
/// end the data receiver drops with the terminating dot.
fn finish_message(message: &mut Vec<u8>) -> Vec<u8> {
    let mut raw = std::mem::take(message);
    raw.drain(..2.min(raw.len()));
    if !raw.is_empty() {
        raw.extend_from_slice(b"\r\n");
    }
    raw
}
