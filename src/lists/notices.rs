//! Notices: the daemon's own messages (a member without a key, a held
//! post, a failed delivery, a reminder) to the PST, the members of lists,
//! or one member. They re-enter through the spool like any mail, so they
//! are encrypted to each member like any copy.

use crate::config::{Config, ListName, Member};
use crate::context::{Context, Origin};
use crate::fanout::{fan_out, Marking, Outgoing, Recipients};
use crate::mime::inbound::Unwrapped;
use crate::mime::outbound::ListIdentity;
use crate::store::{Audience, Transaction};

/// Fans notice `id` out to its audience, unmarked.
pub(super) fn post(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: u64,
    to: &Audience,
    unwrapped: &Unwrapped,
) {
    let config = ctx.config;
    let members = audience(config, to);
    let identity = ListIdentity::new(config, &config.lists.security);
    let info = format!(
        "Notice from embargod, the daemon of {} <{}>.\n",
        identity.display, identity.address
    );
    // Notices are the daemon's own words: nothing to trace.
    let outgoing = Outgoing::new(
        unwrapped.headers.clone(),
        info,
        unwrapped.content.clone(),
        None,
        Marking::OFF,
    );
    let to = Recipients {
        list: ListName::Security,
        identity: &identity,
        members: &members,
    };
    fan_out(ctx, batch, id, to, outgoing, Origin::Notice);
}

/// The members a notice goes to, each once.
pub(crate) fn audience<'c>(config: &'c Config, to: &Audience) -> Vec<&'c Member> {
    let mut members: Vec<&Member> = match to {
        Audience::Pst => config.members_of(&config.lists.security),
        Audience::Lists(lists) => lists
            .iter()
            .filter_map(|name| config.list(*name))
            .flat_map(|list| config.members_of(list))
            .collect(),
        Audience::Member(id) => config.members.get(id).into_iter().collect(),
    };
    let mut seen = std::collections::HashSet::new();
    members.retain(|m| seen.insert(m.id.clone()));
    members
}
