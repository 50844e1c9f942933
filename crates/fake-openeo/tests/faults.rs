//! Fault injection: every kind, `times`/`after`, rules over HTTP, and statistics.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_openeo::{FaultKind, FaultRule};
use serde_json::{json, Value};

#[tokio::test]
async fn status_429_with_retry_after() {
    let fake = fake().await;
    fake.add_fault(FaultRule::too_many_requests("POST /jobs", 3));
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&simple_job("x", "GTiff"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let e: Value = r.json().await.unwrap();
    assert!(e["code"].is_string() && e["message"].is_string());
    assert_eq!(fake.stats().jobs_created, 0);
    // Fired once: the retry succeeds.
    create(&fake, &simple_job("x", "GTiff")).await;
    assert_eq!(fake.stats().count("POST", "/jobs"), 2);
    assert_eq!(fake.stats().faults_fired, 1);
}

#[tokio::test]
async fn status_500_json_and_502_503_504_html() {
    let fake = fake().await;
    fake.add_fault(FaultRule::status("GET /jobs", 500));
    let (code, e) = get_json(&fake, "/jobs").await;
    assert_eq!((code, e["code"].as_str()), (500, Some("Internal")));
    for status in [502u16, 503, 504] {
        fake.add_fault(FaultRule::status("GET /jobs", status));
        let r = client()
            .get(format!("{}/jobs", fake.api_url()))
            .header("Authorization", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<html>") && body.contains(&status.to_string()),
            "{body}"
        );
    }
    let (code, _) = get_json(&fake, "/jobs").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn glob_times_and_after() {
    let fake = fake().await;
    let id = create(&fake, &simple_job("x", "GTiff")).await;
    // Skip 1, then fire twice on GET /jobs/{id} only (not on /jobs/{id}/logs).
    fake.add_fault(FaultRule::status("GET /jobs/*", 503).after(1).times(2));
    let path = format!("/jobs/{id}");
    assert_eq!(get_json(&fake, &path).await.0, 200);
    assert_eq!(get_json(&fake, &format!("{path}/logs")).await.0, 200);
    assert_eq!(get_json(&fake, &path).await.0, 503);
    assert_eq!(get_json(&fake, &path).await.0, 503);
    assert_eq!(get_json(&fake, &path).await.0, 200);
    assert_eq!(fake.stats().count("GET", "/jobs/{job_id}"), 4);

    // times = 0: forever (until cleared).
    fake.add_fault(FaultRule::status("/jobs", 502).times(0));
    for _ in 0..3 {
        assert_eq!(get_json(&fake, "/jobs").await.0, 502);
    }
    fake.clear_faults();
    assert_eq!(get_json(&fake, "/jobs").await.0, 200);
}

#[tokio::test]
async fn delay_answers_slowly_then_normally() {
    let fake = fake().await;
    fake.add_fault(FaultRule::delay("GET /me", 600));
    let t = Instant::now();
    let (code, _) = get_json(&fake, "/me").await;
    assert_eq!(code, 200);
    assert!(t.elapsed() >= Duration::from_millis(600));
    let t = Instant::now();
    get_json(&fake, "/me").await;
    assert!(t.elapsed() < Duration::from_millis(500));
    // And a client timeout sees the slowness.
    fake.add_fault(FaultRule::delay("GET /me", 2000));
    let r = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .get(format!("{}/me", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
}

#[tokio::test]
async fn drop_gives_a_connection_error() {
    let fake = fake().await;
    let id = create(&fake, &simple_job("x", "GTiff")).await;
    fake.add_fault(FaultRule::drop_connection("GET /jobs/*"));
    let r = client()
        .get(format!("{}/jobs/{id}", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await;
    let err = r.expect_err("a dropped connection is an error, not a status");
    assert!(err.status().is_none());
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(get_json(&fake, &format!("/jobs/{id}")).await.0, 200);
    assert_eq!(fake.stats().count("GET", "/jobs/{job_id}"), 2);
}

#[tokio::test]
async fn lose_response_creates_exactly_one_job() {
    let fake = fake().await;
    fake.add_fault(FaultRule::lose_response("POST /jobs"));
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&simple_job("lost but created", "GTiff"))
        .send()
        .await;
    let err = r.expect_err("the client sees a connection error");
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(fake.stats().jobs_created, 1);
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].title.as_deref(), Some("lost but created"));
    // The client can find it by listing.
    let (_, list) = get_json(&fake, "/jobs").await;
    assert_eq!(list["jobs"][0]["title"], "lost but created");
}

#[tokio::test]
async fn truncate_cuts_an_asset_download() {
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &simple_job("x", "GTiff")).await;
    let href = doc["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let size = doc["assets"]["openEO.tif"]["file:size"].as_u64().unwrap();
    fake.add_fault(FaultRule::truncate("GET /jobs/*/results/assets/**", 1000));
    let r = client().get(&href).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let body = r.bytes().await;
    assert!(body.is_err(), "the body must end in an error");
    // Unfaulted again, then cut after 5000 bytes: the client sees exactly those bytes.
    let full = client()
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(full.len() as u64, size);
    fake.add_fault(FaultRule::truncate("GET /jobs/*/results/assets/**", 5000));
    let mut r = client().get(&href).send().await.unwrap();
    let mut got = 0;
    let mut failed = false;
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed);
    assert_eq!(got, 5000);
}

#[tokio::test]
async fn flip_byte_corrupts_one_byte() {
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &simple_job("x", "GTiff")).await;
    let href = doc["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let good = client()
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    fake.add_fault(FaultRule::flip_byte("/jobs/*/results/assets/**", Some(10)));
    let bad = client()
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(good.len(), bad.len());
    let diffs: Vec<usize> = (0..good.len()).filter(|&i| good[i] != bad[i]).collect();
    assert_eq!(diffs, vec![10]);
    // Default offset: the middle.
    fake.add_fault(FaultRule::flip_byte("/jobs/*/results/assets/**", None));
    let bad = client()
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let diffs: Vec<usize> = (0..good.len()).filter(|&i| good[i] != bad[i]).collect();
    assert_eq!(diffs, vec![good.len() / 2]);
}

#[tokio::test]
async fn rules_over_http() {
    let fake = fake().await;
    let r = client()
        .post(format!("{}/_fake/faults", fake.base_url()))
        .json(&json!([
            {"method": "POST", "path": "/jobs", "kind": "status", "status": 429, "retry_after": 7},
            {"method": "GET", "path_contains": "/jobs", "kind": "delay_ms", "delay_ms": 10, "times": 0},
            {"path": "/jobs/*/results", "kind": "drop"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let list: Value = client()
        .get(format!("{}/_fake/faults", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["faults"].as_array().unwrap().len(), 3);
    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .json(&simple_job("x", "GTiff"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let bad = client()
        .post(format!("{}/_fake/faults", fake.base_url()))
        .json(&json!({"kind": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = client()
        .delete(format!("{}/_fake/faults", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    create(&fake, &simple_job("x", "GTiff")).await;

    // The JSON shape round-trips through the Rust type.
    let rule: FaultRule = serde_json::from_value(
        json!({"method": "GET", "path": "/jobs/*", "kind": "truncate", "bytes": 10, "after": 2}),
    )
    .unwrap();
    assert_eq!(rule.kind, FaultKind::Truncate { bytes: 10 });
    assert_eq!((rule.times, rule.after), (1, 2));
}

#[tokio::test]
async fn faults_on_discovery_routes() {
    let fake = fake().await;
    fake.add_fault(FaultRule::status("GET /.well-known/openeo", 503));
    let r = client()
        .get(format!("{}/.well-known/openeo", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    fake.add_fault(FaultRule::status("GET /", 502));
    let r = client().get(fake.api_url()).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let r = client().get(fake.api_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fake.stats().count("GET", "/"), 2);
    assert_eq!(fake.stats().count("GET", "/.well-known/openeo"), 1);
}

#[tokio::test]
async fn oversize_runs_past_the_declared_size_without_a_length() {
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &simple_job("x", "GTiff")).await;
    let href = doc["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let size = doc["assets"]["openEO.tif"]["file:size"].as_u64().unwrap();
    let good = client()
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    fake.add_fault(FaultRule::oversize(
        "GET /jobs/*/results/assets/**",
        100_000,
    ));
    let r = client().get(&href).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size + 100_000);
    assert_eq!(&body[..good.len()], &good[..]);
    assert!(body[good.len()..].iter().all(|&b| b == 0xEE));
    assert_eq!(fake.stats().oversize_bytes_sent, 100_000);
    // A range runs past its Content-Range too.
    fake.add_fault(FaultRule::oversize("GET /jobs/*/results/assets/**", 10));
    let r = client()
        .get(&href)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-99/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap().len(), 110);
    assert_eq!(fake.stats().oversize_bytes_sent, 100_010);
}

#[tokio::test]
async fn redirect_answers_with_location() {
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &simple_job("x", "GTiff")).await;
    let href = doc["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    fake.add_fault(FaultRule::redirect(
        "GET /jobs/*/results/assets/**",
        "http://[fe80::1]:9/x",
    ));
    // Over HTTP too, with another status.
    let r = client()
        .post(format!("{}/_fake/faults", fake.base_url()))
        .json(
            &json!({"path": "/jobs/*/results/assets/**", "kind": "redirect",
                      "location": "/elsewhere", "status": 307}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow.get(&href).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://[fe80::1]:9/x");
    let r = no_follow.get(&href).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/elsewhere");
    let r = no_follow.get(&href).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fake.stats().faults_fired, 2);
}

#[tokio::test]
async fn declared_sizes_replace_file_size() {
    let mut cfg = fake_openeo::FakeConfig::default().with_timing(0.0, 0.1);
    cfg.declared_sizes.insert("openEO.tif".into(), u64::MAX);
    let fake = fake_with(cfg).await;
    let (_, doc) = finished_job(&fake, &simple_job("x", "GTiff")).await;
    assert_eq!(doc["assets"]["openEO.tif"]["file:size"], json!(u64::MAX));
}
