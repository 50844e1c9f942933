//! A fake openEO backend (API 1.2) for eodispatch's tests and demos.
//!
//! It follows the openEO API closely where clients notice — discovery, capabilities, OIDC
//! provider list, bearer tokens, batch jobs, logs, STAC results with signed expiring asset
//! links, `HEAD`/`Range` downloads, remote UDPs, openEO error JSON — and lets a test decide how
//! jobs run and which requests fail. It runs in-process ([`start`]) or as the `fake-openeo`
//! binary.
//!
//! # Layout
//!
//! - [`config`]: [`FakeConfig`] and its parts ([`TokenCheck`], [`JobPlan`], [`AssetSource`], ...).
//! - `server`: the accept loop (hyper per connection, so a fault can drop a connection) and the
//!   front handler (normalisation, CORS, stats, faults).
//! - `api`: the routes: discovery, jobs, results and assets; `control`: the `/_fake/` routes.
//! - `state`: jobs and their lazily computed life; `process`: graph validation and UDPs;
//!   `assets`, `geotiff` and `netcdf`: result files; [`faults`]: fault rules.
//!
//! # Use from a test
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use fake_openeo::{FakeConfig, FaultRule, JobPlan};
//! let fake = fake_openeo::start(FakeConfig::default().with_timing(0.1, 0.3)).await?;
//! fake.add_fault(FaultRule::too_many_requests("POST /jobs", 2));
//! fake.set_job_plan("fail", JobPlan::failing(0.1, 0.2, "Out of memory"));
//! let api = fake.api_url(); // http://127.0.0.1:PORT/openeo/1.2
//! // ... run the client against `api` ...
//! assert_eq!(fake.stats().jobs_created, 1);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Routes
//!
//! At the root: `GET /.well-known/openeo` (lists the API at `/openeo/1.2`) and `GET
//! /udp/<name>.json` (the UDP fixture files). Under `/openeo/1.2` (with or without trailing
//! slash): `GET /` capabilities, `/conformance`, `/file_formats`, `/processes`,
//! `/credentials/oidc`, `/me`, `POST /validation`, `GET|POST /jobs`, `GET|PATCH|DELETE
//! /jobs/{job_id}`, `GET /jobs/{job_id}/estimate`, `GET /jobs/{job_id}/logs`,
//! `GET|POST|DELETE /jobs/{job_id}/results`, `GET|HEAD /jobs/{job_id}/results/assets/{filename}`
//! (token), and the signed `GET|HEAD /jobs/{job_id}/results/assets/{user_b64}/{signature}/{filename}?expires=`
//! and `GET /jobs/{job_id}/results/{user_b64}/{signature}?expires=` (canonical results link).
//!
//! # Authentication
//!
//! `Authorization: Bearer oidc/<provider>/<token>` (provider as listed at `/credentials/oidc`,
//! default `fake`) or `Bearer basic//<token>`. Missing: 401 `AuthenticationRequired`; malformed,
//! unknown provider or rejected by the [`TokenCheck`]: 403 `TokenInvalid`. Jobs are per user.
//!
//! # Jobs
//!
//! `POST /jobs` checks `process.process_graph` (exactly one `result` node per graph), resolves
//! every node whose `namespace` is an http(s) URL to the file of the same name in
//! [`FakeConfig::udp_dir`] (400 `ProcessNamespaceInvalid` if there is none or its `id` differs
//! from `process_id`), rejects arguments that are not UDP parameters (400
//! `ProcessParameterInvalid`) and missing required ones (400 `ProcessParameterRequired`), and
//! answers 201 with `Location` and `OpenEO-Identifier`. A started job is `queued` for
//! [`JobPlan::queued_secs`], `running` for [`JobPlan::running_secs`] (progress linear), then
//! [`JobPlan::outcome`]; the plan is the first [`PlanRule`] whose `matches` is a substring of the
//! title or description (or equals the job id), else the default plan. Status is computed from the
//! wall clock on every read. Log entries: `info` when queued, running and finished, `debug` when
//! running starts, a `warning` halfway, an `error` (code `Internal`) on failure.
//!
//! # Results
//!
//! One asset per `save_result` format (GTiff when there is none): `GTiff` → `openEO.tif`,
//! `netCDF` → `openEO.nc`, `GeoJSON` → `vectorcube.geojson`, `JSON` → `result.json`. `openEO.tif`
//! is a valid GeoTIFF (uint8, UTM, covering the job's `spatial_extent`), `openEO.nc` a valid
//! netCDF on the same grid, unless [`FakeConfig::assets`] says otherwise (e.g.
//! [`AssetSource::Generated`] for large streamed files, [`AssetSource::File`] for a file a test
//! made). Downloads support `HEAD`, `Range` (206/416), a strong `ETag` and `If-Range`.
//! Asset hrefs are signed:
//! `md5(job_id + user + filename + expires + secret)`, valid for
//! [`FakeConfig::link_ttl_secs`]; expired → 410 `ResultLinkExpired`, bad signature → 403
//! `CredentialsInvalid`.
//!
//! # Fault rules (JSON, `POST /_fake/faults`)
//!
//! ```json
//! {"method": "POST", "path": "/jobs", "kind": "status", "status": 429, "retry_after": 2}
//! {"method": "GET", "path": "/jobs/*", "kind": "status", "status": 502, "times": 3}
//! {"path": "/jobs/*", "kind": "delay", "delay_ms": 1500}
//! {"method": "GET", "path": "/jobs/*", "kind": "drop", "after": 2}
//! {"method": "POST", "path": "/jobs", "kind": "lose_response"}
//! {"path": "/jobs/*/results/assets/**", "kind": "truncate", "bytes": 1000}
//! {"path_contains": "/results/assets/", "kind": "flip_byte", "offset": 10}
//! {"path_contains": "/results/assets/", "kind": "stall", "bytes": 1000, "stall_ms": 60000}
//! ```
//!
//! `path` is a glob on the path after `/openeo/1.2` (`*` within a segment, `**` across; exact
//! without `*`); `path_contains` a substring; `method` optional. `times` (default 1, 0 =
//! unlimited) and `after` (default 0) as in [`FaultRule`]. Kinds: see [`FaultKind`].
//!
//! # Other controls (`/_fake/`, no token)
//!
//! - `GET /_fake/jobs` → `[{"id", "user", "title", "description", "status", "progress",
//!   "process", "plan", "budget", "log_level", "extra", "created", "updated"}]`
//! - `GET /_fake/stats` → `{"requests": {"POST /jobs": 1, "GET /jobs/{job_id}": 4, ...},
//!   "jobs_created": 1, "faults_fired": 0}`
//! - `GET /_fake/faults`, `DELETE /_fake/faults`
//! - `POST /_fake/plan` `{"match"?, "queued_secs"?, "running_secs"?, "outcome"?,
//!   "error_message"?}`: without `match` it changes the default plan, with it it adds a rule.
//! - `POST /_fake/jobs/{id}/status` `{"status": "error", "progress"?: 40, "message"?: "..."}`:
//!   the job keeps that status until started again.
//! - `POST /_fake/tokens` `{"valid": ["t1"]}` (only these tokens from now on; others get 403
//!   `TokenInvalid`, like an expired token) or `{"valid": null}` (any token).
//! - `POST /_fake/reset`

pub mod config;
pub mod faults;

mod api;
mod assets;
mod auth;
mod control;
mod error;
mod geotiff;
mod netcdf;
mod process;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::{API_PREFIX, REMOTE_PROCESS_DEFINITION};
pub use config::{
    AssetSource, FakeConfig, JobPlan, OidcClient, OidcProvider, Outcome, PlanRule, TokenCheck,
    DEFAULT_ISSUER, DEFAULT_UDP_DIR,
};
pub use control::PlanUpdate;
pub use faults::{FaultKind, FaultRule};
pub use state::{JobSnapshot, JobStatus, Stats};

use state::{Shared, State, TokenCache};

/// Starts a fake backend on `config.bind:config.port` and returns once it accepts connections.
pub async fn start(config: FakeConfig) -> anyhow::Result<FakeHandle> {
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let host = match local {
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
        SocketAddr::V4(a) => a.ip().to_string(),
    };
    let base_url = format!("http://{host}:{}", local.port());
    let api_url = format!("{base_url}{API_PREFIX}");
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building the HTTP client for userinfo checks")?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(&config)),
        base_url,
        api_url,
        token_cache: Mutex::new(TokenCache::default()),
        token_check: RwLock::new(Arc::new(config.token_check.clone())),
        http,
        config,
    });
    let router = api::router(shared.clone());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(server::accept_loop(
        listener,
        shared.clone(),
        router,
        stopped,
    ));
    tracing::info!(url = %shared.base_url, "fake openEO backend listening");
    Ok(FakeHandle {
        shared,
        addr: local,
        stop,
        task: Some(task),
    })
}

/// A running fake backend. Dropping it stops the server (without waiting).
#[derive(Debug)]
pub struct FakeHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl FakeHandle {
    /// The server root, e.g. `http://127.0.0.1:PORT` (serves `/.well-known/openeo`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The openEO API root, e.g. `http://127.0.0.1:PORT/openeo/1.2`.
    pub fn api_url(&self) -> String {
        self.shared.api_url.clone()
    }

    /// The URL of a UDP fixture served by the fake: `<base>/udp/<name>.json` (`name` with or
    /// without `.json`). Usable as a process `namespace`.
    pub fn udp_url(&self, name: &str) -> String {
        let name = name.strip_suffix(".json").unwrap_or(name);
        format!("{}/udp/{name}.json", self.shared.base_url)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// All jobs of all users, oldest first, with their status now.
    pub fn jobs(&self) -> Vec<JobSnapshot> {
        self.shared.jobs_snapshot()
    }

    /// One job, with its status now.
    pub fn job(&self, id: &str) -> Option<JobSnapshot> {
        self.jobs().into_iter().find(|j| j.id == id)
    }

    /// Request counts and jobs created.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Sets the plan of jobs that no rule matches (applies to jobs started from now on).
    pub fn set_default_plan(&self, plan: JobPlan) {
        self.shared.set_default_plan(plan);
    }

    /// Adds a rule: jobs whose title or description contains `matches` (or whose id equals it)
    /// follow `plan` when started. Earlier rules win.
    pub fn set_job_plan(&self, matches: &str, plan: JobPlan) {
        self.shared.add_plan_rule(PlanRule::new(matches, plan));
    }

    /// Applies a [`PlanUpdate`] (the JSON of `POST /_fake/plan`).
    pub fn update_plan(&self, update: PlanUpdate) {
        self.shared.apply_plan_update(update);
    }

    /// Adds a fault rule (after the existing ones).
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.add_fault(rule);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Forces a job's status; `false` if there is no such job. The job keeps it until it is
    /// started again (from `created` or `canceled`).
    pub fn force_status(&self, job_id: &str, status: JobStatus) -> bool {
        self.shared.force_status(job_id, status, None, None)
    }

    /// Replaces the token check, e.g. `TokenCheck::Static` without a token to revoke it (its
    /// next use gets 403 `TokenInvalid`, as an expired token does).
    pub fn set_token_check(&self, check: TokenCheck) {
        self.shared.set_token_check(check);
    }

    /// Forgets jobs, statistics, faults and plan rules; the default plan and the token check
    /// are the configured ones again.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
