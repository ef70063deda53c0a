//! Admin commands about members: record a leak, reinstate, list strikes.

use std::sync::Arc;

use super::Response;
use crate::state::Shared;

pub(super) async fn record(
    shared: &Arc<Shared>,
    case: String,
    member: String,
    what: String,
) -> Response {
    let result = shared
        .in_context(move |ctx| crate::strikes::record(ctx, &case, &member, &what))
        .await;
    commit(shared, result).await
}

pub(super) async fn reinstate(shared: &Arc<Shared>, member: String) -> Response {
    let result = shared
        .in_context(move |ctx| crate::strikes::reinstate(ctx, &member))
        .await;
    commit(shared, result).await
}

async fn commit(
    shared: &Arc<Shared>,
    result: Result<(crate::store::Transaction, String), crate::strikes::StrikeError>,
) -> Response {
    match result {
        Ok((batch, text)) => match shared.commit(batch).await {
            Ok(()) => Response::ok(text),
            Err(e) => Response::error(e.to_string()),
        },
        Err(e) => Response::error(e),
    }
}

pub(super) async fn list(shared: &Arc<Shared>) -> Response {
    let store = shared.store.clone();
    match crate::blocking(move || crate::strikes::states(&store)).await {
        Ok(states) => {
            let mut text = String::new();
            if states.is_empty() {
                text.push_str("no member has a strike or a suspension\n");
            }
            for (member, state) in &states {
                let status = match state.suspended {
                    Some(at) => format!("SUSPENDED since {}", at.formatted()),
                    None => "active".into(),
                };
                text.push_str(&format!(
                    "{member}: {} strike(s), {status}\n",
                    state.strikes.len()
                ));
                for strike in &state.strikes {
                    text.push_str(&format!(
                        "  {} {}: {}\n",
                        strike.at.formatted(),
                        strike.case,
                        strike.what
                    ));
                }
            }
            Response::ok(text).with_data(states)
        }
        Err(e) => Response::error(e.to_string()),
    }
}
