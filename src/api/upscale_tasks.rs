//! `/upscale_tasks`: fan a service out over one parameter dimension (one unit job per
//! value), as the APEx Dispatch API does, but stored, restart-safe, sent under the
//! backend's limits, with an honest derived status (see
//! [`crate::job::StatusCounts::task_status`]), progress and delivery counts, and the
//! *ext* routes to cancel the task and to retry its failed and canceled tiles.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::extract::{ApiJson, Id};
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::validate::{parse_task_request, TaskRequestBody};
use crate::job::{Task, TaskSummary};

/// Create an upscale task and its unit jobs.
#[utoipa::path(post, path = "/upscale_tasks", tag = "upscale tasks",
    request_body = TaskRequestBody,
    responses(
        (status = 201, description = "Task accepted, with its jobs", body = Task),
        (status = 409, description = "The backend wants a login before it describes the service (`LoginRequired`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the task would overspend a budget (`BudgetExceeded`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The service definition could not be fetched (`ServiceUnavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(State(d): State<App>, ApiJson(body): ApiJson) -> Result<Response, Problem> {
    let req = parse_task_request(&body).map_err(Problem::invalid)?;
    let task = d.create_task(req).await?;
    let location = format!("/upscale_tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    )
        .into_response())
}

/// List upscale tasks, newest first (*ext*): each task's summary (status, progress,
/// counts per status, results delivery), without its parameters and sub-jobs.
#[utoipa::path(get, path = "/upscale_tasks", tag = "upscale tasks",
    responses((status = 200, description = "Tasks, newest first", body = Vec<TaskSummary>)))]
pub async fn list(State(d): State<App>) -> Result<Json<Vec<TaskSummary>>, Problem> {
    Ok(Json(d.store().tasks().await?))
}

/// Read one upscale task: its status (derived from the sub-jobs: `created` until one
/// reaches the backend, `queued` while they only wait there, `running` while any has
/// not ended, then `finished` only when every sub-job finished, else `failed` when one
/// failed, else `canceled`), `progress` (0–100, the mean over the sub-jobs, an ended
/// one counting as 100), `counts` per status, `results` (bytes delivered, sub-jobs
/// whose results are `ready` or `failed`) and the sub-jobs.
#[utoipa::path(get, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_one(State(d): State<App>, Id(id): Id) -> Result<Json<Task>, Problem> {
    Ok(Json(d.task_watched(id).await?))
}

/// Forget an upscale task and its jobs (active ones are canceled on the backend first).
#[utoipa::path(delete, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 204, description = "Task forgotten"),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A sub-job is being sent to its backend right now (try again), or its backend needs a login to cancel it", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The backend refused to cancel an active sub-job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend of an active sub-job cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(State(d): State<App>, Id(id): Id) -> Result<StatusCode, Problem> {
    d.delete_task(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel an upscale task (*ext*): every sub-job that has not ended is canceled — on
/// its backend when it was sent there — and kept as `canceled`; finished, failed and
/// canceled ones stay as they are. Answers the task. A backend that cannot cancel a
/// sub-job is the error (the others are canceled; cancel again to finish).
#[utoipa::path(post, path = "/upscale_tasks/{id}/cancel", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task, its unfinished sub-jobs canceled", body = Task),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Every sub-job has ended already (`TaskEnded`); or a sub-job is being sent right now, or its backend needs a login to cancel it", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "A backend refused to cancel a sub-job", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The backend of a sub-job cannot be reached", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel(State(d): State<App>, Id(id): Id) -> Result<Json<Task>, Problem> {
    Ok(Json(d.cancel_task(id).await?))
}

/// Retry an upscale task's failed and canceled sub-jobs (*ext*): each becomes a new
/// attempt (back to `created`, a new UUID, no remote job, error or results) and is
/// sent again under the backend's limits. Finished sub-jobs are never run again, active
/// ones are not touched, and two retries at once never make two attempts of one
/// sub-job. Answers the task.
#[utoipa::path(post, path = "/upscale_tasks/{id}/retry", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task, its failed and canceled sub-jobs waiting to be sent again", body = Task),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "No sub-job is failed or canceled (`NothingToRetry`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn retry(State(d): State<App>, Id(id): Id) -> Result<Json<Task>, Problem> {
    Ok(Json(d.retry_task(id).await?))
}
