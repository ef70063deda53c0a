//! The keys the daemon works with, loaded once from the config: the list
//! key and every member's pinned certificate (or the reason it is unusable).

use std::collections::BTreeMap;

use sequoia_openpgp::Cert;

use crate::config::Config;
use crate::pgp::open::Signers;
use crate::pgp::{load_member_cert, KeyProblem, ListKey, ListKeyError};

/// Loaded keys. A member whose certificate cannot be read stays listed
/// with the problem, so fan-out can tell the PST instead of silently
/// skipping them.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The list key: signs copies, decrypts reports.
    pub list_key: ListKey,
    /// Each member's pinned certificate, or why it cannot be used.
    pub members: BTreeMap<String, Result<Cert, KeyProblem>>,
    /// Member certificates for signature checks.
    pub signers: Signers,
}

impl Keys {
    /// Loads the list key (which must work) and every member certificate
    /// (which may not).
    pub fn load(config: &Config) -> Result<Keys, ListKeyError> {
        crate::fsutil::check_private(&config.list_key).map_err(|reason| {
            ListKeyError::Unusable {
                file: config.list_key.display().to_string(),
                reason,
            }
        })?;
        let list_key = ListKey::load(&config.list_key)?;
        let members: BTreeMap<_, _> = config
            .members
            .values()
            .map(|member| (member.id.clone(), load_member_cert(member)))
            .collect();
        Ok(Keys {
            list_key,
            members,
            signers: Signers::new(Vec::new()),
        }
        .with_signers())
    }

    /// These keys with the signature checkers made from `members` as they
    /// are now (after a member's certificate changed).
    pub fn with_signers(mut self) -> Keys {
        self.signers = Signers::new(
            self.members
                .iter()
                .filter_map(|(id, cert)| Some((id.clone(), cert.as_ref().ok()?.clone())))
                .collect(),
        );
        self
    }

    /// The certificate of `member`, or why there is none.
    pub fn member(&self, member: &str) -> Result<&Cert, KeyProblem> {
        match self.members.get(member) {
            Some(Ok(cert)) => Ok(cert),
            Some(Err(problem)) => Err(problem.clone()),
            None => Err(KeyProblem::Unreadable {
                file: "(none)".into(),
                reason: format!("member {member} is not configured"),
            }),
        }
    }
}
