//! Admin commands about embargoes: list them, release early, move.

use std::sync::Arc;

use super::Response;
use crate::clock::format_time;
use crate::clock::Timestamp;
use crate::embargo::{
    check_notice, check_until, parse_time, release, snap, Change, EarlyRelease, ShortNotice,
};
use crate::state::Shared;
use crate::store::Audience;

pub(super) async fn embargoes(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    let read = crate::blocking(move || {
        Ok::<_, crate::store::StoreError>((
            crate::embargo::all(&store)?,
            crate::ledger::records(&store)?,
        ))
    });
    let (embargoes, records) = match read.await {
        Ok(read) => read,
        Err(e) => return Response::error(e.to_string()),
    };
    let config = shared.config();
    let pending: Vec<_> = embargoes.iter().filter(|e| e.released.is_none()).collect();
    if pending.is_empty() {
        return Response::ok("no pending embargoes\n".into());
    }
    let now = shared.clock.now();
    let mut text = format!(
        "{:<16} {:<22} {:>12}  {:<12} {:>10}\n",
        "CASE", "PUBLIC AT", "IN", "POSTER", "RECIPIENTS"
    );
    for e in &pending {
        let left = e.until().signed_duration_since(now);
        let left = match (
            left.num_days(),
            left.num_hours() % 24,
            left.num_minutes() % 60,
        ) {
            _ if left.num_seconds() <= 0 => "due".to_string(),
            (0, hours, minutes) => format!("{hours}h {minutes:02}m"),
            (days, hours, _) => format!("{days}d {hours:02}h"),
        };
        text.push_str(&format!(
            "{:<16} {:<22} {:>12}  {:<12} {:>10}\n",
            e.case,
            format_time(e.until()),
            left,
            e.poster,
            e.recipients
        ));
    }
    for e in &pending {
        if let Some(short) = &e.short_notice {
            text.push_str(&format!(
                "\n{}: SHORT NOTICE allowed by {}: {}\n",
                e.case, short.by, short.reason
            ));
        }
    }
    for e in pending {
        let rows = crate::embargo::statuses::rows(&config, e, &records);
        if !rows.is_empty() {
            text.push_str(&format!(
                "\n{} distributors:\n{}",
                e.case,
                crate::embargo::statuses::text(&rows)
            ));
        }
    }
    Response::ok(text)
}

pub(super) async fn release_now(shared: &Arc<Shared>, case: &str, reason: String) -> Response {
    let _embargoes = shared.embargo_lock.lock().await;
    let case_owned = case.to_string();
    // What the records lack is read in the same pass as the release,
    // from the case record the release itself reads.
    let released = shared
        .in_context(move |ctx| {
            let missing = crate::case::get(ctx, &case_owned)
                .ok()
                .flatten()
                .map(|record| crate::advisory::draft::missing(&record))
                .unwrap_or_default();
            release::release(
                ctx,
                &case_owned,
                Some(EarlyRelease {
                    by: "an admin (command line)".into(),
                    reason,
                }),
            )
            .map(|batch| (batch, missing))
        })
        .await;
    match released {
        Ok((batch, missing)) => match shared.commit(batch).await {
            Ok(()) => {
                let mut text = format!(
                    "{case} released; the announcement is queued\nrecords: {}\n",
                    shared.config().publish.dir.join(case).display()
                );
                if !missing.is_empty() {
                    text.push_str("published without:\n");
                    for line in missing {
                        text.push_str(&format!("  {line}\n"));
                    }
                }
                Response::ok(text)
            }
            Err(e) => Response::error(e.to_string()),
        },
        Err(e) => Response::error(e),
    }
}

pub(super) async fn reschedule(
    shared: &Arc<Shared>,
    case: &str,
    at: &str,
    reason: Option<String>,
) -> Response {
    let _embargoes = shared.embargo_lock.lock().await;
    let config = shared.config();
    let now = shared.clock.now();
    // The same rules as a PST post: the next release slot, and the
    // notice window unless a reason is given (recorded, told to all).
    let asked = match parse_time(at) {
        Ok(asked) => asked,
        Err(e) => return Response::error(e),
    };
    let until = snap(&config, asked);
    if let Err(e) = check_until(&config, until, now) {
        return Response::error(e);
    }
    let mut embargo = match crate::embargo::get(&shared.store, case) {
        Ok(Some(e)) if e.released.is_none() => e,
        Ok(Some(_)) => return Response::error(format!("case {case} is already public")),
        Ok(None) => return Response::error(format!("case {case} has no embargo")),
        Err(e) => return Response::error(e.to_string()),
    };
    let reason = reason
        .map(|r| crate::mime::note(&r, 200))
        .filter(|r| !r.is_empty());
    let short_notice = match check_notice(&config, embargo.opened.to_datetime(), until) {
        Ok(()) => None,
        Err(e) => match reason {
            Some(reason) => Some(ShortNotice {
                by: "an admin (command line)".into(),
                reason,
            }),
            None => {
                return Response::error(format!(
                    "{e}. From the command line, give the reason with --reason"
                ))
            }
        },
    };
    let old = embargo.clone();
    let at = Timestamp::from(now);
    // The command line outranks every post signed before it.
    embargo.change(
        Change {
            at,
            by: "an admin (command line)".into(),
            until: Timestamp::from(until),
        },
        at,
    );
    embargo.short_notice = short_notice.clone();
    let mut text = format!(
        "The disclosure time of case {case} moved from {} to {}.\n\
         The embargo holds until then.\n",
        crate::clock::format_disclosure(old.until()),
        crate::clock::format_disclosure(until)
    );
    if until != asked {
        text.push_str(&format!(
            "(Asked for {}; moved to the next release slot.)\n",
            crate::clock::format_disclosure(asked)
        ));
    }
    if let Some(short) = &short_notice {
        text.push_str(&format!(
            "SHORT NOTICE: less than the policy's {} before disclosure, allowed by {}: {}\n",
            humantime::format_duration(config.embargo.min_notice),
            short.by,
            short.reason
        ));
    }
    let mut batch = crate::store::Transaction::new();
    crate::embargo::put_scheduled(&config, &mut batch, Some(&old), &embargo, at);
    batch.spool(crate::notice::notice(
        &config,
        now,
        Audience::Lists(vec![
            crate::config::ListName::Security,
            crate::config::ListName::Distributors,
        ]),
        &format!("{case}: disclosure time moved to {}", format_time(until)),
        &text,
    ));
    match shared.commit(batch).await {
        Ok(()) => Response::ok(format!(
            "{case} now goes public at {}{}\n",
            crate::clock::format_disclosure(until),
            if until != asked {
                " (the next release slot)"
            } else {
                ""
            }
        )),
        Err(e) => Response::error(e.to_string()),
    }
}
