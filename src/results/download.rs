//! Downloading one asset into the staging folder: streamed, resumable, verified.
//!
//! [`fetch`] writes `<name>.part` in constant memory (on a thread of its own: each
//! received chunk is written at once, as curl does) and keeps a
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
//!   [`MAX_FULL_RESTARTS`] times;
//! - a body longer than what was declared for it — the response's `Content-Length`,
//!   the end of its `Content-Range` or the range's total, the results document's
//!   `file:size`, whichever is smallest — is cut off at once: nothing past the
//!   declared size is written, and it counts as a corrupt file
//!   ([`DownloadError::Oversized`] once the restarts are used up). Without any declared
//!   size the body is taken as it comes (a full disk stops it: `DiskFull`). Sizes and
//!   offsets from headers are parsed and added with checked arithmetic.
//!
//! The bearer token is offered by the caller only when the asset URL is on the
//! backend API's own origin, and sent only after that host refused the request without
//! it (401/403; signed links need no token). Redirects are followed here, hop by hop
//! (at most [`MAX_REDIRECTS`]): each target must pass
//! [`crate::platform::http::redirect_refusal`] (http(s) only; never link-local,
//! metadata or unspecified addresses; loopback only when the link itself is on
//! loopback), and the token is dropped for good at the first hop to another origin
//! (scheme, host or port).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE,
    RETRY_AFTER,
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

/// Largest single write to the part file. Received chunks (up to a few hundred KiB)
/// are written in pieces of this size, about what curl writes (4–12 KiB): on the
/// benchmark machine (Linux 6.18, ext4, whose page cache sizes its folios by the
/// write) whole chunks were 1.4–2.5× slower to write than 16 KiB pieces, which match
/// curl.
pub const WRITE_SIZE: usize = 16 * 1024;

/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = crate::platform::http::MAX_REDIRECTS;

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
    /// The server sent more than it declared, again and again (cut off each time).
    #[error(
        "the server sent more than the {declared} bytes declared by {by}; the body was cut off"
    )]
    Oversized {
        /// The declared size of the file.
        declared: u64,
        /// Where it was declared (`Content-Length`, `Content-Range`, `file:size`).
        by: &'static str,
    },
    /// A redirect to a place a backend may not send us (see
    /// [`crate::platform::http::redirect_refusal`]), or too many of them.
    #[error("{0}")]
    RedirectRefused(String),
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
            DownloadError::Oversized { .. } => "OversizedBody",
            DownloadError::RedirectRefused(_) => "RedirectRefused",
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
    /// The backend itself is on loopback, so links and redirects to loopback are its
    /// own (a remote backend's link to loopback would reach this machine's services).
    pub loopback_ok: bool,
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
/// read timeout of `stall` for stalled transfers; redirects are not followed by the
/// client but by [`fetch`], hop by hop (checked, the token dropped on another origin).
/// No idle connections are kept: each transfer's connection lives on the runtime of
/// its download thread, which ends with it (and a new connection costs nothing next to
/// a file).
pub fn client(stall: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("eodispatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(stall)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
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
    /// The body went past its declared size (cut off there): a corrupt file.
    Oversized(DownloadError),
}

/// Downloads `asset` into its part file until it is complete and verified.
///
/// The transfer runs on a thread of its own, with a single-threaded runtime: opening
/// the connection, reading the socket and writing each chunk to the file happen on that
/// one thread, one after the other, as curl does — no hand-over between threads per
/// chunk, and the daemon's runtime workers never wait for the disk. Dropping the
/// returned future stops the transfer (the part file stays for a resume).
pub async fn fetch(http: &reqwest::Client, asset: &Asset<'_>) -> Result<Fetched, DownloadError> {
    let http = http.clone();
    let key = asset.key.to_string();
    let (url, auth, loopback_ok) = (asset.url.clone(), asset.auth.clone(), asset.loopback_ok);
    let (part, sidecar) = (asset.part.clone(), asset.sidecar.clone());
    let (expected_size, checksum) = (asset.expected_size, asset.checksum.clone());
    let progress = asset.progress.clone();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _stop_on_drop = cancel.clone().drop_guard();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_failed = |source: std::io::Error| DownloadError::Io {
        context: "cannot run the download of",
        path: asset.part.clone(),
        source,
    };
    std::thread::Builder::new()
        .name("eodispatch-download".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let asset = Asset {
                key: &key,
                url,
                auth,
                loopback_ok,
                part,
                sidecar,
                expected_size,
                checksum,
                progress,
            };
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(io_err("cannot run the download of", &asset.part, e)));
                    return;
                }
            };
            let out = runtime.block_on(async {
                tokio::select! {
                    out = fetch_here(&http, &asset) => Some(out),
                    () = cancel.cancelled() => None,
                }
            });
            if let Some(out) = out {
                let _ = tx.send(out);
            }
        })
        .map_err(thread_failed)?;
    rx.await.unwrap_or_else(|_| {
        Err(thread_failed(std::io::Error::other(
            "the download thread ended without an answer",
        )))
    })
}

/// [`fetch`] on the current thread's runtime.
async fn fetch_here(http: &reqwest::Client, asset: &Asset<'_>) -> Result<Fetched, DownloadError> {
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
            Attempt::Oversized(corrupt) => {
                full_restarts += 1;
                tracing::warn!(asset = asset.key, error = %corrupt, "the server sent more than it declared; downloading again");
                reset(asset)?;
                if full_restarts > MAX_FULL_RESTARTS {
                    return Err(corrupt);
                }
            }
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

/// A parsed `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ContentRange {
    /// First byte (`a` of `bytes a-b/N`); `None` for `bytes */N` or nonsense.
    start: Option<u64>,
    /// Last byte (`b`), only when `a <= b` (and `b < N` when `N` is known).
    end: Option<u64>,
    /// The full size (`N`), if given.
    total: Option<u64>,
}

/// `Content-Range: bytes a-b/N` (numbers that do not fit a `u64` count as absent).
fn content_range(v: Option<&HeaderValue>) -> ContentRange {
    let Some(s) = v.and_then(|v| v.to_str().ok()) else {
        return ContentRange::default();
    };
    let Some(rest) = s.trim().strip_prefix("bytes ") else {
        return ContentRange::default();
    };
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let total: Option<u64> = total.trim().parse().ok();
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok(), b.trim().parse::<u64>().ok()),
        None => (None, None),
    };
    let end = end.filter(|&b| start.is_some_and(|a| a <= b) && total.is_none_or(|n| b < n));
    ContentRange { start, end, total }
}

/// The largest size the file may reach with this answer: the smallest of what the
/// answer and the results document declare, with where it was declared. Sums that do
/// not fit a `u64` declare nothing.
fn declared_limit(
    start: u64,
    content_length: Option<u64>,
    range: Option<ContentRange>,
    file_size: Option<u64>,
) -> Option<(u64, &'static str)> {
    let mut limit: Option<(u64, &'static str)> = None;
    let mut tighten = |v: Option<u64>, by: &'static str| {
        if let Some(v) = v {
            if limit.is_none_or(|(l, _)| v < l) {
                limit = Some((v, by));
            }
        }
    };
    tighten(
        content_length.and_then(|n| start.checked_add(n)),
        "Content-Length",
    );
    if let Some(r) = range {
        tighten(r.end.and_then(|b| b.checked_add(1)), "Content-Range");
        tighten(r.total, "Content-Range");
    }
    tighten(file_size, "file:size");
    limit
}

/// Sends the request for `asset` and follows redirects hop by hop: the link and each
/// target must pass [`crate::platform::http::redirect_refusal`] (loopback only for a
/// backend on loopback), and the token is dropped for good at the first hop to another
/// origin. `Ok(Err(_))`: no answer, try again.
async fn send(
    http: &reqwest::Client,
    asset: &Asset<'_>,
    with_auth: bool,
    have: u64,
    validator: Option<&str>,
) -> Result<Result<reqwest::Response, Attempt>, DownloadError> {
    use crate::platform::http::{link_refusal, redirect_refusal, same_origin};
    let loopback_ok = asset.loopback_ok;
    if let Some(why) = link_refusal(&asset.url, loopback_ok, "an asset link") {
        return Err(DownloadError::RedirectRefused(why));
    }
    let mut url = asset.url.clone();
    let mut auth = asset.auth.clone().filter(|_| with_auth);
    let mut hops = 0usize;
    loop {
        let mut req = http.get(url.clone());
        if let Some(auth) = &auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
            if let Some(v) = validator {
                req = req.header(IF_RANGE, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(Attempt::Retry(
                    format!(
                        "request failed: {}",
                        crate::redact::redact(&e.without_url().to_string())
                    ),
                    None,
                )))
            }
        };
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(Ok(resp));
        }
        let next = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l.trim()).ok())
            .ok_or(DownloadError::Refused { status })?;
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(DownloadError::RedirectRefused(format!(
                "more than {MAX_REDIRECTS} redirects"
            )));
        }
        if let Some(why) = redirect_refusal(&next, loopback_ok) {
            return Err(DownloadError::RedirectRefused(why));
        }
        if !same_origin(&url, &next) {
            auth = None;
        }
        tracing::debug!(asset = asset.key, status, to = %crate::redact::redact_url(next.as_str()), "following a redirect");
        url = next;
    }
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
    let resp = match send(http, asset, with_auth, have, validator.as_deref()).await? {
        Ok(r) => r,
        Err(retry) => return Ok(retry),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::platform::http::parse_retry_after);
    let (start, total, range) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let range = content_range(headers.get(CONTENT_RANGE));
            if range.start != Some(have) || range.end.is_none() {
                return Ok(Attempt::Restart(format!(
                    "asked for bytes from {have}, the server sent a range from {:?} to {:?}",
                    range.start, range.end
                )));
            }
            (have, range.total, Some(range))
        }
        StatusCode::OK => {
            if have > 0 {
                tracing::info!(asset = asset.key, "the server sent the whole file (no range support, or the file changed): starting from zero");
            }
            (0, resp.content_length(), None)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = content_range(headers.get(CONTENT_RANGE)).total;
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
    let limit = declared_limit(start, resp.content_length(), range, asset.expected_size);
    if let Some((limit, by)) = limit.filter(|(l, _)| *l < start) {
        return Ok(Attempt::Restart(format!(
            "{by} declares {limit} bytes, the partial file has {start}"
        )));
    }
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
    // Open at the right place: keep `start` bytes, drop anything after them. Starting
    // from zero makes a new file rather than truncating the old one: ext4 writes back a
    // file that was truncated to zero when it is closed (`auto_da_alloc`), which made
    // every download wait for its own writeback (measured: about 0.7 s per GiB).
    if start == 0 {
        match std::fs::remove_file(&asset.part) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot delete", &asset.part, e)),
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&asset.part)
        .map_err(|e| io_err("cannot open", &asset.part, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot read", &asset.part, e))?
        .len();
    if len != start {
        file.set_len(start)
            .map_err(|e| io_err("cannot truncate", &asset.part, e))?;
    }
    asset.progress.store(start, Ordering::Relaxed);
    // Each received chunk is written at once, on this thread (the download's own, see
    // `fetch`): the bytes still in the CPU cache, no hand-over — as curl does.
    use std::io::{Seek, Write};
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(start))
        .map_err(|e| io_err("cannot seek in", &asset.part, e))?;
    let mut pos = start;
    let mut resp = resp;
    let interrupted = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                // Never past the declared size: the excess is not written.
                let room = limit.map_or(u64::MAX, |(l, _)| l - pos);
                let keep = usize::try_from(room).map_or(chunk.len(), |r| r.min(chunk.len()));
                let data = &chunk[..keep];
                for piece in data.chunks(WRITE_SIZE) {
                    file.write_all(piece)
                        .map_err(|e| io_err("cannot write", &asset.part, e))?;
                }
                pos += keep as u64;
                asset.progress.store(pos, Ordering::Relaxed);
                if keep < chunk.len() {
                    let (declared, by) = limit.unwrap_or((pos, "Content-Length"));
                    drop(file);
                    return Ok(Attempt::Oversized(DownloadError::Oversized {
                        declared,
                        by,
                    }));
                }
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
    // On the download's own thread (see `fetch`): no runtime worker waits.
    let hashed = sha256_file(&asset.part).map_err(|e| io_err("cannot read", &asset.part, e))?;
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
        let cr = |start, end, total| ContentRange { start, end, total };
        assert_eq!(
            content_range(Some(&hv("bytes 10-99/100"))),
            cr(Some(10), Some(99), Some(100))
        );
        assert_eq!(
            content_range(Some(&hv("bytes */100"))),
            cr(None, None, Some(100))
        );
        assert_eq!(
            content_range(Some(&hv("bytes 0-9/*"))),
            cr(Some(0), Some(9), None)
        );
        assert_eq!(content_range(None), cr(None, None, None));
        // Nonsense and numbers too large for a u64 declare nothing.
        assert_eq!(
            content_range(Some(&hv("bytes 50-10/100"))),
            cr(Some(50), None, Some(100))
        );
        assert_eq!(
            content_range(Some(&hv("bytes 0-100/100"))),
            cr(Some(0), None, Some(100))
        );
        assert_eq!(
            content_range(Some(&hv("bytes 0-99999999999999999999/*"))),
            cr(Some(0), None, None)
        );
    }

    #[test]
    fn declared_limits_take_the_smallest_and_never_overflow() {
        let max = u64::MAX;
        assert_eq!(declared_limit(0, None, None, None), None);
        assert_eq!(
            declared_limit(0, Some(100), None, Some(80)),
            Some((80, "file:size"))
        );
        assert_eq!(
            declared_limit(10, Some(100), None, Some(800)),
            Some((110, "Content-Length"))
        );
        let range = ContentRange {
            start: Some(10),
            end: Some(19),
            total: Some(100),
        };
        assert_eq!(
            declared_limit(10, None, Some(range), None),
            Some((20, "Content-Range"))
        );
        // Hostile headers: start + length and end + 1 do not fit; nothing declared by
        // them, no panic.
        assert_eq!(declared_limit(max, Some(max), None, None), None);
        let range = ContentRange {
            start: Some(max),
            end: Some(max),
            total: None,
        };
        assert_eq!(declared_limit(max, Some(1), Some(range), None), None);
        assert_eq!(
            declared_limit(max - 1, Some(max), Some(range), Some(max)),
            Some((max, "file:size"))
        );
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
