//! Where catalogue documents come from ([`SourceSpec`]) and how they are read
//! ([`load`]) into one shape ([`Loaded`]: records, benchmark scenarios, platforms, each
//! as text with its path and URL), with HTTP caching ([`Http`]) and the last good copy
//! of a remote source kept on disk ([`save`], [`restore`]).
//!
//! Sources:
//!
//! - `bundled`: the snapshot compiled into the daemon;
//! - a folder laid out like the APEx repository (or a `file://` URL of one):
//!   `algorithm_catalog/*/*/records/*.json`, `algorithm_catalog/*/*/benchmark*/*.json`,
//!   `platform_catalog/*.json`;
//! - `https://github.com/<owner>/<repo>[/tree/<ref>]`: the file list from the GitHub
//!   trees API, the files from raw.githubusercontent.com;
//! - an OGC API Records collection (`.../collections/<id>`): its `items`, page by page
//!   along `rel: next` links;
//! - any other http(s) URL: a web folder laid out like the repository, walked through
//!   its directory listings (HTML as python's `http.server` or nginx `autoindex` serve
//!   them, or nginx's JSON listing) along `algorithm_catalog/<provider>/<service>/
//!   {records,benchmark*}/` and `platform_catalog/`.
//!
//! URLs in logs and messages never carry their query or user info.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::redact::redact_url;

/// Timeout of one request (connect, headers and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Most files read from one source.
pub const MAX_FILES: usize = 5000;
/// Most pages of an OGC API Records collection followed.
pub const MAX_PAGES: usize = 500;
/// Page size asked of an OGC API Records collection.
pub const PAGE_LIMIT: usize = 100;
/// Requests in flight at once towards one source.
const CONCURRENCY: usize = 8;
/// The GitHub REST API.
const GITHUB_API: &str = "https://api.github.com";
/// Raw files of GitHub repositories.
const GITHUB_RAW: &str = "https://raw.githubusercontent.com";

/// The default catalogue: the public APEx algorithm catalogue.
pub const DEFAULT_CATALOGUE: &str = "https://github.com/ESA-APEx/apex_algorithms";

/// A configured catalogue source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The snapshot compiled into the daemon.
    Bundled,
    /// A local folder laid out like the APEx repository.
    Folder(PathBuf),
    /// A GitHub repository laid out like the APEx repository.
    GitHub {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
        /// Branch, tag or commit (`HEAD` when not given).
        reference: String,
    },
    /// An OGC API Records collection (`.../collections/{id}`).
    Records(Url),
    /// A web folder laid out like the APEx repository (ends with `/`).
    Listing(Url),
}

impl SourceSpec {
    /// Reads one entry of `catalogues`.
    pub fn parse(text: &str) -> Result<SourceSpec, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty catalogue source".into());
        }
        if t.eq_ignore_ascii_case(super::bundled::NAME) {
            return Ok(SourceSpec::Bundled);
        }
        if !t.contains("://") {
            let p = PathBuf::from(t);
            if !p.is_absolute() {
                return Err(format!(
                    "{t:?} is neither an http(s) URL nor an absolute folder path"
                ));
            }
            return Ok(SourceSpec::Folder(p));
        }
        let url = Url::parse(t).map_err(|e| format!("{} is not a URL: {e}", redact_url(t)))?;
        match url.scheme() {
            "file" => {
                return url
                    .to_file_path()
                    .map(SourceSpec::Folder)
                    .map_err(|_| format!("{t:?} is not a usable file URL"))
            }
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "{}: the scheme {other:?} is not supported (use http, https or file)",
                    redact_url(t)
                ))
            }
        }
        if url.host_str().is_none() {
            return Err(format!("{} has no host", redact_url(t)));
        }
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if url.host_str() == Some("github.com") {
            return match segments.as_slice() {
                [owner, repo] => Ok(SourceSpec::GitHub {
                    owner: owner.clone(),
                    repo: repo.trim_end_matches(".git").to_string(),
                    reference: "HEAD".into(),
                }),
                [owner, repo, tree, reference @ ..] if tree == "tree" && !reference.is_empty() => {
                    Ok(SourceSpec::GitHub {
                        owner: owner.clone(),
                        repo: repo.clone(),
                        reference: reference.join("/"),
                    })
                }
                _ => Err(format!(
                    "{}: a GitHub source is https://github.com/<owner>/<repo>[/tree/<ref>]",
                    redact_url(t)
                )),
            };
        }
        let n = segments.len();
        let collection = match segments.as_slice() {
            [.., c, _] if c == "collections" => Some(n),
            [.., c, _, items] if c == "collections" && items == "items" => Some(n - 1),
            _ => None,
        };
        if let Some(keep) = collection {
            let mut u = url.clone();
            u.set_path(&format!("/{}", segments[..keep].join("/")));
            u.set_query(None);
            u.set_fragment(None);
            return Ok(SourceSpec::Records(u));
        }
        let mut u = url;
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        u.set_fragment(None);
        Ok(SourceSpec::Listing(u))
    }

    /// The source's name in listings and logs (no query, no user info).
    pub fn name(&self) -> String {
        match self {
            SourceSpec::Bundled => super::bundled::NAME.into(),
            SourceSpec::Folder(p) => p.display().to_string(),
            SourceSpec::GitHub {
                owner,
                repo,
                reference,
            } if reference == "HEAD" => format!("https://github.com/{owner}/{repo}"),
            SourceSpec::GitHub {
                owner,
                repo,
                reference,
            } => format!("https://github.com/{owner}/{repo}/tree/{reference}"),
            SourceSpec::Records(u) | SourceSpec::Listing(u) => redact_url(u.as_str()),
        }
    }

    /// `bundled`, `folder`, `repository` (GitHub or web folder) or `records`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Bundled => "bundled",
            SourceSpec::Folder(_) => "folder",
            SourceSpec::GitHub { .. } | SourceSpec::Listing(_) => "repository",
            SourceSpec::Records(_) => "records",
        }
    }

    /// Whether it is read over the network (and so kept on disk).
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            SourceSpec::GitHub { .. } | SourceSpec::Records(_) | SourceSpec::Listing(_)
        )
    }
}

/// One document of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawFile {
    /// Path in the repository layout (`algorithm_catalog/p/s/records/s.json`), or a
    /// name (`items/<id>`) for OGC API Records items.
    pub path: String,
    /// Where it was read from, when that is a URL (relative links resolve against it).
    pub url: Option<String>,
    /// The document's text.
    pub text: String,
}

/// Everything read from one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    /// Service records.
    pub records: Vec<RawFile>,
    /// Benchmark scenario files.
    pub scenarios: Vec<RawFile>,
    /// Platform records.
    pub platforms: Vec<RawFile>,
    /// Whether the path of records is a repository path (`false` for OGC API Records).
    pub repository_layout: bool,
}

/// What a path in the repository layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `algorithm_catalog/<provider>/<service>/records/*.json`.
    Record,
    /// `algorithm_catalog/<provider>/<service>/benchmark*/*.json`.
    Scenario,
    /// `platform_catalog/*.json`.
    Platform,
}

/// What the file at `path` (repository layout) is, if it is read at all.
pub fn classify(path: &str) -> Option<FileKind> {
    if !path.ends_with(".json") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["algorithm_catalog", _, _, "records", _] => Some(FileKind::Record),
        ["algorithm_catalog", _, _, d, _] if d.starts_with("benchmark") => Some(FileKind::Scenario),
        ["platform_catalog", _] => Some(FileKind::Platform),
        _ => None,
    }
}

impl Loaded {
    fn push(&mut self, kind: FileKind, file: RawFile) {
        match kind {
            FileKind::Record => self.records.push(file),
            FileKind::Scenario => self.scenarios.push(file),
            FileKind::Platform => self.platforms.push(file),
        }
    }

    /// The bundled snapshot.
    pub fn bundled() -> Loaded {
        let mut out = Loaded {
            repository_layout: true,
            ..Loaded::default()
        };
        for (path, text) in super::bundled::FILES {
            if let Some(kind) = classify(path) {
                out.push(
                    kind,
                    RawFile {
                        path: path.to_string(),
                        url: None,
                        text: text.to_string(),
                    },
                );
            }
        }
        out
    }
}

/// Why a source could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

// ---------------------------------------------------------------------------------
// HTTP with caching
// ---------------------------------------------------------------------------------

#[derive(Clone)]
struct Cached {
    etag: Option<String>,
    last_modified: Option<String>,
    /// The body, kept for `304 Not Modified` answers.
    body: std::sync::Arc<Vec<u8>>,
    fresh_until: Option<Instant>,
}

/// Counts of one read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent.
    pub requests: u64,
    /// Answers `304 Not Modified` (the cached body was reused).
    pub not_modified: u64,
    /// Answers taken from the cache without asking (`Cache-Control: max-age`).
    pub fresh: u64,
}

/// An HTTP client that remembers `ETag`/`Last-Modified` per URL, asks conditionally
/// (`If-None-Match`/`If-Modified-Since`; 304 reuses the body) and honours
/// `Cache-Control: max-age` (no request while fresh). Never sends credentials.
///
/// The cache is a plain map rather than a `moka` cache with expiry: an entry whose
/// `max-age` has run out is not to be dropped but asked about again, since its
/// validators and body are what make the `304` possible; the freshness is a property
/// of the entry, not its lifetime. It holds one entry per URL the sources have
/// listed since the daemon started (the refresh reads the same ones again).
pub struct Http {
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
    counts: Mutex<Counts>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A client with the catalogue's timeouts.
    pub fn new() -> Http {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("eodispatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Http {
            client,
            cache: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts since the last call (and resets them).
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// GETs `url` (with `Accept: accept`): its body.
    pub async fn get(&self, url: &Url, accept: &str) -> Result<Vec<u8>, SourceError> {
        let key = url.to_string();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(c) = &cached {
            if c.fresh_until.is_some_and(|t| Instant::now() < t) {
                self.count(|n| n.fresh += 1);
                return Ok(c.body.to_vec());
            }
        }
        let mut req = self.client.get(url.clone()).header(header::ACCEPT, accept);
        if let Some(c) = &cached {
            if let Some(e) = &c.etag {
                req = req.header(header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &c.last_modified {
                req = req.header(header::IF_MODIFIED_SINCE, m);
            }
        }
        self.count(|n| n.requests += 1);
        let shown = redact_url(url.as_str());
        let resp = req
            .send()
            .await
            .map_err(|e| SourceError(format!("{shown}: {}", describe(&e))))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(c) = cached {
                self.count(|n| n.not_modified += 1);
                let updated = Cached {
                    fresh_until: max_age(&headers).map(|a| Instant::now() + a),
                    ..c.clone()
                };
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, updated);
                return Ok(c.body.to_vec());
            }
            return Err(SourceError(format!("{shown}: 304 without a cached copy")));
        }
        if !status.is_success() {
            return Err(SourceError(format!("{shown}: HTTP {}", status.as_u16())));
        }
        let body = read_limited(resp)
            .await
            .map_err(|e| SourceError(format!("{shown}: {e}")))?;
        let etag = header_text(&headers, header::ETAG);
        let last_modified = header_text(&headers, header::LAST_MODIFIED);
        let fresh_until = max_age(&headers).map(|a| Instant::now() + a);
        if etag.is_some() || last_modified.is_some() || fresh_until.is_some() {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                key,
                Cached {
                    etag,
                    last_modified,
                    body: std::sync::Arc::new(body.clone()),
                    fresh_until,
                },
            );
        }
        Ok(body)
    }

    async fn get_text(&self, url: &Url, accept: &str) -> Result<String, SourceError> {
        let body = self.get(url, accept).await?;
        String::from_utf8(body)
            .map_err(|_| SourceError(format!("{}: not UTF-8 text", redact_url(url.as_str()))))
    }

    async fn get_json(&self, url: &Url, accept: &str) -> Result<Value, SourceError> {
        let text = self.get_text(url, accept).await?;
        serde_json::from_str(&text)
            .map_err(|e| SourceError(format!("{}: not JSON ({e})", redact_url(url.as_str()))))
    }
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

/// `max-age` of `Cache-Control` (none with `no-cache`/`no-store`).
fn max_age(h: &HeaderMap) -> Option<Duration> {
    let cc = header_text(h, header::CACHE_CONTROL)?.to_ascii_lowercase();
    if cc.contains("no-cache") || cc.contains("no-store") {
        return None;
    }
    cc.split(',').find_map(|d| {
        d.trim()
            .strip_prefix("max-age=")
            .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.min(7 * 86400)))
    })
}

async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, String> {
    crate::body_limit::read_limited(resp, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| describe(&e))?
        .ok_or_else(|| format!("larger than {MAX_DOCUMENT_BYTES} bytes"))
}

/// A reqwest error in words, without the URL (which may carry a query).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        crate::redact::redact(&format!("{kind}: {detail}"))
    }
}

// ---------------------------------------------------------------------------------
// Reading each kind of source
// ---------------------------------------------------------------------------------

/// Reads a source.
pub async fn load(spec: &SourceSpec, http: &Http) -> Result<Loaded, SourceError> {
    match spec {
        SourceSpec::Bundled => Ok(Loaded::bundled()),
        SourceSpec::Folder(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load_folder(&dir))
                .await
                .map_err(|e| SourceError(format!("reading the folder failed: {e}")))?
        }
        SourceSpec::GitHub {
            owner,
            repo,
            reference,
        } => load_github(http, owner, repo, reference).await,
        SourceSpec::Records(url) => load_records(http, url).await,
        SourceSpec::Listing(url) => load_listing(http, url).await,
    }
}

/// A folder laid out like the repository.
pub fn load_folder(dir: &Path) -> Result<Loaded, SourceError> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Err(SourceError(format!("{shown} is not a folder")));
    }
    let alg = dir.join("algorithm_catalog");
    let plat = dir.join("platform_catalog");
    if !alg.is_dir() && !plat.is_dir() {
        return Err(SourceError(format!(
            "{shown} has neither algorithm_catalog/ nor platform_catalog/"
        )));
    }
    let mut paths = Vec::new();
    collect(dir, "", 0, &mut paths);
    paths.sort();
    let mut out = Loaded {
        repository_layout: true,
        ..Loaded::default()
    };
    for rel in paths.into_iter().take(MAX_FILES) {
        let Some(kind) = classify(&rel) else { continue };
        let full = dir.join(&rel);
        match std::fs::metadata(&full) {
            Ok(m) if m.len() as usize > MAX_DOCUMENT_BYTES => {
                tracing::warn!(file = %full.display(), "catalogue file too large; skipped");
                continue;
            }
            _ => {}
        }
        match std::fs::read(&full) {
            Ok(bytes) => out.push(
                kind,
                RawFile {
                    path: rel,
                    url: None,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                },
            ),
            Err(e) => {
                tracing::warn!(file = %full.display(), error = %e, "cannot read a catalogue file")
            }
        }
    }
    Ok(out)
}

/// Relative paths of files below `dir` that [`classify`] could accept (depth ≤ 5).
fn collect(root: &Path, rel: &str, depth: usize, out: &mut Vec<String>) {
    if depth > 4 || out.len() > MAX_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth == 0 && name != "algorithm_catalog" && name != "platform_catalog" {
                continue;
            }
            collect(root, &path, depth + 1, out);
        } else if classify(&path).is_some() {
            out.push(path);
        }
    }
}

/// A GitHub repository: the trees API lists the files, raw.githubusercontent.com
/// serves them.
async fn load_github(
    http: &Http,
    owner: &str,
    repo: &str,
    reference: &str,
) -> Result<Loaded, SourceError> {
    load_github_at(http, GITHUB_API, GITHUB_RAW, owner, repo, reference).await
}

/// [`load_github`] with the API and raw-file servers given (tests serve both).
async fn load_github_at(
    http: &Http,
    api: &str,
    raw: &str,
    owner: &str,
    repo: &str,
    reference: &str,
) -> Result<Loaded, SourceError> {
    let seg = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let tree_url = Url::parse(&format!(
        "{api}/repos/{}/{}/git/trees/{}?recursive=1",
        seg(owner),
        seg(repo),
        seg(reference)
    ))
    .map_err(|e| SourceError(e.to_string()))?;
    let tree = http
        .get_json(&tree_url, "application/vnd.github+json")
        .await?;
    if tree.get("truncated").and_then(Value::as_bool) == Some(true) {
        tracing::warn!(
            repository = %format!("{owner}/{repo}"),
            "the GitHub trees API cut its list short; some catalogue files may be missing"
        );
    }
    let paths: Vec<String> = tree
        .get("tree")
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError("the GitHub trees API answered no `tree`".into()))?
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("blob"))
        .filter_map(|e| e.get("path").and_then(Value::as_str))
        .filter(|p| classify(p).is_some())
        .map(str::to_string)
        .take(MAX_FILES)
        .collect();
    let base = Url::parse(&format!(
        "{raw}/{}/{}/{}/",
        seg(owner),
        seg(repo),
        reference
    ))
    .map_err(|e| SourceError(e.to_string()))?;
    fetch_files(http, &base, paths).await
}

/// Fetches `paths` below `base`; a file that cannot be had is logged and left out,
/// but when none can be had the source is unreadable.
async fn fetch_files(http: &Http, base: &Url, paths: Vec<String>) -> Result<Loaded, SourceError> {
    let total = paths.len();
    let results: Vec<(String, Url, Result<String, SourceError>)> = stream::iter(paths)
        .map(|p| async move {
            let url = base.join(&p);
            match url {
                Ok(u) => {
                    let r = http.get_text(&u, "application/json").await;
                    (p, u, r)
                }
                Err(e) => (p, base.clone(), Err(SourceError(e.to_string()))),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Loaded {
        repository_layout: true,
        ..Loaded::default()
    };
    let mut failures = Vec::new();
    let mut results = results;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, url, r) in results {
        match r {
            Ok(text) => {
                if let Some(kind) = classify(&path) {
                    out.push(
                        kind,
                        RawFile {
                            path,
                            url: Some(url.to_string()),
                            text,
                        },
                    )
                }
            }
            Err(e) => failures.push(e.0),
        }
    }
    if total > 0 && failures.len() == total {
        return Err(SourceError(format!(
            "none of its {total} files could be read: {}",
            failures[0]
        )));
    }
    if !failures.is_empty() {
        // A partial read would drop services: the source counts as unreadable.
        return Err(SourceError(format!(
            "{} of its {total} files could not be read, e.g. {}",
            failures.len(),
            failures[0]
        )));
    }
    Ok(out)
}

/// An OGC API Records collection: `items` pages along `rel: next`.
async fn load_records(http: &Http, collection: &Url) -> Result<Loaded, SourceError> {
    let mut url = collection.clone();
    url.set_path(&format!(
        "{}/items",
        collection.path().trim_end_matches('/')
    ));
    url.query_pairs_mut()
        .append_pair("limit", &PAGE_LIMIT.to_string())
        .append_pair("f", "json");
    let mut out = Loaded::default();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        if !seen.insert(url.to_string()) {
            break;
        }
        let page = http
            .get_json(&url, "application/geo+json, application/json")
            .await?;
        let features = page
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                SourceError(format!(
                    "{}: no `features` (not an OGC API Records items page)",
                    redact_url(url.as_str())
                ))
            })?;
        for f in features {
            let id = f
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let item = url
                .join(&format!(
                    "items/{}",
                    url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
                ))
                .ok()
                .map(|u| {
                    let mut u = u;
                    u.set_query(None);
                    u.to_string()
                });
            out.records.push(RawFile {
                path: format!("items/{id}"),
                url: item,
                text: f.to_string(),
            });
        }
        let next = page
            .get("links")
            .and_then(Value::as_array)
            .and_then(|links| {
                links.iter().find(|l| {
                    l.get("rel").and_then(Value::as_str) == Some("next")
                        && l.get("type")
                            .and_then(Value::as_str)
                            .is_none_or(|t| t.contains("json"))
                })
            })
            .and_then(|l| l.get("href").and_then(Value::as_str))
            .and_then(|h| url.join(h).ok());
        match next {
            Some(n) if !features.is_empty() => url = n,
            _ => return Ok(out),
        }
    }
    Ok(out)
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name (without a trailing `/`).
    pub name: String,
    /// Whether it is a folder.
    pub dir: bool,
}

/// Reads a directory listing: nginx's JSON (`[{"name", "type"}]`) or HTML links
/// (python's `http.server`, nginx/Apache autoindex). Only direct children count.
pub fn parse_listing(body: &str) -> Vec<Entry> {
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(body) {
        return items
            .iter()
            .filter_map(|i| {
                let name = i.get("name")?.as_str()?.trim_end_matches('/').to_string();
                let dir = i.get("type").and_then(Value::as_str) == Some("directory");
                (!name.is_empty() && !name.contains('/')).then_some(Entry { name, dir })
            })
            .collect();
    }
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let (quote, tail) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => (q, &rest[1..]),
            _ => continue,
        };
        let Some(end) = tail.find(quote) else { break };
        let href = &tail[..end];
        rest = &tail[end..];
        if href.is_empty()
            || href.starts_with(['?', '#', '/'])
            || href.starts_with("..")
            || href.contains("://")
        {
            continue;
        }
        let href = href.split(['?', '#']).next().unwrap_or(href);
        let decoded: String =
            url::form_urlencoded::parse(format!("n={}", href.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
        let dir = decoded.ends_with('/');
        let name = decoded
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            continue;
        }
        let e = Entry { name, dir };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

async fn list(http: &Http, base: &Url, rel: &str) -> Result<Vec<Entry>, SourceError> {
    let url = base
        .join(rel)
        .map_err(|e| SourceError(format!("{rel}: {e}")))?;
    let text = http
        .get_text(&url, "text/html, application/json;q=0.9, */*;q=0.5")
        .await?;
    Ok(parse_listing(&text))
}

/// A web folder laid out like the repository, walked through its listings.
async fn load_listing(http: &Http, base: &Url) -> Result<Loaded, SourceError> {
    let mut files: Vec<String> = Vec::new();
    let platforms = list(http, base, "platform_catalog/").await;
    let providers = list(http, base, "algorithm_catalog/").await;
    if let (Err(e), Err(_)) = (&platforms, &providers) {
        return Err(e.clone());
    }
    for e in platforms.unwrap_or_default() {
        let p = format!("platform_catalog/{}", e.name);
        if !e.dir && classify(&p).is_some() {
            files.push(p);
        }
    }
    let providers: Vec<String> = providers?
        .into_iter()
        .filter(|e| e.dir)
        .map(|e| format!("algorithm_catalog/{}/", enc(&e.name)))
        .collect();
    let services = list_all(http, base, providers).await?;
    let service_dirs: Vec<String> = services
        .into_iter()
        .flat_map(|(dir, entries)| {
            entries
                .into_iter()
                .filter(|e| e.dir)
                .map(move |e| format!("{dir}{}/", enc(&e.name)))
        })
        .collect();
    let inner = list_all(http, base, service_dirs).await?;
    let wanted: Vec<String> = inner
        .into_iter()
        .flat_map(|(dir, entries)| {
            entries
                .into_iter()
                .filter(|e| e.dir && (e.name == "records" || e.name.starts_with("benchmark")))
                .map(move |e| format!("{dir}{}/", enc(&e.name)))
        })
        .collect();
    for (dir, entries) in list_all(http, base, wanted).await? {
        for e in entries.into_iter().filter(|e| !e.dir) {
            let p = format!("{dir}{}", enc(&e.name));
            let decoded = format!("{}{}", decode(&dir), e.name);
            if classify(&decoded).is_some() {
                files.push(p);
            }
        }
    }
    files.truncate(MAX_FILES);
    let mut loaded = fetch_files(http, base, files).await?;
    for f in loaded
        .records
        .iter_mut()
        .chain(loaded.scenarios.iter_mut())
        .chain(loaded.platforms.iter_mut())
    {
        f.path = decode(&f.path);
    }
    Ok(loaded)
}

/// Lists several folders at once.
async fn list_all(
    http: &Http,
    base: &Url,
    dirs: Vec<String>,
) -> Result<Vec<(String, Vec<Entry>)>, SourceError> {
    let results: Vec<(String, Result<Vec<Entry>, SourceError>)> = stream::iter(dirs)
        .map(|d| async move {
            let r = list(http, base, &d).await;
            (d, r)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    for (d, r) in results {
        out.push((d, r?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decode(path: &str) -> String {
    path.split('/')
        .map(|s| {
            url::form_urlencoded::parse(format!("n={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------------
// The last good copy on disk
// ---------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Saved {
    source: String,
    saved_at: String,
    loaded: Loaded,
}

/// The file of a source's last good copy in `dir` (`state_dir/catalogue`).
pub fn saved_path(dir: &Path, source_name: &str) -> PathBuf {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(source_name.as_bytes());
    let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.json"))
}

/// Writes the last good copy atomically (temporary file, then rename).
pub fn save(dir: &Path, source_name: &str, loaded: &Loaded, saved_at: &str) -> std::io::Result<()> {
    crate::private::create_dir(dir, true)?;
    let path = saved_path(dir, source_name);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let doc = Saved {
        source: source_name.to_string(),
        saved_at: saved_at.to_string(),
        loaded: loaded.clone(),
    };
    let bytes = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// The last good copy of a source and when it was saved, if there is a readable one.
pub fn restore(dir: &Path, source_name: &str) -> Option<(Loaded, String)> {
    let path = saved_path(dir, source_name);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Saved>(&bytes) {
        Ok(s) if s.source == source_name => Some((s.loaded, s.saved_at)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable saved catalogue copy; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn sources_are_recognised() {
        assert_eq!(SourceSpec::parse("bundled").unwrap(), SourceSpec::Bundled);
        assert_eq!(
            SourceSpec::parse("/data/apex").unwrap(),
            SourceSpec::Folder("/data/apex".into())
        );
        assert_eq!(
            SourceSpec::parse("file:///data/apex").unwrap(),
            SourceSpec::Folder("/data/apex".into())
        );
        assert!(SourceSpec::parse("relative/dir").is_err());
        assert!(SourceSpec::parse("ftp://x/y").is_err());
        assert!(SourceSpec::parse("").is_err());
        assert_eq!(
            SourceSpec::parse(DEFAULT_CATALOGUE).unwrap(),
            SourceSpec::GitHub {
                owner: "ESA-APEx".into(),
                repo: "apex_algorithms".into(),
                reference: "HEAD".into()
            }
        );
        let tree = SourceSpec::parse("https://github.com/o/r/tree/release/2").unwrap();
        assert_eq!(tree.name(), "https://github.com/o/r/tree/release/2");
        assert!(SourceSpec::parse("https://github.com/o").is_err());
        match SourceSpec::parse("https://cat.example/api/collections/apex/items?limit=3").unwrap() {
            SourceSpec::Records(u) => {
                assert_eq!(u.as_str(), "https://cat.example/api/collections/apex")
            }
            other => panic!("{other:?}"),
        }
        let l = SourceSpec::parse("http://user:pw@127.0.0.1:8000/apex?sig=x").unwrap();
        assert_eq!(l.kind(), "repository");
        assert!(
            !l.name().contains("sig") && !l.name().contains("pw"),
            "{}",
            l.name()
        );
        match l {
            SourceSpec::Listing(u) => assert!(u.path().ends_with("/apex/")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(
            classify("algorithm_catalog/p/s/records/s.json"),
            Some(FileKind::Record)
        );
        assert_eq!(
            classify("algorithm_catalog/p/s/benchmark-scenarios/x.json"),
            Some(FileKind::Scenario)
        );
        assert_eq!(
            classify("platform_catalog/x.json"),
            Some(FileKind::Platform)
        );
        assert_eq!(classify("algorithm_catalog/p/s/openeo_udp/s.json"), None);
        assert_eq!(classify("algorithm_catalog/p/record.json"), None);
        assert_eq!(classify("algorithm_catalog/p/s/records/thumb.png"), None);
    }

    #[test]
    fn listings_of_python_and_nginx() {
        let python = r#"<ul><li><a href="records/">records/</a></li>
            <li><a href="my%20file.json">my file.json</a></li>
            <li><a href="../">..</a><a href="?C=N;O=D">sort</a><a href="https://x/">x</a></li></ul>"#;
        assert_eq!(
            parse_listing(python),
            vec![
                Entry {
                    name: "records".into(),
                    dir: true
                },
                Entry {
                    name: "my file.json".into(),
                    dir: false
                }
            ]
        );
        let nginx = r#"[{"name":"gep.json","type":"file"},{"name":"vito","type":"directory"}]"#;
        assert_eq!(
            parse_listing(nginx),
            vec![
                Entry {
                    name: "gep.json".into(),
                    dir: false
                },
                Entry {
                    name: "vito".into(),
                    dir: true
                }
            ]
        );
    }

    #[test]
    fn the_bundled_snapshot_and_saved_copies() {
        let b = Loaded::bundled();
        assert_eq!(b.records.len(), 70);
        assert_eq!(b.platforms.len(), 7);
        assert!(b.scenarios.len() >= 30);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("catalogue");
        assert!(restore(&d, "http://x/").is_none());
        save(&d, "http://x/", &b, "2026-01-01T00:00:00Z").unwrap();
        let (back, at) = restore(&d, "http://x/").unwrap();
        assert_eq!(back, b);
        assert_eq!(at, "2026-01-01T00:00:00Z");
        assert!(restore(&d, "http://y/").is_none());
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    /// A stand-in for GitHub on 127.0.0.1: the trees API at `/repos/o/r/git/trees/main`
    /// and raw files at `/o/r/main/<path>` (the bundled snapshot), with an `ETag` per
    /// file (304 for `If-None-Match`) and `Cache-Control: max-age=600` on the platforms.
    /// Counts requests.
    async fn fake_github() -> (String, Arc<AtomicUsize>) {
        use axum::http::{HeaderMap as AxumHeaders, StatusCode};
        use axum::response::IntoResponse;
        let count = Arc::new(AtomicUsize::new(0));
        let c1 = count.clone();
        let c2 = count.clone();
        let app = axum::Router::new()
            .route(
                "/repos/o/r/git/trees/main",
                axum::routing::get(move || {
                    c1.fetch_add(1, Ordering::SeqCst);
                    let mut tree: Vec<Value> = super::super::bundled::FILES
                        .iter()
                        .map(|(p, _)| serde_json::json!({"path": p, "type": "blob"}))
                        .collect();
                    tree.push(serde_json::json!({"path": "algorithm_catalog", "type": "tree"}));
                    async move { axum::Json(serde_json::json!({"tree": tree, "truncated": false})) }
                }),
            )
            .route(
                "/o/r/main/{*path}",
                axum::routing::get(
                    move |axum::extract::Path(path): axum::extract::Path<String>,
                          h: AxumHeaders| {
                        c2.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let Some(text) = super::super::bundled::file(&path) else {
                                return StatusCode::NOT_FOUND.into_response();
                            };
                            let etag = format!("\"{}\"", text.len());
                            if h.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(&etag) {
                                return (StatusCode::NOT_MODIFIED, [("etag", etag)])
                                    .into_response();
                            }
                            let cache = if path.starts_with("platform_catalog/") {
                                "max-age=600"
                            } else {
                                "no-cache"
                            };
                            ([("etag", etag), ("cache-control", cache.to_string())], text)
                                .into_response()
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, count)
    }

    #[tokio::test]
    async fn a_github_repository_is_read_through_the_trees_api_and_cached() {
        let (base, count) = fake_github().await;
        let http = Http::new();
        let first = load_github_at(&http, &base, &base, "o", "r", "main")
            .await
            .unwrap();
        assert_eq!(first.records.len(), 70);
        assert_eq!(first.platforms.len(), 7);
        assert!(first.records[0]
            .url
            .as_deref()
            .unwrap()
            .starts_with(&format!("{base}/o/r/main/algorithm_catalog/")));
        let files = first.records.len() + first.scenarios.len() + first.platforms.len();
        let n = http.take_counts();
        assert_eq!(n.requests as usize, files + 1);
        assert_eq!(count.load(Ordering::SeqCst), files + 1);
        // Again: every file is asked with If-None-Match (304), except the platforms,
        // still fresh by their max-age; the result is the same.
        let again = load_github_at(&http, &base, &base, "o", "r", "main")
            .await
            .unwrap();
        assert_eq!(again, first);
        let n = http.take_counts();
        assert_eq!(n.fresh, 7);
        assert_eq!(n.not_modified as usize, files - 7);
        // A repository that is not there.
        let err = load_github_at(&http, &base, &base, "o", "nope", "main")
            .await
            .unwrap_err();
        assert!(err.0.contains("HTTP 404"), "{err}");
    }

    #[test]
    fn max_age_is_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(300)));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, max-age=300"),
        );
        assert_eq!(max_age(&h), None);
    }
}
