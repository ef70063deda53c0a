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

use crate::clock::{format_disclosure, Timestamp};
use crate::config::{Config, ListName};
use crate::context::Context;
use crate::digest::sha256_hex;
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mime::outbound::{ListHeader, ListIdentity};
use crate::pgp::ListKey;
use crate::schedule::{Event, EventKind};
use crate::store::{Audience, QueueKey, QueuedCopy, Transaction};

use crate::advisory::announce::{paperwork, Paperwork};

use super::{Advisory, EarlyRelease, Embargo, EmbargoError, Released};

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
    let now = Timestamp::from(ctx.now);
    let case_record = crate::case::get(ctx, case).ok().flatten();
    let paperwork = paperwork(config, case, case_record.as_ref(), &advisory, ctx.now);
    let head = crate::ledger::head(ctx.store)?;
    let mut batch = Transaction::new();

    let message_id = format!("<{case}.release@{domain}>");
    let header = ListHeader {
        list: &identity,
        to: &announce,
        message_id: &message_id,
        date: ctx.now,
    };
    let bytes = announcement(
        &ctx.keys.list_key,
        &header,
        case,
        &advisory,
        &paperwork,
        &head,
    )?;
    queue_public(
        &mut batch,
        now,
        case,
        ("announce", &announce),
        &message_id,
        bytes,
    );
    let mut posted = vec![announce.clone()];
    if let Some(oss) = &config.publish.oss_security {
        let oss = oss.to_string();
        let oss_id = format!("<{case}.oss-security@{domain}>");
        let header = ListHeader {
            list: &identity,
            to: &oss,
            message_id: &oss_id,
            date: ctx.now,
        };
        let (subject, body) = crate::advisory::announce::oss_security(config, case, &paperwork);
        let entity = with_records(case, crate::mime::text_part(&body), &paperwork, None);
        let bytes =
            crate::mime::outbound::signed_message(&ctx.keys.list_key, &header, &subject, &entity)?;
        queue_public(
            &mut batch,
            now,
            case,
            ("oss-security", &oss),
            &oss_id,
            bytes,
        );
        posted.push(oss);
    }
    let files: Vec<(&str, &[u8])> = paperwork
        .records
        .iter()
        .map(|(name, json)| (*name, json.as_bytes()))
        .collect();
    let written = crate::advisory::records::write(config, case, &files);
    if let Err(e) = &written {
        tracing::error!(%case, error = %e, "cannot write the release's records");
    }

    for event in embargo.events(config) {
        crate::schedule::cancel(&mut batch, &event);
    }
    let mut lifted = lifted_text(
        config,
        &embargo,
        &posted.join(" and "),
        early.as_ref(),
        ctx.now,
    );
    if !paperwork.records.is_empty() {
        let _ = writeln!(
            lifted,
            "\nThe records ({}) are attached to the announcement.",
            paperwork
                .records
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Where the files went (or why not) is the PST's to know: their
    // notice says it, the distributors' does not.
    let mut files_note = match &written {
        Ok(dir) => format!("The records of {case} are in {}.\n", dir.display()),
        Err(e) => format!(
            "The records of {case} could NOT be written to {}: {e}.\n\
             They are attached to the announcement; copy them from there.\n",
            config.publish.dir.display()
        ),
    };
    if let Some(missing) = &paperwork.no_cve_record {
        let _ = writeln!(files_note, "No CVE record was made: {missing}.");
    }
    let subject = format!("embargo lifted: {case}");
    batch.spool(crate::notice::to_pst(
        config,
        ctx.now,
        &subject,
        &format!("{lifted}\n{files_note}"),
    ));
    batch.spool(crate::notice::notice(
        config,
        ctx.now,
        Audience::Lists(vec![ListName::Distributors]),
        &subject,
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
                        format_disclosure(embargo.until()),
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
                format_disclosure(embargo.until()),
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
                    format_disclosure(embargo.until()),
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
        format_disclosure(now)
    );
    if let Some(early) = early {
        let _ = write!(
            text,
            "\nReleased early, before the agreed {}, by {}: {}\n",
            format_disclosure(embargo.until()),
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

/// Queues one public post of `case` (not encrypted: it is public) to
/// `to` = (ledger name, address), and records it in the ledger.
fn queue_public(
    batch: &mut Transaction,
    now: Timestamp,
    case: &str,
    to: (&str, &str),
    message_id: &str,
    bytes: Vec<u8>,
) {
    let (member, address) = to;
    let copy_id = crate::random::u64();
    crate::ledger::append(
        batch,
        DeliveryRecord {
            time: now,
            message: 0,
            case: Some(case.to_string()),
            copy_id: Some(copy_id),
            list: ListName::Announce,
            member: member.into(),
            fingerprint: None,
            encryption_subkey: None,
            message_id: Some(message_id.to_string()),
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
            member: member.into(),
            to: address.to_string(),
            fingerprint: String::new(),
            message_id: message_id.to_string(),
            notice: false,
            queued: now,
            attempts: 0,
            last_error: None,
            job: None,
            bytes,
        },
    );
}

/// A multipart/mixed entity: `first`, then each record of `paperwork` as
/// a JSON attachment, then `last` when given.
fn with_records(
    case: &str,
    first: Vec<u8>,
    paperwork: &Paperwork,
    last: Option<Vec<u8>>,
) -> Vec<u8> {
    let mixed = format!("embargod-{}", crate::random::token());
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n").into_bytes();
    let records = paperwork.records.iter().map(|(name, json)| {
        crate::mime::attachment_part(
            &crate::advisory::announce::attachment_name(case, name),
            "application/json",
            json.as_bytes().to_vec(),
        )
    });
    for part in std::iter::once(first).chain(records).chain(last) {
        out.extend_from_slice(format!("--{mixed}\r\n").as_bytes());
        out.extend_from_slice(&part);
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{mixed}--").as_bytes());
    out
}

/// The public announcement, signed by the list key as RFC 3156
/// multipart/signed: the actionable summary, the advisory's content byte
/// for byte, the records as JSON attachments, and a note of the ledger's
/// head (public from now on, so a later rewrite of its history shows).
pub fn announcement(
    list_key: &ListKey,
    header: &ListHeader<'_>,
    case: &str,
    advisory: &Advisory,
    paperwork: &Paperwork,
    head: &crate::ledger::Head,
) -> Result<Vec<u8>, crate::pgp::seal::SealError> {
    // The summary and the advisory in one multipart/mixed, so that the
    // advisory's own entity (with its patches) stays as the PST sent it.
    let inner = format!("embargod-{}", crate::random::token());
    let mut body =
        format!("Content-Type: multipart/mixed; boundary=\"{inner}\"\r\n\r\n--{inner}\r\n")
            .into_bytes();
    body.extend_from_slice(&crate::mime::text_part(&paperwork.summary));
    body.extend_from_slice(format!("\r\n--{inner}\r\n").as_bytes());
    body.extend_from_slice(&advisory.content);
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{inner}--").as_bytes());
    let note = crate::mime::text_part(&format!(
        "Published by embargod for {}. Its ledger of who received this\n\
         advisory under embargo stood at: {head}.\n",
        header.list.display
    ));
    let signed = with_records(case, body, paperwork, Some(note));
    crate::mime::outbound::signed_message(list_key, header, &paperwork.subject, &signed)
}
