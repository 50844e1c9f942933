//! Extractors that turn every client mistake into a [`Problem`]: a JSON body
//! ([`ApiJson`]), integer path ids ([`Id`]), other path segments ([`Segments`]) and
//! query strings ([`ApiQuery`], which names a repeated or malformed parameter).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::problem::Problem;
use crate::app::App;
use crate::job::validate::FieldError;

/// A JSON body, parsed but not yet validated. Empty, malformed and oversized bodies
/// become problems (400, 400, 413).
pub struct ApiJson(pub Value);

impl FromRequest<App> for ApiJson {
    type Rejection = Problem;

    async fn from_request(req: Request, daemon: &App) -> Result<Self, Problem> {
        let limit = daemon.config().max_body_bytes;
        let bytes = Bytes::from_request(req, daemon).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(limit)
            } else {
                Problem::malformed_json(e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Problem::malformed_json(
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| Problem::malformed_json(e.to_string()))
    }
}

/// An integer id from the path (`/unit_jobs/{id}`); anything else is a 400 naming `id`.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::malformed_json(e.body_text()))?;
        raw.parse::<i64>().map(Id).map_err(|_| Problem {
            status: StatusCode::BAD_REQUEST,
            ..Problem::invalid_field("id", format!("{raw:?} is not an integer id"))
        })
    }
}

/// A query string, deserialised into `T`. A parameter given twice, unknown where the
/// type says so, or malformed is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => {
                let text = e.body_text();
                let reason = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                // serde names the field between backticks: "duplicate field `limit`".
                let name = reason
                    .split('`')
                    .nth(1)
                    .filter(|n| !n.is_empty())
                    .unwrap_or("query")
                    .to_string();
                let reason = if reason.starts_with("duplicate field") {
                    "is given more than once; give each query parameter once".to_string()
                } else {
                    reason
                };
                Err(Problem {
                    status: StatusCode::BAD_REQUEST,
                    ..Problem::invalid(vec![FieldError::new(name, reason)])
                })
            }
        }
    }
}

/// Path segments as text. A segment that is not valid UTF-8 once percent-decoded is a
/// 400 problem naming the path.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|e| Problem {
                status: StatusCode::BAD_REQUEST,
                ..Problem::invalid_field("path", e.body_text())
            })
    }
}
