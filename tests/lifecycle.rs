//! The daemon's life: zero-configuration start, restarts and `kill -9` that keep every
//! job, and a graceful shutdown on SIGTERM/SIGINT that lets in-flight requests finish.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{pv_job, raw_status, Child, TestDaemon};
use serde_json::Value;

/// Blocking authorised request through a raw socket (the child tests are sync).
fn request(c: &Child, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_string()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        c.addr,
        c.token(),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let json = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (raw_status(&out), json)
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let mut created = Vec::new();
    for i in 0..25 {
        let (s, j) = d
            .post_json("/unit_jobs", &pv_job(&format!("job {i}")))
            .await;
        assert_eq!(s, 201);
        created.push(j);
    }
    let token = d.token.clone();
    d.stop().await;
    let d = TestDaemon::start(dir.path()).await;
    assert_eq!(d.token, token, "the token is kept across restarts");
    let (_, list) = d.get_json("/unit_jobs?limit=1000").await;
    let mut before: Vec<Value> = created;
    before.reverse();
    // Every field survives (`updated` moves when the scheduler tries the backend;
    // `waiting` is not stored: it says what the daemon finds now).
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("updated");
        v.as_object_mut().unwrap().remove("waiting");
        v
    };
    let after: Vec<Value> = list.as_array().unwrap().iter().map(strip).collect();
    let before: Vec<Value> = before.iter().map(strip).collect();
    assert_eq!(after, before, "every field survives");
    let (_, j) = d.post_json("/unit_jobs", &pv_job("after restart")).await;
    assert_eq!(j["id"], 26, "ids keep counting");
    d.stop().await;
}

#[test]
fn zero_configuration_start_creates_folders() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Child::start(dir.path());
    assert!(
        dir.path().join("results").is_dir(),
        "results folder created"
    );
    assert!(dir.path().join("state/eodispatch.db").is_file());
    assert!(dir.path().join("state/api-token").is_file());
    c.signal("INT");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

/// `kill -9` at any moment loses no acknowledged job, and the store opens again.
#[test]
fn kill_9_keeps_every_acknowledged_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let c = Child::start(dir.path());
        let (_, list) = request(&c, "GET", "/unit_jobs?limit=10000", None);
        let stored = ids(&list);
        for id in &acknowledged {
            assert!(stored.contains(id), "round {round}: job {id} lost");
        }
        // The one request in flight at each kill may have been stored without its
        // answer arriving; nothing else may appear.
        assert!(
            stored.len() <= acknowledged.len() + round,
            "round {round}: {} stored, {} acknowledged",
            stored.len(),
            acknowledged.len()
        );
        // Keep writing from another thread while the daemon is killed.
        let addr = c.addr;
        let token = c.token();
        let writer = std::thread::spawn(move || {
            let mut got = Vec::new();
            let body = pv_job("kill me").to_string();
            for _ in 0..10_000 {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    break;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                if write!(
                    s,
                    "POST /unit_jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .is_err()
                {
                    break;
                }
                let mut out = String::new();
                if s.read_to_string(&mut out).is_err() || raw_status(&out) != 201 {
                    break;
                }
                let v: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
                got.push(v["id"].as_i64().unwrap());
            }
            got
        });
        std::thread::sleep(Duration::from_millis(300 + 200 * round as u64));
        c.signal("KILL");
        let got = writer.join().unwrap();
        assert!(
            !got.is_empty(),
            "round {round}: no job acknowledged before the kill"
        );
        acknowledged.extend(got);
        drop(c);
    }
    let c = Child::start(dir.path());
    let (_, list) = request(&c, "GET", "/unit_jobs?limit=10000", None);
    let stored = ids(&list);
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "acknowledged job {id} lost after kill -9"
        );
    }
    eprintln!(
        "kill -9 x3: {} acknowledged jobs, {} stored",
        acknowledged.len(),
        stored.len()
    );
    let (s, h) = request(&c, "GET", "/health", None);
    assert_eq!((s, h["database"]["status"].as_str()), (200, Some("ok")));
}

/// SIGTERM: a request in flight (body half sent) still completes, new connections
/// are refused, an open event stream ends, and the process exits 0.
#[test]
fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Child::start(dir.path());
    let token = c.token();
    // An open SSE stream.
    let mut sse = TcpStream::connect(c.addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        sse,
        "GET /events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        c.addr
    )
    .unwrap();
    let mut first = [0u8; 256];
    let n = sse.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));
    // A POST whose body is only half sent.
    let body = pv_job("in flight").to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let mut s = TcpStream::connect(c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "POST /unit_jobs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}",
        c.addr,
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(raw_status(&out), 201, "in-flight request completed: {out}");
    // The event stream ends (read returns 0 or the terminating chunk).
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = sse.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
    // The job is there after a restart.
    let c2 = Child::start(dir.path());
    let (_, list) = request(&c2, "GET", "/unit_jobs", None);
    assert_eq!(list[0]["title"], "in flight");
}
