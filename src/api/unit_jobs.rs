//! `/unit_jobs`: submit, list, read, cancel and forget unit jobs (APEx-compatible,
//! plus the *ext* list, cancel and results-download routes).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, Id};
use super::problem::{Problem, ProblemBody};
use crate::daemon::Daemon;
use crate::job::validate::{parse_job_request, FieldError};
use crate::job::{Job, JobError, OutputFormat, Label, ServiceDetails, Status};
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
/// request.
#[utoipa::path(post, path = "/unit_jobs", tag = "unit jobs",
    request_body = JobRequestBody,
    responses(
        (status = 201, description = "Job accepted", body = Job,
         headers(("Location" = String, description = "URL of the new job"))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(State(d): State<Daemon>, ApiJson(body): ApiJson) -> Result<Response, Problem> {
    let req = parse_job_request(&body).map_err(Problem::invalid)?;
    let job = d.store().insert_job(req).await?;
    d.events().job_changed(&job);
    let location = format!("/unit_jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(job)).into_response())
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
    d.store()
        .job(id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::job_not_found(id))
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

/// The job's results as a STAC Collection: the backend's fresh document until the
/// download, then with daemon URLs. 404 until the job has results.
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
