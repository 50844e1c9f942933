//! The fake's memory: jobs and their lazily computed life (status, progress, log entries),
//! plans, active faults and request statistics, all behind one `std::sync::Mutex` (no lock is
//! held across an `.await`).
//!
//! A job's status is never advanced by a background task: every read calls [`Job::advance`],
//! which derives the status from the wall clock and the job's [`JobPlan`] and appends the log
//! entries of the stages passed since the last read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{FakeConfig, JobPlan, Outcome, PlanRule, TokenCheck};
use crate::faults::ActiveFault;
use crate::process::ProcessInfo;

/// Seconds since the Unix epoch, as a float.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RFC 3339 in UTC with `Z`, whole seconds.
pub(crate) fn rfc3339(epoch: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch.floor() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// openEO job status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Created, not started.
    Created,
    /// Started, waiting.
    Queued,
    /// Processing.
    Running,
    /// Stopped by the user or the backend.
    Canceled,
    /// Done, results available.
    Finished,
    /// Failed.
    Error,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Canceled => "canceled",
            JobStatus::Finished => "finished",
            JobStatus::Error => "error",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Canceled | JobStatus::Finished | JobStatus::Error
        )
    }
}

/// Log severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// One job log entry.
#[derive(Clone, Debug)]
pub(crate) struct LogEntry {
    pub id: u64,
    pub level: Level,
    pub code: Option<String>,
    pub message: String,
    pub time: f64,
}

impl LogEntry {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.to_string()));
        if let Some(code) = &self.code {
            m.insert("code".into(), Value::String(code.clone()));
        }
        m.insert("level".into(), Value::String(self.level.as_str().into()));
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert("time".into(), Value::String(rfc3339(self.time)));
        m.insert("links".into(), Value::Array(Vec::new()));
        Value::Object(m)
    }
}

/// One start of a job: when, and the plan it follows.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub start: f64,
    pub plan: JobPlan,
    /// Stages already logged (0 = none; 1 queued, 2 running, 3 halfway, 4 end).
    pub logged: u8,
}

/// Where a job is in its life.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    Created,
    Started(Run),
    Canceled {
        at: f64,
        progress: u8,
    },
    Forced {
        status: JobStatus,
        progress: Option<u8>,
        at: f64,
    },
}

/// The derived view of a job at some instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatusView {
    pub status: JobStatus,
    pub progress: Option<u8>,
    pub updated: f64,
    /// When the job ended, if it did.
    pub ended: Option<f64>,
}

/// One batch job.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub id: String,
    pub user: String,
    /// Creation order.
    pub seq: u64,
    pub title: Option<String>,
    pub description: Option<String>,
    pub process: Value,
    /// The openEO billing `plan` field.
    pub billing_plan: Option<Value>,
    pub budget: Option<Value>,
    pub log_level: Level,
    /// Any other top-level keys of the create request (`job_options`, ...).
    pub extra: Map<String, Value>,
    pub created: f64,
    pub phase: Phase,
    pub phase_at: f64,
    pub logs: Vec<LogEntry>,
    pub info: ProcessInfo,
    /// The plan of the last run, for `usage` and `costs`.
    pub last_plan: Option<JobPlan>,
    /// Generated content cached per file name.
    pub content_cache: HashMap<String, Arc<Vec<u8>>>,
    /// Checksums cached per file name.
    pub checksum_cache: HashMap<String, String>,
}

impl Job {
    fn log(&mut self, level: Level, code: Option<&str>, message: String, time: f64) {
        let id = self.logs.len() as u64 + 1;
        self.logs.push(LogEntry {
            id,
            level,
            code: code.map(str::to_string),
            message,
            time,
        });
    }

    /// Derives the status at `now` and appends the log entries of the stages passed.
    pub fn advance(&mut self, now: f64) -> StatusView {
        let phase_at = self.phase_at;
        match &mut self.phase {
            Phase::Created => StatusView {
                status: JobStatus::Created,
                progress: Some(0),
                updated: phase_at,
                ended: None,
            },
            Phase::Canceled { at, progress } => StatusView {
                status: JobStatus::Canceled,
                progress: Some(*progress),
                updated: *at,
                ended: Some(*at),
            },
            Phase::Forced {
                status,
                progress,
                at,
            } => StatusView {
                status: *status,
                progress: progress.or(match status {
                    JobStatus::Created | JobStatus::Queued => Some(0),
                    JobStatus::Finished => Some(100),
                    JobStatus::Running => Some(50),
                    _ => None,
                }),
                updated: *at,
                ended: status.is_terminal().then_some(*at),
            },
            Phase::Started(run) => {
                let run = run.clone();
                let q = run.plan.queued_secs.max(0.0);
                let r = run.plan.running_secs.max(0.0);
                let t_run = run.start + q;
                let t_half = t_run + r / 2.0;
                let t_end = t_run + r;
                let mut logged = run.logged;
                let pending: Vec<(u8, f64)> = [(1, run.start), (2, t_run), (3, t_half), (4, t_end)]
                    .into_iter()
                    .filter(|(stage, at)| *stage > logged && *at <= now)
                    .collect();
                for (stage, at) in pending {
                    self.log_stage(stage, &run.plan, at);
                    logged = stage;
                }
                if let Phase::Started(r) = &mut self.phase {
                    r.logged = logged;
                }
                if now < t_run {
                    StatusView {
                        status: JobStatus::Queued,
                        progress: Some(0),
                        updated: run.start,
                        ended: None,
                    }
                } else if now < t_end {
                    let p = if r > 0.0 {
                        (now - t_run) / r * 100.0
                    } else {
                        0.0
                    };
                    StatusView {
                        status: JobStatus::Running,
                        progress: Some((p.floor() as u8).min(99)),
                        updated: t_run,
                        ended: None,
                    }
                } else {
                    let (status, progress) = match run.plan.outcome {
                        Outcome::Finished => (JobStatus::Finished, Some(100)),
                        Outcome::Error => (JobStatus::Error, None),
                        Outcome::Canceled => (JobStatus::Canceled, Some(100)),
                    };
                    StatusView {
                        status,
                        progress,
                        updated: t_end,
                        ended: Some(t_end),
                    }
                }
            }
        }
    }

    fn log_stage(&mut self, stage: u8, plan: &JobPlan, at: f64) {
        match stage {
            1 => self.log(
                Level::Info,
                None,
                "Job submitted to the fake cluster, waiting in queue.".into(),
                at,
            ),
            2 => {
                self.log(Level::Info, None, "Job started running.".into(), at);
                self.log(
                    Level::Debug,
                    None,
                    "load_collection: SENTINEL2_L2A, 12 items in the spatio-temporal extent."
                        .into(),
                    at,
                );
            }
            3 => self.log(
                Level::Warning,
                None,
                "3 of 12 scenes skipped: cloud cover above 85%.".into(),
                at,
            ),
            _ => match plan.outcome {
                Outcome::Finished => {
                    let n = self.info.assets.len();
                    self.log(
                        Level::Info,
                        None,
                        format!("Job finished: {n} result file(s) written."),
                        at,
                    )
                }
                Outcome::Error => {
                    let msg = plan.error_message.clone().unwrap_or_else(|| {
                        "Exception during Spark execution: the fake job failed as planned."
                            .to_string()
                    });
                    self.log(Level::Error, Some("Internal"), msg, at)
                }
                Outcome::Canceled => self.log(
                    Level::Warning,
                    None,
                    "Job canceled by the backend.".into(),
                    at,
                ),
            },
        }
    }

    /// Starts the job (from `created` or `canceled`; otherwise nothing happens).
    pub fn start(&mut self, plan: JobPlan, now: f64) {
        let view = self.advance(now);
        if matches!(view.status, JobStatus::Created | JobStatus::Canceled) {
            self.last_plan = Some(plan.clone());
            self.phase = Phase::Started(Run {
                start: now,
                plan,
                logged: 0,
            });
            self.phase_at = now;
            self.advance(now);
        }
    }

    /// Cancels the job if it is queued or running.
    pub fn cancel(&mut self, now: f64) {
        let view = self.advance(now);
        if matches!(view.status, JobStatus::Queued | JobStatus::Running) {
            self.phase = Phase::Canceled {
                at: now,
                progress: view.progress.unwrap_or(0),
            };
            self.phase_at = now;
            self.log(Level::Info, None, "Job canceled by the user.".into(), now);
        }
    }

    /// Forces a status (test control).
    pub fn force(
        &mut self,
        status: JobStatus,
        progress: Option<u8>,
        message: Option<String>,
        now: f64,
    ) {
        self.advance(now);
        self.phase = Phase::Forced {
            status,
            progress,
            at: now,
        };
        self.phase_at = now;
        if status == JobStatus::Error {
            let msg = message.unwrap_or_else(|| "The job failed (forced by the test).".into());
            self.log(Level::Error, Some("Internal"), msg, now);
        } else {
            let msg = message.unwrap_or_else(|| format!("Status forced to {}.", status.as_str()));
            self.log(Level::Info, None, msg, now);
        }
    }

    /// The last error log entry, for 424 answers.
    pub fn error_entry(&self) -> Option<&LogEntry> {
        self.logs.iter().rev().find(|e| e.level == Level::Error)
    }

    /// A test-facing copy.
    pub fn snapshot(&mut self, now: f64) -> JobSnapshot {
        let view = self.advance(now);
        JobSnapshot {
            id: self.id.clone(),
            user: self.user.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            status: view.status,
            progress: view.progress,
            process: self.process.clone(),
            plan: self.billing_plan.clone(),
            budget: self.budget.clone(),
            log_level: self.log_level.as_str().to_string(),
            extra: self.extra.clone(),
            created: rfc3339(self.created),
            updated: rfc3339(view.updated),
        }
    }
}

/// A copy of one job, for tests (`FakeHandle::jobs`, `GET /_fake/jobs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// Job id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Title as submitted.
    pub title: Option<String>,
    /// Description as submitted.
    pub description: Option<String>,
    /// Status now.
    pub status: JobStatus,
    /// Progress now.
    pub progress: Option<u8>,
    /// The `process` object as submitted.
    pub process: Value,
    /// The openEO billing `plan` as submitted.
    pub plan: Option<Value>,
    /// Budget as submitted.
    pub budget: Option<Value>,
    /// Log level.
    pub log_level: String,
    /// Other top-level keys of the create request (`job_options`, ...).
    pub extra: Map<String, Value>,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Last status change (RFC 3339).
    pub updated: String,
}

/// Request statistics (`FakeHandle::stats`, `GET /_fake/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests per `"METHOD template"`, e.g. `"POST /jobs"`, `"GET /jobs/{job_id}"`,
    /// `"GET /.well-known/openeo"`. API routes are relative to the API root (`"GET /"` is the
    /// capabilities document); faulted requests count too; `/_fake/` requests do not.
    pub requests: BTreeMap<String, u64>,
    /// Jobs actually created.
    pub jobs_created: u64,
    /// Faults fired.
    pub faults_fired: u64,
    /// Requests for a signed asset link that carried an `Authorization` header.
    pub signed_links_with_authorization: u64,
    /// Answers per HTTP status (e.g. how many 403s a client provoked); `/_fake/` excluded.
    pub statuses: BTreeMap<u16, u64>,
    /// Bytes past the real body handed to connections by `oversize` faults (how far a
    /// client let a body run past its declared size).
    #[serde(default)]
    pub oversize_bytes_sent: u64,
}

impl Stats {
    /// Requests for `method` and route `template` (e.g. `count("GET", "/jobs/{job_id}")`).
    pub fn count(&self, method: &str, template: &str) -> u64 {
        self.requests
            .get(&format!("{} {}", method.to_uppercase(), template))
            .copied()
            .unwrap_or(0)
    }

    /// All requests counted.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// Mutable state.
#[derive(Debug)]
pub(crate) struct State {
    pub jobs: BTreeMap<String, Job>,
    pub job_seq: u64,
    pub plan: JobPlan,
    pub plan_rules: Vec<PlanRule>,
    pub faults: Vec<ActiveFault>,
    pub stats: Stats,
}

impl State {
    pub fn new(config: &FakeConfig) -> Self {
        Self {
            jobs: BTreeMap::new(),
            job_seq: 0,
            plan: config.plan.clone(),
            plan_rules: config.plan_rules.clone(),
            faults: config
                .faults
                .iter()
                .cloned()
                .map(ActiveFault::new)
                .collect(),
            stats: Stats::default(),
        }
    }

    /// The plan a job gets when it starts now.
    pub fn plan_for(&self, job: &Job) -> JobPlan {
        for rule in &self.plan_rules {
            let m = rule.matches.as_str();
            let hit = job.id == m
                || job.title.as_deref().is_some_and(|t| t.contains(m))
                || job.description.as_deref().is_some_and(|d| d.contains(m));
            if hit {
                return rule.plan.clone();
            }
        }
        self.plan.clone()
    }
}

/// Cached answers of a userinfo endpoint.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    pub entries: HashMap<String, (Instant, Option<(String, String)>)>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: FakeConfig,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// `http://127.0.0.1:PORT/openeo/1.2`
    pub api_url: String,
    pub state: Mutex<State>,
    pub token_cache: Mutex<TokenCache>,
    /// Starts as `config.token_check`; tests may swap it (e.g. to revoke a token).
    pub token_check: RwLock<Arc<TokenCheck>>,
    pub http: reqwest::Client,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token check in force (changeable at run time).
    pub fn token_check(&self) -> Arc<TokenCheck> {
        self.token_check
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_token_check(&self, check: TokenCheck) {
        *self.token_check.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(check);
        self.token_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clear();
    }
}
