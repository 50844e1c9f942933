//! The one error shape of the HTTP edge: `application/problem+json` (RFC 9457) with
//! `type, title, status, detail`, a stable `code`, the `request_id` of the request and,
//! for validation errors, `errors: [{name, reason}]`.
//!
//! Handlers return `Result<_, Problem>`; module errors convert into a [`Problem`] here,
//! and internal errors are logged with the request id but never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::auth::oidc::OidcError;
use crate::auth::AuthError;
use crate::job::validate::FieldError;
use crate::platform::{PlatformError, ServiceError};
use crate::store::StoreError;
use crate::tiles::TileError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

tokio::task_local! {
    /// The id of the request being handled (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The request id of the current request, or `-` outside of one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".to_string())
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `JobNotFound`.
    pub code: &'static str,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// What went wrong in this case.
    pub detail: String,
    /// Invalid fields, for validation errors.
    pub errors: Vec<FieldError>,
    /// Extra response header (e.g. `WWW-Authenticate`).
    pub header: Option<(header::HeaderName, HeaderValue)>,
    /// Members of this problem type beyond the standard ones (e.g. `BudgetExceeded`'s
    /// `budget`, `limit`, `spent`, `estimate`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The JSON body of a problem (documented in the OpenAPI document).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// URI naming the problem type: `urn:eodispatch:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Id of the request, also in the daemon's log and the `X-Request-Id` header.
    pub request_id: String,
    /// One entry per invalid field (validation errors only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members of some problem types (`BudgetExceeded`: `budget`, `backend`, `limit`,
    /// `spent`, `estimate`, `unit`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with the given status, code, title and detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            header: None,
            extra: serde_json::Map::new(),
        }
    }

    /// 422: the request is well-formed JSON but some fields are invalid.
    pub fn invalid(errors: Vec<FieldError>) -> Problem {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.name, one.reason),
            many => format!(
                "{} fields are invalid: {}",
                many.len(),
                many.iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Problem {
            errors,
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidParameter",
                "Invalid request",
                detail,
            )
        }
    }

    /// 422 for a single field.
    pub fn invalid_field(name: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem::invalid(vec![FieldError::new(name, reason)])
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "MalformedJson",
            "Request body is not valid JSON",
            detail,
        )
    }

    /// 413: the body is over the size limit.
    pub fn too_large(limit: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            "Request body too large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    /// 404 for an unknown job.
    pub fn job_not_found(id: i64) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "JobNotFound",
            "Job not found",
            format!("there is no unit job with id {id}"),
        )
    }

    /// 404 for an unknown task.
    pub fn task_not_found(id: i64) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "TaskNotFound",
            "Upscale task not found",
            format!("there is no upscale task with id {id}"),
        )
    }

    /// 503 when `max` event streams (SSE and WebSockets) are open already.
    pub fn too_many_streams(max: usize) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TooManyStreams",
            "Too many event streams",
            format!(
                "{max} event streams are open already (max_event_streams); close one, or \
                 raise the limit in config.toml"
            ),
        )
        .with_header(header::RETRY_AFTER, "5")
    }

    /// 500: something broke inside the daemon. The cause is logged, not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Problem {
        let request_id = current_request_id();
        tracing::error!(%request_id, error = %cause, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "Internal error",
            format!(
                "the daemon could not handle the request; see its log for request {request_id}"
            ),
        )
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Problem {
        self.header = Some((name, HeaderValue::from_static(value)));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_: format!("urn:eodispatch:problem:{}", self.code),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            request_id: current_request_id(),
            errors: self.errors.clone(),
            extra: self.extra.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        if let Some((name, value)) = self.header {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::KeyReused => Problem::invalid_field(
                "Idempotency-Key",
                "this key was used before with a different request body; use a new key for a new job",
            ),
            StoreError::Closed => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ShuttingDown",
                "The daemon is shutting down",
                "the job store is closed because the daemon is stopping; try again after it restarts",
            ),
            e => Problem::internal(&e),
        }
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Problem {
        match e {
            AppError::JobNotFound(id) => Problem::job_not_found(id),
            AppError::TaskNotFound(id) => Problem::task_not_found(id),
            AppError::Invalid(errors) => Problem::invalid(errors),
            AppError::Conflict {
                code,
                title,
                detail,
            } => Problem::new(StatusCode::CONFLICT, code, title, detail),
            AppError::BudgetExceeded(over) => Problem {
                extra: match serde_json::to_value(&over) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                },
                ..Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "BudgetExceeded",
                    "Budget exceeded",
                    over.sentence(),
                )
            },
            AppError::NoResults(detail) => Problem::new(
                StatusCode::NOT_FOUND,
                "ResultsNotAvailable",
                "No results yet",
                detail,
            ),
            AppError::Service(e) => e.into(),
            AppError::Backend(e) => e.into(),
            AppError::Auth(e) => e.into(),
            AppError::Store(e) => e.into(),
        }
    }
}

impl From<ServiceError> for Problem {
    /// A definition that cannot be had now is a 502; one the backend wants a login
    /// for is a 409 `LoginRequired`; a service that does not exist is a 422 naming
    /// `service.application`.
    fn from(e: ServiceError) -> Problem {
        let detail = crate::redact::redact(&e.to_string());
        match e {
            ServiceError::Unavailable(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                "The service definition could not be fetched",
                detail,
            ),
            ServiceError::LoginRequired(_) => Problem::new(
                StatusCode::CONFLICT,
                "LoginRequired",
                "Backend login required",
                detail,
            ),
            ServiceError::Invalid(_) => Problem::invalid_field("service.application", detail),
            ServiceError::Arguments(_) => Problem::invalid_field("parameters", detail),
        }
    }
}

impl From<PlatformError> for Problem {
    /// 503 when the backend is unreachable or busy, 409 `LoginRequired` for a refused
    /// login, the backend's own refusal as 502 with its message.
    fn from(e: PlatformError) -> Problem {
        let detail = crate::redact::redact(&e.to_string());
        match &e {
            PlatformError::Auth { .. } => Problem::new(
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
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Problem {
        let detail = crate::redact::redact(&e.to_string());
        match &e {
            AuthError::Invalid { field, reason } => Problem::invalid_field(*field, reason.clone()),
            AuthError::UnknownLogin(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "LoginNotFound",
                "No such login",
                detail,
            ),
            AuthError::Oidc(o) if o.is_transient() => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "IdentityProviderUnreachable",
                "Identity provider unreachable",
                detail,
            ),
            AuthError::Oidc(OidcError::Rejected { .. }) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "LoginRefused",
                "The identity provider refused the login",
                detail,
            ),
            AuthError::Oidc(OidcError::Unsupported(_)) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "LoginNotSupported",
                "Login method not supported",
                detail,
            ),
            AuthError::Oidc(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "IdentityProviderError",
                "Identity provider error",
                detail,
            ),
            AuthError::Tokens(_) | AuthError::Session(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TokenStoreUnavailable",
                "Token store unavailable",
                detail,
            ),
            AuthError::Store(s) => Problem::internal(s),
        }
    }
}

impl From<TileError> for Problem {
    fn from(e: TileError) -> Problem {
        Problem::invalid_field("aoi", e.to_string())
    }
}
