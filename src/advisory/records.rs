//! The machine-readable records of a release: a CVE JSON 5.1 record
//! (CVE Record Format 5.1, CNA container) and an OSV record (OSV schema
//! 1.6 fields), made from the case's [`AdvisoryData`] and the advisory's
//! text. Both are checked against the official schemas in
//! `tests/records.rs`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::case::Cvss;
use crate::config::Config;

use super::{AdvisoryData, End, Range};

/// The text a record is made from besides the case: the advisory as the
/// PST wrote it to the distributors.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The case ID.
    pub case: &'a str,
    /// The case's advisory data.
    pub data: &'a AdvisoryData,
    /// The case's severity, once given.
    pub cvss: Option<&'a Cvss>,
    /// The advisory's Subject (the title when `X-Summary:` is not given).
    pub subject: &'a str,
    /// The advisory's text (its first text part, keyword lines removed).
    pub text: &'a str,
    /// When it is (or will be) public.
    pub published: DateTime<Utc>,
}

/// The OSV `id` of `case`: `publish.osv_id_prefix` and the case ID.
pub fn osv_id(config: &Config, case: &str) -> String {
    format!("{}{case}", config.publish.osv_id_prefix)
}

/// File names of the records in the case's folder.
pub const CVE_FILE: &str = "cve.json";
/// See [`CVE_FILE`].
pub const OSV_FILE: &str = "osv.json";

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The title: `X-Summary:`, else the advisory's Subject.
pub fn title(source: &Source<'_>) -> String {
    let subject = source
        .subject
        .trim()
        .trim_start_matches("[EMBARGOED]")
        .trim();
    let title = match &source.data.summary {
        Some(summary) => summary.clone(),
        None if subject.is_empty() => format!("Security advisory {}", source.case),
        None => crate::embargo::public_subject(subject, source.case),
    };
    truncate(&title, 256)
}

/// The description: the advisory text's first paragraph, else the title.
fn description(source: &Source<'_>) -> String {
    let paragraph = source
        .text
        .split("\n\n")
        .map(|p| p.trim())
        .find(|p| !p.is_empty())
        .unwrap_or("");
    if paragraph.is_empty() {
        title(source)
    } else {
        truncate(&paragraph.replace("\r\n", "\n"), 4000)
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_string(),
        None => text.to_string(),
    }
}

/// Whether every version looks like SemVer (`1.4.2`, `2.0.0-rc.1`).
fn semver(data: &AdvisoryData) -> bool {
    let versions = data.affected.iter().flat_map(|r| {
        r.introduced.iter().chain(match &r.end {
            Some(End::Fixed(v) | End::LastAffected(v) | End::Only(v)) => Some(v),
            None => None,
        })
    });
    versions.into_iter().all(|v| {
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The products named by `data`'s ranges, `publish.product` for ranges
/// that name none, each with its ranges, in order.
fn products<'a>(config: &'a Config, data: &'a AdvisoryData) -> Vec<(&'a str, Vec<&'a Range>)> {
    let mut out: Vec<(&str, Vec<&Range>)> = Vec::new();
    for range in &data.affected {
        let product = range.product.as_deref().unwrap_or(&config.publish.product);
        match out.iter_mut().find(|(p, _)| *p == product) {
            Some((_, ranges)) => ranges.push(range),
            None => out.push((product, vec![range])),
        }
    }
    out
}

/// CVE's `metrics` entry for `cvss`.
fn cve_metric(cvss: &Cvss) -> Value {
    let (key, version) = match cvss.vector.get(..8) {
        Some("CVSS:4.0") => ("cvssV4_0", "4.0"),
        Some("CVSS:3.0") => ("cvssV3_0", "3.0"),
        _ => ("cvssV3_1", "3.1"),
    };
    json!({
        "format": "CVSS",
        "scenarios": [{"lang": "en", "value": "GENERAL"}],
        key: {
            "version": version,
            "vectorString": cvss.vector,
            "baseScore": cvss.score,
            "baseSeverity": cvss.severity.to_ascii_uppercase(),
        }
    })
}

/// CVE reference tags for an OSV reference kind.
fn cve_tags(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "fix" => "patch",
        "advisory" => "vendor-advisory",
        "report" => "issue-tracking",
        "package" => "release-notes",
        "article" => "technical-description",
        "discussion" => "mailing-list",
        "evidence" => "exploit",
        "detection" => "signature",
        _ => return None,
    })
}

/// Why a record cannot be made yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// No `X-CVE:`.
    #[error("no CVE ID yet (X-CVE: CVE-…)")]
    CveId,
    /// No `publish.cna_org_id`.
    #[error("no CNA organisation id in the config (publish.cna_org_id)")]
    CnaOrgId,
    /// No `X-Affected:`.
    #[error("no affected versions (X-Affected: …)")]
    Affected,
}

/// The CVE JSON 5.1 record (CVE Record Format, state PUBLISHED).
pub fn cve(config: &Config, source: &Source<'_>) -> Result<Value, Missing> {
    let data = source.data;
    let cve_id = data.cve.as_deref().ok_or(Missing::CveId)?;
    let org = config
        .publish
        .cna_org_id
        .as_deref()
        .ok_or(Missing::CnaOrgId)?;
    if data.affected.is_empty() {
        return Err(Missing::Affected);
    }
    // CVE's versionType names the ordering: the ecosystem's own where it
    // has one, SemVer when every version is one, else "custom".
    let version_type = match config
        .publish
        .ecosystem
        .as_deref()
        .map(|e| e.split(':').next().unwrap_or(e))
    {
        Some("PyPI") => "python",
        Some("Maven") => "maven",
        Some("RubyGems") => "rubygems",
        Some("Red Hat" | "AlmaLinux" | "Rocky Linux" | "openSUSE" | "SUSE") => "rpm",
        Some("Debian" | "Ubuntu") => "deb",
        _ if semver(data) => "semver",
        _ => "custom",
    };
    let affected: Vec<Value> = products(config, data)
        .into_iter()
        .map(|(product, ranges)| {
            let versions: Vec<Value> = ranges
                .iter()
                .map(|r| {
                    let from = r.introduced.as_deref().unwrap_or("0");
                    match &r.end {
                        Some(End::Only(v)) => json!({"version": v, "status": "affected"}),
                        Some(End::Fixed(v)) => json!({"version": from, "lessThan": v,
                            "status": "affected", "versionType": version_type}),
                        Some(End::LastAffected(v)) => json!({"version": from,
                            "lessThanOrEqual": v, "status": "affected", "versionType": version_type}),
                        None => json!({"version": from, "lessThan": "*",
                            "status": "affected", "versionType": version_type}),
                    }
                })
                .collect();
            json!({
                "vendor": config.project.name,
                "product": product,
                "defaultStatus": "unaffected",
                "versions": versions,
            })
        })
        .collect();
    let mut provider = Map::new();
    provider.insert("orgId".into(), json!(org));
    if let Some(short) = &config.publish.cna_short_name {
        provider.insert("shortName".into(), json!(short));
    }
    let mut cna = Map::new();
    cna.insert("providerMetadata".into(), Value::Object(provider.clone()));
    cna.insert("title".into(), json!(title(source)));
    cna.insert("datePublic".into(), json!(time(source.published)));
    cna.insert(
        "descriptions".into(),
        json!([{"lang": "en", "value": description(source)}]),
    );
    cna.insert("affected".into(), Value::Array(affected));
    if !data.cwe.is_empty() {
        let descriptions: Vec<Value> = data
            .cwe
            .iter()
            .map(|id| json!({"lang": "en", "type": "CWE", "cweId": id, "description": id}))
            .collect();
        cna.insert(
            "problemTypes".into(),
            json!([{ "descriptions": descriptions }]),
        );
    }
    if let Some(cvss) = source.cvss {
        cna.insert("metrics".into(), json!([cve_metric(cvss)]));
    }
    let mut references: Vec<Value> = data
        .references
        .iter()
        .map(|r| match cve_tags(&r.kind) {
            Some(tag) => json!({"url": r.url, "tags": [tag]}),
            None => json!({"url": r.url}),
        })
        .collect();
    if let Some(url) = &data.announced {
        references.push(json!({"url": url, "tags": ["vendor-advisory"]}));
    }
    if references.is_empty() {
        // The CNA rules require one; the case's record at the project
        // stands in until the PST gives a link.
        references.push(json!({"url": format!("https://cve.org/CVERecord?id={cve_id}")}));
    }
    cna.insert("references".into(), Value::Array(references));
    if !data.credits.is_empty() {
        let credits: Vec<Value> = data
            .credits
            .iter()
            .map(|c| json!({"lang": "en", "value": c.name, "type": c.kind}))
            .collect();
        cna.insert("credits".into(), Value::Array(credits));
    }
    if !data.fixed.is_empty() {
        cna.insert(
            "solutions".into(),
            json!([{"lang": "en", "value": format!("Upgrade to {}.", data.fixed.join(" or "))}]),
        );
    }
    if let Some(mitigation) = &data.mitigation {
        cna.insert(
            "workarounds".into(),
            json!([{"lang": "en", "value": mitigation}]),
        );
    }
    let mut metadata = Map::new();
    metadata.insert("cveId".into(), json!(cve_id));
    metadata.insert("assignerOrgId".into(), json!(org));
    if let Some(short) = &config.publish.cna_short_name {
        metadata.insert("assignerShortName".into(), json!(short));
    }
    metadata.insert("state".into(), json!("PUBLISHED"));
    metadata.insert("datePublished".into(), json!(time(source.published)));
    Ok(json!({
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": metadata,
        "containers": { "cna": cna },
    }))
}

/// The OSV record.
pub fn osv(config: &Config, source: &Source<'_>) -> Value {
    let data = source.data;
    let published = time(source.published);
    let range_type = if config.publish.ecosystem.is_none() && semver(data) {
        "SEMVER"
    } else {
        "ECOSYSTEM"
    };
    let affected: Vec<Value> = products(config, data)
        .into_iter()
        .map(|(product, ranges)| {
            let mut entry = Map::new();
            if let Some(ecosystem) = &config.publish.ecosystem {
                entry.insert(
                    "package".into(),
                    json!({"ecosystem": ecosystem, "name": product}),
                );
            }
            let mut versions = Vec::new();
            let mut events_of = Vec::new();
            for r in ranges {
                let introduced = r.introduced.as_deref().unwrap_or("0");
                match &r.end {
                    Some(End::Only(v)) => versions.push(json!(v)),
                    Some(End::Fixed(v)) => {
                        events_of.push(json!([{"introduced": introduced}, {"fixed": v}]))
                    }
                    Some(End::LastAffected(v)) => {
                        events_of.push(json!([{"introduced": introduced}, {"last_affected": v}]))
                    }
                    None => events_of.push(json!([{ "introduced": introduced }])),
                }
            }
            let ranges: Vec<Value> = events_of
                .into_iter()
                .map(|events| json!({"type": range_type, "events": events}))
                .collect();
            if !ranges.is_empty() {
                entry.insert("ranges".into(), Value::Array(ranges));
            }
            if !versions.is_empty() {
                entry.insert("versions".into(), Value::Array(versions));
            }
            entry.insert(
                "database_specific".into(),
                json!({ "product": product, "vendor": config.project.name }),
            );
            Value::Object(entry)
        })
        .collect();
    let mut record = Map::new();
    record.insert("schema_version".into(), json!("1.6.0"));
    record.insert("id".into(), json!(osv_id(config, source.case)));
    record.insert("modified".into(), json!(published));
    record.insert("published".into(), json!(published));
    if let Some(cve) = &data.cve {
        record.insert("aliases".into(), json!([cve]));
    }
    record.insert("summary".into(), json!(title(source)));
    record.insert(
        "details".into(),
        json!(truncate(source.text.trim(), 65_536)),
    );
    if let Some(cvss) = source.cvss {
        let kind = if cvss.vector.starts_with("CVSS:4.0") {
            "CVSS_V4"
        } else {
            "CVSS_V3"
        };
        record.insert(
            "severity".into(),
            json!([{"type": kind, "score": cvss.vector}]),
        );
    }
    if !affected.is_empty() {
        record.insert("affected".into(), Value::Array(affected));
    }
    let mut references: Vec<Value> = data
        .references
        .iter()
        .map(|r| json!({"type": r.kind.to_ascii_uppercase(), "url": r.url}))
        .collect();
    if let Some(url) = &data.announced {
        references.push(json!({"type": "ADVISORY", "url": url}));
    }
    if !references.is_empty() {
        record.insert("references".into(), Value::Array(references));
    }
    if !data.credits.is_empty() {
        let credits: Vec<Value> = data
            .credits
            .iter()
            .map(|c| json!({"name": c.name, "type": c.kind.to_ascii_uppercase().replace(' ', "_")}))
            .collect();
        record.insert("credits".into(), Value::Array(credits));
    }
    let mut specific = Map::new();
    specific.insert("case".into(), json!(source.case));
    if !data.cwe.is_empty() {
        specific.insert("cwe_ids".into(), json!(data.cwe));
    }
    record.insert("database_specific".into(), Value::Object(specific));
    Value::Object(record)
}

/// Writes `files` into `publish.dir/CASE/`, each atomically and
/// world-readable (they are public from now on). Returns the folder.
///
/// # Errors
/// The folder cannot be made or a file not written (the release goes on:
/// the records are attached to the announcement too).
pub fn write(
    config: &Config,
    case: &str,
    files: &[(&str, &[u8])],
) -> std::io::Result<std::path::PathBuf> {
    let dir = config.publish.dir.join(case);
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in files {
        crate::fsutil::replace_file(&dir.join(name), bytes, Some(0o644))?;
    }
    Ok(dir)
}

/// Both records, pretty-printed: (file name, JSON) for each one that can
/// be made, and why the CVE record cannot when it cannot.
pub fn render(
    config: &Config,
    source: &Source<'_>,
) -> (Vec<(&'static str, String)>, Option<Missing>) {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("records serialize") + "\n";
    let mut out = Vec::new();
    let missing = match cve(config, source) {
        Ok(record) => {
            out.push((CVE_FILE, pretty(&record)));
            None
        }
        Err(why) => Some(why),
    };
    out.push((OSV_FILE, pretty(&osv(config, source))));
    (out, missing)
}
