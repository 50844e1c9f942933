//! Local-API security, one test per rule (docs/security.md,
//! "Local API").

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{pv_job, raw_http, raw_status, spawn_serve, TestDaemon};
use serde_json::Value;

fn assert_no_cors(resp: &str) {
    assert!(
        !resp.to_ascii_lowercase().contains("access-control-"),
        "CORS header in {resp}"
    );
}

/// DNS rebinding: only the three loopback Host values with our port pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_must_be_loopback_with_our_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let port = d.addr.port();
    let req = |host_line: &str| {
        format!(
            "GET /unit_jobs HTTP/1.1\r\n{host_line}Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            d.token
        )
    };
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = raw_http(d.addr, &req(&format!("Host: {good}\r\n")));
        assert_eq!(raw_status(&r), 200, "{good}: {r}");
    }
    for bad in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.com:{port}"),
        format!(":{port}"),
        format!("localhost6:{port}"),
        format!("127.0.0.1:{}", port + 1),
        "localhost".to_string(),
    ] {
        let r = raw_http(d.addr, &req(&format!("Host: {bad}\r\n")));
        assert_eq!(raw_status(&r), 403, "{bad}: {r}");
        assert!(r.contains("HostNotAllowed"), "{r}");
        assert_no_cors(&r);
    }
    // An empty Host header.
    let r = raw_http(d.addr, &req("Host: \r\n"));
    assert!(matches!(raw_status(&r), 400 | 403), "{r}");
    // No Host at all (HTTP/1.0).
    let r = raw_http(
        d.addr,
        &format!(
            "GET /unit_jobs HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            d.token
        ),
    );
    assert!(matches!(raw_status(&r), 400 | 403), "{r}");
    // Even /health checks the Host.
    let r = raw_http(
        d.addr,
        "GET /health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw_status(&r), 403, "{r}");
    d.stop().await;
}

/// Browsers are refused (Origin, Referer, Sec-Fetch-Site), and no CORS header is
/// ever sent, not even to a preflight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_requests_are_refused_without_cors() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let host = d.addr.to_string();
    for extra in [
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
        &format!("Origin: http://{host}\r\n"),
        "Referer: https://evil.example/page\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
    ] {
        let r = raw_http(
            d.addr,
            &format!(
                "GET /unit_jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n{extra}Connection: close\r\n\r\n",
                d.token
            ),
        );
        assert_eq!(raw_status(&r), 403, "{extra}: {r}");
        assert!(r.contains("BrowserRequestRejected"));
        assert_no_cors(&r);
    }
    // A cross-site form post with a valid-looking body changes nothing.
    let body = pv_job("csrf").to_string();
    let r = raw_http(
        d.addr,
        &format!(
            "POST /unit_jobs HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(raw_status(&r), 403, "{r}");
    // Preflight.
    let r = raw_http(
        d.addr,
        &format!(
            "OPTIONS /unit_jobs HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(raw_status(&r), 403, "{r}");
    assert_no_cors(&r);
    // Sec-Fetch-Site: none (typed into the address bar) is the user: allowed.
    let r = raw_http(
        d.addr,
        &format!(
            "GET /unit_jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nSec-Fetch-Site: none\r\nConnection: close\r\n\r\n",
            d.token
        ),
    );
    assert_eq!(raw_status(&r), 200, "{r}");
    assert_no_cors(&r);
    assert_eq!(d.job_count().await, 0);
    d.stop().await;
}

/// Every route but /health needs the token, in the Authorization header only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_required_in_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (_, job) = d.post_json("/unit_jobs", &pv_job("x")).await;
    let id = job["id"].as_i64().unwrap();
    let routes = [
        ("GET", "/unit_jobs".to_string()),
        ("GET", format!("/unit_jobs/{id}")),
        ("GET", format!("/unit_jobs/{id}/results")),
        ("DELETE", format!("/unit_jobs/{id}")),
        ("POST", format!("/unit_jobs/{id}/cancel")),
        ("POST", "/unit_jobs".to_string()),
        ("GET", "/upscale_tasks".to_string()),
        ("GET", "/jobs_status".to_string()),
        ("POST", "/tiles".to_string()),
        ("GET", "/events".to_string()),
        ("GET", "/openapi.json".to_string()),
        ("GET", "/no/such/route".to_string()),
    ];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = d.url(path);
        let attempts = [
            d.http.request(m.clone(), &url),
            d.http.request(m.clone(), &url).bearer_auth("0".repeat(64)),
            d.http.request(m.clone(), &url).bearer_auth(&d.token[..63]),
            d.http
                .request(m.clone(), format!("{url}?token={}", d.token)),
            d.http
                .request(m.clone(), &url)
                .header("Cookie", format!("token={}", d.token)),
            d.http
                .request(m.clone(), &url)
                .header("Authorization", format!("Basic {}", d.token)),
        ];
        for a in attempts {
            let r = a.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            assert!(r.headers().contains_key("www-authenticate"));
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["code"], "Unauthorized");
        }
    }
    assert_eq!(d.job_count().await, 1, "nothing changed without the token");
    d.stop().await;
}

/// Mutations with a non-JSON content type are refused with 415 and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_json_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (_, job) = d.post_json("/unit_jobs", &pv_job("keep me")).await;
    let id = job["id"].as_i64().unwrap();
    let body = pv_job("smuggled").to_string();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = d
            .http
            .post(d.url("/unit_jobs"))
            .bearer_auth(&d.token)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ct}");
        let r = d
            .http
            .delete(d.url(&format!("/unit_jobs/{id}")))
            .bearer_auth(&d.token)
            .header("content-type", ct)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "DELETE {ct}");
        let r = d
            .http
            .post(d.url(&format!("/unit_jobs/{id}/cancel")))
            .bearer_auth(&d.token)
            .header("content-type", ct)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "cancel {ct}");
    }
    // A body without any content type.
    let r = d
        .http
        .post(d.url("/unit_jobs"))
        .bearer_auth(&d.token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let (s, still) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!((s, still["status"].as_str()), (200, Some("created")));
    assert_eq!(d.job_count().await, 1);
    // Hardening headers on every answer.
    let r = d.get(&format!("/unit_jobs/{id}")).await;
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["content-security-policy"], "default-src 'none'");
    d.stop().await;
}

/// A non-loopback address is refused unless allowed in config.
#[test]
fn non_loopback_bind_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(dir.path(), "0.0.0.0:0", &[]);
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert_eq!(status, Some(1));
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("allow_remote"), "{err}");
}

/// Explicitly allowed in config, a non-loopback bind starts (and still needs the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_bind_allowed_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = eodispatch::config::Config::for_root(dir.path());
    cfg.allow_remote = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(eodispatch::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    let url = format!("http://127.0.0.1:{port}/unit_jobs");
    let mut status = 0;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            status = r.status().as_u16();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 401);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    // And refused without the setting.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let e = eodispatch::run(
        eodispatch::config::Config::for_root(dir.path()),
        listener,
        async {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("not a loopback address"), "{e}");
}

/// The token file is created 0600 in a 0700 folder, and a readable one is refused.
#[test]
fn token_file_is_private_and_loose_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A permissive umask must not matter.
    let mut c = common::Child::start_with_umask(dir.path(), "000");
    let token_path = dir.path().join("state/api-token");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&token_path), 0o600);
    assert_eq!(mode(token_path.parent().unwrap()), 0o700);
    let token = c.token();
    assert_eq!(token.len(), 64);
    // Not in argv or the environment of the process.
    let pid = c.child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&token));
    assert!(!String::from_utf8_lossy(&environ).contains(&token));
    c.signal("TERM");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
    drop(c);

    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = spawn_serve(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(
        wait_with_timeout(&mut child, Duration::from_secs(20)),
        Some(1)
    );
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("chmod 600"), "{err}");
}

fn wait_with_timeout(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
