//! Reading catalogue documents: APEx service records (both shapes) into
//! [`ServiceRecord`]s and [`ServiceDetails`], platform records into [`PlatformInfo`], and
//! benchmark scenarios into default parameter values.
//!
//! Record shapes:
//!
//! - OGC API Records features (`"type": "Feature"`, fields under `properties`) whose
//!   `conformsTo` names `.../openeo-udp` or `.../ogc-api-processes`;
//! - the older `"type": "apex_algorithm"` shape, whose fields may sit at the top level
//!   or under `properties`.
//!
//! A record is skipped ([`Skip`]) when it is private (`visibility: private`), has no id,
//! no `service` or `application` link, or a service URL that cannot be used; a document
//! of another type (a platform or provider record) is no service and is left out
//! without a word.

use std::collections::HashMap;

use reqwest::Url;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One runnable service of a catalogue (an item of `GET /services`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServiceRecord {
    /// The record's id (e.g. `eurac_pv_farm_detection`).
    pub id: String,
    /// Human title.
    pub title: String,
    /// Description (may be empty).
    pub description: String,
    /// `openeo` or `ogc_api_process`: the `label` of a job for this service.
    pub label: &'static str,
    /// Backend URL: the job's `service.endpoint`.
    pub endpoint: String,
    /// Application URL (openEO: the UDP): the job's `service.application`.
    pub application: String,
    /// The job's `service.namespace`, when the record gives one.
    pub namespace: Option<String>,
    /// Keywords of the record.
    pub keywords: Vec<String>,
    /// The same value as `label` (what `?kind=` filters on).
    pub kind: &'static str,
    /// The platform the service runs on, when the record names one.
    pub platform: Option<PlatformInfo>,
    /// Output formats (names).
    pub formats: Vec<String>,
    /// Licence of the service's results, when given.
    pub license: Option<String>,
    /// Estimated cost, in `cost_unit`, when given.
    pub cost_estimate: Option<f64>,
    /// Unit of `cost_estimate` (free text, e.g. `platform credits per km²`).
    pub cost_unit: Option<String>,
    /// URL of a thumbnail image, when given.
    pub thumbnail: Option<String>,
    /// The catalogue source the record came from: `bundled`, a URL or a folder.
    pub source: String,
}

/// A platform (openEO backend, OGC API Processes server) of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlatformInfo {
    /// The platform record's id (else the file name of the record's `platform` link).
    pub id: String,
    /// Its title (else the link's title).
    pub title: Option<String>,
    /// Its web site (else the link's URL).
    pub url: Option<String>,
}

/// A link of a record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordLink {
    /// Relation: `application`, `service`, `example-output`, `thumbnail`, `preview`,
    /// `webapp`, `notebook`, `code`, `license`, `cite-as`, `about`, ...
    pub rel: String,
    /// Target (relative targets resolved against the record's URL when it has one).
    pub href: String,
    /// Title, when given.
    pub title: Option<String>,
    /// Media type, when given.
    #[serde(rename = "type")]
    pub media_type: Option<String>,
}

/// A contact of a record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Contact {
    /// Person or organisation name.
    pub name: Option<String>,
    /// Organisation of the person.
    pub organization: Option<String>,
    /// Roles (`principal investigator`, `processor`, ...).
    pub roles: Vec<String>,
}

/// One service with everything the catalogue says about it (`GET /services/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = CatalogueService)]
pub struct ServiceDetails {
    /// The service as `GET /services` lists it.
    #[serde(flatten)]
    pub record: ServiceRecord,
    /// Every link of the record.
    pub links: Vec<RecordLink>,
    /// Contacts (people, organisations).
    pub contacts: Vec<Contact>,
    /// Default parameter values, from the service's benchmark scenario when there is
    /// one (else `{}`).
    #[schema(value_type = Object)]
    pub defaults: Map<String, Value>,
}

/// Why a record was left out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Skip {
    /// Not JSON (or not an object).
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// `visibility: private`.
    #[error("the record is private")]
    Private,
    /// No `id`.
    #[error("the record has no id")]
    NoId,
    /// No link with `rel: service`.
    #[error("the record has no service link")]
    NoService,
    /// No link with `rel: application`.
    #[error("the record has no application link")]
    NoApplication,
    /// The service link cannot be used.
    #[error("the service URL {0:?} cannot be used: {1}")]
    BadServiceUrl(String, &'static str),
}

/// A record read, before its platform and defaults are looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The service (platform not filled in yet; `source` empty).
    pub record: ServiceRecord,
    /// Links (hrefs as written).
    pub links: Vec<RecordLink>,
    /// Contacts.
    pub contacts: Vec<Contact>,
}

impl Parsed {
    /// The `platform` link, if any.
    pub fn platform_link(&self) -> Option<&RecordLink> {
        self.links.iter().find(|l| l.rel == "platform")
    }
}

const OPENEO_CONFORMANCE: &str = "/openeo-udp";
const OGC_CONFORMANCE: &str = "/ogc-api-processes";

/// A field of a record: under `properties` first, else at the top level.
fn field<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    doc.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| doc.get(key))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .or_else(|| text(x.get("name")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a document is meant as a service record (and not a platform or provider
/// record, which are no services).
fn is_service_doc(doc: &Value) -> bool {
    if doc.get("type").and_then(Value::as_str) == Some("apex_algorithm") {
        return true;
    }
    let conforms = field(doc, "conformsTo")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().filter_map(Value::as_str).any(|s| {
                s.trim_end_matches('/').ends_with(OPENEO_CONFORMANCE)
                    || s.trim_end_matches('/').ends_with(OGC_CONFORMANCE)
            })
        });
    if conforms {
        return true;
    }
    // Tolerance: a feature of type `service`, or anything with a service link.
    let kind = doc
        .get("properties")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    match kind {
        Some("service") | Some("apex_algorithm") | Some("algorithm") => true,
        Some(_) => false,
        None => links_of(doc).iter().any(|l| l.rel == "service"),
    }
}

fn links_of(doc: &Value) -> Vec<RecordLink> {
    field(doc, "links")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    Some(RecordLink {
                        rel: text(l.get("rel"))?,
                        href: text(l.get("href"))?,
                        title: text(l.get("title")),
                        media_type: text(l.get("type")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one record. `Ok(None)`: the document is no service record (a platform, a
/// provider); `Err`: a service record that cannot be used, and why.
pub fn parse_record(doc: &Value) -> Result<Option<Parsed>, Skip> {
    if !doc.is_object() {
        return Err(Skip::NotJson("the document is not an object".into()));
    }
    if !is_service_doc(doc) {
        return Ok(None);
    }
    if text(field(doc, "visibility")).is_some_and(|v| v.eq_ignore_ascii_case("private")) {
        return Err(Skip::Private);
    }
    let id = text(doc.get("id"))
        .or_else(|| text(field(doc, "id")))
        .ok_or(Skip::NoId)?;
    let links = links_of(doc);
    let link = |rel: &str| links.iter().find(|l| l.rel == rel);
    let service = link("service").ok_or(Skip::NoService)?;
    link("application").ok_or(Skip::NoApplication)?;
    match Url::parse(&service.href) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(_) => {
            return Err(Skip::BadServiceUrl(
                crate::redact::redact_url(&service.href),
                "not an http(s) URL",
            ))
        }
        Err(_) => {
            return Err(Skip::BadServiceUrl(
                crate::redact::redact_url(&service.href),
                "not a URL",
            ))
        }
    }
    // The shape `service_of_record` reads: top-level conformsTo and links.
    let mut normal = serde_json::json!({
        "links": field(doc, "links").cloned().unwrap_or(Value::Null),
    });
    if let Some(c) = field(doc, "conformsTo") {
        normal["conformsTo"] = c.clone();
    }
    let ogc = field(doc, "conformsTo")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .any(|s| s.trim_end_matches('/').ends_with(OGC_CONFORMANCE))
        });
    let (label, details) = crate::platform::service_of_record(&normal).ok_or_else(|| {
        Skip::BadServiceUrl(
            crate::redact::redact_url(&service.href),
            if ogc {
                "not the URL of an OGC API process (…/processes/{id})"
            } else {
                "not the URL of a process"
            },
        )
    })?;
    let title = text(field(doc, "title")).unwrap_or_else(|| id.clone());
    let cost_estimate = field(doc, "cost_estimate").and_then(|v| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()))
            .filter(|x| x.is_finite())
    });
    let contacts = field(doc, "contacts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Contact {
                    name: text(c.get("name")),
                    organization: text(c.get("organization"))
                        .or_else(|| text(c.get("organisation"))),
                    roles: strings(c.get("roles")),
                })
                .filter(|c| c.name.is_some() || c.organization.is_some())
                .collect()
        })
        .unwrap_or_default();
    let thumbnail = link("thumbnail").map(|l| l.href.clone());
    let license = text(field(doc, "license")).or_else(|| {
        field(doc, "license").and_then(|l| text(l.get("name")).or_else(|| text(l.get("id"))))
    });
    Ok(Some(Parsed {
        record: ServiceRecord {
            id,
            title,
            description: text(field(doc, "description")).unwrap_or_default(),
            label: label.as_str(),
            endpoint: details.endpoint,
            application: details.application,
            namespace: details.namespace,
            keywords: strings(field(doc, "keywords")),
            kind: label.as_str(),
            platform: None,
            formats: strings(field(doc, "formats")),
            license,
            cost_estimate,
            cost_unit: text(field(doc, "cost_unit")),
            thumbnail,
            source: String::new(),
        },
        links,
        contacts,
    }))
}

/// `href` resolved against `base` when it is relative and there is a base.
pub fn resolve(href: &str, base: Option<&Url>) -> String {
    if Url::parse(href).is_ok() {
        return href.to_string();
    }
    match base.and_then(|b| b.join(href).ok()) {
        Some(u) => u.to_string(),
        None => href.to_string(),
    }
}

/// `rel_path` (a path in the repository layout) joined with a relative `href`:
/// `algorithm_catalog/p/s/records/x.json` + `../../../../platform_catalog/y.json` is
/// `platform_catalog/y.json`. `None` when the link leaves the repository.
pub fn join_relative(rel_path: &str, href: &str) -> Option<String> {
    if href.contains("://") || href.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = rel_path.split('/').collect();
    parts.pop();
    for seg in href.split(['?', '#']).next()?.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The file stem of the last path segment of a URL or path (`.../tao.json` → `tao`).
pub fn stem_of(href: &str) -> &str {
    let path = href.split(['?', '#']).next().unwrap_or(href);
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    last.strip_suffix(".json").unwrap_or(last)
}

/// A platform record into [`PlatformInfo`] (its web site is its `website` link, else
/// its first HTML link).
pub fn platform_info(doc: &Value) -> Option<PlatformInfo> {
    let id = text(doc.get("id"))?;
    let links = links_of(doc);
    let url = links
        .iter()
        .find(|l| l.rel == "website")
        .or_else(|| {
            links
                .iter()
                .find(|l| l.media_type.as_deref() == Some("text/html"))
        })
        .map(|l| l.href.clone());
    Some(PlatformInfo {
        id,
        title: text(field(doc, "title")),
        url,
    })
}

/// Benchmark scenarios, looked up by the service folder they sit in and by the
/// process ids they call.
#[derive(Debug, Default, Clone)]
pub struct Scenarios {
    by_folder: HashMap<String, Vec<Value>>,
    by_process: HashMap<String, Vec<Value>>,
}

impl Scenarios {
    /// Adds the scenarios of one file (an array of scenarios, or one) found at
    /// `rel_path` (`algorithm_catalog/<provider>/<service>/benchmark_scenarios/x.json`;
    /// empty when unknown).
    pub fn add(&mut self, rel_path: &str, doc: &Value) {
        let list: Vec<&Value> = match doc {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![doc],
            _ => return,
        };
        let folder = service_folder(rel_path);
        for s in list {
            if let Some(f) = &folder {
                self.by_folder.entry(f.clone()).or_default().push(s.clone());
            }
            let mut ids: Vec<&str> = s
                .get("process_graph")
                .and_then(Value::as_object)
                .map(|g| {
                    g.values()
                        .filter_map(|n| n.get("process_id").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(id) = s.get("process_id").and_then(Value::as_str) {
                ids.push(id);
            }
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                self.by_process
                    .entry(id.to_string())
                    .or_default()
                    .push(s.clone());
            }
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_folder.is_empty() && self.by_process.is_empty()
    }

    /// Default parameter values for a service: the arguments of the node calling its
    /// process in its benchmark scenario (openEO), or the scenario's `inputs` (OGC).
    /// `rel_path` is the record's path in the repository layout, if known.
    pub fn defaults_for(
        &self,
        record: &ServiceRecord,
        rel_path: Option<&str>,
    ) -> Option<Map<String, Value>> {
        // openEO: the UDP's id is its file's stem; OGC: the process id as it is.
        let ids: Vec<&str> = vec![record.id.as_str(), stem_of(&record.application)];
        let mut candidates: Vec<&Value> = Vec::new();
        if let Some(f) = rel_path.and_then(service_folder) {
            candidates.extend(self.by_folder.get(&f).into_iter().flatten());
        }
        if candidates.is_empty() {
            for id in &ids {
                candidates.extend(self.by_process.get(*id).into_iter().flatten());
            }
        }
        // The scenario named like the record first.
        candidates.sort_by_key(|s| s.get("id").and_then(Value::as_str) != Some(record.id.as_str()));
        candidates
            .into_iter()
            .find_map(|s| scenario_arguments(s, &ids, &record.application))
    }
}

/// `algorithm_catalog/<provider>/<service>` of a path below a service folder.
fn service_folder(rel_path: &str) -> Option<String> {
    let parts: Vec<&str> = rel_path.split('/').collect();
    (parts.len() >= 4 && parts[0] == "algorithm_catalog").then(|| parts[..3].join("/"))
}

/// The arguments of the node of `scenario` that calls one of `ids` (or the UDP at
/// `application`), else of its only namespaced node; OGC scenarios: `inputs`.
fn scenario_arguments(
    scenario: &Value,
    ids: &[&str],
    application: &str,
) -> Option<Map<String, Value>> {
    if let Some(inputs) = scenario.get("inputs").and_then(Value::as_object) {
        return Some(inputs.clone());
    }
    let graph = scenario.get("process_graph")?.as_object()?;
    let args = |n: &Value| n.get("arguments").and_then(Value::as_object).cloned();
    if let Some(n) = graph.values().find(|n| {
        n.get("process_id")
            .and_then(Value::as_str)
            .is_some_and(|p| ids.contains(&p))
    }) {
        return args(n);
    }
    if let Some(n) = graph
        .values()
        .find(|n| n.get("namespace").and_then(Value::as_str) == Some(application))
    {
        return args(n);
    }
    let namespaced: Vec<&Value> = graph
        .values()
        .filter(|n| {
            n.get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|ns| ns.contains("://"))
        })
        .collect();
    match namespaced.as_slice() {
        [one] => args(one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_shape() -> Value {
        json!({
            "id": "pv", "type": "Feature",
            "conformsTo": ["http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                           "https://apex.esa.int/core/openeo-udp"],
            "properties": {"title": " PV ", "description": "d", "keywords": ["Solar"],
                "cost_estimate": 0.5, "cost_unit": "credits per km²", "license": "CC-BY-4.0",
                "formats": [{"name": "GeoTIFF"}, "netCDF"],
                "contacts": [{"name": "Ann", "organization": "Org", "roles": ["processor"]}, {"email": "x"}]},
            "links": [
                {"rel": "application", "href": "https://raw.example/a/pv_udp.json", "type": "application/vnd.openeo+json;type=process"},
                {"rel": "service", "href": "https://openeo.example"},
                {"rel": "platform", "href": "../../../../platform_catalog/cdse.json", "title": "CDSE"},
                {"rel": "thumbnail", "href": "https://img.example/t.png"},
                {"rel": "no-href"}
            ]
        })
    }

    #[test]
    fn reads_an_ogc_api_records_feature() {
        let p = parse_record(&new_shape()).unwrap().unwrap();
        let r = &p.record;
        assert_eq!(r.id, "pv");
        assert_eq!(r.title, "PV");
        assert_eq!((r.label, r.kind), ("openeo", "openeo"));
        assert_eq!(r.endpoint, "https://openeo.example");
        assert_eq!(r.application, "https://raw.example/a/pv_udp.json");
        assert_eq!(r.keywords, ["Solar"]);
        assert_eq!(r.formats, ["GeoTIFF", "netCDF"]);
        assert_eq!(r.cost_estimate, Some(0.5));
        assert_eq!(r.cost_unit.as_deref(), Some("credits per km²"));
        assert_eq!(r.license.as_deref(), Some("CC-BY-4.0"));
        assert_eq!(r.thumbnail.as_deref(), Some("https://img.example/t.png"));
        assert_eq!(p.links.len(), 4, "the link without href is left out");
        assert_eq!(p.contacts.len(), 1);
        assert_eq!(p.contacts[0].organization.as_deref(), Some("Org"));
        assert_eq!(p.platform_link().unwrap().title.as_deref(), Some("CDSE"));
    }

    #[test]
    fn reads_the_older_apex_algorithm_shape() {
        let doc = json!({
            "id": "old", "type": "apex_algorithm",
            "title": "Old style", "description": "top level",
            "properties": {"keywords": ["k"], "cost_estimate": "3"},
            "links": [
                {"rel": "application", "href": "https://h/p/old.json", "type": "application/vnd.openeo+json"},
                {"rel": "service", "href": "https://openeo.example/"}
            ]
        });
        let r = parse_record(&doc).unwrap().unwrap().record;
        assert_eq!(r.title, "Old style");
        assert_eq!(r.description, "top level");
        assert_eq!(r.keywords, ["k"]);
        assert_eq!(r.cost_estimate, Some(3.0));
        assert_eq!(r.label, "openeo");
        // OGC in the older shape, conformsTo under properties.
        let ogc = json!({
            "id": "o", "type": "apex_algorithm",
            "properties": {"conformsTo": ["https://apex.esa.int/core/ogc-api-processes"]},
            "links": [
                {"rel": "application", "href": "https://repo/o.cwl"},
                {"rel": "service", "href": "https://ades.example/ns/a/processes/o-1"}
            ]
        });
        let r = parse_record(&ogc).unwrap().unwrap().record;
        assert_eq!(r.label, "ogc_api_process");
        assert_eq!(r.namespace.as_deref(), Some("ns/a"));
        assert_eq!(r.application, "o-1");
        assert_eq!(r.title, "o");
    }

    #[test]
    fn skip_reasons() {
        let mut private = new_shape();
        private["properties"]["visibility"] = json!("private");
        assert_eq!(parse_record(&private), Err(Skip::Private));
        let mut public = new_shape();
        public["properties"]["visibility"] = json!("public");
        assert!(parse_record(&public).unwrap().is_some());
        let mut no_id = new_shape();
        no_id.as_object_mut().unwrap().remove("id");
        assert_eq!(parse_record(&no_id), Err(Skip::NoId));
        let mut no_service = new_shape();
        no_service["links"].as_array_mut().unwrap().remove(1);
        assert_eq!(parse_record(&no_service), Err(Skip::NoService));
        let mut no_app = new_shape();
        no_app["links"].as_array_mut().unwrap().remove(0);
        assert_eq!(parse_record(&no_app), Err(Skip::NoApplication));
        let mut bad_url = new_shape();
        bad_url["links"][1]["href"] = json!("openeo.example without scheme");
        assert!(matches!(
            parse_record(&bad_url),
            Err(Skip::BadServiceUrl(_, "not a URL"))
        ));
        let mut ftp = new_shape();
        ftp["links"][1]["href"] = json!("ftp://openeo.example");
        assert!(matches!(parse_record(&ftp), Err(Skip::BadServiceUrl(..))));
        let ogc_not_a_process = json!({
            "id": "o", "type": "Feature",
            "conformsTo": ["https://apex.esa.int/core/ogc-api-processes"],
            "properties": {},
            "links": [{"rel": "application", "href": "https://r/o.cwl"},
                      {"rel": "service", "href": "https://ades.example/ogc?token=SECRET"}]
        });
        let err = parse_record(&ogc_not_a_process).unwrap_err();
        assert!(matches!(err, Skip::BadServiceUrl(..)), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(matches!(parse_record(&json!([1])), Err(Skip::NotJson(_))));
        // Platform and provider records are no services, and no mistakes either.
        let platform = json!({"id": "gep", "type": "Feature", "properties": {"type": "ogc_backend"}, "links": []});
        assert_eq!(parse_record(&platform), Ok(None));
    }

    #[test]
    fn relative_links_and_platforms() {
        assert_eq!(
            join_relative(
                "algorithm_catalog/p/s/records/s.json",
                "../../../../platform_catalog/gep.json"
            )
            .as_deref(),
            Some("platform_catalog/gep.json")
        );
        assert_eq!(join_relative("a/b.json", "../../../x.json"), None);
        assert_eq!(join_relative("a/b.json", "https://x/y.json"), None);
        let base = Url::parse("http://h/c/items/x").unwrap();
        assert_eq!(resolve("../y.png", Some(&base)), "http://h/c/y.png");
        assert_eq!(resolve("https://o/z", Some(&base)), "https://o/z");
        assert_eq!(resolve("../y.png", None), "../y.png");
        assert_eq!(stem_of("../../platform_catalog/tao.json"), "tao");
        let p = platform_info(&json!({"id": "tao", "properties": {"title": "TAO"},
            "links": [{"rel": "logo", "href": "https://l"}, {"rel": "website", "href": "https://tao"}]}))
        .unwrap();
        assert_eq!(
            p,
            PlatformInfo {
                id: "tao".into(),
                title: Some("TAO".into()),
                url: Some("https://tao".into())
            }
        );
    }

    #[test]
    fn defaults_come_from_the_benchmark_scenario() {
        let mut s = Scenarios::default();
        s.add(
            "algorithm_catalog/p/svc/benchmark_scenarios/svc.json",
            &json!([{"id": "svc", "type": "openeo", "process_graph": {
                "load": {"process_id": "load_collection", "arguments": {"id": "S2"}},
                "n1": {"process_id": "pv_udp", "namespace": "https://raw.example/a/pv_udp.json",
                       "arguments": {"bbox": {"west": 1}, "year": 2024}, "result": true}}}]),
        );
        let p = parse_record(&new_shape()).unwrap().unwrap();
        let by_folder = s
            .defaults_for(&p.record, Some("algorithm_catalog/p/svc/records/pv.json"))
            .unwrap();
        assert_eq!(by_folder["year"], 2024);
        // Without a folder: by the UDP's id.
        assert_eq!(s.defaults_for(&p.record, None).unwrap()["year"], 2024);
        // Unknown service: none.
        let mut other = p.record.clone();
        other.id = "other".into();
        other.application = "https://x/other.json".into();
        assert_eq!(s.defaults_for(&other, None), None);
        // OGC scenarios give their inputs.
        let mut o = Scenarios::default();
        o.add(
            "",
            &json!({"id": "o", "process_id": "o", "inputs": {"a": 1}}),
        );
        let mut rec = p.record.clone();
        rec.id = "o".into();
        assert_eq!(o.defaults_for(&rec, None).unwrap()["a"], 1);
    }
}
