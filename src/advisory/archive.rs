//! A case's thread, kept sealed while it is embargoed, and its sanitized
//! public archive (an mbox and a static HTML page) once the PST approves
//! it with a signed `X-Archive: approve` after the release.
//!
//! What the archive holds: the security list's traffic on the case (the
//! report, the PST's posts, keyword lines removed), distributors' replies
//! that are not statuses, and the advisory as last sent to distributors.
//! What it never holds: an earlier advisory it superseded, distributors'
//! `X-Status:` replies, the daemon's notices, any mail address (the
//! reporter's, a member's, anyone's), or the key ids and fingerprints of
//! the members' and the list's keys. Senders are named by their role,
//! from their signature, never from their (forgeable) From field.

use std::fmt::Write as _;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::clock::Timestamp;
use crate::config::{Config, ListName};
use crate::context::Context;
use crate::store::{Store, StoreError, Table, Transaction};

/// Who wrote a message of the thread, as the archive names them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The reporter (the case's reporter address, unsigned).
    Reporter,
    /// A PST member, by their signature.
    Pst,
    /// A distributor, by their signature.
    Distributor,
    /// Anyone else.
    Other,
}

impl Role {
    /// How the archive names the sender.
    pub fn label(self) -> &'static str {
        match self {
            Role::Reporter => "Reporter",
            Role::Pst => "Product Security Team",
            Role::Distributor => "Distributor",
            Role::Other => "Participant",
        }
    }
}

/// One message of a case's thread as kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// When it was received, ms since the epoch.
    pub at: Timestamp,
    /// Who wrote it.
    pub role: Role,
    /// Its Subject.
    pub subject: String,
    /// Its text (the first text part, keyword lines removed).
    pub text: String,
}

/// Case threads: `CASE/<received, hex ms>/<spool id>` → [`Entry`] as JSON,
/// sealed (they are the embargoed text itself).
static THREADS: Table = Table::sealed("threads", b"thread/");

/// Most text kept of one message, in bytes.
const MAX_TEXT: usize = 256 * 1024;

/// Keeps message `id` of `case` for its archive: `text` (its first text
/// part, keyword lines removed), its Subject, and the role its signature
/// (or the reporter's address) shows.
pub fn keep(
    ctx: &Context<'_>,
    batch: &mut Transaction,
    id: u64,
    case: &Case,
    list: ListName,
    unwrapped: &crate::mime::inbound::Unwrapped,
    text: &str,
) {
    let config = ctx.config;
    let signer = unwrapped.signatures.good_signers().next();
    let role = match signer {
        Some(m) if config.lists.security.members.iter().any(|p| p == m) => Role::Pst,
        Some(m)
            if config
                .lists
                .distributors
                .as_ref()
                .is_some_and(|d| d.members.iter().any(|x| x == m)) =>
        {
            Role::Distributor
        }
        Some(_) => Role::Other,
        None if list == ListName::Security
            && unwrapped
                .from_address
                .as_deref()
                .zip(case.reporter.as_deref())
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b)) =>
        {
            Role::Reporter
        }
        None => Role::Other,
    };
    let text = if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}\n[… cut: longer than the archive keeps]\n", &text[..cut])
    } else {
        text.to_string()
    };
    // A signed post's Subject is shown only when its signature covers
    // it: an unsigned Subject could be edited on the way into anything.
    let subject = match signer {
        Some(m) if unwrapped.headers_signer.as_deref() != Some(m) => {
            format!("[{}] ({}; Subject not signed)", case.id, role.label())
        }
        _ => unwrapped.subject.clone(),
    };
    let entry = Entry {
        at: Timestamp::from(ctx.now),
        role,
        subject,
        text,
    };
    let key = format!("{}/{:016x}/{id:016x}", case.id, entry.at.millis());
    batch.put(
        &THREADS,
        key,
        serde_json::to_vec(&entry).expect("entries serialize"),
    );
}

/// The kept thread of `case`, oldest first.
pub fn thread(store: &Store, case: &str) -> Result<Vec<Entry>, StoreError> {
    store
        .scan(&THREADS, format!("{case}/").as_bytes())?
        .into_iter()
        .map(|(key, json)| {
            serde_json::from_slice(&json).map_err(|e| {
                StoreError::Corrupt(format!(
                    "thread entry {}: {e}",
                    String::from_utf8_lossy(&key)
                ))
            })
        })
        .collect()
}

/// `X-Archive: approve` by `by`: makes the archive of a released case and
/// writes it to `publish.dir/CASE/`. Returns the line for the reply.
pub fn approve(
    ctx: &Context<'_>,
    case: &mut Case,
    by: &str,
    by_admin: bool,
    value: &str,
) -> Result<String, String> {
    if !value.eq_ignore_ascii_case("approve") {
        return Err(format!(
            "X-Archive: {value:?}: only \"approve\" is understood"
        ));
    }
    if by_admin {
        return Err(
            "X-Archive: only a PST member's signed post approves the public archive".into(),
        );
    }
    let embargo = crate::embargo::get(ctx.store, &case.id).map_err(|e| e.to_string())?;
    let public = match &embargo {
        Some(e) => e.released.is_some(),
        None => case.closed.is_some() || case.public,
    };
    if !public {
        return Err(format!(
            "X-Archive: case {} is still under embargo; approve its archive once it is released",
            case.id
        ));
    }
    let archive = make(ctx, case).map_err(|e| format!("X-Archive: {e}"))?;
    let files: Vec<(&str, &[u8])> = vec![
        (MBOX_FILE, archive.mbox.as_bytes()),
        (HTML_FILE, archive.html.as_bytes()),
    ];
    let dir = super::records::write(ctx.config, &case.id, &files).map_err(|e| {
        format!(
            "X-Archive: cannot write to {}: {e}",
            ctx.config.publish.dir.display()
        )
    })?;
    case.advisory.archive_approved = Some((by.to_string(), Timestamp::from(ctx.now)));
    Ok(format!(
        "the sanitized archive ({} messages) is published: {}",
        archive.messages,
        dir.display()
    ))
}

/// File names of the archive in the case's folder.
pub const MBOX_FILE: &str = "archive.mbox";
/// See [`MBOX_FILE`].
pub const HTML_FILE: &str = "archive.html";

/// A case's public archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// mboxrd (each message's `From ` lines quoted with `>`).
    pub mbox: String,
    /// A static HTML page.
    pub html: String,
    /// How many messages it holds.
    pub messages: usize,
}

/// The archive of `case`: its kept thread, the advisory as last sent to
/// distributors, in time order, sanitized. Mail from anyone who is
/// neither a signing member nor the case's reporter is left out: an
/// outsider who names the case in a Subject must not get words into
/// the project's public record.
pub fn make(ctx: &Context<'_>, case: &Case) -> Result<Archive, StoreError> {
    let mut entries = thread(ctx.store, &case.id)?;
    entries.retain(|e| e.role != Role::Other);
    if let (Some(advisory), Some(embargo)) = (
        crate::embargo::advisory(ctx.store, &case.id)?,
        crate::embargo::get(ctx.store, &case.id)?,
    ) {
        entries.push(Entry {
            at: embargo.updated,
            role: Role::Pst,
            subject: crate::embargo::public_subject(&advisory.subject, &case.id),
            text: crate::mime::edit::first_text(&advisory.content)
                .map(|slot| slot.text)
                .unwrap_or_default(),
        });
    }
    entries.sort_by_key(|e| e.at);
    let scrub = Scrubber::new(ctx, case);
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|e| Entry {
            subject: scrub.text(&e.subject),
            text: scrub.text(&e.text),
            ..e
        })
        .collect();
    Ok(Archive {
        mbox: mbox(ctx.config, &case.id, &entries),
        html: html(ctx.config, &case.id, &entries),
        messages: entries.len(),
    })
}

/// Removes addresses and the known key ids and fingerprints from text.
struct Scrubber {
    keys: Vec<String>,
}

/// Any mail address (RFC 5322 addr-spec, as people write it).
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    // `\w` is Unicode: internationalised addresses (RFC 6531) too.
    Regex::new(r"[\w!#$%&'*+/=?^`{|}~.-]+@[\w-]+(?:\.[\w-]+)+").expect("a valid pattern")
});

/// A run of hex digits, possibly grouped by spaces (how fingerprints are
/// shown) or with `0x`.
static HEX_RUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:0x)?[0-9a-f]{4}(?:[ \t]{0,2}[0-9a-f]{4})+\b").expect("a valid pattern")
});

impl Scrubber {
    fn new(ctx: &Context<'_>, case: &Case) -> Scrubber {
        use sequoia_openpgp::parse::Parse as _;
        // Every key of every member (primary and subkeys), the list's,
        // and the reporter's.
        let mut certs: Vec<sequoia_openpgp::Cert> =
            ctx.keys.members.values().flatten().cloned().collect();
        certs.push(ctx.keys.list_key.cert().clone());
        certs.extend(
            case.reporter_cert
                .as_deref()
                .and_then(|armored| sequoia_openpgp::Cert::from_bytes(armored.as_bytes()).ok()),
        );
        let mut fingerprints: Vec<String> = ctx
            .config
            .members
            .values()
            .map(|m| m.fingerprint.to_ascii_uppercase())
            .collect();
        fingerprints.extend(
            certs
                .iter()
                .flat_map(|c| c.keys().map(|k| k.key().fingerprint().to_hex())),
        );
        // A key id is the fingerprint's last 16 digits (v4) or first 16 (v6).
        let mut keys = Vec::new();
        for fp in fingerprints {
            if fp.len() >= 16 {
                keys.push(fp[fp.len() - 16..].to_string());
                keys.push(fp[..16].to_string());
            }
            keys.push(fp);
        }
        keys.sort();
        keys.dedup();
        Scrubber { keys }
    }

    fn text(&self, text: &str) -> String {
        let text = ADDRESS.replace_all(text, "[address removed]");
        HEX_RUN
            .replace_all(&text, |m: &regex::Captures<'_>| {
                let matched = &m[0];
                let unprefixed = matched
                    .strip_prefix("0x")
                    .or_else(|| matched.strip_prefix("0X"))
                    .unwrap_or(matched);
                let digits: String = unprefixed
                    .chars()
                    .filter(|c| c.is_ascii_hexdigit())
                    .collect::<String>()
                    .to_ascii_uppercase();
                let known = self.keys.iter().any(|k| digits.contains(k.as_str()));
                if known {
                    "[key id removed]".to_string()
                } else {
                    m[0].to_string()
                }
            })
            .into_owned()
    }
}

fn sender(config: &Config, role: Role) -> String {
    format!(
        "\"{} via the {} security list\" <{}>",
        role.label(),
        config.project.name,
        config.lists.security.address
    )
}

fn rfc2822(at: Timestamp) -> String {
    at.to_datetime().to_rfc2822()
}

fn mbox(config: &Config, case: &str, entries: &[Entry]) -> String {
    let domain = config.lists.security.address.domain().to_string();
    let mut out = String::new();
    for (n, entry) in entries.iter().enumerate() {
        let at: DateTime<Utc> = entry.at.to_datetime();
        let _ = writeln!(out, "From embargod {}", at.format("%a %b %e %H:%M:%S %Y"));
        let _ = writeln!(out, "From: {}", sender(config, entry.role));
        let _ = writeln!(out, "Date: {}", rfc2822(entry.at));
        let _ = writeln!(out, "Subject: {}", crate::mime::one_line(&entry.subject));
        let _ = writeln!(out, "Message-ID: <{case}.{n}.archive@{domain}>");
        if n > 0 {
            let _ = writeln!(out, "In-Reply-To: <{case}.0.archive@{domain}>");
        }
        out.push_str("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n");
        for line in entry.text.replace("\r\n", "\n").lines() {
            // mboxrd: ">From " and ">>From " alike get one more '>'.
            if line.trim_start_matches('>').starts_with("From ") {
                out.push('>');
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn html(config: &Config, case: &str, entries: &[Entry]) -> String {
    use html_escape::encode_text as esc;
    let title = format!(
        "{} security case {case}: public archive",
        config.project.name
    );
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"generator\" content=\"embargod\">\n<title>{}</title>\n</head>\n<body>\n\
         <h1>{}</h1>\n<p>The case's list traffic, published after the embargo with the \
         Product Security Team's approval. Addresses and key ids are removed.</p>\n",
        esc(&title),
        esc(&title)
    );
    for entry in entries {
        let _ = write!(
            out,
            "<article>\n<h2>{}</h2>\n<p>{} &middot; <time datetime=\"{}\">{}</time></p>\n<pre>{}</pre>\n</article>\n",
            esc(&crate::mime::one_line(&entry.subject)),
            esc(entry.role.label()),
            entry.at.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            esc(&crate::clock::format_time(entry.at.to_datetime())),
            esc(&entry.text.replace("\r\n", "\n")),
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_known_key_ids_go_commit_ids_stay() {
        let scrub = Scrubber {
            keys: vec![
                "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                "89ABCDEF01234567".into(),
            ],
        };
        let text = scrub.text(
            "Mail me at Jane.Doe+sec@mail.example.org or <bob@x.example>.\n\
             My key: 0x89ABCDEF01234567, fingerprint 0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567.\n\
             Fixed in commit 1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b.\n",
        );
        assert!(!text.contains('@'), "{text}");
        assert!(!text.contains("89ABCDEF01234567"), "{text}");
        assert!(!text.contains("0123 4567"), "{text}");
        assert!(
            text.contains("1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b"),
            "{text}"
        );
        assert_eq!(text.matches("[address removed]").count(), 2, "{text}");
    }

    #[test]
    fn internationalised_addresses_go_too() {
        let scrub = Scrubber { keys: Vec::new() };
        let text = scrub.text("schreib an jörg@bücher.example oder 用户@例子.广告");
        assert!(!text.contains('@'), "{text}");
    }

    #[test]
    fn mbox_quotes_from_lines() {
        let config = crate::sandbox::Sandbox::config();
        let entries = [Entry {
            at: Timestamp::from_millis(1_800_000_000_000),
            role: Role::Reporter,
            subject: "crash".into(),
            text: "From here on\n>From there\nok\n".into(),
        }];
        let mbox = mbox(&config, "KAP-2026-0001", &entries);
        assert!(mbox.starts_with("From embargod "), "{mbox}");
        assert!(mbox.contains("\n>From here on\n>>From there\n"), "{mbox}");
        assert!(mbox.contains(
            "From: \"Reporter via the Kappital security list\" <security@kappital.example>"
        ));
    }
}
