//! The LMTP protocol without I/O (RFC 2033): bytes in, replies out, and a
//! [`Event::Message`] whenever a message has been read to its final dot.
//! `lmtp::session` drives it over a socket; the fuzz target drives it
//! with arbitrary bytes.

use std::sync::Arc;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ProtoError, Request};

use crate::config::{Config, ListName};

/// Most recipients taken in one transaction; each is a list, so a handful
/// is already generous.
const MAX_RECIPIENTS: usize = 100;
/// Longest command line (RFC 5321 allows 512; extensions add some).
const MAX_LINE: usize = 4096;

/// What the session has to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole message: spool it, then write one reply per recipient
    /// (RFC 2033 §4.2); the session does both.
    Message(Delivery),
    /// The client said QUIT (the reply is already in the output).
    Quit,
    /// A message was refused while reading it (over the size limit); the
    /// replies are in the output.
    Refused(&'static str),
}

/// What an accepted recipient address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcpt {
    /// A list's address.
    List(ListName),
    /// The owner address, `delivery.from`, with or without a VERP token:
    /// bounces ([`crate::bounce`]).
    Owner,
}

/// A message read to its end, with its envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The envelope sender (MAIL FROM), `<>` as empty.
    pub mail_from: String,
    /// (address as given, what it is), in RCPT order; all lists or all
    /// the owner address, never both.
    pub rcpts: Vec<(String, Rcpt)>,
    /// The message as received, dot-unstuffed, with CRLF line ends.
    pub raw: Vec<u8>,
}

enum State {
    Command,
    /// Reading the message. The buffer starts with a CRLF so the data
    /// receiver sees the line end before the first line (an empty message
    /// is a lone ".").
    Data(DataReceiver),
    /// Over the size limit: reading on to the final dot, keeping nothing.
    Discard(DummyDataReceiver),
}

/// The state of one session.
pub struct Machine {
    config: Arc<Config>,
    state: State,
    greeted: bool,
    mail_from: Option<String>,
    rcpts: Vec<(String, Rcpt)>,
    /// The command line being assembled.
    line: Vec<u8>,
    /// Discarding the rest of an over-long line.
    skipping_line: bool,
    message: Vec<u8>,
    /// The spool is past its limits: recipients get 452 (the MTA keeps
    /// the mail and retries). The session sets it before each read.
    pub storage_full: bool,
}

impl Machine {
    /// A machine for one session, greeting not yet sent.
    pub fn new(config: Arc<Config>) -> Machine {
        Machine {
            config,
            state: State::Command,
            greeted: false,
            mail_from: None,
            rcpts: Vec::new(),
            line: Vec::new(),
            skipping_line: false,
            message: Vec::new(),
            storage_full: false,
        }
    }

    /// The greeting to send first.
    pub fn greeting(&self) -> String {
        format!("220 {} LMTP embargod ready\r\n", self.hostname())
    }

    /// Between transactions, where a session may stop at once.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Command) && self.mail_from.is_none()
    }

    fn hostname(&self) -> &str {
        self.config.lists.security.address.domain()
    }

    /// Consumes bytes from `input` (advancing it), appending replies to
    /// `out`, until the input is used up or an event needs the caller.
    pub fn feed(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Option<Event> {
        let max_size = self.config.lmtp.max_message_size;
        while !input.is_empty() {
            match &mut self.state {
                State::Command => {
                    let Some(line) = self.take_line(input, out) else {
                        continue;
                    };
                    match Request::parse(&mut line.iter()) {
                        Ok(request) => {
                            if let Some(event) = self.command(request, out) {
                                return Some(event);
                            }
                        }
                        Err(error) => out.extend_from_slice(protocol_error(&error).as_bytes()),
                    }
                }
                State::Data(receiver) => {
                    let mut iter = input.iter();
                    let done = receiver.ingest(&mut iter, &mut self.message);
                    *input = iter.as_slice();
                    let over = self.message.len() > max_size + 2;
                    if over {
                        let discard = DummyDataReceiver::new_data(receiver);
                        self.message = Vec::new();
                        if done {
                            self.refuse_oversize(out);
                            return Some(Event::Refused("too-large"));
                        } else {
                            self.state = State::Discard(discard);
                        }
                    } else if done {
                        let raw = finish_message(&mut self.message);
                        self.state = State::Command;
                        return Some(Event::Message(Delivery {
                            mail_from: self.mail_from.take().unwrap_or_default(),
                            rcpts: std::mem::take(&mut self.rcpts),
                            raw,
                        }));
                    }
                }
                State::Discard(receiver) => {
                    let mut iter = input.iter();
                    let done = receiver.ingest(&mut iter);
                    *input = iter.as_slice();
                    if done {
                        self.refuse_oversize(out);
                        return Some(Event::Refused("too-large"));
                    }
                }
            }
        }
        None
    }

    fn refuse_oversize(&mut self, out: &mut Vec<u8>) {
        let line = format!(
            "552 5.3.4 Message exceeds the size limit of {} bytes\r\n",
            self.config.lmtp.max_message_size
        );
        out.extend_from_slice(line.repeat(self.rcpts.len()).as_bytes());
        self.mail_from = None;
        self.rcpts.clear();
        self.state = State::Command;
    }

    /// The next complete command line (up to and including LF), or `None`
    /// when the input ends first. Each command is parsed on its own, so a
    /// malformed one can never swallow the next.
    fn take_line(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Option<Vec<u8>> {
        let end = input.iter().position(|&b| b == b'\n');
        let taken = end.map_or(input.len(), |pos| pos + 1);
        let (head, rest) = input.split_at(taken);
        *input = rest;
        if !self.skipping_line {
            self.line.extend_from_slice(head);
        }
        if self.line.len() > MAX_LINE && !self.skipping_line {
            out.extend_from_slice(b"500 5.5.2 Line too long\r\n");
            self.line.clear();
            self.skipping_line = true;
        }
        end?;
        if std::mem::take(&mut self.skipping_line) {
            return None;
        }
        Some(std::mem::take(&mut self.line))
    }

    fn command(&mut self, request: Request<String>, out: &mut Vec<u8>) -> Option<Event> {
        let max_size = self.config.lmtp.max_message_size;
        let mut line = |text: &str| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        match request {
            Request::Lhlo { host } => {
                self.greeted = true;
                self.mail_from = None;
                self.rcpts.clear();
                line(&format!(
                    "250-{} greets {}\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                     250-ENHANCEDSTATUSCODES\r\n250 SIZE {max_size}",
                    self.hostname(),
                    sanitize(&host)
                ));
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                line("500 5.5.1 This is an LMTP server: say LHLO (RFC 2033)")
            }
            Request::Mail { from } => {
                if !self.greeted {
                    line("503 5.5.1 Say LHLO first")
                } else if self.mail_from.is_some() {
                    line("503 5.5.1 Nested MAIL command")
                } else if from.size > max_size {
                    line(&format!(
                        "552 5.3.4 Message exceeds the size limit of {max_size} bytes"
                    ))
                } else {
                    self.mail_from = Some(from.address);
                    line("250 2.1.0 Sender OK")
                }
            }
            Request::Rcpt { to } => {
                if self.mail_from.is_none() {
                    line("503 5.5.1 MAIL first")
                } else if self.rcpts.len() >= MAX_RECIPIENTS {
                    line("452 4.5.3 Too many recipients")
                } else {
                    let rcpt = match self.config.list_for_address(&to.address) {
                        Some(list) => Some(Rcpt::List(list.name)),
                        None => crate::bounce::owner_token(&self.config, &to.address)
                            .map(|_| Rcpt::Owner),
                    };
                    let owner = |r: Rcpt| r == Rcpt::Owner;
                    match rcpt {
                        None => line(&format!(
                            "550 5.1.1 <{}>: no such list here",
                            sanitize(&to.address)
                        )),
                        Some(_) if self.storage_full => {
                            line("452 4.3.1 Insufficient system storage; try again later")
                        }
                        // Bounces and list mail are spooled apart: the
                        // client sends this one again in a new
                        // transaction (RFC 5321 §4.5.3.1.10).
                        Some(rcpt)
                            if self
                                .rcpts
                                .first()
                                .is_some_and(|(_, first)| owner(*first) != owner(rcpt)) =>
                        {
                            line("452 4.5.3 Send mail for this address in its own transaction")
                        }
                        Some(rcpt) => {
                            self.rcpts.push((to.address, rcpt));
                            line("250 2.1.5 Recipient OK")
                        }
                    }
                }
            }
            Request::Data => {
                if self.mail_from.is_none() {
                    line("503 5.5.1 MAIL first")
                } else if self.rcpts.is_empty() {
                    line("503 5.5.1 No valid recipients")
                } else {
                    line("354 Start mail input; end with <CRLF>.<CRLF>");
                    self.message.clear();
                    self.message.extend_from_slice(b"\r\n");
                    let mut receiver = DataReceiver::new();
                    receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                    self.state = State::Data(receiver);
                }
            }
            Request::Rset => {
                self.mail_from = None;
                self.rcpts.clear();
                line("250 2.0.0 Reset")
            }
            Request::Noop { .. } => line("250 2.0.0 OK"),
            Request::Quit => {
                line("221 2.0.0 Bye");
                return Some(Event::Quit);
            }
            Request::Vrfy { .. } => line("252 2.5.0 Not verifying; send mail and see"),
            _ => line("502 5.5.1 Command not implemented"),
        }
        None
    }
}

/// Strips the seeded CRLF and restores the final line end the data
/// receiver drops with the terminating dot.
fn finish_message(message: &mut Vec<u8>) -> Vec<u8> {
    let mut raw = std::mem::take(message);
    raw.drain(..2.min(raw.len()));
    if !raw.is_empty() {
        raw.extend_from_slice(b"\r\n");
    }
    raw
}

fn protocol_error(error: &ProtoError) -> String {
    match error {
        ProtoError::UnknownCommand => "500 5.5.1 Unknown command\r\n".into(),
        ProtoError::ResponseTooLong => "500 5.5.2 Line too long\r\n".into(),
        ProtoError::InvalidSenderAddress => "501 5.1.7 Bad sender address syntax\r\n".into(),
        ProtoError::InvalidRecipientAddress => "501 5.1.3 Bad recipient address syntax\r\n".into(),
        ProtoError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}\r\n"),
        ProtoError::InvalidParameter { param } => {
            format!("501 5.5.4 Invalid parameter {param}\r\n")
        }
        ProtoError::UnsupportedParameter { param } => {
            format!("555 5.5.4 Unsupported parameter {}\r\n", sanitize(param))
        }
        ProtoError::NeedsMoreData { .. } => "501 5.5.4 Incomplete command\r\n".into(),
        other => format!("500 5.5.1 {other:?}\r\n"),
    }
}

/// Keeps client-supplied text in a reply printable and short.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}
