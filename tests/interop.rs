//! The interop matrix with the real other side: reports encrypted to the
//! list and signed by GnuPG (RSA-3072), RNP (Thunderbird's OpenPGP
//! library, through its `rnp` tool; RSA), Sequoia's SOP implementation
//! `sqop` (Ed25519/Cv25519) and OpenPGP.js 6 (an RFC 9580 v6 key, SEIPDv2
//! with OCB); every member's copy opened, and the list's signature
//! verified, by that member's own implementation.
//!
//! The tools come from Debian and npm (`.ci/deps` installs them); a
//! missing one is skipped loudly.

mod common;

use std::path::Path;
use std::process::Command;

use common::{armored_part, canary, list_public, start, Gpg};
use embargod::clock::Clock;
use embargod::config::ListName;
use embargod::sandbox::{Sandbox, SECURITY};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

/// Runs `program` with `args`, feeding `stdin`; stdout and stderr.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> (Vec<u8>, String) {
    let output = common::with_stdin(Command::new(program).args(args), stdin);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{program} {args:?}: {stderr}");
    (output.stdout, stderr)
}

/// Whether `program` answers `version_arg` (SOP tools say `version`).
fn installed(program: &str, version_arg: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {program} is not installed (see .ci/deps); its column of the matrix is not checked");
    }
    found
}

/// One implementation: makes its member's key, encrypts and signs a
/// report to the list, opens a copy and checks the list's signature.
trait Side {
    fn id(&self) -> &'static str;
    fn cert(&self) -> Cert;
    fn encrypt_and_sign(&self, list_cert: &Path, entity: &[u8]) -> Vec<u8>;
    /// The plaintext of `message`, panicking unless the list signed it.
    fn open(&self, list_cert: &Path, message: &[u8]) -> Vec<u8>;
}

/// A Stateless OpenPGP (SOP) command line: Sequoia's `sqop`, or
/// OpenPGP.js through `tests/interop/openpgpjs.mjs`, which speaks the same
/// subset.
struct Sop {
    /// The program and its leading arguments.
    program: Vec<String>,
    id: &'static str,
    /// RFC 9580: its key is v6, and it writes SEIPDv2 to a list key that
    /// advertises it (checked).
    rfc9580: bool,
    dir: tempfile::TempDir,
}

impl Sop {
    fn new(program: Vec<String>, id: &'static str, rfc9580: bool) -> Sop {
        let sop = Sop {
            program,
            id,
            rfc9580,
            dir: tempfile::tempdir().unwrap(),
        };
        let uid = format!("{id} <{id}@example.org>");
        let (key, _) = sop.run(&["generate-key", &uid], b"");
        std::fs::write(sop.key(), key).unwrap();
        sop
    }
    fn key(&self) -> String {
        self.dir.path().join("key").display().to_string()
    }
    fn run(&self, args: &[&str], stdin: &[u8]) -> (Vec<u8>, String) {
        let mut all: Vec<&str> = self.program[1..].iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(&self.program[0], &all, stdin)
    }
}

impl Side for Sop {
    fn id(&self) -> &'static str {
        self.id
    }
    fn cert(&self) -> Cert {
        let key = std::fs::read(self.key()).unwrap();
        let cert = Cert::from_bytes(&self.run(&["extract-cert"], &key).0).unwrap();
        if self.rfc9580 {
            assert_eq!(cert.primary_key().key().version(), 6, "an RFC 9580 v6 key");
        }
        cert
    }
    fn encrypt_and_sign(&self, list_cert: &Path, entity: &[u8]) -> Vec<u8> {
        let list = list_cert.display().to_string();
        let armored = self
            .run(&["encrypt", "--sign-with", &self.key(), &list], entity)
            .0;
        if self.rfc9580 {
            // RFC 9580 to a key that advertises it: SEIPDv2, AEAD (OCB).
            let message = sequoia_openpgp::PacketPile::from_bytes(&armored).unwrap();
            assert!(
                message
                    .descendants()
                    .any(|p| matches!(p, sequoia_openpgp::Packet::SEIP(s) if s.version() == 2)),
                "{} wrote SEIPDv2",
                self.id
            );
        }
        armored
    }
    fn open(&self, list_cert: &Path, message: &[u8]) -> Vec<u8> {
        let verifications = self.dir.path().join("verifications");
        let _ = std::fs::remove_file(&verifications);
        let list = list_cert.display().to_string();
        let out = verifications.display().to_string();
        let (plaintext, _) = self.run(
            &[
                "decrypt",
                "--verifications-out",
                &out,
                "--verify-with",
                &list,
                &self.key(),
            ],
            message,
        );
        let verified = std::fs::read_to_string(&verifications).unwrap();
        assert!(
            !verified.trim().is_empty(),
            "{}: no good list signature",
            self.id
        );
        plaintext
    }
}

struct Rnp {
    home: tempfile::TempDir,
}

impl Rnp {
    fn new(list_cert: &Path) -> Rnp {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().display().to_string();
        run(
            "rnpkeys",
            &[
                "--homedir",
                &dir,
                "--generate-key",
                "--userid",
                "rob <rob@example.org>",
                "--password",
                "",
            ],
            b"",
        );
        run(
            "rnpkeys",
            &[
                "--homedir",
                &dir,
                "--import",
                &list_cert.display().to_string(),
            ],
            b"",
        );
        Rnp { home }
    }
    fn dir(&self) -> String {
        self.home.path().display().to_string()
    }
}

impl Side for Rnp {
    fn id(&self) -> &'static str {
        "rob"
    }
    fn cert(&self) -> Cert {
        let dir = self.dir();
        let (armored, _) = run(
            "rnpkeys",
            &["--homedir", &dir, "--export-key", "rob@example.org"],
            b"",
        );
        Cert::from_bytes(&armored).unwrap()
    }
    fn encrypt_and_sign(&self, _list_cert: &Path, entity: &[u8]) -> Vec<u8> {
        let dir = self.dir();
        let input = self.home.path().join("entity");
        std::fs::write(&input, entity).unwrap();
        run(
            "rnp",
            &[
                "--homedir",
                &dir,
                "--encrypt",
                "--sign",
                "-r",
                "security@kappital.example",
                "-u",
                "rob@example.org",
                "--armor",
                "--password",
                "",
                "--output",
                "-",
                &input.display().to_string(),
            ],
            b"",
        )
        .0
    }
    fn open(&self, _list_cert: &Path, message: &[u8]) -> Vec<u8> {
        let dir = self.dir();
        let input = self.home.path().join("copy.asc");
        std::fs::write(&input, message).unwrap();
        let (plaintext, status) = run(
            "rnp",
            &[
                "--homedir",
                &dir,
                "--decrypt",
                "--password",
                "",
                "--output",
                "-",
                &input.display().to_string(),
            ],
            b"",
        );
        assert!(status.contains("Good signature"), "rnp: {status}");
        plaintext
    }
}

/// The OpenPGP.js command-line face, `tests/interop/openpgpjs.mjs`.
fn openpgpjs() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/openpgpjs.mjs")
        .display()
        .to_string()
}

fn openpgpjs_installed() -> bool {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node_modules/openpgp");
    let found = installed("node", "--version") && modules.is_dir();
    if !found {
        eprintln!("SKIPPED: OpenPGP.js is not installed (.ci/deps runs npm ci in tests/interop)");
    }
    found
}

/// GnuPG 2.2 for the third column.
struct GnuPg {
    gpg: Gpg,
}

impl Side for GnuPg {
    fn id(&self) -> &'static str {
        "gary"
    }
    fn cert(&self) -> Cert {
        self.gpg.cert("gary@example.org")
    }
    fn encrypt_and_sign(&self, _list_cert: &Path, entity: &[u8]) -> Vec<u8> {
        self.gpg.ok(
            &[
                "--trust-model",
                "always",
                "--armor",
                "--sign",
                "--encrypt",
                "--local-user",
                "gary@example.org",
                "--recipient",
                "security@kappital.example",
            ],
            entity,
        )
    }
    fn open(&self, _list_cert: &Path, message: &[u8]) -> Vec<u8> {
        let (plaintext, status) = self.gpg.decrypt(message);
        assert!(status.contains("GOODSIG"), "gpg: {status}");
        plaintext
    }
}

/// RFC 3156 PGP/MIME around an armored OpenPGP message.
fn pgp_mime(from: &str, armored: &[u8]) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{SECURITY}>\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--e--\r\n",
        String::from_utf8_lossy(armored)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_from_rnp_sqop_and_gnupg_reach_each_member_readable_by_their_own_tool() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    let list_cert = dir.path().join("list.asc");
    std::fs::write(&list_cert, list_public(&sandbox)).unwrap();

    let mut sides: Vec<Box<dyn Side>> = Vec::new();
    let gpg = Gpg::new();
    gpg.gen_key("gary <gary@example.org>", "rsa3072");
    gpg.import(&list_public(&sandbox));
    sides.push(Box::new(GnuPg { gpg }));
    if installed("sqop", "version") {
        sides.push(Box::new(Sop::new(vec!["sqop".into()], "sam", false)));
    }
    if installed("rnp", "--version") {
        sides.push(Box::new(Rnp::new(&list_cert)));
    }
    if openpgpjs_installed() {
        // OpenPGP.js 6 (npm `openpgp`, under Node) with an RFC 9580 v6 key.
        let node = vec!["node".into(), openpgpjs()];
        sides.push(Box::new(Sop::new(node, "olga", true)));
    }
    for side in &sides {
        let id = side.id();
        sandbox
            .add_member(
                id,
                &format!("{id}@example.org"),
                ListName::Security,
                &side.cert(),
            )
            .unwrap();
    }
    let daemon = start(&sandbox, Clock::system()).await;

    let mut matrix = Vec::new();
    for sender in &sides {
        let tag = canary();
        let entity = format!("Content-Type: text/plain; charset=utf-8\r\n\r\nReport {tag}\r\n");
        let armored = sender.encrypt_and_sign(&list_cert, entity.as_bytes());
        let from = format!("{}@example.org", sender.id());
        let message = pgp_mime(&from, &armored);
        assert_eq!(daemon.send(&from, &[SECURITY], &message).await[0].code, 250);
        daemon.settle().await;
        for receiver in &sides {
            let to = format!("{}@example.org", receiver.id());
            let copy = common::outbox(&daemon.outbox)
                .into_iter()
                .find(|m| {
                    m.to == [to.clone()] && !m.bytes.is_empty() && {
                        let text = String::from_utf8_lossy(
                            &receiver.open(&list_cert, &armored_part(&m.bytes)),
                        )
                        .into_owned();
                        text.contains(&tag)
                    }
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} got no readable copy of {}'s report",
                        receiver.id(),
                        sender.id()
                    )
                });
            let text =
                String::from_utf8_lossy(&receiver.open(&list_cert, &armored_part(&copy.bytes)))
                    .into_owned();
            assert!(
                text.contains("Encryption: encrypted to the list key"),
                "{text}"
            );
            assert!(
                text.contains(&format!("good signature by {}", sender.id())),
                "{text}"
            );
            matrix.push(format!("{} -> {}: ok", sender.id(), receiver.id()));
        }
    }
    println!("interop matrix:\n{}", matrix.join("\n"));
    assert_eq!(matrix.len(), sides.len() * sides.len());
    daemon.stop().await;
}
