//! Batch jobs: creation and validation, remote UDPs, the timed lifecycle, listing, cancel,
//! update, delete, logs, plans and forced statuses.

mod common;

use std::time::Duration;

use common::*;
use fake_openeo::{FakeConfig, JobPlan, JobStatus, PlanRule};
use serde_json::{json, Value};

async fn post_job(fake: &fake_openeo::FakeHandle, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn create_answers_201_with_location_and_identifier() {
    let fake = fake().await;
    let mut body = udp_job("PV farms", APEX_URL, "GTiff");
    body["job_options"] = json!({"driver-memory": "2g"});
    body["plan"] = json!("free");
    body["budget"] = json!(10);
    body["log_level"] = json!("debug");
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.headers()["openeo-identifier"]
        .to_str()
        .unwrap()
        .to_string();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("{}/jobs/{id}", fake.api_url()));
    assert!(id.starts_with("j-") && id.len() == 18, "{id}");
    assert!(r.bytes().await.unwrap().is_empty());

    let snap = fake.job(&id).unwrap();
    assert_eq!(snap.title.as_deref(), Some("PV farms"));
    assert_eq!(snap.description.as_deref(), Some("test job PV farms"));
    assert_eq!(snap.status, JobStatus::Created);
    assert_eq!(snap.process, body["process"]);
    assert_eq!(snap.extra["job_options"]["driver-memory"], "2g");
    assert_eq!(snap.plan, Some(json!("free")));
    assert_eq!(snap.log_level, "debug");
    assert_eq!(fake.stats().jobs_created, 1);
    assert_eq!(fake.stats().count("POST", "/jobs"), 1);

    let (code, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(job["status"], "created");
    assert_eq!(job["progress"], 0);
    assert_eq!(job["process"], body["process"]);
    assert!(job["usage"].is_null() && job["costs"].is_null());
}

#[tokio::test]
async fn create_validates_the_body() {
    let fake = fake().await;
    let (code, e) = post_job(&fake, &json!({"title": "no process"})).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessGraphMissing"))
    );
    let (code, e) = post_job(&fake, &json!({"process": {"process_graph": {}}})).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessGraphMissing"))
    );
    let no_result = json!({"process": {"process_graph": {"a": {"process_id": "load_collection", "arguments": {}}}}});
    let (code, e) = post_job(&fake, &no_result).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessGraphInvalid"))
    );
    let two_results = json!({"process": {"process_graph": {
        "a": {"process_id": "load_collection", "arguments": {}, "result": true},
        "b": {"process_id": "save_result", "arguments": {}, "result": true}}}});
    let (code, e) = post_job(&fake, &two_results).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessGraphInvalid"))
    );
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, e) = post_job(&fake, &simple_job("x", "PNG-of-doom")).await;
    assert_eq!((code, e["code"].as_str()), (400, Some("FormatUnsupported")));
    assert_eq!(fake.stats().jobs_created, 0);
}

#[tokio::test]
async fn remote_udps_resolve_by_file_name() {
    let fake = fake().await;
    // The APEx raw URL and the fake's own copy both resolve.
    for ns in [
        APEX_URL.to_string(),
        fake.udp_url("eurac_pv_farm_detection"),
    ] {
        let (code, e) = post_job(&fake, &udp_job("ok", &ns, "GTiff")).await;
        assert_eq!(code, 201, "{ns}: {e}");
    }
    // Unknown file.
    let (code, e) = post_job(
        &fake,
        &udp_job("x", "https://example.org/udps/does_not_exist.json", "GTiff"),
    )
    .await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessNamespaceInvalid"))
    );
    // process_id != the UDP's id.
    let mut body = udp_job("x", APEX_URL, "GTiff");
    body["process"]["process_graph"]["euracpvfarmdetection1"]["process_id"] =
        json!("other_process");
    let (code, e) = post_job(&fake, &body).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessNamespaceInvalid"))
    );
    // An argument that is not a parameter (the benchmark scenario's `bbox`).
    let mut body = udp_job("x", APEX_URL, "GTiff");
    body["process"]["process_graph"]["euracpvfarmdetection1"]["arguments"] =
        json!({"bbox": {"west": 16.3, "south": 47.9, "east": 16.4, "north": 48.0}});
    let (code, e) = post_job(&fake, &body).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessParameterInvalid"))
    );
    assert!(e["message"].as_str().unwrap().contains("'bbox'"), "{e}");
    // A required parameter missing (cropsar1d needs geometry, startdate, enddate).
    let body = json!({"process": {"process_graph": {"c": {
        "process_id": "cropsar1d", "namespace": fake.udp_url("cropsar1d"),
        "arguments": {"startdate": "2024-01-01", "enddate": "2024-02-01"}, "result": true}}}});
    let (code, e) = post_job(&fake, &body).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (400, Some("ProcessParameterRequired"))
    );
    assert_eq!(fake.stats().jobs_created, 2);
}

#[tokio::test]
async fn udp_without_save_result_uses_parameter_defaults() {
    let fake = fake().await;
    let body = json!({"process": {"process_graph": {"pv": {
        "process_id": "eurac_pv_farm_detection", "namespace": APEX_URL,
        "arguments": {}, "result": true}}}});
    let (_, doc) = finished_job(&fake, &body).await;
    assert!(doc["assets"]["openEO.tif"].is_object(), "{doc}");
    assert_eq!(
        doc["extent"]["spatial"]["bbox"][0],
        json!([16.342, 47.962, 16.414, 48.008])
    );
    assert_eq!(
        doc["extent"]["temporal"]["interval"][0][0],
        "2023-05-01T00:00:00Z"
    );
}

#[tokio::test]
async fn lifecycle_follows_the_plan() {
    // Wide margins: the checks must hold on a slow, busy machine.
    let fake = fake_with(FakeConfig::default().with_timing(1.5, 4.0)).await;
    let id = create(&fake, &simple_job("life", "GTiff")).await;
    let (_, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "created");
    start(&fake, &id).await;
    let (_, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["progress"], 0);
    let job = wait_for(&fake, &id, "running").await;
    let p1 = job["progress"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "running");
    let p2 = job["progress"].as_u64().unwrap();
    assert!(p2 > p1 && p2 < 100, "{p1} {p2}");
    assert!(job["usage"].is_null());
    // Starting again while running has no effect.
    start(&fake, &id).await;
    let job = wait_for(&fake, &id, "finished").await;
    assert_eq!(job["progress"], 100);
    assert!(job["costs"].as_f64().unwrap() > 0.0);
    assert_eq!(job["usage"]["duration"]["unit"], "seconds");
    assert!(job["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "result"));
    assert!(job["created"].as_str().unwrap().ends_with('Z'));
    // Lazily generated log entries carry the times of the stages.
    let (_, logs) = get_json(&fake, &format!("/jobs/{id}/logs")).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn listing_is_paginated_and_omits_process() {
    let fake = fake().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&fake, &simple_job(&format!("job {i}"), "GTiff")).await);
    }
    let (code, all) = get_json(&fake, "/jobs").await;
    assert_eq!(code, 200);
    let jobs = all["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(all["links"].as_array().unwrap().is_empty());
    for j in jobs {
        assert!(j.get("process").is_none());
        for key in ["id", "title", "status", "created", "updated", "progress"] {
            assert!(j.get(key).is_some(), "{key}");
        }
    }
    // Newest first, two per page, `next` links until the end.
    let mut seen = Vec::new();
    let mut url = format!("{}/jobs?limit=2", fake.api_url());
    loop {
        let page: Value = client()
            .get(&url)
            .header("Authorization", TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
        {
            Some(next) => url = next["href"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn cancel_restart_update_delete() {
    let fake = fake_with(FakeConfig::default().with_timing(0.1, 30.0)).await;
    let id = create(&fake, &simple_job("long", "GTiff")).await;
    start(&fake, &id).await;
    wait_for(&fake, &id, "running").await;

    // PATCH is locked while running.
    let r = client()
        .patch(format!("{}/jobs/{id}", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&json!({"title": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "JobLocked");

    // Cancel.
    let r = client()
        .delete(format!("{}/jobs/{id}/results", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "canceled");
    let (code, e) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!((code, e["code"].as_str()), (400, Some("JobNotFinished")));

    // PATCH works now.
    let r = client()
        .patch(format!("{}/jobs/{id}", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&json!({"title": "renamed", "description": "new"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(fake.job(&id).unwrap().title.as_deref(), Some("renamed"));

    // Restart from canceled.
    fake.set_default_plan(JobPlan::finishing(0.0, 0.2));
    start(&fake, &id).await;
    wait_for(&fake, &id, "finished").await;

    // Delete.
    let r = client()
        .delete(format!("{}/jobs/{id}", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, e) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!((code, e["code"].as_str()), (404, Some("JobNotFound")));
    assert!(fake.jobs().is_empty());
    let (code, e) = get_json(&fake, "/jobs/j-0000000000000000/logs").await;
    assert_eq!((code, e["code"].as_str()), (404, Some("JobNotFound")));
}

#[tokio::test]
async fn estimate_answers() {
    let fake = fake().await;
    let id = create(&fake, &simple_job("e", "GTiff")).await;
    let (code, est) = get_json(&fake, &format!("/jobs/{id}/estimate")).await;
    assert_eq!(code, 200);
    assert!(est["costs"].is_number());
    assert!(est["duration"].as_str().unwrap().starts_with("PT"));
}

#[tokio::test]
async fn logs_honour_offset_level_and_limit() {
    let fake = fake_with(FakeConfig::default().with_timing(0.05, 0.2)).await;
    let mut body = simple_job("logs", "GTiff");
    body["log_level"] = json!("debug");
    let id = create(&fake, &body).await;
    start(&fake, &id).await;
    wait_for(&fake, &id, "finished").await;

    let (code, all) = get_json(&fake, &format!("/jobs/{id}/logs")).await;
    assert_eq!(code, 200);
    assert_eq!(all["level"], "debug");
    let entries = all["logs"].as_array().unwrap();
    let levels: Vec<&str> = entries
        .iter()
        .map(|e| e["level"].as_str().unwrap())
        .collect();
    assert!(levels.contains(&"info") && levels.contains(&"debug") && levels.contains(&"warning"));
    for e in entries {
        assert!(e["id"].is_string() && e["message"].is_string() && e["time"].is_string());
    }
    let ids: Vec<u64> = entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // offset = last id seen.
    let second = entries[1]["id"].as_str().unwrap();
    let (_, rest) = get_json(&fake, &format!("/jobs/{id}/logs?offset={second}")).await;
    assert_eq!(rest["logs"].as_array().unwrap().len(), entries.len() - 2);
    assert_eq!(rest["logs"][0]["id"], entries[2]["id"]);

    // level = minimum severity.
    let (_, warn) = get_json(&fake, &format!("/jobs/{id}/logs?level=warning")).await;
    assert_eq!(warn["level"], "warning");
    assert!(warn["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["level"] == "warning" || e["level"] == "error"));
    assert!(!warn["logs"].as_array().unwrap().is_empty());

    // limit with a `next` link.
    let (_, page) = get_json(&fake, &format!("/jobs/{id}/logs?limit=2")).await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 2);
    assert_eq!(page["links"][0]["rel"], "next");

    // A job at the default log level hides debug entries.
    let id2 = create(&fake, &simple_job("info", "GTiff")).await;
    start(&fake, &id2).await;
    wait_for(&fake, &id2, "finished").await;
    let (_, l) = get_json(&fake, &format!("/jobs/{id2}/logs?level=debug")).await;
    assert_eq!(l["level"], "info");
    assert!(l["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["level"] != "debug"));
}

#[tokio::test]
async fn plan_rules_decide_outcome_and_errors_give_424() {
    let fake = fake_with(FakeConfig::default().with_timing(0.05, 0.2).with_plan_rule(
        PlanRule::new("fail", JobPlan::failing(0.05, 0.1, "Out of memory")),
    ))
    .await;
    let id = create(&fake, &simple_job("this one will fail", "GTiff")).await;
    start(&fake, &id).await;
    let job = wait_for(&fake, &id, "error").await;
    assert!(job["usage"].is_object());
    let (code, entry) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!(code, 424);
    assert_eq!(entry["level"], "error");
    assert_eq!(entry["message"], "Out of memory");
    let (_, errors) = get_json(&fake, &format!("/jobs/{id}/logs?level=error")).await;
    assert_eq!(errors["logs"].as_array().unwrap().len(), 1);
    assert_eq!(errors["logs"][0]["message"], "Out of memory");

    // Rules over HTTP, matched on the job id.
    let id2 = create(&fake, &simple_job("plain", "GTiff")).await;
    let r = client()
        .post(format!("{}/_fake/plan", fake.base_url()))
        .json(&json!({"match": id2, "outcome": "error", "error_message": "Quota exceeded", "running_secs": 0.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    start(&fake, &id2).await;
    wait_for(&fake, &id2, "error").await;
    // The default plan over HTTP.
    let r = client()
        .post(format!("{}/_fake/plan", fake.base_url()))
        .json(&json!({"outcome": "canceled", "queued_secs": 0.0, "running_secs": 0.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let id3 = create(&fake, &simple_job("plain", "GTiff")).await;
    start(&fake, &id3).await;
    wait_for(&fake, &id3, "canceled").await;
}

#[tokio::test]
async fn forced_status_in_rust_and_over_http() {
    let fake = fake().await;
    let id = create(&fake, &simple_job("forced", "GTiff")).await;
    assert!(fake.force_status(&id, JobStatus::Running));
    let (_, job) = get_json(&fake, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "running");
    let r = client()
        .post(format!("{}/_fake/jobs/{id}/status", fake.base_url()))
        .json(&json!({"status": "error", "message": "Forced failure"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, entry) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!(code, 424);
    assert_eq!(entry["message"], "Forced failure");
    let r = client()
        .post(format!("{}/_fake/jobs/j-nope/status", fake.base_url()))
        .json(&json!({"status": "finished"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!fake.force_status("j-nope", JobStatus::Finished));
    // Forced finished has results.
    fake.force_status(&id, JobStatus::Finished);
    let (code, doc) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!(code, 200, "{doc}");
}

#[tokio::test]
async fn control_endpoints_and_reset() {
    let fake = fake().await;
    let id = create(&fake, &simple_job("ctl", "GTiff")).await;
    let jobs: Value = client()
        .get(format!("{}/_fake/jobs", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["status"], "created");
    assert!(jobs[0]["process"]["process_graph"].is_object());
    let stats: Value = client()
        .get(format!("{}/_fake/stats", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["jobs_created"], 1);
    assert_eq!(stats["requests"]["POST /jobs"], 1);
    assert!(stats["requests"].get("GET /_fake/jobs").is_none());
    let r = client()
        .post(format!("{}/_fake/reset", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(fake.jobs().is_empty());
    assert_eq!(fake.stats().total(), 0);
    fake.reset();
}
