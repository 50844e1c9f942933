//! HTTP towards one backend, shared by the platform adapters: one `reqwest::Client`
//! (timeouts, redirect limit, user agent), the credential (a fixed token from the
//! configuration, or the user's login through [`crate::credentials::Logins`]), and the
//! classification of every outcome into a [`PlatformError`].
//!
//! Rules kept here for every adapter:
//! - **No retries inside**, except one: a request refused for its token is sent again
//!   once with a renewed token. Everything else is the scheduler's decision.
//! - **Secrets stay secret.** The credential is attached only when the adapter says
//!   the URL is the backend's own origin; reqwest drops `Authorization` when a redirect
//!   changes host or port, and a redirect that changes only the scheme is not followed
//!   ([`redirect_policy`]). No error message or log line contains a token or a URL
//!   query string (signed result links carry their signature in the query).
//! - **Redirects go where a backend may send us** ([`redirect_refusal`], the one rule
//!   for API requests and asset downloads): only http(s); never to link-local
//!   addresses, cloud metadata endpoints or unspecified addresses; never to loopback
//!   unless the backend itself is on loopback. Host names are checked as written (not
//!   resolved).
//! - **Answers are summarised, never echoed.** An HTML error page becomes
//!   `HTTP 502 (HTML page)`; backend messages are cut to a reasonable length.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use time::OffsetDateTime;

use super::error::PlatformError;
use crate::credentials::{CredentialError, Credentials, Logins, SecretString};
use crate::redact::{redact_url, redact_with};

/// Time allowed to open a connection (TCP + TLS) before the backend counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for a whole request, answer body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `Retry-After` honoured: a backend asking for more is asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Redirects followed per request (reqwest drops `Authorization` on cross-host hops).
pub const MAX_REDIRECTS: usize = 5;

/// Largest successful answer read (a long job list or a results document).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Largest error answer read: enough for any error JSON, cut for HTML pages.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Longest backend message kept in an error.
const MAX_MESSAGE_CHARS: usize = 1000;

/// User agent of every request.
pub const USER_AGENT: &str = concat!("eodispatch/", env!("CARGO_PKG_VERSION"));

/// The credential sent as `Authorization: Bearer <this>`: a secret.
///
/// `Debug` prints `Bearer([REDACTED])`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

impl Bearer {
    /// The openEO OIDC form `oidc/<provider>/<access token>` (the access token, never
    /// the id token).
    pub fn oidc(provider: &str, token: &str) -> Bearer {
        Bearer(format!("oidc/{provider}/{token}"))
    }

    /// A bearer given as is (e.g. a plain OAuth access token, `basic//<token>` or
    /// `oidc/egi/<token>`). A leading `Bearer ` is dropped, so a whole header value can
    /// be passed too.
    pub fn raw(s: impl Into<String>) -> Bearer {
        let s = s.into();
        let trimmed = s.trim();
        match trimmed.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => Bearer(trimmed[7..].trim().to_string()),
            _ => Bearer(trimmed.to_string()),
        }
    }

    /// The secret itself (to store it or compare it; never to log it).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The strings to scrub from anything shown: the whole credential and its last
    /// `/`-separated part (the access token), when long enough to be a secret.
    fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if !self.0.is_empty() {
            out.push(self.0.as_str());
        }
        if let Some(last) = self.0.rsplit('/').next() {
            if last.len() >= 8 && last != self.0 {
                out.push(last);
            }
        }
        out
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer([REDACTED])")
    }
}

/// How a login's access token becomes the bearer a backend expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStyle {
    /// openEO: `oidc/<provider id>/<access token>`.
    OpenEo,
    /// Plain OAuth 2.0: the access token itself.
    Plain,
}

/// How a request is to be classified when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GET/DELETE: safe to repeat, so a 500 counts as transient.
    Idempotent,
    /// A POST that is idempotent on the backend (openEO's start of a job).
    Start,
    /// A submission that creates something: not idempotent; a gateway error after
    /// sending is ambiguous (the job may exist).
    Create,
}

/// A request to send.
pub struct Request<'a> {
    /// Method.
    pub method: Method,
    /// URL.
    pub url: Url,
    /// JSON body.
    pub body: Option<&'a Value>,
    /// How a failure is classified.
    pub kind: Kind,
    /// Attach the credential (only ever for the backend's own origin).
    pub auth: bool,
    /// Other headers (`Accept`, `Prefer`, ...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A time limit other than [`REQUEST_TIMEOUT`] (a synchronous execution).
    pub timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A request of `kind` with the credential.
    pub fn new(method: Method, url: Url, kind: Kind) -> Request<'a> {
        Request {
            method,
            url,
            body: None,
            kind,
            auth: true,
            headers: Vec::new(),
            timeout: None,
        }
    }

    /// `GET url` (idempotent) with the credential.
    pub fn get(url: Url) -> Request<'a> {
        Request::new(Method::GET, url, Kind::Idempotent)
    }

    /// With a JSON body.
    pub fn json(mut self, body: &'a Value) -> Request<'a> {
        self.body = Some(body);
        self
    }

    /// Without the credential (public documents).
    pub fn public(mut self) -> Request<'a> {
        self.auth = false;
        self
    }

    /// With `Accept: value`.
    pub fn accept(self, value: &'static str) -> Request<'a> {
        self.header(ACCEPT, HeaderValue::from_static(value))
    }

    /// With another header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Request<'a> {
        self.headers.push((name, value));
        self
    }

    /// With another time limit.
    pub fn timeout(mut self, timeout: Duration) -> Request<'a> {
        self.timeout = Some(timeout);
        self
    }
}

/// A successful answer, body read.
pub struct Answer {
    /// Status (2xx).
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most [`MAX_ANSWER_BYTES`]).
    pub body: Vec<u8>,
}

impl Answer {
    /// The header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The media type without parameters, lower case (`application/json`), if any.
    pub fn media_type(&self) -> Option<String> {
        media_type(&self.headers)
    }
}

/// The client side of one backend. Cheap to share (`Arc`).
pub struct HttpBackend {
    /// The endpoint as configured (the key under which logins are found).
    endpoint: String,
    /// The endpoint as shown in errors and logs (no credentials, query or fragment).
    shown: String,
    client: reqwest::Client,
    style: TokenStyle,
    logins: Arc<dyn Logins>,
    /// A fixed credential from the configuration (used when there is no login).
    fixed: RwLock<Option<Bearer>>,
    /// The last credential sent, so that error texts are scrubbed of it.
    last: RwLock<Option<Bearer>>,
    /// Whether a refusal of this status/code renews the token and sends again.
    renew_on: fn(&PlatformError) -> bool,
    requests: AtomicU64,
}

impl HttpBackend {
    /// A client for `endpoint`; does no I/O. `renew_on` says which refusals mean "this
    /// token is no good" (renew once and send again).
    pub fn new(
        endpoint: &str,
        connect: Duration,
        request: Duration,
        style: TokenStyle,
        logins: Arc<dyn Logins>,
        renew_on: fn(&PlatformError) -> bool,
    ) -> HttpBackend {
        let loopback_ok = parse_base(endpoint).is_some_and(|u| is_loopback_url(&u));
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect)
            .timeout(request)
            .redirect(redirect_policy(loopback_ok))
            .build()
            // Only fails if the TLS backend cannot initialise: rustls with bundled
            // roots has no such failure, so this is a build defect, not a runtime one.
            .expect("building the HTTP client (rustls) must not fail");
        HttpBackend {
            endpoint: endpoint.to_string(),
            shown: redact_url(endpoint.trim_end_matches('/')),
            client,
            style,
            logins,
            fixed: RwLock::new(None),
            last: RwLock::new(None),
            renew_on,
            requests: AtomicU64::new(0),
        }
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint as shown in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Requests sent so far (for benchmarks and tests).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sets (or clears) the fixed credential, used when the user has no login.
    pub fn set_bearer(&self, bearer: Option<Bearer>) {
        *self.fixed.write().unwrap_or_else(|p| p.into_inner()) = bearer;
    }

    /// Whether a fixed credential is set.
    pub fn has_fixed_bearer(&self) -> bool {
        self.fixed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The user's login to this backend, if any.
    pub fn login(&self) -> Option<Arc<dyn Credentials>> {
        self.logins.credentials(&self.endpoint)
    }

    /// The `Authorization` value for a request to the backend's own origin right now
    /// (the login's current token, renewed first when needed, else the fixed one).
    pub async fn authorization(&self) -> Result<Option<HeaderValue>, PlatformError> {
        match self.login() {
            Some(login) => {
                let (header, _) = self.login_header(login.as_ref()).await?;
                Ok(Some(header))
            }
            None => self.fixed_header(),
        }
    }

    /// Sends a request and classifies the outcome. With a login, a refusal that
    /// `renew_on` accepts renews the token and sends once more.
    pub async fn send(&self, req: Request<'_>) -> Result<Answer, PlatformError> {
        let login = if req.auth { self.login() } else { None };
        let Some(login) = login else {
            let header = if req.auth { self.fixed_header()? } else { None };
            return self.send_once(&req, header).await;
        };
        let (header, used) = self.login_header(login.as_ref()).await?;
        match self.send_once(&req, Some(header)).await {
            Err(e) if (self.renew_on)(&e) => {
                tracing::info!(backend = %self.shown, "token refused; renewing it and retrying once");
                let token = login
                    .rejected(&used)
                    .await
                    .map_err(|e| self.credential_error(e))?;
                let header = self.remember(self.bearer_of(&token.provider_id, &token.token))?;
                self.send_once(&req, Some(header)).await
            }
            other => other,
        }
    }

    async fn login_header(
        &self,
        login: &dyn Credentials,
    ) -> Result<(HeaderValue, SecretString), PlatformError> {
        let token = login
            .access_token()
            .await
            .map_err(|e| self.credential_error(e))?;
        let header = self.remember(self.bearer_of(&token.provider_id, &token.token))?;
        Ok((header, token.token))
    }

    fn bearer_of(&self, provider_id: &str, token: &SecretString) -> Bearer {
        match self.style {
            TokenStyle::OpenEo => Bearer::oidc(provider_id, token.expose()),
            TokenStyle::Plain => Bearer::raw(token.expose()),
        }
    }

    /// Keeps `bearer` as the last credential sent (so that error texts are scrubbed of
    /// it) and returns its header value.
    fn remember(&self, bearer: Bearer) -> Result<HeaderValue, PlatformError> {
        let header = self.header_of(&bearer)?;
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some(bearer);
        Ok(header)
    }

    fn fixed_header(&self) -> Result<Option<HeaderValue>, PlatformError> {
        let fixed = self.fixed.read().unwrap_or_else(|p| p.into_inner()).clone();
        match fixed {
            Some(b) => self.remember(b).map(Some),
            None => Ok(None),
        }
    }

    fn header_of(&self, bearer: &Bearer) -> Result<HeaderValue, PlatformError> {
        match HeaderValue::from_str(&format!("Bearer {}", bearer.0)) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Ok(v)
            }
            Err(_) => Err(PlatformError::Auth {
                backend: self.shown.clone(),
                code: "TokenInvalid".into(),
                message: "the stored token contains characters not allowed in an HTTP header"
                    .into(),
            }),
        }
    }

    fn credential_error(&self, e: CredentialError) -> PlatformError {
        let backend = self.shown.clone();
        match e {
            CredentialError::LoginRequired(message) => PlatformError::Auth {
                backend,
                code: "LoginRequired".into(),
                message,
            },
            CredentialError::Store(message) => PlatformError::Auth {
                backend,
                code: "TokenStoreUnavailable".into(),
                message,
            },
            CredentialError::Unreachable(reason) => PlatformError::Unreachable { backend, reason },
        }
    }

    /// Sends one request with the given `Authorization` value and classifies the outcome.
    async fn send_once(
        &self,
        req: &Request<'_>,
        authorization: Option<HeaderValue>,
    ) -> Result<Answer, PlatformError> {
        let shown_url = redact_url(req.url.as_str());
        let mut builder = self.client.request(req.method.clone(), req.url.clone());
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value.clone());
        }
        if let Some(b) = req.body {
            builder = builder.json(b);
        }
        if let Some(t) = req.timeout {
            builder = builder.timeout(t);
        }
        let started = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(e);
                tracing::debug!(method = %req.method, url = %shown_url, error = %err, "backend request failed");
                return Err(err);
            }
        };
        let status = resp.status();
        tracing::debug!(
            method = %req.method,
            url = %shown_url,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "backend request"
        );
        let headers = resp.headers().clone();
        if status.is_success() {
            let body = crate::body_limit::read_limited(resp, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| self.body_error(e))?;
            match body {
                Some(body) => Ok(Answer {
                    status,
                    headers,
                    body,
                }),
                None => Err(self.protocol(format!(
                    "HTTP {} answer larger than {} MiB",
                    status.as_u16(),
                    MAX_ANSWER_BYTES / (1024 * 1024)
                ))),
            }
        } else {
            // A cut error body is still worth classifying; a failed read is not worse
            // than an empty one.
            let body = read_prefix(resp, MAX_ERROR_BYTES).await;
            Err(self.status_error(status, &headers, &body, req.kind))
        }
    }

    /// Parses an answer body as JSON.
    pub fn json(&self, answer: &Answer) -> Result<Value, PlatformError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            self.protocol(format!(
                "HTTP {} answer is not JSON ({}, {} bytes): {}",
                answer.status.as_u16(),
                content_type(&answer.headers),
                answer.body.len(),
                e
            ))
        })
    }

    /// A [`PlatformError::Protocol`] with `reason` scrubbed.
    pub fn protocol(&self, reason: String) -> PlatformError {
        PlatformError::Protocol {
            backend: self.shown.clone(),
            reason: self.scrub(&reason),
        }
    }

    /// Classifies a failure to get an answer at all.
    fn transport_error(&self, e: reqwest::Error) -> PlatformError {
        let backend = self.shown.clone();
        let connect = e.is_connect();
        let timeout = e.is_timeout();
        let redirect = e.is_redirect();
        let builder = e.is_builder();
        let reason = self.scrub(&error_chain(e.without_url()));
        if connect {
            PlatformError::Unreachable { backend, reason }
        } else if redirect || builder {
            PlatformError::Protocol { backend, reason }
        } else if timeout {
            PlatformError::NoAnswer {
                backend,
                reason: format!("timed out waiting for the answer: {reason}"),
            }
        } else {
            PlatformError::NoAnswer { backend, reason }
        }
    }

    /// Classifies a failure while reading a successful answer's body.
    fn body_error(&self, e: reqwest::Error) -> PlatformError {
        let timeout = e.is_timeout();
        let reason = self.scrub(&error_chain(e.without_url()));
        PlatformError::NoAnswer {
            backend: self.shown.clone(),
            reason: if timeout {
                format!("timed out reading the answer: {reason}")
            } else {
                format!("incomplete answer: {reason}")
            },
        }
    }

    /// Classifies an error status.
    pub fn status_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        kind: Kind,
    ) -> PlatformError {
        let (code, message) = summarise_error_body(status.as_u16(), headers, body);
        classify(
            self.shown.clone(),
            status.as_u16(),
            code,
            self.scrub(&message),
            headers,
            kind,
        )
    }

    /// Removes secrets from text shown to anyone: what `redact::redact` removes, and the
    /// backend's credential wherever it appears.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        for slot in [&self.last, &self.fixed] {
            let guard = slot.read().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = guard.as_ref() {
                secrets.extend(b.secrets().into_iter().map(str::to_string));
            }
        }
        redact_with(text, secrets.iter().map(String::as_str))
    }
}

impl fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackend")
            .field("endpoint", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The classification of an error status: what it means for the caller.
fn classify(
    backend: String,
    status: u16,
    code: Option<String>,
    message: String,
    headers: &HeaderMap,
    kind: Kind,
) -> PlatformError {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    match status {
        502 | 504 if kind == Kind::Create => PlatformError::NoAnswer {
            backend,
            reason: format!(
                "HTTP {status} from a gateway after the request was sent; the job may exist: {message}"
            ),
        },
        429 | 502 | 503 | 504 => PlatformError::Transient {
            backend,
            status,
            message,
            retry_after,
        },
        500 if kind == Kind::Idempotent => PlatformError::Transient {
            backend,
            status,
            message,
            retry_after,
        },
        401 => PlatformError::Auth {
            backend,
            code: code.unwrap_or_else(|| "AuthenticationRequired".into()),
            message,
        },
        403 if matches!(
            code.as_deref(),
            Some("TokenInvalid" | "AuthenticationRequired" | "AuthenticationSchemeInvalid")
        ) =>
        {
            PlatformError::Auth {
                backend,
                code: code.unwrap_or_default(),
                message,
            }
        }
        404 => PlatformError::NotFound {
            backend,
            code: code.unwrap_or_else(|| generic_code(status)),
            message,
        },
        400..=599 => PlatformError::Rejected {
            backend,
            status,
            code: code.unwrap_or_else(|| generic_code(status)),
            message,
        },
        _ => PlatformError::Protocol {
            backend,
            reason: format!("unexpected HTTP {status}"),
        },
    }
}

/// What a redirect target's host is, for [`redirect_refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    /// This machine: `127.0.0.0/8`, `::1`, `localhost`.
    Loopback,
    /// Never a place a backend may send us (the reason).
    Forbidden(&'static str),
    /// Anything else.
    Other,
}

/// Host names of cloud metadata services (compared lower case, without a final dot).
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

fn ipv4_kind(ip: std::net::Ipv4Addr) -> HostKind {
    let o = ip.octets();
    if o[0] == 0 {
        // 0.0.0.0/8: Linux connects 0.0.0.0 to this machine.
        HostKind::Forbidden("an unspecified address")
    } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        HostKind::Forbidden("a cloud metadata address")
    } else if ip.is_link_local() {
        HostKind::Forbidden("a link-local address")
    } else if ip.is_broadcast() {
        HostKind::Forbidden("the broadcast address")
    } else if ip.is_loopback() {
        HostKind::Loopback
    } else {
        HostKind::Other
    }
}

fn ipv6_kind(ip: std::net::Ipv6Addr) -> HostKind {
    let s = ip.segments();
    if ip.is_unspecified() {
        HostKind::Forbidden("an unspecified address")
    } else if ip.is_loopback() {
        HostKind::Loopback
    } else if ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        HostKind::Forbidden("a cloud metadata address")
    } else if s[0] & 0xffc0 == 0xfe80 {
        HostKind::Forbidden("a link-local address")
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-mapped (::ffff:a.b.c.d) and -compatible (::a.b.c.d) addresses.
        ipv4_kind(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        ipv4_kind(std::net::Ipv4Addr::new(a, b, c, d))
    } else {
        HostKind::Other
    }
}

/// The kind of a URL's host, as written (host names are not resolved; the URL parser
/// has already turned `0x7f.1` or `2130706433` into `127.0.0.1`).
fn host_kind(url: &Url) -> HostKind {
    let Some(host) = url.host_str() else {
        return HostKind::Forbidden("a URL without a host");
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => ipv6_kind(ip),
            Err(_) => HostKind::Forbidden("an unreadable IPv6 address"),
        };
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return ipv4_kind(ip);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        HostKind::Loopback
    } else if METADATA_HOSTS.contains(&name.as_str()) {
        HostKind::Forbidden("a cloud metadata host")
    } else {
        HostKind::Other
    }
}

/// Whether `url` points at this machine (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback_url(url: &Url) -> bool {
    host_kind(url) == HostKind::Loopback
}

/// Whether two URLs have the same origin (scheme, host, port).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Why a redirect to `next` is refused, or `None` when it may be followed. The one rule
/// for API requests ([`redirect_policy`]) and asset downloads: only `http`/`https`;
/// never a link-local address (`169.254.0.0/16`, `fe80::/10`), a cloud metadata
/// endpoint (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`,
/// `metadata.google.internal`, ...) or an unspecified address (`0.0.0.0/8`, `::`);
/// loopback only when `loopback_ok` (the backend itself is on loopback). IPv4-mapped
/// and NAT64 IPv6 forms count as their IPv4 address. Host names are judged as written,
/// not resolved. The text names the host, never the URL (links carry signatures).
pub fn redirect_refusal(next: &Url, loopback_ok: bool) -> Option<String> {
    link_refusal(next, loopback_ok, "a redirect")
}

/// [`redirect_refusal`] for a link given by the backend (an asset `href`), judged by
/// the same rule before the first request; `what` names it in the text.
pub fn link_refusal(next: &Url, loopback_ok: bool, what: &str) -> Option<String> {
    if !matches!(next.scheme(), "http" | "https") {
        return Some(format!(
            "{what} to a {}: URL was refused (only http and https are followed)",
            next.scheme()
        ));
    }
    let host = next.host_str().unwrap_or("");
    match host_kind(next) {
        HostKind::Forbidden(kind) => Some(format!(
            "{what} to {host} was refused: {kind} is never followed"
        )),
        HostKind::Loopback if !loopback_ok => Some(format!(
            "{what} to {host} was refused: loopback addresses are followed only for a backend on this machine"
        )),
        _ => None,
    }
}

/// The redirect policy of the API client: at most [`MAX_REDIRECTS`] hops, each checked
/// by [`redirect_refusal`]. reqwest removes `Authorization` when a hop changes host or
/// port; a hop that changes only the scheme (same host and port, another origin) is
/// refused, so that the credential never reaches another origin.
pub fn redirect_policy(loopback_ok: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if let Some(why) = redirect_refusal(attempt.url(), loopback_ok) {
            return attempt.error(why);
        }
        let scheme_only = attempt.previous().last().and_then(|prev| {
            let next = attempt.url();
            (prev.scheme() != next.scheme()
                && prev.host_str() == next.host_str()
                && prev.port_or_known_default() == next.port_or_known_default())
            .then(|| {
                format!(
                "a redirect from {} to {} on the same host and port was refused (another origin)",
                prev.scheme(),
                next.scheme()
            )
            })
        });
        if let Some(why) = scheme_only {
            return attempt.error(why);
        }
        attempt.follow()
    })
}

/// `base` with `segments` appended as path segments (percent-encoded). `[""]` gives
/// a trailing slash.
pub fn join_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Parses a backend URL: http(s), usable as a base, without query or fragment.
pub fn parse_base(endpoint: &str) -> Option<Url> {
    let mut url = Url::parse(endpoint.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// The media type without parameters, lower case, if any.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// An extension for a media type, for asset keys without one (as the openEO Python
/// client does).
pub fn extension_for(media_type: Option<&str>) -> &'static str {
    let t = media_type.unwrap_or("").to_ascii_lowercase();
    let essence = t.split(';').next().unwrap_or("").trim().to_string();
    match essence.as_str() {
        "image/tiff" => ".tif",
        "application/x-netcdf" | "application/netcdf" => ".nc",
        "application/geo+json" => ".geojson",
        "application/json" => ".json",
        "text/csv" => ".csv",
        "application/geopackage+sqlite3" => ".gpkg",
        "application/vnd.apache.parquet" | "application/x-parquet" => ".parquet",
        "application/zip" => ".zip",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "text/plain" => ".txt",
        _ => "",
    }
}

/// The `Content-Type` main part, or `no content type`.
fn content_type(headers: &HeaderMap) -> String {
    media_type(headers).unwrap_or_else(|| "no content type".into())
}

/// An error body → (code, message). Understands openEO errors (`{code, message}`),
/// OGC API exceptions (`{type, title, status, detail}`: the code is the last part of
/// `type`) and other JSON with a message-like member. The code is `None` when the body
/// names none; the message then summarises the body (never a whole HTML page).
fn summarise_error_body(status: u16, headers: &HeaderMap, body: &[u8]) -> (Option<String>, String) {
    let ctype = content_type(headers);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        };
        let code = text("code").map(str::to_string).or_else(|| {
            text("type")
                .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                .filter(|c| !c.is_empty() && !c.contains(' '))
                .map(str::to_string)
        });
        let message = [
            "message",
            "detail",
            "description",
            "error_description",
            "error",
            "title",
        ]
        .iter()
        .find_map(|k| text(k));
        return match (code, message) {
            (Some(code), Some(m)) => (Some(code), cut(m, MAX_MESSAGE_CHARS)),
            (code, Some(m)) => (
                code,
                format!("HTTP {status}: {}", cut(m, MAX_MESSAGE_CHARS)),
            ),
            (code, None) => (
                code,
                format!("HTTP {status} (JSON without an error message)"),
            ),
        };
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    let starts_html = trimmed
        .get(..14)
        .map(|p| p.to_ascii_lowercase())
        .is_some_and(|p| {
            p.starts_with("<!doctype") || p.starts_with("<html") || p.starts_with("<?xml")
        });
    if ctype.contains("html") || starts_html || trimmed.starts_with('<') {
        return (None, format!("HTTP {status} (HTML page)"));
    }
    if trimmed.is_empty() {
        return (None, format!("HTTP {status} (empty body)"));
    }
    if std::str::from_utf8(body).is_err() {
        return (
            None,
            format!("HTTP {status} ({} bytes of {ctype})", body.len()),
        );
    }
    let first_line = trimmed.lines().next().unwrap_or("").trim();
    (None, format!("HTTP {status}: {}", cut(first_line, 200)))
}

/// A code for an error answer that carries none.
fn generic_code(status: u16) -> String {
    match status {
        400 => "BadRequest".into(),
        403 => "PermissionsInsufficient".into(),
        404 => "NotFound".into(),
        410 => "Gone".into(),
        500 => "Internal".into(),
        501 => "FeatureUnsupported".into(),
        s => format!("HTTP{s}"),
    }
}

/// At most `max` characters of `s` (control characters dropped), with `…` if cut.
pub fn cut(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(max + 1)
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
        out.push('…');
    }
    out
}

/// A reqwest error and its sources, joined with `: ` (without repeats).
fn error_chain(e: reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    // reqwest's and hyper's wrappers say nothing the inner errors do not.
    let generic =
        |p: &String| p.starts_with("error sending request") || p.starts_with("client error (");
    if parts.iter().any(|p| !generic(p)) {
        parts.retain(|p| !generic(p));
    }
    parts.join(": ")
}

/// Reads at most `limit` bytes of a body, ignoring read errors (what came is kept).
async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (IMF-fixdate). A date
/// in the past gives zero; everything is capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, OffsetDateTime::now_utc())
}

fn parse_retry_after_at(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - now;
    if wait.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(wait).ok()?.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::NoLogins;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn backend() -> HttpBackend {
        HttpBackend::new(
            "https://openeo.example/openeo/1.2?key=secret",
            CONNECT_TIMEOUT,
            REQUEST_TIMEOUT,
            TokenStyle::OpenEo,
            Arc::new(NoLogins),
            |_| false,
        )
    }

    #[test]
    fn bearer_debug_is_redacted() {
        let b = Bearer::oidc("egi", "eyJhbGciOi.secret-token");
        assert_eq!(format!("{b:?}"), "Bearer([REDACTED])");
        assert_eq!(format!("{:?}", Some(b.clone())), "Some(Bearer([REDACTED]))");
        assert_eq!(b.expose_secret(), "oidc/egi/eyJhbGciOi.secret-token");
        assert_eq!(Bearer::raw("Bearer basic//tok"), Bearer::raw("basic//tok"));
        assert_eq!(Bearer::raw("oidc/egi/eyJhbGciOi.secret-token"), b);
        let backend = backend();
        backend.set_bearer(Some(b));
        assert!(!format!("{backend:?}").contains("secret"));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = OffsetDateTime::parse(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            &time::format_description::well_known::Rfc2822,
        )
        .unwrap();
        assert_eq!(
            parse_retry_after_at("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after_at(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after_at("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after_at("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after_at("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after_at("-5", now), None);
        assert_eq!(parse_retry_after_at("soon", now), None);
        assert_eq!(parse_retry_after_at("", now), None);
    }

    fn classify_body(status: u16, ctype: &str, body: &str, kind: Kind) -> PlatformError {
        backend().status_error(
            StatusCode::from_u16(status).unwrap(),
            &headers(&[("content-type", ctype), ("retry-after", "7")]),
            body.as_bytes(),
            kind,
        )
    }

    fn openeo_error(code: &str, message: &str) -> String {
        json!({"id": "x", "code": code, "message": message}).to_string()
    }

    #[test]
    fn error_classification() {
        use Kind::*;
        let j = "application/json";
        let e = classify_body(
            401,
            j,
            &openeo_error("AuthenticationRequired", "log in"),
            Idempotent,
        );
        assert!(matches!(&e, PlatformError::Auth { code, .. } if code == "AuthenticationRequired"));
        assert!(!e.is_transient());
        let e = classify_body(401, "text/plain", "", Idempotent);
        assert_eq!(e.code(), "AuthenticationRequired");
        let e = classify_body(403, j, &openeo_error("TokenInvalid", "expired"), Create);
        assert!(matches!(&e, PlatformError::Auth { code, .. } if code == "TokenInvalid"));
        let e = classify_body(
            403,
            j,
            &openeo_error("PermissionsInsufficient", "no"),
            Idempotent,
        );
        assert!(matches!(&e, PlatformError::Rejected { status: 403, .. }));
        let e = classify_body(
            404,
            j,
            &openeo_error("JobNotFound", "no such job"),
            Idempotent,
        );
        assert!(matches!(&e, PlatformError::NotFound { code, message, .. }
            if code == "JobNotFound" && message == "no such job"));
        assert_eq!(e.code(), "JobNotFound");
        assert_eq!(e.http_status(), Some(404));
        let e = classify_body(
            400,
            j,
            &openeo_error("ProcessNamespaceInvalid", "bad"),
            Create,
        );
        assert_eq!(e.code(), "ProcessNamespaceInvalid");
        assert!(!e.is_transient());

        for status in [429, 502, 503, 504] {
            let e = classify_body(
                status,
                j,
                &openeo_error("ServiceUnavailable", "busy"),
                Idempotent,
            );
            assert!(matches!(e, PlatformError::Transient { .. }), "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
            assert_eq!(e.code(), "BackendBusy");
            assert!(e.is_transient());
        }
        // 500: transient for GET/DELETE only.
        assert!(matches!(
            classify_body(500, j, &openeo_error("Internal", "x"), Idempotent),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify_body(500, j, &openeo_error("Internal", "x"), Start),
            PlatformError::Rejected { .. }
        ));
        assert!(matches!(
            classify_body(500, j, &openeo_error("Internal", "x"), Create),
            PlatformError::Rejected { .. }
        ));
        // A gateway error to a submission is ambiguous; 429/503 are not.
        for status in [502, 504] {
            let e = classify_body(status, "text/html", "<html>x</html>", Create);
            assert!(matches!(e, PlatformError::NoAnswer { .. }), "{status}");
            assert!(e.is_transient());
        }
        assert!(matches!(
            classify_body(429, j, "{}", Create),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify_body(503, j, "{}", Create),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify_body(502, j, "{}", Start),
            PlatformError::Transient { .. }
        ));
    }

    #[test]
    fn ogc_exceptions_are_read() {
        let e = classify_body(
            404,
            "application/problem+json",
            r#"{"type": "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-job",
                "title": "No such job", "status": 404, "detail": "job 12 is unknown"}"#,
            Kind::Idempotent,
        );
        assert!(
            matches!(&e, PlatformError::NotFound { code, message, .. }
            if code == "no-such-job" && message == "job 12 is unknown"),
            "{e:?}"
        );
        let e = classify_body(
            400,
            "application/json",
            r#"{"code": "InvalidParameterValue", "type": "InvalidParameterValue",
                "description": "bbox is wrong"}"#,
            Kind::Create,
        );
        assert!(
            matches!(&e, PlatformError::Rejected { status: 400, code, message, .. }
            if code == "InvalidParameterValue" && message == "bbox is wrong"),
            "{e:?}"
        );
    }

    #[test]
    fn html_and_odd_bodies_are_summarised() {
        let page = format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head><title>502 Proxy Error</title></head><body>{}</body></html>",
            "The proxy server received an invalid response. ".repeat(50)
        );
        let e = classify_body(
            502,
            "text/html; charset=iso-8859-1",
            &page,
            Kind::Idempotent,
        );
        match &e {
            PlatformError::Transient { message, .. } => {
                assert_eq!(message, "HTTP 502 (HTML page)")
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("proxy server"));
        // HTML without a content type.
        let e = classify_body(500, "", &page, Kind::Start);
        assert!(
            matches!(&e, PlatformError::Rejected { code, message, .. } if code == "Internal" && message == "HTTP 500 (HTML page)")
        );
        let e = classify_body(400, "text/plain", "bad thing\nmore lines", Kind::Start);
        assert!(
            matches!(&e, PlatformError::Rejected { message, .. } if message == "HTTP 400: bad thing")
        );
        let e = classify_body(
            418,
            "application/json",
            r#"{"detail": "teapot"}"#,
            Kind::Start,
        );
        assert!(
            matches!(&e, PlatformError::Rejected { code, message, .. } if code == "HTTP418" && message == "HTTP 418: teapot")
        );
        let e = classify_body(503, "text/plain", "", Kind::Idempotent);
        assert!(
            matches!(&e, PlatformError::Transient { message, .. } if message == "HTTP 503 (empty body)")
        );
        let long = "x".repeat(5000);
        let e = classify_body(
            400,
            "application/json",
            &openeo_error("Long", &long),
            Kind::Start,
        );
        assert!(e.to_string().len() < 1200);
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let b = backend();
        b.set_bearer(Some(Bearer::oidc("egi", "AT-very-secret-123")));
        let msg = openeo_error(
            "ResultLinkExpired",
            "link https://openeo.example/assets/a.tif?expires=1716300000&sig=abc expired; token oidc/egi/AT-very-secret-123 or AT-very-secret-123",
        );
        let e = b.status_error(
            StatusCode::GONE,
            &HeaderMap::new(),
            msg.as_bytes(),
            Kind::Idempotent,
        );
        let text = e.to_string();
        assert!(!text.contains("?expires="), "{text}");
        assert!(!text.contains("sig=abc"), "{text}");
        assert!(!text.contains("AT-very-secret-123"), "{text}");
        assert!(
            text.contains("https://openeo.example/assets/a.tif expired"),
            "{text}"
        );
        assert!(!text.contains("key=secret"), "{text}");
    }

    #[test]
    fn redirect_targets() {
        let refused = |u: &str, loopback_ok: bool| {
            redirect_refusal(&Url::parse(u).unwrap(), loopback_ok).is_some()
        };
        for ok in [
            "https://openeo.example/jobs",
            "http://192.0.2.7:8080/x",
            "https://[2001:db8::1]/x",
            "https://s3.eu-central-1.amazonaws.com/b/k?X-Amz-Signature=s",
        ] {
            assert!(!refused(ok, false), "{ok}");
            assert!(!refused(ok, true), "{ok}");
        }
        for bad in [
            "ftp://openeo.example/x",
            "file:///etc/passwd",
            "gopher://h/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.10.1/x",
            "http://[fe80::1]/x",
            "http://[febf::1]/x",
            "http://[fd00:ec2::254]/x",
            "http://100.100.100.200/x",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./x",
            "http://metadata/x",
            "http://0.0.0.0:8080/x",
            "http://0/x",
            "http://[::]/x",
            "http://[::ffff:169.254.169.254]/x",
            "http://[64:ff9b::a9fe:a9fe]/x",
            "http://2852039166/x",
            "http://0xa9.0xfe.0xa9.0xfe/x",
            "http://255.255.255.255/x",
        ] {
            assert!(refused(bad, false), "{bad}");
            assert!(refused(bad, true), "{bad}");
        }
        for lo in [
            "http://127.0.0.1:9/x",
            "http://127.1.2.3/x",
            "http://[::1]:9/x",
            "http://localhost:9/x",
            "http://api.localhost/x",
            "http://2130706433/x",
            "http://[::ffff:127.0.0.1]/x",
        ] {
            assert!(refused(lo, false), "{lo}");
            assert!(!refused(lo, true), "{lo}");
            assert!(is_loopback_url(&Url::parse(lo).unwrap()), "{lo}");
        }
        // The refusal names the host, never the signed query.
        let why = redirect_refusal(
            &Url::parse("http://169.254.169.254/x?sig=SECRET").unwrap(),
            true,
        )
        .unwrap();
        assert!(
            why.contains("169.254.169.254") && !why.contains("SECRET"),
            "{why}"
        );
    }

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://h.example/a"),
            &u("https://h.example:443/b")
        ));
        assert!(!same_origin(
            &u("https://h.example/a"),
            &u("https://h.example:8443/a")
        ));
        assert!(!same_origin(
            &u("https://h.example:8080/"),
            &u("http://h.example:8080/")
        ));
        assert!(!same_origin(
            &u("https://h.example/"),
            &u("https://g.example/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://localhost:1/")
        ));
    }

    #[test]
    fn urls_are_built_with_encoded_segments() {
        let base = Url::parse("https://h.example/openeo/1.2/").unwrap();
        assert_eq!(
            join_segments(&base, &["jobs", "a/b", "results"]).as_str(),
            "https://h.example/openeo/1.2/jobs/a%2Fb/results"
        );
        assert_eq!(
            join_segments(&base, &[""]).as_str(),
            "https://h.example/openeo/1.2/"
        );
        let base = Url::parse("https://h.example").unwrap();
        assert_eq!(
            join_segments(&base, &["jobs"]).as_str(),
            "https://h.example/jobs"
        );
        assert!(parse_base("ftp://x").is_none());
        assert_eq!(
            parse_base("https://h.example/a?x=1#f").unwrap().as_str(),
            "https://h.example/a"
        );
    }
}
