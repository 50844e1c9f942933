//! Routes about the daemon itself: `/health`, `/jobs_status`, the `/events` stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::stream::{Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::daemon::VERSION;
use crate::events::{Envelope, Event};
use crate::job::validate::FieldError;
use crate::job::{JobSummary, TaskSummary};
use crate::store::JobFilter;

/// Answer of `/health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `error`.
    status: &'static str,
    /// Daemon version.
    version: &'static str,
    /// Seconds since start.
    uptime_s: f64,
    /// Store check: `{status, message?}`.
    #[schema(value_type = Object)]
    database: serde_json::Value,
}

/// Liveness and store check; needs no token and tells nothing else.
#[utoipa::path(get, path = "/health", tag = "system",
    security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The store does not work", body = Health),
    ))]
pub async fn health(State(d): State<App>) -> impl IntoResponse {
    let (code, status, database) = match d.store().health().await {
        Ok(()) => (StatusCode::OK, "ok", json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                json!({"status": "error", "message": "the job store is not writable; see the daemon log"}),
            )
        }
    };
    (
        code,
        Json(Health {
            status,
            version: VERSION,
            uptime_s: (d.uptime_secs() * 1000.0).round() / 1000.0,
            database,
        }),
    )
}

/// Answer of `/jobs_status` (APEx `JobsStatusResponse`).
#[derive(Serialize, ToSchema)]
pub struct JobsStatus {
    /// Upscale tasks (when the `upscaling` filter is on).
    upscaling_tasks: Vec<TaskSummary>,
    /// Unit jobs that are not part of a task (when the `processing` filter is on).
    processing_jobs: Vec<JobSummary>,
}

/// A half of the status overview (`?filter=` of `/jobs_status` and `/ws/jobs_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum OverviewFilter {
    /// The upscale tasks.
    Upscaling,
    /// The unit jobs that are not part of a task.
    Processing,
}

impl OverviewFilter {
    /// Parses `upscaling` or `processing`.
    pub fn parse(s: &str) -> Option<OverviewFilter> {
        match s {
            "upscaling" => Some(OverviewFilter::Upscaling),
            "processing" => Some(OverviewFilter::Processing),
            _ => None,
        }
    }
}

/// Which parts of the overview a query asks for: `filter` may repeat, none means both.
/// Read the same way by `GET /jobs_status` and its WebSocket.
#[derive(Debug, Default)]
pub struct OverviewFilters {
    upscaling: bool,
    processing: bool,
}

impl OverviewFilters {
    /// Takes one `filter=v`; an unknown value becomes an error naming `filter`.
    pub fn add(&mut self, v: &str, errors: &mut Vec<FieldError>) {
        match OverviewFilter::parse(v) {
            Some(OverviewFilter::Upscaling) => self.upscaling = true,
            Some(OverviewFilter::Processing) => self.processing = true,
            None => errors.push(FieldError::new(
                "filter",
                format!("unknown filter {v:?}; use upscaling or processing"),
            )),
        }
    }

    /// `(upscaling, processing)`: both when no filter was given.
    pub fn wanted(&self) -> (bool, bool) {
        if !self.upscaling && !self.processing {
            (true, true)
        } else {
            (self.upscaling, self.processing)
        }
    }
}

/// All tasks and stand-alone jobs with their status; `?filter=upscaling` and/or
/// `?filter=processing` (default: both).
#[utoipa::path(get, path = "/jobs_status", tag = "system",
    params(("filter" = Option<Vec<OverviewFilter>>, Query, description = "upscaling and/or processing")),
    responses(
        (status = 200, description = "Status of everything", body = JobsStatus),
        (status = 422, description = "Unknown filter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn jobs_status(
    State(d): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Json<JobsStatus>, Problem> {
    let mut filters = OverviewFilters::default();
    let mut errors = Vec::new();
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "filter" => filters.add(v, &mut errors),
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (upscaling, processing) = filters.wanted();
    Ok(Json(overview(&d, upscaling, processing).await?))
}

/// The status overview: tasks and/or standalone jobs (with why they wait), as
/// `GET /jobs_status` and the `/ws/jobs_status` stream give it.
pub(super) async fn overview(
    d: &App,
    upscaling: bool,
    processing: bool,
) -> Result<JobsStatus, Problem> {
    let upscaling_tasks = if upscaling {
        d.store().tasks().await?
    } else {
        Vec::new()
    };
    let processing_jobs = if processing {
        d.store()
            .jobs(JobFilter {
                standalone_only: true,
                ..JobFilter::default()
            })
            .await?
            .into_iter()
            .map(|j| JobSummary::from(&d.with_waiting(j)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(JobsStatus {
        upscaling_tasks,
        processing_jobs,
    })
}

/// Server-Sent Events: one `job` event per change of a unit job (the job as JSON, with
/// `"deleted": true` when it was forgotten), `task` events for upscale tasks, and later
/// `result` and `auth` events. A comment is sent every 15 s to keep proxies awake. A
/// client that falls behind gets a `lagged` event and should re-read `/unit_jobs`.
#[utoipa::path(get, path = "/events", tag = "system",
    responses(
        (status = 200, description = "text/event-stream of job, task, result and auth events", content_type = "text/event-stream"),
        (status = 503, description = "Too many event streams open", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(d): State<App>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let Some(slot) = d.open_stream() else {
        return Err(Problem::too_many_streams(d.config().max_event_streams));
    };
    let rx = d.events().subscribe();
    let hello = futures_util::stream::once(async {
        Ok(SseEvent::default()
            .event("hello")
            .data(json!({"version": VERSION}).to_string()))
    });
    let app = d.clone();
    // What this stream last sent of each job (a hash): a job is rendered as it is when
    // sent, so a republished job whose `waiting` already showed is not sent twice.
    let mut sent: HashMap<i64, u64> = HashMap::new();
    let stream = BroadcastStream::new(rx).flat_map(move |item| {
        let events: Vec<SseEvent> = match item {
            Ok(env) => match &env.event {
                // A backend's entry as it is now, one per platform kind at that URL.
                Event::BackendChanged { endpoint, login_id } => app
                    .entries_at(endpoint, login_id.clone())
                    .into_iter()
                    .map(|entry| {
                        SseEvent::default()
                            .event("auth")
                            .id(env.seq.to_string())
                            .data(serde_json::to_string(&entry).unwrap_or_default())
                    })
                    .collect(),
                // A job as it is now, with what it waits for.
                Event::JobChanged(job) => {
                    let job = app.with_waiting((**job).clone());
                    let data = serde_json::to_string(&job).unwrap_or_default();
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    data.hash(&mut h);
                    if sent.insert(job.id, h.finish()) == Some(h.finish()) {
                        Vec::new()
                    } else {
                        vec![SseEvent::default()
                            .event("job")
                            .id(env.seq.to_string())
                            .data(data)]
                    }
                }
                Event::JobDeleted(job) => {
                    sent.remove(&job.id);
                    plain(&env)
                }
                _ => plain(&env),
            },
            Err(BroadcastStreamRecvError::Lagged(n)) => vec![SseEvent::default()
                .event("lagged")
                .data(json!({"missed": n}).to_string())],
        };
        futures_util::stream::iter(events.into_iter().map(Ok))
    });
    let shutdown = d.clone();
    let stream = hello
        .chain(stream)
        .take_until(async move { shutdown.shutting_down().await })
        // The slot is given back when the stream ends (client gone, or shutdown).
        .map(move |item| {
            let _held = &slot;
            item
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An event in its generic SSE form (see [`Event::sse`]).
fn plain(env: &Envelope) -> Vec<SseEvent> {
    env.event
        .sse()
        .map(|(name, data)| {
            SseEvent::default()
                .event(name)
                .id(env.seq.to_string())
                .data(data.to_string())
        })
        .into_iter()
        .collect()
}
