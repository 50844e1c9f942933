//! Files and folders only the user can read: the state folder, the API token file, the
//! discovery file, the opt-in token file store, and (unless `results_private = false`)
//! the results folder, job folders and their manifests.
//!
//! One policy for every private folder ([`ensure_dir`]), whoever asks:
//!
//! - a missing folder is created, with its missing parents, with mode 0700 from the
//!   `mkdir` call itself (whatever the umask);
//! - an existing folder is judged where it really is (a symbolic link is followed, so a
//!   state folder moved to another disk and linked back keeps working): it must be a
//!   folder owned by the user running eodispatch, else it is refused, because its owner
//!   could read or replace what we put in it and we could not fix its mode;
//! - an existing folder of ours that the group or others may read, enter or write is
//!   made 0700 (e.g. one made by hand under a umask of 002, as Ubuntu sets). Its files
//!   are judged by whoever reads them (the API token and the token store refuse a file
//!   others may read).
//!
//! Private files are created new with mode 0600 ([`create_file`]): never
//! chmod-after-write.

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

/// Makes `dir` a private folder under the policy of this module: created 0700 (with
/// missing parents) when missing; refused (`PermissionDenied`, saying why) when it is
/// not a folder or belongs to another user; made 0700 when the group or others have
/// any access to it.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::{Error, ErrorKind};
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                {
                    Ok(()) => {}
                    // Created meanwhile by someone else: judged below like any other.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        let meta = std::fs::metadata(dir)?;
        if !meta.is_dir() {
            return Err(Error::other("it exists and is not a folder"));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "it belongs to another user (uid {}, not {me}), who could read or \
                     replace what is kept there; choose a folder of your own",
                    meta.uid()
                ),
            ));
        }
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

/// Replaces `path` with a file holding `bytes` in one step, private from creation: a
/// new 0600 temporary file in the same folder is written and synced, renamed over
/// `path`, and the folder is synced. A reader sees the old content or the new one,
/// never a part; a crash leaves at most a `.<name>.<random>.tmp` file.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Flushes a folder's entries (a rename or a new link in it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and missing parents: a private folder ([`ensure_dir`]) when `private`,
/// else with the umask's permissions.
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
        replace_file(&dir.join("daemon.json"), b"{}").unwrap();
        let open = root.path().join("open");
        create_dir(&open, false).unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir.join("job.json")), 0o600);
        assert_eq!(mode(&dir.join("daemon.json")), 0o600);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary left"
        );
        assert_eq!(mode(&open), 0o777);
        // An existing folder others can read, or even write, is made private.
        for loose in [0o755, 0o775, 0o777] {
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(loose)).unwrap();
            ensure_dir(&open).unwrap();
            assert_eq!(mode(&open), 0o700);
        }
    }

    #[test]
    fn links_are_followed_and_strangers_refused() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        ensure_dir(&link).unwrap();
        assert_eq!(
            mode(&real),
            0o700,
            "the folder the link points to is judged"
        );
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(ensure_dir(&file).is_err());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // `/` belongs to root: never ours to use as a private folder.
            let e = ensure_dir(Path::new("/")).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("another user"), "{e}");
        }
    }
}
