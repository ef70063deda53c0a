//! What `embargod status` tells: uptime, the configuration in force, the
//! lists, the queue, pending embargoes and the last errors.
//!
//! The last errors come from the log itself: [`RecentErrors`] is a tracing
//! layer keeping the latest warnings and errors (log lines never carry
//! message content, so neither does this).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::state::Shared;

/// How many recent warnings and errors are kept.
const KEPT: usize = 20;

static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The tracing layer that keeps the latest warnings and errors.
pub struct RecentErrors;

impl<S: Subscriber> Layer<S> for RecentErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut line = format!(
            "{} {level} {}:",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut line));
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(line);
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The latest warnings and errors, oldest first.
pub fn recent_errors() -> Vec<String> {
    RECENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// `imap security lists@imap.example.org:993/INBOX: idle, 3 taken; last error …`
fn intake_line(intake: &crate::intake::board::IntakeStatus) -> String {
    use crate::intake::board::IntakeState;
    let state = match &intake.state {
        IntakeState::Connecting => "connecting".to_string(),
        IntakeState::Idle => "idle (IMAP IDLE)".to_string(),
        IntakeState::Polling => "polling".to_string(),
        IntakeState::Reconnecting { since } => {
            format!("reconnecting since {}", since.formatted())
        }
    };
    let mut line = format!(
        "imap {:<13} {}: {state}, {} taken",
        intake.target.as_str(),
        intake.mailbox,
        intake.taken
    );
    if let Some((when, error)) = &intake.last_error {
        let _ = write!(line, "; last error {}: {error}", when.formatted());
    }
    line
}

/// The status report.
pub fn report(shared: &Shared) -> String {
    let config = shared.config();
    let now = shared.clock.now();
    let mut text = String::new();
    if shared.serving.load(std::sync::atomic::Ordering::Relaxed) {
        let uptime = (now - shared.started).to_std().unwrap_or_default();
        let uptime = std::time::Duration::from_secs(uptime.as_secs());
        let _ = writeln!(
            text,
            "embargod {} up {}",
            env!("CARGO_PKG_VERSION"),
            humantime::format_duration(uptime)
        );
    } else {
        let _ = writeln!(
            text,
            "embargod {}: no daemon is running; this is read from the store",
            env!("CARGO_PKG_VERSION")
        );
    }
    let _ = writeln!(
        text,
        "config {} (loaded {})",
        config.file.display(),
        crate::clock::format_time(shared.loaded_at())
    );
    for list in config.lists() {
        let members = config.members_of(list);
        let keys = shared.keys();
        let usable = members
            .iter()
            .filter(|m| keys.member(&m.id).is_ok())
            .count();
        let _ = writeln!(
            text,
            "list {:<13} {:<32} {} member(s), {} with a usable key",
            list.name.as_str(),
            list.address.to_string(),
            members.len(),
            usable
        );
    }
    for intake in shared.intakes.all() {
        let _ = writeln!(text, "{}", intake_line(&intake));
    }
    let standings = crate::bounce::standing::all(&shared.store).unwrap_or_default();
    let current = |id: &str, s: &crate::bounce::standing::Standing| {
        config
            .members
            .get(id)
            .is_some_and(|m| AsRef::<str>::as_ref(&m.email).eq_ignore_ascii_case(&s.address))
    };
    let named = |bouncing: bool| -> Vec<&str> {
        standings
            .iter()
            .filter(|(id, s)| current(id, s))
            .filter(|(_, s)| match s.state {
                crate::bounce::standing::State::Bouncing { .. } => bouncing,
                crate::bounce::standing::State::Probing { .. } => !bouncing,
                crate::bounce::standing::State::Reachable => false,
            })
            .map(|(id, _)| id.as_str())
            .collect()
    };
    let (bouncing, probing) = (named(true), named(false));
    let or_none = |v: &[&str]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        text,
        "members bouncing: {}; probed: {} (see `embargod member list`)",
        or_none(&bouncing),
        or_none(&probing)
    );
    let queued = shared.store.queued().unwrap_or_default();
    let deferred = queued.iter().filter(|(_, c)| c.attempts > 0).count();
    let _ = writeln!(
        text,
        "spool {} message(s); queue {} copy(ies), {deferred} deferred",
        shared.store.spool_len(),
        queued.len()
    );
    let pending: Vec<_> = crate::embargo::all(&shared.store)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.released.is_none())
        .collect();
    let _ = writeln!(text, "embargoes pending: {}", pending.len());
    for e in &pending {
        let _ = writeln!(
            text,
            "  {} public at {}",
            e.case,
            crate::clock::format_time(e.until())
        );
    }
    let errors = recent_errors();
    let _ = writeln!(
        text,
        "last errors: {}",
        if errors.is_empty() { "none" } else { "" }
    );
    for line in errors.iter().rev().take(10) {
        let _ = writeln!(text, "  {line}");
    }
    text
}
