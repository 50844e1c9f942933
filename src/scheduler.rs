//! The scheduler: sends stored jobs to their backends and follows them until they end.
//!
//! One worker task per backend endpoint, started when the first job for it appears.
//! Each cycle of a worker:
//!
//! 1. **Reconciles** jobs left `submitting` (a crash or a lost answer after
//!    `POST /jobs` was sent): the backend's job list is searched for the job's UUID,
//!    which every remote job carries in its description. Found: the job is linked to
//!    it. Not found: the job goes back to the queue. A POST is never retried blindly,
//!    so no job is submitted twice.
//! 2. **Polls** submitted jobs: one `GET /jobs` listing for all of them where the
//!    backend offers it, `GET /jobs/{id}` for the rest; a job the backend holds in
//!    `created` (start lost) is started again.
//! 3. **Submits** queued jobs while fewer than the backend's `max_running_jobs` are
//!    active: the row is marked `submitting` *before* the request goes out, then
//!    linked to the backend's id, then started.
//!
//! Pacing: every request waits on the backend's rate limiter; the poll interval starts
//! at [`MIN_INTERVAL`], grows by half after each quiet cycle up to [`MAX_INTERVAL`],
//! carries ±20 % jitter and drops back when something changes or a client asks for
//! a job ([`Scheduler::nudge`]). Transient failures (unreachable, 429, 5xx) back off
//! exponentially with full jitter and honour `Retry-After`; the backend is shown as
//! unreachable and its jobs keep their status. Other backend errors fail the job with
//! the backend's message. A refused login keeps jobs waiting (`LoginRequired`).
//!
//! Every change of a job is published on the event bus.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio::sync::Notify;

use crate::daemon::Daemon;
use crate::job::{Job, JobError, Label, Status, SubmitState};
use crate::platform::backends::{normalise_endpoint, Backend};
use crate::platform::openeo::{OpenEoBackend, OpenEoError, RemoteJob};
use crate::store::{JobPatch, StoreError};

/// Shortest poll interval (default of `poll_interval_min_s`).
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Longest poll interval (default of `poll_interval_max_s`).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Longest backoff after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A nudge polls at most this often.
pub const MIN_NUDGE_GAP: Duration = Duration::from_secs(1);

/// Environment variable naming a failpoint at which the daemon aborts (crash tests):
/// `submit:before_post`, `submit:after_post`, `submit:after_link`, `refresh:after_store`
/// (a rotated refresh token was just written to the token store).
pub const FAILPOINT_ENV: &str = "EODISPATCH_FAILPOINT";

/// Aborts the process when `EODISPATCH_FAILPOINT` is `name` (crash tests).
pub(crate) fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var(FAILPOINT_ENV).ok());
    if point.as_deref() == Some(name) {
        eprintln!("eodispatch: failpoint {name} reached, aborting");
        std::process::abort();
    }
}

/// The description sent with every remote job: it carries the local UUID so that a
/// crashed submission is found again.
pub fn remote_description(job: &Job) -> String {
    format!(
        "Submitted by eodispatch, job {} (local id {}).\n\neodispatch-uuid: {}",
        job.title, job.id, job.uuid
    )
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

/// Full-jitter exponential backoff: a random delay in `[0, min(cap, base · 2^n)]`,
/// at least `floor` (a `Retry-After`). `base` is 2 s with the default intervals.
pub fn backoff(failures: u32, floor: Option<Duration>, rng: &mut impl Rng) -> Duration {
    backoff_from(2.0, failures, floor, rng)
}

/// [`backoff`] with a given base in seconds.
pub fn backoff_from(
    base: f64,
    failures: u32,
    floor: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let ceiling = (base * 2f64.powi(failures.min(16) as i32)).min(MAX_BACKOFF.as_secs_f64());
    let d = Duration::from_secs_f64(rng.random_range(0.0..=ceiling));
    match floor {
        Some(f) => d.max(f.min(MAX_BACKOFF)),
        None => d,
    }
}

/// Handle to the scheduler (cheap to clone).
#[derive(Clone, Default)]
pub struct Scheduler {
    workers: Arc<Mutex<HashMap<String, Arc<Worker>>>>,
}

/// What a backend worker shares with the rest of the daemon.
struct Worker {
    wake: Notify,
    /// Set with a wake-up that should also end a backoff (the user just logged in).
    resume: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler with no workers yet.
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Starts a worker for every backend that has active jobs (at daemon start).
    pub async fn start(&self, daemon: &Daemon) -> Result<(), StoreError> {
        for endpoint in daemon.store().active_endpoints().await? {
            self.ensure_worker(daemon, &endpoint);
        }
        Ok(())
    }

    /// A new job was stored: make sure its backend's worker runs and looks at it soon.
    pub fn job_added(&self, daemon: &Daemon, job: &Job) {
        self.ensure_worker(daemon, &job.service.endpoint)
            .wake
            .notify_one();
    }

    /// A client asked for an active job: poll its backend soon.
    pub fn nudge(&self, daemon: &Daemon, job: &Job) {
        if !job.status.is_terminal() {
            self.ensure_worker(daemon, &job.service.endpoint)
                .wake
                .notify_one();
        }
    }

    /// The user logged in to `endpoint`: its waiting jobs go on now, without waiting
    /// for the end of a backoff.
    pub fn backend_ready(&self, daemon: &Daemon, endpoint: &str) {
        let worker = self.ensure_worker(daemon, endpoint);
        worker
            .resume
            .store(true, std::sync::atomic::Ordering::SeqCst);
        worker.wake.notify_one();
    }

    fn ensure_worker(&self, daemon: &Daemon, endpoint: &str) -> Arc<Worker> {
        let key = normalise_endpoint(endpoint);
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(&key) {
            return w.clone();
        }
        let worker = Arc::new(Worker {
            wake: Notify::new(),
            resume: std::sync::atomic::AtomicBool::new(false),
        });
        workers.insert(key.clone(), worker.clone());
        let backend = daemon.backends().get(endpoint);
        let run = WorkerRun {
            daemon: daemon.clone(),
            backend,
            key,
            worker: worker.clone(),
            failures: 0,
        };
        let d = daemon.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = run.run() => {},
                _ = d.shutting_down() => {},
            }
        });
        worker
    }
}

/// What one cycle observed.
#[derive(Default)]
struct Cycle {
    /// Something changed (poll again soon).
    changed: bool,
    /// Active jobs remain.
    active: bool,
    /// A transient failure: back off (with this Retry-After, if any).
    failed: Option<Option<Duration>>,
}

struct WorkerRun {
    daemon: Daemon,
    backend: Arc<Backend>,
    key: String,
    worker: Arc<Worker>,
    failures: u32,
}

impl WorkerRun {
    async fn run(mut self) {
        let mut interval = Duration::from_secs_f64(self.daemon.config().poll_interval_min_s);
        loop {
            // Read every cycle: a changed config.toml applies without a restart.
            let cfg = self.daemon.config();
            let min_interval = Duration::from_secs_f64(cfg.poll_interval_min_s);
            let max_interval = Duration::from_secs_f64(cfg.poll_interval_max_s);
            let nudge_gap = MIN_NUDGE_GAP.min(min_interval);
            let backoff_base = cfg.poll_interval_min_s * 0.4;
            interval = interval.clamp(min_interval, max_interval);
            let cycle = match self.cycle().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(backend = %self.key, error = %e, "scheduler: store error");
                    Cycle {
                        active: true,
                        failed: Some(None),
                        ..Cycle::default()
                    }
                }
            };
            let wait = if let Some(retry_after) = cycle.failed {
                self.failures += 1;
                backoff_from(backoff_base, self.failures, retry_after, &mut rand::rng())
                    .max(nudge_gap.min(Duration::from_millis(200)))
            } else {
                self.failures = 0;
                if cycle.changed {
                    interval = min_interval;
                } else {
                    interval = (interval.mul_f64(1.5)).min(max_interval);
                }
                let jitter = rand::rng().random_range(0.8..1.2);
                interval.mul_f64(jitter)
            };
            if cycle.active {
                let woken = tokio::time::timeout(wait, self.worker.wake.notified()).await;
                if woken.is_ok() {
                    // A nudge or a new job: look now, but not more often than
                    // MIN_NUDGE_GAP, and not while backing off.
                    let resume = self
                        .worker
                        .resume
                        .swap(false, std::sync::atomic::Ordering::SeqCst);
                    if resume {
                        self.failures = 0;
                        interval = min_interval;
                    } else if cycle.failed.is_some() {
                        tokio::time::sleep(wait).await;
                    } else {
                        tokio::time::sleep(nudge_gap).await;
                        interval = min_interval;
                    }
                }
            } else {
                self.worker.wake.notified().await;
                self.worker
                    .resume
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                interval = min_interval;
            }
        }
    }

    /// One pass over this backend's active jobs.
    async fn cycle(&mut self) -> Result<Cycle, StoreError> {
        let mut out = Cycle::default();
        let endpoints: Vec<String> = self
            .daemon
            .store()
            .active_endpoints()
            .await?
            .into_iter()
            .filter(|e| normalise_endpoint(e) == self.key)
            .collect();
        if endpoints.is_empty() {
            return Ok(out);
        }
        let jobs = self
            .daemon
            .store()
            .scheduler_jobs(endpoints.clone(), self.backend.max_running())
            .await?;
        if jobs.is_empty() {
            return Ok(out);
        }
        out.active = true;
        let (openeo, other): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.label == Label::Openeo);
        for job in other {
            if job.error.is_none() {
                self.patch(
                    &job,
                    JobPatch {
                        error: Some(Some(JobError {
                            code: "NotSupported".into(),
                            message: "OGC API Processes services are not supported by this \
                                      version of eodispatch yet; the job waits"
                                .into(),
                        })),
                        ..JobPatch::default()
                    },
                )
                .await?;
            }
        }
        let submitting: Vec<&Job> = openeo
            .iter()
            .filter(|j| j.submit_state == SubmitState::Submitting)
            .collect();
        let submitted: Vec<&Job> = openeo
            .iter()
            .filter(|j| j.submit_state == SubmitState::Submitted)
            .collect();
        let client = self.backend.client.clone();
        // One listing serves reconciliation and polling.
        let mut listing: Option<HashMap<String, RemoteJob>> = None;
        if !submitting.is_empty() || (submitted.len() > 1 && client.lists_jobs().await) {
            // Reconciliation needs the whole list; polling only the tracked jobs,
            // which are on the first page(s) as backends list newest first.
            let tracked: HashSet<String> = submitted
                .iter()
                .filter_map(|j| j.backend_job_id.clone())
                .collect();
            let wanted = submitting.is_empty().then_some(&tracked);
            match self.call(client.list_jobs_covering(wanted)).await {
                Ok(list) => {
                    listing = Some(list.into_iter().map(|r| (r.id.clone(), r)).collect());
                }
                Err(e) => return self.failed(out, &e),
            }
        }
        // 1. Reconcile.
        if let Some(list) = &listing {
            let known: HashSet<&str> = submitted
                .iter()
                .filter_map(|j| j.backend_job_id.as_deref())
                .collect();
            for job in &submitting {
                match self.find_remote(job, list, &known).await {
                    Ok(Some(remote)) => {
                        tracing::info!(job = job.id, remote = %remote.id, "reconciled a submission");
                        self.link(job, &remote).await?;
                        out.changed = true;
                    }
                    Ok(None) => {
                        tracing::info!(job = job.id, "no remote job found: submitting again");
                        self.patch(
                            job,
                            JobPatch {
                                submit_state: Some(SubmitState::Pending),
                                ..JobPatch::default()
                            },
                        )
                        .await?;
                        out.changed = true;
                    }
                    Err(e) => return self.failed(out, &e),
                }
            }
        }
        // 2. Poll.
        for job in &submitted {
            let Some(remote_id) = job.backend_job_id.as_deref() else {
                continue;
            };
            let remote = match listing.as_ref().and_then(|l| l.get(remote_id)) {
                Some(r) => r.clone(),
                None => match self.call(client.job(remote_id)).await {
                    Ok(r) => r,
                    Err(e @ OpenEoError::Api { status: 404, .. }) => {
                        self.fail(job, "BackendJobGone", &e.to_string()).await?;
                        out.changed = true;
                        continue;
                    }
                    Err(e) if e.is_transient() || matches!(e, OpenEoError::Auth { .. }) => {
                        return self.failed(out, &e)
                    }
                    Err(e) => {
                        tracing::warn!(job = job.id, error = %e, "status request refused");
                        continue;
                    }
                },
            };
            match self.apply_remote(job, &remote).await {
                Ok(changed) => out.changed |= changed,
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Backend(e)) => return self.failed(out, &e),
            }
        }
        // 3. Submit. Jobs that ended in this cycle freed their slots: read the work list
        // again so that those slots are filled now, not one interval later.
        let openeo: Vec<Job> = if out.changed {
            self.daemon
                .store()
                .scheduler_jobs(endpoints.clone(), self.backend.max_running())
                .await?
                .into_iter()
                .filter(|j| j.label == Label::Openeo)
                .collect()
        } else {
            openeo
        };
        let active_remote = openeo
            .iter()
            .filter(|j| j.submit_state != SubmitState::Pending)
            .count() as u32;
        let mut free = self.backend.max_running().saturating_sub(active_remote);
        let queued = openeo
            .iter()
            .any(|j| j.submit_state == SubmitState::Pending);
        if free > 0 && queued && self.backend.state().state != "ok" {
            // Probe before marking jobs `submitting` against a backend that was down.
            if let Err(e) = self.call(client.ping()).await {
                return self.failed(out, &e);
            }
        }
        for job in openeo
            .iter()
            .filter(|j| j.submit_state == SubmitState::Pending)
        {
            if free == 0 {
                break;
            }
            match self.submit(job).await {
                Ok(()) => {
                    free -= 1;
                    out.changed = true;
                }
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Backend(e)) => return self.failed(out, &e),
            }
        }
        if self.backend.mark_ok() {
            self.publish_backend();
        }
        Ok(out)
    }

    /// Sends one request through the rate limiter and records reachability.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, OpenEoError>>,
    ) -> Result<T, OpenEoError> {
        self.backend.limiter.acquire().await;
        let r = match self.backend.ensure_credentials().await {
            Ok(()) => fut.await,
            Err(e) => Err(e),
        };
        match &r {
            Ok(_) => {
                if self.backend.mark_ok() {
                    self.publish_backend();
                }
            }
            Err(e) => {
                if self.backend.mark_error(e) {
                    self.publish_backend();
                }
            }
        }
        r
    }

    fn publish_backend(&self) {
        let state = self.backend.state();
        tracing::info!(backend = %state.url, state = state.state, "backend state");
        self.daemon.auth().publish(&self.daemon, &state.url, None);
    }

    /// The cycle ends early after a transient failure (or a refused login).
    fn failed(&self, mut out: Cycle, e: &OpenEoError) -> Result<Cycle, StoreError> {
        tracing::warn!(backend = %self.key, error = %e, "backend request failed; backing off");
        out.failed = Some(e.retry_after());
        Ok(out)
    }

    /// Looks for the remote job carrying `job`'s UUID among those not linked yet.
    async fn find_remote(
        &self,
        job: &Job,
        list: &HashMap<String, RemoteJob>,
        known: &HashSet<&str>,
    ) -> Result<Option<RemoteJob>, OpenEoError> {
        let marker = job.uuid.to_string();
        let mut undescribed = Vec::new();
        for r in list.values() {
            if known.contains(r.id.as_str()) {
                continue;
            }
            match &r.description {
                Some(d) if d.contains(&marker) => return Ok(Some(r.clone())),
                Some(_) => {}
                None => undescribed.push(r.id.clone()),
            }
        }
        // Listings may leave descriptions out: ask for the few candidates.
        for id in undescribed.into_iter().take(20) {
            let r = self.call(self.backend.client.job(&id)).await?;
            if r.description
                .as_deref()
                .is_some_and(|d| d.contains(&marker))
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Links `job` to a remote job found by reconciliation and applies its status.
    async fn link(&self, job: &Job, remote: &RemoteJob) -> Result<(), StoreError> {
        let linked = self
            .patch(
                job,
                JobPatch {
                    submit_state: Some(SubmitState::Submitted),
                    backend_job_id: Some(Some(remote.id.clone())),
                    backend_status: Some(Some(remote.status.clone())),
                    ..JobPatch::default()
                },
            )
            .await?;
        if let Some(linked) = linked {
            match self.apply_remote(&linked, remote).await {
                Ok(_) | Err(Failure::Backend(_)) => {}
                Err(Failure::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Submits one queued job: mark, create, link, start.
    async fn submit(&self, job: &Job) -> Result<(), Failure> {
        let udp = match self.daemon.udps().get(&job.service.application).await {
            Ok(u) => u,
            Err(e) => {
                // The UDP was readable when the job was accepted; this is transient.
                tracing::warn!(job = job.id, error = %e, "UDP unavailable; job waits");
                return Ok(());
            }
        };
        let body = OpenEoBackend::job_body(
            &job.title,
            &remote_description(job),
            &udp.id,
            &job.service.application,
            &job.parameters,
            job.format,
        );
        let Some(job) = self
            .patch(
                job,
                JobPatch {
                    submit_state: Some(SubmitState::Submitting),
                    ..JobPatch::default()
                },
            )
            .await?
        else {
            return Ok(());
        };
        if job.status.is_terminal() {
            return Ok(());
        }
        failpoint("submit:before_post");
        match self.call(self.backend.client.create_job(&body)).await {
            Ok(remote_id) => {
                failpoint("submit:after_post");
                // Linked even if the user canceled meanwhile: the remote id is what
                // lets us cancel the remote job.
                let Some(job) = self
                    .write_patch(
                        &job,
                        JobPatch {
                            submit_state: Some(SubmitState::Submitted),
                            backend_job_id: Some(Some(remote_id.clone())),
                            backend_status: Some(Some("created".into())),
                            error: Some(None),
                            ..JobPatch::default()
                        },
                    )
                    .await?
                else {
                    return Ok(());
                };
                failpoint("submit:after_link");
                tracing::info!(job = job.id, remote = %remote_id, "submitted");
                if job.status.is_terminal() {
                    self.cancel_remote(&remote_id).await;
                    return Ok(());
                }
                self.start(&job, &remote_id).await
            }
            Err(e @ OpenEoError::Unreachable { .. }) => {
                // Certainly not received: back to the queue.
                self.patch(&job, pending()).await?;
                Err(Failure::Backend(e))
            }
            Err(e @ OpenEoError::Transient { status: 429, .. }) => {
                // Refused before doing anything.
                self.patch(&job, pending()).await?;
                Err(Failure::Backend(e))
            }
            Err(e @ (OpenEoError::NoAnswer { .. } | OpenEoError::Transient { .. })) => {
                // Maybe created: stays `submitting`, reconciled next cycle.
                tracing::warn!(job = job.id, error = %e, "submission answer lost; will reconcile");
                Err(Failure::Backend(e))
            }
            Err(e @ OpenEoError::Auth { .. }) => {
                self.patch(
                    &job,
                    JobPatch {
                        submit_state: Some(SubmitState::Pending),
                        error: Some(Some(JobError {
                            code: "LoginRequired".into(),
                            message: format!("{e}; the job waits until you log in"),
                        })),
                        ..JobPatch::default()
                    },
                )
                .await?;
                Err(Failure::Backend(e))
            }
            Err(e) => {
                self.patch(&job, pending()).await?;
                self.fail(&job, e.code(), &e.to_string()).await?;
                Ok(())
            }
        }
    }

    /// Starts a linked job (`POST /jobs/{id}/results`), then marks it queued. If the
    /// user canceled or deleted it while the start was in flight, the remote job is
    /// canceled again.
    async fn start(&self, job: &Job, remote_id: &str) -> Result<(), Failure> {
        match self.call(self.backend.client.start_job(remote_id)).await {
            Ok(()) => {
                let queued = self
                    .patch(
                        job,
                        JobPatch {
                            status: Some(Status::Queued),
                            backend_status: Some(Some("queued".into())),
                            progress: Some(Some(0.0)),
                            ..JobPatch::default()
                        },
                    )
                    .await?;
                if queued.is_none() {
                    tracing::info!(job = job.id, "canceled while starting: canceling remotely");
                    self.cancel_remote(remote_id).await;
                }
                Ok(())
            }
            Err(e) if e.is_transient() || matches!(e, OpenEoError::Auth { .. }) => {
                // Still `created` remotely: the next poll starts it again.
                Err(Failure::Backend(e))
            }
            Err(e) => {
                self.fail(job, e.code(), &e.to_string()).await?;
                Ok(())
            }
        }
    }

    /// Cancels a remote job the user no longer wants (best effort; logged on failure).
    async fn cancel_remote(&self, remote_id: &str) {
        if let Err(e) = self.call(self.backend.client.cancel_job(remote_id)).await {
            tracing::warn!(remote = %remote_id, error = %e, "could not cancel an unwanted remote job");
        }
    }

    /// Applies a remote job's status; `true` if anything changed.
    async fn apply_remote(&self, job: &Job, remote: &RemoteJob) -> Result<bool, Failure> {
        let Some(status) = map_status(&remote.status) else {
            tracing::warn!(job = job.id, status = %remote.status, "unknown backend status");
            return Ok(false);
        };
        if status == Status::Created {
            // Created but never started (the start was lost): start it.
            if let Some(id) = job.backend_job_id.clone() {
                self.start(job, &id).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        let progress = match status {
            Status::Finished => Some(100.0),
            _ => remote.progress.map(|p| p.clamp(0.0, 100.0)),
        };
        let same = job.status == status
            && job.backend_status.as_deref() == Some(remote.status.as_str())
            && (progress.is_none() || job.progress == progress);
        if same {
            return Ok(false);
        }
        let mut patch = JobPatch {
            status: Some(status),
            backend_status: Some(Some(remote.status.clone())),
            ..JobPatch::default()
        };
        if progress.is_some() {
            patch.progress = Some(progress);
        }
        if status == Status::Failed {
            let message = self.error_message(remote).await;
            patch.error = Some(Some(JobError {
                code: "BackendJobFailed".into(),
                message,
            }));
        }
        let updated = self.patch(job, patch).await?;
        if status == Status::Finished && updated.is_some() {
            self.daemon.results().enqueue(job.id);
        }
        Ok(true)
    }

    /// The backend's own words about a failed job: its last error log entry.
    async fn error_message(&self, remote: &RemoteJob) -> String {
        let fallback = "the backend reports the job as failed".to_string();
        let Ok(logs) = self
            .call(self.backend.client.logs(&remote.id, None, Some("error")))
            .await
        else {
            return fallback;
        };
        logs.get("logs")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .rev()
                    .find_map(|e| e.get("message").and_then(Value::as_str))
            })
            .map(crate::platform::redact)
            .unwrap_or(fallback)
    }

    async fn fail(&self, job: &Job, code: &str, message: &str) -> Result<(), StoreError> {
        self.patch(
            job,
            JobPatch {
                status: Some(Status::Failed),
                error: Some(Some(JobError {
                    code: code.to_string(),
                    message: crate::platform::redact(message),
                })),
                ..JobPatch::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Writes a patch — only while the job is not terminal, so that a user's cancel is
    /// never undone — and publishes the job (and its task when the status changed).
    /// `None`: the job was deleted, or has ended (canceled) meanwhile.
    async fn patch(&self, job: &Job, patch: JobPatch) -> Result<Option<Job>, StoreError> {
        self.write_patch(
            job,
            JobPatch {
                only_if_active: true,
                ..patch
            },
        )
        .await
    }

    /// Writes a patch as given (no guard) and publishes the job.
    async fn write_patch(&self, job: &Job, patch: JobPatch) -> Result<Option<Job>, StoreError> {
        let status_change = patch.status.is_some_and(|s| s != job.status);
        let updated = self.daemon.store().update_job(job.id, patch).await?;
        if let Some(u) = &updated {
            self.daemon.events().job_changed(u);
            if status_change {
                if let Some(task_id) = u.upscale_task_id {
                    if let Some(task) = self.daemon.store().task(task_id).await? {
                        self.daemon.events().task_changed(&task);
                    }
                }
            }
        }
        Ok(updated)
    }
}

fn pending() -> JobPatch {
    JobPatch {
        submit_state: Some(SubmitState::Pending),
        ..JobPatch::default()
    }
}

/// Why a step stopped: the store failed (a bug or a full disk), or the backend did.
enum Failure {
    Store(StoreError),
    Backend(OpenEoError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 0..20 {
            for _ in 0..50 {
                let d = backoff(n, None, &mut rng).as_secs_f64();
                let cap = (2.0 * 2f64.powi(n.min(16) as i32)).min(300.0);
                assert!((0.0..=cap).contains(&d), "{n}: {d} > {cap}");
            }
        }
        let d = backoff(0, Some(Duration::from_secs(7)), &mut rng);
        assert!(d >= Duration::from_secs(7));
        let d = backoff(0, Some(Duration::from_secs(7200)), &mut rng);
        assert!(d <= MAX_BACKOFF);
    }

    #[test]
    fn statuses_map() {
        assert_eq!(map_status("error"), Some(Status::Failed));
        assert_eq!(map_status("submitted"), Some(Status::Created));
        assert_eq!(map_status("finished"), Some(Status::Finished));
        assert_eq!(map_status("weird"), None);
    }
}
