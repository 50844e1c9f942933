//! The standalone `fake-openeo` binary: starts, prints its line, serves, honours its flags.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openeo"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the ready line is printed");
    (guard, line.trim_end().to_string())
}

#[tokio::test]
async fn binary_prints_its_line_and_serves() {
    let (_guard, line) = spawn(&[
        "--port",
        "0",
        "--queued-secs",
        "0",
        "--running-secs",
        "0.2",
        "--token",
        "t1",
        "--token",
        "t2",
        "--issuer",
        "http://127.0.0.1:5556/dex",
        "--link-ttl-secs",
        "60",
    ]);
    let rest = line
        .strip_prefix("fake-openeo listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected line: {line}"));
    let (port, tail) = rest.split_once(' ').unwrap();
    let port: u16 = port.parse().unwrap();
    assert!(port > 0);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(tail, format!("(openEO API at {base}/openeo/1.2)"));

    let c = reqwest::Client::new();
    let wk: Value = c
        .get(format!("{base}/.well-known/openeo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wk["versions"][0]["url"], format!("{base}/openeo/1.2"));
    let oidc: Value = c
        .get(format!("{base}/openeo/1.2/credentials/oidc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["providers"][0]["issuer"], "http://127.0.0.1:5556/dex");
    // --token: only the given tokens.
    let r = c
        .get(format!("{base}/openeo/1.2/me"))
        .header("Authorization", "Bearer oidc/fake/other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(format!("{base}/openeo/1.2/me"))
        .header("Authorization", "Bearer oidc/fake/t2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The default UDP folder is the workspace catalogue.
    let body = serde_json::json!({"process": {"process_graph": {"pv": {
        "process_id": "eurac_pv_farm_detection",
        "namespace": format!("{base}/udp/eurac_pv_farm_detection.json"),
        "arguments": {}, "result": true}}}});
    let r = c
        .post(format!("{base}/openeo/1.2/jobs"))
        .header("Authorization", "Bearer oidc/fake/t1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn binary_takes_a_fixed_port_and_udp_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.json"),
        r#"{"id": "mine", "parameters": [], "process_graph": {"a": {"process_id": "x", "arguments": {}, "result": true}}}"#,
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_guard, line) = spawn(&[
        "--port",
        &port.to_string(),
        "--udp-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let r = reqwest::get(format!("http://127.0.0.1:{port}/udp/mine.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
