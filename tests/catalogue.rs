//! The service catalogue (`GET /services`, `/services/{id}`, `/catalogue`) with real
//! sources: the repository's own snapshot (`catalog/apex`) served by python's
//! `http.server` as a web folder, a real OGC API Records server (pygeoapi with the
//! snapshot's records), local folders from config.toml and the environment, and the
//! parameters of every listed service.

mod common;
#[path = "common/ogc.rs"]
mod ogc;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Child, TestDaemon};
use eodispatch::config::Config;
use serde_json::{json, Value};

/// The repository's bundled snapshot.
fn snapshot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog/apex")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A copy of the snapshot in `dir` with one record's title changed (to tell it from
/// the bundled copy), an invalid JSON record and a record without links.
fn served_tree(dir: &Path) -> PathBuf {
    let root = dir.join("apex");
    copy_tree(&snapshot(), &root);
    let max_ndvi =
        root.join("algorithm_catalog/vito/max_ndvi_composite/records/max_ndvi_composite.json");
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&max_ndvi).unwrap()).unwrap();
    doc["properties"]["title"] = json!("Max NDVI composite (served copy)");
    std::fs::write(&max_ndvi, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let broken = root.join("algorithm_catalog/zz_test/broken/records");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("broken.json"),
        "{\"id\": \"broken\", \"links\": [",
    )
    .unwrap();
    let bare = root.join("algorithm_catalog/zz_test/no_links/records");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::write(
        bare.join("no_links.json"),
        json!({"id": "no_links", "type": "Feature",
               "conformsTo": ["https://apex.esa.int/core/openeo-udp"],
               "properties": {"title": "No links", "type": "service"}})
        .to_string(),
    )
    .unwrap();
    root
}

/// `python3 -m http.server` serving `dir` on 127.0.0.1; its request log goes to a file.
struct WebFolder {
    child: std::process::Child,
    url: String,
    log: PathBuf,
}

impl WebFolder {
    fn start(dir: &Path, log: PathBuf) -> WebFolder {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        WebFolder {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            log,
        }
    }

    /// Requests answered with `status` so far (from the server's log).
    fn answered(&self, status: u16) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(&format!("\" {status} ")))
            .count()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WebFolder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_with(root: &Path, sources: &[&str], refresh_s: f64) -> Config {
    let mut c = Config::for_root(root);
    c.catalogues = sources.iter().map(|s| s.to_string()).collect();
    c.catalogue_refresh_s = refresh_s;
    c
}

/// Waits until `probe` on `GET /catalogue` holds; returns the status.
async fn wait_catalogue(d: &TestDaemon, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, body) = d.get_json("/catalogue").await;
        assert_eq!(st, 200, "{body}");
        if probe(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {body:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn services(d: &TestDaemon, query: &str) -> Vec<Value> {
    let (st, body) = d.get_json(&format!("/services{query}")).await;
    assert_eq!(st, 200, "{query}: {body}");
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_repository_is_listed_searched_detailed_and_asked_conditionally() {
    let dir = tempfile::tempdir().unwrap();
    let tree = served_tree(dir.path());
    let web = WebFolder::start(&tree, dir.path().join("http.log"));
    let d = TestDaemon::start_with(config_with(&dir.path().join("d"), &[&web.url], 1.0)).await;
    let status = wait_catalogue(&d, "the served folder is read", |s| {
        s["sources"][0]["state"] == "ok"
    })
    .await;
    let src = &status["sources"][0];
    assert_eq!(src["kind"], "repository");
    assert_eq!(src["records"], 70, "{status}");
    assert_eq!(
        src["skipped"], 2,
        "the broken record and the one without links: {status}"
    );
    assert_eq!(status["services"], 70);

    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    assert!(
        all.iter().all(|s| s["source"] == web.url.as_str()),
        "{all:?}"
    );
    assert!(all
        .iter()
        .any(|s| s["title"] == "Max NDVI composite (served copy)"));
    let titles: Vec<String> = all
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = titles.clone();
    sorted.sort();
    assert_eq!(titles, sorted, "sorted by title");

    // q: every word somewhere in title, description or keywords.
    let ndvi = services(&d, "?q=NDVI").await;
    assert!(!ndvi.is_empty() && ndvi.len() < 70, "{}", ndvi.len());
    for s in &ndvi {
        let text = format!("{} {} {}", s["title"], s["description"], s["keywords"]).to_lowercase();
        assert!(text.contains("ndvi"), "{s}");
    }
    assert!(services(&d, "?q=ndvi%20zzznothing").await.is_empty());
    // keyword: a whole keyword, any case.
    let s2 = services(&d, "?keyword=sentinel-2").await;
    assert!(!s2.is_empty());
    assert!(s2.iter().all(|s| s["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k.as_str().unwrap().eq_ignore_ascii_case("Sentinel-2"))));
    assert!(services(&d, "?keyword=sentinel").await.len() < s2.len() || s2.is_empty());
    // platform: id, title, URL or endpoint.
    let gep = services(&d, "?platform=gep").await;
    assert_eq!(gep.len(), 5, "{gep:?}");
    assert!(gep.iter().all(|s| s["platform"]["id"] == "gep"));
    let tao = services(&d, "?platform=sen4x.tao").await;
    assert_eq!(tao.len(), 9);
    // kind.
    assert_eq!(services(&d, "?kind=ogc_api_process").await.len(), 14);
    assert_eq!(services(&d, "?kind=openeo").await.len(), 56);
    assert_eq!(services(&d, "?kind=openeo&platform=gep").await.len(), 0);
    let (st, p) = d.get_json("/services?kind=wps").await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["errors"][0]["name"], "kind");
    let (st, p) = d.get_json("/services?limit=5").await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["errors"][0]["name"], "limit");

    // One service in detail.
    let (st, pv) = d.get_json("/services/eurac_pv_farm_detection").await;
    assert_eq!(st, 200, "{pv}");
    assert_eq!(pv["label"], "openeo");
    assert_eq!(pv["kind"], "openeo");
    assert_eq!(pv["endpoint"], "https://openeofed.dataspace.copernicus.eu");
    assert_eq!(pv["platform"]["id"], "cdse_openeo_federation");
    assert_eq!(
        pv["platform"]["title"],
        "CDSE openEO Federation processing backend"
    );
    assert_eq!(pv["cost_estimate"], 0.001);
    assert_eq!(pv["cost_unit"], "platform credits per km²");
    assert_eq!(pv["license"], "CC-BY-4.0");
    assert_eq!(pv["formats"], json!(["GeoTIFF", "netCDF"]));
    assert!(pv["thumbnail"].as_str().unwrap().ends_with("thumbnail.png"));
    let links = pv["links"].as_array().unwrap();
    let rels: Vec<&str> = links.iter().map(|l| l["rel"].as_str().unwrap()).collect();
    for rel in [
        "application",
        "service",
        "platform",
        "webapp",
        "thumbnail",
        "about",
        "code",
    ] {
        assert!(rels.contains(&rel), "{rel}: {rels:?}");
    }
    // A relative link resolves against the record's URL.
    let platform_link = links.iter().find(|l| l["rel"] == "platform").unwrap();
    assert_eq!(
        platform_link["href"].as_str().unwrap(),
        format!("{}platform_catalog/cdse_openeo_federation.json", web.url)
    );
    assert!(pv["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["organization"] == "Eurac Research"));
    assert_eq!(
        pv["defaults"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );
    // Without a benchmark scenario the defaults are empty.
    let (_, ogc) = d.get_json("/services/gep_DinSAR").await;
    assert_eq!(ogc["defaults"], json!({}));
    assert_eq!(ogc["namespace"], "gep/wps3");
    let (st, p) = d.get_json("/services/no_such_service").await;
    assert_eq!(st, 404, "{p}");
    assert_eq!(p["code"], "ServiceNotFound");
    let (st, _) = d.get_json("/services/broken").await;
    assert_eq!(st, 404);

    // Refreshes every second ask conditionally: the files answer 304.
    let s = wait_catalogue(&d, "a refresh answered 304", |s| {
        s["sources"][0]["not_modified"].as_u64().unwrap_or(0) >= 70
    })
    .await;
    assert_eq!(s["sources"][0]["state"], "ok");
    assert!(web.answered(304) >= 70, "{}", web.answered(304));
    assert_eq!(services(&d, "").await.len(), 70);

    // The routes are documented.
    let (_, doc) = d.get_json("/openapi.json").await;
    for (path, codes) in [
        ("/services", &["200", "401", "422"][..]),
        ("/services/{id}", &["200", "401", "404"][..]),
        ("/catalogue", &["200", "401", "422"][..]),
    ] {
        let responses = &doc["paths"][path]["get"]["responses"];
        for c in codes {
            assert!(responses[c].is_object(), "{path} {c}: {responses}");
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_gone_offline_is_served_from_its_saved_copy_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tree = served_tree(dir.path());
    let mut web = WebFolder::start(&tree, dir.path().join("http.log"));
    let root = dir.path().join("d");
    let config = config_with(&root, &[&web.url], 3600.0);
    let d = TestDaemon::start_with(config.clone()).await;
    wait_catalogue(&d, "the served folder is read", |s| {
        s["sources"][0]["state"] == "ok"
    })
    .await;
    d.stop().await;
    assert!(
        std::fs::read_dir(root.join("state/catalogue"))
            .unwrap()
            .count()
            == 1,
        "one saved copy"
    );
    web.stop();

    let d = TestDaemon::start_with(config).await;
    let s = wait_catalogue(&d, "the refresh fails", |s| {
        !s["sources"][0]["error"].is_null()
    })
    .await;
    let src = &s["sources"][0];
    assert_eq!(src["state"], "cached", "{s}");
    assert_eq!(src["records"], 70);
    assert!(!src["refreshed_at"].is_null());
    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    assert!(all.iter().all(|s| s["source"] == web.url.as_str()));
    assert!(all
        .iter()
        .any(|s| s["title"] == "Max NDVI composite (served copy)"));
    d.stop().await;

    // Without a saved copy, an unreachable source is stood in for by the bundled
    // snapshot, and the listing says so.
    let other = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(config_with(other.path(), &[&web.url], 3600.0)).await;
    let s = wait_catalogue(&d, "the refresh fails", |s| {
        !s["sources"][0]["error"].is_null()
    })
    .await;
    assert_eq!(s["sources"][0]["state"], "offline", "{s}");
    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    assert!(all.iter().all(|s| s["source"] == "bundled"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ogc_api_records_collection_is_read_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(ogc::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ogc/records_server.py"))
        .args(["--port", "0", "--data"])
        .arg(dir.path().join("pygeoapi"))
        .arg("--records")
        .arg(snapshot())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("pygeoapi.stderr")).unwrap())
        .spawn()
        .expect("the venv's python runs");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(90)).unwrap_or_default();
    let base = line.trim().strip_prefix("READY ").unwrap_or_else(|| {
        panic!(
            "pygeoapi did not start: {line:?}\n{}",
            std::fs::read_to_string(dir.path().join("pygeoapi.stderr")).unwrap_or_default()
        )
    });
    let collection = format!("{base}/collections/apex");
    let d =
        TestDaemon::start_with(config_with(&dir.path().join("d"), &[&collection], 3600.0)).await;
    let s = wait_catalogue(&d, "the collection is read", |s| {
        s["sources"][0]["state"] == "ok" || !s["sources"][0]["error"].is_null()
    })
    .await;
    let src = &s["sources"][0];
    assert_eq!(src["state"], "ok", "{s}");
    assert_eq!(src["kind"], "records");
    assert_eq!(src["records"], 70);
    // Ten records a page: seven pages at least.
    assert!(src["requests"].as_u64().unwrap() >= 7, "{s}");
    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    assert!(all.iter().all(|s| s["source"] == collection.as_str()));
    let (_, pv) = d.get_json("/services/eurac_pv_farm_detection").await;
    assert_eq!(pv["platform"]["id"], "cdse_openeo_federation", "{pv}");
    assert_eq!(pv["defaults"]["temporal_extent"][0], "2023-05-01", "{pv}");
    d.stop().await;
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_service_has_its_parameters_described_without_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    let mut described = 0;
    for s in &all {
        let mut service = json!({"endpoint": s["endpoint"], "application": s["application"]});
        if !s["namespace"].is_null() {
            service["namespace"] = s["namespace"].clone();
        }
        let (st, body) = d
            .post_json("/params", &json!({"label": s["label"], "service": service}))
            .await;
        let app = s["application"].as_str().unwrap();
        let bundled =
            s["label"] == "openeo" && eodispatch::platform::udp::bundled_for(app).is_some();
        if bundled {
            assert_eq!(st, 200, "{}: {body}", s["id"]);
            assert!(body.is_array(), "{}: {body}", s["id"]);
            described += 1;
        } else {
            // The UDP or the OGC server is on the internet, which tests do not reach.
            assert!(matches!(st, 502 | 503), "{}: {st} {body}", s["id"]);
            assert!(
                body["code"].is_string() && body["detail"].is_string(),
                "{body}"
            );
        }
    }
    assert!(described >= 40, "{described}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folders_from_the_configuration_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let tree = served_tree(dir.path());
    let folder = tree.display().to_string();
    let d = TestDaemon::start_with(config_with(&dir.path().join("d"), &[&folder], 3600.0)).await;
    let s = wait_catalogue(&d, "the folder is read", |s| {
        s["sources"][0]["state"] == "ok"
    })
    .await;
    assert_eq!(s["sources"][0]["kind"], "folder");
    assert_eq!(s["sources"][0]["skipped"], 2);
    let all = services(&d, "").await;
    assert_eq!(all.len(), 70);
    assert!(all.iter().all(|s| s["source"] == folder.as_str()));
    d.stop().await;

    // EODISPATCH_CATALOGUES, comma-separated: a file:// URL of the folder, then the
    // bundled snapshot (whose services are all in the folder too: the first wins).
    let root = dir.path().join("child");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{folder}");
    let env = format!("{url}, bundled");
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // EODISPATCH_OGC_PYTHON (which python runs pygeoapi) is the tests' setting, not
    // the daemon's.
    let mut child = Command::new(env!("CARGO_BIN_EXE_eodispatch"))
        .arg("serve")
        .env("HOME", &root)
        .envs(common::env_for(&root, &addr.to_string()))
        .env("EODISPATCH_CATALOGUES", &env)
        .env_remove("EODISPATCH_OGC_PYTHON")
        .env_remove("EODISPATCH_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let c = Child {
        child,
        addr,
        root: root.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::exists(root.join("state/api-token")).unwrap()
        || std::net::TcpStream::connect(addr).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let req = http
            .get(format!("http://{}{path}", c.addr))
            .bearer_auth(c.token());
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (st, s) = get("/catalogue").await;
        assert_eq!(st, 200, "{s}");
        if s["sources"][0]["state"] == "ok" {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sources: Vec<&str> = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, [folder.as_str(), "bundled"]);
    let (_, all) = get("/services").await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 70);
    assert!(all.iter().all(|s| s["source"] == folder.as_str()));
    assert!(all
        .iter()
        .any(|s| s["title"] == "Max NDVI composite (served copy)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_catalogues_apply_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tree = served_tree(dir.path());
    let folder = tree.display().to_string();
    let config = Config::for_root(&dir.path().join("d"));
    std::fs::create_dir_all(&config.config_dir).unwrap();
    let file = config.config_file();
    let d = TestDaemon::start_with(config).await;
    let s = wait_catalogue(&d, "the bundled snapshot", |s| {
        s["sources"][0]["source"] == "bundled"
    })
    .await;
    assert_eq!(s["sources"][0]["state"], "bundled");
    assert_eq!(s["refresh_s"], 21600.0);
    std::fs::write(
        &file,
        format!("catalogues = [{folder:?}]\ncatalogue_refresh_s = 120\n"),
    )
    .unwrap();
    let s = wait_catalogue(&d, "the folder from config.toml is read", |s| {
        s["sources"][0]["source"] == folder.as_str() && s["sources"][0]["state"] == "ok"
    })
    .await;
    assert_eq!(s["refresh_s"], 120.0);
    assert_eq!(s["sources"].as_array().unwrap().len(), 1);
    let all = services(&d, "").await;
    assert!(all.iter().all(|s| s["source"] == folder.as_str()));
    d.stop().await;
}
