//! `eodispatch upscale`: the pieces of an upscale task built from flags — the area
//! (a GeoJSON file or a `--bbox`), the grid, the service (from the catalogue or given
//! by endpoint and application) and the shared parameters — and the `POST
//! /upscale_tasks` body made of them and of the cells `POST /tiles` answered.
//!
//! As in [`super::submit`], only the shape of what the user typed is checked here;
//! whether the area, the service and the parameters make sense is the daemon's call.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::submit::{default_title, Bbox, Param, TimeRange};
use super::CliError;
use crate::job::{Label, OutputFormat};

/// The parameter the tiles go to unless `--dimension` says otherwise (APEx's).
pub const DEFAULT_DIMENSION: &str = "spatial_extent";

/// Parses `--grid`: `20km` or `250km` (the API's `20x20km` and `250x250km` work too);
/// the API's name of the grid.
pub fn parse_grid(s: &str) -> Result<&'static str, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "20km" | "20x20km" => Ok("20x20km"),
        "250km" | "250x250km" => Ok("250x250km"),
        _ => Err(format!(
            "unknown grid {s:?}; use 20km (cells of 20 × 20 km) or 250km (250 × 250 km)"
        )),
    }
}

/// Where the tiles come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    /// `--area FILE`: a GeoJSON file with one polygon.
    File(std::path::PathBuf),
    /// `--bbox W,S,E,N` in WGS84 longitude/latitude.
    Bbox(Bbox),
}

/// Which service runs on each tile.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceChoice {
    /// `--service ID`: a service of the daemon's catalogue (`GET /services`).
    Catalogue(String),
    /// `--endpoint URL --application URL` (with `--namespace`, `--label`).
    Direct {
        /// Backend URL.
        endpoint: String,
        /// UDP URL or OGC process id.
        application: String,
        /// OGC deployment namespace.
        namespace: Option<String>,
        /// Kind of platform.
        label: Label,
    },
}

/// An upscale task described by flags.
#[derive(Debug, Clone, PartialEq)]
pub struct UpscaleFlags {
    /// The service.
    pub service: ServiceChoice,
    /// The area split into tiles.
    pub area: Area,
    /// The API's grid name (`20x20km`, `250x250km`).
    pub grid: &'static str,
    /// The parameter each tile is given to.
    pub dimension: String,
    /// `--time`: the shared `temporal_extent`.
    pub time: Option<TimeRange>,
    /// `--param`, in the order given.
    pub params: Vec<Param>,
    /// `--format`.
    pub format: OutputFormat,
    /// `--title`; derived from the service when absent.
    pub title: Option<String>,
}

/// A service as a task body names it, with a title for the task.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedService {
    /// Kind of platform (`openeo`, `ogc_api_process`).
    pub label: String,
    /// `{endpoint, application, namespace?}`.
    pub service: Value,
    /// A title for a task that has none.
    pub title: String,
}

impl UpscaleFlags {
    /// The service given by flags, or the record `id` of the catalogue `services`
    /// (the answer of `GET /services`).
    pub fn resolve_service(&self, services: Option<&[Value]>) -> Result<ResolvedService, String> {
        match &self.service {
            ServiceChoice::Direct {
                endpoint,
                application,
                namespace,
                label,
            } => {
                let mut service = Map::new();
                service.insert("endpoint".into(), json!(endpoint));
                service.insert("application".into(), json!(application));
                if let Some(ns) = namespace {
                    service.insert("namespace".into(), json!(ns));
                }
                Ok(ResolvedService {
                    label: label.as_str().to_string(),
                    service: Value::Object(service),
                    title: default_title(application),
                })
            }
            ServiceChoice::Catalogue(id) => {
                let services = services.unwrap_or_default();
                let Some(record) = services
                    .iter()
                    .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
                else {
                    let ids: Vec<&str> = services
                        .iter()
                        .filter_map(|s| s.get("id").and_then(Value::as_str))
                        .collect();
                    return Err(format!(
                        "the catalogue has no service {id:?}; its services are: {}",
                        if ids.is_empty() {
                            "(none)".to_string()
                        } else {
                            ids.join(", ")
                        }
                    ));
                };
                let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
                let mut service = Map::new();
                service.insert("endpoint".into(), json!(text("endpoint")));
                service.insert("application".into(), json!(text("application")));
                if let Some(ns) = text("namespace") {
                    service.insert("namespace".into(), json!(ns));
                }
                Ok(ResolvedService {
                    label: text("label").unwrap_or_else(|| Label::default().as_str().into()),
                    service: Value::Object(service),
                    title: text("title").unwrap_or_else(|| id.clone()),
                })
            }
        }
    }

    /// The `POST /upscale_tasks` body: one sub-job per cell of `cells`, each cell given
    /// to the dimension parameter. Fails when a `--param` repeats a name or sets the
    /// dimension parameter (the tiles own it) or `temporal_extent` together with
    /// `--time`.
    pub fn task_body(&self, service: &ResolvedService, cells: Vec<Value>) -> Result<Value, String> {
        let mut parameters = Map::new();
        if let Some(time) = &self.time {
            parameters.insert("temporal_extent".into(), json!([time.start, time.end]));
        }
        for p in &self.params {
            if p.name == self.dimension {
                return Err(format!(
                    "--param {}: each tile is given to {} (--dimension)",
                    p.name, self.dimension
                ));
            }
            if p.name == "temporal_extent" && self.time.is_some() {
                return Err("--param temporal_extent: the time range is set by --time".into());
            }
            if parameters.insert(p.name.clone(), p.value.clone()).is_some() {
                return Err(format!("--param {} is given more than once", p.name));
            }
        }
        let title = self.title.clone().unwrap_or_else(|| service.title.clone());
        Ok(json!({
            "title": title,
            "label": service.label,
            "service": service.service,
            "parameters": parameters,
            "format": self.format.as_str(),
            "dimension": {"name": self.dimension, "values": cells},
        }))
    }
}

/// The area as the GeoJSON Polygon `POST /tiles` takes.
pub fn area_polygon(area: &Area) -> Result<Value, CliError> {
    match area {
        Area::Bbox(b) => Ok(bbox_polygon(b)),
        Area::File(path) => read_area(path),
    }
}

/// A bounding box as a closed polygon ring, counter-clockwise.
pub fn bbox_polygon(b: &Bbox) -> Value {
    json!({
        "type": "Polygon",
        "coordinates": [[
            [b.west, b.south], [b.east, b.south], [b.east, b.north],
            [b.west, b.north], [b.west, b.south]
        ]]
    })
}

/// Reads the polygon of a GeoJSON file: a Polygon, a MultiPolygon of one polygon, or
/// a Feature or FeatureCollection holding exactly one of those.
pub fn read_area(path: &Path) -> Result<Value, CliError> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {name}: {e}")))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{name} is not GeoJSON (not valid JSON: {e})")))?;
    polygon_of(&doc).map_err(|why| CliError::Input(format!("{name}: {why}")))
}

/// The one polygon of a GeoJSON object (see [`read_area`]).
pub fn polygon_of(doc: &Value) -> Result<Value, String> {
    const ONE: &str = "the area must be one polygon (a Polygon, or a Feature or \
                       FeatureCollection with one Polygon); split a larger area into \
                       several tasks";
    match doc.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(doc.clone()),
        Some("MultiPolygon") => match doc.get("coordinates").and_then(Value::as_array) {
            Some(parts) if parts.len() == 1 => {
                Ok(json!({"type": "Polygon", "coordinates": parts[0]}))
            }
            Some(parts) => Err(format!(
                "{ONE}; this MultiPolygon has {} parts",
                parts.len()
            )),
            None => Err("the MultiPolygon has no coordinates".into()),
        },
        Some("Feature") => match doc.get("geometry") {
            Some(g) if !g.is_null() => polygon_of(g),
            _ => Err("the Feature has no geometry".into()),
        },
        Some("FeatureCollection") => match doc.get("features").and_then(Value::as_array) {
            Some(features) if features.len() == 1 => polygon_of(&features[0]),
            Some(features) => Err(format!(
                "{ONE}; this collection has {} features",
                features.len()
            )),
            None => Err("the FeatureCollection has no features".into()),
        },
        Some(other) => Err(format!("{ONE}; this is a {other}")),
        None => Err("not a GeoJSON object (no \"type\")".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::submit::{parse_bbox, parse_param, parse_time};

    #[test]
    fn grids_have_short_and_api_names() {
        assert_eq!(parse_grid("20km"), Ok("20x20km"));
        assert_eq!(parse_grid("250KM"), Ok("250x250km"));
        assert_eq!(parse_grid("20x20km"), Ok("20x20km"));
        let e = parse_grid("10km").unwrap_err();
        assert!(e.contains("20km") && e.contains("250km"), "{e}");
    }

    #[test]
    fn areas_are_one_polygon() {
        let ring = json!([[[0, 0], [1, 0], [1, 1], [0, 0]]]);
        let poly = json!({"type": "Polygon", "coordinates": ring});
        assert_eq!(polygon_of(&poly), Ok(poly.clone()));
        let feature = json!({"type": "Feature", "properties": {}, "geometry": poly});
        assert_eq!(polygon_of(&feature), Ok(poly.clone()));
        let fc = json!({"type": "FeatureCollection", "features": [feature]});
        assert_eq!(polygon_of(&fc), Ok(poly.clone()));
        let multi = json!({"type": "MultiPolygon", "coordinates": [ring]});
        assert_eq!(polygon_of(&multi), Ok(poly.clone()));
        let two = json!({"type": "FeatureCollection", "features": [feature, feature]});
        assert!(polygon_of(&two).unwrap_err().contains("has 2 features"));
        let point = json!({"type": "Point", "coordinates": [0, 0]});
        assert!(polygon_of(&point).unwrap_err().contains("this is a Point"));
        assert!(polygon_of(&json!({})).is_err());
    }

    #[test]
    fn a_bbox_is_a_closed_ring() {
        let p = bbox_polygon(&parse_bbox("16.2,48.1,16.5,48.3").unwrap());
        let ring = p["coordinates"][0].as_array().unwrap();
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4]);
        assert_eq!(ring[2], json!([16.5, 48.3]));
    }

    fn flags(service: ServiceChoice) -> UpscaleFlags {
        UpscaleFlags {
            service,
            area: Area::Bbox(parse_bbox("16.2,48.1,16.5,48.3").unwrap()),
            grid: "20x20km",
            dimension: DEFAULT_DIMENSION.into(),
            time: Some(parse_time("2023-05-01/2023-09-30").unwrap()),
            params: vec![parse_param("max_cloud_cover=20").unwrap()],
            format: OutputFormat::Gtiff,
            title: None,
        }
    }

    #[test]
    fn a_task_body_from_flags_and_cells() {
        let f = flags(ServiceChoice::Direct {
            endpoint: "https://openeo.example.org".into(),
            application: "https://example.org/udp/pv.json".into(),
            namespace: None,
            label: Label::Openeo,
        });
        let service = f.resolve_service(None).unwrap();
        let body = f
            .task_body(&service, vec![json!({"cell": 1}), json!({"cell": 2})])
            .unwrap();
        assert_eq!(
            body,
            json!({
                "title": "pv", "label": "openeo", "format": "gtiff",
                "service": {"endpoint": "https://openeo.example.org",
                            "application": "https://example.org/udp/pv.json"},
                "parameters": {"temporal_extent": ["2023-05-01", "2023-09-30"],
                               "max_cloud_cover": 20},
                "dimension": {"name": "spatial_extent", "values": [{"cell": 1}, {"cell": 2}]}
            })
        );
        let mut clash = f.clone();
        clash.params.push(parse_param("spatial_extent=1").unwrap());
        assert!(clash
            .task_body(&service, vec![])
            .unwrap_err()
            .contains("each tile is given to spatial_extent"));
        let mut twice = f.clone();
        twice
            .params
            .push(parse_param("temporal_extent=[]").unwrap());
        assert!(twice.task_body(&service, vec![]).is_err());
    }

    #[test]
    fn catalogue_services_are_found_by_id() {
        let services = vec![json!({
            "id": "gep_ost", "title": "OST", "label": "ogc_api_process",
            "endpoint": "https://ades.example", "namespace": "gep/wps3",
            "application": "ost"
        })];
        let f = flags(ServiceChoice::Catalogue("gep_ost".into()));
        let s = f.resolve_service(Some(&services)).unwrap();
        assert_eq!(s.label, "ogc_api_process");
        assert_eq!(
            s.service,
            json!({"endpoint": "https://ades.example", "application": "ost", "namespace": "gep/wps3"})
        );
        assert_eq!(s.title, "OST");
        let e = flags(ServiceChoice::Catalogue("nope".into()))
            .resolve_service(Some(&services))
            .unwrap_err();
        assert!(
            e.contains("no service \"nope\"") && e.contains("gep_ost"),
            "{e}"
        );
    }
}
