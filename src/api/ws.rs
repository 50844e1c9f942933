//! WebSockets in the shape of the APEx Dispatch API: `GET /ws/jobs_status` (the
//! `/jobs_status` overview) and `GET /ws/upscale_tasks/{id}` (one task with its jobs).
//!
//! Frames are JSON text messages `{type, data, message}` (plus `task_id` on the task
//! stream), as the hosted API sends them: `init` once, then `loading` followed by
//! `status` (with the data), and `error` followed by a close with code 1011 and the
//! error code as reason (e.g. `TASK_NOT_FOUND`).
//!
//! Unlike the hosted API, a socket does not poll the platforms: it is a subscriber of
//! the daemon's own events. A new `status` is sent shortly after a change that
//! concerns the stream (changes arriving together are sent as one), and at least
//! every `interval` seconds (default 10) so that a client also sees that the stream
//! lives. The API token goes in the `Authorization` header as for every route (the
//! hosted API's `?token=` query is refused with a problem saying so: a token in a URL
//! ends up in logs). Sockets count against `max_event_streams` and are closed with
//! 1001 when the daemon stops.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::extract::Id;
use super::problem::{Problem, ProblemBody};
use super::system::{overview, OverviewFilter, OverviewFilters};
use crate::app::{App, AppError};
use crate::events::Event;
use crate::job::validate::FieldError;

/// Default and bounds of `interval`, seconds.
const DEFAULT_INTERVAL: f64 = 10.0;
const MIN_INTERVAL: f64 = 0.5;
const MAX_INTERVAL: f64 = 3600.0;

/// Changes arriving within this time of the first are sent as one `status`.
const GATHER: Duration = Duration::from_millis(200);

/// What a socket streams.
#[derive(Clone, Copy)]
enum Feed {
    /// The overview, with the halves asked for.
    Overview { upscaling: bool, processing: bool },
    /// One task.
    Task(i64),
}

impl Feed {
    /// Whether `event` may change what this feed shows.
    fn concerns(&self, event: &Event) -> bool {
        match (self, event) {
            (Feed::Overview { .. }, e) => matches!(
                e,
                Event::JobChanged(_)
                    | Event::JobDeleted(_)
                    | Event::TaskChanged(_)
                    | Event::TaskDeleted(_)
            ),
            (Feed::Task(id), Event::TaskChanged(t) | Event::TaskDeleted(t)) => t.id == *id,
            (Feed::Task(id), Event::JobChanged(j) | Event::JobDeleted(j)) => {
                j.upscale_task_id == Some(*id)
            }
            _ => false,
        }
    }

    fn task_id(&self) -> Option<i64> {
        match self {
            Feed::Task(id) => Some(*id),
            Feed::Overview { .. } => None,
        }
    }

    /// The data of a `status` frame, or the error that ends the stream (a code for
    /// the close reason and words for the `error` frame).
    async fn render(&self, app: &App) -> Result<Value, (&'static str, String)> {
        let internal = |e: String| ("INTERNAL_ERROR", e);
        match self {
            Feed::Overview {
                upscaling,
                processing,
            } => {
                let v = overview(app, *upscaling, *processing)
                    .await
                    .map_err(|p| internal(p.detail))?;
                serde_json::to_value(v).map_err(|e| internal(e.to_string()))
            }
            Feed::Task(id) => match app.task(*id).await {
                Ok(t) => serde_json::to_value(t).map_err(|e| internal(e.to_string())),
                Err(AppError::TaskNotFound(_)) => Err((
                    "TASK_NOT_FOUND",
                    "The requested task was not found.".to_string(),
                )),
                Err(e) => Err(internal(e.to_string())),
            },
        }
    }
}

/// The query of both streams: `interval` (seconds) and, for the overview, `filter`
/// (`upscaling`, `processing`, repeatable).
fn parse_query(query: Option<&str>, overview: bool) -> Result<(f64, bool, bool), Problem> {
    let mut interval = DEFAULT_INTERVAL;
    let mut filters = OverviewFilters::default();
    let mut errors = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("interval", v) => match v.parse::<f64>() {
                Ok(s) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&s) => interval = s,
                _ => errors.push(FieldError::new(
                    "interval",
                    format!("use a number of seconds from {MIN_INTERVAL} to {MAX_INTERVAL}"),
                )),
            },
            ("token", _) => errors.push(FieldError::new(
                "token",
                "send the API token in the Authorization header (Bearer), not in the URL, \
                 where it would end up in logs",
            )),
            ("filter", v) if overview => filters.add(v, &mut errors),
            (other, _) => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (upscaling, processing) = filters.wanted();
    Ok((interval, upscaling, processing))
}

/// The `/jobs_status` overview as a WebSocket stream (APEx `WSStatusMessage`s).
#[utoipa::path(get, path = "/ws/jobs_status", tag = "system",
    params(
        ("interval" = Option<f64>, Query, minimum = 0.5, maximum = 3600, description = "Longest time between two status frames, seconds (default 10)"),
        ("filter" = Option<Vec<OverviewFilter>>, Query, description = "upscaling and/or processing"),
    ),
    responses(
        (status = 101, description = "WebSocket of {type: init|loading|status|error, data, message} frames; data of status frames as GET /jobs_status"),
        (status = 400, description = "Not a WebSocket upgrade", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Bad query (a `token` in the URL, an unknown filter, a bad interval)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn jobs_status(
    State(d): State<App>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let (interval, upscaling, processing) = parse_query(query.as_deref(), true)?;
    upgrade(
        d,
        ws,
        Feed::Overview {
            upscaling,
            processing,
        },
        interval,
    )
}

/// One upscale task as a WebSocket stream (APEx `WSTaskStatusMessage`s).
#[utoipa::path(get, path = "/ws/upscale_tasks/{id}", tag = "upscale tasks",
    params(
        ("id" = i64, Path, description = "Task id"),
        ("interval" = Option<f64>, Query, minimum = 0.5, maximum = 3600, description = "Longest time between two status frames, seconds (default 10)"),
    ),
    responses(
        (status = 101, description = "WebSocket of {type, data, message, task_id} frames; data of status frames as GET /upscale_tasks/{id}; an unknown task gets an error frame and close 1011 TASK_NOT_FOUND"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Bad query", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn task(
    State(d): State<App>,
    Id(id): Id,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let (interval, _, _) = parse_query(query.as_deref(), false)?;
    upgrade(d, ws, Feed::Task(id), interval)
}

fn upgrade(
    d: App,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    feed: Feed,
    interval: f64,
) -> Result<Response, Problem> {
    let ws = ws.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "NotAWebSocket",
            "Not a WebSocket request",
            format!("this route is a WebSocket (connect with ws://): {e}"),
        )
    })?;
    let Some(slot) = d.open_stream() else {
        return Err(Problem::too_many_streams(d.config().max_event_streams));
    };
    Ok(ws.on_upgrade(move |socket| async move {
        let _held = slot;
        stream(d, socket, feed, Duration::from_secs_f64(interval)).await;
    }))
}

/// One frame.
fn frame(feed: &Feed, kind: &str, data: Value, message: Option<&str>) -> Message {
    let mut v = json!({"type": kind, "data": data, "message": message});
    if let Some(id) = feed.task_id() {
        v["task_id"] = json!(id);
    }
    Message::Text(v.to_string().into())
}

/// Runs one socket until the client goes, the feed ends or the daemon stops.
async fn stream(app: App, mut socket: WebSocket, feed: Feed, interval: Duration) {
    let mut events = app.events().subscribe();
    if socket
        .send(frame(
            &feed,
            "init",
            Value::Null,
            Some("Starting status stream"),
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let loading = frame(
            &feed,
            "loading",
            Value::Null,
            Some("Starting retrieval of status"),
        );
        if socket.send(loading).await.is_err() {
            return;
        }
        let next = match feed.render(&app).await {
            Ok(data) => frame(&feed, "status", data, None),
            Err((code, words)) => {
                let _ = socket
                    .send(frame(&feed, "error", Value::Null, Some(&words)))
                    .await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1011,
                        reason: code.into(),
                    })))
                    .await;
                return;
            }
        };
        if socket.send(next).await.is_err() {
            return;
        }
        // Wait for a change that concerns the feed, the interval, the client or the
        // end of the daemon.
        let tick = tokio::time::sleep(interval);
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                e = events.recv() => match e {
                    Ok(env) if !feed.concerns(&env.event) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        // Gather what comes with it, then send one status.
                        tokio::time::sleep(GATHER).await;
                        while events.try_recv().is_ok() {}
                        break;
                    }
                    Err(RecvError::Closed) => return,
                },
                m = socket.recv() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue, // pings are answered by the library
                },
                _ = app.shutting_down() => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "the daemon is stopping".into(),
                        })))
                        .await;
                    return;
                }
            }
        }
    }
}
