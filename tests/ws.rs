//! The APEx-shaped WebSockets `/ws/jobs_status` and `/ws/upscale_tasks/{id}`: frames
//! `{type, data, message}` (init, loading, status, error), pushed from the daemon's own
//! events (a change arrives well before the interval; sockets do not poll the
//! platforms), the API token in the Authorization header only, close 1011 with
//! `TASK_NOT_FOUND`, close 1001 when the daemon stops.

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use common::TestDaemon;
use fake::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(d: &TestDaemon, path: &str, token: Option<&str>) -> Result<Socket, String> {
    let mut req = format!("ws://{}{path}", d.addr)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            Err(format!("{} {body}", resp.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The next text frame as JSON (within 5 s); `Err` with the close frame, if any.
async fn next(s: &mut Socket) -> Result<Value, Option<(CloseCode, String)>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a frame within 5 s");
        match m {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(c))) => {
                return Err(c.map(|c| (c.code, c.reason.to_string())));
            }
            Some(Ok(_)) => continue,
            _ => return Err(None),
        }
    }
}

/// Reads frames until a `status` frame whose data satisfies `want`.
async fn status_until(s: &mut Socket, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "no such status frame in time");
        let f = next(s).await.expect("the stream goes on");
        if f["type"] == "status" && want(&f["data"]) {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_status_frames_follow_changes_not_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let mut s = connect(&d, "/ws/jobs_status?interval=60", Some(&d.token))
        .await
        .unwrap();
    let init = next(&mut s).await.unwrap();
    assert_eq!(
        init,
        json!({"type": "init", "data": null, "message": "Starting status stream"})
    );
    let loading = next(&mut s).await.unwrap();
    assert_eq!(loading["type"], "loading", "{loading}");
    assert!(loading["data"].is_null());
    let first = next(&mut s).await.unwrap();
    assert_eq!(first["type"], "status", "{first}");
    assert!(first["message"].is_null());
    assert!(first.get("task_id").is_none(), "{first}");
    let (_, same) = d.get_json("/jobs_status").await;
    assert_eq!(first["data"], same, "the data is GET /jobs_status");

    // A new job shows within seconds, although the interval is a minute.
    let t0 = Instant::now();
    let (code, job) = d.post_json("/unit_jobs", &common::pv_job("pushed")).await;
    assert_eq!(code, 201);
    let f = status_until(&mut s, Duration::from_secs(5), |data| {
        data["processing_jobs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j["id"] == job["id"]))
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(f["data"]["upscaling_tasks"].is_array());

    // The filter is honoured.
    let mut only = connect(&d, "/ws/jobs_status?filter=upscaling", Some(&d.token))
        .await
        .unwrap();
    next(&mut only).await.unwrap();
    next(&mut only).await.unwrap();
    let f = next(&mut only).await.unwrap();
    assert_eq!(f["data"]["processing_jobs"], json!([]), "{f}");

    // The daemon stops: the socket is closed as "going away".
    d.stop().await;
    let end = loop {
        match next(&mut s).await {
            Ok(_) => continue,
            Err(c) => break c,
        }
    };
    assert_eq!(end.map(|c| c.0), Some(CloseCode::Away));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_in_the_header_and_bad_queries_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let e = connect(&d, "/ws/jobs_status", None).await.unwrap_err();
    assert!(e.starts_with("401 "), "{e}");
    let e = connect(&d, "/ws/jobs_status", Some("wrong"))
        .await
        .unwrap_err();
    assert!(e.starts_with("401 "), "{e}");
    // The hosted API's `?token=`: refused, saying where the token goes.
    let e = connect(
        &d,
        &format!("/ws/jobs_status?token={}", d.token),
        Some(&d.token),
    )
    .await
    .unwrap_err();
    assert!(e.starts_with("422 "), "{e}");
    assert!(e.contains("Authorization header"), "{e}");
    assert!(!e.contains(&d.token), "the token is not echoed: {e}");
    for q in [
        "interval=0",
        "interval=soon",
        "filter=everything",
        "colour=red",
    ] {
        let e = connect(&d, &format!("/ws/jobs_status?{q}"), Some(&d.token))
            .await
            .unwrap_err();
        let field = q.split('=').next().unwrap();
        assert!(e.starts_with("422 ") && e.contains(field), "{q}: {e}");
    }
    // A plain GET is told that this is a WebSocket.
    let (code, body) = d.get_json("/ws/jobs_status").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["code"], "NotAWebSocket", "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stream_follows_its_jobs_and_an_unknown_task_closes_1011() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.3, 0.6).await;
    let url = fake.base_url();
    let d = daemon_for(dir.path(), &fake, 2).await;

    let mut missing = connect(&d, "/ws/upscale_tasks/42", Some(&d.token))
        .await
        .unwrap();
    let init = next(&mut missing).await.unwrap();
    assert_eq!(init["task_id"], 42, "{init}");
    assert_eq!(next(&mut missing).await.unwrap()["type"], "loading");
    let err = next(&mut missing).await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["message"], "The requested task was not found.");
    let close = next(&mut missing).await.unwrap_err();
    assert_eq!(
        close,
        Some((CloseCode::Error, "TASK_NOT_FOUND".to_string()))
    );

    let mut body = pv_request(&url, "two tiles");
    let params = body["parameters"].as_object_mut().unwrap();
    let extent = params.remove("spatial_extent").unwrap();
    let mut other = extent.clone();
    other["west"] = json!(16.414);
    other["east"] = json!(16.486);
    body["dimension"] = json!({"name": "spatial_extent", "values": [extent, other]});
    let (code, task) = d.post_json("/upscale_tasks", &body).await;
    assert_eq!(code, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let mut s = connect(&d, &format!("/ws/upscale_tasks/{id}"), Some(&d.token))
        .await
        .unwrap();
    let first = status_until(&mut s, Duration::from_secs(5), |_| true).await;
    assert_eq!(first["task_id"], id);
    assert_eq!(first["data"]["id"], id);
    assert_eq!(first["data"]["jobs"].as_array().unwrap().len(), 2);
    // Frames follow the jobs to the end.
    let done = status_until(&mut s, Duration::from_secs(30), |t| {
        t["status"] == "finished"
    })
    .await;
    assert_eq!(done["data"]["counts"]["finished"], 2, "{done}");
    // A client may close; the daemon is fine with it.
    s.send(Message::Close(None)).await.unwrap();
    let (code, _) = d.get_json("/health").await;
    assert_eq!(code, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_do_not_poll_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    // Jobs that run for a while: the scheduler polls the fake meanwhile.
    let fake = start_fake(0.2, 30.0).await;
    let url = fake.base_url();
    let d = daemon_for(dir.path(), &fake, 4).await;
    for i in 0..2 {
        let id = submit(&d, &pv_request(&url, &format!("long {i}"))).await;
        wait_status(&d, id, "running", Duration::from_secs(20)).await;
    }
    let window = Duration::from_secs(3);
    let before = fake.stats().total();
    tokio::time::sleep(window).await;
    let alone = fake.stats().total() - before;

    let mut sockets = Vec::new();
    for _ in 0..20 {
        let mut s = connect(&d, "/ws/jobs_status?interval=0.5", Some(&d.token))
            .await
            .unwrap();
        next(&mut s).await.unwrap();
        sockets.push(s);
    }
    let before = fake.stats().total();
    let until = Instant::now() + window;
    let mut frames = 0;
    while Instant::now() < until {
        for s in &mut sockets {
            if let Ok(Some(Ok(Message::Text(_)))) =
                tokio::time::timeout(Duration::from_millis(5), s.next()).await
            {
                frames += 1;
            }
        }
    }
    let with_sockets = fake.stats().total() - before;
    assert!(frames >= 40, "the sockets were served: {frames} frames");
    assert!(
        with_sockets <= alone * 2 + 10,
        "20 sockets made the daemon ask the backend more: {alone} requests in {window:?} \
         alone, {with_sockets} with the sockets"
    );
    d.stop().await;
}
