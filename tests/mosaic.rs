//! Upscale tasks end to end against the fake openEO backend: an area → `POST /tiles` →
//! a task over the cells → the tiles' results published into the task folder → one
//! mosaic per output and `task.json` (`results::mosaic`).
//!
//! The fake makes each tile's GeoTIFF on its own extent in the UTM zone of the extent's
//! centre, 100 m pixels, each pixel's value a function of its ground position
//! (`AssetSource::GroundTiff`), so the mosaic is compared with the tiles by GDAL's own
//! tools (`gdalinfo -json` for extents and CRS, `gdallocationinfo` for pixel values,
//! `ogrinfo` for features), not with what the helper says of itself.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestDaemon;
use fake::*;
use fake_openeo::{AssetSource, FakeConfig, FakeHandle, JobPlan, PlanRule};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

/// An area of about 30 × 25 km well inside UTM zone 32 (9° E is its central meridian).
const AOI_ONE_ZONE: [[f64; 2]; 5] = [
    [9.2, 48.0],
    [9.55, 48.0],
    [9.55, 48.2],
    [9.2, 48.2],
    [9.2, 48.0],
];

/// An area across 12° E, the boundary of zones 32 and 33 (gridded in zone 33, where its
/// centre is; the cells west of 12° E have their centre in zone 32).
const AOI_TWO_ZONES: [[f64; 2]; 5] = [
    [11.75, 47.95],
    [12.3, 47.95],
    [12.3, 48.2],
    [11.75, 48.2],
    [11.75, 47.95],
];

async fn start_fake_with(cfg: FakeConfig) -> FakeHandle {
    let cfg = cfg
        .with_timing(0.1, 0.3)
        .with_asset("openEO.tif", AssetSource::GroundTiff { pixel: 100.0 });
    fake_openeo::start(cfg).await.expect("the fake starts")
}

async fn daemon(root: &Path, fake: &FakeHandle) -> TestDaemon {
    let mut cfg = config_for(root, &fake.base_url(), 8);
    cfg.gdal_bin = Some(gdal_bin());
    TestDaemon::start_with(cfg).await
}

/// The cells of `aoi` (`POST /tiles`, 20 km).
async fn cells(d: &TestDaemon, aoi: &[[f64; 2]]) -> Vec<Value> {
    let (s, tiles) = d
        .post_json(
            "/tiles",
            &json!({"grid": "20x20km", "aoi": {"type": "Polygon", "coordinates": [aoi]}}),
        )
        .await;
    assert_eq!(s, 201, "{tiles}");
    tiles["geometries"].as_array().unwrap().clone()
}

/// A task body over `cells`.
fn task_body(fake: &FakeHandle, title: &str, cells: &[Value], format: &str) -> Value {
    let mut body = pv_request(&fake.base_url(), title);
    body["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("spatial_extent");
    body["format"] = json!(format);
    body["dimension"] = json!({"name": "spatial_extent", "values": cells});
    body
}

async fn create_task(d: &TestDaemon, body: &Value) -> i64 {
    let (s, task) = d.post_json("/upscale_tasks", body).await;
    assert_eq!(s, 201, "{task}");
    task["id"].as_i64().unwrap()
}

/// The task folder of task `id` in `results`, if published.
fn task_folder(results: &Path, id: i64) -> Option<PathBuf> {
    std::fs::read_dir(results)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!("_task{id}")))
        })
}

/// Reads `task.json` of task `id` until `pred` holds; the folder and the manifest.
async fn wait_task_json(
    results: &Path,
    id: i64,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> (PathBuf, Value) {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    loop {
        if let Some(folder) = task_folder(results, id) {
            if let Ok(text) = std::fs::read(folder.join("task.json")) {
                // Never half-written: it always parses.
                let v: Value = serde_json::from_slice(&text).expect("task.json parses");
                schema::assert_task_json(&v);
                if pred(&v) {
                    schema::assert_folder(&folder);
                    return (folder, v);
                }
                last = v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "task.json of task {id} not as expected within {within:?}; last: {last:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_final(v: &Value) -> bool {
    v["final"] == json!(true)
}

fn gdalinfo(path: &Path) -> Value {
    let out = Command::new("gdalinfo")
        .arg("-json")
        .arg(path)
        .output()
        .expect("gdalinfo runs");
    assert!(
        out.status.success(),
        "gdalinfo {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `[minx, miny, maxx, maxy]` and the pixel size of a north-up raster.
fn extent(info: &Value) -> ([f64; 4], f64) {
    let gt: Vec<f64> = info["geoTransform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let w = info["size"][0].as_f64().unwrap();
    let h = info["size"][1].as_f64().unwrap();
    ([gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]], gt[1])
}

/// The EPSG code of a raster's CRS, from `gdalinfo -json`.
fn epsg(info: &Value) -> String {
    let wkt = info["coordinateSystem"]["wkt"].as_str().unwrap_or("");
    let i = wkt.rfind("ID[\"EPSG\",").expect("an EPSG id");
    wkt[i + 10..].trim_end_matches([']', ' ', '\n']).to_string()
}

/// Band 1 of a raster, read whole through GDAL (`gdal_translate -of AAIGrid`: every
/// pixel as GDAL reads it for a display, in the raster's own data type).
struct Raster {
    gt: Vec<f64>,
    width: i64,
    height: i64,
    data: Vec<f64>,
}

impl Raster {
    fn load(path: &Path) -> Raster {
        let info = gdalinfo(path);
        let gt: Vec<f64> = info["geoTransform"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let width = info["size"][0].as_i64().unwrap();
        let height = info["size"][1].as_i64().unwrap();
        let out = Command::new("gdal_translate")
            .args(["-q", "-b", "1", "-of", "AAIGrid"])
            .arg(path)
            .arg("/vsistdout/")
            .output()
            .expect("gdal_translate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let data: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with(|c: char| c.is_ascii_alphabetic()))
            .flat_map(|l| l.split_whitespace().map(|v| v.parse::<f64>().unwrap()))
            .collect();
        assert_eq!(data.len() as i64, width * height, "{}", path.display());
        Raster {
            gt,
            width,
            height,
            data,
        }
    }

    /// The value at `(x, y)` in the raster's CRS; `None` outside or at nodata (0).
    fn at(&self, x: f64, y: f64) -> Option<f64> {
        let px = ((x - self.gt[0]) / self.gt[1]).floor() as i64;
        let py = ((y - self.gt[3]) / self.gt[5]).floor() as i64;
        if px < 0 || py < 0 || px >= self.width || py >= self.height {
            return None;
        }
        Some(self.data[(py * self.width + px) as usize]).filter(|v| *v != 0.0)
    }
}

/// Points transformed from one CRS to another (`gdaltransform`, x/y order).
fn transform(from: &str, to: &str, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    use std::io::Write;
    let mut child = Command::new("gdaltransform")
        .args(["-s_srs", from, "-t_srs", to, "-output_xy"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gdaltransform runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (x, y) in points {
            writeln!(stdin, "{x} {y}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace().map(|v| v.parse::<f64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect()
}

/// The published tile rasters of a task, from `task.json`.
fn tile_rasters(folder: &Path, manifest: &Value) -> Vec<PathBuf> {
    manifest["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            folder
                .join(t["folder"].as_str().unwrap())
                .join("openEO.tif")
        })
        .collect()
}

/// Nothing half-written is left in the task folder: no temporary names anywhere.
fn assert_no_temporaries(folder: &Path) {
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-") && !name.ends_with(".part"),
                "a temporary file in the task folder: {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

/// The mosaic covers exactly the union of the tiles (within a pixel) and holds their
/// pixels at the centre and near the corners of each tile.
fn assert_mosaic_equals_tiles(mosaic: &Path, tiles: &[PathBuf]) {
    let info = gdalinfo(mosaic);
    let ([mx0, my0, mx1, my1], px) = extent(&info);
    let m = Raster::load(mosaic);
    let mut union = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    let mut samples = 0;
    for tile in tiles {
        let t = gdalinfo(tile);
        assert_eq!(epsg(&t), epsg(&info), "one CRS: {}", tile.display());
        let ([x0, y0, x1, y1], _) = extent(&t);
        let tr = Raster::load(tile);
        union = [
            union[0].min(x0),
            union[1].min(y0),
            union[2].max(x1),
            union[3].max(y1),
        ];
        for (fx, fy) in [
            (0.5, 0.5),
            (0.05, 0.05),
            (0.95, 0.05),
            (0.05, 0.95),
            (0.95, 0.95),
        ] {
            let x = x0 + (x1 - x0) * fx;
            let y = y0 + (y1 - y0) * fy;
            let want = tr.at(x, y);
            assert!(want.is_some(), "the tile has data at ({x}, {y})");
            assert_eq!(
                m.at(x, y),
                want,
                "mosaic pixel at ({x}, {y}) of {}",
                tile.display()
            );
            samples += 1;
        }
    }
    for (m, u) in [mx0, my0, mx1, my1].iter().zip(union) {
        assert!(
            (m - u).abs() <= px,
            "mosaic extent {:?} vs union of tiles {union:?}",
            [mx0, my0, mx1, my1]
        );
    }
    assert!(samples >= 5 * tiles.len());
}

// =====================================================================================
// Tests
// =====================================================================================

/// A polygon → tiles → a task → every tile finished → the task folder holds the tiles'
/// folders, `task.json` and a VRT whose extent is the union of the tiles' and whose
/// pixels are the tiles' pixels; the VRT's sources are relative (the folder can move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polygon_becomes_one_mosaic_of_its_tiles() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    assert!(cells.len() >= 4, "{cells:?}");
    let id = create_task(&d, &task_body(&fake, "Mosaic one", &cells, "gtiff")).await;
    let results = root.path().join("results");
    let (folder, m) = wait_task_json(&results, id, LONG, is_final).await;

    assert_eq!(m["eodispatch_task_manifest"], 1);
    assert_eq!(m["task"]["id"], id);
    assert_eq!(m["task"]["status"], "finished");
    assert_eq!(m["tiles"].as_array().unwrap().len(), cells.len(), "{m:#}");
    assert_eq!(m["failed"], json!([]));
    assert_eq!(m["pending"], json!([]));
    assert_eq!(m["mosaic"]["kind"], "vrt");
    assert_eq!(m["mosaic"]["available"], true);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m:#}");
    let layer = &layers[0];
    assert_eq!(layer["path"], "openEO.vrt");
    assert_eq!(layer["kind"], "raster");
    assert_eq!(layer["readable"], true);
    assert_eq!(layer["name"], "Mosaic one");
    assert_eq!(layer["tiles"], cells.len());
    assert_eq!(layer["crs"], "EPSG:32632");
    for t in m["tiles"].as_array().unwrap() {
        let f = folder.join(t["folder"].as_str().unwrap());
        assert!(f.join("job.json").is_file() && f.join("openEO.tif").is_file());
        assert_eq!(t["crs"], "EPSG:32632");
    }
    // Every tile's job points at its folder inside the task folder.
    for t in m["tiles"].as_array().unwrap() {
        let (_, j) = d.get_json(&format!("/unit_jobs/{}", t["job"])).await;
        assert_eq!(
            Path::new(j["results"]["dir"].as_str().unwrap()).parent(),
            Some(folder.as_path())
        );
    }
    let tiles = tile_rasters(&folder, &m);
    assert_mosaic_equals_tiles(&folder.join("openEO.vrt"), &tiles);
    assert_no_temporaries(&folder);
    // Published read-only: a reader (GDAL writing statistics back into a VRT opened by
    // name) cannot put an older mosaic over a newer one.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(folder.join("openEO.vrt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "no write bit: {mode:o}");
    }
    // Sources relative to the VRT: the folder moved elsewhere still reads.
    let vrt = std::fs::read_to_string(folder.join("openEO.vrt")).unwrap();
    assert!(!vrt.contains(&*folder.to_string_lossy()), "{vrt}");
    assert!(vrt.contains("relativeToVRT=\"1\""), "{vrt}");
    d.stop().await;
    let moved = root.path().join("moved");
    std::fs::rename(&folder, &moved).unwrap();
    let tiles: Vec<PathBuf> = tiles
        .iter()
        .map(|t| moved.join(t.strip_prefix(&folder).unwrap()))
        .collect();
    assert_mosaic_equals_tiles(&moved.join("openEO.vrt"), &tiles);
}

/// Tiles that finish at different times: `task.json` shows the mosaic with fewer tiles
/// and `final: false` first, then all tiles and `final: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mosaic_grows_as_tiles_finish() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        plan_rules: vec![PlanRule::new(
            "Progressive - Processing Job 1",
            JobPlan::finishing(0.1, 8.0),
        )],
        ..FakeConfig::default()
    };
    let fake = start_fake_with(cfg).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    let id = create_task(&d, &task_body(&fake, "Progressive", &cells, "gtiff")).await;
    let results = root.path().join("results");
    let n = cells.len();
    let (folder, early) = wait_task_json(&results, id, LONG, |m| {
        m["final"] == json!(false) && m["layers"][0]["tiles"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let early_tiles = early["tiles"].as_array().unwrap().len();
    assert!(early_tiles < n, "{early:#}");
    assert_eq!(early["layers"][0]["tiles"], early_tiles);
    assert_eq!(early["layers"][0]["readable"], true);
    assert!(!early["pending"].as_array().unwrap().is_empty());
    // The early mosaic already holds the early tiles' pixels.
    assert_mosaic_equals_tiles(&folder.join("openEO.vrt"), &tile_rasters(&folder, &early));
    let (_, last) = wait_task_json(&results, id, LONG, is_final).await;
    assert_eq!(last["tiles"].as_array().unwrap().len(), n);
    assert_eq!(last["layers"][0]["tiles"], n);
    assert_mosaic_equals_tiles(&folder.join("openEO.vrt"), &tile_rasters(&folder, &last));
    d.stop().await;
}

/// A tile that fails is named in `task.json` with its error; the mosaic is made of the
/// others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tile_is_named_and_the_others_make_the_mosaic() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        plan_rules: vec![PlanRule::new(
            "Holes - Processing Job 2",
            JobPlan::failing(0.1, 0.3, "out of memory on the worker"),
        )],
        ..FakeConfig::default()
    };
    let fake = start_fake_with(cfg).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    let id = create_task(&d, &task_body(&fake, "Holes", &cells, "gtiff")).await;
    let (folder, m) = wait_task_json(&root.path().join("results"), id, LONG, is_final).await;
    let failed = m["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{m:#}");
    assert_eq!(failed[0]["title"], "Holes - Processing Job 2");
    assert_eq!(failed[0]["status"], "failed");
    assert!(
        failed[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of memory"),
        "{m:#}"
    );
    assert_eq!(m["tiles"].as_array().unwrap().len(), cells.len() - 1);
    assert_eq!(m["layers"][0]["tiles"], cells.len() - 1);
    // A tile is missing: the task is not finished (`StatusCounts::task_status`).
    assert_eq!(m["task"]["status"], "failed");
    assert_mosaic_equals_tiles(&folder.join("openEO.vrt"), &tile_rasters(&folder, &m));
    d.stop().await;
}

/// An area across two UTM zones: the tiles come in two CRSs; the mosaic is one raster
/// in one of them, the other zone's tiles warped into it, covering every tile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_area_across_two_utm_zones_makes_one_mosaic_in_one_crs() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_TWO_ZONES).await;
    let id = create_task(&d, &task_body(&fake, "Two zones", &cells, "gtiff")).await;
    let (folder, m) = wait_task_json(&root.path().join("results"), id, LONG, is_final).await;
    let tiles = m["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), cells.len());
    let crss: std::collections::BTreeSet<&str> =
        tiles.iter().map(|t| t["crs"].as_str().unwrap()).collect();
    assert_eq!(
        crss,
        ["EPSG:32632", "EPSG:32633"].into_iter().collect(),
        "the tiles are in two zones: {m:#}"
    );
    let mosaic = folder.join("openEO.vrt");
    let info = gdalinfo(&mosaic);
    let crs = format!("EPSG:{}", epsg(&info));
    assert_eq!(m["layers"][0]["crs"], crs);
    let majority = crss
        .iter()
        .max_by_key(|c| tiles.iter().filter(|t| t["crs"] == **c).count())
        .unwrap();
    assert_eq!(
        tiles.iter().filter(|t| t["crs"] == crs).count(),
        tiles.iter().filter(|t| t["crs"] == *majority).count(),
        "the CRS most tiles have"
    );
    let sources = m["layers"][0]["mosaic"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), tiles.len());
    for (t, s) in tiles.iter().zip(sources) {
        assert_eq!(s["used"], true, "{s}");
        assert_eq!(s["warped"].is_string(), t["crs"] != crs, "{s}");
    }
    // Every tile's ground is in the mosaic: at the tile's centre and near its corners,
    // the mosaic has the value of a native tile (in the mosaic's CRS) covering the point
    // (they are drawn on top, and agree where they overlap), else the value of one of the
    // warped tile's pixels around the point (nearest-neighbour resampling).
    let native: Vec<PathBuf> = tiles
        .iter()
        .filter(|t| t["crs"] == crs)
        .map(|t| {
            folder
                .join(t["folder"].as_str().unwrap())
                .join("openEO.tif")
        })
        .collect();
    let natives: Vec<Raster> = native.iter().map(|n| Raster::load(n)).collect();
    let m = Raster::load(&mosaic);
    let mut checked = 0;
    let mut warped_checked = 0;
    for t in tiles {
        let tile = folder
            .join(t["folder"].as_str().unwrap())
            .join("openEO.tif");
        let tr = Raster::load(&tile);
        let ([x0, y0, x1, y1], px) = extent(&gdalinfo(&tile));
        let points: Vec<(f64, f64)> = [
            (0.5, 0.5),
            (0.3, 0.5),
            (0.7, 0.5),
            (0.1, 0.1),
            (0.9, 0.9),
            (0.1, 0.9),
            (0.9, 0.1),
        ]
        .iter()
        .map(|(fx, fy)| (x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy))
        .collect();
        let tile_crs = t["crs"].as_str().unwrap();
        let in_mosaic = transform(tile_crs, &crs, &points);
        for (&(x, y), &(mx, my)) in points.iter().zip(&in_mosaic) {
            let got = m.at(mx, my);
            let on_top = natives.iter().find_map(|n| n.at(mx, my));
            if let Some(want) = on_top {
                assert_eq!(got, Some(want), "{} at {x},{y}", tile.display());
            } else {
                let around: Vec<f64> = [-1.0, 0.0, 1.0]
                    .iter()
                    .flat_map(|dx| [-1.0, 0.0, 1.0].map(|dy| (*dx, dy)))
                    .filter_map(|(dx, dy)| tr.at(x + dx * px, y + dy * px))
                    .collect();
                assert!(
                    got.is_some_and(|g| around.contains(&g)),
                    "{} at {x},{y}: mosaic {got:?}, tile around {around:?}",
                    tile.display()
                );
                warped_checked += 1;
            }
            checked += 1;
        }
    }
    let warped_tiles = tiles.iter().filter(|t| t["crs"] != crs).count();
    assert!(
        warped_checked >= 2 * warped_tiles,
        "points only a warped tile covers: {warped_checked}"
    );
    assert_eq!(checked, 7 * tiles.len());
    // The union of the tiles' WGS84 bounds lies inside the mosaic's.
    let wgs = &info["wgs84Extent"]["coordinates"][0];
    let lons: Vec<f64> = wgs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .collect();
    let (mw, me) = (
        lons.iter().cloned().fold(f64::MAX, f64::min),
        lons.iter().cloned().fold(f64::MIN, f64::max),
    );
    assert!(mw < 12.0 && me > 12.0, "the mosaic spans 12° E: {mw}..{me}");
    assert_no_temporaries(&folder);
    d.stop().await;
}

/// `"mosaic": "cog"` in the request: one Cloud-Optimised GeoTIFF with the tiles' pixels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosaic_cog_gives_a_valid_cog() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    let mut body = task_body(&fake, "Cog", &cells, "gtiff");
    body["mosaic"] = json!("cog");
    let id = create_task(&d, &body).await;
    let (folder, m) = wait_task_json(&root.path().join("results"), id, LONG, is_final).await;
    assert_eq!(m["mosaic"]["kind"], "cog");
    assert_eq!(m["layers"][0]["path"], "openEO.tif");
    assert_eq!(m["layers"][0]["mosaic"]["format"], "cog");
    let cog = folder.join("openEO.tif");
    let info = gdalinfo(&cog);
    assert_eq!(info["driverShortName"], "GTiff");
    assert_eq!(
        info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"], "COG",
        "{info:#}"
    );
    assert!(!folder.join("openEO.vrt").exists());
    assert_mosaic_equals_tiles(&cog, &tile_rasters(&folder, &m));
    assert_no_temporaries(&folder);
    // A bad value is refused.
    body["mosaic"] = json!("png");
    let (s, p) = d.post_json("/upscale_tasks", &body).await;
    assert_eq!(
        (s, p["errors"][0]["name"].as_str()),
        (422, Some("mosaic")),
        "{p}"
    );
    d.stop().await;
}

/// A vector output: one GeoPackage layer holding every tile's features.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_outputs_merge_into_one_geopackage_layer() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let d = daemon(root.path(), &fake).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    let id = create_task(&d, &task_body(&fake, "Vectors", &cells, "geojson")).await;
    let (folder, m) = wait_task_json(&root.path().join("results"), id, LONG, is_final).await;
    let layer = &m["layers"][0];
    assert_eq!(layer["path"], "vectorcube.gpkg", "{m:#}");
    assert_eq!(layer["kind"], "vector");
    let mut sum = 0;
    for t in m["tiles"].as_array().unwrap() {
        let f = folder
            .join(t["folder"].as_str().unwrap())
            .join("vectorcube.geojson");
        sum += feature_counts(&f).iter().sum::<u64>();
    }
    assert!(sum >= cells.len() as u64);
    let counts = feature_counts(&folder.join("vectorcube.gpkg"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(folder.join("vectorcube.gpkg"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "no write bit: {mode:o}");
    }
    assert_eq!(counts, [sum], "one layer with every feature");
    assert_eq!(layer["layers"][0]["name"], "vectorcube");
    assert_eq!(layer["layers"][0]["feature_count"], sum);
    assert_no_temporaries(&folder);
    d.stop().await;
}

/// Without the GDAL helper the task folder and `task.json` are published all the same,
/// with every tile, no layers, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_helper_task_json_says_there_is_no_mosaic() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with(FakeConfig::default()).await;
    let mut cfg = config_for(root.path(), &fake.base_url(), 8);
    cfg.gdal_bin = Some(root.path().join("no-such-helper"));
    let d = TestDaemon::start_with(cfg).await;
    let cells = cells(&d, &AOI_ONE_ZONE).await;
    let id = create_task(&d, &task_body(&fake, "No helper", &cells, "gtiff")).await;
    let (folder, m) = wait_task_json(&root.path().join("results"), id, LONG, is_final).await;
    assert_eq!(m["tiles"].as_array().unwrap().len(), cells.len(), "{m:#}");
    assert_eq!(m["layers"], json!([]));
    assert_eq!(m["mosaic"]["available"], false);
    assert_eq!(m["mosaic"]["error_code"], "GeoHelperMissing");
    assert!(!folder.join("openEO.vrt").exists());
    for t in m["tiles"].as_array().unwrap() {
        assert!(folder
            .join(t["folder"].as_str().unwrap())
            .join("openEO.tif")
            .is_file());
    }
    d.stop().await;
}

/// `ogrinfo -so -al`: the feature count of each layer.
fn feature_counts(path: &Path) -> Vec<u64> {
    let out = Command::new("ogrinfo")
        .args(["-ro", "-so", "-al"])
        .arg(path)
        .output()
        .expect("ogrinfo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Feature Count: "))
        .map(|n| n.trim().parse().unwrap())
        .collect()
}

/// The real daemon killed with `kill -9` again and again while the tiles arrive and the
/// (COG) mosaic is built: after a last start the mosaic is complete, equal to the
/// tiles, nothing half-written is left, no tile folder is there twice and no asset was
/// downloaded more than once per tile (plus resumptions of interrupted downloads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_the_mosaic_is_built_and_it_is_built_again() {
    let root = tempfile::tempdir().unwrap();
    // Tiles finish one after the other (job n runs 1.5·n s), so that the kills fall
    // while tiles arrive and mosaics are built.
    let cfg = FakeConfig {
        plan_rules: (1..=9)
            .map(|n| {
                PlanRule::new(
                    format!("Killed - Processing Job {n}"),
                    JobPlan::finishing(0.1, 1.5 * n as f64),
                )
            })
            .collect(),
        ..FakeConfig::default()
    };
    let fake = start_fake_with(cfg).await;
    let geo = gdal_bin();
    let env = [
        ("EODISPATCH_GDAL_BIN", geo.to_str().unwrap()),
        ("EODISPATCH_MOSAIC", "cog"),
    ];
    let mut child = ChildDaemon::start(root.path(), &fake.base_url(), 8, &env).await;
    let (s, tiles) = child
        .post_json(
            "/tiles",
            &json!({"grid": "20x20km", "aoi": {"type": "Polygon", "coordinates": [AOI_TWO_ZONES]}}),
        )
        .await;
    assert_eq!(s, 201);
    let cells = tiles["geometries"].as_array().unwrap().clone();
    let (s, task) = child
        .post_json(
            "/upscale_tasks",
            &task_body(&fake, "Killed", &cells, "gtiff"),
        )
        .await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let results = root.path().join("results");
    let mut kills = 0;
    let mut seen_progress = 0;
    let mut seen: Vec<(usize, Value)> = Vec::new();
    for round in 0..8u64 {
        // Kill at different moments: while tiles arrive, while the mosaic is built.
        tokio::time::sleep(Duration::from_millis(900 + round * 230)).await;
        child.kill9();
        kills += 1;
        if let Some(folder) = task_folder(&results, id) {
            if let Ok(text) = std::fs::read(folder.join("task.json")) {
                let m: Value =
                    serde_json::from_slice(&text).expect("task.json whole after kill -9");
                if m["final"] == json!(false) && !m["tiles"].as_array().unwrap().is_empty() {
                    seen_progress += 1;
                }
                seen.push((m["tiles"].as_array().unwrap().len(), m["final"].clone()));
            }
            for f in ["openEO.tif", "openEO.vrt"] {
                if folder.join(f).exists() {
                    gdalinfo(&folder.join(f));
                }
            }
        }
        child = ChildDaemon::start(root.path(), &fake.base_url(), 8, &env).await;
    }
    let (folder, m) = wait_task_json(&results, id, LONG, is_final).await;
    assert!(
        seen_progress >= 2,
        "killed while the mosaic was partial only {seen_progress} times: {seen:?} ({})",
        root.path().display()
    );
    assert_eq!(m["tiles"].as_array().unwrap().len(), cells.len(), "{m:#}");
    assert_eq!(m["layers"][0]["tiles"], cells.len());
    assert_eq!(m["layers"][0]["path"], "openEO.tif");
    // Once final, nothing more is built: no temporaries, the COG complete.
    assert_no_temporaries(&folder);
    let info = gdalinfo(&folder.join("openEO.tif"));
    assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"], "COG");
    let crs = epsg(&info);
    let cog = Raster::load(&folder.join("openEO.tif"));
    let native: Vec<PathBuf> = m["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["crs"] == format!("EPSG:{crs}"))
        .map(|t| {
            folder
                .join(t["folder"].as_str().unwrap())
                .join("openEO.tif")
        })
        .collect();
    assert!(!native.is_empty());
    for tile in &native {
        let ti = gdalinfo(tile);
        let ([x0, y0, x1, y1], _) = extent(&ti);
        let (x, y) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        assert_eq!(cog.at(x, y), Raster::load(tile).at(x, y));
    }
    // Each tile's folder once, no `-2` copies.
    let tile_dirs: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("job.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tile_dirs.len(), cells.len(), "{tile_dirs:?}");
    // Nothing downloaded twice: one asset request per tile, plus at most one resumption
    // per interrupted delivery (two at a time) per kill.
    let stats = fake.stats();
    let asset_requests: u64 = stats
        .requests
        .iter()
        .filter(|(k, _)| k.contains("assets") || k.contains("/download"))
        .map(|(_, n)| *n)
        .sum();
    assert!(asset_requests >= cells.len() as u64, "{:?}", stats.requests);
    assert!(
        asset_requests <= cells.len() as u64 + 2 * kills,
        "asset requests {asset_requests} for {} tiles and {kills} kills: {:?}",
        cells.len(),
        stats.requests
    );
    assert!(
        !child.log_text().contains("panicked"),
        "{}",
        child.log_text()
    );
    child.kill9();
}
