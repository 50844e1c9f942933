//! The application layer: the daemon's use cases, each in one place, used by the HTTP
//! handlers (and so by the CLI, the plugin and curl). A use case changes the store,
//! publishes what changed on the event bus, and tells the scheduler — in that order —
//! so that the handlers stay a thin translation of HTTP.
//!
//! [`App`] is the cloneable handle the HTTP edge holds. Background workers do not get
//! it: each gets the parts it needs (see `scheduler::Parts`, `results::Parts`,
//! `auth::Parts`, `watcher::Parts`), wired in [`crate::daemon::run`].

mod costs;

pub use costs::{BudgetEntry, BudgetLine, BudgetRequest, EstimateAnswer};

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::api_token::ApiToken;
use crate::auth::{Auth, AuthError, LoginInfo, LoginRequest, LoginStarted};
use crate::background::Background;
use crate::config::{Config, Settings};
use crate::events::{record_change, Event, EventBus};
use crate::job::validate::FieldError;
use crate::job::{
    Job, JobRequest, Label, ResultsState, ServiceDetails, Status, SubmitState, Task, TaskRequest,
    Waiting,
};
use crate::platform::backends::{normalise_endpoint, Backend, Backends};
use crate::platform::{Payload, PlatformError, ServiceDef, ServiceError};
use crate::results::Results;
use crate::scheduler::Scheduler;
use crate::store::{JobPatch, Store, StoreError};

/// How long a cancel waits for a submission in flight to settle.
pub const SUBMIT_SETTLE: Duration = Duration::from_secs(20);

/// How often `GET /backends` may try to reach a backend it knows nothing about.
const PROBE_EVERY: Duration = Duration::from_secs(60);

/// How long `GET /backends` waits for backends it probes.
const PROBE_WAIT: Duration = Duration::from_millis(1500);

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such job.
    #[error("job {0} does not exist")]
    JobNotFound(i64),
    /// No such task.
    #[error("upscale task {0} does not exist")]
    TaskNotFound(i64),
    /// Fields of the request are wrong (each named).
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The request is fine, but not in the state the job or task is in.
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Short title.
        title: &'static str,
        /// What and why, in words.
        detail: String,
    },
    /// The estimate would break a budget.
    #[error("{}", .0.sentence())]
    BudgetExceeded(crate::job::cost::Exceeded),
    /// The job has no results (yet).
    #[error("{0}")]
    NoResults(String),
    /// The service definition could not be had.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The backend failed or refused.
    #[error(transparent)]
    Backend(#[from] PlatformError),
    /// A login failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the backend says about itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CapabilitiesInfo {
    /// API version.
    pub api_version: String,
    /// Backend software version.
    pub backend_version: String,
    /// Title.
    pub title: String,
}

/// A provider a backend accepts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderInfo {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Issuer URL.
    pub issuer: String,
}

/// One backend in `GET /backends` and in `auth` events. Never contains a token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendEntry {
    /// Backend URL.
    pub url: String,
    /// The kind of platform: the `label` of its jobs.
    pub label: Label,
    /// The backend's title, once known.
    pub title: Option<String>,
    /// `ok`, `unreachable` or `login_required`: what the last contact showed.
    pub state: &'static str,
    /// The last problem, in words.
    pub message: Option<String>,
    /// When the backend last answered (RFC 3339).
    pub last_contact: Option<String>,
    /// When `state` became what it is (RFC 3339); `null` while it is `ok`.
    pub since: Option<String>,
    /// Limit on active jobs.
    pub max_running_jobs: u32,
    /// Login state.
    pub login: LoginInfo,
    /// Where refresh tokens are kept: `keyring` or `file`.
    pub token_store: &'static str,
    /// The backend's capabilities, once fetched.
    pub capabilities: Option<CapabilitiesInfo>,
    /// The identity providers it accepts, once fetched.
    pub providers: Vec<ProviderInfo>,
    /// Login attempt this event ends (auth events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
}

/// Everything the application layer works with.
pub struct Parts {
    /// Configuration as it is now.
    pub settings: Settings,
    /// The job store.
    pub store: Store,
    /// The event bus.
    pub events: EventBus,
    /// The local API token.
    pub token: ApiToken,
    /// Backends in use.
    pub backends: Backends,
    /// Logins.
    pub auth: Auth,
    /// Sends jobs out and follows them.
    pub scheduler: Scheduler,
    /// Brings results home.
    pub results: Results,
    /// Owner of background tasks.
    pub background: Background,
    /// Port the API listens on.
    pub port: u16,
    /// Base URL of the API as clients reach it (`discovery::api_url`): the links of
    /// served results documents.
    pub api_url: String,
    /// The service catalogue.
    pub catalogue: crate::catalogue::Catalogue,
}

/// The application: cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    parts: Parts,
    started: Instant,
    /// Open event streams.
    streams: Arc<tokio::sync::Semaphore>,
}

impl App {
    /// The application over `parts`; [`start`](Self::start) starts its listeners.
    pub fn new(parts: Parts) -> App {
        let streams = Arc::new(tokio::sync::Semaphore::new(
            parts.settings.get().max_event_streams,
        ));
        App(Arc::new(Inner {
            parts,
            started: Instant::now(),
            streams,
        }))
    }

    fn parts(&self) -> &Parts {
        &self.0.parts
    }

    /// Starts what the application layer itself listens for: a login makes the
    /// backend's `login_required` state go away at once; a delivery of a sub-job's
    /// results that ends (ready, failed, or its folder removed or back) republishes the
    /// job's task, whose `results` counts changed.
    pub fn start(&self) {
        let mut rx = self.parts().events.subscribe();
        let backends = self.parts().backends.clone();
        self.parts().background.spawn(async move {
            loop {
                let endpoint = match rx.recv().await {
                    Ok(env) => match &env.event {
                        Event::LoggedIn { endpoint } => endpoint.clone(),
                        _ => continue,
                    },
                    // Missed events are past; the next contact corrects the state.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let key = normalise_endpoint(&endpoint);
                for b in backends.all() {
                    if normalise_endpoint(&b.state().url) == key {
                        b.mark_ok();
                    }
                }
            }
        });
        let mut rx = self.parts().events.subscribe();
        let (store, events) = (self.parts().store.clone(), self.parts().events.clone());
        self.parts().background.spawn(async move {
            loop {
                let id = match rx.recv().await {
                    Ok(env) => match &env.event {
                        Event::ResultsProgress(p) if p.state != ResultsState::Downloading => p.id,
                        _ => continue,
                    },
                    // A missed delivery shows in the task when it is read.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let task = match store.job(id).await {
                    Ok(Some(job)) => job.upscale_task_id,
                    _ => None,
                };
                if let Some(task) = task {
                    if let Err(e) = events.task_changed_by_id(&store, task).await {
                        tracing::warn!(task, error = %e, "cannot publish a task");
                    }
                }
            }
        });
    }

    /// The configuration as it is now.
    pub fn config(&self) -> Arc<Config> {
        self.parts().settings.get()
    }

    /// Applies a changed `config.toml` where safe; returns the keys that need a restart.
    pub fn apply_config(&self, new: &Config) -> Vec<&'static str> {
        let restart = self.parts().settings.apply(new);
        self.parts().backends.reconfigure(&new.backends);
        self.parts().catalogue.reconfigure();
        restart
    }

    /// The service catalogue.
    pub fn catalogue(&self) -> &crate::catalogue::Catalogue {
        &self.parts().catalogue
    }

    /// The job store (read-only uses of the edge: lists, health).
    pub fn store(&self) -> &Store {
        &self.parts().store
    }

    /// The event bus (SSE subscribes).
    pub fn events(&self) -> &EventBus {
        &self.parts().events
    }

    /// The local API token.
    pub fn token(&self) -> &ApiToken {
        &self.parts().token
    }

    /// Logins (attempt status, the browser callback, doctor's store probe).
    pub fn auth(&self) -> &Auth {
        &self.parts().auth
    }

    /// Port of the local API.
    pub fn port(&self) -> u16 {
        self.parts().port
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> f64 {
        self.0.started.elapsed().as_secs_f64()
    }

    /// A slot for one more event stream, held while the stream is open; `None` when
    /// `max_event_streams` are open already.
    pub fn open_stream(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.streams.clone().try_acquire_owned().ok()
    }

    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        self.parts().background.cancelled().await
    }

    fn backend_of(&self, label: Label, endpoint: &str) -> Arc<Backend> {
        self.parts().backends.get(label, endpoint)
    }

    // -----------------------------------------------------------------------------
    // Services
    // -----------------------------------------------------------------------------

    /// The definition of a service (its parameters and outputs).
    pub async fn service(
        &self,
        label: Label,
        service: &ServiceDetails,
    ) -> Result<Arc<ServiceDef>, AppError> {
        let backend = self.backend_of(label, &service.endpoint);
        Ok(backend.platform.service(service).await?)
    }

    /// The definition arguments are checked against, or `None` when the service can
    /// only be described after a login: such a request is accepted as it is (the job
    /// waits for the login and is checked before it is sent).
    async fn definition_unless_login(
        &self,
        label: Label,
        service: &ServiceDetails,
    ) -> Result<Option<Arc<ServiceDef>>, AppError> {
        match self.service(label, service).await {
            Ok(def) => Ok(Some(def)),
            Err(AppError::Service(ServiceError::LoginRequired(reason))) => {
                tracing::info!(%reason, "service definition needs a login; accepted unchecked");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    // -----------------------------------------------------------------------------
    // Jobs
    // -----------------------------------------------------------------------------

    /// Creates a job: checked against its service, stored, published, scheduled. With
    /// an idempotency key (and the request's hash), a repeated request answers the job
    /// of the first (`false`: nothing new).
    pub async fn create_job(
        &self,
        mut req: JobRequest,
        idempotency: Option<(String, String)>,
    ) -> Result<(Job, bool), AppError> {
        if let Some(def) = self
            .definition_unless_login(req.label, &req.service)
            .await?
        {
            req.parameters = def.validate(&req.parameters).map_err(AppError::Invalid)?;
        }
        let (estimate, _) = self.estimate_runs(req.label, &req.service, &[&req.parameters], false);
        let replay = match &idempotency {
            Some((key, _)) => self.parts().store.key_used(key.clone()).await?,
            None => false,
        };
        if !replay {
            // A replayed request is answered with its job, never refused by the budget
            // that job itself now uses.
            self.check_budget(
                &req.service.endpoint,
                req.max_cost,
                estimate.amount,
                estimate.unit.clone(),
            )
            .await?;
        }
        req.estimate = Some(estimate);
        let (job, created) = match idempotency {
            Some((key, hash)) => {
                self.parts()
                    .store
                    .insert_job_idempotent(req, key, hash)
                    .await?
            }
            None => (self.parts().store.insert_job(req).await?, true),
        };
        if created {
            self.parts().events.job_changed(&job);
            self.parts().scheduler.job_added(&job);
        }
        Ok((self.with_waiting(job), created))
    }

    /// Runs a job synchronously (APEx `POST /sync_jobs`): checked like any job and
    /// kept as one (`running` while it runs, no remote job id), its answer returned
    /// and delivered into the results folder like a batch job's results. The run
    /// belongs to the daemon, not to the request: a client that hangs up does not stop
    /// it, and a run cut by a crash is settled at the next start (see
    /// [`Scheduler::start`]).
    pub async fn sync_job(&self, mut req: JobRequest) -> Result<(Job, Payload), AppError> {
        let def = self.service(req.label, &req.service).await?;
        req.parameters = def.validate(&req.parameters).map_err(AppError::Invalid)?;
        let (estimate, _) = self.estimate_runs(req.label, &req.service, &[&req.parameters], false);
        self.check_budget(
            &req.service.endpoint,
            req.max_cost,
            estimate.amount,
            estimate.unit.clone(),
        )
        .await?;
        req.estimate = Some(estimate);
        let job = self.parts().store.insert_job(req).await?;
        let running = JobPatch {
            status: Some(Status::Running),
            submit_state: Some(SubmitState::Submitted),
            backend_status: Some(Some("synchronous".into())),
            ..JobPatch::default()
        };
        let job = record_change(&self.parts().store, &self.parts().events, &job, running)
            .await?
            .ok_or(AppError::JobNotFound(job.id))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = self.clone();
        self.parts().background.spawn(async move {
            let _ = tx.send(app.run_sync(job).await);
        });
        rx.await.unwrap_or_else(|_| {
            Err(AppError::Conflict {
                code: "ShuttingDown",
                title: "The daemon is stopping",
                detail: "the daemon stopped during the synchronous run; the job is settled \
                         at its next start"
                    .into(),
            })
        })
    }

    async fn run_sync(&self, job: Job) -> Result<(Job, Payload), AppError> {
        let backend = self.parts().backends.get(job.label, &job.service.endpoint);
        let outcome = async {
            let prepared = backend.platform.prepare(&job).await?;
            let answer = backend
                .call(backend.platform.run_sync(&job, &prepared))
                .await?;
            Ok::<_, AppError>(answer)
        }
        .await;
        let end = |status: Status, error: Option<(String, String)>| JobPatch {
            status: Some(status),
            progress: (status == Status::Finished).then_some(Some(100.0)),
            backend_status: Some(Some(status.as_str().to_string())),
            error: Some(error.map(|(code, message)| crate::job::JobError {
                code,
                message: crate::redact::redact(&message),
            })),
            ..JobPatch::default()
        };
        let store = &self.parts().store;
        let events = &self.parts().events;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                let code = match &e {
                    AppError::Backend(p) => p.code().to_string(),
                    _ => "ServiceUnavailable".to_string(),
                };
                record_change(
                    store,
                    events,
                    &job,
                    end(Status::Failed, Some((code, e.to_string()))),
                )
                .await?;
                return Err(e);
            }
        };
        let dir = self.config().results_dir.clone();
        if let Err(e) = crate::results::stash::save(&dir, job.uuid, &answer) {
            let message = format!("cannot keep the answer: {e}");
            record_change(
                store,
                events,
                &job,
                end(
                    Status::Failed,
                    Some(("LocalIoError".into(), message.clone())),
                ),
            )
            .await?;
            return Err(AppError::Conflict {
                code: "LocalIoError",
                title: "The answer could not be kept",
                detail: message,
            });
        }
        let finished = record_change(store, events, &job, end(Status::Finished, None)).await?;
        if let Some(j) = &finished {
            events.job_finished(j);
        }
        tracing::info!(job = job.id, bytes = answer.body.len(), "ran synchronously");
        Ok((finished.unwrap_or(job), answer))
    }

    /// One job; an active one's backend is polled soon (the client is watching).
    pub async fn job(&self, id: i64) -> Result<Job, AppError> {
        let job = self
            .parts()
            .store
            .job(id)
            .await?
            .ok_or(AppError::JobNotFound(id))?;
        self.parts().scheduler.nudge(&job);
        Ok(self.with_waiting(job))
    }

    /// What blocks a job of `label` at `endpoint` now, if anything (a job still
    /// `queued` locally may also wait for the backend's limit). No I/O.
    pub fn waiting(
        &self,
        label: Label,
        endpoint: &str,
        id: i64,
        status: Status,
        queued: bool,
    ) -> Option<Waiting> {
        self.parts()
            .backends
            .find(label, endpoint)?
            .waiting(id, status, queued)
    }

    /// `job` with its `waiting` filled in (the store never has it).
    pub fn with_waiting(&self, mut job: Job) -> Job {
        job.waiting = self.waiting(
            job.label,
            &job.service.endpoint,
            job.id,
            job.status,
            job.submit_state == SubmitState::Pending,
        );
        job
    }

    /// `task` with each job's `waiting` filled in.
    pub fn task_with_waiting(&self, mut task: Task) -> Task {
        for j in &mut task.jobs {
            j.waiting = self.waiting(
                j.label,
                &j.service.endpoint,
                j.id,
                j.status,
                j.status == Status::Created,
            );
        }
        task
    }

    async fn stored_job(&self, id: i64) -> Result<Job, AppError> {
        self.parts()
            .store
            .job(id)
            .await?
            .ok_or(AppError::JobNotFound(id))
    }

    /// Cancels a job on its platform and keeps the record. A job that ended already is
    /// left as it is.
    pub async fn cancel_job(&self, id: i64) -> Result<Job, AppError> {
        let job = self.stored_job(id).await?;
        if job.status.is_terminal() {
            return Err(ended(&job));
        }
        self.cancel_on_backend(&job).await?;
        match record_change(
            &self.parts().store,
            &self.parts().events,
            &job,
            canceled_patch(),
        )
        .await?
        {
            Some(j) => Ok(self.with_waiting(j)),
            None => Err(ended(&self.stored_job(id).await?)),
        }
    }

    /// Forgets a job: canceled on its platform first if active; result files stay.
    pub async fn delete_job(&self, id: i64) -> Result<(), AppError> {
        let job = self.stored_job(id).await?;
        if !job.status.is_terminal() {
            self.cancel_on_backend(&job).await?;
        }
        if self.parts().store.delete_job(id).await? {
            self.parts().events.job_deleted(&job);
        }
        Ok(())
    }

    /// Makes a failed or canceled job a new attempt (never a finished one, never one
    /// that is still active).
    pub async fn retry_job(&self, id: i64) -> Result<Job, AppError> {
        let job = self.stored_job(id).await?;
        let Some(retried) = self.parts().store.retry_job(id).await? else {
            let now = self.stored_job(id).await?;
            return Err(AppError::Conflict {
                code: "JobNotRetryable",
                title: "Job cannot be retried",
                detail: format!(
                    "job {id} is {}; only failed or canceled jobs are submitted again",
                    now.status.as_str()
                ),
            });
        };
        self.retried(&job, &retried);
        self.publish_task_of(&retried).await?;
        Ok(self.with_waiting(retried))
    }

    /// What follows a retry stored by the store: what was kept of the last attempt
    /// (`before`, with its UUID) goes, the new attempt is published and scheduled.
    fn retried(&self, before: &Job, retried: &Job) {
        // Anything kept for the last attempt goes (a partial download, an answer).
        let staging = self
            .config()
            .results_dir
            .join(crate::results::publish::INCOMING)
            .join(before.uuid.hyphenated().to_string());
        let _ = std::fs::remove_dir_all(staging);
        tracing::info!(job = retried.id, "retried: a new attempt");
        self.parts().events.job_changed(retried);
        self.parts().scheduler.job_added(retried);
    }

    /// Cancels an active job on its platform. A job not sent yet needs nothing. A job
    /// being sent right now is waited for (up to [`SUBMIT_SETTLE`]) so that its remote
    /// job, if one was created, is canceled too.
    async fn cancel_on_backend(&self, job: &Job) -> Result<(), AppError> {
        let deadline = tokio::time::Instant::now() + SUBMIT_SETTLE;
        let mut job = job.clone();
        while job.submit_state == SubmitState::Submitting {
            if tokio::time::Instant::now() > deadline {
                return Err(AppError::Conflict {
                    code: "JobBeingSubmitted",
                    title: "Job is being submitted",
                    detail: format!(
                        "job {} is being sent to its backend right now; try again in a moment",
                        job.id
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = self.stored_job(job.id).await?;
        }
        let Some(remote) = job.backend_job_id.as_deref() else {
            return Ok(());
        };
        let backend = self.backend_of(job.label, &job.service.endpoint);
        match backend.call(backend.platform.cancel(remote)).await {
            // Already gone on the backend: nothing left to cancel.
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    /// The job's results document: the published one (with daemon URLs) once
    /// delivered, else the platform's fresh one for a finished job.
    pub async fn results_document(&self, id: i64) -> Result<Value, AppError> {
        let job = self.stored_job(id).await?;
        if let (ResultsState::Ready, Some(dir)) = (job.results.state, job.results.dir.as_deref()) {
            let file = std::path::Path::new(dir).join("results.json");
            if let Ok(text) = tokio::fs::read(&file).await {
                if let Ok(local) = serde_json::from_slice::<Value>(&text) {
                    let base = &self.parts().api_url;
                    let uuid = job.uuid.hyphenated().to_string();
                    return Ok(crate::results::manifest::served_document(
                        &local, base, &uuid, dir,
                    ));
                }
            }
        }
        if job.status == Status::Finished {
            let backend = self.backend_of(job.label, &job.service.endpoint);
            let staging = self
                .config()
                .results_dir
                .join(crate::results::publish::INCOMING)
                .join(job.uuid.hyphenated().to_string());
            if let Some(answer) = crate::results::stash::read(&staging) {
                let doc = backend
                    .call(backend.platform.results_from_answer(&answer))
                    .await?;
                return Ok(doc.document);
            }
            if let Some(remote) = job.backend_job_id.as_deref() {
                let doc = backend.call(backend.platform.results(remote)).await?;
                return Ok(doc.document);
            }
        }
        Err(AppError::NoResults(format!(
            "job {id} is {} and has no results yet; results exist once it is finished",
            job.status.as_str()
        )))
    }

    /// Delivers a finished job's results again (after a failure, or after the user
    /// removed the folder).
    pub async fn download_results(&self, id: i64) -> Result<Job, AppError> {
        let job = self.stored_job(id).await?;
        if job.status != Status::Finished {
            return Err(AppError::Conflict {
                code: "JobNotFinished",
                title: "Job has not finished",
                detail: format!(
                    "job {id} is {}; results can be downloaded once it is finished",
                    job.status.as_str()
                ),
            });
        }
        let in_place = job.results.state == ResultsState::Ready
            && job
                .results
                .dir
                .as_deref()
                .is_some_and(|dir| std::path::Path::new(dir).join("job.json").is_file());
        if in_place {
            return Err(AppError::Conflict {
                code: "ResultsReady",
                title: "Results already downloaded",
                detail: format!(
                    "the results of job {id} are in {}; delete that folder to download them again",
                    job.results.dir.as_deref().unwrap_or("")
                ),
            });
        }
        self.parts()
            .results
            .retry(&job)
            .await?
            .ok_or(AppError::JobNotFound(id))
    }

    /// The platform's log of a job.
    pub async fn logs(
        &self,
        id: i64,
        offset: Option<&str>,
        level: Option<&str>,
    ) -> Result<Value, AppError> {
        let job = self.stored_job(id).await?;
        let Some(remote) = job.backend_job_id.as_deref() else {
            return Err(AppError::Conflict {
                code: "JobNotSubmitted",
                title: "Job not submitted yet",
                detail: format!("job {id} has not reached its backend yet, so it has no logs"),
            });
        };
        let backend = self.backend_of(job.label, &job.service.endpoint);
        Ok(backend
            .call(backend.platform.logs(remote, offset, level))
            .await?)
    }

    // -----------------------------------------------------------------------------
    // Upscale tasks
    // -----------------------------------------------------------------------------

    /// Creates a task and its jobs: every sub-job's arguments checked against the
    /// service (errors named after the dimension value), stored in one transaction,
    /// published, scheduled.
    pub async fn create_task(&self, mut req: TaskRequest) -> Result<Task, AppError> {
        if let Some(def) = self
            .definition_unless_login(req.job.label, &req.job.service)
            .await?
        {
            normalise_task(&def, &mut req)?;
        }
        let tiles = costs::tile_parameters(&req.job.parameters, &req.dimension);
        req.tile_estimates = tiles
            .iter()
            .map(|p| {
                self.estimate_runs(req.job.label, &req.job.service, &[p], false)
                    .0
            })
            .collect();
        // Refused only when not even one tile fits: otherwise tiles start until the
        // task's max_cost (or a backend budget) is spent, and the rest wait.
        if let Some(first) = req.tile_estimates.first() {
            self.check_budget(
                &req.job.service.endpoint,
                req.job.max_cost,
                first.amount,
                first.unit.clone(),
            )
            .await?;
        }
        let task = self.parts().store.insert_task(req).await?;
        for job in self.parts().store.jobs_of_task(task.id).await? {
            self.parts().events.job_changed(&job);
            self.parts().scheduler.job_added(&job);
        }
        self.parts().events.task_changed(&task);
        Ok(self.task_with_waiting(task))
    }

    /// One task with its jobs (and why they wait).
    pub async fn task(&self, id: i64) -> Result<Task, AppError> {
        Ok(self.task_with_waiting(self.stored_task(id).await?))
    }

    /// [`App::task`] for a client that is watching (`GET /upscale_tasks/{id}`): the
    /// backend of its active jobs is polled soon.
    pub async fn task_watched(&self, id: i64) -> Result<Task, AppError> {
        let task = self.task(id).await?;
        if let Some(j) = task.jobs.iter().find(|j| !j.status.is_terminal()) {
            if let Some(job) = self.parts().store.job(j.id).await? {
                self.parts().scheduler.nudge(&job);
            }
        }
        Ok(task)
    }

    async fn stored_task(&self, id: i64) -> Result<Task, AppError> {
        self.parts()
            .store
            .task(id)
            .await?
            .ok_or(AppError::TaskNotFound(id))
    }

    /// Cancels every sub-job of a task that has not ended; the ended ones stay as they
    /// are. Sub-jobs not sent yet are canceled first, in one write, so that none of
    /// them is sent while the others are canceled; the others as [`App::cancel_job`]
    /// does (on their platform, then in the store), at the same time. `Conflict` when
    /// nothing is left to cancel. A backend that refuses a cancel is the error: the
    /// sub-jobs it could not cancel stay active, the others are canceled, and canceling
    /// again finishes the work.
    pub async fn cancel_task(&self, id: i64) -> Result<Task, AppError> {
        self.task_exists(id).await?;
        let unsent = self
            .parts()
            .store
            .update_unsent_of_task(id, canceled_patch())
            .await?;
        for job in &unsent {
            self.parts().events.job_changed(job);
        }
        let jobs = self.parts().store.jobs_of_task(id).await?;
        let active: Vec<&Job> = jobs.iter().filter(|j| !j.status.is_terminal()).collect();
        if unsent.is_empty() && active.is_empty() {
            return Err(AppError::Conflict {
                code: "TaskEnded",
                title: "Nothing to cancel",
                detail: format!(
                    "every sub-job of upscale task {id} has ended already; nothing is left to cancel"
                ),
            });
        }
        let results = futures_util::future::join_all(
            active.iter().map(|job| self.cancel_unless_ended(job.id)),
        )
        .await;
        tracing::info!(
            task = id,
            unsent = unsent.len(),
            sent = active.len(),
            "task canceled"
        );
        self.parts()
            .events
            .task_changed_by_id(&self.parts().store, id)
            .await?;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(self.task_with_waiting(self.stored_task(id).await?))
    }

    /// [`App::cancel_job`], where a job that ended (or went) meanwhile is not an error.
    async fn cancel_unless_ended(&self, id: i64) -> Result<(), AppError> {
        match self.cancel_job(id).await {
            Ok(_) | Err(AppError::JobNotFound(_)) => Ok(()),
            Err(AppError::Conflict {
                code: "JobEnded", ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes every failed or canceled sub-job of a task a new attempt (as
    /// [`App::retry_job`]); finished and active ones are left alone. The retries are
    /// one guarded write, so two retries at once never make two attempts of one job.
    /// `Conflict` when there was nothing to retry.
    pub async fn retry_task(&self, id: i64) -> Result<Task, AppError> {
        self.task_exists(id).await?;
        let retried = self.parts().store.retry_jobs_of_task(id).await?;
        if retried.is_empty() {
            return Err(AppError::Conflict {
                code: "NothingToRetry",
                title: "Nothing to retry",
                detail: format!(
                    "upscale task {id} has no failed or canceled sub-job; only those are \
                     submitted again"
                ),
            });
        }
        for (before, after) in &retried {
            self.retried(before, after);
        }
        tracing::info!(task = id, retried = retried.len(), "task retried");
        self.parts()
            .events
            .task_changed_by_id(&self.parts().store, id)
            .await?;
        Ok(self.task_with_waiting(self.stored_task(id).await?))
    }

    /// `TaskNotFound` unless task `id` exists.
    async fn task_exists(&self, id: i64) -> Result<(), AppError> {
        match self.parts().store.task_summary(id).await? {
            Some(_) => Ok(()),
            None => Err(AppError::TaskNotFound(id)),
        }
    }

    /// Forgets a task and its jobs. Its tiles not sent yet are canceled first (in one
    /// write, so that the scheduler sends none of them into a slot that a canceled
    /// tile frees), then the active ones on their platform, then the records go.
    pub async fn delete_task(&self, id: i64) -> Result<(), AppError> {
        let task = self.stored_task(id).await?;
        for job in self
            .parts()
            .store
            .update_unsent_of_task(id, canceled_patch())
            .await?
        {
            self.parts().events.job_changed(&job);
        }
        let jobs = self.parts().store.jobs_of_task(id).await?;
        for job in jobs.iter().filter(|j| !j.status.is_terminal()) {
            self.cancel_on_backend(job).await?;
        }
        if self.parts().store.delete_task(id).await? {
            for job in &jobs {
                self.parts().events.job_deleted(job);
            }
            self.parts().events.task_deleted(&task);
        }
        Ok(())
    }

    async fn publish_task_of(&self, job: &Job) -> Result<(), StoreError> {
        if let Some(task_id) = job.upscale_task_id {
            self.parts()
                .events
                .task_changed_by_id(&self.parts().store, task_id)
                .await?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // Backends and logins
    // -----------------------------------------------------------------------------

    /// Registers the backends known out of the box.
    pub fn register_known_backends(&self) {
        for (label, url) in crate::platform::KNOWN_BACKENDS {
            self.parts().backends.get(*label, url);
        }
    }

    /// Describes a backend (no I/O, no token).
    pub fn entry(&self, backend: &Backend) -> BackendEntry {
        let s = backend.state();
        let key = normalise_endpoint(&s.url);
        let configured_token = self
            .config()
            .backends
            .values()
            .any(|b| normalise_endpoint(&b.url) == key && b.access_token.is_some());
        // A login is possible unless the backend said it offers none.
        let possible = backend.cached_providers().is_none_or(|p| !p.is_empty());
        let login = self.parts().auth.login_info(
            &s.url,
            configured_token,
            s.state == "login_required",
            possible,
        );
        let info = backend.platform.info();
        BackendEntry {
            url: s.url,
            label: s.label,
            title: info.as_ref().map(|c| c.title.clone()),
            state: s.state,
            message: s.message,
            last_contact: s.last_contact,
            since: s.since,
            max_running_jobs: s.max_running_jobs,
            login,
            token_store: self.parts().auth.tokens().kind().as_str(),
            capabilities: info.map(|c| CapabilitiesInfo {
                api_version: c.api_version,
                backend_version: c.backend_version,
                title: c.title,
            }),
            providers: backend
                .cached_providers()
                .unwrap_or_default()
                .into_iter()
                .map(|p| ProviderInfo {
                    id: p.id,
                    title: p.title,
                    issuer: p.issuer,
                })
                .collect(),
            login_id: None,
        }
    }

    /// The entries of every backend at `endpoint` (for `auth` events).
    pub fn entries_at(&self, endpoint: &str, login_id: Option<String>) -> Vec<BackendEntry> {
        let key = normalise_endpoint(endpoint);
        let mut out: Vec<BackendEntry> = self
            .parts()
            .backends
            .all()
            .iter()
            .filter(|b| normalise_endpoint(&b.state().url) == key)
            .map(|b| self.entry(b))
            .collect();
        if out.is_empty() {
            out.push(self.entry(&self.parts().backends.for_login(endpoint)));
        }
        for e in &mut out {
            e.login_id = login_id.clone();
        }
        out
    }

    /// Every known backend, after a short, bounded attempt to learn what those not
    /// asked yet say about themselves (at most once a minute each).
    pub async fn backends(&self) -> Vec<BackendEntry> {
        let backends = self.parts().backends.all();
        let mut probes = Vec::new();
        for b in &backends {
            let b = b.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Finishes in the background if it takes longer than PROBE_WAIT (bounded
            // by the client's timeouts), or ends with the daemon.
            self.parts().background.spawn(async move {
                b.probe_if_due(PROBE_EVERY).await;
                let _ = tx.send(());
            });
            probes.push(rx);
        }
        let _ = tokio::time::timeout(PROBE_WAIT, futures_util::future::join_all(probes)).await;
        backends.iter().map(|b| self.entry(b)).collect()
    }

    /// Starts a login to a backend (with the identity providers it accepts).
    pub async fn login(&self, req: LoginRequest) -> Result<LoginStarted, AppError> {
        let backend = self.parts().backends.for_login(&req.endpoint);
        let providers = backend.call(backend.providers()).await?;
        if providers.is_empty() {
            return Err(AppError::Auth(AuthError::Invalid {
                field: "endpoint",
                reason: format!(
                    "{} names no OpenID Connect provider to log in with: it needs no login, \
                     or (an OGC API Processes server) its `issuer` and `client_id` belong in \
                     its [backends.<name>] section of config.toml",
                    backend.state().url
                ),
            }));
        }
        Ok(self.parts().auth.start_login(req, &providers).await?)
    }

    /// Logs out of a backend; its entry afterwards.
    pub async fn logout(&self, endpoint: &str) -> Result<BackendEntry, AppError> {
        self.parts().auth.logout(endpoint).await?;
        let backend = self.parts().backends.for_login(endpoint);
        Ok(self.entry(&backend))
    }
}

/// What a cancel by the user writes (only while the job is active).
fn canceled_patch() -> JobPatch {
    JobPatch {
        status: Some(Status::Canceled),
        error: Some(Some(crate::job::JobError {
            code: "Canceled".into(),
            message: "canceled by the user".into(),
        })),
        only_if_active: true,
        ..JobPatch::default()
    }
}

fn ended(job: &Job) -> AppError {
    AppError::Conflict {
        code: "JobEnded",
        title: "Job has ended",
        detail: format!(
            "job {} is {} and cannot be canceled",
            job.id,
            job.status.as_str()
        ),
    }
}

/// Checks every sub-job's arguments, and keeps what will be sent (a polygon given for
/// a bounding box becomes its box) in the request. Errors name the dimension value.
fn normalise_task(def: &ServiceDef, req: &mut TaskRequest) -> Result<(), AppError> {
    let name = req.dimension.name.clone();
    let mut errors = Vec::new();
    let mut shared = None;
    for (i, value) in req.dimension.values.iter_mut().enumerate() {
        let mut args = req.job.parameters.clone();
        args.insert(name.clone(), value.clone());
        match def.validate(&args) {
            Ok(mut sent) => {
                if let Some(v) = sent.remove(&name) {
                    *value = v;
                }
                shared.get_or_insert(sent);
            }
            Err(errs) => {
                for mut e in errs {
                    let prefix = format!("parameters.{name}");
                    if let Some(rest) = e.name.strip_prefix(&prefix) {
                        e.name = format!("dimension.values[{i}]{rest}");
                    }
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    if let Some(sent) = shared {
        req.job.parameters = sent;
    }
    Ok(())
}
