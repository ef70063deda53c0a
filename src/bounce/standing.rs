//! A member's bounce standing: Mailman's score, a probe, and one notice
//! to the PST when the member turns out to be unreachable.
//!
//! - **reachable**: each UTC day with a counted bounce adds one point; a
//!   score whose last bounce is older than `bounces.stale_after` starts
//!   again from zero. At `bounces.threshold` points a probe goes out: an
//!   encrypted notice to the member alone, with its own VERP token.
//! - **probing**: a bounce of a copy queued after the probe began (the
//!   probe, or any later copy) makes the member **bouncing**, and the PST
//!   gets one notice. No such bounce within `bounces.probe_wait`: the
//!   address works again, the score is cleared ([`expire_probes`]).
//! - **bouncing**: their copies are still made and sent — encrypted, so
//!   a dead address costs nothing, and an address that recovers misses
//!   nothing — but `member list` and `embargoes` show it, until an admin
//!   fixes the address (a new address starts a new standing) or runs
//!   `embargod member clear-bounces`.
//!
//! Every counted bounce is also a ledger record of the copy: `bounced`
//! for a bounce that came back, `failed` for a relay's outright refusal.

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Bounced;
use crate::clock::Timestamp;
use crate::context::Context;
use crate::store::{Audience, Store, StoreError, Table, Transaction};

/// Member id → [`Standing`] (JSON). Plain: counts, times and a server's
/// status line.
static STANDINGS: Table = Table::plain("bounce_standing");

/// One member's bounce record, for the address it was kept for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Standing {
    /// The address the bounces were for; a member whose address changed
    /// starts again.
    pub address: String,
    /// Days with a counted bounce since the score was last cleared.
    pub score: u32,
    /// The last counted bounce.
    pub last_bounce: Option<Timestamp>,
    /// What the last bounce said (status and diagnostic, one line).
    pub last_diagnostic: String,
    /// Bounces counted in all (each copy once).
    pub bounces: u32,
    /// Reachable, probing or bouncing.
    pub state: State,
}

/// Where a member stands.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    /// Mail is believed to arrive.
    #[default]
    Reachable,
    /// A probe went out at `since`; its bounce would confirm.
    Probing {
        /// When the probe was sent, ms since the epoch.
        since: Timestamp,
    },
    /// Copies bounce, the probe included, since `since`.
    Bouncing {
        /// When the probe's bounce confirmed it, ms since the epoch.
        since: Timestamp,
    },
}

impl State {
    /// `reachable`, `probing since …`, `BOUNCING since …`.
    pub fn describe(&self) -> String {
        match self {
            State::Reachable => "reachable".into(),
            State::Probing { since } => format!("probing since {}", since.formatted()),
            State::Bouncing { since } => format!("BOUNCING since {}", since.formatted()),
        }
    }
}

/// `member`'s standing for `address` (the default when none was kept, or
/// when it was kept for another address).
pub fn get(store: &Store, member: &str, address: &str) -> Result<Standing, StoreError> {
    read(store.get(&STANDINGS, member.as_bytes())?, address)
}

/// [`get`], as `batch` leaves it: several bounces of one member in one
/// transaction each see the one before.
fn get_in(
    store: &Store,
    batch: &Transaction,
    member: &str,
    address: &str,
) -> Result<Standing, StoreError> {
    match batch.pending(&STANDINGS, member.as_bytes()) {
        Some(pending) => read(pending.map(<[u8]>::to_vec), address),
        None => get(store, member, address),
    }
}

fn read(value: Option<Vec<u8>>, address: &str) -> Result<Standing, StoreError> {
    let stored = value
        .map(|v| {
            serde_json::from_slice::<Standing>(&v)
                .map_err(|e| StoreError::Corrupt(format!("bounce standing: {e}")))
        })
        .transpose()?;
    Ok(stored
        .filter(|s| s.address.eq_ignore_ascii_case(address))
        .unwrap_or_else(|| Standing {
            address: address.to_string(),
            ..Standing::default()
        }))
}

fn put(tx: &mut Transaction, member: &str, standing: &Standing) {
    tx.put(
        &STANDINGS,
        member.as_bytes().to_vec(),
        serde_json::to_vec(standing).expect("standings serialize"),
    );
}

/// Counts `bounced` against its member: the score, and a probe or the
/// PST's notice when the standing changes. (The caller records the copy's
/// outcome in the ledger.)
pub fn register(ctx: &Context<'_>, batch: &mut Transaction, bounced: &Bounced) {
    let copy = &bounced.copy;
    let Some(member) = ctx.config.members.get(&copy.member) else {
        return;
    };
    let address = member.email.to_string();
    if !copy.email.eq_ignore_ascii_case(&address) {
        info!(member = %copy.member, "bounce for an address the member no longer has: not counted");
        return;
    }
    let mut standing = match get_in(ctx.store, batch, &copy.member, &address) {
        Ok(standing) => standing,
        Err(e) => {
            warn!(member = %copy.member, error = %e, "cannot read a bounce standing");
            return;
        }
    };
    let now = Timestamp::from(ctx.now);
    let config = &ctx.config.bounces;
    let day = |t: Timestamp| t.millis() / 86_400_000;
    let new_day = standing
        .last_bounce
        .is_none_or(|last| day(last) != day(now));
    if standing
        .last_bounce
        .is_some_and(|last| now.since(last) > config.stale_after)
        && standing.state == State::Reachable
    {
        standing.score = 0;
    }
    standing.bounces += 1;
    standing.last_bounce = Some(now);
    standing.last_diagnostic = bounced.diagnostic.clone();
    match standing.state {
        State::Reachable => {
            if new_day || standing.score == 0 {
                standing.score += 1;
            }
            if standing.score >= config.threshold {
                standing.state = State::Probing { since: now };
                warn!(member = %copy.member, score = standing.score, "copies bounce: probing the address");
                batch.spool(crate::notice::notice(
                    ctx.config,
                    ctx.now,
                    Audience::Member(copy.member.clone()),
                    "delivery probe: is this address still yours?",
                    &format!(
                        "Mail from the {} security lists to {address} has bounced on {} days.\n\
                         This message is a probe: if it reaches you, nothing needs doing.\n\
                         If it bounces too, the PST is told that mail to you does not arrive.\n",
                        ctx.config.project.name, standing.score
                    ),
                ));
            }
        }
        State::Probing { since } if bounced.queued >= since => {
            standing.state = State::Bouncing { since: now };
            warn!(member = %copy.member, "the probe bounced: member is bouncing");
            batch.spool(crate::notice::to_pst(
                ctx.config,
                ctx.now,
                &format!("{} is bouncing", copy.member),
                &format!(
                    "Copies to {} <{address}> bounce: {} bounce(s) on {} day(s), and the probe\n\
                     sent {} bounced too. The last said:\n\n  {}\n\n\
                     Their copies are still sent (encrypted) but do not arrive: embargoed\n\
                     patches among them are shown as \"not delivered\" by `embargod embargoes`.\n\
                     Fix the address in the config and reload (a new address starts afresh),\n\
                     or remove the member. If the address works again as it is:\n\
                     `embargod member clear-bounces {}`.\n",
                    copy.member,
                    standing.bounces,
                    standing.score,
                    since.formatted(),
                    bounced.diagnostic,
                    copy.member,
                ),
            ));
        }
        // A bounce of a copy sent before the probe says nothing new;
        // a bouncing member is already known.
        State::Probing { .. } | State::Bouncing { .. } => {}
    }
    put(batch, &copy.member, &standing);
}

/// Probes that did not bounce within `bounces.probe_wait`: the address
/// works, the score is cleared. Run by the daily job.
pub fn expire_probes(ctx: &Context<'_>, batch: &mut Transaction) -> Result<(), StoreError> {
    let now = Timestamp::from(ctx.now);
    for (key, value) in ctx.store.scan(&STANDINGS, b"")? {
        let Ok(mut standing) = serde_json::from_slice::<Standing>(&value) else {
            continue;
        };
        if let State::Probing { since } = standing.state {
            if now.since(since) >= ctx.config.bounces.probe_wait {
                let member = String::from_utf8_lossy(&key).into_owned();
                info!(%member, "the probe did not bounce: member reachable again");
                standing.state = State::Reachable;
                standing.score = 0;
                put(batch, &member, &standing);
            }
        }
    }
    Ok(())
}

/// Every kept standing, by member id (for the members' current address
/// only: see [`get`]).
pub fn all(store: &Store) -> Result<Vec<(String, Standing)>, StoreError> {
    store
        .scan(&STANDINGS, b"")?
        .into_iter()
        .map(|(key, value)| {
            let standing = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("bounce standing: {e}")))?;
            Ok((String::from_utf8_lossy(&key).into_owned(), standing))
        })
        .collect()
}

impl Standing {
    /// The score as it counts at `now`: zero once it went stale.
    pub fn score_at(&self, now: Timestamp, stale_after: std::time::Duration) -> u32 {
        match (self.state, self.last_bounce) {
            (State::Reachable, Some(last)) if now.since(last) > stale_after => 0,
            _ => self.score,
        }
    }
}

/// Clears `member`'s standing (an admin fixed the address, or knows it
/// works).
pub fn clear(tx: &mut Transaction, member: &str) {
    tx.remove(&STANDINGS, member.as_bytes().to_vec());
}
