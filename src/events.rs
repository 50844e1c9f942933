//! The event bus: every change of a job, a task, a delivery or a backend is published
//! here once, as a typed [`Event`], and fanned out to every subscriber: `GET /events`
//! (Server-Sent Events, [`Event::sse`] gives the wire form), result delivery (it starts
//! on [`Event::JobFinished`]), the scheduler (it wakes a backend's worker on
//! [`Event::BackendChanged`] after a login), and later features (mosaics, budgets).
//!
//! Events are past-tense facts. A subscriber that falls more than [`CAPACITY`] events
//! behind is told so (`Lagged`) and must catch up from the store (SSE clients get a
//! `lagged` event and re-read `GET /unit_jobs`); publishing never waits for
//! subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::job::{Job, ResultsState, TaskSummary};
use crate::store::{JobPatch, Store, StoreError};

/// How many events a subscriber may fall behind before it lags.
pub const CAPACITY: usize = 4096;

/// Result delivery progress of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsProgress {
    /// Job id.
    pub id: i64,
    /// Job UUID.
    pub uuid: Uuid,
    /// Where delivery stands.
    pub state: ResultsState,
    /// Bytes so far.
    pub bytes: u64,
    /// Bytes expected, when known.
    pub total_bytes: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A unit job was created or changed.
    JobChanged(Arc<Job>),
    /// A unit job reached `finished` on its platform (after its `JobChanged`).
    JobFinished(Arc<Job>),
    /// A unit job was forgotten (as it was).
    JobDeleted(Arc<Job>),
    /// Result delivery progressed.
    ResultsProgress(ResultsProgress),
    /// A job's results were published in the results folder (`results.dir`).
    ResultsPublished(Arc<Job>),
    /// An upscale task was created, or something it reports changed: a sub-job's
    /// status or progress, a delivery of a sub-job's results ending, a retry.
    TaskChanged(Arc<TaskSummary>),
    /// An upscale task was forgotten.
    TaskDeleted(Arc<TaskSummary>),
    /// A backend's credential became valid (a login ended well, or a login shared with
    /// it did): its waiting jobs may go on.
    LoggedIn {
        /// Backend URL.
        endpoint: String,
    },
    /// A backend's reachability or login changed; `login_id` names the login attempt
    /// this ends, if any.
    BackendChanged {
        /// Backend URL.
        endpoint: String,
        /// The login attempt, when a login ended.
        login_id: Option<String>,
    },
}

impl Event {
    /// The Server-Sent Events form: event name and JSON data, or `None` for facts SSE
    /// clients learn from other events (`JobFinished`, `ResultsPublished`) and for
    /// backend changes, whose data the caller renders ([`Event::BackendChanged`] is an
    /// `auth` event with the backend's entry).
    pub fn sse(&self) -> Option<(&'static str, Value)> {
        match self {
            Event::JobChanged(job) => Some(("job", serde_json::to_value(&**job).ok()?)),
            Event::JobDeleted(job) => {
                let mut v = serde_json::to_value(&**job).ok()?;
                if let Value::Object(m) = &mut v {
                    m.insert("deleted".into(), Value::Bool(true));
                }
                Some(("job", v))
            }
            Event::ResultsProgress(p) => Some((
                "result",
                json!({"id": p.id, "uuid": p.uuid, "state": p.state, "bytes": p.bytes,
                       "total_bytes": p.total_bytes}),
            )),
            Event::TaskChanged(task) => Some(("task", serde_json::to_value(&**task).ok()?)),
            Event::TaskDeleted(task) => {
                let mut v = serde_json::to_value(&**task).ok()?;
                if let Value::Object(m) = &mut v {
                    m.insert("deleted".into(), Value::Bool(true));
                }
                Some(("task", v))
            }
            Event::JobFinished(_)
            | Event::ResultsPublished(_)
            | Event::LoggedIn { .. }
            | Event::BackendChanged { .. } => None,
        }
    }
}

/// One published event with its sequence number (SSE `id:`).
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Monotonic per daemon run, starting at 1.
    pub seq: u64,
    /// What happened.
    pub event: Event,
}

/// Cloneable publisher/subscriber handle.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Envelope>,
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.tx.subscribe()
    }

    /// Publishes an event.
    pub fn publish(&self, event: Event) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // No subscribers is not an error.
        let _ = self.tx.send(Envelope { seq, event });
    }

    /// A job was created or changed.
    pub fn job_changed(&self, job: &Job) {
        self.publish(Event::JobChanged(Arc::new(job.clone())));
    }

    /// A job finished on its platform.
    pub fn job_finished(&self, job: &Job) {
        self.publish(Event::JobFinished(Arc::new(job.clone())));
    }

    /// A job was deleted.
    pub fn job_deleted(&self, job: &Job) {
        self.publish(Event::JobDeleted(Arc::new(job.clone())));
    }

    /// Delivery of a job's results progressed (or changed state).
    pub fn results_progress(&self, job: &Job) {
        self.publish(Event::ResultsProgress(ResultsProgress {
            id: job.id,
            uuid: job.uuid,
            state: job.results.state,
            bytes: job.results.bytes,
            total_bytes: job.results.total_bytes,
        }));
    }

    /// A job's results were published.
    pub fn results_published(&self, job: &Job) {
        self.publish(Event::ResultsPublished(Arc::new(job.clone())));
    }

    /// A task was created or changed.
    pub fn task_changed(&self, task: impl Into<TaskSummary>) {
        self.publish(Event::TaskChanged(Arc::new(task.into())));
    }

    /// Publishes the task `task_id` as it is now (nothing when it is gone).
    pub async fn task_changed_by_id(&self, store: &Store, task_id: i64) -> Result<(), StoreError> {
        if let Some(task) = store.task_summary(task_id).await? {
            self.task_changed(task);
        }
        Ok(())
    }

    /// A task was deleted.
    pub fn task_deleted(&self, task: impl Into<TaskSummary>) {
        self.publish(Event::TaskDeleted(Arc::new(task.into())));
    }

    /// A backend's reachability or login changed.
    pub fn backend_changed(&self, endpoint: &str, login_id: Option<String>) {
        self.publish(Event::BackendChanged {
            endpoint: endpoint.to_string(),
            login_id,
        });
    }
}

/// The one way a job changes: the store first, then the event, and — when the job
/// belongs to an upscale task and its status or progress changed — one event for the
/// task (its status, progress and counts follow from its jobs). `None`: the job is
/// gone, or a guarded patch was refused.
pub async fn record_change(
    store: &Store,
    events: &EventBus,
    job: &Job,
    patch: JobPatch,
) -> Result<Option<Job>, StoreError> {
    let updated = store.update_job(job.id, patch).await?;
    if let Some(u) = &updated {
        events.job_changed(u);
        let reported = u.status != job.status || u.progress != job.progress;
        if let (true, Some(task_id)) = (reported, u.upscale_task_id) {
            events.task_changed_by_id(store, task_id).await?;
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_in_order() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.backend_changed("https://a.example", None);
        bus.backend_changed("https://b.example", Some("L1".into()));
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(a.seq, 1);
        assert!(
            matches!(&a.event, Event::BackendChanged { endpoint, login_id: None } if endpoint == "https://a.example")
        );
        assert_eq!(b.seq, 2);
        assert!(matches!(&b.event, Event::BackendChanged { login_id: Some(l), .. } if l == "L1"));
        assert!(a.event.sse().is_none(), "rendered by the caller");
    }
}
