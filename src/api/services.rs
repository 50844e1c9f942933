//! `GET /services` (*ext*): the services the daemon knows out of the box, for pickers
//! (the QGIS plugin's service list, the Processing toolbox).
//!
//! The records are the APEx catalogue's OGC API Records (`catalog/records/*.json`),
//! bundled at compile time like the UDPs of [`crate::platform::udp::BUNDLED`], so the
//! list works offline. Each record becomes one [`ServiceRecord`]:
//!
//! - `label`, `endpoint`, `namespace`, `application`: the job's label and `service`,
//!   from the record's `conformsTo` and its links with `rel: "service"` and
//!   `rel: "application"` ([`crate::platform::service_of_record`]: openEO: the backend
//!   and the UDP URL; OGC API Processes: the process URL of the `service` link split
//!   into server, namespace and process id);
//! - `title`, `description`, `keywords` from the record's `properties`.
//!
//! A record without an application or a service link is left out (it cannot be run).
//! Configured catalogues are a later addition.

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The bundled APEx records, by file name. Add a line when adding a file to
/// `catalog/records/` (a unit test checks that every file there is listed).
pub const BUNDLED_RECORDS: [(&str, &str); 16] = [
    (
        "eurac_pv_farm_detection.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/eurac_pv_farm_detection.json"
        )),
    ),
    (
        "gep_DinSAR.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/gep_DinSAR.json"
        )),
    ),
    (
        "gep_api_ost.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/gep_api_ost.json"
        )),
    ),
    (
        "gep_bas.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/gep_bas.json"
        )),
    ),
    (
        "gep_ost.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/gep_ost.json"
        )),
    ),
    (
        "sar_coin.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sar_coin.json"
        )),
    ),
    (
        "scmap.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/scmap.json"
        )),
    ),
    (
        "sen4cap_l3_basic_markers.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l3_basic_markers.json"
        )),
    ),
    (
        "sen4cap_l3b_biophysical_indicators.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l3b_biophysical_indicators.json"
        )),
    ),
    (
        "sen4cap_l3b_spectral_indices.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l3b_spectral_indices.json"
        )),
    ),
    (
        "sen4cap_l4a_crop_type.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l4a_crop_type.json"
        )),
    ),
    (
        "sen4cap_l4b_grassland_mowing.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l4b_grassland_mowing.json"
        )),
    ),
    (
        "sen4cap_l4c_agricultural_practices.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l4c_agricultural_practices.json"
        )),
    ),
    (
        "sen4cap_l4d_bare_soil.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l4d_bare_soil.json"
        )),
    ),
    (
        "sen4cap_l4e_parcel_heterogeneity.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_l4e_parcel_heterogeneity.json"
        )),
    ),
    (
        "sen4cap_s1_pre_processing.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/records/sen4cap_s1_pre_processing.json"
        )),
    ),
];

/// One runnable service of a catalogue.
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
}

/// Reads one APEx record; `None` when it is not a runnable service.
pub fn parse_record(doc: &Value) -> Option<ServiceRecord> {
    let props = doc.get("properties")?;
    let (label, service) = crate::platform::service_of_record(doc)?;
    let str_prop = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let id = doc.get("id").and_then(Value::as_str)?.to_string();
    let title = match str_prop("title") {
        t if t.is_empty() => id.clone(),
        t => t,
    };
    Some(ServiceRecord {
        id,
        title,
        description: str_prop("description"),
        label: label.as_str(),
        endpoint: service.endpoint,
        application: service.application,
        namespace: service.namespace,
        keywords: props
            .get("keywords")
            .and_then(Value::as_array)
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The bundled services, sorted by title.
pub fn bundled() -> Vec<ServiceRecord> {
    let mut out: Vec<ServiceRecord> = BUNDLED_RECORDS
        .iter()
        .filter_map(|(name, text)| match serde_json::from_str::<Value>(text) {
            Ok(doc) => parse_record(&doc),
            Err(e) => {
                tracing::warn!(record = name, error = %e, "bundled record is not JSON");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.title.cmp(&b.title));
    out
}

/// Known services: the APEx catalogue records bundled with the daemon.
#[utoipa::path(get, path = "/services", tag = "services",
    responses((status = 200, description = "Known services", body = Vec<ServiceRecord>)))]
pub async fn services() -> Json<Vec<ServiceRecord>> {
    Json(bundled())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_record_file_is_bundled_and_runnable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/records");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        files.sort();
        let mut listed: Vec<String> = BUNDLED_RECORDS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed);
        assert_eq!(bundled().len(), BUNDLED_RECORDS.len());
    }

    #[test]
    fn records_without_links_are_skipped_and_ogc_is_detected() {
        assert_eq!(parse_record(&json!({"id": "x", "properties": {}})), None);
        let ogc = json!({"id": "s1", "properties": {"title": " S1 "},
            "links": [{"rel": "application", "href": "https://repo/s1.cwl", "type": "application/cwl+yaml"},
                      {"rel": "service", "href": "https://ades.example/gep/wps3/processes/s1-insar"}]});
        let r = parse_record(&ogc).unwrap();
        assert_eq!(r.label, "ogc_api_process");
        assert_eq!(r.title, "S1");
        assert_eq!(r.endpoint, "https://ades.example");
        assert_eq!(r.namespace.as_deref(), Some("gep/wps3"));
        assert_eq!(r.application, "s1-insar");
        assert!(r.keywords.is_empty());
        // An OGC service link that is not a process URL cannot be run.
        let mut bad = ogc.clone();
        bad["links"][1]["href"] = json!("https://ades.example/ogc");
        assert_eq!(parse_record(&bad), None);
    }
}
