//! Shared fixtures of the integration tests: a daemon started in-process on port 0
//! with temporary folders ([`TestDaemon`]), the real binary as a child process
//! ([`Child`]), and a raw HTTP/1.1 helper for requests no client library would send.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eodispatch::config::Config;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A daemon running in this process on an ephemeral port.
pub struct TestDaemon {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its API token.
    pub token: String,
    /// Its configuration (folders under the temp root).
    pub config: Config,
    /// HTTP client.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), eodispatch::daemon::DaemonError>>>,
}

impl TestDaemon {
    /// Starts a daemon with everything under `root`.
    pub async fn start(root: &Path) -> TestDaemon {
        TestDaemon::start_with(Config::for_root(root)).await
    }

    /// Starts a daemon with the given configuration (its `listen` is ignored: port 0).
    pub async fn start_with(config: Config) -> TestDaemon {
        TestDaemon::start_on(config, "127.0.0.1:0").await
    }

    /// Starts a daemon with the given configuration on a listener bound to `bind`
    /// (`[::1]:0` for IPv6).
    pub async fn start_on(config: Config, bind: &str) -> TestDaemon {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = config.clone();
        let task = tokio::spawn(async move {
            eodispatch::run(cfg, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let http = reqwest::Client::new();
        // Wait for health (the token file exists once the daemon is up).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = http.get(format!("http://{addr}/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "daemon did not become healthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let token = std::fs::read_to_string(config.token_path())
            .unwrap()
            .trim()
            .to_string();
        TestDaemon {
            addr,
            token,
            config,
            http,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT<path>` (`http://[::1]:PORT<path>` on IPv6).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An authorised GET.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// An authorised GET returning status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An authorised JSON POST returning status and JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An authorised POST of raw bytes with a JSON content type.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An authorised DELETE returning the status.
    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Number of stored unit jobs.
    pub async fn job_count(&self) -> usize {
        let (s, v) = self.get_json("/unit_jobs?limit=10000").await;
        assert_eq!(s, 200, "{v}");
        v.as_array().unwrap().len()
    }

    /// Shuts the daemon down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A valid `POST /unit_jobs` body: the PV Farm Detection request of the APEx notebook.
pub fn pv_job(title: &str) -> Value {
    json!({
        "title": title,
        "label": "openeo",
        "service": {
            "endpoint": "https://openeofed.dataspace.copernicus.eu",
            "application": "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
        },
        "parameters": {
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
            "temporal_extent": ["2023-05-01", "2023-09-30"]
        },
        "format": "gtiff"
    })
}

/// Sends raw bytes to `addr` and returns the whole response (status line, headers,
/// body). Used for requests with hand-made `Host` headers.
pub fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw response.
pub fn raw_status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The real `eodispatch` binary running `serve` as a child process.
pub struct Child {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Root of its folders.
    pub root: PathBuf,
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment that puts every folder of the daemon under `root`.
pub fn env_for(root: &Path, listen: &str) -> Vec<(String, String)> {
    vec![
        (
            "EODISPATCH_CONFIG_DIR".into(),
            root.join("config").display().to_string(),
        ),
        (
            "EODISPATCH_STATE_DIR".into(),
            root.join("state").display().to_string(),
        ),
        (
            "EODISPATCH_RESULTS_DIR".into(),
            root.join("results").display().to_string(),
        ),
        ("EODISPATCH_LISTEN".into(), listen.into()),
        ("EODISPATCH_LOG".into(), "info".into()),
        // The bundled catalogue only: tests reach no network but 127.0.0.1.
        ("EODISPATCH_CATALOGUES".into(), "bundled".into()),
    ]
}

/// `eodispatch serve` with the given extra environment, not waited for.
pub fn spawn_serve(root: &Path, listen: &str, extra_env: &[(&str, &str)]) -> std::process::Child {
    spawn_serve_umask(root, listen, extra_env, "022")
}

/// `eodispatch serve` started through `sh` with the given umask.
pub fn spawn_serve_umask(
    root: &Path,
    listen: &str,
    extra_env: &[(&str, &str)],
    umask: &str,
) -> std::process::Child {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_eodispatch"))
        .env("HOME", root)
        .envs(env_for(root, listen))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

impl Child {
    /// Starts `eodispatch serve` on a free port and waits until it is healthy.
    pub fn start(root: &Path) -> Child {
        Child::start_with_umask(root, "022")
    }

    /// Like [`Child::start`], with extra environment variables.
    pub fn start_with_env(root: &Path, extra_env: &[(&str, &str)]) -> Child {
        Child::start_full(root, "022", extra_env)
    }

    /// Like [`Child::start`], with the given umask.
    pub fn start_with_umask(root: &Path, umask: &str) -> Child {
        Child::start_full(root, umask, &[])
    }

    /// Like [`Child::start`], with the given umask and extra environment variables.
    pub fn start_full(root: &Path, umask: &str, extra_env: &[(&str, &str)]) -> Child {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = spawn_serve_umask(root, &addr.to_string(), extra_env, umask);
        let c = Child {
            child,
            addr,
            root: root.to_path_buf(),
        };
        c.wait_healthy(Duration::from_secs(20));
        c
    }

    /// Blocks until `/health` answers 200.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(mut s) = TcpStream::connect(self.addr) {
                let req = format!(
                    "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.addr
                );
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut out = String::new();
                    let _ = s.read_to_string(&mut out);
                    if raw_status(&out) == 200 {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "child daemon did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The API token of this daemon.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.root.join("state/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit (at most `within`) and returns the exit status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "daemon did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
