//! One result per upscale task: the task folder, its mosaics and `task.json`.
//!
//! The tiles (unit jobs) of an upscale task are delivered like any job ([`super`]), but
//! published into the **task folder** `results_dir/<date>_<task-title-slug>_task<id>/`
//! instead of the results folder itself. The task folder appears in one step, like a job
//! folder: it is made in `results_dir/.incoming/task-<task uuid>/` with a first
//! `task.json` and renamed into place when the first tile is ready to go in; its path is
//! kept in the store (`upscale_tasks.results_dir`). It holds:
//!
//! - one folder per tile, exactly as a job folder (`job.json`, `results.json`, files);
//! - per output of the tiles (the same file name in each tile, e.g. `openEO.tif`), one
//!   mosaic made by the GDAL helper (`eodispatch-gdal mosaic`, see `crates/gdal-helper/src/mosaic.rs`):
//!   rasters `<output>.vrt` (a VRT whose sources are the tiles' files, by paths relative to
//!   it: the task folder can be moved), or with `mosaic = "cog"` (request, else
//!   `config.toml`) one Cloud-Optimised GeoTIFF `<output>.tif`; vectors `<output>.gpkg`,
//!   one layer with the features of every tile. Tiles in another CRS than the mosaic's
//!   (an area across two UTM zones) are warped into it and kept in `<output>.warped/`.
//!   **The CRS** is the one most tiles have at the first build, kept for every later build
//!   (in the store), so that a growing mosaic does not change its CRS;
//! - `task.json`: the task, `final`, counts, the tiles (job id, status, folder, CRS and
//!   bounds), the tiles that failed with their error, the tiles still pending, and the
//!   mosaic `layers` in the shape of `job.json`'s layers (plus `tiles`: how many tiles
//!   the layer holds), so that clients load them with the same code.
//!
//! **Progressive.** When a tile's results are published (`ResultsPublished`) or a tile
//! ends without results (`JobChanged` to `failed` / `canceled`, or its delivery failed),
//! the task is queued; a worker rebuilds the mosaics and `task.json`, at most once every
//! [`DEBOUNCE`] per task, so that a map fills in while the task runs. `final` is `true`
//! once every tile has ended and every finished tile's delivery has ended (ready or
//! failed): then the build is the last one. Builds run one at a time.
//!
//! **Atomic, restartable.** Every file appears whole: the helper writes each under a
//! hidden temporary name in its folder, fsyncs it and renames it over the old one, and
//! `task.json` is written last the same way. What the published mosaic holds (tiles,
//! failed tiles, `final`, CRS) is stored only after `task.json` is in place; at start,
//! every task whose tiles differ from what is stored is built again (a build killed
//! half-way is simply redone, its temporary files removed first). Tiles are never
//! downloaded again for a mosaic: it only reads the published tile folders.
//!
//! **Without the helper** (not installed, or GDAL cannot start) the task folder and
//! `task.json` are still published, with no layers and `mosaic.error_code:
//! "GeoHelperMissing"`; the tiles' own folders stay loadable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{gdal_helper, names, publish, write_json, DeliveryFailure, Parts};
use crate::events::Event;
use crate::job::{rfc3339_z, Job, MosaicKind, ResultsState, Status, Task};

/// A task's mosaic is rebuilt at most this often while tiles stream in.
pub const DEBOUNCE: Duration = Duration::from_secs(2);

/// Name of the task manifest in the task folder.
pub const TASK_JSON: &str = "task.json";

/// Version of the task manifest format (`eodispatch_task_manifest`).
pub const TASK_MANIFEST_VERSION: u32 = 1;

/// Prefix of the staging folders of task folders in `.incoming` (not a UUID, so the
/// clean-up of deleted jobs' staging folders leaves them alone).
const STAGING_PREFIX: &str = "task-";

/// Cloneable handle to the mosaic worker.
#[derive(Clone)]
pub struct Mosaics {
    inner: Arc<Inner>,
}

struct Inner {
    parts: Parts,
    tx: mpsc::UnboundedSender<i64>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    /// Held while a task folder is looked up or made (two tiles may arrive at once).
    folders: tokio::sync::Mutex<()>,
}

/// Where the tiles of a task stand.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    /// Tiles whose published folder is in the task folder, in task order.
    tiles: Vec<i64>,
    /// Tiles that ended without results (failed or canceled jobs, failed deliveries).
    failed: Vec<i64>,
    /// Every tile ended and every delivery ended.
    complete: bool,
}

impl Snapshot {
    fn of(jobs: &[Job], folder: Option<&Path>) -> Snapshot {
        let mut s = Snapshot {
            tiles: Vec::new(),
            failed: Vec::new(),
            complete: true,
        };
        for j in jobs {
            match (j.status, j.results.state) {
                (Status::Finished, ResultsState::Ready) => {
                    let inside = j.results.dir.as_deref().map(Path::new).is_some_and(|d| {
                        d.is_dir() && folder.is_some_and(|f| d.parent() == Some(f))
                    });
                    if inside {
                        s.tiles.push(j.id);
                    } else {
                        // Published elsewhere (before the task folder existed): not
                        // mosaicked, but not waited for either.
                        s.failed.push(j.id);
                    }
                }
                (Status::Finished, ResultsState::Failed) => s.failed.push(j.id),
                // Delivered, then deleted or moved away by the user: ended, nothing to
                // mosaic and nothing to wait for.
                (Status::Finished, ResultsState::Removed) => {}
                (Status::Finished, _) => s.complete = false,
                (Status::Failed | Status::Canceled, _) => s.failed.push(j.id),
                _ => s.complete = false,
            }
        }
        s
    }

    fn state(&self, crs: &Option<String>) -> Value {
        json!({"tiles": self.tiles, "failed": self.failed, "final": self.complete, "crs": crs})
    }

    /// Whether `stored` (a state written after a publication) shows this snapshot.
    fn published_in(&self, stored: &Value) -> bool {
        stored["tiles"] == json!(self.tiles)
            && stored["failed"] == json!(self.failed)
            && stored["final"] == json!(self.complete)
    }
}

impl Mosaics {
    /// A worker; nothing runs before [`start`](Self::start).
    pub fn new(parts: Parts) -> Mosaics {
        let (tx, rx) = mpsc::unbounded_channel();
        Mosaics {
            inner: Arc::new(Inner {
                parts,
                tx,
                rx: Mutex::new(Some(rx)),
                folders: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn parts(&self) -> &Parts {
        &self.inner.parts
    }

    /// Builds task `id`'s mosaic soon (debounced).
    pub fn enqueue(&self, id: i64) {
        let _ = self.inner.tx.send(id);
    }

    /// Starts the worker and the event listener (both end with the daemon), and queues
    /// every task whose published mosaic is behind its tiles.
    pub async fn start(&self) -> Result<(), crate::store::StoreError> {
        let rx = self
            .inner
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(rx) = rx else {
            return Ok(());
        };
        let this = self.clone();
        self.parts()
            .background
            .spawn(async move { this.work(rx).await });
        let mut events = self.parts().events.subscribe();
        let this = self.clone();
        self.parts().background.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(env) => match &env.event {
                        Event::ResultsPublished(job) => {
                            if let Some(t) = job.upscale_task_id {
                                this.enqueue(t);
                            }
                        }
                        Event::JobChanged(job) => {
                            let ended_without =
                                matches!(job.status, Status::Failed | Status::Canceled)
                                    || job.results.state == ResultsState::Failed;
                            if let (Some(t), true) = (job.upscale_task_id, ended_without) {
                                this.enqueue(t);
                            }
                        }
                        _ => {}
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(e) = this.queue_behind().await {
                            tracing::error!(error = %e, "mosaics: store error");
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        self.queue_behind().await
    }

    /// Queues every task whose stored mosaic state differs from its tiles.
    async fn queue_behind(&self) -> Result<(), crate::store::StoreError> {
        let store = &self.parts().store;
        for t in store.tasks().await? {
            let Some(rec) = store.task_mosaic(t.id).await? else {
                continue;
            };
            let jobs = store.jobs_of_task(t.id).await?;
            let folder = rec.results_dir.as_deref().map(Path::new);
            let snap = Snapshot::of(&jobs, folder);
            let behind = match &rec.state {
                Some(s) => !snap.published_in(s),
                None => !snap.tiles.is_empty() || (snap.complete && !jobs.is_empty()),
            };
            let missing = folder.is_some_and(|f| !f.join(TASK_JSON).is_file());
            if behind || missing {
                self.enqueue(t.id);
            }
        }
        Ok(())
    }

    /// The worker: builds queued tasks, each at most once every [`DEBOUNCE`].
    async fn work(&self, mut rx: mpsc::UnboundedReceiver<i64>) {
        let mut due: BTreeMap<i64, Instant> = BTreeMap::new();
        let mut last: HashMap<i64, Instant> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                msg = rx.recv() => {
                    let Some(id) = msg else { break };
                    let now = Instant::now();
                    let at = last.get(&id).map_or(now, |l| (*l + DEBOUNCE).max(now));
                    due.entry(id).or_insert(at);
                }
                _ = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let ready: Vec<i64> = due.iter().filter(|(_, at)| **at <= now).map(|(id, _)| *id).collect();
                    for id in ready {
                        due.remove(&id);
                        if let Err(f) = self.build(id).await {
                            tracing::warn!(task = id, code = %f.code, error = %f.message, "task mosaic not published");
                        }
                        last.insert(id, Instant::now());
                    }
                }
            }
        }
    }

    /// The task folder of task `id`, published now (with a first `task.json`) if it is
    /// not there yet.
    pub async fn task_folder(&self, id: i64) -> Result<PathBuf, DeliveryFailure> {
        let _guard = self.inner.folders.lock().await;
        let store = &self.parts().store;
        let gone = || DeliveryFailure::new("TaskNotFound", "the upscale task was deleted");
        let rec = store.task_mosaic(id).await?.ok_or_else(gone)?;
        if let Some(dir) = rec.results_dir.as_deref().map(PathBuf::from) {
            if dir.is_dir() {
                return Ok(dir);
            }
        }
        let task = store.task(id).await?.ok_or_else(gone)?;
        let jobs = store.jobs_of_task(id).await?;
        let config = self.parts().settings.get();
        let private = config.results_private;
        let staging = config
            .results_dir
            .join(publish::INCOMING)
            .join(format!("{STAGING_PREFIX}{}", rec.uuid.hyphenated()));
        let name = task_folder_name(&task);
        let kind = rec.kind.unwrap_or(config.mosaic);
        let snap = Snapshot::of(&jobs, None);
        let doc = manifest(
            &task,
            rec.uuid,
            kind,
            &jobs,
            &Snapshot {
                tiles: Vec::new(),
                ..snap
            },
            &[],
            &MosaicStatus::pending(),
        );
        let results_dir = config.results_dir.clone();
        let dir = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            if staging.exists() {
                std::fs::remove_dir_all(&staging)?;
            }
            crate::private::create_dir(&staging, private)?;
            write_json(&staging.join(TASK_JSON), &doc, private)?;
            publish::publish(&staging, &results_dir, &name)
        })
        .await
        .map_err(|e| DeliveryFailure::new("Internal", e.to_string()))?
        .map_err(|e| {
            DeliveryFailure::new(
                "LocalIoError",
                format!("cannot publish the task folder: {e}"),
            )
        })?;
        store
            .set_task_results_dir(id, dir.display().to_string())
            .await?;
        tracing::info!(task = id, dir = %dir.display(), "task folder published");
        Ok(dir)
    }

    /// Builds and publishes task `id`'s mosaics and `task.json`, unless what is
    /// published already shows the tiles as they are.
    async fn build(&self, id: i64) -> Result<(), DeliveryFailure> {
        let store = &self.parts().store;
        let Some(rec) = store.task_mosaic(id).await? else {
            return Ok(());
        };
        let Some(task) = store.task(id).await? else {
            return Ok(());
        };
        let jobs = store.jobs_of_task(id).await?;
        let published = rec.results_dir.as_deref().map(PathBuf::from);
        let snap = Snapshot::of(&jobs, published.as_deref().filter(|d| d.is_dir()));
        if snap.tiles.is_empty() && !snap.complete {
            return Ok(());
        }
        if let (Some(state), Some(dir)) = (&rec.state, &published) {
            if snap.published_in(state) && dir.join(TASK_JSON).is_file() {
                return Ok(());
            }
        }
        let folder = self.task_folder(id).await?;
        let config = self.parts().settings.get();
        let kind = rec.kind.unwrap_or(config.mosaic);
        let mut crs = rec
            .state
            .as_ref()
            .and_then(|s| s["crs"].as_str())
            .map(str::to_string);
        let tiles: Vec<&Job> = jobs.iter().filter(|j| snap.tiles.contains(&j.id)).collect();
        let outputs = outputs(&folder, &tiles);
        let helper = gdal_helper::locate(config.gdal_bin.as_deref());
        let mut layers = Vec::new();
        let mut status = match (&helper, outputs.is_empty()) {
            (None, _) => MosaicStatus::missing("GDAL helper not found"),
            (Some(_), true) => MosaicStatus::nothing(),
            (Some(_), false) => MosaicStatus::ok(),
        };
        let many = outputs.len() > 1;
        for (name, files) in &outputs {
            let Some(helper) = helper.as_deref() else {
                status = MosaicStatus::missing("GDAL helper not found");
                break;
            };
            let layer = gdal_helper::mosaic(
                helper,
                &folder,
                name,
                kind == MosaicKind::Cog,
                crs.as_deref(),
                files,
                gdal_helper::Limits::default(),
            )
            .await;
            if layer["error_code"] == "GeoHelperMissing" {
                status = MosaicStatus::missing(layer["error"].as_str().unwrap_or("no helper"));
                break;
            }
            if crs.is_none() && layer["kind"] == "raster" {
                crs = layer["mosaic"]["crs"].as_str().map(str::to_string);
            }
            layers.push(mosaic_layer(&task, name, many, layer));
        }
        let doc = manifest(&task, rec.uuid, kind, &jobs, &snap, &layers, &status);
        let private = config.results_private;
        let target = folder.join(TASK_JSON);
        tokio::task::spawn_blocking(move || write_atomically(&target, &doc, private))
            .await
            .map_err(|e| DeliveryFailure::new("Internal", e.to_string()))?
            .map_err(|e| {
                DeliveryFailure::new("LocalIoError", format!("cannot write task.json: {e}"))
            })?;
        store.set_task_mosaic_state(id, snap.state(&crs)).await?;
        tracing::info!(
            task = id,
            tiles = snap.tiles.len(),
            failed = snap.failed.len(),
            r#final = snap.complete,
            "task mosaic published"
        );
        Ok(())
    }
}

/// `<date>_<title-slug>_task<id>`.
pub fn task_folder_name(task: &Task) -> String {
    let d = task.created.date();
    format!(
        "{:04}-{:02}-{:02}_{}_task{}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        names::slug(&task.title),
        task.id
    )
}

/// The outputs to mosaic: per file name of the tiles' readable, single rasters and
/// vectors (from each tile's `job.json`), the mosaic's base name and the files
/// (`<tile folder>/<file>`, relative to the task folder), in tile order.
fn outputs(folder: &Path, tiles: &[&Job]) -> Vec<(String, Vec<String>)> {
    let mut by_file: Vec<(String, Vec<String>)> = Vec::new();
    for job in tiles {
        let Some(dir) = job.results.dir.as_deref().map(Path::new) else {
            continue;
        };
        let Some(tile) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(text) = std::fs::read(folder.join(tile).join("job.json")) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        for l in manifest["layers"].as_array().into_iter().flatten() {
            let usable = l["readable"] == json!(true)
                && (l["kind"] == "vector" || (l["kind"] == "raster" && l["subdatasets"].is_null()));
            let Some(path) = l["path"].as_str().filter(|_| usable) else {
                continue;
            };
            if path.contains('/') || path.starts_with('.') {
                continue;
            }
            let file = format!("{tile}/{path}");
            match by_file.iter_mut().find(|(p, _)| p == path) {
                Some((_, files)) => files.push(file),
                None => by_file.push((path.to_string(), vec![file])),
            }
        }
    }
    let stems: Vec<String> = by_file
        .iter()
        .map(|(p, _)| base_name(names::split_ext(p).0))
        .collect();
    by_file
        .into_iter()
        .zip(&stems)
        .map(|((path, files), stem)| {
            let name = if stems.iter().filter(|s| *s == stem).count() > 1 {
                base_name(&path)
            } else {
                stem.clone()
            };
            (name, files)
        })
        .collect()
}

/// A base name the helper accepts: ASCII letters, digits, `-`, `_`, `.`, not hidden.
fn base_name(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if out.is_empty() {
        "mosaic".into()
    } else {
        out
    }
}

/// Whether the mosaics could be made at all.
struct MosaicStatus {
    available: bool,
    error: Option<String>,
    error_code: Option<&'static str>,
}

impl MosaicStatus {
    fn ok() -> Self {
        Self {
            available: true,
            error: None,
            error_code: None,
        }
    }
    fn pending() -> Self {
        Self {
            available: false,
            error: Some("no tile is in yet".into()),
            error_code: Some("Pending"),
        }
    }
    fn nothing() -> Self {
        Self {
            available: false,
            error: Some("no tile has a readable raster or vector output to put together".into()),
            error_code: Some("NoLayers"),
        }
    }
    fn missing(why: &str) -> Self {
        Self {
            available: false,
            error: Some(format!(
                "{why}: no mosaic; the tiles' folders can be loaded one by one"
            )),
            error_code: Some("GeoHelperMissing"),
        }
    }
}

/// A mosaic layer of `task.json`: the helper's entry with a display name and the
/// common keys of `job.json` layers.
fn mosaic_layer(task: &Task, name: &str, many: bool, helper: Value) -> Value {
    let display = if !many && (name == "openEO" || name.eq_ignore_ascii_case("result")) {
        task.title.clone()
    } else {
        format!("{} – {name}", task.title)
    };
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(display));
    m.insert("output".into(), json!(name));
    if let Value::Object(l) = helper {
        for (k, v) in l {
            m.insert(k, v);
        }
    }
    let tiles = m
        .get("mosaic")
        .and_then(|x| x["sources"].as_array())
        .map(|s| s.iter().filter(|x| x["used"] == json!(true)).count())
        .unwrap_or(0);
    m.insert("tiles".into(), json!(tiles));
    super::manifest::with_common_keys(&mut m);
    Value::Object(m)
}

/// `task.json`.
fn manifest(
    task: &Task,
    uuid: uuid::Uuid,
    kind: MosaicKind,
    jobs: &[Job],
    snap: &Snapshot,
    layers: &[Value],
    status: &MosaicStatus,
) -> Value {
    let folder_of = |j: &Job| {
        j.results
            .dir
            .as_deref()
            .and_then(|d| Path::new(d).file_name())
            .map(|n| n.to_string_lossy().into_owned())
    };
    let tiles: Vec<Value> = jobs
        .iter()
        .filter(|j| snap.tiles.contains(&j.id))
        .map(|j| {
            let (crs, bounds, wgs84) = tile_footprint(j);
            json!({
                "job": j.id,
                "title": j.title,
                "status": j.status,
                "folder": folder_of(j),
                "crs": crs,
                "bounds": bounds,
                "bounds_wgs84": wgs84,
            })
        })
        .collect();
    let failed: Vec<Value> = jobs
        .iter()
        .filter(|j| snap.failed.contains(&j.id))
        .map(|j| {
            json!({
                "job": j.id,
                "title": j.title,
                "status": j.status,
                "results": j.results.state,
                "folder": folder_of(j),
                "error": j.error,
            })
        })
        .collect();
    let pending: Vec<i64> = jobs
        .iter()
        .filter(|j| !snap.tiles.contains(&j.id) && !snap.failed.contains(&j.id))
        .map(|j| j.id)
        .collect();
    json!({
        "eodispatch_task_manifest": TASK_MANIFEST_VERSION,
        "task": {
            "id": task.id,
            "uuid": uuid,
            "title": task.title,
            "label": task.label,
            "status": task.status,
            "created": rfc3339_z::format(&task.created),
            "updated": rfc3339_z::format(&task.updated),
            "format": task.format,
            "dimension": task.dimension.name,
        },
        "service": task.service,
        "parameters": task.parameters,
        "final": snap.complete,
        "counts": task.counts,
        "tiles": tiles,
        "failed": failed,
        "pending": pending,
        "mosaic": {
            "kind": kind,
            "available": status.available,
            "error": status.error,
            "error_code": status.error_code,
        },
        "layers": layers,
    })
}

/// CRS, bounds and WGS84 bounds of a tile: those of the first readable layer of its
/// `job.json`.
fn tile_footprint(job: &Job) -> (Value, Value, Value) {
    let layer = job
        .results
        .dir
        .as_deref()
        .and_then(|d| std::fs::read(Path::new(d).join("job.json")).ok())
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|m| {
            m["layers"]
                .as_array()?
                .iter()
                .find(|l| l["readable"] == json!(true))
                .cloned()
        })
        .unwrap_or(Value::Null);
    (
        layer["crs"].clone(),
        layer["bounds"].clone(),
        layer["bounds_wgs84"].clone(),
    )
}

/// Writes `v` to `path` through a hidden temporary file in the same folder: fsync, rename,
/// fsync of the folder.
fn write_atomically(path: &Path, v: &Value, private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}"));
    write_json(&tmp, v, private)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    publish::fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_are_plain() {
        assert_eq!(base_name("openEO"), "openEO");
        assert_eq!(base_name("a b/ü"), "a_b__");
        assert_eq!(base_name(""), "mosaic");
    }

    #[test]
    fn a_snapshot_is_final_only_when_every_tile_and_delivery_ended() {
        let stored = json!({"tiles": [1, 2], "failed": [3], "final": false, "crs": "EPSG:32632"});
        let s = Snapshot {
            tiles: vec![1, 2],
            failed: vec![3],
            complete: false,
        };
        assert!(s.published_in(&stored));
        let done = Snapshot {
            complete: true,
            ..s.clone()
        };
        assert!(!done.published_in(&stored));
        let more = Snapshot {
            tiles: vec![1, 2, 4],
            ..s
        };
        assert!(!more.published_in(&stored));
    }

    #[test]
    fn a_tile_whose_folder_the_user_removed_does_not_hold_the_task_back() {
        let mut removed = crate::results::manifest::tests::sample_job();
        removed.results.state = ResultsState::Removed;
        let s = Snapshot::of(&[removed.clone()], None);
        assert_eq!((s.tiles.len(), s.failed.len(), s.complete), (0, 0, true));
        removed.results.state = ResultsState::Downloading;
        assert!(!Snapshot::of(&[removed], None).complete);
    }
}
