//! A case's timeline: the policy's deadlines from the report, a reminder
//! to the Fix Lead a day before each, and a notice to the whole PST when
//! one passes. For a case that is already public every deadline is "as
//! soon as possible": due at once, and a reminder every day until met.
//!
//! Events are kept in the store's schedule (see [`crate::embargo`]) under
//! the name `case#milestone`.

use crate::clock::Timestamp;
use crate::config::Config;
use crate::context::Context;
use crate::schedule::{Event, EventKind};
use crate::store::{Audience, Transaction};

use super::{get, Case, Milestone};

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn name(case: &str, milestone: Milestone) -> String {
    format!("{case}#{milestone}")
}

/// The events of `case`'s open deadlines.
fn events(config: &Config, case: &Case, now: Timestamp) -> Vec<Event> {
    let before = config.timeline.reminder_before;
    let mut events = Vec::new();
    for deadline in case.pending_deadlines() {
        let name = name(&case.id, deadline.milestone);
        let reminder = deadline.due - before;
        if reminder > now && !case.public {
            events.push(Event {
                due: reminder,
                kind: EventKind::Deadline,
                case: name.clone(),
            });
        }
        events.push(Event {
            due: deadline.due.max(now),
            kind: EventKind::Overdue,
            case: name,
        });
    }
    events
}

/// Replaces the events of `old` (if any) with those of `case`.
pub fn schedule(
    config: &Config,
    batch: &mut Transaction,
    old: Option<&Case>,
    case: &Case,
    now: Timestamp,
) {
    if let Some(old) = old {
        // The old events, whatever "now" they were made at: both kinds at
        // every open deadline of the old state.
        let before = config.timeline.reminder_before;
        for deadline in old.pending_deadlines() {
            let name = name(&old.id, deadline.milestone);
            crate::schedule::cancel(
                batch,
                &Event {
                    due: deadline.due - before,
                    kind: EventKind::Deadline,
                    case: name.clone(),
                },
            );
            crate::schedule::cancel(
                batch,
                &Event {
                    due: deadline.due,
                    kind: EventKind::Overdue,
                    case: name,
                },
            );
        }
    }
    if case.closed.is_none() {
        for event in events(config, case, now) {
            crate::schedule::add(batch, &event);
        }
    }
}

/// Makes every open deadline due now: the case is public. (The caller
/// reschedules.)
pub fn make_public(case: &mut Case, now: Timestamp) {
    case.public = true;
    for deadline in case.deadlines.iter_mut().filter(|d| d.done.is_none()) {
        deadline.due = deadline.due.min(now);
    }
}

/// Moves every open deadline `slow_by` later: a low-severity case the Fix
/// Team slowed down. (The caller reschedules.)
pub fn slow_down(config: &Config, case: &mut Case) {
    for deadline in case.deadlines.iter_mut().filter(|d| d.done.is_none()) {
        deadline.due = deadline.due + config.timeline.slow_by;
    }
}

/// What a due case event does.
pub fn fire(ctx: &Context<'_>, event: &Event) -> Transaction {
    let mut batch = Transaction::new();
    crate::schedule::cancel(&mut batch, event);
    let Some((id, milestone)) = event
        .case
        .split_once('#')
        .and_then(|(id, m)| Some((id, Milestone::parse(m).ok()?)))
    else {
        return batch;
    };
    let Ok(Some(case)) = get(ctx, id) else {
        return batch;
    };
    let Some(deadline) = case
        .deadline(milestone)
        .filter(|d| d.done.is_none() && case.closed.is_none())
    else {
        return batch;
    };
    let now = Timestamp::from(ctx.now);
    let lead = case.lead.clone().unwrap_or_else(|| "(no Fix Lead)".into());
    match event.kind {
        EventKind::Deadline => {
            let before = ctx.config.timeline.reminder_before;
            if event.due != deadline.due - before {
                return batch; // the deadline moved; its new reminder is scheduled
            }
            if let Some(lead) = &case.lead {
                batch.spool(crate::notice::notice(
                    ctx.config,
                    ctx.now,
                    Audience::Member(lead.clone()),
                    &format!(
                        "{id}: {} due {}",
                        milestone.label(),
                        deadline.due.formatted()
                    ),
                    &format!(
                        "Reminder for the Fix Lead of {id}: \"{}\" is due at {}.\n\
                         When it is done, post to the security list, signed, with\n\
                         X-Case: {id}\nX-Done: {milestone}\n",
                        milestone.label(),
                        deadline.due.formatted()
                    ),
                ));
            }
        }
        EventKind::Overdue => {
            batch.spool(crate::notice::notice(
                ctx.config,
                ctx.now,
                Audience::Pst,
                &format!("{id} OVERDUE: {}", milestone.label()),
                &format!(
                    "Case {id}: \"{}\" was due at {}{} and is not done.\n\
                     Fix Lead: {lead}.\n",
                    milestone.label(),
                    deadline.due.formatted(),
                    if case.public {
                        " (the case is public: as soon as possible)"
                    } else {
                        ""
                    },
                ),
            ));
            if case.public {
                // Every day until it is met.
                crate::schedule::add(
                    &mut batch,
                    &Event {
                        due: now + DAY,
                        kind: EventKind::Overdue,
                        case: event.case.clone(),
                    },
                );
            }
        }
        EventKind::Reminder | EventKind::Release | EventKind::StatusDigest | EventKind::Daily => {}
    }
    batch
}

/// Records a case milestone met by an event (a distributors post, the
/// release), opening the case when a post names an ID that started
/// elsewhere.
pub fn milestone_met(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: &str,
    milestone: super::Milestone,
    by: &str,
) {
    let now = Timestamp::from(ctx.now);
    let case = match super::get(ctx, id) {
        Ok(Some(case)) => Some(case),
        Ok(None) => super::create_named(ctx, batch, id).ok(),
        Err(_) => None,
    };
    if let Some(mut case) = case {
        let old = case.clone();
        if case.meet(milestone, now, by) {
            schedule(ctx.config, batch, Some(&old), &case, now);
            super::put(batch, &case);
        }
    }
}
