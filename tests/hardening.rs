//! What a local process can do to the API, and what it cannot: half-sent requests,
//! idle connections and event streams are bounded and closed; every refusal, down to
//! a duplicate query parameter or an undecodable path, is problem+json.

mod common;
#[path = "common/fake.rs"]
mod fake;

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
async fn half_sent_requests_neither_starve_the_api_nor_the_downloads() {
    let f = fake::start_fake(0.5, 0.5).await;
    let root = tempfile::tempdir().unwrap();
    let mut cfg = fake::config_for(root.path(), &f.base_url(), 2);
    cfg.header_timeout_s = 1.0;
    let d = TestDaemon::start_with(cfg).await;
    let addr = d.addr;
    // A job whose result will be downloaded while the API is flooded.
    let id = fake::submit(&d, &fake::pv_request(&f.base_url(), "under load")).await;
    // A thousand connections, each with a request whose headers never end.
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        for _ in 0..1000 {
            let Ok(mut s) = TcpStream::connect(addr) else {
                break;
            };
            let _ =
                s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes());
            held.push(s);
        }
        held
    })
    .await
    .unwrap();
    assert!(held.len() >= 900, "opened {}", held.len());
    // A real client still gets its answer at once.
    let started = Instant::now();
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(d.url("/health"))
        .send()
        .await
        .expect("the API answers despite a thousand half-sent requests");
    assert_eq!(r.status().as_u16(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    // The daemon's own download goes on: the result is published.
    fake::wait_for("the result published", Duration::from_secs(60), || async {
        let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        (j["results"]["state"] == "ready").then_some(())
    })
    .await;
    // The half-sent ones are closed by the server.
    let first = tokio::task::spawn_blocking(move || {
        let mut held = held;
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

/// Beyond `max_connections`, connections wait for a slot; half-sent requests give
/// theirs back after `header_timeout_s`, so a real client is served soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_slot() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path());
    cfg.max_connections = 16;
    let d = TestDaemon::start_with(cfg).await;
    let addr = d.addr;
    let held = tokio::task::spawn_blocking(move || {
        (0..16)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX: ").as_bytes())
                    .unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = reqwest::get(d.url("/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let waited = started.elapsed();
    // It waited for the half-sent ones to time out (1 s), not longer than a few.
    assert!(
        waited >= Duration::from_millis(500),
        "{waited:?}: the cap did not hold"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(held);
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

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs one job on the fake through the real binary started with `umask 000` and
/// `extra` environment; the published job folder.
async fn one_job_with_umask_000(
    root: &std::path::Path,
    extra: &[(&str, &str)],
) -> std::path::PathBuf {
    let f = fake::start_fake(0.1, 0.2).await;
    let url = f.base_url();
    let mut env: Vec<(&str, &str)> = vec![
        ("EODISPATCH_BACKENDS__FAKE__URL", url.as_str()),
        ("EODISPATCH_BACKENDS__FAKE__ACCESS_TOKEN", fake::TOKEN),
        ("EODISPATCH_BACKENDS__FAKE__PROVIDER_ID", "fake"),
        ("EODISPATCH_POLL_INTERVAL_MIN_S", "0.1"),
    ];
    env.extend_from_slice(extra);
    let root_owned = root.to_path_buf();
    let env_owned: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let c = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        common::Child::start_full(&root_owned, "000", &env)
    })
    .await
    .unwrap();
    let token = c.token();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/unit_jobs", c.addr))
        .bearer_auth(&token)
        .json(&fake::pv_request(&url, "private"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let dir = fake::wait_for("published", Duration::from_secs(60), || async {
        let j: Value = http
            .get(format!("http://{}/unit_jobs/{id}", c.addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        j["results"]["dir"].as_str().map(std::path::PathBuf::from)
    })
    .await;
    c.signal("TERM");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let dir = one_job_with_umask_000(root.path(), &[]).await;
    assert_eq!(mode(&root.path().join("results")), 0o700, "results folder");
    assert_eq!(mode(&dir), 0o700, "job folder");
    assert_eq!(mode(&dir.join("job.json")), 0o600);
    assert_eq!(mode(&dir.join("results.json")), 0o600);
    // Shared when configured so: the umask decides.
    let root = tempfile::tempdir().unwrap();
    let dir = one_job_with_umask_000(root.path(), &[("EODISPATCH_RESULTS_PRIVATE", "false")]).await;
    assert_eq!(mode(&dir), 0o777);
    assert_eq!(mode(&dir.join("job.json")), 0o666);
}

#[test]
fn a_config_file_with_a_token_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("config.toml");
    std::fs::write(
        &file,
        "[backends.x]\nurl = \"https://openeo.example\"\naccess_token = \"AT-CONFIG-SENTINEL\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = vec![
        ("HOME".to_string(), root.path().display().to_string()),
        (
            "EODISPATCH_CONFIG_DIR".to_string(),
            root.path().display().to_string(),
        ),
    ];
    let e = Config::load_from(&env).unwrap_err().to_string();
    assert!(e.contains("chmod 600") && e.contains("config.toml"), "{e}");
    assert!(!e.contains("AT-CONFIG-SENTINEL"), "{e}");
    // The daemon refuses to start, saying how to fix it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eodispatch"))
        .arg("serve")
        .env("HOME", root.path())
        .envs(common::env_for(root.path(), "127.0.0.1:0"))
        .env("EODISPATCH_CONFIG_DIR", root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load_from(&env).is_ok());
    // Without a secret in it, the file may be readable.
    std::fs::write(&file, "log = \"info\"\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(Config::load_from(&env).is_ok());
}

#[test]
fn a_crash_while_creating_the_api_token_leaves_no_empty_file() {
    let root = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut crashed = common::spawn_serve(
        root.path(),
        &format!("127.0.0.1:{port}"),
        &[("EODISPATCH_FAILPOINT", "token:written")],
    );
    let status = crashed.wait().unwrap();
    assert!(!status.success(), "aborted at the failpoint");
    let token = root.path().join("state/api-token");
    assert!(!token.exists(), "no token file, rather than an empty one");
    // The next start creates a complete one and serves.
    let c = common::Child::start(root.path());
    let text = std::fs::read_to_string(&token).unwrap();
    assert_eq!(text.trim().len(), 64, "{text:?}");
    assert_eq!(mode(&token), 0o600);
    c.signal("TERM");
}

/// A worker that panics is started again (the panic in the log) and the job finishes; a
/// delivery that panicked can be asked for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_workers_are_restarted_and_deliveries_retried() {
    for point in ["panic:scheduler", "panic:delivery"] {
        let f = fake::start_fake(0.1, 0.2).await;
        let root = tempfile::tempdir().unwrap();
        let c = fake::ChildDaemon::start(
            root.path(),
            &f.base_url(),
            2,
            &[("EODISPATCH_FAILPOINT", point)],
        )
        .await;
        let (s, v) = c
            .post_json("/unit_jobs", &fake::pv_request(&f.base_url(), point))
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_i64().unwrap();
        let done = c.wait_status(id, "finished", Duration::from_secs(60)).await;
        assert!(
            c.log_text().contains(&format!("failpoint {point} reached")),
            "{point}: {}",
            c.log_text()
        );
        assert!(
            c.log_text().contains("panicked"),
            "{point}: the panic is logged"
        );
        if point == "panic:delivery" {
            // The panicked delivery left the results pending; asking again delivers.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (_, j) = c.get_json(&format!("/unit_jobs/{id}")).await;
            assert_ne!(j["results"]["state"], "ready", "{j}");
            let (s, v) = c
                .post_json(
                    &format!("/unit_jobs/{id}/results/download"),
                    &serde_json::json!({}),
                )
                .await;
            assert_eq!(s, 202, "{v}");
        }
        fake::wait_for("results ready", Duration::from_secs(60), || async {
            let (_, j) = c.get_json(&format!("/unit_jobs/{id}")).await;
            (j["results"]["state"] == "ready").then_some(())
        })
        .await;
        assert_eq!(f.jobs().len(), 1, "{point}: one remote job, {done}");
    }
}
