//! The security list: mail routed into the case process. a new report opens a
//! case (and is acknowledged to its reporter), a follow-up joins its case
//! by the ID in its Subject or by what it replies to, and a PST member's
//! signed keyword lines are commands. Every case message goes to the PST
//! and the case's Fix Team, encrypted to each.

use crate::case::commands::{self, Actor};
use crate::case::{by_reference, create, get, id_in, put_reference, reporter, Case, CaseError};
use crate::config::ListName;
use crate::context::{Context, Origin};
use crate::fanout::{fan_out, info_text, Marking, Outgoing, Recipients};
use crate::freshness::{self, Authority};
use crate::keywords::{self, Keyword};
use crate::mime::edit;
use crate::mime::inbound::{with_header, Unwrapped};
use crate::mime::outbound::ListIdentity;
use crate::pgp::open::GoodSignature;
use crate::store::{Audience, Incoming, Source, Transaction};

use super::hold::{hold, Held};
use super::Post;

/// Handles one message to the security list.
pub fn post(ctx: &Context<'_>, batch: &mut Transaction, post: Post<'_>) {
    let Post { unwrapped, .. } = post;
    let config = ctx.config;
    let content = &unwrapped.content;
    let text = edit::first_text(content)
        .map(|slot| slot.text)
        .unwrap_or_default();
    let (keywords, rest) = keywords::split(&text);

    if let Some(list) = keywords::get(&keywords, "join") {
        return join(ctx, batch, post, list);
    }
    if let Some(request) = keywords::get(&keywords, "vouch") {
        return vouch(ctx, batch, post, request);
    }
    if keywords.is_empty() {
        return report_or_follow_up(ctx, batch, post, &keywords, &rest);
    }
    // Keyword lines are commands only in signed text: a PST member's, by
    // a key in force now, fresh and never used before.
    let pst = &config.lists.security.members;
    match freshness::authorise(ctx, batch, &unwrapped.signatures, pst) {
        Authority::Signed(sig) => {
            let stripped = edit::replace_first_text(content, &rest)
                .unwrap_or_else(|| unwrapped.content.clone());
            command_mail(ctx, batch, post, sig, &keywords, &rest, stripped)
        }
        Authority::Refused { member, why } => refuse_signed(ctx, batch, post, member, &why),
        Authority::None => report_or_follow_up(ctx, batch, post, &keywords, &rest),
    }
}

/// A signed command mail that is refused (stale, replayed, retired key,
/// no case, unknown keyword): nothing is done or forwarded; it is held,
/// and the PST (and the signer, if not on the PST) are told why.
fn hold_command(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    member: &str,
    held: Held,
) {
    hold(ctx, batch, post, ListName::Security, Some(member), &held);
}

/// [`hold_command`] for a signature the freshness rule refused.
fn refuse_signed(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    member: &str,
    why: &freshness::Refused,
) {
    let detail = format!("the signature by {member} may not authorise commands: {why}");
    let held = Held::new(why.kind(), detail);
    hold_command(ctx, batch, post, member, held);
}

/// The case a message names in its Subject, or replies to.
fn existing_case(ctx: &Context<'_>, unwrapped: &Unwrapped) -> Option<Case> {
    if let Some(id) = id_in(ctx.config, &unwrapped.subject) {
        if let Ok(Some(case)) = get(ctx, &id) {
            return Some(case);
        }
    }
    unwrapped
        .message_ids
        .refers_to
        .iter()
        .find_map(|reference| by_reference(ctx, reference).ok().flatten())
        .and_then(|id| get(ctx, &id).ok().flatten())
}

/// A report or a follow-up that is no command: `keywords` are the lines
/// its first text part starts with (they command nothing here), `rest`
/// that text without them.
fn report_or_follow_up(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    keywords: &[Keyword],
    rest: &str,
) {
    let Post {
        id,
        incoming,
        unwrapped,
    } = post;
    let (case, new) = match existing_case(ctx, unwrapped) {
        Some(case) => (case, false),
        None => {
            let reporter = reporter_address(ctx, unwrapped);
            let cert = reporter
                .as_deref()
                .and_then(|address| reporter::find_cert(ctx, &incoming.raw, unwrapped, address))
                .and_then(|cert| reporter::armored(&cert));
            match create(ctx, batch, reporter, cert) {
                Ok(case) => (case, true),
                Err(e) => {
                    tracing::error!(msg = id, error = %e, "cannot open a case; forwarding without one");
                    return forward(ctx, batch, post, None, unwrapped.content.clone(), "", None);
                }
            }
        }
    };
    let ack_to = new
        .then(|| ack_recipient(ctx, incoming, id))
        .flatten()
        .filter(|_| case.reporter.is_some());
    let note = if new {
        format!(
            "New case {}. Fix Lead: {}.{}\n",
            case.id,
            case.lead
                .as_deref()
                .unwrap_or("(none: every PST member is away)"),
            if ack_to.is_some() {
                if case.reporter_cert.is_some() {
                    " The reporter was sent an encrypted acknowledgement."
                } else {
                    " The reporter was sent an acknowledgement (plaintext: no key known; it quotes nothing)."
                }
            } else {
                ""
            }
        )
    } else {
        format!(
            "Case {}. Fix Lead: {}.\n",
            case.id,
            case.lead.as_deref().unwrap_or("(none)")
        )
    };
    if let Some(address) = ack_to {
        if ack_allowed(ctx, batch, &address) {
            let (subject, text) = reporter::acknowledgement(ctx, &case);
            let to = reporter::To::Address(&address);
            if let Err(e) = reporter::send(ctx, batch, &case, to, id, &subject, &text) {
                tracing::error!(case = %case.id, error = %e, "cannot acknowledge the report");
            }
        } else {
            tracing::warn!(case = %case.id, "acknowledgement limit reached (per sender or in all); none sent");
        }
    }
    // The case's thread keeps it — unless it is a distributor's status
    // sent here too (the PST's alone) — as tied to the case when a
    // signature names the case, or nothing signed chose it.
    let thread = (!keywords
        .iter()
        .any(|k| k.name == "status" || k.name == "note"))
    .then(|| {
        let tied = new
            || unwrapped.signatures.good_signers().next().is_none()
            || super::names_case(ctx, unwrapped, keywords, &case.id);
        (rest, tied)
    });
    forward(
        ctx,
        batch,
        post,
        Some(&case),
        unwrapped.content.clone(),
        &note,
        thread,
    );
}

/// Whether `address` may get another acknowledgement this hour (and
/// counts this one): at most `limits.acks_per_hour` to one address and
/// `limits.acks_per_hour_total` to all together, so that mail with forged
/// senders cannot make the list flood anyone.
fn ack_allowed(ctx: &Context<'_>, batch: &mut Transaction, address: &str) -> bool {
    let hour = crate::clock::Timestamp::from(ctx.now).millis() / 3_600_000;
    let who = ctx
        .store
        .mark_secret()
        .pseudonym(&address.to_ascii_lowercase());
    let limits = &ctx.config.limits;
    let counters = [
        (format!("acks/{who:016x}/{hour}"), limits.acks_per_hour),
        (format!("acks/all/{hour}"), limits.acks_per_hour_total),
    ];
    let mut counts = Vec::with_capacity(counters.len());
    for (key, limit) in counters {
        let sent: u32 = crate::case::value(ctx.store, &key)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
            .unwrap_or(0);
        if sent >= limit {
            return false;
        }
        counts.push((key, sent + 1));
    }
    for (key, sent) in counts {
        crate::case::put_value(batch, key, sent.to_string().into_bytes());
    }
    true
}

/// Sends a message of `case` (or of no case) to the PST and the case's
/// Fix Team, its Subject tagged with the case ID. `thread`: the text the
/// case's thread keeps for the public archive, and whether signed words
/// tie it to the case ([`crate::advisory::archive::keep`]).
fn forward(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    case: Option<&Case>,
    content: Vec<u8>,
    note: &str,
    thread: Option<(&str, bool)>,
) {
    let Post {
        id,
        incoming,
        unwrapped,
    } = post;
    let config = ctx.config;
    let identity = ListIdentity::new(config, &config.lists.security);
    let mut members = config.members_of(&config.lists.security);
    let mut headers = unwrapped.headers.clone();
    if let Some(case) = case {
        members.extend(case.team.iter().filter_map(|m| config.members.get(m)));
        if !unwrapped.subject.contains(&case.id) {
            let subject = format!("[{}] {}", case.id, unwrapped.subject.trim());
            headers = with_header(&headers, "Subject", &subject);
        }
        if let Some(message_id) = &unwrapped.message_ids.message_id {
            put_reference(ctx, batch, message_id, &case.id);
        }
        if let Some((text, tied)) = thread {
            let message = crate::advisory::archive::Message {
                id,
                list: ListName::Security,
                unwrapped,
                text,
                tied,
                envelope: post.envelope_sender(),
            };
            crate::advisory::archive::keep(ctx, batch, case, message);
        }
    }
    let mut info = String::new();
    info.push_str(note);
    if !note.is_empty() {
        info.push('\n');
    }
    info.push_str(&info_text(&identity, unwrapped, &incoming.meta));
    let outgoing = Outgoing::new(
        headers,
        info,
        content,
        case.map(|c| c.id.clone()),
        Marking::for_list(&config.lists.security, unwrapped),
    );
    let to = Recipients {
        list: ListName::Security,
        identity: &identity,
        members: &members,
    };
    fan_out(ctx, batch, id, to, outgoing, Origin::Mail);
}

/// A PST member's command mail: apply, reply, and pass on its text.
fn command_mail(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    post: Post<'_>,
    sig: GoodSignature<'_>,
    keywords: &[Keyword],
    rest: &str,
    stripped: Vec<u8>,
) {
    let Post { id, unwrapped, .. } = post;
    let signer = sig.member;
    let reply = |batch: &mut Transaction, subject: &str, text: &str| {
        batch.spool(crate::notice::notice(
            ctx.config,
            ctx.now,
            Audience::Member(signer.to_string()),
            subject,
            text,
        ));
    };
    let actor = Actor::Member {
        id: signer.to_string(),
    };
    // A refused command mail is held, and its signature spent: it cannot
    // be sent again with another (unsigned) Subject.
    let refuse = |batch: &mut Transaction, kind: &'static str, reason: String| {
        freshness::spend(ctx, batch, &unwrapped.signatures);
        let held = Held::new(
            kind,
            format!("commands signed by {signer} refused: {reason}"),
        );
        hold_command(ctx, batch, post, signer, held);
    };
    if let Err(reason) = commands::admissible(keywords) {
        return refuse(batch, "unknown keyword", reason.to_string());
    }
    // The case comes from signed words only: an X-Case line, or a Subject
    // the same signature covers. The outer Subject and References are
    // anyone's to edit, and would point the commands at another case.
    let named = keywords::get(keywords, "case")
        .map(str::to_string)
        .or_else(|| {
            (unwrapped.headers_signer.as_deref() == Some(signer))
                .then(|| id_in(ctx.config, &unwrapped.subject))
                .flatten()
        });
    let case = match &named {
        Some(case_id) => commands::case_of(ctx, case_id.trim()),
        None => Err(CaseError::NotNamed),
    };
    let mut case = match case {
        Ok(case) => case,
        Err(reason) => return refuse(batch, "no case", reason.to_string()),
    };
    if sig.created < case.signed {
        return refuse_signed(
            ctx,
            batch,
            post,
            signer,
            &freshness::Refused::OlderThanLastChange,
        );
    }
    case.signed = case.signed.max(sig.created);
    let report = commands::apply(ctx, batch, &actor, keywords, &mut case);
    freshness::spend(ctx, batch, &unwrapped.signatures);
    tracing::info!(msg = id, case = %case.id, %signer, done = report.done.len(), refused = report.refused.len(), "commands");
    reply(
        batch,
        &format!("[{}] your commands", case.id),
        &report.text(Some(&case.id)),
    );
    if rest.trim().is_empty() {
        return;
    }
    if report.to_reporter {
        let subject = format!(
            "[{}] {}",
            case.id,
            unwrapped
                .subject
                .trim()
                .trim_start_matches(&format!("[{}]", case.id))
                .trim()
        );
        if let Err(e) = reporter::send(
            ctx,
            batch,
            &case,
            reporter::To::Reporter,
            id,
            &subject,
            rest.trim_start(),
        ) {
            tracing::error!(case = %case.id, error = %e, "cannot write to the reporter");
        }
    }
    let note = if report.to_reporter {
        format!(
            "Case {}: this post was also sent to the reporter.\n",
            case.id
        )
    } else {
        String::new()
    };
    forward(
        ctx,
        batch,
        post,
        Some(&case),
        stripped,
        &note,
        Some((rest, true)),
    );
}

/// The reporter of a new case, for the PST's answers (`X-To-Reporter`):
/// the From address, unless it is one of the daemon's own or a member's.
fn reporter_address(ctx: &Context<'_>, unwrapped: &Unwrapped) -> Option<String> {
    let address = unwrapped.from_address.clone()?;
    (!crate::case::autoreply::own(ctx.config, &address)).then_some(address)
}

/// Where the acknowledgement of a new report may go (RFC 3834): the
/// envelope sender, unless the mail is automatic, from a list, a bounce,
/// or from any of our own addresses.
fn ack_recipient(ctx: &Context<'_>, incoming: &Incoming, id: u64) -> Option<String> {
    let Source::Mail { mail_from, .. } = &incoming.meta.source else {
        return None;
    };
    let message = crate::mime::parse_headers(&incoming.raw)?;
    match crate::case::autoreply::recipient(ctx.config, mail_from, &message) {
        Ok(address) => Some(address),
        Err(why) => {
            tracing::info!(msg = id, reason = why.label(), "no acknowledgement");
            None
        }
    }
}

/// `X-Join: distributors` from anyone: a membership request for the PST.
fn join(ctx: &Context<'_>, batch: &mut Transaction, post: Post<'_>, list: &str) {
    let Post { unwrapped, .. } = post;
    let applicant = unwrapped
        .from_address
        .clone()
        .unwrap_or_else(|| unwrapped.sender.clone());
    let message_id = unwrapped.message_ids.message_id.clone().unwrap_or_default();
    let note = match commands::join(ctx, batch, list, &applicant, &message_id) {
        Ok(request) => format!(
            "Membership request {} for the {} list from {applicant}.\n\
             The policy's criteria are to be checked; vouches come as X-Vouch: {} signed\n\
             by a distributor or PST member. Admission is an admin's config edit.\n",
            request.id, request.list, request.id
        ),
        Err(reason) => format!("A membership request could not be opened: {reason}.\n"),
    };
    forward(
        ctx,
        batch,
        post,
        None,
        unwrapped.content.clone(),
        &note,
        None,
    );
}

/// `X-Vouch: REQ-…`, signed by a distributor or PST member.
fn vouch(ctx: &Context<'_>, batch: &mut Transaction, post: Post<'_>, request: &str) {
    let Post { unwrapped, .. } = post;
    let config = ctx.config;
    let mut allowed = config.lists.security.members.clone();
    if let Some(list) = &config.lists.distributors {
        allowed.extend(list.members.iter().cloned());
    }
    let voucher = match freshness::authorise(ctx, batch, &unwrapped.signatures, &allowed) {
        Authority::Signed(sig) => {
            freshness::spend(ctx, batch, &unwrapped.signatures);
            sig.member.to_string()
        }
        Authority::Refused { member, why } => {
            return refuse_signed(ctx, batch, post, member, &why);
        }
        Authority::None => {
            tracing::warn!("vouch without a valid member signature; ignored");
            return;
        }
    };
    let text = match commands::vouch(ctx, batch, request.trim(), &voucher) {
        Ok(request) => format!(
            "{voucher}'s vouch for {} is recorded ({} so far).\n",
            request.id,
            request.vouches.len()
        ),
        Err(reason) => format!("The vouch was refused: {reason}.\n"),
    };
    batch.spool(crate::notice::notice(
        config,
        ctx.now,
        Audience::Pst,
        &format!("vouch for {}", request.trim()),
        &text,
    ));
    if !config.lists.security.members.contains(&voucher) {
        batch.spool(crate::notice::notice(
            config,
            ctx.now,
            Audience::Member(voucher.clone()),
            "your vouch",
            &text,
        ));
    }
}
