//! The server: an accept loop that serves each TCP connection with hyper (HTTP/1.1) in its own
//! task, so that a fault can end the connection without a response; and the front handler every
//! request goes through before the router — path normalisation (no trailing-slash surprises),
//! CORS, statistics and fault injection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::route_template;
use crate::faults::{self, FaultKind};
use crate::state::Shared;

/// Headers a browser client may read (openEO API requirement).
const EXPOSE_HEADERS: &str = "Location, OpenEO-Identifier, OpenEO-Costs, Link";

/// Accepts connections until `shutdown` turns true, then aborts the open ones.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let router = router.clone();
                connections.spawn(serve_connection(stream, shared, router));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Serves one connection; a request can end it by cancelling its kill token.
async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>, router: Router) {
    let kill = CancellationToken::new();
    let kill_for_requests = kill.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let router = router.clone();
        let kill = kill_for_requests.clone();
        async move { Ok::<_, Infallible>(handle(shared, router, kill, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = kill.cancelled() => {
            tracing::debug!("connection dropped by a fault");
        }
    }
}

/// The front handler: normalise, count, inject faults, route, add CORS headers.
async fn handle(
    shared: Arc<Shared>,
    router: Router,
    kill: CancellationToken,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut req = req.map(Body::new);
    normalise_path(&mut req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    tracing::debug!(%method, %path, "request");

    let control = path.starts_with("/_fake/") || path == "/_fake";
    let fault = if control {
        None
    } else {
        let (template, rel) = route_template(&path);
        let mut state = shared.lock();
        *state
            .stats
            .requests
            .entry(format!("{method} {template}"))
            .or_insert(0) += 1;
        // Preflights are counted but never faulted (they would use up a rule's shots).
        let fault = if method == Method::OPTIONS {
            None
        } else {
            faults::pick(&mut state.faults, method.as_str(), &rel)
        };
        if fault.is_some() {
            state.stats.faults_fired += 1;
        }
        fault
    };

    if method == Method::OPTIONS {
        return with_cors(preflight());
    }

    let response = match fault {
        None => route(router, req).await,
        Some(kind) => {
            tracing::info!(%method, %path, fault = ?kind, "injecting fault");
            match kind {
                FaultKind::Status {
                    status,
                    retry_after,
                    code,
                    message,
                    html,
                } => faults::status_response(status, retry_after, code, message, html),
                FaultKind::Delay { delay_ms } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    route(router, req).await
                }
                FaultKind::Drop => {
                    kill.cancel();
                    return std::future::pending().await;
                }
                FaultKind::LoseResponse => {
                    let response = route(router, req).await;
                    // Let the handler's work complete (the body may be lazy), then vanish.
                    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    kill.cancel();
                    return std::future::pending().await;
                }
                FaultKind::Truncate { bytes } => {
                    let response = route(router, req).await;
                    let (parts, body) = response.into_parts();
                    let pause = std::time::Duration::from_millis(50);
                    let body = faults::truncate_body(body, bytes, pause, kill.clone());
                    Response::from_parts(parts, body)
                }
                FaultKind::Stall { bytes, stall_ms } => {
                    let response = route(router, req).await;
                    let (parts, body) = response.into_parts();
                    let pause = std::time::Duration::from_millis(stall_ms);
                    let body = faults::truncate_body(body, bytes, pause, kill.clone());
                    Response::from_parts(parts, body)
                }
                FaultKind::Oversize { bytes } => {
                    let response = route(router, req).await;
                    let (mut parts, body) = response.into_parts();
                    parts.headers.remove(header::CONTENT_LENGTH);
                    let counter = shared.clone();
                    let body = faults::oversize_body(body, bytes, move |n| {
                        counter.lock().stats.oversize_bytes_sent += n;
                    });
                    Response::from_parts(parts, body)
                }
                FaultKind::Redirect { location, status } => {
                    faults::redirect_response(&location, status)
                }
                FaultKind::FlipByte { offset } => {
                    let response = route(router, req).await;
                    let length = response
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let offset = offset.unwrap_or(length.map(|l| l / 2).unwrap_or(0));
                    let (parts, body) = response.into_parts();
                    Response::from_parts(parts, faults::flip_body(body, offset))
                }
            }
        }
    };
    if !control {
        *shared
            .lock()
            .stats
            .statuses
            .entry(response.status().as_u16())
            .or_insert(0) += 1;
    }
    with_cors(response)
}

async fn route(router: Router, req: Request<Body>) -> Response<Body> {
    match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// `/openeo/1.2/jobs/` → `/openeo/1.2/jobs`; the query is kept.
fn normalise_path(req: &mut Request<Body>) {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
}

fn preflight() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, PUT, DELETE, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Range, If-Range"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

fn with_cors(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    r
}
