//! Who has the embargoed patch: each distributor's latest signed
//! `X-Status:` and whether their copies arrived — the table `embargoes`,
//! `case show` and the PST's digest print.

use crate::config::{Config, ListName};
use crate::ledger::{DeliveryRecord, Outcome};
use crate::store::{Store, StoreError};

use super::Embargo;

/// One distributor's line in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The member id.
    pub member: String,
    /// `received 2026-12-01 14:00 UTC`, `no status yet`.
    pub status: String,
    /// Their note, if any.
    pub note: Option<String>,
    /// Their last copy of the case bounced or failed, with why.
    pub not_delivered: Option<String>,
    /// Whether they said anything at all (any status means received).
    pub confirmed: bool,
}

/// The rows of `embargo`'s distributors, in config order; `records` are
/// the ledger's records (all, or those of the case).
pub fn rows(config: &Config, embargo: &Embargo, records: &[DeliveryRecord]) -> Vec<Row> {
    let Some(list) = config.list(ListName::Distributors) else {
        return Vec::new();
    };
    list.members
        .iter()
        .map(|member| {
            let said = embargo.statuses.get(member);
            // The latest word of the transport or a bounce on their copies
            // of this case: a copy sent after a bounce counts as arriving.
            let last = records
                .iter()
                .filter(|r| {
                    r.member == *member
                        && r.list == ListName::Distributors
                        && r.case.as_deref() == Some(embargo.case.as_str())
                })
                .filter(|r| {
                    matches!(
                        r.outcome,
                        Outcome::Sent
                            | Outcome::Bounced(_)
                            | Outcome::Failed(_)
                            | Outcome::NoKey(_)
                    )
                })
                .max_by_key(|r| r.time);
            let not_delivered = last.and_then(|r| match &r.outcome {
                Outcome::Bounced(why) => Some(format!("bounced: {why}")),
                Outcome::Failed(why) => Some(format!("failed: {why}")),
                Outcome::NoKey(why) => Some(format!("no usable key: {why}")),
                _ => None,
            });
            Row {
                member: member.clone(),
                status: match said {
                    Some(s) => format!("{} {}", s.status.as_str(), s.at.formatted()),
                    None => "no status yet".into(),
                },
                note: said.and_then(|s| s.note.clone()),
                not_delivered,
                confirmed: said.is_some(),
            }
        })
        .collect()
}

/// The rows of `embargo`, reading the ledger.
pub fn read(config: &Config, store: &Store, embargo: &Embargo) -> Result<Vec<Row>, StoreError> {
    let records = crate::ledger::records(store)?;
    Ok(rows(config, embargo, &records))
}

/// The rows as indented text lines, one per distributor.
pub fn text(rows: &[Row]) -> String {
    let mut text = String::new();
    for row in rows {
        text.push_str(&format!("  {:<14} {}", row.member, row.status));
        if let Some(why) = &row.not_delivered {
            text.push_str(&format!("  NOT DELIVERED ({why})"));
        }
        if let Some(note) = &row.note {
            text.push_str(&format!("  \"{note}\""));
        }
        text.push('\n');
    }
    text
}
