//! `POST /tiles`: split an area of interest into grid cells of true kilometres (see
//! [`crate::tiles`]), for use as the `values` of an upscale task's dimension.

use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::job::validate::{validate_geojson_polygon, FieldError};
use crate::tiles::{tiles, Grid};

/// Body of `POST /tiles`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TileRequestBody {
    /// Area of interest: a GeoJSON Polygon in WGS84 longitude/latitude.
    #[schema(value_type = Object)]
    aoi: Value,
    /// Cell size.
    grid: Grid,
}

/// Split an AOI into grid cells. Cells are squares of exactly 20 or 250 km in the UTM
/// zone (WGS84) of the AOI's centre, snapped to multiples of the cell size, returned
/// as WGS84 polygons with densified edges; every cell intersects the AOI.
#[utoipa::path(post, path = "/tiles", tag = "tiles",
    request_body = TileRequestBody,
    responses(
        (status = 201, description = "GeoJSON GeometryCollection of the cells", body = Object),
        (status = 422, description = "Invalid AOI or grid", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create(ApiJson(body): ApiJson) -> Result<(StatusCode, Json<Value>), Problem> {
    let Value::Object(map) = &body else {
        return Err(Problem::invalid_field(
            "body",
            "must be a JSON object with aoi and grid",
        ));
    };
    let mut errors = Vec::new();
    for key in map.keys() {
        if key != "aoi" && key != "grid" {
            errors.push(FieldError::new(
                key.clone(),
                "unknown field; only aoi and grid are accepted",
            ));
        }
    }
    let grid = match map.get("grid") {
        None => {
            errors.push(FieldError::new("grid", "is required"));
            None
        }
        Some(v) => {
            let g = v.as_str().and_then(Grid::parse);
            if g.is_none() {
                errors.push(FieldError::new(
                    "grid",
                    format!(
                        "unknown grid {v}; use one of {}",
                        Grid::ALL.map(Grid::as_str).join(", ")
                    ),
                ));
            }
            g
        }
    };
    match map.get("aoi") {
        None => errors.push(FieldError::new("aoi", "is required")),
        Some(aoi) => errors.extend(validate_geojson_polygon("aoi", aoi)),
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (Some(grid), Some(aoi)) = (grid, map.get("aoi")) else {
        return Err(Problem::invalid_field("aoi", "is required"));
    };
    let aoi = aoi.clone();
    let cells = tokio::task::spawn_blocking(move || tiles(&aoi, grid))
        .await
        .map_err(|e| Problem::internal(&e))??;
    Ok((StatusCode::CREATED, Json(cells)))
}
