//! Holding a post for moderation: sealed in the quarantine, with notices
//! to the PST and the poster.

use tracing::warn;

use crate::clock::Timestamp;
use crate::config::ListName;
use crate::context::{Context, Origin};
use crate::store::{Audience, QuarantineMeta, Transaction};

use super::Post;

/// Why a post is held for moderation: `detail` goes to the PST in an
/// encrypted notice and may quote the post; `kind` goes to the log and
/// `status`, and never carries a value from the post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// A short label for logs and metrics (`not signed`).
    pub kind: &'static str,
    /// The reason in full, for the PST and the poster.
    pub detail: String,
}

impl Held {
    /// A reason to hold: `kind` for logs, `detail` for people.
    pub fn new(kind: &'static str, detail: impl std::fmt::Display) -> Held {
        Held {
            kind,
            detail: detail.to_string(),
        }
    }
}

/// Holds a post to `list` for moderation (sealed in the quarantine) and
/// tells the PST — and the poster, when a member's key signed it and they
/// are not on the PST — why.
pub(crate) fn hold(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    list: ListName,
    poster: Option<&str>,
    held: &Held,
) {
    let Post {
        id,
        incoming,
        unwrapped,
    } = post;
    let config = ctx.config;
    warn!(msg = id, %list, reason = held.kind, "held for moderation");
    let address = config
        .list(list)
        .map(|l| l.address.to_string())
        .unwrap_or_default();
    let body = format!(
        "Message {id} to {address} from {} was not forwarded: {}.\n\
         It is held for moderation; nothing reached the {list} list.\n",
        unwrapped.sender, held.detail
    );
    let subject = format!("post to the {list} list held");
    if let Some(notice) = ctx.notice(Origin::Mail, Audience::Pst, &subject, &body) {
        batch.spool(notice);
    }
    if let Some(poster) = poster.filter(|p| !config.lists.security.members.iter().any(|m| m == p)) {
        if let Some(notice) = ctx.notice(
            Origin::Mail,
            Audience::Member(poster.to_string()),
            &format!("your post to the {list} list was not forwarded"),
            &body,
        ) {
            batch.spool(notice);
        };
    }
    batch.quarantine(
        QuarantineMeta {
            time: Timestamp::from(ctx.now),
            reason: format!("{list}: {}", held.detail),
            incoming: incoming.meta.clone(),
        },
        incoming.raw.clone(),
    );
}
