//! The local API token: 256 random bits, hex-encoded, created on first start in a file
//! of mode 0600 (created that way with `O_EXCL`, never chmod-after-write) inside the
//! state folder, a private folder (0700, ours: [`crate::private::ensure_dir`]). The daemon refuses to start when the file is readable by anyone else;
//! the CLI and the QGIS plugin read the same file.
//!
//! The comparison with a presented token is constant-time ([`ApiToken::matches`]).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use subtle::ConstantTimeEq;

/// Errors around the token file.
#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    /// The file or its folder could not be created or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is readable or writable by the group or others.
    #[error(
        "{path} has mode {mode:o}, so other users can read the API token; \
         run `chmod 600 {path}` (or delete it to get a new token) and start again"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a token.
    #[error("{path} does not contain a valid API token; delete it to get a new one")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// The API token; `Debug` never shows it.
#[derive(Clone)]
pub struct ApiToken(String);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

impl ApiToken {
    /// The token text, for clients that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // `ct_eq` on slices of different length returns false without leaking where
        // they differ; the length of our token is public (64).
        self.0.as_bytes().ct_eq(presented).into()
    }
}

/// Reads the token at `path`, creating it (and a 0700 parent folder) on first start.
///
/// A new token file appears complete or not at all: the token is written and synced to a
/// private temporary file first, which is then hard-linked to `path` (failing, not
/// replacing, if another process created the token meanwhile). A reader never sees an
/// empty file, and a crash never leaves one.
pub fn load_or_create(path: &Path) -> Result<ApiToken, ApiTokenError> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    if path.exists() {
        return read(path);
    }
    let io = |action, source| ApiTokenError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "api-token".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = crate::private::create_file(&tmp)?;
        f.write_all(fresh.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write", e));
    }
    crate::failpoint::failpoint("token:written");
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = crate::private::sync_dir(dir);
            }
            Ok(ApiToken(fresh))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io("cannot create", e)),
    }
}

/// Reads an existing token file, refusing one that others can read.
pub fn read(path: &Path) -> Result<ApiToken, ApiTokenError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ApiTokenError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiTokenError::Malformed {
            path: path.to_path_buf(),
        });
    }
    Ok(ApiToken(t.to_string()))
}

/// Makes the token file's folder private (the policy of [`crate::private::ensure_dir`]).
fn ensure_private_dir(dir: &Path) -> Result<(), ApiTokenError> {
    crate::private::ensure_dir(dir).map_err(|source| ApiTokenError::Io {
        action: "cannot use as a private folder",
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ApiTokenError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| ApiTokenError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ApiTokenError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ApiTokenError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/api-token");
        let t1 = load_or_create(&path).unwrap();
        assert_eq!(t1.expose().len(), 64);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let t2 = load_or_create(&path).unwrap();
        assert_eq!(t1.expose(), t2.expose());
        assert!(t1.matches(t2.expose().as_bytes()));
        assert!(!t1.matches(b"nope"));
        assert!(!format!("{t1:?}").contains(t1.expose()));
    }

    #[test]
    fn readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(
            matches!(e, ApiTokenError::Insecure { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"));
    }

    #[test]
    fn malformed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read(&path), Err(ApiTokenError::Malformed { .. })));
    }
}
