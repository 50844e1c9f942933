//! Security of the local API, as one middleware applied to every route (the
//! OpenAPI document states the answers it gives on every route: `api::document_answers`):
//!
//! 1. `Host` must be exactly `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`
//!    (DNS rebinding); anything else, an empty host or a missing one is refused.
//! 2. Browsers are refused: any `Origin` or `Referer` header, or `Sec-Fetch-Site`
//!    other than `none`. Our clients (curl, the CLI, QGIS, python-requests, GDAL) send
//!    none of them. No CORS header is ever sent.
//! 3. Every route except [`PUBLIC_PATHS`] needs `Authorization: Bearer <token>`; the
//!    token is accepted only from that header and compared in constant time.
//! 4. Mutations (POST, PUT, PATCH, DELETE) that carry a body or a `Content-Type` must
//!    be `application/json` (415 otherwise), which closes the `text/plain` "simple
//!    request" hole; declared bodies over the size limit are refused with 413 before
//!    they are read.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use crate::app::App;

/// Routes that need no API token, each for a reason: `/health` tells only whether the
/// daemon is alive; `/auth/callback` is where the identity provider sends the user's
/// browser back after a login (protected by the single-use `state` and PKCE).
pub const PUBLIC_PATHS: &[&str] = &["/health", CALLBACK_PATH];

/// The browser-login redirect target: the one route a browser may reach (a top-level
/// cross-site navigation from the identity provider).
pub const CALLBACK_PATH: &str = "/auth/callback";

/// Path prefixes that need no API token: `/files/` serves published result files,
/// the job's random UUID being the capability (`api::files`).
pub const PUBLIC_PREFIXES: &[&str] = &["/files/"];

/// Is `host` (the raw `Host` header) one of the three loopback names with our port?
pub fn host_allowed(host: &str, port: u16) -> bool {
    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    allowed.iter().any(|a| a == host)
}

/// Is this `Content-Type` JSON (`application/json`, optionally with parameters)?
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The middleware.
pub async fn guard(State(daemon): State<App>, req: Request, next: Next) -> Response {
    match check(&daemon, &req) {
        Ok(()) => next.run(req).await,
        Err(p) => p.into_response(),
    }
}

fn check(daemon: &App, req: &Request<Body>) -> Result<(), Problem> {
    let headers = req.headers();
    // 1. Host
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !host_allowed(host, daemon.port()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "HostNotAllowed",
            "Host not allowed",
            format!(
                "the Host header must be 127.0.0.1:{p}, localhost:{p} or [::1]:{p}",
                p = daemon.port()
            ),
        ));
    }
    // 2. Browsers (except the login redirect, which only a browser makes)
    let path = req.uri().path();
    let sec_fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("?"));
    let browser = headers.contains_key(header::ORIGIN)
        || headers.contains_key(header::REFERER)
        || sec_fetch_site.is_some_and(|v| v != "none");
    if browser && !(path == CALLBACK_PATH && req.method() == Method::GET) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "BrowserRequestRejected",
            "Requests from web pages are not allowed",
            "the local API does not answer requests made by web pages (Origin, Referer \
             or Sec-Fetch-Site header present)",
        ));
    }
    // 3. Token
    let public =
        PUBLIC_PATHS.contains(&path) || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p));
    if !public {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = presented.is_some_and(|t| daemon.token().matches(t.trim().as_bytes()));
        if !ok {
            let detail = if presented.is_none() {
                "send the API token as `Authorization: Bearer <token>`; `eodispatch token` prints it"
            } else {
                "the API token is wrong; `eodispatch token` prints the current one"
            };
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "API token required",
                detail,
            )
            .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"eodispatch\""));
        }
    }
    // 4. Mutations: JSON only, size limit
    let mutation = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if mutation {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or(""));
        let declared_len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let has_body =
            declared_len.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
        let json = content_type.is_some_and(is_json_content_type);
        if !json && (content_type.is_some() || has_body) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "Content-Type must be application/json",
                format!(
                    "send `Content-Type: application/json`; got {}",
                    content_type.map_or("no Content-Type".to_string(), |c| format!("{c:?}"))
                ),
            ));
        }
        let limit = daemon.config().max_body_bytes;
        if declared_len.is_some_and(|n| n > limit as u64) {
            return Err(Problem::too_large(limit));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_allowlist_is_exact() {
        let p = 8421;
        for ok in ["127.0.0.1:8421", "localhost:8421", "[::1]:8421"] {
            assert!(host_allowed(ok, p), "{ok}");
        }
        for bad in [
            "",
            ":8421",
            "evil.example",
            "evil.example:8421",
            "localhost.evil.com:8421",
            "localhost6:8421",
            "127.0.0.1:8422",
            "127.0.0.1",
            "localhost",
            "LOCALHOST:8421x",
            "a.localhost:8421",
        ] {
            assert!(!host_allowed(bad, p), "{bad}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("Application/JSON"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type("multipart/form-data; boundary=x"));
        assert!(!is_json_content_type("application/jsonp"));
    }
}
