//! The OGC API - Processes test harness itself (tests/common/ogc.rs, tests/ogc/): a real
//! pygeoapi with the test processes, its test plumbing (request log, faults, bearer
//! introspection), restarts and the gate. Also pins the pygeoapi 0.21.0 behaviours that
//! tests/ogc/README.md reports, so that a pygeoapi upgrade that changes them fails here.

#[path = "common/ogc.rs"]
mod ogc;
#[path = "common/oidc.rs"]
mod oidc;

use std::time::{Duration, Instant};

use ogc::{Closed, Options, Pygeoapi};
use serde_json::{json, Value};

const PROCESSES: [&str; 6] = [
    "eodispatch-features",
    "eodispatch-slow",
    "eodispatch-fail",
    "eodispatch-sync-only",
    "eodispatch-raster",
    "eodispatch-stac",
];
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const BBOX: [f64; 4] = [16.342, 47.962, 16.414, 48.008];

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn bbox_input() -> Value {
    json!({"bbox": BBOX, "crs": CRS84})
}

/// POST `/processes/{id}/execution`, async when `prefer_async`; the response.
async fn execute(base: &str, id: &str, inputs: Value, prefer_async: bool) -> reqwest::Response {
    let mut rb = http()
        .post(format!("{base}/processes/{id}/execution"))
        .header("accept", "application/json")
        .json(&json!({ "inputs": inputs }));
    if prefer_async {
        rb = rb.header("prefer", "respond-async");
    }
    rb.send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// GET `url` with `Accept: application/json`: status and JSON body.
async fn get_json(url: &str) -> (u16, Value) {
    let r = http()
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Polls the job at `location` until its status is one of `done`; returns the statusInfo.
async fn wait_job(p: &Pygeoapi, location: &str, done: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = get_json(location).await;
        assert_eq!(s, 200, "GET {location}: {v}");
        if done.iter().any(|d| v["status"] == *d) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "job {location} not {done:?} within 30 s: {v}\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn inside(lon: f64, lat: f64) -> bool {
    (BBOX[0]..=BBOX[2]).contains(&lon) && (BBOX[1]..=BBOX[3]).contains(&lat)
}

/// Every position of a GeoJSON geometry.
fn positions(geom: &Value) -> Vec<(f64, f64)> {
    fn walk(v: &Value, out: &mut Vec<(f64, f64)>) {
        if let Some(a) = v.as_array() {
            if a.len() >= 2 && a[0].is_number() && a[1].is_number() {
                out.push((a[0].as_f64().unwrap(), a[1].as_f64().unwrap()));
            } else {
                a.iter().for_each(|x| walk(x, out));
            }
        }
    }
    let mut out = Vec::new();
    walk(&geom["coordinates"], &mut out);
    out
}

/// Opens `path` with GDAL (rasterio in the server's venv): `[epsg, w, s, e, n, width]`.
fn gdal_info(path: &std::path::Path) -> Vec<f64> {
    let out = std::process::Command::new(ogc::python())
        .arg("-c")
        .arg(
            "import sys, rasterio\n\
             with rasterio.open(sys.argv[1]) as d:\n    \
             b = d.bounds\n    \
             print(d.crs.to_epsg(), b.left, b.bottom, b.right, b.top, d.width)",
        )
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rasterio could not open {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

/// Downloads `href`, checks it is a GeoTIFF of EPSG:4326 inside `bounds`; returns its size.
async fn check_geotiff(href: &str, bounds: [f64; 4]) -> usize {
    let r = http().get(href).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {href}");
    assert_eq!(header(&r, "content-type").as_deref(), Some("image/tiff"));
    let bytes = r.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*"),
        "{href} is not a TIFF"
    );
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &bytes).unwrap();
    let info = gdal_info(tmp.path());
    assert_eq!(info[0], 4326.0, "CRS of {href}: {info:?}");
    for (got, want) in info[1..5].iter().zip(bounds) {
        assert!(
            (got - want).abs() < 1e-9,
            "bounds of {href}: {info:?} vs {bounds:?}"
        );
    }
    bytes.len()
}

#[tokio::test]
async fn lists_and_describes_the_test_processes() {
    let p = Pygeoapi::start();
    let (s, conf) = p.get_json("/conformance").await;
    assert_eq!(s, 200, "{conf}");
    let classes: Vec<&str> = conf["conformsTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(classes.contains(&"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core"));
    // pygeoapi 0.21 declares neither job-list nor dismiss, though it has both routes.
    assert!(!classes.iter().any(|c| c.ends_with("/conf/job-list")));
    assert!(!classes.iter().any(|c| c.ends_with("/conf/dismiss")));

    let (s, list) = p.get_json("/processes").await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, PROCESSES);

    for id in PROCESSES {
        let (s, d) = p.get_json(&format!("/processes/{id}")).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["id"], id);
        for key in ["title", "description", "version"] {
            assert!(d[key].is_string(), "{id} has no {key}: {d}");
        }
        // pygeoapi replaces the processes' own lists by what its manager can do.
        assert_eq!(
            d["jobControlOptions"],
            json!(["sync-execute", "async-execute"]),
            "{id}"
        );
        assert_eq!(d["outputTransmission"], json!(["value"]), "{id}");
        for (name, input) in d["inputs"].as_object().unwrap() {
            for key in ["title", "description", "schema", "minOccurs", "maxOccurs"] {
                assert!(!input[key].is_null(), "{id}.{name} has no {key}");
            }
        }
        let outputs = d["outputs"].as_object().unwrap();
        assert!(!outputs.is_empty(), "{id} has no outputs");
        for (name, output) in outputs {
            assert!(output["schema"].is_object(), "{id} output {name}");
        }
    }
    let (_, f) = p.get_json("/processes/eodispatch-features").await;
    assert_eq!(f["inputs"]["bbox"]["schema"]["format"], "ogc-bbox");
    assert_eq!(f["inputs"]["bbox"]["minOccurs"], 1);
    assert_eq!(f["inputs"]["count"]["minOccurs"], 0);
    assert_eq!(f["inputs"]["count"]["schema"]["default"], 4);
    assert_eq!(
        f["inputs"]["shape"]["schema"]["enum"],
        json!(["square", "point"])
    );
    assert_eq!(
        f["outputs"]["features"]["schema"]["contentMediaType"],
        "application/geo+json"
    );
    let (_, r) = p.get_json("/processes/eodispatch-raster").await;
    assert_eq!(
        r["inputs"]["bbox"]["schema"]["allOf"][0]["format"],
        "ogc-bbox"
    );
    assert!(r["inputs"]["bbox"]["schema"]["allOf"][1]["$ref"]
        .as_str()
        .unwrap()
        .ends_with("processes-core/bbox.yaml"));
}

#[tokio::test]
async fn features_async_job_from_201_to_results() {
    let p = Pygeoapi::start();
    let inputs = json!({"bbox": bbox_input(), "date": "2023-05-01", "count": 5,
                        "tags": ["a", "b"]});
    let r = execute(&p.url(), "eodispatch-features", inputs, true).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "preference-applied").as_deref(),
        Some("respond-async")
    );
    let location = header(&r, "location").expect("a Location header");
    assert!(
        location.starts_with(&format!("{}/jobs/", p.url())),
        "{location}"
    );
    assert_eq!(r.text().await.unwrap(), "null");
    let job_id = location.rsplit('/').next().unwrap().to_string();

    let status = wait_job(&p, &location, &["successful", "failed"]).await;
    assert_eq!(status["status"], "successful", "{status}");
    assert_eq!(status["jobID"], job_id.as_str());
    assert_eq!(status["processID"], "eodispatch-features");
    assert_eq!(status["progress"], 100);

    let (s, fc) = get_json(&format!("{location}/results")).await;
    assert_eq!(s, 200, "{fc}");
    assert_eq!(fc["type"], "FeatureCollection");
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    for (i, f) in features.iter().enumerate() {
        assert_eq!(f["properties"]["index"], i);
        assert_eq!(f["properties"]["date"], "2023-05-01");
        assert_eq!(f["properties"]["tags"], json!(["a", "b"]));
        let pos = positions(&f["geometry"]);
        assert!(!pos.is_empty());
        assert!(
            pos.iter().all(|&(x, y)| inside(x, y)),
            "feature {i} leaves the bbox: {f}"
        );
    }

    // The harness sees the same job and the request.
    let jobs = p.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["jobID"], job_id.as_str());
    assert_eq!(jobs[0]["status"], "successful");
    let reqs = p.requests().await;
    let post = reqs
        .iter()
        .find(|r| r["method"] == "POST")
        .expect("the POST is recorded");
    assert_eq!(post["path"], "/processes/eodispatch-features/execution");
    assert_eq!(post["prefer"], "respond-async");
    assert_eq!(post["status"], 201);
    assert_eq!(post["authorization"], false);
    assert!(reqs
        .iter()
        .any(|r| r["path"] == format!("/jobs/{job_id}/results").as_str() && r["status"] == 200));
}

#[tokio::test]
async fn sync_execution_and_the_sync_only_process() {
    let p = Pygeoapi::start();
    // Asked for async, the sync-only process runs synchronously: 200, the raw output.
    let r = execute(
        &p.url(),
        "eodispatch-sync-only",
        json!({"lon": 16.37, "lat": 48.2}),
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "preference-applied").as_deref(), Some("wait"));
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/geo+json")
    );
    // A Location even so: a synchronous execution is a job too.
    assert!(header(&r, "location").is_some());
    let fc: Value = r.json().await.unwrap();
    assert_eq!(
        fc["features"][0]["geometry"]["coordinates"],
        json!([16.37, 48.2])
    );

    // No Prefer at all: synchronous, no Preference-Applied.
    let r = execute(&p.url(), "eodispatch-slow", json!({"seconds": 0}), false).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "preference-applied").is_none());
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"slept": 0.0}));

    // Bad input, synchronously: 400 with pygeoapi's exception document.
    let r = execute(
        &p.url(),
        "eodispatch-sync-only",
        json!({"lon": 200, "lat": 0}),
        false,
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "InvalidParameterValue");
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("'lon' must be at most 180"),
        "{e}"
    );

    let jobs = p.jobs().await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert_eq!(jobs[2]["status"], "failed");
}

#[tokio::test]
async fn raster_result_by_reference_is_a_geotiff() {
    let p = Pygeoapi::start();
    let r = execute(
        &p.url(),
        "eodispatch-raster",
        json!({"bbox": bbox_input(), "size": 16}),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["raster"]["type"], "image/tiff; application=geotiff");
    let href = doc["raster"]["href"].as_str().unwrap();
    assert!(href.starts_with(&format!("{}/outputs/", p.url())), "{href}");
    assert!(check_geotiff(href, BBOX).await > 16 * 16);
}

#[tokio::test]
async fn stac_results_as_collection_and_as_features() {
    let p = Pygeoapi::start();
    let r = execute(
        &p.url(),
        "eodispatch-stac",
        json!({"bbox": bbox_input()}),
        true,
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").unwrap();
    wait_job(&p, &location, &["successful"]).await;
    let (s, doc) = get_json(&format!("{location}/results")).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["stac"]["type"], "application/json");
    let (s, collection) = get_json(doc["stac"]["href"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(collection["type"], "Collection");
    assert_eq!(collection["stac_version"], "1.0.0");
    let items: Vec<&str> = collection["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "item")
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    let mid = (BBOX[0] + BBOX[2]) / 2.0;
    let halves = [
        [BBOX[0], BBOX[1], mid, BBOX[3]],
        [mid, BBOX[1], BBOX[2], BBOX[3]],
    ];
    for (href, bounds) in items.iter().zip(halves) {
        let (s, item) = get_json(href).await;
        assert_eq!(s, 200);
        assert_eq!(item["type"], "Feature");
        let asset = &item["assets"]["data"];
        assert_eq!(asset["roles"], json!(["data"]));
        assert_eq!(asset["type"], "image/tiff; application=geotiff");
        check_geotiff(asset["href"].as_str().unwrap(), bounds).await;
    }

    // The features form: STAC Items inline, linking to their collection.
    let r = execute(
        &p.url(),
        "eodispatch-stac",
        json!({"bbox": bbox_input(), "form": "features"}),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let fc: Value = r.json().await.unwrap();
    assert_eq!(fc["type"], "FeatureCollection");
    assert_eq!(fc["features"].as_array().unwrap().len(), 2);
    for f in fc["features"].as_array().unwrap() {
        let coll = f["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "collection")
            .expect("a collection link");
        let (s, c) = get_json(coll["href"].as_str().unwrap()).await;
        assert_eq!(s, 200);
        assert_eq!(c["id"], f["collection"]);
    }
}

#[tokio::test]
async fn failed_and_dismissed_jobs() {
    let p = Pygeoapi::start();
    let r = execute(
        &p.url(),
        "eodispatch-fail",
        json!({"reason": "no data"}),
        true,
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").unwrap();
    let status = wait_job(&p, &location, &["failed", "successful"]).await;
    assert_eq!(status["status"], "failed");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("eodispatch-fail failed: no data"),
        "{status}"
    );
    let (s, e) = get_json(&format!("{location}/results")).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["description"], "job failed");

    // A running job (it reports progress itself) dismissed: gone at once, and the slow
    // process notices and stops.
    let r = execute(
        &p.url(),
        "eodispatch-slow",
        json!({"seconds": 60, "progress": true}),
        true,
    )
    .await;
    let location = header(&r, "location").unwrap();
    let job_id = location.rsplit('/').next().unwrap().to_string();
    let status = wait_job(&p, &location, &["running"]).await;
    assert!(status["progress"].as_u64().unwrap() >= 10, "{status}");
    let (s, e) = get_json(&format!("{location}/results")).await;
    assert_eq!(s, 404);
    assert_eq!(e["type"], "ResultNotReady");
    let r = http().delete(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(d["status"], "dismissed");
    let (s, e) = get_json(&location).await;
    assert_eq!(s, 404, "{e}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slow = p.slow_jobs().await;
        if slow[&job_id]["state"] == "stopped" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow job did not stop: {slow}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.job(&job_id).await.is_none());
}

#[tokio::test]
async fn faults_answer_like_a_gateway() {
    let p = Pygeoapi::start();
    // A gateway that times out after the backend created the job.
    p.fault(
        json!({"method": "POST", "path_suffix": "/execution", "status": 504,
                   "times": 1, "after": true}),
    )
    .await;
    let r = execute(&p.url(), "eodispatch-slow", json!({"seconds": 0}), true).await;
    assert_eq!(r.status(), 504);
    assert!(header(&r, "location").is_none());
    assert!(r.text().await.unwrap().contains("504 Gateway Time-out"));
    let jobs = p.jobs().await;
    assert_eq!(
        jobs.len(),
        1,
        "the job was created behind the gateway: {jobs:?}"
    );

    // Answered without reaching pygeoapi, twice, then through again.
    p.fault(
        json!({"method": "POST", "path_suffix": "/execution", "status": 502,
                   "times": 2, "after": false}),
    )
    .await;
    for _ in 0..2 {
        let r = execute(&p.url(), "eodispatch-slow", json!({"seconds": 0}), true).await;
        assert_eq!(r.status(), 502);
    }
    assert_eq!(p.jobs().await.len(), 1);
    let r = execute(&p.url(), "eodispatch-slow", json!({"seconds": 0}), true).await;
    assert_eq!(r.status(), 201);
    assert_eq!(p.jobs().await.len(), 2);

    // Clearing.
    p.fault(json!({"path_suffix": "/conformance", "status": 503, "times": 5}))
        .await;
    assert_eq!(p.get_json("/conformance").await.0, 503);
    p.clear_faults().await;
    assert_eq!(p.get_json("/conformance").await.0, 200);

    let reqs = p.requests().await;
    let faulted: Vec<(u64, Option<u64>)> = reqs
        .iter()
        .filter(|r| r["fault"] == true)
        .map(|r| (r["status"].as_u64().unwrap(), r["upstream_status"].as_u64()))
        .collect();
    assert_eq!(
        faulted,
        [(504, Some(201)), (502, None), (502, None), (503, None)]
    );
    p.reset().await;
    assert!(p.requests().await.is_empty());
}

#[tokio::test]
async fn gate_makes_the_server_look_down_while_jobs_go_on() {
    let p = Pygeoapi::start_with(Options::default().gated());
    assert_ne!(p.url(), p.direct_url());
    let r = execute(&p.url(), "eodispatch-slow", json!({"seconds": 1.5}), true).await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").unwrap();
    // pygeoapi writes the gate's URL into its links.
    assert!(
        location.starts_with(&format!("{}/jobs/", p.url())),
        "{location}"
    );
    let job_id = location.rsplit('/').next().unwrap().to_string();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(client.get(&location).send().await.unwrap().status(), 200);

    p.gate().close();
    let e = client.get(&location).send().await.unwrap_err();
    assert!(e.is_connect(), "refused while closed: {e:?}");

    p.gate().close_with(Closed::Reset);
    let e = client.get(&location).send().await.unwrap_err();
    assert!(!e.is_timeout(), "reset, not a timeout: {e:?}");

    p.gate().close_with(Closed::Hang);
    let e = client.get(&location).send().await.unwrap_err();
    assert!(e.is_timeout(), "hangs while closed so: {e:?}");

    // Meanwhile the job finished behind the gate.
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.job(&job_id).await.unwrap()["status"] != "successful" {
        assert!(Instant::now() < deadline, "the job did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    p.gate().open();
    let r = client.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = get_json(&format!("{location}/results")).await;
    assert_eq!((s, v), (200, json!({"slept": 1.5})));
    // The same client (pooled connections cut at close) works again too.
    assert_eq!(client.get(&location).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn restart_keeps_jobs_and_port() {
    let mut p = Pygeoapi::start();
    let url = p.url();
    let r = execute(
        &url,
        "eodispatch-features",
        json!({"bbox": bbox_input(), "date": "2024-02-29"}),
        true,
    )
    .await;
    let done = header(&r, "location").unwrap();
    wait_job(&p, &done, &["successful"]).await;
    let r = execute(&url, "eodispatch-slow", json!({"seconds": 60}), true).await;
    let cut = header(&r, "location").unwrap();

    p.stop();
    assert!(!p.is_running());
    let e = http().get(&done).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    p.restart();
    assert_eq!(p.url(), url);
    let (s, v) = get_json(&format!("{done}/results")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["features"].as_array().unwrap().len(), 4);
    // The job that was running when the server died stays as it was, forever.
    let (s, v) = get_json(&cut).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "accepted");
    assert_eq!(p.jobs().await.len(), 2);
}

#[tokio::test]
async fn bearer_tokens_checked_by_introspection() {
    let idp = oidc::Oidc::start(3600);
    let p = Pygeoapi::start_with(Options::introspect_at(&idp.issuer));
    let r = http()
        .get(format!("{}/processes", p.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "www-authenticate").as_deref(), Some("Bearer"));
    let e: Value = r.json().await.unwrap();
    assert!(
        e["type"].as_str().unwrap().ends_with("/unauthorized"),
        "{e}"
    );
    assert_eq!(e["title"], "Unauthorized");
    assert_eq!(e["status"], 401);

    let r = http()
        .get(format!("{}/processes", p.url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let token: Value = http()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(oidc::ROBOT, Some(oidc::ROBOT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let r = http()
        .post(format!("{}/processes/eodispatch-raster/execution", p.url()))
        .bearer_auth(&token)
        .json(&json!({"inputs": {"bbox": bbox_input(), "size": 8}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    // Result files need no token.
    check_geotiff(doc["raster"]["href"].as_str().unwrap(), BBOX).await;

    idp.revoke_all().await;
    let r = http()
        .get(format!("{}/jobs", p.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let reqs = p.requests().await;
    let seen: Vec<(bool, &str, u64)> = reqs
        .iter()
        .filter(|r| !r["path"].as_str().unwrap().starts_with("/outputs/"))
        .map(|r| {
            (
                r["authorization"].as_bool().unwrap(),
                r["auth"].as_str().unwrap_or(""),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (false, "missing", 401),
            (true, "inactive", 401),
            (true, "active", 200),
            (true, "inactive", 401)
        ]
    );
    // Never the token itself.
    assert!(!serde_json::to_string(&reqs).unwrap().contains(&token));
}
