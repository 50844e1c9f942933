//! `POST /sync_jobs`: synchronous processing of a small area, as the APEx Dispatch API
//! defines it — the platform's result is the answer (its media type, status 200) — and,
//! unlike the hosted API, also a job: kept in the job list with its parameters and its
//! result delivered into the results folder like any job's (`X-Job-Id` names it).
//! openEO services only (the platform's `POST /result`); others get a 502 saying so.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::validate::{parse_job_request, JobRequestBody};

/// Process a job synchronously: the answer is the result itself.
#[utoipa::path(post, path = "/sync_jobs", tag = "unit jobs",
    request_body = JobRequestBody,
    responses(
        (status = 200, description = "The result, in the platform's media type (e.g. image/tiff)",
         headers(("X-Job-Id" = i64, description = "The job kept for this run: GET /unit_jobs/{id}"))),
        (status = 409, description = "The backend needs a login", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend refused or failed (its message), or it offers no synchronous processing", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend is unreachable", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(State(d): State<App>, ApiJson(body): ApiJson) -> Result<Response, Problem> {
    let req = parse_job_request(&body).map_err(Problem::invalid)?;
    let (job, answer) = d.sync_job(req).await?;
    let media = answer
        .media_type
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, media),
            (
                header::HeaderName::from_static("x-job-id"),
                HeaderValue::from(job.id),
            ),
        ],
        answer.body,
    )
        .into_response())
}
