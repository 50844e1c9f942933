//! The store's single writer: a dedicated thread that owns the only read-write
//! connection and executes write operations sent over a channel.
//!
//! Group commit: the thread takes every operation that is queued (up to
//! [`MAX_BATCH`]), runs them all inside ONE `BEGIN IMMEDIATE` transaction, each inside
//! its own `SAVEPOINT` (so one failing operation is rolled back alone), commits once
//! (one fsync for the whole batch under `synchronous=FULL`) and only then answers each
//! caller. An answer therefore always means "durably committed" (or an error).
//!
//! Shutdown: when asked to close (or when every sender is gone) the thread stops
//! accepting new operations, runs what is still queued, then `PRAGMA optimize`,
//! `PRAGMA wal_checkpoint(TRUNCATE)`, and closes the connection.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Most operations committed in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// Capacity of the command channel (senders wait when it is full: back-pressure).
pub(super) const QUEUE: usize = 4096;

/// What the writer thread is asked to do.
pub(super) enum Command {
    /// Run an operation in the next batch.
    Op(Box<dyn Op>),
    /// Finish what is queued, checkpoint, close; answer when done.
    Close(oneshot::Sender<()>),
}

/// One write operation, type-erased so that the channel carries any result type.
pub(super) trait Op: Send {
    /// Runs inside the batch transaction (within a savepoint); `true` on success.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch has ended. `failure` is the error that
    /// ended the whole batch without committing (then nothing of it was saved).
    fn finish(self: Box<Self>, failure: Option<&StoreError>);
}

/// An [`Op`] made of a closure and the channel its result goes back on.
pub(super) struct TypedOp<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> TypedOp<T, F> {
    /// Wraps `f`; its result is sent on `reply` after the commit.
    pub(super) fn new(f: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Self {
        TypedOp {
            f: Some(f),
            result: None,
            reply,
        }
    }
}

impl<T, F> Op for TypedOp<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(r) => r,
            Err(panic) => Err(StoreError::Internal(format!(
                "a write operation panicked: {}",
                panic_message(&*panic)
            ))),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, failure: Option<&StoreError>) {
        let out = match (self.result, failure) {
            // Its own error is the most precise answer.
            (Some(Err(e)), _) => Err(e),
            (_, Some(f)) => Err(StoreError::Write(f.to_string())),
            (Some(Ok(v)), None) => Ok(v),
            (None, None) => Err(StoreError::Internal(String::from(
                "a write operation was never run",
            ))),
        };
        // The caller may have gone away (request canceled); the write stands.
        let _ = self.reply.send(out);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("(no message)")
    }
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Batches (transactions) run.
    pub(super) batches: AtomicU64,
    /// Operations run.
    pub(super) ops: AtomicU64,
}

/// Starts the writer thread on `conn`.
pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(String::from("eodispatch-store-writer"))
        .spawn(move || run(conn, rx, &counters))
}

/// The thread's loop: batch, execute, answer; until closed.
fn run(conn: Connection, mut rx: mpsc::Receiver<Command>, counters: &Counters) {
    let mut closers = Vec::new();
    let mut ops: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Op(op) => ops.push(op),
                Command::Close(done) => {
                    // No new commands; those already queued still run.
                    rx.close();
                    closers.push(done);
                }
            }
            if ops.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !ops.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
        }
        run_batch(&conn, &mut ops);
    }
    shutdown(conn);
    for done in closers {
        let _ = done.send(());
    }
}

/// Runs `ops` in one `BEGIN IMMEDIATE` transaction with a savepoint each, commits
/// once, then answers each (draining `ops`).
pub(super) fn run_batch(conn: &Connection, ops: &mut Vec<Box<dyn Op>>) {
    if ops.is_empty() {
        return;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let failure = StoreError::from(e);
        tracing::warn!(error = %failure, "job store: cannot start a write transaction");
        for op in ops.drain(..) {
            op.finish(Some(&failure));
        }
        return;
    }
    let mut failure: Option<StoreError> = None;
    for op in ops.iter_mut() {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            failure = Some(e);
            break;
        }
        let ended = if op.run(conn) {
            exec(conn, "RELEASE op")
        } else {
            exec(conn, "ROLLBACK TO op").and_then(|()| exec(conn, "RELEASE op"))
        };
        if let Err(e) = ended {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        if let Err(e) = conn.execute_batch("COMMIT") {
            failure = Some(e.into());
        }
    }
    if let Some(f) = &failure {
        tracing::warn!(error = %f, ops = ops.len(), "job store: write batch rolled back");
        if !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "job store: rollback failed");
            }
        }
    }
    for op in ops.drain(..) {
        op.finish(failure.as_ref());
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Optimises, checkpoints the WAL into the database file and truncates it, closes.
fn shutdown(conn: Connection) {
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::warn!(error = %e, "job store: PRAGMA optimize failed");
    }
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => {}
        Ok(_) => tracing::warn!("job store: WAL checkpoint incomplete (database busy)"),
        Err(e) => tracing::warn!(error = %e, "job store: WAL checkpoint failed"),
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "job store: closing the writer connection failed");
    }
}
