//! `POST /estimate`, `GET /budgets` and `PUT /budgets` (*ext*): what a request would
//! cost before it is submitted, and the per-backend budgets that refuse or hold back
//! what would overspend (the rules are in [`crate::app`]'s cost module and
//! [`crate::job::cost`]).

use axum::extract::State;
use axum::Json;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::app::{App, BudgetEntry, BudgetRequest, EstimateAnswer};
use crate::job::validate::{typed, FieldError, JobRequestBody, TaskRequestBody};

/// Body of `POST /estimate`: a unit job's body or, with `dimension`, an upscale
/// task's; the application layer reads it as one of the two.
pub struct EstimateBody;

impl utoipa::PartialSchema for EstimateBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        use utoipa::openapi::Ref;
        OneOfBuilder::new()
            .item(Ref::from_schema_name("JobRequestBody"))
            .item(Ref::from_schema_name("TaskRequestBody"))
            .description(Some(
                "A POST /unit_jobs body, or (with `dimension`) a POST /upscale_tasks body",
            ))
            .into()
    }
}

impl utoipa::ToSchema for EstimateBody {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "JobRequestBody".into(),
            <JobRequestBody as utoipa::PartialSchema>::schema(),
        ));
        schemas.push((
            "TaskRequestBody".into(),
            <TaskRequestBody as utoipa::PartialSchema>::schema(),
        ));
        <JobRequestBody as utoipa::ToSchema>::schemas(schemas);
        <TaskRequestBody as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The estimate of a unit job or upscale task body, without submitting it: the same
/// body as `POST /unit_jobs` (or `POST /upscale_tasks`, recognised by `dimension`).
/// The amount comes from the service's catalogue record (`cost_estimate`,
/// `cost_unit`) and the request's extent; `basis` says how sure it is; `budget` says
/// whether the submission would be refused with `BudgetExceeded`.
#[utoipa::path(post, path = "/estimate", tag = "costs",
    request_body(content = inline(EstimateBody), description = "A POST /unit_jobs or POST /upscale_tasks body"),
    responses(
        (status = 200, description = "The estimate", body = EstimateAnswer),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn estimate(
    State(d): State<App>,
    ApiJson(body): ApiJson,
) -> Result<Json<EstimateAnswer>, Problem> {
    Ok(Json(d.estimate(&body).await?))
}

/// Every known backend's budgets (`budget_per_day`, `budget_per_month` of its
/// `config.toml` section) and what was spent against them today and this month (UTC):
/// reported costs, else estimates, of the jobs accepted.
#[utoipa::path(get, path = "/budgets", tag = "costs",
    responses(
        (status = 200, description = "Budgets per backend", body = Vec<BudgetEntry>),
    ))]
pub async fn budgets(State(d): State<App>) -> Result<Json<Vec<BudgetEntry>>, Problem> {
    Ok(Json(d.budgets().await?))
}

/// Sets a backend's budgets (`null` removes one): written into `config.toml` (the
/// rest of the file is kept) and applied at once; jobs waiting for budget are sent
/// when it allows.
#[utoipa::path(put, path = "/budgets", tag = "costs",
    request_body = BudgetRequest,
    responses(
        (status = 200, description = "The backend's budgets now", body = BudgetEntry),
        (status = 409, description = "config.toml could not be written", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn set_budget(
    State(d): State<App>,
    ApiJson(body): ApiJson,
) -> Result<Json<BudgetEntry>, Problem> {
    let req = parse_budget(&body)?;
    Ok(Json(d.set_budget(req).await?))
}

/// Reads a `PUT /budgets` body as a [`BudgetRequest`], naming each wrong field first
/// (the ranges and the URL are the application layer's checks).
fn parse_budget(body: &serde_json::Value) -> Result<BudgetRequest, Problem> {
    let Some(obj) = body.as_object() else {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["backend", "per_day", "per_month"].contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.clone(),
                "unknown field; expected one of: backend, per_day, per_month",
            ));
        }
    }
    match obj.get("backend") {
        Some(serde_json::Value::String(_)) => {}
        None | Some(serde_json::Value::Null) => {
            errors.push(FieldError::new("backend", "is required"))
        }
        Some(_) => errors.push(FieldError::new(
            "backend",
            "must be a string (the backend URL)",
        )),
    }
    for name in ["per_day", "per_month"] {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => {}
            Some(v) if v.as_f64().is_some() => {}
            Some(_) => errors.push(FieldError::new(name, "must be a number or null")),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    typed::<BudgetRequest>(body).map_err(Problem::invalid)
}
