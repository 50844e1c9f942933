//! Running the GDAL helper `eodispatch-geo` on a staged job folder.
//!
//! The daemon does not link GDAL, on purpose: linking it cost about 35 MB resident and
//! 50 ms at start (the idle target is 20 MB), for work done once per job. The GDAL
//! work — inspection (CRS, bounds, statistics, subdatasets, vector layers) and
//! optimisation (COG for large GeoTIFFs) — runs in the separate binary of
//! `crates/geo`, started with `tokio::process` inside the staging folder. A crash of
//! GDAL on a hostile file stays in that process.
//!
//! The helper is found at `geo_bin` (config, or `EODISPATCH_GEO_BIN`), else next to
//! the daemon's own executable, else on `PATH`. If it is missing, fails or times out,
//! every layer is marked `readable: false` with the reason, and the job is published
//! anyway: a missing GDAL never fails a job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Name of the helper binary.
pub const GEO_BIN: &str = "eodispatch-geo";

/// Time allowed for inspecting (and optimising) one job folder.
pub const GEO_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where the helper is: the configured path, next to this executable, or on `PATH`.
pub fn locate(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return p.is_file().then(|| p.to_path_buf());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join(GEO_BIN);
        if candidate.is_file() {
            return Some(candidate);
        }
        // Test binaries live in target/<profile>/deps/.
        if let Some(up) = dir.parent() {
            let candidate = up.join(GEO_BIN);
            if dir.ends_with("deps") && candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(GEO_BIN))
            .find(|c| c.is_file())
    })
}

/// Describes `files` (names inside `dir`), optimising rasters; one entry per file in
/// order. Never fails: problems become `readable: false` entries.
pub async fn inspect(helper: Option<&Path>, dir: &Path, files: &[String]) -> Vec<Value> {
    let unreadable = |why: &str| -> Vec<Value> {
        files
            .iter()
            .map(|f| super::manifest::unreadable_layer(f, why))
            .collect()
    };
    let Some(helper) = helper else {
        return unreadable("GDAL helper not found");
    };
    if files.is_empty() {
        return Vec::new();
    }
    let mut cmd = tokio::process::Command::new(helper);
    cmd.arg("--optimise")
        .args(files)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        let out = cmd.output().await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = match tokio::time::timeout(GEO_TIMEOUT, run).await {
        Err(_) => return unreadable("the GDAL helper timed out"),
        Ok(Err(e)) => {
            tracing::warn!(helper = %helper.display(), error = %e, "cannot run the GDAL helper");
            return unreadable(&format!("cannot run the GDAL helper: {e}"));
        }
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(stderr = %stderr.trim(), "GDAL helper messages");
    }
    if !out.status.success() {
        tracing::warn!(status = %out.status, stderr = %stderr.trim(), "the GDAL helper failed");
        return unreadable(&format!("the GDAL helper failed ({})", out.status));
    }
    match serde_json::from_slice::<Vec<Value>>(&out.stdout) {
        Ok(v) if v.len() == files.len() => v,
        _ => unreadable("the GDAL helper answered something unexpected"),
    }
}
