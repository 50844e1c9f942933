//! `POST /tiles`: split an area of interest into grid cells of true kilometres (see
//! [`crate::tiles`]), for use as the `values` of an upscale task's dimension.

use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::problem::{Problem, ProblemBody};
use crate::job::validate::{typed, validate_geojson_polygon, FieldError};
use crate::tiles::{tiles, Grid};

/// Body of `POST /tiles`; no other field is accepted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TileRequestBody {
    /// Area of interest: a GeoJSON Polygon in WGS84 longitude/latitude, its rings
    /// closed (first position = last).
    #[schema(schema_with = polygon_schema)]
    pub aoi: Value,
    /// Cell size.
    pub grid: Grid,
}

/// The schema of a GeoJSON Polygon in longitude/latitude: what JSON Schema can say of
/// it (a ring's closure and its self-intersections are checked by the handler).
fn polygon_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let position = ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Number))
        .min_items(Some(2))
        .max_items(Some(3));
    let ring = ArrayBuilder::new().items(position).min_items(Some(4));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["Polygon"])),
        )
        .property(
            "coordinates",
            ArrayBuilder::new().items(ring).min_items(Some(1)),
        )
        .required("type")
        .required("coordinates")
        .build()
}

/// Split an AOI into grid cells. Cells are squares of exactly 20 or 250 km in the UTM
/// zone (WGS84) of the AOI's centre, snapped to multiples of the cell size, returned
/// as WGS84 polygons with densified edges; every cell intersects the AOI.
#[utoipa::path(post, path = "/tiles", tag = "tiles",
    request_body = TileRequestBody,
    responses(
        (status = 201, description = "GeoJSON GeometryCollection of the cells", body = Object),
        (status = 422, description = "Invalid AOI or grid, or an AOI too large for the grid", body = ProblemBody, content_type = "application/problem+json"),
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
    if !errors.is_empty() || grid.is_none() {
        return Err(Problem::invalid(errors));
    }
    let TileRequestBody { aoi, grid } = typed(&body).map_err(Problem::invalid)?;
    let cells = tokio::task::spawn_blocking(move || tiles(&aoi, grid))
        .await
        .map_err(|e| Problem::internal(&e))??;
    Ok((StatusCode::CREATED, Json(cells)))
}
