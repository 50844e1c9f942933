//! The token store: where backend login tokens (refresh tokens) are kept between runs.
//!
//! By default tokens live in the OS keyring (Secret Service on Linux, via the `keyring`
//! crate), one entry per provider: service `eodispatch`, user `"<issuer> <client_id>"`.
//! Every keyring call runs on a blocking thread under a timeout ([`KEYRING_TIMEOUT`]), so a
//! locked or hung Secret Service (waiting for an unlock prompt nobody sees) becomes an error
//! instead of a hung daemon. No usable keyring is an error with a remedy
//! ([`BackendTokenStoreError::Unavailable`]); there is never a silent plaintext fallback.
//!
//! A plain JSON file store exists only when the configuration asks for it
//! (`token_store = "file"`). Its file is private from creation: it is always written as a
//! new temporary file opened with `O_CREAT | O_EXCL` and mode 0600 in the same folder
//! (itself created with mode 0700), synced, renamed over the old file, and the folder is
//! synced; there is no chmod-after-write window. A file readable by the group or others is
//! refused.
//!
//! Secrets are [`SecretString`]s, whose `Debug` prints `[REDACTED]`; no error message of
//! this module contains one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The keyring service name of every entry.
pub const KEYRING_SERVICE: &str = "eodispatch";

/// How long one keyring call may take before it counts as hung.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefix of the keyring user of the entry [`BackendTokenStore::probe`] writes, reads and deletes
/// (followed by a random suffix).
const PROBE_USER: &str = "eodispatch-probe";

/// Version of the file store's JSON document.
const FILE_VERSION: u32 = 1;

/// Which kind of store holds the tokens (reported as `token_store` in `/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The OS keyring (Secret Service, macOS Keychain, Windows Credential Manager).
    Keyring,
    /// A 0600 JSON file, only when the configuration asks for it.
    File,
}

impl StoreKind {
    /// `"keyring"` or `"file"`, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Keyring => "keyring",
            StoreKind::File => "file",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token is stored under: the OIDC issuer and the client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    issuer: String,
    client_id: String,
}

impl TokenKey {
    /// The key for `issuer` (trailing slashes stripped, so `https://id.example/` and
    /// `https://id.example` are one key) and `client_id`.
    pub fn new(issuer: &str, client_id: &str) -> TokenKey {
        TokenKey {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    /// The issuer, without trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The keyring user (and file store key): `"<issuer> <client_id>"`.
    pub fn user(&self) -> String {
        format!("{} {}", self.issuer, self.client_id)
    }
}

pub use crate::credentials::SecretString;

/// Why the token store failed. No message contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackendTokenStoreError {
    /// No usable OS keyring: no D-Bus session, no Secret Service, or it refused access.
    #[error(
        "no usable OS keyring (Secret Service): install and unlock gnome-keyring \
         (`apt install gnome-keyring`) or KeePassXC's Secret Service, or set \
         `token_store = \"file\"` in config.toml to keep tokens in a 0600 file instead \
         (cause: {reason})"
    )]
    Unavailable {
        /// What the keyring said.
        reason: String,
    },
    /// The keyring did not answer in time (typically locked, waiting for an unlock prompt).
    #[error(
        "the OS keyring (Secret Service) did not answer within {timeout:?}; it is probably \
         locked and waiting for an unlock prompt: unlock it (log in to the desktop session, \
         or `gnome-keyring-daemon --unlock`), or set `token_store = \"file\"` in config.toml \
         to keep tokens in a 0600 file instead"
    )]
    Timeout {
        /// The time allowed.
        timeout: Duration,
    },
    /// Reading or writing the token file (or its folder) failed.
    #[error("cannot {action} {path}: {source}")]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The token file is readable or writable by the group or others.
    #[error(
        "{path} has mode {mode:o}, so other users can read or replace backend login tokens; \
         run `chmod go-rwx {path}` (and log in again if others may have read them)"
    )]
    Insecure {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A stored value is not what the store writes.
    #[error("{location} is not a valid token store ({reason}); remove it and log in again")]
    Malformed {
        /// The file, or the keyring entry.
        location: String,
        /// What is wrong (never the stored value).
        reason: String,
    },
}

/// Where backend login tokens are kept: the OS keyring, or (opt-in) a private file.
#[derive(Debug, Clone)]
pub struct BackendTokenStore {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Keyring {
        timeout: Duration,
    },
    File {
        path: Arc<PathBuf>,
        /// Serialises read-modify-write of the file within the process.
        lock: Arc<tokio::sync::Mutex<()>>,
    },
}

/// The file store's document.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: u32,
    /// `"<issuer> <client_id>"` → token.
    tokens: BTreeMap<String, String>,
}

impl BackendTokenStore {
    /// The OS keyring store (the default).
    pub fn keyring() -> BackendTokenStore {
        BackendTokenStore {
            inner: Inner::Keyring {
                timeout: KEYRING_TIMEOUT,
            },
        }
    }

    /// The plain file store at `path`, for when the configuration asks for it. Nothing is
    /// created until the first [`put`](Self::put).
    pub fn file(path: PathBuf) -> BackendTokenStore {
        BackendTokenStore {
            inner: Inner::File {
                path: Arc::new(path),
                lock: Arc::new(tokio::sync::Mutex::new(())),
            },
        }
    }

    #[cfg(test)]
    fn keyring_with_timeout(timeout: Duration) -> BackendTokenStore {
        BackendTokenStore {
            inner: Inner::Keyring { timeout },
        }
    }

    /// Which kind of store this is.
    pub fn kind(&self) -> StoreKind {
        match self.inner {
            Inner::Keyring { .. } => StoreKind::Keyring,
            Inner::File { .. } => StoreKind::File,
        }
    }

    /// The token stored under `key`, if any.
    pub async fn get(
        &self,
        key: &TokenKey,
    ) -> Result<Option<SecretString>, BackendTokenStoreError> {
        match &self.inner {
            Inner::Keyring { timeout } => {
                let user = key.user();
                keyring_call(*timeout, move || {
                    match keyring::Entry::new(KEYRING_SERVICE, &user)?.get_password() {
                        Ok(secret) => Ok(Some(SecretString::new(secret))),
                        Err(keyring::Error::NoEntry) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await
            }
            Inner::File { path, lock } => {
                let _guard = lock.lock().await;
                let path = Arc::clone(path);
                let user = key.user();
                file_call(move || Ok(load(&path)?.tokens.remove(&user).map(SecretString::from)))
                    .await
            }
        }
    }

    /// Stores `secret` under `key`, replacing any previous token.
    pub async fn put(&self, key: &TokenKey, secret: &str) -> Result<(), BackendTokenStoreError> {
        let user = key.user();
        let secret = SecretString::new(secret);
        match &self.inner {
            Inner::Keyring { timeout } => {
                keyring_call(*timeout, move || {
                    keyring::Entry::new(KEYRING_SERVICE, &user)?.set_password(secret.expose())
                })
                .await
            }
            Inner::File { path, lock } => {
                let _guard = lock.lock().await;
                let path = Arc::clone(path);
                file_call(move || {
                    let mut doc = load(&path)?;
                    doc.tokens.insert(user, secret.expose().to_string());
                    save(&path, &doc)
                })
                .await
            }
        }
    }

    /// Forgets the token under `key`; `false` if there was none.
    pub async fn delete(&self, key: &TokenKey) -> Result<bool, BackendTokenStoreError> {
        let user = key.user();
        match &self.inner {
            Inner::Keyring { timeout } => {
                keyring_call(*timeout, move || {
                    match keyring::Entry::new(KEYRING_SERVICE, &user)?.delete_credential() {
                        Ok(()) => Ok(true),
                        Err(keyring::Error::NoEntry) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await
            }
            Inner::File { path, lock } => {
                let _guard = lock.lock().await;
                let path = Arc::clone(path);
                file_call(move || {
                    let mut doc = load(&path)?;
                    if doc.tokens.remove(&user).is_none() {
                        return Ok(false);
                    }
                    save(&path, &doc)?;
                    Ok(true)
                })
                .await
            }
        }
    }

    /// Checks that the store works. For the keyring: writes, reads back and deletes a probe
    /// entry. For the file store: creates the folder (0700) if missing, checks it, and
    /// reads the file if it exists (without creating it).
    pub async fn probe(&self) -> Result<(), BackendTokenStoreError> {
        match &self.inner {
            Inner::Keyring { timeout } => {
                // A fresh entry per probe: concurrent probes (two daemons, parallel tests)
                // must not delete each other's entry.
                let user = format!("{PROBE_USER} {}", uuid::Uuid::new_v4().simple());
                probe_keyring(*timeout, user).await
            }
            Inner::File { path, lock } => {
                let _guard = lock.lock().await;
                let path = Arc::clone(path);
                file_call(move || {
                    ensure_private_dir(parent_dir(&path))?;
                    load(&path).map(drop)
                })
                .await
            }
        }
    }
}

/// Writes, reads back and deletes the keyring entry of `user`.
async fn probe_keyring(timeout: Duration, user: String) -> Result<(), BackendTokenStoreError> {
    let value = uuid::Uuid::new_v4().to_string();
    let matched = keyring_call(timeout, move || {
        let entry = keyring::Entry::new(KEYRING_SERVICE, &user)?;
        entry.set_password(&value)?;
        let read = entry.get_password();
        let deleted = entry.delete_credential();
        let matched = read? == value;
        deleted?;
        Ok(matched)
    })
    .await?;
    if matched {
        Ok(())
    } else {
        Err(BackendTokenStoreError::Unavailable {
            reason: "the probe entry read back differs from what was written".into(),
        })
    }
}

/// Runs one keyring operation on a blocking thread, giving up after `timeout` (the thread
/// is left to finish or hang on its own; the daemon goes on).
async fn keyring_call<T, F>(timeout: Duration, f: F) -> Result<T, BackendTokenStoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, keyring::Error> + Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Err(_) => Err(BackendTokenStoreError::Timeout { timeout }),
        Ok(Err(_join)) => Err(BackendTokenStoreError::Unavailable {
            reason: "the keyring call panicked".into(),
        }),
        Ok(Ok(result)) => result.map_err(keyring_error),
    }
}

/// Maps a keyring error (never `NoEntry`, handled by the callers) to ours.
fn keyring_error(e: keyring::Error) -> BackendTokenStoreError {
    match e {
        // The variant carries the stored bytes; name none of them.
        keyring::Error::BadEncoding(_) => BackendTokenStoreError::Malformed {
            location: format!("the OS keyring entry of service {KEYRING_SERVICE:?}"),
            reason: "the stored value is not UTF-8".into(),
        },
        keyring::Error::Ambiguous(items) => BackendTokenStoreError::Unavailable {
            reason: format!("{} keyring entries match one key", items.len()),
        },
        // Platform errors (D-Bus connection, locked collection, ...), attribute errors:
        // these name no secret.
        e => BackendTokenStoreError::Unavailable {
            reason: e.to_string(),
        },
    }
}

/// Runs file work on a blocking thread.
async fn file_call<T, F>(f: F) -> Result<T, BackendTokenStoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BackendTokenStoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> BackendTokenStoreError {
    let path = path.to_path_buf();
    move |source| BackendTokenStoreError::File {
        path,
        action,
        source,
    }
}

/// Reads the file store; an empty document if the file does not exist.
fn load(path: &Path) -> Result<FileDoc, BackendTokenStoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileDoc {
                version: FILE_VERSION,
                tokens: BTreeMap::new(),
            })
        }
        Err(e) => return Err(file_error(path, "open")(e)),
    };
    // Check the file actually opened (no race with a swap between check and open).
    let meta = file.metadata().map_err(file_error(path, "inspect"))?;
    if !meta.is_file() {
        return Err(BackendTokenStoreError::Malformed {
            location: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    check_private_mode(path, &meta, 0o077)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(file_error(path, "read"))?;
    // serde_json's messages may quote parts of the input (a token): only give the position.
    let doc: FileDoc =
        serde_json::from_str(&text).map_err(|e| BackendTokenStoreError::Malformed {
            location: path.display().to_string(),
            reason: format!(
                "not a token store document at line {}, column {}",
                e.line(),
                e.column()
            ),
        })?;
    if doc.version != FILE_VERSION {
        return Err(BackendTokenStoreError::Malformed {
            location: path.display().to_string(),
            reason: format!("unknown version {}", doc.version),
        });
    }
    Ok(doc)
}

/// Writes the file store atomically: a new 0600 temporary file in the same folder, synced,
/// renamed over `path`, then the folder synced.
fn save(path: &Path, doc: &FileDoc) -> Result<(), BackendTokenStoreError> {
    let dir = parent_dir(path);
    ensure_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let text = serde_json::to_vec_pretty(doc).expect("a map of strings serialises");
    let written = (|| {
        let mut file = crate::private::create_file(&tmp).map_err(file_error(&tmp, "create"))?;
        file.write_all(&text).map_err(file_error(&tmp, "write"))?;
        file.sync_all().map_err(file_error(&tmp, "sync"))?;
        std::fs::rename(&tmp, path).map_err(file_error(path, "replace"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Makes the store's folder private (the policy of [`crate::private::ensure_dir`]:
/// created 0700, made 0700 if others have access, refused if another user owns it).
fn ensure_private_dir(dir: &Path) -> Result<(), BackendTokenStoreError> {
    crate::private::ensure_dir(dir).map_err(file_error(dir, "use as a private folder"))
}

#[cfg(unix)]
fn check_private_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    forbidden: u32,
) -> Result<(), BackendTokenStoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(BackendTokenStoreError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(
    _path: &Path,
    _meta: &std::fs::Metadata,
    _forbidden: u32,
) -> Result<(), BackendTokenStoreError> {
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), BackendTokenStoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_error(dir, "sync folder"))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), BackendTokenStoreError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;
    use std::time::Instant;

    /// Set in a child test process (see [`run_child`]).
    const CHILD_ENV: &str = "EODISPATCH_TOKENS_TEST_CHILD";
    /// Printed by a child test when its checks passed.
    const CHILD_OK: &str = "TOKENS-CHILD-OK";
    /// Set (to 1) to make the keyring tests fail instead of skipping without a keyring.
    const REQUIRE_ENV: &str = "TESTS_REQUIRE_SECRET_SERVICE";

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn key() -> TokenKey {
        TokenKey::new(
            "https://id.example/realms/x/",
            &format!("eodispatch-test-{}", uuid::Uuid::new_v4().simple()),
        )
    }

    /// Runs test `name` of this module again in a child process of the test binary, with
    /// `CHILD_ENV` set, through `sh -c` with `shell_prefix` (e.g. `umask 000`), and checks
    /// that it ran and passed.
    fn run_child(name: &str, shell_prefix: &str, envs: &[(&str, &Path)]) {
        let module = module_path!().split_once("::").unwrap().1;
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{shell_prefix}; exec \"$0\" \"$@\""))
            .arg(exe)
            .arg("--exact")
            .arg(format!("{module}::{name}"))
            .arg("--nocapture")
            .arg("--test-threads=1")
            .env(CHILD_ENV, "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // A child that hangs (e.g. a keyring call without its timeout) fails the test
        // instead of hanging the suite.
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "child test {name} still running after 60 s:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(CHILD_OK),
            "child test {name} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }

    fn is_child() -> bool {
        std::env::var_os(CHILD_ENV).is_some()
    }

    #[test]
    fn key_and_kind() {
        let k = TokenKey::new("https://id.example/", "client");
        assert_eq!(k, TokenKey::new("https://id.example", "client"));
        assert_eq!(k.issuer(), "https://id.example");
        assert_eq!(k.client_id(), "client");
        assert_eq!(k.user(), "https://id.example client");
        assert_eq!(BackendTokenStore::keyring().kind(), StoreKind::Keyring);
        assert_eq!(BackendTokenStore::file("x".into()).kind(), StoreKind::File);
        assert_eq!(StoreKind::File.as_str(), "file");
        assert_eq!(
            serde_json::to_string(&StoreKind::Keyring).unwrap(),
            "\"keyring\""
        );
        let kind: StoreKind = serde_json::from_str("\"file\"").unwrap();
        assert_eq!(kind, StoreKind::File);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = SecretString::new("RT-SENTINEL");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([REDACTED])");
        assert_eq!(s.expose(), "RT-SENTINEL");
    }

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/tokens.json");
        let store = BackendTokenStore::file(path.clone());
        let (a, b) = (key(), key());
        store.probe().await.unwrap();
        assert!(!path.exists(), "probe must not create the file");
        assert_eq!(store.get(&a).await.unwrap(), None);
        assert!(!store.delete(&a).await.unwrap());
        store.put(&a, "RT-SENTINEL-A").await.unwrap();
        store.put(&b, "RT-SENTINEL-B").await.unwrap();
        let got = store.get(&a).await.unwrap().unwrap();
        assert_eq!(got.expose(), "RT-SENTINEL-A");
        store.put(&a, "RT-SENTINEL-A2").await.unwrap();
        // A second store on the same file (a restart) sees the same tokens.
        let again = BackendTokenStore::file(path.clone());
        let got = again.get(&a).await.unwrap().unwrap();
        assert_eq!(got.expose(), "RT-SENTINEL-A2");
        assert!(again.delete(&a).await.unwrap());
        assert_eq!(store.get(&a).await.unwrap(), None);
        let got = store.get(&b).await.unwrap().unwrap();
        assert_eq!(got.expose(), "RT-SENTINEL-B");
        // Concurrent writers in one process lose nothing.
        let keys: Vec<TokenKey> = (0..16).map(|_| key()).collect();
        let tasks: Vec<_> = keys
            .iter()
            .map(|k| {
                let (store, k) = (store.clone(), k.clone());
                tokio::spawn(async move { store.put(&k, "RT-SENTINEL-C").await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for k in &keys {
            assert!(store.get(k).await.unwrap().is_some());
        }
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tokens.json")]);
    }

    /// Under umask 000 (in a child process: the umask is process-wide), the folder is 0700
    /// and the file 0600 from creation, and a rewrite replaces the file (new inode) and
    /// keeps 0600.
    #[test]
    fn file_store_modes_under_permissive_umask() {
        if !is_child() {
            return run_child("file_store_modes_under_permissive_umask", "umask 000", &[]);
        }
        let dir = tempfile::tempdir().unwrap();
        // The umask really is permissive here: a plainly created file is 0666.
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        assert_eq!(mode(&plain), 0o666, "umask 000 not in effect");

        let state = dir.path().join("state");
        let path = state.join("sub/tokens.json");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = BackendTokenStore::file(path.clone());
        rt.block_on(store.put(&key(), "RT-SENTINEL")).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        let inode = std::fs::metadata(&path).unwrap().ino();
        rt.block_on(store.put(&key(), "RT-SENTINEL-2")).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            inode,
            "not rewritten atomically"
        );
        rt.block_on(store.delete(&key())).unwrap();
        assert_eq!(mode(&path), 0o600);
        println!("{CHILD_OK}");
    }

    #[tokio::test]
    async fn readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = BackendTokenStore::file(path.clone());
        let k = key();
        store.put(&k, "RT-SENTINEL").await.unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        for e in [
            store.get(&k).await.unwrap_err(),
            store.put(&k, "RT-SENTINEL-2").await.unwrap_err(),
            store.delete(&k).await.unwrap_err(),
            store.probe().await.unwrap_err(),
        ] {
            assert!(
                matches!(e, BackendTokenStoreError::Insecure { mode: 0o644, .. }),
                "{e}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains("chmod go-rwx") && !msg.contains("SENTINEL"),
                "{msg}"
            );
        }
        // The refused file was left alone.
        assert_eq!(mode(&path), 0o644);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("RT-SENTINEL\""));
    }

    #[tokio::test]
    async fn writable_folder_is_made_private_and_malformed_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A folder of ours that others may write is made private before the file goes
        // in (the one policy of `private::ensure_dir`).
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let store = BackendTokenStore::file(open.join("tokens.json"));
        store.put(&key(), "RT-SENTINEL").await.unwrap();
        assert_eq!(mode(&open), 0o700);
        assert_eq!(mode(&open.join("tokens.json")), 0o600);

        // A file whose content is wrong: the message gives a position, never the content.
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, r#"{"version":1,"tokens":"RT-SENTINEL"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = BackendTokenStore::file(path).get(&key()).await.unwrap_err();
        assert!(matches!(e, BackendTokenStoreError::Malformed { .. }), "{e}");
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
    }

    /// A keyring call that does not return is cut off by the timeout.
    #[tokio::test]
    async fn hung_keyring_call_times_out() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let start = Instant::now();
        let r = keyring_call(Duration::from_millis(100), move || {
            let _ = wait.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
        .await;
        assert!(
            matches!(r, Err(BackendTokenStoreError::Timeout { .. })),
            "{r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        release.send(()).unwrap();
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("token_store = \"file\""), "{msg}");
    }

    /// A Secret Service, or None (after printing "skipped") when there is none.
    async fn secret_service() -> Option<BackendTokenStore> {
        let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            assert!(
                !required,
                "{REQUIRE_ENV}=1 but DBUS_SESSION_BUS_ADDRESS is not set"
            );
            println!("skipped: no Secret Service");
            return None;
        }
        let store = BackendTokenStore::keyring();
        match store.probe().await {
            Ok(()) => Some(store),
            Err(e) => {
                assert!(!required, "{REQUIRE_ENV}=1 but the probe failed: {e}");
                println!("skipped: no Secret Service ({e})");
                None
            }
        }
    }

    #[tokio::test]
    async fn keyring_round_trip() {
        let Some(store) = secret_service().await else {
            return;
        };
        let k = key();
        let secret = format!("RT-SENTINEL-{}", uuid::Uuid::new_v4());
        assert_eq!(store.get(&k).await.unwrap(), None);
        assert!(!store.delete(&k).await.unwrap());
        store.put(&k, &secret).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap().expose(), secret);
        // Slash-insensitive issuer: the same entry.
        let same = TokenKey::new("https://id.example/realms/x", k.client_id());
        assert_eq!(store.get(&same).await.unwrap().unwrap().expose(), secret);
        // Seen by the keyring crate under the documented service and user.
        let direct = keyring::Entry::new(KEYRING_SERVICE, &k.user()).unwrap();
        assert_eq!(direct.get_password().unwrap(), secret);
        store.put(&k, "RT-SENTINEL-rotated").await.unwrap();
        assert_eq!(
            store.get(&k).await.unwrap().unwrap().expose(),
            "RT-SENTINEL-rotated"
        );
        assert!(store.delete(&k).await.unwrap());
        assert!(!store.delete(&k).await.unwrap());
        assert_eq!(store.get(&k).await.unwrap(), None);
    }

    #[tokio::test]
    async fn keyring_probe_leaves_nothing() {
        let Some(store) = secret_service().await else {
            return;
        };
        store.probe().await.unwrap();
        let user = format!("{PROBE_USER} test-{}", uuid::Uuid::new_v4().simple());
        probe_keyring(KEYRING_TIMEOUT, user.clone()).await.unwrap();
        let probe = keyring::Entry::new(KEYRING_SERVICE, &user).unwrap();
        assert!(matches!(probe.get_password(), Err(keyring::Error::NoEntry)));
        // Concurrent probes do not disturb each other.
        let probes: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.probe().await })
            })
            .collect();
        for p in probes {
            p.await.unwrap().unwrap();
        }
    }

    /// With the session bus address pointing at a socket that does not exist, every call
    /// is `Unavailable` (with the remedy), quickly. In a child process: the address is
    /// process-wide.
    #[test]
    fn keyring_without_bus_is_unavailable() {
        let var = "DBUS_SESSION_BUS_ADDRESS";
        if !is_child() {
            let dir = tempfile::tempdir().unwrap();
            let addr = format!("unix:path={}", dir.path().join("no-such-bus").display());
            return run_child(
                "keyring_without_bus_is_unavailable",
                "true",
                &[(var, Path::new(&addr))],
            );
        }
        assert!(std::env::var(var).unwrap().contains("no-such-bus"));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = BackendTokenStore::keyring();
        let k = key();
        let start = Instant::now();
        let errors = rt.block_on(async {
            vec![
                store.get(&k).await.unwrap_err(),
                store.put(&k, "RT-SENTINEL").await.unwrap_err(),
                store.delete(&k).await.unwrap_err(),
                store.probe().await.unwrap_err(),
            ]
        });
        assert!(start.elapsed() < KEYRING_TIMEOUT, "{:?}", start.elapsed());
        for e in errors {
            assert!(
                matches!(e, BackendTokenStoreError::Unavailable { .. }),
                "{e}"
            );
            let msg = e.to_string();
            assert!(msg.contains("apt install gnome-keyring"), "{msg}");
            assert!(msg.contains("token_store = \"file\""), "{msg}");
            assert!(!msg.contains("SENTINEL"), "{msg}");
        }
        rt.shutdown_background();
        println!("{CHILD_OK}");
    }

    /// A "Secret Service" that accepts the connection and never answers (a hung or locked
    /// keyring) gives `Timeout` within the timeout, not a hung caller.
    #[test]
    fn keyring_on_silent_bus_times_out() {
        let var = "DBUS_SESSION_BUS_ADDRESS";
        let socket_var = "EODISPATCH_TOKENS_TEST_SOCKET";
        if !is_child() {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("silent-bus");
            let addr = format!("unix:path={}", socket.display());
            return run_child(
                "keyring_on_silent_bus_times_out",
                "true",
                &[(var, Path::new(&addr)), (socket_var, &socket)],
            );
        }
        let socket = PathBuf::from(std::env::var_os(socket_var).unwrap());
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            // Accept and keep every connection open, never writing a byte.
            let mut held = Vec::new();
            for conn in listener.incoming() {
                held.push(conn);
            }
        });
        let rt = tokio::runtime::Runtime::new().unwrap();
        let timeout = Duration::from_millis(500);
        let store = BackendTokenStore::keyring_with_timeout(timeout);
        let start = Instant::now();
        let e = rt.block_on(store.get(&key())).unwrap_err();
        let elapsed = start.elapsed();
        assert!(matches!(e, BackendTokenStoreError::Timeout { .. }), "{e}");
        assert!(elapsed >= timeout && elapsed < timeout * 6, "{elapsed:?}");
        // The hung keyring thread must not keep the process alive.
        rt.shutdown_background();
        println!("{CHILD_OK}");
    }
}
