//! Test controls, in Rust (methods used by [`crate::FakeHandle`]) and over HTTP under `/_fake/`
//! (no authentication, not counted in the statistics, never faulted):
//!
//! | method, path | body | effect |
//! |---|---|---|
//! | `GET /_fake/jobs` | | `[JobSnapshot]`, all users, oldest first |
//! | `GET /_fake/stats` | | [`crate::Stats`] |
//! | `GET /_fake/faults` | | active rules with `seen`/`fired` counters |
//! | `POST /_fake/faults` | a [`crate::FaultRule`] or an array of them | adds rules (201) |
//! | `DELETE /_fake/faults` | | removes all rules (204) |
//! | `POST /_fake/plan` | [`PlanUpdate`] | sets the default plan, or adds a rule if `match` is given (204) |
//! | `POST /_fake/tokens` | `{"valid": ["t1", "t2"]}` or `{"valid": null}` (any token) | replaces the token check (204) |
//! | `POST /_fake/reset` | | forgets jobs, stats, faults and plan rules; default plan back to the config (204) |
//! | `POST /_fake/jobs/{id}/status` | `{"status", "progress"?, "message"?}` | forces a status (204, 404) |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{JobPlan, Outcome, PlanRule, TokenCheck};
use crate::error::ApiError;
use crate::faults::{ActiveFault, FaultRule};
use crate::state::{now, JobSnapshot, JobStatus, Shared, State as FakeState, Stats};

/// Body of `POST /_fake/plan`: fields not given keep the current default plan's values.
///
/// ```json
/// {"match": "fail", "outcome": "error", "error_message": "Out of memory", "queued_secs": 0.1, "running_secs": 0.5}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanUpdate {
    /// Title/description substring or job id; absent = change the default plan.
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    /// Seconds queued.
    #[serde(default)]
    pub queued_secs: Option<f64>,
    /// Seconds running.
    #[serde(default)]
    pub running_secs: Option<f64>,
    /// `finished`, `error` or `canceled`.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Message of the error log entry.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// Body of `POST /_fake/tokens`.
#[derive(Clone, Debug, Deserialize)]
struct Tokens {
    valid: Option<Vec<String>>,
}

/// Body of `POST /_fake/jobs/{id}/status`.
#[derive(Clone, Debug, Deserialize)]
struct ForceStatus {
    status: JobStatus,
    #[serde(default)]
    progress: Option<u8>,
    #[serde(default)]
    message: Option<String>,
}

impl Shared {
    pub(crate) fn jobs_snapshot(&self) -> Vec<JobSnapshot> {
        let t = now();
        let mut state = self.lock();
        let mut jobs: Vec<_> = state.jobs.values_mut().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs.into_iter().map(|j| j.snapshot(t)).collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.push(ActiveFault::new(rule));
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub(crate) fn set_default_plan(&self, plan: JobPlan) {
        self.lock().plan = plan;
    }

    pub(crate) fn add_plan_rule(&self, rule: PlanRule) {
        self.lock().plan_rules.push(rule);
    }

    pub(crate) fn apply_plan_update(&self, update: PlanUpdate) {
        let mut state = self.lock();
        let mut plan = state.plan.clone();
        if let Some(q) = update.queued_secs {
            plan.queued_secs = q;
        }
        if let Some(r) = update.running_secs {
            plan.running_secs = r;
        }
        if let Some(o) = update.outcome {
            plan.outcome = o;
        }
        if update.error_message.is_some() {
            plan.error_message = update.error_message;
        }
        match update.matches {
            Some(m) => state.plan_rules.push(PlanRule::new(m, plan)),
            None => state.plan = plan,
        }
    }

    pub(crate) fn force_status(
        &self,
        id: &str,
        status: JobStatus,
        progress: Option<u8>,
        message: Option<String>,
    ) -> bool {
        match self.lock().jobs.get_mut(id) {
            Some(job) => {
                job.force(status, progress, message, now());
                true
            }
            None => false,
        }
    }

    pub(crate) fn reset(&self) {
        *self.lock() = FakeState::new(&self.config);
        self.set_token_check(self.config.token_check.clone());
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/jobs", get(jobs))
        .route("/_fake/stats", get(stats))
        .route(
            "/_fake/faults",
            get(faults).post(add_faults).delete(clear_faults),
        )
        .route("/_fake/plan", post(plan))
        .route("/_fake/reset", post(reset))
        .route("/_fake/jobs/{job_id}/status", post(force))
        .route("/_fake/tokens", post(tokens))
}

async fn jobs(State(shared): State<Arc<Shared>>) -> Json<Vec<JobSnapshot>> {
    Json(shared.jobs_snapshot())
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.stats())
}

async fn faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    let list: Vec<Value> = state
        .faults
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(&f.rule).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("seen".into(), json!(f.seen));
                m.insert("fired".into(), json!(f.fired));
            }
            v
        })
        .collect();
    Json(json!({"faults": list}))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid JSON: {e}")))
}

async fn add_faults(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let value: Value = parse(&body)?;
    let rules: Vec<FaultRule> = if value.is_array() {
        serde_json::from_value(value)
    } else {
        serde_json::from_value(value).map(|r| vec![r])
    }
    .map_err(|e| ApiError::bad_request(format!("Invalid fault rule: {e}")))?;
    for rule in rules {
        shared.add_fault(rule);
    }
    let n = shared.lock().faults.len();
    Ok((StatusCode::CREATED, Json(json!({"faults": n}))))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn plan(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<StatusCode, ApiError> {
    shared.apply_plan_update(parse(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

async fn force(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let f: ForceStatus = parse(&body)?;
    if shared.force_status(&id, f.status, f.progress, f.message) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::job_not_found(&id))
    }
}

async fn tokens(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<StatusCode, ApiError> {
    let t: Tokens = parse(&body)?;
    shared.set_token_check(match t.valid {
        None => TokenCheck::Any,
        Some(list) => TokenCheck::Static(list.into_iter().collect()),
    });
    Ok(StatusCode::NO_CONTENT)
}
