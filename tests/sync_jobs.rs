//! `POST /sync_jobs` against the fake openEO backend's `POST /result`: the result is
//! the answer (its media type, 200), a job is kept for it and its result delivered into
//! the results folder; bad input and backend refusals are problems (the job failed,
//! nothing half-written); a client that hangs up does not stop the run; a run cut by a
//! crash is settled at the next start.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::time::Duration;

use common::TestDaemon;
use fake::*;
use fake_openeo::{FaultKind, FaultRule};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(30);

async fn post_sync(d: &TestDaemon, body: &Value) -> reqwest::Response {
    d.http
        .post(d.url("/sync_jobs"))
        .bearer_auth(&d.token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_is_the_answer_and_is_kept_in_the_results_folder() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.2, 0.5).await;
    let d = daemon_for(dir.path(), &fake, 2).await;
    let resp = post_sync(&d, &pv_request(&fake.base_url(), "small area")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/tiff");
    let id: i64 = resp.headers()["x-job-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*"),
        "a TIFF"
    );
    // Processed synchronously: no batch job on the backend, one POST /result.
    let stats = fake.stats();
    assert_eq!(stats.jobs_created, 0);
    assert_eq!(stats.count("POST", "/result"), 1);

    // The job is kept, finished, and its result delivered like a batch job's.
    let j = wait_results(&d, id, "ready", LONG).await;
    assert_eq!(j["status"], "finished", "{j}");
    assert_eq!(j["title"], "small area");
    let folder = std::path::PathBuf::from(j["results"]["dir"].as_str().unwrap());
    let kept = std::fs::read(folder.join("result.tif")).unwrap();
    assert_eq!(kept, bytes.as_ref(), "the same bytes as the answer");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(folder.join("job.json")).unwrap()).unwrap();
    schema::assert_job_json(&manifest);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["path"], "result.tif", "{manifest}");
    assert_eq!(layers[0]["kind"], "raster", "{manifest}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_refusals_are_problems_and_nothing_is_half_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.2, 0.5).await;
    let d = daemon_for(dir.path(), &fake, 2).await;
    let url = fake.base_url();

    // A wrong bounding box: 422 naming it, nothing sent, no job kept.
    let mut bad = pv_request(&url, "bad");
    bad["parameters"]["spatial_extent"]["west"] = json!(20.0);
    let resp = post_sync(&d, &bad).await;
    assert_eq!(resp.status(), 422);
    let p: Value = resp.json().await.unwrap();
    assert!(p.to_string().contains("spatial_extent"), "{p}");
    assert_eq!(fake.stats().count("POST", "/result"), 0);
    assert_eq!(d.job_count().await, 0);

    // The backend refuses: 502 with its message; the job is failed with it.
    fake.add_fault(FaultRule::new(
        "POST /result",
        FaultKind::Status {
            status: 400,
            retry_after: None,
            code: Some("ProcessGraphComplexity".into()),
            message: Some("The process is too complex for synchronous processing.".into()),
            html: Some(false),
        },
    ));
    let resp = post_sync(&d, &pv_request(&url, "refused")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: Value = resp.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("too complex"), "{p}");
    let (_, list) = d.get_json("/unit_jobs").await;
    let j = &list[0];
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error"]["code"], "ProcessGraphComplexity", "{j}");
    assert!(j["results"]["dir"].is_null(), "{j}");
    let entries: Vec<_> = std::fs::read_dir(&d.config.results_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(entries.is_empty(), "nothing published: {entries:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.2, 0.5).await;
    fake.add_fault(FaultRule::new(
        "POST /result",
        FaultKind::Delay { delay_ms: 5000 },
    ));
    let d = daemon_for(dir.path(), &fake, 2).await;
    let request = d
        .http
        .post(d.url("/sync_jobs"))
        .bearer_auth(&d.token)
        .json(&pv_request(&fake.base_url(), "impatient"));
    let call = tokio::spawn(async move { request.send().await });
    // The run has started (the fake holds its answer for 5 s): the client hangs up.
    let id = wait_for("the run to start", LONG, || async {
        let (_, list) = d.get_json("/unit_jobs").await;
        (list[0]["status"] == "running").then(|| list[0]["id"].as_i64().unwrap())
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled(), "the client gave up");
    let j = wait_results(&d, id, "ready", LONG).await;
    assert_eq!(j["status"], "finished", "{j}");
    assert_eq!(fake.stats().count("POST", "/result"), 1, "run once");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_by_a_crash_is_settled_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.2, 0.5).await;
    fake.add_fault(FaultRule::new(
        "POST /result",
        FaultKind::Delay { delay_ms: 20_000 },
    ));
    let mut d = ChildDaemon::start(dir.path(), &fake.base_url(), 2, &[]).await;
    let url = d.url("/sync_jobs");
    let token = d.token();
    let body = pv_request(&fake.base_url(), "cut");
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
    });
    let id = wait_for("the run to start", LONG, || async {
        let (_, list) = d.get_json("/unit_jobs").await;
        (list[0]["status"] == "running").then(|| list[0]["id"].as_i64().unwrap())
    })
    .await;
    d.kill9();
    assert!(call.await.unwrap().is_err(), "the answer never came");
    let d = ChildDaemon::start(dir.path(), &fake.base_url(), 2, &[]).await;
    let j = d.wait_status(id, "failed", LONG).await;
    assert_eq!(j["error"]["code"], "SyncInterrupted", "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("again"),
        "{j}"
    );
}
