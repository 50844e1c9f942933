//! OGC API Processes (Part 1: Core 1.0) servers behind the [`Platform`] seam.
//!
//! **Addressing** (the APEx request shape). `service.endpoint` is the server's base URL,
//! an optional `service.namespace` the path between it and `/processes` (e.g.
//! `gep/wps3`), `service.application` the process id — or, as catalogue records give
//! it, the process's full URL `.../processes/<id>`. A remote job id is the server's
//! `jobID`, prefixed `<namespace>:` when there is a namespace (as the APEx Dispatch API
//! stores it), so that one backend serves every namespace of its server.
//!
//! **Services.** `GET .../processes/{id}` (cached [`DESCRIPTION_FRESH_FOR`]) becomes
//! the form's parameters: `format: ogc-bbox` (or the OGC `bbox.yaml` schema) is a
//! bounding box, `format: date`/`date-time` a date, `enum` options, `minOccurs: 0`
//! optional, `maxOccurs > 1` an array, the schema's `default` the default; and the
//! outputs (id, title, media types). Arguments are checked against the input schemas;
//! a box given as `{west, south, east, north}` or GeoJSON is sent in the OGC form
//! `{"bbox": [w, s, e, n], "crs": ".../CRS84"}`.
//!
//! **Execution.** `POST .../processes/{id}/execution` with `{"inputs": ...}` and
//! `Prefer: respond-async` when the process allows async execution. `201` (or `202`)
//! with `Location` (and maybe a statusInfo body) is a running job; any other `2xx` is
//! the answer of a synchronous run, kept as the job's result. Servers may run a
//! sync-only process synchronously even when asked for async (pygeoapi does): both
//! answers are understood whatever was asked.
//!
//! **Following.** `GET .../jobs/{id}` statusInfo: `accepted` → queued, `running`,
//! `successful` → finished, `failed`, `dismissed` → canceled, with `progress` and
//! `message`. `GET .../jobs` (paging by `next` links, `processID` asked for but filtered
//! here too) serves polling while it finds the tracked jobs within a few pages.
//! Cancel is dismiss: `DELETE .../jobs/{id}`. OGC has no logs: the status message is
//! the log.
//!
//! **Never submitted twice.** OGC has no field to carry our UUID. A submission whose
//! answer was lost is reconciled from the server's complete job list: a job of the same
//! process created since the submission went out (minus [`CLOCK_SKEW`]) and linked to
//! no other local job. One: it is ours. None in a complete list: not created, safe to
//! send again. Several, or no usable list: the job is `SubmissionUncertain`.
//!
//! **Results.** `GET .../jobs/{id}/results` (or a synchronous answer): a results
//! document `{output: value | {value, mediaType} | {href, type}}` or one raw output.
//! References become assets to download; inline GeoJSON is saved as `.geojson`, other
//! JSON as `.json`, other media types with their extension; literals go to the
//! manifest; a STAC Collection, Catalog, Item or ItemCollection (inline or by
//! reference), or a GeoJSON FeatureCollection whose features link `rel: collection`,
//! is followed to its assets. Everything becomes one STAC-like document.
//!
//! **Login.** OGC servers have no `/credentials/oidc`: the identity provider comes from
//! the backend's `config.toml` section (`issuer`, `client_id`, `scopes`); the bearer is
//! the plain access token. Anonymous servers need nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::http::{
    extension_for, join_segments, parse_base, Bearer, HttpBackend, Kind, Request, TokenStyle,
    CONNECT_TIMEOUT, REQUEST_TIMEOUT,
};
use super::udp::{describe, validate_arguments, Udp, UdpParameter};
use super::{
    BackendInfo, InlineFile, OutputDescriptor, Payload, Platform, PlatformError, Prepared,
    Reconciled, RemoteJob, ResultsDoc, ServiceDef, ServiceError, Submission,
};
use crate::config::BackendConfig;
use crate::credentials::{LoginClient, LoginProvider, Logins};
use crate::job::{rfc3339_z, Job, Label, ServiceDetails, Status};
use crate::redact::redact_url;

/// How long a process description is reused.
pub const DESCRIPTION_FRESH_FOR: Duration = Duration::from_secs(600);

/// Time allowed for an execution request: a synchronous run answers when it is done.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(600);

/// How much earlier than our clock a server may date a job we created: jobs this much
/// older than a lost submission may still be it (reconciliation).
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A job created at most this long before a lost submission went out (by the server's
/// clock) counts as created after it.
pub const MATCH_TOLERANCE: Duration = Duration::from_secs(1);

/// Page size asked for when listing jobs (servers may give fewer).
const LIST_PAGE_SIZE: u32 = 100;

/// Pages followed for a complete job list (reconciliation).
const MAX_LIST_PAGES: usize = 100;

/// Pages followed when polling by listing; beyond, per-job requests are cheaper.
const MAX_POLL_PAGES: usize = 3;

/// STAC documents followed for one job's results (items, children).
const MAX_STAC_DOCUMENTS: usize = 500;

/// The OGC core conformance class.
const CONF_CORE: &str = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core";

/// Media type asked for in every JSON request (pygeoapi answers HTML otherwise).
const JSON: &str = "application/json";

// ============================================================================
// Process descriptions
// ============================================================================

/// Where a process lives: its server prefix (`namespace`, may be empty), its id and the
/// `.../processes` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Address {
    /// Path between the endpoint and `/processes` (no leading or trailing `/`).
    prefix: String,
    /// Process id.
    id: String,
    /// The server: endpoint + prefix.
    server: Url,
}

impl Address {
    fn process(&self) -> Url {
        join_segments(&self.server, &["processes", &self.id])
    }
}

/// A process description, as far as dispatching needs it.
#[derive(Debug, Clone)]
struct Process {
    /// Whether the process may run asynchronously.
    asynchronous: bool,
    /// Inputs as parameters (for forms and checking).
    signature: Arc<Udp>,
    /// Outputs.
    outputs: Vec<OutputDescriptor>,
    /// Title and description.
    title: Option<String>,
    description: Option<String>,
}

/// Parses a process description (`GET /processes/{id}`). Inputs and outputs may be
/// maps (1.0) or lists with `id` (older drafts).
fn parse_process(doc: &Value, id: &str) -> Result<Process, String> {
    let obj = doc
        .as_object()
        .ok_or("the process description is not a JSON object")?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let job_control: Vec<&str> = obj
        .get("jobControlOptions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // Without the list, a server runs synchronously (the default of the standard).
    let asynchronous = job_control.contains(&"async-execute");
    let mut parameters = Vec::new();
    for (name, input) in entries(obj.get("inputs")) {
        let min = input.get("minOccurs").and_then(Value::as_u64).unwrap_or(1);
        let max = match input.get("maxOccurs") {
            Some(Value::String(s)) if s == "unbounded" => None,
            Some(v) => Some(v.as_u64().unwrap_or(1)),
            None => Some(1),
        };
        let mut schema = input.get("schema").cloned().unwrap_or_else(|| json!({}));
        let default = schema.get("default").cloned();
        if max != Some(1) {
            // Several values: an array of them (one value alone is accepted too).
            let mut array = json!({"type": "array", "items": schema});
            if min > 1 {
                array["minItems"] = json!(min);
            }
            if let Some(m) = max {
                array["maxItems"] = json!(m);
            }
            schema = array;
        }
        let title = input
            .get("title")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from);
        let description = input
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        parameters.push(UdpParameter {
            name,
            description: if description.is_empty() {
                title.clone().unwrap_or_default()
            } else {
                description
            },
            title,
            optional: min == 0,
            default,
            schema,
        });
    }
    let outputs = entries(obj.get("outputs"))
        .into_iter()
        .map(|(oid, o)| {
            let schema = o.get("schema").cloned().unwrap_or(Value::Null);
            OutputDescriptor {
                title: o
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or(&oid)
                    .to_string(),
                description: o
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                media_types: media_types_of(&schema),
                id: oid,
                schema,
            }
        })
        .collect();
    Ok(Process {
        asynchronous,
        signature: Arc::new(Udp {
            id: text("id").unwrap_or_else(|| id.to_string()),
            summary: text("title"),
            description: text("description"),
            parameters,
            returns: None,
            default_job_options: None,
        }),
        outputs,
        title: text("title"),
        description: text("description"),
    })
}

/// `inputs`/`outputs` as (id, object) pairs: from a map, or a list of objects with `id`.
fn entries(v: Option<&Value>) -> Vec<(String, Value)> {
    match v {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|e| Some((e.get("id")?.as_str()?.to_string(), e.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

/// The media types an output schema names (`contentMediaType`, also inside
/// `oneOf`/`anyOf` alternatives); JSON when it is a plain JSON schema.
fn media_types_of(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(s: &Value, out: &mut Vec<String>) {
        if let Some(t) = s.get("contentMediaType").and_then(Value::as_str) {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(Value::Array(alts)) = s.get(key) {
                for a in alts {
                    walk(a, out);
                }
            }
        }
    }
    walk(schema, &mut out);
    if out.is_empty() && schema.get("type").is_some() {
        out.push(JSON.to_string());
    }
    out
}

// ============================================================================
// Job ids and statusInfo
// ============================================================================

/// Our remote id of a server job: `jobID`, or `<prefix>:jobID`.
fn encode_id(prefix: &str, job_id: &str) -> String {
    if prefix.is_empty() {
        job_id.to_string()
    } else {
        format!("{prefix}:{job_id}")
    }
}

/// `(prefix, jobID)` of a remote id.
fn decode_id(remote_id: &str) -> (&str, &str) {
    match remote_id.split_once(':') {
        Some((prefix, id)) if !prefix.contains("//") => (prefix, id),
        _ => ("", remote_id),
    }
}

/// Maps an OGC status word to ours.
pub fn map_status(word: &str) -> Option<Status> {
    Some(match word {
        "accepted" => Status::Queued,
        "running" => Status::Running,
        "successful" => Status::Finished,
        "failed" => Status::Failed,
        "dismissed" => Status::Canceled,
        _ => return None,
    })
}

/// A statusInfo object → [`RemoteJob`] (id encoded with `prefix`). `jobID` is required
/// (`id` accepted from older drafts).
fn parse_status(v: &Value, prefix: &str) -> Option<RemoteJob> {
    let o = v.as_object()?;
    let job_id = o
        .get("jobID")
        .or_else(|| o.get("id"))
        .and_then(Value::as_str)?;
    let raw = o
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let status = map_status(&raw);
    let text = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    Some(RemoteJob {
        id: encode_id(prefix, job_id),
        progress: match status {
            Some(Status::Finished) => Some(100.0),
            _ => o
                .get("progress")
                .and_then(Value::as_f64)
                .map(|p| p.clamp(0.0, 100.0)),
        },
        status,
        raw_status: raw,
        message: text("message"),
        created: text("created").and_then(|c| rfc3339_z::parse(&c).ok()),
        process_id: text("processID"),
        description: None,
        // Not in OGC API Processes Part 1; some servers add them to the status info.
        costs: o
            .get("costs")
            .and_then(Value::as_f64)
            .filter(|c| c.is_finite() && *c >= 0.0),
        usage: o.get("usage").filter(|u| u.is_object()).cloned(),
    })
}

/// Chooses the remote job of a lost submission among the server's jobs: those of the
/// process not linked to another local job. Exactly one created since the submission
/// went out (less [`MATCH_TOLERANCE`]): it is ours. None within [`CLOCK_SKEW`] before
/// it, in a complete list: not created. Anything else (several new ones, or only jobs
/// a little older than the submission, which a server clock running late could make of
/// ours, or jobs without process or creation time): uncertain.
fn choose(
    jobs: &[RemoteJob],
    process_id: &str,
    since: OffsetDateTime,
    linked: &HashSet<String>,
    complete: bool,
) -> Reconciled {
    let candidates: Vec<&RemoteJob> = jobs
        .iter()
        .filter(|j| !linked.contains(&j.id))
        .filter(|j| j.process_id.as_deref().is_none_or(|p| p == process_id))
        .filter(|j| j.created.is_none_or(|c| c >= since - CLOCK_SKEW))
        .collect();
    let near: Vec<&RemoteJob> = candidates
        .iter()
        .copied()
        .filter(|j| j.process_id.is_some())
        .filter(|j| j.created.is_some_and(|c| c >= since - MATCH_TOLERANCE))
        .collect();
    let unknown = candidates
        .iter()
        .any(|j| j.process_id.is_none() || j.created.is_none());
    match (near.as_slice(), candidates.len()) {
        ([one], _) if !unknown => Reconciled::Found(Box::new((*one).clone())),
        ([], 0) if complete => Reconciled::NotCreated,
        ([], 0) => Reconciled::Uncertain(
            "the answer to the submission was lost and the server's job list is too long to \
             be sure the job is not on it"
                .into(),
        ),
        _ if unknown => Reconciled::Uncertain(
            "the answer to the submission was lost and the server's job list does not say \
             which process and when each job was created, so eodispatch cannot tell its job \
             apart"
                .into(),
        ),
        ([], _) => Reconciled::Uncertain(format!(
            "the answer to the submission was lost, and the only jobs of {process_id} on the \
             server near that time ({}) were created a little before it went out: with \
             clocks that differ, one of them could be it",
            ids(&candidates)
        )),
        (many, _) => Reconciled::Uncertain(format!(
            "the answer to the submission was lost and the server has {} jobs of {process_id} \
             created since then that could be it ({})",
            many.len(),
            ids(many)
        )),
    }
}

fn ids(jobs: &[&RemoteJob]) -> String {
    jobs.iter()
        .map(|j| j.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

// ============================================================================
// Results
// ============================================================================

/// What a results answer (or a synchronous answer) holds, before STAC is followed.
#[derive(Debug, Default)]
struct Outputs {
    /// Assets to download: key → STAC-like asset object.
    assets: Map<String, Value>,
    /// Inline files.
    inline: Vec<InlineFile>,
    /// Literal values.
    literals: Map<String, Value>,
    /// STAC documents to follow: (output id, URL) by reference or (output id, doc).
    stac_refs: Vec<(String, Url)>,
    stac_docs: Vec<(String, Value, Option<Url>)>,
}

/// Whether `v` is a STAC document (or a FeatureCollection of STAC items / of features
/// linking their collection) to follow.
fn is_stac(v: &Value) -> bool {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
    let stac = v.get("stac_version").is_some();
    match ty {
        "Collection" | "Catalog" => true,
        "Feature" => stac,
        "FeatureCollection" => v
            .get("features")
            .and_then(Value::as_array)
            .is_some_and(|fs| {
                !fs.is_empty()
                    && fs.iter().all(|f| {
                        f.get("stac_version").is_some()
                            || f.get("assets").is_some_and(Value::is_object)
                            || links_of(f).iter().any(|(rel, _)| rel == "collection")
                    })
            }),
        _ => stac && v.get("links").is_some(),
    }
}

/// Whether `v` is GeoJSON (saved as `.geojson`).
fn is_geojson(v: &Value) -> bool {
    matches!(
        v.get("type").and_then(Value::as_str),
        Some(
            "FeatureCollection"
                | "Feature"
                | "Point"
                | "MultiPoint"
                | "LineString"
                | "MultiLineString"
                | "Polygon"
                | "MultiPolygon"
                | "GeometryCollection"
        )
    )
}

/// `(rel, href)` of every link of a STAC/OGC object.
fn links_of(v: &Value) -> Vec<(String, String)> {
    v.get("links")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| {
                    Some((
                        l.get("rel")?.as_str()?.to_string(),
                        l.get("href")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a JSON object looks like a results document (every member an output:
/// `{href}` or `{value}`), as opposed to one raw output.
fn is_results_document(m: &Map<String, Value>, output_ids: &[String]) -> bool {
    if m.is_empty() {
        return false;
    }
    let qualified = |v: &Value| {
        v.as_object()
            .is_some_and(|o| o.contains_key("href") || o.contains_key("value"))
    };
    m.values().all(qualified)
        || (!output_ids.is_empty() && m.keys().all(|k| output_ids.contains(k)))
}

impl Outputs {
    /// Reads one output value (`id` its output id; `base` resolves relative hrefs).
    fn add(&mut self, id: &str, v: &Value, base: Option<&Url>) {
        // By reference.
        if let Some(href) = v.get("href").and_then(Value::as_str) {
            let Some(url) = resolve(base, href) else {
                // An object store or file location (`s3://...`): nothing to download
                // over HTTP, but the user should see where the output is.
                tracing::warn!(output = %id, "a result output is not at an http(s) URL; kept in job.json");
                self.literals
                    .insert(id.to_string(), json!(redact_url(href)));
                return;
            };
            let ty = v
                .get("type")
                .or_else(|| v.get("mediaType"))
                .and_then(Value::as_str);
            let json_like = ty.is_none_or(|t| t.contains("json"));
            if json_like && looks_like_stac_link(id, &url, ty) {
                self.stac_refs.push((id.to_string(), url));
                return;
            }
            let mut asset = Map::new();
            asset.insert("href".into(), json!(url.as_str()));
            if let Some(t) = ty {
                asset.insert("type".into(), json!(t));
            }
            asset.insert(
                "title".into(),
                v.get("title").cloned().unwrap_or_else(|| json!(id)),
            );
            asset.insert("roles".into(), json!(["data"]));
            self.assets.insert(id.to_string(), Value::Object(asset));
            return;
        }
        // Qualified value.
        if let Some(obj) = v.as_object() {
            if let Some(inner) = obj.get("value") {
                let media = obj
                    .get("mediaType")
                    .or_else(|| obj.get("type"))
                    .and_then(Value::as_str);
                self.add_value(id, inner, media, base);
                return;
            }
        }
        self.add_value(id, v, None, base);
    }

    /// An inline value: STAC is followed, GeoJSON and JSON become files, scalars
    /// literals; a string with a non-JSON media type becomes a file of that type.
    fn add_value(&mut self, id: &str, v: &Value, media: Option<&str>, base: Option<&Url>) {
        // JSON given as a string (`inlineValue` style): read it as what it holds.
        if let Value::String(text) = v {
            let t = text.trim_start();
            if media.is_none_or(|m| m.contains("json"))
                && (t.starts_with('{') || t.starts_with('['))
            {
                if let Ok(parsed) = serde_json::from_str::<Value>(t) {
                    return self.add_value(id, &parsed, media, base);
                }
            }
        }
        if v.is_object() && is_stac(v) {
            self.stac_docs
                .push((id.to_string(), v.clone(), base.cloned()));
            return;
        }
        if is_geojson(v) {
            self.inline_json(id, v, "application/geo+json");
            return;
        }
        match v {
            Value::Object(_) | Value::Array(_) => self.inline_json(id, v, media.unwrap_or(JSON)),
            Value::String(s) if media.is_some_and(|m| !m.contains("json")) => {
                let media = media.unwrap_or("text/plain");
                self.inline.push(InlineFile {
                    key: id.to_string(),
                    name: format!("{id}{}", ext_or(media, ".txt")),
                    media_type: media.to_string(),
                    bytes: s.as_bytes().to_vec(),
                });
            }
            other => {
                self.literals.insert(id.to_string(), other.clone());
            }
        }
    }

    fn inline_json(&mut self, id: &str, v: &Value, media: &str) {
        let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
        bytes.push(b'\n');
        let ext = if media.contains("geo+json") {
            ".geojson"
        } else {
            ".json"
        };
        self.inline.push(InlineFile {
            key: id.to_string(),
            name: format!("{id}{ext}"),
            media_type: media.to_string(),
            bytes,
        });
    }
}

/// The extension for a media type, or `fallback`.
fn ext_or(media: &str, fallback: &'static str) -> &'static str {
    match extension_for(Some(media)) {
        "" => fallback,
        e => e,
    }
}

/// Whether a JSON reference is worth reading as STAC (its name says so, or it is a
/// `collection.json`/`catalog.json`/`*.stac.json`... document).
fn looks_like_stac_link(id: &str, url: &Url, ty: Option<&str>) -> bool {
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
        .to_ascii_lowercase();
    ty.is_some_and(|t| t.contains("stac"))
        || id.to_ascii_lowercase().contains("stac")
        || matches!(name.as_str(), "collection.json" | "catalog.json")
        || name.ends_with(".stac.json")
        || name.ends_with(".json")
}

fn resolve(base: Option<&Url>, href: &str) -> Option<Url> {
    let url = match base {
        Some(b) => b.join(href).ok()?,
        None => Url::parse(href).ok()?,
    };
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Reads a results answer (a results document or one raw output) into [`Outputs`].
fn read_answer(answer: &Payload, output_ids: &[String], base: Option<&Url>) -> Outputs {
    let mut out = Outputs::default();
    let media = answer.media_type.as_deref().unwrap_or("");
    let single_id = match output_ids {
        [one] => one.clone(),
        _ => "result".to_string(),
    };
    let parsed = if media.contains("json") || media.is_empty() {
        serde_json::from_slice::<Value>(&answer.body).ok()
    } else {
        None
    };
    match parsed {
        Some(Value::Object(m)) if m.get("outputs").is_some_and(Value::is_array) => {
            // pygeoapi's "document": a list of raw outputs.
            let list = m["outputs"].as_array().cloned().unwrap_or_default();
            for (i, v) in list.iter().enumerate() {
                let id = output_ids
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("output{}", i + 1));
                out.add(&id, v, base);
            }
        }
        Some(v @ Value::Object(_)) if is_stac(&v) || is_geojson(&v) => {
            out.add_value(&single_id, &v, Some(media).filter(|m| !m.is_empty()), base)
        }
        Some(Value::Object(m)) if is_results_document(&m, output_ids) => {
            for (id, v) in &m {
                out.add(id, v, base);
            }
        }
        Some(v) => out.add_value(&single_id, &v, Some(media).filter(|m| !m.is_empty()), base),
        None => {
            // One raw output of another media type.
            let media = if media.is_empty() {
                "application/octet-stream"
            } else {
                media
            };
            out.inline.push(InlineFile {
                key: single_id.clone(),
                name: format!("{single_id}{}", ext_or(media, ".bin")),
                media_type: media.to_string(),
                bytes: answer.body.clone(),
            });
        }
    }
    out
}

/// Adds the assets of a STAC object (an Item, or a Collection/Catalog's own assets) as
/// `prefix` + key, hrefs resolved against `base`.
fn add_stac_assets(assets: &mut Map<String, Value>, obj: &Value, base: Option<&Url>, prefix: &str) {
    let Some(list) = obj.get("assets").and_then(Value::as_object) else {
        return;
    };
    for (key, a) in list {
        let Some(href) = a.get("href").and_then(Value::as_str) else {
            continue;
        };
        let Some(url) = resolve(base, href) else {
            continue;
        };
        let mut asset = a.as_object().cloned().unwrap_or_default();
        asset.insert("href".into(), json!(url.as_str()));
        let mut k = format!("{prefix}{key}");
        let mut n = 2;
        while assets.contains_key(&k) {
            k = format!("{prefix}{key}-{n}");
            n += 1;
        }
        assets.insert(k, Value::Object(asset));
    }
}

// ============================================================================
// The platform
// ============================================================================

/// What the server says about itself.
#[derive(Debug, Clone)]
struct ServerInfo {
    title: String,
    conforms_to: Vec<String>,
}

/// An OGC API Processes server behind the [`Platform`] seam.
pub struct Ogc {
    http: HttpBackend,
    /// The endpoint, parsed (`None`: not an http(s) URL).
    base: Option<Url>,
    /// The login settings of `config.toml`.
    config: RwLock<Option<BackendConfig>>,
    /// Descriptions by process URL, with the time they were read.
    descriptions: Mutex<HashMap<Url, (Instant, Arc<Process>)>>,
    /// Server prefixes (namespaces) jobs were sent to.
    prefixes: Mutex<BTreeSet<String>>,
    /// Whether listing jobs found the tracked ones (else polling asks per job).
    listing_helps: AtomicBool,
    /// Landing page and conformance, once read.
    info: OnceCell<ServerInfo>,
}

/// A refusal that means "this token is no good": renew and send once more.
fn token_refused(e: &PlatformError) -> bool {
    e.is_auth()
}

impl Ogc {
    /// The server at `endpoint` with the settings of its `config.toml` section.
    pub fn new(endpoint: &str, config: Option<&BackendConfig>, logins: Arc<dyn Logins>) -> Ogc {
        let endpoint = endpoint.trim().trim_end_matches('/');
        let ogc = Ogc {
            http: HttpBackend::new(
                endpoint,
                CONNECT_TIMEOUT,
                REQUEST_TIMEOUT,
                TokenStyle::Plain,
                logins,
                token_refused,
            ),
            base: parse_base(endpoint),
            config: RwLock::new(None),
            descriptions: Mutex::default(),
            prefixes: Mutex::default(),
            listing_helps: AtomicBool::new(true),
            info: OnceCell::new(),
        };
        ogc.reconfigure(config);
        ogc
    }

    fn base(&self) -> Result<&Url, PlatformError> {
        self.base.as_ref().ok_or_else(|| {
            self.http
                .protocol("the server URL is not an http(s) URL".into())
        })
    }

    /// `endpoint/prefix` as a base URL.
    fn server(&self, prefix: &str) -> Result<Url, PlatformError> {
        let base = self.base()?;
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        Ok(join_segments(base, &segments))
    }

    /// Where the service's process lives.
    fn address(&self, service: &ServiceDetails) -> Result<Address, ServiceError> {
        let app = service.application.trim();
        if app.starts_with("http://") || app.starts_with("https://") {
            // The full process URL, as catalogue records give it.
            let url = Url::parse(app).map_err(|e| {
                ServiceError::Invalid(format!("service.application is not a usable URL: {e}"))
            })?;
            let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
            let at = segments.iter().rposition(|s| *s == "processes");
            let (Some(at), Some(id)) = (at, segments.last()) else {
                return Err(ServiceError::Invalid(
                    "service.application: a URL must be the process's own URL, \
                     .../processes/<process id>"
                        .into(),
                ));
            };
            if at + 2 != segments.len() || id.is_empty() {
                return Err(ServiceError::Invalid(
                    "service.application: a URL must end with /processes/<process id>".into(),
                ));
            }
            let mut server = url.clone();
            server.set_query(None);
            server.set_fragment(None);
            if let Ok(mut p) = server.path_segments_mut() {
                p.clear().extend(&segments[..at]);
            }
            // The prefix is the path below the endpoint, when the URL is on it.
            let base_path = self.base.as_ref().map(|b| b.path().trim_end_matches('/'));
            let path = server.path().trim_end_matches('/').to_string();
            let prefix = match base_path {
                Some(bp) if self.base.as_ref().map(Url::origin) == Some(url.origin()) => path
                    .strip_prefix(bp)
                    .unwrap_or(&path)
                    .trim_matches('/')
                    .to_string(),
                _ => path.trim_matches('/').to_string(),
            };
            let id = percent_decode(id);
            return Ok(Address { prefix, id, server });
        }
        if app.is_empty() || app.contains('/') {
            return Err(ServiceError::Invalid(
                "service.application must be a process id, or the process's URL \
                 .../processes/<process id>"
                    .into(),
            ));
        }
        let prefix = service
            .namespace
            .as_deref()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        let server = self
            .server(&prefix)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        Ok(Address {
            prefix,
            id: app.to_string(),
            server,
        })
    }

    /// Whether `url` is on the server's own origin (the credential goes only there).
    fn own(&self, url: &Url) -> bool {
        self.base
            .as_ref()
            .is_some_and(|b| b.origin() == url.origin())
    }

    async fn get_json(&self, url: Url) -> Result<Value, PlatformError> {
        let own = self.own(&url);
        let mut req = Request::get(url).accept(JSON);
        req.auth = own;
        let answer = self.http.send(req).await?;
        self.http.json(&answer)
    }

    /// The process description (cached).
    async fn process(&self, addr: &Address) -> Result<Arc<Process>, ServiceError> {
        let url = addr.process();
        if let Some((at, p)) = self
            .descriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&url)
        {
            if at.elapsed() < DESCRIPTION_FRESH_FOR {
                return Ok(p.clone());
            }
        }
        let doc = match self.get_json(url.clone()).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                let offered = self.offered(addr).await;
                return Err(ServiceError::Invalid(format!(
                    "{} has no process {:?}{offered}",
                    redact_url(addr.server.as_str()),
                    addr.id
                )));
            }
            Err(e) if e.is_auth() => return Err(ServiceError::LoginRequired(e.to_string())),
            Err(e @ (PlatformError::Rejected { .. } | PlatformError::Protocol { .. })) => {
                return Err(ServiceError::Invalid(format!(
                    "cannot read the process description: {e}"
                )))
            }
            Err(e) => return Err(ServiceError::Unavailable(e.to_string())),
        };
        let process = Arc::new(parse_process(&doc, &addr.id).map_err(|reason| {
            ServiceError::Invalid(format!(
                "the description of process {:?} is not usable: {reason}",
                addr.id
            ))
        })?);
        self.descriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url, (Instant::now(), process.clone()));
        Ok(process)
    }

    /// ", it offers: a, b" — the first page of the server's processes, for messages.
    async fn offered(&self, addr: &Address) -> String {
        let url = join_segments(&addr.server, &["processes"]);
        let Ok(doc) = self.get_json(url).await else {
            return String::new();
        };
        let ids: Vec<&str> = doc
            .get("processes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            String::new()
        } else {
            format!("; it offers: {}", ids.join(", "))
        }
    }

    fn job_url(&self, remote_id: &str, tail: &[&str]) -> Result<Url, PlatformError> {
        let (prefix, id) = decode_id(remote_id);
        let server = self.server(prefix)?;
        let mut segments = vec!["jobs", id];
        segments.extend_from_slice(tail);
        Ok(join_segments(&server, &segments))
    }

    /// The remote id named by a `Location` (or a job URL): the path below the endpoint
    /// must end with `/jobs/<id>`.
    fn id_from_location(&self, location: &str, fallback_prefix: &str) -> Option<String> {
        let base = self.base.as_ref()?;
        let url = base.join(location).ok()?;
        let segments: Vec<String> = url
            .path_segments()?
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let n = segments.len();
        if n < 2 || segments[n - 2] != "jobs" {
            return None;
        }
        let id = segments[n - 1].clone();
        let base_segments: Vec<&str> = base
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        let before: Vec<&str> = segments[..n - 2].iter().map(String::as_str).collect();
        let prefix = if url.origin() == base.origin() && before.starts_with(&base_segments) {
            before[base_segments.len()..].join("/")
        } else {
            fallback_prefix.to_string()
        };
        Some(encode_id(&prefix, &id))
    }

    fn remember_prefix(&self, prefix: &str) {
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_string());
    }

    /// The server's jobs under `prefix` (asking for `process_id` only, filtered here
    /// too), newest pages included: every `next` link is followed up to `max_pages`.
    /// `Ok(None)`: no job list. The flag: the list is complete.
    async fn list_prefix(
        &self,
        prefix: &str,
        process_id: Option<&str>,
        max_pages: usize,
        mut stop: impl FnMut(&[RemoteJob]) -> bool,
    ) -> Result<Option<(Vec<RemoteJob>, bool)>, PlatformError> {
        let mut url = join_segments(&self.server(prefix)?, &["jobs"]);
        url.query_pairs_mut()
            .append_pair("limit", &LIST_PAGE_SIZE.to_string());
        if let Some(p) = process_id {
            url.query_pairs_mut().append_pair("processID", p);
        }
        let mut jobs = Vec::new();
        let mut seen: Vec<Url> = Vec::new();
        for page in 0..max_pages {
            seen.push(url.clone());
            let doc = match self.get_json(url.clone()).await {
                Ok(d) => d,
                // No job list on this server.
                Err(e) if page == 0 && (e.is_not_found() || e.http_status() == Some(405)) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let Some(list) = doc.get("jobs").and_then(Value::as_array) else {
                if page == 0 {
                    return Ok(None);
                }
                return Err(self
                    .http
                    .protocol("the job list has no `jobs` array".into()));
            };
            jobs.extend(
                list.iter()
                    .filter_map(|j| parse_status(j, prefix))
                    .filter(|j| {
                        process_id.is_none_or(|p| j.process_id.as_deref().is_none_or(|q| q == p))
                    }),
            );
            if stop(&jobs) {
                return Ok(Some((jobs, false)));
            }
            let next = links_of(&doc)
                .into_iter()
                .find(|(rel, _)| rel == "next")
                .and_then(|(_, href)| url.join(&href).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            match next {
                Some(n) if !seen.contains(&n) && !list.is_empty() => url = n,
                _ => return Ok(Some((jobs, true))),
            }
        }
        tracing::warn!(backend = %self.http.shown(), pages = max_pages, "job list truncated: too many pages");
        Ok(Some((jobs, false)))
    }

    /// Reads a results answer, following STAC to its assets.
    async fn results_of(
        &self,
        answer: &Payload,
        output_ids: &[String],
        base: Option<&Url>,
        job_id: &str,
    ) -> Result<ResultsDoc, PlatformError> {
        let mut out = read_answer(answer, output_ids, base);
        let mut assets = std::mem::take(&mut out.assets);
        let mut budget = MAX_STAC_DOCUMENTS;
        // STAC by reference: read it, then follow it like an inline one.
        for (id, url) in std::mem::take(&mut out.stac_refs) {
            let doc = match self.get_json(url.clone()).await {
                Ok(d) => d,
                Err(e) if e.is_transient() || e.is_auth() => return Err(e),
                Err(e) => {
                    tracing::warn!(output = %id, error = %e, "a JSON result is not readable as STAC; downloading it as a file");
                    assets.insert(
                        id.clone(),
                        json!({"href": url.as_str(), "type": JSON, "title": id, "roles": ["data"]}),
                    );
                    continue;
                }
            };
            if is_stac(&doc) {
                out.stac_docs.push((id, doc, Some(url)));
            } else {
                assets.insert(
                    id.clone(),
                    json!({"href": url.as_str(), "type": JSON, "title": id, "roles": ["data"]}),
                );
            }
        }
        let many = out.stac_docs.len() > 1 || !assets.is_empty() || !out.inline.is_empty();
        for (id, doc, base) in std::mem::take(&mut out.stac_docs) {
            let prefix = if many {
                format!("{id}_")
            } else {
                String::new()
            };
            self.follow_stac(&doc, base.as_ref(), &prefix, &mut assets, &mut budget, 0)
                .await?;
        }
        let document = json!({
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": job_id,
            "description": format!("Results of OGC API Processes job {job_id}"),
            "license": "other",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[null, null]]}
            },
            "links": [],
            "assets": assets,
        });
        Ok(ResultsDoc {
            document,
            inline: out.inline,
            literals: out.literals,
        })
    }

    /// Gathers the assets of a STAC object: an Item's; a Collection's or Catalog's own
    /// and those of its items and children; the features of an ItemCollection (or the
    /// collections they link to when they carry no assets).
    fn follow_stac<'a>(
        &'a self,
        doc: &'a Value,
        base: Option<&'a Url>,
        prefix: &'a str,
        assets: &'a mut Map<String, Value>,
        budget: &'a mut usize,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            if depth > 3 {
                return Ok(());
            }
            let ty = doc.get("type").and_then(Value::as_str).unwrap_or("");
            if ty == "FeatureCollection" {
                let features = doc
                    .get("features")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut collections: Vec<Url> = Vec::new();
                let several = features.len() > 1;
                for f in &features {
                    if f.get("assets")
                        .is_some_and(|a| a.as_object().is_some_and(|m| !m.is_empty()))
                    {
                        let item_prefix = item_prefix(prefix, f, several);
                        add_stac_assets(assets, f, base, &item_prefix);
                    } else {
                        for (rel, href) in links_of(f) {
                            if rel == "collection" {
                                if let Some(u) = resolve(base, &href) {
                                    if !collections.contains(&u) {
                                        collections.push(u);
                                    }
                                }
                            }
                        }
                    }
                }
                for url in collections {
                    self.follow_url(url, prefix, assets, budget, depth).await?;
                }
                return Ok(());
            }
            let several_items = links_of(doc).iter().filter(|(r, _)| r == "item").count() > 1;
            add_stac_assets(assets, doc, base, prefix);
            for (rel, href) in links_of(doc) {
                if rel != "item" && rel != "child" {
                    continue;
                }
                let Some(url) = resolve(base, &href) else {
                    continue;
                };
                if *budget == 0 {
                    tracing::warn!("STAC results have too many items; the rest are left out");
                    break;
                }
                *budget -= 1;
                let child = match self.get_json(url.clone()).await {
                    Ok(c) => c,
                    Err(e) if e.is_transient() || e.is_auth() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "a STAC link of the results is not readable");
                        continue;
                    }
                };
                if rel == "item" {
                    let item_prefix = item_prefix(prefix, &child, several_items);
                    add_stac_assets(assets, &child, Some(&url), &item_prefix);
                } else {
                    self.follow_stac(&child, Some(&url), prefix, assets, budget, depth + 1)
                        .await?;
                }
            }
            Ok(())
        })
    }

    async fn follow_url(
        &self,
        url: Url,
        prefix: &str,
        assets: &mut Map<String, Value>,
        budget: &mut usize,
        depth: usize,
    ) -> Result<(), PlatformError> {
        if *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let doc = self.get_json(url.clone()).await?;
        self.follow_stac(&doc, Some(&url), prefix, assets, budget, depth + 1)
            .await
    }

    /// The output ids of the process a job runs (for reading its results), if known.
    async fn output_ids_of(&self, remote: &RemoteJob, prefix: &str) -> Vec<String> {
        let Some(pid) = remote.process_id.as_deref() else {
            return Vec::new();
        };
        let Ok(server) = self.server(prefix) else {
            return Vec::new();
        };
        let addr = Address {
            prefix: prefix.to_string(),
            id: pid.to_string(),
            server,
        };
        match self.process(&addr).await {
            Ok(p) => p.outputs.iter().map(|o| o.id.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// `<prefix><item id>_` when several items share the results, else `prefix`.
fn item_prefix(prefix: &str, item: &Value, several: bool) -> String {
    match item.get("id").and_then(Value::as_str) {
        Some(id) if several => format!("{prefix}{id}_"),
        _ => prefix.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl Platform for Ogc {
    fn label(&self) -> Label {
        Label::OgcApiProcess
    }

    fn http(&self) -> &HttpBackend {
        &self.http
    }

    async fn service(&self, service: &ServiceDetails) -> Result<Arc<ServiceDef>, ServiceError> {
        let addr = self.address(service)?;
        let p = self.process(&addr).await?;
        Ok(Arc::new(ServiceDef {
            title: p.title.clone(),
            description: p.description.clone(),
            parameters: describe(&p.signature),
            outputs: p.outputs.clone(),
            signature: p.signature.clone(),
        }))
    }

    async fn prepare(&self, job: &Job) -> Result<Prepared, ServiceError> {
        let addr = self.address(&job.service)?;
        let p = self.process(&addr).await?;
        // Jobs accepted before the description could be read are checked now.
        let inputs = validate_arguments(&p.signature, &job.parameters).map_err(|errors| {
            ServiceError::Arguments(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.name, e.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(Prepared {
            body: json!({"inputs": inputs}),
            asynchronous: p.asynchronous,
        })
    }

    async fn submit(&self, job: &Job, prepared: &Prepared) -> Result<Submission, PlatformError> {
        let addr = self
            .address(&job.service)
            .map_err(|e| self.http.protocol(e.to_string()))?;
        self.remember_prefix(&addr.prefix);
        let url = join_segments(&addr.process(), &["execution"]);
        let own = self.own(&url);
        let mut req = Request::new(Method::POST, url, Kind::Create)
            .json(&prepared.body)
            .accept(JSON)
            .timeout(EXECUTION_TIMEOUT);
        req.auth = own;
        if prepared.asynchronous {
            req = req.header(
                HeaderName::from_static("prefer"),
                HeaderValue::from_static("respond-async"),
            );
        }
        let answer = self.http.send(req).await?;
        let location = answer
            .header(LOCATION.as_str())
            .and_then(|l| self.id_from_location(l, &addr.prefix));
        let body_status = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| parse_status(&v, &addr.prefix));
        if matches!(answer.status, StatusCode::CREATED | StatusCode::ACCEPTED) {
            let remote_id = location
                .or_else(|| body_status.as_ref().map(|s| s.id.clone()))
                .ok_or_else(|| {
                    self.http.protocol(format!(
                        "HTTP {} to an execution without Location or jobID",
                        answer.status.as_u16()
                    ))
                })?;
            let mut remote = body_status.unwrap_or(RemoteJob {
                id: remote_id.clone(),
                status: Some(Status::Queued),
                raw_status: "accepted".into(),
                progress: None,
                message: None,
                created: None,
                process_id: Some(addr.id.clone()),
                description: None,
                costs: None,
                usage: None,
            });
            remote.id = remote_id;
            if remote.status.is_none() {
                remote.status = Some(Status::Queued);
                remote.raw_status = "accepted".into();
            }
            return Ok(Submission::Running(remote));
        }
        Ok(Submission::Completed {
            remote_id: location,
            answer: Payload {
                media_type: answer.media_type(),
                body: answer.body,
            },
        })
    }

    async fn start(&self, _remote_id: &str) -> Result<(), PlatformError> {
        // Executed jobs run on their own.
        Ok(())
    }

    async fn list_jobs(
        &self,
        covering: Option<&std::collections::HashSet<String>>,
    ) -> Result<Option<Vec<RemoteJob>>, PlatformError> {
        let Some(wanted) = covering else {
            // A full list is asked for reconciliation, which lists on its own.
            return Ok(None);
        };
        if !self.listing_helps.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let prefixes: BTreeSet<&str> = wanted.iter().map(|id| decode_id(id).0).collect();
        let mut all = Vec::new();
        for prefix in prefixes {
            let listed = self
                .list_prefix(prefix, None, MAX_POLL_PAGES, |jobs| {
                    wanted
                        .iter()
                        .filter(|w| decode_id(w).0 == prefix)
                        .all(|w| jobs.iter().any(|j| &j.id == w))
                })
                .await?;
            match listed {
                Some((jobs, _)) => all.extend(jobs),
                None => return Ok(None),
            }
        }
        if !wanted.iter().all(|w| all.iter().any(|j| &j.id == w)) {
            tracing::info!(backend = %self.http.shown(), "the job list does not show the tracked jobs on its first pages; asking per job from now on");
            self.listing_helps.store(false, Ordering::Relaxed);
        }
        Ok(Some(all))
    }

    async fn job(&self, remote_id: &str) -> Result<RemoteJob, PlatformError> {
        let (prefix, _) = decode_id(remote_id);
        let url = self.job_url(remote_id, &[])?;
        let doc = self.get_json(url).await?;
        let mut job = parse_status(&doc, prefix)
            .ok_or_else(|| self.http.protocol("the job status has no jobID".into()))?;
        job.id = remote_id.to_string();
        Ok(job)
    }

    async fn reconcile(
        &self,
        job: &Job,
        _listing: Option<&[RemoteJob]>,
        linked: &HashSet<String>,
    ) -> Result<Reconciled, PlatformError> {
        let addr = match self.address(&job.service) {
            Ok(a) => a,
            Err(e) => return Ok(Reconciled::Uncertain(e.to_string())),
        };
        let Some(since) = job.submit_started else {
            return Ok(Reconciled::Uncertain(
                "the answer to the submission was lost and the time it was sent is unknown".into(),
            ));
        };
        let listed = self
            .list_prefix(&addr.prefix, Some(&addr.id), MAX_LIST_PAGES, |_| false)
            .await?;
        let Some((jobs, complete)) = listed else {
            return Ok(Reconciled::Uncertain(
                "the answer to the submission was lost and the server offers no job list to \
                 look for the job in, so eodispatch cannot tell whether the server created it"
                    .into(),
            ));
        };
        Ok(choose(&jobs, &addr.id, since, linked, complete))
    }

    async fn cancel(&self, remote_id: &str) -> Result<(), PlatformError> {
        let url = self.job_url(remote_id, &[])?;
        let own = self.own(&url);
        let mut req = Request::new(Method::DELETE, url, Kind::Idempotent).accept(JSON);
        req.auth = own;
        self.http.send(req).await?;
        Ok(())
    }

    async fn logs(
        &self,
        remote_id: &str,
        _offset: Option<&str>,
        level: Option<&str>,
    ) -> Result<Value, PlatformError> {
        let url = self.job_url(remote_id, &[])?;
        let doc = self.get_json(url).await?;
        let failed = doc.get("status").and_then(Value::as_str) == Some("failed");
        let entry_level = if failed { "error" } else { "info" };
        let wanted = match level {
            Some("error") => failed,
            _ => true,
        };
        let mut logs = Vec::new();
        if let (true, Some(message)) = (wanted, doc.get("message").and_then(Value::as_str)) {
            logs.push(json!({
                "id": "status",
                "level": entry_level,
                "message": crate::redact::redact(message),
                "time": doc.get("updated").cloned().unwrap_or(Value::Null),
            }));
        }
        Ok(json!({"level": level.unwrap_or("debug"), "logs": logs, "links": []}))
    }

    async fn failure_message(&self, remote: &RemoteJob) -> Option<String> {
        remote.message.clone()
    }

    async fn results(&self, remote_id: &str) -> Result<ResultsDoc, PlatformError> {
        let (prefix, job_id) = decode_id(remote_id);
        let status = self.job(remote_id).await.ok();
        let output_ids = match &status {
            Some(s) => self.output_ids_of(s, prefix).await,
            None => Vec::new(),
        };
        let url = self.job_url(remote_id, &["results"])?;
        let own = self.own(&url);
        let mut req = Request::get(url.clone()).accept(JSON);
        req.auth = own;
        let answer = match self.http.send(req).await {
            Err(PlatformError::Rejected { status: 406, .. }) => {
                // A raw output that is not JSON, on a strict server.
                let mut req = Request::get(url.clone());
                req.auth = own;
                self.http.send(req).await?
            }
            other => other?,
        };
        let payload = Payload {
            media_type: answer.media_type(),
            body: answer.body,
        };
        self.results_of(&payload, &output_ids, Some(&url), job_id)
            .await
    }

    async fn results_from_answer(&self, answer: &Payload) -> Result<ResultsDoc, PlatformError> {
        self.results_of(answer, &[], self.base.as_ref(), "synchronous")
            .await
    }

    async fn download_authorization(
        &self,
        url: &Url,
    ) -> Result<Option<HeaderValue>, PlatformError> {
        if !self.own(url) {
            return Ok(None);
        }
        self.http.authorization().await
    }

    async fn login_providers(&self) -> Result<Vec<LoginProvider>, PlatformError> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(c) = config else {
            return Ok(Vec::new());
        };
        let (Some(issuer), Some(client_id)) = (c.issuer.clone(), c.client_id.clone()) else {
            return Ok(Vec::new());
        };
        let issuer = issuer.trim_end_matches('/').to_string();
        let title = Url::parse(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| issuer.clone());
        Ok(vec![LoginProvider {
            id: "config".into(),
            title,
            issuer,
            scopes: c.scopes.clone(),
            default_clients: vec![LoginClient {
                id: client_id,
                grant_types: vec![
                    "urn:ietf:params:oauth:grant-type:device_code+pkce".into(),
                    "authorization_code+pkce".into(),
                    "refresh_token".into(),
                ],
                redirect_urls: Vec::new(),
            }],
        }])
    }

    fn info(&self) -> Option<BackendInfo> {
        self.info.get().map(|i| BackendInfo {
            api_version: if i.conforms_to.iter().any(|c| c == CONF_CORE) {
                "1.0.0".into()
            } else {
                String::new()
            },
            backend_version: String::new(),
            title: i.title.clone(),
        })
    }

    async fn probe(&self) {
        let _ = self
            .info
            .get_or_try_init(|| async {
                let base = self.base()?.clone();
                let landing = self.get_json(join_segments(&base, &[""])).await?;
                let conformance = self
                    .get_json(join_segments(&base, &["conformance"]))
                    .await
                    .unwrap_or(Value::Null);
                Ok::<_, PlatformError>(ServerInfo {
                    title: landing
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    conforms_to: conformance
                        .get("conformsTo")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .await;
    }

    async fn ping(&self) -> Result<(), PlatformError> {
        let url = join_segments(self.base()?, &[""]);
        match self.get_json(url).await {
            Ok(_) => Ok(()),
            // It answered: it is up (the landing page may be elsewhere, or not JSON).
            Err(e) if !e.is_transient() && !e.is_auth() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reconfigure(&self, config: Option<&BackendConfig>) {
        if let Some(token) = config.and_then(|c| c.access_token.as_ref()) {
            self.http.set_bearer(Some(Bearer::raw(token.expose())));
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config.cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::NoLogins;

    fn ogc(endpoint: &str) -> Ogc {
        Ogc::new(endpoint, None, Arc::new(NoLogins))
    }

    fn service(endpoint: &str, namespace: Option<&str>, application: &str) -> ServiceDetails {
        ServiceDetails {
            endpoint: endpoint.into(),
            namespace: namespace.map(String::from),
            application: application.into(),
        }
    }

    #[test]
    fn processes_are_addressed_by_id_namespace_or_url() {
        let o = ogc("https://ades.example");
        let a = o
            .address(&service("https://ades.example", None, "ndvi"))
            .unwrap();
        assert_eq!(a.process().as_str(), "https://ades.example/processes/ndvi");
        assert_eq!(a.prefix, "");
        let a = o
            .address(&service(
                "https://ades.example",
                Some("/gep/wps3/"),
                "s1-insar",
            ))
            .unwrap();
        assert_eq!(
            a.process().as_str(),
            "https://ades.example/gep/wps3/processes/s1-insar"
        );
        assert_eq!(a.prefix, "gep/wps3");
        let a = o
            .address(&service(
                "https://ades.example",
                None,
                "https://ades.example/gep/wps3/processes/s1-insar-0_4_11",
            ))
            .unwrap();
        assert_eq!(a.id, "s1-insar-0_4_11");
        assert_eq!(a.prefix, "gep/wps3");
        assert_eq!(
            a.process().as_str(),
            "https://ades.example/gep/wps3/processes/s1-insar-0_4_11"
        );
        assert!(o
            .address(&service(
                "https://ades.example",
                None,
                "https://x.example/other"
            ))
            .is_err());
        assert!(o
            .address(&service("https://ades.example", None, "a/b"))
            .is_err());
    }

    #[test]
    fn remote_ids_carry_the_namespace() {
        assert_eq!(encode_id("", "abc"), "abc");
        assert_eq!(encode_id("gep/wps3", "abc"), "gep/wps3:abc");
        assert_eq!(decode_id("gep/wps3:abc"), ("gep/wps3", "abc"));
        assert_eq!(decode_id("abc"), ("", "abc"));
        let o = ogc("http://127.0.0.1:5000");
        assert_eq!(
            o.id_from_location("http://127.0.0.1:5000/jobs/7715edb2", "")
                .as_deref(),
            Some("7715edb2")
        );
        assert_eq!(
            o.id_from_location("/gep/wps3/jobs/j1", "x").as_deref(),
            Some("gep/wps3:j1")
        );
        assert_eq!(o.id_from_location("/processes/x", ""), None);
        assert_eq!(
            o.job_url("gep/wps3:j1", &["results"]).unwrap().as_str(),
            "http://127.0.0.1:5000/gep/wps3/jobs/j1/results"
        );
    }

    #[test]
    fn descriptions_become_parameters_and_outputs() {
        let doc = json!({
            "id": "features", "title": "Features", "jobControlOptions": ["sync-execute", "async-execute"],
            "inputs": {
                "bbox": {"title": "Area", "schema": {"type": "object", "format": "ogc-bbox",
                         "properties": {"bbox": {"type": "array"}, "crs": {"type": "string"}}}},
                "date": {"schema": {"type": "string", "format": "date"}},
                "count": {"minOccurs": 0, "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 4}},
                "shape": {"minOccurs": 0, "schema": {"type": "string", "enum": ["square", "point"]}},
                "tags": {"minOccurs": 0, "maxOccurs": "unbounded", "schema": {"type": "string"}},
                "box2": {"schema": {"allOf": [{"format": "ogc-bbox"}, {"$ref": "https://x/bbox.yaml"}]}}
            },
            "outputs": {"features": {"title": "Features", "schema": {"type": "object", "contentMediaType": "application/geo+json"}}}
        });
        let p = parse_process(&doc, "features").unwrap();
        assert!(p.asynchronous);
        let params = describe(&p.signature);
        let kind = |n: &str| params.iter().find(|d| d.name == n).unwrap().kind.as_str();
        assert_eq!(kind("bbox"), "bounding-box");
        assert_eq!(kind("box2"), "bounding-box");
        assert_eq!(kind("date"), "datetime");
        assert_eq!(kind("count"), "integer");
        assert_eq!(kind("shape"), "string");
        assert_eq!(kind("tags"), "array-string");
        let count = params.iter().find(|d| d.name == "count").unwrap();
        assert!(count.optional);
        let area = params.iter().find(|d| d.name == "bbox").unwrap();
        assert_eq!(area.title.as_deref(), Some("Area"));
        assert_eq!(
            area.description, "Area",
            "the title when there is no description"
        );
        assert_eq!(count.default, json!(4));
        let shape = params.iter().find(|d| d.name == "shape").unwrap();
        assert_eq!(shape.options, vec![json!("square"), json!("point")]);
        assert!(!params.iter().find(|d| d.name == "bbox").unwrap().optional);
        assert_eq!(p.outputs[0].media_types, ["application/geo+json"]);
        // Checking: a west/south/east/north box is sent in the OGC form; limits named.
        let sent = validate_arguments(
            &p.signature,
            json!({"bbox": {"west": 16.3, "south": 47.9, "east": 16.4, "north": 48.0},
                   "box2": {"bbox": [1, 2, 3, 4]}, "date": "2024-05-01", "count": 3})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            sent["bbox"],
            json!({"bbox": [16.3, 47.9, 16.4, 48.0], "crs": super::super::udp::CRS84})
        );
        let errs = validate_arguments(
            &p.signature,
            json!({"bbox": {"bbox": [1, 2, 3]}, "date": "2024-02-30", "count": 99, "shape": "circle", "x": 1})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        let names: Vec<&str> = errs.iter().map(|e| e.name.as_str()).collect();
        for want in [
            "parameters.bbox.bbox",
            "parameters.date",
            "parameters.count",
            "parameters.shape",
            "parameters.x",
            "parameters.box2",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        // Without jobControlOptions a server runs synchronously.
        let p = parse_process(&json!({"id": "s", "inputs": {}}), "s").unwrap();
        assert!(!p.asynchronous);
    }

    fn job(id: &str, process: &str, created: &str) -> RemoteJob {
        RemoteJob {
            id: id.into(),
            status: Some(Status::Queued),
            raw_status: "accepted".into(),
            progress: None,
            message: None,
            created: Some(rfc3339_z::parse(created).unwrap()),
            process_id: Some(process.into()),
            description: None,
            costs: None,
            usage: None,
        }
    }

    #[test]
    fn reconciliation_picks_one_new_job_or_says_it_cannot() {
        let since = rfc3339_z::parse("2026-12-02T12:00:00Z").unwrap();
        let none = HashSet::new();
        let jobs = vec![
            job("old", "p", "2026-12-02T11:00:00Z"),
            job("other", "q", "2026-12-02T12:00:01Z"),
            job("mine", "p", "2026-12-02T12:00:01.5Z"),
        ];
        assert_eq!(
            choose(&jobs, "p", since, &none, true),
            Reconciled::Found(Box::new(jobs[2].clone()))
        );
        // Already linked to another local job: not ours; nothing left.
        let linked: HashSet<String> = ["mine".to_string()].into();
        assert_eq!(
            choose(&jobs, "p", since, &linked, true),
            Reconciled::NotCreated
        );
        assert!(matches!(
            choose(&jobs, "p", since, &linked, false),
            Reconciled::Uncertain(_)
        ));
        // Only a job a little older than the submission: maybe ours, with clocks that
        // differ; never "not created".
        let older = vec![job("early", "p", "2026-12-02T11:59:30Z")];
        match choose(&older, "p", since, &none, true) {
            Reconciled::Uncertain(why) => assert!(why.contains("early"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A new one next to an older one: the new one.
        let mut both = older.clone();
        both.push(job("mine", "p", "2026-12-02T12:00:00.4Z"));
        assert!(
            matches!(choose(&both, "p", since, &none, true), Reconciled::Found(j) if j.id == "mine")
        );
        // Two candidates: uncertain, both named.
        let mut two = jobs.clone();
        two.push(job("also", "p", "2026-12-02T12:00:02Z"));
        match choose(&two, "p", since, &none, true) {
            Reconciled::Uncertain(why) => assert!(why.contains("mine") && why.contains("also")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_map() {
        assert_eq!(map_status("accepted"), Some(Status::Queued));
        assert_eq!(map_status("successful"), Some(Status::Finished));
        assert_eq!(map_status("dismissed"), Some(Status::Canceled));
        assert_eq!(map_status("weird"), None);
        let s = parse_status(
            &json!({"jobID": "j", "status": "running", "progress": 42, "processID": "p",
                    "created": "2026-12-02T11:58:00.283489Z", "message": "half"}),
            "ns",
        )
        .unwrap();
        assert_eq!(s.id, "ns:j");
        assert_eq!(s.status, Some(Status::Running));
        assert_eq!(s.progress, Some(42.0));
        assert!(s.created.is_some());
    }

    #[test]
    fn answers_become_assets_files_and_literals() {
        let base = Url::parse("http://h/jobs/1/results").unwrap();
        // A results document with a reference, inline GeoJSON, JSON and a literal.
        let doc = json!({
            "raster": {"href": "http://h/out/r.tif", "type": "image/tiff; application=geotiff"},
            "features": {"value": {"type": "FeatureCollection", "features": []}, "mediaType": "application/geo+json"},
            "stats": {"value": {"mean": 3}},
            "count": {"value": 7}
        });
        let a = Payload {
            media_type: Some("application/json".into()),
            body: serde_json::to_vec(&doc).unwrap(),
        };
        let out = read_answer(&a, &[], Some(&base));
        assert_eq!(out.assets["raster"]["href"], "http://h/out/r.tif");
        let names: Vec<&str> = out.inline.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["features.geojson", "stats.json"]);
        assert_eq!(out.literals["count"], json!(7));
        // One raw GeoJSON output.
        let a = Payload {
            media_type: Some("application/geo+json".into()),
            body: br#"{"type":"FeatureCollection","features":[]}"#.to_vec(),
        };
        let out = read_answer(&a, &["features".to_string()], None);
        assert_eq!(out.inline[0].name, "features.geojson");
        // One raw non-JSON output keeps its media type's extension.
        let a = Payload {
            media_type: Some("image/tiff".into()),
            body: b"II*\0".to_vec(),
        };
        let out = read_answer(&a, &[], None);
        assert_eq!(out.inline[0].name, "result.tif");
        // Qualified values as Terradue's ADES gives them (the STAC Collection inline, with
        // its schema URL), JSON inside a string, and an object-store link.
        let doc = json!({
            "stac": {"value": {"type": "Collection", "stac_version": "1.0.0", "id": "c", "links": []},
                     "schema": "https://schemas.stacspec.org/v1.0.0/collection-spec/json-schema/collection.json"},
            "stats": {"value": "{\"mean\": 3}"},
            "catalog": {"href": "s3://bucket/run/catalog.json?X-Amz-Signature=secret"}
        });
        let a = Payload {
            media_type: Some("application/json".into()),
            body: serde_json::to_vec(&doc).unwrap(),
        };
        let out = read_answer(&a, &[], None);
        assert_eq!(out.stac_docs.len(), 1);
        assert_eq!(out.inline[0].name, "stats.json");
        assert_eq!(
            out.literals["catalog"],
            json!("s3://bucket/run/catalog.json")
        );
        // A raw JSON output that is not a document.
        let a = Payload {
            media_type: Some("application/json".into()),
            body: br#"{"slept": 2.0}"#.to_vec(),
        };
        let out = read_answer(&a, &[], None);
        assert_eq!(out.inline[0].name, "result.json");
        // STAC by reference and inline are followed.
        let a = Payload {
            media_type: Some("application/json".into()),
            body:
                br#"{"stac": {"href": "http://h/out/collection.json", "type": "application/json"}}"#
                    .to_vec(),
        };
        let out = read_answer(&a, &[], None);
        assert_eq!(out.stac_refs.len(), 1);
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "a", "links": [{"rel": "collection", "href": "http://h/c.json"}]}]});
        let a = Payload {
            media_type: Some("application/geo+json".into()),
            body: serde_json::to_vec(&fc).unwrap(),
        };
        let out = read_answer(&a, &[], None);
        assert_eq!(out.stac_docs.len(), 1);
        assert!(out.inline.is_empty());
    }
}
