//! Downloading one asset into the staging folder: streamed, resumable, verified.
//!
//! [`fetch`] writes `<name>.part` in constant memory (each received chunk is written at
//! once, inside `block_in_place`) and keeps a
//! small sidecar JSON next to the staging folder ([`Sidecar`]: asset key, `ETag`,
//! `Last-Modified`, size — never the signed URL) so that a restarted daemon resumes:
//!
//! - resume with `Range: bytes=<have>-` and `If-Range: <strong ETag>` (or the
//!   `Last-Modified` date); a `206` must start exactly at `<have>`; a `200` (server
//!   ignores ranges, or the file changed) truncates and starts again; a `416` with
//!   `bytes */N` and `<have> == N` means complete;
//! - `401/403/410` on the link: [`Fetched::LinkExpired`], the caller re-fetches the
//!   results document and calls again with the new URL (the part file is kept);
//! - transient failures (connection errors, a body cut short, 408/429/5xx) are retried
//!   here with full-jitter exponential backoff honouring `Retry-After`; a transfer that
//!   delivers nothing for the stall timeout (`download_stall_s`, 30 s) is abandoned and
//!   resumed (reqwest's read timeout);
//! - a full disk (`ENOSPC`, `EDQUOT`) is [`DownloadError::DiskFull`] at once: never
//!   retried, the part file is kept so that a later retry resumes;
//! - when complete, the size must equal the announced one and, when the results
//!   document gives a `file:checksum` (multihash sha2-256), the sha256 must match; a
//!   mismatch deletes the part and downloads again from zero, at most
//!   [`MAX_FULL_RESTARTS`] times.
//!
//! The bearer token is offered by the caller only when the asset URL is on the
//! backend API's own origin, and sent only after that host refused the request without
//! it (401/403; signed links need no token); redirects to another host drop it
//! (reqwest removes `Authorization` on cross-host redirects).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Time allowed to open a connection to an asset host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts in a row without any progress before a transient failure is final.
pub const MAX_ATTEMPTS: u32 = 6;

/// Downloads from zero after a checksum or size mismatch before giving up.
pub const MAX_FULL_RESTARTS: u32 = 2;

/// Why an asset could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The disk is full (or the quota reached); the part file is kept for a retry.
    #[error("the disk holding {} is full: {source}", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A local file operation failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The asset host refused for good (404, 400, ...).
    #[error("the asset host answered HTTP {status}")]
    Refused {
        /// HTTP status.
        status: u16,
    },
    /// Transient failures went on for too long.
    #[error("the download kept failing: {0}")]
    GaveUp(String),
    /// The complete file does not have the announced size, again and again.
    #[error("size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch {
        /// Announced size.
        expected: u64,
        /// Size received.
        got: u64,
    },
    /// The complete file does not have the announced checksum, again and again.
    #[error(
        "checksum mismatch: the results document announces sha256 {expected}, the file has {got}"
    )]
    ChecksumMismatch {
        /// Announced sha256 (hex).
        expected: String,
        /// Computed sha256 (hex).
        got: String,
    },
}

impl DownloadError {
    /// The stable code recorded on the job.
    pub fn code(&self) -> &'static str {
        match self {
            DownloadError::DiskFull { .. } => "DiskFull",
            DownloadError::Io { .. } => "LocalIoError",
            DownloadError::Refused { .. } => "AssetUnavailable",
            DownloadError::GaveUp(_) => "DownloadFailed",
            DownloadError::SizeMismatch { .. } => "SizeMismatch",
            DownloadError::ChecksumMismatch { .. } => "ChecksumMismatch",
        }
    }
}

/// Is this I/O error a full disk or quota?
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A checksum announced by the results document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// sha2-256, lower-case hex.
    Sha256(String),
}

impl Checksum {
    /// Parses a `file:checksum` multihash in hex (`1220` + 64 hex digits for sha2-256).
    /// Other hash functions are not checked (`None`).
    pub fn parse_multihash(s: &str) -> Option<Checksum> {
        let s = s.trim().to_ascii_lowercase();
        let digest = s.strip_prefix("1220")?;
        (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Checksum::Sha256(digest.to_string()))
    }
}

/// What is remembered about a part file between runs (never the URL: it is signed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The asset key in the results document.
    pub key: String,
    /// The server's `ETag` for the bytes in the part file.
    pub etag: Option<String>,
    /// The server's `Last-Modified` for them.
    pub last_modified: Option<String>,
    /// The full size, when known.
    pub size: Option<u64>,
}

impl Sidecar {
    /// Reads a sidecar; `None` if missing or unreadable.
    pub fn read(path: &Path) -> Option<Sidecar> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes it atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(&tmp, path)
    }

    /// The `If-Range` validator: a strong ETag, else the date.
    fn validator(&self) -> Option<&str> {
        match self.etag.as_deref() {
            Some(e) if !e.starts_with("W/") => Some(e),
            _ => self.last_modified.as_deref(),
        }
    }
}

/// One asset to fetch.
pub struct Asset<'a> {
    /// Key in the results document.
    pub key: &'a str,
    /// Current (fresh) link.
    pub url: Url,
    /// `Authorization` value, only when `url` is on the backend API's own origin; sent
    /// only if the host refuses the request without it.
    pub auth: Option<HeaderValue>,
    /// The part file (`<staging>/<name>.part`).
    pub part: PathBuf,
    /// Its sidecar.
    pub sidecar: PathBuf,
    /// `file:size`, when given.
    pub expected_size: Option<u64>,
    /// `file:checksum`, when given and understood.
    pub checksum: Option<Checksum>,
    /// Bytes of this asset on disk so far (read by the progress reporter).
    pub progress: Arc<AtomicU64>,
}

/// How [`fetch`] ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The part file is complete and verified.
    Complete,
    /// The link was refused as expired or unauthorised: fetch a fresh results
    /// document and call again.
    LinkExpired,
}

/// The HTTP client for asset downloads: no overall timeout (files may be large), a
/// read timeout of `stall` for stalled transfers, at most 5 redirects.
pub fn client(stall: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("eodispatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(stall)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        // rustls with bundled roots cannot fail to initialise.
        .expect("building the download HTTP client must not fail")
}

/// Result of one HTTP attempt.
enum Attempt {
    Complete,
    LinkExpired,
    /// Try again after this long (a `Retry-After`, else backoff).
    Retry(String, Option<Duration>),
    /// The server's answer does not fit what we have: start from zero.
    Restart(String),
}

/// Downloads `asset` into its part file until it is complete and verified.
pub async fn fetch(http: &reqwest::Client, asset: &Asset<'_>) -> Result<Fetched, DownloadError> {
    let mut failures = 0u32;
    let mut full_restarts = 0u32;
    // Least privilege: links are meant to work without a token (signed); the bearer
    // goes along only after the backend's own host refused the request without it.
    let mut with_auth = false;
    loop {
        let before = part_len(&asset.part);
        let outcome = attempt(http, asset, with_auth).await?;
        let after = part_len(&asset.part);
        match outcome {
            Attempt::LinkExpired if asset.auth.is_some() && !with_auth => {
                with_auth = true;
            }
            Attempt::LinkExpired => return Ok(Fetched::LinkExpired),
            Attempt::Complete => match verify(asset).await? {
                Ok(()) => return Ok(Fetched::Complete),
                Err(mismatch) => {
                    full_restarts += 1;
                    tracing::warn!(asset = asset.key, error = %mismatch, "downloaded file is wrong; downloading again");
                    reset(asset)?;
                    if full_restarts > MAX_FULL_RESTARTS {
                        return Err(mismatch);
                    }
                }
            },
            Attempt::Restart(why) => {
                tracing::info!(asset = asset.key, reason = %why, "restarting the download from zero");
                reset(asset)?;
                failures += 1;
            }
            Attempt::Retry(why, retry_after) => {
                if after > before {
                    failures = 0;
                } else {
                    failures += 1;
                }
                if failures >= MAX_ATTEMPTS {
                    return Err(DownloadError::GaveUp(why));
                }
                let wait =
                    crate::scheduler::backoff_from(0.5, failures, retry_after, &mut rand::rng())
                        .min(Duration::from_secs(60));
                tracing::info!(asset = asset.key, reason = %why, have = after, wait_ms = wait.as_millis() as u64, "download interrupted; resuming");
                tokio::time::sleep(wait).await;
            }
        }
        if failures >= MAX_ATTEMPTS {
            return Err(DownloadError::GaveUp(
                "the server's answers never matched the partial file".into(),
            ));
        }
    }
}

fn part_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Deletes the part file and its sidecar.
fn reset(asset: &Asset<'_>) -> Result<(), DownloadError> {
    for p in [&asset.part, &asset.sidecar] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DownloadError::Io {
                    context: "cannot delete",
                    path: p.clone(),
                    source,
                })
            }
        }
    }
    asset.progress.store(0, Ordering::Relaxed);
    Ok(())
}

fn io_err(context: &'static str, path: &Path, source: std::io::Error) -> DownloadError {
    if is_disk_full(&source) {
        DownloadError::DiskFull {
            path: path.to_path_buf(),
            source,
        }
    } else {
        DownloadError::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `Content-Range: bytes a-b/N` → `(a, Some(N))`; `bytes */N` → `(None, Some(N))`.
fn content_range(v: Option<&HeaderValue>) -> (Option<u64>, Option<u64>) {
    let Some(s) = v.and_then(|v| v.to_str().ok()) else {
        return (None, None);
    };
    let Some(rest) = s.trim().strip_prefix("bytes ") else {
        return (None, None);
    };
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let total = total.trim().parse().ok();
    let start = range
        .split_once('-')
        .and_then(|(a, _)| a.trim().parse().ok());
    (start, total)
}

async fn attempt(
    http: &reqwest::Client,
    asset: &Asset<'_>,
    with_auth: bool,
) -> Result<Attempt, DownloadError> {
    let sidecar = Sidecar::read(&asset.sidecar).filter(|s| s.key == asset.key);
    let mut have = part_len(&asset.part);
    let validator = sidecar
        .as_ref()
        .and_then(|s| s.validator().map(str::to_string));
    if have > 0 && validator.is_none() {
        // Bytes we cannot tie to a version of the file: start again.
        reset(asset)?;
        have = 0;
    }
    if let (Some(size), true) = (sidecar.as_ref().and_then(|s| s.size), have > 0) {
        if have == size {
            return Ok(Attempt::Complete);
        }
        if have > size {
            return Ok(Attempt::Restart(format!(
                "the partial file ({have} bytes) is larger than the asset ({size} bytes)"
            )));
        }
    }
    asset.progress.store(have, Ordering::Relaxed);
    let mut req = http.get(asset.url.clone());
    if let Some(auth) = asset.auth.as_ref().filter(|_| with_auth) {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
        if let Some(v) = &validator {
            req = req.header(IF_RANGE, v.as_str());
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Attempt::Retry(
                format!(
                    "request failed: {}",
                    crate::redact::redact(&e.without_url().to_string())
                ),
                None,
            ))
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::platform::http::parse_retry_after);
    let (start, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let (start, total) = content_range(headers.get(CONTENT_RANGE));
            if start != Some(have) {
                return Ok(Attempt::Restart(format!(
                    "asked for bytes from {have}, the server sent a range from {start:?}"
                )));
            }
            (have, total)
        }
        StatusCode::OK => {
            if have > 0 {
                tracing::info!(asset = asset.key, "the server sent the whole file (no range support, or the file changed): starting from zero");
            }
            (0, resp.content_length())
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let (_, total) = content_range(headers.get(CONTENT_RANGE));
            if total == Some(have) {
                return Ok(Attempt::Complete);
            }
            return Ok(Attempt::Restart(format!(
                "range from {have} not satisfiable (size {total:?})"
            )));
        }
        s if matches!(s.as_u16(), 401 | 403 | 410) => return Ok(Attempt::LinkExpired),
        s if matches!(s.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504) => {
            return Ok(Attempt::Retry(format!("HTTP {}", s.as_u16()), retry_after))
        }
        s => return Err(DownloadError::Refused { status: s.as_u16() }),
    };
    let total = total.or(asset.expected_size);
    let new_sidecar = Sidecar {
        key: asset.key.to_string(),
        etag: headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        last_modified: headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        size: total,
    };
    if sidecar.as_ref() != Some(&new_sidecar) {
        new_sidecar
            .write(&asset.sidecar)
            .map_err(|e| io_err("cannot write", &asset.sidecar, e))?;
    }
    // Open at the right place: keep `start` bytes, drop anything after them.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&asset.part)
        .map_err(|e| io_err("cannot open", &asset.part, e))?;
    file.set_len(start)
        .map_err(|e| io_err("cannot truncate", &asset.part, e))?;
    asset.progress.store(start, Ordering::Relaxed);
    // Each received chunk is written at once by the receiving task, inside
    // `block_in_place` (the runtime moves its other tasks to another worker while a
    // write waits on the page cache): one thread, no hand-over, the bytes still in the
    // CPU cache — as curl does. On a current-thread runtime (some tests) the write is
    // plain.
    use std::io::{Seek, Write};
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(start))
        .map_err(|e| io_err("cannot seek in", &asset.part, e))?;
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let mut pos = start;
    let mut resp = resp;
    let interrupted = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let written = if multi_thread {
                    tokio::task::block_in_place(|| file.write_all(&chunk))
                } else {
                    file.write_all(&chunk)
                };
                written.map_err(|e| io_err("cannot write", &asset.part, e))?;
                pos += chunk.len() as u64;
                asset.progress.store(pos, Ordering::Relaxed);
            }
            Ok(None) => break None,
            Err(e) => {
                let what = if e.is_timeout() {
                    "no data within the stall timeout (stalled)".to_string()
                } else {
                    format!(
                        "transfer cut: {}",
                        crate::redact::redact(&e.without_url().to_string())
                    )
                };
                break Some(what);
            }
        }
    };
    drop(file);
    // No fsync here: the publication fsyncs every file before its one rename, and a
    // part file after a crash is only ever a prefix to resume from.
    if let Some(why) = interrupted {
        return Ok(Attempt::Retry(why, None));
    }
    match total {
        Some(t) if pos < t => Ok(Attempt::Retry(
            format!("the body ended after {pos} of {t} bytes"),
            None,
        )),
        Some(t) if pos > t => Ok(Attempt::Restart(format!(
            "received {pos} bytes, more than the {t} announced"
        ))),
        _ => Ok(Attempt::Complete),
    }
}

/// Checks size and checksum of a complete part file. `Ok(Err(_))` is a mismatch.
async fn verify(asset: &Asset<'_>) -> Result<Result<(), DownloadError>, DownloadError> {
    let got = part_len(&asset.part);
    if let Some(expected) = asset.expected_size {
        if got != expected {
            return Ok(Err(DownloadError::SizeMismatch { expected, got }));
        }
    }
    let Some(Checksum::Sha256(expected)) = asset.checksum.clone() else {
        return Ok(Ok(()));
    };
    let path = asset.part.clone();
    let hashed = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| DownloadError::Io {
            context: "hashing failed for",
            path: asset.part.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|e| io_err("cannot read", &asset.part, e))?;
    if hashed != expected {
        return Ok(Err(DownloadError::ChecksumMismatch {
            expected,
            got: hashed,
        }));
    }
    Ok(Ok(()))
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multihash() {
        let d = "ab".repeat(32);
        assert_eq!(
            Checksum::parse_multihash(&format!("1220{d}")),
            Some(Checksum::Sha256(d.clone()))
        );
        assert_eq!(Checksum::parse_multihash(&format!("1114{d}")), None);
        assert_eq!(Checksum::parse_multihash("1220abc"), None);
    }

    #[test]
    fn content_ranges() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            content_range(Some(&hv("bytes 10-99/100"))),
            (Some(10), Some(100))
        );
        assert_eq!(content_range(Some(&hv("bytes */100"))), (None, Some(100)));
        assert_eq!(content_range(Some(&hv("bytes 0-9/*"))), (Some(0), None));
        assert_eq!(content_range(None), (None, None));
    }

    #[test]
    fn validator_prefers_strong_etags() {
        let mut s = Sidecar {
            etag: Some("W/\"x\"".into()),
            last_modified: Some("date".into()),
            ..Sidecar::default()
        };
        assert_eq!(s.validator(), Some("date"));
        s.etag = Some("\"x\"".into());
        assert_eq!(s.validator(), Some("\"x\""));
    }
}
