//! Notices: messages the daemon writes to the PST about its own troubles
//! (a member without a usable key, quarantined mail, failed deliveries).
//!
//! A notice enters the spool like a report and is fanned out to the
//! security list, so it reaches the PST only encrypted. It names the
//! problem, never the content of the message it is about.

use chrono::{DateTime, Utc};

use crate::clock::to_millis;
use crate::config::Config;
use crate::mime::outbound::notice_message;
use crate::store::{Incoming, IncomingMeta, Source};

/// A notice to the security list, ready to spool.
pub fn to_pst(config: &Config, now: DateTime<Utc>, subject: &str, body: &str) -> Incoming {
    Incoming {
        meta: IncomingMeta {
            received: to_millis(now),
            source: Source::Notice,
        },
        raw: notice_message(
            config.delivery.from.as_ref(),
            config.lists.security.address.as_ref(),
            subject,
            body,
            now,
        ),
    }
}
