//! Process graphs: validation of a job's `process` (exactly one result node per graph, process
//! ids), resolution of remote UDPs (`namespace` = http(s) URL, mapped to a fixture file by its
//! file name), argument-name checks against the UDP's parameters, and what the job will produce
//! (formats of its `save_result` nodes, spatial and temporal extent).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The default spatial extent (the eurac PV farm UDP's default bbox), WGS84.
pub(crate) const DEFAULT_BBOX: [f64; 4] = [16.342, 47.962, 16.414, 48.008];

/// An output format the fake can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    GTiff,
    NetCdf,
    GeoJson,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "gtiff" | "geotiff" | "tiff" | "tif" => Some(Format::GTiff),
            "netcdf" | "nc" => Some(Format::NetCdf),
            "geojson" => Some(Format::GeoJson),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Asset file name, as openeo-geopyspark names it.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::GTiff => "openEO.tif",
            Format::NetCdf => "openEO.nc",
            Format::GeoJson => "vectorcube.geojson",
            Format::Json => "result.json",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::GTiff => "image/tiff; application=geotiff",
            Format::NetCdf => "application/x-netcdf",
            Format::GeoJson => "application/geo+json",
            Format::Json => "application/json",
        }
    }

    /// Format of a file name, if it is one the fake produces.
    pub fn of_file(name: &str) -> Option<Format> {
        [Format::GTiff, Format::NetCdf, Format::GeoJson, Format::Json]
            .into_iter()
            .find(|f| f.file_name() == name)
    }
}

/// What a validated process will produce.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProcessInfo {
    /// Output formats, one asset each (GTiff when there is no `save_result`).
    pub assets: Vec<Format>,
    /// WGS84 bbox `[west, south, east, north]`.
    pub bbox: [f64; 4],
    /// Temporal interval, RFC 3339 or null ends.
    pub temporal: [Option<String>; 2],
}

/// Validates `process` (the `process` member of a job) and works out what it produces.
pub(crate) fn analyse(process: &Value, udp_dir: &Path) -> Result<ProcessInfo, ApiError> {
    let graph = process
        .as_object()
        .and_then(|p| p.get("process_graph"))
        .and_then(Value::as_object)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                400,
                "ProcessGraphMissing",
                "No valid process graph specified: `process.process_graph` must be a non-empty object.",
            )
        })?;
    let mut found = Found::default();
    check_graph(graph, udp_dir, &mut found, true)?;

    let mut assets = Vec::new();
    for node in graph.values() {
        if node.get("process_id").and_then(Value::as_str) == Some("save_result") {
            let fmt = node
                .get("arguments")
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .unwrap_or("GTiff");
            let format = Format::parse(fmt).ok_or_else(|| {
                ApiError::new(
                    400,
                    "FormatUnsupported",
                    format!(
                        "Output format '{fmt}' is not supported (GTiff, netCDF, GeoJSON, JSON)."
                    ),
                )
            })?;
            if !assets.contains(&format) {
                assets.push(format);
            }
        }
    }
    if assets.is_empty() {
        assets.push(Format::GTiff);
    }
    Ok(ProcessInfo {
        assets,
        bbox: found.bbox.or(found.default_bbox).unwrap_or(DEFAULT_BBOX),
        temporal: found
            .temporal
            .or(found.default_temporal)
            .unwrap_or([None, None]),
    })
}

/// Extents found while walking the graph.
#[derive(Default)]
struct Found {
    bbox: Option<[f64; 4]>,
    temporal: Option<[Option<String>; 2]>,
    default_bbox: Option<[f64; 4]>,
    default_temporal: Option<[Option<String>; 2]>,
}

fn check_graph(
    graph: &Map<String, Value>,
    udp_dir: &Path,
    found: &mut Found,
    top: bool,
) -> Result<(), ApiError> {
    let results = graph
        .values()
        .filter(|n| n.get("result").and_then(Value::as_bool) == Some(true))
        .count();
    if results != 1 {
        return Err(ApiError::new(
            400,
            "ProcessGraphInvalid",
            format!("A process graph needs exactly one result node (`\"result\": true`), found {results}."),
        ));
    }
    for (node_id, node) in graph {
        let process_id = node
            .get("process_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "ProcessGraphInvalid",
                    format!("Node '{node_id}' has no valid `process_id`."),
                )
            })?;
        let arguments = match node.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(ApiError::new(
                    400,
                    "ProcessGraphInvalid",
                    format!("Node '{node_id}': `arguments` must be an object."),
                ))
            }
        };
        if let Some(ns) = node.get("namespace").and_then(Value::as_str) {
            if ns.starts_with("http://") || ns.starts_with("https://") {
                let udp = resolve_udp(ns, process_id, udp_dir)?;
                check_udp_arguments(&udp, process_id, &arguments)?;
                if top {
                    collect_defaults(&udp, found);
                }
            }
        }
        if top {
            collect_extents(&arguments, found);
        }
        for value in arguments.values() {
            walk_callbacks(value, udp_dir, found)?;
        }
    }
    Ok(())
}

/// Checks nested `{"process_graph": {...}}` callbacks.
fn walk_callbacks(value: &Value, udp_dir: &Path, found: &mut Found) -> Result<(), ApiError> {
    match value {
        Value::Object(m) => {
            if let Some(Value::Object(g)) = m.get("process_graph") {
                return check_graph(g, udp_dir, found, false);
            }
            for v in m.values() {
                walk_callbacks(v, udp_dir, found)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(|v| walk_callbacks(v, udp_dir, found)),
        _ => Ok(()),
    }
}

/// The fixture file named `name`: directly in `udp_dir`, else in an `openeo_udp` folder
/// below it (at most five levels deep, as in the APEx catalogue's
/// `<provider>/<service>/openeo_udp/`; records and benchmark scenarios next to it share
/// the name and are not UDPs).
pub(crate) fn find_udp_file(udp_dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, in_udp: bool) -> Option<std::path::PathBuf> {
        let direct = dir.join(name);
        if in_udp && direct.is_file() {
            return Some(direct);
        }
        if depth == 0 {
            return None;
        }
        let mut dirs: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.iter().find_map(|d| {
            let udp = in_udp || d.file_name().is_some_and(|n| n == "openeo_udp");
            walk(d, name, depth - 1, udp)
        })
    }
    if name.is_empty() || name.contains('/') || name.contains("..") || name.contains('\\') {
        return None;
    }
    let direct = udp_dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    walk(udp_dir, name, 5, false)
}

/// Resolves a remote process definition URL to the fixture file of the same name.
pub(crate) fn resolve_udp(url: &str, process_id: &str, udp_dir: &Path) -> Result<Value, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            400,
            "ProcessNamespaceInvalid",
            format!("The namespace '{url}' of process '{process_id}' is not valid: {why}."),
        )
    };
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or("");
    if file.is_empty() || file.contains("..") || file.contains('\\') {
        return Err(invalid("no process definition file name in the URL"));
    }
    let text = find_udp_file(udp_dir, file)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .ok_or_else(|| invalid("no process definition found at this URL (HTTP 404)"))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|_| invalid("the document is not valid JSON"))?;
    let candidates: Vec<&Value> = match &doc {
        Value::Array(list) => list.iter().collect(),
        Value::Object(m) => match m.get("processes") {
            Some(Value::Array(list)) => list.iter().collect(),
            _ => vec![&doc],
        },
        _ => vec![],
    };
    candidates
        .into_iter()
        .find(|p| p.get("id").and_then(Value::as_str) == Some(process_id))
        .cloned()
        .ok_or_else(|| {
            let ids: Vec<&str> = match &doc {
                Value::Object(m) => m.get("id").and_then(Value::as_str).into_iter().collect(),
                _ => vec![],
            };
            if ids.is_empty() {
                invalid("no process with this id at this URL")
            } else {
                invalid(&format!(
                    "the process at this URL has id '{}', not '{process_id}'",
                    ids[0]
                ))
            }
        })
}

/// Rejects unknown argument names and missing required parameters.
fn check_udp_arguments(
    udp: &Value,
    process_id: &str,
    arguments: &Map<String, Value>,
) -> Result<(), ApiError> {
    let params: Vec<&Value> = udp
        .get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = params
        .iter()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect();
    for arg in arguments.keys() {
        if !names.contains(&arg.as_str()) {
            return Err(ApiError::new(
                400,
                "ProcessParameterInvalid",
                format!(
                    "The value passed for parameter '{arg}' in process '{process_id}' is invalid: \
                     no such parameter (parameters: {}).",
                    names.join(", ")
                ),
            ));
        }
    }
    for p in params {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let optional =
            p.get("optional").and_then(Value::as_bool) == Some(true) || p.get("default").is_some();
        if !optional && !arguments.contains_key(name) {
            return Err(ApiError::new(
                400,
                "ProcessParameterRequired",
                format!("Process '{process_id}' parameter '{name}' is required."),
            ));
        }
    }
    Ok(())
}

fn collect_defaults(udp: &Value, found: &mut Found) {
    for p in udp
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(default) = p.get("default") else {
            continue;
        };
        if found.default_bbox.is_none() {
            found.default_bbox = bbox_of(default);
        }
        if found.default_temporal.is_none()
            && p.get("name").and_then(Value::as_str) == Some("temporal_extent")
        {
            found.default_temporal = interval_of(default);
        }
    }
}

fn collect_extents(arguments: &Map<String, Value>, found: &mut Found) {
    for (name, value) in arguments {
        if found.bbox.is_none()
            && matches!(
                name.as_str(),
                "spatial_extent" | "bbox" | "bounding_box" | "geometry" | "geometries" | "extent"
            )
        {
            found.bbox = bbox_of(value);
        }
        if found.temporal.is_none() && name == "temporal_extent" {
            found.temporal = interval_of(value);
        }
    }
}

/// A WGS84 bbox from a bounding-box object (crs 4326 or absent) or GeoJSON.
fn bbox_of(v: &Value) -> Option<[f64; 4]> {
    let o = v.as_object()?;
    let num = |k: &str| o.get(k).and_then(Value::as_f64);
    if let (Some(w), Some(s), Some(e), Some(n)) =
        (num("west"), num("south"), num("east"), num("north"))
    {
        let crs_ok = match o.get("crs") {
            None | Some(Value::Null) => true,
            Some(Value::Number(c)) => c.as_u64() == Some(4326),
            Some(Value::String(c)) => c.ends_with("4326") || c.contains("CRS84"),
            _ => false,
        };
        return crs_ok.then_some([w, s, e, n]);
    }
    let mut acc: Option<[f64; 4]> = None;
    collect_coords(v, &mut acc);
    acc
}

fn collect_coords(v: &Value, acc: &mut Option<[f64; 4]>) {
    match v {
        Value::Object(m) => {
            if let Some(c) = m.get("coordinates") {
                collect_positions(c, acc);
            }
            for key in ["geometry", "features", "geometries"] {
                if let Some(x) = m.get(key) {
                    collect_coords(x, acc);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_coords(x, acc)),
        _ => {}
    }
}

fn collect_positions(v: &Value, acc: &mut Option<[f64; 4]>) {
    if let Some(a) = v.as_array() {
        if a.len() >= 2 && a[0].is_number() && a[1].is_number() {
            let (x, y) = (a[0].as_f64().unwrap_or(0.0), a[1].as_f64().unwrap_or(0.0));
            let b = acc.get_or_insert([x, y, x, y]);
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        } else {
            a.iter().for_each(|x| collect_positions(x, acc));
        }
    }
}

/// A temporal interval from `["2023-05-01", "2023-09-30"]`.
fn interval_of(v: &Value) -> Option<[Option<String>; 2]> {
    let a = v.as_array()?;
    if a.len() != 2 {
        return None;
    }
    let norm = |x: &Value| {
        x.as_str().map(|s| {
            if s.len() == 10 {
                format!("{s}T00:00:00Z")
            } else {
                s.to_string()
            }
        })
    };
    Some([norm(&a[0]), norm(&a[1])])
}
