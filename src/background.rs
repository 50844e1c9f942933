//! Owned background work: every long-lived task of the daemon (scheduler workers,
//! result deliveries, login polls, watchers) is spawned through [`Background`], stops
//! when its cancellation token fires, and shutdown waits for all of them before the
//! store closes.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The daemon's background tasks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Background {
    /// No tasks yet.
    pub fn new() -> Background {
        Background::default()
    }

    /// Runs `task` until it ends or shutdown begins (then it is dropped at its next
    /// `.await`).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            token.run_until_cancelled(task).await;
        });
    }

    /// Runs the task `make` builds until shutdown; a task that panics is logged and
    /// started again (after a second), so that one bad answer from the outside world
    /// cannot stop a worker for good. A task that ends normally is not restarted.
    pub fn spawn_supervised<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            loop {
                let run = tokio::spawn(token.clone().run_until_cancelled_owned(make()));
                match run.await {
                    Ok(_) => return,
                    Err(e) if e.is_panic() => {
                        tracing::error!(
                            task = name,
                            "a background task panicked; starting it again"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = token.cancelled() => return,
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }

    /// Resolves once shutdown has begun.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Whether shutdown has begun.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Starts shutdown: every task is cancelled; no new task runs.
    pub fn cancel(&self) {
        self.token.cancel();
        self.tracker.close();
    }

    /// Cancels every task and waits (at most `within`) until all have ended; `false`
    /// if some did not end in time.
    pub async fn shutdown(&self, within: Duration) -> bool {
        self.cancel();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Tasks running now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_started_again() {
        let bg = Background::new();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = runs.clone();
        bg.spawn_supervised("test", move || {
            let r = r.clone();
            async move {
                let n = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n == 0 {
                    panic!("the outside world said something odd");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while runs.load(std::sync::atomic::Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("restarted after the panic");
        assert!(bg.shutdown(Duration::from_secs(5)).await);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn shutdown_cancels_and_waits_for_every_task() {
        let bg = Background::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..3 {
            let tx = tx.clone();
            let started_tx = started_tx.clone();
            bg.spawn(async move {
                // Ends only by cancellation; the guard reports the drop.
                struct Dropped(tokio::sync::mpsc::UnboundedSender<&'static str>);
                impl Drop for Dropped {
                    fn drop(&mut self) {
                        let _ = self.0.send("dropped");
                    }
                }
                let _guard = Dropped(tx);
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
            });
        }
        drop(tx);
        for _ in 0..3 {
            started.recv().await.unwrap();
        }
        assert_eq!(bg.len(), 3);
        assert!(bg.shutdown(Duration::from_secs(5)).await);
        assert!(bg.is_empty());
        let mut dropped = 0;
        while let Some(m) = rx.recv().await {
            assert_eq!(m, "dropped");
            dropped += 1;
        }
        assert_eq!(dropped, 3);
        // After shutdown, new tasks do not run.
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        bg.spawn(async move { r.store(true, std::sync::atomic::Ordering::SeqCst) });
        tokio::task::yield_now().await;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
