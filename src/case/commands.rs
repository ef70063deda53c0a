//! The PST's keyword commands on the security list, Schleuder-style:
//! keyword lines at the top of a post signed by a PST member's pinned key.
//!
//! ```text
//! X-Case: KAP-2026-0001
//! X-CVSS: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H
//! X-Add: carol
//! ```
//!
//! A command's signature must pass the freshness rule ([`crate::freshness`]):
//! recent, by a key in force, never used before. An unknown keyword refuses the whole
//! mail. Each command mail gets an encrypted reply listing what was done
//! and what was refused, and why. The command line runs the same code
//! ([`apply`] with the admin as actor).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::context::Context;
use crate::keywords::Keyword;
use crate::store::Transaction;

use super::{get, parse_stored, put, put_reference, timeline, Case, CaseError, Milestone};

/// Keywords of the security list, each with what it takes.
pub const KNOWN: &[(&str, &str)] = &[
    ("case", "the case: X-Case: KAP-2026-0001"),
    (
        "to-reporter",
        "send this post to the reporter: X-To-Reporter: yes",
    ),
    ("public", "the issue is already public: X-Public: yes"),
    ("lead", "the Fix Lead: X-Lead: <member id>"),
    ("add", "add to the Fix Team: X-Add: <member id>"),
    ("remove", "remove from the Fix Team: X-Remove: <member id>"),
    (
        "done",
        "a milestone met: X-Done: team|fix|users|distributors|release",
    ),
    ("cvss", "the CVSS vector: X-CVSS: CVSS:3.1/AV:N/..."),
    (
        "slow",
        "slow a low-severity case down (Fix Lead): X-Slow: <reason>",
    ),
    (
        "draft",
        "send the PST the release's records and announcement: X-Draft: yes",
    ),
    (
        "archive",
        "publish the case's sanitized thread (once released): X-Archive: approve",
    ),
];

/// Every keyword of the security list: the case's and the advisory's.
fn all_known() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    KNOWN.iter().chain(crate::advisory::KEYWORDS)
}

/// Who gives a command.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A PST member, by a signed post whose signature passed the
    /// freshness rule ([`crate::freshness`]).
    Member {
        /// The member's id.
        id: String,
    },
    /// An admin on the command line.
    Admin,
}

impl Actor {
    fn name(&self) -> &str {
        match self {
            Actor::Member { id, .. } => id,
            Actor::Admin => "an admin",
        }
    }
}

/// What a command mail did.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// One line per command carried out.
    pub done: Vec<String>,
    /// One line per command refused, with why.
    pub refused: Vec<String>,
    /// The post goes to the reporter too.
    pub to_reporter: bool,
    /// The PST gets the release's draft (`X-Draft: yes`).
    pub draft: bool,
    /// What looks wrong in the advisory data now (a fixed version inside
    /// an affected range), one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Report {
    /// The reply to the sender: what was done and what was refused, for `case` when named.
    pub fn text(&self, case: Option<&str>) -> String {
        let mut text = match case {
            Some(case) => format!("Commands for case {case}:\n"),
            None => "Commands:\n".to_string(),
        };
        for line in &self.done {
            text.push_str(&format!("  done:    {line}\n"));
        }
        for line in &self.refused {
            text.push_str(&format!("  REFUSED: {line}\n"));
        }
        for line in &self.warnings {
            text.push_str(&format!("  WARNING: {line}\n"));
        }
        text
    }
}

/// Checks the mail as a whole: known keywords only. (The signature's
/// freshness is [`crate::freshness`]'s, checked before.)
pub fn admissible(keywords: &[Keyword]) -> Result<(), CaseError> {
    if let Some(unknown) = keywords
        .iter()
        .find(|k| !all_known().any(|(name, _)| *name == k.name))
    {
        let known: Vec<String> = all_known().map(|(n, _)| format!("X-{n}")).collect();
        return Err(CaseError::UnknownKeyword {
            name: unknown.name.clone(),
            known: known.join(", "),
        });
    }
    Ok(())
}

/// Applies `keywords` to `case` (already checked with [`admissible`]).
pub fn apply(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    actor: &Actor,
    keywords: &[Keyword],
    case: &mut Case,
) -> Report {
    let config = ctx.config;
    let now = Timestamp::from(ctx.now);
    let mut report = Report::default();
    let old = case.clone();
    let pst = &config.lists.security.members;
    let mut seen = std::collections::HashSet::new();
    for keyword in keywords {
        let value = keyword.value.trim();
        let first = seen.insert(keyword.name.as_str());
        let result: Result<String, String> = match keyword.name.as_str() {
            "case" => continue,
            "cve" if !value.eq_ignore_ascii_case("none") => {
                match cve_elsewhere(ctx, &case.id, value) {
                    Some(other) => Err(format!(
                        "X-CVE: {} is case {other}'s already; one CVE names one issue",
                        value.to_ascii_uppercase()
                    )),
                    None => case.advisory.apply("cve", value, first),
                }
            }
            name if crate::advisory::is_keyword(name) => case.advisory.apply(name, value, first),
            "draft" => {
                if value.eq_ignore_ascii_case("yes") {
                    report.draft = true;
                    Ok("the release's draft goes to the PST, encrypted".into())
                } else {
                    Err(format!("X-Draft: {value:?}: only \"yes\" is understood"))
                }
            }
            "archive" => crate::advisory::archive::approve(
                ctx,
                case,
                actor.name(),
                matches!(actor, Actor::Admin),
                value,
            ),
            "to-reporter" => {
                if !value.eq_ignore_ascii_case("yes") {
                    Err(format!(
                        "X-To-Reporter: {value:?}: only \"yes\" is understood"
                    ))
                } else if case.reporter.is_none() {
                    Err("X-To-Reporter: this case has no reporter address".into())
                } else {
                    report.to_reporter = true;
                    Ok(format!(
                        "this post goes to the reporter{}",
                        if case.reporter_cert.is_some() {
                            ", encrypted"
                        } else {
                            " (no key known: plaintext)"
                        }
                    ))
                }
            }
            "public" => {
                if !value.eq_ignore_ascii_case("yes") {
                    Err(format!("X-Public: {value:?}: only \"yes\" is understood"))
                } else {
                    timeline::make_public(case, now);
                    Ok("the case is public: every deadline is now, with daily reminders".into())
                }
            }
            "lead" => {
                if !pst.iter().any(|m| m == value) {
                    Err(format!("X-Lead: {value:?} is not a member of the PST"))
                } else {
                    case.lead = Some(value.to_string());
                    Ok(format!("Fix Lead is now {value}"))
                }
            }
            "add" => match config.members.get(value) {
                None => Err(format!("X-Add: {value:?} is not a member in the config")),
                Some(_) if pst.iter().any(|m| m == value) => Err(format!(
                    "X-Add: {value} is on the PST and gets every case already"
                )),
                Some(_) if case.team.iter().any(|m| m == value) => {
                    Err(format!("X-Add: {value} is on the Fix Team already"))
                }
                Some(_) => {
                    case.team.push(value.to_string());
                    case.meet(Milestone::Team, now, actor.name());
                    Ok(format!(
                        "{value} added to the Fix Team; they receive this case's traffic"
                    ))
                }
            },
            "remove" => {
                let before = case.team.len();
                case.team.retain(|m| m != value);
                if case.team.len() < before {
                    Ok(format!("{value} removed from the Fix Team"))
                } else {
                    Err(format!("X-Remove: {value} is not on the Fix Team"))
                }
            }
            "done" => match Milestone::parse(value) {
                Err(e) => Err(e.to_string()),
                Ok(m) if case.meet(m, now, actor.name()) => {
                    Ok(format!("milestone \"{}\" met", m.label()))
                }
                Ok(m) => Err(format!("X-Done: \"{}\" was met already", m.label())),
            },
            "cvss" => match super::score(value) {
                Err(e) => Err(e.to_string()),
                Ok(cvss) => {
                    let line = format!("CVSS {} {} ({})", cvss.score, cvss.severity, cvss.vector);
                    case.cvss = Some(cvss);
                    Ok(line)
                }
            },
            "slow" => {
                let lead = case.lead.as_deref();
                let is_lead = matches!(actor, Actor::Admin) || lead == Some(actor.name());
                match &case.cvss {
                    _ if !is_lead => Err("X-Slow: only the Fix Lead may slow a case down".into()),
                    None => Err("X-Slow: give the CVSS vector first; only a score under 4.0 may slow a case".into()),
                    Some(cvss) if cvss.score >= 4.0 => Err(format!(
                        "X-Slow: the CVSS score is {} ({}); the policy allows slowing only under 4.0",
                        cvss.score, cvss.severity
                    )),
                    Some(_) if value.is_empty() => Err("X-Slow: give the reason".into()),
                    Some(_) => {
                        case.slow = Some(value.to_string());
                        timeline::slow_down(config, case);
                        Ok(format!("the case is slowed down: every open deadline moved by {}", humantime::format_duration(config.timeline.slow_by)))
                    }
                }
            }
            other => Err(format!("X-{other}: not understood")),
        };
        match result {
            Ok(line) => report.done.push(line),
            Err(line) => report.refused.push(line),
        }
    }
    if keywords
        .iter()
        .any(|k| crate::advisory::is_keyword(&k.name))
    {
        report.warnings = case.advisory.problems();
    }
    if report.draft {
        crate::advisory::draft::send(ctx, batch, case);
    }
    // The command line outranks every post signed before it: a delayed
    // signed X-Add cannot undo an admin's later removal.
    if matches!(actor, Actor::Admin) {
        case.signed = case.signed.max(now);
    }
    timeline::schedule(config, batch, Some(&old), case, now);
    put(batch, case);
    report
}

/// Another case that has `cve` already, if any.
fn cve_elsewhere(ctx: &Context<'_>, case: &str, cve: &str) -> Option<String> {
    super::all(ctx.store)
        .ok()?
        .into_iter()
        .find(|c| {
            c.id != case
                && c.advisory
                    .cve
                    .as_deref()
                    .is_some_and(|other| other.eq_ignore_ascii_case(cve.trim()))
        })
        .map(|c| c.id)
}

/// A membership request for the distributors list (`X-Join:`): the
/// policy's seven criteria as a checklist, and the vouches received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinRequest {
    /// The request's ID (REQ-2026-0001).
    pub id: String,
    /// The list applied for (`distributors`).
    pub list: String,
    /// The applicant's address.
    pub applicant: String,
    /// When it was opened, in ms since the epoch.
    pub opened: Timestamp,
    /// The policy's membership criteria, each with whether it is met.
    pub criteria: Vec<(String, bool)>,
    /// Who vouched, each with when (ms since the epoch).
    pub vouches: Vec<(String, Timestamp)>,
}

/// The criteria of the policy's "Membership Criteria".
pub const CRITERIA: [&str; 7] = [
    "an active distributor of the project",
    "a user base not limited to its own organization",
    "a publicly verifiable track record of fixing security issues",
    "not a downstream or rebuild of another distributor",
    "a participant and active contributor in the community",
    "accepts the Embargo Policy",
    "vouched for by someone already on the list",
];

/// Opens a membership request from `applicant`.
pub fn join(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    list: &str,
    applicant: &str,
    message_id: &str,
) -> Result<JoinRequest, CaseError> {
    if !list.eq_ignore_ascii_case("distributors") || ctx.config.lists.distributors.is_none() {
        return Err(CaseError::NotJoinable(list.to_string()));
    }
    use chrono::Datelike;
    let year = ctx.now.year();
    let key = format!("seq/REQ-{year}");
    let seq = crate::case::value(ctx.store, &key)?
        .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    crate::case::put_value(batch, key, seq.to_string().into_bytes());
    let request = JoinRequest {
        id: format!("REQ-{year}-{seq:04}"),
        list: "distributors".into(),
        applicant: applicant.to_string(),
        opened: Timestamp::from(ctx.now),
        criteria: CRITERIA.iter().map(|c| (c.to_string(), false)).collect(),
        vouches: Vec::new(),
    };
    put_request(batch, &request);
    put_reference(ctx, batch, message_id, &request.id);
    Ok(request)
}

/// Adds `voucher`'s vouch to request `id`.
pub fn vouch(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: &str,
    voucher: &str,
) -> Result<JoinRequest, CaseError> {
    let mut request = request(ctx, id)?.ok_or_else(|| CaseError::NoRequest(id.to_string()))?;
    if request.vouches.iter().any(|(v, _)| v == voucher) {
        return Err(CaseError::VouchedAlready {
            voucher: voucher.to_string(),
            request: id.to_string(),
        });
    }
    request
        .vouches
        .push((voucher.to_string(), Timestamp::from(ctx.now)));
    if let Some(criterion) = request.criteria.last_mut() {
        criterion.1 = true;
    }
    put_request(batch, &request);
    Ok(request)
}

fn request(ctx: &Context<'_>, id: &str) -> Result<Option<JoinRequest>, CaseError> {
    crate::case::value(ctx.store, &format!("req/{id}"))?
        .map(|v| parse_stored(format!("request {id}"), &v))
        .transpose()
}

/// Every membership request.
pub fn requests(store: &crate::store::Store) -> Result<Vec<JoinRequest>, CaseError> {
    crate::case::values(store, "req/")?
        .iter()
        .map(|v| parse_stored("request", v))
        .collect()
}

fn put_request(batch: &mut Transaction, request: &JoinRequest) {
    crate::case::put_value(
        batch,
        format!("req/{}", request.id),
        serde_json::to_vec(request).expect("requests serialize"),
    );
}

/// The case a command mail names or replies to.
pub fn case_of(ctx: &Context<'_>, id: &str) -> Result<Case, CaseError> {
    get(ctx, id)?.ok_or_else(|| CaseError::NoCase(id.to_string()))
}
