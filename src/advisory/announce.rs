//! What a release says, and to whom: the actionable summary at the top of
//! the announcement (what to upgrade to, what to do until then, how bad,
//! who to thank, where to read more), the records attached to it, and the
//! plain-text post to oss-security in that list's customary form (details
//! inline, the CVE in the Subject).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::case::Case;
use crate::clock::format_disclosure;
use crate::config::Config;
use crate::embargo::Advisory;

use super::records::{self, Missing, Source};
use super::AdvisoryData;

/// Everything a release publishes besides the advisory itself.
#[derive(Debug, Clone)]
pub struct Paperwork {
    /// The title: `X-Summary:`, else the advisory's Subject.
    pub title: String,
    /// The announcement's Subject: the case ID and the title (with the
    /// CVE ID) when `X-Summary:` gave one, else the advisory's.
    pub subject: String,
    /// The actionable summary that opens the announcement.
    pub summary: String,
    /// The advisory's text (its first text part).
    pub text: String,
    /// The records: (file name, JSON).
    pub records: Vec<(&'static str, String)>,
    /// Why there is no CVE record, when there is none.
    pub no_cve_record: Option<Missing>,
    /// The CVE ID, when assigned.
    pub cve: Option<String>,
}

/// The paperwork of `case_id`'s release at `published`, from its case
/// record (`None` for a case only the distributors list knows) and the
/// advisory the PST posted.
pub fn paperwork(
    config: &Config,
    case_id: &str,
    case: Option<&Case>,
    advisory: &Advisory,
    published: DateTime<Utc>,
) -> Paperwork {
    let empty = AdvisoryData::default();
    let data = case.map(|c| &c.advisory).unwrap_or(&empty);
    let text = crate::mime::edit::first_text(&advisory.content)
        .map(|slot| slot.text.replace("\r\n", "\n"))
        .unwrap_or_default();
    let source = Source {
        case: case_id,
        data,
        cvss: case.and_then(|c| c.cvss.as_ref()),
        subject: &advisory.subject,
        text: &text,
        published,
    };
    let (records, no_cve_record) = records::render(config, &source);
    let title = records::title(&source);
    let summary = summary(config, &source, &title, &records);
    let subject = match (&data.summary, &data.cve) {
        (Some(title), Some(cve)) => format!("[{case_id}] {title} ({cve})"),
        (Some(title), None) => format!("[{case_id}] {title}"),
        (None, Some(cve)) => format!(
            "{} ({cve})",
            crate::embargo::public_subject(&advisory.subject, case_id)
        ),
        (None, None) => crate::embargo::public_subject(&advisory.subject, case_id),
    };
    Paperwork {
        title,
        subject,
        summary,
        text,
        records,
        no_cve_record,
        cve: data.cve.clone(),
    }
}

/// The record files' names as attached: `KAP-2026-0001.cve.json`.
pub fn attachment_name(case: &str, file: &str) -> String {
    format!("{case}.{file}")
}

fn summary(
    config: &Config,
    source: &Source<'_>,
    title: &str,
    records: &[(&'static str, String)],
) -> String {
    let data = source.data;
    let mut text = format!(
        "{} security advisory {}{}\n{title}\n\n",
        config.project.name,
        source.case,
        data.cve
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    let mut row = |label: &str, value: String| {
        let _ = writeln!(text, "{label:<12}{value}");
    };
    row("Published:", format_disclosure(source.published));
    if let Some(cvss) = source.cvss {
        row(
            "Severity:",
            format!("{} {:.1} ({})", cvss.severity, cvss.score, cvss.vector),
        );
    }
    if !data.affected.is_empty() {
        let ranges: Vec<String> = data
            .affected
            .iter()
            .map(|r| match &r.product {
                Some(_) => r.to_string(),
                None => format!("{} {r}", config.publish.product),
            })
            .collect();
        row("Affected:", ranges.join("; "));
    }
    row(
        "Upgrade to:",
        if data.fixed.is_empty() {
            "no fixed version is named yet; watch this list".to_string()
        } else {
            data.fixed.join(" or ")
        },
    );
    if let Some(mitigation) = &data.mitigation {
        row("Mitigation:", mitigation.clone());
    }
    if !data.cwe.is_empty() {
        row("Weakness:", data.cwe.join(", "));
    }
    if !data.credits.is_empty() {
        let credits: Vec<String> = data.credits.iter().map(|c| c.to_string()).collect();
        row("Credits:", credits.join("; "));
    }
    if !data.references.is_empty() {
        text.push_str("References:\n");
        for r in &data.references {
            let _ = writeln!(text, "  {:<11}{}", r.kind, r.url);
        }
    }
    if !records.is_empty() {
        let names: Vec<String> = records
            .iter()
            .map(|(file, _)| attachment_name(source.case, file))
            .collect();
        let kinds: Vec<&str> = records
            .iter()
            .map(|(file, _)| match *file {
                records::CVE_FILE => "CVE JSON 5.1",
                _ => "OSV",
            })
            .collect();
        let _ = write!(
            text,
            "\nMachine-readable records are attached: {} ({}).\n",
            names.join(", "),
            kinds.join(" and ")
        );
    }
    text
}

/// The oss-security post: (Subject, plain text). The CVE ID leads the
/// Subject when there is one, as that list asks.
pub fn oss_security(config: &Config, case: &str, paperwork: &Paperwork) -> (String, String) {
    let subject = match &paperwork.cve {
        Some(cve) => format!("{cve}: {}: {}", config.project.name, paperwork.title),
        None => format!("{}: {} ({case})", config.project.name, paperwork.title),
    };
    let mut body = paperwork.summary.clone();
    body.push_str("\n\n");
    body.push_str(paperwork.text.trim_end());
    let _ = write!(
        body,
        "\n\n-- \nThe {} Product Security Team\n",
        config.project.name
    );
    (crate::mime::one_line(&subject), body)
}
