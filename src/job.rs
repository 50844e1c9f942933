//! Domain types of jobs and upscale tasks: what a client asks for ([`JobRequest`],
//! [`TaskRequest`]), what the daemon remembers ([`Job`], [`Task`]) and their status
//! vocabulary ([`Status`], [`ResultsState`]).
//!
//! Nothing here does I/O. The JSON field names are those of the APEx Dispatch API
//! (`POST /unit_jobs` and its job records) plus our extensions, so that scripts written
//! against the hosted API work against the daemon. Parsing and validation of client
//! input lives in [`validate`].

pub mod cost;
pub mod validate;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Which kind of platform runs a service (APEx `ProcessTypeEnum`, JSON field `label`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// An openEO backend running a user-defined process given by URL.
    Openeo,
    /// An OGC API Processes server (EOAP / CWL applications).
    OgcApiProcess,
}

impl Default for Label {
    /// `openeo`, what a backend is unless said otherwise.
    fn default() -> Label {
        Label::Openeo
    }
}

impl Label {
    /// All labels, in the order they are documented.
    pub const ALL: [Label; 2] = [Label::Openeo, Label::OgcApiProcess];

    /// The wire name (`openeo`, `ogc_api_process`).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Openeo => "openeo",
            Label::OgcApiProcess => "ogc_api_process",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Output format a client asks for (APEx `OutputFormatEnum`, JSON field `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// GeoTIFF (openEO `GTiff`).
    Gtiff,
    /// NetCDF (openEO `netCDF`).
    Netcdf,
    /// GeoJSON vector output.
    Geojson,
    /// Plain JSON output.
    Json,
}

impl OutputFormat {
    /// All formats, in the order they are documented.
    pub const ALL: [OutputFormat; 4] = [
        OutputFormat::Gtiff,
        OutputFormat::Netcdf,
        OutputFormat::Geojson,
        OutputFormat::Json,
    ];

    /// The wire name (`gtiff`, `netcdf`, `geojson`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Gtiff => "gtiff",
            OutputFormat::Netcdf => "netcdf",
            OutputFormat::Geojson => "geojson",
            OutputFormat::Json => "json",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<OutputFormat> {
        OutputFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// How an upscale task's raster outputs are put together (*ext*; `mosaic` in
/// `config.toml` and in `POST /upscale_tasks`): see `results::mosaic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MosaicKind {
    /// A GDAL VRT over the tiles' files (small, instant; the default).
    #[default]
    Vrt,
    /// A Cloud-Optimised GeoTIFF (one file, fast everywhere; rebuilt as tiles arrive).
    Cog,
}

impl MosaicKind {
    /// The wire name (`vrt`, `cog`).
    pub fn as_str(self) -> &'static str {
        match self {
            MosaicKind::Vrt => "vrt",
            MosaicKind::Cog => "cog",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<MosaicKind> {
        [MosaicKind::Vrt, MosaicKind::Cog]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Processing status of a job or task (APEx `ProcessingStatusEnum`, without `unknown`).
///
/// openEO `error` and OGC `failed` map to [`Status::Failed`]; OGC `accepted` to
/// [`Status::Queued`], `successful` to [`Status::Finished`], `dismissed` to
/// [`Status::Canceled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and stored by the daemon, not yet sent to a backend.
    Created,
    /// Waiting on the backend.
    Queued,
    /// Running on the backend.
    Running,
    /// Ended successfully on the backend.
    Finished,
    /// Canceled by the user (or dismissed on the backend).
    Canceled,
    /// Ended in an error.
    Failed,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Created,
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Canceled,
        Status::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Canceled => "canceled",
            Status::Failed => "failed",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// `finished`, `canceled` and `failed` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Canceled | Status::Failed)
    }
}

/// State of the delivery of a job's results into the results folder; separate from
/// the processing [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultsState {
    /// Nothing downloaded yet (the job has not finished, or the download has not started).
    Pending,
    /// Assets are being downloaded into the staging folder.
    Downloading,
    /// The job folder is published in the results folder.
    Ready,
    /// The download failed; `POST /unit_jobs/{id}/results/download` retries it.
    Failed,
    /// The user deleted or moved the published job folder.
    Removed,
}

impl ResultsState {
    /// All states.
    pub const ALL: [ResultsState; 5] = [
        ResultsState::Pending,
        ResultsState::Downloading,
        ResultsState::Ready,
        ResultsState::Failed,
        ResultsState::Removed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultsState::Pending => "pending",
            ResultsState::Downloading => "downloading",
            ResultsState::Ready => "ready",
            ResultsState::Failed => "failed",
            ResultsState::Removed => "removed",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ResultsState> {
        ResultsState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// How far the submission of a job to its backend has come; the crash-safety record
/// of the scheduler (internal, not part of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubmitState {
    /// Not sent yet.
    #[default]
    Pending,
    /// Written just before `POST /jobs` goes out: after a crash the remote job may or
    /// may not exist, and is looked for by the job's UUID.
    Submitting,
    /// The backend job id is known.
    Submitted,
}

impl SubmitState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmitState::Pending => "pending",
            SubmitState::Submitting => "submitting",
            SubmitState::Submitted => "submitted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<SubmitState> {
        [
            SubmitState::Pending,
            SubmitState::Submitting,
            SubmitState::Submitted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Where a service runs (APEx `ServiceDetails`).
///
/// openEO: `endpoint` is the backend URL, `application` the public URL of the UDP JSON.
/// OGC API Processes: `endpoint` the platform URL, `namespace` an optional path segment,
/// `application` the process id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceDetails {
    /// Backend base URL (http or https).
    pub endpoint: String,
    /// Optional deployment namespace (OGC API Processes only); `null` when absent.
    pub namespace: Option<String>,
    /// UDP URL (openEO) or process id (OGC API Processes).
    pub application: String,
}

/// A validated request for one unit job (APEx `BaseJobRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// Human title, also sent to the backend.
    pub title: String,
    /// Platform kind.
    pub label: Label,
    /// Backend and application.
    pub service: ServiceDetails,
    /// Parameters of the service, by name.
    pub parameters: Map<String, Value>,
    /// Requested output format.
    pub format: OutputFormat,
    /// *ext* The most the job may cost (sent as openEO `budget`), in the backend's unit.
    pub max_cost: Option<f64>,
    /// The estimate made when the job was accepted (set by the application layer).
    pub estimate: Option<cost::Estimate>,
}

/// The dimension an upscale task fans out over: one unit job per value, with
/// `parameters[name] = value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dimension {
    /// Parameter name the values are assigned to.
    pub name: String,
    /// One value per unit job (at least one), each any JSON value.
    #[schema(value_type = Vec<Value>)]
    pub values: Vec<Value>,
}

/// A validated request for an upscale task (APEx `UpscalingTaskRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// The shared part of every unit job.
    pub job: JobRequest,
    /// What to fan out over.
    pub dimension: Dimension,
    /// *ext* How the tiles' rasters are mosaicked (`None`: as `config.toml` says).
    pub mosaic: Option<MosaicKind>,
    /// Each tile's estimate, in dimension order (set by the application layer).
    pub tile_estimates: Vec<cost::Estimate>,
}

/// An error recorded on a job, in the words of the daemon or of the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// Stable machine-readable code (ours, or the backend's openEO error code).
    pub code: String,
    /// Human-readable message; never contains tokens or signed URL queries.
    pub message: String,
}

/// Why a job that has not ended makes no progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// The backend (or the identity provider behind it) needs a login.
    LoginRequired,
    /// The backend does not answer, or answers with server errors.
    BackendUnreachable,
    /// The backend's limit of jobs running at once (`max_running_jobs`) is reached.
    BackendLimit,
    /// The service definition cannot be read (e.g. the UDP's URL is unreachable).
    ServiceUnavailable,
    /// Sending the job would overspend a budget: its task's `max_cost`, or the
    /// backend's `budget_per_day` / `budget_per_month`.
    Budget,
}

/// What a waiting job waits for (*ext*): one field of the job, `null` when nothing
/// blocks it. Derived from what the daemon knows now (the backend's state, its limit,
/// the last attempt to prepare the job); never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Waiting {
    /// The cause, as a stable word.
    pub reason: WaitReason,
    /// The cause in one sentence, with what to do about it when the user can do
    /// something.
    pub message: String,
    /// The backend concerned.
    pub backend: String,
    /// Since when (RFC 3339), when known.
    pub since: Option<String>,
    /// When the daemon tries again by itself (RFC 3339), when it does.
    pub next_try: Option<String>,
}

/// Delivery of a job's results into the results folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Results {
    /// Where delivery stands.
    pub state: ResultsState,
    /// Absolute path of the published job folder, once there is one.
    pub dir: Option<String>,
    /// Bytes downloaded so far.
    pub bytes: u64,
    /// Total bytes expected, when known.
    pub total_bytes: Option<u64>,
}

impl Default for Results {
    fn default() -> Self {
        Results {
            state: ResultsState::Pending,
            dir: None,
            bytes: 0,
            total_bytes: None,
        }
    }
}

/// A unit job as the daemon remembers it (APEx `ProcessingJob` plus extensions).
///
/// Serialised field order: the APEx fields first (`id, title, label, status, service,
/// parameters, created, updated`), then ours.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Job {
    /// Local integer id (as in APEx).
    pub id: i64,
    /// Human title.
    pub title: String,
    /// Platform kind.
    pub label: Label,
    /// Processing status.
    pub status: Status,
    /// Backend and application.
    pub service: ServiceDetails,
    /// The parameters as sent (or to be sent) to the backend.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// When the job was accepted (RFC 3339, UTC).
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub created: OffsetDateTime,
    /// When anything about the job last changed (RFC 3339, UTC).
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub updated: OffsetDateTime,
    /// *ext* Random UUID of the job: sent to the backend in the job description (so a
    /// crashed submission is found again), and the capability in `/files/<uuid>/...`.
    pub uuid: Uuid,
    /// *ext* Requested output format.
    pub format: OutputFormat,
    /// *ext* The backend's id of the job, once submitted.
    pub backend_job_id: Option<String>,
    /// *ext* The backend's own status word as last seen (openEO `error`, ...).
    pub backend_status: Option<String>,
    /// How far submission has come (internal).
    #[serde(skip)]
    #[schema(ignore)]
    pub submit_state: SubmitState,
    /// When the current submission went out (internal; reconciliation looks for a
    /// remote job created after it).
    #[serde(skip)]
    #[schema(ignore)]
    pub submit_started: Option<OffsetDateTime>,
    /// *ext* Progress on the backend in percent (0–100), when known.
    pub progress: Option<f64>,
    /// *ext* Why the job failed, when it did.
    pub error: Option<JobError>,
    /// *ext* Delivery of the results.
    pub results: Results,
    /// *ext* The upscale task this job belongs to, if any.
    pub upscale_task_id: Option<i64>,
    /// *ext* Why the job waits, when something blocks it (`null` otherwise).
    pub waiting: Option<Waiting>,
    /// *ext* The most the job may cost, as the client asked (`null`: no limit).
    pub max_cost: Option<f64>,
    /// *ext* What the job was estimated to cost when it was accepted.
    pub estimate: Option<cost::Estimate>,
    /// *ext* What the platform reported the job cost (`null` until it does).
    pub costs: Option<f64>,
    /// *ext* The platform's report of resources used (openEO `usage`), once there is one.
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
}

/// The short form of a job used in lists and in upscale tasks
/// (APEx `ProcessingJobSummary`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobSummary {
    /// Local id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Platform kind.
    pub label: Label,
    /// Processing status.
    pub status: Status,
    /// Backend and application.
    pub service: ServiceDetails,
    /// Parameters as sent.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// *ext* Why the job waits, when something blocks it (`null` otherwise).
    pub waiting: Option<Waiting>,
}

impl From<&Job> for JobSummary {
    fn from(j: &Job) -> Self {
        JobSummary {
            id: j.id,
            title: j.title.clone(),
            label: j.label,
            status: j.status,
            service: j.service.clone(),
            parameters: j.parameters.clone(),
            waiting: j.waiting.clone(),
        }
    }
}

/// Counts of an upscale task's unit jobs per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusCounts {
    /// Jobs in `created`.
    pub created: u32,
    /// Jobs in `queued`.
    pub queued: u32,
    /// Jobs in `running`.
    pub running: u32,
    /// Jobs in `finished`.
    pub finished: u32,
    /// Jobs in `canceled`.
    pub canceled: u32,
    /// Jobs in `failed`.
    pub failed: u32,
}

impl StatusCounts {
    /// Counts the given statuses.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> StatusCounts {
        let mut c = StatusCounts::default();
        for s in statuses {
            match s {
                Status::Created => c.created += 1,
                Status::Queued => c.queued += 1,
                Status::Running => c.running += 1,
                Status::Finished => c.finished += 1,
                Status::Canceled => c.canceled += 1,
                Status::Failed => c.failed += 1,
            }
        }
        c
    }

    /// Total number of jobs counted.
    pub fn total(&self) -> u32 {
        self.created + self.queued + self.running + self.finished + self.canceled + self.failed
    }

    /// Jobs that have not ended: `created`, `queued` or `running`.
    pub fn active(&self) -> u32 {
        self.created + self.queued + self.running
    }

    /// The status of an upscale task with these sub-job counts, in APEx's words. The
    /// rule, first match wins:
    ///
    /// 1. `created` — every sub-job is `created`: nothing has reached the backend yet
    ///    (also a task without sub-jobs);
    /// 2. `queued` — sub-jobs wait on the backend (`queued`), none runs and none has
    ///    ended yet;
    /// 3. `running` — any other mix with a sub-job that has not ended: one runs, or
    ///    some have ended while others still wait (a task whose failed tiles were
    ///    retried is `running` again);
    /// 4. every sub-job has ended: `finished` only when **every** one finished;
    ///    `failed` when at least one failed; otherwise (some were canceled, none
    ///    failed) `canceled`.
    ///
    /// So a task is never called `finished` while a tile is missing: a task with
    /// failed tiles is `failed` even if most tiles finished, and `counts` says how
    /// many did. (The hosted APEx API reports such a mix as `finished`, or leaves it
    /// `created` for ever.)
    pub fn task_status(&self) -> Status {
        let total = self.total();
        if self.created == total {
            return Status::Created;
        }
        if self.active() > 0 {
            let ended = self.finished + self.canceled + self.failed;
            return if self.running == 0 && ended == 0 {
                Status::Queued
            } else {
                Status::Running
            };
        }
        if self.finished == total {
            Status::Finished
        } else if self.failed > 0 {
            Status::Failed
        } else {
            Status::Canceled
        }
    }

    /// A task's progress in percent (0–100, one decimal) from these counts and the
    /// sum of its active sub-jobs' [`progress_share`]s: the mean over the sub-jobs,
    /// where a job that ended (finished, failed or canceled) counts as 100 and an
    /// active one as its backend progress (0 when unknown). 0 for a task without
    /// sub-jobs.
    pub fn task_progress(&self, active_progress: f64) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let ended = f64::from(total - self.active());
        let mean = (ended * 100.0 + active_progress) / f64::from(total);
        (mean.clamp(0.0, 100.0) * 10.0).round() / 10.0
    }
}

/// What an active sub-job adds to [`StatusCounts::task_progress`]: its progress,
/// clamped to 0–100, 0 when unknown; an ended job adds nothing here (it is counted as
/// 100 from the counts).
pub fn progress_share(status: Status, progress: Option<f64>) -> f64 {
    if status.is_terminal() {
        0.0
    } else {
        progress
            .filter(|p| p.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 100.0)
    }
}

/// Delivery of an upscale task's results: sums over its sub-jobs' [`Results`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TaskResults {
    /// Bytes downloaded so far, over all sub-jobs.
    pub bytes: u64,
    /// Sum of the sub-jobs' expected sizes known so far (a job's size is known once
    /// its download started).
    pub total_bytes: u64,
    /// Sub-jobs whose results are in the results folder (`results.state` `ready`).
    pub ready: u32,
    /// Sub-jobs whose delivery failed (`results.state` `failed`).
    pub failed: u32,
    /// Finished sub-jobs whose results are still on their way (`results.state`
    /// `pending` or `downloading`): 0 once every finished tile's delivery has ended.
    pub pending: u32,
}

/// An upscale task: a fan-out of unit jobs over one parameter dimension.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Task {
    /// Local integer id.
    pub id: i64,
    /// Title; sub-jobs are titled `"<title> - Processing Job <n>"`.
    pub title: String,
    /// Platform kind.
    pub label: Label,
    /// Derived from the sub-jobs' statuses: see [`StatusCounts::task_status`] for the
    /// rule.
    pub status: Status,
    /// Backend and application.
    pub service: ServiceDetails,
    /// *ext* Shared parameters of every sub-job.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// *ext* Output format of every sub-job.
    pub format: OutputFormat,
    /// *ext* The dimension fanned out over.
    pub dimension: Dimension,
    /// When the task was accepted.
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub created: OffsetDateTime,
    /// When the task or any of its jobs last changed.
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub updated: OffsetDateTime,
    /// *ext* Progress in percent (0–100): the mean over the sub-jobs, an ended one
    /// counting as 100 ([`StatusCounts::task_progress`]).
    pub progress: f64,
    /// *ext* Number of sub-jobs per status.
    pub counts: StatusCounts,
    /// *ext* Delivery of the sub-jobs' results into the results folder.
    pub results: TaskResults,
    /// *ext* The most the whole task may cost (`null`: no limit); tiles wait once it
    /// is spent.
    pub max_cost: Option<f64>,
    /// *ext* Sum of what the platform reported its tiles cost (`null`: none yet).
    pub costs: Option<f64>,
    /// *ext* Sum of its tiles' estimates, where known.
    pub estimate: Option<f64>,
    /// The sub-jobs, in dimension order.
    pub jobs: Vec<JobSummary>,
}

/// The short form of a task (APEx `UpscalingTaskSummary`, plus our fields): what
/// `GET /upscale_tasks` lists, `/jobs_status` shows and `task` events carry — the task
/// without its parameters, dimension and sub-jobs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TaskSummary {
    /// Local id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Platform kind.
    pub label: Label,
    /// Derived status ([`StatusCounts::task_status`]).
    pub status: Status,
    /// *ext* When the task was accepted.
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub created: OffsetDateTime,
    /// *ext* When the task or any of its jobs last changed.
    #[serde(with = "rfc3339_z")]
    #[schema(value_type = String, format = DateTime)]
    pub updated: OffsetDateTime,
    /// *ext* Progress in percent (0–100).
    pub progress: f64,
    /// *ext* Number of sub-jobs per status.
    pub counts: StatusCounts,
    /// *ext* Delivery of the sub-jobs' results.
    pub results: TaskResults,
    /// *ext* The most the whole task may cost (`null`: no limit); tiles wait once it
    /// is spent.
    pub max_cost: Option<f64>,
    /// *ext* Sum of what the platform reported its tiles cost (`null`: none yet).
    pub costs: Option<f64>,
    /// *ext* Sum of its tiles' estimates, where known.
    pub estimate: Option<f64>,
}

impl From<&Task> for TaskSummary {
    fn from(t: &Task) -> Self {
        TaskSummary {
            id: t.id,
            title: t.title.clone(),
            label: t.label,
            status: t.status,
            created: t.created,
            updated: t.updated,
            progress: t.progress,
            counts: t.counts.clone(),
            results: t.results.clone(),
            max_cost: t.max_cost,
            costs: t.costs,
            estimate: t.estimate,
        }
    }
}

/// Current time in UTC, truncated to milliseconds (what we store and show).
pub fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now)
}

/// Serde helpers writing RFC 3339 timestamps in UTC with a `Z` and millisecond
/// precision, e.g. `2026-11-25T16:25:09.614Z`.
pub mod rfc3339_z {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    /// Formats a timestamp as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
    pub fn format(t: &OffsetDateTime) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        t.to_offset(UtcOffset::UTC)
            .format(&fmt)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
    }

    /// Parses any RFC 3339 timestamp.
    pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339)
    }

    /// Serde `serialize_with`.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// Serde `deserialize_with`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for l in Label::ALL {
            assert_eq!(Label::parse(l.as_str()), Some(l));
            assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
        }
        for f in OutputFormat::ALL {
            assert_eq!(OutputFormat::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for r in ResultsState::ALL {
            assert_eq!(ResultsState::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Label::parse("OPENEO"), None);
        assert_eq!(Status::parse("cancelled"), None);
    }

    #[test]
    fn task_status_is_derived_honestly() {
        use Status::*;
        let c = |v: &[Status]| StatusCounts::of(v.iter().copied()).task_status();
        assert_eq!(c(&[]), Created);
        assert_eq!(c(&[Created, Created]), Created);
        // Waiting on the backend, nothing runs or ended yet.
        assert_eq!(c(&[Created, Queued]), Queued);
        assert_eq!(c(&[Queued, Queued]), Queued);
        assert_eq!(c(&[Queued, Running]), Running);
        // Some ended, some still to come (e.g. a retried tile): running.
        assert_eq!(c(&[Finished, Running]), Running);
        assert_eq!(c(&[Created, Finished]), Running);
        assert_eq!(c(&[Failed, Queued]), Running);
        // Everything ended: finished only when every tile finished.
        assert_eq!(c(&[Finished, Finished]), Finished);
        assert_eq!(c(&[Finished, Failed]), Failed);
        assert_eq!(c(&[Finished, Finished, Finished, Failed]), Failed);
        assert_eq!(c(&[Finished, Canceled]), Canceled);
        assert_eq!(c(&[Failed, Failed]), Failed);
        assert_eq!(c(&[Canceled, Canceled]), Canceled);
        assert_eq!(c(&[Canceled, Failed]), Failed);
        assert_eq!(c(&[Finished, Canceled, Failed]), Failed);
    }

    #[test]
    fn task_progress_is_the_mean_with_ended_jobs_at_100() {
        use Status::*;
        let p = |v: &[(Status, Option<f64>)]| {
            let counts = StatusCounts::of(v.iter().map(|(s, _)| *s));
            let active: f64 = v.iter().map(|(s, p)| progress_share(*s, *p)).sum();
            counts.task_progress(active)
        };
        assert_eq!(p(&[]), 0.0);
        assert_eq!(p(&[(Created, None), (Queued, Some(0.0))]), 0.0);
        assert_eq!(p(&[(Running, Some(50.0)), (Created, None)]), 25.0);
        // Ended jobs count as 100 whatever their last progress was.
        assert_eq!(p(&[(Failed, Some(10.0)), (Canceled, None)]), 100.0);
        assert_eq!(p(&[(Finished, Some(100.0)), (Running, Some(20.0))]), 60.0);
        assert_eq!(
            p(&[(Running, Some(10.0)), (Created, None), (Created, None)]),
            3.3
        );
        // Nonsense from a backend stays within 0..=100.
        assert_eq!(p(&[(Running, Some(250.0))]), 100.0);
        assert_eq!(p(&[(Running, Some(-5.0))]), 0.0);
        assert_eq!(p(&[(Running, Some(f64::NAN))]), 0.0);
    }

    #[test]
    fn timestamps_are_utc_with_z() {
        let t = rfc3339_z::parse("2026-11-25T17:25:09.614+01:00").unwrap();
        assert_eq!(rfc3339_z::format(&t), "2026-11-25T16:25:09.614Z");
    }
}
