//! Atomic publication of a staged job folder into the results folder.
//!
//! The staged folder lives in `results_dir/.incoming/<uuid>/` (the same filesystem, so
//! `rename` is atomic). [`publish`] fsyncs every file and the folder, then renames it
//! to `results_dir/<name>` without ever replacing an existing entry (Linux
//! `renameat2(RENAME_NOREPLACE)`; elsewhere a check before `rename`): if the name is
//! taken, `-2`, `-3`, ... is appended. Finally it fsyncs `results_dir`, so after a
//! crash the folder is either fully there or not there at all.

use std::io;
use std::path::{Path, PathBuf};

/// Name of the hidden staging folder inside `results_dir`.
pub const INCOMING: &str = ".incoming";

/// Tries for a free name before giving up.
const MAX_SUFFIX: u32 = 1000;

/// fsyncs a folder (its entries: names created or renamed in it).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// fsyncs each regular file directly in `dir`, then `dir` itself.
pub fn fsync_folder(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

/// Renames `from` to `to` unless `to` exists (then `Err` of kind `AlreadyExists`).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a = CString::new(from.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let b = CString::new(to.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: both pointers are valid NUL-terminated strings for the duration
        // of the call; AT_FDCWD with absolute or relative paths is the documented use.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // Filesystems without RENAME_NOREPLACE: fall back to check + rename.
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the target exists",
        ));
    }
    std::fs::rename(from, to)
}

/// Publishes `staged` as `results_dir/<wanted>` (or `<wanted>-N` if taken); returns
/// the final path.
pub fn publish(staged: &Path, results_dir: &Path, wanted: &str) -> io::Result<PathBuf> {
    fsync_folder(staged)?;
    for n in 1..=MAX_SUFFIX {
        let name = if n == 1 {
            wanted.to_string()
        } else {
            format!("{wanted}-{n}")
        };
        let target = results_dir.join(&name);
        match rename_noreplace(staged, &target) {
            Ok(()) => {
                fsync_dir(results_dir)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free folder name for {wanted} in {}",
            results_dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_clobbers() {
        let root = tempfile::tempdir().unwrap();
        let results = root.path();
        std::fs::create_dir_all(results.join("job_1")).unwrap();
        std::fs::write(results.join("job_1/keep.txt"), b"mine").unwrap();
        // An empty folder would be replaced by a plain rename(2): must not be.
        std::fs::create_dir_all(results.join("job_1-2")).unwrap();
        let staged = results.join(".incoming/u/files");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("a.tif"), b"data").unwrap();
        let got = publish(&staged, results, "job_1").unwrap();
        assert_eq!(got, results.join("job_1-3"));
        assert_eq!(
            std::fs::read(results.join("job_1/keep.txt")).unwrap(),
            b"mine"
        );
        assert_eq!(std::fs::read(got.join("a.tif")).unwrap(), b"data");
        assert!(!staged.exists());
    }
}
