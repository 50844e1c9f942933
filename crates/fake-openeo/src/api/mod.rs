//! The HTTP surface: the route table (also the source of the capabilities' `endpoints` and of
//! the statistics' route templates), the axum router, and the discovery documents —
//! `/.well-known/openeo`, capabilities, `/conformance`, `/file_formats`, `/processes`,
//! `/credentials/oidc`, `/me` — plus the UDP files under `/udp/`.

pub(crate) mod jobs;
pub(crate) mod results;
pub(crate) mod sync;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::ApiError;
use crate::state::Shared;

/// Where the versioned API lives.
pub const API_PREFIX: &str = "/openeo/1.2";

/// The conformance class of the remote process definition extension.
pub const REMOTE_PROCESS_DEFINITION: &str =
    "https://api.openeo.org/extensions/remote-process-definition/0.1.0";

/// API routes, relative to [`API_PREFIX`], with their methods; more specific first.
pub(crate) const API_ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/conformance", &["GET"]),
    ("/credentials/oidc", &["GET"]),
    ("/me", &["GET"]),
    ("/file_formats", &["GET"]),
    ("/processes", &["GET"]),
    ("/validation", &["POST"]),
    ("/result", &["POST"]),
    ("/jobs", &["GET", "POST"]),
    ("/jobs/{job_id}", &["GET", "PATCH", "DELETE"]),
    ("/jobs/{job_id}/estimate", &["GET"]),
    ("/jobs/{job_id}/logs", &["GET"]),
    ("/jobs/{job_id}/results", &["GET", "POST", "DELETE"]),
    ("/jobs/{job_id}/results/assets/{filename}", &["GET"]),
    (
        "/jobs/{job_id}/results/assets/{user_b64}/{signature}/{filename}",
        &["GET"],
    ),
    ("/jobs/{job_id}/results/{user_b64}/{signature}", &["GET"]),
];

/// Routes outside the API (full paths).
pub(crate) const OTHER_ROUTES: &[&str] = &["/.well-known/openeo", "/udp/{name}"];

/// The route template a path belongs to: API routes relative to the API root, others full.
/// Unknown paths are returned as they are.
pub(crate) fn route_template(path: &str) -> (String, String) {
    let rel = if path == API_PREFIX {
        Some("/")
    } else {
        path.strip_prefix(API_PREFIX).filter(|r| r.starts_with('/'))
    };
    match rel {
        Some(rel) => {
            let t = API_ROUTES
                .iter()
                .map(|(t, _)| *t)
                .find(|t| template_matches(t, rel))
                .unwrap_or(rel);
            (t.to_string(), rel.to_string())
        }
        None => {
            let t = OTHER_ROUTES
                .iter()
                .copied()
                .find(|t| template_matches(t, path))
                .unwrap_or(path);
            (t.to_string(), path.to_string())
        }
    }
}

fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(a, b)| {
            if a.starts_with('{') {
                !b.is_empty()
            } else {
                a == b
            }
        })
}

/// The whole router (API, discovery, UDP files, test controls).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = |p: &str| {
        if p == "/" {
            API_PREFIX.to_string()
        } else {
            format!("{API_PREFIX}{p}")
        }
    };
    Router::new()
        .route("/.well-known/openeo", get(well_known))
        .route("/udp/{name}", get(udp_file))
        .route(&api("/"), get(capabilities))
        .route(&api("/conformance"), get(conformance))
        .route(&api("/credentials/oidc"), get(credentials_oidc))
        .route(&api("/me"), get(me))
        .route(&api("/file_formats"), get(file_formats))
        .route(&api("/processes"), get(processes))
        .route(&api("/validation"), post(jobs::validation))
        .route(&api("/result"), post(sync::result))
        .route(&api("/jobs"), get(jobs::list).post(jobs::create))
        .route(
            &api("/jobs/{job_id}"),
            get(jobs::describe).patch(jobs::update).delete(jobs::delete),
        )
        .route(&api("/jobs/{job_id}/estimate"), get(jobs::estimate))
        .route(&api("/jobs/{job_id}/logs"), get(jobs::logs))
        .route(
            &api("/jobs/{job_id}/results"),
            get(results::document)
                .post(jobs::start)
                .delete(jobs::cancel),
        )
        .route(
            &api("/jobs/{job_id}/results/assets/{filename}"),
            get(results::asset),
        )
        .route(
            &api("/jobs/{job_id}/results/assets/{user_b64}/{signature}/{filename}"),
            get(results::signed_asset),
        )
        .route(
            &api("/jobs/{job_id}/results/{user_b64}/{signature}"),
            get(results::signed_document),
        )
        .merge(crate::control::router())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                405,
                "MethodNotAllowed",
                "This method is not allowed on this resource.",
            )
        })
        .with_state(shared)
}

async fn well_known(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "versions": [{
            "url": shared.api_url,
            "api_version": "1.2.0",
            "production": true,
        }]
    }))
}

fn conforms_to() -> Value {
    json!(["https://api.openeo.org/1.2.0", REMOTE_PROCESS_DEFINITION,])
}

async fn capabilities(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let endpoints: Vec<Value> = API_ROUTES
        .iter()
        .filter(|(path, _)| *path != "/")
        .map(|(path, methods)| json!({"path": path, "methods": methods}))
        .collect();
    let api = &shared.api_url;
    Json(json!({
        "type": "Catalog",
        "api_version": "1.2.0",
        "backend_version": env!("CARGO_PKG_VERSION"),
        "stac_version": "1.0.0",
        "id": "fake-openeo",
        "title": "Fake openEO backend",
        "description": "A fake openEO backend for tests and demos. Jobs do not process anything: \
                        they follow a plan (queued, running, then finished or error) and produce \
                        generated result files.",
        "production": false,
        "endpoints": endpoints,
        "conformsTo": conforms_to(),
        "billing": {
            "currency": "credits",
            "default_plan": "free",
            "plans": [{"name": "free", "description": "Everything is free on the fake.", "paid": false}],
        },
        "links": [
            {"rel": "self", "href": format!("{api}/"), "type": "application/json"},
            {"rel": "version-history", "href": format!("{}/.well-known/openeo", shared.base_url), "type": "application/json"},
            {"rel": "conformance", "href": format!("{api}/conformance"), "type": "application/json"},
        ],
    }))
}

async fn conformance() -> Json<Value> {
    Json(json!({"conformsTo": conforms_to()}))
}

async fn credentials_oidc(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"providers": shared.config.effective_providers()}))
}

async fn me(State(shared): State<Arc<Shared>>, user: User) -> Json<Value> {
    let _ = shared;
    Json(json!({
        "user_id": user.id,
        "name": user.name,
        "default_plan": "free",
        "budget": null,
        "links": [],
    }))
}

async fn file_formats() -> Json<Value> {
    let raster =
        |title: &str| json!({"title": title, "gis_data_types": ["raster"], "parameters": {}});
    Json(json!({
        "input": {
            "GTiff": raster("GeoTIFF"),
        },
        "output": {
            "GTiff": raster("GeoTIFF"),
            "netCDF": raster("Network Common Data Form"),
            "GeoJSON": {"title": "GeoJSON", "gis_data_types": ["vector"], "parameters": {}},
            "JSON": {"title": "JavaScript Object Notation", "gis_data_types": ["other"], "parameters": {}},
        }
    }))
}

async fn processes() -> Json<Value> {
    Json(json!({
        "processes": [
            {
                "id": "load_collection",
                "summary": "Load a collection",
                "description": "Loads a collection from the current back-end by its id and returns it as a processable data cube.",
                "categories": ["cubes", "import"],
                "parameters": [
                    {"name": "id", "description": "The collection id.", "schema": {"type": "string", "subtype": "collection-id"}},
                    {"name": "spatial_extent", "description": "Limits the data to load to the given extent.", "schema": [{"type": "object", "subtype": "bounding-box"}, {"type": "null"}]},
                    {"name": "temporal_extent", "description": "Limits the data to load to the given interval.", "schema": [{"type": "array", "subtype": "temporal-interval"}, {"type": "null"}]},
                    {"name": "bands", "description": "Only adds the specified bands.", "optional": true, "default": null, "schema": [{"type": "array"}, {"type": "null"}]},
                    {"name": "properties", "description": "Metadata filters.", "optional": true, "default": null, "schema": [{"type": "object"}, {"type": "null"}]},
                ],
                "returns": {"description": "A data cube.", "schema": {"type": "object", "subtype": "datacube"}},
            },
            {
                "id": "save_result",
                "summary": "Save processed data",
                "description": "Makes the processed data available in the given file format.",
                "categories": ["cubes", "export"],
                "parameters": [
                    {"name": "data", "description": "The data to deliver.", "schema": {"type": "object", "subtype": "datacube"}},
                    {"name": "format", "description": "The file format (see /file_formats).", "schema": {"type": "string", "subtype": "output-format"}},
                    {"name": "options", "description": "File format parameters.", "optional": true, "default": {}, "schema": {"type": "object", "subtype": "output-format-options"}},
                ],
                "returns": {"description": "Always true.", "schema": {"type": "boolean"}},
            },
        ],
        "links": [],
    }))
}

/// `GET /udp/{name}`: a UDP fixture file, so clients can fetch namespace URLs from the fake.
async fn udp_file(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if name.contains("..") || name.contains('/') || name.contains('\\') {
        return Err(ApiError::not_found());
    }
    let text = crate::process::find_udp_file(&shared.config.udp_dir, &name)
        .and_then(|p| std::fs::read(p).ok())
        .ok_or_else(ApiError::not_found)?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
