//! Helpers for tests that run the daemon against the workspace's fake openEO backend
//! (`crates/fake-openeo`): a fake with short job timings, a daemon configured for it
//! (short poll intervals, an access token, limits), job bodies pointing at it, waits
//! with deadlines, an SSE collector, and the real binary as a child process with its
//! log in a file.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eodispatch::config::{BackendConfig, Config};
use fake_openeo::{FakeConfig, FakeHandle};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::{env_for, free_port, TestDaemon};

/// The access token the daemon sends to the fake (`Bearer oidc/fake/<TOKEN>`).
pub const TOKEN: &str = "scheduler-test-token";
/// The application URL of the PV Farm Detection UDP (APEx notebook). The daemon
/// resolves it from its bundled catalogue when offline; the fake by file name.
pub const PV_APP: &str = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json";
/// The UDP's process id.
pub const PV_ID: &str = "eurac_pv_farm_detection";
/// Shortest poll interval of the test daemons, seconds.
pub const POLL_MIN_S: f64 = 0.1;
/// Longest poll interval of the test daemons, seconds.
pub const POLL_MAX_S: f64 = 0.5;
/// Request rate allowed towards the fake (high enough not to slow the tests).
pub const RATE: f64 = 50.0;

/// A fake backend whose jobs are `queued` for `queued` s and `running` for `running` s.
pub async fn start_fake(queued: f64, running: f64) -> FakeHandle {
    fake_openeo::start(FakeConfig::default().with_timing(queued, running))
        .await
        .expect("the fake backend starts")
}

/// A fake on a given port (to bring a backend back where it was).
pub async fn start_fake_on(port: u16, queued: f64, running: f64) -> FakeHandle {
    let mut cfg = FakeConfig::default().with_timing(queued, running);
    cfg.port = port;
    fake_openeo::start(cfg)
        .await
        .expect("the fake backend starts on its port")
}

/// A daemon configuration under `root` for the backend at `url`: short poll
/// intervals, the test token, `max_running` active jobs at most.
pub fn config_for(root: &Path, url: &str, max_running: u32) -> Config {
    let mut c = Config::for_root(root);
    c.poll_interval_min_s = POLL_MIN_S;
    c.poll_interval_max_s = POLL_MAX_S;
    c.backends = BTreeMap::from([(
        "fake".to_string(),
        backend_config(url, Some(max_running), Some(RATE)),
    )]);
    c
}

/// One backend entry with the test token.
pub fn backend_config(url: &str, max_running: Option<u32>, rate: Option<f64>) -> BackendConfig {
    BackendConfig {
        url: url.to_string(),
        max_running_jobs: max_running,
        requests_per_second: rate,
        access_token: Some(serde_json::from_value(json!(TOKEN)).unwrap()),
        provider_id: Some("fake".into()),
        ..BackendConfig::default()
    }
}

/// A daemon in this process for `fake`.
pub async fn daemon_for(root: &Path, fake: &FakeHandle, max_running: u32) -> TestDaemon {
    TestDaemon::start_with(config_for(root, &fake.base_url(), max_running)).await
}

/// The PV Farm Detection request of the APEx notebook, sent to `endpoint`.
pub fn pv_request(endpoint: &str, title: &str) -> Value {
    json!({
        "title": title,
        "label": "openeo",
        "service": {"endpoint": endpoint, "application": PV_APP},
        "parameters": {
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
            "temporal_extent": ["2023-05-01", "2023-09-30"]
        },
        "format": "gtiff"
    })
}

/// Submits `body`; returns the job id.
pub async fn submit(d: &TestDaemon, body: &Value) -> i64 {
    let (s, job) = d.post_json("/unit_jobs", body).await;
    assert_eq!(s, 201, "{job}");
    job["id"].as_i64().unwrap()
}

/// Polls `probe` every 20 ms until it returns `Some`, at most `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// All local jobs by id, read from the list (which does not nudge the scheduler).
pub async fn jobs_by_id(d: &TestDaemon) -> BTreeMap<i64, Value> {
    let (s, v) = d.get_json("/unit_jobs?limit=10000").await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_i64().unwrap(), j.clone()))
        .collect()
}

/// Waits until job `id` has `status` (read from the list: no nudges) and returns it.
pub async fn wait_status(d: &TestDaemon, id: i64, status: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + within;
    loop {
        if let Some(j) = jobs_by_id(d).await.remove(&id) {
            if j["status"] == status {
                return j;
            }
            last = j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not become {status} within {within:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until every job in `ids` has `status`.
pub async fn wait_all(d: &TestDaemon, ids: &[i64], status: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let jobs = jobs_by_id(d).await;
        let pending: Vec<String> = ids
            .iter()
            .filter(|id| jobs.get(id).map(|j| j["status"] != status).unwrap_or(true))
            .map(|id| {
                format!(
                    "{id}: {}",
                    jobs.get(id).map_or(&Value::Null, |j| &j["status"])
                )
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all {status} within {within:?}: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Status of a remote job on the fake.
pub fn remote_status(fake: &FakeHandle, id: &str) -> String {
    fake.job(id)
        .map(|j| j.status.as_str().to_string())
        .unwrap_or_else(|| "missing".into())
}

/// Remote jobs on the fake that are neither ended nor merely created.
pub fn remote_active(fake: &FakeHandle) -> usize {
    fake.jobs()
        .iter()
        .filter(|j| !j.status.is_terminal())
        .count()
}

/// The state of the daemon's backend at `url` from `GET /backends`.
pub async fn backend_state(d: &TestDaemon, url: &str) -> Value {
    let (s, v) = d.get_json("/backends").await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .find(|b| b["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(url))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Collects the `/events` stream in the background.
pub struct Events {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    /// Subscribes and returns once the stream's `hello` arrived (so no later event
    /// is missed).
    pub async fn subscribe(d: &TestDaemon) -> Events {
        let resp = d.get("/events").await;
        assert_eq!(resp.status(), 200);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !event.is_empty() {
                        let v = serde_json::from_str(&data).unwrap_or(Value::Null);
                        sink.lock().unwrap().push((event, v));
                    }
                }
            }
        });
        let ev = Events { seen, task };
        wait_for("the hello event", Duration::from_secs(5), || async {
            ev.kinds().contains(&"hello".to_string()).then_some(())
        })
        .await;
        ev
    }

    /// Kinds of the events so far.
    pub fn kinds(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Payloads of the events of `kind` so far.
    pub fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Blocks (at most 5 s) until a `job` event with status `status` for job `id` has
    /// arrived: the stream may lag behind a status read through the API.
    pub fn wait_status(&self, id: i64, status: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.statuses(id).iter().any(|s| s == status) {
            if std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The successive distinct statuses of job `id` in `job` events.
    pub fn statuses(&self, id: i64) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for j in self.of_kind("job") {
            if j["id"] != id {
                continue;
            }
            let s = j["status"].as_str().unwrap_or("").to_string();
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        out
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real binary running `serve`, with its log in `<root>/daemon-<n>.log`.
pub struct ChildDaemon {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its folders' root.
    pub root: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl ChildDaemon {
    /// Starts `eodispatch serve` on a free port with everything under `root`, the
    /// backend `fake_url` configured (token, `max_running`, short polls) and `extra`
    /// environment; waits until it is healthy.
    pub async fn start(
        root: &Path,
        fake_url: &str,
        max_running: u32,
        extra: &[(&str, &str)],
    ) -> ChildDaemon {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let n = std::fs::read_dir(root)
            .map(|d| d.count())
            .unwrap_or_default();
        let log = root.join(format!("daemon-{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eodispatch"));
        cmd.arg("serve")
            .env("HOME", root)
            .envs(env_for(root, &addr.to_string()))
            .env("EODISPATCH_POLL_INTERVAL_MIN_S", POLL_MIN_S.to_string())
            .env("EODISPATCH_POLL_INTERVAL_MAX_S", POLL_MAX_S.to_string())
            .env("EODISPATCH_BACKENDS__FAKE__URL", fake_url)
            .env("EODISPATCH_BACKENDS__FAKE__ACCESS_TOKEN", TOKEN)
            .env("EODISPATCH_BACKENDS__FAKE__PROVIDER_ID", "fake")
            .env(
                "EODISPATCH_BACKENDS__FAKE__MAX_RUNNING_JOBS",
                max_running.to_string(),
            )
            .env(
                "EODISPATCH_BACKENDS__FAKE__REQUESTS_PER_SECOND",
                RATE.to_string(),
            )
            .env_remove("EODISPATCH_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let c = ChildDaemon {
            child,
            addr,
            root: root.to_path_buf(),
            log,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut c = c;
        loop {
            if let Some(status) = c.child.try_wait().unwrap() {
                panic!(
                    "child daemon exited at start ({status}); log:\n{}",
                    c.log_text()
                );
            }
            if let Ok(r) = c.http.get(c.url("/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "child daemon did not become healthy; log:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c
    }

    /// `http://ADDR<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The API token (from the state folder).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.root.join("state/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An authorised GET; status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// An authorised JSON POST; status and JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token())
            .json(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits for the job list to show job `id` with `status`.
    pub async fn wait_status(&self, id: i64, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        loop {
            let (s, list) = self.get_json("/unit_jobs?limit=10000").await;
            assert_eq!(s, 200, "{list}");
            if let Some(j) = list.as_array().unwrap().iter().find(|j| j["id"] == id) {
                if j["status"] == status {
                    return j.clone();
                }
                last = j.clone();
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not become {status}; last seen: {last}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the process to end on its own; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/eodispatch-gdal`, built if missing (`EODISPATCH_TEST_GDAL_BIN`: another
/// helper, e.g. an older one, to see these tests fail without the fixes).
pub fn gdal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EODISPATCH_TEST_GDAL_BIN") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_BIN_EXE_eodispatch"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = dir.join("eodispatch-gdal");
    static BUILT: Mutex<()> = Mutex::new(());
    let _g = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "eodispatch-gdal"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok && bin.is_file(), "cannot build eodispatch-gdal");
    }
    bin
}

/// Waits until job `id`'s results are in `state`; returns the job.
pub async fn wait_results(d: &TestDaemon, id: i64, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (s, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        assert_eq!(s, 200, "{j}");
        if j["results"]["state"] == state {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "results of job {id} did not become {state}; last: {j}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
