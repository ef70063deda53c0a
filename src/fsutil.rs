//! Small file-system helpers: private-file checks, Unix sockets, atomic
//! replacement.

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

/// Binds a Unix socket at `path` with `mode`, replacing a stale socket
/// left by an earlier run; any other file in the way is an error. `what`
/// names the socket in errors ("control socket").
pub fn bind_unix_socket(
    path: &Path,
    mode: u32,
    what: &str,
) -> std::io::Result<tokio::net::UnixListener> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::FileTypeExt;
    let context = |e: Error| Error::new(e.kind(), format!("{what} {}: {e}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(context(Error::new(
                ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        std::fs::remove_file(path).map_err(context)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(context)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(context)?;
    Ok(listener)
}

/// Replaces `file` with `bytes` atomically: written to a temporary file in
/// the same folder, synced, given `mode` (or `file`'s present permissions
/// when `None`), then renamed over it. Readers see the old or the new
/// content, never part of it.
pub fn replace_file(file: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match mode {
        Some(mode) => tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?,
        None => {
            if let Ok(meta) = std::fs::metadata(file) {
                tmp.as_file().set_permissions(meta.permissions())?;
            }
        }
    }
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
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
