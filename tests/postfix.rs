//! A real Postfix, end to end: Postfix (Debian's package, on loopback
//! ports only, in a throwaway configuration directory) hands the list
//! addresses to embargod over LMTP with the README's snippet, embargod
//! sends its copies back through that Postfix, and Postfix delivers them
//! to Maildirs, where `gpg` decrypts them. Mail goes in through Postfix's
//! own `sendmail`. One member's address is unknown to Postfix: it bounces
//! that copy, the DSN comes back over LMTP to the copy's VERP address,
//! the probe bounces too, and the PST is told the member is bouncing.
//!
//! It needs root and Postfix installed (`.ci/run` installs it). It never
//! touches a Postfix that is configured on the machine: it runs only when
//! `/etc/postfix/main.cf` is absent, writes one naming its own directory
//! (Postfix's set-gid `postdrop` insists on that) and removes it after.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{armored_part, readable, start_with_config, Gpg};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::{Sandbox, SECURITY};

const DEFAULT_MAIN_CF: &str = "/etc/postfix/main.cf";

/// A Postfix instance in its own directory; stopped (and the default
/// main.cf it wrote removed) on drop.
struct Postfix {
    dir: PathBuf,
}

impl Postfix {
    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .args(["-c", self.conf().to_str().unwrap(), "stop"])
            .output();
        let _ = std::fs::remove_file(DEFAULT_MAIN_CF);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's Postfix snippet: main.cf lines and transport map lines.
fn readme_snippet() -> (Vec<String>, Vec<String>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```")
        .find(|b| b.contains("# /etc/postfix/main.cf"))
        .expect("the README has a Postfix snippet");
    let mut main_cf = Vec::new();
    let mut transport = Vec::new();
    let mut section = None;
    for line in block.lines() {
        match line.trim() {
            "# /etc/postfix/main.cf" => section = Some(&mut main_cf),
            "# /etc/postfix/embargod_transport" => section = Some(&mut transport),
            l if l.is_empty() || l.starts_with('#') => {}
            l => {
                if let Some(section) = section.as_mut() {
                    section.push(l.to_string());
                }
            }
        }
    }
    (main_cf, transport)
}

fn maildir(root: &Path, user: &str) -> Vec<Vec<u8>> {
    let new = root.join("example.org").join(user).join("new");
    std::fs::read_dir(&new)
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_hands_mail_to_embargod_and_delivers_its_copies() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !Path::new("/usr/sbin/postfix").exists() || !root || Path::new(DEFAULT_MAIN_CF).exists() {
        eprintln!("skipped: needs root, Debian's postfix package, and no configured Postfix (CI has all three)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("pf-")
        .tempdir_in("/tmp")
        .unwrap();
    let postfix = Postfix {
        dir: dir.path().to_path_buf(),
    };
    let conf = postfix.conf();
    let mail_root = dir.path().join("mail");
    for sub in ["conf", "queue", "data", "mail"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let (smtp_port, lmtp_port) = (free_port(), free_port());

    // embargod: LMTP on loopback, copies back through Postfix.
    let sandbox_dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(sandbox_dir.path()).unwrap();
    let gpg = Gpg::new();
    // carol's address has no mailbox: Postfix bounces her copies.
    for id in ["alice", "bob", "carol"] {
        let email = format!("{id}@example.org");
        gpg.gen_key(&format!("{id} <{email}>"), "future-default");
        sandbox
            .add_member(id, &email, ListName::Security, &gpg.cert(&email))
            .unwrap();
    }
    gpg.import(&common::list_public(&sandbox));
    // One bounce is enough for a probe.
    sandbox.extra.push_str("[bounces]\nthreshold = 1\n");
    sandbox.delivery = format!(
        "transport = \"smtp\"\nsmtp_relay = \"127.0.0.1:{smtp_port}\"\nfrom = \"{}\"\n",
        embargod::sandbox::OWNER
    );
    let config = sandbox.write_config().unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{lmtp_port}"));
    std::fs::write(&config, text).unwrap();
    let daemon = start_with_config(&config, Clock::system()).await;

    // Postfix: loopback only, the list domain local, members in Maildirs,
    // and the README's snippet for the list addresses.
    std::fs::write(
        DEFAULT_MAIN_CF,
        format!("alternate_config_directories = {}\n", conf.display()),
    )
    .unwrap();
    std::fs::copy("/etc/postfix/master.cf", conf.join("master.cf")).unwrap();
    let (snippet, transport) = readme_snippet();
    let conf_dir = conf.display().to_string();
    let mut main_cf = format!(
        "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {d}\n\
         inet_interfaces = loopback-only\ninet_protocols = ipv4\n\
         myhostname = mail.kappital.example\nmydomain = kappital.example\nmyorigin = kappital.example\n\
         mydestination = kappital.example, localhost\nmynetworks = 127.0.0.0/8\nalias_maps =\n\
         virtual_mailbox_domains = example.org\nvirtual_mailbox_base = {m}\n\
         smtpd_reject_unlisted_recipient = no\n\
         virtual_mailbox_maps = hash:{c}/vmailbox\nvirtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n\
         maillog_file_prefixes = {root}\nmaillog_file = {root}/maillog\n",
        q = dir.path().join("queue").display(),
        d = dir.path().join("data").display(),
        m = mail_root.display(),
        c = conf_dir,
        uid = uid_of("postfix"),
        gid = gid_of("postfix"),
        root = dir.path().display(),
    );
    for line in &snippet {
        main_cf.push_str(&line.replace("/etc/postfix", &conf_dir));
        main_cf.push('\n');
    }
    std::fs::write(conf.join("main.cf"), main_cf).unwrap();
    let transport: String = transport
        .iter()
        .map(|l| {
            format!(
                "{}\n",
                l.replace("[127.0.0.1]:2424", &format!("[127.0.0.1]:{lmtp_port}"))
            )
        })
        .collect();
    std::fs::write(conf.join("embargod_transport"), transport).unwrap();
    std::fs::write(
        conf.join("vmailbox"),
        "alice@example.org example.org/alice/\nbob@example.org example.org/bob/\n",
    )
    .unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postfix:postfix"])
        .arg(&mail_root)
        .arg(dir.path().join("data"))
        .status()
        .unwrap();
    assert!(chown.success());
    let c = conf_dir.as_str();
    postfix.run("postconf", &["-c", c, "-F", "*/*/chroot = n"]);
    postfix.run("postconf", &["-c", c, "-M#", "smtp/inet"]);
    postfix.run(
        "postconf",
        &[
            "-c",
            c,
            "-M",
            &format!("127.0.0.1:{smtp_port}/inet = 127.0.0.1:{smtp_port} inet n - n - - smtpd"),
        ],
    );
    postfix.run(
        "postconf",
        &[
            "-c",
            c,
            "-M",
            "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd",
        ],
    );
    for map in ["vmailbox", "embargod_transport"] {
        postfix.run("postmap", &["-c", c, &format!("{c}/{map}")]);
    }
    postfix.run("postfix", &["-c", c, "set-permissions"]);
    postfix.run("postfix", &["-c", c, "check"]);
    postfix.run("postfix", &["-c", c, "start"]);

    // A report, through Postfix's own sendmail.
    let canary = common::canary();
    let message = format!(
        "From: Finder <finder@elsewhere.example>\nTo: <{SECURITY}>\nSubject: Through Postfix\n\nDetails: {canary}\n"
    );
    let mut sendmail = Command::new("/usr/sbin/sendmail")
        .args(["-C", c, "-f", "finder@elsewhere.example", SECURITY])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sendmail
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    assert!(sendmail.wait().unwrap().success());

    // alice's and bob's Maildirs get their copy, then the notice that
    // carol is bouncing; gpg opens each.
    let mut mail = Vec::new();
    for _ in 0..300 {
        mail = ["alice", "bob"]
            .iter()
            .map(|u| maildir(&mail_root, u))
            .collect::<Vec<_>>();
        if mail.iter().all(|m| m.len() >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("maillog")).unwrap_or_default();
    assert!(
        mail.iter().all(|m| m.len() == 2),
        "two messages each; Postfix log:\n{log}"
    );
    let mut copies = 0;
    let mut told = 0;
    for message in mail.iter().flatten() {
        assert!(
            !String::from_utf8_lossy(message).contains(&canary),
            "plaintext in a Maildir"
        );
        let (plaintext, status) = gpg.decrypt(&armored_part(message));
        assert!(status.contains("GOODSIG"), "{status}");
        let text = readable(&plaintext);
        if text.contains(&canary) {
            copies += 1;
        } else if text.contains("Copies to carol <carol@example.org> bounce") {
            told += 1;
        }
    }
    assert_eq!((copies, told), (2, 2), "a copy and one notice each");
    assert!(
        log.contains("status=bounced") && log.contains("carol@example.org"),
        "Postfix bounced carol's copy:\n{log}"
    );
    let members = embargod::control::client::request(
        &daemon.config.control.socket,
        embargod::control::Command::Members,
    )
    .await
    .unwrap()
    .text()
    .unwrap();
    let carol = members.lines().find(|l| l.starts_with("carol")).unwrap();
    assert!(
        carol.contains("BOUNCING") && carol.contains("5.1.1"),
        "{members}"
    );
    assert!(
        log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{lmtp_port}")),
        "Postfix used LMTP to embargod:\n{log}"
    );
    daemon.stop().await;
    drop(postfix);
    assert!(!Path::new(DEFAULT_MAIN_CF).exists());
}

fn uid_of(user: &str) -> String {
    id(&["-u", user])
}

fn gid_of(user: &str) -> String {
    id(&["-g", user])
}

fn id(args: &[&str]) -> String {
    let output = Command::new("id").args(args).output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}
