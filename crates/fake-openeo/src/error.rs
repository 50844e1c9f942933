//! openEO error responses: every 4xx/5xx carries `{"id", "code", "message", "links": []}` with
//! `Content-Type: application/json`, codes and statuses as in the API's `errors.json`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An openEO error about to be sent.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// openEO error code (`JobNotFound`, ...).
    pub code: String,
    /// English message.
    pub message: String,
    /// Extra headers (`Retry-After`, `Content-Range`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn job_not_found(id: &str) -> Self {
        Self::new(
            404,
            "JobNotFound",
            format!("The batch job '{id}' does not exist."),
        )
    }

    pub fn not_found() -> Self {
        Self::new(404, "NotFound", "Resource not found.")
    }

    pub fn token_invalid() -> Self {
        Self::new(
            403,
            "TokenInvalid",
            "Authorization token has expired or is invalid. Please authenticate again.",
        )
    }
}

/// A fresh opaque error id, as real backends put in `id` for support requests.
pub(crate) fn error_id() -> String {
    format!("r-{:016x}", rand::random::<u64>())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "id": error_id(),
            "code": self.code,
            "message": self.message,
            "links": [],
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
