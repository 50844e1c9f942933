//! Extractors that turn every client mistake into a [`Problem`]: a JSON body
//! ([`ApiJson`]) and integer path ids ([`Id`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde_json::Value;

use super::problem::Problem;
use crate::app::App;

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
