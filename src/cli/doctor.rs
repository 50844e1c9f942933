//! `eodispatch doctor`: checks the installation and says how to fix what is broken,
//! one line per check:
//!
//! ```text
//! ok   config: defaults (no /home/ada/.config/eodispatch/config.toml)
//! FAIL daemon not reachable at http://127.0.0.1:8421 (Connection refused): start it with …
//! warn …
//! ```
//!
//! Checks: configuration, daemon reachable (`/health`), API token accepted, token file
//! permissions, store writable (`BEGIN IMMEDIATE; ROLLBACK`), results folder writable,
//! OS keyring (Secret Service) usable, GDAL and its drivers. Exit code 0 when nothing
//! failed (warnings allowed), 1 otherwise. `--json` prints
//! `{"ok": bool, "checks": [{"check", "status", "message", "remedy"}]}`.
//!
//! The keyring probe runs on a thread of its own rather than in `spawn_blocking`: a
//! Secret Service that hangs (waiting on an unlock prompt) must not keep the process
//! from exiting after the 5 s timeout, and the runtime waits for blocking tasks when
//! it shuts down.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::client::{Client, ClientError, START_HINT};
use super::{out, out_json};
use crate::config::Config;
use crate::daemon::VERSION;

/// Time allowed for the keyring round trip.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);
/// Keyring service name of the probe entry (set, read back and deleted).
pub const KEYRING_SERVICE: &str = "eodispatch-doctor";
/// Keyring user name of the probe entry.
pub const KEYRING_USER: &str = "probe";
/// GDAL drivers the daemon relies on to inspect and publish results.
pub const GDAL_DRIVERS: [&str; 4] = ["GTiff", "netCDF", "GPKG", "GeoJSON"];
/// Remedy when there is no usable Secret Service.
pub const KEYRING_REMEDY: &str = "no Secret Service: install and unlock gnome-keyring \
    (apt install gnome-keyring) or KeePassXC with Secret Service, or run inside a desktop session";

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Works.
    Ok,
    /// Works, but something deserves attention.
    Warn,
    /// Broken; the remedy says what to do.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name of the check (`config`, `daemon`, `token`, `token_file`, `store`,
    /// `results`, `keyring`, `gdal`).
    pub check: &'static str,
    /// Outcome.
    pub status: Level,
    /// What was found.
    pub message: String,
    /// What to do about it (warnings and failures).
    pub remedy: Option<String>,
}

impl Check {
    fn ok(check: &'static str, message: impl Into<String>) -> Check {
        Check {
            check,
            status: Level::Ok,
            message: message.into(),
            remedy: None,
        }
    }

    fn warn(check: &'static str, message: impl Into<String>, remedy: impl Into<String>) -> Check {
        Check {
            check,
            status: Level::Warn,
            message: message.into(),
            remedy: Some(remedy.into()),
        }
    }

    fn fail(check: &'static str, message: impl Into<String>, remedy: impl Into<String>) -> Check {
        Check {
            check,
            status: Level::Fail,
            message: message.into(),
            remedy: Some(remedy.into()),
        }
    }

    /// `ok   <what>`, `warn <what>: <remedy>` or `FAIL <what>: <remedy>`.
    pub fn line(&self) -> String {
        let tag = match self.status {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        match &self.remedy {
            Some(r) if self.status != Level::Ok => format!("{tag} {}: {r}", self.message),
            _ => format!("{tag} {}", self.message),
        }
    }
}

/// The human report: one line per check.
pub fn render(checks: &[Check]) -> String {
    checks.iter().map(|c| c.line() + "\n").collect()
}

/// Runs every check, prints the report and gives the exit code.
pub async fn doctor(json: bool) -> ExitCode {
    let checks = run_checks().await;
    let ok = !checks.iter().any(|c| c.status == Level::Fail);
    if json {
        out_json(&serde_json::json!({"ok": ok, "checks": checks}));
    } else {
        out(&render(&checks));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every check in order. Without a usable configuration only the checks that do
/// not need one (keyring, GDAL) follow.
pub async fn run_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load() {
        Ok(config) => {
            let file = config.config_file();
            checks.push(if file.exists() {
                Check::ok("config", format!("config: {}", file.display()))
            } else {
                Check::ok(
                    "config",
                    format!("config: defaults (no {})", file.display()),
                )
            });
            Some(config)
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("config cannot be loaded ({e})"),
                "fix config.toml or the EODISPATCH_* environment variables; \
                 other checks need the configuration",
            ));
            None
        }
    };
    if let Some(config) = &config {
        let (daemon, reachable) = check_daemon(config).await;
        checks.push(daemon);
        checks.push(check_api_token(config, reachable).await);
        checks.push(check_token_file(&config.token_path()));
        checks.push(check_store(config.db_path()).await);
        checks.push(check_results(config));
    }
    checks.push(match &config {
        Some(c) if c.token_store == crate::auth::backend_tokens::StoreKind::File => Check::warn(
            "keyring",
            format!(
                "token store: plain file {} (0600), as config.toml asks",
                c.token_file().display()
            ),
            "prefer the OS keyring: remove `token_store = \"file\"` from config.toml",
        ),
        _ => check_keyring().await,
    });
    checks.push(check_gdal().await);
    checks
}

/// `GET /health` at the address of the discovery file (while the daemon runs) or of the
/// configuration; also tells whether the daemon answered.
async fn check_daemon(config: &Config) -> (Check, bool) {
    let client = match Client::anonymous(config) {
        Ok(c) => c,
        Err(e) => return (Check::fail("daemon", e.to_string(), START_HINT), false),
    };
    let base = client.base().to_string();
    match client.health().await {
        Ok((StatusCode::OK, health)) => {
            let version = health.get("version").and_then(Value::as_str).unwrap_or("?");
            let uptime = health
                .get("uptime_s")
                .and_then(Value::as_f64)
                .map(|s| format!(", up {}", uptime(s)))
                .unwrap_or_default();
            let check = if version == VERSION {
                Check::ok(
                    "daemon",
                    format!("daemon reachable at {base} (version {version}{uptime})"),
                )
            } else {
                Check::warn(
                    "daemon",
                    format!(
                        "daemon reachable at {base} runs version {version}, this command is {VERSION}"
                    ),
                    "restart the daemon after upgrading (`systemctl --user restart eodispatch`)",
                )
            };
            (check, true)
        }
        Ok((status, health)) => {
            let why = health
                .pointer("/database/message")
                .and_then(Value::as_str)
                .unwrap_or("it reports an error");
            (
                Check::fail(
                    "daemon",
                    format!(
                        "daemon at {base} is unhealthy (HTTP {}: {why})",
                        status.as_u16()
                    ),
                    "see its log (`journalctl --user -u eodispatch`, or the terminal running \
                     `eodispatch serve`)",
                ),
                true,
            )
        }
        Err(ClientError::Unreachable { reason, .. }) => {
            let stale = match crate::discovery::find(&config.discovery_path()) {
                Ok(crate::discovery::Found::Stale(d)) => format!(
                    "; {} was left by process {}, which is gone (the daemon did not stop cleanly)",
                    config.discovery_path().display(),
                    d.pid
                ),
                _ => String::new(),
            };
            (
                Check::fail(
                    "daemon",
                    format!("daemon not reachable at {base} ({reason}){stale}"),
                    START_HINT,
                ),
                false,
            )
        }
        Err(e @ ClientError::Unexpected { .. }) => (
            Check::fail(
                "daemon",
                format!("no eodispatch daemon at {base}"),
                e.to_string(),
            ),
            false,
        ),
        Err(e) => (
            Check::fail("daemon", format!("daemon at {base}: {e}"), START_HINT),
            false,
        ),
    }
}

/// `GET /unit_jobs?limit=1` with the token from the token file.
async fn check_api_token(config: &Config, reachable: bool) -> Check {
    let client = match Client::connect(config) {
        Ok(c) => c,
        Err(e @ ClientError::NotStarted { .. }) => {
            return Check::fail("token", "API token missing", e.to_string())
        }
        Err(e) => return Check::fail("token", "API token unusable", e.to_string()),
    };
    if !reachable {
        return Check::warn(
            "token",
            "API token not checked",
            "the daemon is not reachable",
        );
    }
    match client
        .get("/unit_jobs", &[("limit", "1".to_string())])
        .await
    {
        Ok(_) => Check::ok("token", "API token accepted"),
        Err(ClientError::Problem(p)) if p.status == 401 => Check::fail(
            "token",
            "API token rejected by the daemon",
            format!(
                "the daemon uses another token than {}: it runs with another state folder \
                 (state_dir, EODISPATCH_STATE_DIR); run this command with the daemon's \
                 configuration, or restart the daemon",
                config.token_path().display()
            ),
        ),
        Err(e) => Check::fail(
            "token",
            "API token not checked",
            format!("GET /unit_jobs failed: {e}"),
        ),
    }
}

/// The token file exists and only its owner may read or write it.
fn check_token_file(path: &Path) -> Check {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(
                "token_file",
                format!("token file {} does not exist", path.display()),
                format!("the daemon creates it on first start; {START_HINT}"),
            )
        }
        Err(e) => {
            return Check::fail(
                "token_file",
                format!("token file {} cannot be read ({e})", path.display()),
                "make sure it belongs to you",
            )
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Check::fail(
                "token_file",
                format!(
                    "token file {} has permissions {mode:04o}, other users can read the API token",
                    path.display()
                ),
                format!("run `chmod 600 {}`", path.display()),
            );
        }
        Check::ok(
            "token_file",
            format!("token file permissions {mode:04o} ({})", path.display()),
        )
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Check::ok("token_file", format!("token file {}", path.display()))
    }
}

/// Opens the database read-write and takes the write lock for a moment.
async fn check_store(path: std::path::PathBuf) -> Check {
    let shown = path.display().to_string();
    if !path.exists() {
        return Check::fail(
            "store",
            format!("store {shown} does not exist yet"),
            format!("the daemon creates it on first start; {START_HINT}"),
        );
    }
    let probe = tokio::task::spawn_blocking(move || -> rusqlite::Result<()> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(5000))?;
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
    })
    .await;
    match probe {
        Ok(Ok(())) => Check::ok("store", format!("store writable ({shown})")),
        Ok(Err(e)) if is_busy(&e) => Check::fail(
            "store",
            format!("store {shown} is locked ({e})"),
            "another program holds its write lock for more than 5 s; stop any other \
             eodispatch using this state folder, then retry",
        ),
        Ok(Err(e)) => Check::fail(
            "store",
            format!("store {shown} is not writable ({e})"),
            format!(
                "make sure {shown}, its -wal and -shm files and their folder belong to you \
                 and are writable, and that the disk is not full"
            ),
        ),
        Err(e) => Check::fail("store", format!("store check failed ({e})"), "retry"),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Creates and deletes a file in the results folder.
fn check_results(config: &Config) -> Check {
    let dir = &config.results_dir;
    let shown = dir.display();
    if !dir.is_dir() {
        return Check::fail(
            "results",
            format!("results folder {shown} does not exist"),
            format!("the daemon creates it on start ({START_HINT}), or run `mkdir -p {shown}`"),
        );
    }
    let probe = dir.join(format!(".eodispatch-doctor-{}", uuid::Uuid::new_v4()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"probe"))
        .and_then(|_| std::fs::remove_file(&probe));
    match written {
        Ok(()) => Check::ok("results", format!("results folder writable ({shown})")),
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            Check::fail(
                "results",
                format!("results folder {shown} is not writable ({e})"),
                format!(
                    "make it writable (`chmod u+w {shown}`) or choose another with `results_dir` \
                     in {}",
                    config.config_file().display()
                ),
            )
        }
    }
}

/// Sets, reads back and deletes a keyring entry, within [`KEYRING_TIMEOUT`].
async fn check_keyring() -> Check {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("keyring-probe".into())
        .spawn(move || {
            let _ = tx.send(keyring_round_trip());
        });
    if let Err(e) = spawned {
        return Check::fail("keyring", format!("keyring not checked ({e})"), "retry");
    }
    match tokio::time::timeout(KEYRING_TIMEOUT, rx).await {
        Ok(Ok(Ok(()))) => Check::ok(
            "keyring",
            "token store: OS keyring (Secret Service) available",
        ),
        Ok(Ok(Err(why))) => Check::fail(
            "keyring",
            format!("keyring not available ({why})"),
            KEYRING_REMEDY,
        ),
        Ok(Err(_)) => Check::fail("keyring", "keyring probe crashed", KEYRING_REMEDY),
        Err(_) => Check::fail(
            "keyring",
            format!(
                "keyring did not answer within {} s (locked, waiting for an unlock prompt?)",
                KEYRING_TIMEOUT.as_secs()
            ),
            KEYRING_REMEDY,
        ),
    }
}

/// The keyring probe itself (blocking).
fn keyring_round_trip() -> Result<(), String> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, KEYRING_USER).map_err(|e| e.to_string())?;
    let secret = uuid::Uuid::new_v4().to_string();
    entry.set_password(&secret).map_err(|e| e.to_string())?;
    let read = entry.get_password();
    let deleted = entry.delete_credential();
    match read {
        Ok(s) if s == secret => {}
        Ok(_) => return Err("the keyring returned another secret than the one stored".into()),
        Err(e) => return Err(format!("stored a secret but cannot read it back: {e}")),
    }
    deleted.map_err(|e| format!("cannot delete the probe entry: {e}"))
}

/// GDAL version and the drivers we need, asked of the system GDAL's `gdalinfo`.
///
/// The daemon does not link GDAL: linking it maps ~120 shared libraries into every
/// process (about 35 MB resident before doing anything); raster work runs in a child
/// process where it is needed.
async fn check_gdal() -> Check {
    let run = |args: &'static [&'static str]| async move {
        tokio::process::Command::new(args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
    };
    let version = match run(&["gdalinfo", "--version"]).await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return Check::fail(
                "gdal",
                format!(
                    "gdalinfo --version failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "install a working GDAL (apt install gdal-bin)",
            )
        }
        Err(e) => {
            return Check::fail(
                "gdal",
                format!("GDAL not found ({e})"),
                "install GDAL (apt install gdal-bin)",
            )
        }
    };
    // Raster drivers are listed by gdalinfo, vector ones (GeoJSON) by ogrinfo.
    let mut formats = String::new();
    for tool in [
        &["gdalinfo", "--formats"][..],
        &["ogrinfo", "--formats"][..],
    ] {
        if let Ok(o) = run(tool).await {
            formats.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    let names: std::collections::BTreeSet<&str> = formats
        .lines()
        .filter(|l| l.contains("):"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let count = names.len();
    let has = |d: &str| {
        formats.lines().any(|l| {
            l.trim_start().starts_with(&format!("{d} "))
                || l.trim_start().starts_with(&format!("{d}("))
        })
    };
    let missing: Vec<&str> = GDAL_DRIVERS.into_iter().filter(|d| !has(d)).collect();
    let release = version
        .strip_prefix("GDAL ")
        .and_then(|v| v.split(',').next())
        .unwrap_or(&version)
        .to_string();
    if missing.is_empty() {
        Check::ok(
            "gdal",
            format!(
                "GDAL {release} ({count} drivers, including {})",
                GDAL_DRIVERS.join(", ")
            ),
        )
    } else {
        Check::fail(
            "gdal",
            format!("GDAL {release} lacks the driver(s) {}", missing.join(", ")),
            "install a complete GDAL (apt install gdal-bin)",
        )
    }
}

/// An uptime for people: `42s`, `5m`, `3h 20m`, `2d 4h`.
fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_a_tag_and_a_remedy() {
        assert_eq!(
            Check::ok("x", "store writable (/s/db)").line(),
            "ok   store writable (/s/db)"
        );
        assert_eq!(
            Check::fail("x", "results folder /r is not writable", "chmod u+w /r").line(),
            "FAIL results folder /r is not writable: chmod u+w /r"
        );
        assert_eq!(
            Check::warn("x", "API token not checked", "the daemon is not reachable").line(),
            "warn API token not checked: the daemon is not reachable"
        );
        let report = render(&[Check::ok("a", "one"), Check::ok("b", "two")]);
        assert_eq!(report, "ok   one\nok   two\n");
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(Check::fail("store", "m", "r")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"check": "store", "status": "fail", "message": "m", "remedy": "r"})
        );
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(5.4), "5s");
        assert_eq!(uptime(300.0), "5m");
        assert_eq!(uptime(3.0 * 3600.0 + 20.0 * 60.0), "3h 20m");
        assert_eq!(uptime(2.0 * 86_400.0 + 4.0 * 3600.0), "2d 4h");
    }

    #[cfg(unix)]
    #[test]
    fn token_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        assert_eq!(check_token_file(&path).status, Level::Fail);
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = check_token_file(&path);
        assert_eq!(c.status, Level::Ok);
        assert!(
            c.message.starts_with("token file permissions 0600"),
            "{}",
            c.message
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = check_token_file(&path);
        assert_eq!(c.status, Level::Fail);
        assert!(c.line().contains("chmod 600"), "{}", c.line());
    }

    #[tokio::test]
    async fn store_and_results_checks() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_root(dir.path());
        assert_eq!(check_store(config.db_path()).await.status, Level::Fail);
        assert_eq!(check_results(&config).status, Level::Fail);
        std::fs::create_dir_all(&config.state_dir).unwrap();
        rusqlite::Connection::open(config.db_path())
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let c = check_store(config.db_path()).await;
        assert_eq!(c.status, Level::Ok, "{}", c.line());
        std::fs::create_dir_all(&config.results_dir).unwrap();
        let c = check_results(&config);
        assert_eq!(c.status, Level::Ok, "{}", c.line());
        assert_eq!(std::fs::read_dir(&config.results_dir).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn gdal_is_linked_with_the_drivers_we_need() {
        let c = check_gdal().await;
        assert_eq!(c.status, Level::Ok, "{}", c.line());
        assert!(c.message.starts_with("GDAL "), "{}", c.message);
    }
}
