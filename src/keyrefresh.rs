//! Key refresh from a member's own mail: an `Autocrypt:` header (the
//! Autocrypt Level 1 `addr=…; keydata=…` form) or an attached
//! `application/pgp-keys` part whose certificate has a member's **pinned
//! fingerprint** is merged into that member's certificate (Sequoia's
//! `Cert::merge_public`), so an extended expiry, a new encryption subkey
//! or a revocation reaches the daemon before the old key runs out.
//!
//! Certificate material authenticates itself: only components bound by
//! valid self-signatures of the pinned primary key are kept (third-party
//! certifications, unbound user IDs and subkeys, and bad signatures are
//! dropped), so whoever sends the mail — the From field authorises
//! nothing — can add nothing the key holder did not sign. A certificate
//! with another fingerprint is never taken: the pin changes only with the
//! config. When one is offered for a member's address, the PST is told
//! (once a day per member, so forged offers cannot flood it).
//!
//! A refresh is recorded in the ledger (`key-refreshed`), kept in the
//! store (so it holds across restarts even where the key files are
//! read-only) and written back to the member's key file when the daemon
//! may write there. [`crate::state::Shared`] applies the refreshed
//! certificates to the keys in force after each commit, at start and on
//! reload.

use std::time::SystemTime;

use sequoia_openpgp::packet::Signature;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::{Cert, Packet};
use tracing::{info, warn};

use crate::clock::{format_time, Timestamp};
use crate::config::Config;
use crate::context::Context;
use crate::keys::Keys;
use crate::ledger::{DeliveryRecord, Outcome};
use crate::mime::offered::Source;
use crate::store::{Store, StoreError, Table, Transaction};

/// Member id → their refreshed certificate (binary OpenPGP). Plain:
/// public keys.
static REFRESHED: Table = Table::plain("refreshed_keys");
/// `member/day` → empty: a different key was offered for the member
/// that day and the PST was told.
static REFUSED: Table = Table::plain("refused_keys");

/// Largest certificate taken from a message, in bytes (a minimal
/// Autocrypt key is about 1 KiB; keys.openpgp.org allows far less than
/// this).
pub const MAX_OFFERED: usize = 64 * 1024;
/// Most certificates looked at in one message.
const MAX_PER_MESSAGE: usize = 4;

/// Looks at the keys message `id` offers — in the header fields of `raw`
/// and the parts of `content` (its signed or decrypted content entity,
/// or `raw` itself) — and refreshes or refuses them. True when it
/// offered a key for a member (refreshed, unchanged or refused).
pub fn offered_in(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: u64,
    raw: &[u8],
    content: &[u8],
) -> bool {
    let mut for_a_member = false;
    for (addr, cert) in offered(raw, content) {
        let fingerprint = cert.fingerprint().to_hex();
        match ctx
            .config
            .members
            .values()
            .find(|m| m.fingerprint == fingerprint)
        {
            Some(member) => {
                for_a_member = true;
                refresh(ctx, batch, id, &member.id, cert)
            }
            None => {
                let Some(member) = addr.as_deref().and_then(|addr| {
                    ctx.config
                        .members
                        .values()
                        .find(|m| m.email.to_string().eq_ignore_ascii_case(addr))
                }) else {
                    continue;
                };
                for_a_member = true;
                refuse(ctx, batch, &member.id, &fingerprint);
            }
        }
    }
    for_a_member
}

/// The certificates a message offers, each with the address it is for:
/// an `Autocrypt:` header's `addr`, or an attached key's first user ID
/// address. Larger than [`MAX_OFFERED`] or past the first
/// [`MAX_PER_MESSAGE`]: not looked at.
fn offered(raw: &[u8], content: &[u8]) -> Vec<(Option<String>, Cert)> {
    crate::mime::offered::certificates(raw, content)
        .into_iter()
        .filter(|o| {
            o.cert
                .to_vec()
                .is_ok_and(|bytes| bytes.len() <= MAX_OFFERED)
        })
        .take(MAX_PER_MESSAGE)
        .map(|o| match o.source {
            Source::Autocrypt(addr) => (addr, o.cert),
            Source::Attached => {
                let addr = o
                    .cert
                    .userids()
                    .find_map(|u| u.userid().email().ok().flatten())
                    .map(|e| e.to_ascii_lowercase());
                (addr, o.cert)
            }
        })
        .collect()
}

/// `cert` with only what its own primary key signed: the primary key and
/// its self-signatures and revocations, each user ID and subkey with a
/// valid binding and its revocations. No secret material.
pub fn self_signed(cert: &Cert) -> Option<Cert> {
    let cert = cert.clone().strip_secret_key_material();
    let primary = cert.primary_key();
    let mut packets = bound(
        primary.key().clone().into(),
        primary.self_signatures(),
        primary.self_revocations(),
        true,
    );
    for ua in cert.userids() {
        packets.extend(bound(
            ua.userid().clone().into(),
            ua.self_signatures(),
            ua.self_revocations(),
            false,
        ));
    }
    for ka in cert.keys().subkeys() {
        packets.extend(bound(
            ka.key().clone().into(),
            ka.self_signatures(),
            ka.self_revocations(),
            false,
        ));
    }
    Cert::from_packets(packets.into_iter()).ok()
}

/// `component` with its self-signatures and revocations; nothing when it
/// has no self-signature, unless `always` (the primary key).
fn bound<'a>(
    component: Packet,
    signatures: impl Iterator<Item = &'a Signature>,
    revocations: impl Iterator<Item = &'a Signature>,
    always: bool,
) -> Vec<Packet> {
    let mut signatures = signatures.peekable();
    if !always && signatures.peek().is_none() {
        return Vec::new();
    }
    std::iter::once(component)
        .chain(signatures.chain(revocations).cloned().map(Packet::from))
        .collect()
}

/// Merges `offered` (the member's pinned fingerprint) into `member`'s
/// certificate when it adds anything.
fn refresh(ctx: &Context<'_>, batch: &mut Transaction, message: u64, member: &str, offered: Cert) {
    let Ok(current) = ctx.keys.member(member) else {
        // An unreadable key file is the admin's to fix.
        return;
    };
    let Some(merged) = current
        .clone()
        .merge_public(offered)
        .ok()
        .and_then(|merged| self_signed(&merged))
    else {
        return;
    };
    let Some(before) = self_signed(current) else {
        return;
    };
    if merged == before {
        return;
    }
    let change = describe(&before, &merged, SystemTime::from(ctx.now));
    info!(%member, fingerprint = %merged.fingerprint(), %change, "key refreshed from the member's mail");
    let Ok(bytes) = merged.to_vec() else {
        return;
    };
    batch.put(&REFRESHED, member.as_bytes().to_vec(), bytes);
    let mut record = DeliveryRecord::new(
        Timestamp::from(ctx.now),
        message,
        None,
        crate::config::ListName::Security,
        member,
        Outcome::KeyRefreshed(change.clone()),
    );
    record.fingerprint = Some(merged.fingerprint().to_hex());
    crate::ledger::append(batch, record);
    batch.spool(crate::notice::to_pst(
        ctx.config,
        ctx.now,
        &format!("{member}'s key was refreshed"),
        &format!(
            "{member}'s certificate {} was refreshed from their mail (message {message}):\n\n  \
             {change}\n\nSame fingerprint, so the pin holds; only what the key itself signed \
             was taken.\nIt is kept in the store and written back to the key file when the \
             daemon may.\n",
            merged.fingerprint()
        ),
    ));
}

/// What `after` has that `before` had not, in words.
fn describe(before: &Cert, after: &Cert, now: SystemTime) -> String {
    let expiry = |cert: &Cert| match crate::pgp::expiration(cert, now) {
        Some(at) => format_time(at.into()),
        None => "never".into(),
    };
    let subkeys = |cert: &Cert| cert.keys().subkeys().count();
    let mut parts = Vec::new();
    if expiry(before) != expiry(after) {
        parts.push(format!(
            "usable until {} (was {})",
            expiry(after),
            expiry(before)
        ));
    }
    if subkeys(before) != subkeys(after) {
        parts.push(format!(
            "{} subkey(s) (was {})",
            subkeys(after),
            subkeys(before)
        ));
    }
    if crate::pgp::usable_for_encryption(after, now).is_err()
        && crate::pgp::usable_for_encryption(before, now).is_ok()
    {
        parts.push("NOW UNUSABLE (revoked by its holder?)".into());
    }
    if parts.is_empty() {
        parts.push("new self-signatures".into());
    }
    parts.join("; ")
}

/// A different certificate was offered for `member`'s address: the PST
/// is told, once a day per member.
fn refuse(ctx: &Context<'_>, batch: &mut Transaction, member: &str, fingerprint: &str) {
    let day = Timestamp::from(ctx.now).millis() / 86_400_000;
    let key = format!("{member}/{day}").into_bytes();
    if ctx.store.get(&REFUSED, &key).ok().flatten().is_some() || batch.puts(&REFUSED, &key) {
        return;
    }
    warn!(%member, offered = %fingerprint, "a different key was offered for a member: not taken");
    batch.put(&REFUSED, key, Vec::new());
    batch.spool(crate::notice::to_pst(
        ctx.config,
        ctx.now,
        &format!("a different key was offered for {member}"),
        &format!(
            "A message carried certificate {fingerprint} for {member}'s address, but {member}'s\n\
             pinned fingerprint is another. It was not taken: a new key needs a config change\n\
             (key file and fingerprint, checked with {member} out of band), then a reload.\n\
             Anyone can put any key in a message; if {member} did not send it, nothing needs doing.\n\
             (Further offers for {member} today are not reported.)\n"
        ),
    ));
}

/// Whether `tx` refreshes a key (the keys in force must be read again).
pub fn changes(tx: &Transaction) -> bool {
    tx.touches(&REFRESHED)
}

/// `keys` with every refreshed certificate kept in `store` merged in,
/// for members whose pin it still matches; each key file that lacks the
/// refresh is written back when possible.
pub fn apply(config: &Config, store: &Store, keys: &Keys) -> Result<Keys, StoreError> {
    let mut keys = keys.clone();
    for (id, bytes) in store.scan(&REFRESHED, b"")? {
        let id = String::from_utf8_lossy(&id).into_owned();
        let (Some(member), Ok(refreshed)) = (config.members.get(&id), Cert::from_bytes(&bytes))
        else {
            continue;
        };
        if refreshed.fingerprint().to_hex() != member.fingerprint {
            continue; // the pin changed since: the config wins
        }
        let Some(Ok(file)) = keys.members.get(&id) else {
            continue;
        };
        let Some(merged) = file
            .clone()
            .merge_public(refreshed)
            .ok()
            .and_then(|m| self_signed(&m))
        else {
            continue;
        };
        if self_signed(file).as_ref() != Some(&merged) {
            write_back(&member.key, &merged);
        }
        keys.members.insert(id, Ok(merged));
    }
    Ok(keys.with_signers())
}

/// Replaces `file` with `cert`, armored, through a temporary file in the
/// same folder; a failure (a read-only `/etc`) is logged only.
fn write_back(file: &std::path::Path, cert: &Cert) {
    let result = cert
        .armored()
        .to_vec()
        .map_err(std::io::Error::other)
        .and_then(|armored| crate::fsutil::replace_file(file, &armored, None));
    match result {
        Ok(()) => info!(file = %file.display(), "refreshed key written back"),
        Err(e) => warn!(
            file = %file.display(),
            error = %e,
            "cannot write the refreshed key back; it is kept in the store and used"
        ),
    }
}

/// Whether `member`'s key in force came from a refresh.
pub fn refreshed(store: &Store, member: &str) -> bool {
    store
        .get(&REFRESHED, member.as_bytes())
        .ok()
        .flatten()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_key_signed_is_kept() {
        use sequoia_openpgp::cert::CertBuilder;
        use sequoia_openpgp::packet::UserID;
        let (cert, _) = CertBuilder::general_purpose(Some("a <a@example.org>"))
            .generate()
            .unwrap();
        // A user ID nobody bound, slipped in by whoever sent the mail.
        let (stuffed, _) = cert
            .clone()
            .insert_packets(Packet::from(UserID::from("mallory <m@example.net>")))
            .unwrap();
        assert_eq!(stuffed.userids().count(), 2);
        let clean = self_signed(&stuffed).unwrap();
        assert_eq!(clean.userids().count(), 1);
        assert!(!clean.is_tsk(), "no secret material");
        assert_eq!(
            clean.keys().subkeys().count(),
            cert.keys().subkeys().count()
        );
    }
}
