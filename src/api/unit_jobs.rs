//! `/unit_jobs`: submit, list, read, cancel and forget unit jobs (APEx-compatible,
//! plus the *ext* list, cancel and results-download routes).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery, Id};
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::validate::{parse_job_request, FieldError, JobRequestBody};
use crate::job::{Job, Status};
use crate::store::JobFilter;

/// Default page size of `GET /unit_jobs`.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of `GET /unit_jobs`.
pub const MAX_LIMIT: u32 = 10_000;

/// Query of `GET /unit_jobs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs with this status.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Page size (default 100, at most 10 000).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 10000)]
    limit: Option<String>,
    /// Jobs to skip.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 4294967295_u64)]
    offset: Option<String>,
}

/// Submit a unit job. It is validated, stored, and answered at once with 201; the
/// scheduler sends it to the backend afterwards. Nothing is stored for a rejected
/// request. With an `Idempotency-Key` header, sending the same body again with the
/// same key answers the job created the first time (a retry or a double click never
/// makes two jobs); another body with that key is a 422.
#[utoipa::path(post, path = "/unit_jobs", tag = "unit jobs",
    request_body = JobRequestBody,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "Makes retries safe: the same key and body answer the job created the first time")),
    responses(
        (status = 201, description = "Job accepted", body = Job,
         headers(("Location" = String, description = "URL of the new job"))),
        (status = 422, description = "Invalid fields, or the job would overspend a budget (`BudgetExceeded`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The backend wants a login before it describes the service (`LoginRequired`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The service definition could not be fetched (`ServiceUnavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(d): State<App>,
    headers: HeaderMap,
    ApiJson(body): ApiJson,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let req = parse_job_request(&body).map_err(Problem::invalid)?;
    let idempotency = key.map(|k| {
        (
            k,
            format!("{:x}", Sha256::digest(body.to_string().as_bytes())),
        )
    });
    // A repeated key answers the first job the same way: nothing new.
    let (job, _created) = d.create_job(req, idempotency).await?;
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
        (status = 400, description = "A query parameter given twice", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(d): State<App>,
    ApiQuery(q): ApiQuery<ListQuery>,
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
    Ok(Json(jobs.into_iter().map(|j| d.with_waiting(j)).collect()))
}

/// Read one unit job.
#[utoipa::path(get, path = "/unit_jobs/{id}", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_one(State(d): State<App>, Id(id): Id) -> Result<Json<Job>, Problem> {
    Ok(Json(d.job(id).await?))
}

/// Forget a unit job: cancel it on the backend if it is active, then delete the
/// record. Result files already published stay in the results folder.
#[utoipa::path(delete, path = "/unit_jobs/{id}", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 204, description = "Job forgotten"),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The job is being sent to its backend right now (try again), or its backend needs a login to cancel it", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend refused to cancel the job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(State(d): State<App>, Id(id): Id) -> Result<StatusCode, Problem> {
    d.delete_job(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel a unit job and keep its record (*ext*). A job that ended already is left
/// as it is (409).
#[utoipa::path(post, path = "/unit_jobs/{id}/cancel", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The canceled job", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The job has ended already (`JobEnded`), is being sent right now, or its backend needs a login to cancel it", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend refused to cancel the job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel(State(d): State<App>, Id(id): Id) -> Result<Json<Job>, Problem> {
    Ok(Json(d.cancel_job(id).await?))
}

/// Submit a failed or canceled job again as a new attempt (*ext*): back to `created`,
/// with a new UUID, no remote job, error or results; the scheduler sends it like a new
/// job. A finished job is never run again, and an active one is not touched (409). This
/// is also how a job whose submission is uncertain (`SubmissionUncertain`: the backend
/// may or may not have created it) is sent again, once the user has looked.
#[utoipa::path(post, path = "/unit_jobs/{id}/retry", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, waiting to be sent again", body = Job),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed or canceled", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn retry(State(d): State<App>, Id(id): Id) -> Result<Json<Job>, Problem> {
    Ok(Json(d.retry_job(id).await?))
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
pub async fn results(State(d): State<App>, Id(id): Id) -> Result<Response, Problem> {
    Ok(Json(d.results_document(id).await?).into_response())
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
    State(d): State<App>,
    Id(id): Id,
) -> Result<(StatusCode, Json<Job>), Problem> {
    Ok((StatusCode::ACCEPTED, Json(d.download_results(id).await?)))
}

/// Query of `GET /unit_jobs/{id}/logs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Id of the last entry already seen.
    offset: Option<String>,
    /// Minimum level: `error`, `warning`, `info` or `debug`.
    #[param(pattern = "^(error|warning|info|debug)$")]
    level: Option<String>,
}

/// The backend's log entries of a job (*ext*): `{level, logs: [{id, level, message,
/// time}], links}` as the openEO backend returns them.
#[utoipa::path(get, path = "/unit_jobs/{id}/logs", tag = "unit jobs",
    params(("id" = i64, Path, description = "Job id"), LogsQuery),
    responses(
        (status = 200, description = "Log entries", body = Object),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 400, description = "A query parameter given twice", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not submitted yet, or the backend needs a login", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Unknown level", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend refused or failed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn logs(
    State(d): State<App>,
    Id(id): Id,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    if let Some(level) = q.level.as_deref() {
        if !["error", "warning", "info", "debug"].contains(&level) {
            return Err(Problem::invalid_field(
                "level",
                "use one of error, warning, info, debug",
            ));
        }
    }
    Ok(Json(
        d.logs(id, q.offset.as_deref(), q.level.as_deref()).await?,
    ))
}
