//! Hostile result files (issue 13, points 3 and 8 on the daemon's side).
//!
//! - The GDAL helper, run by the daemon's own `results::gdal_helper::inspect` on files made
//!   here: it refuses VRTs with raw bands, absolute, `..` or `/vsicurl/` sources,
//!   vector VRTs, and any file whose reading makes GDAL fetch a URL (a GeoJSON `crs`
//!   link); it still reads the formats results come in, a VRT with local sources, and
//!   a file whose name starts with `-` (file arguments come after `--`).
//! - The daemon runs it under a memory limit and a timeout (a stand-in helper that
//!   allocates or sleeps).
//! - Side files of the backend (`x.tif.aux.xml`, `x.qml`, `x.tif.ovr`) are kept under
//!   inert names, never next to the file they would restyle.
//! - Through the whole path (fake backend → download → helper → `job.json`): a hostile
//!   VRT is published `readable: false` / `Refused`; a `-v.tif` asset is read; a side
//!   file is `Sidecar`; without the helper every file is listed `GeoHelperMissing`.
//!
//! The helper `eodispatch-gdal` is built on demand; the test files are made with
//! `gdal_create` (GDAL's command-line tools, as `tests/results.rs` uses `gdalinfo`).

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDaemon;
use eodispatch::results::gdal_helper::{self, Limits};
use fake::*;
use fake_openeo::{AssetSource, FakeConfig, FakeHandle};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(30);

/// A small GeoTIFF (8 x 8, value 7, UTM 33N).
fn geotiff(path: &Path) {
    let out = Command::new("gdal_create")
        .args(["-q", "-of", "GTiff", "-outsize", "8", "8", "-bands", "1"])
        .args(["-burn", "7", "-a_srs", "EPSG:32633"])
        .args(["-a_ullr", "500000", "5000080", "500080", "5000000"])
        .arg(path)
        .output()
        .expect("gdal_create runs");
    assert!(out.status.success(), "{out:?}");
}

/// A loopback listener counting connections: a URL no one may fetch.
struct Tripwire {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                h.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = s {
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                }
            }
        });
        Self { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn vrt(source: &str, relative: bool) -> String {
    format!(
        r#"<VRTDataset rasterXSize="8" rasterYSize="8">
  <SRS>EPSG:32633</SRS>
  <GeoTransform>500000, 10, 0, 5000080, 0, -10</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="{}">{source}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"#,
        u8::from(relative)
    )
}

/// A VRT whose only band is the raw bytes of `target`.
fn raw_vrt(target: &Path) -> String {
    format!(
        r#"<VRTDataset rasterXSize="16" rasterYSize="4">
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativetoVRT="0">{}</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>16</LineOffset>
  </VRTRasterBand>
</VRTDataset>
"#,
        target.display()
    )
}

fn by_path(layers: &[Value]) -> BTreeMap<String, Value> {
    layers
        .iter()
        .map(|l| (l["path"].as_str().unwrap().to_string(), l.clone()))
        .collect()
}

// =====================================================================================
// The helper on hostile files
// =====================================================================================

/// Each hostile file is kept, marked `readable: false` with `error_code: "Refused"` and
/// why; GDAL never reaches the network; the files results come in are still read,
/// and so is a file named `-v.tif`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_refuses_hostile_files_and_reads_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("job");
    std::fs::create_dir(&dir).unwrap();
    // A file outside the job folder that a raw VRT band would show (all bytes 42).
    let secret = root.path().join("secret.bin");
    std::fs::write(&secret, [42u8; 64]).unwrap();
    geotiff(&secret.with_file_name("outside.tif"));
    let trip = Tripwire::start();

    geotiff(&dir.join("data.tif"));
    geotiff(&dir.join("-v.tif"));
    let files: Vec<(&str, String)> = vec![
        ("raw.vrt", raw_vrt(&secret)),
        // The same, under a GeoTIFF name: GDAL goes by content.
        ("raw_named.tif", raw_vrt(&secret)),
        (
            "absolute.vrt",
            vrt(
                &root.path().join("outside.tif").display().to_string(),
                false,
            ),
        ),
        ("parent.vrt", vrt("../outside.tif", true)),
        (
            "remote.vrt",
            vrt(&format!("/vsicurl/{}", trip.url("x.tif")), false),
        ),
        ("notrelative.vrt", vrt("data.tif", false)),
        (
            "python.vrt",
            r#"<VRTDataset rasterXSize="8" rasterYSize="8">
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTDerivedRasterBand">
    <PixelFunctionType>f</PixelFunctionType>
    <PixelFunctionLanguage>Python</PixelFunctionLanguage>
    <PixelFunctionCode><![CDATA[
def f(in_ar, out_ar, *args, **kwargs):
    out_ar[:] = 1
]]></PixelFunctionCode>
    <SimpleSource><SourceFilename relativeToVRT="1">data.tif</SourceFilename></SimpleSource>
  </VRTRasterBand>
</VRTDataset>"#
                .to_string(),
        ),
        (
            "vector.vrt",
            format!(
                r#"<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>{}</SrcDataSource></OGRVRTLayer></OGRVRTDataSource>"#,
                secret.display()
            ),
        ),
        (
            "link.geojson",
            json!({"type": "FeatureCollection",
                   "crs": {"type": "link", "properties": {"href": trip.url("crs.wkt"), "type": "ogcwkt"}},
                   "features": [{"type": "Feature", "properties": {},
                                 "geometry": {"type": "Point", "coordinates": [16.4, 48.0]}}]})
            .to_string(),
        ),
        ("local.vrt", vrt("data.tif", true)),
        (
            "plain.geojson",
            json!({"type": "FeatureCollection",
                   "features": [{"type": "Feature", "properties": {},
                                 "geometry": {"type": "Point", "coordinates": [16.4, 48.0]}}]})
            .to_string(),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let mut names: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    names.push("data.tif".into());
    names.push("-v.tif".into());

    let out = gdal_helper::inspect(Some(&gdal_bin()), &dir, &names).await;
    assert_eq!(out.len(), names.len());
    let layers = by_path(&out);
    for refused in [
        "raw.vrt",
        "raw_named.tif",
        "absolute.vrt",
        "parent.vrt",
        "remote.vrt",
        "notrelative.vrt",
        "python.vrt",
        "vector.vrt",
        "link.geojson",
    ] {
        let l = &layers[refused];
        assert_eq!(l["readable"], false, "{refused}: {l}");
        assert_eq!(l["error_code"], "Refused", "{refused}: {l}");
        assert!(
            l["error"].as_str().unwrap().starts_with("refused: "),
            "{refused}: {l}"
        );
        assert!(l.get("bands").is_none(), "{refused}: {l}");
        assert!(dir.join(refused).is_file(), "{refused} is kept");
    }
    assert!(layers["raw.vrt"]["error"]
        .as_str()
        .unwrap()
        .contains("raw-raster band"));
    assert!(layers["link.geojson"]["error"]
        .as_str()
        .unwrap()
        .contains("crs.wkt"));
    assert_eq!(trip.hits(), 0, "GDAL reached the network");

    for readable in ["local.vrt", "plain.geojson", "data.tif", "-v.tif"] {
        let l = &layers[readable];
        assert_eq!(l["readable"], true, "{readable}: {l}");
        assert!(l["error_code"].is_null(), "{readable}: {l}");
    }
    assert_eq!(layers["local.vrt"]["driver"], "VRT");
    assert_eq!(layers["local.vrt"]["bands"][0]["max"], 7.0);
    assert_eq!(layers["-v.tif"]["driver"], "GTiff");
    assert_eq!(layers["plain.geojson"]["kind"], "vector");
}

/// The daemon gives the helper an address-space limit and a timeout: a stand-in
/// helper that allocates 512 MB under a 256 MB limit fails (that file only), one that
/// hangs is killed after the timeout; the file name comes after `--`.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_runs_under_a_memory_limit_and_a_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let script = |name: &str, body: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ncase \"$1\" in --version) echo stand-in; exit 0;; esac\necho \"$@\" >> {}/args\n{body}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let ok =
        r#"echo "[{\"path\": \"$3\", \"kind\": \"raster\", \"readable\": true, \"error\": null}]""#;
    let hog = script(
        "hog",
        &format!("dd if=/dev/zero of=/dev/null bs=512M count=1 2>/dev/null || exit 3\n{ok}"),
    );
    let limits = Limits {
        timeout: Duration::from_secs(20),
        memory: Some(256 << 20),
    };
    let files = vec!["-v.tif".to_string()];
    let out = gdal_helper::inspect_with(Some(&hog), dir, &files, limits).await;
    assert_eq!(out[0]["readable"], false, "{out:?}");
    assert_eq!(out[0]["error_code"], "GeoHelperFailed", "{out:?}");
    // The same helper without the limit reads the file: the limit made the difference.
    let unlimited = Limits {
        memory: None,
        ..limits
    };
    let out = gdal_helper::inspect_with(Some(&hog), dir, &files, unlimited).await;
    assert_eq!(out[0]["readable"], true, "{out:?}");
    assert_eq!(out[0]["path"], "-v.tif");
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert_eq!(args.lines().next(), Some("--optimise -- -v.tif"), "{args}");

    let sleeper = script(
        "sleeper",
        &format!("echo $$ > {}/pid\nexec sleep 60", dir.display()),
    );
    let t0 = Instant::now();
    let short = Limits {
        timeout: Duration::from_secs(1),
        memory: None,
    };
    let out = gdal_helper::inspect_with(Some(&sleeper), dir, &["a.tif".to_string()], short).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(out[0]["error_code"], "GeoHelperTimeout", "{out:?}");
    let pid = std::fs::read_to_string(dir.join("pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Gone, or a zombie waiting to be reaped: not running any more.
        let state = std::fs::read_to_string(&stat)
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()))
            .unwrap_or_default();
        if state.is_empty() || state.starts_with('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "the helper still runs: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Side files of the backend never land next to the file they would restyle: the
/// planned names are inert, the data files keep theirs.
#[test]
fn side_files_get_inert_names_next_to_their_data() {
    let doc = json!({"assets": {
        "openEO.tif": {"href": "http://b/openEO.tif", "type": "image/tiff; application=geotiff"},
        "openEO.tif.aux.xml": {"href": "http://b/openEO.tif.aux.xml"},
        "openEO.tif.ovr": {"href": "http://b/openEO.tif.ovr"},
        "openEO.qml": {"href": "http://b/openEO.qml"},
        "openEO.tfw": {"href": "http://b/openEO.tfw"}
    }});
    let names: Vec<String> = eodispatch::results::plan_assets(&doc)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        [
            "openEO.tif",
            "openEO.tif.aux.xml.sidecar",
            "openEO.tif.ovr.sidecar",
            "openEO.qml.sidecar",
            "openEO.tfw.sidecar"
        ]
    );
}

// =====================================================================================
// The whole path
// =====================================================================================

async fn start_fake_with(cfg: FakeConfig) -> FakeHandle {
    fake_openeo::start(cfg.with_timing(0.1, 0.2))
        .await
        .expect("the fake starts")
}

async fn daemon(root: &Path, fake: &FakeHandle, helper: PathBuf) -> TestDaemon {
    let mut cfg = config_for(root, &fake.base_url(), 4);
    cfg.gdal_bin = Some(helper);
    TestDaemon::start_with(cfg).await
}

/// Runs one job whose GeoTIFF asset is served under `key` with `source`; returns the
/// published folder and its `job.json`.
async fn one_job(
    root: &Path,
    key: &str,
    source: Option<AssetSource>,
    helper: PathBuf,
) -> (PathBuf, Value) {
    let mut cfg = FakeConfig {
        asset_keys: BTreeMap::from([("openEO.tif".to_string(), key.to_string())]),
        ..FakeConfig::default()
    };
    if let Some(s) = source {
        cfg = cfg.with_asset("openEO.tif", s);
    }
    let fake = start_fake_with(cfg).await;
    let d = daemon(root, &fake, helper).await;
    let id = submit(&d, &pv_request(&fake.base_url(), "hostile")).await;
    let deadline = Instant::now() + LONG;
    let job = loop {
        let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        if j["results"]["state"] == "ready" {
            break j;
        }
        assert!(Instant::now() < deadline, "not published: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    d.stop().await;
    fake.shutdown().await;
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    let man: Value = serde_json::from_slice(&std::fs::read(dir.join("job.json")).unwrap()).unwrap();
    schema::assert_job_json(&man);
    (dir, man)
}

/// A backend sends a VRT reading a file of the user's as raw bytes: published, kept,
/// `readable: false`, `Refused`, and nothing of the file's bytes in `job.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_vrt_from_the_backend_is_published_refused() {
    let root = tempfile::tempdir().unwrap();
    let secret = root.path().join("secret.bin");
    std::fs::write(&secret, [42u8; 64]).unwrap();
    let evil = root.path().join("evil.vrt");
    std::fs::write(&evil, raw_vrt(&secret)).unwrap();
    let (dir, man) = one_job(
        root.path(),
        "result.vrt",
        Some(AssetSource::File(evil)),
        gdal_bin(),
    )
    .await;
    let l = &man["layers"][0];
    assert_eq!(l["path"], "result.vrt");
    assert_eq!(l["readable"], false, "{l}");
    assert_eq!(l["error_code"], "Refused", "{l}");
    assert!(l["bands"].is_null(), "{l}");
    assert!(dir.join("result.vrt").is_file());
}

/// An asset named `-v.tif` is a file, not an option of the helper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_named_like_an_option_is_read() {
    let root = tempfile::tempdir().unwrap();
    let (dir, man) = one_job(root.path(), "-v.tif", None, gdal_bin()).await;
    let l = &man["layers"][0];
    assert_eq!(l["path"], "-v.tif");
    assert_eq!(l["readable"], true, "{l}");
    assert_eq!(l["driver"], "GTiff", "{l}");
    assert!(dir.join("-v.tif").is_file());
}

/// A side file of the backend is kept under its inert name and not inspected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_file_from_the_backend_is_kept_inert() {
    let root = tempfile::tempdir().unwrap();
    let (dir, man) = one_job(root.path(), "openEO.tif.aux.xml", None, gdal_bin()).await;
    let l = &man["layers"][0];
    assert_eq!(l["path"], "openEO.tif.aux.xml.sidecar", "{l}");
    assert_eq!(l["readable"], false, "{l}");
    assert_eq!(l["error_code"], "Sidecar", "{l}");
    assert!(dir.join("openEO.tif.aux.xml.sidecar").is_file());
    assert!(!dir.join("openEO.tif.aux.xml").exists());
}

/// Without the helper (a daemon built without GDAL, or the helper not where it is
/// looked for) every file is still published and listed, marked so that clients know
/// they may open it themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_helper_every_file_is_listed_for_clients_to_open() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("no-such-dir").join("eodispatch-gdal");
    let (dir, man) = one_job(root.path(), "openEO.tif", None, missing).await;
    let l = &man["layers"][0];
    assert_eq!(l["path"], "openEO.tif");
    assert_eq!(l["readable"], false, "{l}");
    assert_eq!(l["error"], "GDAL helper not found", "{l}");
    assert_eq!(l["error_code"], "GeoHelperMissing", "{l}");
    assert_eq!(l["name"], "hostile");
    assert!(dir.join("openEO.tif").is_file());
}
