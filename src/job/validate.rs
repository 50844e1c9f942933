//! Parsing and validation of client requests into domain types: every mistake is
//! collected as a [`FieldError`] naming the field (`parameters.spatial_extent.west`)
//! and the reason, so that the HTTP edge can answer one problem+json listing them all.
//!
//! Pure functions, no I/O.
//!
//! # What is checked
//!
//! - **Structure** ([`parse_job_request`], [`parse_task_request`]): the body is an
//!   object; `title`, `label`, `service {endpoint, application, namespace?}`,
//!   `parameters` and `format` (plus `dimension {name, values}` for a task) are
//!   present and well typed; unknown fields are rejected at every level we own.
//!   `service.endpoint` must be an absolute `http(s)://` URL with a host
//!   ([`check_http_url`]).
//! - **Parameter values, by shape** ([`validate_parameter_value`]), recursively, so
//!   that an error names the exact spot (`parameters.aoi.coordinates[0][3]`):
//!   - a *bounding box* (an object with any of `west/south/east/north`), see
//!     [`validate_bbox`];
//!   - a *GeoJSON* object (geometry, Feature or FeatureCollection), see
//!     [`validate_geojson_geometry`]; `POST /tiles` uses [`validate_geojson_polygon`];
//!   - a *temporal interval* (the parameter `temporal_extent`, or any two-element
//!     array of date-like strings or null), see [`validate_temporal_interval`] and
//!     [`parse_strict_date_or_datetime`].
//!
//!   Anything else is accepted as is: the service's own parameter schema (the UDP)
//!   is checked later, against the backend.
//!
//! # Decisions
//!
//! - A geographic box with `west > east` would cross the antimeridian: rejected with a
//!   message asking to split it into two boxes, never swapped or widened.
//! - `["2025-05-01", "2025-05-01"]` (two equal plain dates) is accepted as "that
//!   day", as APEx clients send it; two equal date-times are an empty interval and
//!   rejected. A plain date stands for `00:00:00Z` of that day when compared.
//! - Dates are parsed strictly (`2024-1-5`, `2024-02-30`, lowercase `t`/`z` are errors).
//! - Credentials in `service.endpoint` (`https://user:pw@host`) are rejected: the
//!   endpoint is stored and echoed back, and secrets must not be.
//! - At most [`MAX_REPORTED_ERRORS`] errors are returned; a last entry named `body`
//!   says how many more there were, so that a huge geometry in the wrong CRS does
//!   not produce a response as large as the request.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use utoipa::ToSchema;

use super::{Dimension, JobRequest, Label, MosaicKind, OutputFormat, ServiceDetails, TaskRequest};

/// Longest accepted `title`, in characters.
pub const MAX_TITLE_LEN: usize = 500;

/// Most values accepted in an upscale task's `dimension.values` (one unit job each).
pub const MAX_DIMENSION_VALUES: usize = 10_000;

/// Largest accepted `max_cost` (and budget), in the backend's currency.
pub const MAX_COST: f64 = 1e12;

/// What "not blank" means for titles, names and ids, as a pattern (ECMA-262, also read
/// by Python's `re`): at least one character that is not white space in Unicode's
/// sense (what `str::trim` removes).
pub const NOT_BLANK_PATTERN: &str =
    r"[^\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// What [`check_http_url`] accepts, as a pattern (ECMA-262, also read by Python's
/// `re`), so that the OpenAPI document states the same rule: `http` or `https` in any
/// case, `://`, a host (an IPv6 literal in brackets, or letters, digits, `-._~%` and
/// non-ASCII letters) with an optional port up to 65535, then a path, query or
/// fragment without white space or control characters.
pub const HTTP_URL_PATTERN: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]?://",
    r"(?:\[[0-9A-Fa-f:.]+\]|[^\x00-\x24\x26-\x2c\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7d\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)",
    r"(?::(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(?:[/?#][^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$",
);

/// Most field errors returned for one request; the rest are summarised in one entry.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// The GeoJSON `type` values recognised in parameter values (RFC 7946).
pub const GEOJSON_TYPES: [&str; 9] = [
    "Polygon",
    "MultiPolygon",
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "GeometryCollection",
    "Feature",
    "FeatureCollection",
];

/// Top-level fields of a `POST /unit_jobs` body.
const JOB_FIELDS: [&str; 6] = [
    "title",
    "label",
    "service",
    "parameters",
    "format",
    "max_cost",
];
/// Top-level fields of a `POST /upscale_tasks` body.
const TASK_FIELDS: [&str; 8] = [
    "max_cost",
    "title",
    "label",
    "service",
    "parameters",
    "format",
    "dimension",
    "mosaic",
];
/// Fields of `service`.
const SERVICE_FIELDS: [&str; 3] = ["endpoint", "application", "namespace"];
/// Fields of `dimension`.
const DIMENSION_FIELDS: [&str; 2] = ["name", "values"];
/// Fields of a bounding box.
const BBOX_FIELDS: [&str; 7] = ["west", "south", "east", "north", "crs", "base", "height"];
/// The keys that make an object a bounding box.
const BBOX_EDGES: [&str; 4] = ["west", "south", "east", "north"];

/// The textual forms accepted for dates, used in error messages.
const DATE_FORMS: &str = "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `service.endpoint` or `parameters.temporal_extent[1]`.
    pub name: String,
    /// Why it was rejected, in plain words.
    pub reason: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Request bodies: what handlers read, and what `/openapi.json` says of them
// ---------------------------------------------------------------------------------

/// The label `openeo` (one value, so that a body's schema can depend on its label).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpeneoLabel {
    /// An openEO backend running a user-defined process given by URL.
    Openeo,
}

/// The label `ogc_api_process`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OgcLabel {
    /// An OGC API Processes server.
    OgcApiProcess,
}

/// Declares the body of a job (and, with `dimension`, of a task) for one label, with
/// the service it takes: the fields are the same for both labels, the rules of
/// `service.application` differ.
macro_rules! job_bodies {
    ($(#[$meta:meta])* $job:ident, $(#[$tmeta:meta])* $task:ident, $label:ty, $service:ty) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $job {
            /// Human title, also sent to the backend (1 to 500 characters, not blank).
            #[schema(schema_with = title_schema)]
            pub title: String,
            /// Platform kind.
            pub label: $label,
            /// Backend and application.
            pub service: $service,
            /// Parameters of the service. Bounding boxes (`{west, south, east, north,
            /// crs?}`), GeoJSON objects and temporal intervals (`["2023-05-01",
            /// "2023-09-30"]`) are validated; the service's definition checks the rest.
            #[schema(value_type = Object)]
            pub parameters: Map<String, Value>,
            /// Output format.
            pub format: OutputFormat,
            /// *ext* The most the job may cost, in the backend's currency (0 to 1e12;
            /// `null`: no limit).
            #[serde(default)]
            #[schema(minimum = 0, maximum = 1e12)]
            pub max_cost: Option<f64>,
        }

        $(#[$tmeta])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $task {
            /// Title; sub-jobs are titled `"<title> - Processing Job <n>"` (1 to 500
            /// characters, not blank).
            #[schema(schema_with = title_schema)]
            pub title: String,
            /// Platform kind.
            pub label: $label,
            /// Backend and application.
            pub service: $service,
            /// Parameters shared by every sub-job (checked as for a unit job).
            #[schema(value_type = Object)]
            pub parameters: Map<String, Value>,
            /// Output format.
            pub format: OutputFormat,
            /// `{name, values}`: sub-job n gets `parameters[name] = values[n]`.
            pub dimension: DimensionBody,
            /// *ext* How the tiles' rasters are mosaicked in the task folder (default:
            /// `mosaic` of `config.toml`).
            #[serde(default)]
            pub mosaic: Option<MosaicKind>,
            /// *ext* The most each sub-job may cost, in the backend's currency (0 to 1e12).
            #[serde(default)]
            #[schema(minimum = 0, maximum = 1e12)]
            pub max_cost: Option<f64>,
        }
    };
}

job_bodies!(
    /// A unit job of an openEO user-defined process.
    OpeneoJobBody,
    /// An upscale task of an openEO user-defined process.
    OpeneoTaskBody,
    OpeneoLabel,
    UdpServiceBody
);
job_bodies!(
    /// A unit job of an OGC API Processes process.
    OgcJobBody,
    /// An upscale task of an OGC API Processes process.
    OgcTaskBody,
    OgcLabel,
    ServiceBody
);

/// Body of `POST /unit_jobs`, `POST /sync_jobs` and `POST /estimate` (APEx
/// `BaseJobRequest`, plus *ext* `max_cost`): `title`, `label`, `service`,
/// `parameters`, `format`; no other field is accepted. For `openeo` the application is
/// the public http(s) URL of the UDP JSON; for `ogc_api_process` the process id (or
/// the process's URL).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobRequestBody {
    /// `label: openeo`.
    Openeo(OpeneoJobBody),
    /// `label: ogc_api_process`.
    OgcApiProcess(OgcJobBody),
}

/// Body of `POST /upscale_tasks` (APEx `UpscalingTaskRequest`, plus *ext* `max_cost`
/// and `mosaic`): a job's fields and `dimension`; no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskRequestBody {
    /// `label: openeo`.
    Openeo(OpeneoTaskBody),
    /// `label: ogc_api_process`.
    OgcApiProcess(OgcTaskBody),
}

/// Where a requested service runs (APEx `ServiceDetails`); no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    /// Backend base URL: absolute http(s), with a host, without credentials.
    #[schema(schema_with = http_url_schema)]
    pub endpoint: String,
    /// openEO: the public URL of the UDP JSON; OGC API Processes: the process id.
    #[schema(schema_with = not_blank_schema)]
    pub application: String,
    /// Optional deployment namespace (OGC API Processes).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The dimension of an upscale task; no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DimensionBody {
    /// Parameter name the values are assigned to (not blank).
    #[schema(schema_with = not_blank_schema)]
    pub name: String,
    /// One value per unit job (1 to 10 000), each checked as the parameter `name`.
    #[schema(value_type = Vec<Value>, min_items = 1, max_items = 10000)]
    pub values: Vec<Value>,
}

/// Body of `POST /params` (APEx `ParamRequest`): the service to describe. For openEO
/// the application must be the public http(s) URL of the UDP JSON; for OGC API
/// Processes it is the process id (or the process's full URL).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ServiceRequestBody {
    /// An openEO user-defined process.
    Openeo(OpeneoServiceRequest),
    /// An OGC API Processes process.
    OgcApiProcess(OgcServiceRequest),
}

/// `POST /params` for an openEO UDP; no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpeneoServiceRequest {
    /// Platform kind.
    pub label: OpeneoLabel,
    /// Backend and the URL of the UDP.
    pub service: UdpServiceBody,
}

/// `POST /params` for an OGC API Processes process; no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OgcServiceRequest {
    /// Platform kind.
    pub label: OgcLabel,
    /// Backend and process.
    pub service: ServiceBody,
}

/// Where an openEO UDP is (`POST /params`); no other field is accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UdpServiceBody {
    /// Backend base URL: absolute http(s), with a host, without credentials.
    #[schema(schema_with = http_url_schema)]
    pub endpoint: String,
    /// The public http(s) URL of the UDP JSON.
    #[schema(schema_with = http_url_schema)]
    pub application: String,
    /// Ignored by openEO.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl ServiceRequestBody {
    /// The label and service it names.
    pub fn into_parts(self) -> (Label, ServiceDetails) {
        match self {
            ServiceRequestBody::Openeo(b) => (Label::Openeo, b.service.into()),
            ServiceRequestBody::OgcApiProcess(b) => (Label::OgcApiProcess, b.service.into()),
        }
    }
}

impl From<ServiceBody> for ServiceDetails {
    fn from(s: ServiceBody) -> ServiceDetails {
        ServiceDetails {
            endpoint: s.endpoint,
            namespace: s.namespace,
            application: s.application,
        }
    }
}

impl From<UdpServiceBody> for ServiceDetails {
    fn from(s: UdpServiceBody) -> ServiceDetails {
        ServiceDetails {
            endpoint: s.endpoint,
            namespace: s.namespace,
            application: s.application,
        }
    }
}

impl From<JobRequestBody> for JobRequest {
    fn from(b: JobRequestBody) -> JobRequest {
        let (label, title, service, parameters, format, max_cost) = match b {
            JobRequestBody::Openeo(b) => (
                Label::Openeo,
                b.title,
                b.service.into(),
                b.parameters,
                b.format,
                b.max_cost,
            ),
            JobRequestBody::OgcApiProcess(b) => (
                Label::OgcApiProcess,
                b.title,
                b.service.into(),
                b.parameters,
                b.format,
                b.max_cost,
            ),
        };
        JobRequest {
            title,
            label,
            service,
            parameters,
            format,
            max_cost,
            estimate: None,
        }
    }
}

impl From<TaskRequestBody> for TaskRequest {
    fn from(b: TaskRequestBody) -> TaskRequest {
        let (job, dimension, mosaic) = match b {
            TaskRequestBody::Openeo(b) => (
                JobRequestBody::Openeo(OpeneoJobBody {
                    title: b.title,
                    label: b.label,
                    service: b.service,
                    parameters: b.parameters,
                    format: b.format,
                    max_cost: b.max_cost,
                }),
                b.dimension,
                b.mosaic,
            ),
            TaskRequestBody::OgcApiProcess(b) => (
                JobRequestBody::OgcApiProcess(OgcJobBody {
                    title: b.title,
                    label: b.label,
                    service: b.service,
                    parameters: b.parameters,
                    format: b.format,
                    max_cost: b.max_cost,
                }),
                b.dimension,
                b.mosaic,
            ),
        };
        TaskRequest {
            job: job.into(),
            dimension: Dimension {
                name: dimension.name,
                values: dimension.values,
            },
            mosaic,
            tile_estimates: Vec::new(),
        }
    }
}

/// The schema of a string [`check_http_url`] accepts.
pub fn http_url_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(HTTP_URL_PATTERN))
        .examples([Value::from("https://openeo.example.org")])
        .build()
}

/// The schema of a string that must not be blank ([`NOT_BLANK_PATTERN`]).
pub fn not_blank_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .pattern(Some(NOT_BLANK_PATTERN))
        .build()
}

/// The schema of a title: not blank, at most [`MAX_TITLE_LEN`] characters.
pub fn title_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TITLE_LEN))
        .pattern(Some(NOT_BLANK_PATTERN))
        .build()
}

/// Parses and validates a `POST /unit_jobs` (or `POST /sync_jobs`) body: every mistake
/// is collected first, then the body is read as a [`JobRequestBody`].
pub fn parse_job_request(body: &Value) -> Result<JobRequest, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    check_job_fields(obj, &mut errors);
    reject_unknown_fields("", obj, &JOB_FIELDS, &mut errors);
    finish(errors)?;
    typed::<JobRequestBody>(body).map(JobRequest::from)
}

/// Parses and validates a `POST /upscale_tasks` body (a [`TaskRequestBody`]).
pub fn parse_task_request(body: &Value) -> Result<TaskRequest, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    check_job_fields(obj, &mut errors);
    check_dimension(obj.get("dimension"), &mut errors);
    match obj.get("mosaic") {
        None | Some(Value::Null) => {}
        Some(v) => {
            if v.as_str().and_then(super::MosaicKind::parse).is_none() {
                errors.push(FieldError::new("mosaic", "must be \"vrt\" or \"cog\""));
            }
        }
    }
    reject_unknown_fields("", obj, &TASK_FIELDS, &mut errors);
    finish(errors)?;
    typed::<TaskRequestBody>(body).map(TaskRequest::from)
}

/// Validates one parameter value by its shape (bounding box, GeoJSON, temporal
/// interval, or containers of them), naming errors from `name`
/// (e.g. `parameters.spatial_extent`). Values of no known shape are accepted.
pub fn validate_parameter_value(name: &str, v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_value(name, v, &mut errors);
    errors
}

/// Validates a whole `parameters` map: `temporal_extent` is always a temporal
/// interval, every other value is checked by shape ([`validate_parameter_value`]).
/// Errors are named `<name>.<parameter>`.
pub fn validate_parameters(name: &str, params: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, v) in params {
        check_named_parameter(&join(name, key), key, v, &mut errors);
    }
    errors
}

/// Checks that `s` is an absolute `http://` or `https://` URL with a host (scheme
/// compared case-insensitively), without credentials, spaces or control characters.
/// `Err` holds the reason.
///
/// This reads the text as typed rather than through the `url` crate, on purpose: the
/// rule is published as the `pattern` of `service.endpoint` in `/openapi.json`
/// (`tests/openapi.rs` checks that both agree, Schemathesis generates from it), and the
/// WHATWG parser repairs what a pattern cannot describe (`http:/x`, `http:///x`,
/// backslashes, percent-decoded hosts, `a,b` hosts, an empty port). The `url` crate
/// parses these URLs later, where they are used (`platform::http`).
pub fn check_http_url(s: &str) -> Result<(), String> {
    const SHAPE: &str = "must be an absolute http:// or https:// URL";
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{SHAPE}, without spaces or control characters"));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("{SHAPE}, e.g. https://openeo.example.org"));
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!("{SHAPE}; the scheme {scheme:?} is not allowed"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{SHAPE} without credentials (user:password@); log in through the daemon instead"
        ));
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        // IPv6 literal: `[::1]` or `[::1]:8080`.
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(format!("{SHAPE}; the IPv6 host is missing its closing ']'"));
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("{SHAPE}; unexpected text after the IPv6 host")),
            },
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("{SHAPE}; the IPv6 host is not valid"));
        }
        (addr, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{SHAPE} with a host"));
    }
    let host_char_ok = |c: char| {
        !c.is_ascii() || c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')
    };
    if !authority.starts_with('[') && !host.chars().all(host_char_ok) {
        return Err(format!(
            "{SHAPE}; the host {host:?} contains invalid characters"
        ));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
        if !valid {
            return Err(format!(
                "{SHAPE}; the port {port:?} is not a number from 0 to 65535"
            ));
        }
    }
    Ok(())
}

/// Validates a bounding box `{west, south, east, north, crs?, base?, height?}` named
/// `name` (openEO `BoundingBox`).
///
/// The four edges are required finite numbers. Without `crs`, or with EPSG:4326 /
/// OGC CRS84, the box is geographic: longitudes within [-180, 180], latitudes within
/// [-90, 90], and `west > east` (crossing the antimeridian) is rejected with a request
/// to split the box. With another CRS (an integer EPSG code >= 1000 or a non-empty
/// string) the range checks are skipped. Always `south < north` and `west != east`.
pub fn validate_bbox(name: &str, v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match v.as_object() {
        Some(m) => check_bbox(name, m, &mut errors),
        None => errors.push(FieldError::new(
            name,
            "must be a bounding box object {west, south, east, north, crs}",
        )),
    }
    errors
}

/// Validates a GeoJSON object named `name`: a geometry (Point, MultiPoint, LineString,
/// MultiLineString, Polygon, MultiPolygon, GeometryCollection), a Feature or a
/// FeatureCollection. Positions are 2 or 3 finite numbers, longitude within
/// [-180, 180] and latitude within [-90, 90]; polygon rings have at least 4 positions
/// and are closed.
pub fn validate_geojson_geometry(name: &str, v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_geojson(name, v, &mut errors);
    errors
}

/// Validates a GeoJSON Polygon geometry object (the `aoi` of `POST /tiles`), naming
/// errors from `name_prefix` (`aoi`, `aoi.coordinates[0][2]`, ...). Anything but an
/// object with `"type": "Polygon"` is an error.
pub fn validate_geojson_polygon(name_prefix: &str, v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(m) = v.as_object() else {
        errors.push(FieldError::new(
            name_prefix,
            "must be a GeoJSON Polygon object {\"type\": \"Polygon\", \"coordinates\": [...]}",
        ));
        return errors;
    };
    match m.get("type") {
        Some(Value::String(t)) if t == "Polygon" => check_geometry(name_prefix, v, &mut errors),
        Some(Value::String(t)) => errors.push(FieldError::new(
            join(name_prefix, "type"),
            format!("must be \"Polygon\", got {t:?}"),
        )),
        Some(_) => errors.push(FieldError::new(
            join(name_prefix, "type"),
            "must be the string \"Polygon\"",
        )),
        None => errors.push(FieldError::new(
            join(name_prefix, "type"),
            "is required and must be \"Polygon\"",
        )),
    }
    errors
}

/// A strictly parsed date or date-time (see [`parse_strict_date_or_datetime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrDateTime {
    /// A calendar date, `YYYY-MM-DD`.
    Date(Date),
    /// An instant with its offset, `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
    DateTime(OffsetDateTime),
}

impl DateOrDateTime {
    /// The instant this stands for; a date means `00:00:00Z` of that day.
    pub fn instant(self) -> OffsetDateTime {
        match self {
            DateOrDateTime::Date(d) => d.midnight().assume_utc(),
            DateOrDateTime::DateTime(t) => t,
        }
    }

    /// Whether this is a plain date.
    pub fn is_date(self) -> bool {
        matches!(self, DateOrDateTime::Date(_))
    }
}

/// Parses a date `YYYY-MM-DD` or an RFC 3339 date-time
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, strictly: zero-padded fields, a real
/// calendar date and time of day, uppercase `T` and `Z`, no leap second. `Err` holds
/// the reason.
pub fn parse_strict_date_or_datetime(s: &str) -> Result<DateOrDateTime, String> {
    let b = s.as_bytes();
    let shape_err = || format!("{s:?} is not a date or date-time of the form {DATE_FORMS}");
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(shape_err());
    }
    let (Some(year), Some(month), Some(day)) = (digits(b, 0, 4), digits(b, 5, 2), digits(b, 8, 2))
    else {
        return Err(shape_err());
    };
    let date = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .and_then(|m| Date::from_calendar_date(year as i32, m, day as u8).ok())
        .ok_or_else(|| format!("{s:?} is not a real calendar date"))?;
    if b.len() == 10 {
        return Ok(DateOrDateTime::Date(date));
    }
    match b[10] {
        b'T' => {}
        b't' | b' ' => {
            return Err(format!(
                "{s:?} is not a valid date-time: separate date and time with an uppercase 'T' ({DATE_FORMS})"
            ))
        }
        _ => return Err(shape_err()),
    }
    if b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return Err(shape_err());
    }
    let (Some(hour), Some(minute), Some(second)) =
        (digits(b, 11, 2), digits(b, 14, 2), digits(b, 17, 2))
    else {
        return Err(shape_err());
    };
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let n = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(format!(
                "{s:?} is not a valid date-time: the fraction of a second needs 1 to 9 digits"
            ));
        }
        let frac = digits(b, start, n).ok_or_else(shape_err)?;
        nanos = frac * 10u32.pow(9 - n as u32);
        i = start + n;
    }
    let offset = match &b[i..] {
        b"Z" => UtcOffset::UTC,
        b"z" => {
            return Err(format!(
                "{s:?} is not a valid date-time: write UTC as an uppercase 'Z' ({DATE_FORMS})"
            ))
        }
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (Some(oh), Some(om)) = (digits(b, i + 1, 2), digits(b, i + 4, 2)) else {
                return Err(shape_err());
            };
            if oh > 23 || om > 59 {
                return Err(format!("{s:?} has an invalid UTC offset"));
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            UtcOffset::from_hms(sign * oh as i8, sign * om as i8, 0)
                .map_err(|_| format!("{s:?} has an invalid UTC offset"))?
        }
        [] => {
            return Err(format!(
                "{s:?} is not a valid date-time: the UTC offset (Z or ±HH:MM) is required"
            ))
        }
        _ => return Err(shape_err()),
    };
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| format!("{s:?} is not a valid date-time: no such time of day"))?;
    Ok(DateOrDateTime::DateTime(
        PrimitiveDateTime::new(date, time).assume_offset(offset),
    ))
}

/// Validates a temporal interval `[start, end]` named `name` (openEO
/// `temporal_extent`): exactly two elements, each a strict date or date-time
/// ([`parse_strict_date_or_datetime`]) or null, not both null, and the end after the
/// start. Two equal plain dates are accepted (one day, as APEx clients write it); two
/// equal instants otherwise are an empty interval.
pub fn validate_temporal_interval(name: &str, v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_temporal_interval(name, v, &mut errors);
    errors
}

// ---------------------------------------------------------------------------------
// Request structure
// ---------------------------------------------------------------------------------

/// Checks the fields shared by jobs and tasks.
fn check_job_fields(obj: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    check_title(obj.get("title"), errors);
    let label = parse_enum(
        "label",
        obj.get("label"),
        &Label::ALL.map(Label::as_str),
        Label::parse,
        errors,
    );
    // openEO runs a UDP given by its URL; an OGC process is named by id or URL.
    check_service(obj.get("service"), label == Some(Label::Openeo), errors);
    check_parameters(obj.get("parameters"), errors);
    parse_enum(
        "format",
        obj.get("format"),
        &OutputFormat::ALL.map(OutputFormat::as_str),
        OutputFormat::parse,
        errors,
    );
    check_max_cost(obj.get("max_cost"), errors);
}

/// `max_cost`: absent, `null` or a finite number from 0 to [`MAX_COST`].
fn check_max_cost(v: Option<&Value>, errors: &mut Vec<FieldError>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && (0.0..=MAX_COST).contains(&x) => {}
            _ => errors.push(FieldError::new(
                "max_cost",
                "must be a number from 0 to 1e12 (in the backend's currency)",
            )),
        },
        Some(other) => errors.push(FieldError::new(
            "max_cost",
            format!("must be a number or null, not {}", kind(other)),
        )),
    }
}

fn check_title(v: Option<&Value>, errors: &mut Vec<FieldError>) {
    let Some(title) = required_string("title", v, errors) else {
        return;
    };
    let len = title.chars().count();
    if title.trim().is_empty() {
        errors.push(FieldError::new("title", "must not be empty"));
    } else if len > MAX_TITLE_LEN {
        errors.push(FieldError::new(
            "title",
            format!("is too long: {len} characters, at most {MAX_TITLE_LEN}"),
        ));
    }
}

/// A required string field; pushes "is required" or "must be a string".
fn required_string<'a>(
    name: &str,
    v: Option<&'a Value>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(FieldError::new(
                name,
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
    }
}

/// A required string out of a fixed vocabulary.
fn parse_enum<T>(
    name: &str,
    v: Option<&Value>,
    valid: &[&str],
    parse: impl Fn(&str) -> Option<T>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let s = required_string(name, v, errors)?;
    if let Some(t) = parse(s) {
        return Some(t);
    }
    let mut reason = format!("unknown {name} {s:?}; valid values: {}", valid.join(", "));
    if let Some(t) = valid.iter().find(|t| t.eq_ignore_ascii_case(s)) {
        reason.push_str(&format!(" (did you mean {t:?}?)"));
    }
    errors.push(FieldError::new(name, reason));
    None
}

/// Parses a `POST /params` body `{label, service: {endpoint, application,
/// namespace?}}` (a [`ServiceRequestBody`]), collecting every mistake; for openEO the
/// application must be the public http(s) URL of the UDP.
pub fn parse_service_request(body: &Value) -> Result<(Label, ServiceDetails), Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let label = parse_enum(
        "label",
        obj.get("label"),
        &Label::ALL.map(Label::as_str),
        Label::parse,
        &mut errors,
    );
    check_service(
        obj.get("service"),
        label == Some(Label::Openeo),
        &mut errors,
    );
    reject_unknown_fields("", obj, &["label", "service"], &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    typed::<ServiceRequestBody>(body).map(ServiceRequestBody::into_parts)
}

/// `service`; with `application_is_url`, the application must be an http(s) URL.
fn check_service(v: Option<&Value>, application_is_url: bool, errors: &mut Vec<FieldError>) {
    let m = match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "service",
                "is required: {endpoint, application, namespace?}",
            ));
            return;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(FieldError::new(
                "service",
                format!(
                    "must be an object {{endpoint, application, namespace?}}, not {}",
                    kind(other)
                ),
            ));
            return;
        }
    };
    if let Some(e) = required_string("service.endpoint", m.get("endpoint"), errors) {
        if let Err(reason) = check_http_url(e) {
            errors.push(FieldError::new("service.endpoint", reason));
        }
    }
    if let Some(a) = required_string("service.application", m.get("application"), errors) {
        if a.trim().is_empty() {
            errors.push(FieldError::new("service.application", "must not be empty"));
        } else if application_is_url {
            if let Err(reason) = check_http_url(a) {
                errors.push(FieldError::new(
                    "service.application",
                    format!("{reason}: the public URL of the openEO UDP JSON"),
                ));
            }
        }
    }
    match m.get("namespace") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => errors.push(FieldError::new(
            "service.namespace",
            format!("must be a string or null, not {}", kind(other)),
        )),
    }
    reject_unknown_fields("service", m, &SERVICE_FIELDS, errors);
}

fn check_parameters(v: Option<&Value>, errors: &mut Vec<FieldError>) {
    match v {
        None | Some(Value::Null) => errors.push(FieldError::new(
            "parameters",
            "is required (a JSON object, {} for none)",
        )),
        Some(Value::Object(m)) => errors.extend(validate_parameters("parameters", m)),
        Some(other) => errors.push(FieldError::new(
            "parameters",
            format!("must be a JSON object, not {}", kind(other)),
        )),
    }
}

fn check_dimension(v: Option<&Value>, errors: &mut Vec<FieldError>) {
    let m = match v {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("dimension", "is required: {name, values}"));
            return;
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(FieldError::new(
                "dimension",
                format!("must be an object {{name, values}}, not {}", kind(other)),
            ));
            return;
        }
    };
    let name = required_string("dimension.name", m.get("name"), errors);
    if name.is_some_and(|n| n.trim().is_empty()) {
        errors.push(FieldError::new("dimension.name", "must not be empty"));
    }
    match m.get("values") {
        None | Some(Value::Null) => errors.push(FieldError::new(
            "dimension.values",
            "is required (one value per unit job)",
        )),
        Some(Value::Array(a)) if a.is_empty() => errors.push(FieldError::new(
            "dimension.values",
            "must not be empty: give at least one value",
        )),
        Some(Value::Array(a)) if a.len() > MAX_DIMENSION_VALUES => errors.push(FieldError::new(
            "dimension.values",
            format!(
                "has too many values: {}, at most {MAX_DIMENSION_VALUES}",
                a.len()
            ),
        )),
        Some(Value::Array(a)) => {
            // Each value becomes `parameters[name] = value` of one unit job: check it as such.
            let param = name.unwrap_or_default();
            for (i, x) in a.iter().enumerate() {
                check_named_parameter(&format!("dimension.values[{i}]"), param, x, errors);
            }
        }
        Some(other) => errors.push(FieldError::new(
            "dimension.values",
            format!("must be an array, not {}", kind(other)),
        )),
    }
    reject_unknown_fields("dimension", m, &DIMENSION_FIELDS, errors);
}

/// Pushes an "unknown field" error for every key of `m` not in `allowed`.
fn reject_unknown_fields(
    prefix: &str,
    m: &Map<String, Value>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in m.keys() {
        if !allowed.contains(&key.as_str()) {
            errors.push(FieldError::new(
                join(prefix, key),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            ));
        }
    }
}

/// `Ok` when there is no error, otherwise the errors, capped at [`MAX_REPORTED_ERRORS`].
fn finish(mut errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        return Ok(());
    }
    if errors.len() > MAX_REPORTED_ERRORS {
        let more = errors.len() - (MAX_REPORTED_ERRORS - 1);
        errors.truncate(MAX_REPORTED_ERRORS - 1);
        errors.push(FieldError::new(
            "body",
            format!("{more} more errors not shown; fix the ones above first"),
        ));
    }
    Err(errors)
}

/// Reads a checked body as its typed struct. The checks above already named every
/// mistake, so this fails only if they and the struct disagree; the field is then
/// named by its path as serde reports it.
pub fn typed<T: DeserializeOwned>(body: &Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let name = if path == "." { "body".to_owned() } else { path };
        vec![FieldError::new(name, e.into_inner().to_string())]
    })
}

// ---------------------------------------------------------------------------------
// Parameter values by shape
// ---------------------------------------------------------------------------------

/// Checks the value of the parameter called `param` (named `name` in errors):
/// `temporal_extent` is always an interval, anything else goes by shape.
fn check_named_parameter(name: &str, param: &str, v: &Value, errors: &mut Vec<FieldError>) {
    if param == "temporal_extent" {
        check_temporal_interval(name, v, errors);
    } else {
        check_value(name, v, errors);
    }
}

/// Checks a value by its shape, recursing into plain objects and arrays.
fn check_value(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    match v {
        Value::Object(m) if is_bbox(m) => check_bbox(name, m, errors),
        Value::Object(m) if is_geojson(m) => check_geojson(name, v, errors),
        Value::Object(m) => {
            for (key, x) in m {
                check_value(&join(name, key), x, errors);
            }
        }
        Value::Array(a) if looks_like_temporal_interval(a) => {
            check_temporal_interval(name, v, errors)
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_value(&format!("{name}[{i}]"), x, errors);
            }
        }
        _ => {}
    }
}

fn is_bbox(m: &Map<String, Value>) -> bool {
    BBOX_EDGES.iter().any(|k| m.contains_key(*k))
}

/// A GeoJSON `type`, or any `type` next to `coordinates` (a misspelt geometry).
fn is_geojson(m: &Map<String, Value>) -> bool {
    match m.get("type") {
        Some(Value::String(t)) => {
            GEOJSON_TYPES.contains(&t.as_str()) || m.contains_key("coordinates")
        }
        Some(_) => m.contains_key("coordinates"),
        None => false,
    }
}

/// Two elements, each a string or null, at least one string starting `DDDD-`.
fn looks_like_temporal_interval(a: &[Value]) -> bool {
    a.len() == 2
        && a.iter().all(|x| x.is_string() || x.is_null())
        && a.iter().any(|x| {
            x.as_str().is_some_and(|s| {
                let b = s.as_bytes();
                b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
            })
        })
}

// ---------------------------------------------------------------------------------
// Bounding boxes
// ---------------------------------------------------------------------------------

/// How the coordinates of a box are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crs {
    /// WGS 84 longitude/latitude (EPSG:4326, OGC CRS84, or no `crs`).
    Geographic,
    /// Anything else (projected, or unknown because `crs` itself is invalid).
    Other,
}

fn check_bbox(name: &str, m: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let edge = |key: &str, errors: &mut Vec<FieldError>| -> Option<f64> {
        let field = join(name, key);
        match m.get(key) {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(field, "is required (a number)"));
                None
            }
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Some(x),
                _ => {
                    errors.push(FieldError::new(field, "must be a finite number"));
                    None
                }
            },
            Some(other) => {
                errors.push(FieldError::new(
                    field,
                    format!("must be a finite number, not {}", kind(other)),
                ));
                None
            }
        }
    };
    let west = edge("west", errors);
    let south = edge("south", errors);
    let east = edge("east", errors);
    let north = edge("north", errors);

    let crs = match classify_crs(m.get("crs")) {
        Ok(crs) => crs,
        Err(reason) => {
            errors.push(FieldError::new(join(name, "crs"), reason));
            Crs::Other
        }
    };
    for key in ["base", "height"] {
        match m.get(key) {
            None | Some(Value::Null) | Some(Value::Number(_)) => {}
            Some(other) => errors.push(FieldError::new(
                join(name, key),
                format!("must be a number or null, not {}", kind(other)),
            )),
        }
    }
    reject_unknown_fields(name, m, &BBOX_FIELDS, errors);

    let in_range =
        |key: &str, x: Option<f64>, limit: f64, what: &str, errors: &mut Vec<FieldError>| {
            let x = x?;
            if crs == Crs::Geographic && !(-limit..=limit).contains(&x) {
                errors.push(FieldError::new(
                    join(name, key),
                    format!("{what} {x} is out of range [-{limit}, {limit}] (EPSG:4326 degrees)"),
                ));
                return None;
            }
            Some(x)
        };
    let west = in_range("west", west, 180.0, "longitude", errors);
    let south = in_range("south", south, 90.0, "latitude", errors);
    let east = in_range("east", east, 180.0, "longitude", errors);
    let north = in_range("north", north, 90.0, "latitude", errors);

    if let (Some(s), Some(n)) = (south, north) {
        if s >= n {
            errors.push(FieldError::new(
                join(name, "south"),
                format!("south ({s}) must be less than north ({n})"),
            ));
        }
    }
    if let (Some(w), Some(e)) = (west, east) {
        if w == e {
            errors.push(FieldError::new(
                join(name, "west"),
                format!("west equals east ({w}): the box has zero width"),
            ));
        } else if w > e && crs == Crs::Geographic {
            errors.push(FieldError::new(
                join(name, "west"),
                format!(
                    "west ({w}) is greater than east ({e}): the box crosses the antimeridian, \
                     which is not supported yet; split it into two boxes, \
                     west {w} to east 180 and west -180 to east {e}"
                ),
            ));
        } else if w > e {
            errors.push(FieldError::new(
                join(name, "west"),
                format!("west ({w}) must be less than east ({e})"),
            ));
        }
    }
}

/// Reads a bounding box `crs`: absent/null, 4326 and CRS84 forms are geographic;
/// other EPSG codes (>= 1000) and non-empty strings are not.
fn classify_crs(v: Option<&Value>) -> Result<Crs, String> {
    const SHAPE: &str = "must be an integer EPSG code (e.g. 32633) or a CRS string";
    let code_kind = |code: u64| {
        if code == 4326 {
            Ok(Crs::Geographic)
        } else if code >= 1000 {
            Ok(Crs::Other)
        } else {
            Err(format!(
                "{SHAPE}; EPSG code {code} is not valid (EPSG codes are >= 1000)"
            ))
        }
    };
    match v {
        None | Some(Value::Null) => Ok(Crs::Geographic),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(code) => code_kind(code),
            None => Err(format!("{SHAPE}, not {n}")),
        },
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                return Err(format!("{SHAPE}, not an empty string"));
            }
            let lower = t.to_ascii_lowercase();
            let digits_of = |rest: &str| -> Option<Result<Crs, String>> {
                if !rest.is_empty() && rest.len() <= 10 && rest.bytes().all(|b| b.is_ascii_digit())
                {
                    Some(
                        rest.parse::<u64>()
                            .map_err(|e| e.to_string())
                            .and_then(code_kind),
                    )
                } else {
                    None
                }
            };
            if let Some(kind) = digits_of(&lower) {
                return kind;
            }
            if let Some(rest) = lower.strip_prefix("epsg:") {
                return digits_of(rest)
                    .unwrap_or_else(|| Err(format!("{SHAPE}; {t:?} is not an EPSG code")));
            }
            const GEOGRAPHIC: [&str; 10] = [
                "http://www.opengis.net/def/crs/epsg/0/4326",
                "https://www.opengis.net/def/crs/epsg/0/4326",
                "urn:ogc:def:crs:epsg::4326",
                "http://www.opengis.net/def/crs/ogc/1.3/crs84",
                "https://www.opengis.net/def/crs/ogc/1.3/crs84",
                "http://www.opengis.net/def/crs/ogc/0/crs84",
                "https://www.opengis.net/def/crs/ogc/0/crs84",
                "urn:ogc:def:crs:ogc:1.3:crs84",
                "urn:ogc:def:crs:ogc::crs84",
                "ogc:crs84",
            ];
            if GEOGRAPHIC.contains(&lower.as_str()) || lower == "crs84" {
                Ok(Crs::Geographic)
            } else {
                Ok(Crs::Other)
            }
        }
        Some(other) => Err(format!("{SHAPE}, not {}", kind(other))),
    }
}

// ---------------------------------------------------------------------------------
// GeoJSON
// ---------------------------------------------------------------------------------

/// Any GeoJSON object: a geometry, a Feature or a FeatureCollection.
fn check_geojson(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    match v.get("type").and_then(Value::as_str) {
        Some("Feature") => check_feature(name, v, errors),
        Some("FeatureCollection") => match v.get("features") {
            Some(Value::Array(features)) => {
                for (i, f) in features.iter().enumerate() {
                    check_feature(&format!("{name}.features[{i}]"), f, errors);
                }
            }
            None => errors.push(FieldError::new(
                join(name, "features"),
                "is required (an array of Features)",
            )),
            Some(other) => errors.push(FieldError::new(
                join(name, "features"),
                format!("must be an array of Features, not {}", kind(other)),
            )),
        },
        _ => check_geometry(name, v, errors),
    }
}

fn check_feature(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    let Some(m) = v.as_object() else {
        errors.push(FieldError::new(name, "must be a GeoJSON Feature object"));
        return;
    };
    match m.get("type") {
        Some(Value::String(t)) if t == "Feature" => {}
        Some(Value::String(t)) => {
            errors.push(FieldError::new(
                join(name, "type"),
                format!("must be \"Feature\", got {t:?}"),
            ));
            return;
        }
        _ => {
            errors.push(FieldError::new(join(name, "type"), "must be \"Feature\""));
            return;
        }
    }
    match m.get("geometry") {
        None => errors.push(FieldError::new(
            join(name, "geometry"),
            "is required (a geometry object or null)",
        )),
        Some(Value::Null) => {}
        Some(g) => check_geometry(&join(name, "geometry"), g, errors),
    }
    match m.get("properties") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => errors.push(FieldError::new(
            join(name, "properties"),
            format!("must be an object or null, not {}", kind(other)),
        )),
    }
}

/// A GeoJSON geometry object (not a Feature).
fn check_geometry(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    let Some(m) = v.as_object() else {
        errors.push(FieldError::new(name, "must be a GeoJSON geometry object"));
        return;
    };
    let ty = match m.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            errors.push(FieldError::new(
                join(name, "type"),
                format!(
                    "must be a GeoJSON geometry type string, not {}",
                    kind(other)
                ),
            ));
            return;
        }
        None => {
            errors.push(FieldError::new(
                join(name, "type"),
                "is required (a GeoJSON geometry type such as \"Polygon\")",
            ));
            return;
        }
    };
    if ty == "GeometryCollection" {
        match m.get("geometries") {
            Some(Value::Array(gs)) => {
                for (i, g) in gs.iter().enumerate() {
                    check_geometry(&format!("{name}.geometries[{i}]"), g, errors);
                }
            }
            None => errors.push(FieldError::new(
                join(name, "geometries"),
                "is required (an array of geometries)",
            )),
            Some(other) => errors.push(FieldError::new(
                join(name, "geometries"),
                format!("must be an array of geometries, not {}", kind(other)),
            )),
        }
        return;
    }
    let check: fn(&str, &Value, &mut Vec<FieldError>) = match ty {
        "Point" => |n, c, e| {
            check_position(n, c, e);
        },
        "MultiPoint" => |n, c, e| {
            check_array_of(n, c, "an array of positions", 0, e, |n, p, e| {
                check_position(n, p, e);
            })
        },
        "LineString" => check_line,
        "MultiLineString" => {
            |n, c, e| check_array_of(n, c, "an array of line strings", 0, e, check_line)
        }
        "Polygon" => check_polygon,
        "MultiPolygon" => {
            |n, c, e| check_array_of(n, c, "an array of polygons", 1, e, check_polygon)
        }
        "Feature" | "FeatureCollection" => {
            errors.push(FieldError::new(
                join(name, "type"),
                format!("must be a geometry type here, not {ty:?}"),
            ));
            return;
        }
        other => {
            errors.push(FieldError::new(
                join(name, "type"),
                format!(
                    "unknown GeoJSON geometry type {other:?}; valid values: Point, MultiPoint, \
                     LineString, MultiLineString, Polygon, MultiPolygon, GeometryCollection"
                ),
            ));
            return;
        }
    };
    match m.get("coordinates") {
        None | Some(Value::Null) => errors.push(FieldError::new(
            join(name, "coordinates"),
            format!("is required for a {ty}"),
        )),
        Some(c) => check(&join(name, "coordinates"), c, errors),
    }
}

/// `v` must be an array of at least `min` items, each checked by `item` as `name[i]`.
fn check_array_of(
    name: &str,
    v: &Value,
    what: &str,
    min: usize,
    errors: &mut Vec<FieldError>,
    item: impl Fn(&str, &Value, &mut Vec<FieldError>),
) {
    let Some(a) = v.as_array() else {
        errors.push(FieldError::new(
            name,
            format!("must be {what}, not {}", kind(v)),
        ));
        return;
    };
    if a.len() < min {
        errors.push(FieldError::new(
            name,
            format!("must be {what} with at least {min}"),
        ));
    }
    for (i, x) in a.iter().enumerate() {
        item(&format!("{name}[{i}]"), x, errors);
    }
}

/// Polygon coordinates: at least one linear ring (the exterior), then holes.
fn check_polygon(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    check_array_of(name, v, "an array of linear rings", 1, errors, check_ring);
}

/// LineString coordinates: at least two positions.
fn check_line(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    check_array_of(name, v, "an array of positions", 2, errors, |n, p, e| {
        check_position(n, p, e);
    });
}

/// A linear ring: at least 4 positions, the last equal to the first.
fn check_ring(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    let Some(a) = v.as_array() else {
        errors.push(FieldError::new(
            name,
            format!(
                "a linear ring must be an array of positions, not {}",
                kind(v)
            ),
        ));
        return;
    };
    let positions: Vec<Option<Vec<f64>>> = a
        .iter()
        .enumerate()
        .map(|(i, p)| check_position(&format!("{name}[{i}]"), p, errors))
        .collect();
    if a.len() < 4 {
        errors.push(FieldError::new(
            name,
            format!(
                "a linear ring needs at least 4 positions (the last repeating the first), got {}",
                a.len()
            ),
        ));
    }
    if let [Some(first), .., Some(last)] = positions.as_slice() {
        if first != last {
            errors.push(FieldError::new(
                name,
                format!(
                    "ring is not closed: first and last positions differ ({first:?} vs {last:?}); \
                     repeat the first position at the end"
                ),
            ));
        }
    }
}

/// A position `[lon, lat]` or `[lon, lat, height]`; returns its numbers when it has
/// the right shape (even if out of range), for the ring closure check.
fn check_position(name: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<f64>> {
    let shape = "a position must be an array of 2 or 3 numbers [longitude, latitude(, height)]";
    let Some(a) = v.as_array() else {
        errors.push(FieldError::new(name, format!("{shape}, not {}", kind(v))));
        return None;
    };
    if !(2..=3).contains(&a.len()) {
        errors.push(FieldError::new(
            name,
            format!("{shape}, got {} elements", a.len()),
        ));
        return None;
    }
    let Some(nums) = a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>() else {
        errors.push(FieldError::new(
            name,
            format!("{shape}; found a non-number"),
        ));
        return None;
    };
    if nums.iter().any(|x| !x.is_finite()) {
        errors.push(FieldError::new(
            name,
            "a position must contain finite numbers",
        ));
        return None;
    }
    if !(-180.0..=180.0).contains(&nums[0]) {
        errors.push(FieldError::new(
            name,
            format!("longitude {} is out of range [-180, 180]", nums[0]),
        ));
    }
    if !(-90.0..=90.0).contains(&nums[1]) {
        errors.push(FieldError::new(
            name,
            format!("latitude {} is out of range [-90, 90]", nums[1]),
        ));
    }
    Some(nums)
}

// ---------------------------------------------------------------------------------
// Temporal intervals
// ---------------------------------------------------------------------------------

fn check_temporal_interval(name: &str, v: &Value, errors: &mut Vec<FieldError>) {
    let Some(a) = v.as_array() else {
        errors.push(FieldError::new(
            name,
            format!(
                "a temporal interval must be an array [start, end] of dates, not {}",
                kind(v)
            ),
        ));
        return;
    };
    if a.len() != 2 {
        errors.push(FieldError::new(
            name,
            format!(
                "a temporal interval must have exactly 2 elements [start, end], got {}",
                a.len()
            ),
        ));
        return;
    }
    let mut bound = |i: usize| -> Result<Option<DateOrDateTime>, ()> {
        let field = format!("{name}[{i}]");
        match &a[i] {
            Value::Null => Ok(None),
            Value::String(s) => match parse_strict_date_or_datetime(s) {
                Ok(d) => Ok(Some(d)),
                Err(reason) => {
                    errors.push(FieldError::new(field, reason));
                    Err(())
                }
            },
            other => {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "must be a date string ({DATE_FORMS}) or null, not {}",
                        kind(other)
                    ),
                ));
                Err(())
            }
        }
    };
    let start = bound(0);
    let end = bound(1);
    match (start, end) {
        (Ok(None), Ok(None)) => errors.push(FieldError::new(
            name,
            "a temporal interval may leave one bound open (null), not both",
        )),
        (Ok(Some(s)), Ok(Some(e))) => {
            let (si, ei) = (s.instant(), e.instant());
            if ei < si {
                errors.push(FieldError::new(
                    format!("{name}[1]"),
                    format!("the end {:?} is before the start {:?}", a[1], a[0]),
                ));
            } else if ei == si && !(s.is_date() && e.is_date()) {
                errors.push(FieldError::new(
                    format!("{name}[1]"),
                    format!(
                        "the end {:?} equals the start {:?}: the interval is empty \
                         (the end is excluded); give a later end",
                        a[1], a[0]
                    ),
                ));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------

/// `prefix.key`, or `key` alone when there is no prefix.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The JSON kind of a value, for messages ("a string", "null").
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The number written with `n` ASCII digits at `b[at..at + n]`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    if n == 0 || n > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // ----- helpers -------------------------------------------------------------

    /// A `POST /unit_jobs` body as the hosted APEx Dispatch API documents it.
    fn apex_job() -> Value {
        json!({"title":"Job A","label":"openeo",
         "service":{"endpoint":"http://127.0.0.1:9000/openeo/1.2","application":"http://127.0.0.1:9000/udp/fake_udp.json"},
         "format":"gtiff",
         "parameters":{"spatial_extent":{"type":"Polygon","coordinates":[[[5.17,51.25],[5.18,51.25],[5.18,51.26],[5.17,51.26],[5.17,51.25]]]},
                       "temporal_extent":["2025-05-01","2025-05-01"]}})
    }

    fn square(x: f64, y: f64) -> Value {
        json!({"type":"Polygon","coordinates":[[[x,y],[x+0.1,y],[x+0.1,y+0.1],[x,y+0.1],[x,y]]]})
    }

    /// The APEx `POST /upscale_tasks` example, with real polygons.
    fn apex_task() -> Value {
        json!({"title":"Upscale A","label":"openeo",
         "service":{"endpoint":"http://127.0.0.1:9000/openeo/1.2","application":"http://127.0.0.1:9000/udp/fake_udp.json"},
         "format":"gtiff","parameters":{"temporal_extent":["2025-05-01","2025-05-01"]},
         "dimension":{"name":"spatial_extent","values":[square(5.0, 51.0), square(5.1, 51.0)]}})
    }

    /// The PV farm request of the brief.
    fn pv_farm() -> Value {
        json!({"title":"PV farm Bruck","label":"openeo",
         "service":{"endpoint":"https://openeofed.dataspace.copernicus.eu",
                    "application":"https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/main/algorithm_catalog/pv_farm.json"},
         "format":"netcdf",
         "parameters":{"spatial_extent":{"west":16.342,"south":47.962,"east":16.414,"north":48.008},
                       "temporal_extent":["2023-05-01","2023-09-30"]}})
    }

    /// `body` with the value at JSON pointer `ptr` replaced (or inserted) by `v`.
    fn set(mut body: Value, ptr: &str, v: Value) -> Value {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let target = body.pointer_mut(parent).unwrap();
        match target {
            Value::Object(m) => {
                m.insert(key.to_owned(), v);
            }
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = v,
            _ => panic!("cannot set {ptr}"),
        }
        body
    }

    /// `body` without the member at JSON pointer `ptr`.
    fn remove(mut body: Value, ptr: &str) -> Value {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        body.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .shift_remove(key)
            .unwrap_or_else(|| panic!("nothing at {ptr}"));
        body
    }

    /// The job body with `parameters.<name>` set to `v`.
    fn param(name: &str, v: Value) -> Value {
        set(apex_job(), &format!("/parameters/{name}"), v)
    }

    fn names(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.name.as_str()).collect()
    }

    /// One rejected input: the exact error names, and a word every reason contains.
    struct Case {
        what: &'static str,
        body: Value,
        names: &'static [&'static str],
        word: &'static str,
    }

    fn case(
        what: &'static str,
        body: Value,
        names: &'static [&'static str],
        word: &'static str,
    ) -> Case {
        Case {
            what,
            body,
            names,
            word,
        }
    }

    fn assert_cases(cases: Vec<Case>, parse: impl Fn(&Value) -> Result<(), Vec<FieldError>>) {
        assert!(!cases.is_empty());
        for c in cases {
            let errors = match parse(&c.body) {
                Ok(()) => panic!("{}: accepted, expected errors {:?}", c.what, c.names),
                Err(e) => e,
            };
            assert_eq!(names(&errors), c.names, "{}: {errors:#?}", c.what);
            for e in &errors {
                assert!(
                    e.reason.to_lowercase().contains(&c.word.to_lowercase()),
                    "{}: reason of {} does not mention {:?}: {:?}",
                    c.what,
                    e.name,
                    c.word,
                    e.reason
                );
            }
        }
    }

    fn job_cases(cases: Vec<Case>) {
        assert_cases(cases, |b| parse_job_request(b).map(|_| ()));
    }

    fn task_cases(cases: Vec<Case>) {
        assert_cases(cases, |b| parse_task_request(b).map(|_| ()));
    }

    fn assert_job_ok(what: &str, body: &Value) -> JobRequest {
        parse_job_request(body).unwrap_or_else(|e| panic!("{what}: rejected: {e:#?}"))
    }

    // ----- valid inputs --------------------------------------------------------

    #[test]
    fn apex_job_example_is_accepted_as_is() {
        let job = assert_job_ok("apex job", &apex_job());
        assert_eq!(job.title, "Job A");
        assert_eq!(job.label, Label::Openeo);
        assert_eq!(job.format, OutputFormat::Gtiff);
        assert_eq!(job.service.endpoint, "http://127.0.0.1:9000/openeo/1.2");
        assert_eq!(
            job.service.application,
            "http://127.0.0.1:9000/udp/fake_udp.json"
        );
        assert_eq!(job.service.namespace, None);
        assert_eq!(Value::Object(job.parameters), apex_job()["parameters"]);
    }

    #[test]
    fn apex_task_example_is_accepted() {
        let task = parse_task_request(&apex_task()).unwrap();
        assert_eq!(task.job.title, "Upscale A");
        assert_eq!(task.dimension.name, "spatial_extent");
        assert_eq!(task.dimension.values.len(), 2);
        assert_eq!(task.dimension.values[1], square(5.1, 51.0));
        assert_eq!(
            Value::Object(task.job.parameters),
            json!({"temporal_extent":["2025-05-01","2025-05-01"]})
        );
    }

    #[test]
    fn apex_tiles_aoi_is_accepted() {
        let aoi = json!({"type":"Polygon","coordinates":[[[5.13,51.35],[4.84,51.33],[4.79,51.12],[5.16,51.12],[5.19,51.34],[5.13,51.35]]]});
        assert_eq!(validate_geojson_polygon("aoi", &aoi), vec![]);
    }

    #[test]
    fn pv_farm_request_is_accepted() {
        let job = assert_job_ok("pv farm", &pv_farm());
        assert_eq!(job.format, OutputFormat::Netcdf);
        assert_eq!(
            job.parameters["spatial_extent"],
            json!({"west":16.342,"south":47.962,"east":16.414,"north":48.008})
        );
    }

    #[test]
    fn parameters_keep_their_order() {
        let body = set(
            apex_job(),
            "/parameters",
            json!({"zeta": 1, "alpha": 2, "mu": {"b": 1, "a": 2}, "beta": 3}),
        );
        let job = assert_job_ok("order", &body);
        let keys: Vec<&str> = job.parameters.keys().map(String::as_str).collect();
        assert_eq!(keys, ["zeta", "alpha", "mu", "beta"]);
        let inner: Vec<&str> = job.parameters["mu"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(inner, ["b", "a"]);
    }

    #[test]
    fn valid_inputs_pass() {
        let max_title = "é".repeat(MAX_TITLE_LEN);
        let ring3d =
            json!({"type":"Polygon","coordinates":[[[0,0,10],[1,0,10],[1,1,10],[0,0,10]]]});
        let bodies = [
            ("ogc with namespace", {
                let b = set(apex_job(), "/label", json!("ogc_api_process"));
                set(
                    b,
                    "/service",
                    json!({"endpoint":"https://eoap.example.org","namespace":"ns1","application":"vegetation-index"}),
                )
            }),
            (
                "namespace null",
                set(apex_job(), "/service/namespace", Value::Null),
            ),
            (
                "title of exactly MAX_TITLE_LEN chars",
                set(apex_job(), "/title", json!(max_title)),
            ),
            (
                "upper-case scheme and port",
                set(
                    apex_job(),
                    "/service/endpoint",
                    json!("HTTPS://Openeo.Example.org:8443/openeo/1.2?x=1#f"),
                ),
            ),
            (
                "ipv6 endpoint",
                set(
                    apex_job(),
                    "/service/endpoint",
                    json!("http://[::1]:8080/openeo"),
                ),
            ),
            (
                "ipv4 endpoint without path",
                set(apex_job(), "/service/endpoint", json!("http://127.0.0.1")),
            ),
            ("every format", set(apex_job(), "/format", json!("json"))),
            (
                "empty parameters",
                set(apex_job(), "/parameters", json!({})),
            ),
            (
                "bbox in metres with crs 32633",
                param(
                    "spatial_extent",
                    json!({"west":600000.0,"south":5300000.0,"east":610000.0,"north":5310000.0,"crs":32633}),
                ),
            ),
            (
                "bbox in metres with crs EPSG:32633",
                param(
                    "spatial_extent",
                    json!({"west":600000,"south":5300000,"east":610000,"north":5310000,"crs":"EPSG:32633"}),
                ),
            ),
            (
                "bbox with WKT-ish crs",
                param(
                    "spatial_extent",
                    json!({"west":-5e5,"south":1e6,"east":5e5,"north":2e6,"crs":"PROJCS[\"x\"]"}),
                ),
            ),
            (
                "bbox with crs 4326 and null base/height",
                param(
                    "spatial_extent",
                    json!({"west":-180,"south":-90,"east":180,"north":90,"crs":4326,"base":null,"height":null}),
                ),
            ),
            (
                "bbox with numeric base/height",
                param(
                    "spatial_extent",
                    json!({"west":1,"south":2,"east":3,"north":4,"base":0,"height":100.5}),
                ),
            ),
            (
                "bbox with CRS84 URI",
                param(
                    "spatial_extent",
                    json!({"west":1,"south":2,"east":3,"north":4,"crs":"http://www.opengis.net/def/crs/OGC/1.3/CRS84"}),
                ),
            ),
            (
                "bbox with -0.0",
                param(
                    "spatial_extent",
                    json!({"west":-0.0,"south":0,"east":1,"north":1}),
                ),
            ),
            (
                "bbox with crs null",
                param(
                    "spatial_extent",
                    json!({"west":1,"south":2,"east":3,"north":4,"crs":null}),
                ),
            ),
            (
                "polygon with hole and 3D ring",
                param(
                    "geometry",
                    json!({"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[1,1],[2,1],[2,2],[1,1]]]}),
                ),
            ),
            ("3D polygon", param("geometry", ring3d.clone())),
            (
                "multipolygon",
                param(
                    "geometry",
                    json!({"type":"MultiPolygon","coordinates":[square(1.0,1.0)["coordinates"], square(2.0,2.0)["coordinates"]]}),
                ),
            ),
            (
                "point",
                param("geometry", json!({"type":"Point","coordinates":[180,-90]})),
            ),
            (
                "multipoint",
                param(
                    "geometry",
                    json!({"type":"MultiPoint","coordinates":[[0,0],[1,1,5]]}),
                ),
            ),
            (
                "linestring",
                param(
                    "geometry",
                    json!({"type":"LineString","coordinates":[[0,0],[1,1]]}),
                ),
            ),
            (
                "multilinestring",
                param(
                    "geometry",
                    json!({"type":"MultiLineString","coordinates":[[[0,0],[1,1]],[[2,2],[3,3]]]}),
                ),
            ),
            (
                "geometry collection",
                param(
                    "geometry",
                    json!({"type":"GeometryCollection","geometries":[square(0.0,0.0), {"type":"Point","coordinates":[1,2]}]}),
                ),
            ),
            (
                "feature with foreign members",
                param(
                    "geometry",
                    json!({"type":"Feature","id":7,"bbox":[0,0,1,1],"properties":{"name":"x","west":"not a bbox"},"geometry":ring3d}),
                ),
            ),
            (
                "feature with null geometry",
                param(
                    "geometry",
                    json!({"type":"Feature","properties":null,"geometry":null}),
                ),
            ),
            (
                "feature collection",
                param(
                    "geometry",
                    json!({"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":square(3.0,3.0)}]}),
                ),
            ),
            (
                "temporal: open start",
                param("temporal_extent", json!([null, "2024-01-01"])),
            ),
            (
                "temporal: open end",
                param("temporal_extent", json!(["2024-01-01", null])),
            ),
            (
                "temporal: leap day",
                param("temporal_extent", json!(["2024-02-29", "2024-03-01"])),
            ),
            (
                "temporal: date-times",
                param(
                    "temporal_extent",
                    json!(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5Z"]),
                ),
            ),
            (
                "temporal: offsets and nanoseconds",
                param(
                    "temporal_extent",
                    json!(["2024-01-01T00:00:00.123456789+05:30", "2024-12-31"]),
                ),
            ),
            (
                "temporal: offset compared as instants",
                param(
                    "temporal_extent",
                    json!(["2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00Z"]),
                ),
            ),
            (
                "temporal: date then later date-time",
                param(
                    "temporal_extent",
                    json!(["2024-01-01", "2024-01-01T00:00:01Z"]),
                ),
            ),
            (
                "temporal: -00:00 offset",
                param(
                    "temporal_extent",
                    json!(["2024-01-01T00:00:00-00:00", "2024-01-02"]),
                ),
            ),
            (
                "interval under another name",
                param("period", json!(["2023-05-01", "2023-09-30"])),
            ),
            (
                "list of three dates is not an interval",
                param("dates", json!(["2023-09-30", "2023-05-01", "2023-01-01"])),
            ),
            (
                "two strings that are not dates",
                param("bands", json!(["B04", "B08"])),
            ),
            (
                "a year alone is not date-like",
                param("years", json!(["2023", "x"])),
            ),
            (
                "other values as is",
                param(
                    "options",
                    json!({"threshold": 3, "flag": true, "name": "x", "list": [1, null, "a"], "nested": {"deep": [{"k": "v"}]}}),
                ),
            ),
            (
                "object with type but no coordinates",
                param("schema", json!({"type": "string", "enum": ["a"]})),
            ),
            (
                "process graph-like object",
                param(
                    "reducer",
                    json!({"process_graph": {"mean1": {"process_id": "mean", "arguments": {"data": {"from_parameter": "data"}}, "result": true}}}),
                ),
            ),
        ];
        for (what, body) in &bodies {
            assert_job_ok(what, body);
        }
    }

    // ----- request structure ---------------------------------------------------

    #[test]
    fn structure_errors_are_named() {
        let long = "x".repeat(MAX_TITLE_LEN + 1);
        job_cases(vec![
            case("array body", json!([]), &["body"], "object"),
            case("string body", json!("x"), &["body"], "object"),
            case(
                "missing title",
                remove(apex_job(), "/title"),
                &["title"],
                "required",
            ),
            case(
                "null title",
                set(apex_job(), "/title", Value::Null),
                &["title"],
                "required",
            ),
            case(
                "empty title",
                set(apex_job(), "/title", json!("")),
                &["title"],
                "empty",
            ),
            case(
                "blank title",
                set(apex_job(), "/title", json!("   ")),
                &["title"],
                "empty",
            ),
            case(
                "long title",
                set(apex_job(), "/title", json!(long)),
                &["title"],
                "at most 500",
            ),
            case(
                "numeric title",
                set(apex_job(), "/title", json!(3)),
                &["title"],
                "string",
            ),
            case(
                "missing label",
                remove(apex_job(), "/label"),
                &["label"],
                "required",
            ),
            case(
                "unknown label",
                set(apex_job(), "/label", json!("wps")),
                &["label"],
                "openeo, ogc_api_process",
            ),
            case(
                "label in caps",
                set(apex_job(), "/label", json!("OpenEO")),
                &["label"],
                "did you mean \"openeo\"",
            ),
            case(
                "label not a string",
                set(apex_job(), "/label", json!(1)),
                &["label"],
                "string",
            ),
            case(
                "missing service",
                remove(apex_job(), "/service"),
                &["service"],
                "required",
            ),
            case(
                "service a string",
                set(apex_job(), "/service", json!("https://x.org")),
                &["service"],
                "object",
            ),
            case(
                "missing endpoint",
                remove(apex_job(), "/service/endpoint"),
                &["service.endpoint"],
                "required",
            ),
            case(
                "endpoint a number",
                set(apex_job(), "/service/endpoint", json!(5)),
                &["service.endpoint"],
                "string",
            ),
            case(
                "missing application",
                remove(apex_job(), "/service/application"),
                &["service.application"],
                "required",
            ),
            case(
                "empty application",
                set(apex_job(), "/service/application", json!("")),
                &["service.application"],
                "empty",
            ),
            case(
                "namespace a number",
                set(apex_job(), "/service/namespace", json!(5)),
                &["service.namespace"],
                "string or null",
            ),
            case(
                "unknown service key",
                set(apex_job(), "/service/token", json!("secret")),
                &["service.token"],
                "unknown field",
            ),
            case(
                "missing parameters",
                remove(apex_job(), "/parameters"),
                &["parameters"],
                "required",
            ),
            case(
                "parameters an array",
                set(apex_job(), "/parameters", json!([1])),
                &["parameters"],
                "object",
            ),
            case(
                "missing format",
                remove(apex_job(), "/format"),
                &["format"],
                "required",
            ),
            case(
                "unknown format",
                set(apex_job(), "/format", json!("tif")),
                &["format"],
                "gtiff, netcdf, geojson, json",
            ),
            case(
                "format in openEO spelling",
                set(apex_job(), "/format", json!("GTiff")),
                &["format"],
                "did you mean \"gtiff\"",
            ),
            case(
                "extra top-level field",
                set(apex_job(), "/colour", json!("red")),
                &["colour"],
                "unknown field",
            ),
            case(
                "dimension on a unit job",
                set(apex_job(), "/dimension", json!({"name":"x","values":[1]})),
                &["dimension"],
                "unknown field",
            ),
        ]);
    }

    #[test]
    fn endpoint_must_be_http_url_with_host() {
        let ep = |s: &str| set(apex_job(), "/service/endpoint", json!(s));
        job_cases(vec![
            case(
                "ftp",
                ep("ftp://example.org/openeo"),
                &["service.endpoint"],
                "http",
            ),
            case(
                "file",
                ep("file:///etc/passwd"),
                &["service.endpoint"],
                "http",
            ),
            case(
                "javascript",
                ep("javascript:alert(1)"),
                &["service.endpoint"],
                "http",
            ),
            case(
                "data",
                ep("data:text/plain,hi"),
                &["service.endpoint"],
                "http",
            ),
            case(
                "no scheme",
                ep("openeo.dataspace.copernicus.eu"),
                &["service.endpoint"],
                "http",
            ),
            case("relative", ep("/openeo/1.2"), &["service.endpoint"], "http"),
            case(
                "scheme-relative",
                ep("//example.org"),
                &["service.endpoint"],
                "http",
            ),
            case(
                "http with one slash",
                ep("http:/example.org"),
                &["service.endpoint"],
                "http",
            ),
            case("empty", ep(""), &["service.endpoint"], "http"),
            case("no host", ep("https://"), &["service.endpoint"], "host"),
            case(
                "no host before path",
                ep("http:///openeo"),
                &["service.endpoint"],
                "host",
            ),
            case(
                "port only",
                ep("https://:8080/"),
                &["service.endpoint"],
                "host",
            ),
            case(
                "credentials",
                ep("https://user:pw@example.org/"),
                &["service.endpoint"],
                "credentials",
            ),
            case(
                "bad port",
                ep("https://example.org:99999/"),
                &["service.endpoint"],
                "port",
            ),
            case(
                "port not a number",
                ep("https://example.org:http/"),
                &["service.endpoint"],
                "port",
            ),
            case(
                "space in host",
                ep("https://exa mple.org"),
                &["service.endpoint"],
                "spaces",
            ),
            case(
                "backslash in host",
                ep("https://evil.org\\@good.org"),
                &["service.endpoint"],
                "credentials",
            ),
            case(
                "backslash host",
                ep("https://evil.org\\x"),
                &["service.endpoint"],
                "invalid characters",
            ),
            case(
                "unclosed ipv6",
                ep("http://[::1/"),
                &["service.endpoint"],
                "ipv6",
            ),
        ]);
    }

    #[test]
    fn check_http_url_accepts_and_rejects() {
        for ok in [
            "http://localhost:8421",
            "https://openeofed.dataspace.copernicus.eu",
            "HtTpS://example.org/a/b?c=d",
            "http://[2001:db8::1]:443/x",
            "https://xn--bcher-kva.example/",
            "https://bücher.example/",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https",
            "http//x",
            "https://?x",
            "https://#x",
            "ws://x.org",
            "https://x.org:",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_errors_are_collected_not_only_the_first() {
        let body = json!({
            "label": "wps",
            "service": {"endpoint": "ftp://x", "extra": 1},
            "parameters": {
                "spatial_extent": {"west": 200, "south": 10, "east": 5, "north": "48"},
                "temporal_extent": ["2023-09-30", "2023-05-01"]
            },
            "format": "tif",
            "colour": "red",
            "shape": 1
        });
        let errors = parse_job_request(&body).unwrap_err();
        assert_eq!(
            names(&errors),
            [
                "title",
                "label",
                "service.endpoint",
                "service.application",
                "service.extra",
                "parameters.spatial_extent.north",
                "parameters.spatial_extent.west",
                "parameters.temporal_extent[1]",
                "format",
                "colour",
                "shape",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn error_list_is_capped_with_a_summary() {
        // 300 out-of-range positions, as when a projected polygon is sent as WGS84.
        let mut ring: Vec<Value> = (0..300).map(|i| json!([500000 + i, 5300000])).collect();
        ring.push(ring[0].clone());
        let body = param(
            "geometry",
            json!({"type": "Polygon", "coordinates": [ring]}),
        );
        let errors = parse_job_request(&body).unwrap_err();
        assert_eq!(errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(errors[0].name, "parameters.geometry.coordinates[0][0]");
        let last = errors.last().unwrap();
        assert_eq!(last.name, "body");
        // 301 positions, each with a longitude and a latitude error.
        assert!(
            last.reason.contains(&format!("{} more errors", 602 - 99)),
            "{last:?}"
        );
    }

    // ----- bounding boxes ------------------------------------------------------

    fn bbox(v: Value) -> Value {
        param("spatial_extent", v)
    }

    #[test]
    fn bbox_errors_are_named() {
        job_cases(vec![
            case(
                "missing north",
                bbox(json!({"west":1,"south":2,"east":3})),
                &["parameters.spatial_extent.north"],
                "required",
            ),
            case(
                "only west",
                bbox(json!({"west":1})),
                &[
                    "parameters.spatial_extent.south",
                    "parameters.spatial_extent.east",
                    "parameters.spatial_extent.north",
                ],
                "required",
            ),
            case(
                "null west",
                bbox(json!({"west":null,"south":2,"east":3,"north":4})),
                &["parameters.spatial_extent.west"],
                "required",
            ),
            case(
                "string NaN",
                bbox(json!({"west":"NaN","south":2,"east":3,"north":4})),
                &["parameters.spatial_extent.west"],
                "number",
            ),
            case(
                "string Infinity",
                bbox(json!({"west":1,"south":"Infinity","east":3,"north":4})),
                &["parameters.spatial_extent.south"],
                "number",
            ),
            case(
                "numeric string",
                bbox(json!({"west":1,"south":2,"east":"3.5","north":4})),
                &["parameters.spatial_extent.east"],
                "number",
            ),
            case(
                "boolean",
                bbox(json!({"west":1,"south":2,"east":3,"north":true})),
                &["parameters.spatial_extent.north"],
                "number",
            ),
            case(
                "west too far",
                bbox(json!({"west":-180.5,"south":2,"east":3,"north":4})),
                &["parameters.spatial_extent.west"],
                "range",
            ),
            case(
                "east too far",
                bbox(json!({"west":1,"south":2,"east":181,"north":4})),
                &["parameters.spatial_extent.east"],
                "range",
            ),
            case(
                "south too far",
                bbox(json!({"west":1,"south":-91,"east":3,"north":4})),
                &["parameters.spatial_extent.south"],
                "range",
            ),
            case(
                "north too far",
                bbox(json!({"west":1,"south":2,"east":3,"north":90.001})),
                &["parameters.spatial_extent.north"],
                "range",
            ),
            case(
                "south == north",
                bbox(json!({"west":1,"south":4,"east":3,"north":4})),
                &["parameters.spatial_extent.south"],
                "less than north",
            ),
            case(
                "south > north",
                bbox(json!({"west":16.342,"south":48.008,"east":16.414,"north":47.962})),
                &["parameters.spatial_extent.south"],
                "less than north",
            ),
            case(
                "zero width",
                bbox(json!({"west":3,"south":2,"east":3,"north":4})),
                &["parameters.spatial_extent.west"],
                "zero width",
            ),
            case(
                "antimeridian",
                bbox(json!({"west":170,"south":-20,"east":-170,"north":-10})),
                &["parameters.spatial_extent.west"],
                "antimeridian",
            ),
            case(
                "antimeridian: split advice",
                bbox(json!({"west":170,"south":-20,"east":-170,"north":-10})),
                &["parameters.spatial_extent.west"],
                "split it into two boxes",
            ),
            case(
                "antimeridian with EPSG:4326",
                bbox(json!({"west":170,"south":-20,"east":-170,"north":-10,"crs":"EPSG:4326"})),
                &["parameters.spatial_extent.west"],
                "antimeridian",
            ),
            case(
                "antimeridian with 4326",
                bbox(json!({"west":170,"south":-20,"east":-170,"north":-10,"crs":4326})),
                &["parameters.spatial_extent.west"],
                "antimeridian",
            ),
            case(
                "antimeridian with CRS84 URN",
                bbox(
                    json!({"west":170,"south":-20,"east":-170,"north":-10,"crs":"urn:ogc:def:crs:OGC:1.3:CRS84"}),
                ),
                &["parameters.spatial_extent.west"],
                "antimeridian",
            ),
            case(
                "projected west > east",
                bbox(
                    json!({"west":610000,"south":5300000,"east":600000,"north":5310000,"crs":32633}),
                ),
                &["parameters.spatial_extent.west"],
                "less than east",
            ),
            case(
                "projected south > north",
                bbox(
                    json!({"west":600000,"south":5310000,"east":610000,"north":5300000,"crs":32633}),
                ),
                &["parameters.spatial_extent.south"],
                "less than north",
            ),
            case(
                "metres without crs",
                bbox(json!({"west":600000,"south":5300000,"east":610000,"north":5310000})),
                &[
                    "parameters.spatial_extent.west",
                    "parameters.spatial_extent.south",
                    "parameters.spatial_extent.east",
                    "parameters.spatial_extent.north",
                ],
                "range",
            ),
            case(
                "metres with crs \"4326\"",
                bbox(json!({"west":600000,"south":5,"east":610000,"north":6,"crs":"4326"})),
                &[
                    "parameters.spatial_extent.west",
                    "parameters.spatial_extent.east",
                ],
                "longitude",
            ),
            case(
                "metres with CRS84 URI",
                bbox(
                    json!({"west":1,"south":5300000,"east":2,"north":5310000,"crs":"http://www.opengis.net/def/crs/OGC/1.3/CRS84"}),
                ),
                &[
                    "parameters.spatial_extent.south",
                    "parameters.spatial_extent.north",
                ],
                "latitude",
            ),
            case(
                "crs too small",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":12})),
                &["parameters.spatial_extent.crs"],
                "EPSG",
            ),
            case(
                "crs negative",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":-4326})),
                &["parameters.spatial_extent.crs"],
                "integer EPSG code",
            ),
            case(
                "crs fractional",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":4326.5})),
                &["parameters.spatial_extent.crs"],
                "integer EPSG code",
            ),
            case(
                "crs empty",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":""})),
                &["parameters.spatial_extent.crs"],
                "empty",
            ),
            case(
                "crs EPSG:abc",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":"EPSG:abc"})),
                &["parameters.spatial_extent.crs"],
                "EPSG code",
            ),
            case(
                "crs \"EPSG:12\"",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":"EPSG:12"})),
                &["parameters.spatial_extent.crs"],
                ">= 1000",
            ),
            case(
                "crs boolean",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"crs":true})),
                &["parameters.spatial_extent.crs"],
                "EPSG",
            ),
            case(
                "base a string",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"base":"low"})),
                &["parameters.spatial_extent.base"],
                "number or null",
            ),
            case(
                "height an array",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"height":[1]})),
                &["parameters.spatial_extent.height"],
                "number or null",
            ),
            case(
                "unknown key",
                bbox(json!({"west":1,"south":2,"east":3,"north":4,"srs":"x"})),
                &["parameters.spatial_extent.srs"],
                "unknown field",
            ),
            case(
                "bbox nested in an array",
                param(
                    "areas",
                    json!([{"west":1,"south":2,"east":3,"north":4}, {"west":5,"south":2,"east":5,"north":4}]),
                ),
                &["parameters.areas[1].west"],
                "zero width",
            ),
            case(
                "bbox nested in an object",
                param("options", json!({"extent": {"west":1,"south":2,"east":3}})),
                &["parameters.options.extent.north"],
                "required",
            ),
        ]);
    }

    #[test]
    fn validate_bbox_is_usable_on_its_own() {
        assert_eq!(
            validate_bbox("bbox", &json!({"west":1,"south":2,"east":3,"north":4})),
            vec![]
        );
        assert_eq!(
            names(&validate_bbox("bbox", &json!([1, 2, 3, 4]))),
            ["bbox"]
        );
        assert_eq!(
            names(&validate_bbox("", &json!({"west":1,"south":2,"east":3}))),
            ["north"]
        );
    }

    // ----- GeoJSON -------------------------------------------------------------

    fn geom(v: Value) -> Value {
        param("geometry", v)
    }

    fn polygon(rings: Value) -> Value {
        geom(json!({"type": "Polygon", "coordinates": rings}))
    }

    #[test]
    fn geojson_errors_are_named() {
        let open = json!([[0, 0], [1, 0], [1, 1], [0, 1]]);
        let closed = json!([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]);
        job_cases(vec![
            case(
                "open ring",
                polygon(json!([open])),
                &["parameters.geometry.coordinates[0]"],
                "ring is not closed: first and last positions differ",
            ),
            case(
                "open hole",
                polygon(json!([
                    closed,
                    [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.3, 0.3]]
                ])),
                &["parameters.geometry.coordinates[1]"],
                "not closed",
            ),
            case(
                "ring of 3 positions",
                polygon(json!([[[0, 0], [1, 0], [0, 0]]])),
                &["parameters.geometry.coordinates[0]"],
                "at least 4 positions",
            ),
            case(
                "ring of 3 positions, open",
                polygon(json!([[[0, 0], [1, 0], [1, 1]]])),
                &[
                    "parameters.geometry.coordinates[0]",
                    "parameters.geometry.coordinates[0]",
                ],
                "ring",
            ),
            case(
                "ring not an array",
                polygon(json!([5])),
                &["parameters.geometry.coordinates[0]"],
                "linear ring",
            ),
            case(
                "no rings",
                polygon(json!([])),
                &["parameters.geometry.coordinates"],
                "at least 1",
            ),
            case(
                "coordinates not an array",
                polygon(json!("x")),
                &["parameters.geometry.coordinates"],
                "array of linear rings",
            ),
            case(
                "missing coordinates",
                geom(json!({"type": "Polygon"})),
                &["parameters.geometry.coordinates"],
                "required",
            ),
            case(
                "position with one number",
                polygon(json!([[[0, 0], [1], [1, 1], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][1]"],
                "2 or 3 numbers",
            ),
            case(
                "position with four numbers",
                polygon(json!([[[0, 0], [1, 0, 0, 0], [1, 1], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][1]"],
                "2 or 3 numbers",
            ),
            case(
                "position with a string",
                polygon(json!([[[0, 0], [1, 0], ["1", 1], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][2]"],
                "non-number",
            ),
            case(
                "position with NaN string",
                polygon(json!([[[0, 0], [1, 0], [1, 1], [0, "NaN"], [0, 0]]])),
                &["parameters.geometry.coordinates[0][3]"],
                "number",
            ),
            case(
                "position an object",
                polygon(json!([[[0, 0], {"x": 1}, [1, 1], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][1]"],
                "position",
            ),
            case(
                "longitude out of range",
                polygon(json!([[[0, 0], [181, 0], [1, 1], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][1]"],
                "longitude",
            ),
            case(
                "latitude out of range",
                polygon(json!([[[0, 0], [1, 0], [1, -90.5], [0, 1], [0, 0]]])),
                &["parameters.geometry.coordinates[0][2]"],
                "latitude",
            ),
            case(
                "out of range first and last",
                polygon(json!([[[0, 100], [1, 0], [1, 1], [0, 100]]])),
                &[
                    "parameters.geometry.coordinates[0][0]",
                    "parameters.geometry.coordinates[0][3]",
                ],
                "latitude",
            ),
            case(
                "multipolygon with open ring",
                geom(json!({"type": "MultiPolygon", "coordinates": [[closed], [open]]})),
                &["parameters.geometry.coordinates[1][0]"],
                "not closed",
            ),
            case(
                "empty multipolygon",
                geom(json!({"type": "MultiPolygon", "coordinates": []})),
                &["parameters.geometry.coordinates"],
                "at least 1",
            ),
            case(
                "point out of range",
                geom(json!({"type": "Point", "coordinates": [200, 0]})),
                &["parameters.geometry.coordinates"],
                "longitude",
            ),
            case(
                "point too short",
                geom(json!({"type": "Point", "coordinates": [1]})),
                &["parameters.geometry.coordinates"],
                "2 or 3",
            ),
            case(
                "multipoint latitude",
                geom(json!({"type": "MultiPoint", "coordinates": [[0, 0], [0, 100]]})),
                &["parameters.geometry.coordinates[1]"],
                "latitude",
            ),
            case(
                "linestring of one position",
                geom(json!({"type": "LineString", "coordinates": [[0, 0]]})),
                &["parameters.geometry.coordinates"],
                "at least 2",
            ),
            case(
                "multilinestring non-number",
                geom(
                    json!({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[0, 0], [1, "a"]]]}),
                ),
                &["parameters.geometry.coordinates[1][1]"],
                "non-number",
            ),
            case(
                "collection with open polygon",
                geom(
                    json!({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}, {"type": "Polygon", "coordinates": [open]}]}),
                ),
                &["parameters.geometry.geometries[1].coordinates[0]"],
                "not closed",
            ),
            case(
                "collection without geometries",
                geom(json!({"type": "GeometryCollection"})),
                &["parameters.geometry.geometries"],
                "required",
            ),
            case(
                "collection holding a feature",
                geom(
                    json!({"type": "GeometryCollection", "geometries": [{"type": "Feature", "geometry": null}]}),
                ),
                &["parameters.geometry.geometries[0].type"],
                "geometry type",
            ),
            case(
                "feature with open polygon",
                geom(
                    json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [open]}}),
                ),
                &["parameters.geometry.geometry.coordinates[0]"],
                "not closed",
            ),
            case(
                "feature without geometry",
                geom(json!({"type": "Feature", "properties": {}})),
                &["parameters.geometry.geometry"],
                "required",
            ),
            case(
                "feature properties a string",
                geom(json!({"type": "Feature", "properties": "x", "geometry": null})),
                &["parameters.geometry.properties"],
                "object or null",
            ),
            case(
                "feature collection with bad feature",
                geom(
                    json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": null}, {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [open]}}]}),
                ),
                &["parameters.geometry.features[1].geometry.coordinates[0]"],
                "not closed",
            ),
            case(
                "feature collection holding a geometry",
                geom(
                    json!({"type": "FeatureCollection", "features": [{"type": "Point", "coordinates": [0, 0]}]}),
                ),
                &["parameters.geometry.features[0].type"],
                "must be \"feature\"",
            ),
            case(
                "feature collection without features",
                geom(json!({"type": "FeatureCollection"})),
                &["parameters.geometry.features"],
                "required",
            ),
            case(
                "misspelt type",
                geom(json!({"type": "Polygn", "coordinates": [closed]})),
                &["parameters.geometry.type"],
                "unknown geojson geometry type",
            ),
            case(
                "geometry in an array",
                param(
                    "aois",
                    json!([square(1.0, 1.0), {"type": "Polygon", "coordinates": [open]}]),
                ),
                &["parameters.aois[1].coordinates[0]"],
                "not closed",
            ),
        ]);
    }

    #[test]
    fn geojson_polygon_for_tiles() {
        let closed = json!([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]);
        let cases = [
            (json!("x"), vec!["aoi"], "polygon"),
            (
                json!({"coordinates": [closed]}),
                vec!["aoi.type"],
                "required",
            ),
            (
                json!({"type": "MultiPolygon", "coordinates": [[closed]]}),
                vec!["aoi.type"],
                "\"polygon\"",
            ),
            (
                json!({"type": 5, "coordinates": [closed]}),
                vec!["aoi.type"],
                "polygon",
            ),
            (
                json!({"type": "Feature", "geometry": square(0.0, 0.0)}),
                vec!["aoi.type"],
                "polygon",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
                vec!["aoi.coordinates[0]"],
                "not closed",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}),
                vec!["aoi.coordinates[0][2]"],
                "latitude",
            ),
            (
                json!({"type": "Polygon"}),
                vec!["aoi.coordinates"],
                "required",
            ),
        ];
        for (v, expected, word) in cases {
            let errors = validate_geojson_polygon("aoi", &v);
            assert_eq!(names(&errors), expected, "{v}: {errors:#?}");
            for e in &errors {
                assert!(e.reason.to_lowercase().contains(word), "{v}: {e:?}");
            }
        }
        assert_eq!(validate_geojson_polygon("aoi", &square(5.0, 51.0)), vec![]);
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]});
        assert_eq!(
            names(&validate_geojson_polygon("", &open)),
            ["coordinates[0]"]
        );
    }

    #[test]
    fn validate_geojson_geometry_is_usable_on_its_own() {
        assert_eq!(validate_geojson_geometry("g", &square(0.0, 0.0)), vec![]);
        assert_eq!(names(&validate_geojson_geometry("g", &json!(3))), ["g"]);
        assert_eq!(
            names(&validate_geojson_geometry("g", &json!({}))),
            ["g.type"]
        );
    }

    // ----- temporal intervals ----------------------------------------------------

    fn temporal(v: Value) -> Value {
        param("temporal_extent", v)
    }

    #[test]
    fn temporal_errors_are_named() {
        job_cases(vec![
            case(
                "a string",
                temporal(json!("2023-05-01")),
                &["parameters.temporal_extent"],
                "array",
            ),
            case(
                "an object",
                temporal(json!({"start": "2023-05-01"})),
                &["parameters.temporal_extent"],
                "array",
            ),
            case(
                "one element",
                temporal(json!(["2023-05-01"])),
                &["parameters.temporal_extent"],
                "exactly 2",
            ),
            case(
                "three elements",
                temporal(json!(["2023-05-01", "2023-06-01", "2023-07-01"])),
                &["parameters.temporal_extent"],
                "exactly 2",
            ),
            case(
                "empty",
                temporal(json!([])),
                &["parameters.temporal_extent"],
                "exactly 2",
            ),
            case(
                "both null",
                temporal(json!([null, null])),
                &["parameters.temporal_extent"],
                "not both",
            ),
            case(
                "not zero padded",
                temporal(json!(["2024-1-5", "2024-02-01"])),
                &["parameters.temporal_extent[0]"],
                "YYYY-MM-DD",
            ),
            case(
                "day not padded",
                temporal(json!(["2024-01-01", "2024-02-1"])),
                &["parameters.temporal_extent[1]"],
                "YYYY-MM-DD",
            ),
            case(
                "30 February",
                temporal(json!(["2024-02-30", "2024-03-01"])),
                &["parameters.temporal_extent[0]"],
                "calendar",
            ),
            case(
                "29 February 2023",
                temporal(json!(["2023-02-29", "2023-03-01"])),
                &["parameters.temporal_extent[0]"],
                "calendar",
            ),
            case(
                "month 13",
                temporal(json!(["2024-13-01", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "calendar",
            ),
            case(
                "month 00",
                temporal(json!(["2024-00-10", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "calendar",
            ),
            case(
                "day 00",
                temporal(json!(["2024-01-00", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "calendar",
            ),
            case(
                "slashes",
                temporal(json!(["2024/01/01", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date",
            ),
            case(
                "lowercase t",
                temporal(json!(["2024-01-01t00:00:00Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "uppercase 'T'",
            ),
            case(
                "space separator",
                temporal(json!(["2024-01-01 00:00:00Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "uppercase 'T'",
            ),
            case(
                "lowercase z",
                temporal(json!(["2024-01-01T00:00:00z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "uppercase 'Z'",
            ),
            case(
                "no offset",
                temporal(json!(["2024-01-01T00:00:00", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "offset",
            ),
            case(
                "no seconds",
                temporal(json!(["2024-01-01T00:00Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date-time",
            ),
            case(
                "hour 24",
                temporal(json!(["2024-01-01T24:00:00Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "time of day",
            ),
            case(
                "leap second",
                temporal(json!(["2024-01-01T23:59:60Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "time of day",
            ),
            case(
                "minute 60",
                temporal(json!(["2024-01-01T10:60:00Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "time of day",
            ),
            case(
                "offset hour 24",
                temporal(json!(["2024-01-01T00:00:00+24:00", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "offset",
            ),
            case(
                "offset without colon",
                temporal(json!(["2024-01-01T00:00:00+0100", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date-time",
            ),
            case(
                "empty fraction",
                temporal(json!(["2024-01-01T00:00:00.Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "fraction",
            ),
            case(
                "ten-digit fraction",
                temporal(json!(["2024-01-01T00:00:00.1234567890Z", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "fraction",
            ),
            case(
                "trailing text",
                temporal(json!(["2024-01-01x", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date",
            ),
            case(
                "trailing text after Z",
                temporal(json!(["2024-01-01T00:00:00Zx", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date",
            ),
            case(
                "empty string",
                temporal(json!(["", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date",
            ),
            case(
                "five-digit year",
                temporal(json!(["12024-01-01", "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date",
            ),
            case(
                "number element",
                temporal(json!([20240101, "2025-01-01"])),
                &["parameters.temporal_extent[0]"],
                "date string",
            ),
            case(
                "both elements bad",
                temporal(json!(["2024-1-1", "2024-02-30"])),
                &[
                    "parameters.temporal_extent[0]",
                    "parameters.temporal_extent[1]",
                ],
                "date",
            ),
            case(
                "end before start",
                temporal(json!(["2023-09-30", "2023-05-01"])),
                &["parameters.temporal_extent[1]"],
                "before",
            ),
            case(
                "equal date-times",
                temporal(json!(["2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"])),
                &["parameters.temporal_extent[1]"],
                "empty",
            ),
            case(
                "equal instants, different offsets",
                temporal(json!(["2024-01-01T12:00:00+02:00", "2024-01-01T10:00:00Z"])),
                &["parameters.temporal_extent[1]"],
                "empty",
            ),
            case(
                "date equal to date-time",
                temporal(json!(["2024-01-01", "2024-01-01T00:00:00Z"])),
                &["parameters.temporal_extent[1]"],
                "empty",
            ),
            case(
                "date before date-time start",
                temporal(json!(["2024-01-01T10:00:00Z", "2024-01-01"])),
                &["parameters.temporal_extent[1]"],
                "before",
            ),
            case(
                "offset makes it earlier",
                temporal(json!(["2024-01-01T10:00:00-02:00", "2024-01-01T11:00:00Z"])),
                &["parameters.temporal_extent[1]"],
                "before",
            ),
            case(
                "interval under another name",
                param("period", json!(["2023-09-30", "2023-05-01"])),
                &["parameters.period[1]"],
                "before",
            ),
            case(
                "interval with null under another name",
                param("period", json!([null, "2023-5-1"])),
                &["parameters.period[1]"],
                "YYYY-MM-DD",
            ),
            case(
                "nested intervals",
                param(
                    "seasons",
                    json!([["2023-01-01", "2023-03-01"], ["2023-04-01", "2023-13-01"]]),
                ),
                &["parameters.seasons[1][1]"],
                "calendar",
            ),
        ]);
    }

    #[test]
    fn strict_dates_parse_to_the_right_instant() {
        use time::macros::{date, datetime};
        assert_eq!(
            parse_strict_date_or_datetime("2024-02-29"),
            Ok(DateOrDateTime::Date(date!(2024 - 02 - 29)))
        );
        let t = parse_strict_date_or_datetime("2024-01-01T10:20:30.25+02:00").unwrap();
        assert_eq!(t.instant(), datetime!(2024-01-01 08:20:30.25 UTC));
        assert!(!t.is_date());
        let d = parse_strict_date_or_datetime("2024-01-01").unwrap();
        assert_eq!(d.instant(), datetime!(2024-01-01 00:00:00 UTC));
        assert!(d.is_date());
        assert_eq!(
            parse_strict_date_or_datetime("2024-01-01T00:00:00.000000001Z")
                .unwrap()
                .instant(),
            datetime!(2024-01-01 00:00:00.000000001 UTC)
        );
        // Extremes parse and compare without panicking.
        let late = parse_strict_date_or_datetime("9999-12-31T23:59:59-23:59").unwrap();
        let early = parse_strict_date_or_datetime("0000-01-01T00:00:00+23:59").unwrap();
        assert!(early.instant() < late.instant());
        // Non-ASCII digits and short strings are errors, not panics.
        for bad in [
            "２０２４-01-01",
            "2024-01-01T",
            "2024-01-01T00:00:00+01",
            "é",
            "2024-01-0é",
            "-2024-01-01",
        ] {
            assert!(parse_strict_date_or_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_temporal_interval_is_usable_on_its_own() {
        assert_eq!(
            validate_temporal_interval("t", &json!(["2025-05-01", "2025-05-01"])),
            vec![]
        );
        assert_eq!(
            names(&validate_temporal_interval(
                "t",
                &json!(["2025-05-02", "2025-05-01"])
            )),
            ["t[1]"]
        );
        assert_eq!(
            names(&validate_parameter_value(
                "p",
                &json!({"a": ["2025-05-02", null]})
            )),
            Vec::<&str>::new()
        );
        assert_eq!(
            names(&validate_parameter_value(
                "p",
                &json!({"a": ["2025-5-2", null]})
            )),
            ["p.a[0]"]
        );
    }

    // ----- upscale tasks -------------------------------------------------------

    #[test]
    fn task_errors_are_named() {
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]});
        let too_many: Vec<Value> = (0..=MAX_DIMENSION_VALUES).map(|i| json!(i)).collect();
        task_cases(vec![
            case("array body", json!([apex_task()]), &["body"], "object"),
            case(
                "missing dimension",
                remove(apex_task(), "/dimension"),
                &["dimension"],
                "required",
            ),
            case(
                "dimension a string",
                set(apex_task(), "/dimension", json!("spatial_extent")),
                &["dimension"],
                "object",
            ),
            case(
                "missing name",
                remove(apex_task(), "/dimension/name"),
                &["dimension.name"],
                "required",
            ),
            case(
                "empty name",
                set(apex_task(), "/dimension/name", json!("")),
                &["dimension.name"],
                "empty",
            ),
            case(
                "name a number",
                set(apex_task(), "/dimension/name", json!(1)),
                &["dimension.name"],
                "string",
            ),
            case(
                "missing values",
                remove(apex_task(), "/dimension/values"),
                &["dimension.values"],
                "required",
            ),
            case(
                "empty values",
                set(apex_task(), "/dimension/values", json!([])),
                &["dimension.values"],
                "empty",
            ),
            case(
                "values an object",
                set(apex_task(), "/dimension/values", json!({"a": 1})),
                &["dimension.values"],
                "array",
            ),
            case(
                "too many values",
                set(apex_task(), "/dimension/values", json!(too_many)),
                &["dimension.values"],
                "too many",
            ),
            case(
                "extra dimension key",
                set(apex_task(), "/dimension/mode", json!("zip")),
                &["dimension.mode"],
                "unknown field",
            ),
            case(
                "open polygon value",
                set(apex_task(), "/dimension/values/1", open),
                &["dimension.values[1].coordinates[0]"],
                "not closed",
            ),
            case(
                "bbox value",
                set(
                    apex_task(),
                    "/dimension/values/0",
                    json!({"west": 5, "south": 51, "east": 4, "north": 52}),
                ),
                &["dimension.values[0].west"],
                "antimeridian",
            ),
            case(
                "temporal values",
                set(
                    set(apex_task(), "/dimension/name", json!("temporal_extent")),
                    "/dimension/values",
                    json!([["2023-01-01", "2023-02-01"], ["2023-09-30", "2023-05-01"]]),
                ),
                &["dimension.values[1][1]"],
                "before",
            ),
            case(
                "temporal value not an interval",
                set(
                    set(apex_task(), "/dimension/name", json!("temporal_extent")),
                    "/dimension/values",
                    json!(["2023-01-01"]),
                ),
                &["dimension.values[0]"],
                "array",
            ),
            case(
                "extra top-level field",
                set(apex_task(), "/colour", json!("red")),
                &["colour"],
                "unknown field",
            ),
            case(
                "job errors too",
                set(apex_task(), "/format", json!("tif")),
                &["format"],
                "gtiff",
            ),
            case(
                "shared parameters checked",
                set(
                    apex_task(),
                    "/parameters/temporal_extent",
                    json!(["2023-09-30", "2023-05-01"]),
                ),
                &["parameters.temporal_extent[1]"],
                "before",
            ),
        ]);
    }

    #[test]
    fn task_accepts_the_maximum_number_of_values() {
        let values: Vec<Value> = (0..MAX_DIMENSION_VALUES).map(|i| json!(i)).collect();
        let body = set(
            set(apex_task(), "/dimension/name", json!("threshold")),
            "/dimension/values",
            json!(values),
        );
        let task = parse_task_request(&body).unwrap();
        assert_eq!(task.dimension.values.len(), MAX_DIMENSION_VALUES);
        assert_eq!(task.dimension.name, "threshold");
    }

    #[test]
    fn an_openeo_application_is_the_udp_url_an_ogc_one_a_process_id() {
        let body = set(apex_job(), "/service/application", json!("pv_farm.json"));
        let errors = parse_job_request(&body).unwrap_err();
        assert_eq!(names(&errors), ["service.application"]);
        assert!(errors[0].reason.contains("UDP"), "{errors:?}");
        let ogc = set(body, "/label", json!("ogc_api_process"));
        let job = parse_job_request(&ogc).unwrap();
        assert_eq!(job.label, Label::OgcApiProcess);
        assert_eq!(job.service.application, "pv_farm.json");
    }

    #[test]
    fn typed_bodies_agree_with_their_constants() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(OpeneoJobBody::schema()).unwrap();
        let props: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = JOB_FIELDS.to_vec();
        want.sort_unstable();
        let mut got = props.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["title"]["maxLength"], MAX_TITLE_LEN);
        let task = serde_json::to_value(OgcTaskBody::schema()).unwrap();
        let mut got: Vec<&str> = task["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        let mut want = TASK_FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        let dim = serde_json::to_value(DimensionBody::schema()).unwrap();
        assert_eq!(
            dim["properties"]["values"]["maxItems"],
            MAX_DIMENSION_VALUES
        );
        let budget = serde_json::to_value(OpeneoJobBody::schema()).unwrap();
        assert_eq!(budget["properties"]["max_cost"]["maximum"], MAX_COST);
    }

    #[test]
    fn task_collects_job_and_dimension_errors_together() {
        let body = json!({"title": "", "label": "openeo",
            "service": {"endpoint": "http://127.0.0.1:9000", "application": "http://127.0.0.1:9000/udp.json"},
            "parameters": {}, "format": "gtiff",
            "dimension": {"name": "", "values": []}});
        let errors = parse_task_request(&body).unwrap_err();
        assert_eq!(
            names(&errors),
            ["title", "dimension.name", "dimension.values"]
        );
    }
}
