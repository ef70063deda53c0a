//! Reading a bounce: an RFC 3464 delivery status notification, or one of
//! the older shapes mail servers still send (Exim's and qmail's texts,
//! Exchange's non-delivery reports), told apart from an auto-reply
//! (RFC 3834), which is not a bounce at all.
//!
//! Only what decides the member's standing is taken out: whether the
//! delivery failed for good, was delayed, or neither, and the status and
//! diagnostic the reporting server gave. Nothing of the returned message
//! (an encrypted copy) is read.

use mail_parser::{Message, MimeHeaders, PartType};

/// What a message to the owner address says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Failed for good, delayed, an auto-reply, or none of these.
    pub kind: Kind,
    /// The recipients it names as failed or delayed, with their status.
    pub recipients: Vec<Recipient>,
    /// Which shape it was read in, for logs (`RFC 3464`, `Exim`, …).
    pub shape: &'static str,
}

/// The verdict on one message to the owner address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A permanent failure (RFC 3464 `Action: failed`, status 5.X.X).
    Failed,
    /// A delay warning or a temporary failure (`Action: delayed`, 4.X.X):
    /// the MTA is still trying; it counts for nothing.
    Delayed,
    /// An auto-reply (vacation, out of office): not a bounce.
    AutoReply,
    /// A delivery status notification without a failure (delivered,
    /// relayed, expanded).
    Delivered,
    /// None of these: a person writing to the owner address.
    Other,
}

/// One recipient a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    /// `Final-Recipient` (or `Original-Recipient`), the address only.
    pub address: Option<String>,
    /// The RFC 3463 status code (`5.1.1`), when given.
    pub status: Option<String>,
    /// `Diagnostic-Code` or the server's words, on one line, at most
    /// [`DIAGNOSTIC_CHARS`] characters.
    pub diagnostic: String,
}

impl Recipient {
    /// Whether the failure is about the address (RFC 3463 classes X.1
    /// address, X.2 mailbox, X.4 routing, or no status given), not about
    /// the message: X.3.4 too large, X.6 content, X.7 policy (spam,
    /// refused content) fail one message, and anyone can send a message
    /// that fails everywhere.
    pub fn about_the_address(&self) -> bool {
        match self.status.as_deref().and_then(|s| s.split('.').nth(1)) {
            Some(subject) => matches!(subject, "1" | "2" | "4"),
            None => true,
        }
    }
}

/// Longest diagnostic kept, in characters: enough for a server's reply
/// line, not enough to carry a message.
pub const DIAGNOSTIC_CHARS: usize = 200;

/// Reads `raw`, a message sent to the owner address.
pub fn read(raw: &[u8]) -> Report {
    // The project's guarded parse: a bounce can nest returned messages
    // without end, and the parser's own recursive drop would overflow.
    let Some(message) = crate::mime::parse(raw) else {
        return other("unreadable");
    };
    if let Some(report) = delivery_status(&message) {
        return report;
    }
    if let Some(report) = exim(&message) {
        return report;
    }
    if let Some(report) = text_bounce(&message) {
        return report;
    }
    if is_auto_reply(&message) {
        return Report {
            kind: Kind::AutoReply,
            recipients: Vec::new(),
            shape: "auto-reply",
        };
    }
    other("not a bounce")
}

fn other(shape: &'static str) -> Report {
    Report {
        kind: Kind::Other,
        recipients: Vec::new(),
        shape,
    }
}

/// RFC 3464 §2: a `message/delivery-status` part (RFC 6533's
/// `message/global-delivery-status` too), read block by block.
fn delivery_status(message: &Message<'_>) -> Option<Report> {
    let part = message.parts.iter().find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|sub| {
                    sub.eq_ignore_ascii_case("delivery-status")
                        || sub.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    let body = match &part.body {
        PartType::Text(text) => text.as_bytes().to_vec(),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes.to_vec(),
        _ => return None,
    };
    let text = String::from_utf8_lossy(&body);
    let mut failed = Vec::new();
    let mut delayed = Vec::new();
    // The first block is about the message; each further one about one
    // recipient (§2.2, §2.3).
    for block in blocks(&text).into_iter().skip(1) {
        let field = |name: &str| {
            block
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let status = field("Status").map(|s| s.split_whitespace().next().unwrap_or("").to_string());
        let action = field("Action").map(str::to_ascii_lowercase);
        let recipient = Recipient {
            address: field("Final-Recipient")
                .or_else(|| field("Original-Recipient"))
                .map(address_of),
            status: status.clone().filter(|s| !s.is_empty()),
            diagnostic: one_line(field("Diagnostic-Code").map_or("", |d| {
                // "smtp; 550 5.1.1 …": the type is not for people.
                d.split_once(';').map_or(d, |(_, rest)| rest)
            })),
        };
        let class = status.as_deref().and_then(|s| s.chars().next());
        match action.as_deref() {
            Some("failed") => failed.push(recipient),
            Some("delayed") => delayed.push(recipient),
            Some(_) => {}
            None if class == Some('5') => failed.push(recipient),
            None if class == Some('4') => delayed.push(recipient),
            None => {}
        }
    }
    Some(if !failed.is_empty() {
        Report {
            kind: Kind::Failed,
            recipients: failed,
            shape: "RFC 3464",
        }
    } else if !delayed.is_empty() {
        Report {
            kind: Kind::Delayed,
            recipients: delayed,
            shape: "RFC 3464",
        }
    } else {
        Report {
            kind: Kind::Delivered,
            recipients: Vec::new(),
            shape: "RFC 3464",
        }
    })
}

/// The blocks of a delivery-status body: fields (unfolded) separated by
/// blank lines.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

/// `rfc822; user@example.org` → `user@example.org`.
fn address_of(value: &str) -> String {
    let address = value.split_once(';').map_or(value, |(_, a)| a);
    address.trim().trim_matches(['<', '>']).to_ascii_lowercase()
}

/// Exim's bounces carry `X-Failed-Recipients:` and say the error is
/// permanent in their text; its delay warnings carry neither.
fn exim(message: &Message<'_>) -> Option<Report> {
    let failed = message.header_raw("X-Failed-Recipients")?;
    let text = body_text(message);
    let recipients = failed
        .split(',')
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|address| Recipient {
            address: Some(address.to_ascii_lowercase()),
            status: status_code(&text),
            diagnostic: diagnostic_line(&text),
        })
        .collect();
    Some(Report {
        kind: Kind::Failed,
        recipients,
        shape: "Exim",
    })
}

/// Phrases of the bounces that predate RFC 3464, or ignore it: qmail's
/// "qmail-send program", Exchange's NDR, and the generic texts. Each is
/// paired with whether it means a permanent failure.
const BOUNCE_PHRASES: &[(&str, bool)] = &[
    ("this is a permanent error", true),
    ("i wasn't able to deliver your message", true),
    ("delivery has failed to these recipients", true),
    ("your message couldn't be delivered", true),
    ("your message could not be delivered", true),
    ("could not be delivered to one or more", true),
    ("the following addresses had permanent fatal errors", true),
    ("message not delivered", true),
    ("undeliverable", true),
    (
        "delivery to the following recipient failed permanently",
        true,
    ),
    ("has not yet been delivered", false),
    (
        "delivery to the following recipient has been delayed",
        false,
    ),
    ("still being retried", false),
    ("will keep trying", false),
    ("this is a temporary error", false),
];

/// A bounce told by its words: it must come from a mail system (a
/// `MAILER-DAEMON` or `postmaster` sender, or qmail's own line), and say
/// a delivery failed. A status code in the text decides permanent or not
/// over the phrase.
fn text_bounce(message: &Message<'_>) -> Option<Report> {
    let text = body_text(message);
    let lower = text.to_lowercase();
    let from = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or_default();
    let from_mailer = ["mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"]
        .contains(&local)
        || lower.contains("this is the qmail-send program");
    let subject = message.subject().unwrap_or_default().to_lowercase();
    // A postmaster's own out-of-office reply is still an auto-reply.
    if !from_mailer || out_of_office(&subject) {
        return None;
    }
    let (_, permanent) = BOUNCE_PHRASES
        .iter()
        .find(|(phrase, _)| lower.contains(phrase) || subject.contains(phrase))?;
    let status = status_code(&text);
    // A delay text stays a delay whatever number it carries (a version
    // like "Postfix 5.2.10" looks like a status); a failure text with a
    // 4.X.X status is a temporary one.
    let permanent = *permanent && !status.as_deref().is_some_and(|s| s.starts_with('4'));
    let shape = if lower.contains("qmail-send program") {
        "qmail"
    } else if lower.contains("delivery has failed to these recipients")
        || lower.contains("your message couldn't be delivered")
        || message.header_raw("X-MS-Exchange-Message-Is-Ndr").is_some()
    {
        "Exchange"
    } else {
        "text"
    };
    Some(Report {
        kind: if permanent {
            Kind::Failed
        } else {
            Kind::Delayed
        },
        recipients: vec![Recipient {
            address: first_address(&text),
            status,
            diagnostic: diagnostic_line(&text),
        }],
        shape,
    })
}

/// RFC 3834 §5 and the de-facto markers of vacation programs: an
/// `Auto-Submitted:` other than `no`, `X-Autoreply:`, `X-Autorespond:`,
/// `Precedence: auto_reply`, or an out-of-office Subject.
fn is_auto_reply(message: &Message<'_>) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if header("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if header("X-Autoreply").is_some() || header("X-Autorespond").is_some() {
        return true;
    }
    if header("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    out_of_office(&message.subject().unwrap_or_default().to_lowercase())
}

/// Whether a lower-cased Subject is a vacation program's.
fn out_of_office(subject: &str) -> bool {
    [
        "out of office",
        "automatic reply",
        "auto:",
        "autoreply",
        "vacation",
    ]
    .iter()
    .any(|marker| subject.contains(marker))
}

/// The first text part, or the HTML one as text (Exchange sends both).
fn body_text(message: &Message<'_>) -> String {
    message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default()
}

/// The first RFC 3463 status code in `text` (`5.1.1`), if any.
fn status_code(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The line of `text` that carries the server's reply: the first with a
/// status code, or with a 4xx/5xx reply code.
fn diagnostic_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| {
            status_code(line).is_some()
                || line
                    .split_whitespace()
                    .any(|w| w.len() == 3 && w.starts_with(['4', '5']) && w.parse::<u16>().is_ok())
        })
        .unwrap_or_default();
    one_line(line)
}

/// The first thing in `text` shaped like an address.
fn first_address(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')' | ',' | ';'))
        .map(|w| w.trim_end_matches([':', '.']))
        .find(|w| {
            w.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        })
        .map(str::to_ascii_lowercase)
}

/// `text` on one line of printable ASCII (anything else, bidi and
/// zero-width characters included, becomes `?`: it ends up in terminals
/// and notices), cut to [`DIAGNOSTIC_CHARS`].
pub fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(DIAGNOSTIC_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    //! One fixture per shape, written for these tests after the shapes
    //! the servers send (`tests/bounces/`).

    use super::*;

    fn fixture(name: &str) -> Report {
        let path = format!("{}/tests/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
        read(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    fn failed(report: &Report, address: &str, status: &str) {
        assert_eq!(report.kind, Kind::Failed, "{report:?}");
        let r = &report.recipients[0];
        assert_eq!(r.address.as_deref(), Some(address), "{report:?}");
        assert_eq!(r.status.as_deref(), Some(status), "{report:?}");
    }

    #[test]
    fn postfix_dsn() {
        let report = fixture("postfix.eml");
        failed(&report, "carol@example.org", "5.1.1");
        assert_eq!(report.shape, "RFC 3464");
        assert!(report.recipients[0].diagnostic.contains("User unknown"));
    }

    #[test]
    fn postfix_delay_warning_is_not_a_failure() {
        assert_eq!(fixture("postfix-delayed.eml").kind, Kind::Delayed);
    }

    #[test]
    fn exchange_ndr() {
        let report = fixture("exchange.eml");
        failed(&report, "dora@distro.example", "5.1.10");
    }

    #[test]
    fn exchange_text_ndr_without_a_report_part() {
        let report = fixture("exchange-legacy.eml");
        assert_eq!(report.kind, Kind::Failed, "{report:?}");
        assert_eq!(report.shape, "Exchange");
        assert_eq!(report.recipients[0].status.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn exim_bounce() {
        let report = fixture("exim.eml");
        assert_eq!(report.shape, "Exim");
        failed(&report, "erin@example.net", "5.1.1");
    }

    #[test]
    fn qmail_bounce() {
        let report = fixture("qmail.eml");
        assert_eq!(report.shape, "qmail");
        assert_eq!(report.kind, Kind::Failed);
        assert_eq!(
            report.recipients[0].address.as_deref(),
            Some("frank@example.com")
        );
    }

    #[test]
    fn vacation_reply_is_not_a_bounce() {
        let report = fixture("vacation.eml");
        assert_eq!(report.kind, Kind::AutoReply, "{report:?}");
    }

    #[test]
    fn a_postmasters_vacation_and_a_delay_with_a_version_number_are_no_failures() {
        let vacation = read(
            b"From: postmaster@example.net\r\nSubject: Out of office\r\n\
              Auto-Submitted: auto-replied\r\n\r\nAway; mail may be undeliverable.\r\n",
        );
        assert_eq!(vacation.kind, Kind::AutoReply);
        let delay = read(
            b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Delayed Mail\r\n\r\n\
              Your message has not yet been delivered. Postfix 5.2.10 will keep trying.\r\n",
        );
        assert_eq!(delay.kind, Kind::Delayed);
    }

    #[test]
    fn a_person_writing_is_neither() {
        let report = read(b"From: alice@example.org\r\nSubject: hi\r\n\r\nundeliverable, ha\r\n");
        assert_eq!(report.kind, Kind::Other);
    }

    #[test]
    fn diagnostics_stay_short_and_on_one_line() {
        let long = format!("550 5.1.1 {}\r\n\x1b[31mred", "x".repeat(1000));
        let d = one_line(&long);
        assert!(d.chars().count() <= DIAGNOSTIC_CHARS && !d.contains('\x1b'));
    }
}
