//! Strikes: leak incidents recorded against a member. The policy: members
//! who leak must say what leaked and to whom, and "if you continue to leak
//! information … you will be removed from the list". After `max_strikes`
//! incidents a member is suspended from every list — they get no copies —
//! until an admin reinstates them.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::context::Context;
use crate::store::{Audience, Store, StoreError, Table, Transaction};

/// member id → [`MemberState`] (JSON).
static MEMBERS: Table = Table::plain("members");

/// What the store knows of a member (strikes, suspension).
pub fn state(store: &Store, member: &str) -> Result<MemberState, StoreError> {
    store
        .get(&MEMBERS, member.as_bytes())?
        .map(|v| {
            serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("member {member}: {e}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Every member with strikes or a suspension.
pub fn states(store: &Store) -> Result<Vec<(String, MemberState)>, StoreError> {
    store
        .scan(&MEMBERS, b"")?
        .into_iter()
        .map(|(key, value)| {
            let state = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("member: {e}")))?;
            Ok((String::from_utf8_lossy(&key).into_owned(), state))
        })
        .collect()
}

/// Stores `member`'s state when `tx` is applied.
fn put(tx: &mut Transaction, member: &str, state: &MemberState) {
    let json = serde_json::to_vec(state).expect("states serialize");
    tx.put(&MEMBERS, member.as_bytes(), json);
}

/// What the store keeps about a member beyond the config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberState {
    /// Every recorded leak, oldest first.
    pub strikes: Vec<Strike>,
    /// Since when (ms) the member is suspended.
    pub suspended: Option<Timestamp>,
}

/// One recorded leak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Strike {
    /// When it was recorded, in ms since the epoch.
    pub at: Timestamp,
    /// The case it was in.
    pub case: String,
    /// What leaked, and to whom.
    pub what: String,
}

/// Why a strike could not be recorded or a suspension lifted.
#[derive(Debug, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum StrikeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no member {0} in the config")]
    NoMember(String),
    #[error(transparent)]
    Case(#[from] crate::case::id::BadCaseId),
    #[error("--what: say what leaked and to whom")]
    NothingSaid,
    #[error("{0} is not suspended")]
    NotSuspended(String),
}

/// Records a leak by `member` in `case`; suspends them at the limit.
/// Returns the batch and what to tell the admin.
pub fn record(
    ctx: &Context<'_>,
    case: &str,
    member: &str,
    what: &str,
) -> Result<(Transaction, String), StrikeError> {
    let config = ctx.config;
    if !config.members.contains_key(member) {
        return Err(StrikeError::NoMember(member.to_string()));
    }
    let case = crate::case::id::CaseId::parse(config, case)?.into_string();
    if what.trim().is_empty() {
        return Err(StrikeError::NothingSaid);
    }
    let mut state = state(ctx.store, member)?;
    state.strikes.push(Strike {
        at: Timestamp::from(ctx.now),
        case: case.clone(),
        what: what.trim().to_string(),
    });
    let count = state.strikes.len();
    let max = config.leak.max_strikes;
    let suspend = count >= max as usize && state.suspended.is_none();
    if suspend {
        state.suspended = Some(Timestamp::from(ctx.now));
    }
    let mut batch = Transaction::default();
    let (subject, text) = if suspend {
        (
            format!("{member} suspended after {count} leaks"),
            format!(
                "A leak by {member} in case {case} was recorded: {what}\n\n\
                 It is their strike {count} of {max}: {member} is suspended from every list\n\
                 and receives no more copies. `embargod member reinstate {member}` undoes it.\n"
            ),
        )
    } else {
        (
            format!("leak recorded for {member} (strike {count} of {max})"),
            format!("A leak by {member} in case {case} was recorded: {what}\n\nStrike {count} of {max}.\n"),
        )
    };
    batch.spool(crate::notice::notice(
        config,
        ctx.now,
        Audience::Pst,
        &subject,
        &text,
    ));
    put(&mut batch, member, &state);
    Ok((batch, format!("{subject}\n")))
}

/// Lifts a suspension (the strikes stay on record).
pub fn reinstate(ctx: &Context<'_>, member: &str) -> Result<(Transaction, String), StrikeError> {
    let mut state = state(ctx.store, member)?;
    if state.suspended.take().is_none() {
        return Err(StrikeError::NotSuspended(member.to_string()));
    }
    let mut batch = Transaction::default();
    let subject = format!("{member} reinstated");
    batch.spool(crate::notice::notice(
        ctx.config,
        ctx.now,
        Audience::Pst,
        &subject,
        &format!("{member} was reinstated by an admin and receives copies again.\n"),
    ));
    put(&mut batch, member, &state);
    Ok((batch, format!("{subject}\n")))
}
