//! Watching the results folder and `config.toml` with `notify`.
//!
//! - The results folder (not recursive: job folders appear and disappear at its top
//!   level): after a burst of events settles ([`DEBOUNCE`]), every finished job whose
//!   results are `ready` or `removed` is checked against its folder. A folder the user
//!   deleted or moved away sets `results.state` to `removed`; when it is back at its
//!   path (with its `job.json`), `ready` again. Each change is a `job` and a `result`
//!   event. The same check runs once at start, for changes made while the daemon was
//!   stopped.
//! - `config.toml`: a change is read and checked like at start (the same environment
//!   overrides apply). A valid file is applied at once where that is safe — poll
//!   intervals, the GDAL helper, backends and their limits (see
//!   [`Parts::apply`]); keys that need a restart (listen address, folders, body
//!   limit, log filter, token store, stall timeout) are named in the log and keep their
//!   values until then. An invalid file is logged and changes nothing.
//!
//! The watcher ends with the daemon. If the platform cannot watch (inotify limits),
//! the daemon logs it and runs without.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::background::Background;
use crate::config::{Config, Settings};
use crate::events::EventBus;
use crate::job::{Results, ResultsState, Status};
use crate::store::{JobFilter, JobPatch, Store, StoreError};

/// Applies a changed configuration; returns the keys that need a restart.
pub type ApplyConfig = std::sync::Arc<dyn Fn(&Config) -> Vec<&'static str> + Send + Sync>;

/// What the watcher needs of the daemon.
#[derive(Clone)]
pub struct Parts {
    /// The job store.
    pub store: Store,
    /// Where changed jobs are published.
    pub events: EventBus,
    /// The results folder and `config.toml` to watch.
    pub settings: Settings,
    /// Owner of the watcher task.
    pub background: Background,
    /// Applies a changed `config.toml`.
    pub apply: ApplyConfig,
}

/// Quiet time after the last event before the folder is checked.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts the watcher task (ends on shutdown).
pub fn start(parts: Parts) {
    let results_dir = parts.settings.get().results_dir.clone();
    let config_file = parts.settings.get().config_file();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Reading a file is not changing it: the watcher's own read of config.toml
        // (an open and a close without writing) would otherwise apply it again, and
        // again, every DEBOUNCE.
        match ev {
            Ok(ev) if !matches!(ev.kind, notify::EventKind::Access(_)) => {
                let _ = tx.send(ev.paths);
            }
            _ => {}
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the results folder; removed folders are noticed only at start");
            return;
        }
    };
    if let Err(e) = watcher.watch(&results_dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %results_dir.display(), error = %e, "cannot watch the results folder");
    }
    if let Some(dir) = config_file.parent().filter(|d| d.is_dir()) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot watch the configuration folder");
        }
    }
    let d = parts.clone();
    parts.background.spawn(async move {
        let _watcher = watcher;
        if let Err(e) = reconcile(&d).await {
            tracing::warn!(error = %e, "checking published job folders failed");
        }
        while let Some(first) = rx.recv().await {
            let mut paths = first;
            // Debounce: wait until events stop for DEBOUNCE.
            while let Ok(Some(more)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                paths.extend(more);
            }
            if paths.iter().any(|p| p == &config_file) {
                config_changed(&d, &config_file);
            }
            if paths.iter().any(|p| p.starts_with(&results_dir)) {
                if let Err(e) = reconcile(&d).await {
                    tracing::warn!(error = %e, "checking published job folders failed");
                }
            }
        }
    });
}

/// Is `dir` a published job folder (with its manifest)?
fn present(dir: &Path) -> bool {
    dir.join("job.json").is_file()
}

/// Sets `removed` / `ready` from what is on disk.
pub async fn reconcile(parts: &Parts) -> Result<(), StoreError> {
    let jobs = parts
        .store
        .jobs(JobFilter {
            status: Some(Status::Finished),
            ..JobFilter::default()
        })
        .await?;
    for job in jobs {
        let Some(dir) = job.results.dir.clone() else {
            continue;
        };
        let new_state = match job.results.state {
            ResultsState::Ready if !present(Path::new(&dir)) => ResultsState::Removed,
            ResultsState::Removed if present(Path::new(&dir)) => ResultsState::Ready,
            _ => continue,
        };
        tracing::info!(job = job.id, dir = %dir, state = new_state.as_str(), "job folder changed on disk");
        let patch = JobPatch {
            results: Some(Results {
                state: new_state,
                ..job.results.clone()
            }),
            ..JobPatch::default()
        };
        if let Some(updated) = parts.store.update_job(job.id, patch).await? {
            parts.events.job_changed(&updated);
            parts.events.results_progress(&updated);
        }
    }
    Ok(())
}

/// `config.toml` changed: load it as at start and apply what is safe to apply.
fn config_changed(parts: &Parts, file: &Path) {
    let dir = parts.settings.get().config_dir.display().to_string();
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != "EODISPATCH_CONFIG_DIR")
        .collect();
    env.push(("EODISPATCH_CONFIG_DIR".into(), dir));
    match crate::config::Config::load_from(&env) {
        Ok(new) => {
            let restart = (parts.apply)(&new);
            if restart.is_empty() {
                tracing::info!(file = %file.display(), "config.toml changed and applied");
            } else {
                tracing::warn!(
                    file = %file.display(),
                    restart_needed = %restart.join(", "),
                    "config.toml changed and applied, except keys that need a restart"
                );
            }
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "config.toml changed but is not valid; the daemon keeps its configuration")
        }
    }
}
