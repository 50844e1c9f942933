//! Fault injection: [`FaultRule`]s matched on method and path, and what each [`FaultKind`] does
//! to a request (an error status, a delay, a dropped connection, a lost response, a truncated
//! or corrupted body).
//!
//! Rules are checked in order; the first rule that matches and still has shots left fires.
//! A rule skips its first `after` matching requests and then fires `times` times (0 = forever).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// One fault rule. JSON shape (for `POST /_fake/faults`):
///
/// ```json
/// {"method": "POST", "path": "/jobs", "times": 1, "after": 0, "kind": "status", "status": 429, "retry_after": 2}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method to match (case-insensitive); `None` or `"*"` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Glob on the path after the API prefix (`/jobs`, `/jobs/*`, `/jobs/*/results/assets/**`;
    /// full path for routes outside the API such as `/udp/*`). `*` matches within one segment,
    /// `**` across segments; without `*` the path must be equal. `None` matches any path.
    #[serde(default)]
    pub path: Option<String>,
    /// Substring the path must contain (alternative or addition to `path`).
    #[serde(default)]
    pub path_contains: Option<String>,
    /// How many times the rule fires; 0 = unlimited. Default 1.
    #[serde(default = "one")]
    pub times: u32,
    /// How many matching requests pass untouched before the rule fires. Default 0.
    #[serde(default)]
    pub after: u32,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
}

fn one() -> u32 {
    1
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status instead of handling the request. 429 gets `Retry-After` and an
    /// openEO JSON body; 500 an openEO `Internal` body; 502/503/504 an HTML proxy error page
    /// (as Apache sends); other statuses an openEO JSON body.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds (default 1 for 429, none otherwise).
        #[serde(default)]
        retry_after: Option<u64>,
        /// openEO error code for JSON bodies (default by status).
        #[serde(default)]
        code: Option<String>,
        /// Message for JSON bodies.
        #[serde(default)]
        message: Option<String>,
        /// Force an HTML (`true`) or JSON (`false`) body.
        #[serde(default)]
        html: Option<bool>,
    },
    /// Wait, then handle the request normally.
    #[serde(alias = "delay_ms")]
    Delay {
        /// Milliseconds to wait.
        delay_ms: u64,
    },
    /// Close the connection without any response.
    Drop,
    /// Handle the request (e.g. really create the job), then close the connection without
    /// sending the response.
    LoseResponse,
    /// Handle the request, send the headers (with the full `Content-Length`) and the first
    /// `bytes` bytes of the body, then close the connection.
    Truncate {
        /// Bytes of body sent before closing.
        bytes: u64,
    },
    /// Handle the request, send the headers and the first `bytes` bytes of the body, then
    /// send nothing for `stall_ms` (a hung transfer) before closing the connection.
    Stall {
        /// Bytes of body sent before the stall.
        bytes: u64,
        /// How long the connection hangs.
        stall_ms: u64,
    },
    /// Handle the request and corrupt one byte of the body (xor 0xFF).
    FlipByte {
        /// Offset of the byte in the response body; default the middle.
        #[serde(default)]
        offset: Option<u64>,
    },
    /// Handle the request, drop the `Content-Length` header (the body goes chunked) and
    /// send `bytes` more bytes after the real body: a body longer than its declared size
    /// (the results document's `file:size`, a `206`'s `Content-Range`). The extra bytes
    /// sent are counted in [`crate::Stats::oversize_bytes_sent`].
    Oversize {
        /// Bytes sent after the real body.
        bytes: u64,
    },
    /// Answer with a redirect to `location` instead of handling the request.
    Redirect {
        /// The `Location` header.
        location: String,
        /// 301, 302 (default), 303, 307 or 308.
        #[serde(default)]
        status: Option<u16>,
    },
}

impl FaultRule {
    /// A rule for `route`, written `"METHOD /path-glob"` or `"/path-glob"` (any method), firing once.
    pub fn new(route: &str, kind: FaultKind) -> Self {
        let route = route.trim();
        let (method, path) = match route.split_once(' ') {
            Some((m, p)) => (Some(m.trim().to_uppercase()), p.trim()),
            None if route.starts_with('/') => (None, route),
            None => (Some(route.to_uppercase()), "**"),
        };
        Self {
            method: method.filter(|m| m != "*"),
            path: Some(path.to_string()),
            path_contains: None,
            times: 1,
            after: 0,
            kind,
        }
    }

    /// An error status on `route` (see [`FaultKind::Status`]).
    pub fn status(route: &str, status: u16) -> Self {
        Self::new(
            route,
            FaultKind::Status {
                status,
                retry_after: None,
                code: None,
                message: None,
                html: None,
            },
        )
    }

    /// A 429 with `Retry-After: secs` on `route`.
    pub fn too_many_requests(route: &str, secs: u64) -> Self {
        Self::new(
            route,
            FaultKind::Status {
                status: 429,
                retry_after: Some(secs),
                code: None,
                message: None,
                html: None,
            },
        )
    }

    /// A slow answer on `route`.
    pub fn delay(route: &str, delay_ms: u64) -> Self {
        Self::new(route, FaultKind::Delay { delay_ms })
    }

    /// A dropped connection on `route`.
    pub fn drop_connection(route: &str) -> Self {
        Self::new(route, FaultKind::Drop)
    }

    /// A lost response on `route` (the request takes effect).
    pub fn lose_response(route: &str) -> Self {
        Self::new(route, FaultKind::LoseResponse)
    }

    /// A body cut after `bytes` bytes on `route`.
    pub fn truncate(route: &str, bytes: u64) -> Self {
        Self::new(route, FaultKind::Truncate { bytes })
    }

    /// One corrupted body byte on `route`.
    pub fn flip_byte(route: &str, offset: Option<u64>) -> Self {
        Self::new(route, FaultKind::FlipByte { offset })
    }

    /// A body `bytes` longer than declared on `route` (see [`FaultKind::Oversize`]).
    pub fn oversize(route: &str, bytes: u64) -> Self {
        Self::new(route, FaultKind::Oversize { bytes })
    }

    /// A `302` to `location` on `route`.
    pub fn redirect(route: &str, location: impl Into<String>) -> Self {
        Self::new(
            route,
            FaultKind::Redirect {
                location: location.into(),
                status: None,
            },
        )
    }

    /// Fires `n` times (0 = unlimited).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Lets the first `n` matching requests pass.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }

    /// Whether the rule applies to this request (ignoring its counters).
    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method {
            if m != "*" && !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        if let Some(glob) = &self.path {
            if !glob_match(glob.as_bytes(), path.as_bytes()) {
                return false;
            }
        }
        if let Some(sub) = &self.path_contains {
            if !path.contains(sub.as_str()) {
                return false;
            }
        }
        true
    }
}

/// A rule with its counters.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub rule: FaultRule,
    /// Matching requests seen.
    pub seen: u64,
    /// Times fired.
    pub fired: u64,
}

impl ActiveFault {
    pub fn new(rule: FaultRule) -> Self {
        Self {
            rule,
            seen: 0,
            fired: 0,
        }
    }
}

/// Picks the fault for a request and updates the counters.
pub(crate) fn pick(faults: &mut [ActiveFault], method: &str, path: &str) -> Option<FaultKind> {
    for f in faults.iter_mut() {
        let exhausted = f.rule.times != 0 && f.fired >= u64::from(f.rule.times);
        if exhausted || !f.rule.matches(method, path) {
            continue;
        }
        f.seen += 1;
        if f.seen <= u64::from(f.rule.after) {
            continue;
        }
        f.fired += 1;
        return Some(f.rule.kind.clone());
    }
    None
}

/// `*` matches any run of bytes except `/`; `**` any run of bytes.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => {
            if pattern.get(1) == Some(&b'*') {
                let rest = &pattern[2..];
                (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
            } else {
                let rest = &pattern[1..];
                let mut i = 0;
                loop {
                    if glob_match(rest, &text[i..]) {
                        return true;
                    }
                    if i >= text.len() || text[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
        }
        Some(&c) => text.first() == Some(&c) && glob_match(&pattern[1..], &text[1..]),
    }
}

/// The response of a [`FaultKind::Status`] fault.
pub(crate) fn status_response(
    status: u16,
    retry_after: Option<u64>,
    code: Option<String>,
    message: Option<String>,
    html: Option<bool>,
) -> Response<Body> {
    let retry_after = retry_after.or(if status == 429 { Some(1) } else { None });
    let as_html = html.unwrap_or(matches!(status, 502..=504));
    let mut response = if as_html {
        let mut r = Response::new(Body::from(proxy_error_page(status)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=iso-8859-1"),
        );
        r
    } else {
        let (default_code, default_message) = default_error(status, retry_after);
        let err = ApiError::new(
            status,
            code.as_deref().unwrap_or(default_code),
            message.unwrap_or(default_message),
        );
        axum::response::IntoResponse::into_response(err)
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn default_error(status: u16, retry_after: Option<u64>) -> (&'static str, String) {
    match status {
        400 => ("BadRequest", "Bad request (injected fault).".into()),
        401 => (
            "AuthenticationRequired",
            "Unauthorized (injected fault).".into(),
        ),
        402 => (
            "PaymentRequired",
            "The budget is exhausted (injected fault).".into(),
        ),
        403 => (
            "TokenInvalid",
            "Authorization token has expired or is invalid. Please authenticate again.".into(),
        ),
        404 => ("NotFound", "Resource not found (injected fault).".into()),
        429 => (
            "TooManyRequests",
            format!(
                "Too many requests; retry after {} seconds (injected fault).",
                retry_after.unwrap_or(1)
            ),
        ),
        500 => (
            "Internal",
            "Server error: an unexpected error occurred (injected fault).".into(),
        ),
        501 => (
            "FeatureUnsupported",
            "Not implemented (injected fault).".into(),
        ),
        _ => ("Internal", format!("HTTP {status} (injected fault).")),
    }
}

/// An Apache-style proxy error page, as sent by the proxies in front of real backends.
fn proxy_error_page(status: u16) -> String {
    let (title, text) = match status {
        502 => (
            "502 Proxy Error",
            "<h1>Proxy Error</h1>\n<p>The proxy server received an invalid\nresponse from an upstream server.<br />\nThe proxy server could not handle the request<p>Reason: <strong>Error reading from remote server</strong></p></p>",
        ),
        503 => (
            "503 Service Unavailable",
            "<h1>Service Unavailable</h1>\n<p>The server is temporarily unable to service your\nrequest due to maintenance downtime or capacity\nproblems. Please try again later.</p>",
        ),
        504 => (
            "504 Gateway Timeout",
            "<h1>Gateway Timeout</h1>\n<p>The gateway did not receive a timely response\nfrom the upstream server or application.</p>",
        ),
        _ => (
            "Error",
            "<h1>Error</h1>\n<p>The server encountered an error.</p>",
        ),
    };
    format!(
        "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{title}</title>\n</head><body>\n{text}\n<hr>\n<address>Apache/2.4.58 (Ubuntu) Server at openeo.fake Port 443</address>\n</body></html>\n"
    )
}

/// Cuts a response body after `limit` bytes and then kills the connection (headers, with the
/// full `Content-Length`, are sent unchanged).
pub(crate) fn truncate_body(
    body: Body,
    limit: u64,
    pause: Duration,
    kill: CancellationToken,
) -> Body {
    let mut sent: u64 = 0;
    let mut data = body.into_data_stream();
    let stream = async_stream(move |yielder| async move {
        while sent < limit {
            match data.next().await {
                Some(Ok(chunk)) => {
                    let room = (limit - sent) as usize;
                    let chunk = if chunk.len() > room {
                        chunk.slice(..room)
                    } else {
                        chunk
                    };
                    sent += chunk.len() as u64;
                    yielder.send(Ok(chunk)).await;
                }
                Some(Err(e)) => {
                    yielder.send(Err(std::io::Error::other(e))).await;
                    return;
                }
                None => break,
            }
        }
        // Give hyper a moment to flush what was sent (or hang), then close mid-body.
        tokio::time::sleep(pause).await;
        kill.cancel();
        std::future::pending::<()>().await;
    });
    Body::from_stream(stream)
}

/// Flips the byte at `offset` of a response body.
pub(crate) fn flip_body(body: Body, offset: u64) -> Body {
    let mut pos: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let len = chunk.len() as u64;
        let out = if offset >= pos && offset < pos + len {
            let mut v = chunk.to_vec();
            v[(offset - pos) as usize] ^= 0xFF;
            Bytes::from(v)
        } else {
            chunk
        };
        pos += len;
        Ok::<_, std::io::Error>(out)
    });
    Body::from_stream(stream)
}

/// The body followed by `extra` bytes of junk (`0xEE`), 64 KiB at a time; `sent` is
/// called with the size of each extra chunk as it is handed to the connection.
pub(crate) fn oversize_body(
    body: Body,
    extra: u64,
    sent: impl Fn(u64) + Send + Sync + 'static,
) -> Body {
    const CHUNK: u64 = 64 * 1024;
    let tail = futures_util::stream::unfold(extra, move |left| async move {
        (left > 0).then(|| {
            let n = left.min(CHUNK);
            (Ok::<_, std::io::Error>(n), left - n)
        })
    })
    .map(move |n| {
        n.map(|n| {
            sent(n);
            Bytes::from(vec![0xEE; n as usize])
        })
    });
    let head = body
        .into_data_stream()
        .map(|c| c.map_err(std::io::Error::other));
    Body::from_stream(head.chain(tail))
}

/// The response of a [`FaultKind::Redirect`] fault.
pub(crate) fn redirect_response(location: &str, status: Option<u16>) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A tiny generator: `f` receives a sender and pushes items; the returned stream yields them.
fn async_stream<F, Fut>(
    f: F,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    F: FnOnce(Yielder) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let fut = f(Yielder(tx));
    let driver = futures_util::stream::once(fut).filter_map(|_| async { None });
    let receiver = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    futures_util::stream::select(driver, receiver)
}

/// The sending half of [`async_stream`].
struct Yielder(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Yielder {
    async fn send(&self, item: Result<Bytes, std::io::Error>) {
        let _ = self.0.send(item).await;
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"/jobs", b"/jobs"));
        assert!(!glob_match(b"/jobs", b"/jobs/j-1"));
        assert!(glob_match(b"/jobs/*", b"/jobs/j-1"));
        assert!(!glob_match(b"/jobs/*", b"/jobs/j-1/results"));
        assert!(glob_match(b"/jobs/*/results", b"/jobs/j-1/results"));
        assert!(glob_match(b"/jobs/**", b"/jobs/j-1/results/assets/a/b/c"));
        assert!(glob_match(b"**", b"/"));
        assert!(glob_match(
            b"/jobs/*/results/assets/**",
            b"/jobs/j/results/assets/openEO.tif"
        ));
    }
}
