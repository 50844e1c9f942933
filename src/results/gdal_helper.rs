//! Running the GDAL helper `eodispatch-gdal` on a staged job folder.
//!
//! The daemon does not link GDAL, on purpose: linking it cost about 35 MB resident and
//! 50 ms at start (the idle target is 20 MB), for work done once per job. The GDAL
//! work — inspection (CRS, bounds, statistics, subdatasets, vector layers) and
//! optimisation (COG for large GeoTIFFs) — runs in the separate binary of
//! `crates/gdal-helper`, started with `tokio::process` inside the staging folder.
//!
//! Result files are not trusted, so each file gets its own run of the helper, with the
//! file name after `--` (a name may start with `-`), an address-space limit
//! ([`GEO_MEMORY_LIMIT`], `RLIMIT_AS`, no core dump) and a timeout ([`GEO_TIMEOUT`],
//! then the process is killed): a file that makes GDAL crash, hang or swallow memory
//! only marks that file. The helper itself opens only the formats results come in and
//! keeps GDAL off the network (see `crates/gdal-helper/src/safety.rs`). Side files of the
//! backend, kept under an inert name (`names::is_inert_side_file`), are not inspected.
//!
//! The helper is found at `gdal_bin` (config, or `EODISPATCH_GDAL_BIN`), else next to
//! the daemon's own executable, else on `PATH`. A helper that is missing or does not
//! answer `--version` marks every layer `readable: false` with `error_code:
//! "GeoHelperMissing"`; clients may then open those files themselves. The job is
//! published anyway: a missing GDAL never fails a job.
//!
//! [`mosaic`] runs the helper's mosaic mode once per output of an upscale task, inside
//! the task folder, under the same limits (see `results::mosaic`).
//!
//! `error_code` of a layer: `null` when readable; `Refused` / `Unreadable` (from the
//! helper), `GeoHelperFailed`, `GeoHelperTimeout`, `GeoHelperMissing`, `Sidecar`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::names;

/// Name of the helper binary.
pub const GDAL_BIN: &str = "eodispatch-gdal";

/// Time allowed for inspecting (and optimising) one file.
pub const GEO_TIMEOUT: Duration = Duration::from_secs(1800);

/// Address space allowed to the helper, in bytes. GDAL itself maps about 250 MB; its
/// block cache is held to 256 MB by the helper.
pub const GEO_MEMORY_LIMIT: u64 = 3 << 30;

/// Time allowed for `eodispatch-gdal --version`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits of one run of the helper.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time per file; the process is killed after it.
    pub timeout: Duration,
    /// `RLIMIT_AS` in bytes (Unix); `None` for no limit.
    pub memory: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: GEO_TIMEOUT,
            memory: Some(GEO_MEMORY_LIMIT),
        }
    }
}

/// Where the helper is: the configured path, next to this executable, or on `PATH`.
pub fn locate(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return p.is_file().then(|| p.to_path_buf());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join(GDAL_BIN);
        if candidate.is_file() {
            return Some(candidate);
        }
        // Test binaries live in target/<profile>/deps/.
        if let Some(up) = dir.parent() {
            let candidate = up.join(GDAL_BIN);
            if dir.ends_with("deps") && candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(GDAL_BIN))
            .find(|c| c.is_file())
    })
}

/// Describes `files` (names inside `dir`), optimising rasters; one entry per file in
/// order. Never fails: problems become `readable: false` entries.
pub async fn inspect(helper: Option<&Path>, dir: &Path, files: &[String]) -> Vec<Value> {
    inspect_with(helper, dir, files, Limits::default()).await
}

/// [`inspect`] with explicit limits.
pub async fn inspect_with(
    helper: Option<&Path>,
    dir: &Path,
    files: &[String],
    limits: Limits,
) -> Vec<Value> {
    if files.is_empty() {
        return Vec::new();
    }
    let missing = |why: &str| -> Vec<Value> {
        files
            .iter()
            .map(|f| {
                if names::is_inert_side_file(f) {
                    side_file(f)
                } else {
                    layer(f, why, "GeoHelperMissing")
                }
            })
            .collect()
    };
    let Some(helper) = helper else {
        return missing("GDAL helper not found");
    };
    if let Err(why) = probe(helper, dir).await {
        tracing::warn!(helper = %helper.display(), error = %why, "the GDAL helper cannot run");
        return missing(&why);
    }
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        if names::is_inert_side_file(file) {
            out.push(side_file(file));
            continue;
        }
        out.push(inspect_one(helper, dir, file, limits).await);
    }
    out
}

/// The entry of a side file of the backend.
fn side_file(path: &str) -> Value {
    layer(
        path,
        "a side file of the backend (style, metadata, overviews or georeferencing of \
         another file): kept under an inert name, not applied",
        "Sidecar",
    )
}

fn layer(path: &str, error: &str, code: &str) -> Value {
    let mut v = super::manifest::unreadable_layer(path, error);
    v["error_code"] = json!(code);
    v
}

/// The helper as a command: limits, a clean environment for GDAL's network settings.
fn command(helper: &Path, dir: &Path, memory: Option<u64>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(helper);
    cmd.current_dir(dir)
        .env("PROJ_NETWORK", "OFF")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    {
        let memory = memory.map(|m| m as libc::rlim_t);
        // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                if let Some(bytes) = memory {
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    #[cfg(not(unix))]
    let _ = memory;
    cmd
}

/// Whether the helper starts at all (`--version`), e.g. not when GDAL's libraries are
/// missing.
async fn probe(helper: &Path, dir: &Path) -> Result<(), String> {
    let mut cmd = command(helper, dir, None);
    cmd.arg("--version");
    match tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await {
        Err(_) => Err("the GDAL helper does not answer".into()),
        Ok(Err(e)) => Err(format!("cannot run the GDAL helper: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            Err(format!(
                "the GDAL helper cannot run ({}){}",
                out.status,
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            ))
        }
    }
}

/// One run of the helper on one file.
async fn inspect_one(helper: &Path, dir: &Path, file: &str, limits: Limits) -> Value {
    let mut cmd = command(helper, dir, limits.memory);
    cmd.arg("--optimise").arg("--").arg(file);
    let out = match tokio::time::timeout(limits.timeout, cmd.output()).await {
        Err(_) => {
            tracing::warn!(file, "the GDAL helper timed out: stopped");
            return layer(
                file,
                &format!(
                    "the GDAL helper took longer than {} s on this file and was stopped",
                    limits.timeout.as_secs()
                ),
                "GeoHelperTimeout",
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(helper = %helper.display(), error = %e, "cannot run the GDAL helper");
            return layer(
                file,
                &format!("cannot run the GDAL helper: {e}"),
                "GeoHelperFailed",
            );
        }
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(file, stderr = %stderr.trim(), "GDAL helper messages");
    }
    if !out.status.success() {
        tracing::warn!(file, status = %out.status, stderr = %stderr.trim(), "the GDAL helper failed");
        return layer(
            file,
            &format!("the GDAL helper failed on this file ({})", out.status),
            "GeoHelperFailed",
        );
    }
    match serde_json::from_slice::<Vec<Value>>(&out.stdout) {
        Ok(mut v) if v.len() == 1 && v[0]["path"] == file => {
            let mut entry = v.remove(0);
            if entry["readable"] == json!(false) && entry.get("error_code").is_none() {
                entry["error_code"] = json!("Unreadable");
            }
            entry
        }
        _ => layer(
            file,
            "the GDAL helper answered something unexpected",
            "GeoHelperFailed",
        ),
    }
}

/// One run of the helper's mosaic mode inside `dir` (the task folder): `files` are
/// relative to it; the result is written there as `name.vrt` / `name.tif` /
/// `name.gpkg`. Returns the helper's layer entry (with its `mosaic` member), or an
/// unreadable entry with `error_code` `GeoHelperMissing`, `GeoHelperFailed` or
/// `GeoHelperTimeout`. Never fails.
pub async fn mosaic(
    helper: &Path,
    dir: &Path,
    name: &str,
    cog: bool,
    crs: Option<&str>,
    files: &[String],
    limits: Limits,
) -> Value {
    if let Err(why) = probe(helper, dir).await {
        tracing::warn!(helper = %helper.display(), error = %why, "the GDAL helper cannot run");
        return layer(name, &why, "GeoHelperMissing");
    }
    let mut cmd = command(helper, dir, limits.memory);
    cmd.args(["mosaic", "--out", ".", "--name", name]);
    if cog {
        cmd.arg("--cog");
    }
    if let Some(crs) = crs {
        cmd.args(["--crs", crs]);
    }
    cmd.arg("--").args(files);
    let out = match tokio::time::timeout(limits.timeout, cmd.output()).await {
        Err(_) => {
            tracing::warn!(name, "the GDAL helper timed out on a mosaic: stopped");
            return layer(
                name,
                &format!(
                    "the GDAL helper took longer than {} s on this mosaic and was stopped",
                    limits.timeout.as_secs()
                ),
                "GeoHelperTimeout",
            );
        }
        Ok(Err(e)) => {
            return layer(
                name,
                &format!("cannot run the GDAL helper: {e}"),
                "GeoHelperFailed",
            )
        }
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        tracing::warn!(name, status = %out.status, stderr = %stderr.trim(), "the GDAL helper failed on a mosaic");
        return layer(
            name,
            &format!("the GDAL helper failed on this mosaic ({})", out.status),
            "GeoHelperFailed",
        );
    }
    if !stderr.trim().is_empty() {
        tracing::debug!(name, stderr = %stderr.trim(), "GDAL helper messages");
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if v.is_object() && v["path"].is_string() => v,
        _ => layer(
            name,
            "the GDAL helper answered something unexpected",
            "GeoHelperFailed",
        ),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("fake-geo");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn a_helper_that_cannot_run_is_missing_and_side_files_are_not_inspected() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(dir.path(), "exit 127");
        let files = ["a.tif".to_string(), "a.qml.sidecar".to_string()];
        let out = inspect(Some(&helper), dir.path(), &files).await;
        assert_eq!(out[0]["error_code"], "GeoHelperMissing", "{out:?}");
        assert_eq!(out[1]["error_code"], "Sidecar", "{out:?}");
        let out = inspect(None, dir.path(), &files).await;
        assert_eq!(out[0]["error"], "GDAL helper not found");
        assert_eq!(out[0]["error_code"], "GeoHelperMissing");
        assert_eq!(out[0]["readable"], false);
    }
}
