//! Limits that keep floods harmless: a full spool answers 452 so the MTA
//! keeps the mail, and a sender gets only so many acknowledgements an hour.

mod common;

use common::{report, start};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::{read_outbox, Sandbox, SECURITY};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_answers_452_and_takes_mail_again_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.extra = "[limits]\nspool_messages = 2\n".into();
    let daemon = start(&sandbox, Clock::system()).await;
    // Hold the fan-out (it waits for this lock) so the spool fills up.
    let hold = daemon.shared.embargo_lock.lock().await;
    for i in 0..2 {
        let replies = daemon
            .send(
                "alice@example.org",
                &[SECURITY],
                &report("fill", &format!("f{i}")),
            )
            .await;
        assert_eq!(replies[0].code, 250, "{replies:?}");
    }
    let replies = daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &report("one too many", "f3"),
        )
        .await;
    assert_eq!(replies[0].code, 452, "{replies:?}");
    assert!(replies[0].text.starts_with("4.3.1"), "{replies:?}");
    drop(hold);
    daemon.settle().await;
    let replies = daemon
        .send(
            "alice@example.org",
            &[SECURITY],
            &report("room again", "f4"),
        )
        .await;
    assert_eq!(replies[0].code, 250, "{replies:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_gets_at_most_so_many_acknowledgements_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox
        .generate_member("alice", ListName::Security)
        .unwrap();
    sandbox.extra = "[limits]\nacks_per_hour = 2\n".into();
    let clock = Clock::manual(chrono::Utc::now());
    let daemon = start(&sandbox, clock.clone()).await;
    let acks = || {
        read_outbox(&daemon.outbox)
            .unwrap()
            .iter()
            .filter(|m| m.to == [common::REPORTER.to_string()])
            .count()
    };
    for i in 0..5 {
        daemon
            .send(
                common::REPORTER,
                &[SECURITY],
                &report(&format!("flood {i}"), &format!("a{i}")),
            )
            .await;
    }
    daemon.wait_outbox(5).await;
    daemon.settle().await;
    assert_eq!(acks(), 2, "two acknowledgements, then silence");
    // The next hour, again.
    clock.advance(std::time::Duration::from_secs(3600));
    daemon
        .send(common::REPORTER, &[SECURITY], &report("next hour", "a9"))
        .await;
    daemon.wait_outbox(6).await;
    daemon.settle().await;
    assert_eq!(acks(), 3);
    daemon.stop().await;
}
