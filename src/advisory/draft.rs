//! The release's draft for the PST: the announcement, the records and
//! what is still missing, sent to the PST alone, encrypted, so that they
//! review the paperwork before the embargo ends (`X-Draft: yes` or
//! `embargod case draft KAP-…`).

use std::fmt::Write as _;

use crate::case::Case;
use crate::context::Context;
use crate::store::Transaction;

use super::announce::{attachment_name, oss_security, paperwork};

/// What the PST should still give before the release: the advisory
/// data's gaps and the CVSS vector (the CVE record's metrics).
pub fn missing(case: &Case) -> Vec<&'static str> {
    let mut missing = case.advisory.missing();
    if case.cvss.is_none() {
        missing.push("X-CVSS: the severity vector");
    }
    missing
}

/// Spools the draft of `case`'s release to the PST. Returns the line for
/// the reply.
pub fn send(ctx: &Context<'_>, batch: &mut Transaction, case: &Case) -> String {
    let config = ctx.config;
    let embargo = crate::embargo::get(ctx.store, &case.id).ok().flatten();
    let advisory = crate::embargo::advisory(ctx.store, &case.id).ok().flatten();
    let published = embargo.as_ref().map(|e| e.until()).unwrap_or(ctx.now);
    let advisory = advisory.unwrap_or_else(|| crate::embargo::Advisory {
        subject: case.advisory.summary.clone().unwrap_or_default(),
        content: crate::mime::text_part(
            "(No advisory yet: the release publishes the text of the PST's signed\n\
             post to the distributors list.)\n",
        ),
    });
    let paper = paperwork(config, &case.id, Some(case), &advisory, published);
    let mut body = format!(
        "DRAFT of what the release of {} will publish{}.\n\
         Nothing here is public yet: it is for the PST's review only.\n\n",
        case.id,
        match &embargo {
            Some(e) => format!(" at {}", crate::clock::format_disclosure(e.until())),
            None => " (no embargo is set yet)".into(),
        }
    );
    let problems = case.advisory.problems();
    if !problems.is_empty() {
        body.push_str("To check:\n");
        for line in &problems {
            let _ = writeln!(body, "  - {line}");
        }
        body.push('\n');
    }
    let missing = missing(case);
    if !missing.is_empty() {
        body.push_str("Still missing (send them as signed keyword lines with X-Case):\n");
        for line in &missing {
            let _ = writeln!(body, "  - {line}");
        }
        body.push('\n');
    }
    if let Some(why) = &paper.no_cve_record {
        let _ = writeln!(body, "No CVE record can be made yet: {why}.\n");
    }
    let _ = write!(
        body,
        "=== The announcement to {} ===\n\n{}\n{}\n\n",
        config
            .lists
            .announce
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "(no announce list configured)".into()),
        paper.summary,
        paper.text.trim_end()
    );
    if let Some(oss) = &config.publish.oss_security {
        let (subject, _) = oss_security(config, &case.id, &paper);
        let _ = write!(
            body,
            "=== The post to {oss} ===\nSubject: {subject}\n(the announcement's text, inline)\n\n"
        );
    }
    for (name, json) in &paper.records {
        let _ = write!(
            body,
            "=== {} ===\n{json}\n",
            attachment_name(&case.id, name)
        );
    }
    batch.spool(crate::notice::to_pst(
        config,
        ctx.now,
        &format!("[{}] DRAFT of the release paperwork", case.id),
        &body,
    ));
    "the release's draft goes to the PST, encrypted".into()
}
