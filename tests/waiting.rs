//! Jobs that wait say why: `waiting` on the job (GET /unit_jobs/{id}, the list,
//! /jobs_status, SSE `job` events) for a backend that is unreachable, a login that is
//! missing, and the backend's limit of running jobs; `null` once the job goes on. The
//! login case ending in a login is in tests/auth.rs (device login).

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::time::Duration;

use common::TestDaemon;
use fake::*;
use fake_openeo::{FakeConfig, TokenCheck};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

async fn job(d: &TestDaemon, id: i64) -> Value {
    let (s, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(s, 200, "{j}");
    j
}

/// Waits until job `id` waits for `reason`; returns the job.
async fn wait_reason(d: &TestDaemon, id: i64, reason: &str) -> Value {
    wait_for(&format!("job {id} to wait: {reason}"), LONG, || async {
        let j = job(d, id).await;
        (j["waiting"]["reason"] == reason).then_some(j)
    })
    .await
}

/// `waiting` of job `id` in `GET /unit_jobs` and `GET /jobs_status`.
async fn listed_waiting(d: &TestDaemon, id: i64) -> (Value, Value) {
    let (_, list) = d.get_json("/unit_jobs").await;
    let in_list = list
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .map(|j| j["waiting"].clone())
        .expect("the job is listed");
    let (_, status) = d.get_json("/jobs_status").await;
    let in_status = status["processing_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .map(|j| j["waiting"].clone())
        .expect("the job is in /jobs_status");
    (in_list, in_status)
}

fn rfc3339(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap_or_else(|| panic!("a time: {v}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_unreachable_backend_says_since_when_and_goes_on_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = TestDaemon::start_with(config_for(dir.path(), &url, 2)).await;
    let ev = Events::subscribe(&d).await;
    let id = submit(&d, &pv_request(&url, "backend down")).await;

    // The worker notes its next try once its cycle ends, a moment after the backend
    // was found unreachable.
    let j = wait_for(
        "the job to wait for the backend, with a next try",
        LONG,
        || async {
            let j = job(&d, id).await;
            (j["waiting"]["reason"] == "backend_unreachable" && !j["waiting"]["next_try"].is_null())
                .then_some(j)
        },
    )
    .await;
    assert_eq!(j["status"], "created", "{j}");
    assert!(j["error"].is_null(), "waiting is not failing: {j}");
    let w = &j["waiting"];
    assert_eq!(w["backend"], url.as_str(), "{w}");
    let since = rfc3339(&w["since"]);
    let next = rfc3339(&w["next_try"]);
    assert!(next >= since, "{w}");
    let message = w["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Backend {url} unreachable since ")),
        "{message}"
    );
    assert!(message.contains("(next try at "), "{message}");
    // The backend's entry says since when too.
    let b = backend_state(&d, &url).await;
    assert_eq!(b["state"], "unreachable", "{b}");
    assert_eq!(b["since"], w["since"], "{b}");
    // The same field in the lists and in the job's events.
    let (in_list, in_status) = listed_waiting(&d, id).await;
    assert_eq!(in_list["reason"], "backend_unreachable", "{in_list}");
    assert_eq!(in_status["reason"], "backend_unreachable", "{in_status}");
    wait_for("a job event saying why", LONG, || async {
        ev.of_kind("job")
            .iter()
            .any(|e| e["id"] == id && e["waiting"]["reason"] == "backend_unreachable")
            .then_some(())
    })
    .await;

    // The backend comes up: the job goes on and waits for nothing.
    let _f = start_fake_on(port, 0.3, 1.5).await;
    let j = wait_for("the job to go on", LONG, || async {
        let j = job(&d, id).await;
        (j["status"] != "created").then_some(j)
    })
    .await;
    assert!(j["waiting"].is_null(), "{j}");
    assert!(backend_state(&d, &url).await["since"].is_null());
    let (in_list, in_status) = listed_waiting(&d, id).await;
    assert!(in_list.is_null() && in_status.is_null());
    wait_for("a job event with nothing to wait for", LONG, || async {
        ev.of_kind("job")
            .iter()
            .any(|e| e["id"] == id && e["status"] != "created" && e["waiting"].is_null())
            .then_some(())
    })
    .await;
    wait_status(&d, id, "finished", LONG).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_login_says_what_to_run_or_click() {
    let dir = tempfile::tempdir().unwrap();
    // The fake wants a bearer (any); the daemon has none for it.
    let fake = start_fake(0.2, 0.5).await;
    let url = fake.base_url();
    let mut cfg = config_for(dir.path(), &url, 2);
    cfg.backends.get_mut("fake").unwrap().access_token = None;
    let d = TestDaemon::start_with(cfg).await;
    let ev = Events::subscribe(&d).await;
    let id = submit(&d, &pv_request(&url, "no login")).await;

    let j = wait_reason(&d, id, "login_required").await;
    assert_eq!(j["status"], "created", "{j}");
    assert!(j["error"].is_null(), "waiting is not failing: {j}");
    let message = j["waiting"]["message"].as_str().unwrap();
    let backend = url.trim_end_matches('/');
    assert!(
        message.contains(&format!("`eodispatch login {backend}`")),
        "{message}"
    );
    assert!(message.contains("Log in"), "{message}");
    assert!(
        j["waiting"]["next_try"].is_null(),
        "it waits for the user: {j}"
    );
    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["state"], "login_required", "{b}");
    assert_eq!(b["login"]["possible"], true, "{b}");
    let (in_list, in_status) = listed_waiting(&d, id).await;
    assert_eq!(in_list["reason"], "login_required");
    assert_eq!(in_status["reason"], "login_required");
    wait_for("a job event saying why", LONG, || async {
        ev.of_kind("job")
            .iter()
            .any(|e| e["id"] == id && e["waiting"]["reason"] == "login_required")
            .then_some(())
    })
    .await;
    // Still waiting a while later, still not failed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let j = job(&d, id).await;
    assert_eq!(j["waiting"]["reason"], "login_required", "{j}");
    assert_eq!(fake.stats().jobs_created, 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_offers_no_login_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut fc = FakeConfig::default().with_timing(0.2, 0.3);
    fc.token_check = TokenCheck::Anonymous;
    fc.providers = Some(Vec::new());
    let fake = fake_openeo::start(fc).await.unwrap();
    let url = fake.base_url();
    let mut cfg = config_for(dir.path(), &url, 2);
    cfg.backends.get_mut("fake").unwrap().access_token = None;
    let d = TestDaemon::start_with(cfg).await;
    let id = submit(&d, &pv_request(&url, "anonymous")).await;
    let j = wait_status(&d, id, "finished", LONG).await;
    assert!(j["waiting"].is_null(), "{j}");
    let b = wait_for("the backend's providers to be known", LONG, || async {
        let b = backend_state(&d, &url).await;
        (b["login"]["state"] == "not_needed").then_some(b)
    })
    .await;
    assert_eq!(b["login"]["possible"], false, "{b}");
    assert!(b["providers"].as_array().unwrap().is_empty(), "{b}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_behind_the_backends_limit_says_so_until_a_slot_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.2, 2.0).await;
    let url = fake.base_url();
    let d = daemon_for(dir.path(), &fake, 1).await;
    let ev = Events::subscribe(&d).await;
    let first = submit(&d, &pv_request(&url, "first")).await;
    wait_status(&d, first, "queued", LONG).await;
    let second = submit(&d, &pv_request(&url, "second")).await;

    let j = wait_reason(&d, second, "backend_limit").await;
    assert_eq!(j["status"], "created", "{j}");
    let message = j["waiting"]["message"].as_str().unwrap();
    assert!(
        message.contains("limit of 1 running job on"),
        "names the limit: {message}"
    );
    assert!(message.contains("max_running_jobs"), "{message}");
    assert!(job(&d, first).await["waiting"].is_null());
    let (in_list, in_status) = listed_waiting(&d, second).await;
    assert_eq!(in_list["reason"], "backend_limit");
    assert_eq!(in_status["reason"], "backend_limit");
    assert_eq!(fake.stats().jobs_created, 1, "the second is not sent");

    // The first ends: the second is sent and waits for nothing.
    wait_status(&d, first, "finished", LONG).await;
    let j = wait_for("the second job to go on", LONG, || async {
        let j = job(&d, second).await;
        (j["status"] != "created").then_some(j)
    })
    .await;
    assert!(j["waiting"].is_null(), "{j}");
    let events: Vec<Value> = ev
        .of_kind("job")
        .into_iter()
        .filter(|e| e["id"] == second)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["waiting"]["reason"] == "backend_limit"),
        "{events:?}"
    );
    wait_status(&d, second, "finished", LONG).await;
    d.stop().await;
}
