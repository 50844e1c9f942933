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

/// Declares [`ErrorCode`] from one list: the enum, [`ErrorCode::ALL`] and
/// [`ErrorCode::as_str`] (the variant's name, as serde writes it) cannot disagree.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Every `code` a problem can carry, so that clients can match on them and the
        /// OpenAPI document lists them (`ProblemBody.code`). A code not listed here is a
        /// bug: debug builds panic on it ([`Problem::body`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as it is written in a problem.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }
        }
    };
}

error_codes! {
    /// 400: a request the HTTP layer could not read
    BadRequest,
    /// 400: the body is not JSON (or a path segment does not decode)
    MalformedJson,
    /// 422 (400 for a path or query parameter): fields named in `errors`
    InvalidParameter,
    /// 401: no or a wrong API token
    Unauthorized,
    /// 403: the `Host` header is not a loopback name with the daemon's port
    HostNotAllowed,
    /// 403: the request came from a web page
    BrowserRequestRejected,
    /// 404: no such route
    NotFound,
    /// 404: no unit job with this id
    JobNotFound,
    /// 404: no upscale task with this id
    TaskNotFound,
    /// 404: the job has no results (yet)
    ResultsNotAvailable,
    /// 404: no service with this id in the catalogue
    ServiceNotFound,
    /// 404: no login attempt with this id
    LoginNotFound,
    /// 404: no such published result file
    FileNotFound,
    /// 405: the route does not take this method
    MethodNotAllowed,
    /// 408: the request took longer than `request_timeout_s`
    RequestTimeout,
    /// 409: the job has ended already
    JobEnded,
    /// 409: every sub-job of the task has ended already
    TaskEnded,
    /// 409: only failed or canceled jobs are retried
    JobNotRetryable,
    /// 409: no sub-job of the task is failed or canceled
    NothingToRetry,
    /// 409: the job is being sent to its backend right now
    JobBeingSubmitted,
    /// 409: the job has not finished
    JobNotFinished,
    /// 409: the job has not reached its backend yet
    JobNotSubmitted,
    /// 409: the job's results are in place already
    ResultsReady,
    /// 409: the backend needs a login
    LoginRequired,
    /// 409: `config.toml` could not be written
    ConfigNotWritten,
    /// 409: a local file could not be read or written
    LocalIoError,
    /// 413: the body is over `max_body_bytes`
    PayloadTooLarge,
    /// 415: the body is not `application/json`
    UnsupportedMediaType,
    /// 416: the asked byte range is outside the file
    RangeNotSatisfiable,
    /// 422: the submission would overspend a budget (`budget`, `limit`, `spent`, `estimate`)
    BudgetExceeded,
    /// 422: the identity provider refused the login
    LoginRefused,
    /// 422: the login method is not supported by the provider
    LoginNotSupported,
    /// 431: the request headers are too large
    HeadersTooLarge,
    /// 500: something broke inside the daemon (the cause is in its log)
    Internal,
    /// 502: the backend refused or failed (its message)
    BackendError,
    /// 502: the service definition could not be fetched (503: the daemon cannot answer now)
    ServiceUnavailable,
    /// 502: the identity provider failed
    IdentityProviderError,
    /// 503: the backend cannot be reached
    BackendUnreachable,
    /// 503: the identity provider cannot be reached
    IdentityProviderUnreachable,
    /// 503: the OS keyring cannot be used
    TokenStoreUnavailable,
    /// 503: `max_event_streams` streams are open already
    TooManyStreams,
    /// 503 (409 for a job action): the daemon is stopping
    ShuttingDown,
    /// 400: a WebSocket route was asked without the upgrade
    NotAWebSocket,
    /// any other refusal of the HTTP layer
    HttpError,
}

impl ErrorCode {
    /// The code written `s`, if there is one.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
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
    #[schema(value_type = ErrorCode)]
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
        debug_assert!(
            ErrorCode::parse(self.code).is_some(),
            "problem code {:?} is not an ErrorCode",
            self.code
        );
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
