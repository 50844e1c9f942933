//! `POST /params` over HTTP: every APEx fixture UDP served by a tiny local HTTP server,
//! the offline fallback to the bundled catalogue, and the error answers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use common::TestDaemon;
use serde_json::{json, Value};

/// Serves the bundled UDP `<name>` (catalog/apex/**/openeo_udp/<name>) at `/udp/<name>`, plus `/not-a-udp.json` (JSON that is
/// no UDP), `/html` and `/broken` (500). Returns the base URL and a request counter.
async fn udp_server() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new()
        .route(
            "/udp/{name}",
            get(move |Path(name): Path<String>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let found = eodispatch::platform::udp::BUNDLED
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, text)| text.to_string());
                    match found {
                        Some(text) => (StatusCode::OK, text),
                        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
                    }
                }
            }),
        )
        .route(
            "/not-a-udp.json",
            get(|| async { r#"{"type": "FeatureCollection", "features": []}"# }),
        )
        .route(
            "/html",
            get(|| async { "<html>sign in to the wifi</html>" }),
        )
        .route(
            "/broken/{name}",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, count)
}

fn body(application: &str) -> Value {
    json!({"label": "openeo", "service": {
        "endpoint": "https://openeofed.dataspace.copernicus.eu",
        "application": application}})
}

/// `name → (type, optional, default, options)` of a `/params` answer.
fn by_name(v: &Value) -> Vec<(String, String, bool, Value, Value)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
                p["optional"].as_bool().unwrap(),
                p["default"].clone(),
                p["options"].clone(),
            )
        })
        .collect()
}

fn row(
    name: &str,
    ty: &str,
    optional: bool,
    default: Value,
    options: Value,
) -> (String, String, bool, Value, Value) {
    (name.into(), ty.into(), optional, default, options)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn describes_every_fixture_udp() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(root.path()).await;
    let (base, count) = udp_server().await;

    let (s, v) = d
        .post_json(
            "/params",
            &body(&format!("{base}/udp/eurac_pv_farm_detection.json")),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        by_name(&v),
        [
            row(
                "spatial_extent",
                "bounding-box",
                true,
                json!({"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008}),
                json!([])
            ),
            row(
                "temporal_extent",
                "date-interval",
                true,
                json!(["2023-05-01", "2023-09-30"]),
                json!([])
            ),
        ]
    );
    // The original schema (an array of alternatives) and the markdown description.
    assert_eq!(v[0]["schema"].as_array().unwrap().len(), 3);
    assert_eq!(v[0]["schema"][0]["subtype"], "bounding-box");
    assert!(v[0]["description"]
        .as_str()
        .unwrap()
        .contains("Set this parameter to null"));
    let keys: Vec<&str> = v[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
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

    let (s, v) = d
        .post_json("/params", &body(&format!("{base}/udp/cropsar1d.json")))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        by_name(&v),
        [
            row("geometry", "polygon", false, Value::Null, json!([])),
            row("startdate", "datetime", false, Value::Null, json!([])),
            row("enddate", "datetime", false, Value::Null, json!([])),
            row(
                "minimal_input_checks",
                "boolean",
                true,
                json!(false),
                json!([])
            ),
            row(
                "output",
                "string",
                true,
                json!("FAPAR"),
                json!(["FAPAR", "FCOVER"])
            ),
        ]
    );

    let (s, v) = d
        .post_json(
            "/params",
            &body(&format!("{base}/udp/scmap_composite.json")),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        by_name(&v),
        [
            row(
                "temporal_extent",
                "date-interval",
                false,
                Value::Null,
                json!([])
            ),
            row(
                "bounding_box",
                "bounding-box",
                true,
                json!({"west": 11.1, "south": 48.0, "east": 11.3, "north": 48.2, "crs": "EPSG:4326"}),
                json!([])
            ),
            row("max_cloud_cover", "double", true, json!(80), json!([])),
            row("nmad_sigma", "double", true, json!(3.0), json!([])),
            row("compute_mref", "boolean", true, json!(false), json!([])),
            row("compute_mask", "boolean", true, json!(false), json!([])),
        ]
    );

    let (s, v) = d
        .post_json(
            "/params",
            &body(&format!(
                "{base}/udp/RAMONA-herbaceous_rangeland_biomass-country-mosaick.json"
            )),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let rows = by_name(&v);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2),
        ("country", "string", true)
    );
    assert_eq!(rows[0].3, json!("benin"));
    assert_eq!(rows[0].4.as_array().unwrap().len(), 55);
    assert_eq!(
        rows[1],
        row(
            "year",
            "string",
            true,
            json!("2021"),
            json!(["2021", "2022", "2023"])
        )
    );
    assert_eq!(
        rows[2],
        row(
            "month",
            "string",
            true,
            json!("10"),
            json!(["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"])
        )
    );

    // Asking again is answered from the cache: four fetches in all.
    let (s, _) = d
        .post_json("/params", &body(&format!("{base}/udp/cropsar1d.json")))
        .await;
    assert_eq!(s, 200);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    d.stop().await;
}

#[tokio::test]
async fn offline_the_bundled_catalogue_answers() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(root.path()).await;
    let port = closed_port();
    // The APEx URL's path, on a port nothing listens on.
    let url = format!(
        "http://127.0.0.1:{port}/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/\
         eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
    );
    let (s, v) = d.post_json("/params", &body(&url)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "spatial_extent");
    assert_eq!(v[0]["type"], "bounding-box");
    assert_eq!(v[1]["type"], "date-interval");

    // A server error falls back too.
    let (base, _) = udp_server().await;
    let (s, v) = d
        .post_json(
            "/params",
            &body(&format!("{base}/broken/scmap_composite.json")),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 6);
    d.stop().await;
}

#[tokio::test]
async fn error_answers() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(root.path()).await;
    let (base, _) = udp_server().await;
    let port = closed_port();

    // Unreachable, with no bundled copy: 502 naming the URL without its query.
    let (s, v) = d
        .post_json(
            "/params",
            &body(&format!(
                "http://127.0.0.1:{port}/udp/mine.json?token=S3CRET"
            )),
        )
        .await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["code"], "ServiceUnavailable");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("http://127.0.0.1:{port}/udp/mine.json")),
        "{detail}"
    );
    assert!(
        !detail.contains("S3CRET") && !detail.contains('?'),
        "{detail}"
    );

    // A 500 without a bundled copy: 502 as well.
    let (s, v) = d
        .post_json("/params", &body(&format!("{base}/broken/mine.json")))
        .await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["code"], "ServiceUnavailable");

    // Not a UDP: 422 naming service.application.
    for path in ["/not-a-udp.json", "/html", "/udp/nothing.json"] {
        let (s, v) = d
            .post_json("/params", &body(&format!("{base}{path}?sig=S3CRET")))
            .await;
        assert_eq!(s, 422, "{path}: {v}");
        assert_eq!(v["code"], "InvalidParameter");
        assert_eq!(v["errors"][0]["name"], "service.application", "{v}");
        assert!(!v.to_string().contains("S3CRET"), "{v}");
    }

    // An OGC API Processes server that does not answer: 502 as well, naming it.
    let (s, v) = d
        .post_json(
            "/params",
            &json!({"label": "ogc_api_process", "service": {
                "endpoint": format!("http://127.0.0.1:{port}/ogc"), "application": "s1-coherence"}}),
        )
        .await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["code"], "ServiceUnavailable");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}/ogc")),
        "{v}"
    );

    // Invalid bodies: 422 with every bad field, 400 for bad JSON.
    let (s, v) = d
        .post_json(
            "/params",
            &json!({"label": "openEO", "service": {"endpoint": "x", "application": "udp.json",
                    "extra": 1}, "format": "gtiff"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let names: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["label", "service.endpoint", "service.extra", "format"]
    );
    let (s, v) = d
        .post_json(
            "/params",
            &json!({"label": "openeo", "service": {"endpoint": "https://x.org", "application": "eurac_pv_farm_detection.json"}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["errors"][0]["name"], "service.application");
    let (s, v) = d.post_raw("/params", "{not json").await;
    assert_eq!(s, 400, "{v}");

    // The token is required.
    let r = d
        .http
        .post(d.url("/params"))
        .json(&body(&format!("{base}/udp/cropsar1d.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The route is in the OpenAPI document.
    let (s, doc) = d.get_json("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        doc["paths"]["/params"]["post"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["components"]["schemas"]["ParamDescriptor"].is_object());
    d.stop().await;
}
