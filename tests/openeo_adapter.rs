//! The openEO adapter ([`eodispatch::platform::openeo`]) against real HTTP servers: the
//! workspace's fake openEO backend (`crates/fake-openeo`) for the API and its fault
//! injection, and a few raw TCP servers for what the fake cannot do (cross-host links
//! and redirects, to check where the bearer goes).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eodispatch::job::OutputFormat;
use eodispatch::platform::http::Bearer;
use eodispatch::platform::openeo::{BatchJob, OpenEoBackend};
use eodispatch::platform::PlatformError as OpenEoError;
use fake_openeo::{FakeConfig, FakeHandle, FaultKind, FaultRule, TokenCheck};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The access token used throughout; no error text may contain it.
const TOKEN: &str = "AT-s3cr3t-0123456789abcdef";

/// The UDP fixture used for jobs.
const UDP: &str = "eurac_pv_farm_detection";

// ============================================================================
// Helpers
// ============================================================================

/// A fake backend with short job timings.
async fn fake_with(config: FakeConfig) -> FakeHandle {
    fake_openeo::start(config)
        .await
        .expect("fake backend starts")
}

async fn fake() -> FakeHandle {
    fake_with(FakeConfig::default().with_timing(0.2, 0.6)).await
}

/// An adapter for `fake`, logged in.
fn backend(fake: &FakeHandle) -> OpenEoBackend {
    let b = OpenEoBackend::new(&fake.base_url());
    b.set_bearer(Some(Bearer::oidc("fake", TOKEN)));
    b
}

/// The eurac PV farm arguments the openEO Python client sends for the UDP.
fn arguments() -> Map<String, Value> {
    json!({
        "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326},
        "temporal_extent": ["2023-05-01", "2023-09-30"]
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn body(fake: &FakeHandle, title: &str) -> Map<String, Value> {
    OpenEoBackend::job_body(
        title,
        "eodispatch test job",
        UDP,
        &fake.udp_url(UDP),
        &arguments(),
        OutputFormat::Gtiff,
    )
}

/// The error, after checking that neither its message nor its `Debug` form leaks the
/// token, a signed-URL query or an HTML page.
fn clean(e: OpenEoError) -> OpenEoError {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains("?expires="), "signed query leaked: {text}");
        assert!(!text.contains("&signature="), "signed query leaked: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("<html"),
            "HTML leaked: {text}"
        );
    }
    e
}

/// Polls a job until it reaches a terminal status; returns every status seen and the
/// last answer.
async fn wait_terminal(b: &OpenEoBackend, id: &str) -> (Vec<String>, BatchJob) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let j = b.job(id).await.expect("job status");
        if seen.last() != Some(&j.status) {
            seen.push(j.status.clone());
        }
        if matches!(j.status.as_str(), "finished" | "error" | "canceled") {
            return (seen, j);
        }
        assert!(Instant::now() < deadline, "job {id} stuck in {seen:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One request as a raw server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Request line, e.g. `GET /jobs?limit=100 HTTP/1.1`.
    line: String,
    /// Whether an `Authorization` header came.
    authorization: bool,
}

/// A raw HTTP/1.1 server answering every request with `answer(request line)` =
/// (status line, extra headers, body). Returns its base URL and the requests it saw.
async fn raw_server(
    answer: impl Fn(&str) -> (String, Vec<(String, String)>, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                let authorization = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
                seen.lock().unwrap().push(Seen {
                    line: line.clone(),
                    authorization,
                });
                let (status, headers, body) = answer(&line);
                let mut out = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn json_answer(v: Value) -> (String, Vec<(String, String)>, String) {
    (
        "200 OK".into(),
        vec![("content-type".into(), "application/json".into())],
        v.to_string(),
    )
}

fn not_found() -> (String, Vec<(String, String)>, String) {
    (
        "404 Not Found".into(),
        vec![("content-type".into(), "application/json".into())],
        json!({"id": "x", "code": "NotFound", "message": "Resource not found."}).to_string(),
    )
}

// ============================================================================
// Discovery and capabilities
// ============================================================================

/// Version discovery finds the fake's API URL from its base URL, once.
#[tokio::test]
async fn discovery_picks_the_api_url_and_is_cached() {
    let fake = fake().await;
    let b = backend(&fake);
    assert_eq!(b.endpoint(), fake.base_url());
    assert_eq!(b.request_count(), 0, "new() does no I/O");
    assert_eq!(
        b.api_url().await.unwrap(),
        fake.api_url().trim_end_matches('/')
    );
    assert_eq!(
        b.api_url().await.unwrap(),
        fake.api_url().trim_end_matches('/')
    );
    let caps = b.capabilities().await.unwrap();
    assert_eq!(caps.api_version, "1.2.0");
    assert!(caps.supports("POST", "/jobs"));
    assert!(caps.supports("DELETE", "/jobs/{job_id}/results"));
    assert!(caps.supports_remote_udp());
    assert!(b.lists_jobs().await);
    let again = b.capabilities().await.unwrap();
    assert!(Arc::ptr_eq(&caps, &again), "capabilities are cached");
    let stats = fake.stats();
    assert_eq!(stats.count("GET", "/.well-known/openeo"), 1);
    assert_eq!(stats.count("GET", "/"), 1);
    assert_eq!(b.request_count(), 2);
    // Clones share the cache and the counter.
    let c = b.clone();
    c.api_url().await.unwrap();
    assert_eq!(c.request_count(), 2);
}

/// Given the API URL itself (no well-known document there), the endpoint is used as is.
#[tokio::test]
async fn discovery_falls_back_to_the_endpoint() {
    let fake = fake().await;
    let b = OpenEoBackend::new(&fake.api_url());
    assert_eq!(
        b.api_url().await.unwrap(),
        fake.api_url().trim_end_matches('/')
    );
    assert_eq!(b.capabilities().await.unwrap().api_version, "1.2.0");
}

/// A backend that cannot be reached: `Unreachable`, not cached, retried next time.
#[tokio::test]
async fn unreachable_backend() {
    let b = OpenEoBackend::new(&format!("http://127.0.0.1:{}", closed_port()));
    b.set_bearer(Some(Bearer::oidc("fake", TOKEN)));
    let e = clean(b.api_url().await.unwrap_err());
    assert!(matches!(e, OpenEoError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(e.code(), "BackendUnreachable");
    let e = clean(b.create_job(&Map::new()).await.unwrap_err());
    assert!(matches!(e, OpenEoError::Unreachable { .. }), "{e:?}");
    assert!(!b.lists_jobs().await);
    assert_eq!(b.request_count(), 3);
}

// ============================================================================
// The job life cycle
// ============================================================================

/// create → start → status progresses → finished → listed, logs, results.
#[tokio::test]
async fn create_start_poll_list_logs_results() {
    let fake = fake().await;
    let b = backend(&fake);
    let sent = body(&fake, "eodispatch lifecycle 1");
    let id = b.create_job(&sent).await.unwrap();

    // The fake got exactly our process graph.
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    assert_eq!(jobs[0].title.as_deref(), Some("eodispatch lifecycle 1"));
    assert_eq!(jobs[0].description.as_deref(), Some("eodispatch test job"));
    assert_eq!(jobs[0].process, sent["process"]);

    let j = b.job(&id).await.unwrap();
    assert_eq!(j.id, id);
    assert_eq!(j.status, "created");
    assert_eq!(j.title.as_deref(), Some("eodispatch lifecycle 1"));

    // Results before the end: JobNotFinished.
    let e = clean(b.results(&id).await.unwrap_err());
    assert_eq!(e.code(), "JobNotFinished", "{e:?}");

    b.start_job(&id).await.unwrap();
    b.start_job(&id).await.unwrap(); // idempotent on the backend
    let (seen, last) = wait_terminal(&b, &id).await;
    assert_eq!(last.status, "finished", "{seen:?}");
    assert_eq!(last.progress, Some(100.0));
    assert!(last.updated.is_some());
    assert!(
        seen.iter().any(|s| s == "queued" || s == "running"),
        "{seen:?}"
    );

    let listed = b.list_jobs().await.unwrap();
    let mine = listed.iter().find(|j| j.id == id).expect("listed");
    assert_eq!(mine.status, "finished");
    assert_eq!(mine.title.as_deref(), Some("eodispatch lifecycle 1"));

    let logs = b.logs(&id, None, None).await.unwrap();
    let entries = logs["logs"].as_array().expect("logs array");
    assert!(!entries.is_empty());
    let last_id = entries.last().unwrap()["id"].as_str().unwrap().to_string();
    let after = b.logs(&id, Some(&last_id), None).await.unwrap();
    assert!(after["logs"].as_array().unwrap().is_empty(), "{after}");
    let warnings = b.logs(&id, None, Some("warning")).await.unwrap();
    for e in warnings["logs"].as_array().unwrap() {
        assert!(
            matches!(e["level"].as_str(), Some("warning" | "error")),
            "{e}"
        );
    }

    let results = b.results(&id).await.unwrap();
    let tif = &results["assets"]["openEO.tif"];
    assert!(tif["href"].as_str().unwrap().contains("expires="), "{tif}");
    assert_eq!(tif["roles"], json!(["data"]));

    // Every request carried the bearer in the fake's view: it never refused one.
    let stats = fake.stats();
    assert_eq!(stats.count("POST", "/jobs"), 1);
    assert_eq!(stats.count("POST", "/jobs/{job_id}/results"), 2);
}

/// A job that fails on the backend: status `error`, logs hold the error, results 424.
#[tokio::test]
async fn failed_job_reports_error_logs_and_424() {
    let plan = fake_openeo::JobPlan::failing(0.1, 0.2, "Out of memory in the fake cluster");
    let fake = fake_with(
        FakeConfig::default()
            .with_timing(0.1, 0.2)
            .with_plan_rule(fake_openeo::PlanRule::new("doomed", plan)),
    )
    .await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "doomed job")).await.unwrap();
    b.start_job(&id).await.unwrap();
    let (_, last) = wait_terminal(&b, &id).await;
    assert_eq!(last.status, "error");
    let logs = b.logs(&id, None, Some("error")).await.unwrap();
    assert!(logs.to_string().contains("Out of memory"), "{logs}");
    let e = clean(b.results(&id).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Rejected { status: 424, message, .. } if message.contains("Out of memory")),
        "{e:?}"
    );
}

/// Cancel stops a running job; delete removes it (then 404 `JobNotFound`).
#[tokio::test]
async fn cancel_and_delete() {
    let fake = fake_with(FakeConfig::default().with_timing(0.0, 30.0)).await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "to cancel")).await.unwrap();
    b.start_job(&id).await.unwrap();
    assert_eq!(b.job(&id).await.unwrap().status, "running");
    b.cancel_job(&id).await.unwrap();
    assert_eq!(b.job(&id).await.unwrap().status, "canceled");
    b.delete_job(&id).await.unwrap();
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::NotFound { code, .. } if code == "JobNotFound"),
        "{e:?}"
    );
    assert!(!e.is_transient());
    assert!(fake.jobs().is_empty());
}

/// More jobs than one page: `rel=next` links are followed and every job is returned.
#[tokio::test]
async fn list_follows_next_links() {
    let fake = fake().await;
    let b = backend(&fake);
    let mut ids = HashSet::new();
    for i in 0..130 {
        let id = b
            .create_job(&body(&fake, &format!("bulk {i}")))
            .await
            .unwrap();
        ids.insert(id);
    }
    let listed = b.list_jobs().await.unwrap();
    let got: HashSet<String> = listed.into_iter().map(|j| j.id).collect();
    assert_eq!(got, ids);
    assert!(
        fake.stats().count("GET", "/jobs") >= 2,
        "more than one page was fetched: {:?}",
        fake.stats()
    );
}

// ============================================================================
// Error mapping
// ============================================================================

/// No bearer: 401 `AuthenticationRequired` → `Auth`.
#[tokio::test]
async fn missing_login_is_auth() {
    let fake = fake().await;
    let b = OpenEoBackend::new(&fake.base_url());
    let e = clean(b.list_jobs().await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Auth { code, .. } if code == "AuthenticationRequired"),
        "{e:?}"
    );
    assert_eq!(e.code(), "AuthenticationRequired");
    assert!(!e.is_transient());
}

/// A rejected token: 403 `TokenInvalid` → `Auth`, without the token in the message.
#[tokio::test]
async fn rejected_token_is_auth() {
    let fake = fake_with(FakeConfig::default().with_token_check(TokenCheck::Static(
        HashSet::from(["the-only-good-token".to_string()]),
    )))
    .await;
    let b = backend(&fake);
    let e = clean(b.create_job(&body(&fake, "x")).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Auth { code, .. } if code == "TokenInvalid"),
        "{e:?}"
    );
    assert!(fake.jobs().is_empty());
    // With the right token it works.
    b.set_bearer(Some(Bearer::oidc("fake", "the-only-good-token")));
    b.create_job(&body(&fake, "x")).await.unwrap();
}

/// An injected 403 `TokenInvalid` on one route is `Auth` too; other 403s are `Api`.
#[tokio::test]
async fn forbidden_codes() {
    let fake = fake().await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    fake.add_fault(FaultRule::status("GET /jobs/*", 403));
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Auth { code, .. } if code == "TokenInvalid"),
        "{e:?}"
    );
    fake.add_fault(FaultRule::new(
        "GET /jobs/*",
        FaultKind::Status {
            status: 403,
            retry_after: None,
            code: Some("PermissionsInsufficient".into()),
            message: Some("not yours".into()),
            html: None,
        },
    ));
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Rejected { status: 403, code, .. } if code == "PermissionsInsufficient"),
        "{e:?}"
    );
}

/// A UDP URL the backend cannot resolve: 400 `ProcessNamespaceInvalid` → `Api`.
#[tokio::test]
async fn unresolvable_udp_is_api_error() {
    let fake = fake().await;
    let b = backend(&fake);
    let body = OpenEoBackend::job_body(
        "bad udp",
        "",
        "no_such_udp",
        &fake.udp_url("no_such_udp"),
        &Map::new(),
        OutputFormat::Gtiff,
    );
    let e = clean(b.create_job(&body).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Rejected { status: 400, code, .. } if code == "ProcessNamespaceInvalid"),
        "{e:?}"
    );
    assert_eq!(e.code(), "ProcessNamespaceInvalid");
    assert!(!e.is_transient());
    assert!(fake.jobs().is_empty());
}

/// 429 with `Retry-After` → `Transient` with the delay.
#[tokio::test]
async fn rate_limit_is_transient_with_retry_after() {
    let fake = fake().await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    fake.add_fault(FaultRule::too_many_requests("GET /jobs/*", 3));
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Transient { status: 429, .. }),
        "{e:?}"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(e.code(), "BackendBusy");
    // A 429 to POST /jobs means "not taken": transient, and no job was made.
    fake.add_fault(FaultRule::too_many_requests("POST /jobs", 1));
    let e = clean(b.create_job(&body(&fake, "y")).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Transient { status: 429, .. }),
        "{e:?}"
    );
    assert_eq!(fake.jobs().len(), 1);
    // The fault fired once: the next call works.
    assert_eq!(b.job(&id).await.unwrap().status, "created");
}

/// A 502 HTML proxy page → `Transient` "HTTP 502 (HTML page)" on GET; on `POST /jobs` it
/// is ambiguous, so `NoAnswer`.
#[tokio::test]
async fn proxy_html_page_is_summarised() {
    let fake = fake().await;
    let b = backend(&fake);
    fake.add_fault(FaultRule::status("GET /jobs", 502));
    let e = clean(b.list_jobs().await.unwrap_err());
    match &e {
        OpenEoError::Transient {
            status: 502,
            message,
            retry_after: None,
            ..
        } => assert_eq!(message, "HTTP 502 (HTML page)"),
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("Proxy Error"), "{e}");
    fake.add_fault(FaultRule::status("POST /jobs", 502));
    let e = clean(b.create_job(&body(&fake, "x")).await.unwrap_err());
    assert!(matches!(&e, OpenEoError::NoAnswer { .. }), "{e:?}");
    assert!(e.to_string().contains("HTTP 502 (HTML page)"), "{e}");
    // 500 on a GET is transient; on a POST it is a plain API error.
    fake.add_fault(FaultRule::status("GET /jobs", 500));
    let e = clean(b.list_jobs().await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Transient { status: 500, .. }),
        "{e:?}"
    );
    fake.add_fault(FaultRule::status("POST /jobs", 500));
    let e = clean(b.create_job(&body(&fake, "x")).await.unwrap_err());
    assert!(
        matches!(&e, OpenEoError::Rejected { status: 500, code, .. } if code == "Internal"),
        "{e:?}"
    );
}

/// A connection dropped without an answer → `NoAnswer` (the request was sent); a
/// closed port → `Unreachable` (it was not).
#[tokio::test]
async fn dropped_connection_is_no_answer() {
    let fake = fake().await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    fake.add_fault(FaultRule::drop_connection("GET /jobs/*"));
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(matches!(&e, OpenEoError::NoAnswer { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(e.code(), "BackendUnreachable");
    assert_eq!(b.job(&id).await.unwrap().status, "created");
}

/// `POST /jobs` whose answer is lost: `NoAnswer`, exactly one job exists on the backend,
/// and listing finds it by title (what the scheduler's reconciliation does).
#[tokio::test]
async fn lost_create_answer_is_no_answer_and_reconcilable() {
    let fake = fake().await;
    let b = backend(&fake);
    b.api_url().await.unwrap();
    fake.add_fault(FaultRule::lose_response("POST /jobs"));
    let before = b.request_count();
    let e = clean(
        b.create_job(&body(&fake, "eodispatch:7f3c"))
            .await
            .unwrap_err(),
    );
    assert!(matches!(&e, OpenEoError::NoAnswer { .. }), "{e:?}");
    assert_eq!(b.request_count(), before + 1, "never retried inside");
    assert_eq!(fake.jobs().len(), 1);
    assert_eq!(fake.stats().count("POST", "/jobs"), 1);
    let listed = b.list_jobs().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].title.as_deref(), Some("eodispatch:7f3c"));
}

/// A slow answer past the request timeout → `NoAnswer`.
#[tokio::test]
async fn timeout_is_no_answer() {
    let fake = fake().await;
    let b = OpenEoBackend::with_timeouts(
        &fake.base_url(),
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    b.set_bearer(Some(Bearer::oidc("fake", TOKEN)));
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    fake.add_fault(FaultRule::delay("GET /jobs/*", 1500));
    let e = clean(b.job(&id).await.unwrap_err());
    assert!(matches!(&e, OpenEoError::NoAnswer { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

/// A body cut mid-way → `NoAnswer`; a corrupted JSON body → `Protocol`.
#[tokio::test]
async fn truncated_and_corrupt_bodies() {
    let fake = fake_with(FakeConfig::default().with_timing(0.0, 0.0)).await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    b.start_job(&id).await.unwrap();
    wait_terminal(&b, &id).await;
    fake.add_fault(FaultRule::truncate("GET /jobs/*/results", 20));
    let e = clean(b.results(&id).await.unwrap_err());
    assert!(matches!(&e, OpenEoError::NoAnswer { .. }), "{e:?}");
    fake.add_fault(FaultRule::flip_byte("GET /jobs/*/results", Some(0)));
    let e = clean(b.results(&id).await.unwrap_err());
    assert!(matches!(&e, OpenEoError::Protocol { .. }), "{e:?}");
    assert_eq!(e.code(), "BackendProtocol");
    assert!(!e.is_transient());
    // And then it works, links and all.
    let results = b.results(&id).await.unwrap();
    assert!(results.to_string().contains("expires="));
}

/// Backend messages carrying the token or signed links are scrubbed.
#[tokio::test]
async fn secrets_never_appear_in_errors() {
    let fake = fake_with(FakeConfig::default().with_timing(0.0, 0.0)).await;
    let b = backend(&fake);
    let id = b.create_job(&body(&fake, "x")).await.unwrap();
    b.start_job(&id).await.unwrap();
    wait_terminal(&b, &id).await;
    let results = b.results(&id).await.unwrap();
    let href = results["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(href.contains("?expires="));
    fake.add_fault(FaultRule::new(
        "GET /jobs/*/results",
        FaultKind::Status {
            status: 410,
            retry_after: None,
            code: Some("ResultLinkExpired".into()),
            message: Some(format!(
                "The link {href} has expired (you sent Bearer oidc/fake/{TOKEN})."
            )),
            html: Some(false),
        },
    ));
    let e = clean(b.results(&id).await.unwrap_err());
    assert_eq!(e.code(), "ResultLinkExpired");
    let path = href.split('?').next().unwrap();
    assert!(
        e.to_string().contains(path),
        "the link stays, without query: {e}"
    );
    // An endpoint configured with a query shows without it.
    let port = closed_port();
    let b = OpenEoBackend::new(&format!(
        "http://127.0.0.1:{port}/openeo?expires=1&signature=abc"
    ));
    let e = clean(b.api_url().await.unwrap_err());
    assert!(!e.to_string().contains("signature"), "{e}");
}

// ============================================================================
// Where the bearer goes
// ============================================================================

/// A `rel=next` link to another host is followed without the bearer; links on the
/// backend's own origin get it.
#[tokio::test]
async fn bearer_only_to_own_origin() {
    let (other, other_seen) = raw_server(|line| {
        if line.starts_with("GET /elsewhere") {
            json_answer(json!({"jobs": [{"id": "j-3", "status": "finished"}], "links": []}))
        } else {
            not_found()
        }
    })
    .await;
    let other2 = other.clone();
    let (own, own_seen) = raw_server(move |line| {
        if line.starts_with("GET /.well-known/openeo") {
            not_found()
        } else if line.starts_with("GET /jobs?limit=100 ") {
            json_answer(json!({
                "jobs": [{"id": "j-1", "status": "created", "title": "one"}],
                "links": [{"rel": "next", "href": "/jobs?page=2"}]
            }))
        } else if line.starts_with("GET /jobs?page=2 ") {
            json_answer(json!({
                "jobs": [{"id": "j-2", "status": "queued"}],
                "links": [{"rel": "next", "href": format!("{other2}/elsewhere?page=3")}]
            }))
        } else {
            not_found()
        }
    })
    .await;
    let b = OpenEoBackend::new(&own);
    b.set_bearer(Some(Bearer::raw(format!("oidc/fake/{TOKEN}"))));
    let jobs = b.list_jobs().await.unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j-1", "j-2", "j-3"]);
    let own_seen = own_seen.lock().unwrap().clone();
    let other_seen = other_seen.lock().unwrap().clone();
    // Discovery is public: no bearer; the API requests carry it.
    assert!(
        own_seen[0].line.starts_with("GET /.well-known/openeo "),
        "{own_seen:?}"
    );
    assert!(
        own_seen[1].line.starts_with("GET /jobs?limit=100 "),
        "{own_seen:?}"
    );
    assert!(!own_seen[0].authorization, "{own_seen:?}");
    assert!(
        own_seen[1..].iter().all(|s| s.authorization),
        "{own_seen:?}"
    );
    assert_eq!(other_seen.len(), 1);
    assert!(!other_seen[0].authorization, "{other_seen:?}");
}

/// A redirect to another host does not carry the bearer (reqwest drops it).
#[tokio::test]
async fn bearer_not_forwarded_on_cross_host_redirect() {
    let (other, other_seen) =
        raw_server(|_| json_answer(json!({"id": "j-1", "status": "running", "progress": 12.5})))
            .await;
    let (own, own_seen) = raw_server(move |line| {
        if line.starts_with("GET /jobs/j-1 ") {
            (
                "302 Found".into(),
                vec![("location".into(), format!("{other}/moved/j-1"))],
                String::new(),
            )
        } else {
            not_found()
        }
    })
    .await;
    let b = OpenEoBackend::new(&own);
    b.set_bearer(Some(Bearer::oidc("fake", TOKEN)));
    let j = b.job("j-1").await.unwrap();
    assert_eq!(j.status, "running");
    assert_eq!(j.progress, Some(12.5));
    assert!(own_seen.lock().unwrap().last().unwrap().authorization);
    assert!(!other_seen.lock().unwrap()[0].authorization);
}

/// `create_job` takes the id from `Location` when `OpenEO-Identifier` is missing, and
/// refuses an answer with neither.
#[tokio::test]
async fn create_job_id_from_location() {
    let (own, _) = raw_server(|line| {
        if line.starts_with("POST /a/jobs ") {
            (
                "201 Created".into(),
                vec![("location".into(), "/a/jobs/j-from-location".into())],
                String::new(),
            )
        } else if line.starts_with("POST /b/jobs ") {
            ("201 Created".into(), vec![], String::new())
        } else {
            not_found()
        }
    })
    .await;
    let b = OpenEoBackend::new(&format!("{own}/a"));
    assert_eq!(b.create_job(&Map::new()).await.unwrap(), "j-from-location");
    let b = OpenEoBackend::new(&format!("{own}/b"));
    let e = clean(b.create_job(&Map::new()).await.unwrap_err());
    assert!(matches!(e, OpenEoError::Protocol { .. }), "{e:?}");
}

/// A backend answer is read up to `MAX_ANSWER_BYTES` (32 MiB), no further: an endless
/// `200 OK` body is a protocol error naming the limit, and the daemon stops reading
/// (the server manages to send little more than the limit and its socket buffers).
#[tokio::test]
async fn an_endless_answer_is_cut_at_the_size_limit() {
    use eodispatch::platform::http::MAX_ANSWER_BYTES;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent2 = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let sent = sent2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).to_string();
                if !line.starts_with("GET /jobs/j-1 ") {
                    let body = r#"{"code":"NotFound","message":"no"}"#;
                    let _ = sock
                        .write_all(
                            format!("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                                .as_bytes(),
                        )
                        .await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"id\":\"";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 1 << 20];
                for _ in 0..256 {
                    if sock.write_all(&block).await.is_err() {
                        return;
                    }
                    sent.fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let b = OpenEoBackend::new(&base);
    let e = b.job("j-1").await.unwrap_err();
    assert!(
        matches!(&e, OpenEoError::Protocol { reason, .. } if reason.contains("larger than 32 MiB")),
        "{e:?}"
    );
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < (MAX_ANSWER_BYTES as u64) + 32 * 1024 * 1024,
        "the server sent {sent} bytes"
    );
}
