//! openEO user-defined processes (UDPs) referenced by URL: parsing their JSON
//! ([`Udp`]), describing their parameters for form builders ([`describe`], the APEx
//! `Parameter` list of `POST /params`), validating a job's arguments against them
//! ([`validate_arguments`]) and fetching them once per URL ([`UdpCache`]).
//!
//! # Parameter types
//!
//! [`ParamType`] uses the APEx names (`datetime, date-interval, bounding-box, polygon,
//! boolean, integer, double, string, array-string`) plus ours where APEx has none
//! (`array-double, array-integer, datacube, object, json`). Unlike APEx, `number` is
//! `double` (not `integer`), and a schema we do not understand is `json`, never an
//! error. A schema may be an object, an array of alternatives, or use `anyOf` /
//! `oneOf` / a `type` array; the alternatives are read as a whole:
//!
//! - a bounding box, a GeoJSON or a temporal-interval alternative wins (in that order),
//!   so `bbox | vector cube | null` is a `bounding-box`;
//! - a `null` alternative (or `"null"` in a `type` array) makes the value nullable
//!   without changing its type: `["number", "null"]` is a `double`;
//! - `integer | number` is `double`, `date | string` is `string`, a data cube next to
//!   anything else is ignored (no form can produce one), other mixtures are `json`;
//! - `enum` gives `options` (the enum values, `null` left out) and the base type.
//!
//! # Validation
//!
//! [`validate_arguments`] names unknown and missing parameters itself, turns a polygon
//! given for a bounding box into its box, and has each value checked against the
//! alternatives of its schema by the `jsonschema` crate (`super::schema`: draft 07, the
//! openEO `subtype` keyword, strict dates, the OGC bounding box, nothing fetched).
//! `uniqueItems` is ignored on purpose: `["2025-05-01", "2025-05-01"]` is "that day"
//! for APEx clients. A data cube cannot be given as a value.
//!
//! # Cache and offline fallback
//!
//! [`UdpCache::get`] fetches a URL once (concurrent callers share the fetch) with one
//! reqwest client: 20 s timeout, at most [`MAX_UDP_BYTES`], http/https only, and never
//! an `Authorization` header (the URL is public and often a third party's). A fetched
//! UDP is reused for [`FRESH_FOR`] (a `moka` cache whose entries expire after their own
//! freshness), then fetched again; if that fails the old one is kept (the last good
//! copy of each URL is kept apart from the fresh ones, for this). When a fetch fails (no connection or an HTTP error status) and there is
//! nothing older, a URL whose last path segment is the file name of a UDP bundled at
//! compile time ([`BUNDLED`], the openEO UDPs of the APEx catalogue snapshot in
//! `catalog/apex/`) resolves
//! to that copy, so the APEx services work without internet access; such answers are
//! reused for [`FALLBACK_FRESH_FOR`] only. A URL may end in `#<process id>` to pick one
//! process of a process-list document (`{"processes": [...]}`).
//!
//! Error messages never contain the query string (or user info) of a URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::schema::check_alternatives;
use crate::job::validate::{
    check_http_url, validate_bbox, validate_geojson_geometry, FieldError, GEOJSON_TYPES,
};

/// Timeout of one UDP fetch (connect, headers and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a fetch may take when a copy of the UDP is at hand (kept from an earlier
/// fetch, or bundled) before that copy is used.
pub const WAIT_WITH_COPY: Duration = Duration::from_secs(3);

/// Largest UDP document accepted, in bytes.
pub const MAX_UDP_BYTES: usize = 5 * 1024 * 1024;

/// How long a fetched UDP is reused before it is fetched again.
pub const FRESH_FOR: Duration = Duration::from_secs(3600);

/// How long an answer from the bundled snapshot (or an old copy kept after a failed
/// refresh) is reused before the network is tried again.
pub const FALLBACK_FRESH_FOR: Duration = Duration::from_secs(60);

/// Most cached URLs; beyond it, the least used are dropped.
const MAX_CACHED: u64 = 512;

/// Most leaf alternatives read out of one schema (guards against explosive nesting);
/// a schema with more is treated as "anything" (`json`).
const MAX_LEAVES: usize = 256;

/// Deepest nesting of `anyOf`/`oneOf`/`allOf` followed.
const MAX_DEPTH: usize = 16;

/// The openEO UDPs of the bundled APEx catalogue snapshot (every file below an
/// `openeo_udp/` folder of `catalog/apex/algorithm_catalog/<provider>/<service>/`,
/// compiled in by `build.rs`), by file name: the offline fallback of
/// [`UdpCache::get`] ([`bundled_for`]). A file name may occur twice (`ppi.json` and
/// `test/ppi.json`); the path then decides.
pub static BUNDLED: std::sync::LazyLock<Vec<(&'static str, &'static str)>> =
    std::sync::LazyLock::new(|| {
        bundled_udp_files()
            .map(|(path, text)| (path.rsplit('/').next().unwrap_or(path), *text))
            .collect()
    });

/// The bundled UDP files: (path in the snapshot, text).
fn bundled_udp_files() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    crate::catalogue::bundled::FILES.iter().filter(|(path, _)| {
        let mut dirs = path.split('/').rev().skip(1);
        path.ends_with(".json") && dirs.any(|d| d == "openeo_udp")
    })
}

// ---------------------------------------------------------------------------------
// The UDP document
// ---------------------------------------------------------------------------------

/// An openEO user-defined process, as far as dispatching needs it (the process graph
/// itself stays with the backend, which fetches the URL on its own).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Udp {
    /// Process id (the `process_id` to call it by).
    pub id: String,
    /// One-line summary, if any.
    pub summary: Option<String>,
    /// Markdown description, if any.
    pub description: Option<String>,
    /// Parameters, in document order.
    pub parameters: Vec<UdpParameter>,
    /// The `returns` object (description and schema), if any.
    pub returns: Option<Value>,
    /// The non-standard `default_job_options` (geopyspark job options), if any.
    pub default_job_options: Option<Value>,
}

/// One parameter of a [`Udp`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UdpParameter {
    /// Parameter name.
    pub name: String,
    /// A short human title, when the definition has one (OGC inputs do; UDPs do not).
    pub title: Option<String>,
    /// Markdown description (empty when the UDP has none).
    pub description: String,
    /// The UDP's `optional` flag.
    pub optional: bool,
    /// The default value; `Some(Value::Null)` for an explicit `"default": null`.
    pub default: Option<Value>,
    /// The JSON schema as written: an object, or an array of alternatives.
    pub schema: Value,
}

impl UdpParameter {
    /// Whether a caller may leave the parameter out (`optional`, or a default exists).
    pub fn is_optional(&self) -> bool {
        self.optional || self.default.is_some()
    }
}

impl Udp {
    /// Parses a UDP from JSON bytes; see [`Udp::from_value`]. `Err` holds the reason.
    pub fn from_slice(bytes: &[u8], id: Option<&str>) -> Result<Udp, String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the document is not JSON ({e})"))?;
        Udp::from_value(&doc, id)
    }

    /// Parses a UDP document (`{id, process_graph, parameters?, ...}`) or a process
    /// list (`{"processes": [...]}`). With `id`, the process of that id is taken (and a
    /// single UDP must have it); a list without `id` must hold exactly one process.
    /// `Err` holds the reason in plain words.
    pub fn from_value(doc: &Value, id: Option<&str>) -> Result<Udp, String> {
        let Some(obj) = doc.as_object() else {
            return Err(format!("the document is {}, not a JSON object", kind(doc)));
        };
        let Some(list) = obj.get("processes") else {
            return parse_one(obj, id);
        };
        let Some(list) = list.as_array() else {
            return Err("`processes` is not an array".into());
        };
        let ids: Vec<&str> = list
            .iter()
            .filter_map(|p| p.get("id").and_then(Value::as_str))
            .collect();
        let chosen = match id {
            Some(want) => list
                .iter()
                .find(|p| p.get("id").and_then(Value::as_str) == Some(want))
                .ok_or_else(|| {
                    format!(
                        "the process list has no process {want:?}; it has: {}",
                        ids.join(", ")
                    )
                })?,
            None => match list.as_slice() {
                [one] => one,
                [] => return Err("the process list is empty".into()),
                _ => {
                    return Err(format!(
                        "the document lists {} processes ({}); add #<process id> to the URL \
                         to pick one",
                        list.len(),
                        ids.join(", ")
                    ))
                }
            },
        };
        let Some(chosen) = chosen.as_object() else {
            return Err("an entry of `processes` is not an object".into());
        };
        parse_one(chosen, None)
    }

    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&UdpParameter> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

fn parse_one(obj: &Map<String, Value>, want: Option<&str>) -> Result<Udp, String> {
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err("it has no `id` string".into()),
    };
    if let Some(want) = want {
        if want != id {
            return Err(format!("its process id is {id:?}, not {want:?}"));
        }
    }
    if !obj.get("process_graph").is_some_and(Value::is_object) {
        return Err("it has no `process_graph` object".into());
    }
    let parameters = match obj.get("parameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out: Vec<UdpParameter> = Vec::with_capacity(a.len());
            for (i, p) in a.iter().enumerate() {
                let Some(p) = p.as_object() else {
                    return Err(format!("parameters[{i}] is not an object"));
                };
                let name = match p.get("name") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(format!("parameters[{i}] has no `name` string")),
                };
                if out.iter().any(|q| q.name == name) {
                    return Err(format!("the parameter {name:?} is defined twice"));
                }
                out.push(UdpParameter {
                    title: None,
                    description: p
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    optional: p.get("optional").and_then(Value::as_bool).unwrap_or(false),
                    default: p.get("default").cloned(),
                    schema: p.get("schema").cloned().unwrap_or_else(|| json!({})),
                    name,
                });
            }
            out
        }
        Some(other) => return Err(format!("`parameters` is {}, not an array", kind(other))),
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(Udp {
        id,
        summary: text("summary"),
        description: text("description"),
        parameters,
        returns: obj.get("returns").filter(|v| !v.is_null()).cloned(),
        default_job_options: obj
            .get("default_job_options")
            .filter(|v| !v.is_null())
            .cloned(),
    })
}

// ---------------------------------------------------------------------------------
// Describing parameters
// ---------------------------------------------------------------------------------

/// Form type of a parameter: the APEx `ParamTypeEnum` names plus ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    /// A date or date-time string (`subtype: date` / `date-time`).
    Datetime,
    /// `[start, end]` dates (`subtype: temporal-interval`).
    DateInterval,
    /// `{west, south, east, north, crs?}` (`subtype: bounding-box`).
    BoundingBox,
    /// A GeoJSON object (`subtype: geojson`).
    Polygon,
    /// `true` / `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// Any number (JSON-schema `number`).
    Double,
    /// A string (with `options` when it is an enum).
    String,
    /// An array of strings.
    ArrayString,
    /// An array of numbers (*ext*).
    ArrayDouble,
    /// An array of whole numbers (*ext*).
    ArrayInteger,
    /// A data cube: cannot be given as a value (*ext*).
    Datacube,
    /// A JSON object without a known subtype (*ext*).
    Object,
    /// Anything else: a schema we do not understand; give JSON (*ext*).
    Json,
}

impl ParamType {
    /// The wire name (`bounding-box`, `double`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Datetime => "datetime",
            ParamType::DateInterval => "date-interval",
            ParamType::BoundingBox => "bounding-box",
            ParamType::Polygon => "polygon",
            ParamType::Boolean => "boolean",
            ParamType::Integer => "integer",
            ParamType::Double => "double",
            ParamType::String => "string",
            ParamType::ArrayString => "array-string",
            ParamType::ArrayDouble => "array-double",
            ParamType::ArrayInteger => "array-integer",
            ParamType::Datacube => "datacube",
            ParamType::Object => "object",
            ParamType::Json => "json",
        }
    }
}

/// One parameter of a service, for form builders: the APEx `Parameter` plus `schema`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ParamDescriptor {
    /// Parameter name, the key in `parameters`.
    pub name: String,
    /// *ext* A short human title for a form label, when the service gives one (OGC
    /// API Processes inputs); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Form type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether it may be left out (the UDP says optional, or it has a default).
    pub optional: bool,
    /// Markdown description from the UDP.
    pub description: String,
    /// Default value (`null` when there is none): any JSON value.
    #[schema(value_type = Value)]
    pub default: Value,
    /// Allowed values, for enums (empty otherwise): any JSON values.
    #[schema(value_type = Vec<Value>)]
    pub options: Vec<Value>,
    /// The parameter's JSON schema as written in the UDP (object or array).
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// Describes every parameter of `udp`, in document order. Never fails: a schema we
/// do not understand is [`ParamType::Json`].
pub fn describe(udp: &Udp) -> Vec<ParamDescriptor> {
    udp.parameters
        .iter()
        .map(|p| {
            let shape = shape_of(&p.schema);
            ParamDescriptor {
                name: p.name.clone(),
                title: p.title.clone(),
                kind: shape.kind,
                optional: p.is_optional(),
                description: p.description.clone(),
                default: p.default.clone().unwrap_or(Value::Null),
                options: shape.options,
                schema: p.schema.clone(),
            }
        })
        .collect()
}

/// What a schema boils down to for a form.
struct Shape {
    kind: ParamType,
    options: Vec<Value>,
}

/// One alternative of a schema: its type (`None` for `null`) and enum values.
struct Leaf {
    kind: Option<ParamType>,
    options: Option<Vec<Value>>,
}

fn shape_of(schema: &Value) -> Shape {
    let leaves: Vec<Leaf> = expand(schema).iter().map(classify_leaf).collect();
    combine(&leaves)
}

/// The leaf alternatives of a schema: arrays of schemas, `anyOf`/`oneOf` and `type`
/// arrays become several leaves (each merged with the keywords around it); `allOf` is
/// merged into one. Booleans: `true` is `{}`, `false` nothing. Too many leaves, or
/// nesting too deep, give one `{}` leaf (anything).
fn expand(schema: &Value) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    if expand_into(schema, 0, &mut out).is_err() {
        return vec![Map::new()];
    }
    out
}

fn expand_into(schema: &Value, depth: usize, out: &mut Vec<Map<String, Value>>) -> Result<(), ()> {
    if depth > MAX_DEPTH || out.len() > MAX_LEAVES {
        return Err(());
    }
    match schema {
        // No alternatives at all is read as "anything", not "nothing".
        Value::Array(alts) if alts.is_empty() => {
            out.push(Map::new());
            Ok(())
        }
        Value::Array(alts) => {
            for alt in alts {
                expand_into(alt, depth + 1, out)?;
            }
            Ok(())
        }
        Value::Bool(false) => Ok(()),
        Value::Object(m) => {
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = m.get(key) {
                    let mut base = m.clone();
                    base.remove(key);
                    for alt in alts {
                        expand_into(&merge(&base, alt), depth + 1, out)?;
                    }
                    return Ok(());
                }
            }
            if let Some(Value::Array(parts)) = m.get("allOf") {
                let mut merged = m.clone();
                merged.remove("allOf");
                let mut merged = Value::Object(merged);
                for part in parts {
                    if let Value::Object(mm) = &merged {
                        merged = merge(mm, part);
                    }
                }
                return expand_into(&merged, depth + 1, out);
            }
            if let Some(Value::Array(types)) = m.get("type") {
                if types.is_empty() {
                    out.push(without(m, "type"));
                }
                for t in types {
                    let mut one = m.clone();
                    one.insert("type".into(), t.clone());
                    out.push(one);
                }
                return Ok(());
            }
            out.push(m.clone());
            Ok(())
        }
        // `true`, or something that is not a schema at all: anything goes.
        _ => {
            out.push(Map::new());
            Ok(())
        }
    }
}

/// `base` overlaid with the keys of `alt` (an object schema; anything else replaces).
fn merge(base: &Map<String, Value>, alt: &Value) -> Value {
    match alt {
        Value::Object(a) => {
            let mut m = base.clone();
            for (k, v) in a {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

fn without(m: &Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut m = m.clone();
    m.remove(key);
    m
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn classify_leaf(s: &Map<String, Value>) -> Leaf {
    let ty = str_of(s, "type");
    let mut options = match s.get("enum") {
        Some(Value::Array(e)) => Some(e.iter().filter(|v| !v.is_null()).cloned().collect()),
        _ => s
            .get("const")
            .filter(|v| !v.is_null())
            .map(|c| vec![c.clone()]),
    };
    let enum_only_null = match s.get("enum") {
        Some(Value::Array(e)) => !e.is_empty() && e.iter().all(Value::is_null),
        _ => s.get("const").is_some_and(Value::is_null),
    };
    if ty == Some("null") || enum_only_null {
        return Leaf {
            kind: None,
            options: None,
        };
    }
    let kind = match (str_of(s, "subtype"), ty) {
        _ if is_ogc_bbox(s) => ParamType::BoundingBox,
        (Some("bounding-box"), _) => ParamType::BoundingBox,
        (Some("temporal-interval"), _) => ParamType::DateInterval,
        (Some("geojson"), _) => ParamType::Polygon,
        (Some("date" | "date-time"), None | Some("string")) => ParamType::Datetime,
        (Some("datacube" | "raster-cube" | "vector-cube"), _) => ParamType::Datacube,
        (_, Some("string")) => match str_of(s, "format") {
            Some("date" | "date-time") => ParamType::Datetime,
            _ => ParamType::String,
        },
        (_, Some("boolean")) => ParamType::Boolean,
        (_, Some("integer")) => ParamType::Integer,
        (_, Some("number")) => ParamType::Double,
        (_, Some("array")) => {
            let (kind, item_options) = array_kind(s.get("items"));
            if options.is_none() && !item_options.is_empty() {
                options = Some(item_options);
            }
            kind
        }
        (_, Some("object")) if looks_like_geojson_schema(s) => ParamType::Polygon,
        (_, Some("object")) => ParamType::Object,
        (_, None) => options
            .as_deref()
            .and_then(kind_of_values)
            .unwrap_or(ParamType::Json),
        (_, Some(_)) => ParamType::Json,
    };
    if matches!(
        kind,
        ParamType::BoundingBox | ParamType::DateInterval | ParamType::Polygon | ParamType::Datacube
    ) {
        options = None;
    }
    Leaf {
        kind: Some(kind),
        options,
    }
}

/// The type of an array from its `items` schema, and the items' enum values (the
/// options of a multiple choice).
fn array_kind(items: Option<&Value>) -> (ParamType, Vec<Value>) {
    let Some(items @ Value::Object(_)) = items else {
        return (ParamType::Json, Vec::new());
    };
    let shape = shape_of(items);
    let kind = match shape.kind {
        ParamType::String | ParamType::Datetime => ParamType::ArrayString,
        ParamType::Double => ParamType::ArrayDouble,
        ParamType::Integer => ParamType::ArrayInteger,
        _ => return (ParamType::Json, Vec::new()),
    };
    (kind, shape.options)
}

/// An object schema describing GeoJSON: a `type` property limited to GeoJSON types, or
/// `coordinates` / `features` / `geometry` required.
fn looks_like_geojson_schema(s: &Map<String, Value>) -> bool {
    let type_prop = s
        .get("properties")
        .and_then(|p| p.get("type"))
        .map(|t| {
            let mut vals: Vec<&Value> = Vec::new();
            if let Some(Value::Array(e)) = t.get("enum") {
                vals.extend(e);
            }
            if let Some(c) = t.get("const") {
                vals.push(c);
            }
            vals.iter()
                .any(|v| v.as_str().is_some_and(|v| GEOJSON_TYPES.contains(&v)))
        })
        .unwrap_or(false);
    let required = s
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter().any(|k| {
                matches!(
                    k.as_str(),
                    Some("coordinates" | "features" | "geometry" | "geometries")
                )
            })
        });
    type_prop || required
}

/// The type shared by enum values (strings, integers, numbers, booleans).
fn kind_of_values(values: &[Value]) -> Option<ParamType> {
    if values.is_empty() {
        return None;
    }
    if values.iter().all(Value::is_string) {
        Some(ParamType::String)
    } else if values.iter().all(Value::is_boolean) {
        Some(ParamType::Boolean)
    } else if values.iter().all(|v| v.is_i64() || v.is_u64()) {
        Some(ParamType::Integer)
    } else if values.iter().all(Value::is_number) {
        Some(ParamType::Double)
    } else {
        None
    }
}

/// Picks the most useful form type out of the alternatives.
fn combine(leaves: &[Leaf]) -> Shape {
    let kinds: Vec<ParamType> = leaves.iter().filter_map(|l| l.kind).collect();
    let json = Shape {
        kind: ParamType::Json,
        options: Vec::new(),
    };
    if kinds.is_empty() {
        return json;
    }
    for special in [
        ParamType::BoundingBox,
        ParamType::Polygon,
        ParamType::DateInterval,
    ] {
        if kinds.contains(&special) {
            return Shape {
                kind: special,
                options: Vec::new(),
            };
        }
    }
    let mut distinct: Vec<ParamType> = Vec::new();
    for k in &kinds {
        if !distinct.contains(k) {
            distinct.push(*k);
        }
    }
    if distinct.len() > 1 {
        distinct.retain(|k| *k != ParamType::Datacube);
    }
    let has = |k: ParamType| distinct.contains(&k);
    let kind = match distinct.as_slice() {
        [one] => *one,
        [_, _] if has(ParamType::Integer) && has(ParamType::Double) => ParamType::Double,
        [_, _] if has(ParamType::ArrayInteger) && has(ParamType::ArrayDouble) => {
            ParamType::ArrayDouble
        }
        [_, _] if has(ParamType::Datetime) && has(ParamType::String) => ParamType::String,
        _ => return json,
    };
    // Options only when every alternative of the chosen kind restricts its values.
    let mut options: Vec<Value> = Vec::new();
    let relevant = leaves.iter().filter(|l| {
        l.kind.is_some_and(|k| {
            k == kind
                || (kind == ParamType::Double && k == ParamType::Integer)
                || (kind == ParamType::String && k == ParamType::Datetime)
        })
    });
    for leaf in relevant {
        match &leaf.options {
            Some(o) => {
                for v in o {
                    if !options.contains(v) {
                        options.push(v.clone());
                    }
                }
            }
            None => {
                options.clear();
                break;
            }
        }
    }
    Shape { kind, options }
}

// ---------------------------------------------------------------------------------
// Validating arguments
// ---------------------------------------------------------------------------------

/// Validates the `parameters` of a job against the UDP. Errors are named
/// `parameters.<name>` (and deeper, e.g. `parameters.spatial_extent.west`): unknown
/// names (listing the valid ones), missing required parameters (not optional and
/// without default) and values that do not match the schema.
///
/// On success, returns the arguments to send: as given, except that a GeoJSON
/// Polygon, MultiPolygon, GeometryCollection, Feature or FeatureCollection given for a
/// parameter that accepts a bounding box but not GeoJSON becomes its bounding box
/// `{west, south, east, north, crs: 4326}`. Defaults are not filled in: the backend
/// applies them.
pub fn validate_arguments(
    udp: &Udp,
    args: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    for (name, v) in args {
        let path = format!("parameters.{name}");
        let Some(p) = udp.parameter(name) else {
            errors.push(FieldError::new(path, unknown_reason(udp, name)));
            continue;
        };
        match check_argument(p, v, &path) {
            Ok(sent) => {
                out.insert(name.clone(), sent);
            }
            Err(e) => errors.extend(e),
        }
    }
    for p in &udp.parameters {
        if !p.is_optional() && !args.contains_key(&p.name) {
            let shape = shape_of(&p.schema);
            errors.push(FieldError::new(
                format!("parameters.{}", p.name),
                format!(
                    "is required by {} (a {} value)",
                    udp.id,
                    shape.kind.as_str()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn unknown_reason(udp: &Udp, name: &str) -> String {
    if udp.parameters.is_empty() {
        return format!("unknown parameter: {} takes no parameters", udp.id);
    }
    let names: Vec<&str> = udp.parameters.iter().map(|p| p.name.as_str()).collect();
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let mut reason = format!(
        "unknown parameter of {}; valid parameters: {}",
        udp.id,
        names.join(", ")
    );
    if let Some(similar) = names.iter().find(|n| norm(n) == norm(name)) {
        reason.push_str(&format!(" (did you mean {similar:?}?)"));
    }
    reason
}

/// Checks one argument; returns the value to send.
fn check_argument(p: &UdpParameter, v: &Value, path: &str) -> Result<Value, Vec<FieldError>> {
    // Passing the default `null` explicitly is always fine.
    if v.is_null() && p.default == Some(Value::Null) {
        return Ok(Value::Null);
    }
    let leaves = expand(&p.schema);
    let sent = if leaves.iter().any(is_ogc_bbox) && accepts_bbox_not_geojson(&leaves) {
        to_ogc_bbox(v, path)?
    } else if is_polygonal_geojson(v) && accepts_bbox_not_geojson(&leaves) {
        let errors = validate_geojson_geometry(path, v);
        if !errors.is_empty() {
            return Err(errors);
        }
        match geojson_bbox(v) {
            Some([w, s, e, n]) if w < e && s < n => {
                json!({"west": w, "south": s, "east": e, "north": n, "crs": 4326})
            }
            _ => {
                return Err(vec![FieldError::new(
                    path,
                    "this parameter takes a bounding box; the GeoJSON given has no area to \
                     take one from",
                )])
            }
        }
    } else {
        v.clone()
    };
    let errors = check_alternatives(&leaves, &sent, path);
    if errors.is_empty() {
        Ok(sent)
    } else {
        Err(errors)
    }
}

/// The CRS of OGC API bounding boxes in longitude, latitude order (WGS 84).
pub const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

/// Whether a schema alternative is an OGC API bounding box: `format: ogc-bbox`, or a
/// reference to the OGC `bbox` schema.
pub(super) fn is_ogc_bbox(s: &Map<String, Value>) -> bool {
    str_of(s, "format") == Some("ogc-bbox")
        || str_of(s, "$ref").is_some_and(|r| {
            let name = r.rsplit('/').next().unwrap_or(r);
            matches!(name, "bbox.yaml" | "bbox.json" | "bbox")
        })
}

/// The OGC API form of a bounding box given as `{west, south, east, north, crs?}` or as
/// GeoJSON (its extent); an OGC form is kept as it is.
fn to_ogc_bbox(v: &Value, path: &str) -> Result<Value, Vec<FieldError>> {
    if v.get("bbox").is_some() || !v.is_object() {
        return Ok(v.clone());
    }
    if is_polygonal_geojson(v) {
        let errors = validate_geojson_geometry(path, v);
        if !errors.is_empty() {
            return Err(errors);
        }
        return match geojson_bbox(v) {
            Some([w, s, e, n]) if w < e && s < n => Ok(json!({"bbox": [w, s, e, n], "crs": CRS84})),
            _ => Err(vec![FieldError::new(
                path,
                "this parameter takes a bounding box; the GeoJSON given has no area to take one from",
            )]),
        };
    }
    let m = v.as_object().expect("checked above");
    if !["west", "south", "east", "north"]
        .iter()
        .any(|k| m.contains_key(*k))
    {
        return Ok(v.clone());
    }
    let errors = validate_bbox(path, v);
    if !errors.is_empty() {
        return Err(errors);
    }
    let num = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or_default();
    let crs = match m.get("crs") {
        None | Some(Value::Null) => CRS84.to_string(),
        Some(Value::Number(n)) if n.as_u64() == Some(4326) => CRS84.to_string(),
        Some(Value::Number(n)) => format!("http://www.opengis.net/def/crs/EPSG/0/{n}"),
        Some(Value::String(s)) => match s.trim().to_ascii_uppercase().strip_prefix("EPSG:") {
            Some("4326") => CRS84.to_string(),
            Some(code) => format!("http://www.opengis.net/def/crs/EPSG/0/{code}"),
            None => s.clone(),
        },
        Some(_) => CRS84.to_string(),
    };
    Ok(json!({"bbox": [num("west"), num("south"), num("east"), num("north")], "crs": crs}))
}

fn accepts_bbox_not_geojson(leaves: &[Map<String, Value>]) -> bool {
    let kinds: Vec<Option<ParamType>> = leaves.iter().map(|l| classify_leaf(l).kind).collect();
    kinds.contains(&Some(ParamType::BoundingBox))
        && !kinds.iter().any(|k| {
            matches!(
                k,
                Some(ParamType::Polygon | ParamType::Json | ParamType::Object)
            )
        })
}

fn is_polygonal_geojson(v: &Value) -> bool {
    matches!(
        v.get("type").and_then(Value::as_str),
        Some("Polygon" | "MultiPolygon" | "GeometryCollection" | "Feature" | "FeatureCollection")
    )
}

/// `[west, south, east, north]` over every position of a GeoJSON object.
fn geojson_bbox(v: &Value) -> Option<[f64; 4]> {
    fn positions(v: &Value, acc: &mut Option<[f64; 4]>) {
        if let Some(a) = v.as_array() {
            if let [Some(x), Some(y), ..] = [
                a.first().and_then(Value::as_f64),
                a.get(1).and_then(Value::as_f64),
            ] {
                let b = acc.get_or_insert([x, y, x, y]);
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x);
                b[3] = b[3].max(y);
            } else {
                for x in a {
                    positions(x, acc);
                }
            }
        }
    }
    fn walk(v: &Value, acc: &mut Option<[f64; 4]>) {
        let Some(m) = v.as_object() else { return };
        if let Some(c) = m.get("coordinates") {
            positions(c, acc);
        }
        for key in ["geometry"] {
            if let Some(g) = m.get(key) {
                walk(g, acc);
            }
        }
        for key in ["geometries", "features"] {
            if let Some(Value::Array(items)) = m.get(key) {
                for x in items {
                    walk(x, acc);
                }
            }
        }
    }
    let mut acc = None;
    walk(v, &mut acc);
    acc
}

/// A few words on what an alternative accepts.
pub(super) fn describe_leaf(s: &Map<String, Value>) -> String {
    let what = match classify_leaf(s).kind {
        None => "null".to_string(),
        Some(ParamType::BoundingBox) => "a bounding box {west, south, east, north, crs?}".into(),
        Some(ParamType::DateInterval) => "a temporal interval [start, end]".into(),
        Some(ParamType::Polygon) => "a GeoJSON object".into(),
        Some(ParamType::Datacube) => "a data cube (cannot be given as a value)".into(),
        Some(ParamType::Datetime) => "a date string".into(),
        Some(ParamType::Json) => match str_of(s, "type") {
            Some(t) => format!("a {t}"),
            None => "any value".into(),
        },
        Some(k) => format!("a {} value", k.as_str()),
    };
    match str_of(s, "title") {
        Some(t) if !t.is_empty() => format!("{t} ({what})"),
        _ => what,
    }
}

/// The JSON kind of a value, for messages ("a string", "null").
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------
// Fetching and caching
// ---------------------------------------------------------------------------------

/// Why a UDP could not be had. URLs in it never carry a query string or user info.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// No answer: DNS, connection, TLS, timeout or a broken body.
    #[error("the UDP at {url} could not be fetched: {reason}")]
    Unreachable {
        /// The URL, without query.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("the UDP at {url} could not be fetched: the server answered HTTP {status}")]
    Http {
        /// The URL, without query.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The document is not a UDP (not JSON, no `id`, no `process_graph`, ...).
    #[error("{url} is not an openEO user-defined process: {reason}")]
    NotAUdp {
        /// The URL, without query.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The document is larger than [`MAX_UDP_BYTES`].
    #[error("the document at {url} is larger than {limit} bytes, too large for a UDP")]
    TooLarge {
        /// The URL, without query.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Not an absolute http(s) URL.
    #[error("{url} is not a usable UDP URL: {reason}")]
    InvalidUrl {
        /// The URL, without query.
        url: String,
        /// Why.
        reason: String,
    },
}

impl UdpError {
    /// The URL the error is about (without query).
    pub fn url(&self) -> &str {
        match self {
            UdpError::Unreachable { url, .. }
            | UdpError::Http { url, .. }
            | UdpError::NotAUdp { url, .. }
            | UdpError::TooLarge { url, .. }
            | UdpError::InvalidUrl { url, .. } => url,
        }
    }
}

/// `url` without user info, query or fragment, for messages and logs (the one
/// implementation lives with the openEO adapter).
pub use crate::redact::redact_url;

/// The bundled UDP text for a URL whose last path segment is a bundled file name
/// (e.g. a raw.githubusercontent.com URL of the APEx repository). When several bundled
/// files have that name, the one whose path in the snapshot ends the URL's path wins,
/// else the one nearest to its `openeo_udp/` folder.
pub fn bundled_for(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    let (_authority, path) = path.split_once('/')?;
    let last = path.rsplit('/').next()?;
    let candidates: Vec<&(&str, &str)> = bundled_udp_files()
        .filter(|(p, _)| p.rsplit('/').next() == Some(last))
        .collect();
    let by_path = candidates
        .iter()
        .find(|(p, _)| path.ends_with(&format!("/{p}")) || path == *p);
    by_path
        .or_else(|| candidates.iter().min_by_key(|(p, _)| p.len()))
        .map(|(_, text)| *text)
}

/// A UDP and how long it stays fresh.
#[derive(Clone)]
struct Fetched {
    udp: Arc<Udp>,
    fresh_for: Duration,
}

/// Each cached UDP expires after its own freshness ([`FRESH_FOR`] when fetched,
/// [`FALLBACK_FRESH_FOR`] for a fallback copy).
struct Freshness;

impl moka::Expiry<String, Fetched> for Freshness {
    fn expire_after_create(&self, _url: &String, f: &Fetched, _at: Instant) -> Option<Duration> {
        Some(f.fresh_for)
    }

    fn expire_after_update(
        &self,
        _url: &String,
        f: &Fetched,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(f.fresh_for)
    }
}

struct Inner {
    http: reqwest::Client,
    /// The UDPs still fresh, by URL. A missing or expired one is fetched; concurrent
    /// callers share that fetch, and a failed fetch leaves nothing behind.
    fresh: moka::future::Cache<String, Fetched>,
    /// The last UDP had for each URL, fresh or not: what a failed refresh falls back
    /// to (an expired entry of `fresh` is gone, this copy is not).
    last_good: moka::future::Cache<String, Arc<Udp>>,
    fresh_for: Duration,
}

/// Cache of fetched UDP definitions, keyed by URL (cheap to clone; clones share it).
#[derive(Clone)]
pub struct UdpCache {
    inner: Arc<Inner>,
}

impl Default for UdpCache {
    fn default() -> Self {
        UdpCache::new()
    }
}

impl UdpCache {
    /// An empty cache with its own HTTP client (20 s timeout, no credentials).
    pub fn new() -> UdpCache {
        UdpCache::with_freshness(FRESH_FOR)
    }

    /// An empty cache whose fetched UDPs stay fresh for `fresh_for` (tests).
    pub fn with_freshness(fresh_for: Duration) -> UdpCache {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("eodispatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        UdpCache {
            inner: Arc::new(Inner {
                http,
                fresh: moka::future::Cache::builder()
                    .max_capacity(MAX_CACHED)
                    .expire_after(Freshness)
                    .build(),
                last_good: moka::future::Cache::new(MAX_CACHED),
                fresh_for,
            }),
        }
    }

    /// The UDP at `url` (http or https; `#<id>` picks a process of a list). Fetched
    /// once and reused; concurrent callers for the same URL share one fetch. Falls
    /// back to an older copy, then to the bundled snapshot, when the network fails
    /// (see the module documentation).
    pub async fn get(&self, url: &str) -> Result<Arc<Udp>, UdpError> {
        if let Err(reason) = check_http_url(url) {
            return Err(UdpError::InvalidUrl {
                url: redact_url(url),
                reason,
            });
        }
        let inner = self.inner.clone();
        let key = url.to_owned();
        let fetch = async move {
            let stale = inner.last_good.get(&key).await;
            let fetched = load(inner.http.clone(), key.clone(), stale, inner.fresh_for).await?;
            inner.last_good.insert(key, fetched.udp.clone()).await;
            Ok::<_, UdpError>(fetched)
        };
        match self.inner.fresh.try_get_with(url.to_owned(), fetch).await {
            Ok(fetched) => Ok(fetched.udp),
            Err(e) => Err(UdpError::clone(&e)),
        }
    }
}

/// Fetches `url`, falling back to `stale`, then to the bundled snapshot.
async fn load(
    http: reqwest::Client,
    url: String,
    stale: Option<Arc<Udp>>,
    fresh_for: Duration,
) -> Result<Fetched, UdpError> {
    let fresh = |udp: Arc<Udp>, fresh_for: Duration| Fetched { udp, fresh_for };
    // With a copy at hand (an older fetch, or the bundled snapshot), the network gets
    // a short while only: offline, a form must not wait for a DNS timeout.
    let fetched = if stale.is_some() || bundled_for(&url).is_some() {
        match tokio::time::timeout(WAIT_WITH_COPY, fetch(&http, &url)).await {
            Ok(r) => r,
            Err(_) => Err(UdpError::Unreachable {
                url: redact_url(&url),
                reason: format!("no answer within {} s", WAIT_WITH_COPY.as_secs()),
            }),
        }
    } else {
        fetch(&http, &url).await
    };
    match fetched {
        Ok(udp) => Ok(fresh(Arc::new(udp), fresh_for)),
        Err(e @ (UdpError::Unreachable { .. } | UdpError::Http { .. })) => {
            if let Some(old) = stale {
                tracing::warn!(error = %e, "keeping the UDP fetched earlier");
                return Ok(fresh(old, FALLBACK_FRESH_FOR));
            }
            let Some(text) = bundled_for(&url) else {
                return Err(e);
            };
            let pick = url
                .split_once('#')
                .map(|(_, id)| id)
                .filter(|id| !id.is_empty());
            match Udp::from_slice(text.as_bytes(), pick) {
                Ok(udp) => {
                    tracing::warn!(error = %e, "using the bundled copy of the UDP");
                    Ok(fresh(Arc::new(udp), FALLBACK_FRESH_FOR))
                }
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// One network fetch and parse.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Udp, UdpError> {
    let shown = redact_url(url);
    let (target, pick) = match url.split_once('#') {
        Some((t, id)) => (t, Some(id).filter(|id| !id.is_empty())),
        None => (url, None),
    };
    let unreachable = |e: reqwest::Error| UdpError::Unreachable {
        url: shown.clone(),
        reason: describe_reqwest_error(e),
    };
    let resp = http
        .get(target)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(UdpError::Http {
            url: shown,
            status: status.as_u16(),
        });
    }
    let too_large = || UdpError::TooLarge {
        url: shown.clone(),
        limit: MAX_UDP_BYTES,
    };
    let body = crate::body_limit::read_limited(resp, MAX_UDP_BYTES)
        .await
        .map_err(unreachable)?
        .ok_or_else(too_large)?;
    Udp::from_slice(&body, pick).map_err(|reason| UdpError::NotAUdp {
        url: shown.clone(),
        reason,
    })
}

/// A reqwest error in words, without the URL (which may carry a query).
fn describe_reqwest_error(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let mut reason = parts.join(": ");
    if timeout {
        reason.push_str(&format!(
            " (no complete answer within {} s)",
            FETCH_TIMEOUT.as_secs()
        ));
    }
    reason
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn bundled(name: &str) -> Udp {
        let text = BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .unwrap();
        Udp::from_slice(text.as_bytes(), None).unwrap()
    }

    fn desc(udp: &Udp, name: &str) -> ParamDescriptor {
        describe(udp).into_iter().find(|d| d.name == name).unwrap()
    }

    /// Asserts type, optional, default and options of one descriptor.
    fn assert_desc(
        udp: &Udp,
        name: &str,
        kind: ParamType,
        optional: bool,
        default: Value,
        options: Vec<Value>,
    ) {
        let d = desc(udp, name);
        assert_eq!(d.kind, kind, "{name}: type");
        assert_eq!(d.optional, optional, "{name}: optional");
        assert_eq!(d.default, default, "{name}: default");
        assert_eq!(d.options, options, "{name}: options");
        assert_eq!(
            d.schema,
            udp.parameter(name).unwrap().schema,
            "{name}: schema"
        );
        assert_eq!(
            d.description,
            udp.parameter(name).unwrap().description,
            "{name}: description"
        );
    }

    fn names(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.name.as_str()).collect()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn udp_with(params: Value) -> Udp {
        Udp::from_value(
            &json!({"id": "made_up", "process_graph": {}, "parameters": params}),
            None,
        )
        .unwrap()
    }

    // ----- parsing ---------------------------------------------------------------

    #[test]
    fn every_catalog_file_is_bundled_and_parses() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.to_string_lossy().contains("/openeo_udp/")
                    && p.extension().is_some_and(|x| x == "json")
                {
                    out.push(p.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/apex");
        let mut on_disk = Vec::new();
        walk(std::path::Path::new(dir), &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = BUNDLED.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        assert_eq!(listed.len(), 47);
        for (name, text) in BUNDLED.iter() {
            let udp = Udp::from_slice(text.as_bytes(), None).unwrap();
            assert_eq!(&format!("{}.json", udp.id), name);
        }
        // Each is found by its raw.githubusercontent.com URL, also the two `ppi.json`.
        let raw = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main";
        for (path, text) in bundled_udp_files() {
            assert_eq!(bundled_for(&format!("{raw}/{path}")), Some(*text), "{path}");
        }
        let main = "algorithm_catalog/vito/ppi/openeo_udp/ppi.json";
        let test = "algorithm_catalog/vito/ppi/openeo_udp/test/ppi.json";
        assert_ne!(
            bundled_for(&format!("{raw}/{main}")),
            bundled_for(&format!("{raw}/{test}"))
        );
        assert_eq!(
            bundled_for("https://elsewhere.example/ppi.json"),
            bundled_for(&format!("{raw}/{main}"))
        );
    }

    #[test]
    fn parses_the_eurac_udp() {
        let udp = bundled("eurac_pv_farm_detection.json");
        assert_eq!(udp.id, "eurac_pv_farm_detection");
        assert!(udp
            .summary
            .as_deref()
            .unwrap()
            .contains("photovoltaic farms"));
        assert!(udp
            .description
            .as_deref()
            .unwrap()
            .starts_with("# Description"));
        let names: Vec<&str> = udp.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["spatial_extent", "temporal_extent"]);
        assert!(udp.parameters[0].schema.is_array());
        assert_eq!(
            udp.returns.as_ref().unwrap()["schema"],
            json!({"type": "object", "subtype": "datacube"})
        );
        assert_eq!(
            udp.default_job_options.as_ref().unwrap()["driver-memory"],
            json!("1g")
        );
        let ramona = bundled("RAMONA-herbaceous_rangeland_biomass-country-mosaick.json");
        assert_eq!(ramona.summary, None);
        assert!(ramona.returns.is_none());
        assert!(ramona.default_job_options.is_some());
    }

    #[test]
    fn parses_process_lists_and_picks_by_id() {
        let a = json!({"id": "a", "process_graph": {}, "parameters": []});
        let b = json!({"id": "b", "process_graph": {}, "parameters": [{"name": "x", "schema": {"type": "number"}}]});
        let list = json!({"processes": [a, b], "links": []});
        assert_eq!(
            Udp::from_value(&list, Some("b")).unwrap().parameters[0].name,
            "x"
        );
        let err = Udp::from_value(&list, None).unwrap_err();
        assert!(err.contains("2 processes") && err.contains("a, b"), "{err}");
        let err = Udp::from_value(&list, Some("c")).unwrap_err();
        assert!(err.contains("no process \"c\""), "{err}");
        let single = json!({"processes": [{"id": "a", "process_graph": {}}]});
        assert_eq!(Udp::from_value(&single, None).unwrap().id, "a");
        // A single UDP with another id than asked.
        let err = Udp::from_value(&json!({"id": "a", "process_graph": {}}), Some("z")).unwrap_err();
        assert!(err.contains("not \"z\""), "{err}");
    }

    #[test]
    fn rejects_documents_that_are_not_udps() {
        for (doc, needle) in [
            (json!([1, 2]), "not a JSON object"),
            (json!({"hello": "world"}), "no `id`"),
            (json!({"id": "x"}), "process_graph"),
            (
                json!({"id": "x", "process_graph": {}, "parameters": {}}),
                "not an array",
            ),
            (
                json!({"id": "x", "process_graph": {}, "parameters": [{"schema": {}}]}),
                "name",
            ),
            (
                json!({"id": "x", "process_graph": {}, "parameters": [{"name": "a"}, {"name": "a"}]}),
                "twice",
            ),
            (json!({"processes": []}), "empty"),
        ] {
            let err = Udp::from_value(&doc, None).unwrap_err();
            assert!(err.contains(needle), "{doc}: {err}");
        }
        let err = Udp::from_slice(b"<html>captive portal</html>", None).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        // Lenient on the rest: no schema, no description.
        let udp = udp_with(json!([{"name": "a"}]));
        assert_eq!(udp.parameters[0].schema, json!({}));
        assert_eq!(udp.parameters[0].description, "");
        assert_eq!(describe(&udp)[0].kind, ParamType::Json);
    }

    // ----- describe: the fixtures ------------------------------------------------

    #[test]
    fn describes_eurac_pv_farm_detection() {
        let udp = bundled("eurac_pv_farm_detection.json");
        assert_eq!(describe(&udp).len(), 2);
        assert_desc(
            &udp,
            "spatial_extent",
            ParamType::BoundingBox,
            true,
            json!({"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008}),
            vec![],
        );
        assert_desc(
            &udp,
            "temporal_extent",
            ParamType::DateInterval,
            true,
            json!(["2023-05-01", "2023-09-30"]),
            vec![],
        );
        assert!(desc(&udp, "spatial_extent")
            .description
            .starts_with("Limits the data to process"));
    }

    #[test]
    fn describes_cropsar1d() {
        let udp = bundled("cropsar1d.json");
        assert_eq!(describe(&udp).len(), 5);
        assert_desc(
            &udp,
            "geometry",
            ParamType::Polygon,
            false,
            Value::Null,
            vec![],
        );
        assert_desc(
            &udp,
            "startdate",
            ParamType::Datetime,
            false,
            Value::Null,
            vec![],
        );
        assert_desc(
            &udp,
            "enddate",
            ParamType::Datetime,
            false,
            Value::Null,
            vec![],
        );
        assert_desc(
            &udp,
            "minimal_input_checks",
            ParamType::Boolean,
            true,
            json!(false),
            vec![],
        );
        assert_desc(
            &udp,
            "output",
            ParamType::String,
            true,
            json!("FAPAR"),
            vec![json!("FAPAR"), json!("FCOVER")],
        );
    }

    #[test]
    fn describes_scmap_composite() {
        let udp = bundled("scmap_composite.json");
        assert_eq!(describe(&udp).len(), 6);
        assert_desc(
            &udp,
            "temporal_extent",
            ParamType::DateInterval,
            false,
            Value::Null,
            vec![],
        );
        assert_desc(
            &udp,
            "bounding_box",
            ParamType::BoundingBox,
            true,
            json!({"west": 11.1, "south": 48.0, "east": 11.3, "north": 48.2, "crs": "EPSG:4326"}),
            vec![],
        );
        assert_desc(
            &udp,
            "max_cloud_cover",
            ParamType::Double,
            true,
            json!(80),
            vec![],
        );
        assert_desc(
            &udp,
            "nmad_sigma",
            ParamType::Double,
            true,
            json!(3.0),
            vec![],
        );
        assert_desc(
            &udp,
            "compute_mref",
            ParamType::Boolean,
            true,
            json!(false),
            vec![],
        );
        assert_desc(
            &udp,
            "compute_mask",
            ParamType::Boolean,
            true,
            json!(false),
            vec![],
        );
    }

    #[test]
    fn describes_ramona() {
        let udp = bundled("RAMONA-herbaceous_rangeland_biomass-country-mosaick.json");
        assert_eq!(describe(&udp).len(), 3);
        let country = desc(&udp, "country");
        assert_eq!(country.kind, ParamType::String);
        assert!(country.optional);
        assert_eq!(country.default, json!("benin"));
        assert_eq!(country.options.len(), 55);
        assert_eq!(country.options[0], json!("algeria"));
        assert_eq!(country.options[54], json!("zimbabwe"));
        assert_eq!(
            country.description,
            "Country for which data is to be extracted."
        );
        assert_desc(
            &udp,
            "year",
            ParamType::String,
            true,
            json!("2021"),
            vec![json!("2021"), json!("2022"), json!("2023")],
        );
        let months: Vec<Value> = (1..=12).map(|m| json!(format!("{m:02}"))).collect();
        assert_desc(&udp, "month", ParamType::String, true, json!("10"), months);
    }

    #[test]
    fn describe_serialises_like_apex() {
        let udp = bundled("scmap_composite.json");
        let v = serde_json::to_value(&describe(&udp)[2]).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "type",
                "optional",
                "description",
                "default",
                "options",
                "schema"
            ]
        );
        assert_eq!(v["type"], "double");
        let kinds = [
            (ParamType::Datetime, "datetime"),
            (ParamType::DateInterval, "date-interval"),
            (ParamType::BoundingBox, "bounding-box"),
            (ParamType::Polygon, "polygon"),
            (ParamType::Boolean, "boolean"),
            (ParamType::Integer, "integer"),
            (ParamType::Double, "double"),
            (ParamType::String, "string"),
            (ParamType::ArrayString, "array-string"),
            (ParamType::ArrayDouble, "array-double"),
            (ParamType::ArrayInteger, "array-integer"),
            (ParamType::Datacube, "datacube"),
            (ParamType::Object, "object"),
            (ParamType::Json, "json"),
        ];
        for (k, s) in kinds {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(s));
            assert_eq!(k.as_str(), s);
        }
    }

    // ----- describe: exotic schemas ----------------------------------------------

    #[test]
    fn exotic_schemas_never_fail() {
        let udp = udp_with(json!([
            {"name": "unknown_keyword", "schema": {"type": "number", "x-widget": "slider", "frobnicate": [1]}},
            {"name": "raster", "schema": {"type": "object", "subtype": "raster-cube"}},
            {"name": "cube", "schema": {"type": "object", "subtype": "datacube"}},
            {"name": "nullable_number", "schema": {"type": ["number", "null"]}},
            {"name": "int_or_number", "schema": {"type": ["integer", "number"]}},
            {"name": "mixed_scalars", "schema": {"type": ["string", "number"]}},
            {"name": "nested_anyof", "schema": {"anyOf": [
                {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
                {"oneOf": [{"type": "number"}]}
            ]}},
            {"name": "anyof_bbox_geojson", "schema": {"anyOf": [
                {"type": "object", "subtype": "geojson"},
                {"anyOf": [{"type": "object", "subtype": "bounding-box"}]}
            ]}},
            {"name": "null_alternative", "schema": [{"type": "string", "subtype": "date-time", "format": "date-time"}, {"type": "null"}]},
            {"name": "numbers", "schema": {"type": "array", "items": {"type": "number"}}},
            {"name": "integers", "schema": {"type": "array", "items": {"type": "integer"}}},
            {"name": "strings", "schema": {"type": "array", "items": {"type": "string", "enum": ["B02", "B03"]}}},
            {"name": "untyped_array", "schema": {"type": "array"}},
            {"name": "plain_object", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            {"name": "geojson_shaped", "schema": {"type": "object", "required": ["type", "coordinates"]}},
            {"name": "int_enum", "schema": {"enum": [10, 20, 60]}},
            {"name": "number_enum_with_null", "schema": {"type": ["number", "null"], "enum": [0.5, 1, null]}},
            {"name": "empty", "schema": {}},
            {"name": "true_schema", "schema": true},
            {"name": "only_null", "schema": {"type": "null"}},
            {"name": "weird_type", "schema": {"type": "banana"}},
            {"name": "not_a_schema", "schema": 42},
            {"name": "empty_alternatives", "schema": []},
            {"name": "ref", "schema": {"$ref": "#/definitions/x"}},
            {"name": "process_graph", "schema": {"type": "object", "subtype": "process-graph", "parameters": []}},
            {"name": "allof", "schema": {"allOf": [{"type": "integer"}, {"minimum": 3}]}},
            {"name": "cube_or_number", "schema": [{"type": "object", "subtype": "datacube"}, {"type": "number"}]},
            {"name": "date_or_string", "schema": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string"}]}},
        ]));
        let kinds: Vec<(String, ParamType)> = describe(&udp)
            .into_iter()
            .map(|d| (d.name, d.kind))
            .collect();
        let expected = [
            ("unknown_keyword", ParamType::Double),
            ("raster", ParamType::Datacube),
            ("cube", ParamType::Datacube),
            ("nullable_number", ParamType::Double),
            ("int_or_number", ParamType::Double),
            ("mixed_scalars", ParamType::Json),
            ("nested_anyof", ParamType::Double),
            ("anyof_bbox_geojson", ParamType::BoundingBox),
            ("null_alternative", ParamType::Datetime),
            ("numbers", ParamType::ArrayDouble),
            ("integers", ParamType::ArrayInteger),
            ("strings", ParamType::ArrayString),
            ("untyped_array", ParamType::Json),
            ("plain_object", ParamType::Object),
            ("geojson_shaped", ParamType::Polygon),
            ("int_enum", ParamType::Integer),
            ("number_enum_with_null", ParamType::Double),
            ("empty", ParamType::Json),
            ("true_schema", ParamType::Json),
            ("only_null", ParamType::Json),
            ("weird_type", ParamType::Json),
            ("not_a_schema", ParamType::Json),
            ("empty_alternatives", ParamType::Json),
            ("ref", ParamType::Json),
            ("process_graph", ParamType::Object),
            ("allof", ParamType::Integer),
            ("cube_or_number", ParamType::Double),
            ("date_or_string", ParamType::String),
        ];
        let expected: Vec<(String, ParamType)> =
            expected.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        assert_eq!(kinds, expected);
        // Options: enums without null; none when some alternative is unrestricted.
        assert_eq!(
            desc(&udp, "int_enum").options,
            vec![json!(10), json!(20), json!(60)]
        );
        assert_eq!(
            desc(&udp, "number_enum_with_null").options,
            vec![json!(0.5), json!(1)]
        );
        assert!(desc(&udp, "date_or_string").options.is_empty());
        assert_eq!(
            desc(&udp, "strings").options,
            vec![json!("B02"), json!("B03")]
        );
        // Nothing is optional unless the UDP says so or has a default.
        assert!(describe(&udp).iter().all(|d| !d.optional));

        // Validation with the same schemas does not panic, whatever the value.
        for value in [
            json!(null),
            json!(1),
            json!(1.5),
            json!("x"),
            json!([1, "a"]),
            json!({"type": "Point", "coordinates": [1, 2]}),
            json!({"west": 1, "south": 2, "east": 3, "north": 4}),
        ] {
            for p in &udp.parameters {
                let _ = check_argument(p, &value, "x");
            }
        }
    }

    #[test]
    fn explosive_schemas_are_cut_short() {
        // 4^6 = 4096 leaves: more than MAX_LEAVES, read as "anything".
        let mut schema = json!({"type": "number"});
        for _ in 0..6 {
            schema = json!({"anyOf": [schema.clone(), schema.clone(), schema.clone(), schema]});
        }
        let udp = udp_with(json!([{"name": "x", "schema": schema}]));
        assert_eq!(describe(&udp)[0].kind, ParamType::Json);
        assert!(validate_arguments(&udp, &obj(json!({"x": "anything"}))).is_ok());
    }

    #[test]
    fn optional_comes_from_optional_or_default() {
        let udp = udp_with(json!([
            {"name": "a", "schema": {"type": "number"}, "optional": true},
            {"name": "b", "schema": {"type": "number"}, "default": null},
            {"name": "c", "schema": {"type": "number"}, "default": 5},
            {"name": "d", "schema": {"type": ["number", "null"]}},
        ]));
        let d = describe(&udp);
        assert_eq!(
            d.iter().map(|d| d.optional).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(d[1].default, Value::Null);
        assert_eq!(d[2].default, json!(5));
        assert_eq!(d[3].kind, ParamType::Double);
    }

    // ----- validate_arguments ----------------------------------------------------

    #[test]
    fn accepts_good_arguments_and_passes_them_through() {
        let udp = bundled("eurac_pv_farm_detection.json");
        let args = obj(json!({
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
            "temporal_extent": ["2023-05-01", "2023-09-30"]
        }));
        assert_eq!(validate_arguments(&udp, &args).unwrap(), args);
        // Everything optional: nothing at all is fine, and no default is filled in.
        assert_eq!(validate_arguments(&udp, &Map::new()).unwrap(), Map::new());
        // null means "no spatial filter".
        let args = obj(json!({"spatial_extent": null, "temporal_extent": ["2023-05-01", null]}));
        assert_eq!(validate_arguments(&udp, &args).unwrap(), args);
        // Two equal dates are "that day" (uniqueItems ignored on purpose).
        let args = obj(json!({"temporal_extent": ["2025-05-01", "2025-05-01"]}));
        assert!(validate_arguments(&udp, &args).is_ok());

        let scmap = bundled("scmap_composite.json");
        let args = obj(json!({
            "temporal_extent": ["2022-01-01T00:00:00Z", "2022-12-31"],
            "bounding_box": {"west": 11.1, "south": 48.0, "east": 11.3, "north": 48.2, "crs": "EPSG:4326"},
            "max_cloud_cover": 50, "nmad_sigma": 2.5, "compute_mref": true, "compute_mask": false
        }));
        assert_eq!(validate_arguments(&scmap, &args).unwrap(), args);

        let crop = bundled("cropsar1d.json");
        let args = obj(json!({
            "geometry": {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [[[5.0, 51.0], [5.1, 51.0], [5.1, 51.1], [5.0, 51.0]]]}}]},
            "startdate": "2021-01-01", "enddate": "2021-12-31", "output": "FCOVER"
        }));
        assert_eq!(validate_arguments(&crop, &args).unwrap(), args);

        let ramona = bundled("RAMONA-herbaceous_rangeland_biomass-country-mosaick.json");
        let args = obj(json!({"country": "kenya", "year": "2022", "month": "01"}));
        assert_eq!(validate_arguments(&ramona, &args).unwrap(), args);
    }

    #[test]
    fn unknown_parameters_are_named_with_the_valid_ones() {
        let udp = bundled("eurac_pv_farm_detection.json");
        // The APEx benchmark scenario passes `bbox`.
        let args = obj(
            json!({"bbox": {"west": 1, "south": 2, "east": 3, "north": 4}, "Spatial-Extent": null}),
        );
        let errors = validate_arguments(&udp, &args).unwrap_err();
        assert_eq!(
            names(&errors),
            ["parameters.bbox", "parameters.Spatial-Extent"]
        );
        assert!(
            errors[0].reason.contains("spatial_extent, temporal_extent"),
            "{}",
            errors[0].reason
        );
        assert!(
            errors[1].reason.contains("did you mean \"spatial_extent\""),
            "{}",
            errors[1].reason
        );
        let none = udp_with(json!([]));
        let errors = validate_arguments(&none, &obj(json!({"x": 1}))).unwrap_err();
        assert!(errors[0].reason.contains("takes no parameters"));
    }

    #[test]
    fn missing_required_parameters_are_named() {
        let crop = bundled("cropsar1d.json");
        let errors =
            validate_arguments(&crop, &obj(json!({"startdate": "2021-01-01"}))).unwrap_err();
        assert_eq!(
            names(&errors),
            ["parameters.geometry", "parameters.enddate"]
        );
        assert!(
            errors[0].reason.contains("required"),
            "{}",
            errors[0].reason
        );
        assert!(errors[0].reason.contains("polygon"), "{}", errors[0].reason);
        let scmap = bundled("scmap_composite.json");
        let errors = validate_arguments(&scmap, &Map::new()).unwrap_err();
        assert_eq!(names(&errors), ["parameters.temporal_extent"]);
    }

    #[test]
    fn wrong_types_are_named() {
        let scmap = bundled("scmap_composite.json");
        let errors = validate_arguments(
            &scmap,
            &obj(json!({
                "temporal_extent": ["2022-12-31", "2022-01-01"],
                "max_cloud_cover": "80",
                "compute_mref": "yes",
                "bounding_box": {"west": 11.3, "south": 48.0, "east": 11.1, "north": 48.2},
            })),
        )
        .unwrap_err();
        assert_eq!(
            names(&errors),
            [
                "parameters.temporal_extent[1]",
                "parameters.max_cloud_cover",
                "parameters.compute_mref",
                "parameters.bounding_box.west",
            ]
        );
        assert!(
            errors[1].reason.contains("must be a number, not a string"),
            "{}",
            errors[1].reason
        );
        assert!(errors[2].reason.contains("boolean"), "{}", errors[2].reason);

        let ramona = bundled("RAMONA-herbaceous_rangeland_biomass-country-mosaick.json");
        let errors =
            validate_arguments(&ramona, &obj(json!({"country": "atlantis", "year": 2022})))
                .unwrap_err();
        assert_eq!(names(&errors), ["parameters.country", "parameters.year"]);
        assert!(
            errors[0].reason.contains("\"algeria\""),
            "{}",
            errors[0].reason
        );
        assert!(errors[1].reason.contains("must be a string, not a number"));

        let crop = bundled("cropsar1d.json");
        let errors = validate_arguments(
            &crop,
            &obj(json!({
                "geometry": {"type": "Polygon", "coordinates": [[[5.0, 51.0], [5.1, 51.0], [5.1, 51.1], [5.0, 51.05]]]},
                "startdate": "2021-01-01T00:00:00Z",
                "enddate": "2021-13-01",
                "minimal_input_checks": 1,
            })),
        )
        .unwrap_err();
        assert_eq!(
            names(&errors),
            [
                "parameters.geometry.coordinates[0]",
                "parameters.startdate",
                "parameters.enddate",
                "parameters.minimal_input_checks",
            ]
        );
        assert!(
            errors[1].reason.contains("without a time"),
            "{}",
            errors[1].reason
        );

        // Eurac: an antimeridian box is reported by the bbox alternative; a string by
        // a summary of the alternatives.
        let udp = bundled("eurac_pv_farm_detection.json");
        let errors = validate_arguments(
            &udp,
            &obj(json!({"spatial_extent": {"west": 170, "south": 0, "east": -170, "north": 1}})),
        )
        .unwrap_err();
        assert_eq!(names(&errors), ["parameters.spatial_extent.west"]);
        assert!(errors[0].reason.contains("antimeridian"));
        let errors =
            validate_arguments(&udp, &obj(json!({"spatial_extent": "Vienna"}))).unwrap_err();
        assert_eq!(names(&errors), ["parameters.spatial_extent"]);
        assert!(
            errors[0].reason.contains("Bounding Box"),
            "{}",
            errors[0].reason
        );
        assert!(
            errors[0].reason.contains("No filter (null)"),
            "{}",
            errors[0].reason
        );
        let errors = validate_arguments(
            &udp,
            &obj(json!({"temporal_extent": ["2023-05-01", "2023-09-30", "2023-10-01"]})),
        )
        .unwrap_err();
        assert_eq!(names(&errors), ["parameters.temporal_extent"]);
    }

    #[test]
    fn generic_keywords_are_evaluated() {
        let udp = udp_with(json!([
            {"name": "n", "schema": {"type": "integer", "minimum": 1, "maximum": 10}, "optional": true},
            {"name": "x", "schema": {"type": ["number", "null"], "exclusiveMinimum": 0}, "optional": true},
            {"name": "bands", "schema": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}}, "optional": true},
            {"name": "o", "schema": {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}, "additionalProperties": false}, "optional": true},
            {"name": "t", "schema": {"type": "array", "items": [{"type": "string"}, {"type": "number"}]}, "optional": true},
            {"name": "c", "schema": {"const": "fixed"}, "optional": true},
            {"name": "s", "schema": {"type": "string", "minLength": 2, "maxLength": 3}, "optional": true},
            {"name": "d", "schema": {"type": "number"}, "default": null},
        ]));
        let ok = obj(
            json!({"n": 3.0, "x": null, "bands": ["B02"], "o": {"a": "z"}, "t": ["a", 1], "c": "fixed", "s": "abc", "d": null}),
        );
        assert_eq!(validate_arguments(&udp, &ok).unwrap(), ok);
        let bad = obj(
            json!({"n": 11, "x": 0, "bands": ["B02", 3, "B04"], "o": {"b": 1}, "t": [1, 1], "c": "other", "s": "a", "d": "1"}),
        );
        let errors = validate_arguments(&udp, &bad).unwrap_err();
        assert_eq!(
            names(&errors),
            [
                "parameters.n",
                "parameters.x",
                "parameters.bands",
                "parameters.bands[1]",
                "parameters.o.a",
                "parameters.o.b",
                "parameters.t[0]",
                "parameters.c",
                "parameters.s",
                "parameters.d",
            ]
        );
        let errors = validate_arguments(&udp, &obj(json!({"n": 2.5}))).unwrap_err();
        assert!(errors[0].reason.contains("integer"));
    }

    #[test]
    fn data_cubes_cannot_be_given_as_values() {
        let udp = udp_with(
            json!([{"name": "data", "schema": {"type": "object", "subtype": "datacube"}}]),
        );
        let errors = validate_arguments(
            &udp,
            &obj(json!({"data": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}})),
        )
        .unwrap_err();
        assert_eq!(names(&errors), ["parameters.data"]);
        assert!(errors[0].reason.contains("data cube"));
    }

    #[test]
    fn polygons_become_bounding_boxes_where_only_a_bbox_is_accepted() {
        let udp = bundled("eurac_pv_farm_detection.json");
        let polygon = json!({"type": "Polygon", "coordinates": [[[5.17, 51.25], [5.18, 51.25], [5.18, 51.26], [5.17, 51.26], [5.17, 51.25]]]});
        let sent = validate_arguments(&udp, &obj(json!({"spatial_extent": polygon}))).unwrap();
        assert_eq!(
            sent["spatial_extent"],
            json!({"west": 5.17, "south": 51.25, "east": 5.18, "north": 51.26, "crs": 4326})
        );
        // A FeatureCollection of a MultiPolygon and a Polygon: the box of everything.
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": null, "geometry": {"type": "MultiPolygon", "coordinates": [
                [[[1.0, 2.0], [2.0, 2.0], [2.0, 3.0], [1.0, 2.0]]],
                [[[4.0, -1.0], [5.0, -1.0], [5.0, 0.5], [4.0, -1.0]]]
            ]}},
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0.5, 1.0], [1.5, 1.0], [1.5, 1.5], [0.5, 1.0]]]}}
        ]});
        let sent = validate_arguments(&udp, &obj(json!({"spatial_extent": fc}))).unwrap();
        assert_eq!(
            sent["spatial_extent"],
            json!({"west": 0.5, "south": -1.0, "east": 5.0, "north": 3.0, "crs": 4326})
        );
        let feature = json!({"type": "Feature", "properties": {}, "geometry": polygon});
        let sent = validate_arguments(&udp, &obj(json!({"spatial_extent": feature}))).unwrap();
        assert_eq!(sent["spatial_extent"]["west"], json!(5.17));
        // An invalid polygon is reported as such, not converted.
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]});
        let errors = validate_arguments(&udp, &obj(json!({"spatial_extent": open}))).unwrap_err();
        assert_eq!(names(&errors), ["parameters.spatial_extent.coordinates[0]"]);
        // A Point has no box to give.
        let point = json!({"type": "Point", "coordinates": [1, 2]});
        assert!(validate_arguments(&udp, &obj(json!({"spatial_extent": point}))).is_err());
        // Where GeoJSON is accepted (cropsar1d), it is passed as it is.
        let crop = bundled("cropsar1d.json");
        let args =
            obj(json!({"geometry": polygon, "startdate": "2021-01-01", "enddate": "2021-02-01"}));
        assert_eq!(
            validate_arguments(&crop, &args).unwrap()["geometry"],
            polygon
        );
        // A bbox-or-GeoJSON parameter keeps the GeoJSON too.
        let both = udp_with(
            json!([{"name": "aoi", "schema": [{"type": "object", "subtype": "bounding-box"}, {"type": "object", "subtype": "geojson"}]}]),
        );
        assert_eq!(
            validate_arguments(&both, &obj(json!({"aoi": polygon}))).unwrap()["aoi"],
            polygon
        );
    }

    #[test]
    fn bounding_boxes_may_carry_a_crs() {
        let udp = bundled("eurac_pv_farm_detection.json");
        let utm = obj(
            json!({"spatial_extent": {"west": 600000, "south": 5300000, "east": 610000, "north": 5310000, "crs": 32633}}),
        );
        assert_eq!(validate_arguments(&udp, &utm).unwrap(), utm);
        let wkt = obj(
            json!({"spatial_extent": {"west": 600000, "south": 5300000, "east": 610000, "north": 5310000, "crs": "PROJCRS[\"WGS 84 / UTM zone 33N\"]"}}),
        );
        assert_eq!(validate_arguments(&udp, &wkt).unwrap(), wkt);
        // Out of range for degrees.
        let bad = obj(
            json!({"spatial_extent": {"west": 600000, "south": 5300000, "east": 610000, "north": 5310000}}),
        );
        assert!(validate_arguments(&udp, &bad).is_err());
        let bad_crs = obj(
            json!({"spatial_extent": {"west": 1, "south": 2, "east": 3, "north": 4, "crs": 12}}),
        );
        let errors = validate_arguments(&udp, &bad_crs).unwrap_err();
        assert_eq!(names(&errors), ["parameters.spatial_extent.crs"]);
    }

    // ----- fetching and caching --------------------------------------------------

    /// A tiny HTTP server on 127.0.0.1:0 serving the bundled fixtures under `/udp/`
    /// (after `delay`), plus a few odd answers; counts requests.
    async fn serve(delay: Duration) -> (String, Arc<AtomicUsize>) {
        use axum::extract::Path;
        use axum::http::StatusCode;
        use axum::routing::get;
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let app = axum::Router::new()
            .route(
                "/udp/{name}",
                get(move |Path(name): Path<String>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        match BUNDLED.iter().find(|(n, _)| *n == name) {
                            Some((_, text)) => (StatusCode::OK, text.to_string()),
                            None => (StatusCode::NOT_FOUND, "no such file".to_string()),
                        }
                    }
                }),
            )
            .route("/html", get(|| async { "<html>hello</html>" }))
            .route("/big.json", get(|| async { " ".repeat(MAX_UDP_BYTES + 1) }))
            .route(
                "/auth",
                get(|headers: axum::http::HeaderMap| async move {
                    if headers.contains_key("authorization") {
                        (StatusCode::BAD_REQUEST, String::new())
                    } else {
                        (
                            StatusCode::OK,
                            bundled_for("x://h/cropsar1d.json").unwrap().to_string(),
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (base, count)
    }

    /// A URL base on a port nothing listens on.
    fn closed_port_base() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn twenty_concurrent_gets_fetch_once() {
        let (base, count) = serve(Duration::from_millis(200)).await;
        let cache = UdpCache::new();
        let url = format!("{base}/udp/eurac_pv_farm_detection.json");
        let gets = (0..20).map(|_| {
            let cache = cache.clone();
            let url = url.clone();
            tokio::spawn(async move { cache.get(&url).await })
        });
        let results = futures_util::future::join_all(gets).await;
        for r in &results {
            assert_eq!(
                r.as_ref().unwrap().as_ref().unwrap().id,
                "eurac_pv_farm_detection"
            );
        }
        // Later gets are served from the cache.
        cache.get(&url).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Another URL is another fetch.
        let other = cache
            .get(&format!("{base}/udp/cropsar1d.json"))
            .await
            .unwrap();
        assert_eq!(other.id, "cropsar1d");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_entries_are_fetched_again() {
        let (base, count) = serve(Duration::ZERO).await;
        let cache = UdpCache::with_freshness(Duration::ZERO);
        let url = format!("{base}/udp/cropsar1d.json");
        cache.get(&url).await.unwrap();
        cache.get(&url).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_typed_and_never_show_the_query() {
        let (base, _) = serve(Duration::ZERO).await;
        let cache = UdpCache::new();
        let err = cache
            .get(&format!("{base}/udp/nothing.json?token=s3cret"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            UdpError::Http {
                url: format!("{base}/udp/nothing.json"),
                status: 404
            }
        );
        let err = cache
            .get(&format!("{base}/html?sig=s3cret"))
            .await
            .unwrap_err();
        assert!(matches!(err, UdpError::NotAUdp { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = cache.get(&format!("{base}/big.json")).await.unwrap_err();
        assert!(matches!(err, UdpError::TooLarge { .. }), "{err}");
        let err = cache.get("ftp://example.org/udp.json").await.unwrap_err();
        assert!(matches!(err, UdpError::InvalidUrl { .. }), "{err}");
        let err = cache
            .get(&format!("{}/x/unknown.json?key=s3cret", closed_port_base()))
            .await
            .unwrap_err();
        assert!(matches!(err, UdpError::Unreachable { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(!err.to_string().contains('?'), "{err}");
        // No Authorization header is ever sent.
        assert_eq!(
            cache.get(&format!("{base}/auth")).await.unwrap().id,
            "cropsar1d"
        );
        // A failed URL is tried again next time (errors are not cached).
        assert!(!cache
            .inner
            .fresh
            .contains_key(&format!("{base}/html?sig=s3cret")));
    }

    #[tokio::test]
    async fn offline_fallback_uses_the_bundled_snapshot() {
        let cache = UdpCache::new();
        let base = closed_port_base();
        let udp = cache
            .get(&format!("{base}/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"))
            .await
            .unwrap();
        assert_eq!(udp.id, "eurac_pv_farm_detection");
        assert_eq!(describe(&udp)[0].kind, ParamType::BoundingBox);
        // An HTTP error status falls back too.
        let (served, _) = serve(Duration::ZERO).await;
        let err = cache
            .get(&format!("{served}/udp/scmap_composite.json.bak"))
            .await;
        assert!(matches!(err, Err(UdpError::Http { status: 404, .. })));
        let other = format!("{served}/moved/scmap_composite.json");
        assert_eq!(cache.get(&other).await.unwrap().id, "scmap_composite");
        // An unknown file name has no fallback.
        let err = cache
            .get(&format!("{base}/udp/unknown_process.json"))
            .await
            .unwrap_err();
        assert!(matches!(err, UdpError::Unreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_refresh_failure_keeps_the_old_copy() {
        // Serve a made-up UDP once, then answer 503.
        use axum::http::StatusCode;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mine.json", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let app = axum::Router::new().route(
            "/mine.json",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        (StatusCode::OK, r#"{"id": "mine", "process_graph": {}}"#)
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "")
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cache = UdpCache::with_freshness(Duration::ZERO);
        assert_eq!(cache.get(&url).await.unwrap().id, "mine");
        assert_eq!(cache.get(&url).await.unwrap().id, "mine");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn redaction_and_bundle_lookup() {
        assert_eq!(
            redact_url("https://user:pw@example.org/a/b.json?token=x#frag"),
            "https://example.org/a/b.json"
        );
        assert_eq!(
            redact_url("https://example.org/a.json#id"),
            "https://example.org/a.json"
        );
        assert!(bundled_for("https://x.org/a/cropsar1d.json?x=1").is_some());
        assert!(bundled_for("https://x.org/a/cropsar1d.json#cropsar1d").is_some());
        assert!(bundled_for("https://x.org/cropsar1d.json/other").is_none());
        assert!(bundled_for("https://cropsar1d.json").is_none());
    }
}
