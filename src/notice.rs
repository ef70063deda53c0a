//! Notices: messages the daemon writes about its own doings — a member
//! without a usable key, quarantined mail, a failed delivery, a refused
//! post, an embargo reminder or release.
//!
//! A notice enters the spool like a report and is fanned out to its
//! audience, so it is sent only encrypted. It names the problem, never the
//! content of the message it is about.

use chrono::{DateTime, Utc};

use crate::clock::Timestamp;
use crate::config::Config;
use crate::mime::outbound::notice_message;
use crate::store::{Audience, Incoming, IncomingMeta, Source};

/// A notice for `to`, ready to spool.
pub fn notice(
    config: &Config,
    now: DateTime<Utc>,
    to: Audience,
    subject: &str,
    body: &str,
) -> Incoming {
    Incoming {
        meta: IncomingMeta {
            received: Timestamp::from(now),
            source: Source::Notice { to },
        },
        raw: notice_message(
            &config.delivery.from,
            &config.lists.security.address,
            subject,
            body,
            now,
        ),
    }
}

/// A notice for the PST.
pub fn to_pst(config: &Config, now: DateTime<Utc>, subject: &str, body: &str) -> Incoming {
    notice(config, now, Audience::Pst, subject, body)
}
