//! Batch jobs: create (201 + `Location` + `OpenEO-Identifier`), list (paginated), describe,
//! update (`JobLocked` while queued or running), delete, estimate, start (`POST .../results`),
//! cancel (`DELETE .../results`), logs (`offset`, `level`, `limit`), and `POST /validation`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::auth::User;
use crate::error::ApiError;
use crate::process::analyse;
use crate::state::{now, rfc3339, Job, JobStatus, Level, Phase, Shared, StatusView};

/// Runs `f` on the caller's job `id` (404 `JobNotFound` if absent or someone else's).
pub(crate) fn with_job<R>(
    shared: &Shared,
    user: &User,
    id: &str,
    f: impl FnOnce(&mut Job, StatusView) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    let mut state = shared.lock();
    let job = state
        .jobs
        .get_mut(id)
        .filter(|j| j.user == user.id)
        .ok_or_else(|| ApiError::job_not_found(id))?;
    let view = job.advance(now());
    f(job, view)
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

pub(crate) fn new_job_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year repr:last_two][month][day][hour][minute]");
    format!(
        "j-{}{:06x}",
        t.format(&fmt).unwrap_or_default(),
        rand::random::<u32>() & 0xFF_FFFF
    )
}

fn optional_string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "`{key}` must be a string or null."
        ))),
    }
}

fn log_level(m: &Map<String, Value>) -> Result<Option<Level>, ApiError> {
    match m.get("log_level") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Level::parse(s).map(Some).ok_or_else(|| {
            ApiError::bad_request("`log_level` must be one of error, warning, info, debug.")
        }),
        Some(_) => Err(ApiError::bad_request("`log_level` must be a string.")),
    }
}

fn budget(m: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match m.get("budget") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|b| b >= 0.0) => {
            Ok(Some(Value::Number(n.clone())))
        }
        Some(_) => Err(ApiError::bad_request(
            "`budget` must be a number >= 0 or null.",
        )),
    }
}

const KNOWN_KEYS: &[&str] = &[
    "title",
    "description",
    "process",
    "plan",
    "budget",
    "log_level",
];

/// `POST /jobs`
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    user: User,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = parse_object(&body)?;
    let process = m.get("process").cloned().ok_or_else(|| {
        ApiError::new(
            400,
            "ProcessGraphMissing",
            "No process graph specified (`process` is required).",
        )
    })?;
    let info = analyse(&process, &shared.config.udp_dir)?;
    let title = optional_string(&m, "title")?;
    let description = optional_string(&m, "description")?;
    let level = log_level(&m)?.unwrap_or(Level::Info);
    let budget = budget(&m)?;
    let extra: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = new_job_id();
    let t = now();
    {
        let mut state = shared.lock();
        state.job_seq += 1;
        let seq = state.job_seq;
        state.jobs.insert(
            id.clone(),
            Job {
                id: id.clone(),
                user: user.id.clone(),
                seq,
                title,
                description,
                process,
                billing_plan: m.get("plan").cloned().filter(|v| !v.is_null()),
                budget,
                log_level: level,
                extra,
                created: t,
                phase: Phase::Created,
                phase_at: t,
                logs: Vec::new(),
                info,
                last_plan: None,
                content_cache: HashMap::new(),
                checksum_cache: HashMap::new(),
            },
        );
        state.stats.jobs_created += 1;
    }
    tracing::info!(job = %id, user = %user.id, "job created");
    let location = format!("{}/jobs/{id}", shared.api_url);
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, hv(&location));
    h.insert("OpenEO-Identifier", hv(&id));
    Ok(response)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /validation`: the same checks as job creation, as a list of errors.
pub(crate) async fn validation(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m = parse_object(&body)?;
    let process = Value::Object(m);
    let errors = match analyse(&process, &shared.config.udp_dir) {
        Ok(_) => vec![],
        Err(e) => vec![json!({"code": e.code, "message": e.message})],
    };
    Ok(Json(json!({"errors": errors})))
}

/// Usage and costs of an ended job.
fn usage_and_costs(job: &Job, view: &StatusView) -> Option<(Value, f64)> {
    view.ended?;
    let r = job
        .last_plan
        .as_ref()
        .map(|p| p.running_secs)
        .unwrap_or(2.0)
        .max(1.0);
    let usage = json!({
        "cpu": {"value": (r * 8.0).round() as u64, "unit": "cpu-seconds"},
        "duration": {"value": r.round() as u64, "unit": "seconds"},
        "memory": {"value": (r * 8.0 * 1024.0).round() as u64, "unit": "mb-seconds"},
        "input_pixel": {"value": 1.5, "unit": "mega-pixel"},
    });
    let costs = ((0.5 + r * 0.25) * 100.0).round() / 100.0;
    Some((usage, costs))
}

/// The `batch_job` object; `full` adds `process` and links.
pub(crate) fn job_json(shared: &Shared, job: &Job, view: &StatusView, full: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(job.id));
    m.insert("title".into(), json!(job.title));
    m.insert("description".into(), json!(job.description));
    if full {
        m.insert("process".into(), job.process.clone());
    }
    m.insert("status".into(), json!(view.status));
    if let Some(p) = view.progress {
        m.insert("progress".into(), json!(p));
    }
    m.insert("created".into(), json!(rfc3339(job.created)));
    m.insert("updated".into(), json!(rfc3339(view.updated)));
    if full {
        m.insert(
            "plan".into(),
            job.billing_plan.clone().unwrap_or(Value::Null),
        );
        m.insert("budget".into(), job.budget.clone().unwrap_or(Value::Null));
        m.insert("log_level".into(), json!(job.log_level.as_str()));
    }
    if let Some((usage, costs)) = usage_and_costs(job, view) {
        m.insert("costs".into(), json!(costs));
        m.insert("usage".into(), usage);
    }
    if full {
        let base = format!("{}/jobs/{}", shared.api_url, job.id);
        let mut links = vec![json!({
            "rel": "monitor", "href": format!("{base}/logs"), "type": "application/json",
            "title": "Batch job logs"})];
        if view.status == JobStatus::Finished {
            links.push(json!({
                "rel": "result", "href": format!("{base}/results"), "type": "application/json",
                "title": "Batch job results"}));
        }
        m.insert("links".into(), Value::Array(links));
    }
    Value::Object(m)
}

/// `GET /jobs?limit=&page=`
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    user: User,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.get("limit") {
        None => None,
        Some(l) => Some(
            l.parse::<usize>()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| ApiError::bad_request("`limit` must be a positive integer."))?,
        ),
    };
    let page = match q.get("page") {
        None => 0,
        Some(p) => p
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("`page` must be a non-negative integer."))?,
    };
    let t = now();
    let mut state = shared.lock();
    let mut mine: Vec<&mut Job> = state
        .jobs
        .values_mut()
        .filter(|j| j.user == user.id)
        .collect();
    mine.sort_by_key(|j| std::cmp::Reverse(j.seq));
    let total = mine.len();
    let (start, end) = match limit {
        Some(l) => ((page * l).min(total), (page * l + l).min(total)),
        None => (0, total),
    };
    let jobs: Vec<Value> = mine[start..end]
        .iter_mut()
        .map(|j| {
            let view = j.advance(t);
            job_json(&shared, j, &view, false)
        })
        .collect();
    let mut links = Vec::new();
    if let Some(l) = limit {
        if end < total {
            links.push(json!({
                "rel": "next",
                "href": format!("{}/jobs?limit={l}&page={}", shared.api_url, page + 1),
                "type": "application/json",
            }));
        }
    }
    Ok(Json(json!({"jobs": jobs, "links": links})))
}

/// `GET /jobs/{job_id}`
pub(crate) async fn describe(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_job(&shared, &user, &id, |job, view| {
        Ok(Json(job_json(&shared, job, &view, true)))
    })
}

/// `PATCH /jobs/{job_id}`
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let m = parse_object(&body)?;
    let info = match m.get("process") {
        Some(p) => Some(analyse(p, &shared.config.udp_dir)?),
        None => None,
    };
    let title = optional_string(&m, "title")?;
    let description = optional_string(&m, "description")?;
    let level = log_level(&m)?;
    let budget = budget(&m)?;
    with_job(&shared, &user, &id, |job, view| {
        if matches!(view.status, JobStatus::Queued | JobStatus::Running) {
            return Err(ApiError::new(
                400,
                "JobLocked",
                "Job is locked due to a queued or running batch computation.",
            ));
        }
        if m.contains_key("title") {
            job.title = title;
        }
        if m.contains_key("description") {
            job.description = description;
        }
        if let (Some(p), Some(info)) = (m.get("process"), info) {
            job.process = p.clone();
            job.info = info;
            job.content_cache.clear();
            job.checksum_cache.clear();
        }
        if let Some(l) = level {
            job.log_level = l;
        }
        if m.contains_key("budget") {
            job.budget = budget;
        }
        if let Some(p) = m.get("plan") {
            job.billing_plan = Some(p.clone()).filter(|v| !v.is_null());
        }
        Ok(StatusCode::NO_CONTENT)
    })
}

/// `DELETE /jobs/{job_id}`
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_job(&shared, &user, &id, |job, _| {
        job.cancel(now());
        Ok(())
    })?;
    shared.lock().jobs.remove(&id);
    tracing::info!(job = %id, "job deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /jobs/{job_id}/estimate`
pub(crate) async fn estimate(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let plan = {
        let state = shared.lock();
        let job = state
            .jobs
            .get(&id)
            .filter(|j| j.user == user.id)
            .ok_or_else(|| ApiError::job_not_found(&id))?;
        state.plan_for(job)
    };
    let secs = (plan.queued_secs + plan.running_secs).ceil() as u64;
    Ok(Json(json!({
        "costs": ((0.5 + plan.running_secs.max(1.0) * 0.25) * 100.0).round() / 100.0,
        "duration": format!("PT{secs}S"),
        "size": 300_000,
        "downloads_included": null,
        "expires": rfc3339(now() + 7.0 * 86400.0),
    })))
}

/// `POST /jobs/{job_id}/results`: start (from `created` or `canceled`; otherwise no effect).
pub(crate) async fn start(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let t = now();
    let mut state = shared.lock();
    let plan = match state.jobs.get(&id).filter(|j| j.user == user.id) {
        Some(job) => state.plan_for(job),
        None => return Err(ApiError::job_not_found(&id)),
    };
    if let Some(job) = state.jobs.get_mut(&id) {
        job.start(plan, t);
    }
    tracing::info!(job = %id, "job start requested");
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /jobs/{job_id}/results`: cancel (queued or running → canceled).
pub(crate) async fn cancel(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_job(&shared, &user, &id, |job, _| {
        job.cancel(now());
        Ok(StatusCode::NO_CONTENT)
    })
}

/// `GET /jobs/{job_id}/logs?offset=&level=&limit=`
pub(crate) async fn logs(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let offset = match q.get("offset").map(String::as_str) {
        None | Some("") => 0,
        Some(o) => o
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("`offset` must be the id of a log entry."))?,
    };
    let requested = match q.get("level") {
        None => Level::Debug,
        Some(l) => Level::parse(l).ok_or_else(|| {
            ApiError::bad_request("`level` must be one of error, warning, info, debug.")
        })?,
    };
    let limit = match q.get("limit") {
        None => usize::MAX,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| ApiError::bad_request("`limit` must be a positive integer."))?,
    };
    with_job(&shared, &user, &id, |job, _| {
        let level = requested.min(job.log_level);
        let matching: Vec<_> = job
            .logs
            .iter()
            .filter(|e| e.id > offset && e.level <= level)
            .collect();
        let page: Vec<Value> = matching.iter().take(limit).map(|e| e.to_json()).collect();
        let mut links = Vec::new();
        if matching.len() > limit {
            if let Some(last) = matching.get(limit - 1) {
                links.push(json!({
                    "rel": "next",
                    "href": format!(
                        "{}/jobs/{}/logs?offset={}&level={}&limit={limit}",
                        shared.api_url, job.id, last.id, level.as_str()
                    ),
                    "type": "application/json",
                }));
            }
        }
        Ok(Json(
            json!({"level": level.as_str(), "logs": page, "links": links}),
        ))
    })
}
