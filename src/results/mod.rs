//! Result delivery: when a job has finished, its results appear in the results folder,
//! complete and ready to load fast in QGIS, or not at all (docs/results-folder.md).
//!
//! [`Results`] is a cloneable handle over one queue: [`Results::enqueue`] (the
//! scheduler, when it sees a job finish; `POST /unit_jobs/{id}/results/download`) and
//! [`Results::start`] (at daemon start: jobs finished with results `pending` or
//! `downloading` are resumed). A worker task delivers at most [`CONCURRENT_JOBS`] jobs
//! at a time, each through these steps:
//!
//! 1. results `downloading`; a **fresh results document** from the backend (asset
//!    links are signed and expire);
//! 2. asset names made safe and unique ([`names`]); free space checked first;
//! 3. each asset **downloaded** into `results_dir/.incoming/<uuid>/files/<name>.part`,
//!    resumable and verified ([`download`]); an expired link re-fetches the document
//!    and resumes; progress goes to the store (at most once a second) and to SSE
//!    `result` events (at most [`EVENTS_PER_SECOND`] per job);
//! 4. the files **inspected and optimised** by the GDAL helper ([`geo`]);
//! 5. `results.json` and `job.json` written ([`manifest`]), and the folder
//!    **published** by one rename to `<date>_<title-slug>_<id>/` ([`publish`]);
//!    results `ready` with `dir`. A tile of an upscale task is published into its
//!    task folder instead, where [`mosaic`] puts the tiles together.
//!
//! A failure sets results `failed` and the job's `error` (`DiskFull`,
//! `InsufficientSpace`, `ChecksumMismatch`, `OversizedBody` — a body longer than
//! announced, cut off there —, `RedirectRefused` — an asset link or redirect to where
//! a backend may not send us —, `DownloadFailed`, ...); the staging folder
//! stays, so a retry resumes where it stopped. Nothing is ever written outside the
//! job's staging folder and the one published folder.

pub mod download;
pub mod gdal_helper;
pub mod manifest;
pub mod mosaic;
pub mod names;
pub mod publish;
pub mod stash;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::background::Background;
use crate::config::Settings;
use crate::events::{Event, EventBus};
use crate::job::{Job, JobError, Results as ResultsInfo, ResultsState, Status};
use crate::platform::backends::{Backend, Backends};
use crate::platform::{Payload, PlatformError, ResultsDoc};
use crate::store::{JobFilter, JobPatch, Store, StoreError};
use download::{Asset, Checksum, DownloadError, Fetched};
use manifest::Stored;

/// Jobs delivered at the same time.
pub const CONCURRENT_JOBS: usize = 2;

/// At most this many `result` events per job and second.
pub const EVENTS_PER_SECOND: u32 = 4;

/// Progress is written to the store at most this often.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Fresh results documents fetched for one delivery after expired links.
pub const MAX_REFETCHES: u32 = 5;

/// Attempts at fetching the results document when the backend is unreachable.
const DOC_ATTEMPTS: u32 = 5;

/// Why a delivery failed: recorded on the job as its `error`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryFailure {
    /// Stable code.
    pub code: String,
    /// Human message, without secrets.
    pub message: String,
}

impl DeliveryFailure {
    fn new(code: &str, message: impl Into<String>) -> DeliveryFailure {
        DeliveryFailure {
            code: code.to_string(),
            message: crate::redact::redact(&message.into()),
        }
    }
}

impl From<StoreError> for DeliveryFailure {
    fn from(e: StoreError) -> Self {
        DeliveryFailure::new("StoreError", e.to_string())
    }
}

impl From<DownloadError> for DeliveryFailure {
    fn from(e: DownloadError) -> Self {
        let message = match &e {
            DownloadError::DiskFull { .. } => format!(
                "{e}; free some space, then POST /unit_jobs/{{id}}/results/download resumes"
            ),
            _ => e.to_string(),
        };
        DeliveryFailure::new(e.code(), message)
    }
}

/// What result delivery needs of the daemon.
#[derive(Clone)]
pub struct Parts {
    /// The job store.
    pub store: Store,
    /// Where progress is published (and finished jobs are heard of).
    pub events: EventBus,
    /// The backends (results documents, download credentials).
    pub backends: Backends,
    /// Results folder, GDAL helper, stall timeout.
    pub settings: Settings,
    /// Owner of the delivery tasks.
    pub background: Background,
}

/// Cloneable handle to the result delivery.
#[derive(Clone)]
pub struct Results {
    inner: Arc<Inner>,
}

struct Inner {
    parts: Parts,
    tx: mpsc::UnboundedSender<i64>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    /// Jobs queued or being delivered (a job is never delivered twice at once).
    busy: Mutex<HashSet<i64>>,
    /// The HTTP client for assets, made on first use (keeps the idle daemon small).
    http: OnceLock<reqwest::Client>,
    /// The mosaics of upscale tasks (and their task folders).
    mosaics: mosaic::Mosaics,
}

impl Results {
    /// A delivery queue; nothing runs before [`start`](Self::start).
    pub fn new(parts: Parts) -> Results {
        let (tx, rx) = mpsc::unbounded_channel();
        Results {
            inner: Arc::new(Inner {
                mosaics: mosaic::Mosaics::new(parts.clone()),
                parts,
                tx,
                rx: Mutex::new(Some(rx)),
                busy: Mutex::new(HashSet::new()),
                http: OnceLock::new(),
            }),
        }
    }

    /// Delivers job `id` soon (no-op if it is already queued or being delivered).
    pub fn enqueue(&self, id: i64) {
        let fresh = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if fresh {
            let _ = self.inner.tx.send(id);
        }
    }

    /// Whether job `id` is queued or being delivered.
    pub fn is_busy(&self, id: i64) -> bool {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    fn done(&self, id: i64) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn parts(&self) -> &Parts {
        &self.inner.parts
    }

    fn http(&self) -> &reqwest::Client {
        let stall = Duration::from_secs_f64(self.parts().settings.get().download_stall_s);
        self.inner.http.get_or_init(|| download::client(stall))
    }

    /// Starts the worker (ends with the daemon), follows finished jobs on the event
    /// bus, and queues every finished job whose results are `pending` or `downloading`
    /// (interrupted by a stop or a crash).
    pub async fn start(&self) -> Result<(), StoreError> {
        let rx = self
            .inner
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut rx) = rx {
            let this = self.clone();
            let background = self.parts().background.clone();
            self.parts().background.spawn(async move {
                let slots = Arc::new(Semaphore::new(CONCURRENT_JOBS));
                while let Some(id) = rx.recv().await {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let this = this.clone();
                    background.spawn(async move {
                        // Marked done even when shutdown drops the delivery.
                        let _done = Done {
                            results: this.clone(),
                            id,
                            _slot: permit,
                        };
                        this.deliver(id).await;
                    });
                }
            });
            let mut events = self.parts().events.subscribe();
            let this = self.clone();
            self.parts().background.spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(env) => {
                            if let Event::JobFinished(job) = &env.event {
                                this.enqueue(job.id);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "result delivery fell behind the events; catching up from the store");
                            if let Err(e) = this.queue_pending().await {
                                tracing::error!(error = %e, "result delivery: store error");
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        self.remove_orphans().await?;
        self.queue_pending().await?;
        self.inner.mosaics.start().await
    }

    /// Queues every finished job whose results are `pending` or `downloading`.
    async fn queue_pending(&self) -> Result<(), StoreError> {
        let finished = self
            .parts()
            .store
            .jobs(JobFilter {
                status: Some(Status::Finished),
                ..JobFilter::default()
            })
            .await?;
        for job in finished.iter().rev() {
            if matches!(
                job.results.state,
                ResultsState::Pending | ResultsState::Downloading
            ) {
                self.enqueue(job.id);
            }
        }
        Ok(())
    }

    /// Deletes staging folders of jobs that no longer exist (deleted while their
    /// results were downloading).
    async fn remove_orphans(&self) -> Result<(), StoreError> {
        let incoming = self
            .parts()
            .settings
            .get()
            .results_dir
            .join(publish::INCOMING);
        let Ok(entries) = std::fs::read_dir(&incoming) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(uuid) = name.to_str().and_then(|n| uuid::Uuid::parse_str(n).ok()) else {
                continue;
            };
            if self.parts().store.job_by_uuid(uuid).await?.is_none() {
                tracing::info!(dir = %entry.path().display(), "removing the staging folder of a deleted job");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a staging folder");
                }
            }
        }
        Ok(())
    }

    /// `POST /unit_jobs/{id}/results/download`: queues a finished job again. `None`
    /// if the job is gone.
    pub async fn retry(&self, job: &Job) -> Result<Option<Job>, StoreError> {
        if self.is_busy(job.id) {
            return Ok(Some(job.clone()));
        }
        let updated = self
            .parts()
            .store
            .update_job(
                job.id,
                JobPatch {
                    results: Some(ResultsInfo {
                        state: ResultsState::Pending,
                        dir: None,
                        bytes: job.results.bytes,
                        total_bytes: job.results.total_bytes,
                    }),
                    error: Some(None),
                    ..JobPatch::default()
                },
            )
            .await?;
        if let Some(j) = &updated {
            self.parts().events.job_changed(j);
            self.enqueue(j.id);
        }
        Ok(updated)
    }

    /// One delivery, with its failure recorded.
    async fn deliver(&self, id: i64) {
        match self.run(id).await {
            Ok(()) => {}
            Err(f) => {
                tracing::warn!(job = id, code = %f.code, error = %f.message, "results delivery failed");
                let Ok(Some(job)) = self.parts().store.job(id).await else {
                    return;
                };
                let patch = JobPatch {
                    results: Some(ResultsInfo {
                        state: ResultsState::Failed,
                        dir: None,
                        ..job.results.clone()
                    }),
                    error: Some(Some(JobError {
                        code: f.code,
                        message: f.message,
                    })),
                    ..JobPatch::default()
                };
                if let Ok(Some(j)) = self.parts().store.update_job(id, patch).await {
                    self.parts().events.job_changed(&j);
                    self.parts().events.results_progress(&j);
                }
            }
        }
    }

    async fn run(&self, id: i64) -> Result<(), DeliveryFailure> {
        crate::failpoint::panic_once("panic:delivery");
        let parts = self.parts().clone();
        let Some(job) = parts.store.job(id).await? else {
            return Ok(());
        };
        if job.status != Status::Finished {
            return Ok(());
        }
        if job.results.state == ResultsState::Ready
            && job
                .results
                .dir
                .as_deref()
                .is_some_and(|d| Path::new(d).is_dir())
        {
            return Ok(());
        }
        let results_dir = parts.settings.get().results_dir.clone();
        let staging = results_dir
            .join(publish::INCOMING)
            .join(job.uuid.hyphenated().to_string());
        // Where the results come from: the kept answer of a synchronous execution, or
        // the backend's results of the remote job.
        let source = match (stash::read(&staging), job.backend_job_id.clone()) {
            (Some(answer), _) => Source::Answer(answer),
            (None, Some(remote)) => Source::Remote(remote),
            (None, None) => return Ok(()),
        };
        let files = staging.join("files");
        let private = parts.settings.get().results_private;
        crate::private::create_dir(&files, private).map_err(|e| {
            DeliveryFailure::new(
                "LocalIoError",
                format!("cannot create {}: {e}", files.display()),
            )
        })?;
        let job = self
            .set_state(
                &job,
                ResultsState::Downloading,
                None,
                job.results.bytes,
                job.results.total_bytes,
                true,
            )
            .await?;

        // 1. A fresh results document.
        let backend = parts.backends.get(job.label, &job.service.endpoint);
        let results = fetch_document(&backend, &source).await?;
        let literals = results.literals.clone();
        let mut doc = with_inline_assets(&results);
        // 2. What to download, under which names; outputs that came inline are
        // written at once.
        let plan = plan_assets(&doc);
        write_inline(&results, &doc, &plan, &files)?;
        let sizes: Vec<Option<u64>> = plan.iter().map(|p| p.size).collect();
        let total = total_size(&sizes);
        let progress: Vec<Arc<AtomicU64>> = plan
            .iter()
            .map(|p| {
                let have = file_len(&files.join(&p.name))
                    .or_else(|| file_len(&files.join(format!("{}.part", p.name))))
                    .unwrap_or(0);
                Arc::new(AtomicU64::new(have))
            })
            .collect();
        if let Some(total) = total {
            let have = progress
                .iter()
                .fold(0u64, |acc, p| acc.saturating_add(p.load(Ordering::Relaxed)));
            check_space(&files, total.saturating_sub(have))?;
        }
        // 3. Download, with a progress reporter alongside.
        let reporter = tokio::spawn(report_progress(
            parts.store.clone(),
            parts.events.clone(),
            job.clone(),
            progress.clone(),
            total,
        ));
        let downloaded = self
            .download_all(
                &backend, &source, &mut doc, &plan, &files, &staging, &progress,
            )
            .await;
        reporter.abort();
        downloaded?;
        let bytes: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        let job = self
            .set_state(
                &job,
                ResultsState::Downloading,
                None,
                bytes,
                total.or(Some(bytes)),
                false,
            )
            .await?;
        // 4. GDAL.
        let names: Vec<String> = plan.iter().map(|p| p.name.clone()).collect();
        let helper = gdal_helper::locate(parts.settings.get().gdal_bin.as_deref());
        let layers = gdal_helper::inspect(helper.as_deref(), &files, &names).await;
        let rewritten: Vec<(String, u64)> = layers
            .iter()
            .filter(|l| l["optimised"].is_string())
            .filter_map(|l| {
                let p = l["path"].as_str()?;
                Some((p.to_string(), file_len(&files.join(p))?))
            })
            .collect();
        // 5. Documents and publication.
        let stored: Vec<Stored> = plan
            .iter()
            .map(|p| Stored {
                key: p.key.clone(),
                name: p.name.clone(),
            })
            .collect();
        let local = manifest::local_document(&doc, &stored, &rewritten);
        let mut man = manifest::manifest(&job, &doc, &stored, layers);
        if !literals.is_empty() {
            man["literals"] = Value::Object(literals);
        }
        let folder = names::folder_name(job.created.date(), &job.title, job.id);
        // A tile of an upscale task goes into the task's folder (see `mosaic`).
        let parent = match job.upscale_task_id {
            Some(task) => self.inner.mosaics.task_folder(task).await?,
            None => results_dir.clone(),
        };
        let (files2, results_dir2) = (files.clone(), parent);
        let published = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            write_json(&files2.join("results.json"), &local, private)?;
            write_json(&files2.join("job.json"), &man, private)?;
            publish::publish(&files2, &results_dir2, &folder)
        })
        .await
        .map_err(|e| DeliveryFailure::new("Internal", e.to_string()))?
        .map_err(|e| {
            if download::is_disk_full(&e) {
                DeliveryFailure::new("DiskFull", format!("cannot write the job folder: {e}"))
            } else {
                DeliveryFailure::new(
                    "LocalIoError",
                    format!("cannot publish the job folder: {e}"),
                )
            }
        })?;
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(dir = %staging.display(), error = %e, "cannot remove the staging folder");
        }
        let final_bytes: u64 = names
            .iter()
            .filter_map(|n| file_len(&published.join(n)))
            .sum();
        tracing::info!(job = id, dir = %published.display(), bytes = final_bytes, "results published");
        let job = self
            .set_state(
                &job,
                ResultsState::Ready,
                Some(published.display().to_string()),
                final_bytes,
                Some(final_bytes),
                true,
            )
            .await?;
        parts.events.results_published(&job);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_all(
        &self,
        backend: &Backend,
        source: &Source,
        doc: &mut Value,
        plan: &[Planned],
        files: &Path,
        staging: &Path,
        progress: &[Arc<AtomicU64>],
    ) -> Result<(), DeliveryFailure> {
        let mut refetches = 0;
        for (p, counter) in plan.iter().zip(progress) {
            let target = files.join(&p.name);
            if let Some(len) = file_len(&target) {
                if p.size.is_none_or(|s| s == len) {
                    counter.store(len, Ordering::Relaxed);
                    continue;
                }
                let _ = std::fs::remove_file(&target);
            }
            loop {
                let href = doc["assets"][&p.key]["href"].as_str().ok_or_else(|| {
                    DeliveryFailure::new(
                        "AssetUnavailable",
                        format!("the results document no longer lists the asset {}", p.key),
                    )
                })?;
                let url = Url::parse(href)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        DeliveryFailure::new(
                            "AssetUnavailable",
                            format!("the link of asset {} is not an http(s) URL", p.key),
                        )
                    })?;
                let auth = backend
                    .platform
                    .download_authorization(&url)
                    .await
                    .map_err(|e| DeliveryFailure::new(e.code(), e.to_string()))?;
                let asset = Asset {
                    key: &p.key,
                    url,
                    auth,
                    loopback_ok: crate::platform::http::parse_base(
                        backend.platform.http().endpoint(),
                    )
                    .is_some_and(|u| crate::platform::http::is_loopback_url(&u)),
                    part: files.join(format!("{}.part", p.name)),
                    sidecar: staging.join(format!("{}.part.json", p.name)),
                    expected_size: p.size,
                    checksum: p.checksum.clone(),
                    progress: counter.clone(),
                };
                let started = Instant::now();
                let from = counter.load(Ordering::Relaxed);
                match download::fetch(self.http(), &asset).await? {
                    Fetched::Complete => {
                        let bytes = file_len(&asset.part).unwrap_or(0);
                        let secs = started.elapsed().as_secs_f64();
                        tracing::info!(
                            asset = %p.key,
                            bytes,
                            resumed_from = from,
                            elapsed_ms = (secs * 1000.0) as u64,
                            mb_per_s = format!("{:.1}", (bytes - from.min(bytes)) as f64 / 1e6 / secs.max(1e-9)),
                            "asset downloaded"
                        );
                        std::fs::rename(&asset.part, &target).map_err(|e| {
                            DeliveryFailure::new(
                                "LocalIoError",
                                format!("cannot rename {}: {e}", asset.part.display()),
                            )
                        })?;
                        let _ = std::fs::remove_file(&asset.sidecar);
                        break;
                    }
                    Fetched::LinkExpired => {
                        refetches += 1;
                        if refetches > MAX_REFETCHES {
                            return Err(DeliveryFailure::new(
                                "AssetLinkRefused",
                                format!("the backend keeps refusing the link of asset {}, even fresh ones", p.key),
                            ));
                        }
                        tracing::info!(asset = %p.key, "asset link expired or refused: fetching a fresh results document");
                        *doc = with_inline_assets(&fetch_document(backend, source).await?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the results state (and publishes the job and a `result` event).
    #[allow(clippy::too_many_arguments)]
    async fn set_state(
        &self,
        job: &Job,
        state: ResultsState,
        dir: Option<String>,
        bytes: u64,
        total_bytes: Option<u64>,
        clear_error: bool,
    ) -> Result<Job, DeliveryFailure> {
        let patch = JobPatch {
            results: Some(ResultsInfo {
                state,
                dir,
                bytes,
                total_bytes,
            }),
            error: clear_error.then_some(None),
            ..JobPatch::default()
        };
        let Some(updated) = self.parts().store.update_job(job.id, patch).await? else {
            return Err(DeliveryFailure::new("JobNotFound", "the job was deleted"));
        };
        if updated.results.state != job.results.state || clear_error && job.error.is_some() {
            self.parts().events.job_changed(&updated);
        }
        self.parts().events.results_progress(&updated);
        Ok(updated)
    }
}

/// Marks a delivery done when it ends or is dropped; its slot is freed with it.
struct Done {
    results: Results,
    id: i64,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.results.done(self.id);
    }
}

/// Where a job's results come from.
enum Source {
    /// The results of the remote job (fetched fresh: links may be signed).
    Remote(String),
    /// The kept answer of a synchronous execution.
    Answer(Payload),
}

/// Publishes progress events (at most [`EVENTS_PER_SECOND`]) and stores progress (at
/// most every [`PERSIST_EVERY`]) until aborted.
async fn report_progress(
    store: Store,
    events: EventBus,
    job: Job,
    progress: Vec<Arc<AtomicU64>>,
    total: Option<u64>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / EVENTS_PER_SECOND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_sent = u64::MAX;
    let mut last_stored = Instant::now();
    loop {
        tick.tick().await;
        let bytes: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        if bytes == last_sent {
            continue;
        }
        last_sent = bytes;
        events.publish(Event::ResultsProgress(crate::events::ResultsProgress {
            id: job.id,
            uuid: job.uuid,
            state: ResultsState::Downloading,
            bytes,
            total_bytes: total,
        }));
        if last_stored.elapsed() >= PERSIST_EVERY {
            last_stored = Instant::now();
            let patch = JobPatch {
                results: Some(ResultsInfo {
                    state: ResultsState::Downloading,
                    dir: None,
                    bytes,
                    total_bytes: total,
                }),
                ..JobPatch::default()
            };
            let _ = store.update_job(job.id, patch).await;
        }
    }
}

/// One asset to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Key in the results document.
    pub key: String,
    /// Safe, unique file name.
    pub name: String,
    /// `file:size`.
    pub size: Option<u64>,
    /// `file:checksum`, when understood.
    pub checksum: Option<Checksum>,
}

/// The assets of a results document, with safe unique names, in document order.
pub fn plan_assets(doc: &Value) -> Vec<Planned> {
    let Some(assets) = doc.get("assets").and_then(Value::as_object) else {
        return Vec::new();
    };
    let entries: Vec<(&String, &Value)> = assets
        .iter()
        .filter(|(_, a)| a.get("href").and_then(Value::as_str).is_some())
        .collect();
    let names = names::unique_names(
        entries
            .iter()
            .map(|(k, a)| names::asset_file_name(k, a.get("type").and_then(Value::as_str))),
    );
    entries
        .into_iter()
        .zip(names)
        .map(|((key, a), name)| Planned {
            key: key.clone(),
            name,
            size: a.get("file:size").and_then(Value::as_u64),
            checksum: a
                .get("file:checksum")
                .and_then(Value::as_str)
                .and_then(Checksum::parse_multihash),
        })
        .collect()
}

/// The results of a job (fresh from the backend, or read from its kept answer),
/// retrying transient failures.
async fn fetch_document(backend: &Backend, source: &Source) -> Result<ResultsDoc, DeliveryFailure> {
    let mut failures = 0;
    loop {
        let fetched = match source {
            Source::Remote(remote) => backend.call(backend.platform.results(remote)).await,
            Source::Answer(answer) => {
                backend
                    .call(backend.platform.results_from_answer(answer))
                    .await
            }
        };
        match fetched {
            Ok(doc) => return Ok(doc),
            Err(e) if e.is_transient() && failures + 1 < DOC_ATTEMPTS => {
                failures += 1;
                let wait = crate::scheduler::backoff_from(
                    1.0,
                    failures,
                    e.retry_after(),
                    &mut rand::rng(),
                );
                tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, "results document unavailable; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(doc_failure(&e)),
        }
    }
}

fn doc_failure(e: &PlatformError) -> DeliveryFailure {
    let code = match e {
        PlatformError::Auth { .. } => "LoginRequired",
        e if e.is_transient() => "BackendUnreachable",
        _ => "ResultsUnavailable",
    };
    DeliveryFailure::new(code, format!("cannot fetch the results document: {e}"))
}

/// The results document with every inline output added as an asset whose `href` is
/// its key (written locally, never downloaded), marked `eodispatch:inline`.
fn with_inline_assets(results: &ResultsDoc) -> Value {
    let mut doc = results.document.clone();
    if !doc.is_object() {
        doc = json!({});
    }
    if results.inline.is_empty() {
        return doc;
    }
    if !doc.get("assets").is_some_and(Value::is_object) {
        doc["assets"] = json!({});
    }
    for f in &results.inline {
        doc["assets"][&f.key] = json!({
            "href": f.name,
            "type": f.media_type,
            "title": f.key,
            "roles": ["data"],
            "file:size": f.bytes.len(),
            "eodispatch:inline": true,
        });
    }
    doc
}

/// Writes the inline outputs under their planned names (complete files: downloading
/// then skips them).
fn write_inline(
    results: &ResultsDoc,
    doc: &Value,
    plan: &[Planned],
    files: &Path,
) -> Result<(), DeliveryFailure> {
    for f in &results.inline {
        let Some(p) = plan.iter().find(|p| p.key == f.key) else {
            continue;
        };
        if doc["assets"][&p.key]["eodispatch:inline"] != json!(true) {
            continue;
        }
        let target = files.join(&p.name);
        if file_len(&target) == Some(f.bytes.len() as u64) {
            continue;
        }
        let part = files.join(format!("{}.part", p.name));
        std::fs::write(&part, &f.bytes)
            .and_then(|()| std::fs::rename(&part, &target))
            .map_err(|e| {
                if download::is_disk_full(&e) {
                    DeliveryFailure::new(
                        "DiskFull",
                        format!("cannot write {}: {e}", target.display()),
                    )
                } else {
                    DeliveryFailure::new(
                        "LocalIoError",
                        format!("cannot write {}: {e}", target.display()),
                    )
                }
            })?;
    }
    Ok(())
}

fn file_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Writes a manifest: owner-only when the results are private.
fn write_json(path: &Path, v: &Value, private: bool) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::private::write_file(path, &text, private)
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data, zero is a valid bit pattern; `c` is a valid
    // NUL-terminated path for the duration of the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| (s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// The sum of the assets' sizes: `None` when one is unknown, or when the sizes a
/// backend declares add up to more than a `u64` (a hostile document).
fn total_size(sizes: &[Option<u64>]) -> Option<u64> {
    sizes
        .iter()
        .try_fold(0u64, |acc, s| s.and_then(|s| acc.checked_add(s)))
}

/// Refuses to start when `needed` bytes (plus 1 % and 1 MiB of margin for the
/// documents and overviews) do not fit.
fn check_space(dir: &Path, needed: u64) -> Result<(), DeliveryFailure> {
    let Some(free) = free_bytes(dir) else {
        return Ok(());
    };
    let want = needed.saturating_add(needed / 100).saturating_add(1 << 20);
    if free < want {
        return Err(DeliveryFailure::new(
            "InsufficientSpace",
            format!(
                "not enough free space in {}: the results need {} MB, {} MB are free; free some \
                 space, then POST /unit_jobs/{{id}}/results/download",
                dir.display(),
                want.div_ceil(1_000_000),
                free / 1_000_000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_sizes_never_overflow() {
        assert_eq!(total_size(&[Some(1), Some(2)]), Some(3));
        assert_eq!(total_size(&[Some(1), None]), None);
        assert_eq!(total_size(&[Some(u64::MAX), Some(1)]), None);
        let dir = tempfile::tempdir().unwrap();
        let e = check_space(dir.path(), u64::MAX).unwrap_err();
        assert_eq!(e.code, "InsufficientSpace");
    }

    #[test]
    fn a_malicious_document_gets_safe_names() {
        let doc = json!({"assets": {
            "../../../../etc/cron.d/evil": {"href": "http://x/a", "type": "text/plain"},
            "openEO.tif": {"href": "http://x/b", "file:size": 10},
            "OPENEO.TIF": {"href": "http://x/c"},
            ".hidden": {"href": "http://x/d"},
            "job.json": {"href": "http://x/e"},
            "nohref": {"title": "x"}
        }});
        let names: Vec<String> = plan_assets(&doc).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "evil.txt",
                "openEO.tif",
                "OPENEO-2.TIF",
                "hidden",
                "job-2.json"
            ]
        );
    }
}
