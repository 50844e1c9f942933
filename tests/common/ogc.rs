//! A real OGC API - Processes server for the tests: pygeoapi from PyPI (installed by
//! `tests/run` into `<repo>/.venv-ogc`) run by `tests/ogc/server.py` with the test processes
//! of `tests/ogc/processes` (`eodispatch-features`, `-slow`, `-fail`, `-sync-only`,
//! `-raster`, `-stac`); see tests/ogc/README.md for what pygeoapi answers. Plus a [`Gate`]:
//! a TCP forwarder tests can close to make a server look down while it keeps running.
//!
//! Use it as `#[path = "common/ogc.rs"] mod ogc;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Where the test server lives.
fn ogc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ogc")
}

/// The venv's python: `EODISPATCH_OGC_PYTHON`, else `<repo>/.venv-ogc/bin/python`.
/// Panics (tests must not skip silently) when neither exists.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EODISPATCH_OGC_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "EODISPATCH_OGC_PYTHON={} does not exist",
            p.display()
        );
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ogc/bin/python");
    assert!(
        p.exists(),
        "the test OGC API - Processes server is not installed: no {} (run tests/run, which \
         creates the venv and installs tests/ogc/requirements.txt; or set \
         EODISPATCH_OGC_PYTHON to a python with pygeoapi 0.21.0)",
        p.display()
    );
    p
}

/// Token introspection settings (RFC 7662, HTTP Basic client authentication).
#[derive(Clone, Debug)]
pub struct Introspection {
    /// The provider's introspection endpoint.
    pub url: String,
    /// Client id the server authenticates as.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// How to start the server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Every request but `/_test/*` and `/outputs/*` needs an active bearer token.
    pub introspect: Option<Introspection>,
    /// Put a [`Gate`] in front: [`Pygeoapi::url`] (and every URL pygeoapi writes:
    /// `Location`, links, result hrefs) goes through it.
    pub gate: bool,
}

impl Options {
    /// Bearer tokens checked at the test OIDC provider `issuer` (tests/oidc/server.mjs)
    /// as its introspecting client `fake-openeo`.
    pub fn introspect_at(issuer: &str) -> Options {
        Options {
            introspect: Some(Introspection {
                url: format!("{}/token/introspection", issuer.trim_end_matches('/')),
                client_id: "fake-openeo".into(),
                client_secret: "fake-openeo-introspection-secret".into(),
            }),
            gate: false,
        }
    }

    /// With a [`Gate`] in front.
    pub fn gated(mut self) -> Options {
        self.gate = true;
        self
    }
}

/// A pygeoapi server process; killed on drop.
pub struct Pygeoapi {
    opts: Options,
    data: tempfile::TempDir,
    port: u16,
    gate: Option<Gate>,
    child: Option<Child>,
    starts: u32,
    http: reqwest::Client,
}

impl Pygeoapi {
    /// Starts a server on a free port with a fresh data folder; returns once it answers.
    pub fn start() -> Pygeoapi {
        Pygeoapi::start_with(Options::default())
    }

    /// Like [`start`](Self::start), with options.
    pub fn start_with(opts: Options) -> Pygeoapi {
        let data = tempfile::tempdir().unwrap();
        // The server must know the gate's URL (it writes it into its links) before the
        // gate knows the server's port: the gate starts first, then learns the port.
        let gate = opts.gate.then(|| Gate::new(0));
        let mut p = Pygeoapi {
            gate,
            opts,
            data,
            port: 0,
            child: None,
            starts: 0,
            http: reqwest::Client::new(),
        };
        p.spawn(0);
        if let Some(g) = &p.gate {
            g.retarget(p.port);
        }
        p
    }

    fn spawn(&mut self, port: u16) {
        self.starts += 1;
        let stderr = std::fs::File::create(
            self.data
                .path()
                .join(format!("server-{}.stderr", self.starts)),
        )
        .unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(ogc_dir().join("server.py"))
            .args(["--port", &port.to_string()])
            .arg("--data")
            .arg(self.data.path());
        if let Some(g) = &self.gate {
            cmd.args(["--public-url", &g.url()]);
        }
        if let Some(i) = &self.opts.introspect {
            cmd.args(["--introspect", &i.url])
                .args(["--client-id", &i.client_id])
                .args(["--client-secret", &i.client_secret]);
        }
        let mut child = cmd
            .current_dir(ogc_dir())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the OGC test server's python runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        self.child = Some(child);
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if !l.is_empty() => l,
            _ => panic!(
                "the OGC test server (pygeoapi) did not start within 60 s; its output:\n{}",
                self.log_text()
            ),
        };
        let url = line.trim().strip_prefix("READY ").unwrap_or_else(|| {
            panic!(
                "unexpected first line from the OGC test server: {line:?}\n{}",
                self.log_text()
            )
        });
        let got: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url:?}"));
        assert!(port == 0 || got == port, "asked for port {port}, got {got}");
        self.port = got;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The URL clients use: the gate's when there is one, else the server's own
    /// (`http://127.0.0.1:PORT`, no trailing slash). pygeoapi writes it into every link.
    pub fn url(&self) -> String {
        match &self.gate {
            Some(g) => g.url(),
            None => self.direct_url(),
        }
    }

    /// The server's own address, never through the gate.
    pub fn direct_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's own port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The gate in front (panics without [`Options::gate`]).
    pub fn gate(&self) -> &Gate {
        self.gate
            .as_ref()
            .expect("started without a gate: use Options::default().gated()")
    }

    /// The data folder (config, `jobs.db`, `job-results/`, `outputs/`, `pygeoapi.log`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Is the process running?
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills the server (as a crash: running jobs die with it and stay `accepted` or
    /// `running` in the job store). Its port stays reserved for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Stops (if running) and starts again on the same port and data folder: the jobs
    /// survive (pygeoapi's TinyDB file), the request log of [`stats`](Self::stats) and the
    /// faults do not.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(port);
    }

    /// pygeoapi's log and the launcher's standard error, for failure messages.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let p = self.data.path().join(format!("server-{n}.stderr"));
            if let Ok(t) = std::fs::read_to_string(p) {
                out.push_str(&format!("--- server.py stderr (start {n})\n{t}"));
            }
        }
        if let Ok(t) = std::fs::read_to_string(self.data.path().join("pygeoapi.log")) {
            let tail: Vec<&str> = t.lines().rev().take(80).collect();
            out.push_str("--- pygeoapi.log (last lines)\n");
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    async fn test_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.direct_url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn test_post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.direct_url()))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    /// `GET /_test/stats`: `{"requests": [{method, path, query, authorization (bool),
    /// prefer, status, t, [fault, upstream_status, auth]}], "faults": [pending],
    /// "slow_jobs": {job id: {state, slept}}}`. Since the last (re)start.
    pub async fn stats(&self) -> Value {
        self.test_get("/_test/stats").await
    }

    /// The recorded requests (see [`stats`](Self::stats)).
    pub async fn requests(&self) -> Vec<Value> {
        match self.stats().await["requests"].take() {
            Value::Array(a) => a,
            _ => Vec::new(),
        }
    }

    /// Forgets the recorded requests and the faults.
    pub async fn reset(&self) {
        self.test_post("/_test/reset", &Value::Null).await;
    }

    /// The server's jobs, oldest first, read from pygeoapi's job manager (not recorded,
    /// no token needed): `{jobID, processID, status, message, progress, created,
    /// started, finished, updated, mimetype}`. Synchronous executions are jobs too.
    pub async fn jobs(&self) -> Vec<Value> {
        match self.test_get("/_test/jobs").await["jobs"].take() {
            Value::Array(a) => a,
            _ => Vec::new(),
        }
    }

    /// One job of [`jobs`](Self::jobs).
    pub async fn job(&self, id: &str) -> Option<Value> {
        self.jobs().await.into_iter().find(|j| j["jobID"] == id)
    }

    /// What the `eodispatch-slow` jobs did: job id -> `{state: running|done|stopped,
    /// slept}`.
    pub async fn slow_jobs(&self) -> Value {
        self.stats().await["slow_jobs"].take()
    }

    /// Adds a fault (`POST /_test/fault`): `{"method", "path_suffix", "status", "times"
    /// (1), "after" (false), "delay" (s), "body", "content_type"}`. Returns the pending
    /// faults.
    pub async fn fault(&self, spec: Value) -> Value {
        self.test_post("/_test/fault", &spec).await
    }

    /// Clears every fault.
    pub async fn clear_faults(&self) {
        self.test_post("/_test/fault", &serde_json::json!({})).await;
    }

    /// GET `path` (through [`url`](Self::url)) with `Accept: application/json`; the
    /// status and the body as JSON (`Null` when it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url()))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Pygeoapi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a closed [`Gate`] does to connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Nothing listens: connecting fails with "connection refused".
    Refuse,
    /// Connections are accepted and reset at once (TCP RST).
    Reset,
    /// Connections are accepted and never answered (a client's timeout runs out).
    Hang,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateState {
    Open,
    Closed(Closed),
}

struct GateShared {
    port: u16,
    target: Mutex<u16>,
    state: Mutex<GateState>,
    /// Live connections (client side and server side), to cut them when closing.
    conns: Mutex<HashMap<u64, (TcpStream, Option<TcpStream>)>>,
    next_id: AtomicU64,
    /// The current listener thread's stop flag and its "exited" flag.
    listener: Mutex<(Arc<AtomicBool>, Arc<AtomicBool>)>,
    accepted: AtomicU64,
}

/// A TCP forwarder on its own 127.0.0.1 port to a server's port. Closing it cuts the
/// live connections and refuses, resets or hangs new ones; opening it forwards again.
/// The server behind keeps running all along.
pub struct Gate {
    shared: Arc<GateShared>,
}

impl Gate {
    /// A gate, open, forwarding to `127.0.0.1:target_port` (0: nowhere yet, see
    /// [`retarget`](Self::retarget)).
    pub fn new(target_port: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(GateShared {
            port,
            target: Mutex::new(target_port),
            state: Mutex::new(GateState::Open),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            listener: Mutex::new(Default::default()),
            accepted: AtomicU64::new(0),
        });
        start_listener(&shared, listener);
        Gate { shared }
    }

    /// `http://127.0.0.1:PORT` of the gate.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// The gate's port.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Forwards to another port from now on.
    pub fn retarget(&self, target_port: u16) {
        *self.shared.target.lock().unwrap() = target_port;
    }

    /// Is it open?
    pub fn is_open(&self) -> bool {
        *self.shared.state.lock().unwrap() == GateState::Open
    }

    /// Connections accepted so far (forwarded or not).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes: connection refused from now on; live connections are cut.
    pub fn close(&self) {
        self.close_with(Closed::Refuse);
    }

    /// Closes with the given behaviour; live connections are cut (reset).
    pub fn close_with(&self, how: Closed) {
        let was_listening = {
            let mut state = self.shared.state.lock().unwrap();
            if *state == GateState::Closed(how) {
                return;
            }
            let was = *state != GateState::Closed(Closed::Refuse);
            *state = GateState::Closed(how);
            was
        };
        if how == Closed::Refuse && was_listening {
            // Stop the listener and wait until its socket is closed.
            let (stop, exited) = self.shared.listener.lock().unwrap().clone();
            stop.store(true, Ordering::SeqCst);
            while !exited.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
        } else if how != Closed::Refuse && !was_listening {
            start_listener(&self.shared, bind_retry(self.shared.port));
        }
        cut_all(&self.shared);
    }

    /// Opens again: new connections are forwarded.
    pub fn open(&self) {
        let mut state = self.shared.state.lock().unwrap();
        match *state {
            GateState::Open => {}
            GateState::Closed(Closed::Refuse) => {
                let listener = bind_retry(self.shared.port);
                *state = GateState::Open;
                drop(state);
                start_listener(&self.shared, listener);
            }
            GateState::Closed(_) => {
                *state = GateState::Open;
                drop(state);
                // Hanging connections stay in the table: cut them, clients retry.
                cut_all(&self.shared);
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.shared
            .listener
            .lock()
            .unwrap()
            .0
            .store(true, Ordering::SeqCst);
        cut_all(&self.shared);
    }
}

fn bind_retry(port: u16) -> TcpListener {
    for _ in 0..200 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the gate could not listen on port {port} again");
}

/// Resets a socket on close (SO_LINGER 0), as a crashed peer or a firewall would.
fn set_reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn cut_all(shared: &GateShared) {
    let conns: Vec<(TcpStream, Option<TcpStream>)> = shared
        .conns
        .lock()
        .unwrap()
        .drain()
        .map(|(_, c)| c)
        .collect();
    for (client, server) in conns {
        set_reset_on_close(&client);
        let _ = client.shutdown(Shutdown::Both);
        if let Some(s) = server {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn start_listener(shared: &Arc<GateShared>, listener: TcpListener) {
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let exited = Arc::new(AtomicBool::new(false));
    *shared.listener.lock().unwrap() = (stop.clone(), exited.clone());
    let shared = shared.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((client, _)) => {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = client.set_nonblocking(false);
                    handle(&shared, client);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        drop(listener);
        exited.store(true, Ordering::SeqCst);
    });
}

fn handle(shared: &Arc<GateShared>, client: TcpStream) {
    let state = *shared.state.lock().unwrap();
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    match state {
        GateState::Closed(Closed::Reset) | GateState::Closed(Closed::Refuse) => {
            set_reset_on_close(&client);
            drop(client);
        }
        GateState::Closed(Closed::Hang) => {
            shared.conns.lock().unwrap().insert(id, (client, None));
        }
        GateState::Open => {
            let target = *shared.target.lock().unwrap();
            let server = match TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], target))) {
                Ok(s) => s,
                Err(_) => {
                    // The server itself is down: the client sees a reset.
                    set_reset_on_close(&client);
                    return;
                }
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            shared.conns.lock().unwrap().insert(id, (c2, Some(s2)));
            let done = Arc::new(AtomicU64::new(0));
            for (from, to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ] {
                let (Ok(mut from), Ok(mut to)) = (from, to) else {
                    continue;
                };
                let shared = shared.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                    if done.fetch_add(1, Ordering::SeqCst) == 1 {
                        shared.conns.lock().unwrap().remove(&id);
                    }
                });
            }
        }
    }
}
