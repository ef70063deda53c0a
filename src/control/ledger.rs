//! Admin commands about the ledger: trace a leak, show a case, verify.

use std::sync::Arc;

use super::Response;
use crate::ledger::Outcome;
use crate::mark::trace::{trace as trace_leak, Verdict};
use crate::state::Shared;

/// Exit status of `embargod trace` when nobody is attributed.
const NOT_ATTRIBUTED: u8 = 1;

pub(super) async fn trace(shared: &Arc<Shared>, leak: &str) -> Response {
    use base64::Engine;
    let leak = match base64::engine::general_purpose::STANDARD.decode(leak) {
        Ok(leak) => leak,
        Err(e) => return Response::error(format!("leak: not base64: {e}")),
    };
    let store = shared.store.clone();
    let verdict = crate::blocking(move || trace_leak(&store, store.mark_secret(), &leak)).await;
    match verdict {
        Ok(verdict) => {
            let attributed = matches!(verdict, Verdict::Attributed { .. });
            let response = Response::ok(verdict.to_string());
            if attributed {
                response
            } else {
                response.with_exit(NOT_ATTRIBUTED)
            }
        }
        Err(e) => Response::error(e.to_string()),
    }
}

pub(super) async fn show(shared: &Arc<Shared>, case: &str) -> Response {
    let store = shared.store.clone();
    let case = case.to_string();
    let rows = crate::blocking(move || -> Result<Vec<crate::ledger::Entry>, String> {
        crate::ledger::entries(&store)
            .map_err(|e| e.to_string())?
            .map(|(_, entry)| entry)
            .filter(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |e| e.record.case.as_deref() == Some(case.as_str()))
            })
            .collect()
    })
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return Response::error(e),
    };
    if rows.is_empty() {
        return Response::ok("no ledger entries for this case\n".into());
    }
    let mut text = format!(
        "{:>6}  {:<20}  {:<12}  {:<13}  {:<16}  {:<10}  {}\n",
        "SEQ", "TIME (UTC)", "RECIPIENT", "LIST", "COPY", "OUTCOME", "KEY"
    );
    for e in rows {
        let r = &e.record;
        text.push_str(&format!(
            "{:>6}  {:<20}  {:<12}  {:<13}  {:<16}  {:<10}  {}\n",
            e.seq,
            r.time.to_datetime().format("%Y-%m-%d %H:%M:%S"),
            r.member,
            r.list.as_str(),
            r.copy_id
                .map(crate::mark::copy_id_hex)
                .unwrap_or_else(|| "-".into()),
            r.outcome.label(),
            r.fingerprint.as_deref().unwrap_or("-"),
        ));
        // Bounces, statuses and refreshes say what came with them.
        if let Some(detail) = match r.outcome {
            Outcome::Bounced(_) | Outcome::Status(_) | Outcome::KeyRefreshed(_) => {
                r.outcome.detail()
            }
            _ => None,
        } {
            text.push_str(&format!("{:>6}  {detail}\n", ""));
        }
    }
    Response::ok(text)
}

pub(super) async fn verify(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    let result = crate::blocking(move || {
        let head = crate::ledger::head(&store).map_err(|e| e.to_string())?;
        let entries = crate::ledger::entries(&store).map_err(|e| e.to_string())?;
        crate::ledger::verify(entries, &head)
            .map(|_| head)
            .map_err(|broken| format!("ledger broken: {broken}"))
    })
    .await;
    match result {
        Ok(head) => Response::ok(format!("ledger intact: {head}\n")),
        Err(e) => Response::error(e),
    }
}
