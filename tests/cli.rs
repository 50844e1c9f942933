//! The `eodispatch` binary against a real daemon: each test starts the daemon in this
//! process (on its own runtime thread, port 0, everything in a temporary folder), then
//! runs the binary as a subprocess with `EODISPATCH_*` variables pointing at that
//! folder and port, and checks its output and exit code.
//!
//! The daemon validates openEO jobs against their UDP, so the same runtime serves a
//! small UDP at `<udp base>/udp/<name>.json`. Jobs name an endpoint where nothing
//! listens (`http://127.0.0.1:1`): the scheduler's attempts fail as "unreachable",
//! which leaves the jobs `created`, so the tests see stable statuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use eodispatch::config::Config;
use serde_json::{json, Value};

/// Backend endpoint of the test jobs: nothing listens on port 1.
const ENDPOINT: &str = "http://127.0.0.1:1";

/// The UDP served for every `/udp/<name>.json`.
fn udp(name: &str) -> Value {
    json!({
        "id": name,
        "summary": "A test process",
        "process_graph": {"load": {"process_id": "load_collection", "arguments": {}, "result": true}},
        "parameters": [
            {"name": "spatial_extent", "description": "Area",
             "schema": {"type": "object", "subtype": "bounding-box"}},
            {"name": "temporal_extent", "description": "Time",
             "schema": {"type": "array", "subtype": "temporal-interval"}},
            {"name": "max_cloud_cover", "description": "Clouds", "optional": true,
             "schema": {"type": "number", "minimum": 0, "maximum": 100}},
            {"name": "method", "description": "Compositing", "optional": true,
             "schema": {"type": "string", "enum": ["median", "mean"]}}
        ]
    })
}

/// Serves [`udp`] at `/udp/<name>.json`; the base URL.
async fn udp_server() -> String {
    use axum::extract::Path;
    let app = axum::Router::new().route(
        "/udp/{file}",
        axum::routing::get(|Path(file): Path<String>| async move {
            let name = file.trim_end_matches(".json").to_string();
            axum::Json(udp(&name))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// A daemon running in this process; stopped when dropped.
struct Daemon {
    dir: tempfile::TempDir,
    config: Config,
    port: u16,
    udp_base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_root(dir.path());
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run_config = config.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let udp_base = udp_server().await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx
                    .send((listener.local_addr().unwrap().port(), udp_base))
                    .unwrap();
                eodispatch::run(run_config, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let (port, udp_base) = port_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let daemon = Daemon {
            dir,
            config,
            port,
            udp_base,
            stop: Some(stop),
            thread: Some(thread),
        };
        daemon.wait_ready();
        daemon
    }

    /// Waits until the daemon answers `/health` (token written, store open).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if eodispatch::api_token::read(&self.config.token_path()).is_ok() {
                let health = std::net::TcpStream::connect(("127.0.0.1", self.port)).and_then(
                    |mut s| {
                        use std::io::{Read, Write};
                        write!(
                            s,
                            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                            self.port
                        )?;
                        let mut answer = String::new();
                        s.read_to_string(&mut answer)?;
                        Ok(answer)
                    },
                );
                if health.is_ok_and(|a| a.starts_with("HTTP/1.1 200")) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// URL of the test UDP `<name>.json`.
    fn application(&self, name: &str) -> String {
        format!("{}/udp/{name}.json", self.udp_base)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn token(&self) -> String {
        eodispatch::api_token::read(&self.config.token_path())
            .unwrap()
            .expose()
            .to_string()
    }

    /// The binary, configured for this daemon.
    fn command(&self, args: &[&str]) -> Command {
        self.command_with_state(&self.config.state_dir, args)
    }

    /// The binary, configured for this daemon but with another state folder.
    fn command_with_state(&self, state_dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eodispatch"));
        for (name, _) in std::env::vars() {
            if name.starts_with("EODISPATCH_") {
                cmd.env_remove(name);
            }
        }
        cmd.args(args)
            .env("EODISPATCH_STATE_DIR", state_dir)
            .env("EODISPATCH_RESULTS_DIR", &self.config.results_dir)
            .env("EODISPATCH_CONFIG_DIR", &self.config.config_dir)
            .env("EODISPATCH_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).output().unwrap())
    }

    /// Submits the standard test job with extra flags; the created job.
    fn submit(&self, extra: &[&str]) -> Value {
        let application = self.application("ndvi_timeseries");
        let mut args = vec![
            "submit",
            "--endpoint",
            ENDPOINT,
            "--application",
            &application,
            "--bbox",
            "5.05,51.21,5.10,51.25",
            "--time",
            "2023-05-01/2023-09-30",
            "--json",
        ];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        r.assert_ok();
        serde_json::from_str(&r.stdout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Output of one run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn assert_ok(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

#[test]
fn token_prints_the_token_file() {
    let d = Daemon::start();
    let r = d.run(&["token"]);
    r.assert_ok();
    assert_eq!(r.stdout, format!("{}\n", d.token()));
    assert_eq!(r.stderr, "");
}

#[test]
fn submit_with_flags_then_list_and_show() {
    let d = Daemon::start();
    let job = d.submit(&["--param", "max_cloud_cover=20", "--param", "method=median"]);
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["title"], "ndvi_timeseries");
    assert_eq!(job["status"], "created");
    assert_eq!(job["format"], "gtiff");
    assert_eq!(job["label"], "openeo");
    assert_eq!(
        job["parameters"],
        json!({
            "spatial_extent": {"west": 5.05, "south": 51.21, "east": 5.1, "north": 51.25},
            "temporal_extent": ["2023-05-01", "2023-09-30"],
            "max_cloud_cover": 20,
            "method": "median"
        })
    );

    // Human submit output names the job and its status.
    let bap = d.application("bap");
    let r = d.run(&[
        "submit",
        "--endpoint",
        ENDPOINT,
        "--application",
        &bap,
        "--title",
        "Best available pixel",
        "--bbox=-5,40,5,50",
        "--time",
        "2023-05-01/2023-05-31",
        "--format",
        "netcdf",
    ]);
    r.assert_ok();
    assert!(
        r.stdout.starts_with(&format!(
            "Submitted job {} \"Best available pixel\" (status: created)",
            id + 1
        )),
        "{}",
        r.stdout
    );

    let r = d.run(&["jobs", "--json"]);
    r.assert_ok();
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id + 1, id], "newest first");

    let r = d.run(&["jobs"]);
    r.assert_ok();
    // The table, then (after a blank line) why jobs wait, if they do: their backend
    // at 127.0.0.1:1 does not answer.
    let lines: Vec<&str> = r.stdout.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    if let Some(note) = r.stdout.lines().nth(4) {
        assert!(note.contains(" waiting: "), "{}", r.stdout);
    }
    for col in [
        "ID", "STATUS", "PROGRESS", "TITLE", "BACKEND", "CREATED", "RESULTS",
    ] {
        assert!(lines[0].contains(col), "{}", r.stdout);
    }
    assert!(lines[2].contains("ndvi_timeseries"), "{}", r.stdout);
    assert!(lines[2].contains("127.0.0.1:1 "), "{}", r.stdout);
    assert!(lines[2].contains("pending"), "{}", r.stdout);
    // Columns are aligned: STATUS starts at the same place on every line.
    let at = lines[0].find("STATUS").unwrap();
    assert!(lines[1][at..].starts_with("created"), "{}", r.stdout);
    assert!(lines[2][at..].starts_with("created"), "{}", r.stdout);

    let r = d.run(&["jobs", "--limit", "1", "--status", "created", "--json"]);
    r.assert_ok();
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = d.run(&["jobs", "--status", "running"]);
    r.assert_ok();
    assert_eq!(r.stdout, "No jobs with status running.\n");

    let r = d.run(&["show", &id.to_string()]);
    r.assert_ok();
    assert!(
        r.stdout.contains("title:           ndvi_timeseries\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("status:          created\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\"max_cloud_cover\": 20"), "{}", r.stdout);
    let r = d.run(&["show", &id.to_string(), "--json"]);
    r.assert_ok();
    let shown: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(shown["uuid"], job["uuid"]);

    // The token never shows up in ordinary output.
    assert!(!r.stdout.contains(&d.token()));
}

#[test]
fn submit_from_a_file_and_from_stdin() {
    let d = Daemon::start();
    let body = json!({
        "title": "From a file",
        "label": "openeo",
        "service": {"endpoint": ENDPOINT, "application": d.application("ndvi")},
        "parameters": {"spatial_extent": {"west": 5, "south": 51, "east": 5.1, "north": 51.1},
                       "temporal_extent": ["2023-05-01", "2023-09-30"]},
        "format": "gtiff"
    });
    let path = d.root().join("job.json");
    std::fs::write(&path, body.to_string()).unwrap();
    let r = d.run(&["submit", "--file", path.to_str().unwrap(), "--json"]);
    r.assert_ok();
    let job: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(job["title"], "From a file");
    assert_eq!(job["status"], "created");

    let mut child = d
        .command(&["submit", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.to_string().as_bytes()).unwrap();
    }
    let r = Run::of(child.wait_with_output().unwrap());
    r.assert_ok();
    assert!(
        r.stdout.contains("\"From a file\" (status: created)"),
        "{}",
        r.stdout
    );

    // A file that is not JSON is the user's mistake: exit 2, nothing sent.
    let bad = d.root().join("bad.json");
    std::fs::write(&bad, "{\"title\": ").unwrap();
    let r = d.run(&["submit", "--file", bad.to_str().unwrap()]);
    r.assert_code(2);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(r.stderr.contains("is not valid JSON"), "{}", r.stderr);

    // A JSON body the daemon rejects: its problem, exit 1.
    let incomplete = d.root().join("incomplete.json");
    std::fs::write(&incomplete, r#"{"title": "x"}"#).unwrap();
    let r = d.run(&["submit", "--file", incomplete.to_str().unwrap()]);
    r.assert_code(1);
    assert!(
        r.stderr.starts_with("error: Invalid request: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("service"), "{}", r.stderr);
}

#[test]
fn invalid_bbox_prints_the_daemons_problem() {
    let d = Daemon::start();
    let ndvi = d.application("ndvi");
    let r = d.run(&[
        "submit",
        "--endpoint",
        ENDPOINT,
        "--application",
        &ndvi,
        "--bbox",
        "10,50,5,51",
        "--time",
        "2023-05-01/2023-09-30",
    ]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.starts_with("error: Invalid request: "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("parameters.spatial_extent.west"),
        "{}",
        r.stderr
    );

    // Bad flag syntax is caught before anything is sent: a usage error.
    let r = d.run(&[
        "submit",
        "--endpoint",
        ENDPOINT,
        "--application",
        &ndvi,
        "--bbox",
        "10,50,5",
        "--time",
        "2023-05-01/2023-09-30",
    ]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("4 comma-separated numbers"),
        "{}",
        r.stderr
    );

    // Checks against the UDP: every bad parameter is named.
    let r = d.run(&[
        "submit",
        "--endpoint",
        ENDPOINT,
        "--application",
        &ndvi,
        "--bbox",
        "5,50,6,51",
        "--time",
        "2023-05-01/2023-09-30",
        "--param",
        "max_cloud_cover=200",
        "--param",
        "nonsense=1",
    ]);
    r.assert_code(1);
    assert!(
        r.stderr.contains("\n  parameters.max_cloud_cover: "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("\n  parameters.nonsense: "),
        "{}",
        r.stderr
    );
    let r = d.run(&["jobs", "--json"]);
    r.assert_ok();
    assert_eq!(r.stdout.trim(), "[]");
}

#[test]
fn cancel_and_delete() {
    let d = Daemon::start();
    let id = d.submit(&[])["id"].as_i64().unwrap().to_string();
    let r = d.run(&["cancel", &id]);
    r.assert_ok();
    assert!(r.stdout.contains("is now canceled"), "{}", r.stdout);
    let r = d.run(&["show", &id, "--json"]);
    r.assert_ok();
    let job: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(job["status"], "canceled");

    // Canceling again: the daemon's 409, exit 1.
    let r = d.run(&["cancel", &id]);
    r.assert_code(1);
    assert!(
        r.stderr.starts_with("error: Job has ended: "),
        "{}",
        r.stderr
    );

    // Retry a canceled job: a new attempt, back to created.
    let r = d.run(&["retry", &id]);
    r.assert_ok();
    assert!(r.stdout.contains("will be submitted again"), "{}", r.stdout);
    let r = d.run(&["show", &id, "--json"]);
    let job: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(job["status"], "created");
    // An active job is not retried: the daemon's 409.
    let r = d.run(&["retry", &id]);
    r.assert_code(1);
    assert!(
        r.stderr.starts_with("error: Job cannot be retried: "),
        "{}",
        r.stderr
    );

    let r = d.run(&["delete", &id]);
    r.assert_ok();
    assert!(
        r.stdout.starts_with(&format!("Forgot job {id}")),
        "{}",
        r.stdout
    );
    let r = d.run(&["show", &id]);
    r.assert_code(1);
    assert_eq!(
        r.stderr,
        format!("error: Job not found: there is no unit job with id {id}\n")
    );
}

#[test]
fn doctor_reports_every_check() {
    let d = Daemon::start();
    let r = d.run(&["doctor"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let line = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no line with {prefix:?} in:\n{}", r.stdout))
            .to_string()
    };
    assert!(
        line("config: defaults").starts_with("ok   "),
        "{}",
        r.stdout
    );
    let daemon = line("daemon reachable");
    assert!(daemon.starts_with("ok   "), "{}", r.stdout);
    assert!(
        daemon.contains(&format!("127.0.0.1:{}", d.port)),
        "{}",
        r.stdout
    );
    assert!(daemon.contains(env!("CARGO_PKG_VERSION")), "{}", r.stdout);
    assert!(
        line("API token accepted").starts_with("ok   "),
        "{}",
        r.stdout
    );
    assert!(
        line("token file permissions 0600").starts_with("ok   "),
        "{}",
        r.stdout
    );
    assert!(line("store writable").starts_with("ok   "), "{}", r.stdout);
    assert!(
        line("results folder writable").starts_with("ok   "),
        "{}",
        r.stdout
    );
    assert!(line("GDAL ").starts_with("ok   "), "{}", r.stdout);
    // The keyring depends on the environment (a Secret Service may be missing).
    let keyring = line("keyring");
    assert!(
        keyring.starts_with("ok   ") || keyring.starts_with("FAIL "),
        "{}",
        r.stdout
    );
    if keyring.starts_with("FAIL ") {
        assert!(keyring.contains("gnome-keyring"), "{keyring}");
        r.assert_code(1);
    } else {
        r.assert_ok();
    }
    assert_eq!(lines.len(), 8, "{}", r.stdout);
    assert!(!r.stdout.contains(&d.token()));

    let r = d.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "daemon",
            "token",
            "token_file",
            "store",
            "results",
            "keyring",
            "gdal"
        ]
    );
    assert_eq!(report["ok"], json!(r.code == Some(0)));
}

#[test]
fn doctor_without_a_daemon_says_how_to_start_it() {
    let d = Daemon::start();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    // Another state folder (with a token): in the daemon's, its discovery file would
    // lead to it whatever the configured address.
    let state = d.root().join("no-daemon-state");
    eodispatch::api_token::load_or_create(&state.join("api-token")).unwrap();
    let r = Run::of(
        d.command_with_state(&state, &["doctor"])
            .env("EODISPATCH_LISTEN", format!("127.0.0.1:{port}"))
            .output()
            .unwrap(),
    );
    r.assert_code(1);
    assert!(
        r.stdout.contains(&format!(
            "FAIL daemon not reachable at http://127.0.0.1:{port}"
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("eodispatch serve"), "{}", r.stdout);
    assert!(
        r.stdout.contains("warn API token not checked"),
        "{}",
        r.stdout
    );
}

#[test]
fn wrong_or_missing_token_file() {
    let d = Daemon::start();
    // Another state folder with a valid but different token.
    let other: PathBuf = d.root().join("other-state");
    eodispatch::api_token::load_or_create(&other.join("api-token")).unwrap();
    let r = Run::of(d.command_with_state(&other, &["jobs"]).output().unwrap());
    r.assert_code(1);
    assert!(
        r.stderr.starts_with("error: API token required: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("the API token is wrong"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the token was read from"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&d.token()));

    // No token file at all: the daemon was never started with this configuration.
    let empty = d.root().join("empty-state");
    let r = Run::of(d.command_with_state(&empty, &["token"]).output().unwrap());
    r.assert_code(1);
    assert!(
        r.stderr.contains("the daemon has not been started yet"),
        "{}",
        r.stderr
    );
    let r = Run::of(d.command_with_state(&empty, &["jobs"]).output().unwrap());
    r.assert_code(1);
    assert!(
        r.stderr.contains("the daemon has not been started yet"),
        "{}",
        r.stderr
    );

    // A token file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = other.join("api-token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = Run::of(d.command_with_state(&other, &["jobs"]).output().unwrap());
        r.assert_code(1);
        assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    }
}

#[test]
fn unreachable_daemon() {
    let d = Daemon::start();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    // Another state folder (with a token): in the daemon's, its discovery file would
    // lead to it whatever the configured address.
    let state = d.root().join("no-daemon-state");
    eodispatch::api_token::load_or_create(&state.join("api-token")).unwrap();
    let r = Run::of(
        d.command_with_state(&state, &["jobs"])
            .env("EODISPATCH_LISTEN", format!("127.0.0.1:{port}"))
            .output()
            .unwrap(),
    );
    r.assert_code(1);
    assert!(
        r.stderr.starts_with(&format!(
            "error: cannot reach the daemon at http://127.0.0.1:{port}"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("eodispatch serve"), "{}", r.stderr);
}

#[test]
fn serve_refuses_a_non_loopback_address() {
    let d = Daemon::start();
    let r = d.run(&["serve", "--listen", "0.0.0.0:0"]);
    r.assert_code(1);
    assert!(
        r.stderr.contains("error: refusing to listen on 0.0.0.0"),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = Daemon::start();
    let r = d.run(&["jobs", "--status", "done"]);
    r.assert_code(2);
    assert!(r.stderr.contains("possible values"), "{}", r.stderr);
    let r = d.run(&["show", "abc"]);
    r.assert_code(2);
    let r = d.run(&[]);
    r.assert_code(2);
}
