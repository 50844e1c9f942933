//! The job store: every unit job and upscale task the daemon knows, in SQLite, so that
//! they survive restarts (docs/architecture.md, "How a job flows").
//!
//! SQLite is the system libsqlite3 (never rusqlite's `bundled`, which crashes GDAL's
//! GeoPackage driver in the same process). The file is in WAL mode with
//! `synchronous=FULL` (every commit is fsynced: an answered write survives a power
//! cut), `busy_timeout=5000`, `foreign_keys=ON`; it is checked with `quick_check` and
//! migrated (`schema.rs`, SQL in `migrations/`) when opened.
//!
//! Concurrency:
//! - one read-write connection, owned by a writer thread (`writer.rs`); every write is
//!   an operation sent to it, and it commits whatever is queued in one `BEGIN
//!   IMMEDIATE` transaction (group commit: one fsync for many writes, a savepoint per
//!   operation so that one failure does not undo the others);
//! - a small pool of read-only connections (`readers.rs`) used on tokio's blocking pool;
//!   WAL readers never wait for the writer;
//! - [`Store`] is a cheap cloneable handle. [`Store::close`] (or dropping the last
//!   handle) lets the writer finish every queued operation, checkpoints the WAL and
//!   closes the connections.

mod costs;
mod logins;
mod mosaics;
mod readers;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::job::{
    Job, JobError, JobRequest, Label, Results, Status, SubmitState, Task, TaskRequest, TaskSummary,
};

pub use costs::budget_windows;
pub use logins::LoginRecord;
pub use mosaics::TaskMosaic;
pub use schema::SCHEMA_VERSION;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The folder for the database file could not be created.
    #[error("cannot create the folder {} for the job database: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be opened or set up.
    #[error("cannot open the job database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file is damaged (or not a database at all).
    #[error(
        "the job database {} is damaged ({detail}); move it (with its -wal and -shm files) \
         aside to start with an empty store, or restore a backup",
        path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The file is an SQLite database of some other program.
    #[error("{} is an SQLite database but not an eodispatch job database; refusing to use it", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer eodispatch.
    #[error(
        "the job database {} has schema version {found}, but this eodispatch only knows \
         versions up to {supported}; run a newer eodispatch (or use another database file)",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this binary knows ([`SCHEMA_VERSION`]).
        supported: u32,
    },
    /// A schema migration failed (nothing of it was applied).
    #[error("migrating the job database {} to version {version} failed: {source}", path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The migration that failed.
        version: u32,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file could not be put in WAL mode (e.g. on some network filesystems).
    #[error(
        "the job database {} cannot use write-ahead logging (journal_mode is {mode}); \
         put it on a local disk",
        path.display()
    )]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The store has been closed.
    #[error("the job store is closed")]
    Closed,
    /// A value could not be encoded as JSON.
    #[error("cannot encode JSON for the job store: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value does not parse.
    #[error("bad stored value in {table}.{column} of row {id}: {detail}")]
    BadRow {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// The row's id.
        id: i64,
        /// What is wrong.
        detail: String,
    },
    /// The write transaction this operation was part of failed; nothing was saved.
    #[error("the write transaction failed, nothing of it was saved: {0}")]
    Write(String),
    /// The writer thread could not be started.
    #[error("cannot start the job store's writer thread: {0}")]
    Thread(std::io::Error),
    /// An `Idempotency-Key` was sent again with a different body.
    #[error("the idempotency key was used before with a different request")]
    KeyReused,
    /// A bug (a panic inside a store operation).
    #[error("internal job store error: {0}")]
    Internal(String),
}

/// Filter for [`Store::jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<Status>,
    /// At most this many (None: all).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: u32,
    /// Leave out jobs that belong to an upscale task.
    pub standalone_only: bool,
}

/// Changes to a job; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct JobPatch {
    /// New status.
    pub status: Option<Status>,
    /// New backend job id.
    pub backend_job_id: Option<Option<String>>,
    /// New progress.
    pub progress: Option<Option<f64>>,
    /// New error.
    pub error: Option<Option<JobError>>,
    /// New results delivery state.
    pub results: Option<Results>,
    /// New backend status word.
    pub backend_status: Option<Option<String>>,
    /// New submission state (`Submitting` also counts an attempt).
    pub submit_state: Option<SubmitState>,
    /// What the platform reported the job cost.
    pub costs: Option<Option<f64>>,
    /// The platform's usage report.
    pub usage: Option<Option<serde_json::Value>>,
    /// A new estimate (the backend's own figure added).
    pub estimate: Option<crate::job::cost::Estimate>,
    /// Apply only while the job is not terminal (`created`, `queued`, `running`): the
    /// scheduler's updates must never undo a user's cancel. `update_job` returns `None`
    /// when the guard refuses.
    pub only_if_active: bool,
}

/// Counters of the writer since the store was opened (for benchmarks and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write transactions committed or attempted (each one fsync when committed).
    pub batches: u64,
    /// Write operations run in them; `ops / batches` is the group-commit factor.
    pub ops: u64,
}

/// Cloneable handle to the store; all clones share the same connections.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` only while being dropped.
    tx: Option<mpsc::Sender<writer::Command>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<readers::Readers>,
    counters: Arc<writer::Counters>,
}

impl Drop for Inner {
    /// The last handle is gone: the writer finishes what is queued, checkpoints and
    /// closes; wait for it so that the file is clean when this returns.
    fn drop(&mut self) {
        // Readers first, so that the writer's connection is the last one and SQLite
        // removes the (checkpointed) WAL when it closes.
        self.readers.close_now();
        drop(self.tx.take());
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("job store: the writer thread panicked");
            }
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    ///
    /// Creates the parent folder, sets the pragmas, refuses a damaged file
    /// ([`StoreError::Corrupt`]), another program's database ([`StoreError::Foreign`])
    /// and a database from a newer eodispatch ([`StoreError::TooNew`]).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Store::open_blocking(path))
            .await
            .map_err(|e| StoreError::Internal(format!("opening the store failed: {e}")))?
    }

    fn open_blocking(path: PathBuf) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = schema::open_writer(&path)?;
        let readers = (0..readers::READERS)
            .map(|_| schema::open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let counters = Arc::new(writer::Counters::default());
        let handle = writer::spawn(conn, rx, Arc::clone(&counters)).map_err(StoreError::Thread)?;
        tracing::debug!(path = %path.display(), "job store open");
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                tx: Some(tx),
                writer: Mutex::new(Some(handle)),
                readers: Arc::new(readers::Readers::new(readers)),
                counters,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions and operations the writer has run.
    pub fn write_stats(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriteStats {
            batches: self.inner.counters.batches.load(Relaxed),
            ops: self.inner.counters.ops.load(Relaxed),
        }
    }

    /// Runs `f` on the writer connection inside a batch transaction; answers once the
    /// transaction has committed. `f` must not begin, commit or roll back itself.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let tx = self.inner.tx.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let op = writer::TypedOp::new(f, reply);
        tx.send(writer::Command::Op(Box::new(op)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read-only connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }

    /// Stores a new job: a fresh UUID v4, status `created`, results pending,
    /// `created = updated = now`.
    pub async fn insert_job(&self, req: JobRequest) -> Result<Job, StoreError> {
        let uuid = Uuid::new_v4();
        self.write(move |c| rows::insert_job(c, req, uuid)).await
    }

    /// Whether a job was stored under idempotency key `key` already.
    pub async fn key_used(&self, key: String) -> Result<bool, StoreError> {
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM idempotency_keys WHERE key = ?1")?
                    .exists([key])?,
            )
        })
        .await
    }

    /// Stores a new job under a client's idempotency key: the same key and body give
    /// back the job created the first time (`false`), another body is
    /// [`StoreError::KeyReused`].
    pub async fn insert_job_idempotent(
        &self,
        req: JobRequest,
        key: String,
        body_hash: String,
    ) -> Result<(Job, bool), StoreError> {
        let uuid = Uuid::new_v4();
        self.write(move |c| rows::insert_job_idempotent(c, req, uuid, &key, &body_hash))
            .await
    }

    /// Stores a new task and its sub-jobs (one per dimension value, titled
    /// `"<title> - Processing Job <n>"`, parameters `{..parameters, name: value}`) in
    /// one transaction.
    pub async fn insert_task(&self, req: TaskRequest) -> Result<Task, StoreError> {
        self.write(move |c| rows::insert_task(c, req)).await
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.read(move |c| rows::select_job(c, id)).await
    }

    /// One job by its UUID (the capability in `/files/<uuid>/...`, and the marker
    /// carried by the remote job).
    pub async fn job_by_uuid(&self, uuid: Uuid) -> Result<Option<Job>, StoreError> {
        self.read(move |c| rows::select_job_by_uuid(c, uuid)).await
    }

    /// Distinct platform kinds and endpoints that have jobs which are not terminal.
    pub async fn active_backends(&self) -> Result<Vec<(Label, String)>, StoreError> {
        self.read(rows::select_active_backends).await
    }

    /// Remote job ids linked to local jobs of `label` on `endpoints` (raw endpoint
    /// strings of one backend), in any status.
    pub async fn linked_remote_ids(
        &self,
        label: Label,
        endpoints: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.read(move |c| rows::select_linked_remote_ids(c, label, &endpoints))
            .await
            .map(|v| v.into_iter().collect())
    }

    /// A scheduler's work list for `label` on `endpoints` (raw endpoint strings of one
    /// backend):
    /// every non-terminal job handed (or being handed) to the backend, then the oldest
    /// queued ones — only as many as could fill `max_active`, so that a backend with
    /// thousands of queued jobs costs no more than one with a few.
    pub async fn scheduler_jobs(
        &self,
        label: Label,
        endpoints: Vec<String>,
        max_active: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| rows::select_scheduler_jobs(c, label, &endpoints, max_active))
            .await
    }

    /// Jobs, newest first (by id).
    pub async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| rows::select_jobs(c, &filter)).await
    }

    /// How many jobs match `filter`, ignoring its `limit` and `offset` (for paging).
    pub async fn count_jobs(&self, filter: JobFilter) -> Result<u64, StoreError> {
        self.read(move |c| rows::count_jobs(c, &filter)).await
    }

    /// The full jobs of an upscale task, in dimension order (empty if there is no
    /// such task).
    pub async fn jobs_of_task(&self, task_id: i64) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| rows::select_jobs_of_task(c, task_id))
            .await
    }

    /// Applies a patch and sets `updated = now` (also for an empty patch); returns
    /// the job as stored afterwards, `None` if there is no such job.
    pub async fn update_job(&self, id: i64, patch: JobPatch) -> Result<Option<Job>, StoreError> {
        self.write(move |c| rows::update_job(c, id, &patch)).await
    }

    /// Makes a failed or canceled job a new attempt (see `rows::retry_job`); `None` when
    /// it does not exist or is in another status.
    pub async fn retry_job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let uuid = Uuid::new_v4();
        self.write(move |c| rows::retry_job(c, id, uuid)).await
    }

    /// Makes every failed or canceled sub-job of task `task_id` a new attempt, in one
    /// transaction (each as [`Store::retry_job`]: a finished or active job is never
    /// touched, and a job retried by a concurrent call is not retried again); each
    /// job as it was and as it is now.
    pub async fn retry_jobs_of_task(&self, task_id: i64) -> Result<Vec<(Job, Job)>, StoreError> {
        self.write(move |c| rows::retry_jobs_of_task(c, task_id, Uuid::new_v4))
            .await
    }

    /// Applies `patch` to every sub-job of task `task_id` that has not ended and has
    /// not been handed to its backend (submission pending), in one transaction; those
    /// jobs as they are now. A job the scheduler is sending meanwhile is not among them.
    pub async fn update_unsent_of_task(
        &self,
        task_id: i64,
        patch: JobPatch,
    ) -> Result<Vec<Job>, StoreError> {
        self.write(move |c| rows::update_unsent_of_task(c, task_id, &patch))
            .await
    }

    /// Forgets a job; `false` if there was none.
    pub async fn delete_job(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |c| rows::delete_job(c, id)).await
    }

    /// One task with its jobs; status, counts, progress and results derived from the
    /// jobs, `updated` the latest of the task's and its jobs'.
    pub async fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        self.read(move |c| rows::select_task(c, id)).await
    }

    /// One task's summary (as [`Store::task`], without parameters, dimension and jobs:
    /// one aggregate query, however many jobs the task has).
    pub async fn task_summary(&self, id: i64) -> Result<Option<TaskSummary>, StoreError> {
        self.read(move |c| rows::select_task_summary(c, id)).await
    }

    /// All tasks' summaries, newest first.
    pub async fn tasks(&self) -> Result<Vec<TaskSummary>, StoreError> {
        self.read(rows::select_tasks).await
    }

    /// Forgets a task and its jobs; `false` if there was none.
    pub async fn delete_task(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |c| rows::delete_task(c, id)).await
    }

    /// Health check: a read on a reader connection and a committed write (the time of
    /// the check, in the `meta` table) through the writer.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.read(rows::read_health).await?;
        self.write(rows::touch_health).await
    }

    /// Flushes and closes: waits for running reads, lets the writer finish every
    /// queued write, checkpoints the WAL (`TRUNCATE`), closes all connections. Other
    /// clones of this handle get [`StoreError::Closed`] afterwards.
    pub async fn close(self) {
        self.inner.readers.close().await;
        if let Some(tx) = &self.inner.tx {
            let (done, finished) = oneshot::channel();
            if tx.send(writer::Command::Close(done)).await.is_ok() {
                let _ = finished.await;
            }
        }
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            match tokio::task::spawn_blocking(move || handle.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::error!("job store: the writer thread panicked"),
            }
        }
        tracing::debug!(path = %self.inner.path.display(), "job store closed");
    }
}
