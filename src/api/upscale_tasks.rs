//! `/upscale_tasks`: fan a service out over one parameter dimension (one unit job per
//! value), as the APEx Dispatch API does, but stored, restart-safe and with an honest
//! derived status.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, Id};
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::validate::parse_task_request;
use crate::job::{Dimension, Label, OutputFormat, ServiceDetails, Task, TaskSummary};

/// Body of `POST /upscale_tasks` (APEx `UpscalingTaskRequest`).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskRequestBody {
    /// Title; sub-jobs are titled `"<title> - Processing Job <n>"`.
    title: String,
    /// Platform kind.
    label: Label,
    /// Backend and application.
    service: ServiceDetails,
    /// Parameters shared by every sub-job.
    #[schema(value_type = Object)]
    parameters: serde_json::Value,
    /// Output format.
    format: OutputFormat,
    /// `{name, values}`: sub-job n gets `parameters[name] = values[n]`.
    dimension: Dimension,
    /// *ext* How the tiles' rasters are mosaicked in the task folder: `vrt` or `cog`
    /// (default: `mosaic` of `config.toml`).
    mosaic: Option<crate::job::MosaicKind>,
}

/// Create an upscale task and its unit jobs.
#[utoipa::path(post, path = "/upscale_tasks", tag = "upscale tasks",
    request_body = TaskRequestBody,
    responses(
        (status = 201, description = "Task accepted, with its jobs", body = Task),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
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

/// List upscale tasks, newest first (*ext*).
#[utoipa::path(get, path = "/upscale_tasks", tag = "upscale tasks",
    responses((status = 200, description = "Tasks, newest first", body = Vec<TaskSummary>)))]
pub async fn list(State(d): State<App>) -> Result<Json<Vec<TaskSummary>>, Problem> {
    Ok(Json(d.store().tasks().await?))
}

/// Read one upscale task with its jobs and counts per status.
#[utoipa::path(get, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_one(State(d): State<App>, Id(id): Id) -> Result<Json<Task>, Problem> {
    Ok(Json(d.task(id).await?))
}

/// Forget an upscale task and its jobs (active ones are canceled on the backend first).
#[utoipa::path(delete, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 204, description = "Task forgotten"),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(State(d): State<App>, Id(id): Id) -> Result<StatusCode, Problem> {
    d.delete_task(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
