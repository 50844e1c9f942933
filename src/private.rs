//! Files and folders only the user can read: the state folder, the API token file, the
//! opt-in token file store, and (unless `results_private = false`) the results folder,
//! job folders and their manifests.

use std::io::Write;
use std::path::Path;

/// Creates `path` as a new file (never opens an existing one) that only its owner can
/// read and write: mode 0600 from the `open` call itself, no chmod-after-write window.
#[cfg(unix)]
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates `path` as a new file (never opens an existing one).
#[cfg(not(unix))]
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Creates `dir` (and missing parents) with mode 0700, or makes an existing one 0700.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Writes `bytes` to `path` (replacing it): owner-only when `private`, else with the
/// umask's permissions.
pub fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    if !private {
        return std::fs::write(path, bytes);
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = create_file(path)?;
    f.write_all(bytes)
}

/// Creates `dir` and missing parents: owner-only (0700) when `private`.
pub fn create_dir(dir: &Path, private: bool) -> std::io::Result<()> {
    if private {
        ensure_dir(dir)
    } else {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_things_are_owner_only_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        let dir = root.path().join("a/b");
        create_dir(&dir, true).unwrap();
        write_file(&dir.join("job.json"), b"{}", true).unwrap();
        write_file(&dir.join("job.json"), b"{}", true).unwrap();
        let open = root.path().join("open");
        create_dir(&open, false).unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir.join("job.json")), 0o600);
        assert_eq!(mode(&open), 0o777);
        // An existing folder others can read is made private.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }
}
