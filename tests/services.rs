//! `GET /services`: the bundled APEx records as runnable services (the catalogue's own
//! tests, with served and configured sources, are in tests/catalogue.rs).

mod common;

use common::TestDaemon;

const PV_UDP: &str = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json";

#[tokio::test]
async fn services_lists_the_pv_farm_record_with_its_backend_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (status, body) = d.get_json("/services").await;
    assert_eq!(status, 200, "{body}");
    let list = body.as_array().expect("an array");
    // The snapshot's 56 openEO services and 14 OGC API Processes services.
    assert_eq!(list.len(), 70, "{body}");
    let ogc: Vec<&serde_json::Value> = list
        .iter()
        .filter(|s| s["label"] == "ogc_api_process")
        .collect();
    assert_eq!(ogc.len(), 14, "{body}");
    let insar = list
        .iter()
        .find(|s| s["id"] == "gep_DinSAR")
        .expect("the GEP InSAR record");
    assert_eq!(insar["endpoint"], "https://ades.gep.terradue.com");
    assert_eq!(insar["namespace"], "gep/wps3");
    assert_eq!(insar["application"], "s1-insar-0_4_11");
    let pv = list
        .iter()
        .find(|s| s["id"] == "eurac_pv_farm_detection")
        .expect("the PV farm record");
    assert_eq!(pv["endpoint"], "https://openeofed.dataspace.copernicus.eu");
    assert_eq!(pv["application"], PV_UDP);
    assert_eq!(pv["label"], "openeo");
    assert_eq!(pv["title"], "Photovoltaic farms mapping");
    assert!(pv["namespace"].is_null());
    assert!(pv["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "Sentinel-2"));
    assert!(pv["description"]
        .as_str()
        .unwrap()
        .starts_with("Demonstrator service"));
    // Every openEO service whose UDP is bundled can be described offline (the others'
    // UDPs and the OGC servers are on the internet, which tests do not reach).
    let bundled = |s: &&serde_json::Value| {
        eodispatch::platform::udp::bundled_for(s["application"].as_str().unwrap()).is_some()
    };
    let openeo: Vec<&serde_json::Value> = list
        .iter()
        .filter(|s| s["label"] == "openeo")
        .filter(bundled)
        .collect();
    assert!(openeo.len() >= 40, "{}", openeo.len());
    for s in openeo {
        let (st, params) = d
            .post_json(
                "/params",
                &serde_json::json!({"label": s["label"], "service": {
                    "endpoint": s["endpoint"], "application": s["application"]}}),
            )
            .await;
        assert_eq!(st, 200, "{s}: {params}");
        assert!(!params.as_array().unwrap().is_empty());
    }
    // The route needs the token like every other.
    let r = d.http.get(d.url("/services")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // And it is in the OpenAPI document.
    let (_, doc) = d.get_json("/openapi.json").await;
    assert!(doc["paths"]["/services"]["get"].is_object());
    d.stop().await;
}
