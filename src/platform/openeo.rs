//! The openEO platform adapter: one [`OpenEoBackend`] per backend endpoint speaks the
//! openEO API 1.x batch-job endpoints and nothing else.
//!
//! - [`OpenEoBackend`]: a cheap-to-clone handle (an `Arc` inside) owning one
//!   `reqwest::Client`, the backend's [`Bearer`] and the cached version discovery and
//!   [`Capabilities`].
//! - [`OpenEoBackend::job_body`]: the `POST /jobs` body that calls a remote UDP by URL
//!   and saves the result in the asked [`OutputFormat`].
//! - [`RemoteJob`]: a batch job as the backend reports it.
//! - [`OpenEoError`]: every failure, classified for the scheduler (is it transient, may
//!   the request have been received, when to try again).
//!
//! Rules this module keeps:
//! - **No retries inside.** The scheduler owns retries and backoff. In particular
//!   `POST /jobs` is never retried: an ambiguous failure ([`OpenEoError::NoAnswer`])
//!   must be reconciled by listing the backend's jobs.
//! - **Secrets stay secret.** The bearer token goes only to the backend's own origin
//!   (scheme, host and port of its API URL); reqwest also drops `Authorization` on
//!   cross-host redirects. No error message or log line contains the token or a URL
//!   query string (signed result links carry their signature in the query).
//! - **Answers are summarised, never echoed.** An HTML error page becomes
//!   `HTTP 502 (HTML page)`; backend messages are cut to a reasonable length.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::auth::session::{Session, SessionError};
use crate::auth::tokens::SecretString;
use crate::job::OutputFormat;

// ============================================================================
// Limits
// ============================================================================

/// Time allowed to open a connection (TCP + TLS) before the backend counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for a whole request, answer body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `Retry-After` honoured: a backend asking for more is asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Redirects followed per request (reqwest drops `Authorization` on cross-host hops).
const MAX_REDIRECTS: usize = 5;

/// Page size asked for when listing jobs.
const LIST_PAGE_SIZE: u32 = 100;

/// Pages followed when listing jobs (so 5000 jobs at the asked page size).
const MAX_LIST_PAGES: usize = 50;

/// Largest successful answer read (a long job list or a results document).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Largest error answer read: enough for any openEO error JSON, cut for HTML pages.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Longest backend message kept in an error.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Prefix of the Remote Process Definition extension's conformance class (calling UDPs
/// by URL); the version follows it.
pub const REMOTE_PROCESS_DEFINITION: &str =
    "https://api.openeo.org/extensions/remote-process-definition/";

/// User agent of every request.
const USER_AGENT: &str = concat!("eodispatch/", env!("CARGO_PKG_VERSION"));

// ============================================================================
// Public types
// ============================================================================

/// A batch job as the backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteJob {
    /// The backend's job id.
    pub id: String,
    /// The backend's status word (`created, queued, running, finished, canceled, error`).
    pub status: String,
    /// Progress in percent, when reported.
    pub progress: Option<f64>,
    /// Title, when reported.
    pub title: Option<String>,
    /// Description, when reported (lists may omit it).
    pub description: Option<String>,
    /// Time of the last change (RFC 3339), when reported.
    pub updated: Option<String>,
}

/// What went wrong talking to a backend.
#[derive(Debug, thiserror::Error)]
pub enum OpenEoError {
    /// Could not connect at all: the request was certainly not received.
    #[error("cannot reach {backend}: {reason}")]
    Unreachable {
        /// Backend URL (no query).
        backend: String,
        /// Why.
        reason: String,
    },
    /// The request may have been received but no usable answer came back (timeout,
    /// connection dropped mid-answer, or a gateway error answering a `POST /jobs`). A
    /// POST that fails this way must be reconciled, not retried.
    #[error("no answer from {backend}: {reason}")]
    NoAnswer {
        /// Backend URL.
        backend: String,
        /// Why.
        reason: String,
    },
    /// 429 / 502 / 503 / 504 (and 500 for idempotent requests): try again later.
    #[error("{backend} is busy or failing (HTTP {status}): {message}")]
    Transient {
        /// Backend URL.
        backend: String,
        /// HTTP status.
        status: u16,
        /// Backend message (or a summary of an HTML body).
        message: String,
        /// Retry-After, when given (capped at [`MAX_RETRY_AFTER`]).
        retry_after: Option<Duration>,
    },
    /// Missing, expired or rejected credentials (401, 403 `TokenInvalid`, ...).
    #[error("{backend} needs a login: {message}")]
    Auth {
        /// Backend URL.
        backend: String,
        /// openEO error code.
        code: String,
        /// Backend message.
        message: String,
    },
    /// Any other error answer: the request is wrong for this backend.
    #[error("{backend} refused the request (HTTP {status} {code}): {message}")]
    Api {
        /// Backend URL.
        backend: String,
        /// HTTP status.
        status: u16,
        /// openEO error code (e.g. `ProcessNamespaceInvalid`).
        code: String,
        /// Backend message.
        message: String,
    },
    /// A 2xx answer that does not follow the openEO API (or a backend URL that cannot
    /// be used at all).
    #[error("unexpected answer from {backend}: {reason}")]
    Protocol {
        /// Backend URL.
        backend: String,
        /// What was wrong.
        reason: String,
    },
}

impl OpenEoError {
    /// Whether trying again later may succeed: [`Unreachable`](Self::Unreachable),
    /// [`NoAnswer`](Self::NoAnswer) and [`Transient`](Self::Transient). A `NoAnswer` to
    /// a `POST /jobs` still needs reconciling before any new attempt.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OpenEoError::Unreachable { .. }
                | OpenEoError::NoAnswer { .. }
                | OpenEoError::Transient { .. }
        )
    }

    /// How long the backend asked us to wait (`Retry-After`), capped at
    /// [`MAX_RETRY_AFTER`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OpenEoError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable machine-readable code: `BackendUnreachable` (also for `NoAnswer`),
    /// `BackendBusy`, the openEO code for `Auth` and `Api` (e.g. `TokenInvalid`,
    /// `JobNotFound`), `BackendProtocol`.
    pub fn code(&self) -> &str {
        match self {
            OpenEoError::Unreachable { .. } | OpenEoError::NoAnswer { .. } => "BackendUnreachable",
            OpenEoError::Transient { .. } => "BackendBusy",
            OpenEoError::Auth { code, .. } | OpenEoError::Api { code, .. } => code,
            OpenEoError::Protocol { .. } => "BackendProtocol",
        }
    }

    /// The HTTP status the backend answered with, if it answered with an error status.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            OpenEoError::Transient { status, .. } | OpenEoError::Api { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// The openEO bearer credential sent as `Authorization: Bearer <this>`: a secret.
///
/// `Debug` prints `Bearer([REDACTED])`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

impl Bearer {
    /// The OIDC form `oidc/<provider>/<access token>` (use the access token, never the
    /// id token).
    pub fn oidc(provider: &str, token: &str) -> Bearer {
        Bearer(format!("oidc/{provider}/{token}"))
    }

    /// A bearer given as is (e.g. `basic//<token>` or `oidc/egi/<token>`). A leading
    /// `Bearer ` is dropped, so a whole header value can be passed too.
    pub fn raw(s: impl Into<String>) -> Bearer {
        let s = s.into();
        let trimmed = s.trim();
        match trimmed.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => Bearer(trimmed[7..].trim().to_string()),
            _ => Bearer(trimmed.to_string()),
        }
    }

    /// The secret itself (to store it or compare it; never to log it).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The strings to scrub from anything shown: the whole credential and its last
    /// `/`-separated part (the access token), when long enough to be a secret.
    fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if !self.0.is_empty() {
            out.push(self.0.as_str());
        }
        if let Some(last) = self.0.rsplit('/').next() {
            if last.len() >= 8 && last != self.0 {
                out.push(last);
            }
        }
        out
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer([REDACTED])")
    }
}

/// What a backend says about itself (`GET {api}/`).
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// openEO API version, e.g. `1.2.0`.
    pub api_version: String,
    /// Backend software version.
    pub backend_version: String,
    /// Backend title.
    pub title: String,
    /// Supported endpoints: path (with `{placeholders}`) and upper-case methods.
    pub endpoints: Vec<(String, Vec<String>)>,
    /// Conformance classes (`conformsTo`).
    pub conforms_to: Vec<String>,
}

impl Capabilities {
    /// Whether `method` on `path` is listed. Placeholders match whatever their name
    /// (`/jobs/{id}` matches `/jobs/{job_id}`); the method is case-insensitive.
    pub fn supports(&self, method: &str, path: &str) -> bool {
        let want = normalise_path(path);
        self.endpoints.iter().any(|(p, methods)| {
            normalise_path(p) == want && methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        })
    }

    /// Whether the backend declares the Remote Process Definition extension (calling
    /// UDPs by URL), any version.
    pub fn supports_remote_udp(&self) -> bool {
        self.conforms_to
            .iter()
            .any(|c| c.starts_with(REMOTE_PROCESS_DEFINITION))
    }

    fn parse(v: &Value) -> Option<Capabilities> {
        let o = v.as_object()?;
        let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let api_version = o.get("api_version")?.as_str()?.to_string();
        let endpoints = o
            .get("endpoints")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| {
                        let path = e.get("path")?.as_str()?.to_string();
                        let methods = e
                            .get("methods")?
                            .as_array()?
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_ascii_uppercase)
                            .collect();
                        Some((path, methods))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let conforms_to = o
            .get("conformsTo")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Some(Capabilities {
            api_version,
            backend_version: text("backend_version"),
            title: text("title"),
            endpoints,
            conforms_to,
        })
    }
}

/// `/jobs/{job_id}/` → `/jobs/{}`: placeholders and trailing slashes do not matter.
fn normalise_path(path: &str) -> String {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect();
    format!("/{}", segs.join("/"))
}

// ============================================================================
// The backend handle
// ============================================================================

/// A client for one openEO backend. Cheap to clone: all clones share one HTTP
/// client, credential and cache.
#[derive(Clone)]
pub struct OpenEoBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The endpoint as configured.
    endpoint: String,
    /// The endpoint as shown in errors and logs (no credentials, query or fragment).
    shown: String,
    /// The one HTTP client (connection pool, timeouts, redirect policy).
    client: reqwest::Client,
    /// The credential; a std lock because it is never held across an `.await`.
    bearer: RwLock<Option<Bearer>>,
    /// The login session that renews the bearer, if logged in.
    session: RwLock<Option<Arc<Session>>>,
    /// The API URL found by version discovery (errors are not cached).
    api: OnceCell<Url>,
    /// The capabilities document (errors are not cached).
    capabilities: OnceCell<Arc<Capabilities>>,
    /// Requests sent so far.
    requests: AtomicU64,
}

/// How a request is to be classified when it fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GET/DELETE: safe to repeat, so a 500 counts as transient.
    Idempotent,
    /// `POST /jobs/{id}/results`: idempotent on the backend, but a POST.
    Start,
    /// `POST /jobs`: not idempotent; a gateway error after sending is ambiguous.
    Create,
}

/// A successful answer, body read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl OpenEoBackend {
    /// A backend at `endpoint` (a base URL, with or without the API version path).
    /// Does no I/O; version discovery happens on first use.
    pub fn new(endpoint: &str) -> OpenEoBackend {
        OpenEoBackend::with_timeouts(endpoint, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// Like [`new`](Self::new) with other timeouts (tests, slow backends).
    pub fn with_timeouts(endpoint: &str, connect: Duration, request: Duration) -> OpenEoBackend {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect)
            .timeout(request)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .build()
            // Only fails if the TLS backend cannot initialise: rustls with bundled
            // roots has no such failure, so this is a build defect, not a runtime one.
            .expect("building the HTTP client (rustls) must not fail");
        OpenEoBackend {
            inner: Arc::new(Inner {
                endpoint: endpoint.to_string(),
                shown: redact_url(endpoint.trim_end_matches('/')),
                client,
                bearer: RwLock::new(None),
                session: RwLock::new(None),
                api: OnceCell::new(),
                capabilities: OnceCell::new(),
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Sets (or clears) the credential sent with every request to the backend's own
    /// origin.
    pub fn set_bearer(&self, bearer: Option<Bearer>) {
        let mut slot = self
            .inner
            .bearer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = bearer;
    }

    /// Requests sent so far by all clones of this handle (for benchmarks).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The API URL (no trailing slash), found once by version discovery:
    /// `GET {endpoint}/.well-known/openeo`, then the highest `api_version` >= 1.0.0
    /// among the entries with `production != false`. If the well-known document is
    /// missing (404, or any other non-transient error) or not usable JSON, the endpoint
    /// is the API URL. Transient failures are returned and not cached.
    pub async fn api_url(&self) -> Result<String, OpenEoError> {
        Ok(self.api().await?.as_str().trim_end_matches('/').to_string())
    }

    /// The capabilities document if it was fetched already (no I/O).
    pub fn cached_capabilities(&self) -> Option<Arc<Capabilities>> {
        self.inner.capabilities.get().cloned()
    }

    /// The capabilities document (`GET {api}/`), fetched once.
    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, OpenEoError> {
        self.inner
            .capabilities
            .get_or_try_init(|| async {
                let url = self.url(&[""]).await?;
                // Public, like `/credentials/oidc`.
                let answer = self
                    .send_to(Method::GET, url, None, Kind::Idempotent, false)
                    .await?;
                let v = self.json(&answer)?;
                Capabilities::parse(&v).map(Arc::new).ok_or_else(|| {
                    self.protocol("the capabilities document has no api_version".into())
                })
            })
            .await
            .cloned()
    }

    /// Whether the capabilities list `GET /jobs` (false when they cannot be fetched).
    pub async fn lists_jobs(&self) -> bool {
        match self.capabilities().await {
            Ok(c) => c.supports("GET", "/jobs"),
            Err(_) => false,
        }
    }

    /// The `POST /jobs` body calling the UDP `udp_id` published at `udp_url` with
    /// `arguments`, then `save_result` in `format`. Node ids follow the Python client
    /// (`eurac_pv_farm_detection` → `euracpvfarmdetection1`, then `saveresult1`). An
    /// empty `description` is left out.
    pub fn job_body(
        title: &str,
        description: &str,
        udp_id: &str,
        udp_url: &str,
        arguments: &Map<String, Value>,
        format: OutputFormat,
    ) -> Map<String, Value> {
        let node = format!("{}1", udp_id.replace('_', ""));
        let save = if node == "saveresult1" {
            "saveresult2"
        } else {
            "saveresult1"
        };
        let mut graph = Map::new();
        graph.insert(
            node.clone(),
            json!({
                "process_id": udp_id,
                "namespace": udp_url,
                "arguments": arguments,
            }),
        );
        graph.insert(
            save.to_string(),
            json!({
                "process_id": "save_result",
                "arguments": {
                    "data": {"from_node": node},
                    "format": openeo_format(format),
                    "options": {},
                },
                "result": true,
            }),
        );
        let mut body = Map::new();
        body.insert("title".into(), Value::String(title.to_string()));
        if !description.is_empty() {
            body.insert("description".into(), Value::String(description.to_string()));
        }
        body.insert("process".into(), json!({ "process_graph": graph }));
        body
    }

    /// Creates a batch job (`POST /jobs`, 201) and returns its id, taken from
    /// `OpenEO-Identifier` or else the last path segment of `Location`.
    ///
    /// Never retried here. [`OpenEoError::NoAnswer`] means the job may exist: reconcile
    /// (list the jobs, look for the title) before creating it again. A 502 or 504 is
    /// reported as `NoAnswer` too, because a gateway can fail after the backend created
    /// the job; 429 and 503 are `Transient` (the request was turned away).
    pub async fn create_job(&self, body: &Map<String, Value>) -> Result<String, OpenEoError> {
        let url = self.url(&["jobs"]).await?;
        let answer = self
            .send(Method::POST, url, Some(body), Kind::Create)
            .await?;
        let from_header = answer
            .headers
            .get("openeo-identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let id = match from_header {
            Some(id) => id,
            None => {
                let location = answer
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let path = location.split(['?', '#']).next().unwrap_or("");
                let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                if last.is_empty() {
                    return Err(self.protocol(format!(
                        "HTTP {} to POST /jobs without OpenEO-Identifier or Location",
                        answer.status.as_u16()
                    )));
                }
                tracing::warn!(
                    backend = %self.inner.shown,
                    "no OpenEO-Identifier header; job id taken from Location"
                );
                last.to_string()
            }
        };
        if !valid_job_id(&id) {
            return Err(self.protocol("the new job's id is not a valid openEO job id".into()));
        }
        Ok(id)
    }

    /// Starts (queues) a job: `POST /jobs/{id}/results`, 202. Idempotent on the backend:
    /// no effect on a queued or running job.
    pub async fn start_job(&self, id: &str) -> Result<(), OpenEoError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        self.send(Method::POST, url, None, Kind::Start).await?;
        Ok(())
    }

    /// A job's status and metadata: `GET /jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<RemoteJob, OpenEoError> {
        let url = self.url(&["jobs", id]).await?;
        let answer = self.send(Method::GET, url, None, Kind::Idempotent).await?;
        let v = self.json(&answer)?;
        parse_job(&v, true).ok_or_else(|| self.protocol("the job has no id or status".into()))
    }

    /// All jobs of the user: `GET /jobs?limit=100`, following `rel=next` links (at most
    /// 50 pages; the bearer goes only to links on the backend's own origin). Entries
    /// without an id are skipped; one without a status gets `unknown`.
    pub async fn list_jobs(&self) -> Result<Vec<RemoteJob>, OpenEoError> {
        self.list_jobs_covering(None).await
    }

    /// Like [`OpenEoBackend::list_jobs`], but stops paging as soon as every id in
    /// `wanted` has been seen (backends list newest first, so the jobs a client tracks
    /// are usually on the first page). `None` lists everything.
    pub async fn list_jobs_covering(
        &self,
        wanted: Option<&std::collections::HashSet<String>>,
    ) -> Result<Vec<RemoteJob>, OpenEoError> {
        let mut missing: Option<std::collections::HashSet<&str>> =
            wanted.map(|w| w.iter().map(String::as_str).collect());
        let mut url = self.url(&["jobs"]).await?;
        url.query_pairs_mut()
            .append_pair("limit", &LIST_PAGE_SIZE.to_string());
        let mut jobs = Vec::new();
        let mut seen: Vec<Url> = Vec::new();
        for page in 0.. {
            if page == MAX_LIST_PAGES {
                tracing::warn!(
                    backend = %self.inner.shown,
                    pages = MAX_LIST_PAGES,
                    "job list truncated: too many pages"
                );
                break;
            }
            seen.push(url.clone());
            let answer = self
                .send(Method::GET, url.clone(), None, Kind::Idempotent)
                .await?;
            let v = self.json(&answer)?;
            let list = v
                .get("jobs")
                .and_then(Value::as_array)
                .ok_or_else(|| self.protocol("the job list has no `jobs` array".into()))?;
            let before = jobs.len();
            jobs.extend(list.iter().filter_map(|j| parse_job(j, false)));
            if let Some(m) = missing.as_mut() {
                for j in &jobs[before..] {
                    m.remove(j.id.as_str());
                }
                if m.is_empty() {
                    break;
                }
            }
            let next = v
                .get("links")
                .and_then(Value::as_array)
                .and_then(|links| {
                    links
                        .iter()
                        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))
                })
                .and_then(|l| l.get("href"))
                .and_then(Value::as_str)
                .and_then(|href| url.join(href).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            match next {
                Some(n) if !seen.contains(&n) => url = n,
                _ => break,
            }
        }
        Ok(jobs)
    }

    /// Cancels a job: `DELETE /jobs/{id}/results`, 204.
    pub async fn cancel_job(&self, id: &str) -> Result<(), OpenEoError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        self.send(Method::DELETE, url, None, Kind::Idempotent)
            .await?;
        Ok(())
    }

    /// Deletes a job and everything it produced: `DELETE /jobs/{id}`, 204.
    pub async fn delete_job(&self, id: &str) -> Result<(), OpenEoError> {
        let url = self.url(&["jobs", id]).await?;
        self.send(Method::DELETE, url, None, Kind::Idempotent)
            .await?;
        Ok(())
    }

    /// A job's logs: `GET /jobs/{id}/logs[?offset=..&level=..]`, the JSON as is
    /// (`{"logs": [...], "links": [...]}`).
    pub async fn logs(
        &self,
        id: &str,
        offset: Option<&str>,
        level: Option<&str>,
    ) -> Result<Value, OpenEoError> {
        let mut url = self.url(&["jobs", id, "logs"]).await?;
        if offset.is_some() || level.is_some() {
            let mut q = url.query_pairs_mut();
            if let Some(o) = offset {
                q.append_pair("offset", o);
            }
            if let Some(l) = level {
                q.append_pair("level", l);
            }
        }
        let answer = self.send(Method::GET, url, None, Kind::Idempotent).await?;
        let v = self.json(&answer)?;
        if !v.is_object() {
            return Err(self.protocol("the logs answer is not a JSON object".into()));
        }
        Ok(v)
    }

    /// A job's results document (`GET /jobs/{id}/results`): the STAC Item or
    /// Collection as is. Its asset links are secrets (signed); fetch it again just
    /// before downloading rather than storing them.
    /// `GET /credentials/oidc`: the backend's OIDC providers as the JSON document
    /// (`{"providers": [{id, issuer, title, scopes, default_clients}]}`).
    pub async fn oidc_providers(&self) -> Result<Value, OpenEoError> {
        let url = self.url(&["credentials", "oidc"]).await?;
        // Public: no credential, so that a backend whose login expired can be logged
        // in to again.
        let answer = self
            .send_to(Method::GET, url, None, Kind::Idempotent, false)
            .await?;
        let v = self.json(&answer)?;
        if !v.get("providers").is_some_and(Value::is_array) {
            return Err(self.protocol("/credentials/oidc has no providers list".into()));
        }
        Ok(v)
    }

    /// `GET /` without the cache: is the backend answering right now?
    pub async fn ping(&self) -> Result<(), OpenEoError> {
        let url = self.url(&[""]).await?;
        self.send(Method::GET, url, None, Kind::Idempotent).await?;
        Ok(())
    }

    /// The id of the backend's first (default) OIDC provider.
    pub async fn default_provider_id(&self) -> Result<String, OpenEoError> {
        let v = self.oidc_providers().await?;
        v["providers"]
            .get(0)
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.protocol("/credentials/oidc lists no provider".into()))
    }

    /// The `Authorization` value to send with a download from `url`: the bearer only
    /// when `url` is on the backend API's own origin (scheme, host, port), never for a
    /// pre-signed link on another host (as the openEO Python client's `_is_external`).
    pub async fn auth_header_for(&self, url: &Url) -> Result<Option<HeaderValue>, OpenEoError> {
        if self.api().await?.origin() != url.origin() {
            return Ok(None);
        }
        if let Some(session) = self.session() {
            return Ok(self.session_header(&session).await?.0);
        }
        self.bearer_header()
    }

    /// The results document of a job (`GET /jobs/{id}/results`): fresh, signed links.
    pub async fn results(&self, id: &str) -> Result<Value, OpenEoError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        let answer = self.send(Method::GET, url, None, Kind::Idempotent).await?;
        let v = self.json(&answer)?;
        if !v.is_object() {
            return Err(self.protocol("the results document is not a JSON object".into()));
        }
        Ok(v)
    }

    // ------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------

    /// The discovered API URL, parsed.
    async fn api(&self) -> Result<&Url, OpenEoError> {
        self.inner.api.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Url, OpenEoError> {
        let base = Url::parse(self.inner.endpoint.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| self.protocol("the backend URL is not an http(s) URL".into()))?;
        let mut base = base;
        base.set_query(None);
        base.set_fragment(None);
        let well_known = join_segments(&base, &[".well-known", "openeo"]);
        // The well-known document is public: no bearer.
        let answer = match self
            .send_to(Method::GET, well_known, None, Kind::Idempotent, false)
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::debug!(backend = %self.inner.shown, error = %e, "no version discovery");
                return Ok(base);
            }
        };
        let chosen = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| pick_version(&v))
            .and_then(|u| base.join(&u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        match chosen {
            Some(u) => {
                tracing::debug!(backend = %self.inner.shown, api = %redact_url(u.as_str()), "API version discovered");
                Ok(u)
            }
            None => Ok(base),
        }
    }

    /// `{api}/<segments...>`, each segment percent-encoded.
    async fn url(&self, segments: &[&str]) -> Result<Url, OpenEoError> {
        Ok(join_segments(self.api().await?, segments))
    }

    /// Sends a request to a URL under the API, with the bearer if it is on the API's
    /// own origin.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Map<String, Value>>,
        kind: Kind,
    ) -> Result<Answer, OpenEoError> {
        let own = match self.inner.api.get() {
            Some(api) => api.origin() == url.origin(),
            None => false,
        };
        self.send_to(method, url, body, kind, own).await
    }

    /// Sends a request and classifies the outcome. `with_bearer`: attach the credential
    /// (only ever for the backend's own origin). With a login [`Session`], the access token
    /// is renewed ahead of expiry, and a 403 `TokenInvalid` renews it and retries once.
    async fn send_to(
        &self,
        method: Method,
        url: Url,
        body: Option<&Map<String, Value>>,
        kind: Kind,
        with_bearer: bool,
    ) -> Result<Answer, OpenEoError> {
        let session = if with_bearer { self.session() } else { None };
        let Some(session) = session else {
            let header = if with_bearer {
                self.bearer_header()?
            } else {
                None
            };
            return self.send_once(method, url, body, kind, header).await;
        };
        let (header, used) = self.session_header(&session).await?;
        let first = self
            .send_once(method.clone(), url.clone(), body, kind, header)
            .await;
        match first {
            Err(OpenEoError::Auth { ref code, .. }) if code == "TokenInvalid" => {
                tracing::info!(backend = %self.inner.shown, "token refused; renewing it and retrying once");
                let bearer = session
                    .rejected(&used)
                    .await
                    .map_err(|e| self.session_error(e))?;
                let header = self.remember(bearer)?;
                self.send_once(method, url, body, kind, header).await
            }
            other => other,
        }
    }

    /// The login session, if the backend has one.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.inner
            .session
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets (or clears) the login session; it takes precedence over a fixed bearer.
    pub fn set_session(&self, session: Option<Arc<Session>>) {
        let clear = session.is_none();
        *self
            .inner
            .session
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = session;
        if clear {
            self.set_bearer(None);
        }
    }

    /// The `Authorization` value of the session's current access token (renewed first
    /// when it is about to expire), and that token (to report a refusal of it).
    async fn session_header(
        &self,
        session: &Session,
    ) -> Result<(Option<HeaderValue>, SecretString), OpenEoError> {
        let (bearer, used) = session.bearer().await.map_err(|e| self.session_error(e))?;
        Ok((self.remember(bearer)?, used))
    }

    /// Keeps `bearer` as the current credential (so that error texts are scrubbed of it)
    /// and returns its header value.
    fn remember(&self, bearer: Bearer) -> Result<Option<HeaderValue>, OpenEoError> {
        self.set_bearer(Some(bearer));
        self.bearer_header()
    }

    fn session_error(&self, e: SessionError) -> OpenEoError {
        let backend = self.inner.shown.clone();
        match e {
            SessionError::LoginRequired(message) => OpenEoError::Auth {
                backend,
                code: "LoginRequired".into(),
                message,
            },
            SessionError::Store(message) => OpenEoError::Auth {
                backend,
                code: "TokenStoreUnavailable".into(),
                message,
            },
            SessionError::Unreachable(reason) => OpenEoError::Unreachable { backend, reason },
        }
    }

    /// Sends one request with the given `Authorization` value and classifies the outcome.
    async fn send_once(
        &self,
        method: Method,
        url: Url,
        body: Option<&Map<String, Value>>,
        kind: Kind,
        authorization: Option<HeaderValue>,
    ) -> Result<Answer, OpenEoError> {
        let shown_url = redact_url(url.as_str());
        let mut req = self.inner.client.request(method.clone(), url);
        if let Some(value) = authorization {
            req = req.header(AUTHORIZATION, value);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let result = req.send().await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(e);
                tracing::debug!(%method, url = %shown_url, error = %err, "openEO request failed");
                return Err(err);
            }
        };
        let status = resp.status();
        tracing::debug!(
            %method,
            url = %shown_url,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "openEO request"
        );
        let headers = resp.headers().clone();
        if status.is_success() {
            let body = read_limited(resp, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| self.body_error(e))?;
            match body {
                Some(body) => Ok(Answer {
                    status,
                    headers,
                    body,
                }),
                None => Err(self.protocol(format!(
                    "HTTP {} answer larger than {} MiB",
                    status.as_u16(),
                    MAX_ANSWER_BYTES / (1024 * 1024)
                ))),
            }
        } else {
            // A cut error body is still worth classifying; a failed read is not worse
            // than an empty one.
            let body = read_prefix(resp, MAX_ERROR_BYTES).await;
            Err(self.status_error(status, &headers, &body, kind))
        }
    }

    fn bearer_header(&self) -> Result<Option<HeaderValue>, OpenEoError> {
        let guard = self
            .inner
            .bearer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(bearer) = guard.as_ref() else {
            return Ok(None);
        };
        match HeaderValue::from_str(&format!("Bearer {}", bearer.0)) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Ok(Some(v))
            }
            Err(_) => Err(OpenEoError::Auth {
                backend: self.inner.shown.clone(),
                code: "TokenInvalid".into(),
                message: "the stored token contains characters not allowed in an HTTP header"
                    .into(),
            }),
        }
    }

    /// Parses an answer body as JSON.
    fn json(&self, answer: &Answer) -> Result<Value, OpenEoError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            self.protocol(format!(
                "HTTP {} answer is not JSON ({}, {} bytes): {}",
                answer.status.as_u16(),
                content_type(&answer.headers),
                answer.body.len(),
                e
            ))
        })
    }

    fn protocol(&self, reason: String) -> OpenEoError {
        OpenEoError::Protocol {
            backend: self.inner.shown.clone(),
            reason: self.scrub(&reason),
        }
    }

    /// Classifies a failure to get an answer at all.
    fn transport_error(&self, e: reqwest::Error) -> OpenEoError {
        let backend = self.inner.shown.clone();
        let connect = e.is_connect();
        let timeout = e.is_timeout();
        let redirect = e.is_redirect();
        let builder = e.is_builder();
        let reason = self.scrub(&error_chain(e.without_url()));
        if connect {
            OpenEoError::Unreachable { backend, reason }
        } else if redirect || builder {
            OpenEoError::Protocol { backend, reason }
        } else if timeout {
            OpenEoError::NoAnswer {
                backend,
                reason: format!("timed out waiting for the answer: {reason}"),
            }
        } else {
            OpenEoError::NoAnswer { backend, reason }
        }
    }

    /// Classifies a failure while reading a successful answer's body.
    fn body_error(&self, e: reqwest::Error) -> OpenEoError {
        let timeout = e.is_timeout();
        let reason = self.scrub(&error_chain(e.without_url()));
        OpenEoError::NoAnswer {
            backend: self.inner.shown.clone(),
            reason: if timeout {
                format!("timed out reading the answer: {reason}")
            } else {
                format!("incomplete answer: {reason}")
            },
        }
    }

    /// Classifies an error status.
    fn status_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        kind: Kind,
    ) -> OpenEoError {
        let backend = self.inner.shown.clone();
        let code_num = status.as_u16();
        let (code, message) = summarise_error_body(code_num, headers, body);
        let message = self.scrub(&message);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        match code_num {
            502 | 504 if kind == Kind::Create => OpenEoError::NoAnswer {
                backend,
                reason: format!(
                    "HTTP {code_num} from a gateway after the request was sent; the job may exist: {message}"
                ),
            },
            429 | 502 | 503 | 504 => OpenEoError::Transient {
                backend,
                status: code_num,
                message,
                retry_after,
            },
            500 if kind == Kind::Idempotent => OpenEoError::Transient {
                backend,
                status: code_num,
                message,
                retry_after,
            },
            401 => OpenEoError::Auth {
                backend,
                code: code.unwrap_or_else(|| "AuthenticationRequired".into()),
                message,
            },
            403 if matches!(
                code.as_deref(),
                Some("TokenInvalid" | "AuthenticationRequired" | "AuthenticationSchemeInvalid")
            ) =>
            {
                OpenEoError::Auth {
                    backend,
                    code: code.unwrap_or_default(),
                    message,
                }
            }
            400..=599 => OpenEoError::Api {
                backend,
                status: code_num,
                code: code.unwrap_or_else(|| generic_code(code_num)),
                message,
            },
            _ => OpenEoError::Protocol {
                backend,
                reason: format!("unexpected HTTP {code_num}"),
            },
        }
    }

    /// Removes URL queries and the credential from text shown to anyone.
    fn scrub(&self, text: &str) -> String {
        let mut out = strip_queries(text);
        let guard = self
            .inner
            .bearer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(b) = guard.as_ref() {
            for secret in b.secrets() {
                out = out.replace(secret, "[REDACTED]");
            }
        }
        out
    }
}

impl fmt::Debug for OpenEoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenEoBackend")
            .field("endpoint", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

// ============================================================================
// Helpers (pure)
// ============================================================================

/// The openEO `save_result` format name of an output format.
fn openeo_format(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Gtiff => "GTiff",
        OutputFormat::Netcdf => "netCDF",
        OutputFormat::Geojson => "GeoJSON",
        OutputFormat::Json => "JSON",
    }
}

/// `base` with `segments` appended as path segments (percent-encoded). `[""]` gives
/// a trailing slash.
fn join_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// The openEO job id pattern `^[\w\-\.~]+$`.
fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '~'))
}

/// A batch-job object → [`RemoteJob`]. `strict`: the status is required.
fn parse_job(v: &Value, strict: bool) -> Option<RemoteJob> {
    let o = v.as_object()?;
    let id = o.get("id")?.as_str()?.to_string();
    let status = match o.get("status").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None if strict => return None,
        None => "unknown".to_string(),
    };
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(String::from);
    Some(RemoteJob {
        id,
        status,
        progress: o.get("progress").and_then(Value::as_f64),
        title: text("title"),
        description: text("description"),
        updated: text("updated"),
    })
}

/// From a `.well-known/openeo` document, the URL of the highest production
/// `api_version` >= 1.0.0.
fn pick_version(doc: &Value) -> Option<String> {
    doc.get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("production").and_then(Value::as_bool) != Some(false))
        .filter_map(|v| {
            let version = parse_version(v.get("api_version")?.as_str()?)?;
            let url = v.get("url")?.as_str()?;
            (version >= (1, 0, 0, true)).then(|| (version, url.to_string()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, url)| url)
}

/// `1.2.0` → (1, 2, 0, true); `2.0.0-beta` → (2, 0, 0, false) (a release sorts above
/// its pre-releases). Missing parts count as 0.
fn parse_version(s: &str) -> Option<(u64, u64, u64, bool)> {
    let s = s.trim().trim_start_matches('v');
    let (core, pre) = match s.split_once(['-', '+']) {
        Some((c, rest)) => (c, !s[c.len()..].starts_with('+') && !rest.is_empty()),
        None => (s, false),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch, !pre))
}

/// The `Content-Type` main part, or `no content type`.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "no content type".into())
}

/// An error body → (openEO code, message). The code is `None` when the body is not an
/// openEO error; the message then summarises the body (never a whole HTML page).
fn summarise_error_body(status: u16, headers: &HeaderMap, body: &[u8]) -> (Option<String>, String) {
    let ctype = content_type(headers);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let code = v.get("code").and_then(Value::as_str);
        let message = v.get("message").and_then(Value::as_str);
        if let (Some(code), Some(message)) = (code, message) {
            return (Some(code.to_string()), cut(message, MAX_MESSAGE_CHARS));
        }
        let other = ["message", "detail", "error_description", "error", "title"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str));
        return match other {
            Some(m) => (
                None,
                format!("HTTP {status}: {}", cut(m, MAX_MESSAGE_CHARS)),
            ),
            None => (
                None,
                format!("HTTP {status} (JSON without an openEO error)"),
            ),
        };
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    let starts_html = trimmed
        .get(..14)
        .map(|p| p.to_ascii_lowercase())
        .is_some_and(|p| {
            p.starts_with("<!doctype") || p.starts_with("<html") || p.starts_with("<?xml")
        });
    if ctype.contains("html") || starts_html || trimmed.starts_with('<') {
        return (None, format!("HTTP {status} (HTML page)"));
    }
    if trimmed.is_empty() {
        return (None, format!("HTTP {status} (empty body)"));
    }
    if std::str::from_utf8(body).is_err() {
        return (
            None,
            format!("HTTP {status} ({} bytes of {ctype})", body.len()),
        );
    }
    let first_line = trimmed.lines().next().unwrap_or("").trim();
    (None, format!("HTTP {status}: {}", cut(first_line, 200)))
}

/// A code for an error answer that carries none.
fn generic_code(status: u16) -> String {
    match status {
        400 => "BadRequest".into(),
        403 => "PermissionsInsufficient".into(),
        404 => "NotFound".into(),
        410 => "Gone".into(),
        500 => "Internal".into(),
        501 => "FeatureUnsupported".into(),
        s => format!("HTTP{s}"),
    }
}

/// At most `max` characters of `s` (control characters dropped), with `…` if cut.
fn cut(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(max + 1)
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
        out.push('…');
    }
    out
}

/// A reqwest error and its sources, joined with `: ` (without repeats).
fn error_chain(e: reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    // reqwest's and hyper's wrappers say nothing the inner errors do not.
    let generic =
        |p: &String| p.starts_with("error sending request") || p.starts_with("client error (");
    if parts.iter().any(|p| !generic(p)) {
        parts.retain(|p| !generic(p));
    }
    parts.join(": ")
}

/// Reads a body up to `limit` bytes; `Ok(None)` if it is larger.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Reads at most `limit` bytes of a body, ignoring read errors (what came is kept).
async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (IMF-fixdate). A date
/// in the past gives zero; everything is capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, OffsetDateTime::now_utc())
}

fn parse_retry_after_at(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - now;
    if wait.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(wait).ok()?.min(MAX_RETRY_AFTER))
}

/// A URL fit to show: no user name, password, query or fragment. Text that does not
/// parse as a URL is cut at the first `?` or `#`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let s = u.to_string();
            // Url adds a `/` to a bare origin; show what was configured.
            if !url.ends_with('/') && u.path() == "/" {
                s.trim_end_matches('/').to_string()
            } else {
                s
            }
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// Removes every URL query (`?k=v...`, up to the next blank, quote or bracket) from
/// free text, e.g. signed `?expires=..&signature=..` links in backend messages.
fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '}' | '`')
            })
            .unwrap_or(after.len());
        let token = &after[..end];
        if token.contains('=') {
            rest = &after[end..];
        } else {
            out.push('?');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

// ============================================================================
// Tests
// ============================================================================

#[cfg(test)]
mod tests {
    use super::*;

    const EURAC_URL: &str = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn backend() -> OpenEoBackend {
        OpenEoBackend::new("https://openeo.example/openeo/1.2?key=secret")
    }

    /// The job body equals openeo.md §3.2's example for the eurac PV UDP, key order
    /// included.
    #[test]
    fn job_body_matches_the_reference_example() {
        let expected = r#"{"title": "PV farms", "process": {"process_graph": {
     "euracpvfarmdetection1": {
       "process_id": "eurac_pv_farm_detection",
       "namespace": "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json",
       "arguments": {
         "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326},
         "temporal_extent": ["2023-05-01", "2023-09-30"]}},
     "saveresult1": {"process_id": "save_result",
       "arguments": {"data": {"from_node": "euracpvfarmdetection1"}, "format": "GTiff", "options": {}},
       "result": true}}}}"#;
        let expected: Value = serde_json::from_str(expected).unwrap();
        let args = json!({
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326},
            "temporal_extent": ["2023-05-01", "2023-09-30"]
        });
        let body = OpenEoBackend::job_body(
            "PV farms",
            "",
            "eurac_pv_farm_detection",
            EURAC_URL,
            args.as_object().unwrap(),
            OutputFormat::Gtiff,
        );
        let body = Value::Object(body);
        assert_eq!(body, expected);
        assert_eq!(body.to_string(), expected.to_string(), "key order");
    }

    #[test]
    fn job_body_description_and_formats() {
        let args = Map::new();
        for (format, name) in [
            (OutputFormat::Gtiff, "GTiff"),
            (OutputFormat::Netcdf, "netCDF"),
            (OutputFormat::Geojson, "GeoJSON"),
            (OutputFormat::Json, "JSON"),
        ] {
            let body = OpenEoBackend::job_body(
                "t",
                "eodispatch:abc",
                "u",
                "https://x/u.json",
                &args,
                format,
            );
            assert_eq!(body["description"], "eodispatch:abc");
            let keys: Vec<&String> = body.keys().collect();
            assert_eq!(keys, ["title", "description", "process"]);
            let save = &body["process"]["process_graph"]["saveresult1"];
            assert_eq!(save["arguments"]["format"], name);
            assert_eq!(save["arguments"]["data"]["from_node"], "u1");
        }
        // A UDP called save_result does not collide with the save node.
        let body = OpenEoBackend::job_body(
            "t",
            "",
            "save_result",
            "https://x",
            &args,
            OutputFormat::Json,
        );
        let graph = body["process"]["process_graph"].as_object().unwrap();
        assert_eq!(graph.len(), 2);
        assert_eq!(
            graph["saveresult2"]["arguments"]["data"]["from_node"],
            "saveresult1"
        );
    }

    #[test]
    fn bearer_debug_is_redacted() {
        let b = Bearer::oidc("egi", "eyJhbGciOi.secret-token");
        assert_eq!(format!("{b:?}"), "Bearer([REDACTED])");
        assert_eq!(format!("{:?}", Some(b.clone())), "Some(Bearer([REDACTED]))");
        assert_eq!(b.expose_secret(), "oidc/egi/eyJhbGciOi.secret-token");
        assert_eq!(Bearer::raw("Bearer basic//tok"), Bearer::raw("basic//tok"));
        assert_eq!(Bearer::raw("oidc/egi/eyJhbGciOi.secret-token"), b);
        let backend = backend();
        backend.set_bearer(Some(b));
        assert!(!format!("{backend:?}").contains("secret"));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = OffsetDateTime::parse(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            &time::format_description::well_known::Rfc2822,
        )
        .unwrap();
        assert_eq!(
            parse_retry_after_at("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after_at(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after_at("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after_at("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after_at("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after_at("-5", now), None);
        assert_eq!(parse_retry_after_at("soon", now), None);
        assert_eq!(parse_retry_after_at("", now), None);
    }

    fn classify(status: u16, ctype: &str, body: &str, kind: Kind) -> OpenEoError {
        let b = backend();
        b.status_error(
            StatusCode::from_u16(status).unwrap(),
            &headers(&[("content-type", ctype), ("retry-after", "7")]),
            body.as_bytes(),
            kind,
        )
    }

    fn openeo_error(code: &str, message: &str) -> String {
        json!({"id": "x", "code": code, "message": message}).to_string()
    }

    #[test]
    fn error_classification() {
        use Kind::*;
        let j = "application/json";
        let e = classify(
            401,
            j,
            &openeo_error("AuthenticationRequired", "log in"),
            Idempotent,
        );
        assert!(matches!(&e, OpenEoError::Auth { code, .. } if code == "AuthenticationRequired"));
        assert!(!e.is_transient());
        let e = classify(401, "text/plain", "", Idempotent);
        assert_eq!(e.code(), "AuthenticationRequired");
        let e = classify(403, j, &openeo_error("TokenInvalid", "expired"), Create);
        assert!(matches!(&e, OpenEoError::Auth { code, .. } if code == "TokenInvalid"));
        let e = classify(
            403,
            j,
            &openeo_error("PermissionsInsufficient", "no"),
            Idempotent,
        );
        assert!(matches!(&e, OpenEoError::Api { status: 403, .. }));
        let e = classify(
            404,
            j,
            &openeo_error("JobNotFound", "no such job"),
            Idempotent,
        );
        assert!(
            matches!(&e, OpenEoError::Api { status: 404, code, message, .. }
            if code == "JobNotFound" && message == "no such job")
        );
        assert_eq!(e.code(), "JobNotFound");
        let e = classify(
            400,
            j,
            &openeo_error("ProcessNamespaceInvalid", "bad"),
            Create,
        );
        assert_eq!(e.code(), "ProcessNamespaceInvalid");
        assert!(!e.is_transient());

        for status in [429, 502, 503, 504] {
            let e = classify(
                status,
                j,
                &openeo_error("ServiceUnavailable", "busy"),
                Idempotent,
            );
            assert!(matches!(e, OpenEoError::Transient { .. }), "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
            assert_eq!(e.code(), "BackendBusy");
            assert!(e.is_transient());
        }
        // 500: transient for GET/DELETE only.
        assert!(matches!(
            classify(500, j, &openeo_error("Internal", "x"), Idempotent),
            OpenEoError::Transient { .. }
        ));
        assert!(matches!(
            classify(500, j, &openeo_error("Internal", "x"), Start),
            OpenEoError::Api { .. }
        ));
        assert!(matches!(
            classify(500, j, &openeo_error("Internal", "x"), Create),
            OpenEoError::Api { .. }
        ));
        // A gateway error to POST /jobs is ambiguous; 429/503 are not.
        for status in [502, 504] {
            let e = classify(status, "text/html", "<html>x</html>", Create);
            assert!(matches!(e, OpenEoError::NoAnswer { .. }), "{status}");
            assert!(e.is_transient());
        }
        assert!(matches!(
            classify(429, j, "{}", Create),
            OpenEoError::Transient { .. }
        ));
        assert!(matches!(
            classify(503, j, "{}", Create),
            OpenEoError::Transient { .. }
        ));
        assert!(matches!(
            classify(502, j, "{}", Start),
            OpenEoError::Transient { .. }
        ));
    }

    #[test]
    fn html_and_odd_bodies_are_summarised() {
        let page = format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head><title>502 Proxy Error</title></head><body>{}</body></html>",
            "The proxy server received an invalid response. ".repeat(50)
        );
        let e = classify(
            502,
            "text/html; charset=iso-8859-1",
            &page,
            Kind::Idempotent,
        );
        match &e {
            OpenEoError::Transient { message, .. } => assert_eq!(message, "HTTP 502 (HTML page)"),
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("proxy server"));
        // HTML without a content type.
        let e = classify(500, "", &page, Kind::Start);
        assert!(
            matches!(&e, OpenEoError::Api { code, message, .. } if code == "Internal" && message == "HTTP 500 (HTML page)")
        );
        let e = classify(400, "text/plain", "bad thing\nmore lines", Kind::Start);
        assert!(matches!(&e, OpenEoError::Api { message, .. } if message == "HTTP 400: bad thing"));
        let e = classify(418, j(), r#"{"detail": "teapot"}"#, Kind::Start);
        assert!(
            matches!(&e, OpenEoError::Api { code, message, .. } if code == "HTTP418" && message == "HTTP 418: teapot")
        );
        let e = classify(503, "text/plain", "", Kind::Idempotent);
        assert!(
            matches!(&e, OpenEoError::Transient { message, .. } if message == "HTTP 503 (empty body)")
        );
        let long = "x".repeat(5000);
        let e = classify(400, j(), &openeo_error("Long", &long), Kind::Start);
        assert!(e.to_string().len() < 1200);

        fn j() -> &'static str {
            "application/json"
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let b = backend();
        b.set_bearer(Some(Bearer::oidc("egi", "AT-very-secret-123")));
        let msg = openeo_error(
            "ResultLinkExpired",
            "link https://openeo.example/assets/a.tif?expires=1716300000&sig=abc expired; token oidc/egi/AT-very-secret-123 or AT-very-secret-123",
        );
        let e = b.status_error(
            StatusCode::GONE,
            &HeaderMap::new(),
            msg.as_bytes(),
            Kind::Idempotent,
        );
        let text = e.to_string();
        assert!(!text.contains("?expires="), "{text}");
        assert!(!text.contains("sig=abc"), "{text}");
        assert!(!text.contains("AT-very-secret-123"), "{text}");
        assert!(
            text.contains("https://openeo.example/assets/a.tif expired"),
            "{text}"
        );
        assert!(!text.contains("key=secret"), "{text}");
        assert_eq!(strip_queries("what? yes. a?b=c d"), "what? yes. a d");
        assert_eq!(
            redact_url("https://user:pw@h.example:8443/p/q?x=1#f"),
            "https://h.example:8443/p/q"
        );
        assert_eq!(redact_url("https://h.example"), "https://h.example");
    }

    #[test]
    fn version_discovery_picks_the_highest_production_version() {
        let doc = json!({"versions": [
            {"url": "https://openeo.example/api/v1.0", "api_version": "1.0.0"},
            {"url": "https://openeo.example/api/v1", "api_version": "1.2.0", "production": true},
            {"url": "https://dev.openeo.example/api/v2", "api_version": "2.0.0-beta", "production": false},
            {"url": "https://old.example/api/v0.4", "api_version": "0.4.2"}
        ]});
        assert_eq!(
            pick_version(&doc).as_deref(),
            Some("https://openeo.example/api/v1")
        );
        let doc = json!({"versions": [{"url": "https://old.example", "api_version": "0.4.2"}]});
        assert_eq!(pick_version(&doc), None);
        assert!(parse_version("1.2.0").unwrap() > parse_version("1.2.0-rc.1").unwrap());
        assert!(parse_version("1.10").unwrap() > parse_version("1.2.0").unwrap());
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn capabilities_support_checks() {
        let caps = Capabilities::parse(&json!({
            "api_version": "1.2.0", "backend_version": "0.1", "title": "Fake",
            "endpoints": [
                {"path": "/jobs", "methods": ["get", "POST"]},
                {"path": "/jobs/{job_id}/results", "methods": ["GET", "POST", "DELETE"]}
            ],
            "conformsTo": ["https://api.openeo.org/extensions/remote-process-definition/0.1.0"]
        }))
        .unwrap();
        assert!(caps.supports("GET", "/jobs"));
        assert!(caps.supports("post", "/jobs/"));
        assert!(caps.supports("DELETE", "/jobs/{id}/results"));
        assert!(!caps.supports("DELETE", "/jobs"));
        assert!(!caps.supports("GET", "/jobs/{id}/logs"));
        assert!(caps.supports_remote_udp());
        assert_eq!(Capabilities::parse(&json!({"endpoints": []})), None);
    }

    #[test]
    fn job_parsing_and_ids() {
        let j = parse_job(&json!({"id": "j-1", "status": "running", "progress": 42, "title": "t", "updated": "2024-01-01T00:00:00Z"}), true).unwrap();
        assert_eq!(j.progress, Some(42.0));
        assert_eq!(j.description, None);
        assert_eq!(j.updated.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(parse_job(&json!({"id": "j-1"}), true).is_none());
        assert_eq!(
            parse_job(&json!({"id": "j-1"}), false).unwrap().status,
            "unknown"
        );
        assert!(valid_job_id("j-2405211234abcd"));
        assert!(valid_job_id("a.b~c_d"));
        assert!(!valid_job_id("../x"));
        assert!(!valid_job_id(""));
        assert!(!valid_job_id("a b"));
    }

    #[test]
    fn urls_are_built_with_encoded_segments() {
        let base = Url::parse("https://h.example/openeo/1.2/").unwrap();
        assert_eq!(
            join_segments(&base, &["jobs", "a/b", "results"]).as_str(),
            "https://h.example/openeo/1.2/jobs/a%2Fb/results"
        );
        assert_eq!(
            join_segments(&base, &[""]).as_str(),
            "https://h.example/openeo/1.2/"
        );
        let base = Url::parse("https://h.example").unwrap();
        assert_eq!(
            join_segments(&base, &["jobs"]).as_str(),
            "https://h.example/jobs"
        );
    }

    #[tokio::test]
    async fn unreachable_backend_is_classified_and_not_cached() {
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let b = OpenEoBackend::new(&format!("http://127.0.0.1:{port}/openeo?token=abc"));
        let e = b.api_url().await.unwrap_err();
        assert!(matches!(e, OpenEoError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.code(), "BackendUnreachable");
        assert!(!e.to_string().contains("token=abc"), "{e}");
        let e = b.job("j-1").await.unwrap_err();
        assert!(matches!(e, OpenEoError::Unreachable { .. }), "{e:?}");
        assert_eq!(b.request_count(), 2, "discovery is retried, not cached");
    }
}
