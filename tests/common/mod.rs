//! Test support: a real daemon in-process on loopback ports, a real GnuPG
//! in a throwaway home, and readers for what the daemon sends.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use embargod::clock::Clock;
use embargod::config::{Config, ListenAddr};
use embargod::daemon::{Daemon, Options};
use embargod::sandbox::{read_outbox, OutboxMail, Sandbox};
use embargod::state::Shared;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

/// A daemon running in this process.
pub struct TestDaemon {
    pub config: Config,
    pub lmtp: ListenAddr,
    /// The metrics address, when `[metrics] listen` is set.
    pub metrics: Option<std::net::SocketAddr>,
    pub shared: Arc<Shared>,
    pub outbox: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Writes the sandbox's config and starts the daemon on it, on an
/// ephemeral loopback port.
pub async fn start(sandbox: &Sandbox, clock: Clock) -> TestDaemon {
    let file = sandbox.write_config().expect("write config");
    start_with_config(&file, clock).await
}

/// Starts the daemon on a config file as it is.
pub async fn start_with_config(file: &Path, clock: Clock) -> TestDaemon {
    // Logs show with --nocapture; RUST_LOG picks the level.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let config = Config::load(file).expect("load config");
    let sockets = embargod::daemon::Sockets::bind(&config)
        .await
        .expect("bind");
    let lmtp = sockets.lmtp[0].local_addr().expect("local addr");
    let metrics = sockets.metrics.as_ref().and_then(|m| m.local_addr().ok());
    let daemon = Daemon::open(
        config.clone(),
        Options {
            clock,
            grace: Duration::from_secs(10),
        },
    )
    .expect("daemon starts");
    let shared = daemon.shared();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(sockets, async {
        let _ = stopped.await;
    }));
    TestDaemon {
        config,
        lmtp,
        metrics,
        shared,
        outbox: file.parent().expect("config folder").join("outbox"),
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestDaemon {
    /// Stops the daemon and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("daemon task");
        }
    }

    /// Waits (up to 60 s) until at least `n` messages are in the outbox.
    pub async fn wait_outbox(&self, n: usize) -> Vec<OutboxMail> {
        wait_outbox(&self.outbox, n).await
    }

    /// Sends one message over LMTP from `from` to `rcpts`.
    pub async fn send(
        &self,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> Vec<embargod::lmtp::client::Reply> {
        embargod::lmtp::client::send_one(&self.lmtp, from, rcpts, message)
            .await
            .expect("LMTP session")
    }

    /// The reasons of what the quarantine holds (held posts), oldest first.
    pub fn held(&self) -> Vec<String> {
        self.shared
            .store
            .quarantined()
            .expect("read the quarantine")
            .into_iter()
            .map(|(_, meta)| meta.reason)
            .collect()
    }

    /// Waits until the spool and the queue are empty: everything accepted
    /// has been processed and sent (or failed).
    pub async fn settle(&self) {
        for _ in 0..600 {
            if self.shared.store.spool_len() == 0 && self.shared.store.queue_len() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "daemon did not settle: {} spooled, {} queued",
            self.shared.store.spool_len(),
            self.shared.store.queue_len()
        );
    }
}

/// The sender of the tests' reports; the case process acknowledges each
/// new report to this address.
pub const REPORTER: &str = "rita@reporter.example";

/// The outbox without mail to reporters — the case process acknowledges
/// every new report; the case tests look at those on their own. Members
/// in the tests are `@example.org`, lists `@kappital.example`.
pub fn outbox(dir: &Path) -> Vec<OutboxMail> {
    read_outbox(dir)
        .expect("read outbox")
        .into_iter()
        .filter(|m| {
            m.to.iter()
                .all(|to| to.ends_with("@example.org") || to.ends_with("@kappital.example"))
        })
        .collect()
}

/// Waits (up to 60 s) until the outbox holds at least `n` messages, not
/// counting acknowledgements to the reporter.
pub async fn wait_outbox(dir: &Path, n: usize) -> Vec<OutboxMail> {
    for _ in 0..600 {
        let mail = outbox(dir);
        if mail.len() >= n {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "expected {n} messages in the outbox, found {}",
        outbox(dir).len()
    );
}

/// A plain report with a unique canary line.
pub fn report(subject: &str, canary: &str) -> Vec<u8> {
    format!(
        "From: Rita Reporter <rita@reporter.example>\r\n\
         To: <security@kappital.example>\r\n\
         Subject: {subject}\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\
         Message-ID: <{canary}@reporter.example>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Dear PST,\r\n\
         \r\n\
         {canary}\r\n\
         \r\n\
         Rita\r\n"
    )
    .into_bytes()
}

/// A random token to recognise a message's content anywhere.
pub fn canary() -> String {
    format!("canary-{}", embargod::random::token())
}

/// The armored OpenPGP message inside a PGP/MIME copy.
pub fn armored_part(copy: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(copy);
    let start = text
        .find("-----BEGIN PGP MESSAGE-----")
        .expect("armored message");
    let end = text.find("-----END PGP MESSAGE-----").expect("armor end")
        + "-----END PGP MESSAGE-----".len();
    text[start..end].as_bytes().to_vec()
}

/// A decrypted entity as a reader sees it: the raw entity, then the
/// decoded text of every part with the marks' look-alike letters read
/// back as Latin.
pub fn readable(entity: &[u8]) -> String {
    let mut out = String::from_utf8_lossy(entity).into_owned();
    if let Some(message) = embargod::mime::parse(entity) {
        for part in &message.parts {
            if let Some(text) = part.text_contents() {
                out.push('\n');
                out.push_str(&embargod::mark::canonical(text));
            }
        }
    }
    out
}

/// Every file below `dir`, recursively (none when it does not exist).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Runs `command`, feeding it `stdin` from a thread of its own (so that
/// a tool writing much output while reading cannot deadlock); its output.
pub fn with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} runs: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// GnuPG with its own home folder, removed (agent and all) on drop.
pub struct Gpg {
    home: tempfile::TempDir,
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpg {
    pub fn new() -> Gpg {
        // Short path: gpg-agent's socket lives in it.
        let home = tempfile::Builder::new()
            .prefix("gpg-")
            .tempdir_in("/tmp")
            .expect("gpg home");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .unwrap();
        Gpg { home }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs gpg with `args`, feeding `stdin`; returns the raw output.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut command = Command::new("gpg");
        command
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args);
        with_stdin(&mut command, stdin)
    }

    /// Like [`Gpg::run`], panicking with gpg's stderr on failure.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Makes a key for `uid` (`algo` as `--quick-gen-key` takes it, e.g.
    /// "future-default" for ed25519/cv25519 or "rsa3072"); returns the
    /// primary fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str) -> String {
        self.gen_key_at(uid, algo, None)
    }

    /// [`Gpg::gen_key`], as if at `made` (`--faked-system-time` form).
    pub fn gen_key_at(&self, uid: &str, algo: &str, made: Option<&str>) -> String {
        let mut args = vec!["--quick-gen-key", uid, algo, "default", "never"];
        if let Some(made) = made {
            args.splice(0..0, ["--faked-system-time", made]);
        }
        self.ok(&args, b"");
        if algo.starts_with("rsa") {
            // RSA "default" usage may leave out encryption; add a subkey.
            let fpr = self.fingerprint(uid);
            self.ok(&["--quick-add-key", &fpr, algo, "encr", "never"], b"");
        }
        self.fingerprint(uid)
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let out = String::from_utf8(self.ok(&["--with-colons", "--list-keys", uid], b"")).unwrap();
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string()
    }

    /// The public certificate of `who`, parsed by Sequoia.
    pub fn cert(&self, who: &str) -> Cert {
        Cert::from_bytes(&self.ok(&["--armor", "--export", who], b"")).expect("exported cert")
    }

    pub fn import(&self, armored: &[u8]) {
        self.ok(&["--import"], armored);
    }

    /// Decrypts `message`; returns the plaintext and gpg's status lines.
    pub fn decrypt(&self, message: &[u8]) -> (Vec<u8>, String) {
        let output = self.run(
            &["--status-fd", "2", "--trust-model", "always", "--decrypt"],
            message,
        );
        let status = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "gpg --decrypt failed:\n{status}");
        (output.stdout, status)
    }

    /// gpg's packet listing of `message`.
    pub fn list_packets(&self, message: &[u8]) -> String {
        let output = self.run(&["--list-packets", "--list-only"], message);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// Public key of the list as an armored block, for gpg to import.
pub fn list_public(sandbox: &Sandbox) -> Vec<u8> {
    sandbox.list_key.public_armored().into_bytes()
}

/// A post signed by `signer` in `gpg`'s home, PGP/MIME multipart/signed,
/// its first text part starting with `keywords` and carrying `patch` as
/// an attachment.
pub fn signed_post(
    gpg: &Gpg,
    signer: &str,
    to: &str,
    subject: &str,
    keywords: &str,
    text: &str,
    patch: &str,
) -> Vec<u8> {
    let part = format!(
        "Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{keywords}\r\n{text}\r\n\
         --inner\r\nContent-Type: text/x-diff; name=\"fix.patch\"\r\n\
         Content-Disposition: attachment; filename=\"fix.patch\"\r\n\r\n{patch}\r\n--inner--"
    );
    let signature = detach_sign(gpg, signer, &part, None);
    multipart_signed(signer, to, subject, &part, &signature)
}

/// `gpg`'s armored detached signature by `signer` over `part`, made at
/// `time` when given (backdated or post-dated), else now.
pub fn detach_sign(
    gpg: &Gpg,
    signer: &str,
    part: &str,
    time: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<u8> {
    let faked = time.map(gpg_time);
    let mut args = vec!["--armor", "--detach-sign", "--local-user", signer];
    if let Some(faked) = &faked {
        args.splice(
            0..0,
            ["--ignore-time-conflict", "--faked-system-time", faked],
        );
    }
    gpg.ok(&args, part.as_bytes())
}

/// An RFC 3156 multipart/signed message of `part` and its armored
/// detached `signature`.
pub fn multipart_signed(
    from: &str,
    to: &str,
    subject: &str,
    part: &str,
    signature: &[u8],
) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"outer\"\r\n\r\n\
         --outer\r\n{part}\r\n--outer\r\nContent-Type: application/pgp-signature\r\n\r\n{}\r\n--outer--\r\n",
        String::from_utf8_lossy(signature)
    )
    .into_bytes()
}

/// A text post signed with Sequoia by `signer`'s signing key as it was
/// at `time` (so a key that has expired since can still sign).
pub fn sequoia_signed_post(
    signer: &Cert,
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
    time: std::time::SystemTime,
) -> Vec<u8> {
    use sequoia_openpgp::policy::StandardPolicy;
    use sequoia_openpgp::serialize::stream::{Armorer, Message, Signer};
    use std::io::Write;
    let part = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}");
    let keypair = signer
        .keys()
        .with_policy(&StandardPolicy::new(), time)
        .secret()
        .for_signing()
        .next()
        .expect("a signing key valid at that time")
        .key()
        .clone()
        .into_keypair()
        .expect("unencrypted");
    let mut signature = Vec::new();
    let message = Message::new(&mut signature);
    let message = Armorer::new(message)
        .kind(sequoia_openpgp::armor::Kind::Signature)
        .build()
        .unwrap();
    let mut writer = Signer::new(message, keypair)
        .unwrap()
        .detached()
        .creation_time(time)
        .build()
        .unwrap();
    writer.write_all(part.as_bytes()).unwrap();
    writer.finalize().unwrap();
    multipart_signed(from, to, subject, &part, &signature)
}

/// The two parts of an RFC 3156 multipart/signed message: the signed
/// bytes and the armored signature.
pub fn signed_parts(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .expect("parses");
    let children = parsed.root_part().sub_parts().expect("multipart").to_vec();
    let signed = &parsed.parts[children[0] as usize];
    let signature = &parsed.parts[children[1] as usize];
    (
        message[signed.offset_header as usize..signed.offset_end as usize].to_vec(),
        signature.contents().to_vec(),
    )
}

/// Writes the sandbox's config with LMTP on a fixed free loopback port,
/// for tests that run the real binary: its address must survive restarts.
pub fn config_on_fixed_port(sandbox: &Sandbox) -> (PathBuf, ListenAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = sandbox.write_config().expect("write config");
    let text = std::fs::read_to_string(&config)
        .expect("read config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("write config");
    let addr = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().expect("address"));
    (config, addr)
}

/// A running binary, killed when dropped: a failing test leaves no
/// daemon behind.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on `config`, logging at `level`; the log is
/// appended to `daemon.log` beside the config.
pub fn spawn_binary(config: &Path, level: &str) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("daemon.log"))
        .expect("open daemon.log");
    Running(
        Command::new(env!("CARGO_BIN_EXE_embargod"))
            .env("RUST_LOG", level)
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start embargod"),
    )
}

/// Sends like an MTA: retries (a daemon not up yet, a 4xx) until the
/// message is accepted, for at most `patience`. Returns the attempts.
pub async fn send_until_accepted(
    addr: &ListenAddr,
    from: &str,
    rcpt: &str,
    message: &[u8],
    patience: Duration,
) -> usize {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match embargod::lmtp::client::send_one(addr, from, &[rcpt], message).await {
            Ok(replies) if replies[0].code == 250 => return attempts,
            Ok(replies) if replies[0].code >= 500 => panic!("refused: {replies:?}"),
            _ => {}
        }
        assert!(
            started.elapsed() < patience,
            "not accepted in {patience:?} ({attempts} attempts)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GnuPG's `--faked-system-time` value for `time`, frozen there.
pub fn gpg_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y%m%dT%H%M%S!").to_string()
}

/// A text post (`keywords`, a blank line, `text`) in an RFC 3156
/// multipart/signed message, signed by `gpg` as `signer` — at `time`
/// when given (a backdated or post-dated signature), else now. `subject`
/// is the outer, unsigned Subject.
pub fn signed_text(
    gpg: &Gpg,
    signer: &str,
    to: &str,
    subject: &str,
    keywords: &str,
    text: &str,
    time: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<u8> {
    let part = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{keywords}\r\n{text}\r\n");
    let signature = detach_sign(gpg, signer, &part, time);
    multipart_signed(signer, to, subject, &part, &signature)
}

/// A sandbox whose members' keys one GnuPG home made `key_age` ago (so
/// that backdated signatures are possible), with the list key imported,
/// and a manual clock at the current whole second.
pub struct GpgWorld {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub gpg: Gpg,
    pub clock: Clock,
    key_made: String,
}

impl GpgWorld {
    /// `members`: id and list (`None`: on no list); each gets the address
    /// `<id>@example.org` and an Ed25519/Cv25519 key.
    pub fn new(
        members: &[(&str, Option<embargod::config::ListName>)],
        key_age: chrono::Duration,
    ) -> GpgWorld {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let gpg = Gpg::new();
        gpg.import(&list_public(&sandbox));
        let now = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
        let mut world = GpgWorld {
            dir,
            sandbox,
            gpg,
            clock: Clock::manual(now),
            key_made: gpg_time(chrono::Utc::now() - key_age),
        };
        for (id, list) in members {
            world.make_key(id);
            world.enroll(id, *list);
        }
        world
    }

    /// Makes `<id>@example.org`'s key (dated like the others) in the
    /// GnuPG home; returns its primary fingerprint.
    pub fn make_key(&self, id: &str) -> String {
        self.gpg.gen_key_at(
            &format!("{id} <{id}@example.org>"),
            "future-default",
            Some(&self.key_made),
        )
    }

    /// Puts `id`'s certificate, as the GnuPG home has it now, into the
    /// config, on `list`.
    pub fn enroll(&mut self, id: &str, list: Option<embargod::config::ListName>) {
        let email = format!("{id}@example.org");
        let cert = self.gpg.cert(&email);
        match list {
            Some(list) => self.sandbox.add_member(id, &email, list, &cert).unwrap(),
            None => self.sandbox.add_loose_member(id, &email, &cert).unwrap(),
        }
    }

    /// The fingerprint of the newest key (primary or subkey) of `id`.
    pub fn newest_key(&self, id: &str) -> String {
        let listing = String::from_utf8(self.gpg.ok(
            &["--with-colons", "--list-keys", &format!("{id}@example.org")],
            b"",
        ))
        .unwrap();
        listing
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9))
            .next_back()
            .expect("a key")
            .to_string()
    }
}

/// A sandbox whose members' keys one GnuPG home made (so it can sign as
/// any of them and read every copy), the list key imported there, and a
/// manual clock on whole seconds (so RFC 3339 times in posts are exact).
pub struct World {
    pub _dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub gpg: Gpg,
    pub clock: Clock,
    /// A reporter's own GnuPG home, when the test has one.
    pub reporter: Option<Gpg>,
}

impl World {
    /// `members`: id and list (`None`: a member of no list); address
    /// `<id>@example.org`. Keys are made at `made` (GnuPG's
    /// `--faked-system-time` form, e.g. `20261101T000000`), or now.
    pub fn new(
        members: &[(&str, Option<embargod::config::ListName>)],
        made: Option<&str>,
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(dir.path()).unwrap();
        let gpg = Gpg::new();
        for (id, list) in members {
            let email = format!("{id}@example.org");
            gpg.gen_key_at(&format!("{id} <{email}>"), "future-default", made);
            let cert = gpg.cert(&email);
            match list {
                Some(list) => sandbox.add_member(id, &email, *list, &cert).unwrap(),
                None => sandbox.add_loose_member(id, &email, &cert).unwrap(),
            }
        }
        gpg.import(&list_public(&sandbox));
        let now = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
        World {
            _dir: dir,
            sandbox,
            gpg,
            clock: Clock::manual(now),
            reporter: None,
        }
    }

    /// This world with a reporter at `address`, who has a key and the
    /// list's public key.
    pub fn with_reporter(mut self, address: &str) -> World {
        let reporter = Gpg::new();
        reporter.gen_key(&format!("Finder <{address}>"), "future-default");
        reporter.import(&list_public(&self.sandbox));
        self.reporter = Some(reporter);
        self
    }

    /// The reporter's GnuPG home (see [`World::with_reporter`]).
    pub fn reporter(&self) -> &Gpg {
        self.reporter.as_ref().expect("a world with a reporter")
    }
}

/// The mail addressed to `address`.
pub fn addressed_to<'a>(mail: &'a [OutboxMail], address: &str) -> Vec<&'a OutboxMail> {
    mail.iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .collect()
}

/// A copy decrypted by `gpg`, its signature checked good, as readable
/// text.
pub fn open_copy(gpg: &Gpg, mail: &OutboxMail) -> String {
    let (plaintext, status) = gpg.decrypt(&armored_part(&mail.bytes));
    assert!(status.contains("GOODSIG"), "{status}");
    readable(&plaintext)
}

/// A validator for the vendored schema `file` (`tests/schemas/`), formats
/// (date-time, uri) checked too.
pub fn schema(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(format!(
        "{}/tests/schemas/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}
