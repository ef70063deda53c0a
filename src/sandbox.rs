//! A throwaway installation in one folder: list key, store key, member
//! keys and a config file using the file transport. `embargod demo` runs
//! in one; the integration tests and benchmarks build theirs the same way.

pub mod dovecot;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sequoia_openpgp::serialize::Serialize;
use sequoia_openpgp::Cert;

use crate::config::ListName;
use crate::mark::index::CopyInfo;
use crate::mime::inbound::{unwrap, UnwrapError, Unwrapped};
use crate::pgp::open::Signers;
use crate::pgp::{generate_cert, ListKey};
use crate::store::{Store, StoreError, StoreKey, Transaction};

/// The sample project's name.
pub const PROJECT: &str = "Kappital";
/// The security list's address.
pub const SECURITY: &str = "security@kappital.example";
/// The distributors list's address.
pub const DISTRIBUTORS: &str = "distributors@kappital.example";
/// The announce list's address.
pub const ANNOUNCE: &str = "announce@kappital.example";
/// The daemon's own envelope sender (`delivery.from`).
pub const OWNER: &str = "security-owner@kappital.example";

/// A member of the sandbox's lists.
#[derive(Debug, Clone)]
pub struct SandboxMember {
    /// The member's id.
    pub id: String,
    /// The member's address.
    pub email: String,
    /// The list they are on; `None` for someone with a key on no list
    /// (a Fix Team engineer, say).
    pub list: Option<ListName>,
    /// Public certificate (as written to the key file).
    pub cert: Cert,
}

/// The folder and what is in it.
pub struct Sandbox {
    /// The folder: keys, config, store and outbox.
    pub dir: PathBuf,
    /// The list key made for it.
    pub list_key: ListKey,
    /// Its members, in the order added.
    pub members: Vec<SandboxMember>,
    /// The `[delivery]` table written by [`Sandbox::write_config`].
    pub delivery: String,
    /// Extra TOML appended to the `[lmtp]` table.
    pub lmtp_extra: String,
    /// Extra TOML appended to the `[lists.security]` table (`marks = …`).
    pub security_extra: String,
    /// Keys of the `[embargo]` table. By default `min_notice = "0s"`:
    /// test embargoes last minutes, not the policy's 7 days.
    pub embargo: String,
    /// Extra TOML tables appended at the end (`[limits]`, say).
    pub extra: String,
}

impl Sandbox {
    /// Creates the list key and the store key in `dir/keys`.
    pub fn new(dir: &Path) -> io::Result<Sandbox> {
        let list_key = ListKey::create(
            &dir.join("keys/list.key"),
            &format!("{PROJECT} security list"),
            SECURITY,
        )
        .map_err(io::Error::other)?;
        StoreKey::create(&dir.join("keys/store.key"))?;
        Ok(Sandbox {
            dir: dir.to_path_buf(),
            list_key,
            members: Vec::new(),
            delivery: format!("transport = \"file\"\nfile_dir = \"outbox\"\nfrom = \"{OWNER}\"\n"),
            lmtp_extra: String::new(),
            security_extra: String::new(),
            embargo: "min_notice = \"0s\"\n".into(),
            extra: String::new(),
        })
    }

    /// Adds a member with a fresh Sequoia key; returns the secret key.
    pub fn generate_member(&mut self, id: &str, list: ListName) -> io::Result<Cert> {
        let email = format!("{id}@example.org");
        let secret = generate_cert(&format!("{id} <{email}>")).map_err(io::Error::other)?;
        self.add_member(id, &email, list, &secret)?;
        Ok(secret)
    }

    /// Adds a member whose certificate was made elsewhere (by `gpg`, say).
    pub fn add_member(
        &mut self,
        id: &str,
        email: &str,
        list: ListName,
        cert: &Cert,
    ) -> io::Result<()> {
        self.add(id, email, Some(list), cert)
    }

    /// Adds someone with a key who is on no list.
    pub fn add_loose_member(&mut self, id: &str, email: &str, cert: &Cert) -> io::Result<()> {
        self.add(id, email, None, cert)
    }

    fn add(
        &mut self,
        id: &str,
        email: &str,
        list: Option<ListName>,
        cert: &Cert,
    ) -> io::Result<()> {
        let public = cert.clone().strip_secret_key_material();
        let mut armored = Vec::new();
        public
            .armored()
            .serialize(&mut armored)
            .map_err(io::Error::other)?;
        std::fs::write(self.dir.join(format!("keys/{id}.asc")), armored)?;
        self.members.push(SandboxMember {
            id: id.into(),
            email: email.into(),
            list,
            cert: public,
        });
        Ok(())
    }

    /// Writes `embargod.toml`: LMTP on an ephemeral loopback port, the
    /// store in `state/`, the members on their lists. Returns its path.
    pub fn write_config(&self) -> io::Result<PathBuf> {
        let ids = |list: ListName| {
            self.members
                .iter()
                .filter(|m| m.list == Some(list))
                .map(|m| format!("\"{}\"", m.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "[project]\nname = \"{PROJECT}\"\ncase_prefix = \"KAP\"\n\n\
             [store]\npath = \"state\"\n\n\
             [lmtp]\nlisten = [\"127.0.0.1:0\"]\n{}\n\
             [delivery]\n{}\n\
             [list_key]\nsecret = \"keys/list.key\"\n\n\
             [control]\nsocket = \"control.sock\"\n\n\
             [lists.security]\naddress = \"{SECURITY}\"\nmembers = [{}]\n{}\n\
             [lists.distributors]\naddress = \"{DISTRIBUTORS}\"\nmembers = [{}]\n\n\
             [lists.announce]\naddress = \"{ANNOUNCE}\"\n\n\
             [embargo]\n{}",
            self.lmtp_extra,
            self.delivery,
            ids(ListName::Security),
            self.security_extra,
            ids(ListName::Distributors),
            self.embargo,
        );
        for member in &self.members {
            text.push_str(&format!(
                "\n[[member]]\nid = \"{}\"\nemail = \"{}\"\nkey = \"keys/{}.asc\"\nfingerprint = \"{}\"\n",
                member.id,
                member.email,
                member.id,
                member.cert.fingerprint().to_hex()
            ));
        }
        text.push('\n');
        text.push_str(&self.extra);
        let file = self.dir.join("embargod.toml");
        std::fs::write(&file, text)?;
        Ok(file)
    }

    /// The configuration of a fresh sandbox, loaded: for unit tests that
    /// need a valid [`Config`].
    #[cfg(test)]
    pub fn config() -> crate::config::Config {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let sandbox = Sandbox::new(dir.path()).expect("a sandbox");
        let file = sandbox.write_config().expect("its config");
        crate::config::Config::load(&file).expect("the sandbox config loads")
    }

    /// Where the file transport writes.
    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.join("outbox")
    }
}

/// A message the file transport wrote.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    /// The `.eml` file.
    pub eml: PathBuf,
    /// Envelope sender, from the `.json` beside it.
    pub from: Option<String>,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The message as written.
    pub bytes: Vec<u8>,
}

/// Every complete message in a file-transport folder (its `.json`
/// envelope is written last), sorted by file name.
pub fn read_outbox(dir: &Path) -> io::Result<Vec<OutboxMail>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let json = entry?.path();
        if json.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        let eml = json.with_extension("eml");
        out.push(OutboxMail {
            bytes: std::fs::read(&eml)?,
            eml,
            from: envelope["reverse_path"].as_str().map(str::to_string),
            to: envelope["forward_path"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.eml.cmp(&b.eml));
    Ok(out)
}

/// Opens a delivered copy with a member's secret key and checks the list
/// signature: the decrypted inner entity, and the signatures found.
pub fn open_copy(
    copy: &[u8],
    member_secret: &Cert,
    list: &ListKey,
) -> Result<Unwrapped, UnwrapError> {
    let signers = Signers::new(vec![(
        "list".into(),
        list.cert().clone().strip_secret_key_material(),
    )]);
    unwrap(copy, member_secret, &signers, 1 << 30, SystemTime::now())
}

/// Records in `store` what tracing knows of `message` (the keyed shingles
/// of its prose, see [`crate::mark::text_shingles`]) sent
/// as `copies` marked copies to `member000`, `member001`, …: copy ids
/// `message * copies + 1` onward, case `KAP-2026-<message + 1>`. Nothing is
/// sealed or sent; the trace benchmark and fuzz target build their
/// ledgers this way.
pub fn index_copies(
    store: &Store,
    message: u64,
    shingles: Vec<u64>,
    copies: u64,
) -> Result<(), StoreError> {
    let mut batch = Transaction::new();
    crate::mark::index::put_shingles(&mut batch, message, &shingles);
    for i in 0..copies {
        let copy = CopyInfo {
            copy_id: message * copies + i + 1,
            message,
            member: format!("member{i:03}"),
            email: format!("member{i:03}@example.org"),
            list: ListName::Distributors,
            case: Some(format!("KAP-2026-{:04}", message + 1)),
        };
        crate::mark::index::put_copy(&mut batch, &copy);
    }
    store.apply(batch)
}
