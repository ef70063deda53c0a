//! Whether a new report may get an automatic acknowledgement, by the
//! rules for automatic responses (RFC 3834).
//!
//! An acknowledgement is an automatic response: it goes to the envelope
//! sender (the Return-Path, RFC 3834 §4), never to the From field, and
//! never to mail that is itself automatic or comes from a list (§2): bounces
//! and delivery reports, `Auto-Submitted` other than `no`, `Precedence:
//! bulk/junk/list`, mail with `List-Id` or `List-Unsubscribe`, and senders
//! such as `MAILER-DAEMON` or `owner-…`/`…-request`. It never goes to an
//! address of this daemon's own lists, owner or members: a forged report
//! "from" the announce list must not make the list key sign an answer on a
//! public list. How many go out is capped per sender and across all
//! senders (see `limits` in the config); that part is the caller's.

use mail_parser::{Message, MimeHeaders};

use crate::config::Config;

/// Why a report gets no acknowledgement. Said in logs, so it never
/// carries an address or anything else from the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    /// The null envelope sender `<>`: a bounce (RFC 5321 §4.5.5).
    NullSender,
    /// A sender that is automatic by its name (MAILER-DAEMON, owner-…).
    AutomaticSender,
    /// `Auto-Submitted` other than `no` (RFC 3834 §5).
    AutoSubmitted,
    /// `Precedence: bulk`, `junk` or `list`.
    Bulk,
    /// `List-Id` or `List-Unsubscribe`: mail from a mailing list.
    MailingList,
    /// A delivery or disposition report (multipart/report, RFC 6522).
    Report,
    /// An address of this daemon's lists, owner or members.
    OwnAddress,
    /// No usable envelope sender.
    NoAddress,
}

impl NoReply {
    /// A short label for logs.
    pub fn label(self) -> &'static str {
        match self {
            NoReply::NullSender => "null envelope sender",
            NoReply::AutomaticSender => "automatic sender",
            NoReply::AutoSubmitted => "Auto-Submitted",
            NoReply::Bulk => "Precedence bulk/junk/list",
            NoReply::MailingList => "mailing-list mail",
            NoReply::Report => "delivery or disposition report",
            NoReply::OwnAddress => "own or member address",
            NoReply::NoAddress => "no usable envelope sender",
        }
    }
}

/// Local parts (or their beginnings and ends) of senders that are
/// programs, which RFC 3834 §2 says not to answer.
const AUTOMATIC_LOCAL: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "listserv",
    "majordomo",
    "mailman",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
];
const AUTOMATIC_PREFIX: &[&str] = &["owner-"];
const AUTOMATIC_SUFFIX: &[&str] = &["-request", "-owner", "-bounces", "-bounce", "-errors"];

/// The address an acknowledgement of `message`, received with envelope
/// sender `mail_from`, may go to; or why none may.
pub fn recipient(
    config: &Config,
    mail_from: &str,
    message: &Message<'_>,
) -> Result<String, NoReply> {
    let sender = mail_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if sender.is_empty() {
        return Err(NoReply::NullSender);
    }
    let (local, domain) = sender.rsplit_once('@').ok_or(NoReply::NoAddress)?;
    if local.is_empty() || domain.is_empty() {
        return Err(NoReply::NoAddress);
    }
    let local = local.to_ascii_lowercase();
    if AUTOMATIC_LOCAL.contains(&local.as_str())
        || AUTOMATIC_PREFIX.iter().any(|p| local.starts_with(p))
        || AUTOMATIC_SUFFIX.iter().any(|s| local.ends_with(s))
    {
        return Err(NoReply::AutomaticSender);
    }
    let field = |name: &'static str| message.header_raw(name).map(str::trim);
    if field("Auto-Submitted").is_some_and(|v| {
        !v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("no")
    }) {
        return Err(NoReply::AutoSubmitted);
    }
    if field("Precedence").is_some_and(|v| {
        ["bulk", "junk", "list"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
    }) {
        return Err(NoReply::Bulk);
    }
    if field("List-Id").is_some() || field("List-Unsubscribe").is_some() {
        return Err(NoReply::MailingList);
    }
    let report = message.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if report {
        return Err(NoReply::Report);
    }
    // A report that claims to come from one of our own addresses, in the
    // envelope or the From field, is answered nowhere.
    let from = message
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address());
    if [Some(sender), from]
        .into_iter()
        .flatten()
        .any(|address| own(config, address))
    {
        return Err(NoReply::OwnAddress);
    }
    Ok(sender.to_string())
}

/// Whether `address` is the daemon's own or a member's: a list, the
/// announce list or the owner — sub-addresses included (`announce+x@…`
/// reaches the announce list too) — or a member's address. Other addresses
/// at the project's domain (its developers, a triage alias) are not.
pub fn own(config: &Config, address: &str) -> bool {
    let Some(address) = Bare::of(address) else {
        return false;
    };
    let lists = config
        .lists()
        .map(|list| list.address.to_string())
        .chain(config.lists.announce.iter().map(|a| a.to_string()))
        .chain(std::iter::once(config.delivery.from.to_string()));
    let members = config.members.values().map(|m| m.email.to_string());
    lists
        .chain(members)
        .filter_map(|own| Bare::of(&own))
        .any(|own| own == address)
}

/// An address without its sub-address (`+tag`), lower-cased, the domain
/// without a trailing dot: what reaches the same mailbox.
#[derive(PartialEq, Eq)]
struct Bare {
    local: String,
    domain: String,
}

impl Bare {
    fn of(address: &str) -> Option<Bare> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        let local = local.trim_matches('"');
        let local = local.split('+').next().unwrap_or(local);
        Some(Bare {
            local: local.to_ascii_lowercase(),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::Sandbox;

    fn judge(config: &Config, mail_from: &str, headers: &str) -> Result<String, NoReply> {
        let raw = format!("{headers}Subject: report\r\n\r\nbody\r\n");
        let message = crate::mime::parse(raw.as_bytes()).unwrap();
        recipient(config, mail_from, &message)
    }

    #[test]
    fn table_of_senders_and_headers() {
        let config = Sandbox::config();
        let from = "From: Rita <rita@reporter.example>\r\n";
        let cases: &[(&str, String, Result<&str, NoReply>)] = &[
            ("rita@reporter.example", from.into(), Ok("rita@reporter.example")),
            // Replies go to the envelope sender, not the From field.
            ("bounces+rita@reporter.example", from.into(), Ok("bounces+rita@reporter.example")),
            ("", from.into(), Err(NoReply::NullSender)),
            ("MAILER-DAEMON@mx.example", from.into(), Err(NoReply::AutomaticSender)),
            ("owner-list@lists.example", from.into(), Err(NoReply::AutomaticSender)),
            ("dev-request@lists.example", from.into(), Err(NoReply::AutomaticSender)),
            ("rita@reporter.example", format!("{from}Auto-Submitted: auto-replied\r\n"), Err(NoReply::AutoSubmitted)),
            ("rita@reporter.example", format!("{from}Auto-Submitted: no\r\n"), Ok("rita@reporter.example")),
            ("rita@reporter.example", format!("{from}Precedence: bulk\r\n"), Err(NoReply::Bulk)),
            ("rita@reporter.example", format!("{from}Precedence: junk\r\n"), Err(NoReply::Bulk)),
            ("rita@reporter.example", format!("{from}Precedence: list\r\n"), Err(NoReply::Bulk)),
            ("rita@reporter.example", format!("{from}List-Id: <dev.lists.example>\r\n"), Err(NoReply::MailingList)),
            ("rita@reporter.example", format!("{from}List-Unsubscribe: <mailto:u@lists.example>\r\n"), Err(NoReply::MailingList)),
            (
                "rita@reporter.example",
                format!("{from}Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"),
                Err(NoReply::Report),
            ),
            // Our own addresses, in the envelope or the From field.
            ("announce@kappital.example", from.into(), Err(NoReply::OwnAddress)),
            ("rita@reporter.example", "From: <announce@kappital.example>\r\n".into(), Err(NoReply::OwnAddress)),
            ("distributors@kappital.example", from.into(), Err(NoReply::OwnAddress)),
            ("alice-list@kappital.example", "From: <security@kappital.example>\r\n".into(), Err(NoReply::OwnAddress)),
            ("no-at-sign", from.into(), Err(NoReply::NoAddress)),
            // Sub-addresses of our addresses count as ours; others at our
            // domain (the project's developers) do not.
            ("dev@kappital.example", from.into(), Ok("dev@kappital.example")),
            ("announce+x@kappital.example", from.into(), Err(NoReply::OwnAddress)),
            ("rita@reporter.example", "From: <Announce+x@Kappital.example.>\r\n".into(), Err(NoReply::OwnAddress)),
        ];
        for (mail_from, headers, expected) in cases {
            let got = judge(&config, mail_from, headers);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *expected,
                "MAIL FROM {mail_from:?} with {headers:?}"
            );
        }
    }
}
