//! Fuzzes the bounce reader: any bytes sent to the owner address, read
//! as a delivery status notification or one of the older shapes
//! (`bounce::dsn::read`). Nothing may panic, and what is kept of the
//! server's words stays one short line.

#![no_main]

use libfuzzer_sys::fuzz_target;

use embargod::bounce::dsn::{read, DIAGNOSTIC_CHARS};

fuzz_target!(|data: &[u8]| {
    let report = read(data);
    for recipient in &report.recipients {
        assert!(recipient.diagnostic.chars().count() <= DIAGNOSTIC_CHARS);
        assert!(!recipient.diagnostic.contains(['\r', '\n']));
    }
});
