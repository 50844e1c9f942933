//! The store's pool of read-only connections. A read takes a permit (async, so waiting
//! readers do not hold threads), then runs on tokio's blocking pool with one pooled
//! connection; in WAL mode readers never wait for the writer.

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::StoreError;

/// Number of read-only connections.
pub(super) const READERS: usize = 4;

/// Read-only connections plus one permit per connection.
pub(super) struct Readers {
    conns: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl Readers {
    /// A pool over already opened connections.
    pub(super) fn new(conns: Vec<Connection>) -> Readers {
        let size = conns.len();
        Readers {
            conns: Mutex::new(conns),
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = Checkout::new(&this)?;
            f(conn.get()?)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a read failed: {e}")))?
    }

    /// Waits for running reads, then closes every connection; later reads get
    /// [`StoreError::Closed`].
    pub(super) async fn close(&self) {
        let size = u32::try_from(self.size).unwrap_or(u32::MAX);
        if let Ok(all) = self.permits.acquire_many(size).await {
            all.forget();
        }
        self.close_now();
    }

    /// Closes the semaphore and every connection now in the pool (a read still
    /// running keeps its connection until it ends, then drops it).
    pub(super) fn close_now(&self) {
        self.permits.close();
        let conns = std::mem::take(&mut *self.lock());
        for conn in conns {
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "job store: closing a reader connection failed");
            }
        }
    }
}

/// A connection taken from the pool; goes back on drop (also when `f` panics).
struct Checkout<'a> {
    pool: &'a Readers,
    conn: Option<Connection>,
}

impl<'a> Checkout<'a> {
    fn new(pool: &'a Readers) -> Result<Checkout<'a>, StoreError> {
        let conn = pool.lock().pop().ok_or(StoreError::Closed)?;
        Ok(Checkout {
            pool,
            conn: Some(conn),
        })
    }

    fn get(&self) -> Result<&Connection, StoreError> {
        self.conn.as_ref().ok_or(StoreError::Closed)
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !self.pool.permits.is_closed() {
                self.pool.lock().push(conn);
            }
        }
    }
}
