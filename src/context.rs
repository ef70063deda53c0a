//! What the handlers of a message read: the configuration and keys in
//! force, the store, and the time. Passed down to every list handler, so
//! it lives below them all.

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::config::Config;
use crate::keys::Keys;
use crate::store::{Audience, Incoming, Source, Store};

/// Whether a message is mail someone sent or one of the daemon's own
/// notices: a problem with a notice is logged, never noticed again, so
/// notices cannot beget notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Mail received (LMTP) or released by the daemon for a list.
    Mail,
    /// A notice of the daemon's.
    Notice,
}

impl From<&Source> for Origin {
    fn from(source: &Source) -> Origin {
        match source {
            Source::Notice { .. } => Origin::Notice,
            Source::Mail { .. } | Source::Bounce { .. } => Origin::Mail,
        }
    }
}

/// What processing reads: configuration, keys, the store (for embargoes
/// and cases) and the time.
pub struct Context<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// The list key and the members certificates in force.
    pub keys: &'a Keys,
    /// The store, for cases, embargoes and records.
    pub store: &'a Store,
    /// The time the decision is made at (the injected clock in tests).
    pub now: DateTime<Utc>,
}

impl Context<'_> {
    /// A notice, unless the problem arose while handling one: notices
    /// never beget notices.
    pub(crate) fn notice(
        &self,
        about: Origin,
        to: Audience,
        subject: &str,
        body: &str,
    ) -> Option<Incoming> {
        if about == Origin::Notice {
            warn!(subject, "problem while sending a notice; logged only");
            return None;
        }
        Some(crate::notice::notice(
            self.config,
            self.now,
            to,
            subject,
            body,
        ))
    }
}
