//! The local HTTP API: an axum router with one file per resource, the security
//! [`guard`], one error shape ([`problem`]) and an OpenAPI document generated from the
//! handlers' annotations (`GET /openapi.json`).
//!
//! Layers, outermost first: request id (echoes a sane `X-Request-Id` /
//! `X-Correlation-ID` or makes one; every problem body carries it), hardening headers,
//! the guard (host, browser, token, content type, declared size), the body limit, a
//! timeout for ordinary requests, then the routes.

// `Problem` is returned once per failed request; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod costs;
pub mod extract;
pub mod files;
pub mod guard;
pub mod params;
pub mod problem;
pub mod server;
pub mod services;
pub mod sync_jobs;
pub mod system;
pub mod tiles;
pub mod unit_jobs;
pub mod upscale_tasks;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::daemon::VERSION;
use problem::{Problem, REQUEST_ID};

/// Default time limit for ordinary requests (not `/events`), body included, so that a
/// stuck or trickling request cannot hold a connection or shutdown for ever
/// (`request_timeout_s` in config.toml).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "eodispatch local API",
        description = "Local dispatcher of Earth-observation processing jobs. Paths and bodies \
            follow the ESA APEx Dispatch API, so APEx scripts work by changing the base URL; \
            routes marked *ext* are ours. Every route except /health needs \
            `Authorization: Bearer <token>` (`eodispatch token` prints it). Errors are \
            application/problem+json with `code` and `request_id`.\n\n\
            `POST /tiles` cells are true kilometres: squares of 20 or 250 km in the UTM zone \
            (WGS84) of the AOI's centre, snapped to multiples of the cell size, returned as \
            WGS84 polygons — not Web-Mercator metres."
    ),
    // Types only named by query parameters, which do not register their schemas.
    components(schemas(system::OverviewFilter)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "unit jobs", description = "Single processing jobs"),
        (name = "upscale tasks", description = "Fan-out of a service over a parameter dimension"),
        (name = "tiles", description = "Splitting an area of interest into a grid"),
        (name = "backends", description = "Backends and logging in to them"),
        (name = "system", description = "Health, status overview and live events"),
        (name = "services", description = "The service catalogue and service parameters"),
        (name = "costs", description = "Cost estimates and budgets"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = VERSION.to_string();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes and the OpenAPI document that describes them. The streams (`/events`,
/// the WebSockets, file downloads) and synchronous processing (`/sync_jobs`, bounded
/// by the platform's own time limit) are kept apart so that the request timeout does
/// not cut them.
fn api_router(request_timeout: Duration) -> (Router<App>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(unit_jobs::create, unit_jobs::list))
        .routes(routes!(unit_jobs::get_one, unit_jobs::delete))
        .routes(routes!(unit_jobs::cancel))
        .routes(routes!(unit_jobs::retry))
        .routes(routes!(unit_jobs::results))
        .routes(routes!(unit_jobs::download_results))
        .routes(routes!(unit_jobs::logs))
        .routes(routes!(upscale_tasks::create, upscale_tasks::list))
        .routes(routes!(upscale_tasks::get_one, upscale_tasks::delete))
        .routes(routes!(upscale_tasks::cancel))
        .routes(routes!(upscale_tasks::retry))
        .routes(routes!(tiles::create))
        .routes(routes!(params::params))
        .routes(routes!(services::services))
        .routes(routes!(services::service))
        .routes(routes!(services::catalogue))
        .routes(routes!(costs::estimate))
        .routes(routes!(costs::budgets, costs::set_budget))
        .routes(routes!(system::health))
        .routes(routes!(system::jobs_status))
        .routes(routes!(auth::backends))
        .routes(routes!(auth::login))
        .routes(routes!(auth::login_status))
        .routes(routes!(auth::callback))
        .routes(routes!(auth::logout))
        .split_for_parts();
    let (streams, streams_doc) = OpenApiRouter::new()
        .routes(routes!(system::events))
        .routes(routes!(sync_jobs::create))
        .routes(routes!(ws::jobs_status))
        .routes(routes!(ws::task))
        .routes(routes!(files::file))
        .split_for_parts();
    // Ordinary routes (not the streams) may answer 408 when a request is too slow.
    document_answers(&mut doc, true);
    let mut streams_doc = streams_doc;
    document_answers(&mut streams_doc, false);
    doc.merge(streams_doc);
    add_openapi_path(&mut doc);
    let served = Arc::new(doc.clone());
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        request_timeout,
    );
    let routes = routes
        .route(
            "/openapi.json",
            get(move || {
                let doc = served.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .layer(timeout)
        .merge(streams);
    (routes, doc)
}

/// The OpenAPI document of the API (also served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router(REQUEST_TIMEOUT).1
}

/// Adds to every operation the answers that come from the layers every route passes
/// through rather than from its handler, so that the document states every status a
/// route can answer: 403 (the guard's `Host` and browser checks, on every route), 401
/// (the token, except on the guard's public routes), 413 and 415 (the guard's and the
/// body limit's checks of mutations), 400 (a path parameter that does not decode or is
/// not an integer id, a body that is not JSON) and, with `timed`, 408 (the request
/// timeout). A handler's own description of a status is kept.
fn document_answers(doc: &mut utoipa::openapi::OpenApi, timed: bool) {
    use utoipa::openapi::path::ParameterIn;
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = guard::PUBLIC_PATHS.contains(&path.as_str())
            || guard::PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p));
        let operations = [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (true, &mut item.delete),
            (false, &mut item.head),
            (true, &mut item.patch),
        ];
        for (mutation, op) in operations {
            let Some(op) = op.as_mut() else { continue };
            let has_path_params = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, ParameterIn::Path));
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| problem_response(description).into());
            };
            add(
                "403",
                "The `Host` header is not 127.0.0.1, localhost or [::1] with the daemon's \
                 port (`HostNotAllowed`), or the request comes from a web page \
                 (`BrowserRequestRejected`)",
            );
            if !public {
                add("401", "No or a wrong API token (`Unauthorized`)");
            }
            if mutation {
                add(
                    "413",
                    "The body is over `max_body_bytes` (`PayloadTooLarge`)",
                );
                add(
                    "415",
                    "A body or `Content-Type` that is not `application/json` (`UnsupportedMediaType`)",
                );
            }
            if op.request_body.is_some() {
                add("400", "The body is not JSON (`MalformedJson`)");
            }
            if has_path_params {
                add(
                    "400",
                    "A path parameter that does not decode, or an id that is not an integer",
                );
            }
            if timed {
                add(
                    "408",
                    "The request took longer than `request_timeout_s` (`RequestTimeout`)",
                );
            }
        }
    }
}

/// A response whose body is a problem.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            problem::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("ProblemBody"))),
        )
        .build()
}

fn add_openapi_path(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::ResponseBuilder;
    let op = OperationBuilder::new()
        .summary(Some("This OpenAPI document (*ext*)"))
        .tag("system")
        .response(
            "200",
            ResponseBuilder::new().description("OpenAPI 3.1 document"),
        )
        .response(
            "401",
            problem_response("No or a wrong API token (`Unauthorized`)"),
        )
        .response(
            "403",
            problem_response("The `Host` header or a web page's request is refused"),
        )
        .response(
            "408",
            problem_response("The request took longer than `request_timeout_s`"),
        )
        .build();
    doc.paths
        .paths
        .insert("/openapi.json".into(), PathItem::new(HttpMethod::Get, op));
}

/// The complete router with its state and layers.
pub fn router(daemon: App) -> Router {
    let (routes, _) = api_router(Duration::from_secs_f64(daemon.config().request_timeout_s));
    let limit = daemon.config().max_body_bytes;
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(daemon.clone(), guard::guard))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn(problems_only))
        .layer(middleware::from_fn(request_id))
        .with_state(daemon)
}

/// The last word on every refusal: an error answer that is not problem+json yet (a
/// request timeout, a rejection by one of axum's own extractors) becomes one, with the
/// original text (secrets removed) as `detail`. The browser login's HTML page stays.
async fn problems_only(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if kind.starts_with(problem::PROBLEM_JSON) || kind.starts_with("text/html") {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let (code, title) = match status.as_u16() {
        400 => ("BadRequest", "Bad request"),
        404 => ("NotFound", "Not found"),
        405 => ("MethodNotAllowed", "Method not allowed"),
        408 => ("RequestTimeout", "Request timeout"),
        413 => ("PayloadTooLarge", "Request body too large"),
        415 => ("UnsupportedMediaType", "Unsupported media type"),
        431 => ("HeadersTooLarge", "Request headers too large"),
        500 => ("Internal", "Internal error"),
        503 => ("ServiceUnavailable", "Service unavailable"),
        _ => ("HttpError", "Request refused"),
    };
    let detail = if text.is_empty() {
        match status.as_u16() {
            408 => "the request took longer than request_timeout_s and was cut off".to_string(),
            _ => status
                .canonical_reason()
                .unwrap_or("refused")
                .to_ascii_lowercase(),
        }
    } else {
        crate::redact::redact(&text.chars().take(300).collect::<String>())
    };
    let mut out = Problem::new(status, code, title, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// `X-Request-Id` header name.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Correlation-ID` header name (APEx's name for the same thing).
pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Gives every request an id (the client's `X-Request-Id`/`X-Correlation-ID` when it is
/// short and printable, else a fresh UUID), available to handlers and problems, echoed
/// in the response and logged.
async fn request_id(req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&X_REQUEST_ID)
        .or_else(|| req.headers().get(&X_CORRELATION_ID))
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    tracing::debug!(request_id = %id, %method, %path, status = resp.status().as_u16(), "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
        resp.headers_mut().insert(X_CORRELATION_ID.clone(), v);
    }
    resp
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "No such route",
        format!(
            "there is no route {}; GET /openapi.json lists them all",
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "Method not allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
