//! The distributors list: embargoed patches from the PST, replies from
//! distributors.
//!
//! Only a valid signature by a pinned key authorises a post — a PST
//! member's, or a distributor's for replies; the From field authorises
//! nothing. A PST post names its case and the agreed disclosure time in
//! keyword lines (`X-Case:`, `X-Embargo-Until:`), which open or move the
//! case's embargo, or releases it early (`X-Release: now`). Each copy loses
//! the keyword lines and starts with the embargo banner; its Subject gets
//! `[EMBARGOED]`. Anything not allowed is held for moderation and the PST
//! (and the poster) are told why.

use crate::clock::{from_millis, to_millis};
use crate::config::{ListName, Member};
use crate::embargo::{
    banner, check_until, embargoed_subject, format_time, parse_time, release, Advisory, CaseId,
    Change, EarlyRelease, Embargo,
};
use crate::keywords::{self, Keyword};
use crate::mime::edit;
use crate::mime::encode_header_value;
use crate::mime::inbound::{with_header, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::store::{Audience, Batch, Incoming, QuarantineMeta};

use super::{fan_out, info_text, Context, Outgoing};

/// Keywords a distributors post may carry.
const KNOWN: &[&str] = &["case", "embargo-until", "release", "reason"];

/// What a post asks for, once checked.
enum Decision {
    /// Forward it; for a PST post, with the embargo it opens or moves.
    Forward {
        case: Option<String>,
        embargo: Option<Embargo>,
        moved_from: Option<u64>,
    },
    /// Publish the case now.
    ReleaseNow { case: String, reason: String },
}

pub(super) fn post(
    ctx: &Context<'_>,
    batch: &mut Batch,
    id: u64,
    incoming: &Incoming,
    unwrapped: &Unwrapped,
) {
    let config = ctx.config;
    let Some(list) = &config.lists.distributors else {
        return;
    };
    let pst = &config.lists.security.members;
    let allowed: Vec<String> = pst.iter().chain(&list.members).cloned().collect();
    let signer = crate::case::intake::signer(ctx, unwrapped, &allowed);
    let Some(signer) = signer else {
        let now = std::time::SystemTime::from(ctx.now);
        let stale: Vec<String> = unwrapped
            .signatures
            .good_signers()
            .filter(|s| allowed.iter().any(|m| m == s))
            .filter_map(|s| {
                ctx.keys
                    .in_force(s, now)
                    .err()
                    .map(|problem| format!("{s}: {problem}"))
            })
            .collect();
        let reason = if unwrapped.signatures.0.is_empty() {
            "not signed; posts to this list must be signed by a PST member or distributor"
                .to_string()
        } else if !stale.is_empty() {
            format!("signed by a key no longer in force ({})", stale.join("; "))
        } else {
            format!(
                "no valid signature by a PST member or distributor ({})",
                unwrapped.signatures
            )
        };
        hold(ctx, batch, id, incoming, unwrapped, None, &reason);
        return;
    };
    let is_pst = pst.contains(&signer);

    // The signed content, without its signature wrapper (the list key
    // signs each copy) and without the keyword lines.
    let content = edit::unsigned(&unwrapped.content);
    let text = edit::first_text(&content)
        .map(|slot| slot.text)
        .unwrap_or_default();
    let (keywords, rest) = keywords::split(&text);
    let content = if keywords.is_empty() {
        content
    } else {
        edit::replace_first_text(&content, &rest).unwrap_or(content)
    };

    let decision = if is_pst {
        pst_post(ctx, &signer, &keywords, &rest)
    } else {
        distributor_reply(ctx, &keywords, &unwrapped.subject)
    };
    let decision = match decision {
        Ok(decision) => decision,
        Err(reason) => {
            hold(ctx, batch, id, incoming, unwrapped, Some(&signer), &reason);
            return;
        }
    };

    match decision {
        Decision::ReleaseNow { case, reason } => {
            let early = EarlyRelease {
                by: signer.clone(),
                reason,
            };
            match release::release(ctx, &case, Some(early)) {
                Ok(released) => batch.merge(released),
                Err(reason) => hold(ctx, batch, id, incoming, unwrapped, Some(&signer), &reason),
            }
        }
        Decision::Forward {
            case,
            embargo,
            moved_from,
        } => {
            let identity = ListIdentity::new(config, list);
            let pending = embargo.clone().or_else(|| {
                let case = case.as_deref()?;
                ctx.store
                    .embargo(case)
                    .ok()
                    .flatten()
                    .filter(|e| e.released.is_none())
            });
            let mut info = match &pending {
                Some(e) => banner(config, &e.case, e.until()),
                None => format!(
                    "EMBARGOED: sent to the private {} distributors list.\n\
                     Treat it as under embargo until the PST announces the disclosure.\n",
                    config.project.name
                ),
            };
            if let (Some(from), Some(e)) = (moved_from, &pending) {
                info.push_str(&format!(
                    "The disclosure time moved from {} to {}.\n",
                    format_time(from_millis(from)),
                    format_time(e.until())
                ));
            }
            info.push('\n');
            info.push_str(&info_text(&identity, unwrapped, &incoming.meta));
            let subject = match &pending {
                Some(e) => embargoed_subject(&unwrapped.subject, &e.case),
                None => format!("[EMBARGOED] {}", unwrapped.subject.trim()),
            };
            let outgoing = Outgoing::new(
                with_header(
                    &unwrapped.headers,
                    "Subject",
                    &encode_header_value(&subject),
                ),
                info,
                content.clone(),
                pending.as_ref().map(|e| e.case.clone()).or(case.clone()),
                unwrapped.encryption != crate::mime::inbound::Encryption::ToOthers,
                list.mark_patches,
            );
            let members = recipients(ctx);
            let copies = fan_out(
                ctx,
                batch,
                id,
                ListName::Distributors,
                &identity,
                &members,
                &outgoing,
                false,
            );
            if let Some(mut embargo) = embargo {
                embargo.recipients = copies;
                if let Some(old) = ctx.store.embargo(&embargo.case).ok().flatten() {
                    batch.schedule_remove.extend(old.events(config));
                }
                let now = to_millis(ctx.now);
                batch
                    .schedule_add
                    .extend(embargo.events(config).into_iter().filter(|e| e.due > now));
                batch.advisories.push((
                    embargo.case.clone(),
                    Advisory {
                        subject: unwrapped.subject.clone(),
                        content,
                    },
                ));
                tracing::info!(msg = id, case = %embargo.case, until = %format_time(embargo.until()), "embargo set");
                crate::case::intake::milestone_met(
                    ctx,
                    batch,
                    &embargo.case,
                    crate::case::Milestone::Distributors,
                    "a distributors post",
                );
                batch.embargoes.push(embargo);
            }
        }
    }
}

/// A PST member's post: names the case, and sets, moves or releases its
/// embargo.
fn pst_post(
    ctx: &Context<'_>,
    signer: &str,
    keywords: &[Keyword],
    rest: &str,
) -> Result<Decision, String> {
    check_known(keywords)?;
    let case = keywords::get(keywords, "case")
        .ok_or("no X-Case: line; a post to the distributors list names its case, like X-Case: KAP-2026-0001")?;
    let case = CaseId::parse(ctx.config, case)?.0;
    let existing = ctx.store.embargo(&case).map_err(|e| e.to_string())?;
    if let Some(released) = existing.as_ref().and_then(|e| e.released.as_ref()) {
        return Err(format!(
            "case {case} is already public (released {})",
            format_time(from_millis(released.at))
        ));
    }
    if let Some(release) = keywords::get(keywords, "release") {
        if !release.eq_ignore_ascii_case("now") {
            return Err(format!(
                "X-Release: {release:?} — only \"now\" is understood"
            ));
        }
        if existing.is_none() {
            return Err(format!("case {case} has no embargo to release"));
        }
        let reason = keywords::get(keywords, "reason")
            .map(str::to_string)
            .or_else(|| {
                rest.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            })
            .ok_or("X-Release: now needs a reason: an X-Reason: line or a first line of text")?;
        return Ok(Decision::ReleaseNow { case, reason });
    }
    let until = keywords::get(keywords, "embargo-until").ok_or(
        "no X-Embargo-Until: line; give the agreed disclosure time, like X-Embargo-Until: 2026-12-01T16:00:00Z",
    )?;
    let until = parse_time(until)?;
    check_until(ctx.config, until, ctx.now)?;
    let now = to_millis(ctx.now);
    let change = Change {
        at: now,
        by: signer.to_string(),
        until: to_millis(until),
    };
    let (embargo, moved_from) = match existing {
        Some(mut embargo) => {
            let moved_from = (embargo.until != change.until).then_some(embargo.until);
            embargo.until = change.until;
            embargo.poster = signer.to_string();
            embargo.updated = now;
            embargo.history.push(change);
            (embargo, moved_from)
        }
        None => (
            Embargo {
                case: case.clone(),
                until: change.until,
                poster: signer.to_string(),
                opened: now,
                updated: now,
                recipients: 0,
                history: vec![change],
                released: None,
            },
            None,
        ),
    };
    Ok(Decision::Forward {
        case: Some(case),
        embargo: Some(embargo),
        moved_from,
    })
}

/// A distributor's reply: forwarded, but it may not touch an embargo.
fn distributor_reply(
    ctx: &Context<'_>,
    keywords: &[Keyword],
    subject: &str,
) -> Result<Decision, String> {
    check_known(keywords)?;
    if keywords::get(keywords, "embargo-until").is_some()
        || keywords::get(keywords, "release").is_some()
    {
        return Err("only PST members may set, move or release an embargo".into());
    }
    let case = match keywords::get(keywords, "case") {
        Some(case) => {
            let case = CaseId::parse(ctx.config, case)?.0;
            if ctx
                .store
                .embargo(&case)
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("case {case} is not known on this list"));
            }
            Some(case)
        }
        None => CaseId::find_in(ctx.config, subject).map(|c| c.0),
    };
    Ok(Decision::Forward {
        case,
        embargo: None,
        moved_from: None,
    })
}

fn check_known(keywords: &[Keyword]) -> Result<(), String> {
    match keywords.iter().find(|k| !KNOWN.contains(&k.name.as_str())) {
        Some(unknown) => Err(format!(
            "unknown keyword X-{}; known are X-Case, X-Embargo-Until, X-Release, X-Reason",
            unknown.name
        )),
        None => Ok(()),
    }
}

/// Distributors and the PST, each once.
fn recipients<'c>(ctx: &Context<'c>) -> Vec<&'c Member> {
    super::audience(
        ctx.config,
        &Audience::Lists(vec![ListName::Distributors, ListName::Security]),
    )
}

/// Holds a post for moderation and tells the PST — and the poster, when a
/// member's key signed it — why.
fn hold(
    ctx: &Context<'_>,
    batch: &mut Batch,
    id: u64,
    incoming: &Incoming,
    unwrapped: &Unwrapped,
    poster: Option<&str>,
    reason: &str,
) {
    let config = ctx.config;
    tracing::warn!(msg = id, list = "distributors", %reason, "held for moderation");
    let address = config
        .lists
        .distributors
        .as_ref()
        .map(|l| l.address.to_string())
        .unwrap_or_default();
    let body = format!(
        "Message {id} to {address} from {} was not forwarded: {reason}.\n\
         It is held for moderation; nothing reached the distributors.\n",
        unwrapped.sender
    );
    batch.add_spool.extend(ctx.notice(
        false,
        Audience::Pst,
        "post to the distributors list held",
        &body,
    ));
    if let Some(poster) = poster.filter(|p| !config.lists.security.members.iter().any(|m| m == p)) {
        batch.add_spool.extend(ctx.notice(
            false,
            Audience::Member(poster.to_string()),
            "your post to the distributors list was not forwarded",
            &body,
        ));
    }
    batch.quarantine.push((
        QuarantineMeta {
            time: to_millis(ctx.now),
            reason: format!("distributors: {reason}"),
            incoming: incoming.meta.clone(),
        },
        incoming.raw.clone(),
    ));
}
