//! Small file-system checks shared by the key and store code.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Fails when `file` exists and its group or others may access it: the
/// list key and the store key must be the service user's alone. A
/// missing file is left for the caller to report.
pub fn check_private(file: &Path) -> Result<(), String> {
    match std::fs::metadata(file) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                Err(format!(
                    "mode {mode:04o} lets other users read it; run `chmod 600 {}`",
                    file.display()
                ))
            } else {
                Ok(())
            }
        }
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_access_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private(&file).unwrap_err().contains("0644"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&file).is_ok());
    }
}
