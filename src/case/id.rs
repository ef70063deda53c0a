//! Case IDs: `<case_prefix>-<year>-<number>`, e.g. KAP-2026-0001.

use std::fmt;

use crate::config::Config;

/// A case ID in the project's shape, checked when made: a value of this
/// type is always `<case_prefix>-<four-digit year>-<4 to 9 digits>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseId(String);

/// A text that is not a case ID of the project's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a case ID of the form {prefix}-<year>-<number>, like {prefix}-2026-0001")]
pub struct BadCaseId {
    text: String,
    prefix: String,
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl CaseId {
    /// Checks `text` (trimmed) against the project's case prefix.
    pub fn parse(config: &Config, text: &str) -> Result<CaseId, BadCaseId> {
        let text = text.trim();
        let prefix = &config.project.case_prefix;
        let bad = || BadCaseId {
            text: text.to_string(),
            prefix: prefix.clone(),
        };
        let (year, number) = text
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.split_once('-'))
            .ok_or_else(bad)?;
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if year.len() != 4 || !digits(year) || !(4..=9).contains(&number.len()) || !digits(number) {
            return Err(bad());
        }
        Ok(CaseId(text.to_string()))
    }

    /// The first case ID of the project's shape mentioned in `text` (a
    /// Subject).
    pub fn find_in(config: &Config, text: &str) -> Option<CaseId> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .find_map(|word| CaseId::parse(config, word).ok())
    }

    /// The ID as text, the way the store keys it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID as an owned text.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_projects_shape_is_a_case_id() {
        let config = crate::sandbox::Sandbox::config();
        let prefix = &config.project.case_prefix;
        let good = format!("{prefix}-2026-0001");
        assert_eq!(CaseId::parse(&config, &good).unwrap().as_str(), good);
        for bad in [
            format!("{prefix}-26-0001"),
            format!("{prefix}-2026-01"),
            format!("{prefix}-2026-0001x"),
            format!("X{prefix}-2026-0001"),
            "2026-0001".to_string(),
        ] {
            let error = CaseId::parse(&config, &bad).unwrap_err().to_string();
            assert!(error.contains("is not a case ID"), "{bad}: {error}");
        }
        let subject = format!("Re: [{prefix}-2026-0042] parser overflow");
        assert_eq!(
            CaseId::find_in(&config, &subject).unwrap().to_string(),
            format!("{prefix}-2026-0042")
        );
    }
}
