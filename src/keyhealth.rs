//! Key health ahead of time: once a day every member's certificate and
//! the list key are looked at, so nobody's key expires unannounced.
//!
//! A key that stops being usable for encryption (its primary key's or
//! its newest encryption subkey's expiry, [`crate::pgp::expiration`])
//! within one of `keys.warn_before` (30, 14 and 3 days) earns its holder
//! one encrypted notice at that step — the nearest step only, so a
//! daemon started 10 days before an expiry sends the 14-day warning, not
//! three at once — and the PST one summary of every key due that day.
//! Each warning is kept by certificate, expiry and step: a key that was
//! extended (a new expiry) is warned about afresh when its time comes.
//! The list key's warnings go to the PST.
//!
//! The same daily job lets bounce probes that did not bounce expire
//! ([`crate::bounce::standing::expire_probes`]) and reminds the PST of
//! releases without a public post ([`crate::advisory::overdue`]).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tracing::{error, info};

use crate::clock::{format_time, Timestamp};
use crate::context::Context;
use crate::schedule::{Event, EventKind};
use crate::store::{Audience, Store, StoreError, Table, Transaction};

/// Warnings sent: `fingerprint/expiry ms/step s` → empty. Plain.
static WARNED: Table = Table::plain("key_warnings");

/// How often the job runs.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);

/// The daily event due at `due`.
fn event(due: Timestamp) -> Event {
    Event {
        due,
        kind: EventKind::Daily,
        case: String::new(),
    }
}

/// Moves the daily job to now: at each start and reload, so a changed
/// key file or `keys.warn_before` is looked at at once (warnings already
/// sent are not sent again).
pub fn run_now(store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut tx = Transaction::new();
    for daily in crate::schedule::all(store)?
        .iter()
        .filter(|e| e.kind == EventKind::Daily)
    {
        crate::schedule::cancel(&mut tx, daily);
    }
    crate::schedule::add(&mut tx, &event(Timestamp::from(now)));
    store.apply(tx)
}

/// One key near its end: whose, which, when.
struct Due {
    /// A member id, or `None` for the list key.
    member: Option<String>,
    fingerprint: String,
    expires: SystemTime,
    /// The warning step reached.
    step: Duration,
    /// Whether this step was already told.
    told: bool,
}

/// Runs the daily job `fired`: warnings, the PST's summary, expired
/// probes; schedules the next run.
pub fn daily(ctx: &Context<'_>, fired: &Event) -> Transaction {
    let mut batch = Transaction::new();
    crate::schedule::cancel(&mut batch, fired);
    let now = Timestamp::from(ctx.now);
    let mut next = fired.due + EVERY;
    while next <= now {
        next = next + EVERY;
    }
    crate::schedule::add(&mut batch, &event(next));
    if let Err(e) = crate::bounce::standing::expire_probes(ctx, &mut batch) {
        error!(error = %e, "cannot read the bounce standings");
    }
    if let Err(e) = crate::advisory::overdue::remind(ctx, &mut batch) {
        error!(error = %e, "cannot read the embargoes and cases");
    }
    let due = match keys_due(ctx) {
        Ok(due) => due,
        Err(e) => {
            error!(error = %e, "cannot read the key warnings");
            return batch;
        }
    };
    let fresh: Vec<&Due> = due.iter().filter(|d| !d.told).collect();
    for d in &fresh {
        batch.put(&WARNED, warned_key(d), Vec::new());
        let when = format_time(d.expires.into());
        let days = days_left(d.expires, ctx.now);
        match &d.member {
            Some(member) => {
                info!(%member, fingerprint = %d.fingerprint, days, "key expiry warning");
                batch.spool(crate::notice::notice(
                    ctx.config,
                    ctx.now,
                    Audience::Member(member.clone()),
                    &format!("your key expires in {days} days"),
                    &format!(
                        "Your OpenPGP key {} stops working for the {} security lists on\n\
                         {when} (in {days} days). After that you get no copies at all:\n\
                         nothing is ever sent to you unencrypted.\n\n\
                         Extend its expiry (gpg --quick-set-expire FINGERPRINT 1y, and the same\n\
                         for its encryption subkey), then send the list a signed mail with the\n\
                         refreshed key attached or in an Autocrypt header, or give it to the\n\
                         list admins.\n",
                        d.fingerprint, ctx.config.project.name
                    ),
                ));
            }
            None => info!(fingerprint = %d.fingerprint, days, "list key expiry warning"),
        }
    }
    if !fresh.is_empty() {
        let lines: String = due
            .iter()
            .map(|d| {
                format!(
                    "- {}: {} expires {} (in {} days){}\n",
                    d.member.as_deref().unwrap_or("THE LIST KEY"),
                    d.fingerprint,
                    format_time(d.expires.into()),
                    days_left(d.expires, ctx.now),
                    if d.told { "" } else { ", warned today" }
                )
            })
            .collect();
        let list_key = due.iter().any(|d| d.member.is_none() && !d.told);
        batch.spool(crate::notice::to_pst(
            ctx.config,
            ctx.now,
            &format!("{} key(s) expire soon", due.len()),
            &format!(
                "Keys that stop working within {} days:\n\n{lines}\n\
                 Each member named was sent an encrypted warning.{}\n",
                ctx.config
                    .keys
                    .warn_before
                    .first()
                    .map_or(0, |d| d.as_secs() / 86400),
                if list_key {
                    "\nTHE LIST KEY expires: extend it (and give members the refreshed\n\
                     public key) or nothing can be signed or read after that."
                } else {
                    ""
                }
            ),
        ));
    }
    batch
}

/// Every key within the longest warning step of its expiry, and whether
/// its step was told.
fn keys_due(ctx: &Context<'_>) -> Result<Vec<Due>, StoreError> {
    let at = SystemTime::from(ctx.now);
    let list = ctx.keys.list_key.cert();
    let certs = std::iter::once((None, list)).chain(
        ctx.config
            .members
            .keys()
            .filter_map(|id| Some((Some(id.clone()), ctx.keys.member(id).ok()?))),
    );
    let mut due = Vec::new();
    for (member, cert) in certs {
        let expires = match &member {
            None => crate::pgp::list_key_expiration(cert, at),
            // A key already unusable gets no warning: the fan-out tells
            // the PST each time a copy cannot be made.
            Some(_) if crate::pgp::usable_for_encryption(cert, at).is_err() => continue,
            Some(_) => crate::pgp::expiration(cert, at),
        };
        let Some(expires) = expires else {
            continue;
        };
        let Ok(left) = expires.duration_since(at) else {
            continue; // expired: the fan-out tells the PST
        };
        // The nearest step reached: the smallest that is not below `left`.
        let Some(step) = ctx
            .config
            .keys
            .warn_before
            .iter()
            .filter(|step| left <= **step)
            .min()
            .copied()
        else {
            continue;
        };
        let mut d = Due {
            member,
            fingerprint: cert.fingerprint().to_hex(),
            expires,
            step,
            told: false,
        };
        d.told = ctx.store.get(&WARNED, &warned_key(&d))?.is_some();
        due.push(d);
    }
    Ok(due)
}

fn warned_key(d: &Due) -> Vec<u8> {
    let expires = d
        .expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{}/{expires}/{}", d.fingerprint, d.step.as_secs()).into_bytes()
}

/// Whole days from `now` to `until`, rounded to the nearest.
pub fn days_left(until: SystemTime, now: DateTime<Utc>) -> u64 {
    let left = until
        .duration_since(SystemTime::from(now))
        .unwrap_or_default();
    (left.as_secs() + 43_200) / 86_400
}
