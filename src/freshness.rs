//! The one freshness rule for every signed input that changes state:
//! distributors posts (embargo set, moved or released), the PST's keyword
//! commands, vouches — and whatever signed command comes next.
//!
//! Anyone who once saw a signed post can send it again, reorder it with
//! later ones, or edit what the signature does not cover. So a signature
//! authorises a change only when
//!
//! 1. the key that made it — the subkey, not just the certificate — was
//!    valid when it signed (Sequoia's verifier checks that) *and* is still
//!    in force now: not expired, not revoked (a "superseded" revocation
//!    counts), still signing-capable
//!    ([`crate::pgp::signing_key_in_force`]);
//! 2. it was made within [`crate::config::SignaturesConfig::max_age`] of
//!    now (7 days by default), and not further in the future than the
//!    allowed clock skew;
//! 3. it was never used before: the digest of what it *signed*
//!    ([`crate::pgp::open::signed_data_digest`]: hashed area and signed
//!    data, never the unhashed area or the transport encoding) is kept for
//!    as long as the window, and a second use is refused.
//!
//! [`check`] applies the rule; [`spend`] records the use in the same batch
//! as the change it authorised, so the two commit together. Changes to an
//! embargo add a fourth rule of their own: a signature older than the one
//! behind the last change is refused (see [`crate::embargo::Embargo::signed`]).

use std::time::{Duration, SystemTime};

use crate::clock::Timestamp;
use crate::config::SignaturesConfig;
use crate::context::Context;
use crate::pgp::open::{GoodSignature, Signatures};
use crate::pgp::KeyProblem;
use crate::store::Transaction;

/// Store keys of used signatures, in the cases tree: `used/<digest>`,
/// valued with the signature's creation time (ms, decimal).
const USED: &str = "used/";

/// Used signatures, `used/<digest>` → creation time (ms), live in the
/// cases table, where stores of earlier versions keep them: an upgrade
/// forgets no used signature (a replay the day after it would pass).
use crate::case::CASES as USED_SIGNATURES;

/// Why a signature may not authorise a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Each variant says what it is in its `#[error]` message.
#[allow(missing_docs)]
pub enum Refused {
    #[error("the key that made the signature is not in force now: {0}")]
    KeyNotInForce(KeyProblem),
    #[error(
        "the signature was made {age} ago; signed posts and commands must be less than {max} old"
    )]
    TooOld { age: String, max: String },
    #[error("the signature is dated {when}, in the future beyond the allowed clock skew")]
    FromTheFuture { when: String },
    #[error("this signature was already used: a replayed post or command is refused")]
    AlreadyUsed,
    #[error(
        "the signature is older than the one behind the last change: \
         a delayed or replayed command cannot undo a later one"
    )]
    OlderThanLastChange,
}

impl Refused {
    /// A short label for logs and metrics: never a value from the post.
    pub fn kind(&self) -> &'static str {
        match self {
            Refused::KeyNotInForce(problem) => problem.kind(),
            Refused::TooOld { .. } => "signature too old",
            Refused::FromTheFuture { .. } => "signature from the future",
            Refused::AlreadyUsed => "signature replayed",
            Refused::OlderThanLastChange => "older than the last change",
        }
    }
}

/// Who a message's signatures authorise, among the members `allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority<'a> {
    /// A good signature by an allowed member that passes the rule.
    Signed(GoodSignature<'a>),
    /// Good signatures by allowed members, none of which passes the rule:
    /// the first one's member and why.
    Refused {
        /// The member whose signature it was.
        member: &'a str,
        /// Why the rule refused it.
        why: Refused,
    },
    /// No good signature by an allowed member.
    None,
}

/// The first good signature by one of `allowed` that passes [`check`] —
/// unless any good signature on the message was used before: a message
/// with two signatures is one message, not two chances to replay it.
/// `batch` holds what the message's handling has decided so far (a post to
/// two lists is handled twice in one batch).
pub fn authorise<'a>(
    ctx: &Context<'_>,
    batch: &Transaction,
    signatures: &'a Signatures,
    allowed: &[String],
) -> Authority<'a> {
    let allowed_sigs = || {
        signatures
            .good()
            .filter(|sig| allowed.iter().any(|m| m == sig.member))
    };
    if let Some(replayed) = signatures.good().find(|sig| used(ctx, batch, sig.digest)) {
        if let Some(first) = allowed_sigs().next() {
            let member = if allowed.iter().any(|m| m == replayed.member) {
                replayed.member
            } else {
                first.member
            };
            return Authority::Refused {
                member,
                why: Refused::AlreadyUsed,
            };
        }
    }
    let mut refused = None;
    for sig in allowed_sigs() {
        match check(ctx, batch, sig) {
            Ok(()) => return Authority::Signed(sig),
            Err(why) => {
                refused.get_or_insert(Authority::Refused {
                    member: sig.member,
                    why,
                });
            }
        }
    }
    refused.unwrap_or(Authority::None)
}

/// Applies the rule to `sig` at `ctx.now`. Reads the store and `batch`
/// for used digests; writes nothing (see [`spend`]).
pub fn check(
    ctx: &Context<'_>,
    batch: &Transaction,
    sig: GoodSignature<'_>,
) -> Result<(), Refused> {
    let cert = ctx
        .keys
        .member(sig.member)
        .map_err(Refused::KeyNotInForce)?;
    crate::pgp::signing_key_in_force(cert, sig.key, SystemTime::from(ctx.now))
        .map_err(Refused::KeyNotInForce)?;
    judge(
        &ctx.config.signatures,
        Timestamp::from(ctx.now),
        sig.created,
        used(ctx, batch, sig.digest),
    )
}

/// Whether the signature with `digest` was used: in the store, or earlier
/// in the batch being built.
fn used(ctx: &Context<'_>, batch: &Transaction, digest: &str) -> bool {
    let key = format!("{USED}{digest}");
    batch.puts(&USED_SIGNATURES, key.as_bytes())
        || ctx
            .store
            .get(&USED_SIGNATURES, key.as_bytes())
            // A store that cannot answer is no proof of freshness.
            .map_or(true, |value| value.is_some())
}

/// The time rules and the used-before rule, without I/O.
fn judge(
    rule: &SignaturesConfig,
    now: Timestamp,
    created: Timestamp,
    used: bool,
) -> Result<(), Refused> {
    if created > now + rule.clock_skew {
        return Err(Refused::FromTheFuture {
            when: created.formatted(),
        });
    }
    let age = now.since(created);
    if age > rule.max_age {
        return Err(Refused::TooOld {
            age: humantime::format_duration(Duration::from_secs(age.as_secs())).to_string(),
            max: humantime::format_duration(rule.max_age).to_string(),
        });
    }
    if used {
        return Err(Refused::AlreadyUsed);
    }
    Ok(())
}

/// Records every good signature of the message as used, in the batch of
/// the change it authorised, and forgets used signatures that have left
/// the window (they are refused as too old anyway).
pub fn spend(ctx: &Context<'_>, batch: &mut Transaction, signatures: &Signatures) {
    let horizon = Timestamp::from(ctx.now) - window(&ctx.config.signatures);
    if let Ok(entries) = ctx.store.scan(&USED_SIGNATURES, USED.as_bytes()) {
        for (key, value) in entries {
            let created =
                Timestamp::from_millis(String::from_utf8_lossy(&value).parse().unwrap_or(0));
            if created < horizon {
                batch.remove(&USED_SIGNATURES, key);
            }
        }
    }
    for sig in signatures.good() {
        batch.put(
            &USED_SIGNATURES,
            format!("{USED}{}", sig.digest),
            sig.created.millis().to_string().into_bytes(),
        );
    }
}

/// How long a used signature must be remembered: as long as it could
/// still pass the time rules.
fn window(rule: &SignaturesConfig) -> Duration {
    rule.max_age + rule.clock_skew
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: Timestamp = Timestamp::from_millis(1000 * 3_600_000);
    const MS: Duration = Duration::from_millis(1);

    fn rule() -> SignaturesConfig {
        SignaturesConfig {
            max_age: Duration::from_secs(7 * 24 * 3600),
            clock_skew: Duration::from_secs(30 * 60),
        }
    }

    #[test]
    fn a_fresh_unused_signature_passes() {
        let now = NOW;
        assert_eq!(judge(&rule(), now, now - HOUR, false), Ok(()));
        // A sender's clock a little ahead is tolerated.
        assert_eq!(judge(&rule(), now, now + HOUR / 4, false), Ok(()));
    }

    #[test]
    fn a_backdated_signature_is_too_old() {
        let now = NOW;
        let err = judge(&rule(), now, now - 30 * 24 * HOUR, false).unwrap_err();
        assert!(matches!(err, Refused::TooOld { .. }), "{err}");
        assert!(err.to_string().contains("7days"), "{err}");
        // Just inside the window still counts.
        assert_eq!(judge(&rule(), now, now - 7 * 24 * HOUR + MS, false), Ok(()));
    }

    #[test]
    fn a_signature_from_the_future_is_refused() {
        let now = NOW;
        let err = judge(&rule(), now, now + 2 * HOUR, false).unwrap_err();
        assert!(matches!(err, Refused::FromTheFuture { .. }), "{err}");
    }

    #[test]
    fn a_used_signature_is_refused_however_fresh() {
        let now = NOW;
        assert_eq!(judge(&rule(), now, now, true), Err(Refused::AlreadyUsed));
    }

    #[test]
    fn used_signatures_are_kept_as_long_as_they_could_pass() {
        let rule = rule();
        let now = NOW;
        // The oldest signature that still passes the time rules...
        let oldest = now - rule.max_age;
        assert_eq!(judge(&rule, now, oldest, false), Ok(()));
        // ...is inside the window that `spend` keeps.
        assert!(now.since(oldest) <= window(&rule));
    }
}
