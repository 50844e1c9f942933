//! A small async client of the local API, used by the CLI commands.
//!
//! It reaches the daemon at the address its discovery file gives while it runs (the
//! address really bound), else at the address of `listen` in the configuration (a
//! wildcard `0.0.0.0` / `::` is reached through `127.0.0.1` / `[::1]`; any other address
//! than those two through the name `localhost` pinned to that address, so that the
//! daemon's `Host` check passes), sends the API token read from the token file as `Authorization: Bearer`,
//! never goes through an HTTP proxy (the token must not leave the machine), and turns
//! `application/problem+json` answers into [`ApiProblem`]s that print as
//! `<title>: <detail>` plus one `  <name>: <reason>` line per invalid field.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::api_token::{self, ApiToken, ApiTokenError};
use crate::config::Config;
use crate::discovery;

/// How the service is started, for remedies in messages.
pub const START_HINT: &str =
    "start it with `eodispatch serve` or `systemctl --user start eodispatch`";

/// Time allowed to open a connection to the daemon.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a whole request (the API answers at once; jobs run in the background).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest life of one event stream ([`Client::stream`]); a client that follows longer
/// opens a new one.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the CLI reaches a daemon that listens on some address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8421`.
    pub base: String,
    /// For addresses reached as `localhost`: the socket address the name stands for.
    pub pin: Option<SocketAddr>,
}

impl Endpoint {
    /// The endpoint for a daemon listening on `listen`.
    pub fn for_listen(listen: SocketAddr) -> Endpoint {
        let addr = discovery::connect_addr(listen);
        match addr.ip() {
            IpAddr::V4(Ipv4Addr::LOCALHOST) | IpAddr::V6(Ipv6Addr::LOCALHOST) => Endpoint {
                base: discovery::api_url(addr),
                pin: None,
            },
            // 127.0.0.2, or a non-loopback address with `allow_remote`: connect there, but
            // under a host name the daemon's DNS-rebinding check accepts.
            _ => Endpoint {
                base: format!("http://localhost:{}", addr.port()),
                pin: Some(addr),
            },
        }
    }

    /// The endpoint of the daemon of `config`: the address its discovery file gives
    /// while it runs, else the configured `listen`.
    pub fn of(config: &Config) -> Endpoint {
        if let Ok(discovery::Found::Running(d)) = discovery::find(&config.discovery_path()) {
            if let Some(addr) = discovery::addr_of_url(&d.api_url) {
                return Endpoint::for_listen(addr);
            }
        }
        Endpoint::for_listen(config.listen)
    }
}

/// A `problem+json` error answer of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiProblem {
    /// Short summary of the problem type.
    #[serde(default)]
    pub title: String,
    /// HTTP status.
    #[serde(default)]
    pub status: u16,
    /// What went wrong in this case.
    #[serde(default)]
    pub detail: String,
    /// Stable machine-readable code, e.g. `JobNotFound`.
    #[serde(default)]
    pub code: String,
    /// Id of the request in the daemon's log.
    #[serde(default)]
    pub request_id: String,
    /// Invalid fields.
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
    /// A remedy we add on our side (not part of the body).
    #[serde(skip)]
    pub hint: Option<String>,
}

/// One invalid field of a rejected request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldProblem {
    /// Dotted path of the field, e.g. `parameters.spatial_extent.west`.
    #[serde(default)]
    pub name: String,
    /// Why it was rejected.
    #[serde(default)]
    pub reason: String,
}

impl fmt::Display for ApiProblem {
    /// `<title>: <detail>`, then `  <name>: <reason>` per invalid field, then the hint.
    /// A single field error that the detail already spells out is not repeated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.title.is_empty(), self.detail.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.title, self.detail)?,
            (false, true) => f.write_str(&self.title)?,
            (true, false) => f.write_str(&self.detail)?,
            (true, true) => write!(f, "the daemon answered HTTP {}", self.status)?,
        }
        let repeated = matches!(self.errors.as_slice(),
            [one] if self.detail == format!("{}: {}", one.name, one.reason));
        if !repeated {
            for e in &self.errors {
                write!(f, "\n  {}: {}", e.name, e.reason)?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a request to the daemon did not give an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// There is no token file yet: the daemon never ran with this configuration.
    #[error(
        "no API token at {}: the daemon has not been started yet; {START_HINT}",
        path.display()
    )]
    NotStarted {
        /// The token file looked for.
        path: PathBuf,
    },
    /// The token file is unusable (readable by others, malformed, unreadable).
    #[error(transparent)]
    Token(ApiTokenError),
    /// Nothing answers at the daemon's address.
    #[error("cannot reach the daemon at {base} ({reason}); {START_HINT}")]
    Unreachable {
        /// Base URL tried.
        base: String,
        /// The system's reason, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The daemon accepted the connection but did not answer in time.
    #[error("the daemon at {base} did not answer within {} s; see its log", timeout.as_secs())]
    Timeout {
        /// Base URL tried.
        base: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The daemon answered with a problem.
    #[error("{0}")]
    Problem(Box<ApiProblem>),
    /// Something answered, but not like the daemon does.
    #[error(
        "unexpected answer from {url}: {what}; is another program listening on that address? \
         (`listen` in config.toml or EODISPATCH_LISTEN sets the daemon's address)"
    )]
    Unexpected {
        /// The URL requested.
        url: String,
        /// What was odd about the answer.
        what: String,
    },
    /// The request failed for another reason.
    #[error("request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The problem the daemon answered with, if it was one.
    pub fn problem(&self) -> Option<&ApiProblem> {
        match self {
            ClientError::Problem(p) => Some(p.as_ref()),
            _ => None,
        }
    }
}

/// Reads the API token file of `config`, telling a missing file ("not started yet")
/// apart from other failures.
pub fn read_token(config: &Config) -> Result<ApiToken, ClientError> {
    let path = config.token_path();
    api_token::read(&path).map_err(|e| match e {
        ApiTokenError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ClientError::NotStarted { path }
        }
        other => ClientError::Token(other),
    })
}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    token: Option<ApiToken>,
    token_path: PathBuf,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.endpoint.base)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl Client {
    /// A client that sends the API token read from the configured token file.
    pub fn connect(config: &Config) -> Result<Client, ClientError> {
        let token = read_token(config)?;
        Client::build(config, Some(token))
    }

    /// A client without token, for `/health`.
    pub fn anonymous(config: &Config) -> Result<Client, ClientError> {
        Client::build(config, None)
    }

    fn build(config: &Config, token: Option<ApiToken>) -> Result<Client, ClientError> {
        let endpoint = Endpoint::of(config);
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("eodispatch-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(addr) = endpoint.pin {
            builder = builder.resolve("localhost", addr);
        }
        let http = builder.build().map_err(|e| ClientError::Http {
            url: endpoint.base.clone(),
            reason: root_cause(&e),
        })?;
        Ok(Client {
            http,
            endpoint,
            token,
            token_path: config.token_path(),
        })
    }

    /// Base URL of the daemon, e.g. `http://127.0.0.1:8421`.
    pub fn base(&self) -> &str {
        &self.endpoint.base
    }

    /// `GET path` with query pairs; the JSON answer.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.send(Method::GET, path, query, None)
            .await
            .map(|v| v.unwrap_or(Value::Null))
    }

    /// `POST path` with a JSON body (or none); the JSON answer.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.send(Method::POST, path, &[], body)
            .await
            .map(|v| v.unwrap_or(Value::Null))
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, path, &[], None).await.map(|_| ())
    }

    /// `GET /health`: the status code and the JSON answer (503 is an answer too).
    pub async fn health(&self) -> Result<(StatusCode, Value), ClientError> {
        let url = self.url("/health");
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.get("version").is_some() => Ok((status, v)),
            _ => Err(ClientError::Unexpected {
                url,
                what: format!("HTTP {status} without the daemon's health document"),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.base)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, ClientError> {
        let url = self.url(path);
        let mut req = self.http.request(method, &url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            // `.json()` sets `Content-Type: application/json`, which the daemon requires.
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = resp.status();
        let is_problem = is_problem(&resp);
        let text = resp
            .text()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ClientError::Unexpected {
                    url,
                    what: format!("HTTP {status} with a body that is not JSON ({e})"),
                });
        }
        Err(self.refusal(url, status, is_problem, &text))
    }

    /// `GET path` answered with a stream (`/events`): the response, to be read chunk by
    /// chunk, alive for at most [`STREAM_TIMEOUT`]. A refusal is the daemon's problem.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let mut req = self.http.get(&url).timeout(STREAM_TIMEOUT);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let is_problem = is_problem(&resp);
        let text = resp
            .text()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        Err(self.refusal(url, status, is_problem, &text))
    }

    /// The error for a refused request: the daemon's problem (with a hint for a token
    /// it does not accept), or an unexpected answer.
    fn refusal(
        &self,
        url: String,
        status: StatusCode,
        is_problem: bool,
        text: &str,
    ) -> ClientError {
        match serde_json::from_str::<ApiProblem>(text) {
            Ok(mut p) if is_problem || !p.title.is_empty() => {
                if p.status == 0 {
                    p.status = status.as_u16();
                }
                if status == StatusCode::UNAUTHORIZED && self.token.is_some() {
                    p.hint = Some(format!(
                        "the token was read from {}; the running daemon uses another one \
                         (another state folder, EODISPATCH_STATE_DIR?)",
                        self.token_path.display()
                    ));
                }
                ClientError::Problem(Box::new(p))
            }
            _ => ClientError::Unexpected {
                url,
                what: format!("HTTP {status}"),
            },
        }
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                base: self.endpoint.base.clone(),
                timeout: REQUEST_TIMEOUT,
            }
        } else if e.is_connect() {
            ClientError::Unreachable {
                base: self.endpoint.base.clone(),
                reason: root_cause(&e),
            }
        } else {
            ClientError::Http {
                url: url.to_string(),
                reason: root_cause(&e),
            }
        }
    }
}

/// Whether an answer is `application/problem+json`.
fn is_problem(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

/// The innermost cause of an error: the system's words (`Connection refused (os
/// error 111)`) rather than the wrapper's ("error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_listen_address() {
        let e = |s: &str| Endpoint::for_listen(s.parse().unwrap());
        assert_eq!(e("127.0.0.1:8421").base, "http://127.0.0.1:8421");
        assert_eq!(e("0.0.0.0:9000").base, "http://127.0.0.1:9000");
        assert_eq!(e("[::1]:8421").base, "http://[::1]:8421");
        assert_eq!(e("[::]:8421").base, "http://[::1]:8421");
        let other = e("127.0.0.2:8421");
        assert_eq!(other.base, "http://localhost:8421");
        assert_eq!(other.pin, Some("127.0.0.2:8421".parse().unwrap()));
    }

    fn problem(body: &str) -> ApiProblem {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn problems_render_title_detail_and_fields() {
        let p = problem(
            r#"{"type":"urn:eodispatch:problem:InvalidParameter","title":"Invalid request",
                "status":422,"detail":"2 fields are invalid: parameters.spatial_extent.west, format",
                "code":"InvalidParameter","request_id":"r1",
                "errors":[{"name":"parameters.spatial_extent.west","reason":"must be less than east"},
                          {"name":"format","reason":"unknown format \"tif\""}]}"#,
        );
        assert_eq!(
            p.to_string(),
            "Invalid request: 2 fields are invalid: parameters.spatial_extent.west, format\n  \
             parameters.spatial_extent.west: must be less than east\n  \
             format: unknown format \"tif\""
        );
        assert_eq!(p.code, "InvalidParameter");
        assert_eq!(p.status, 422);
    }

    #[test]
    fn a_single_field_spelled_out_in_the_detail_is_not_repeated() {
        let p = problem(
            r#"{"title":"Invalid request","status":422,
                "detail":"parameters.spatial_extent.west: must be less than east",
                "errors":[{"name":"parameters.spatial_extent.west","reason":"must be less than east"}]}"#,
        );
        assert_eq!(
            p.to_string(),
            "Invalid request: parameters.spatial_extent.west: must be less than east"
        );
    }

    #[test]
    fn problems_without_fields_and_with_hints() {
        let mut p = problem(
            r#"{"title":"Job not found","status":404,"detail":"there is no unit job with id 9",
                "code":"JobNotFound","request_id":"r2"}"#,
        );
        assert_eq!(
            p.to_string(),
            "Job not found: there is no unit job with id 9"
        );
        p.hint = Some("look at `eodispatch jobs`".into());
        assert_eq!(
            ClientError::Problem(Box::new(p)).to_string(),
            "Job not found: there is no unit job with id 9\nhint: look at `eodispatch jobs`"
        );
        assert_eq!(
            problem(r#"{"status":500}"#).to_string(),
            "the daemon answered HTTP 500"
        );
    }

    #[test]
    fn missing_token_file_means_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_root(dir.path());
        let e = read_token(&config).unwrap_err();
        assert!(matches!(e, ClientError::NotStarted { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("has not been started yet"), "{text}");
        assert!(text.contains("eodispatch serve"), "{text}");
    }
}
