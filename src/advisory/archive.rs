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
}

impl Role {
    /// How the archive names the sender.
    pub fn label(self) -> &'static str {
        match self {
            Role::Reporter => "Reporter",
            Role::Pst => "Product Security Team",
            Role::Distributor => "Distributor",
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

/// A message of a case's thread, as its route read it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Its spool id.
    pub id: u64,
    /// The list it came to.
    pub list: ListName,
    /// As read: signatures checked, Subject and From.
    pub unwrapped: &'a crate::mime::inbound::Unwrapped,
    /// Its first text part, keyword lines removed.
    pub text: &'a str,
    /// Whether what filed it under its case can be trusted: signed words
    /// naming the case, or (unsigned mail) the report itself or its
    /// reporter's follow-up. A signed post filed only by its unsigned
    /// Subject or References is not: those could move another case's
    /// embargoed words into this one's public archive.
    pub tied: bool,
    /// Its envelope sender (RFC 5321 MAIL FROM), when it came by mail.
    pub envelope: Option<&'a str>,
}

/// Keeps `message` in `case`'s thread for its archive: its text and
/// Subject, and the role its signature (or the reporter's address) shows.
/// What the archive would never publish is not kept at all: mail from
/// anyone who is neither a signing member nor the case's reporter (an
/// outsider who names the case in a Subject must not get words into the
/// project's public record), and mail not tied to the case.
pub fn keep(ctx: &Context<'_>, batch: &mut Transaction, case: &Case, message: Message<'_>) {
    let Message {
        id,
        list,
        unwrapped,
        text,
        tied,
        envelope,
    } = message;
    let config = ctx.config;
    let signer = unwrapped.signatures.good_signers().next();
    let role = match signer {
        Some(m) if config.lists.security.members.iter().any(|p| p == m) => Some(Role::Pst),
        Some(m)
            if config
                .lists
                .distributors
                .as_ref()
                .is_some_and(|d| d.members.iter().any(|x| x == m)) =>
        {
            Some(Role::Distributor)
        }
        Some(_) => None,
        // Unsigned mail is the reporter's when its From is the case's
        // reporter and its envelope sender is of the same domain: a From
        // alone is anyone's to write.
        None if list == ListName::Security
            && unwrapped
                .from_address
                .as_deref()
                .zip(case.reporter.as_deref())
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            && envelope
                .zip(case.reporter.as_deref())
                .is_some_and(|(e, r)| same_domain(e, r)) =>
        {
            Some(Role::Reporter)
        }
        None => None,
    };
    let Some(role) = role.filter(|_| tied) else {
        return;
    };
    let text = if text.trim().is_empty() {
        // An HTML-only message (or one with no text): said, not lost
        // without a trace.
        "[This message has no plain-text part; its content is not in the archive.]\n"
    } else {
        text
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

/// Whether two addresses have the same domain (any case).
fn same_domain(a: &str, b: &str) -> bool {
    let domain = |x: &str| x.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    domain(a).is_some() && domain(a) == domain(b)
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

/// The archive of `case`: its kept thread ([`keep`]), the advisory as last
/// sent to distributors, in time order, sanitized. Left out: unsigned
/// "reporter" mail that came after the release, when the case ID is
/// public and anyone could write as the reporter.
pub fn make(ctx: &Context<'_>, case: &Case) -> Result<Archive, StoreError> {
    let embargo = crate::embargo::get(ctx.store, &case.id)?;
    let public_since = embargo
        .as_ref()
        .and_then(|e| e.released.as_ref().map(|r| r.at))
        .or(case.closed);
    let mut entries = thread(ctx.store, &case.id)?;
    entries.retain(|e| !(e.role == Role::Reporter && public_since.is_some_and(|at| e.at > at)));
    if let (Some(advisory), Some(embargo)) =
        (crate::embargo::advisory(ctx.store, &case.id)?, embargo)
    {
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
    // `\w` is Unicode: internationalised addresses (RFC 6531) too; the
    // full-width and small commercial ats read as '@'.
    Regex::new(r"[\w!#$%&'*+/=?^`{|}~.-]+[@＠﹫][\w-]+(?:\.[\w-]+)+").expect("a valid pattern")
});

/// An ASCII-armored OpenPGP block (a pasted key carries its holder's
/// address and fingerprint in base64), to its end or the end of the text.
static ARMOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)-----BEGIN PGP [A-Z ,/0-9]*-----.*?(?:-----END PGP [A-Z ,/0-9]*-----|\z)")
        .expect("a valid pattern")
});

/// A run of quoted lines (`> …`): a reply's quote of another message of
/// the thread, which the archive has on its own, or of an advisory that
/// a later one superseded, which it must not publish.
static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)(?:^[ \t]*>.*(?:\n|\z))+").expect("a valid pattern"));

/// What is shaped like a key id or fingerprint whoever's key it is:
/// `0x` and 16 or more hex digits, or ten groups of four (how GnuPG
/// shows a fingerprint). A bare 40-digit run is left: that is how commit
/// ids are written.
static KEY_SHAPED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b0x[0-9a-f]{16,64}\b|\b[0-9a-f]{4}(?:[ \t]{1,2}[0-9a-f]{4}){9}\b")
        .expect("a valid pattern")
});

/// A run of hex digits, possibly grouped by spaces (how fingerprints are
/// shown) or with `0x`.
static HEX_RUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:0x)?[0-9a-f]{4}(?:[\s\u{A0}\u{202F}:-]{0,2}[0-9a-f]{4})+\b")
        .expect("a valid pattern")
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
        // A key id is the fingerprint's last 16 digits (v4) or first 16
        // (v6); a short id its last 8.
        let mut keys = Vec::new();
        for fp in fingerprints {
            if fp.len() >= 16 {
                keys.push(fp[fp.len() - 16..].to_string());
                keys.push(fp[fp.len() - 8..].to_string());
                keys.push(fp[..16].to_string());
            }
            keys.push(fp);
        }
        keys.sort();
        keys.dedup();
        Scrubber { keys }
    }

    fn text(&self, text: &str) -> String {
        let text = text.replace("\r\n", "\n");
        let text = ARMOR.replace_all(&text, "[OpenPGP block removed]");
        let text = QUOTED.replace_all(&text, "[quoted text removed]\n");
        let text = ADDRESS.replace_all(&text, "[address removed]");
        let text = KEY_SHAPED.replace_all(&text, "[key id removed]");
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
    fn internationalised_addresses_and_unknown_key_shapes_go_too() {
        let scrub = Scrubber { keys: Vec::new() };
        let text = scrub.text(
            "schreib an jörg@bücher.example oder 用户@例子.广告 or ops＠distro.example\n\
             my key 0xDEADBEEF12345678, fingerprint DEAD BEEF 1234 5678 9ABC DEF0 1234 5678 9ABC DEF0\n\
             commit 1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b\n",
        );
        assert!(!text.contains('@') && !text.contains('＠'), "{text}");
        assert!(
            !text.contains("DEADBEEF") && !text.contains("DEAD BEEF"),
            "{text}"
        );
        assert!(
            text.contains("1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b"),
            "{text}"
        );
    }

    #[test]
    fn armored_blocks_quotes_and_short_ids_go() {
        let scrub = Scrubber {
            keys: vec!["7971E213".into()],
        };
        let text = scrub.text(
            "Encrypt to:\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n=abcd\n\
             -----END PGP PUBLIC KEY BLOCK-----\nThanks.\n\
             > DRAFT-ONE quoted\n>> older\nMy answer, key 0x7971E213 and 7971\u{A0}E213.\n",
        );
        assert!(
            !text.contains("mDMEZ") && text.contains("[OpenPGP block removed]"),
            "{text}"
        );
        assert!(
            !text.contains("DRAFT-ONE") && text.contains("[quoted text removed]"),
            "{text}"
        );
        assert!(!text.contains("7971"), "{text}");
        assert!(
            text.contains("Thanks.") && text.contains("My answer"),
            "{text}"
        );
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
