//! The scheduler: sends stored jobs to their platforms and follows them until they end.
//!
//! One worker task per backend (platform kind and endpoint), started when the first
//! job for it appears. Everything the worker says to the backend goes through the
//! [`Platform`] seam; the worker itself knows no protocol. Each cycle:
//!
//! 1. **Reconciles** jobs left `submitting` (a crash or a lost answer after the
//!    submission was sent): the platform looks for the remote job in a fresh job list
//!    (openEO: the job's UUID in the description; OGC API Processes: a job of the same
//!    process created after the submission went out, not linked to another job).
//!    Found: the job is linked to it. Certainly not created: the job goes back to the
//!    queue. Cannot tell: the job fails with `SubmissionUncertain` and says so — it is
//!    never submitted twice by itself (`POST /unit_jobs/{id}/retry` is the user's
//!    decision).
//! 2. **Polls** submitted jobs: one job listing for all of them where the platform
//!    offers it, one status request each otherwise; a job the backend holds in
//!    `created` (start lost) is started again.
//! 3. **Submits** queued jobs while fewer than the backend's `max_running_jobs` are
//!    active: the submission is built first (service definition fetched), the row is
//!    marked `submitting` *before* the request goes out, then linked to the backend's
//!    id (and started where the platform needs it). A synchronous execution's answer is
//!    kept in the job's staging folder as its result.
//!
//! Pacing: every request goes through [`Backend::call`] (rate limiter, reachability);
//! the poll interval starts at `poll_interval_min_s`, grows by half after each quiet
//! cycle up to `poll_interval_max_s`, carries ±20 % jitter and drops back when
//! something changes or a client asks for a job ([`Scheduler::nudge`]). Transient
//! failures (unreachable, 429, 5xx) back off exponentially with full jitter and honour
//! `Retry-After`; the backend is shown as unreachable and its jobs keep their status.
//! Other backend errors fail the job with the backend's message. A refused login keeps
//! jobs waiting; a login wakes the backend's worker at once.
//!
//! Why jobs wait is told, not stored: the worker records on the [`Backend`] what it
//! found (the limit reached, a job's own reason such as an unreadable service
//! definition, when it looks again), the backend knows its reachability and login, and
//! [`Backend::waiting`] turns that into a job's `waiting` field when it is read. When
//! that changes, the jobs concerned are published again.
//!
//! Every change of a job is published on the event bus.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use crate::background::Background;
use crate::config::Settings;
use crate::events::{Event, EventBus};
use crate::job::cost::{check_budgets, Exceeded, Limits};
use crate::job::{Job, JobError, Label, Status, SubmitState, WaitReason};
use crate::platform::backends::{normalise_endpoint, Backend, BackendKey, Backends};
use crate::platform::{PlatformError, Reconciled, RemoteJob, ServiceError, Submission};
use crate::store::{JobPatch, Store, StoreError};

/// Shortest poll interval (default of `poll_interval_min_s`).
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Longest poll interval (default of `poll_interval_max_s`).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Longest backoff after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A nudge polls at most this often.
pub const MIN_NUDGE_GAP: Duration = Duration::from_secs(1);

use crate::failpoint::failpoint;
pub use crate::failpoint::FAILPOINT_ENV;

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

/// What the scheduler needs of the daemon.
#[derive(Clone)]
pub struct Parts {
    /// The job store.
    pub store: Store,
    /// Where changes are published.
    pub events: EventBus,
    /// The backends.
    pub backends: Backends,
    /// Poll intervals, results folder.
    pub settings: Settings,
    /// Owner of the workers.
    pub background: Background,
}

/// Handle to the scheduler (cheap to clone).
#[derive(Clone)]
pub struct Scheduler {
    parts: Parts,
    workers: Arc<Mutex<HashMap<BackendKey, Arc<Worker>>>>,
}

/// What a backend worker shares with the rest of the daemon.
struct Worker {
    wake: Notify,
    /// Set with a wake-up that should also end a backoff (the user just logged in).
    resume: AtomicBool,
}

impl Scheduler {
    /// A scheduler with no workers yet.
    pub fn new(parts: Parts) -> Scheduler {
        Scheduler {
            parts,
            workers: Arc::default(),
        }
    }

    /// Starts a worker for every backend that has active jobs (at daemon start), and
    /// listens for logins (a login wakes its backend's workers at once).
    pub async fn start(&self) -> Result<(), StoreError> {
        self.settle_interrupted_sync_runs().await?;
        for (label, endpoint) in self.parts.store.active_backends().await? {
            self.ensure_worker(label, &endpoint);
        }
        let mut rx = self.parts.events.subscribe();
        let this = self.clone();
        self.parts.background.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(env) => {
                        if let Event::LoggedIn { endpoint } = &env.event {
                            this.backend_ready(endpoint);
                        }
                    }
                    // Missed events may have been logins: wake everyone.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => this.wake_all(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(())
    }

    /// Synchronous runs (`POST /sync_jobs`) that a crash or a stop cut: a running job
    /// with no remote job id is one. Its answer kept → finished (delivered as usual);
    /// otherwise failed: a synchronous request cannot be followed up on.
    async fn settle_interrupted_sync_runs(&self) -> Result<(), StoreError> {
        let running = self
            .parts
            .store
            .jobs(crate::store::JobFilter {
                status: Some(Status::Running),
                ..Default::default()
            })
            .await?;
        let results_dir = self.parts.settings.get().results_dir.clone();
        for job in running
            .iter()
            .filter(|j| j.submit_state == SubmitState::Submitted && j.backend_job_id.is_none())
        {
            let kept = crate::results::stash::is_kept(&results_dir, job.uuid);
            let patch = if kept {
                JobPatch {
                    status: Some(Status::Finished),
                    progress: Some(Some(100.0)),
                    ..JobPatch::default()
                }
            } else {
                JobPatch {
                    status: Some(Status::Failed),
                    error: Some(Some(JobError {
                        code: "SyncInterrupted".into(),
                        message: "the daemon stopped during this synchronous run; run it \
                                  again"
                            .into(),
                    })),
                    ..JobPatch::default()
                }
            };
            tracing::warn!(
                job = job.id,
                answer_kept = kept,
                "settling an interrupted synchronous run"
            );
            let done =
                crate::events::record_change(&self.parts.store, &self.parts.events, job, patch)
                    .await?;
            if let (true, Some(j)) = (kept, done) {
                self.parts.events.job_finished(&j);
            }
        }
        Ok(())
    }

    /// A new job was stored: make sure its backend's worker runs and looks at it soon.
    pub fn job_added(&self, job: &Job) {
        self.ensure_worker(job.label, &job.service.endpoint)
            .wake
            .notify_one();
    }

    /// A client asked for an active job: poll its backend soon.
    pub fn nudge(&self, job: &Job) {
        if !job.status.is_terminal() {
            self.job_added(job);
        }
    }

    /// The user logged in to `endpoint`: its waiting jobs go on now, without waiting
    /// for the end of a backoff.
    pub fn backend_ready(&self, endpoint: &str) {
        let key = normalise_endpoint(endpoint);
        let workers: Vec<Arc<Worker>> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((_, e), _)| *e == key)
            .map(|(_, w)| w.clone())
            .collect();
        for w in workers {
            w.resume.store(true, Ordering::SeqCst);
            w.wake.notify_one();
        }
    }

    /// Wakes every backend worker (budgets or logins changed).
    pub fn wake_all(&self) {
        for w in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            w.resume.store(true, Ordering::SeqCst);
            w.wake.notify_one();
        }
    }

    fn ensure_worker(&self, label: Label, endpoint: &str) -> Arc<Worker> {
        let key = (label, normalise_endpoint(endpoint));
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(&key) {
            return w.clone();
        }
        let worker = Arc::new(Worker {
            wake: Notify::new(),
            resume: AtomicBool::new(false),
        });
        workers.insert(key.clone(), worker.clone());
        let parts = self.parts.clone();
        let backend = self.parts.backends.get(label, endpoint);
        let shared = worker.clone();
        // A worker that panics (a bug meeting a strange answer) is started again; its
        // jobs are in the store, so it goes on where it was.
        self.parts
            .background
            .spawn_supervised("scheduler", move || {
                WorkerRun {
                    parts: parts.clone(),
                    backend: backend.clone(),
                    label,
                    key: key.1.clone(),
                    worker: shared.clone(),
                    failures: 0,
                    shown: ("ok", false),
                    rewait: Vec::new(),
                }
                .run()
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
    parts: Parts,
    backend: Arc<Backend>,
    label: Label,
    key: String,
    worker: Arc<Worker>,
    failures: u32,
    /// The backend's state and whether its limit was reached, as last shown in job
    /// events (a change makes every active job's `waiting` change).
    shown: (&'static str, bool),
    /// Jobs whose own reason to wait changed in this cycle.
    rewait: Vec<i64>,
}

impl WorkerRun {
    async fn run(mut self) {
        let mut interval = Duration::from_secs_f64(self.parts.settings.get().poll_interval_min_s);
        loop {
            // Read every cycle: a changed config.toml applies without a restart.
            let cfg = self.parts.settings.get();
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
            self.backend
                .set_next_try(cycle.active.then(|| time::OffsetDateTime::now_utc() + wait));
            if let Err(e) = self.show_waiting().await {
                tracing::error!(backend = %self.key, error = %e, "scheduler: store error");
            }
            if cycle.active {
                let woken = tokio::time::timeout(wait, self.worker.wake.notified()).await;
                if woken.is_ok() {
                    // A nudge or a new job: look now, but not more often than
                    // MIN_NUDGE_GAP, and not while backing off.
                    let resume = self.worker.resume.swap(false, Ordering::SeqCst);
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
                self.worker.resume.store(false, Ordering::SeqCst);
                interval = min_interval;
            }
        }
    }

    /// Publishes the jobs whose `waiting` changed: all active ones when the backend's
    /// state or limit changed, else those whose own reason changed.
    async fn show_waiting(&mut self) -> Result<(), StoreError> {
        let now = (self.backend.state().state, self.backend.limit_reached());
        let ids = std::mem::take(&mut self.rewait);
        let jobs = if now != self.shown {
            self.shown = now;
            let endpoints = self.endpoints().await?;
            if endpoints.is_empty() {
                return Ok(());
            }
            self.parts
                .store
                .scheduler_jobs(self.label, endpoints, u32::MAX)
                .await?
        } else {
            let mut jobs = Vec::new();
            for id in ids {
                if let Some(j) = self.parts.store.job(id).await? {
                    jobs.push(j);
                }
            }
            jobs
        };
        for job in jobs {
            self.parts.events.job_changed(&job);
        }
        Ok(())
    }

    /// The budget that sending `job` now would break, if any: its task's `max_cost`
    /// (against the task's tiles sent so far), or the backend's daily and monthly
    /// budgets (against the jobs sent today and this month). A job without a known
    /// estimate is never held back.
    async fn budget_stop(&self, job: &Job) -> Result<Option<Exceeded>, StoreError> {
        let Some(amount) = job.estimate.as_ref().and_then(|e| e.amount) else {
            return Ok(None);
        };
        let (own, max_cost) = match job.upscale_task_id {
            Some(task) => self.parts.store.task_spent(task).await?,
            None => (0.0, None),
        };
        let endpoint = &job.service.endpoint;
        let limits = self.parts.settings.get().budget_limits(endpoint, max_cost);
        if limits == Limits::default() {
            return Ok(None);
        }
        let spent = self
            .parts
            .store
            .spent_against(limits, endpoint, own, true)
            .await?;
        Ok(check_budgets(
            limits,
            spent,
            amount,
            &job.service.endpoint,
            job.estimate.as_ref().and_then(|e| e.unit.as_deref()),
        ))
    }

    /// For a job with a `max_cost`, asks the backend what the created job will cost
    /// before starting it (where it offers an estimate) and keeps the figure; a figure
    /// over `max_cost` fails the job with `BudgetExceeded` and deletes the remote job
    /// unstarted. `true` when the job must not be started.
    async fn over_backend_estimate(&self, job: &Job, remote_id: &str) -> Result<bool, StepFailure> {
        let Some(max_cost) = job.max_cost else {
            return Ok(false);
        };
        let costs = match self
            .backend
            .call(self.backend.platform.backend_estimate(remote_id))
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::debug!(job = job.id, error = %e, "no backend estimate");
                return Ok(false);
            }
        };
        let mut estimate = job.estimate.clone().unwrap_or_else(|| {
            crate::job::cost::Estimate::unknown(None, None, "priced by the backend only")
        });
        estimate.backend = Some(costs);
        let patch = JobPatch {
            estimate: Some(estimate.clone()),
            ..JobPatch::default()
        };
        self.patch(job, patch).await?;
        if costs <= max_cost + 1e-9 {
            return Ok(false);
        }
        self.cancel_remote(remote_id).await;
        let over = Exceeded {
            budget: crate::job::cost::BudgetKind::MaxCost,
            backend: job.service.endpoint.clone(),
            limit: max_cost,
            spent: 0.0,
            estimate: costs,
            unit: estimate.unit.clone(),
        };
        self.fail(
            job,
            "BudgetExceeded",
            &format!("not started: the backend {}", over.sentence()),
        )
        .await?;
        Ok(true)
    }

    /// Notes that `job` waits for a reason of its own (published after the cycle).
    fn wait_for(&mut self, job: &Job, reason: WaitReason, words: &str) {
        if self.backend.set_job_waiting(job.id, reason, words) {
            self.rewait.push(job.id);
        }
    }

    /// The raw endpoint strings of this backend's active jobs.
    async fn endpoints(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .parts
            .store
            .active_backends()
            .await?
            .into_iter()
            .filter(|(l, e)| *l == self.label && normalise_endpoint(e) == self.key)
            .map(|(_, e)| e)
            .collect())
    }

    /// One pass over this backend's active jobs.
    async fn cycle(&mut self) -> Result<Cycle, StoreError> {
        crate::failpoint::panic_once("panic:scheduler");
        let mut out = Cycle::default();
        let endpoints = self.endpoints().await?;
        if endpoints.is_empty() {
            self.backend.set_limit_reached(false);
            return Ok(out);
        }
        let store = self.parts.store.clone();
        let jobs = store
            .scheduler_jobs(self.label, endpoints.clone(), self.backend.max_running())
            .await?;
        self.backend
            .retain_job_waits(&jobs.iter().map(|j| j.id).collect());
        if jobs.is_empty() {
            self.backend.set_limit_reached(false);
            return Ok(out);
        }
        out.active = true;
        let platform = self.backend.platform.clone();
        let submitting: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.submit_state == SubmitState::Submitting)
            .collect();
        let submitted: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.submit_state == SubmitState::Submitted)
            .collect();
        // One listing serves reconciliation and polling.
        let mut listing: Option<Vec<RemoteJob>> = None;
        if !submitting.is_empty() || submitted.len() > 1 {
            // Reconciliation needs the whole list; polling only the tracked jobs,
            // which are on the first page(s) as backends list newest first.
            let tracked: HashSet<String> = submitted
                .iter()
                .filter_map(|j| j.backend_job_id.clone())
                .collect();
            let covering = submitting.is_empty().then_some(&tracked);
            match self.backend.call(platform.list_jobs(covering)).await {
                Ok(list) => listing = list,
                Err(e) => return self.failed(out, &e),
            }
        }
        // 1. Reconcile.
        if !submitting.is_empty() {
            let linked = store
                .linked_remote_ids(self.label, endpoints.clone())
                .await?;
            for job in &submitting {
                let found = self
                    .backend
                    .call(platform.reconcile(job, listing.as_deref(), &linked))
                    .await;
                match found {
                    Ok(Reconciled::Found(remote)) => {
                        tracing::info!(job = job.id, remote = %remote.id, "reconciled a submission");
                        self.link(job, &remote).await?;
                    }
                    Ok(Reconciled::NotCreated) => {
                        tracing::info!(job = job.id, "no remote job found: submitting again");
                        self.patch(job, pending()).await?;
                    }
                    Ok(Reconciled::Uncertain(why)) => {
                        tracing::warn!(job = job.id, reason = %why, "submission uncertain: not sent again");
                        self.fail(
                            job,
                            "SubmissionUncertain",
                            &format!(
                                "{why}. eodispatch does not submit it again by itself, so that \
                                 it never runs twice: look for it on the backend, then retry \
                                 the job (POST /unit_jobs/{}/retry) or delete it",
                                job.id
                            ),
                        )
                        .await?;
                    }
                    Err(e) => return self.failed(out, &e),
                }
                out.changed = true;
            }
        }
        // 2. Poll.
        for job in &submitted {
            let Some(remote_id) = job.backend_job_id.as_deref() else {
                continue;
            };
            let listed = listing
                .as_ref()
                .and_then(|l| l.iter().find(|r| r.id == remote_id));
            let remote = match listed {
                Some(r) => r.clone(),
                None => match self.backend.call(platform.job(remote_id)).await {
                    Ok(r) => r,
                    Err(e) if e.is_not_found() => {
                        self.fail(job, "BackendJobGone", &e.to_string()).await?;
                        out.changed = true;
                        continue;
                    }
                    Err(e) if e.is_transient() || e.is_auth() => return self.failed(out, &e),
                    Err(e) => {
                        tracing::warn!(job = job.id, error = %e, "status request refused");
                        continue;
                    }
                },
            };
            match self.apply_remote(job, &remote).await {
                Ok(changed) => out.changed |= changed,
                Err(StepFailure::Store(e)) => return Err(e),
                Err(StepFailure::Backend(e)) => return self.failed(out, &e),
            }
        }
        // 3. Submit. Jobs that ended in this cycle freed their slots: read the work list
        // again so that those slots are filled now, not one interval later.
        let jobs: Vec<Job> = if out.changed {
            store
                .scheduler_jobs(self.label, endpoints.clone(), self.backend.max_running())
                .await?
        } else {
            jobs
        };
        let active_remote = jobs
            .iter()
            .filter(|j| j.submit_state != SubmitState::Pending)
            .count() as u32;
        let mut free = self.backend.max_running().saturating_sub(active_remote);
        let queued = jobs
            .iter()
            .filter(|j| j.submit_state == SubmitState::Pending)
            .count();
        let queued_here = queued > 0;
        if free > 0 && queued_here && self.backend.state().state != "ok" {
            // Probe before marking jobs `submitting` against a backend that was down.
            if let Err(e) = self.backend.call(platform.ping()).await {
                return self.failed(out, &e);
            }
        }
        let mut sent = 0;
        for job in jobs
            .iter()
            .filter(|j| j.submit_state == SubmitState::Pending)
        {
            if free == 0 {
                break;
            }
            if let Some(over) = self.budget_stop(job).await? {
                self.wait_for(job, WaitReason::Budget, &over.waiting_sentence());
                continue;
            }
            match self.submit(job).await {
                Ok(true) => {
                    free -= 1;
                    sent += 1;
                    out.changed = true;
                }
                Ok(false) => {}
                Err(StepFailure::Store(e)) => return Err(e),
                Err(StepFailure::Backend(e)) => return self.failed(out, &e),
            }
        }
        // Jobs still queued with no slot left wait for the limit (the store lists
        // queued jobs only up to the limit: one left over means more may follow).
        self.backend.set_limit_reached(free == 0 && queued > sent);
        Ok(out)
    }

    /// The cycle ends early after a transient failure (or a refused login).
    fn failed(&self, mut out: Cycle, e: &PlatformError) -> Result<Cycle, StoreError> {
        tracing::warn!(backend = %self.key, error = %e, "backend request failed; backing off");
        out.failed = Some(e.retry_after());
        Ok(out)
    }

    /// Links `job` to a remote job found by reconciliation and applies its status.
    async fn link(&self, job: &Job, remote: &RemoteJob) -> Result<(), StoreError> {
        let linked = self
            .patch(
                job,
                JobPatch {
                    submit_state: Some(SubmitState::Submitted),
                    backend_job_id: Some(Some(remote.id.clone())),
                    backend_status: Some(Some(remote.raw_status.clone())),
                    ..JobPatch::default()
                },
            )
            .await?;
        if let Some(linked) = linked {
            match self.apply_remote(&linked, remote).await {
                Ok(_) | Err(StepFailure::Backend(_)) => {}
                Err(StepFailure::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Submits one queued job: build, mark, send, link (and start). `Ok(true)` when it
    /// took a slot on the backend.
    async fn submit(&mut self, job: &Job) -> Result<bool, StepFailure> {
        let platform = self.backend.platform.clone();
        let prepared = match platform.prepare(job).await {
            Ok(p) => {
                if self.backend.clear_job_waiting(job.id) {
                    self.rewait.push(job.id);
                }
                p
            }
            Err(ServiceError::Unavailable(reason)) => {
                // The definition was readable when the job was accepted: transient.
                tracing::warn!(job = job.id, %reason, "service definition unavailable; job waits");
                self.wait_for(
                    job,
                    WaitReason::ServiceUnavailable,
                    &crate::redact::redact(&format!(
                        "The service definition cannot be read: {reason}"
                    )),
                );
                return Ok(false);
            }
            Err(ServiceError::LoginRequired(reason)) => {
                self.wait_for_login(job, &reason).await?;
                return Ok(false);
            }
            Err(ServiceError::Invalid(reason)) => {
                self.fail(job, "ServiceUnavailable", &reason).await?;
                return Ok(false);
            }
            Err(ServiceError::Arguments(reason)) => {
                self.fail(job, "InvalidParameter", &reason).await?;
                return Ok(false);
            }
        };
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
            return Ok(false);
        };
        if job.status.is_terminal() {
            return Ok(false);
        }
        failpoint("submit:before_post");
        match self.backend.call(platform.submit(&job, &prepared)).await {
            Ok(Submission::Created { remote_id }) => {
                failpoint("submit:after_post");
                let Some(job) = self.record_link(&job, &remote_id, "created").await? else {
                    return Ok(true);
                };
                failpoint("submit:after_link");
                tracing::info!(job = job.id, remote = %remote_id, "submitted");
                if job.status.is_terminal() {
                    self.cancel_remote(&remote_id).await;
                    return Ok(true);
                }
                if self.over_backend_estimate(&job, &remote_id).await? {
                    return Ok(true);
                }
                self.start(&job, &remote_id).await?;
                Ok(true)
            }
            Ok(Submission::Running(remote)) => {
                failpoint("submit:after_post");
                let Some(job) = self
                    .record_link(&job, &remote.id, &remote.raw_status)
                    .await?
                else {
                    return Ok(true);
                };
                failpoint("submit:after_link");
                tracing::info!(job = job.id, remote = %remote.id, "submitted");
                if job.status.is_terminal() {
                    self.cancel_remote(&remote.id).await;
                    return Ok(true);
                }
                self.apply_remote(&job, &remote).await?;
                Ok(true)
            }
            Ok(Submission::Completed { remote_id, answer }) => {
                failpoint("submit:after_post");
                let dir = self.parts.settings.get().results_dir.clone();
                if let Err(e) = crate::results::stash::save(&dir, job.uuid, &answer) {
                    self.fail(
                        &job,
                        "LocalIoError",
                        &format!("cannot keep the answer: {e}"),
                    )
                    .await?;
                    return Ok(false);
                }
                tracing::info!(job = job.id, bytes = answer.body.len(), "ran synchronously");
                let finished = self
                    .patch(
                        &job,
                        JobPatch {
                            submit_state: Some(SubmitState::Submitted),
                            backend_job_id: Some(remote_id),
                            backend_status: Some(Some("successful".into())),
                            status: Some(Status::Finished),
                            progress: Some(Some(100.0)),
                            error: Some(None),
                            ..JobPatch::default()
                        },
                    )
                    .await?;
                if let Some(j) = finished {
                    self.parts.events.job_finished(&j);
                }
                Ok(false)
            }
            Err(e @ PlatformError::Unreachable { .. }) => {
                // Certainly not received: back to the queue.
                self.patch(&job, pending()).await?;
                Err(StepFailure::Backend(e))
            }
            Err(e @ PlatformError::Transient { status: 429, .. }) => {
                // Refused before doing anything.
                self.patch(&job, pending()).await?;
                Err(StepFailure::Backend(e))
            }
            Err(e @ (PlatformError::NoAnswer { .. } | PlatformError::Transient { .. })) => {
                // Maybe created: stays `submitting`, reconciled next cycle.
                tracing::warn!(job = job.id, error = %e, "submission answer lost; will reconcile");
                Err(StepFailure::Backend(e))
            }
            Err(e @ PlatformError::Auth { .. }) => {
                self.patch(&job, pending()).await?;
                self.wait_for_login(&job, &e.to_string()).await?;
                Err(StepFailure::Backend(e))
            }
            Err(e) => {
                self.patch(&job, pending()).await?;
                self.fail(&job, e.code(), &e.to_string()).await?;
                Ok(false)
            }
        }
    }

    /// Records the remote id of a job just submitted — even if the user canceled
    /// meanwhile: the remote id is what lets us cancel the remote job.
    async fn record_link(
        &self,
        job: &Job,
        remote_id: &str,
        raw_status: &str,
    ) -> Result<Option<Job>, StoreError> {
        self.write_patch(
            job,
            JobPatch {
                submit_state: Some(SubmitState::Submitted),
                backend_job_id: Some(Some(remote_id.to_string())),
                backend_status: Some(Some(raw_status.to_string())),
                error: Some(None),
                ..JobPatch::default()
            },
        )
        .await
    }

    /// The job waits for a login (the backend or its identity provider refused); its
    /// `waiting` says so, its `error` stays empty (it has not failed).
    async fn wait_for_login(&mut self, job: &Job, reason: &str) -> Result<(), StoreError> {
        tracing::info!(job = job.id, reason = %crate::redact::redact(reason), "job waits for a login");
        self.wait_for(job, WaitReason::LoginRequired, reason);
        Ok(())
    }

    /// Starts a linked job (openEO `POST /jobs/{id}/results`), then marks it queued. If
    /// the user canceled or deleted it while the start was in flight, the remote job is
    /// canceled again.
    async fn start(&self, job: &Job, remote_id: &str) -> Result<(), StepFailure> {
        match self
            .backend
            .call(self.backend.platform.start(remote_id))
            .await
        {
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
            Err(e) if e.is_transient() || e.is_auth() => {
                // Still `created` remotely: the next poll starts it again.
                Err(StepFailure::Backend(e))
            }
            Err(e) => {
                self.fail(job, e.code(), &e.to_string()).await?;
                Ok(())
            }
        }
    }

    /// Cancels a remote job the user no longer wants (best effort; logged on failure).
    async fn cancel_remote(&self, remote_id: &str) {
        if let Err(e) = self
            .backend
            .call(self.backend.platform.cancel(remote_id))
            .await
        {
            tracing::warn!(remote = %remote_id, error = %e, "could not cancel an unwanted remote job");
        }
    }

    /// Applies a remote job's status; `true` if anything changed.
    async fn apply_remote(&self, job: &Job, remote: &RemoteJob) -> Result<bool, StepFailure> {
        let Some(status) = remote.status else {
            tracing::warn!(job = job.id, status = %remote.raw_status, "unknown backend status");
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
        let progress = remote.progress;
        let (mut costs, mut usage) = (remote.costs, remote.usage.clone());
        if status.is_terminal() && job.status != status && costs.is_none() && usage.is_none() {
            // Job lists often leave out what a job cost: ask for the job itself once,
            // when it ends (no effect on the status if this fails).
            if let Some(id) = job.backend_job_id.as_deref() {
                match self.backend.call(self.backend.platform.job(id)).await {
                    Ok(full) => (costs, usage) = (full.costs, full.usage),
                    Err(e) => tracing::debug!(job = job.id, error = %e, "no cost report"),
                }
            }
        }
        let same = job.status == status
            && job.backend_status.as_deref() == Some(remote.raw_status.as_str())
            && (progress.is_none() || job.progress == progress)
            && (costs.is_none() || job.costs == costs)
            && (usage.is_none() || job.usage == usage);
        if same {
            return Ok(false);
        }
        let mut patch = JobPatch {
            status: Some(status),
            backend_status: Some(Some(remote.raw_status.clone())),
            ..JobPatch::default()
        };
        if costs.is_some() {
            patch.costs = Some(costs);
        }
        if usage.is_some() {
            patch.usage = Some(usage);
        }
        if progress.is_some() {
            patch.progress = Some(progress);
        }
        if status == Status::Failed {
            let message = match self.backend.platform.failure_message(remote).await {
                Some(m) => m,
                None => remote
                    .message
                    .clone()
                    .unwrap_or_else(|| "the backend reports the job as failed".into()),
            };
            patch.error = Some(Some(JobError {
                code: "BackendJobFailed".into(),
                message: crate::redact::redact(&message),
            }));
        }
        let updated = self.patch(job, patch).await?;
        if let (Status::Finished, Some(u)) = (status, &updated) {
            if job.status != Status::Finished {
                self.parts.events.job_finished(u);
            }
        }
        Ok(true)
    }

    async fn fail(&self, job: &Job, code: &str, message: &str) -> Result<(), StoreError> {
        self.patch(
            job,
            JobPatch {
                status: Some(Status::Failed),
                error: Some(Some(JobError {
                    code: code.to_string(),
                    message: crate::redact::redact(message),
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
        crate::events::record_change(&self.parts.store, &self.parts.events, job, patch).await
    }
}

fn pending() -> JobPatch {
    JobPatch {
        submit_state: Some(SubmitState::Pending),
        ..JobPatch::default()
    }
}

/// Why a step stopped: the store failed (a bug or a full disk), or the backend did.
enum StepFailure {
    Store(StoreError),
    Backend(PlatformError),
}

impl From<StoreError> for StepFailure {
    fn from(e: StoreError) -> Self {
        StepFailure::Store(e)
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
}
