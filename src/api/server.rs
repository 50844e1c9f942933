//! Serving the API over a TCP listener with limits a local attacker cannot wear down:
//! a request's headers must arrive within [`Limits::header_timeout`] (a half-sent request
//! is dropped), an idle keep-alive connection is closed after the same time, and at most
//! [`Limits::max_connections`] connections are open at once (more wait in the listen
//! backlog), so the daemon keeps file descriptors for its own downloads. Long-lived event
//! streams have their own cap (`App::open_stream`).
//!
//! Shutdown: when `signal` completes, no new connection is accepted, every open one is
//! asked to finish (in-flight requests complete, idle connections close) and [`serve`]
//! returns once all have ended or [`Limits::drain`] has passed.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::{Service, ServiceExt};

/// Connection limits of the API server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a request's headers to arrive, and for an idle keep-alive connection to
    /// send its next request.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for open connections.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `signal` completes (see the module docs).
pub async fn serve<S>(
    listener: TcpListener,
    router: S,
    limits: Limits,
    signal: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropped at shutdown: every connection task sees it and finishes gracefully.
    let (stop_tx, stop_rx) = watch::channel(());
    // Each connection task holds a receiver; all dropped = all ended.
    let (done_tx, done_rx) = watch::channel(());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(signal);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut signal => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|req: hyper::Request<Incoming>| req.map(Body::new)),
        );
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
            drop(permit);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    if tokio::time::timeout(limits.drain, done_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not end in time");
    }
    Ok(())
}
