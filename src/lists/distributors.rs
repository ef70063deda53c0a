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

use crate::case::id::CaseId;
use crate::clock::Timestamp;
use crate::config::{ListName, Member};
use crate::embargo::{
    banner, check_notice, check_until, embargoed_subject, parse_time, release, snap, Ack, Advisory,
    Change, DistributorStatus, EarlyRelease, Embargo, ShortNotice,
};
use crate::freshness::{self, Authority};
use crate::keywords::{self, Keyword};
use crate::mime::edit;
use crate::mime::inbound::{with_header, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::pgp::open::GoodSignature;
use crate::store::{Audience, Transaction};

use super::hold::Held;
use super::Post;
use crate::context::{Context, Origin};
use crate::fanout::{fan_out, info_text, Marking, Outgoing, Recipients};

/// Keywords a distributors post may carry.
const KNOWN: &[&str] = &[
    "case",
    "embargo-until",
    "release",
    "reason",
    "subject",
    "status",
    "note",
    "public",
    "short-notice",
];

/// What a post asks for, once checked.
enum Decision {
    /// Forward it; for a PST post, with the embargo it opens or moves.
    Forward {
        case: Option<String>,
        embargo: Option<Box<Embargo>>,
        moved_from: Option<Timestamp>,
        /// Lines for the copies' banner: a snapped time, a short notice.
        note: String,
    },
    /// Publish the case now.
    ReleaseNow { case: String, reason: String },
    /// A distributor's `X-Status:` on a case: recorded, and forwarded to
    /// the PST alone.
    Status {
        case: String,
        status: DistributorStatus,
    },
}

pub(super) fn post(ctx: &Context<'_>, batch: &mut Transaction, post: Post<'_>) {
    let Post {
        id,
        incoming,
        unwrapped,
    } = post;
    let config = ctx.config;
    let Some(list) = &config.lists.distributors else {
        return;
    };
    let pst = &config.lists.security.members;
    let allowed: Vec<String> = pst.iter().chain(&list.members).cloned().collect();
    let hold = |batch: &mut Transaction, poster: Option<&str>, held: Held| {
        super::hold::hold(ctx, batch, post, ListName::Distributors, poster, &held)
    };
    let sig = match freshness::authorise(ctx, batch, &unwrapped.signatures, &allowed) {
        Authority::Signed(sig) => sig,
        Authority::Refused { member, why } => {
            let detail = format!("the signature by {member} may not authorise a post: {why}");
            return hold(batch, Some(member), Held::new(why.kind(), detail));
        }
        Authority::None if !unwrapped.part_notes.is_empty() => {
            let detail = format!(
                "no signature covers the whole post ({}); a post is forwarded only when one \
                 signature covers all of it: sign the whole message (PGP/MIME)",
                unwrapped.part_notes.join("; ")
            );
            return hold(batch, None, Held::new("not signed as a whole", detail));
        }
        Authority::None if unwrapped.signatures.0.is_empty() => {
            return hold(
                batch,
                None,
                Held::new(
                    "not signed",
                    "not signed; posts to this list must be signed by a PST member or distributor",
                ),
            );
        }
        Authority::None => {
            let detail = format!(
                "no valid signature by a PST member or distributor ({})",
                unwrapped.signatures
            );
            return hold(batch, None, Held::new("no member signature", detail));
        }
    };
    let signer = sig.member;
    let is_pst = pst.iter().any(|m| m == signer);

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
        pst_post(ctx, sig, &keywords, &rest)
    } else {
        distributor_reply(ctx, sig, &keywords, unwrapped)
    };
    let decision = match decision {
        Ok(decision) => decision,
        // A refused signed post is held and its signature spent, as on
        // the security list: held for "too far" or "not the Fix Lead", it
        // must not be replayed to count once the date or the lead moves.
        Err(held) => {
            freshness::spend(ctx, batch, &unwrapped.signatures);
            return hold(batch, Some(signer), held);
        }
    };

    match decision {
        Decision::Status { case, status } => {
            freshness::spend(ctx, batch, &unwrapped.signatures);
            record_status(ctx, batch, post, sig, &case, status, content);
        }
        Decision::ReleaseNow { case, reason } => {
            let early = EarlyRelease {
                by: signer.to_string(),
                reason,
            };
            match release::release(ctx, &case, Some(early)) {
                Ok(released) => {
                    batch.merge(released);
                    freshness::spend(ctx, batch, &unwrapped.signatures);
                }
                Err(reason) => hold(batch, Some(signer), Held::new("release failed", reason)),
            }
        }
        Decision::Forward {
            case,
            embargo,
            moved_from,
            note,
        } => {
            freshness::spend(ctx, batch, &unwrapped.signatures);
            let embargo = embargo.map(|e| *e);
            let identity = ListIdentity::new(config, list);
            let pending = embargo.clone().or_else(|| {
                let case = case.as_deref()?;
                crate::embargo::get(ctx.store, case)
                    .ok()
                    .flatten()
                    .filter(|e| e.released.is_none())
            });
            // A reply on a case already public is not under embargo.
            let released = match (&pending, &case) {
                (None, Some(case)) => crate::embargo::get(ctx.store, case)
                    .ok()
                    .flatten()
                    .and_then(|e| e.released.map(|r| r.at)),
                _ => None,
            };
            let mut info = match (&pending, released, &case) {
                (Some(e), _, _) => banner(config, &e.case, e.until()),
                (None, Some(at), Some(case)) => format!(
                    "Case {case} is public since {}: this reply on the private {} distributors\n\
                     list is no longer under embargo, but stays among the list's members.\n",
                    crate::clock::format_disclosure(at.to_datetime()),
                    config.project.name
                ),
                _ => format!(
                    "EMBARGOED: sent to the private {} distributors list.\n\
                     Treat it as under embargo until the PST announces the disclosure.\n",
                    config.project.name
                ),
            };
            if let (true, Some(e)) = (is_pst, &pending) {
                info.push_str(&format!(
                    "Distributors: tell the PST where you stand with a signed reply to the\n\
                     list whose text starts with these two lines (a note may follow the word):\n\
                     \x20 X-Case: {}\n\
                     \x20 X-Status: received    (or affected, not-affected, ready)\n\
                     Only the PST sees it.\n",
                    e.case
                ));
            }
            if let (Some(from), Some(e)) = (moved_from, &pending) {
                info.push_str(&format!(
                    "The disclosure time moved from {} to {}.\n",
                    crate::clock::format_disclosure(from.to_datetime()),
                    crate::clock::format_disclosure(e.until())
                ));
            }
            info.push_str(&note);
            info.push('\n');
            info.push_str(&info_text(&identity, unwrapped, &incoming.meta));
            // Only a signed Subject is shown as the post's own; otherwise
            // the copies (and the announcement) name the signed text.
            let signed_subject = signed_subject(unwrapped, signer, &keywords, &rest);
            let subject = match (&pending, released, &case) {
                (Some(e), _, _) => embargoed_subject(&signed_subject, &e.case),
                (None, Some(_), Some(case)) => {
                    crate::embargo::public_subject(&signed_subject, case)
                }
                _ => format!("[EMBARGOED] {}", signed_subject.trim()),
            };
            let outgoing = Outgoing::new(
                with_header(&unwrapped.headers, "Subject", &subject),
                info,
                content.clone(),
                pending.as_ref().map(|e| e.case.clone()).or(case.clone()),
                Marking::for_list(list, unwrapped),
            );
            // A distributor's reply is part of the case's thread; the PST's
            // advisory is kept (latest only) with the embargo.
            if let (None, Some(case)) = (&embargo, &case) {
                if let Ok(Some(record)) = crate::case::get(ctx, case) {
                    let tied = super::names_case(ctx, unwrapped, &keywords, case);
                    let message = crate::advisory::archive::Message {
                        id,
                        list: ListName::Distributors,
                        unwrapped,
                        text: &rest,
                        tied,
                        envelope: post.envelope_sender(),
                    };
                    crate::advisory::archive::keep(ctx, batch, &record, message);
                }
            }
            let members = recipients(ctx);
            let to = Recipients {
                list: ListName::Distributors,
                identity: &identity,
                members: &members,
            };
            let copies = fan_out(ctx, batch, id, to, outgoing, Origin::Mail);
            if let Some(mut embargo) = embargo {
                embargo.recipients = copies;
                let old = crate::embargo::get(ctx.store, &embargo.case).ok().flatten();
                crate::embargo::put_scheduled(
                    config,
                    batch,
                    old.as_ref(),
                    &embargo,
                    Timestamp::from(ctx.now),
                );
                crate::embargo::put_advisory(
                    batch,
                    &embargo.case.clone(),
                    &Advisory {
                        subject: signed_subject,
                        content,
                    },
                );
                tracing::info!(msg = id, case = %embargo.case, "embargo set");
                crate::case::timeline::milestone_met(
                    ctx,
                    batch,
                    &embargo.case,
                    crate::case::Milestone::Distributors,
                    "a distributors post",
                );
            }
        }
    }
}

/// The Subject a post may be published under: a signed `X-Subject:`
/// keyword, else its own when the authorising signature (by `signer`)
/// covers it (protected headers), else the first line of its signed text.
/// The case ID is added by the callers.
fn signed_subject(
    unwrapped: &Unwrapped,
    signer: &str,
    keywords: &[Keyword],
    signed_text: &str,
) -> String {
    if let Some(subject) = keywords::get(keywords, "subject").filter(|s| !s.is_empty()) {
        return crate::mime::one_line(subject);
    }
    if unwrapped.headers_signer.as_deref() == Some(signer) {
        return unwrapped.subject.clone();
    }
    let line = signed_text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("advisory");
    match line.char_indices().nth(SUBJECT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// Longest Subject taken from a signed first line, in characters.
const SUBJECT_CHARS: usize = 72;

/// A PST member's post: names the case, and sets, moves or releases its
/// embargo.
fn pst_post(
    ctx: &Context<'_>,
    sig: GoodSignature<'_>,
    keywords: &[Keyword],
    rest: &str,
) -> Result<Decision, Held> {
    check_known(keywords)?;
    let case = keywords::get(keywords, "case").ok_or_else(|| {
        Held::new(
            "no X-Case",
            "no X-Case: line; a post to the distributors list names its case, like X-Case: KAP-2026-0001",
        )
    })?;
    let case = CaseId::parse(ctx.config, case)
        .map_err(|e| Held::new("bad X-Case", e))?
        .into_string();
    let existing = crate::embargo::get(ctx.store, &case)
        .map_err(|e| Held::new("store error", e.to_string()))?;
    if let Some(existing) = &existing {
        if let Some(released) = &existing.released {
            return Err(Held::new(
                "case already public",
                format!(
                    "case {case} is already public (released {})",
                    released.at.formatted()
                ),
            ));
        }
        // Replays and reordered mail never move an embargo back.
        if !existing.accepts(sig.created) {
            return Err(Held::new(
                "older than the last change",
                format!(
                    "the signature was made {}, before the signature behind the last \
                     change to case {case}'s embargo ({}): an older post cannot change it",
                    sig.created.formatted(),
                    existing.signed.formatted()
                ),
            ));
        }
    }
    if let Some(release) = keywords::get(keywords, "release") {
        if !release.eq_ignore_ascii_case("now") {
            return Err(Held::new(
                "bad X-Release",
                "X-Release: only \"now\" is understood",
            ));
        }
        if existing.is_none() {
            return Err(Held::new(
                "no embargo",
                format!("case {case} has no embargo to release"),
            ));
        }
        let reason = keywords::get(keywords, "reason")
            .map(str::to_string)
            .or_else(|| {
                rest.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                Held::new(
                    "no X-Reason",
                    "X-Release: now needs a reason: an X-Reason: line or a first line of text",
                )
            })?;
        return Ok(Decision::ReleaseNow { case, reason });
    }
    let until = keywords::get(keywords, "embargo-until").ok_or_else(|| {
        Held::new(
            "no X-Embargo-Until",
            "no X-Embargo-Until: line; give the agreed disclosure time, like X-Embargo-Until: 2026-12-01T16:00:00Z",
        )
    })?;
    let asked = parse_time(until).map_err(|e| Held::new("bad X-Embargo-Until", e))?;
    let public = match keywords::get(keywords, "public") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("yes") => true,
        Some(v) => {
            return Err(Held::new(
                "bad X-Public",
                format!("X-Public: {v:?}: only \"yes\" is understood"),
            ))
        }
    };
    // A public issue goes out as soon as asked; otherwise at the next
    // release slot.
    let until = if public {
        asked
    } else {
        snap(ctx.config, asked)
    };
    check_until(ctx.config, until, ctx.now).map_err(|e| {
        let slot = if until != asked {
            format!(
                " (that is the next release slot after the {} asked for)",
                crate::clock::format_disclosure(asked)
            )
        } else {
            String::new()
        };
        Held::new("X-Embargo-Until out of range", format!("{e}{slot}"))
    })?;
    let mut note = String::new();
    if until != asked {
        note.push_str(&format!(
            "The PST asked for {}; releases happen at the next release slot, so the\n\
             disclosure time is {}.\n",
            crate::clock::format_disclosure(asked),
            crate::clock::format_disclosure(until)
        ));
    }
    let first_notice = existing
        .as_ref()
        .map(|e| e.opened.to_datetime())
        .unwrap_or(ctx.now);
    let short_notice = match check_notice(ctx.config, first_notice, until) {
        Ok(()) => None,
        Err(_) if public => Some(ShortNotice {
            by: sig.member.to_string(),
            reason: "the issue is already public (X-Public: yes)".into(),
        }),
        Err(short) => {
            let reason = keywords::get(keywords, "short-notice")
                .ok_or_else(|| Held::new("notice too short", short.to_string()))?;
            // The case's Fix Lead; for a case without one (started
            // elsewhere, or every PST member was away), any PST member.
            let lead = crate::case::get(ctx, &case)
                .ok()
                .flatten()
                .and_then(|c| c.lead);
            if lead.as_deref().is_some_and(|lead| lead != sig.member) {
                return Err(Held::new(
                    "short notice not by the Fix Lead",
                    format!(
                        "X-Short-Notice: only the Fix Lead of {case} ({}) may allow it; {short}",
                        lead.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let reason = crate::mime::note(reason, STATUS_NOTE_CHARS);
            if reason.is_empty() {
                return Err(Held::new(
                    "short notice without a reason",
                    "X-Short-Notice: give the reason distributors get less notice",
                ));
            }
            Some(ShortNotice {
                by: sig.member.to_string(),
                reason,
            })
        }
    };
    if let Some(short) = &short_notice {
        note.push_str(&format!(
            "SHORT NOTICE: less than the policy's {} before disclosure, allowed by {}: {}\n",
            humantime::format_duration(ctx.config.embargo.min_notice),
            short.by,
            short.reason
        ));
    }
    let now = Timestamp::from(ctx.now);
    let change = Change {
        at: now,
        by: sig.member.to_string(),
        until: Timestamp::from(until),
    };
    let (mut embargo, moved_from) = match existing {
        Some(mut embargo) => {
            let moved_from = embargo.change(change, sig.created);
            (embargo, moved_from)
        }
        None => (Embargo::new(&case, change, sig.created), None),
    };
    embargo.short_notice = short_notice;
    Ok(Decision::Forward {
        case: Some(case),
        embargo: Some(Box::new(embargo)),
        moved_from,
        note,
    })
}

/// A distributor's reply: forwarded, but it may not touch an embargo;
/// with `X-Status:`, their word on the case, for the PST alone.
fn distributor_reply(
    ctx: &Context<'_>,
    sig: GoodSignature<'_>,
    keywords: &[Keyword],
    unwrapped: &Unwrapped,
) -> Result<Decision, Held> {
    check_known(keywords)?;
    if keywords::get(keywords, "embargo-until").is_some()
        || keywords::get(keywords, "release").is_some()
    {
        return Err(Held::new(
            "not a PST member",
            "only PST members may set, move or release an embargo",
        ));
    }
    if let Some(value) = keywords::get(keywords, "status") {
        return status_reply(ctx, sig, keywords, value, unwrapped);
    }
    let case = match keywords::get(keywords, "case") {
        Some(case) => {
            let case = CaseId::parse(ctx.config, case)
                .map_err(|e| Held::new("bad X-Case", e))?
                .into_string();
            let known = crate::embargo::get(ctx.store, &case)
                .map_err(|e| Held::new("store error", e.to_string()))?
                .is_some();
            if !known {
                return Err(Held::new(
                    "unknown case",
                    format!("case {case} is not known on this list"),
                ));
            }
            Some(case)
        }
        // The Subject only picks a thread; it changes nothing.
        None => CaseId::find_in(ctx.config, &unwrapped.subject).map(CaseId::into_string),
    };
    Ok(Decision::Forward {
        case,
        embargo: None,
        moved_from: None,
        note: String::new(),
    })
}

/// `X-Status: WORD [note]`, with an optional `X-Note:`. The case must be
/// named where the signature covers it (`X-Case:`, or a signed Subject):
/// an unsigned Subject could move a captured status to another case.
fn status_reply(
    ctx: &Context<'_>,
    sig: GoodSignature<'_>,
    keywords: &[Keyword],
    value: &str,
    unwrapped: &Unwrapped,
) -> Result<Decision, Held> {
    let (word, after) = value
        .split_once(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .unwrap_or((value, ""));
    let ack = Ack::parse(word).ok_or_else(|| {
        Held::new(
            "bad X-Status",
            format!(
                "X-Status: {word:?} is not understood; use received, affected, not-affected or ready"
            ),
        )
    })?;
    // Bidi and zero-width characters would rearrange what the PST reads
    // in `embargoes`.
    let note = keywords::get(keywords, "note")
        .or(Some(after.trim_matches([' ', '-', ';', ',', ':'])))
        .map(|n| crate::mime::note(n, STATUS_NOTE_CHARS))
        .filter(|n| !n.is_empty());
    let signed_subject = (unwrapped.headers_signer.as_deref() == Some(sig.member))
        .then(|| CaseId::find_in(ctx.config, &unwrapped.subject))
        .flatten();
    let case = match (keywords::get(keywords, "case"), signed_subject) {
        (Some(case), _) => {
            CaseId::parse(ctx.config, case).map_err(|e| Held::new("bad X-Case", e))?
        }
        (None, Some(case)) => case,
        (None, None) => {
            return Err(Held::new(
                "no X-Case",
                "an X-Status: reply names its case in an X-Case: line (the Subject is not \
                 signed, so it cannot say which case)",
            ))
        }
    }
    .into_string();
    let embargo = crate::embargo::get(ctx.store, &case)
        .map_err(|e| Held::new("store error", e.to_string()))?
        .ok_or_else(|| {
            Held::new(
                "unknown case",
                format!("case {case} has no embargo on this list"),
            )
        })?;
    if embargo.released.is_some() {
        return Err(Held::new(
            "case already public",
            format!("case {case} is already public; its statuses are closed"),
        ));
    }
    if let Some(last) = embargo.statuses.get(sig.member) {
        if sig.created < last.signed {
            return Err(Held::new(
                "older than the last status",
                format!(
                    "the signature was made {}, before the one behind {}'s last status on {case} \
                     ({}): a delayed or replayed status cannot replace a later one",
                    sig.created.formatted(),
                    sig.member,
                    last.signed.formatted()
                ),
            ));
        }
    }
    Ok(Decision::Status {
        case,
        status: DistributorStatus {
            status: ack,
            note,
            at: Timestamp::from(ctx.now),
            signed: sig.created,
        },
    })
}

/// Longest note kept with a status (or reason of a short notice), in
/// characters.
const STATUS_NOTE_CHARS: usize = 200;

/// Records `status` on `case` (the embargo's table, the ledger) and sends
/// the reply to the PST alone, encrypted: other distributors never learn
/// who is affected or ready.
fn record_status(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    sig: GoodSignature<'_>,
    case: &str,
    status: DistributorStatus,
    content: Vec<u8>,
) {
    let config = ctx.config;
    let Ok(Some(mut embargo)) = crate::embargo::get(ctx.store, case) else {
        return;
    };
    let word = status.status.as_str();
    let summary = match &status.note {
        Some(note) => format!("{word}: {note}"),
        None => word.to_string(),
    };
    let mut record = crate::ledger::DeliveryRecord::new(
        status.at,
        post.id,
        Some(case.to_string()),
        ListName::Distributors,
        sig.member,
        // The word only: the ledger is not sealed, and a note may say
        // what is embargoed (it stays in the sealed embargo record).
        crate::ledger::Outcome::Status(word.to_string()),
    );
    record.fingerprint = Some(sig.key.to_string());
    crate::ledger::append(batch, record);
    tracing::info!(msg = post.id, %case, member = sig.member, status = word, "distributor status");
    batch.spool(crate::notice::notice(
        config,
        ctx.now,
        Audience::Member(sig.member.to_string()),
        &format!("{case}: your status \"{word}\" is recorded"),
        &format!(
            "Your X-Status on case {case} is recorded: {summary}.\n\
             Only the PST sees it; the other distributors do not. Send a new signed\n\
             X-Status when it changes (ready, once your fixed packages are).\n"
        ),
    ));
    embargo.statuses.insert(sig.member.to_string(), status);
    crate::embargo::put(batch, &embargo);

    let Some(list) = &config.lists.distributors else {
        return;
    };
    // As the distributors list: a message sent to both lists is fanned
    // out for the security list too, and copy ids are per list.
    let identity = ListIdentity::new(config, list);
    let mut info = format!(
        "Status from distributor {} on {case}: {summary}\n\
         Only the PST gets this; the other distributors do not.\n\n",
        sig.member
    );
    info.push_str(&info_text(&identity, post.unwrapped, &post.incoming.meta));
    let outgoing = Outgoing::new(
        with_header(
            &post.unwrapped.headers,
            "Subject",
            &format!("[{case}] status from {}: {word}", sig.member),
        ),
        info,
        content,
        Some(case.to_string()),
        Marking::OFF,
    );
    let members = super::notices::audience(config, &Audience::Pst);
    let to = Recipients {
        list: ListName::Distributors,
        identity: &identity,
        members: &members,
    };
    fan_out(ctx, batch, post.id, to, outgoing, Origin::Mail);
}

fn check_known(keywords: &[Keyword]) -> Result<(), Held> {
    match keywords.iter().find(|k| !KNOWN.contains(&k.name.as_str())) {
        Some(unknown) => Err(Held::new(
            "unknown keyword",
            format!(
                "unknown keyword X-{}; known are X-Case, X-Embargo-Until, X-Release, X-Reason, X-Subject, X-Status, X-Note, X-Public, X-Short-Notice",
                unknown.name
            ),
        )),
        None => Ok(()),
    }
}

/// Distributors and the PST, each once.
fn recipients<'c>(ctx: &Context<'c>) -> Vec<&'c Member> {
    super::notices::audience(
        ctx.config,
        &Audience::Lists(vec![ListName::Distributors, ListName::Security]),
    )
}
