//! A real Dovecot for tests and benchmarks (Debian's `dovecot-imapd`):
//! started in its own folder with its own configuration on a loopback
//! port, with one plaintext-login account; no system service is touched.
//! As root, Dovecot's own unprivileged users run it and the mail belongs
//! to `nobody`; as anyone else, everything runs as that user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// The test account's login.
pub const USER: &str = "security@kappital.example";
/// The test account's password.
pub const PASSWORD: &str = "test password";

/// A Dovecot instance in `dir`, serving one account on a loopback port;
/// stopped on drop.
pub struct Dovecot {
    dir: PathBuf,
    /// The loopback port it serves IMAP on (STARTTLS offered with TLS).
    pub port: u16,
    /// With TLS: the port of implicit TLS (RFC 8314), and the CA file
    /// that certifies the server as `localhost`.
    pub tls: Option<(u16, PathBuf)>,
    child: Option<Child>,
}

impl Dovecot {
    /// Writes the configuration and starts Dovecot; returns once it answers.
    pub fn start(dir: &Path) -> Dovecot {
        let dir = dir.join("dovecot");
        std::fs::create_dir_all(dir.join("mail")).unwrap();
        let mut dovecot = Dovecot {
            port: free_port(),
            dir,
            tls: None,
            child: None,
        };
        dovecot.configure();
        dovecot.run();
        dovecot
    }

    /// [`Dovecot::start`] with TLS: a throwaway CA (made with the
    /// `openssl` command) certifies the server as `localhost`; implicit
    /// TLS on a second port, STARTTLS on the first.
    pub fn start_with_tls(dir: &Path) -> Dovecot {
        let dir = dir.join("dovecot");
        std::fs::create_dir_all(dir.join("mail")).unwrap();
        let ca = make_certificates(&dir);
        let mut dovecot = Dovecot {
            port: free_port(),
            dir,
            tls: Some((free_port(), ca)),
            child: None,
        };
        dovecot.configure();
        dovecot.run();
        dovecot
    }

    fn configure(&self) {
        use std::os::unix::fs::PermissionsExt;
        let d = self.dir.display();
        // As root, Dovecot's own unprivileged users run the login and
        // internal processes and the mail is accessed as `nobody`; as
        // anyone else, everything runs as that user.
        let (login, internal, group, uid, gid) = if is_root() {
            for dir in ancestors_to_open(&self.dir) {
                let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o011))
                    .unwrap();
            }
            let mail = self.dir.join("mail");
            std::os::unix::fs::chown(&mail, Some(65534), Some(65534)).unwrap();
            (
                "dovenull".to_string(),
                "dovecot".to_string(),
                "dovecot".to_string(),
                65534,
                65534,
            )
        } else {
            let user = output("id", &["-un"]);
            (
                user.clone(),
                user,
                output("id", &["-gn"]),
                output("id", &["-u"]).parse().unwrap(),
                output("id", &["-g"]).parse().unwrap(),
            )
        };
        std::fs::write(
            self.dir.join("dovecot.conf"),
            format!(
                "base_dir = {d}/run\n\
                 state_dir = {d}/state\n\
                 instance_name = embargod-test-{port}\n\
                 listen = 127.0.0.1\n\
                 protocols = imap\n\
                 {ssl}\
                 disable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\n\
                 default_login_user = {login}\n\
                 default_internal_user = {internal}\n\
                 default_internal_group = {group}\n\
                 first_valid_uid = 1\n\
                 log_path = {d}/dovecot.log\n\
                 mail_location = maildir:{d}/mail/%n\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
                 userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%n\n}}\n\
                 service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n}}\n",
                port = self.port,
                imaps = self.tls.as_ref().map_or(0, |(port, _)| *port),
                ssl = match self.tls {
                    Some(_) => format!(
                        "ssl = yes\nssl_cert = <{d}/server.crt\nssl_key = <{d}/server.key\n"
                    ),
                    None => "ssl = no\n".into(),
                },
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}\n"),
        )
        .unwrap();
    }

    /// Starts (or restarts) Dovecot on its configuration; returns once it answers.
    pub fn run(&mut self) {
        use std::os::unix::process::CommandExt;
        let child = Command::new("dovecot")
            // Its own process group: stopping it stops the sessions too,
            // which outlive their master otherwise.
            .process_group(0)
            .arg("-F")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (dovecot-imapd) is installed");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "dovecot did not start: {}",
                std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Dovecot and every session it runs (the whole process group)
    /// and waits until its port is closed: to the daemon, the server is
    /// gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = child.wait();
            // What did not stop on TERM (a session busy at that moment).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "dovecot did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TOML for `[lists.security.imap]` on this server.
    pub fn intake(&self, dir: &Path, extra: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let password = dir.join("imap-password");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        format!(
            "[lists.security.imap]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             username = \"{USER}\"\npassword_file = \"imap-password\"\npoll_interval = \"60s\"\n{extra}\n",
            self.port
        )
    }

    /// A logged-in test client (not the daemon's connection).
    pub async fn client(&self) -> async_imap::Session<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().unwrap();
        client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .unwrap()
    }

    /// Appends `message` to `mailbox`, as a delivery would.
    pub async fn append(&self, mailbox: &str, message: &[u8]) {
        let mut session = self.client().await;
        session.append(mailbox, None, None, message).await.unwrap();
        session.logout().await.unwrap();
    }

    /// How many messages `mailbox` holds.
    pub async fn count(&self, mailbox: &str) -> u32 {
        let mut session = self.client().await;
        let status = session.status(mailbox, "(MESSAGES)").await.unwrap();
        session.logout().await.unwrap();
        status.exists
    }

    /// Creates `mailbox`.
    pub async fn create(&self, mailbox: &str) {
        let mut session = self.client().await;
        session.create(mailbox).await.unwrap();
        session.logout().await.unwrap();
    }

    /// The UIDVALIDITY of `mailbox`.
    pub async fn uid_validity(&self, mailbox: &str) -> u32 {
        let mut session = self.client().await;
        let selected = session.select(mailbox).await.unwrap();
        session.logout().await.unwrap();
        selected.uid_validity.unwrap()
    }

    /// How many logins Dovecot has logged.
    pub fn logins(&self) -> usize {
        std::fs::read_to_string(self.dir.join("dovecot.log"))
            .unwrap_or_default()
            .matches("Login: user=")
            .count()
    }

    /// The maildir file of every message in `INBOX`.
    pub fn inbox_files(&self) -> Vec<PathBuf> {
        let mail = self.dir.join("mail");
        let mut files: Vec<PathBuf> = walk(&mail)
            .into_iter()
            .filter(|p| {
                let inside = p.strip_prefix(&mail).unwrap_or(p).to_string_lossy();
                // Other folders are `.Name/` in a maildir.
                p.parent()
                    .is_some_and(|d| d.ends_with("new") || d.ends_with("cur"))
                    && !inside.contains("/.")
            })
            .collect();
        files.sort();
        files
    }

    /// Makes Dovecot forget the mailbox's UIDs (its uidlist and indexes),
    /// as a restore or migration does: the messages stay, under a new
    /// UIDVALIDITY. Dovecot must be stopped.
    pub fn forget_uids(&self) {
        let mail = self.dir.join("mail");
        for entry in walk(&mail) {
            let name = entry.file_name().unwrap().to_string_lossy().to_string();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                std::fs::remove_file(&entry).unwrap();
            }
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for `localhost` signed by it, in `dir`
/// (`server.crt`, `server.key`); returns the CA certificate's file.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=embargod test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    dir.join("ca.crt")
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn is_root() -> bool {
    output("id", &["-u"]) == "0"
}

/// `dir` and each folder above it up to `/`, which the mail processes
/// (`nobody`) must be able to pass through.
fn ancestors_to_open(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .filter(|p| p.parent().is_some())
        .map(Path::to_path_buf)
        .collect()
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A loopback TCP port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
