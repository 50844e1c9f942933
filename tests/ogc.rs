//! OGC API Processes services end to end: the daemon against a real pygeoapi (started by
//! the test, with our own processes in tests/ogc/processes): parameters of each
//! process, validation before anything is sent, asynchronous and synchronous execution,
//! results inline, by reference and as STAC, failures, dismissal, crashes during the
//! submission and during a job, the server down and back, and a server behind OpenID
//! Connect.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/ogc.rs"]
mod ogc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestDaemon;
use eodispatch::config::Config;
use fake::{wait_for, wait_status};
use ogc::{Options, Pygeoapi};
use serde_json::{json, Value};

const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

/// A daemon with short poll intervals.
fn config(root: &Path) -> Config {
    let mut c = Config::for_root(root);
    c.poll_interval_min_s = 0.2;
    c.poll_interval_max_s = 1.0;
    c
}

async fn daemon(root: &Path) -> TestDaemon {
    TestDaemon::start_with(config(root)).await
}

fn service(server: &Pygeoapi, process: &str) -> Value {
    json!({"endpoint": server.url(), "application": process})
}

fn job(server: &Pygeoapi, process: &str, title: &str, parameters: Value) -> Value {
    json!({"title": title, "label": "ogc_api_process", "format": "geojson",
           "service": service(server, process), "parameters": parameters})
}

async fn submit(d: &TestDaemon, body: &Value) -> i64 {
    let (s, v) = d.post_json("/unit_jobs", body).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// Waits until the job's results are published; the job.
async fn wait_ready(d: &TestDaemon, id: i64) -> Value {
    wait_for("results published", Duration::from_secs(60), || async {
        let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        match j["results"]["state"].as_str() {
            Some("ready") => Some(j),
            Some("failed") => panic!("delivery failed: {j}"),
            _ => None,
        }
    })
    .await
}

fn manifest(job: &Value) -> (PathBuf, Value) {
    let dir = PathBuf::from(job["results"]["dir"].as_str().expect("a results folder"));
    let text = std::fs::read_to_string(dir.join("job.json")).expect("job.json");
    (dir, serde_json::from_str(&text).unwrap())
}

/// Execution requests the server received (for counting submissions).
async fn executions(server: &Pygeoapi) -> Vec<Value> {
    server
        .requests()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/execution")
        })
        .collect()
}

#[tokio::test]
async fn params_describe_every_process() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    let describe =
        |process: &str| json!({"label": "ogc_api_process", "service": service(&server, process)});
    let (s, v) = d
        .post_json("/params", &describe("eodispatch-features"))
        .await;
    assert_eq!(s, 200, "{v}");
    let by_name = |v: &Value, n: &str| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {v}"))
            .clone()
    };
    let bbox = by_name(&v, "bbox");
    assert_eq!(bbox["type"], "bounding-box");
    assert_eq!(bbox["optional"], false);
    assert_eq!(bbox["schema"]["format"], "ogc-bbox", "the original schema");
    assert_eq!(by_name(&v, "date")["type"], "datetime");
    let count = by_name(&v, "count");
    assert_eq!(
        (&count["type"], &count["optional"], &count["default"]),
        (&json!("integer"), &json!(true), &json!(4))
    );
    let shape = by_name(&v, "shape");
    assert_eq!(shape["type"], "string");
    assert_eq!(shape["options"], json!(["square", "point"]));
    assert_eq!(by_name(&v, "tags")["type"], "array-string");
    // The full view adds the outputs.
    let (s, v) = d
        .post_json("/params?view=service", &describe("eodispatch-features"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outputs"][0]["id"], "features");
    assert_eq!(
        v["outputs"][0]["media_types"],
        json!(["application/geo+json"])
    );
    assert!(v["title"].is_string());
    // Every process can be described; the raster one's `allOf`/`$ref` box too.
    for p in [
        "eodispatch-slow",
        "eodispatch-fail",
        "eodispatch-sync-only",
        "eodispatch-raster",
        "eodispatch-stac",
    ] {
        let (s, v) = d.post_json("/params", &describe(p)).await;
        assert_eq!(s, 200, "{p}: {v}");
        assert!(!v.as_array().unwrap().is_empty(), "{p}");
    }
    let (_, v) = d.post_json("/params", &describe("eodispatch-raster")).await;
    assert_eq!(by_name(&v, "bbox")["type"], "bounding-box");
    // The full process URL works as the application, as catalogue records give it.
    let (s, v) = d
        .post_json(
            "/params",
            &json!({"label": "ogc_api_process", "service": {"endpoint": server.url(),
                    "application": format!("{}/processes/eodispatch-sync-only", server.url())}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(by_name(&v, "lon")["type"], "double");
    // An unknown process: 422 naming service.application and what the server offers.
    let (s, v) = d.post_json("/params", &describe("nope")).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["errors"][0]["name"], "service.application");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("eodispatch-features"),
        "{v}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_job_runs_and_its_geojson_lands_in_the_results_folder() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    // Arguments are checked before anything is sent: every mistake named.
    let (s, v) = d
        .post_json(
            "/unit_jobs",
            &job(
                &server,
                "eodispatch-features",
                "bad",
                json!({"bbox": {"bbox": [16.3, 47.9]}, "date": "2024-02-30", "count": 99,
                       "shape": "circle", "colour": "red"}),
            ),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let names: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for want in [
        "parameters.bbox.bbox",
        "parameters.date",
        "parameters.count",
        "parameters.shape",
        "parameters.colour",
    ] {
        assert!(names.contains(&want), "{want} in {v}");
    }
    assert!(executions(&server).await.is_empty(), "nothing was sent");

    // A box from the map in our form is sent in the OGC form.
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-features",
            "Features Vienna",
            json!({"bbox": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
                   "date": "2024-05-01", "count": 5, "tags": ["a", "b"]}),
        ),
    )
    .await;
    let done = wait_status(&d, id, "finished", Duration::from_secs(60)).await;
    assert_eq!(done["backend_status"], "successful");
    let remote = done["backend_job_id"].as_str().unwrap().to_string();
    let sent = executions(&server).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["prefer"], "respond-async",
        "asynchronous execution asked"
    );
    let job_json = wait_ready(&d, id).await;
    let (dir, m) = manifest(&job_json);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    let path = layers[0]["path"].as_str().unwrap();
    assert!(path.ends_with(".geojson"), "{path}");
    let fc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(path)).unwrap()).unwrap();
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    for f in features {
        let c = f["geometry"]["coordinates"].to_string();
        assert_eq!(f["properties"]["date"], "2024-05-01", "{f}");
        assert!(!c.is_empty());
    }
    assert_eq!(m["job"]["backend_job_id"], remote);
    // The results document of the daemon points at its own files.
    let (s, doc) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    assert_eq!(s, 200, "{doc}");
    let asset = doc["assets"].as_object().unwrap().values().next().unwrap();
    assert!(asset["href"].as_str().unwrap().contains("/files/"), "{doc}");
    d.stop().await;
}
