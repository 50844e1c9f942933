//! The README's curl examples work as written: every `sh` block of the section "Try it
//! with curl" runs, in order, with bash against a fresh daemon (the real binary, on a
//! free port instead of 8421, with `eodispatch` on PATH), and each answer is what the
//! README says it is; so do the walkthroughs of the sections "Try a whole job without
//! an account", "Upscale a large area", "Cost before submitting, and budgets" (against
//! the fake backend in this process instead of port 9000) and "OGC API Processes
//! services".

mod common;
#[path = "common/ogc.rs"]
mod ogc;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn curl_blocks(readme: &str) -> Vec<String> {
    let start = readme.find("## Try it with curl").expect("section");
    let end = start
        + readme[start..]
            .find("\n## Try a whole job without an account")
            .expect("next section");
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let j = body.find("```").unwrap();
        blocks.push(body[..j].to_string());
        rest = &body[j + 3..];
    }
    blocks
}

/// Splits a block's output into the JSON documents curl printed (one per command).
fn documents(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or(Value::Null))
        .collect()
}

#[test]
fn readme_curl_examples_work_as_written() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is not installed (tests/run installs it)");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = curl_blocks(&readme);
    assert!(blocks.len() >= 8, "found {} blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    let c = common::Child::start(dir.path());
    let port = c.addr.port().to_string();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The blocks share one shell session, like a reader's terminal.
    let mut script = String::from("set -e\n");
    for (i, block) in blocks.iter().enumerate() {
        let block = block
            .replace("127.0.0.1:8421", &format!("127.0.0.1:{port}"))
            // The event stream runs until Ctrl-C; stop it after a moment.
            .replace("curl -N ", "curl -N --max-time 1 ");
        script.push_str(&format!("echo '@@BLOCK {i}'\n{block}\necho\n"));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            script
                .replace("curl -N --max-time 1 ", "{ curl -N --max-time 1 ")
                .replace("/events\n", "/events || true; }\n"),
        )
        .env("PATH", path)
        .env("HOME", dir.path())
        .envs(common::env_for(dir.path(), &c.addr.to_string()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "bash failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: Vec<&str> = stdout.split("@@BLOCK ").skip(1).collect();
    assert_eq!(outputs.len(), blocks.len());
    let docs = |i: usize| documents(outputs[i].split_once('\n').unwrap().1);
    // No example may hit a security or content-type refusal (the OpenAPI document names
    // these codes too: look for them as the code of an answer).
    for (i, o) in outputs.iter().enumerate() {
        for bad in [
            "Unauthorized",
            "HostNotAllowed",
            "UnsupportedMediaType",
            "MalformedJson",
        ] {
            let answer = format!("\"code\":\"{bad}\"");
            assert!(!o.contains(&answer), "block {i} answered {bad}: {o}");
        }
    }
    let find = |needle: &str| {
        blocks
            .iter()
            .position(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("no block with {needle}"))
    };
    let health = docs(find("/health"));
    assert_eq!(health[0]["status"], "ok");
    let submitted = docs(find("\"PV farms Vienna\""));
    assert_eq!(submitted[0]["status"], "created", "{submitted:?}");
    assert_eq!(submitted[0]["id"], 1);
    let reads = docs(find("/unit_jobs/1\n"));
    assert_eq!(reads[0]["title"], "PV farms Vienna");
    assert_eq!(reads[1][0]["id"], 1);
    assert!(reads[2]["processing_jobs"].is_array());
    let results = docs(find("/unit_jobs/1/results"));
    assert_eq!(results[0]["code"], "ResultsNotAvailable");
    // Offline, the backend cannot be reached: no logs yet, and /backends says so.
    assert_eq!(results[1]["code"], "JobNotSubmitted", "{results:?}");
    let backends = results[2].as_array().unwrap();
    assert!(backends
        .iter()
        .any(|b| b["url"] == "https://openeofed.dataspace.copernicus.eu"));
    let params = docs(find("/params"));
    let spatial = params[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "spatial_extent")
        .unwrap();
    assert_eq!(spatial["type"], "bounding-box");
    let oops = docs(find("\"oops\""));
    assert_eq!(oops[0]["status"], 422);
    let names: Vec<&str> = oops[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("spatial_extent")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("temporal_extent")),
        "{names:?}"
    );
    let tiles = docs(find("/tiles"));
    assert_eq!(tiles[0]["type"], "GeometryCollection");
    let task = docs(find("/upscale_tasks \\"));
    assert_eq!(task[0]["jobs"].as_array().map(Vec::len), Some(2));
    assert_eq!(task[2]["id"], 1);
    let events = outputs[find("/events")];
    assert!(events.contains("event: hello"), "{events}");
    let openapi = docs(find("/openapi.json"));
    assert!(openapi[0]["paths"]["/unit_jobs"].is_object());
    // After the cancel/delete block job 1 and task 1 are gone.
    std::thread::sleep(Duration::from_millis(10));
    let check = Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {}", c.token()),
            &format!("http://127.0.0.1:{port}/jobs_status"),
        ])
        .output()
        .unwrap();
    let st: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(st["processing_jobs"], serde_json::json!([]), "{st}");
    assert_eq!(st["upscaling_tasks"], serde_json::json!([]), "{st}");
}

/// The configuration example in the README is a valid `config.toml`.
#[test]
fn readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(
        blocks.len(),
        3,
        "the OGC example, the catalogues and the configuration"
    );
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let env = vec![
            ("HOME".to_string(), dir.path().display().to_string()),
            (
                "EODISPATCH_CONFIG_DIR".to_string(),
                dir.path().display().to_string(),
            ),
        ];
        eodispatch::config::Config::load_from(&env).unwrap()
    };
    let ogc = load(blocks[0]);
    assert_eq!(
        ogc.backends["gep"].label,
        eodispatch::job::Label::OgcApiProcess
    );
    assert!(ogc.backends["gep"].issuer.is_some() && ogc.backends["gep"].client_id.is_some());
    let cat = load(blocks[1]);
    assert_eq!(cat.catalogues.len(), 5);
    assert_eq!(cat.catalogues[4], "bundled");
    assert_eq!(cat.catalogue_refresh_s, 21600.0);
    let c = load(blocks[2]);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8421");
    assert_eq!(c.backends["cdse"].max_running_jobs, Some(2));
    assert_eq!(c.backends["cdse"].label, eodispatch::job::Label::Openeo);
    assert_eq!(
        c.backends["ades"].label,
        eodispatch::job::Label::OgcApiProcess
    );
    assert_eq!(c.backends["ades"].scopes, ["profile"]);
    assert_eq!(c.poll_interval_max_s, 60.0);
    assert_eq!(
        c.token_store,
        eodispatch::auth::backend_tokens::StoreKind::Keyring
    );
}

/// The "OGC API Processes services" section: its server (the tests' pygeoapi, started
/// here on a free port instead of 5000), the daemon as a child, the curl block run as
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_ogc_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## OGC API Processes services")
        .expect("section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("next section");
    let blocks: Vec<String> = readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect();
    assert_eq!(blocks.len(), 2);
    assert!(blocks[0].contains("tests/ogc/server.py --port 5000"));
    let server = ogc::Pygeoapi::start();
    let server_port = server.port();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let block = blocks[1].clone();
    let out = tokio::task::spawn_blocking(move || {
        let c =
            common::Child::start_with_env(&dir_path, &[("EODISPATCH_POLL_INTERVAL_MIN_S", "0.2")]);
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = format!(
            "set -e\n{}",
            block
                .replace("127.0.0.1:8421", &format!("127.0.0.1:{}", c.addr.port()))
                .replace("127.0.0.1:5000", &format!("127.0.0.1:{server_port}"))
                .replace("sleep 1", "sleep 0.2")
        );
        let out = Command::new("timeout")
            .args(["60", "bash", "-c", &script])
            .env("PATH", path)
            .env("HOME", &dir_path)
            .envs(common::env_for(&dir_path, &c.addr.to_string()))
            .output()
            .unwrap();
        c.signal("TERM");
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The service's description with its outputs, then the published folder.
    let described: Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(described["outputs"][0]["id"], "features", "{stdout}");
    let published = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("\"dir\":\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no folder in {stdout}"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{published}/job.json")).unwrap())
            .unwrap();
    assert!(
        manifest["layers"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with(".geojson"),
        "{manifest}"
    );
}

/// The "Try a whole job without an account" section: the fake backend in this process
/// on a free port (instead of `cargo run ... --port 9000`), the daemon as a child, the
/// curl block run as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_fake_backend_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Try a whole job without an account")
        .expect("section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("next section");
    let section = &readme[start..end];
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 4);
    assert!(blocks[0].contains("fake-openeo -- --port 9000"));
    assert!(blocks[3].contains("/sync_jobs"));
    assert!(blocks[0].contains("--anonymous"));
    let fake = fake_openeo::start(
        fake_openeo::FakeConfig::default()
            .with_timing(0.2, 0.5)
            .with_token_check(fake_openeo::TokenCheck::Anonymous),
    )
    .await
    .unwrap();
    let fake_port = fake.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let c =
            common::Child::start_with_env(&dir_path, &[("EODISPATCH_POLL_INTERVAL_MIN_S", "0.2")]);
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = blocks_owned_script(&readme_blocks(), c.addr.port(), fake_port);
        let out = Command::new("timeout")
            .args(["60", "bash", "-c", &script])
            .current_dir(&dir_path)
            .env("PATH", path)
            .env("HOME", &dir_path)
            .envs(common::env_for(&dir_path, &c.addr.to_string()))
            .output()
            .unwrap();
        c.signal("TERM");
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"openEO.tif\":{"), "{stdout}");
    // The synchronous run: its headers, then GDAL reading the file it saved.
    assert!(
        stdout.contains("HTTP/1.1 200 OK\r\ncontent-type: image/tiff"),
        "{stdout}"
    );
    assert!(stdout.contains("x-job-id: 2"), "{stdout}");
    assert!(dir.path().join("pv.tif").is_file());
    assert_eq!(
        stdout.matches("Driver: GTiff/GeoTIFF").count(),
        2,
        "{stdout}"
    );
    // Right after `finished` the link is the backend's, or already the daemon's own
    // when the download was quicker than the script.
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{fake_port}/openeo/1.2/jobs/"))
            || stdout.contains("/files/"),
        "{stdout}"
    );
    // The published file, served without a token and read by GDAL over HTTP.
    assert!(stdout.contains("HTTP/1.1 200 OK"), "{stdout}");
    assert!(stdout.contains("Driver: GTiff/GeoTIFF"), "{stdout}");
    assert_eq!(fake.stats().jobs_created, 1);
}

fn readme_blocks() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Try a whole job without an account")
        .unwrap();
    let end = start + 1 + readme[start + 1..].find("\n## ").unwrap();
    readme[start..end]
        .split("```sh\n")
        .skip(2)
        .map(|b| b.split("```").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn blocks_owned_script(block: &str, daemon_port: u16, fake_port: u16) -> String {
    format!(
        "set -e\n{}",
        block
            .replace("127.0.0.1:8421", &format!("127.0.0.1:{daemon_port}"))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{fake_port}"))
            .replace("sleep 2", "sleep 0.2")
            .replace("sleep 1", "sleep 0.2")
    )
}

/// The "Upscale a large area" section: the fake backend in this process on a free port
/// (instead of 9000), the daemon as a child, the section's blocks run as written in one
/// shell: tiles, the task, its list entry; cancel, retry, the end; the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_upscale_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Upscale a large area").expect("section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("next section");
    let blocks: Vec<String> = readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect();
    assert_eq!(blocks.len(), 3);
    let fake = fake_openeo::start(
        fake_openeo::FakeConfig::default()
            .with_timing(0.2, 0.5)
            .with_token_check(fake_openeo::TokenCheck::Anonymous),
    )
    .await
    .unwrap();
    let fake_port = fake.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let c =
            common::Child::start_with_env(&dir_path, &[("EODISPATCH_POLL_INTERVAL_MIN_S", "0.2")]);
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut script = String::from("set -e\n");
        for (i, block) in blocks.iter().enumerate() {
            script.push_str(&format!("echo '@@BLOCK {i}'\n{block}\necho\n"));
        }
        let script = script
            .replace("127.0.0.1:8421", &format!("127.0.0.1:{}", c.addr.port()))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{fake_port}"))
            .replace("sleep 2", "sleep 0.2");
        let out = Command::new("timeout")
            .args(["120", "bash", "-c", &script])
            .env("PATH", path)
            .env("HOME", &dir_path)
            .envs(common::env_for(&dir_path, &c.addr.to_string()))
            .output()
            .unwrap();
        c.signal("TERM");
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let outputs: Vec<&str> = stdout
        .split("@@BLOCK ")
        .skip(1)
        .map(|o| o.split_once('\n').unwrap().1)
        .collect();
    assert_eq!(outputs.len(), 3, "{stdout}");
    // The list: the new task with its four tiles.
    let list: Value = serde_json::from_str(outputs[0].trim()).unwrap();
    let task = &list[0];
    assert_eq!(task["title"], "PV farms around Vienna", "{list}");
    let counts = task["counts"].as_object().unwrap();
    assert_eq!(counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 4);
    // Canceled, retried (four new attempts), finished.
    let lines: Vec<&str> = outputs[1].lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "{\"id\":1,\"title\":\"PV farms around Vienna\",\"label\":\"openeo\",\"status\":\"canceled\"",
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "\"counts\":{\"created\":4,\"queued\":0,\"running\":0,\"finished\":0,\"canceled\":0,\"failed\":0}"
    );
    assert!(
        lines[2].starts_with("\"progress\":100.0,\"counts\":{\"created\":0,\"queued\":0,\"running\":0,\"finished\":4,"),
        "{stdout}"
    );
    // The command line: a second task, followed to its end; the table lists both.
    assert!(
        outputs[2].starts_with(
            "Created upscale task 2 \"PV farms, command line\": 4 tiles of 20 × 20 km"
        ),
        "{stdout}"
    );
    assert!(
        outputs[2].contains("Task 2 \"PV farms, command line\" finished: 4/4 finished\n"),
        "{stdout}"
    );
    assert!(stderr.contains("task 2: finished, 100%"), "{stderr}");
    assert!(
        outputs[2].contains("ID  STATUS    PROGRESS  TILES  TITLE"),
        "{stdout}"
    );
    assert!(outputs[2].contains(" 1  finished      100%    4/4  PV farms around Vienna"));
    // Tiles sent before the cancel (at most the limit of 2), then 4 + 4.
    let created = fake.stats().jobs_created;
    assert!((8..=10).contains(&created), "{created}");
    assert!(
        fake.jobs().iter().all(|j| j.status.is_terminal()),
        "{:#?}",
        fake.jobs()
    );
}

/// The "Cost before submitting, and budgets" section: the fake backend in this process
/// on a free port (instead of 9000), the daemon as a child, the section's blocks run as
/// written in one shell: the estimate, then a budget that refuses the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_cost_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Cost before submitting, and budgets")
        .expect("section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("next section");
    let blocks: Vec<String> = readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect();
    assert_eq!(blocks.len(), 2);
    let fake = fake_openeo::start(
        fake_openeo::FakeConfig::default()
            .with_timing(0.2, 0.5)
            .with_token_check(fake_openeo::TokenCheck::Anonymous),
    )
    .await
    .unwrap();
    let fake_port = fake.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let c = common::Child::start_with_env(&dir_path, &[]);
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut script = String::from("set -e\n");
        for (i, block) in blocks.iter().enumerate() {
            script.push_str(&format!("echo '@@BLOCK {i}'\n{block}\necho\n"));
        }
        let script = script
            .replace("127.0.0.1:8421", &format!("127.0.0.1:{}", c.addr.port()))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{fake_port}"));
        let out = Command::new("timeout")
            .args(["60", "bash", "-c", &script])
            .env("PATH", path)
            .env("HOME", &dir_path)
            .envs(common::env_for(&dir_path, &c.addr.to_string()))
            .output()
            .unwrap();
        c.signal("TERM");
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let outputs: Vec<&str> = stdout
        .split("@@BLOCK ")
        .skip(1)
        .map(|o| o.split_once('\n').unwrap().1)
        .collect();
    let estimate: Value = serde_json::from_str(outputs[0].trim()).expect(outputs[0]);
    assert_eq!(estimate["basis"], "per-area", "{estimate}");
    assert_eq!(estimate["service"], "eurac_pv_farm_detection", "{estimate}");
    let amount = estimate["amount"].as_f64().unwrap();
    assert!(amount > 0.01 && amount < 0.05, "{estimate}");
    assert_eq!(estimate["budget"]["max_cost"], 5.0, "{estimate}");
    let lines: Vec<&str> = outputs[1].lines().filter(|l| !l.is_empty()).collect();
    let budget: Value = serde_json::from_str(lines[0]).expect(lines[0]);
    assert_eq!(budget["per_day"], 0.01, "{budget}");
    let refusal: Value = serde_json::from_str(lines[1]).expect(lines[1]);
    assert_eq!(refusal["code"], "BudgetExceeded", "{refusal}");
    assert_eq!(refusal["budget"], "per_day", "{refusal}");
    assert_eq!(refusal["limit"], 0.01, "{refusal}");
    assert_eq!(refusal["spent"], 0.0, "{refusal}");
    assert_eq!(refusal["estimate"], amount, "{refusal}");
}
