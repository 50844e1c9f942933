//! `/unit_jobs`: submit, list, read, cancel and forget unit jobs (APEx-compatible,
//! plus the *ext* list, cancel and results-download routes).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, Id};
use super::params::udp_problem;
use super::problem::{Problem, ProblemBody};
use crate::daemon::Daemon;
use crate::job::validate::{parse_job_request, FieldError};
use crate::job::{
    Job, JobError, Label, OutputFormat, ResultsState, ServiceDetails, Status, SubmitState,
};
use crate::platform::openeo::OpenEoError;
use crate::platform::udp::validate_arguments;
use crate::store::{JobFilter, JobPatch};

/// Default page size of `GET /unit_jobs`.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of `GET /unit_jobs`.
pub const MAX_LIMIT: u32 = 10_000;

/// Body of `POST /unit_jobs` (APEx `BaseJobRequest`); every field is required and no
/// other field is accepted.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct JobRequestBody {
    /// Human title, also sent to the backend.
    title: String,
    /// Platform kind.
    label: Label,
    /// Backend (`endpoint`, http or https) and application (openEO: UDP URL; OGC: process id).
    service: ServiceDetails,
    /// Parameters of the service. Bounding boxes (`{west, south, east, north, crs?}`),
    /// GeoJSON polygons and temporal intervals (`["2023-05-01", "2023-09-30"]`) are
    /// validated.
    #[schema(value_type = Object)]
    parameters: serde_json::Value,
    /// Output format.
    format: OutputFormat,
}

/// Query of `GET /unit_jobs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs with this status.
    status: Option<String>,
    /// Page size (default 100, at most 10 000).
    limit: Option<String>,
    /// Jobs to skip.
    offset: Option<String>,
}

/// Submit a unit job. It is validated, stored, and answered at once with 201; the
/// scheduler sends it to the backend afterwards. Nothing is stored for a rejected
/// request. With an `Idempotency-Key` header, sending the same body again with the
/// same key answers the job created the first time (a retry or a double click never
/// makes two jobs); another body with that key is a 422.
#[utoipa::path(post, path = "/unit_jobs", tag = "unit jobs",
    request_body = JobRequestBody,
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe: the same key and body answer the job created the first time")),
    responses(
        (status = 201, description = "Job accepted", body = Job,
         headers(("Location" = String, description = "URL of the new job"))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(d): State<Daemon>,
    headers: HeaderMap,
    ApiJson(body): ApiJson,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let mut req = parse_job_request(&body).map_err(Problem::invalid)?;
    if req.label == Label::Openeo {
        // Validate against the UDP and keep what will actually be sent.
        let udp = d
            .udps()
            .get(&req.service.application)
            .await
            .map_err(udp_problem)?;
        req.parameters = validate_arguments(&udp, &req.parameters).map_err(Problem::invalid)?;
    }
    let job = match key {
        Some(key) => {
            let hash = format!("{:x}", Sha256::digest(body.to_string().as_bytes()));
            let (job, created) = d.store().insert_job_idempotent(req, key, hash).await?;
            if !created {
                // A retry: the same answer as the first time, nothing new.
                let location = format!("/unit_jobs/{}", job.id);
                return Ok((
                    StatusCode::CREATED,
                    [(header::LOCATION, location)],
                    Json(job),
                )
                    .into_response());
            }
            job
        }
        None => d.store().insert_job(req).await?,
    };
    d.events().job_changed(&job);
    d.scheduler().job_added(&d, &job);
    let location = format!("/unit_jobs/{}", job.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(Problem::invalid_field(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters, e.g. a UUID",
        )),
    }
}

/// List unit jobs, newest first (*ext*).
#[utoipa::path(get, path = "/unit_jobs", tag = "unit jobs", params(ListQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        (status = 422, description = "Invalid query", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(d): State<Daemon>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Job>>, Problem> {
    let mut errors = Vec::new();
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Status::parse(s).or_else(|| {
            errors.push(FieldError::new(
                "status",
                format!(
                    "unknown status {s:?}; use one of {}",
                    Status::ALL.map(Status::as_str).join(", ")
                ),
            ));
            None
        }),
    };
    let mut number = |name: &str, raw: Option<&str>, default: u32, max: u32| match raw {
        None | Some("") => default,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n <= max => n,
            _ => {
                errors.push(FieldError::new(
                    name,
                    format!("{s:?} is not an integer between 0 and {max}"),
                ));
                default
            }
        },
    };
    let limit = number("limit", q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT);
    let offset = number("offset", q.offset.as_deref(), 0, u32::MAX);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let jobs = d
        .store()
        .jobs(JobFilter {
            status,
            limit: Some(limit),
            offset,
            standalone_only: false,
        })
        .await?;
    Ok(Json(jobs))
}

/// Read one unit job.
#[utoipa::path(get, path = "/unit_jobs/{id}", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_one(State(d): State<Daemon>, Id(id): Id) -> Result<Json<Job>, Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    d.scheduler().nudge(&d, &job);
    Ok(Json(job))
}

/// Forget a unit job: cancel it on the backend if it is active, then delete the
/// record. Result files already published stay in the results folder.
#[utoipa::path(delete, path = "/unit_jobs/{id}", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 204, description = "Job forgotten"),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(State(d): State<Daemon>, Id(id): Id) -> Result<StatusCode, Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    if !job.status.is_terminal() {
        cancel_on_backend(&d, &job).await?;
    }
    if d.store().delete_job(id).await? {
        d.events().job_deleted(&job);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel a unit job and keep its record (*ext*). A job that ended already is left
/// as it is (409).
#[utoipa::path(post, path = "/unit_jobs/{id}/cancel", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The canceled job", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The job has ended already", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel(State(d): State<Daemon>, Id(id): Id) -> Result<Json<Job>, Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    if job.status.is_terminal() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "JobEnded",
            "Job has ended",
            format!("job {id} is {} and cannot be canceled", job.status.as_str()),
        ));
    }
    cancel_on_backend(&d, &job).await?;
    let job = d
        .store()
        .update_job(
            id,
            JobPatch {
                status: Some(Status::Canceled),
                error: Some(Some(JobError {
                    code: "Canceled".into(),
                    message: "canceled by the user".into(),
                })),
                ..JobPatch::default()
            },
        )
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    d.events().job_changed(&job);
    Ok(Json(job))
}

/// Cancels an active job on its backend (`DELETE /jobs/{id}/results`). A job not sent
/// yet needs nothing. A job being sent right now is waited for (up to
/// [`SUBMIT_SETTLE`]) so that its remote job, if one was created, is canceled too.
pub(crate) async fn cancel_on_backend(d: &Daemon, job: &Job) -> Result<(), Problem> {
    let deadline = tokio::time::Instant::now() + SUBMIT_SETTLE;
    let mut job = job.clone();
    while job.submit_state == SubmitState::Submitting {
        if tokio::time::Instant::now() > deadline {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "JobBeingSubmitted",
                "Job is being submitted",
                format!(
                    "job {} is being sent to its backend right now; try again in a moment",
                    job.id
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        job = d
            .store()
            .job(job.id)
            .await?
            .ok_or_else(|| Problem::job_not_found(job.id))?;
    }
    let Some(remote) = job.backend_job_id.as_deref() else {
        return Ok(());
    };
    let backend = d.backends().get(&job.service.endpoint);
    backend.limiter.acquire().await;
    match backend.client.cancel_job(remote).await {
        Ok(()) => Ok(()),
        // Already gone on the backend: nothing left to cancel.
        Err(OpenEoError::Api { status: 404, .. }) => Ok(()),
        Err(e) => Err(backend_problem(&e)),
    }
}

/// How long a cancel waits for a submission in flight to settle.
pub const SUBMIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(20);

/// A backend failure as a problem: 503 when it is unreachable or busy, 401-like
/// `LoginRequired` as 409, the backend's own refusal as 502 with its message.
pub fn backend_problem(e: &OpenEoError) -> Problem {
    let detail = crate::platform::redact(&e.to_string());
    match e {
        OpenEoError::Auth { .. } => Problem::new(
            StatusCode::CONFLICT,
            "LoginRequired",
            "Backend login required",
            detail,
        ),
        e if e.is_transient() => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BackendUnreachable",
            "Backend unreachable",
            detail,
        ),
        _ => Problem::new(
            StatusCode::BAD_GATEWAY,
            "BackendError",
            "Backend error",
            detail,
        ),
    }
}

/// The job's results as a STAC Collection: the backend's fresh document until the
/// download; once the job folder is published, each asset's `href` is a daemon URL
/// `http://127.0.0.1:PORT/files/<job uuid>/<name>` that needs no header (HEAD and
/// Range supported), `alternate.local.href` the absolute path and
/// `alternate.remote.href` the backend's link (without its signature). 404 until the
/// job has results.
#[utoipa::path(get, path = "/unit_jobs/{id}/results", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "STAC Collection of the results", body = Object),
        (status = 404, description = "No such job, or no results yet", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn results(State(d): State<Daemon>, Id(id): Id) -> Result<Response, Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    if let (ResultsState::Ready, Some(dir)) = (job.results.state, job.results.dir.as_deref()) {
        // Downloaded: our own URLs (no header needed), the local path, the remote link.
        let file = std::path::Path::new(dir).join("results.json");
        if let Ok(text) = tokio::fs::read(&file).await {
            if let Ok(local) = serde_json::from_slice::<serde_json::Value>(&text) {
                let base = format!("http://127.0.0.1:{}", d.port());
                let uuid = job.uuid.hyphenated().to_string();
                let doc = crate::results::manifest::served_document(&local, &base, &uuid, dir);
                return Ok(Json(doc).into_response());
            }
        }
    }
    if let (Status::Finished, Some(remote)) = (job.status, job.backend_job_id.as_deref()) {
        // Fresh from the backend: signed asset links expire.
        let backend = d.backends().get(&job.service.endpoint);
        backend.limiter.acquire().await;
        let doc = backend
            .client
            .results(remote)
            .await
            .map_err(|e| backend_problem(&e))?;
        return Ok(Json(doc).into_response());
    }
    Err(Problem::new(
        StatusCode::NOT_FOUND,
        "ResultsNotAvailable",
        "No results yet",
        format!(
            "job {id} is {} and has no results yet; results exist once it is finished",
            job.status.as_str()
        ),
    ))
}

/// Download a finished job's results again (*ext*): after a failed download (e.g. a
/// full disk, once space is free) or after the user removed the job folder. Answers
/// 202 with the job at once; progress follows as `result` events. Parts already
/// downloaded are resumed. 409 if the job has not finished or its results are
/// already in place.
#[utoipa::path(post, path = "/unit_jobs/{id}/results/download", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 202, description = "Download queued (or already running)", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not finished, or results already in place", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn download_results(
    State(d): State<Daemon>,
    Id(id): Id,
) -> Result<(StatusCode, Json<Job>), Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    if job.status != Status::Finished || job.backend_job_id.is_none() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "JobNotFinished",
            "Job has not finished",
            format!(
                "job {id} is {}; results can be downloaded once it is finished",
                job.status.as_str()
            ),
        ));
    }
    let in_place = job.results.state == ResultsState::Ready
        && job
            .results
            .dir
            .as_deref()
            .is_some_and(|dir| std::path::Path::new(dir).join("job.json").is_file());
    if in_place {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "ResultsReady",
            "Results already downloaded",
            format!(
                "the results of job {id} are in {}; delete that folder to download them again",
                job.results.dir.as_deref().unwrap_or("")
            ),
        ));
    }
    let job = d
        .results()
        .retry(&d, &job)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Query of `GET /unit_jobs/{id}/logs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Id of the last entry already seen.
    offset: Option<String>,
    /// Minimum level: `error`, `warning`, `info` or `debug`.
    level: Option<String>,
}

/// The backend's log entries of a job (*ext*): `{level, logs: [{id, level, message,
/// time}], links}` as the openEO backend returns them.
#[utoipa::path(get, path = "/unit_jobs/{id}/logs", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id"), LogsQuery),
    responses(
        (status = 200, description = "Log entries", body = Object),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not submitted yet", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn logs(
    State(d): State<Daemon>,
    Id(id): Id,
    Query(q): Query<LogsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let job = d
        .store()
        .job(id)
        .await?
        .ok_or_else(|| Problem::job_not_found(id))?;
    if let Some(level) = q.level.as_deref() {
        if !["error", "warning", "info", "debug"].contains(&level) {
            return Err(Problem::invalid_field(
                "level",
                "use one of error, warning, info, debug",
            ));
        }
    }
    let Some(remote) = job.backend_job_id.as_deref() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "JobNotSubmitted",
            "Job not submitted yet",
            format!("job {id} has not reached its backend yet, so it has no logs"),
        ));
    };
    let backend = d.backends().get(&job.service.endpoint);
    backend.limiter.acquire().await;
    let logs = backend
        .client
        .logs(remote, q.offset.as_deref(), q.level.as_deref())
        .await
        .map_err(|e| backend_problem(&e))?;
    Ok(Json(logs))
}
