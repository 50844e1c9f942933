//! Helpers shared by the integration tests: a started fake, an HTTP client with the bearer
//! token, job bodies, and polling until a status.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use fake_openeo::{FakeConfig, FakeHandle};
use serde_json::{json, Value};

pub const TOKEN: &str = "Bearer oidc/fake/abc";

pub const APEX_URL: &str = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json";

/// A fake with short timings (0.2 s queued, 0.6 s running).
pub async fn fake() -> FakeHandle {
    fake_with(FakeConfig::default().with_timing(0.2, 0.6)).await
}

pub async fn fake_with(config: FakeConfig) -> FakeHandle {
    fake_openeo::start(config).await.expect("fake starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A job body using the eurac UDP by `namespace` and saving `format`.
pub fn udp_job(title: &str, namespace: &str, format: &str) -> Value {
    json!({
        "title": title,
        "description": format!("test job {title}"),
        "process": {"process_graph": {
            "euracpvfarmdetection1": {
                "process_id": "eurac_pv_farm_detection",
                "namespace": namespace,
                "arguments": {
                    "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326},
                    "temporal_extent": ["2023-05-01", "2023-09-30"]
                }
            },
            "saveresult1": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "euracpvfarmdetection1"}, "format": format, "options": {}},
                "result": true
            }
        }}
    })
}

/// A job body with a plain `load_collection` + `save_result(format)`.
pub fn simple_job(title: &str, format: &str) -> Value {
    json!({
        "title": title,
        "process": {"process_graph": {
            "load1": {"process_id": "load_collection", "arguments": {
                "id": "SENTINEL2_L2A",
                "spatial_extent": {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
                "temporal_extent": ["2024-01-01", "2024-02-01"]}},
            "save1": {"process_id": "save_result", "arguments": {"data": {"from_node": "load1"}, "format": format}, "result": true}
        }}
    })
}

/// Creates a job and returns its id.
pub async fn create(fake: &FakeHandle, body: &Value) -> String {
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.headers()["openeo-identifier"]
        .to_str()
        .unwrap()
        .to_string()
}

pub async fn start(fake: &FakeHandle, id: &str) {
    let r = client()
        .post(format!("{}/jobs/{id}/results", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

pub async fn get_json(fake: &FakeHandle, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /jobs/{id}` until its status is `want` (panics after 10 s).
pub async fn wait_for(fake: &FakeHandle, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, job) = get_json(fake, &format!("/jobs/{id}")).await;
        assert_eq!(code, 200, "{job}");
        if job["status"] == want {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never became {want}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates, starts and waits for a finished job; returns its id and results document.
pub async fn finished_job(fake: &FakeHandle, body: &Value) -> (String, Value) {
    let id = create(fake, body).await;
    start(fake, &id).await;
    wait_for(fake, &id, "finished").await;
    let (code, doc) = get_json(fake, &format!("/jobs/{id}/results")).await;
    assert_eq!(code, 200, "{doc}");
    (id, doc)
}
