//! Admin commands about cases: list, show, change (the command-line
//! equivalents of the PST's keyword commands), membership requests.

use std::sync::Arc;

use super::Response;
use crate::case::commands::{self, Actor};
use crate::case::{self, Case};
use crate::keywords::Keyword;
use crate::state::Shared;

pub(super) async fn list(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    let now = crate::clock::Timestamp::from(shared.clock.now());
    match crate::blocking(move || case::all(&store)).await {
        Ok(cases) => {
            let open: Vec<&Case> = cases.iter().filter(|c| c.closed.is_none()).collect();
            if open.is_empty() {
                return Response::ok("no open cases\n".into());
            }
            let mut text = format!(
                "{:<16} {:<10} {:<14} {:<34} {}\n",
                "CASE", "LEAD", "SEVERITY", "NEXT DEADLINE", "OVERDUE"
            );
            for c in open {
                let deadlines = c.pending_deadlines();
                let next = deadlines
                    .iter()
                    .find(|d| d.due > now)
                    .map(|d| format!("{} {}", d.milestone, d.due.formatted()))
                    .unwrap_or_else(|| "-".into());
                let overdue: Vec<&str> = deadlines
                    .iter()
                    .filter(|d| d.due <= now)
                    .map(|d| d.milestone.name())
                    .collect();
                text.push_str(&format!(
                    "{:<16} {:<10} {:<14} {:<34} {}{}\n",
                    c.id,
                    c.lead.as_deref().unwrap_or("-"),
                    c.severity(),
                    next,
                    if overdue.is_empty() {
                        "-".to_string()
                    } else {
                        overdue.join(",")
                    },
                    if c.public { "  (public)" } else { "" },
                ));
            }
            Response::ok(text)
        }
        Err(e) => Response::error(e),
    }
}

pub(super) async fn show(shared: &Arc<Shared>, id: String) -> Response {
    let result = shared
        .in_context(move |ctx| {
            let found = case::get(ctx, &id)?;
            // The distributors' word on the patch, when the case has an embargo.
            let statuses = match crate::embargo::get(ctx.store, &id) {
                Ok(Some(embargo)) => {
                    crate::embargo::statuses::read(ctx.config, ctx.store, &embargo)
                        .map(|rows| crate::embargo::statuses::text(&rows))
                        .unwrap_or_else(|e| format!("  (cannot read: {e})\n"))
                }
                _ => String::new(),
            };
            Ok::<_, case::CaseError>(found.map(|c| (c, statuses)))
        })
        .await;
    match result {
        Ok(Some((c, statuses))) if statuses.is_empty() => Response::ok(describe(&c)),
        Ok(Some((c, statuses))) => {
            Response::ok(format!("{}  distributors\n{statuses}", describe(&c)))
        }
        Ok(None) => Response::error("no such case"),
        Err(e) => Response::error(e),
    }
}

fn describe(c: &Case) -> String {
    let mut text = format!("case {}\n  opened    {}\n", c.id, c.opened.formatted());
    text.push_str(&format!(
        "  reporter  {}{}\n",
        c.reporter.as_deref().unwrap_or("-"),
        if c.reporter_cert.is_some() {
            " (key known)"
        } else {
            ""
        }
    ));
    text.push_str(&format!(
        "  lead      {}\n",
        c.lead.as_deref().unwrap_or("-")
    ));
    text.push_str(&format!(
        "  team      {}\n",
        if c.team.is_empty() {
            "-".to_string()
        } else {
            c.team.join(", ")
        }
    ));
    text.push_str(&format!(
        "  cvss      {}\n",
        c.cvss
            .as_ref()
            .map(|v| format!("{} {} {}", v.score, v.severity, v.vector))
            .unwrap_or_else(|| "-".into())
    ));
    if c.public {
        text.push_str("  public    yes: every deadline is as soon as possible\n");
    }
    if let Some(reason) = &c.slow {
        text.push_str(&format!("  slowed    {reason}\n"));
    }
    text.push_str(&advisory_rows(c));
    text.push_str("  timeline\n");
    for d in &c.deadlines {
        let state = match &d.done {
            Some(done) => format!("done {} by {}", done.at.formatted(), done.by),
            None => "open".into(),
        };
        text.push_str(&format!(
            "    {:<13} due {}  {state}\n",
            d.milestone.name(),
            d.due.formatted()
        ));
    }
    text
}

/// The advisory data, one row per field given, and what is missing.
fn advisory_rows(c: &Case) -> String {
    let a = &c.advisory;
    let mut rows = Vec::new();
    let join = |items: Vec<String>| items.join("; ");
    let mut row = |label: &str, value: String| {
        if !value.is_empty() {
            rows.push(format!("  {label:<9} {value}\n"));
        }
    };
    row("cve", a.cve.clone().unwrap_or_default());
    row("summary", a.summary.clone().unwrap_or_default());
    row(
        "affected",
        join(a.affected.iter().map(|r| r.to_string()).collect()),
    );
    row("fixed", a.fixed.join(", "));
    row("cwe", a.cwe.join(", "));
    row(
        "credits",
        join(a.credits.iter().map(|c| c.to_string()).collect()),
    );
    row(
        "links",
        join(a.references.iter().map(|r| r.to_string()).collect()),
    );
    row("mitigate", a.mitigation.clone().unwrap_or_default());
    row("announced", a.announced.clone().unwrap_or_default());
    if let Some((by, at)) = &a.archive_approved {
        row("archive", format!("approved by {by} {}", at.formatted()));
    }
    for problem in a.problems() {
        row("CHECK", problem);
    }
    let missing = crate::advisory::draft::missing(c);
    if !missing.is_empty() {
        row(
            "missing",
            missing
                .iter()
                .map(|m| m.split(':').next().unwrap_or(m))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    rows.concat()
}

/// Applies keyword commands from the command line, as an admin.
pub(super) async fn set(
    shared: &Arc<Shared>,
    id: String,
    keywords: Vec<(String, String)>,
) -> Response {
    let _embargoes = shared.embargo_lock.lock().await;
    let result = shared
        .in_context(move |ctx| {
            let keywords: Vec<Keyword> = keywords
                .into_iter()
                .map(|(name, value)| Keyword { name, value })
                .collect();
            commands::admissible(&keywords)?;
            let mut case = commands::case_of(ctx, &id)?;
            let mut batch = crate::store::Transaction::new();
            let report = commands::apply(ctx, &mut batch, &Actor::Admin, &keywords, &mut case);
            Ok::<_, crate::case::CaseError>((
                batch,
                report.text(Some(&case.id)),
                report.refused.is_empty(),
            ))
        })
        .await;
    match result {
        Ok((batch, text, all_done)) => match shared.commit(batch).await {
            Ok(()) if all_done => Response::ok(text),
            Ok(()) => Response::error(text),
            Err(e) => Response::error(e.to_string()),
        },
        Err(e) => Response::error(e),
    }
}

pub(super) async fn requests(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    match crate::blocking(move || commands::requests(&store)).await {
        Ok(requests) if requests.is_empty() => Response::ok("no membership requests\n".into()),
        Ok(requests) => {
            let mut text = String::new();
            for r in requests {
                text.push_str(&format!(
                    "{} {} list, from {}, opened {}\n",
                    r.id,
                    r.list,
                    r.applicant,
                    r.opened.formatted()
                ));
                for (criterion, met) in &r.criteria {
                    text.push_str(&format!(
                        "  [{}] {criterion}\n",
                        if *met { "x" } else { " " }
                    ));
                }
                for (voucher, at) in &r.vouches {
                    text.push_str(&format!(
                        "  vouched for by {voucher} on {}\n",
                        at.formatted()
                    ));
                }
            }
            Response::ok(text)
        }
        Err(e) => Response::error(e),
    }
}
