//! Publishing a case: the advisory goes to the announce list, signed by
//! the list key (RFC 3156 multipart/signed) and not encrypted, and the PST
//! and distributors get an encrypted "embargo lifted" notice.
//!
//! Everything a release does is one batch: the embargo marked released
//! with the announcement's Message-ID, its events removed, the announcement
//! queued, the notices spooled. A crash before the commit fires it again
//! from the schedule; after it, the queue sends it. Either way once.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::clock::{format_time, Timestamp};
use crate::config::{Config, ListName};
use crate::context::Context;
use crate::digest::sha256_hex;
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mime::outbound::{ListHeader, ListIdentity};
use crate::pgp::ListKey;
use crate::schedule::{Event, EventKind};
use crate::store::{Audience, QueueKey, QueuedCopy, Transaction};

use super::{public_subject, Advisory, EarlyRelease, Embargo, EmbargoError, Released};

/// The batch that publishes `case` now; `early` when the PST or an admin
/// releases it before its time.
pub fn release(
    ctx: &Context<'_>,
    case: &str,
    early: Option<EarlyRelease>,
) -> Result<Transaction, EmbargoError> {
    let config = ctx.config;
    let mut embargo = crate::embargo::get(ctx.store, case)?
        .ok_or_else(|| EmbargoError::NoEmbargo(case.to_string()))?;
    if let Some(released) = &embargo.released {
        return Err(EmbargoError::Released {
            case: case.to_string(),
            at: released.at.to_datetime(),
        });
    }
    let advisory = crate::embargo::advisory(ctx.store, case)?
        .ok_or_else(|| EmbargoError::NoAdvisory(case.to_string()))?;
    let announce = config
        .lists
        .announce
        .as_ref()
        .ok_or(EmbargoError::NoAnnounceList)?
        .to_string();

    let identity = ListIdentity::new(config, &config.lists.security);
    let domain = identity
        .address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    let message_id = format!("<{case}.release@{domain}>");
    let head = crate::ledger::head(ctx.store)?;
    let header = ListHeader {
        list: &identity,
        to: &announce,
        message_id: &message_id,
        date: ctx.now,
    };
    let bytes = announcement(&ctx.keys.list_key, &header, case, &advisory, &head)?;

    let now = Timestamp::from(ctx.now);
    let copy_id = crate::random::u64();
    let mut batch = Transaction::new();
    crate::ledger::append(
        &mut batch,
        DeliveryRecord {
            time: now,
            message: 0,
            case: Some(case.to_string()),
            copy_id: Some(copy_id),
            list: ListName::Announce,
            member: "announce".into(),
            fingerprint: None,
            encryption_subkey: None,
            message_id: Some(message_id.clone()),
            plaintext_sha256: Some(sha256_hex(&bytes)),
            ciphertext_sha256: None,
            outcome: Outcome::Queued,
        },
    );
    batch.queue(
        QueueKey {
            due: now,
            id: copy_id,
        },
        QueuedCopy {
            id: copy_id,
            message: 0,
            case: Some(case.to_string()),
            list: ListName::Announce,
            member: "announce".into(),
            to: announce.clone(),
            fingerprint: String::new(),
            message_id: message_id.clone(),
            notice: false,
            queued: now,
            attempts: 0,
            last_error: None,
            job: None,
            bytes,
        },
    );
    for event in embargo.events(config) {
        crate::schedule::cancel(&mut batch, &event);
    }
    let lifted = lifted_text(config, &embargo, &announce, early.as_ref(), ctx.now);
    batch.spool(crate::notice::notice(
        config,
        ctx.now,
        Audience::Lists(vec![ListName::Security, ListName::Distributors]),
        &format!("embargo lifted: {case}"),
        &lifted,
    ));
    tracing::info!(%case, early = early.is_some(), "released");
    crate::case::timeline::milestone_met(
        ctx,
        &mut batch,
        case,
        crate::case::Milestone::Release,
        "the release",
    );
    embargo.released = Some(Released {
        at: now,
        message_id,
        early,
    });
    crate::embargo::put(&mut batch, &embargo);
    Ok(batch)
}

/// What a due event does: the release, or the reminder before it. An
/// event that no longer matches its embargo (moved, released) only goes.
pub fn fire(ctx: &Context<'_>, event: &Event) -> Transaction {
    let mut batch = Transaction::new();
    crate::schedule::cancel(&mut batch, event);
    let embargo = match crate::embargo::get(ctx.store, &event.case) {
        Ok(Some(embargo)) if embargo.released.is_none() => embargo,
        _ => return batch,
    };
    if !embargo.events(ctx.config).contains(event) {
        return batch;
    }
    match event.kind {
        // Case deadlines are the case timeline's (the scheduler routes them).
        EventKind::Deadline | EventKind::Overdue => {}
        EventKind::Release => match release(ctx, &event.case, None) {
            Ok(released) => batch.merge(released),
            Err(reason) => {
                tracing::error!(case = %event.case, %reason, "release failed");
                batch.spool(crate::notice::to_pst(
                    ctx.config,
                    ctx.now,
                    &format!("release of {} FAILED", event.case),
                    &format!(
                        "The embargo of {} ended at {}, but the advisory could not be\n\
                         published: {reason}.\nPublish it by hand, or fix the problem and run\n\
                         `embargod release {} --now --reason ...`.\n",
                        event.case,
                        format_time(embargo.until()),
                        event.case
                    ),
                ));
            }
        },
        EventKind::StatusDigest => {
            let rows = match super::statuses::read(ctx.config, ctx.store, &embargo) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(case = %event.case, error = %e, "cannot read the distributor statuses");
                    return batch;
                }
            };
            let missing: Vec<&str> = rows
                .iter()
                .filter(|r| !r.confirmed)
                .map(|r| r.member.as_str())
                .collect();
            let subject = if missing.is_empty() {
                format!("{}: every distributor confirmed receipt", event.case)
            } else {
                format!(
                    "{}: {} distributor(s) have not confirmed receipt",
                    event.case,
                    missing.len()
                )
            };
            let mut body = format!(
                "Case {} goes public at {}. Each distributor's latest X-Status:\n\n{}\n",
                event.case,
                format_time(embargo.until()),
                super::statuses::text(&rows)
            );
            if !missing.is_empty() {
                body.push_str(&format!(
                    "Not yet confirmed (no X-Status at all): {}.\n\
                     They may not have the patch: ask them, or check `embargod embargoes`.\n",
                    missing.join(", ")
                ));
            }
            batch.spool(crate::notice::to_pst(ctx.config, ctx.now, &subject, &body));
        }
        // The daily job is not an embargo's.
        EventKind::Daily => {}
        EventKind::Reminder => {
            let hours = (embargo.until().signed_duration_since(ctx.now).num_minutes() + 30) / 60;
            batch.spool(crate::notice::notice(
                ctx.config,
                ctx.now,
                Audience::Lists(vec![ListName::Security, ListName::Distributors]),
                &format!("reminder: {} goes public in {hours} hours", event.case),
                &format!(
                    "Case {} goes public at {} (in about {hours} hours).\n\
                     The advisory will be published to the announce list then.\n\
                     Have your releases ready.\n",
                    event.case,
                    format_time(embargo.until()),
                ),
            ));
        }
    }
    batch
}

fn lifted_text(
    config: &Config,
    embargo: &Embargo,
    announce: &str,
    early: Option<&EarlyRelease>,
    now: DateTime<Utc>,
) -> String {
    let mut text = format!(
        "The embargo of case {} is lifted: the advisory is being published to\n\
         {announce} now ({}).\n",
        embargo.case,
        format_time(now)
    );
    if let Some(early) = early {
        let _ = write!(
            text,
            "\nReleased early, before the agreed {}, by {}: {}\n",
            format_time(embargo.until()),
            early.by,
            early.reason
        );
    }
    let _ = write!(
        text,
        "\nThe {} security release process's embargo on this case no longer applies.\n",
        config.project.name
    );
    text
}

/// The public announcement: the advisory's content and a note of the
/// ledger's head, signed by the list key as RFC 3156 multipart/signed.
/// The advisory's entity is carried byte for byte inside the signed part,
/// so that part's MIME structure is written here.
pub fn announcement(
    list_key: &ListKey,
    header: &ListHeader<'_>,
    case: &str,
    advisory: &Advisory,
    head: &crate::ledger::Head,
) -> Result<Vec<u8>, crate::pgp::seal::SealError> {
    // The signed part: the advisory, then the ledger note, up to the line
    // end before the boundary (RFC 3156 §5). The head is public from now
    // on, so a later rewrite of the ledger's history shows.
    let mixed = format!("embargod-{}", crate::random::token());
    let mut signed =
        format!("Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n--{mixed}\r\n")
            .into_bytes();
    signed.extend_from_slice(&advisory.content);
    if !signed.ends_with(b"\r\n") {
        signed.extend_from_slice(b"\r\n");
    }
    signed.extend_from_slice(format!("--{mixed}\r\n").as_bytes());
    signed.extend_from_slice(&crate::mime::text_part(&format!(
        "Published by embargod for {}. Its ledger of who received this\n\
         advisory under embargo stood at: {head}.\n",
        header.list.display
    )));
    signed.extend_from_slice(format!("\r\n--{mixed}--").as_bytes());
    let subject = public_subject(&advisory.subject, case);
    crate::mime::outbound::signed_message(list_key, header, &subject, &signed)
}
