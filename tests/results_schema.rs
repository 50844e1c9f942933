//! The results folder's contract, `docs/job.schema.json` and `docs/task.schema.json`:
//!
//! - both are JSON Schema 2020-12 documents;
//! - what the daemon publishes follows them: a job folder (a GeoTIFF inspected by the
//!   GDAL helper), a task folder (its `task.json`, the VRT mosaic, each tile's job
//!   folder), and a job folder published without the helper (`GeoHelperMissing`);
//! - they can fail: a wrong field planted in those documents is found, at its place.
//!
//! No test backend answers plain values (`literals`, OGC API Processes only): they are
//! added to a published `job.json` here.
//!
//! The other end-to-end tests (`results`, `ogc`, `mosaic`, `tasks`, `hostile_files`,
//! `sync_jobs`) validate every `job.json` and `task.json` they read the same way
//! (`tests/common/schema.rs`); the GDAL helper's tests validate its output against the
//! same files, the plugin's tests the folders they load.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestDaemon;
use fake::*;
use fake_openeo::{AssetSource, FakeConfig, FakeHandle};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

async fn start_fake_with_tiff() -> FakeHandle {
    let cfg = FakeConfig::default()
        .with_timing(0.1, 0.2)
        .with_asset("openEO.tif", AssetSource::GroundTiff { pixel: 100.0 });
    fake_openeo::start(cfg).await.expect("the fake starts")
}

async fn daemon(root: &Path, fake: &FakeHandle, helper: Option<PathBuf>) -> TestDaemon {
    let mut cfg = config_for(root, &fake.base_url(), 8);
    // No helper: a path where there is none (not looked up next to the test binary).
    cfg.gdal_bin = Some(helper.unwrap_or_else(|| root.join("no-geo-helper")));
    TestDaemon::start_with(cfg).await
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The published folder of job `id`.
async fn published(d: &TestDaemon, id: i64) -> PathBuf {
    let j = wait_results(d, id, "ready", LONG).await;
    PathBuf::from(j["results"]["dir"].as_str().unwrap())
}

/// Waits until task `id`'s `task.json` says `final`; the task folder.
async fn final_task_folder(d: &TestDaemon, id: i64) -> PathBuf {
    wait_for("a final task.json", LONG, || async {
        let (_, t) = d.get_json(&format!("/upscale_tasks/{id}")).await;
        let tile = t["jobs"][0]["id"].as_i64()?;
        let (_, j) = d.get_json(&format!("/unit_jobs/{tile}")).await;
        let folder = Path::new(j["results"]["dir"].as_str()?)
            .parent()?
            .to_path_buf();
        let m = std::fs::read(folder.join("task.json")).ok()?;
        let m: Value = serde_json::from_slice(&m).ok()?;
        (m["final"] == json!(true)).then_some(folder)
    })
    .await
}

/// `doc` with the value at JSON pointer `at` replaced by `value` (`None`: removed).
fn planted(doc: &Value, at: &str, value: Option<Value>) -> Value {
    let mut doc = doc.clone();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(key.to_string(), v);
        }
        (Value::Object(m), None) => {
            assert!(m.remove(key).is_some(), "{at} is there to remove");
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
        (other, _) => panic!("cannot plant at {at} in {other}"),
    }
    doc
}

/// Every planted change makes `errors` name a place at or under the expected one.
fn each_plant_fails(
    doc: &Value,
    errors: fn(&Value) -> Vec<String>,
    plants: &[(&str, Option<Value>, &str)],
) {
    assert_eq!(
        errors(doc),
        Vec::<String>::new(),
        "the document is valid before"
    );
    for (at, value, reported) in plants {
        let bad = planted(doc, at, value.clone());
        let found = errors(&bad);
        assert!(
            found.iter().any(|e| e.starts_with(reported)),
            "planting {value:?} at {at}: expected an error at {reported}, got {found:#?}"
        );
    }
}

#[test]
fn the_schemas_are_json_schema_2020_12() {
    for name in ["job.schema.json", "task.schema.json"] {
        let s = schema::load(name);
        assert_eq!(
            s["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        if let Err(e) = jsonschema::meta::validate(&s) {
            panic!("{name} is not a valid JSON Schema: {e}");
        }
    }
}

/// A job and a two-tile task, with the GDAL helper: every document is valid; planted
/// errors in each are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_job_and_task_folders_follow_the_schemas_and_a_planted_error_does_not() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with_tiff().await;
    let d = daemon(root.path(), &fake, Some(gdal_bin())).await;

    let job = submit(&d, &pv_request(&fake.base_url(), "Schema job")).await;
    let mut body = pv_request(&fake.base_url(), "Schema task");
    body["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("spatial_extent");
    body["dimension"] = json!({"name": "spatial_extent", "values": [
        {"west": 16.30, "south": 47.96, "east": 16.32, "north": 47.98},
        {"west": 16.32, "south": 47.96, "east": 16.34, "north": 47.98}
    ]});
    let (s, task) = d.post_json("/upscale_tasks", &body).await;
    assert_eq!(s, 201, "{task}");

    let job_dir = published(&d, job).await;
    assert_eq!(schema::assert_folder(&job_dir), 1);
    let task_dir = final_task_folder(&d, task["id"].as_i64().unwrap()).await;
    assert_eq!(
        schema::assert_folder(&task_dir),
        3,
        "task.json and two tiles"
    );
    d.stop().await;
    fake.shutdown().await;

    let m = read(&job_dir.join("job.json"));
    assert_eq!(m["layers"][0]["readable"], true, "{m:#}");
    // An OGC process's plain values, as it gave them (the fake openEO backend has none).
    let mut with_literals = m.clone();
    with_literals["literals"] = json!({"count": 7, "label": "pv", "stats": {"mean": 0.4}});
    schema::assert_job_json(&with_literals);
    each_plant_fails(
        &m,
        schema::job_json_errors,
        &[
            (
                "/eodispatch_manifest",
                Some(json!(2)),
                "/eodispatch_manifest",
            ),
            ("/job/status", Some(json!("done")), "/job/status"),
            ("/job/created", Some(json!("yesterday")), "/job/created"),
            ("/job/uuid", None, "/job"),
            ("/service/namespace", None, "/service"),
            ("/extra", Some(json!(1)), ""),
            (
                "/layers/0/kind",
                Some(json!("raster-ish")),
                "/layers/0/kind",
            ),
            ("/layers/0/colour", Some(json!("red")), "/layers/0"),
            ("/layers/0/error_code", None, "/layers/0"),
            (
                "/layers/0/error_code",
                Some(json!("Broken")),
                "/layers/0/error_code",
            ),
            (
                "/layers/0/error",
                Some(json!("readable, yet an error")),
                "/layers/0/error",
            ),
            (
                "/layers/0/path",
                Some(json!("../openEO.tif")),
                "/layers/0/path",
            ),
            ("/layers/0/path", Some(json!("job.json")), "/layers/0/path"),
            (
                "/layers/0/bounds",
                Some(json!([1, 2, 3])),
                "/layers/0/bounds",
            ),
            (
                "/layers/0/bands/0/min",
                Some(json!("0")),
                "/layers/0/bands/0/min",
            ),
            (
                "/layers/0/style/type",
                Some(json!("fancy")),
                "/layers/0/style",
            ),
            ("/literals", Some(json!({})), "/literals"),
        ],
    );

    let t = read(&task_dir.join("task.json"));
    assert_eq!(t["layers"][0]["readable"], true, "{t:#}");
    each_plant_fails(
        &t,
        schema::task_json_errors,
        &[
            (
                "/eodispatch_task_manifest",
                Some(json!("1")),
                "/eodispatch_task_manifest",
            ),
            ("/task/status", Some(json!("done")), "/task/status"),
            ("/counts/finished", Some(json!(-1)), "/counts/finished"),
            ("/counts/lost", Some(json!(0)), "/counts"),
            ("/tiles/0/job", Some(json!("1")), "/tiles/0/job"),
            ("/tiles/0/folder", Some(json!("a/b")), "/tiles/0/folder"),
            ("/pending", Some(json!([0])), "/pending/0"),
            ("/mosaic/kind", Some(json!("zip")), "/mosaic/kind"),
            (
                "/mosaic/error",
                Some(json!("available, yet an error")),
                "/mosaic/error",
            ),
            ("/layers/0/tiles", None, "/layers/0"),
            ("/layers/0/asset", Some(json!("openEO.tif")), "/layers/0"),
            (
                "/layers/0/mosaic/sources/0/used",
                Some(json!("yes")),
                "/layers/0/mosaic/sources/0/used",
            ),
            ("/final", None, ""),
        ],
    );
}

/// Without the GDAL helper every file is listed `readable: false`, `GeoHelperMissing`:
/// valid too; `readable: false` without an error is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_folder_published_without_the_helper_follows_the_schema() {
    let root = tempfile::tempdir().unwrap();
    let fake = start_fake_with_tiff().await;
    let d = daemon(root.path(), &fake, None).await;
    let job = submit(&d, &pv_request(&fake.base_url(), "No helper")).await;
    let dir = published(&d, job).await;
    d.stop().await;
    fake.shutdown().await;
    schema::assert_folder(&dir);
    let m = read(&dir.join("job.json"));
    assert_eq!(m["layers"][0]["error_code"], "GeoHelperMissing", "{m:#}");
    each_plant_fails(
        &m,
        schema::job_json_errors,
        &[
            ("/layers/0/error", Some(Value::Null), "/layers/0/error"),
            (
                "/layers/0/kind",
                Some(json!("raster-ish")),
                "/layers/0/kind",
            ),
        ],
    );
}
