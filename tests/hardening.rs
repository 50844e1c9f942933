//! What a local process can do to the API, and what it cannot: half-sent requests,
//! idle connections and event streams are bounded and closed; every refusal, down to
//! a duplicate query parameter or an undecodable path, is problem+json.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestDaemon;
use eodispatch::config::Config;
use serde_json::Value;

fn config(root: &std::path::Path) -> Config {
    let mut c = Config::for_root(root);
    c.header_timeout_s = 1.0;
    c.max_connections = 64;
    c.max_event_streams = 2;
    c.request_timeout_s = 1.5;
    c
}

/// Reads until the server closes the connection (or `within` passes); whether it did.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_neither_starve_the_api_nor_stay_open() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(config(root.path())).await;
    let addr = d.addr;
    // 300 connections, each with a request whose headers never end (more than
    // max_connections: the rest wait in the backlog).
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
            .unwrap();
        held.push(s);
    }
    // A real client still gets its answer, within a few header timeouts.
    let started = Instant::now();
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(d.url("/health"))
        .send()
        .await
        .expect("the API answers despite 300 half-sent requests");
    assert_eq!(r.status().as_u16(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The half-sent ones are closed by the server.
    let first = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for s in held.iter_mut().take(20) {
            if closed_by_server(s, Duration::from_secs(8)) {
                closed += 1;
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(first, 20, "every half-sent request is dropped");
    d.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(config(root.path())).await;
    let addr = d.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        // The answer comes, then nothing more is sent on the connection.
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let t = Instant::now();
        (
            closed_by_server(&mut s, Duration::from_secs(6)),
            t.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(closed.0, "an idle connection stays open");
    assert!(closed.1 < Duration::from_secs(4), "{:?}", closed.1);
    d.stop().await;
}

#[tokio::test]
async fn event_streams_are_capped() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(config(root.path())).await;
    let open = || async {
        d.http
            .get(d.url("/events"))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap()
    };
    let a = open().await;
    let b = open().await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = open().await;
    assert_eq!(c.status().as_u16(), 503);
    assert_eq!(
        c.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert!(c.headers().get("retry-after").is_some());
    let v: Value = c.json().await.unwrap();
    assert_eq!(v["code"], "TooManyStreams");
    // A stream that ends gives its slot back.
    drop(a);
    let mut again = None;
    for _ in 0..50 {
        let r = open().await;
        if r.status().as_u16() == 200 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the slot of a closed stream is given back");
    drop(b);
    drop(again);
    d.stop().await;
}

#[tokio::test]
async fn every_refusal_is_problem_json() {
    let root = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(config(root.path())).await;
    let problem = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(kind, "application/problem+json", "{status}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], status);
        assert!(v["request_id"].is_string() && v["code"].is_string(), "{v}");
        (status, v)
    };
    // A query parameter given twice: named.
    for path in [
        "/unit_jobs?limit=1&limit=2",
        "/unit_jobs/1/logs?level=info&level=error",
    ] {
        let (s, v) = problem(d.get(path).await).await;
        assert_eq!(s, 400, "{path}: {v}");
        let name = &v["errors"][0]["name"];
        assert!(name == "limit" || name == "level", "{v}");
        assert!(v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than once"));
    }
    // A path that does not decode.
    for path in ["/files/%FF/x", "/unit_jobs/%FF%FE"] {
        let (s, _) = problem(d.get(path).await).await;
        assert_eq!(s, 400, "{path}");
    }
    // A body that trickles in slower than request_timeout_s: 408, as a problem.
    let addr = d.addr;
    let token = d.token.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            format!(
                "POST /unit_jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\""
            )
            .as_bytes(),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"RequestTimeout\""), "{answer}");
    d.stop().await;
}
