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
            let mut text = reachability(shared);
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

/// Every configured member: their lists, when their key stops working,
/// and whether their mail arrives ([`crate::bounce::standing`]).
fn reachability(shared: &Shared) -> String {
    let (config, keys) = (shared.config(), shared.keys());
    let now = shared.clock.now();
    let mut text = format!(
        "{:<14} {:<24} {:<22} MAIL\n",
        "MEMBER", "LISTS", "KEY USABLE UNTIL"
    );
    for member in config.members.values() {
        let lists: Vec<&str> = config
            .lists()
            .filter(|l| l.members.contains(&member.id))
            .map(|l| l.name.as_str())
            .collect();
        let at = std::time::SystemTime::from(now);
        let key = match keys
            .member(&member.id)
            .and_then(|cert| crate::pgp::usable_for_encryption(cert, at).map(|()| cert))
        {
            Ok(cert) => {
                let until = match crate::pgp::expiration(cert, at) {
                    Some(at) => crate::clock::format_time(at.into()),
                    None => "does not expire".into(),
                };
                if crate::keyrefresh::refreshed(&shared.store, &member.id) {
                    format!("{until} (refreshed from mail)")
                } else {
                    until
                }
            }
            Err(problem) => format!("UNUSABLE ({})", problem.kind()),
        };
        let mail =
            match crate::bounce::standing::get(&shared.store, &member.id, member.email.as_ref()) {
                Ok(standing) if standing.bounces == 0 => standing.state.describe(),
                Ok(standing) => format!(
                    "{} ({} bounce(s), score {}; last: {})",
                    standing.state.describe(),
                    standing.bounces,
                    standing.score_at(
                        crate::clock::Timestamp::from(now),
                        config.bounces.stale_after
                    ),
                    standing.last_diagnostic
                ),
                Err(e) => format!("unknown ({e})"),
            };
        let lists = if lists.is_empty() {
            "-".to_string()
        } else {
            lists.join(",")
        };
        text.push_str(&format!(
            "{:<14} {:<24} {:<22} {mail}\n",
            member.id, lists, key
        ));
    }
    text.push('\n');
    text
}

pub(super) async fn clear_bounces(shared: &Arc<Shared>, member: String) -> Response {
    if !shared.config().members.contains_key(&member) {
        return Response::error(format!("no member {member:?} in the config"));
    }
    let mut batch = crate::store::Transaction::new();
    crate::bounce::standing::clear(&mut batch, &member);
    match shared.commit(batch).await {
        Ok(()) => {
            tracing::info!(%member, "bounce standing cleared by an admin");
            Response::ok(format!("{member}: bounce score cleared; reachable\n"))
        }
        Err(e) => Response::error(e.to_string()),
    }
}
