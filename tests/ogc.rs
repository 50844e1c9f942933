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
#[path = "common/oidc.rs"]
mod oidc;
#[path = "common/schema.rs"]
mod schema;

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
    let m = serde_json::from_str(&text).unwrap();
    schema::assert_job_json(&m);
    (dir, m)
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

#[tokio::test]
async fn a_sync_only_process_runs_once_and_its_answer_is_the_result() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-sync-only",
            "A point",
            json!({"lon": 16.37, "lat": 48.2}),
        ),
    )
    .await;
    let done = wait_status(&d, id, "finished", Duration::from_secs(60)).await;
    assert_eq!(done["progress"], 100.0);
    let j = wait_ready(&d, id).await;
    let (dir, m) = manifest(&j);
    let path = m["layers"][0]["path"].as_str().unwrap().to_string();
    assert!(path.ends_with(".geojson"), "{m}");
    let fc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&path)).unwrap()).unwrap();
    assert_eq!(
        fc["features"][0]["geometry"]["coordinates"],
        json!([16.37, 48.2])
    );
    assert_eq!(executions(&server).await.len(), 1, "run once");
    // Nothing of the kept answer is left behind in the staging area.
    let incoming = d.config.results_dir.join(".incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    d.stop().await;
}

#[tokio::test]
async fn outputs_by_reference_and_stac_are_downloaded_as_files() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    let bbox = json!({"bbox": [16.0, 48.0, 16.5, 48.5], "crs": CRS84});
    let raster = submit(
        &d,
        &job(
            &server,
            "eodispatch-raster",
            "Raster",
            json!({"bbox": bbox, "size": 32}),
        ),
    )
    .await;
    let collection = submit(
        &d,
        &job(
            &server,
            "eodispatch-stac",
            "STAC collection",
            json!({"bbox": bbox}),
        ),
    )
    .await;
    let features = submit(
        &d,
        &job(
            &server,
            "eodispatch-stac",
            "STAC features",
            json!({"bbox": bbox, "form": "features"}),
        ),
    )
    .await;
    // The raster: a GeoTIFF by reference, read by the GDAL helper.
    let j = wait_ready(&d, raster).await;
    let (dir, m) = manifest(&j);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    assert!(layers[0]["path"].as_str().unwrap().ends_with(".tif"), "{m}");
    let bytes = std::fs::read(dir.join(layers[0]["path"].as_str().unwrap())).unwrap();
    assert!(bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let remote = results["assets"]["raster"]["alternate"]["remote"]["href"]
        .as_str()
        .unwrap();
    assert!(remote.starts_with(&server.url()), "{results}");
    // STAC followed to the items' assets, both forms: two GeoTIFFs each.
    for id in [collection, features] {
        let j = wait_ready(&d, id).await;
        let (dir, m) = manifest(&j);
        let mut paths: Vec<String> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["path"].as_str().unwrap().to_string())
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 2, "{id}: {m}");
        for p in &paths {
            assert!(p.ends_with(".tif"), "{p}");
            assert!(dir.join(p).is_file());
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn a_failing_process_says_why_and_a_failed_job_can_be_retried() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-fail",
            "Doomed",
            json!({"reason": "no cloud-free scene"}),
        ),
    )
    .await;
    let failed = wait_status(&d, id, "failed", Duration::from_secs(60)).await;
    assert_eq!(failed["error"]["code"], "BackendJobFailed");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("no cloud-free scene"), "{failed}");
    // The status message is the log.
    let (s, logs) = d.get_json(&format!("/unit_jobs/{id}/logs")).await;
    assert_eq!(s, 200, "{logs}");
    assert_eq!(logs["logs"][0]["level"], "error");
    assert!(logs["logs"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no cloud-free scene"));
    // Retry: a new attempt (new UUID), sent again, fails again.
    let before = failed["uuid"].clone();
    let (s, again) = d
        .post_json(&format!("/unit_jobs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["status"], "created");
    assert!(again["error"].is_null() && again["backend_job_id"].is_null());
    assert_ne!(again["uuid"], before);
    wait_status(&d, id, "failed", Duration::from_secs(60)).await;
    assert_eq!(executions(&server).await.len(), 2);
    // A finished job is never run again.
    let ok = submit(
        &d,
        &job(
            &server,
            "eodispatch-sync-only",
            "Fine",
            json!({"lon": 1.0, "lat": 2.0}),
        ),
    )
    .await;
    wait_status(&d, ok, "finished", Duration::from_secs(60)).await;
    let (s, v) = d
        .post_json(&format!("/unit_jobs/{ok}/retry"), &json!({}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "JobNotRetryable");
    d.stop().await;
}

#[tokio::test]
async fn cancel_dismisses_the_remote_job() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-slow",
            "Slow",
            json!({"seconds": 120, "progress": true}),
        ),
    )
    .await;
    let running = wait_status(&d, id, "running", Duration::from_secs(60)).await;
    assert!(running["progress"].as_f64().is_some(), "{running}");
    let remote = running["backend_job_id"].as_str().unwrap().to_string();
    let (s, v) = d
        .post_json(&format!("/unit_jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    let dismissals: Vec<Value> = server
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "DELETE")
        .collect();
    assert_eq!(dismissals.len(), 1, "{dismissals:?}");
    assert!(dismissals[0]["path"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/jobs/{remote}")));
    // The server forgot the job and the process stopped.
    assert!(server.job(&remote).await.is_none());
    wait_for(
        "the slow process to stop",
        Duration::from_secs(10),
        || async { (server.slow_jobs().await[&remote]["state"] == "stopped").then_some(()) },
    )
    .await;
    d.stop().await;
}

/// The real binary with `extra` environment (a failpoint), for crash tests.
async fn child(root: &Path, extra: &[(&str, &str)]) -> fake::ChildDaemon {
    fake::ChildDaemon::start(root, "http://127.0.0.1:9", 2, extra).await
}

/// The daemon aborts at `failpoint` while submitting; restarted without it, the job
/// finishes with exactly one remote job on the server.
async fn crash_at(failpoint: &str, remote_after_crash: usize) {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let mut c = child(root.path(), &[("EODISPATCH_FAILPOINT", failpoint)]).await;
    let (s, v) = c
        .post_json(
            "/unit_jobs",
            &job(&server, "eodispatch-slow", "Crash", json!({"seconds": 0.5})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let status = c.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "aborted at {failpoint}");
    assert!(c
        .log_text()
        .contains(&format!("failpoint {failpoint} reached")));
    assert_eq!(server.jobs().await.len(), remote_after_crash, "{failpoint}");
    drop(c);
    let c = child(root.path(), &[]).await;
    let done = c.wait_status(id, "finished", Duration::from_secs(60)).await;
    let jobs = server.jobs().await;
    assert_eq!(
        jobs.len(),
        1,
        "{failpoint}: exactly one remote job: {jobs:?}"
    );
    assert_eq!(done["backend_job_id"], jobs[0]["jobID"], "{failpoint}");
    assert_eq!(executions(&server).await.len(), 1, "{failpoint}");
}

#[tokio::test]
async fn a_crash_before_the_submission_is_sent_submits_once() {
    crash_at("submit:before_post", 0).await;
}

#[tokio::test]
async fn a_crash_right_after_the_submission_finds_the_job_again() {
    crash_at("submit:after_post", 1).await;
}

#[tokio::test]
async fn a_crash_after_linking_goes_on_with_the_job() {
    crash_at("submit:after_link", 1).await;
}

#[tokio::test]
async fn kill_9_while_a_job_runs_then_restart() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let mut c = child(root.path(), &[]).await;
    let (_, v) = c
        .post_json(
            "/unit_jobs",
            &job(&server, "eodispatch-slow", "Killed", json!({"seconds": 3})),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    c.wait_status(id, "queued", Duration::from_secs(30)).await;
    c.kill9();
    drop(c);
    let c = child(root.path(), &[]).await;
    let done = c.wait_status(id, "finished", Duration::from_secs(60)).await;
    assert_eq!(server.jobs().await.len(), 1);
    assert_eq!(executions(&server).await.len(), 1);
    assert_eq!(done["backend_status"], "successful");
}

#[tokio::test]
async fn a_lost_answer_is_reconciled_from_the_job_list() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    // Another client's job of the same process, older: never mistaken for ours.
    let (s, _) = server.get_json("/processes").await;
    assert_eq!(s, 200);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/processes/eodispatch-slow/execution",
            server.url()
        ))
        .header("accept", "application/json")
        .json(&json!({"inputs": {"seconds": 0.1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // (Seconds apart: a job of the same process at the same moment could be either.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The gateway times out after the server created our job.
    server
        .fault(json!({"method": "POST", "path_suffix": "/execution", "status": 504, "after": true}))
        .await;
    let id = submit(
        &d,
        &job(&server, "eodispatch-slow", "Lost", json!({"seconds": 0.5})),
    )
    .await;
    let done = wait_status(&d, id, "finished", Duration::from_secs(60)).await;
    let jobs = server.jobs().await;
    assert_eq!(jobs.len(), 2, "the other client's and ours: {jobs:?}");
    assert_eq!(executions(&server).await.len(), 2, "never sent twice");
    assert_eq!(
        done["backend_job_id"], jobs[1]["jobID"],
        "the newer one is ours"
    );
    d.stop().await;
}

#[tokio::test]
async fn without_a_job_list_a_lost_answer_is_uncertain_and_never_resent() {
    let server = Pygeoapi::start();
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    // The answer is lost and the server's job list is gone (404).
    server
        .fault(json!({"method": "POST", "path_suffix": "/execution", "status": 504, "after": true}))
        .await;
    server
        .fault(
            json!({"method": "GET", "path_suffix": "/jobs", "status": 404, "times": 1000,
                      "body": "{\"code\": \"NotFound\", \"description\": \"no job list\"}",
                      "content_type": "application/json"}),
        )
        .await;
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-slow",
            "Uncertain",
            json!({"seconds": 0.5}),
        ),
    )
    .await;
    let failed = wait_status(&d, id, "failed", Duration::from_secs(60)).await;
    assert_eq!(failed["error"]["code"], "SubmissionUncertain", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot tell") && message.contains("retry"),
        "{message}"
    );
    // It stays that way: not sent again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(executions(&server).await.len(), 1);
    let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(j["status"], "failed");
    // The user looked and decides to send it again.
    server.clear_faults().await;
    let (s, _) = d
        .post_json(&format!("/unit_jobs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, 200);
    wait_status(&d, id, "finished", Duration::from_secs(60)).await;
    assert_eq!(executions(&server).await.len(), 2);
    d.stop().await;
}

#[tokio::test]
async fn the_server_down_then_back() {
    let server = Pygeoapi::start_with(Options::default().gated());
    let root = tempfile::tempdir().unwrap();
    let d = daemon(root.path()).await;
    // Down before the job is sent: it waits, the backend says unreachable.
    let id = submit(
        &d,
        &job(&server, "eodispatch-slow", "Patient", json!({"seconds": 2})),
    )
    .await;
    // (The description was read when the job was accepted; now the server goes away.)
    server.gate().close();
    let id2 = submit(
        &d,
        &job(
            &server,
            "eodispatch-slow",
            "Patient 2",
            json!({"seconds": 2}),
        ),
    )
    .await;
    wait_for("backend unreachable", Duration::from_secs(30), || async {
        let (_, list) = d.get_json("/backends").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|b| b["url"] == server.url() && b["label"] == "ogc_api_process")
            .filter(|b| b["state"] == "unreachable")
            .cloned()
    })
    .await;
    let (_, j) = d.get_json(&format!("/unit_jobs/{id2}")).await;
    assert!(
        ["created", "queued"].contains(&j["status"].as_str().unwrap()),
        "{j}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.gate().open();
    for id in [id, id2] {
        wait_status(&d, id, "finished", Duration::from_secs(120)).await;
    }
    assert_eq!(executions(&server).await.len(), 2, "each sent once");
    // Down while a job runs: it keeps its status, then finishes.
    let id3 = submit(
        &d,
        &job(&server, "eodispatch-slow", "Through", json!({"seconds": 3})),
    )
    .await;
    wait_status(&d, id3, "queued", Duration::from_secs(30)).await;
    server.gate().close();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, j) = d.get_json(&format!("/unit_jobs/{id3}")).await;
    assert_eq!(j["status"], "queued", "{j}");
    server.gate().open();
    wait_status(&d, id3, "finished", Duration::from_secs(120)).await;
    assert_eq!(executions(&server).await.len(), 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_openid_connect_after_a_device_login() {
    if !oidc::secret_service().await {
        return;
    }
    let idp = oidc::Oidc::start(3600);
    let server = Pygeoapi::start_with(Options::introspect_at(&idp.issuer));
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path());
    cfg.backends.insert(
        "ades".into(),
        eodispatch::config::BackendConfig {
            url: server.url(),
            label: eodispatch::job::Label::OgcApiProcess,
            issuer: Some(idp.issuer.clone()),
            client_id: Some("eodispatch-public".into()),
            ..Default::default()
        },
    );
    let d = TestDaemon::start_with(cfg).await;
    // Before the login the server describes nothing: a clear 409.
    let describe =
        json!({"label": "ogc_api_process", "service": service(&server, "eodispatch-features")});
    let (s, v) = d.post_json("/params", &describe).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "LoginRequired");
    // A job is accepted and waits for the login (checked once the server describes it).
    let id = submit(
        &d,
        &job(
            &server,
            "eodispatch-sync-only",
            "After login",
            json!({"lon": 3.0, "lat": 4.0}),
        ),
    )
    .await;
    wait_for(
        "the job to wait for a login",
        Duration::from_secs(30),
        || async {
            let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
            (j["waiting"]["reason"] == "login_required" && j["status"] == "created").then_some(())
        },
    )
    .await;
    // The provider comes from config.toml (OGC has no /credentials/oidc).
    let entry = |list: &Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|b| b["url"] == server.url())
            .cloned()
            .unwrap_or_else(|| panic!("the server in {list}"))
    };
    let (_, list) = d.get_json("/backends").await;
    let b = entry(&list);
    assert_eq!(b["label"], "ogc_api_process");
    assert_eq!(b["providers"][0]["issuer"], idp.issuer.as_str(), "{b}");
    assert_ne!(b["login"]["state"], "logged_in", "{b}");
    // A device login, as for an openEO backend; tokens in the keyring.
    let (s, started) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": server.url(), "method": "device"}),
        )
        .await;
    assert_eq!(s, 202, "{started}");
    oidc::approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    let done = wait_status(&d, id, "finished", Duration::from_secs(60)).await;
    assert!(done["error"].is_null(), "{done}");
    let (_, list) = d.get_json("/backends").await;
    assert_eq!(entry(&list)["login"]["state"], "logged_in");
    // Every request of the daemon to the server carried a token the provider vouched for.
    let sent: Vec<Value> = server
        .requests()
        .await
        .into_iter()
        .filter(|r| r["auth"] == "active")
        .collect();
    assert!(
        sent.iter()
            .any(|r| r["path"].as_str().unwrap().ends_with("/execution")),
        "{sent:?}"
    );
    let (s, v) = d.post_json("/params", &describe).await;
    assert_eq!(s, 200, "{v}");
    d.stop().await;
}
