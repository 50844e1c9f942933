//! The openEO platform: one [`OpenEoBackend`] per backend endpoint speaks the openEO
//! API 1.x batch-job endpoints, and [`OpenEo`] puts it behind the [`Platform`] seam.
//!
//! - [`OpenEoBackend`]: the protocol client, a cheap-to-clone handle (an `Arc` inside)
//!   owning the backend's [`HttpBackend`] and the cached version discovery and
//!   [`Capabilities`].
//! - [`OpenEoBackend::job_body`]: the `POST /jobs` body that calls a remote UDP by URL
//!   and saves the result in the asked [`OutputFormat`].
//! - [`BatchJob`]: a batch job as the backend reports it.
//! - [`OpenEo`]: the [`Platform`]: services are UDPs by URL (fetched through the
//!   [`UdpCache`]); a submission is `POST /jobs` (the job's UUID in the description)
//!   then `POST /jobs/{id}/results`; a lost answer is reconciled by finding the UUID in
//!   `GET /jobs`; cancel is `DELETE /jobs/{id}/results`; results are the backend's STAC
//!   document; the bearer is `oidc/<provider>/<access token>`.
//!
//! Rules this module keeps (with [`HttpBackend`]):
//! - **No retries inside.** The scheduler owns retries and backoff. In particular
//!   `POST /jobs` is never retried: an ambiguous failure ([`PlatformError::NoAnswer`])
//!   must be reconciled by listing the backend's jobs.
//! - **Secrets stay secret.** The bearer token goes only to the backend's own origin
//!   (scheme, host and port of its API URL).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Method, Url};
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;

use super::http::{
    join_segments, parse_base, Answer, Bearer, HttpBackend, Kind, Request, TokenStyle,
    CONNECT_TIMEOUT, REQUEST_TIMEOUT,
};
use super::udp::{describe, UdpCache, UdpError};
use super::{
    BackendInfo, InlineFile, OutputDescriptor, Payload, Platform, PlatformError, Prepared,
    Reconciled, RemoteJob, ResultsDoc, ServiceDef, ServiceError, Submission,
};
use crate::config::{BackendConfig, Secret};
use crate::credentials::{LoginProvider, Logins, NoLogins};
use crate::job::{rfc3339_z, Job, Label, OutputFormat, ServiceDetails, Status};
use crate::redact::redact_url;

/// Page size asked for when listing jobs.
const LIST_PAGE_SIZE: u32 = 100;

/// Pages followed when listing jobs (so 5000 jobs at the asked page size).
const MAX_LIST_PAGES: usize = 50;

/// Candidates without a description fetched one by one during reconciliation.
const MAX_UNDESCRIBED: usize = 20;

/// How long a synchronous processing request (`POST /result`) may take.
pub const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// Prefix of the Remote Process Definition extension's conformance class (calling UDPs
/// by URL); the version follows it.
pub const REMOTE_PROCESS_DEFINITION: &str =
    "https://api.openeo.org/extensions/remote-process-definition/";

/// An openEO error meaning "this token is no good": renew and send once more.
fn token_refused(e: &PlatformError) -> bool {
    matches!(e, PlatformError::Auth { code, .. } if code == "TokenInvalid")
}

// ============================================================================
// Public types
// ============================================================================

/// A batch job as the backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
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
    /// Time of creation (RFC 3339), when reported.
    pub created: Option<String>,
    /// What the job cost, when reported (after it ended).
    pub costs: Option<f64>,
    /// Resources used, when reported (after it ended).
    pub usage: Option<Value>,
}

impl BatchJob {
    /// In the platform-neutral shape.
    pub fn remote(&self) -> RemoteJob {
        RemoteJob {
            id: self.id.clone(),
            status: map_status(&self.status),
            raw_status: self.status.clone(),
            progress: match map_status(&self.status) {
                Some(Status::Finished) => Some(100.0),
                _ => self.progress.map(|p| p.clamp(0.0, 100.0)),
            },
            message: None,
            created: self
                .created
                .as_deref()
                .and_then(|c| rfc3339_z::parse(c).ok()),
            process_id: None,
            description: self.description.clone(),
            costs: self.costs,
            usage: self.usage.clone(),
        }
    }
}

/// Maps an openEO status word to ours.
pub fn map_status(remote: &str) -> Option<Status> {
    Some(match remote {
        "created" | "submitted" => Status::Created,
        "queued" => Status::Queued,
        "running" => Status::Running,
        "finished" => Status::Finished,
        "canceled" => Status::Canceled,
        "error" => Status::Failed,
        _ => return None,
    })
}

/// The description sent with every remote job: it carries the local UUID so that a
/// crashed submission is found again.
pub fn remote_description(job: &Job) -> String {
    format!(
        "Submitted by eodispatch, job {} (local id {}).\n\neodispatch-uuid: {}",
        job.title, job.id, job.uuid
    )
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
    /// HTTP, credential, error classification.
    http: HttpBackend,
    /// The API URL found by version discovery (errors are not cached).
    api: OnceCell<Url>,
    /// The capabilities document (errors are not cached).
    capabilities: OnceCell<Arc<Capabilities>>,
}

impl OpenEoBackend {
    /// A backend at `endpoint` (a base URL, with or without the API version path),
    /// without logins. Does no I/O; version discovery happens on first use.
    pub fn new(endpoint: &str) -> OpenEoBackend {
        OpenEoBackend::with_timeouts(endpoint, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// Like [`new`](Self::new) with other timeouts (tests, slow backends).
    pub fn with_timeouts(endpoint: &str, connect: Duration, request: Duration) -> OpenEoBackend {
        OpenEoBackend::build(endpoint, connect, request, Arc::new(NoLogins))
    }

    /// A backend whose credential is the user's login found in `logins` (else a fixed
    /// bearer, if set).
    pub fn with_logins(endpoint: &str, logins: Arc<dyn Logins>) -> OpenEoBackend {
        OpenEoBackend::build(endpoint, CONNECT_TIMEOUT, REQUEST_TIMEOUT, logins)
    }

    fn build(
        endpoint: &str,
        connect: Duration,
        request: Duration,
        logins: Arc<dyn Logins>,
    ) -> OpenEoBackend {
        let endpoint = endpoint.trim_end_matches('/');
        OpenEoBackend {
            inner: Arc::new(Inner {
                http: HttpBackend::new(
                    endpoint,
                    connect,
                    request,
                    TokenStyle::OpenEo,
                    logins,
                    token_refused,
                ),
                api: OnceCell::new(),
                capabilities: OnceCell::new(),
            }),
        }
    }

    /// The HTTP side.
    pub fn http(&self) -> &HttpBackend {
        &self.inner.http
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        self.inner.http.endpoint()
    }

    /// Sets (or clears) the fixed credential sent with every request to the backend's
    /// own origin when the user has no login.
    pub fn set_bearer(&self, bearer: Option<Bearer>) {
        self.inner.http.set_bearer(bearer);
    }

    /// Requests sent so far by all clones of this handle (for benchmarks).
    pub fn request_count(&self) -> u64 {
        self.inner.http.request_count()
    }

    /// The API URL (no trailing slash), found once by version discovery:
    /// `GET {endpoint}/.well-known/openeo`, then the highest `api_version` >= 1.0.0
    /// among the entries with `production != false`. If the well-known document is
    /// missing (404, or any other non-transient error) or not usable JSON, the endpoint
    /// is the API URL. Transient failures are returned and not cached.
    pub async fn api_url(&self) -> Result<String, PlatformError> {
        Ok(self.api().await?.as_str().trim_end_matches('/').to_string())
    }

    /// The capabilities document if it was fetched already (no I/O).
    pub fn cached_capabilities(&self) -> Option<Arc<Capabilities>> {
        self.inner.capabilities.get().cloned()
    }

    /// The capabilities document (`GET {api}/`), fetched once.
    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, PlatformError> {
        self.inner
            .capabilities
            .get_or_try_init(|| async {
                let url = self.url(&[""]).await?;
                // Public, like `/credentials/oidc`.
                let answer = self.send(Request::get(url).public()).await?;
                let v = self.http().json(&answer)?;
                Capabilities::parse(&v).map(Arc::new).ok_or_else(|| {
                    self.http()
                        .protocol("the capabilities document has no api_version".into())
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
    /// Never retried here. [`PlatformError::NoAnswer`] means the job may exist: reconcile
    /// (list the jobs, look for the title) before creating it again. A 502 or 504 is
    /// reported as `NoAnswer` too, because a gateway can fail after the backend created
    /// the job; 429 and 503 are `Transient` (the request was turned away).
    pub async fn create_job(&self, body: &Map<String, Value>) -> Result<String, PlatformError> {
        let url = self.url(&["jobs"]).await?;
        let body = Value::Object(body.clone());
        let answer = self
            .send(Request::new(Method::POST, url, Kind::Create).json(&body))
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
                    return Err(self.http().protocol(format!(
                        "HTTP {} to POST /jobs without OpenEO-Identifier or Location",
                        answer.status.as_u16()
                    )));
                }
                tracing::warn!(
                    backend = %self.http().shown(),
                    "no OpenEO-Identifier header; job id taken from Location"
                );
                last.to_string()
            }
        };
        if !valid_job_id(&id) {
            return Err(self
                .http()
                .protocol("the new job's id is not a valid openEO job id".into()));
        }
        Ok(id)
    }

    /// Starts (queues) a job: `POST /jobs/{id}/results`, 202. Idempotent on the backend:
    /// no effect on a queued or running job.
    pub async fn start_job(&self, id: &str) -> Result<(), PlatformError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        self.send(Request::new(Method::POST, url, Kind::Start))
            .await?;
        Ok(())
    }

    /// A job's status and metadata: `GET /jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<BatchJob, PlatformError> {
        let url = self.url(&["jobs", id]).await?;
        let answer = self.send(Request::get(url)).await?;
        let v = self.http().json(&answer)?;
        parse_job(&v, true)
            .ok_or_else(|| self.http().protocol("the job has no id or status".into()))
    }

    /// The backend's own cost estimate of a created job (`GET /jobs/{id}/estimate`,
    /// its `costs`), when the capabilities offer that route; `None` otherwise.
    pub async fn estimate(&self, id: &str) -> Result<Option<f64>, PlatformError> {
        match self.capabilities().await {
            Ok(c) if c.supports("GET", "/jobs/{job_id}/estimate") => {}
            _ => return Ok(None),
        }
        let url = self.url(&["jobs", id, "estimate"]).await?;
        let answer = self.send(Request::get(url)).await?;
        let v = self.http().json(&answer)?;
        Ok(v.get("costs")
            .and_then(Value::as_f64)
            .filter(|c| c.is_finite() && *c >= 0.0))
    }

    /// All jobs of the user: `GET /jobs?limit=100`, following `rel=next` links (at most
    /// 50 pages; the bearer goes only to links on the backend's own origin). Entries
    /// without an id are skipped; one without a status gets `unknown`.
    pub async fn list_jobs(&self) -> Result<Vec<BatchJob>, PlatformError> {
        self.list_jobs_covering(None).await
    }

    /// Like [`OpenEoBackend::list_jobs`], but stops paging as soon as every id in
    /// `wanted` has been seen (backends list newest first, so the jobs a client tracks
    /// are usually on the first page). `None` lists everything.
    pub async fn list_jobs_covering(
        &self,
        wanted: Option<&std::collections::HashSet<String>>,
    ) -> Result<Vec<BatchJob>, PlatformError> {
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
                    backend = %self.http().shown(),
                    pages = MAX_LIST_PAGES,
                    "job list truncated: too many pages"
                );
                break;
            }
            seen.push(url.clone());
            let answer = self.send(Request::get(url.clone())).await?;
            let v = self.http().json(&answer)?;
            let list = v.get("jobs").and_then(Value::as_array).ok_or_else(|| {
                self.http()
                    .protocol("the job list has no `jobs` array".into())
            })?;
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
    pub async fn cancel_job(&self, id: &str) -> Result<(), PlatformError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        self.send(Request::new(Method::DELETE, url, Kind::Idempotent))
            .await?;
        Ok(())
    }

    /// Deletes a job and everything it produced: `DELETE /jobs/{id}`, 204.
    pub async fn delete_job(&self, id: &str) -> Result<(), PlatformError> {
        let url = self.url(&["jobs", id]).await?;
        self.send(Request::new(Method::DELETE, url, Kind::Idempotent))
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
    ) -> Result<Value, PlatformError> {
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
        let answer = self.send(Request::get(url)).await?;
        let v = self.http().json(&answer)?;
        if !v.is_object() {
            return Err(self
                .http()
                .protocol("the logs answer is not a JSON object".into()));
        }
        Ok(v)
    }

    /// A job's results document (`GET /jobs/{id}/results`): the STAC Item or
    /// Collection as is. Its asset links are secrets (signed); fetch it again just
    /// before downloading rather than storing them.
    pub async fn results(&self, id: &str) -> Result<Value, PlatformError> {
        let url = self.url(&["jobs", id, "results"]).await?;
        let answer = self.send(Request::get(url)).await?;
        let v = self.http().json(&answer)?;
        if !v.is_object() {
            return Err(self
                .http()
                .protocol("the results document is not a JSON object".into()));
        }
        Ok(v)
    }

    /// `GET /credentials/oidc`: the backend's OIDC providers as the JSON document
    /// (`{"providers": [{id, issuer, title, scopes, default_clients}]}`).
    pub async fn oidc_providers(&self) -> Result<Value, PlatformError> {
        let url = self.url(&["credentials", "oidc"]).await?;
        // Public: no credential, so that a backend whose login expired can be logged
        // in to again.
        let answer = self.send(Request::get(url).public()).await?;
        let v = self.http().json(&answer)?;
        if !v.get("providers").is_some_and(Value::is_array) {
            return Err(self
                .http()
                .protocol("/credentials/oidc has no providers list".into()));
        }
        Ok(v)
    }

    /// `POST /result`: processes `body` (`{process, plan?, budget?}`) synchronously;
    /// the answer is the result file (at most the client's answer limit).
    pub async fn process_sync(&self, body: &Value) -> Result<Payload, PlatformError> {
        let url = self.url(&["result"]).await?;
        let answer = self
            .send(
                Request::new(Method::POST, url, Kind::Create)
                    .json(body)
                    .timeout(SYNC_TIMEOUT),
            )
            .await?;
        Ok(Payload {
            media_type: answer
                .header("content-type")
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty()),
            body: answer.body,
        })
    }

    /// `GET /` without the cache: is the backend answering right now?
    pub async fn ping(&self) -> Result<(), PlatformError> {
        let url = self.url(&[""]).await?;
        self.send(Request::get(url)).await?;
        Ok(())
    }

    /// The id of the backend's first (default) OIDC provider.
    pub async fn default_provider_id(&self) -> Result<String, PlatformError> {
        let v = self.oidc_providers().await?;
        v["providers"]
            .get(0)
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                self.http()
                    .protocol("/credentials/oidc lists no provider".into())
            })
    }

    /// The `Authorization` value to send with a download from `url`: the bearer only
    /// when `url` is on the backend API's own origin (scheme, host, port), never for a
    /// pre-signed link on another host (as the openEO Python client's `_is_external`).
    pub async fn auth_header_for(&self, url: &Url) -> Result<Option<HeaderValue>, PlatformError> {
        if self.api().await?.origin() != url.origin() {
            return Ok(None);
        }
        self.http().authorization().await
    }

    // ------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------

    /// The discovered API URL, parsed.
    async fn api(&self) -> Result<&Url, PlatformError> {
        self.inner.api.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Url, PlatformError> {
        let base = parse_base(self.endpoint()).ok_or_else(|| {
            self.http()
                .protocol("the backend URL is not an http(s) URL".into())
        })?;
        let well_known = join_segments(&base, &[".well-known", "openeo"]);
        // The well-known document is public: no bearer.
        let answer = match self.http().send(Request::get(well_known).public()).await {
            Ok(a) => a,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::debug!(backend = %self.http().shown(), error = %e, "no version discovery");
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
                tracing::debug!(backend = %self.http().shown(), api = %redact_url(u.as_str()), "API version discovered");
                Ok(u)
            }
            None => Ok(base),
        }
    }

    /// `{api}/<segments...>`, each segment percent-encoded.
    async fn url(&self, segments: &[&str]) -> Result<Url, PlatformError> {
        Ok(join_segments(self.api().await?, segments))
    }

    /// Sends a request to a URL under the API; the credential goes only to the API's
    /// own origin.
    async fn send(&self, mut req: Request<'_>) -> Result<Answer, PlatformError> {
        let own = match self.inner.api.get() {
            Some(api) => api.origin() == req.url.origin(),
            None => false,
        };
        req.auth = req.auth && own;
        self.inner.http.send(req).await
    }
}

impl std::fmt::Debug for OpenEoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenEoBackend")
            .field("endpoint", &self.http().shown())
            .finish_non_exhaustive()
    }
}

/// Parses `GET /credentials/oidc` into the providers a user can log in with.
pub fn parse_providers(doc: &Value) -> Result<Vec<LoginProvider>, String> {
    let list = doc
        .get("providers")
        .cloned()
        .ok_or_else(|| "/credentials/oidc has no providers".to_string())?;
    let mut providers: Vec<LoginProvider> =
        serde_json::from_value(list).map_err(|e| format!("/credentials/oidc: {e}"))?;
    for p in &mut providers {
        p.issuer = p.issuer.trim_end_matches('/').to_string();
    }
    Ok(providers)
}

// ============================================================================
// The platform
// ============================================================================

/// An openEO backend behind the [`Platform`] seam.
pub struct OpenEo {
    client: OpenEoBackend,
    udps: UdpCache,
    /// A configured access token whose provider id is still to be looked up in the
    /// backend's `/credentials/oidc` (its first provider).
    pending_token: tokio::sync::Mutex<Option<Secret>>,
}

impl OpenEo {
    /// The backend at `endpoint`, with the token of its `config.toml` section if any.
    pub fn new(
        endpoint: &str,
        config: Option<&BackendConfig>,
        logins: Arc<dyn Logins>,
        udps: UdpCache,
    ) -> OpenEo {
        let platform = OpenEo {
            client: OpenEoBackend::with_logins(endpoint, logins),
            udps,
            pending_token: tokio::sync::Mutex::new(None),
        };
        platform.reconfigure(config);
        platform
    }

    /// The protocol client.
    pub fn client(&self) -> &OpenEoBackend {
        &self.client
    }

    async fn udp(&self, url: &str) -> Result<Arc<super::udp::Udp>, ServiceError> {
        self.udps.get(url).await.map_err(|e| match &e {
            UdpError::Unreachable { .. } => ServiceError::Unavailable(e.to_string()),
            UdpError::Http { status, .. } if *status >= 500 => {
                ServiceError::Unavailable(e.to_string())
            }
            _ => ServiceError::Invalid(e.to_string()),
        })
    }
}

/// Media types of the formats a UDP's result can be saved in.
const RESULT_MEDIA_TYPES: [&str; 4] = [
    "image/tiff; application=geotiff",
    "application/x-netcdf",
    "application/geo+json",
    "application/json",
];

#[async_trait]
impl Platform for OpenEo {
    fn label(&self) -> Label {
        Label::Openeo
    }

    fn http(&self) -> &HttpBackend {
        self.client.http()
    }

    async fn service(&self, service: &ServiceDetails) -> Result<Arc<ServiceDef>, ServiceError> {
        let udp = self.udp(&service.application).await?;
        let returns = udp.returns.clone().unwrap_or(Value::Null);
        Ok(Arc::new(ServiceDef {
            title: udp.summary.clone(),
            description: udp.description.clone(),
            parameters: describe(&udp),
            outputs: vec![OutputDescriptor {
                id: "result".into(),
                title: "Result".into(),
                description: returns
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                media_types: RESULT_MEDIA_TYPES.map(String::from).to_vec(),
                schema: returns.get("schema").cloned().unwrap_or(Value::Null),
            }],
            signature: udp,
        }))
    }

    async fn prepare(&self, job: &Job) -> Result<Prepared, ServiceError> {
        let udp = self.udp(&job.service.application).await?;
        let body = OpenEoBackend::job_body(
            &job.title,
            &remote_description(job),
            &udp.id,
            &job.service.application,
            &job.parameters,
            job.format,
        );
        let mut body = body;
        if let Some(budget) = job.max_cost {
            // The job's limit, in the backend's currency (openEO `budget`).
            body.insert("budget".into(), json!(budget));
        }
        Ok(Prepared {
            body: Value::Object(body),
            asynchronous: true,
        })
    }

    async fn submit(&self, _job: &Job, prepared: &Prepared) -> Result<Submission, PlatformError> {
        let Value::Object(body) = &prepared.body else {
            return Err(self
                .http()
                .protocol("the prepared job is not an object".into()));
        };
        let remote_id = self.client.create_job(body).await?;
        Ok(Submission::Created { remote_id })
    }

    async fn start(&self, remote_id: &str) -> Result<(), PlatformError> {
        self.client.start_job(remote_id).await
    }

    async fn run_sync(&self, _job: &Job, prepared: &Prepared) -> Result<Payload, PlatformError> {
        // `POST /result` takes the process and the billing fields of a batch job.
        let mut body = serde_json::Map::new();
        for key in ["process", "plan", "budget"] {
            if let Some(v) = prepared.body.get(key).filter(|v| !v.is_null()) {
                body.insert(key.to_string(), v.clone());
            }
        }
        self.client.process_sync(&Value::Object(body)).await
    }

    async fn list_jobs(
        &self,
        covering: Option<&HashSet<String>>,
    ) -> Result<Option<Vec<RemoteJob>>, PlatformError> {
        let caps = self.client.capabilities().await?;
        if !caps.supports("GET", "/jobs") {
            return Ok(None);
        }
        let jobs = self.client.list_jobs_covering(covering).await?;
        Ok(Some(jobs.iter().map(BatchJob::remote).collect()))
    }

    async fn job(&self, remote_id: &str) -> Result<RemoteJob, PlatformError> {
        Ok(self.client.job(remote_id).await?.remote())
    }

    async fn backend_estimate(&self, remote_id: &str) -> Result<Option<f64>, PlatformError> {
        self.client.estimate(remote_id).await
    }

    async fn reconcile(
        &self,
        job: &Job,
        listing: Option<&[RemoteJob]>,
        linked: &HashSet<String>,
    ) -> Result<Reconciled, PlatformError> {
        let Some(list) = listing else {
            return Ok(Reconciled::Uncertain(
                "the answer to the submission was lost and this backend offers no job list \
                 to look for the job in, so eodispatch cannot tell whether the backend \
                 created it"
                    .into(),
            ));
        };
        let marker = job.uuid.to_string();
        let mut undescribed = Vec::new();
        for r in list {
            if linked.contains(&r.id) {
                continue;
            }
            match &r.description {
                Some(d) if d.contains(&marker) => {
                    return Ok(Reconciled::Found(Box::new(r.clone())))
                }
                Some(_) => {}
                None => undescribed.push(r.id.clone()),
            }
        }
        // Listings may leave descriptions out: ask for the few candidates.
        for id in undescribed.into_iter().take(MAX_UNDESCRIBED) {
            let r = self.client.job(&id).await?;
            if r.description
                .as_deref()
                .is_some_and(|d| d.contains(&marker))
            {
                return Ok(Reconciled::Found(Box::new(r.remote())));
            }
        }
        Ok(Reconciled::NotCreated)
    }

    async fn cancel(&self, remote_id: &str) -> Result<(), PlatformError> {
        self.client.cancel_job(remote_id).await
    }

    async fn logs(
        &self,
        remote_id: &str,
        offset: Option<&str>,
        level: Option<&str>,
    ) -> Result<Value, PlatformError> {
        self.client.logs(remote_id, offset, level).await
    }

    async fn failure_message(&self, remote: &RemoteJob) -> Option<String> {
        let logs = self
            .client
            .logs(&remote.id, None, Some("error"))
            .await
            .ok()?;
        logs.get("logs")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .rev()
                    .find_map(|e| e.get("message").and_then(Value::as_str))
            })
            .map(crate::redact::redact)
    }

    async fn results(&self, remote_id: &str) -> Result<ResultsDoc, PlatformError> {
        Ok(ResultsDoc {
            document: self.client.results(remote_id).await?,
            ..ResultsDoc::default()
        })
    }

    async fn results_from_answer(&self, answer: &Payload) -> Result<ResultsDoc, PlatformError> {
        // The answer of `POST /result` is the result file itself.
        let media = answer
            .media_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let ext = super::http::extension_for(Some(&media));
        Ok(ResultsDoc {
            document: json!({
                "type": "Collection",
                "stac_version": "1.0.0",
                "id": "synchronous",
                "description": "The result of a synchronous processing request (POST /result)",
                "license": "proprietary",
                "links": [],
                "assets": {},
            }),
            inline: vec![InlineFile {
                key: "result".into(),
                name: format!("result{}", if ext.is_empty() { ".bin" } else { ext }),
                media_type: media,
                bytes: answer.body.clone(),
            }],
            literals: Default::default(),
        })
    }

    async fn download_authorization(
        &self,
        url: &Url,
    ) -> Result<Option<HeaderValue>, PlatformError> {
        self.client.auth_header_for(url).await
    }

    async fn login_providers(&self) -> Result<Vec<LoginProvider>, PlatformError> {
        // `/credentials/oidc` is optional: a backend without it offers no login.
        let doc = match self.client.oidc_providers().await {
            Ok(doc) => doc,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        parse_providers(&doc).map_err(|reason| self.http().protocol(reason))
    }

    fn info(&self) -> Option<BackendInfo> {
        self.client.cached_capabilities().map(|c| BackendInfo {
            api_version: c.api_version.clone(),
            backend_version: c.backend_version.clone(),
            title: c.title.clone(),
        })
    }

    async fn probe(&self) {
        let _ = self.client.capabilities().await;
    }

    async fn ping(&self) -> Result<(), PlatformError> {
        self.client.ping().await
    }

    async fn ensure_credentials(&self) -> Result<(), PlatformError> {
        let mut pending = self.pending_token.lock().await;
        if let Some(token) = pending.as_ref() {
            let provider = self.client.default_provider_id().await?;
            self.client
                .set_bearer(Some(Bearer::oidc(&provider, token.expose())));
            *pending = None;
        }
        Ok(())
    }

    fn reconfigure(&self, config: Option<&BackendConfig>) {
        let Some(token) = config.and_then(|c| c.access_token.clone()) else {
            return;
        };
        match config.and_then(|c| c.provider_id.as_deref()) {
            Some(provider) => self
                .client
                .set_bearer(Some(Bearer::oidc(provider, token.expose()))),
            None => {
                if let Ok(mut pending) = self.pending_token.try_lock() {
                    *pending = Some(token);
                }
            }
        }
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

/// The openEO job id pattern `^[\w\-\.~]+$`.
fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '~'))
}

/// A batch-job object → [`BatchJob`]. `strict`: the status is required.
fn parse_job(v: &Value, strict: bool) -> Option<BatchJob> {
    let o = v.as_object()?;
    let id = o.get("id")?.as_str()?.to_string();
    let status = match o.get("status").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None if strict => return None,
        None => "unknown".to_string(),
    };
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(String::from);
    Some(BatchJob {
        id,
        status,
        progress: o.get("progress").and_then(Value::as_f64),
        title: text("title"),
        description: text("description"),
        updated: text("updated"),
        created: text("created"),
        costs: o
            .get("costs")
            .and_then(Value::as_f64)
            .filter(|c| c.is_finite() && *c >= 0.0),
        usage: o.get("usage").filter(|u| u.is_object()).cloned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const EURAC_URL: &str = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json";

    /// The job body equals the openEO Python client's for the eurac PV UDP (a
    /// `process_graph` with one node calling the UDP by `namespace` URL), key order
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
        assert_eq!(j.remote().status, Some(Status::Running));
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

    #[tokio::test]
    async fn unreachable_backend_is_classified_and_not_cached() {
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let b = OpenEoBackend::new(&format!("http://127.0.0.1:{port}/openeo?token=abc"));
        let e = b.api_url().await.unwrap_err();
        assert!(matches!(e, PlatformError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.code(), "BackendUnreachable");
        assert!(!e.to_string().contains("token=abc"), "{e}");
        let e = b.job("j-1").await.unwrap_err();
        assert!(matches!(e, PlatformError::Unreachable { .. }), "{e:?}");
        assert_eq!(b.request_count(), 2, "discovery is retried, not cached");
    }
}
