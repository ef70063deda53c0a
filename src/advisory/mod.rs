//! Release-day paperwork: the structured data of a case's advisory, and
//! what a release makes of it.
//!
//! The PST sets the data with signed keyword lines on the security list
//! (or `embargod case set`), each checked as it comes:
//!
//! ```text
//! X-Case: KAP-2026-0001
//! X-Summary: Heap overflow in the header parser
//! X-Affected: >=1.0.0, <1.4.2
//! X-Fixed: 1.4.2
//! X-CWE: CWE-122
//! X-Credit: finder: Jane Doe
//! X-Reference: fix https://git.kappital.example/commit/1a2b3c
//! X-CVE: CVE-2026-12345
//! X-Mitigation: Set max_header_size to 8192 until you can upgrade.
//! ```
//!
//! - [`records`]: the CVE JSON 5.1 record and the OSV record;
//! - [`announce`]: the actionable announcement and the oss-security post;
//! - [`draft`]: all of it, sent to the PST alone before the release;
//! - [`overdue`]: the PST's reminder of releases without a public post;
//! - [`archive`]: the case's thread, kept sealed, and its sanitized public
//!   export once the PST approves it.

pub mod announce;
pub mod archive;
pub mod draft;
pub mod overdue;
pub mod records;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A case's advisory data, kept in its case record (sealed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdvisoryData {
    /// One-line title (CVE `title`, OSV `summary`).
    #[serde(default)]
    pub summary: Option<String>,
    /// Affected version ranges.
    #[serde(default)]
    pub affected: Vec<Range>,
    /// Versions to upgrade to.
    #[serde(default)]
    pub fixed: Vec<String>,
    /// CWE ids (`CWE-122`).
    #[serde(default)]
    pub cwe: Vec<String>,
    /// Who is credited, and for what.
    #[serde(default)]
    pub credits: Vec<Credit>,
    /// Links: fix commits, release notes, reports.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// The CVE ID, once assigned.
    #[serde(default)]
    pub cve: Option<String>,
    /// What users can do until they upgrade.
    #[serde(default)]
    pub mitigation: Option<String>,
    /// Where the case was made public when embargod did not announce it
    /// (`X-Announced: URL`).
    #[serde(default)]
    pub announced: Option<String>,
    /// Who approved the public archive, and when (ms); `None`: no archive.
    #[serde(default)]
    pub archive_approved: Option<(String, crate::clock::Timestamp)>,
}

/// A range of affected versions of one product.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Range {
    /// The product, when not `publish.product`.
    pub product: Option<String>,
    /// First affected version; `None`: every version before the end.
    pub introduced: Option<String>,
    /// The end of the range.
    pub end: Option<End>,
}

/// Where a range of affected versions ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The first version no longer affected (`<1.4.2`).
    Fixed(String),
    /// The last version affected (`<=1.4.1`): no fix on that line yet.
    LastAffected(String),
    /// One version only (`=1.4.1`).
    Only(String),
}

/// The roles a credit may have, as CVE JSON 5 and OSV both define them.
pub const CREDIT_TYPES: [&str; 10] = [
    "finder",
    "reporter",
    "analyst",
    "coordinator",
    "remediation developer",
    "remediation reviewer",
    "remediation verifier",
    "tool",
    "sponsor",
    "other",
];

/// Someone credited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credit {
    /// As they want to be named.
    pub name: String,
    /// One of [`CREDIT_TYPES`].
    pub kind: String,
}

/// The kinds of reference, as OSV names them (CVE tags are mapped).
pub const REFERENCE_TYPES: [&str; 11] = [
    "advisory",
    "article",
    "detection",
    "discussion",
    "report",
    "fix",
    "introduced",
    "git",
    "package",
    "evidence",
    "web",
];

/// A link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reference {
    /// One of [`REFERENCE_TYPES`].
    pub kind: String,
    /// An `https://` or `http://` URL.
    pub url: String,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(product) = &self.product {
            write!(f, "{product} ")?;
        }
        match (&self.introduced, &self.end) {
            (_, Some(End::Only(v))) => write!(f, "={v}"),
            (Some(from), Some(End::Fixed(to))) => write!(f, ">={from}, <{to}"),
            (Some(from), Some(End::LastAffected(to))) => write!(f, ">={from}, <={to}"),
            (None, Some(End::Fixed(to))) => write!(f, "<{to}"),
            (None, Some(End::LastAffected(to))) => write!(f, "<={to}"),
            (Some(from), None) => write!(f, ">={from}"),
            (None, None) => write!(f, "every version"),
        }
    }
}

/// The advisory keywords of the security list, each with what it takes
/// (for the command reply and the CLI's help).
pub const KEYWORDS: &[(&str, &str)] = &[
    (
        "summary",
        "one-line title: X-Summary: Heap overflow in the parser",
    ),
    (
        "affected",
        "affected versions: X-Affected: [product] >=1.0.0, <1.4.2",
    ),
    ("fixed", "versions to upgrade to: X-Fixed: 1.4.2, 1.3.9"),
    ("cwe", "the weakness: X-CWE: CWE-122"),
    (
        "credit",
        "X-Credit: finder: Jane Doe (or reporter, remediation developer, …)",
    ),
    ("reference", "a link: X-Reference: fix https://…"),
    ("cve", "the CVE ID once assigned: X-CVE: CVE-2026-12345"),
    (
        "mitigation",
        "what users can do before upgrading: X-Mitigation: …",
    ),
    (
        "announced",
        "where the case was published, when not by embargod: X-Announced: https://…",
    ),
];

/// Whether `name` (lower-case, without `X-`) is one of [`KEYWORDS`].
pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.iter().any(|(keyword, _)| *keyword == name)
}

/// `X-Affected` for `affected`: how keywords are written.
fn label(name: &str) -> String {
    match name {
        "cve" => "X-CVE".into(),
        "cwe" => "X-CWE".into(),
        _ => {
            let words: Vec<String> = name
                .split('-')
                .map(|w| {
                    let mut chars = w.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect();
            format!("X-{}", words.join("-"))
        }
    }
}

/// Longest text value of a keyword, in characters.
const MAX_TEXT: usize = 1000;
/// Longest version, product or name, in characters.
const MAX_NAME: usize = 200;
/// Most entries of a list-valued keyword.
const MAX_ENTRIES: usize = 64;

impl AdvisoryData {
    /// Applies keyword `name` (lower-case, without `X-`) with `value`.
    /// A list-valued keyword given for the first time in a mail (`first`)
    /// replaces the list, so a corrected list is given whole; `none`
    /// empties it. Returns the line for the command reply, or why the
    /// value was refused (nothing changed).
    pub fn apply(&mut self, name: &str, value: &str, first: bool) -> Result<String, String> {
        let value = value.trim();
        let clear = value.eq_ignore_ascii_case("none");
        macro_rules! list {
            ($field:ident, $parse:expr, $label:expr) => {{
                if clear {
                    self.$field.clear();
                    return Ok(format!("{} cleared", $label));
                }
                // Built aside: a refused value changes nothing.
                let mut list = if first {
                    Vec::new()
                } else {
                    self.$field.clone()
                };
                for item in split_list(name, value) {
                    let item = $parse(item)?;
                    if !list.contains(&item) {
                        list.push(item);
                    }
                }
                if list.len() > MAX_ENTRIES {
                    return Err(format!("{}: at most {MAX_ENTRIES} entries", label(name)));
                }
                self.$field = list;
                Ok(format!(
                    "{}: {}",
                    $label,
                    self.$field
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }};
        }
        match name {
            "summary" => {
                self.summary = if clear {
                    None
                } else {
                    Some(text(name, value, 256)?)
                };
                Ok(format!(
                    "summary: {}",
                    self.summary.as_deref().unwrap_or("(none)")
                ))
            }
            "mitigation" => {
                self.mitigation = if clear {
                    None
                } else {
                    Some(text(name, value, MAX_TEXT)?)
                };
                Ok(format!(
                    "mitigation: {}",
                    self.mitigation.as_deref().unwrap_or("(none)")
                ))
            }
            "cve" => {
                self.cve = if clear { None } else { Some(cve_id(value)?) };
                Ok(format!(
                    "CVE ID: {}",
                    self.cve.as_deref().unwrap_or("(none)")
                ))
            }
            "announced" => {
                self.announced = if clear { None } else { Some(url(name, value)?) };
                Ok(format!(
                    "published at: {}",
                    self.announced.as_deref().unwrap_or("(none)")
                ))
            }
            "affected" => list!(affected, range, "affected"),
            "fixed" => list!(fixed, |v: &str| version(name, v), "fixed in"),
            "cwe" => list!(cwe, cwe_id, "CWE"),
            "credit" => list!(credits, credit, "credits"),
            "reference" => list!(references, reference, "references"),
            other => Err(format!("{}: not an advisory keyword", label(other))),
        }
    }

    /// What looks wrong in data that each passed its own check, one line
    /// each: a fixed version inside an affected range of the project's
    /// own product (scanners would call the fixed release vulnerable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for fixed in &self.fixed {
            for range in self.affected.iter().filter(|r| r.product.is_none()) {
                if range.contains(fixed) == Some(true) {
                    problems.push(format!(
                        "X-Fixed {fixed} lies inside the affected range {range}: the records \
                         would call it vulnerable; give one range per release line \
                         (X-Affected: >=A, <{fixed}; >=B, <C)"
                    ));
                }
            }
        }
        problems
    }

    /// What the PST should still give before the release, one line each.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.summary.is_none() {
            missing.push("X-Summary: a one-line title");
        }
        if self.affected.is_empty() {
            missing.push("X-Affected: the affected versions");
        }
        if self.fixed.is_empty() {
            missing.push("X-Fixed: the versions to upgrade to");
        }
        if self.cwe.is_empty() {
            missing.push("X-CWE: the weakness (CWE-…)");
        }
        if self.credits.is_empty() {
            missing.push("X-Credit: who found and fixed it");
        }
        if self.references.is_empty() {
            missing.push("X-Reference: the fix commit or release notes");
        }
        if self.cve.is_none() {
            missing.push("X-CVE: the CVE ID (no CVE record is made without it)");
        }
        missing
    }
}

impl fmt::Display for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.url)
    }
}

/// Splits a list value: versions and CWEs by commas or spaces, ranges by
/// `;`, credits and references are one per line.
fn split_list<'a>(name: &str, value: &'a str) -> Vec<&'a str> {
    let parts: Vec<&str> = match name {
        "fixed" | "cwe" => value.split([',', ' ']).collect(),
        "affected" => value.split(';').collect(),
        _ => vec![value],
    };
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// A one-line text of at most `max` characters, without control or
/// bidi characters (they would rearrange what readers of the records see).
fn text(name: &str, value: &str, max: usize) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("{}: give a value (or \"none\")", label(name)));
    }
    if value.chars().count() > max {
        return Err(format!("{}: at most {max} characters", label(name)));
    }
    if value
        .chars()
        .any(|c| c.is_control() || crate::mime::is_invisible(c))
    {
        // (Also U+061C, U+2028/9 and the tag characters: Cf, Zl, Zp.)
        return Err(format!(
            "{}: control, zero-width and bidi characters are not allowed",
            label(name)
        ));
    }
    Ok(value.to_string())
}

/// A version: letters, digits and `.+-_~:`.
fn version(name: &str, value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-_~:".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{}: {value:?} is not a version (letters, digits and . + - _ ~ : only)",
            label(name)
        ))
    }
}

/// `[product] >=A, <B` | `<B` | `<=B` | `>=A` | `=A`.
fn range(value: &str) -> Result<Range, String> {
    let mut product = None;
    let mut introduced = None;
    let mut end = None;
    // ">= 1.0" is ">=1.0": an operator alone takes the next token.
    let mut tokens: Vec<String> = Vec::new();
    let mut pending = String::new();
    for token in value.split([',', ' ']).filter(|t| !t.is_empty()) {
        if token.chars().all(|c| "<>=".contains(c)) {
            pending.push_str(token);
        } else {
            tokens.push(format!("{pending}{token}"));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        tokens.push(pending);
    }
    for token in tokens.iter().map(String::as_str) {
        let (op, rest) = match token.find(|c: char| !"<>=".contains(c)) {
            Some(0) => ("", token),
            Some(at) => token.split_at(at),
            None => (token, ""),
        };
        match op {
            "" if introduced.is_none() && end.is_none() && product.is_none() => {
                product = Some(text("affected", rest, MAX_NAME)?)
            }
            ">=" => bound(&mut introduced, version("affected", rest)?, value)?,
            "<" => bound(&mut end, End::Fixed(version("affected", rest)?), value)?,
            "<=" => bound(
                &mut end,
                End::LastAffected(version("affected", rest)?),
                value,
            )?,
            "=" | "==" => bound(&mut end, End::Only(version("affected", rest)?), value)?,
            _ => {
                return Err(format!(
                    "X-Affected: {value:?}: write a range like \">=1.0.0, <1.4.2\", \"<1.4.2\", \
                     \"<=1.4.1\" or \"=1.4.1\", optionally after the product name"
                ))
            }
        }
    }
    if matches!(end, Some(End::Only(_))) && introduced.is_some() {
        return Err(format!(
            "X-Affected: {value:?}: \"=\" names one version, not a range"
        ));
    }
    if introduced.is_none() && end.is_none() {
        return Err(format!(
            "X-Affected: {value:?}: no version bound; write a range like \">=1.0.0, <1.4.2\""
        ));
    }
    if let (Some(from), Some(End::Fixed(to) | End::LastAffected(to))) = (&introduced, &end) {
        let empty = matches!(
            (compare_versions(from, to), &end),
            (Some(std::cmp::Ordering::Greater), _)
                | (Some(std::cmp::Ordering::Equal), Some(End::Fixed(_)))
        );
        if empty {
            return Err(format!(
                "X-Affected: {value:?}: the range is empty ({from} is not below {to}); \
                 the first affected version comes first"
            ));
        }
    }
    Ok(Range {
        product,
        introduced,
        end,
    })
}

/// Orders two versions of the usual shape: dot-separated numbers, then
/// an optional pre-release after `-` that sorts before the release
/// (SemVer §11: `1.0.0-rc.1` < `1.0.0`), build metadata after `+`
/// ignored. `None` when either has another shape (a date, a git hash):
/// then nothing is concluded from the order.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    fn parts(v: &str) -> Option<(Vec<u64>, Option<&str>)> {
        let v = v.trim_start_matches(['v', 'V']);
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let numbers = core
            .split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some((numbers, pre))
    }
    let (mut a_core, a_pre) = parts(a)?;
    let (mut b_core, b_pre) = parts(b)?;
    let len = a_core.len().max(b_core.len());
    a_core.resize(len, 0);
    b_core.resize(len, 0);
    Some(a_core.cmp(&b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => std::cmp::Ordering::Equal,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    }))
}

impl Range {
    /// Whether `version` lies in the range; `None` when the versions
    /// cannot be ordered ([`compare_versions`]).
    pub fn contains(&self, version: &str) -> Option<bool> {
        use std::cmp::Ordering::*;
        let above = match &self.introduced {
            Some(from) => compare_versions(version, from)? != Less,
            None => true,
        };
        let below = match &self.end {
            Some(End::Fixed(to)) => compare_versions(version, to)? == Less,
            Some(End::LastAffected(to)) => compare_versions(version, to)? != Greater,
            Some(End::Only(v)) => compare_versions(version, v)? == Equal,
            None => true,
        };
        Some(above && below)
    }
}

/// Sets a range's bound once: `>=1 >=2` is refused.
fn bound<T>(slot: &mut Option<T>, bound: T, value: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!(
            "X-Affected: {value:?} has two bounds of the same kind"
        ));
    }
    *slot = Some(bound);
    Ok(())
}

/// `CVE-YYYY-NNNN…` (CVE JSON 5's `cveId` pattern).
fn cve_id(value: &str) -> Result<String, String> {
    let upper = value.to_ascii_uppercase();
    let ok = upper.strip_prefix("CVE-").is_some_and(|rest| {
        rest.split_once('-').is_some_and(|(year, seq)| {
            year.len() == 4
                && year.chars().all(|c| c.is_ascii_digit())
                && (4..=19).contains(&seq.len())
                && seq.chars().all(|c| c.is_ascii_digit())
        })
    });
    if ok {
        Ok(upper)
    } else {
        Err(format!(
            "X-CVE: {value:?} is not a CVE ID like CVE-2026-12345"
        ))
    }
}

/// `CWE-N` (CVE JSON 5's `cweId` pattern).
fn cwe_id(value: &str) -> Result<String, String> {
    let upper = value.to_ascii_uppercase();
    let ok = upper.strip_prefix("CWE-").is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 5
            && !n.starts_with('0')
            && n.chars().all(|c| c.is_ascii_digit())
    });
    if ok {
        Ok(upper)
    } else {
        Err(format!("X-CWE: {value:?} is not a CWE id like CWE-122"))
    }
}

/// `TYPE: NAME`, TYPE one of [`CREDIT_TYPES`] (`-` and `_` for spaces).
fn credit(value: &str) -> Result<Credit, String> {
    let (kind, name) = value.split_once(':').ok_or_else(|| {
        format!("X-Credit: {value:?}: write the role first, like \"finder: Jane Doe\"")
    })?;
    let kind = kind.trim().to_ascii_lowercase().replace(['-', '_'], " ");
    if !CREDIT_TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "X-Credit: {kind:?} is not a role; use one of: {}",
            CREDIT_TYPES.join(", ")
        ));
    }
    Ok(Credit {
        name: text("credit", name.trim(), MAX_NAME)?,
        kind,
    })
}

/// `[TYPE] URL`, TYPE one of [`REFERENCE_TYPES`] (`web` when left out).
fn reference(value: &str) -> Result<Reference, String> {
    let (kind, link) = match value.split_once(char::is_whitespace) {
        Some((kind, link)) => (kind.trim().to_ascii_lowercase(), link.trim()),
        None => ("web".to_string(), value),
    };
    if !REFERENCE_TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "X-Reference: {kind:?} is not a kind of reference; use one of: {}",
            REFERENCE_TYPES.join(", ")
        ));
    }
    Ok(Reference {
        kind,
        url: url("reference", link)?,
    })
}

/// An absolute `https://` or `http://` URL with a host, no white space.
fn url(name: &str, value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = host.is_some_and(|h| !h.is_empty() && !h.contains('@'))
        && value.len() <= 2048
        && value.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{}: {value:?} is not an https:// or http:// URL (no spaces, no user@)",
            label(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_checked_and_lists_replaced_per_mail() {
        let mut data = AdvisoryData::default();
        data.apply("affected", ">=1.0.0, <1.4.2", true).unwrap();
        data.apply("affected", "kappital-cli <=2.0", false).unwrap();
        assert_eq!(data.affected.len(), 2);
        assert_eq!(data.affected[1].to_string(), "kappital-cli <=2.0");
        data.apply("affected", "<1.5", true).unwrap();
        assert_eq!(data.affected.len(), 1, "a new mail's list replaces the old");
        assert!(data.apply("affected", "about 1.2", true).is_err());
        assert!(data.apply("affected", ">=1 >=2", true).is_err());
        assert_eq!(data.affected.len(), 1, "a refused value changes nothing");

        data.apply("fixed", "1.4.2, 1.3.9", true).unwrap();
        assert_eq!(data.fixed, ["1.4.2", "1.3.9"]);
        let many: Vec<String> = (0..70).map(|n| format!("1.{n}")).collect();
        assert!(data.apply("fixed", &many.join(", "), true).is_err());
        assert_eq!(
            data.fixed,
            ["1.4.2", "1.3.9"],
            "a refused list changes nothing"
        );
        assert!(data.apply("fixed", "1.4.2;rm -rf", true).is_err());
        assert!(data.apply("cwe", "CWE-0122", true).is_err());
        data.apply("cwe", "cwe-122", true).unwrap();
        assert_eq!(data.cwe, ["CWE-122"]);
        assert!(data.apply("cve", "CVE-26-1", true).is_err());
        data.apply("cve", "cve-2026-12345", true).unwrap();
        assert_eq!(data.cve.as_deref(), Some("CVE-2026-12345"));

        data.apply("credit", "Remediation-Developer: Bob Builder", true)
            .unwrap();
        assert_eq!(data.credits[0].kind, "remediation developer");
        assert!(data.apply("credit", "Jane Doe", true).is_err());
        assert!(data.apply("credit", "hero: Jane", true).is_err());
        for sneaky in [
            '\u{202E}',
            '\u{061C}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
            '\u{00AD}',
        ] {
            assert!(
                data.apply("credit", &format!("finder: Eve {sneaky}gnp.exe"), true)
                    .is_err(),
                "{sneaky:?}"
            );
        }

        data.apply("reference", "fix https://git.example/c/1a2b", true)
            .unwrap();
        data.apply("reference", "https://kappital.example/news", false)
            .unwrap();
        assert_eq!(data.references[1].kind, "web");
        assert!(data
            .apply("reference", "fix javascript:alert(1)", true)
            .is_err());
        assert!(data
            .apply("reference", "fix https://user@evil.example/", true)
            .is_err());
        data.apply("reference", "none", true).unwrap();
        assert!(data.references.is_empty());
    }

    #[test]
    fn ranges_are_ordered_and_fixed_versions_checked_against_them() {
        let mut data = AdvisoryData::default();
        let inverted = data.apply("affected", ">=1.4.2, <1.0.0", true).unwrap_err();
        assert!(inverted.contains("empty"), "{inverted}");
        assert!(data.apply("affected", ">=1.4.2, <1.4.2", true).is_err());
        data.apply("affected", ">= 1.0.0, < 1.4.2", true).unwrap();
        assert_eq!(data.affected[0].to_string(), ">=1.0.0, <1.4.2");
        data.apply("fixed", "1.4.2, 1.3.9", true).unwrap();
        let problems = data.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("1.3.9 lies inside"), "{problems:?}");
        data.apply("affected", ">=1.0.0, <1.3.9; >=1.4.0, <1.4.2", true)
            .unwrap();
        assert!(data.problems().is_empty(), "{:?}", data.problems());
        assert_eq!(
            compare_versions("1.0.0-rc.1", "1.0.0"),
            Some(std::cmp::Ordering::Less)
        );
        assert_eq!(
            compare_versions("1.10", "1.9.9"),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(compare_versions("1a2b3c4", "1.0"), None);
        let refused = data.apply("cwe", "CWE-x", true).unwrap_err();
        assert!(refused.starts_with("X-CWE:"), "{refused}");
        let refused = data.apply("credit", "finder: ", true).unwrap_err();
        assert!(refused.starts_with("X-Credit:"), "{refused}");
    }
}
