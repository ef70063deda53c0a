//! The PST's daily reminder of cases whose release passed without a
//! public post: an embargo whose time came but whose advisory could not be
//! published, and a case marked released (`X-Done: release`) that
//! embargod never announced and no `X-Announced:` link accounts for.
//! Coordinators report promised public posts that were never sent; this
//! keeps asking, for `REMIND_FOR` after the date.

use std::time::Duration;

use crate::clock::{format_disclosure, Timestamp};
use crate::context::Context;
use crate::store::{StoreError, Transaction};

/// How long after the date the reminder keeps coming (14 days).
const REMIND_FOR: Duration = Duration::from_secs(14 * 86400);

/// Spools one reminder to the PST naming every such case; none when
/// there is none.
pub fn remind(ctx: &Context<'_>, batch: &mut Transaction) -> Result<(), StoreError> {
    let now = Timestamp::from(ctx.now);
    let recent = |at: Timestamp| at <= now && now.since(at) <= REMIND_FOR;
    let embargoes = crate::embargo::all(ctx.store)?;
    let mut lines = Vec::new();
    for e in &embargoes {
        if e.released.is_none() && recent(e.until) {
            lines.push(format!(
                "- {}: its disclosure time, {}, passed and the advisory was NOT published.\n  \
                 Fix what the release failure notice named, then run\n  \
                 `embargod release {} --now --reason \"...\"`.",
                e.case,
                format_disclosure(e.until()),
                e.case
            ));
        }
    }
    let cases = crate::case::all(ctx.store).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for case in &cases {
        let Some(done) = case
            .deadline(crate::case::Milestone::Release)
            .and_then(|d| d.done.as_ref())
        else {
            continue;
        };
        let announced_by_us = embargoes
            .iter()
            .any(|e| e.case == case.id && e.released.is_some());
        let pending_embargo = embargoes
            .iter()
            .any(|e| e.case == case.id && e.released.is_none());
        if announced_by_us || pending_embargo || case.advisory.announced.is_some() {
            continue;
        }
        if recent(done.at) {
            lines.push(format!(
                "- {}: Fix Release Day was marked done {} by {}, but embargod published\n  \
                 nothing. Publish the advisory (a signed distributors post with X-Release: now),\n  \
                 or record where it was published: X-Announced: <URL> with X-Case: {}.",
                case.id,
                done.at.formatted(),
                done.by,
                case.id
            ));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    batch.spool(crate::notice::to_pst(
        ctx.config,
        ctx.now,
        &format!("{} case(s) released without a public post", lines.len()),
        &format!(
            "The policy asks that every fixed issue be published when its embargo ends.\n\
             These have no public post yet:\n\n{}\n\nThis reminder comes daily until each is published or accounted for.\n",
            lines.join("\n")
        ),
    ));
    Ok(())
}
