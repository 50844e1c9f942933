//! Results: the STAC Collection of `GET /jobs/{id}/results` (400 `JobNotFinished` before the
//! end unless `?partial=true`, 424 with the error log entry on `error`), its signed canonical
//! copy, and the asset downloads — signed (no token; 403 `CredentialsInvalid`, 410
//! `ResultLinkExpired`) and unsigned (token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::assets::{content_of, encode_user, serve, signature, verify, Content};
use crate::auth::User;
use crate::error::ApiError;
use crate::geotiff::Grid;
use crate::process::Format;
use crate::state::{now, JobStatus, Shared};

fn parse_expires(q: &HashMap<String, String>) -> Option<u64> {
    q.get("expires").and_then(|e| e.parse().ok())
}

fn partial(q: &HashMap<String, String>) -> bool {
    q.get("partial")
        .is_some_and(|p| p.eq_ignore_ascii_case("true") || p == "1")
}

/// `GET /jobs/{job_id}/results`
pub(crate) async fn document(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    build_document(&shared, &user.id, &id, partial(&q)).await
}

/// `GET /jobs/{job_id}/results/{user_b64}/{signature}?expires=`: the canonical, signed copy.
pub(crate) async fn signed_document(
    State(shared): State<Arc<Shared>>,
    Path((id, user_b64, sig)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let user = verify(&shared, &id, &user_b64, &sig, "", parse_expires(&q))?;
    build_document(&shared, &user, &id, partial(&q)).await
}

/// What the document needs from the job, taken under the lock.
struct Snapshot {
    title: Option<String>,
    description: Option<String>,
    status: JobStatus,
    bbox: [f64; 4],
    temporal: [Option<String>; 2],
    files: Vec<(Format, Content, Option<String>)>,
    costs: Option<f64>,
}

async fn build_document(
    shared: &Arc<Shared>,
    user: &str,
    id: &str,
    partial: bool,
) -> Result<Response, ApiError> {
    let snap = {
        let mut state = shared.lock();
        let job = state
            .jobs
            .get_mut(id)
            .filter(|j| j.user == user)
            .ok_or_else(|| ApiError::job_not_found(id))?;
        let view = job.advance(now());
        if view.status == JobStatus::Error {
            let entry = job.error_entry().map(|e| e.to_json()).unwrap_or_else(|| {
                json!({"id": "0", "code": "Internal", "level": "error",
                       "message": "The batch job failed.", "links": []})
            });
            let mut r = (StatusCode::FAILED_DEPENDENCY, Json(entry)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        let finished = view.status == JobStatus::Finished;
        if !finished && !partial {
            return Err(ApiError::new(
                400,
                "JobNotFinished",
                "Batch job has not finished computing the results yet. Please try again later or contact our support.",
            ));
        }
        let mut files = Vec::new();
        if finished {
            for format in job.info.assets.clone() {
                let content = content_of(shared, job, format.file_name())?;
                let cached = job.checksum_cache.get(format.file_name()).cloned();
                files.push((format, content, cached));
            }
        }
        let costs = finished.then(|| {
            let r = job
                .last_plan
                .as_ref()
                .map(|p| p.running_secs)
                .unwrap_or(2.0)
                .max(1.0);
            ((0.5 + r * 0.25) * 100.0).round() / 100.0
        });
        Snapshot {
            title: job.title.clone(),
            description: job.description.clone(),
            status: view.status,
            bbox: job.info.bbox,
            temporal: job.info.temporal.clone(),
            files,
            costs,
        }
    };

    // Checksums of large generated or on-disk files are computed off the lock and cached.
    let mut checksums: Vec<Option<String>> = Vec::new();
    for (format, content, cached) in &snap.files {
        if !shared.config.checksums || content.len() > shared.config.checksum_max_bytes {
            checksums.push(None);
            continue;
        }
        if let Some(c) = cached {
            checksums.push(Some(c.clone()));
            continue;
        }
        let c = content.clone();
        let sum = tokio::task::spawn_blocking(move || c.checksum())
            .await
            .map_err(|e| ApiError::new(500, "Internal", e.to_string()))?
            .map_err(|e| ApiError::new(500, "Internal", e.to_string()))?;
        if let Some(job) = shared.lock().jobs.get_mut(id) {
            job.checksum_cache
                .insert(format.file_name().to_string(), sum.clone());
        }
        checksums.push(Some(sum));
    }

    // Rounded up: a link is valid for at least `link_ttl_secs`.
    let expires = (now() + shared.config.link_ttl_secs as f64).ceil() as u64;
    let secret = &shared.config.signing_secret;
    let user_b64 = encode_user(user);
    let base = format!("{}/jobs/{id}/results", shared.api_url);
    let mut assets = Map::new();
    for ((format, content, _), checksum) in snap.files.iter().zip(checksums) {
        let file = format.file_name();
        let sig = signature(secret, id, user, file, expires);
        let key = shared
            .config
            .asset_keys
            .get(file)
            .map(String::as_str)
            .unwrap_or(file);
        let mut a = Map::new();
        a.insert("title".into(), json!(key));
        let href = if shared.config.unsigned_asset_links {
            format!("{base}/assets/{file}")
        } else {
            let signed = format!("{base}/assets/{user_b64}/{sig}/{file}?expires={expires}");
            match &shared.config.asset_link_host {
                Some(host) => match signed.split_once("://") {
                    Some((scheme, rest)) => {
                        let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
                        format!("{scheme}://{host}{path}")
                    }
                    None => signed,
                },
                None => signed,
            }
        };
        a.insert("href".into(), json!(href));
        a.insert("type".into(), json!(format.media_type()));
        a.insert("roles".into(), json!(["data"]));
        let size = shared
            .config
            .declared_sizes
            .get(file)
            .copied()
            .unwrap_or(content.len());
        a.insert("file:size".into(), json!(size));
        if let Some(c) = checksum {
            a.insert("file:checksum".into(), json!(c));
        }
        match format {
            Format::GTiff | Format::NetCdf => {
                let grid = Grid::for_bbox(snap.bbox);
                a.insert("proj:epsg".into(), json!(grid.epsg));
                a.insert("proj:code".into(), json!(format!("EPSG:{}", grid.epsg)));
                a.insert("proj:bbox".into(), json!(grid.proj_bbox()));
                a.insert("proj:shape".into(), json!([grid.height, grid.width]));
            }
            Format::GeoJson => {
                a.insert("proj:epsg".into(), json!(4326));
                a.insert("proj:code".into(), json!("EPSG:4326"));
                a.insert("proj:bbox".into(), json!(snap.bbox));
            }
            Format::Json => {}
        }
        assets.insert(key.to_string(), Value::Object(a));
    }
    let canonical_sig = signature(secret, id, user, "", expires);
    let doc = json!({
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "id": id,
        "title": snap.title.clone().unwrap_or_else(|| format!("Results of batch job {id}")),
        "description": snap.description.clone().unwrap_or_else(|| format!("Results for batch job {id}")),
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [snap.bbox]},
            "temporal": {"interval": [snap.temporal]},
        },
        "openeo:status": snap.status,
        "assets": assets,
        "links": [
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "canonical",
             "href": format!("{base}/{user_b64}/{canonical_sig}?expires={expires}"),
             "type": "application/json"},
        ],
    });
    let mut response = Json(doc).into_response();
    if let Some(costs) = snap.costs {
        if let Ok(v) = HeaderValue::from_str(&costs.to_string()) {
            response.headers_mut().insert("OpenEO-Costs", v);
        }
    }
    Ok(response)
}

/// `GET|HEAD /jobs/{job_id}/results/assets/{filename}` (token).
pub(crate) async fn asset(
    State(shared): State<Arc<Shared>>,
    user: User,
    Path((id, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_asset(&shared, &user.id, &id, &file, &method, &headers)
}

/// `GET|HEAD /jobs/{job_id}/results/assets/{user_b64}/{signature}/{filename}?expires=` (signed).
pub(crate) async fn signed_asset(
    State(shared): State<Arc<Shared>>,
    Path((id, user_b64, sig, file)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = verify(&shared, &id, &user_b64, &sig, &file, parse_expires(&q))?;
    if headers.contains_key(header::AUTHORIZATION) {
        // A signed link needs no credential: a client that sends one anyway leaks it
        // to whatever host the link points to.
        shared.lock().stats.signed_links_with_authorization += 1;
    }
    serve_asset(&shared, &user, &id, &file, &method, &headers)
}

fn serve_asset(
    shared: &Shared,
    user: &str,
    id: &str,
    file: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (content, ended) = {
        let mut state = shared.lock();
        let job = state
            .jobs
            .get_mut(id)
            .filter(|j| j.user == user)
            .ok_or_else(|| ApiError::job_not_found(id))?;
        let view = job.advance(now());
        if view.status != JobStatus::Finished {
            return Err(ApiError::new(
                400,
                "JobNotFinished",
                "Batch job has not finished computing the results yet.",
            ));
        }
        if !job.info.assets.iter().any(|f| f.file_name() == file) {
            return Err(ApiError::new(
                404,
                "AssetNotFound",
                format!("Asset '{file}' does not exist in the results of job {id}."),
            ));
        }
        (
            content_of(shared, job, file)?,
            view.ended.unwrap_or(view.updated),
        )
    };
    Ok(serve(shared, &content, id, file, ended, method, headers))
}
