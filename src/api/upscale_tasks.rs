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
use super::params::udp_problem;
use super::problem::{Problem, ProblemBody};
use crate::daemon::Daemon;
use crate::job::validate::parse_task_request;
use crate::job::{Dimension, Label, OutputFormat, ServiceDetails, Task, TaskRequest, TaskSummary};
use crate::platform::udp::validate_arguments;

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
}

/// Create an upscale task and its unit jobs.
#[utoipa::path(post, path = "/upscale_tasks", tag = "upscale tasks",
    request_body = TaskRequestBody,
    responses(
        (status = 201, description = "Task accepted, with its jobs", body = Task),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(State(d): State<Daemon>, ApiJson(body): ApiJson) -> Result<Response, Problem> {
    let mut req = parse_task_request(&body).map_err(Problem::invalid)?;
    if req.job.label == Label::Openeo {
        validate_against_udp(&d, &mut req).await?;
    }
    let task = d.store().insert_task(req).await?;
    for job in d.store().jobs_of_task(task.id).await? {
        d.events().job_changed(&job);
        d.scheduler().job_added(&d, &job);
    }
    d.events().task_changed(&task);
    let location = format!("/upscale_tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    )
        .into_response())
}

/// Validates every sub-job's parameters against the UDP, and keeps what will be sent
/// (a polygon given for a bounding box becomes its box) in the request.
async fn validate_against_udp(d: &Daemon, req: &mut TaskRequest) -> Result<(), Problem> {
    let udp = d
        .udps()
        .get(&req.job.service.application)
        .await
        .map_err(udp_problem)?;
    let name = req.dimension.name.clone();
    let mut errors = Vec::new();
    let mut shared = None;
    for (i, value) in req.dimension.values.iter_mut().enumerate() {
        let mut args = req.job.parameters.clone();
        args.insert(name.clone(), value.clone());
        match validate_arguments(&udp, &args) {
            Ok(mut sent) => {
                if let Some(v) = sent.remove(&name) {
                    *value = v;
                }
                shared.get_or_insert(sent);
            }
            Err(errs) => {
                for mut e in errs {
                    let prefix = format!("parameters.{name}");
                    if let Some(rest) = e.name.strip_prefix(&prefix) {
                        e.name = format!("dimension.values[{i}]{rest}");
                    }
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    if let Some(sent) = shared {
        req.job.parameters = sent;
    }
    Ok(())
}

/// List upscale tasks, newest first (*ext*).
#[utoipa::path(get, path = "/upscale_tasks", tag = "upscale tasks",
    responses((status = 200, description = "Tasks, newest first", body = Vec<TaskSummary>)))]
pub async fn list(State(d): State<Daemon>) -> Result<Json<Vec<TaskSummary>>, Problem> {
    Ok(Json(d.store().tasks().await?))
}

/// Read one upscale task with its jobs and counts per status.
#[utoipa::path(get, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_one(State(d): State<Daemon>, Id(id): Id) -> Result<Json<Task>, Problem> {
    d.store()
        .task(id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::task_not_found(id))
}

/// Forget an upscale task and its jobs (active ones are canceled on the backend first).
#[utoipa::path(delete, path = "/upscale_tasks/{id}", tag = "upscale tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 204, description = "Task forgotten"),
        (status = 404, description = "No such task", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete(State(d): State<Daemon>, Id(id): Id) -> Result<StatusCode, Problem> {
    let task = d
        .store()
        .task(id)
        .await?
        .ok_or_else(|| Problem::task_not_found(id))?;
    let jobs = d.store().jobs_of_task(id).await?;
    for job in jobs.iter().filter(|j| !j.status.is_terminal()) {
        super::unit_jobs::cancel_on_backend(&d, job).await?;
    }
    if d.store().delete_task(id).await? {
        for job in &jobs {
            d.events().job_deleted(job);
        }
        d.events().task_deleted(&task);
    }
    Ok(StatusCode::NO_CONTENT)
}
