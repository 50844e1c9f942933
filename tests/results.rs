//! Result delivery against the fake openEO backend: a finished job's assets are
//! downloaded (resumably, verified), inspected with GDAL and published by one rename
//! into the results folder; `/files` serves them without a token; the folder watcher
//! notices removal. Each fault test asserts the final state and that nothing
//! half-written ever appears in the results folder (only `.incoming/` holds partial
//! files).
//!
//! The manifest tests compare `job.json` with GDAL's own reading (`gdalinfo -json`,
//! `ogrinfo`) of the published files. The GDAL helper `eodispatch-gdal` is built on
//! demand (`cargo build -p eodispatch-gdal`) when the test run did not build it.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestDaemon;
use fake::*;
use fake_openeo::{AssetSource, FakeConfig, FakeHandle, FaultKind, FaultRule};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const LONG: Duration = Duration::from_secs(30);

// =====================================================================================
// Helpers
// =====================================================================================

async fn start_fake_with(cfg: FakeConfig) -> FakeHandle {
    fake_openeo::start(cfg.with_timing(0.1, 0.2))
        .await
        .expect("the fake starts")
}

async fn daemon(root: &Path, fake: &FakeHandle) -> TestDaemon {
    let mut cfg = config_for(root, &fake.base_url(), 4);
    cfg.gdal_bin = Some(gdal_bin());
    TestDaemon::start_with(cfg).await
}

fn request(fake: &FakeHandle, title: &str, format: &str) -> Value {
    let mut r = pv_request(&fake.base_url(), title);
    r["format"] = json!(format);
    r
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    hex(&Sha256::digest(&bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The fake's results document of its only job, straight from the fake.
async fn fake_document(fake: &FakeHandle) -> Value {
    let job = fake.jobs().into_iter().next().expect("a remote job");
    reqwest::Client::new()
        .get(format!("{}/jobs/{}/results", fake.api_url(), job.id))
        .bearer_auth(format!("oidc/fake/{TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The sha256 the fake announces for `file` (its `file:checksum` without `1220`).
async fn announced_sha256(fake: &FakeHandle, key: &str) -> String {
    let doc = fake_document(fake).await;
    let c = doc["assets"][key]["file:checksum"]
        .as_str()
        .unwrap_or_else(|| panic!("no checksum for {key}: {doc}"));
    c.strip_prefix("1220").unwrap().to_string()
}

/// Entries of the results folder other than `.incoming`.
fn visible(results: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(results)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".incoming")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files in a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn manifest(dir: &Path) -> Value {
    let m = serde_json::from_slice(&std::fs::read(dir.join("job.json")).unwrap()).unwrap();
    schema::assert_job_json(&m);
    m
}

fn gdalinfo(path: &Path) -> Value {
    let out = Command::new("gdalinfo")
        .args(["-json"])
        .arg(path)
        .output()
        .expect("gdalinfo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// The EPSG code in a `gdalinfo -json` coordinate system WKT (the last `ID["EPSG",n]`).
fn wkt_epsg(wkt: &str) -> Option<String> {
    let i = wkt.rfind("ID[\"EPSG\",")?;
    let rest = &wkt[i + 10..];
    Some(format!("EPSG:{}", &rest[..rest.find(']')?]))
}

// =====================================================================================
// The whole path
// =====================================================================================

/// A GeoTIFF in a UTM zone: downloaded, published as one folder (the only thing a
/// watcher ever sees appear), described in `job.json` as GDAL reads it, served by
/// `/files` without a token (GET, HEAD, Range, `/vsicurl/`), `GET .../results` turned
/// into daemon URLs; a deleted folder is `removed`, its return `ready`, and
/// `POST .../results/download` brings it back after a removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_appears_complete_and_is_served() {
    use notify::Watcher;
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let d = daemon(root.path(), &fake).await;
    let results_dir = d.config.results_dir.clone();
    // An outside watcher, like the QGIS plugin's.
    let seen: Arc<Mutex<Vec<(notify::EventKind, PathBuf)>>> = Arc::default();
    let sink = seen.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            for p in ev.paths {
                sink.lock().unwrap().push((ev.kind, p));
            }
        }
    })
    .unwrap();
    watcher
        .watch(&results_dir, notify::RecursiveMode::NonRecursive)
        .unwrap();
    let events = Events::subscribe(&d).await;

    let id = submit(&d, &request(&fake, "PV farms Wien", "gtiff")).await;
    let job = wait_results(&d, id, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    let created = &job["created"].as_str().unwrap()[..10];
    assert_eq!(
        dir.file_name().unwrap().to_string_lossy(),
        format!("{created}_pv-farms-wien_{id}")
    );
    assert_eq!(dir.parent().unwrap(), results_dir);
    assert_eq!(listing(&dir), ["job.json", "openEO.tif", "results.json"]);
    assert_eq!(
        visible(&results_dir),
        [dir.file_name().unwrap().to_string_lossy()]
    );
    let size = std::fs::metadata(dir.join("openEO.tif")).unwrap().len();
    assert_eq!(job["results"]["bytes"], size);
    assert_eq!(job["results"]["total_bytes"], size);
    assert!(job["error"].is_null(), "{job}");

    // The watcher saw the folder appear by a rename, and nothing else outside .incoming.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outside: Vec<(notify::EventKind, PathBuf)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| !p.starts_with(results_dir.join(".incoming")) && p != &results_dir)
        .cloned()
        .collect();
    assert!(!outside.is_empty(), "the watcher saw nothing");
    for (kind, p) in &outside {
        assert_eq!(p, &dir, "only the job folder may appear: {outside:?}");
        // Reading the folder (Access) is fine; creating or writing in place is not.
        assert!(
            matches!(
                kind,
                notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                    | notify::EventKind::Access(_)
            ),
            "the folder must appear by a rename, not be created in place: {outside:?}"
        );
    }
    assert!(
        matches!(
            outside[0].0,
            notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
        ),
        "{outside:?}"
    );
    drop(watcher);

    // The manifest against GDAL.
    let m = manifest(&dir);
    assert_eq!(m["eodispatch_manifest"], 1);
    assert_eq!(m["job"]["id"], id);
    assert_eq!(m["job"]["uuid"], job["uuid"]);
    assert_eq!(m["service"]["endpoint"], fake.base_url());
    assert_eq!(m["parameters"], job["parameters"]);
    assert_eq!(m["stac"], "results.json");
    let layer = &m["layers"][0];
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(layer["path"], "openEO.tif");
    assert_eq!(layer["name"], "PV farms Wien");
    assert_eq!(layer["kind"], "raster");
    assert_eq!(layer["readable"], true);
    let info = gdalinfo(&dir.join("openEO.tif"));
    assert_eq!(layer["driver"], info["driverShortName"]);
    let epsg = wkt_epsg(info["coordinateSystem"]["wkt"].as_str().unwrap()).unwrap();
    assert!(epsg.starts_with("EPSG:326"), "a UTM zone: {epsg}");
    assert_eq!(layer["crs"], epsg);
    assert_eq!(layer["width"], info["size"][0]);
    assert_eq!(layer["height"], info["size"][1]);
    let corners = &info["cornerCoordinates"];
    let b = layer["bounds"].as_array().unwrap();
    assert!(close(
        b[0].as_f64().unwrap(),
        corners["lowerLeft"][0].as_f64().unwrap(),
        1e-6
    ));
    assert!(close(
        b[1].as_f64().unwrap(),
        corners["lowerLeft"][1].as_f64().unwrap(),
        1e-6
    ));
    assert!(close(
        b[2].as_f64().unwrap(),
        corners["upperRight"][0].as_f64().unwrap(),
        1e-6
    ));
    assert!(close(
        b[3].as_f64().unwrap(),
        corners["upperRight"][1].as_f64().unwrap(),
        1e-6
    ));
    // WGS84 bounds contain the job's extent (the grid covers it).
    let w = layer["bounds_wgs84"].as_array().unwrap();
    let w: Vec<f64> = w.iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(w[0] <= 16.342 + 1e-3 && w[2] >= 16.414 - 1e-3, "{w:?}");
    assert!(w[1] <= 47.962 + 1e-3 && w[3] >= 48.008 - 1e-3, "{w:?}");
    let band = &layer["bands"][0];
    assert_eq!(band["data_type"], info["bands"][0]["type"]);
    assert!(band["min"].is_number() && band["max"].is_number() && band["mean"].is_number());
    assert!(
        matches!(layer["style"]["type"].as_str(), Some("minmax" | "palette")),
        "{layer}"
    );
    if layer["style"]["type"] == "palette" {
        // A mask's class 0 is the grey background; the other classes get colours.
        let classes = layer["style"]["classes"].as_array().unwrap();
        for c in classes {
            let grey = c["color"] == "#d9d9d9";
            assert_eq!(grey, c["value"] == 0 && classes.len() > 1, "{c}");
        }
    }

    // GET .../results: daemon URLs, local path, remote link.
    let (s, doc) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    assert_eq!(s, 200, "{doc}");
    let asset = &doc["assets"]["openEO.tif"];
    let href = asset["href"].as_str().unwrap().to_string();
    assert_eq!(
        href,
        format!(
            "http://127.0.0.1:{}/files/{}/openEO.tif",
            d.addr.port(),
            job["uuid"].as_str().unwrap()
        )
    );
    assert_eq!(
        asset["alternate"]["local"]["href"],
        dir.join("openEO.tif").display().to_string()
    );
    assert!(asset["alternate"]["remote"]["href"]
        .as_str()
        .unwrap()
        .starts_with(&fake.api_url()));

    // /files: no header needed; HEAD; Range; 416; ETag.
    let plain = reqwest::Client::new();
    let r = plain.get(&href).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "image/tiff; application=geotiff"
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        std::fs::read(dir.join("openEO.tif")).unwrap()
    );
    let r = plain.head(&href).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let r = plain
        .get(&href)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &body[100..200]);
    let r = plain
        .get(&href)
        .header("range", "bytes=10-")
        .header("if-range", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a stale If-Range gets the whole file");
    let r = plain
        .get(&href)
        .header("range", "bytes=10-")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let r = plain
        .get(&href)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    // Only published files: no manifest tricks, no traversal, no listing, no other uuid.
    let base = href.trim_end_matches("openEO.tif");
    for bad in ["..%2F..%2Fstate%2Fapi-token", ".incoming", "", "nope.tif"] {
        let r = plain.get(format!("{base}{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    let r = plain
        .get(format!(
            "http://{}/files/{}/openEO.tif",
            d.addr,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // GDAL reads the COG over HTTP from the daemon.
    let out = Command::new("gdalinfo")
        .arg(format!("/vsicurl/{href}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SSE: result events with progress, and a job event with results ready.
    let results_ev = events.of_kind("result");
    assert!(
        results_ev
            .iter()
            .any(|e| e["id"] == id && e["state"] == "ready" && e["bytes"] == size),
        "{results_ev:?}"
    );
    assert!(events
        .of_kind("job")
        .iter()
        .any(|j| j["id"] == id && j["results"]["state"] == "ready"));

    // Removed by the user, then back.
    let aside = root.path().join("aside");
    std::fs::rename(&dir, &aside).unwrap();
    wait_results(&d, id, "removed", Duration::from_secs(10)).await;
    assert_eq!(plain.get(&href).send().await.unwrap().status(), 404);
    std::fs::rename(&aside, &dir).unwrap();
    wait_results(&d, id, "ready", Duration::from_secs(10)).await;
    // Deleted, then downloaded again on request.
    std::fs::remove_dir_all(&dir).unwrap();
    wait_results(&d, id, "removed", Duration::from_secs(10)).await;
    let (s, j) = d
        .post_json(&format!("/unit_jobs/{id}/results/download"), &json!({}))
        .await;
    assert_eq!(s, 202, "{j}");
    let job = wait_results(&d, id, "ready", LONG).await;
    assert_eq!(job["results"]["dir"], dir.display().to_string());
    let (s, p) = d
        .post_json(&format!("/unit_jobs/{id}/results/download"), &json!({}))
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("ResultsReady")));
    d.stop().await;
}

/// NetCDF and a GeoJSON in a projected CRS (legacy `crs` member): the manifest says
/// what GDAL says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netcdf_and_projected_geojson_manifests_match_gdal() {
    let root = tempfile::tempdir().unwrap();
    let gj = root.path().join("in.geojson");
    std::fs::write(
        &gj,
        json!({"type": "FeatureCollection",
               "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
               "features": [
                 {"type": "Feature", "properties": {"class": 1},
                  "geometry": {"type": "Polygon", "coordinates": [[[600000, 5310000], [601000, 5310000], [601000, 5311000], [600000, 5311000], [600000, 5310000]]]}},
                 {"type": "Feature", "properties": {"class": 2},
                  "geometry": {"type": "Polygon", "coordinates": [[[602000, 5312000], [602500, 5312000], [602500, 5312700], [602000, 5312700], [602000, 5312000]]]}}
               ]})
        .to_string(),
    )
    .unwrap();
    let fake = start_fake_with(
        FakeConfig::default().with_asset("vectorcube.geojson", AssetSource::File(gj.clone())),
    )
    .await;
    let d = daemon(root.path(), &fake).await;
    let nc = submit(&d, &request(&fake, "Cube", "netcdf")).await;
    let vec = submit(&d, &request(&fake, "Farms", "geojson")).await;

    // NetCDF.
    let job = wait_results(&d, nc, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    let m = manifest(&dir);
    let layer = &m["layers"][0];
    assert_eq!(layer["path"], "openEO.nc");
    assert_eq!(
        (layer["kind"].as_str(), layer["readable"].as_bool()),
        (Some("raster"), Some(true)),
        "{layer}"
    );
    let info = gdalinfo(&dir.join("openEO.nc"));
    assert_eq!(layer["driver"], info["driverShortName"]);
    assert_eq!(layer["driver"], "netCDF");
    assert_eq!(layer["width"], info["size"][0]);
    assert_eq!(layer["height"], info["size"][1]);
    assert_eq!(
        layer["bands"].as_array().unwrap().len(),
        info["bands"].as_array().unwrap().len()
    );
    if let Some(wkt) = info["coordinateSystem"]["wkt"].as_str() {
        if let Some(epsg) = wkt_epsg(wkt) {
            assert_eq!(layer["crs"], epsg);
        }
    }
    match info["metadata"]["SUBDATASETS"].as_object() {
        Some(subs) => {
            let names: Vec<&Value> = subs
                .iter()
                .filter(|(k, _)| k.ends_with("_NAME"))
                .map(|(_, v)| v)
                .collect();
            let ours: Vec<&Value> = layer["subdatasets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| &s["uri"])
                .collect();
            assert_eq!(ours.len(), names.len());
            for u in ours {
                assert!(
                    u.as_str().unwrap().starts_with("NETCDF:\"openEO.nc\":"),
                    "{u}"
                );
            }
        }
        None => assert!(layer["subdatasets"].is_null(), "{layer}"),
    }

    // GeoJSON in EPSG:32633.
    let job = wait_results(&d, vec, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read(dir.join("vectorcube.geojson")).unwrap(),
        std::fs::read(&gj).unwrap()
    );
    let m = manifest(&dir);
    let layer = &m["layers"][0];
    assert_eq!(
        (layer["kind"].as_str(), layer["readable"].as_bool()),
        (Some("vector"), Some(true)),
        "{layer}"
    );
    let out = Command::new("ogrinfo")
        .args(["-ro", "-so", "-al"])
        .arg(dir.join("vectorcube.geojson"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Feature Count: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let epsg = wkt_epsg(&text).unwrap();
    assert_eq!(epsg, "EPSG:32633");
    let sub = &layer["layers"][0];
    assert_eq!(layer["crs"], epsg);
    assert_eq!(sub["crs"], epsg);
    assert_eq!(sub["feature_count"], count);
    assert_eq!(sub["geometry_type"], "Polygon");
    let extent_line = text.lines().find(|l| l.starts_with("Extent: ")).unwrap();
    let nums: Vec<f64> = extent_line
        .replace(['(', ')', ',', '-'], " ")
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(sub["extent"], json!([nums[0], nums[1], nums[2], nums[3]]));
    let w: Vec<f64> = sub["extent_wgs84"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        w[0] > 16.0 && w[2] < 17.0 && w[1] > 47.0 && w[3] < 48.5,
        "{w:?}"
    );
    assert_eq!(layer["style"]["type"], "single");
    d.stop().await;
}

/// A large GeoTIFF (2000 × 1500, no overviews) is published as a Cloud-Optimised
/// GeoTIFF with overviews; `job.json` says so and `results.json` carries its new size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_geotiff_becomes_a_cog() {
    let root = tempfile::tempdir().unwrap();
    let big = root.path().join("big.tif");
    let ok = Command::new("gdal_create")
        .args([
            "-of", "GTiff", "-outsize", "2000", "1500", "-bands", "1", "-ot", "Byte",
        ])
        .args([
            "-a_srs",
            "EPSG:32633",
            "-a_ullr",
            "600000",
            "5320000",
            "620000",
            "5305000",
        ])
        .args(["-burn", "7"])
        .arg(&big)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gdal_create");
    let fake = start_fake_with(
        FakeConfig::default().with_asset("openEO.tif", AssetSource::File(big.clone())),
    )
    .await;
    let d = daemon(root.path(), &fake).await;
    let id = submit(&d, &request(&fake, "big", "gtiff")).await;
    let job = wait_results(&d, id, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    let layer = &manifest(&dir)["layers"][0];
    assert_eq!(layer["optimised"], "cog", "{layer}");
    assert_eq!(
        (layer["width"].as_u64(), layer["height"].as_u64()),
        (Some(2000), Some(1500))
    );
    assert_eq!(layer["crs"], "EPSG:32633");
    assert_eq!(layer["style"]["type"], "palette");
    assert_eq!(layer["style"]["classes"][0]["value"], 7);
    let info = gdalinfo(&dir.join("openEO.tif"));
    assert_eq!(
        info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"], "COG",
        "{}",
        info["metadata"]
    );
    assert!(!info["bands"][0]["overviews"].as_array().unwrap().is_empty());
    let size = std::fs::metadata(dir.join("openEO.tif")).unwrap().len();
    let stac: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(stac["assets"]["openEO.tif"]["file:size"], size);
    assert!(stac["assets"]["openEO.tif"].get("file:checksum").is_none());
    assert_eq!(job["results"]["bytes"], size);
    d.stop().await;
}

// =====================================================================================
// Faults
// =====================================================================================

/// A daemon listening on IPv6 loopback only links its results (and the login
/// redirect) at `[::1]`, where clients reach it, not at `127.0.0.1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_links_name_the_address_the_daemon_listens_on() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let mut cfg = config_for(root.path(), &fake.base_url(), 4);
    cfg.gdal_bin = Some(gdal_bin());
    let d = TestDaemon::start_on(cfg, "[::1]:0").await;
    assert!(d.addr.is_ipv6());
    let id = submit(&d, &request(&fake, "v6", "gtiff")).await;
    wait_results(&d, id, "ready", LONG).await;
    let (s, doc) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    assert_eq!(s, 200, "{doc}");
    let href = doc["assets"]["openEO.tif"]["href"].as_str().unwrap();
    let base = format!("http://[::1]:{}/files/", d.addr.port());
    assert!(href.starts_with(&base), "{href} should start with {base}");
    let r = reqwest::Client::new().head(href).send().await.unwrap();
    assert_eq!(r.status(), 200, "the link works as given");
}

/// A generated asset (random bytes: GDAL cannot read it) for fault tests.
const SMALL: u64 = 4 * 1024 * 1024;

async fn fault_setup(cfg: FakeConfig, root: &Path) -> (FakeHandle, TestDaemon, i64) {
    let cfg = cfg.with_asset("openEO.tif", AssetSource::Generated { size: SMALL });
    let fake = start_fake_with(cfg).await;
    let d = daemon(root, &fake).await;
    let id = submit(&d, &request(&fake, "fault", "gtiff")).await;
    (fake, d, id)
}

/// The published asset of a ready job equals what the fake announced.
async fn assert_identical(d: &TestDaemon, fake: &FakeHandle, id: i64) -> PathBuf {
    let job = wait_results(d, id, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    assert_eq!(
        sha256_hex(&dir.join("openEO.tif")),
        announced_sha256(fake, "openEO.tif").await
    );
    assert_eq!(listing(&dir), ["job.json", "openEO.tif", "results.json"]);
    // A file GDAL cannot read is kept and marked, not a failed job.
    let layer = &manifest(&dir)["layers"][0];
    assert_eq!(layer["readable"], false, "{layer}");
    assert!(layer["error"].is_string());
    dir
}

/// Links valid for 1 s; the body is cut after 1 MB, and the next request waits
/// 2.5 s, so its link has expired (410): the daemon fetches a fresh results document
/// and resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_links_are_refreshed_and_the_download_resumes() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default()
        .with_link_ttl(1)
        .with_fault(FaultRule {
            path_contains: Some("/results/assets/".into()),
            ..FaultRule::new("GET /**", FaultKind::Truncate { bytes: 1_000_000 })
        })
        .with_fault(FaultRule {
            path_contains: Some("/results/assets/".into()),
            ..FaultRule::new("GET /**", FaultKind::Delay { delay_ms: 2500 })
        });
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    let stats = fake.stats();
    let docs = stats
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("GET /jobs/{job_id}/results") && !k.contains("assets"))
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert!(
        docs >= 3,
        "results fetched before the download and after the 410 (plus our own check): {stats:?}"
    );
    assert_eq!(stats.faults_fired, 2);
    d.stop().await;
}

/// A server that ignores `Range`: after a cut body the daemon starts again from zero
/// and still ends with the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_ranges_restarts_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = FakeConfig::default().with_fault(FaultRule {
        path_contains: Some("/results/assets/".into()),
        ..FaultRule::new("GET /**", FaultKind::Truncate { bytes: 1_500_000 })
    });
    cfg.ranges_supported = false;
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    d.stop().await;
}

/// Truncated bodies (twice) are resumed with `Range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_resumed() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default().with_fault(
        FaultRule {
            path_contains: Some("/results/assets/".into()),
            ..FaultRule::new("GET /**", FaultKind::Truncate { bytes: 700_000 })
        }
        .times(2),
    );
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    assert_eq!(fake.stats().faults_fired, 2);
    d.stop().await;
}

/// A transfer that hangs after 1 MB (the server keeps the connection open for 20 s) is
/// abandoned after the stall timeout (1 s here) and resumed: the job is ready long
/// before the server would have closed the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_is_detected_and_resumed() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default()
        .with_asset("openEO.tif", AssetSource::Generated { size: SMALL })
        .with_fault(FaultRule {
            path_contains: Some("/results/assets/".into()),
            ..FaultRule::new(
                "GET /**",
                FaultKind::Stall {
                    bytes: 1_000_000,
                    stall_ms: 20_000,
                },
            )
        });
    let fake = start_fake_with(cfg).await;
    let mut config = config_for(root.path(), &fake.base_url(), 4);
    config.gdal_bin = Some(gdal_bin());
    config.download_stall_s = 1.0;
    let d = TestDaemon::start_with(config).await;
    let started = Instant::now();
    let id = submit(&d, &request(&fake, "stall", "gtiff")).await;
    assert_identical(&d, &fake, id).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.stats().faults_fired, 1);
    d.stop().await;
}

/// Signed links get no bearer token; links to the backend's own token-protected route
/// get it after the first refusal (401), and the download completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_goes_only_where_it_is_needed() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        unsigned_asset_links: true,
        ..FakeConfig::default()
    };
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    let stats = fake.stats();
    assert_eq!(
        stats
            .requests
            .get("GET /jobs/{job_id}/results/assets/{filename}"),
        Some(&2),
        "one refusal without the token, one download with it: {stats:?}"
    );
    d.stop().await;
}

/// A pre-signed link on another host (here `localhost:PORT` while the API is
/// `127.0.0.1:PORT`) never gets the `Authorization` header, even when that host refuses a
/// request: the token goes only to the backend's own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_never_goes_to_a_signed_link_on_another_host() {
    let root = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // The link host refuses the first download (401): a client that "retries with the
    // token" would now send it to the other host.
    let cfg = FakeConfig {
        port,
        asset_link_host: Some(format!("localhost:{port}")),
        ..FakeConfig::default()
    }
    .with_fault(FaultRule {
        path_contains: Some("/results/assets/".into()),
        ..FaultRule::status("GET /**", 401)
    });
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    let (_, doc) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    let remote = doc["assets"]["openEO.tif"]["alternate"]["remote"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        remote.starts_with(&format!("http://localhost:{port}/")),
        "{remote}"
    );
    let stats = fake.stats();
    assert!(
        stats.count(
            "GET",
            "/jobs/{job_id}/results/assets/{user_b64}/{signature}/{filename}"
        ) >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.signed_links_with_authorization, 0, "{stats:?}");
    d.stop().await;
}

/// One flipped byte is caught by the checksum and downloaded again; a server that
/// always corrupts the file makes the delivery fail with `ChecksumMismatch`, and
/// nothing appears in the results folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_never_reaches_the_results_folder() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default().with_fault(FaultRule {
        path_contains: Some("/results/assets/".into()),
        ..FaultRule::new(
            "GET /**",
            FaultKind::FlipByte {
                offset: Some(12345),
            },
        )
    });
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    assert_identical(&d, &fake, id).await;
    d.stop().await;

    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default().with_fault(
        FaultRule {
            path_contains: Some("/results/assets/".into()),
            ..FaultRule::new("GET /**", FaultKind::FlipByte { offset: None })
        }
        .times(0),
    );
    let (_fake, d, id) = fault_setup(cfg, root.path()).await;
    let job = wait_results(&d, id, "failed", LONG).await;
    assert_eq!(job["error"]["code"], "ChecksumMismatch", "{job}");
    assert_eq!(job["status"], "finished");
    assert!(visible(&d.config.results_dir).is_empty());
    d.stop().await;
}

/// A hostile results document names its asset `../../../evil.tif`: the file lands
/// inside the job folder as `evil.tif`, nothing is written anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_traversal_asset_name_stays_inside_the_job_folder() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        asset_keys: BTreeMap::from([("openEO.tif".to_string(), "../../../evil.tif".to_string())]),
        ..FakeConfig::default()
    };
    let fake = start_fake_with(cfg).await;
    let d = daemon(root.path(), &fake).await;
    let id = submit(&d, &request(&fake, "evil", "gtiff")).await;
    let job = wait_results(&d, id, "ready", LONG).await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    assert_eq!(listing(&dir), ["evil.tif", "job.json", "results.json"]);
    assert_eq!(manifest(&dir)["layers"][0]["path"], "evil.tif");
    assert_eq!(manifest(&dir)["layers"][0]["asset"], "../../../evil.tif");
    let mut stray = Vec::new();
    for e in walk(root.path()) {
        if e.file_name().is_some_and(|n| n == "evil.tif") && e.parent() != Some(dir.as_path()) {
            stray.push(e);
        }
    }
    assert!(stray.is_empty(), "{stray:?}");
    assert_eq!(visible(&d.config.results_dir).len(), 1);
    d.stop().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

// =====================================================================================
// A full disk (root: a small tmpfs)
// =====================================================================================

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Unmounts on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs failed");
        Tmpfs(dir.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn needs_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("EODISPATCH_REQUIRE_ROOT").is_some() {
        panic!("{test} needs root (EODISPATCH_REQUIRE_ROOT is set)");
    }
    eprintln!("skipping {test}: mounting a tmpfs needs root");
    false
}

/// The results folder is a 3 MB tmpfs and the asset 4 MB: the space check refuses
/// (`InsufficientSpace`, results `failed`, the job still `finished`); once the
/// filesystem is larger, `POST .../results/download` delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_space_is_refused_then_resumed() {
    if !needs_root("too_little_space_is_refused_then_resumed") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&root.path().join("results"), "3m");
    let (fake, d, id) = fault_setup(FakeConfig::default(), root.path()).await;
    let job = wait_results(&d, id, "failed", LONG).await;
    assert_eq!(job["error"]["code"], "InsufficientSpace", "{job}");
    assert_eq!(job["status"], "finished");
    assert!(visible(&d.config.results_dir).is_empty());
    fs.resize("16m");
    let (s, j) = d
        .post_json(&format!("/unit_jobs/{id}/results/download"), &json!({}))
        .await;
    assert_eq!(s, 202, "{j}");
    assert_identical(&d, &fake, id).await;
    d.stop().await;
    drop(fs);
}

/// The disk fills up during the download (another program takes the space): the
/// job's results are `failed` with `DiskFull` within seconds, the partial file is
/// kept and nothing appears in the results folder; after space is freed the retry
/// resumes and the file is byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filling_up_mid_download_is_resumable() {
    if !needs_root("a_disk_filling_up_mid_download_is_resumable") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&root.path().join("results"), "8m");
    let cfg = FakeConfig {
        asset_bytes_per_sec: Some(2_000_000),
        ..FakeConfig::default()
    };
    let (fake, d, id) = fault_setup(cfg, root.path()).await;
    let results = d.config.results_dir.clone();
    // Wait for the part file to grow, then fill the disk.
    let part = wait_for("a partial file", LONG, || {
        let results = results.clone();
        async move {
            walk(&results.join(".incoming")).into_iter().find(|p| {
                p.extension().is_some_and(|e| e == "part")
                    && std::fs::metadata(p)
                        .map(|m| m.len() > 500_000)
                        .unwrap_or(false)
            })
        }
    })
    .await;
    let filler = root.path().join("results/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    let started = Instant::now();
    let job = wait_results(&d, id, "failed", LONG).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(job["error"]["code"], "DiskFull", "{job}");
    assert!(part.exists(), "the partial file is kept for the retry");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0);
    assert_eq!(visible(&results), ["filler"]);
    std::fs::remove_file(&filler).unwrap();
    let (s, _) = d
        .post_json(&format!("/unit_jobs/{id}/results/download"), &json!({}))
        .await;
    assert_eq!(s, 202);
    assert_identical(&d, &fake, id).await;
    d.stop().await;
    drop(fs);
}

// =====================================================================================
// kill -9
// =====================================================================================

/// The real binary is killed with SIGKILL at about 30 % and 80 % of a throttled
/// 24 MB download and restarted each time: the download resumes and the published
/// file is byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_download_then_restart_gives_identical_bytes() {
    gdal_bin();
    let root = tempfile::tempdir().unwrap();
    let size: u64 = 24 * 1024 * 1024;
    let mut cfg = FakeConfig::default().with_asset("openEO.tif", AssetSource::Generated { size });
    cfg.asset_bytes_per_sec = Some(8_000_000);
    let fake = start_fake_with(cfg).await;
    let url = fake.base_url();
    let mut d = ChildDaemon::start(root.path(), &url, 2, &[]).await;
    let (s, job) = d
        .post_json("/unit_jobs", &request(&fake, "kill me", "gtiff"))
        .await;
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let uuid = job["uuid"].as_str().unwrap().to_string();
    let part = root
        .path()
        .join("results/.incoming")
        .join(&uuid)
        .join("files/openEO.tif.part");
    for fraction in [0.3, 0.8] {
        let want = (size as f64 * fraction) as u64;
        wait_for("the partial file to grow", LONG, || {
            let part = part.clone();
            async move { (std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= want).then_some(()) }
        })
        .await;
        d.kill9();
        let have = std::fs::metadata(&part).unwrap().len();
        assert!(have >= want && have < size, "{have}");
        d = ChildDaemon::start(root.path(), &url, 2, &[]).await;
        // Resumed, not restarted: the partial file never shrinks below what was kept.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if let Ok(m) = std::fs::metadata(&part) {
                assert!(
                    m.len() >= have,
                    "the download restarted from {} < {have}",
                    m.len()
                );
            }
        }
    }
    let deadline = Instant::now() + LONG;
    let job = loop {
        let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        if j["results"]["state"] == "ready" {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {j}; log:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    assert_eq!(
        sha256_hex(&dir.join("openEO.tif")),
        announced_sha256(&fake, "openEO.tif").await
    );
    assert!(!root.path().join("results/.incoming").join(&uuid).exists());
    let log = d.log_text();
    assert!(!log.contains("expires="), "no signed URL in the log");
}
