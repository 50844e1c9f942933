//! The event bus: every change of a job or task is published here once and fanned out
//! to `GET /events` (Server-Sent Events) subscribers.
//!
//! Events are past-tense facts. A slow subscriber that falls more than
//! [`CAPACITY`] events behind is told so (an SSE `lagged` event) and should re-read
//! `GET /unit_jobs`; publishing never waits for subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::job::{Job, Task, TaskSummary};

/// How many events a subscriber may fall behind before it lags.
pub const CAPACITY: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A unit job was created, changed or deleted.
    Job,
    /// An upscale task was created, changed or deleted.
    Task,
    /// Result delivery progressed.
    Result,
    /// A backend's login state changed.
    Auth,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Job => "job",
            EventKind::Task => "task",
            EventKind::Result => "result",
            EventKind::Auth => "auth",
        }
    }
}

/// One event: its kind, a sequence number (SSE `id:`) and the JSON payload.
#[derive(Debug, Clone)]
pub struct Event {
    /// Monotonic per daemon run, starting at 1.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The job, task, result or auth state as JSON.
    pub data: Arc<Value>,
}

/// Cloneable publisher/subscriber handle.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
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
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes a raw event.
    pub fn publish(&self, kind: EventKind, data: Value) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // No subscribers is not an error.
        let _ = self.tx.send(Event {
            seq,
            kind,
            data: Arc::new(data),
        });
    }

    /// A job was created or changed: the event carries the whole job.
    pub fn job_changed(&self, job: &Job) {
        self.publish(
            EventKind::Job,
            serde_json::to_value(job).unwrap_or(Value::Null),
        );
    }

    /// A job was deleted: the event carries the job as it was, with `"deleted": true`.
    pub fn job_deleted(&self, job: &Job) {
        let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("deleted".into(), Value::Bool(true));
        }
        self.publish(EventKind::Job, v);
    }

    /// A task was created or its status changed.
    pub fn task_changed(&self, task: &Task) {
        self.publish(
            EventKind::Task,
            serde_json::to_value(TaskSummary::from(task)).unwrap_or(Value::Null),
        );
    }

    /// A task was deleted.
    pub fn task_deleted(&self, task: &Task) {
        let mut v = serde_json::to_value(TaskSummary::from(task)).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("deleted".into(), Value::Bool(true));
        }
        self.publish(EventKind::Task, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_in_order() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish(EventKind::Job, serde_json::json!({"id": 1}));
        bus.publish(EventKind::Auth, serde_json::json!({"backend": "x"}));
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(
            (a.seq, a.kind, a.data["id"].as_i64()),
            (1, EventKind::Job, Some(1))
        );
        assert_eq!((b.seq, b.kind), (2, EventKind::Auth));
    }
}
