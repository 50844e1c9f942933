//! The APEx-compatible endpoints and our extensions, through HTTP against a daemon on
//! port 0: field names, status codes, validation problems, events, OpenAPI.

mod common;

use std::time::Duration;

use common::{pv_job, TestDaemon};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_read_list_delete_a_unit_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (s, job) = d.post_json("/unit_jobs", &pv_job("PV farms Vienna")).await;
    assert_eq!(s, 201, "{job}");
    // APEx field names first, in APEx order, then ours.
    assert_eq!(
        keys(&job)[..8],
        [
            "id",
            "title",
            "label",
            "status",
            "service",
            "parameters",
            "created",
            "updated"
        ]
    );
    for ext in [
        "uuid",
        "format",
        "backend_job_id",
        "progress",
        "error",
        "results",
    ] {
        assert!(job.get(ext).is_some(), "missing {ext} in {job}");
    }
    assert_eq!(job["status"], "created");
    assert_eq!(job["label"], "openeo");
    assert_eq!(job["service"]["namespace"], Value::Null);
    assert_eq!(
        job["parameters"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );
    assert_eq!(job["results"]["state"], "pending");
    let created = job["created"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let id = job["id"].as_i64().unwrap();

    let (s, got) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(s, 200);
    // The scheduler may have touched it since (its backend is unreachable here): then
    // `updated` moved and the job says it waits for the backend.
    let waiting = &got["waiting"];
    assert!(
        waiting.is_null() || waiting["reason"] == "backend_unreachable",
        "{got}"
    );
    let without_updated = |mut v: Value| {
        v.as_object_mut().unwrap().remove("updated");
        v.as_object_mut().unwrap().remove("waiting");
        v
    };
    assert_eq!(without_updated(got), without_updated(job.clone()));

    d.post_json("/unit_jobs", &pv_job("second")).await;
    let (s, list) = d.get_json("/unit_jobs").await;
    assert_eq!(s, 200);
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["second", "PV farms Vienna"], "newest first");
    let (_, one) = d.get_json("/unit_jobs?limit=1&offset=1").await;
    assert_eq!(one[0]["id"], id);
    let (_, none) = d.get_json("/unit_jobs?status=finished").await;
    assert_eq!(none, json!([]));
    let (s, p) = d.get_json("/unit_jobs?status=done&limit=x").await;
    assert_eq!(s, 422);
    let names: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["status", "limit"]);

    let (s, p) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (404, Some("ResultsNotAvailable")),
        "{p}"
    );

    assert_eq!(d.delete(&format!("/unit_jobs/{id}")).await, 204);
    let (s, p) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!((s, p["code"].as_str()), (404, Some("JobNotFound")));
    assert_eq!(d.delete(&format!("/unit_jobs/{id}")).await, 404);
    let (s, p) = d.get_json("/unit_jobs/abc").await;
    assert_eq!(
        (s, p["errors"][0]["name"].as_str()),
        (400, Some("id")),
        "{p}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_keeps_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (_, job) = d.post_json("/unit_jobs", &pv_job("to cancel")).await;
    let id = job["id"].as_i64().unwrap();
    let r = d
        .http
        .post(d.url(&format!("/unit_jobs/{id}/cancel")))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, got) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(got["status"], "canceled");
    let r = d
        .http
        .post(d.url(&format!("/unit_jobs/{id}/cancel")))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    d.stop().await;
}

/// Each invalid request: the field named, the status, and nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_problems_naming_the_field_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = pv_job("bad");
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown label",
            with(&|v| v["label"] = json!("wps")),
            "label",
        ),
        (
            "unknown format",
            with(&|v| v["format"] = json!("png")),
            "format",
        ),
        (
            "missing title",
            with(&|v| {
                v.as_object_mut().unwrap().remove("title");
            }),
            "title",
        ),
        (
            "missing service",
            with(&|v| {
                v.as_object_mut().unwrap().remove("service");
            }),
            "service",
        ),
        (
            "extra field",
            with(&|v| v["colour"] = json!("red")),
            "colour",
        ),
        (
            "ftp endpoint",
            with(&|v| v["service"]["endpoint"] = json!("ftp://x.org/openeo")),
            "service.endpoint",
        ),
        (
            "file endpoint",
            with(&|v| v["service"]["endpoint"] = json!("file:///etc/passwd")),
            "service.endpoint",
        ),
        (
            "bbox west > east",
            with(&|v| v["parameters"]["spatial_extent"]["west"] = json!(17.0)),
            "parameters.spatial_extent.west",
        ),
        (
            "bbox west = east",
            with(&|v| v["parameters"]["spatial_extent"]["east"] = json!(16.342)),
            "parameters.spatial_extent",
        ),
        (
            "bbox south >= north",
            with(&|v| v["parameters"]["spatial_extent"]["south"] = json!(48.008)),
            "parameters.spatial_extent",
        ),
        (
            "bbox lon out of range",
            with(&|v| v["parameters"]["spatial_extent"]["west"] = json!(-181.0)),
            "parameters.spatial_extent.west",
        ),
        (
            "bbox lat out of range",
            with(&|v| v["parameters"]["spatial_extent"]["north"] = json!(91.0)),
            "parameters.spatial_extent.north",
        ),
        (
            "bbox NaN string",
            with(&|v| v["parameters"]["spatial_extent"]["south"] = json!("NaN")),
            "parameters.spatial_extent.south",
        ),
        (
            "open polygon ring",
            with(
                &|v| v["parameters"]["spatial_extent"] = json!({"type": "Polygon", "coordinates": [[[5.17,51.25],[5.18,51.25],[5.18,51.26],[5.17,51.26]]]}),
            ),
            "parameters.spatial_extent",
        ),
        (
            "date not zero padded",
            with(&|v| v["parameters"]["temporal_extent"] = json!(["2024-1-5", "2024-02-01"])),
            "parameters.temporal_extent",
        ),
        (
            "impossible date",
            with(&|v| v["parameters"]["temporal_extent"] = json!(["2024-02-01", "2024-02-30"])),
            "parameters.temporal_extent",
        ),
        (
            "end before start",
            with(&|v| v["parameters"]["temporal_extent"] = json!(["2024-03-01", "2024-02-01"])),
            "parameters.temporal_extent",
        ),
    ];
    for (what, body, field) in cases {
        let r = d
            .http
            .post(d.url("/unit_jobs"))
            .bearer_auth(&d.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{what}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let p: Value = r.json().await.unwrap();
        for k in [
            "type",
            "title",
            "status",
            "detail",
            "code",
            "request_id",
            "errors",
        ] {
            assert!(p.get(k).is_some(), "{what}: no {k} in {p}");
        }
        assert_eq!(p["status"], 422);
        let names: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with(field)),
            "{what}: expected an error on {field}, got {p}"
        );
    }
    // The antimeridian message is explicit.
    let (_, p) = d
        .post_json(
            "/unit_jobs",
            &with(&|v| v["parameters"]["spatial_extent"]["west"] = json!(170.0)),
        )
        .await;
    assert!(p.to_string().contains("antimeridian"), "{p}");
    // Malformed JSON, empty body, non-object.
    for (body, code) in [("{\"title\": ", 400), ("", 400), ("[1,2]", 422)] {
        let (s, p) = d.post_raw("/unit_jobs", body).await;
        assert_eq!(s, code, "{body:?}: {p}");
    }
    // Over the size limit: 413, whether the size is declared (refused before the body
    // is read) or the body is chunked (refused once the limit is passed). Raw sockets,
    // so that the daemon closing early cannot race with a client still sending.
    let addr = d.addr;
    let token = d.token.clone();
    let (declared, chunked) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let head = |extra: &str| {
            format!(
                "POST /unit_jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\n{extra}Connection: close\r\n\r\n"
            )
        };
        let read_all = |mut s: std::net::TcpStream| {
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(head("Content-Length: 2097152\r\n").as_bytes())
            .unwrap();
        let declared = read_all(s);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        for _ in 0..20 {
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let chunked = read_all(s);
        (declared, chunked)
    })
    .await
    .unwrap();
    assert_eq!(common::raw_status(&declared), 413, "{declared}");
    assert!(declared.contains("PayloadTooLarge"), "{declared}");
    assert_eq!(common::raw_status(&chunked), 413, "{chunked}");
    assert_eq!(
        d.job_count().await,
        0,
        "nothing stored for rejected requests"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_tasks_and_jobs_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (_, tiles) = d
        .post_json(
            "/tiles",
            &json!({"grid": "20x20km", "aoi": {"type": "Polygon", "coordinates": [[[5.13,51.35],[4.84,51.33],[4.79,51.12],[5.16,51.12],[5.19,51.34],[5.13,51.35]]]}}),
        )
        .await;
    let cells = tiles["geometries"].as_array().unwrap().clone();
    assert!(cells.len() >= 4, "{tiles}");
    let mut body = pv_job("Upscale A");
    body["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("spatial_extent");
    body["dimension"] = json!({"name": "spatial_extent", "values": cells});
    let (s, task) = d.post_json("/upscale_tasks", &body).await;
    assert_eq!(s, 201, "{task}");
    assert_eq!(task["status"], "created");
    let jobs = task["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), cells.len());
    assert_eq!(jobs[0]["title"], "Upscale A - Processing Job 1");
    // What is sent: the UDP takes a bounding box, so each cell became its box.
    let bbox = &jobs[1]["parameters"]["spatial_extent"];
    let ring = cells[1]["coordinates"][0].as_array().unwrap();
    let west = ring
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert_eq!(bbox["west"].as_f64(), Some(west), "{bbox}");
    assert_eq!(bbox["crs"], 4326);
    assert_eq!(
        jobs[1]["parameters"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );
    let tid = task["id"].as_i64().unwrap();
    let (s, got) = d.get_json(&format!("/upscale_tasks/{tid}")).await;
    assert_eq!(s, 200);
    assert_eq!(got["counts"]["created"], cells.len());

    d.post_json("/unit_jobs", &pv_job("alone")).await;
    let (s, st) = d.get_json("/jobs_status").await;
    assert_eq!(s, 200);
    assert_eq!(keys(&st), ["upscaling_tasks", "processing_jobs"]);
    assert_eq!(st["upscaling_tasks"].as_array().unwrap().len(), 1);
    let pj = st["processing_jobs"].as_array().unwrap();
    assert_eq!(pj.len(), 1, "sub-jobs are not processing jobs: {st}");
    // The APEx summary, in its order, then our one extension (why it waits).
    assert_eq!(
        keys(&pj[0]),
        [
            "id",
            "title",
            "label",
            "status",
            "service",
            "parameters",
            "waiting"
        ]
    );
    let (_, only) = d.get_json("/jobs_status?filter=upscaling").await;
    assert_eq!(only["processing_jobs"], json!([]));
    let (s, _) = d.get_json("/jobs_status?filter=everything").await;
    assert_eq!(s, 422);

    // A task without values, and a bad dimension, are rejected and store nothing.
    let before = d.job_count().await;
    let mut bad = body.clone();
    bad["dimension"]["values"] = json!([]);
    let (s, p) = d.post_json("/upscale_tasks", &bad).await;
    assert_eq!(
        (s, p["errors"][0]["name"].as_str()),
        (422, Some("dimension.values")),
        "{p}"
    );
    assert_eq!(d.job_count().await, before);

    assert_eq!(d.delete(&format!("/upscale_tasks/{tid}")).await, 204);
    assert_eq!(d.job_count().await, 1);
    let (s, _) = d.get_json(&format!("/upscale_tasks/{tid}")).await;
    assert_eq!(s, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_true_kilometres_and_bad_aois_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let aoi = json!({"type": "Polygon", "coordinates": [[[5.13,51.35],[4.84,51.33],[4.79,51.12],[5.16,51.12],[5.19,51.34],[5.13,51.35]]]});
    for grid in ["20x20km", "250x250km"] {
        let (s, v) = d
            .post_json("/tiles", &json!({"aoi": aoi, "grid": grid}))
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["type"], "GeometryCollection");
        for g in v["geometries"].as_array().unwrap() {
            assert_eq!(g["type"], "Polygon");
            let ring = g["coordinates"][0].as_array().unwrap();
            assert_eq!(ring.first(), ring.last());
        }
    }
    let (s, p) = d
        .post_json("/tiles", &json!({"aoi": aoi, "grid": "1x1km"}))
        .await;
    assert_eq!((s, p["errors"][0]["name"].as_str()), (422, Some("grid")));
    let open =
        json!({"type": "Polygon", "coordinates": [[[5.0,51.0],[5.1,51.0],[5.1,51.1],[5.0,51.1]]]});
    let (s, p) = d
        .post_json("/tiles", &json!({"aoi": open, "grid": "20x20km"}))
        .await;
    assert_eq!(s, 422, "{p}");
    assert!(
        p["errors"][0]["name"].as_str().unwrap().starts_with("aoi"),
        "{p}"
    );
    d.stop().await;
}

async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buf: &mut String,
    needle: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.contains(needle) {
            match stream.next().await {
                Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    })
    .await;
    assert_eq!(found, Ok(true), "no {needle:?} in {buf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_one_event_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let resp = d.get("/events").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    read_until(&mut stream, &mut buf, "event: hello").await;
    let (_, job) = d.post_json("/unit_jobs", &pv_job("watched")).await;
    let id = job["id"].as_i64().unwrap();
    read_until(&mut stream, &mut buf, "\"title\":\"watched\"").await;
    d.delete(&format!("/unit_jobs/{id}")).await;
    read_until(&mut stream, &mut buf, "\"deleted\":true").await;
    let job_events: Vec<Value> = buf
        .split("\n\n")
        .filter(|e| e.contains("event: job"))
        .map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect();
    // The first event is the new job, the last its deletion; every event in between
    // is a change (the scheduler trying its unreachable backend).
    assert!(job_events.len() >= 2, "{buf}");
    assert_eq!(job_events[0]["id"], id);
    assert_eq!(job_events[0]["status"], "created");
    assert_eq!(job_events.last().unwrap()["deleted"], true);
    for pair in job_events.windows(2) {
        assert_ne!(pair[0], pair[1], "an event without a change");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_generated_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (s, doc) = d.get_json("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/unit_jobs",
        "/unit_jobs/{id}",
        "/unit_jobs/{id}/results",
        "/unit_jobs/{id}/cancel",
        "/upscale_tasks",
        "/upscale_tasks/{id}",
        "/upscale_tasks/{id}/cancel",
        "/upscale_tasks/{id}/retry",
        "/jobs_status",
        "/tiles",
        "/health",
        "/events",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(paths["/unit_jobs"].get("post").is_some());
    // The task routes document every answer they give.
    for (path, codes) in [
        (
            "/upscale_tasks/{id}/cancel",
            &[
                "200", "400", "401", "403", "404", "408", "409", "413", "415", "502", "503",
            ][..],
        ),
        (
            "/upscale_tasks/{id}/retry",
            &[
                "200", "400", "401", "403", "404", "408", "409", "413", "415",
            ][..],
        ),
    ] {
        let responses = paths[path]["post"]["responses"].as_object().unwrap();
        let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(documented, codes, "{path}");
    }
    for s in ["Task", "TaskSummary", "TaskResults", "StatusCounts"] {
        assert!(
            doc["components"]["schemas"].get(s).is_some(),
            "missing schema {s}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in ["Job", "ProblemBody", "JobRequestBody", "Status"] {
        assert!(schemas.contains_key(s), "missing schema {s}");
    }
    assert!(doc["info"]["description"].as_str().unwrap().contains("UTM"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_checks_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let r = d.http.get(d.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"]["status"], "ok");
    d.stop().await;
}

/// `Idempotency-Key`: a retry or a double click never makes a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_makes_retries_safe() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let post = |key: Option<&str>, body: Value| {
        let mut r = d
            .http
            .post(d.url("/unit_jobs"))
            .bearer_auth(&d.token)
            .json(&body);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, a) = post(Some("k-1"), pv_job("once")).await;
    let (s2, b) = post(Some("k-1"), pv_job("once")).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(a["id"], b["id"], "the same job answers the retry");
    assert_eq!(d.job_count().await, 1);
    let (s, p) = post(Some("k-1"), pv_job("another body")).await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["errors"][0]["name"], "Idempotency-Key");
    assert_eq!(d.job_count().await, 1);
    // Concurrent double click: one job.
    let (x, y) = tokio::join!(
        post(Some("k-2"), pv_job("twice")),
        post(Some("k-2"), pv_job("twice"))
    );
    assert_eq!(x.1["id"], y.1["id"]);
    assert_eq!(d.job_count().await, 2);
    // No key: two jobs.
    post(None, pv_job("free")).await;
    post(None, pv_job("free")).await;
    assert_eq!(d.job_count().await, 4);
    let (s, p) = post(Some(""), pv_job("bad key")).await;
    assert_eq!(
        (s, p["errors"][0]["name"].as_str()),
        (422, Some("Idempotency-Key"))
    );
    // Survives a restart.
    d.stop().await;
    let d = TestDaemon::start(dir.path()).await;
    let r = d
        .http
        .post(d.url("/unit_jobs"))
        .bearer_auth(&d.token)
        .header("Idempotency-Key", "k-1")
        .json(&pv_job("once"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], a["id"]);
    assert_eq!(d.job_count().await, 4);
    d.stop().await;
}
