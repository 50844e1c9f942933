//! Checking a job's arguments against the JSON schemas of a service's parameters
//! (openEO UDP parameters, OGC API process inputs) with the `jsonschema` crate, and
//! turning what it finds into our field errors (`parameters.<name>...: reason`).
//!
//! # How a schema is read
//!
//! [`check_alternatives`] gets the alternatives of one parameter's schema (the leaves
//! of [`super::udp`]'s reading: an openEO array of schemas, `anyOf`/`oneOf` and `type`
//! arrays at the top are alternatives). Each alternative is compiled as a draft-07
//! schema (openEO's dialect), with these differences:
//!
//! - the openEO keyword `subtype` is evaluated: `bounding-box`, `temporal-interval`,
//!   `temporal-intervals`, `geojson`, `date`, `date-time` and `epsg-code` with the
//!   checks of [`crate::job::validate`]; a data cube (`datacube`, `raster-cube`,
//!   `vector-cube`) cannot be given as a value; other subtypes are ignored;
//! - `format` checks `date` and `date-time` (strictly, as the subtypes) and the OGC
//!   `ogc-bbox` (`{"bbox": [w, s, e, n], "crs": uri}`); other formats are ignored, as
//!   servers use them loosely;
//! - `uniqueItems` is ignored: `["2025-05-01", "2025-05-01"]` is "that day" for APEx
//!   clients;
//! - `oneOf` is read as `anyOf` (overlapping alternatives are common in the wild and
//!   "exactly one" would reject good values); a `type` name that is not a JSON-schema
//!   type is dropped; OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` are
//!   read as the draft-07 numbers;
//! - nothing is ever fetched: a `$ref` within the schema is resolved, a reference to the
//!   OGC `bbox` schema (`.../bbox.yaml`, `bbox.json`) is the OGC bounding box, and any
//!   other outside reference accepts anything.
//!
//! A schema that still cannot be compiled accepts any value (logged): an exotic schema
//! accepts more rather than rejecting a good value.
//!
//! # What is reported
//!
//! A value is accepted when one alternative accepts it. Otherwise the errors of the
//! first alternative about the value's shape (an object for a bounding box, an array
//! for an interval, ...) are reported, or one error listing what would be accepted;
//! nested `anyOf` are reported the same way. A subtype's or format's own check is more
//! precise than the structural keywords next to it (`required`, `properties`,
//! `maxItems`, ...): where it finds something, their errors on the same value are left
//! out. One error per field: a wrong type is said before anything else.

use std::sync::{Arc, LazyLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::Location;
use jsonschema::{Draft, Keyword, Retrieve, Uri, ValidationError, ValidationOptions, Validator};
use serde_json::{json, Map, Value};

use super::udp::{describe_leaf, is_ogc_bbox, kind, CRS84};
use crate::job::validate::{
    parse_strict_date_or_datetime, validate_bbox, validate_geojson_geometry,
    validate_temporal_interval, FieldError, GEOJSON_TYPES,
};

/// Checks `v` against a schema given by its leaf alternatives; errors are named from
/// `path` (`parameters.spatial_extent`, ...). Empty when the value is accepted.
pub(super) fn check_alternatives(
    leaves: &[Map<String, Value>],
    v: &Value,
    path: &str,
) -> Vec<FieldError> {
    match leaves {
        [] => vec![FieldError::new(path, "no value is allowed here")],
        [one] => compiled(one).errors(v, path),
        _ => {
            let mut first_fit: Option<Vec<FieldError>> = None;
            for leaf in leaves {
                let errors = compiled(leaf).errors(v, path);
                if errors.is_empty() {
                    return errors;
                }
                if first_fit.is_none() && fits_shape(leaf, v) {
                    first_fit = Some(errors);
                }
            }
            first_fit.unwrap_or_else(|| vec![none_of(leaves.iter(), v, path)])
        }
    }
}

/// One error listing what the alternatives accept.
fn none_of<'a>(
    alternatives: impl Iterator<Item = &'a Map<String, Value>>,
    v: &Value,
    path: &str,
) -> FieldError {
    let mut wanted: Vec<String> = Vec::new();
    for alternative in alternatives {
        let d = describe_leaf(alternative);
        if !wanted.contains(&d) {
            wanted.push(d);
        }
    }
    FieldError::new(
        path,
        format!("must be one of: {}; not {}", wanted.join("; "), kind(v)),
    )
}

/// Whether the value has the shape an alternative is about (so that its errors are the
/// ones to report).
fn fits_shape(s: &Map<String, Value>, v: &Value) -> bool {
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        if !type_matches(t, v) {
            return false;
        }
    }
    if is_ogc_bbox(s) {
        return v.get("bbox").is_some_and(Value::is_array);
    }
    match s.get("subtype").and_then(Value::as_str) {
        Some("bounding-box") => v.as_object().is_some_and(|m| {
            ["west", "south", "east", "north"]
                .iter()
                .any(|k| m.contains_key(*k))
        }),
        Some("geojson") => v
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| GEOJSON_TYPES.contains(&t)),
        Some("temporal-interval" | "temporal-intervals") => v.is_array(),
        Some("datacube" | "raster-cube" | "vector-cube") => false,
        _ => true,
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        // Not a JSON-schema type (openEO subtypes sometimes end up here): anything.
        _ => true,
    }
}

// ---------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------

/// One alternative, compiled.
struct Alternative {
    /// The schema as compiled (after [`normalise`]), to look keywords up by the
    /// schema paths of errors.
    schema: Value,
    /// `None` when the schema could not be compiled: anything is accepted.
    validator: Option<Validator>,
}

/// The evaluator's settings: draft 07, our keywords, nothing fetched.
static OPTIONS: LazyLock<ValidationOptions<'static>> = LazyLock::new(|| {
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .with_keyword("subtype", |_, value, _| {
            Ok(Box::new(Precise(value.as_str().and_then(Check::subtype))))
        })
        .with_keyword("format", |_, value, _| {
            Ok(Box::new(Precise(value.as_str().and_then(Check::format))))
        })
        .with_keyword("uniqueItems", |_, _, _| Ok(Box::new(Precise(None))))
        .with_retriever(NothingFetched)
});

/// Most compiled alternatives kept (the least used go first).
const MAX_COMPILED: u64 = 1024;

/// Compiled alternatives by their schema's text: the tiles of a task, and the jobs of
/// one service, are checked against the same schemas again and again.
static COMPILED: LazyLock<moka::sync::Cache<String, Arc<Alternative>>> =
    LazyLock::new(|| moka::sync::Cache::new(MAX_COMPILED));

/// `leaf` compiled, from [`COMPILED`] when it was compiled before.
fn compiled(leaf: &Map<String, Value>) -> Arc<Alternative> {
    let key = serde_json::to_string(leaf).unwrap_or_default();
    COMPILED.get_with(key, || Arc::new(Alternative::compile(leaf)))
}

impl Alternative {
    fn compile(leaf: &Map<String, Value>) -> Alternative {
        let mut schema = Value::Object(leaf.clone());
        normalise(&mut schema);
        let validator = match OPTIONS.build(&schema) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(error = %e, "a parameter schema that cannot be read accepts any value");
                None
            }
        };
        Alternative { schema, validator }
    }

    /// The errors of `v`, named from `path`; empty when it is accepted.
    fn errors(&self, v: &Value, path: &str) -> Vec<FieldError> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        if validator.is_valid(v) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for e in validator.iter_errors(v) {
            self.map(&e, v, path, &mut found);
        }
        settle(found)
    }

    /// Our words for one error of the evaluator.
    fn map(&self, e: &ValidationError<'_>, root: &Value, path: &str, out: &mut Vec<Found>) {
        let at = e.instance_path().as_str().to_string();
        let name = name_of(path, root, e.instance_path());
        let value = e.instance();
        let generic = |rank: u8, reason: String| Found {
            at: at.clone(),
            rank,
            precise: false,
            error: FieldError::new(name.clone(), reason),
        };
        let num = |limit: &Value| {
            limit
                .as_f64()
                .map_or_else(|| limit.to_string(), |x| x.to_string())
        };
        match e.kind() {
            ValidationErrorKind::Custom { message, .. } => {
                let (suffix, reason) = decode(message);
                out.push(Found {
                    at,
                    rank: 1,
                    precise: true,
                    error: FieldError::new(format!("{name}{suffix}"), reason),
                });
            }
            ValidationErrorKind::Type { kind: expected } => {
                let words: Vec<&str> = match expected {
                    TypeKind::Single(t) => vec![type_words(&t.to_string())],
                    TypeKind::Multiple(set) => {
                        set.iter().map(|t| type_words(&t.to_string())).collect()
                    }
                };
                out.push(generic(
                    0,
                    format!("must be {}, not {}", words.join(" or "), kind(value)),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let listed = options
                    .as_array()
                    .map_or_else(|| options.to_string(), |values| list_values(values));
                out.push(generic(2, format!("must be one of: {listed}")));
            }
            ValidationErrorKind::Constant { expected_value } => {
                out.push(generic(2, format!("must be {expected_value}")));
            }
            ValidationErrorKind::Minimum { limit } => out.push(generic(
                4,
                format!("must be at least {}, got {value}", num(limit)),
            )),
            ValidationErrorKind::Maximum { limit } => out.push(generic(
                4,
                format!("must be at most {}, got {value}", num(limit)),
            )),
            ValidationErrorKind::ExclusiveMinimum { limit } => out.push(generic(
                4,
                format!("must be greater than {}, got {value}", num(limit)),
            )),
            ValidationErrorKind::ExclusiveMaximum { limit } => out.push(generic(
                4,
                format!("must be less than {}, got {value}", num(limit)),
            )),
            ValidationErrorKind::MinLength { limit } => {
                out.push(generic(4, format!("must have at least {limit} characters")))
            }
            ValidationErrorKind::MaxLength { limit } => {
                out.push(generic(4, format!("must have at most {limit} characters")))
            }
            ValidationErrorKind::MinItems { limit } => out.push(generic(
                4,
                format!("must have at least {limit} elements, got {}", items(value)),
            )),
            ValidationErrorKind::MaxItems { limit } => out.push(generic(
                4,
                format!("must have at most {limit} elements, got {}", items(value)),
            )),
            ValidationErrorKind::Required { property } => {
                let key = property
                    .as_str()
                    .map_or_else(|| property.to_string(), String::from);
                out.push(Found {
                    error: FieldError::new(format!("{name}.{key}"), "is required"),
                    ..generic(3, String::new())
                });
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known: Vec<String> = self
                    .keyword_parent(e.schema_path())
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for key in unexpected {
                    out.push(Found {
                        error: FieldError::new(
                            format!("{name}.{key}"),
                            format!("unknown field; expected one of: {}", known.join(", ")),
                        ),
                        ..generic(5, String::new())
                    });
                }
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                self.map_alternatives(e, context, root, path, out, generic(4, String::new()));
            }
            ValidationErrorKind::FalseSchema => {
                out.push(generic(4, "no value is allowed here".into()));
            }
            ValidationErrorKind::MultipleOf { .. } => {
                let of = self
                    .keyword(e.schema_path())
                    .map_or_else(String::new, |m| format!(" of {}", num(m)));
                out.push(generic(4, format!("must be a multiple{of}")));
            }
            ValidationErrorKind::Pattern { pattern } => {
                out.push(generic(4, format!("must match the pattern {pattern}")));
            }
            ValidationErrorKind::MinProperties { limit } => {
                out.push(generic(4, format!("must have at least {limit} fields")));
            }
            ValidationErrorKind::MaxProperties { limit } => {
                out.push(generic(4, format!("must have at most {limit} fields")));
            }
            _ => out.push(generic(4, e.to_string())),
        }
    }

    /// A nested `anyOf` that nothing matched: the errors of the first alternative
    /// about the value's shape, or one error listing the alternatives.
    fn map_alternatives(
        &self,
        e: &ValidationError<'_>,
        context: &[Vec<ValidationError<'static>>],
        root: &Value,
        path: &str,
        out: &mut Vec<Found>,
        summary: Found,
    ) {
        let value = e.instance();
        let alternatives: Vec<&Map<String, Value>> = self
            .keyword(e.schema_path())
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        if alternatives.len() == context.len() {
            if let Some(i) = alternatives.iter().position(|a| fits_shape(a, value)) {
                let mut inner = Vec::new();
                for e in &context[i] {
                    self.map(e, root, path, &mut inner);
                }
                out.extend(inner);
                return;
            }
            let error = none_of(alternatives.into_iter(), value, &summary.error.name);
            out.push(Found { error, ..summary });
        } else {
            out.push(Found {
                error: FieldError::new(
                    summary.error.name.clone(),
                    format!(
                        "matches none of the allowed alternatives (it is {})",
                        kind(value)
                    ),
                ),
                ..summary
            });
        }
    }

    /// The schema value at an error's schema path (the keyword's value).
    fn keyword(&self, at: &Location) -> Option<&Value> {
        self.schema.pointer(at.as_str())
    }

    /// The schema object holding the keyword at an error's schema path.
    fn keyword_parent(&self, at: &Location) -> Option<&Value> {
        let s = at.as_str();
        self.schema.pointer(&s[..s.rfind('/')?])
    }
}

/// The number of elements of an array value (for messages).
fn items(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// One error found, before the errors of one value are settled.
struct Found {
    /// The instance location the keyword evaluated (a JSON pointer).
    at: String,
    /// Which error comes first on a value, and is kept for a field: lowest first
    /// (0: type, 1: subtype or format, 2: enum or const, 3: a missing field, 4: other
    /// keywords, 5: an unknown field).
    rank: u8,
    /// Whether it comes from a subtype's or format's own check.
    precise: bool,
    error: FieldError,
}

/// Leaves out the structural errors on values a precise check found wrong, orders the
/// errors on each value by rank (values in the order the evaluator met them) and keeps
/// one error per field (the lowest rank).
fn settle(mut found: Vec<Found>) -> Vec<FieldError> {
    let precise: Vec<String> = found
        .iter()
        .filter(|f| f.precise)
        .map(|f| f.at.clone())
        .collect();
    let within =
        |at: &str, p: &str| at == p || (at.starts_with(p) && at[p.len()..].starts_with('/'));
    found.retain(|f| f.precise || !precise.iter().any(|p| within(&f.at, p)));
    let mut values: Vec<&str> = Vec::new();
    for f in &found {
        if !values.contains(&f.at.as_str()) {
            values.push(&f.at);
        }
    }
    let order: Vec<(usize, u8)> = found
        .iter()
        .map(|f| (values.iter().position(|v| *v == f.at).unwrap_or(0), f.rank))
        .collect();
    let mut sorted: Vec<(usize, Found)> = found.into_iter().enumerate().collect();
    sorted.sort_by_key(|(i, _)| order[*i]);
    let mut out: Vec<FieldError> = Vec::new();
    for (_, f) in sorted {
        if !out.iter().any(|e| e.name == f.error.name) {
            out.push(f.error);
        }
    }
    out
}

/// Our name of an instance location: `path.key`, `path[i]`, following the value so that
/// an object key made of digits stays a key.
fn name_of(path: &str, root: &Value, at: &Location) -> String {
    let mut name = path.to_string();
    let mut current = Some(root);
    for segment in at.segments() {
        let key = segment.to_string();
        match current {
            Some(Value::Array(a)) => {
                let i = key.parse::<usize>().ok();
                name.push_str(&format!("[{key}]"));
                current = i.and_then(|i| a.get(i));
            }
            Some(Value::Object(m)) => {
                name.push('.');
                name.push_str(&key);
                current = m.get(&key);
            }
            _ => {
                name.push('.');
                name.push_str(&key);
                current = None;
            }
        }
    }
    name
}

fn type_words(t: &str) -> &'static str {
    match t {
        "null" => "null",
        "boolean" => "a boolean (true or false)",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "an array",
        "object" => "an object",
        _ => "of another type",
    }
}

fn list_values(values: &[Value]) -> String {
    const SHOWN: usize = 60;
    let mut s = values
        .iter()
        .take(SHOWN)
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        s.push_str(&format!(", ... ({} in all)", values.len()));
    }
    s
}

// ---------------------------------------------------------------------------------
// Reading schemas as the evaluator wants them
// ---------------------------------------------------------------------------------

/// The JSON-schema type names.
const TYPES: [&str; 7] = [
    "null", "boolean", "integer", "number", "string", "array", "object",
];

/// Rewrites what the evaluator would refuse or read otherwise than we do (see the
/// module documentation), in every subschema.
fn normalise(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    if let Some(one) = m.remove("oneOf") {
        match m.remove("anyOf") {
            None => {
                m.insert("anyOf".into(), one);
            }
            Some(any) => {
                let both = [json!({"anyOf": any}), json!({"anyOf": one})];
                match m.get_mut("allOf") {
                    Some(Value::Array(all)) => all.extend(both),
                    _ => {
                        m.insert("allOf".into(), Value::Array(both.into()));
                    }
                }
            }
        }
    }
    match m.get_mut("type") {
        Some(Value::String(t)) if !TYPES.contains(&t.as_str()) => {
            m.remove("type");
        }
        Some(Value::Array(types)) => {
            types.retain(|t| t.as_str().is_some_and(|t| TYPES.contains(&t)));
            if types.is_empty() {
                m.remove("type");
            }
        }
        _ => {}
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(on)) = m.get(exclusive) {
            let on = *on;
            m.remove(exclusive);
            if on {
                if let Some(limit) = m.remove(bound) {
                    m.insert(exclusive.into(), limit);
                }
            }
        }
    }
    for (key, value) in m.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" | "$defs" | "dependencies" => {
                if let Value::Object(subs) = value {
                    subs.values_mut().for_each(normalise);
                }
            }
            "items" | "anyOf" | "allOf" => match value {
                Value::Array(subs) => subs.iter_mut().for_each(normalise),
                other => normalise(other),
            },
            "additionalProperties"
            | "additionalItems"
            | "contains"
            | "not"
            | "if"
            | "then"
            | "else"
            | "propertyNames" => normalise(value),
            _ => {}
        }
    }
}

/// Resolves references outside the schema without fetching anything: the OGC `bbox`
/// schema is the OGC bounding box, anything else accepts anything.
struct NothingFetched;

impl Retrieve for NothingFetched {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let path = uri.as_str().split(['#', '?']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or(path);
        Ok(match name {
            "bbox.yaml" | "bbox.json" | "bbox" => json!({"type": "object", "format": "ogc-bbox"}),
            _ => json!({}),
        })
    }
}

// ---------------------------------------------------------------------------------
// The keywords `subtype` and `format`
// ---------------------------------------------------------------------------------

/// A check of our own, for an openEO subtype or a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    BoundingBox,
    TemporalInterval,
    TemporalIntervals,
    GeoJson,
    Date,
    DateTime,
    EpsgCode,
    DataCube,
    OgcBbox,
}

/// The prefix our checks name errors from; [`Check::errors`] cuts it off.
const HERE: &str = "$";

impl Check {
    /// The check of an openEO subtype; `None` for a subtype with nothing to check.
    fn subtype(name: &str) -> Option<Check> {
        Some(match name {
            "bounding-box" => Check::BoundingBox,
            "temporal-interval" => Check::TemporalInterval,
            "temporal-intervals" => Check::TemporalIntervals,
            "geojson" => Check::GeoJson,
            "date" => Check::Date,
            "date-time" => Check::DateTime,
            "epsg-code" => Check::EpsgCode,
            "datacube" | "raster-cube" | "vector-cube" => Check::DataCube,
            _ => return None,
        })
    }

    /// The check of a `format`; `None` for the formats we leave alone.
    fn format(name: &str) -> Option<Check> {
        Some(match name {
            "date" => Check::Date,
            "date-time" => Check::DateTime,
            "ogc-bbox" => Check::OgcBbox,
            _ => return None,
        })
    }

    /// What is wrong with `v`, named relative to it (`""`, `".west"`, `"[1]"`). A
    /// value of another JSON kind than the check is about passes: `type` says so.
    fn errors(self, v: &Value) -> Vec<FieldError> {
        let mut errors = match (self, v) {
            (Check::BoundingBox, Value::Object(_)) => validate_bbox(HERE, v),
            (Check::TemporalInterval, Value::Array(_)) => validate_temporal_interval(HERE, v),
            (Check::TemporalIntervals, Value::Array(list)) => list
                .iter()
                .enumerate()
                .flat_map(|(i, x)| validate_temporal_interval(&format!("{HERE}[{i}]"), x))
                .collect(),
            (Check::GeoJson, Value::Object(_)) => validate_geojson_geometry(HERE, v),
            (Check::Date | Check::DateTime, Value::String(text)) => date_errors(self, text),
            (Check::EpsgCode, Value::Number(n)) => {
                let code = n.as_f64().unwrap_or_default();
                if code.fract() != 0.0 || code < 1000.0 {
                    vec![FieldError::new(
                        HERE,
                        format!("must be an EPSG code (a whole number of at least 1000), got {n}"),
                    )]
                } else {
                    Vec::new()
                }
            }
            (Check::DataCube, v) if !v.is_null() => vec![FieldError::new(
                HERE,
                "a data cube cannot be given as a parameter value",
            )],
            (Check::OgcBbox, Value::Object(m)) => ogc_bbox_errors(m),
            _ => Vec::new(),
        };
        for e in &mut errors {
            e.name = e.name.strip_prefix(HERE).unwrap_or(&e.name).to_string();
        }
        errors
    }
}

/// A strict date (`Check::Date`) or date-time (`Check::DateTime`).
fn date_errors(want: Check, text: &str) -> Vec<FieldError> {
    let reason = match parse_strict_date_or_datetime(text) {
        Err(reason) => reason,
        Ok(d) if want == Check::Date && !d.is_date() => {
            format!("{text:?} must be a date YYYY-MM-DD, without a time")
        }
        Ok(d) if want == Check::DateTime && d.is_date() => {
            format!("{text:?} must be a date-time YYYY-MM-DDTHH:MM:SSZ, with a time")
        }
        Ok(_) => return Vec::new(),
    };
    vec![FieldError::new(HERE, reason)]
}

/// Checks an OGC API bounding box: `bbox` with 4 numbers (or 6 for 3D) in the order
/// min x, min y, (min z,) max x, max y, (max z), and an optional `crs` URI string.
fn ogc_bbox_errors(m: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let field = |k: &str| format!("{HERE}.{k}");
    match m.get("bbox").and_then(Value::as_array) {
        None => errors.push(FieldError::new(
            field("bbox"),
            "is required: [west, south, east, north]",
        )),
        Some(b) => {
            let nums: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            if nums.len() != b.len() || !(b.len() == 4 || b.len() == 6) {
                errors.push(FieldError::new(
                    field("bbox"),
                    "must be 4 numbers [west, south, east, north] (or 6 with heights)",
                ));
            } else {
                let half = nums.len() / 2;
                let (w, s, e, n) = (nums[0], nums[1], nums[half], nums[half + 1]);
                let crs84 = m
                    .get("crs")
                    .and_then(Value::as_str)
                    .is_none_or(|c| c == CRS84 || c.ends_with("/CRS84") || c.ends_with("CRS84h"));
                if s > n {
                    errors.push(FieldError::new(
                        field("bbox"),
                        format!("south ({s}) must not be north of north ({n})"),
                    ));
                }
                if w > e && !crs84 {
                    errors.push(FieldError::new(
                        field("bbox"),
                        format!("west ({w}) must not be east of east ({e})"),
                    ));
                }
                let out_of_range =
                    w.abs() > 180.0 || e.abs() > 180.0 || s.abs() > 90.0 || n.abs() > 90.0;
                if crs84 && out_of_range {
                    errors.push(FieldError::new(
                        field("bbox"),
                        "longitudes must be within ±180 and latitudes within ±90 in CRS84",
                    ));
                }
            }
        }
    }
    if let Some(c) = m.get("crs") {
        if !c.is_string() {
            errors.push(FieldError::new(
                field("crs"),
                "must be a CRS URI string, e.g. http://www.opengis.net/def/crs/OGC/1.3/CRS84",
            ));
        }
    }
    errors
}

/// The keyword: runs its [`Check`] (or nothing), each error carrying its relative name
/// in the message (see [`encode`]).
struct Precise(Option<Check>);

impl<'i> Keyword<'i> for Precise {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        match self.iter_errors(instance).next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.0.is_none_or(|c| c.errors(instance).is_empty())
    }

    fn iter_errors(
        &self,
        instance: &'i Value,
    ) -> Box<dyn Iterator<Item = ValidationError<'i>> + 'i> {
        let errors = self.0.map(|c| c.errors(instance)).unwrap_or_default();
        Box::new(
            errors
                .into_iter()
                .map(|e| ValidationError::custom(encode(&e.name, &e.reason))),
        )
    }
}

/// Separates the relative name from the reason in a keyword's message: the evaluator
/// names an error by the value the keyword looked at, our checks name deeper fields.
const SEPARATOR: char = '\u{1f}';

fn encode(suffix: &str, reason: &str) -> String {
    format!("{suffix}{SEPARATOR}{reason}")
}

fn decode(message: &str) -> (&str, &str) {
    message.split_once(SEPARATOR).unwrap_or(("", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn errors(schema: Value, v: Value) -> Vec<(String, String)> {
        check_alternatives(&[leaf(schema)], &v, "p")
            .into_iter()
            .map(|e| (e.name, e.reason))
            .collect()
    }

    #[test]
    fn subtypes_are_checked_and_unknown_ones_ignored() {
        let bbox = json!({"type": "object", "subtype": "bounding-box"});
        let e = errors(
            bbox.clone(),
            json!({"west": 3, "south": 1, "east": 2, "north": 2}),
        );
        assert_eq!(e[0].0, "p.west");
        assert!(errors(bbox, json!({"west": 1, "south": 1, "east": 2, "north": 2})).is_empty());
        let e = errors(
            json!({"type": "string", "subtype": "date"}),
            json!("2024-01-01T00:00:00Z"),
        );
        assert!(e[0].1.contains("without a time"), "{e:?}");
        let e = errors(json!({"subtype": "epsg-code"}), json!(12));
        assert_eq!(e[0].0, "p");
        let intervals = json!({"type": "array", "subtype": "temporal-intervals"});
        let e = errors(
            intervals,
            json!([["2024-01-01", "2024-02-01"], ["2024-03-01", "2024-02-01"]]),
        );
        assert_eq!(e[0].0, "p[1][1]", "{e:?}");
        assert!(errors(json!({"subtype": "band-name"}), json!(4)).is_empty());
        assert!(errors(json!({"subtype": "datacube"}), json!(null)).is_empty());
        assert!(!errors(json!({"subtype": "raster-cube"}), json!({})).is_empty());
    }

    #[test]
    fn schemas_are_read_leniently() {
        // oneOf is anyOf; uniqueItems ignored; unknown types dropped.
        let s = json!({"oneOf": [{"type": "number"}, {"type": "integer"}]});
        assert!(errors(s, json!(3)).is_empty());
        let s = json!({"type": "array", "uniqueItems": true});
        assert!(errors(s, json!([1, 1])).is_empty());
        assert!(errors(json!({"type": "banana", "minimum": 3}), json!(2))[0]
            .1
            .contains("at least 3"));
        // OpenAPI's boolean exclusive bounds.
        let s = json!({"type": "number", "minimum": 0, "exclusiveMinimum": true});
        assert!(errors(s.clone(), json!(0))[0].1.contains("greater than 0"));
        assert!(errors(s, json!(0.5)).is_empty());
        // Local references are resolved; outside ones never fetched.
        let s = json!({"definitions": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/definitions/n"}}});
        assert_eq!(errors(s, json!({"a": "x"}))[0].0, "p.a");
        let s = json!({"properties": {"a": {"$ref": "https://example.invalid/other.json"}}});
        assert!(errors(s, json!({"a": "x"})).is_empty());
        let s = json!({"$ref": "https://example.invalid/schemas/bbox.yaml"});
        assert_eq!(errors(s, json!({"bbox": [1, 2, 3]}))[0].0, "p.bbox");
        // An unreadable schema accepts anything.
        assert!(errors(json!({"minimum": "three"}), json!(1)).is_empty());
        // Keys made of digits stay keys.
        let s = json!({"properties": {"0": {"type": "string"}}});
        assert_eq!(errors(s, json!({"0": 1}))[0].0, "p.0");
    }

    #[test]
    fn nested_alternatives_report_the_one_about_the_value() {
        let s = json!({"type": "array", "items": {"anyOf": [
            {"type": "string", "subtype": "date"}, {"type": "null"}]}});
        let e = errors(s.clone(), json!(["2024-13-01"]));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "p[0]");
        let e = errors(s, json!([5]));
        assert!(
            e[0].1
                .contains("must be one of: a date string; null; not a number"),
            "{e:?}"
        );
    }
}
