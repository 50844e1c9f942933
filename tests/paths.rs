//! The discovery file and `eodispatch paths`: the real binary started on port 0 (and on
//! every address) says where it listens in `state/daemon.json`; the URL there answers,
//! the token file there works, the CLI follows it (the configured port 0 would not),
//! `eodispatch paths --json` reports the same facts, and the file goes when the daemon
//! stops cleanly (and is reported stale when it did not).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{raw_http, raw_status, spawn_serve};
use serde_json::Value;

/// Waits for the daemon's discovery file and returns it.
fn wait_discovery(root: &Path, child: &mut std::process::Child) -> Value {
    let path = root.join("state/daemon.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the daemon exited ({status}) without a discovery file: {err}");
        }
        assert!(Instant::now() < deadline, "no discovery file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `eodispatch ARGS` configured like the daemon of `root` (listening on `listen`).
fn cli(root: &Path, listen: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eodispatch"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EODISPATCH_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .env("HOME", root)
        .envs(common::env_for(root, listen))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn paths_json(root: &Path, listen: &str) -> Value {
    let out = cli(root, listen, &["paths", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn addr_of(api_url: &str) -> SocketAddr {
    api_url.strip_prefix("http://").unwrap().parse().unwrap()
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw_status(&raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"),
    ))
}

fn terminate(child: &mut std::process::Child, signal: i32) {
    // SAFETY: kill sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks a running daemon's discovery file against the daemon and `eodispatch paths`.
fn check_running(root: &Path, listen: &str, child: &std::process::Child, d: &Value) {
    let path = root.join("state/daemon.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(d["pid"], child.id());
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["started"].as_str().unwrap().ends_with('Z'), "{d}");
    assert_eq!(d["results_dir"], root.join("results").display().to_string());
    assert_eq!(d["state_dir"], root.join("state").display().to_string());
    assert_eq!(
        d["config_file"],
        root.join("config/config.toml").display().to_string()
    );
    let addr = addr_of(d["api_url"].as_str().unwrap());
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{d}");
    assert_eq!(get(addr, "/health", None), 200);
    let token = std::fs::read_to_string(d["token_file"].as_str().unwrap()).unwrap();
    assert_eq!(get(addr, "/unit_jobs", Some(token.trim())), 200);
    assert_eq!(get(addr, "/unit_jobs", None), 401);

    // `eodispatch paths --json`: the same facts, and that the daemon runs.
    let p = paths_json(root, listen);
    assert_eq!(p["daemon"], "running", "{p}");
    for (key, value) in d.as_object().unwrap() {
        assert_eq!(&p[key], value, "{key}: {p}");
    }
    assert_eq!(p["discovery_file"], path.display().to_string());
    let text = String::from_utf8(cli(root, listen, &["paths"]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["api_url", d["api_url"].as_str().unwrap()]),
        "{text}"
    );

    // The CLI reaches the daemon through the file: the configured port is 0.
    let out = cli(root, listen, &["jobs", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn a_daemon_on_port_0_publishes_where_it_listens_and_removes_it_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let listen = "127.0.0.1:0";
    // Nothing runs yet: the facts of the configuration.
    let p = paths_json(root, listen);
    assert_eq!(p["daemon"], "not_running", "{p}");
    assert_eq!(p["api_url"], "http://127.0.0.1:0");
    assert!(p["pid"].is_null() && p["started"].is_null(), "{p}");
    assert_eq!(
        p["token_file"],
        root.join("state/api-token").display().to_string()
    );

    let mut child = spawn_serve(root, listen, &[]);
    let d = wait_discovery(root, &mut child);
    assert!(
        d["api_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{d}"
    );
    check_running(root, listen, &child, &d);

    terminate(&mut child, libc::SIGTERM);
    assert!(
        !root.join("state/daemon.json").exists(),
        "the discovery file outlived a clean shutdown"
    );
    let p = paths_json(root, listen);
    assert_eq!(p["daemon"], "not_running", "{p}");
    assert!(p["pid"].is_null(), "{p}");
}

#[test]
fn a_daemon_on_every_address_is_reached_over_loopback_and_a_crash_leaves_a_stale_file() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let cases: &[(&str, &str)] = if ipv6 {
        &[
            ("0.0.0.0:0", "http://127.0.0.1:"),
            ("[::]:0", "http://[::1]:"),
        ]
    } else {
        eprintln!("no IPv6 loopback on this machine: only 0.0.0.0 is tried");
        &[("0.0.0.0:0", "http://127.0.0.1:")]
    };
    for (listen, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Before it starts, `paths` maps the configured wildcard the same way.
        let p = paths_json(root, listen);
        assert_eq!(p["api_url"], format!("{expected}0"), "{p}");

        let mut child = spawn_serve(root, listen, &[("EODISPATCH_ALLOW_REMOTE", "true")]);
        let d = wait_discovery(root, &mut child);
        assert!(
            d["api_url"].as_str().unwrap().starts_with(expected),
            "{listen}: {d}"
        );
        check_running(root, listen, &child, &d);

        // Killed: the file stays, and is reported as stale.
        terminate(&mut child, libc::SIGKILL);
        assert!(root.join("state/daemon.json").exists());
        let p = paths_json(root, listen);
        assert_eq!(p["daemon"], "stale", "{p}");
        assert!(
            p["note"]
                .as_str()
                .unwrap()
                .contains(&format!("process {}", d["pid"])),
            "{p}"
        );
        assert_eq!(p["api_url"], format!("{expected}0"), "{p}");
        let out = cli(root, listen, &["paths"]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("daemon          not running: "), "{text}");
    }
}
