//! The OpenID Connect side of a backend login: what a backend's `/credentials/oidc` offers
//! (providers and their default clients), the issuer's discovery document, and the token
//! endpoint grants the daemon uses — device code (RFC 8628) with PKCE, authorization code
//! with PKCE S256 (RFC 7636), client credentials, and refresh (with rotation).
//!
//! Pure protocol: no storage and no state. Every secret travels as a [`SecretString`]
//! (its `Debug` is redacted) and no error message carries a token: an identity provider's
//! error is reduced to its `error` code and `error_description`.

use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::tokens::SecretString;

/// Grant type of the device code flow.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Per-request timeout towards an identity provider.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Errors talking to an identity provider.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with a server error: try again later.
    #[error("the identity provider {issuer} is unreachable: {message}")]
    Unreachable {
        /// Issuer URL.
        issuer: String,
        /// What went wrong (no secrets).
        message: String,
    },
    /// The provider refused the grant (`invalid_grant`, `invalid_client`, `access_denied`,
    /// `expired_token`, ...): a new login is needed.
    #[error("the identity provider refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        /// The OAuth `error` code.
        error: String,
        /// The provider's `error_description`.
        description: Option<String>,
    },
    /// The provider's answer does not follow the protocol.
    #[error("unexpected answer from the identity provider: {0}")]
    Protocol(String),
    /// The backend or provider does not offer what the login needs.
    #[error("{0}")]
    Unsupported(String),
}

impl OidcError {
    /// `true` if trying again later may work without a new login.
    pub fn is_transient(&self) -> bool {
        matches!(self, OidcError::Unreachable { .. })
    }
}

pub use crate::credentials::{LoginClient as DefaultClient, LoginProvider as Provider};

/// Picks the provider: the one asked for, else the backend's first (its default).
pub fn pick_provider<'a>(
    providers: &'a [Provider],
    wanted: Option<&str>,
) -> Result<&'a Provider, OidcError> {
    match wanted {
        Some(id) => providers.iter().find(|p| p.id == id).ok_or_else(|| {
            OidcError::Unsupported(format!(
                "the backend has no provider {id:?}; it offers {}",
                providers
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }),
        None => providers.first().ok_or_else(|| {
            OidcError::Unsupported("the backend lists no OpenID Connect provider".into())
        }),
    }
}

/// The flows a person can run with a public client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Device code.
    Device,
    /// Authorization code with a loopback redirect.
    Browser,
}

/// Picks the provider's default client for `flow`: one whose grants allow the flow,
/// preferring one that also allows `refresh_token` (as the openEO Python client does).
pub fn pick_client(provider: &Provider, flow: Flow) -> Option<&DefaultClient> {
    let fits = |c: &&DefaultClient| {
        c.grant_types.iter().any(|g| match flow {
            Flow::Device => {
                g == DEVICE_GRANT || g == "urn:ietf:params:oauth:grant-type:device_code+pkce"
            }
            Flow::Browser => g == "authorization_code" || g == "authorization_code+pkce",
        })
    };
    let refresh = |c: &&DefaultClient| c.grant_types.iter().any(|g| g == "refresh_token");
    provider
        .default_clients
        .iter()
        .filter(fits)
        .find(refresh)
        .or_else(|| provider.default_clients.iter().find(fits))
}

/// Whether the device flow uses PKCE (as the openEO Python client decides): yes when the
/// backend lists the client with `device_code+pkce`; for a client of the user's own, when
/// the issuer advertises S256.
pub fn device_pkce(provider: &Provider, client_id: &str, discovery: &Discovery) -> bool {
    match provider.default_clients.iter().find(|c| c.id == client_id) {
        Some(c) => c
            .grant_types
            .iter()
            .any(|g| g == "urn:ietf:params:oauth:grant-type:device_code+pkce"),
        None => discovery
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256"),
    }
}

/// The parts of the issuer's `/.well-known/openid-configuration` the daemon uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Discovery {
    /// Issuer URL.
    pub issuer: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Authorization endpoint (browser flow).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Device authorization endpoint (device flow).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// Scopes the provider knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// PKCE methods (`S256`).
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// Reads the issuer's discovery document.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let answer = http
        .get(&url)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| unreachable(issuer, &e))?;
    let status = answer.status();
    if !status.is_success() {
        let e = OidcError::Unreachable {
            issuer: issuer.to_string(),
            message: format!("discovery answered HTTP {}", status.as_u16()),
        };
        return Err(if status.is_server_error() {
            e
        } else {
            OidcError::Protocol(e.to_string())
        });
    }
    let body = read_limited(answer, issuer).await?;
    let d: Discovery = serde_json::from_slice(&body)
        .map_err(|e| OidcError::Protocol(format!("discovery document: {e}")))?;
    check_discovery(issuer, &d)?;
    Ok(d)
}

/// Longest device code lifetime believed, in seconds (a day).
pub const MAX_DEVICE_CODE_LIFE_S: u64 = 24 * 3600;

/// Longest device polling interval honoured, in seconds.
pub const MAX_POLL_INTERVAL_S: u64 = 300;

/// Longest access token lifetime believed, in seconds (a year): renewal is planned from
/// it, and `now + lifetime` must not overflow.
pub const MAX_TOKEN_LIFE_S: u64 = 366 * 24 * 3600;

/// Largest answer read from an identity provider (a discovery document or a token
/// answer is a few kilobytes).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Reads an answer body up to [`MAX_ANSWER_BYTES`].
async fn read_limited(mut answer: reqwest::Response, issuer: &str) -> Result<Vec<u8>, OidcError> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| unreachable(issuer, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(OidcError::Protocol(format!(
                "the identity provider's answer is larger than {} KiB",
                MAX_ANSWER_BYTES / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A discovery document is only used when it names the issuer it was fetched from
/// (OpenID Connect Discovery §4.3: a document that names another issuer could send our
/// tokens elsewhere) and its endpoints are https — plain http only on this machine.
pub fn check_discovery(issuer: &str, d: &Discovery) -> Result<(), OidcError> {
    let want = issuer.trim_end_matches('/');
    if d.issuer.trim_end_matches('/') != want {
        return Err(OidcError::Protocol(format!(
            "the discovery document of {want} names another issuer ({}); refusing it",
            crate::redact::redact_url(&d.issuer)
        )));
    }
    let endpoints = [
        ("token_endpoint", Some(&d.token_endpoint)),
        ("authorization_endpoint", d.authorization_endpoint.as_ref()),
        (
            "device_authorization_endpoint",
            d.device_authorization_endpoint.as_ref(),
        ),
    ];
    for (name, url) in endpoints {
        let Some(url) = url else { continue };
        if !secure_endpoint(url) {
            return Err(OidcError::Protocol(format!(
                "the identity provider's {name} {} is not https; refusing to send \
                 credentials to it",
                crate::redact::redact_url(url)
            )));
        }
    }
    Ok(())
}

/// https, or http to this machine (loopback: tests, local providers).
fn secure_endpoint(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// The scopes to ask for: `openid`, the provider's, and `offline_access` when a refresh
/// token is wanted and the issuer supports it; kept to what the issuer lists when it
/// lists scopes; sorted, space-separated.
pub fn scope(provider: &Provider, discovery: &Discovery, want_refresh: bool) -> String {
    let mut set: std::collections::BTreeSet<String> = provider.scopes.iter().cloned().collect();
    set.insert("openid".into());
    if want_refresh
        && (discovery.scopes_supported.is_empty()
            || discovery
                .scopes_supported
                .iter()
                .any(|s| s == "offline_access"))
    {
        set.insert("offline_access".into());
    }
    if !discovery.scopes_supported.is_empty() {
        set.retain(|s| discovery.scopes_supported.contains(s));
    }
    set.into_iter().collect::<Vec<_>>().join(" ")
}

/// A PKCE pair: a random 64-character verifier and its S256 challenge.
pub struct Pkce {
    /// Sent with the token request.
    pub verifier: SecretString,
    /// Sent with the authorization request.
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    pub fn new() -> Pkce {
        let verifier = random_token(48);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier: SecretString::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

/// `n` random bytes, base64url without padding (a 48-byte value gives 64 characters).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the device authorization endpoint answered.
#[derive(Debug)]
pub struct DeviceStart {
    /// The code the daemon polls with (a secret).
    pub device_code: SecretString,
    /// The code the user types.
    pub user_code: String,
    /// The page where the user types it.
    pub verification_uri: String,
    /// The page with the code filled in, if the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls (default 5).
    pub interval: u64,
}

/// Starts a device code login.
pub async fn device_authorize(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    scope: &str,
    pkce: Option<&Pkce>,
) -> Result<DeviceStart, OidcError> {
    let endpoint = discovery
        .device_authorization_endpoint
        .as_deref()
        .ok_or_else(|| {
            OidcError::Unsupported(format!(
            "the identity provider {} does not offer the device code flow; use the browser flow",
            discovery.issuer
        ))
        })?;
    let mut form = vec![
        ("client_id", client_id.to_string()),
        ("scope", scope.to_string()),
    ];
    if let Some(p) = pkce {
        form.push(("code_challenge", p.challenge.clone()));
        form.push(("code_challenge_method", "S256".into()));
    }
    let v = post_form(http, &discovery.issuer, endpoint, &form, None).await?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(DeviceStart {
        device_code: SecretString::new(
            text("device_code").ok_or_else(|| OidcError::Protocol("no device_code".into()))?,
        ),
        user_code: text("user_code").ok_or_else(|| OidcError::Protocol("no user_code".into()))?,
        verification_uri: text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| OidcError::Protocol("no verification_uri".into()))?,
        verification_uri_complete: text("verification_uri_complete"),
        // A provider's numbers are kept within sense: a code lives at most a day, and is
        // polled at least every 5 minutes (no overflow in deadlines).
        expires_in: v
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(600)
            .clamp(1, MAX_DEVICE_CODE_LIFE_S),
        interval: v
            .get("interval")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .clamp(1, MAX_POLL_INTERVAL_S),
    })
}

/// A token endpoint answer.
#[derive(Debug)]
pub struct TokenSet {
    /// The access token.
    pub access_token: SecretString,
    /// A (possibly rotated) refresh token.
    pub refresh_token: Option<SecretString>,
    /// Lifetime of the access token in seconds.
    pub expires_in: Option<u64>,
}

/// One poll of a device login.
#[derive(Debug)]
pub enum DevicePoll {
    /// The user has not finished yet.
    Pending,
    /// Poll less often (add 5 s).
    SlowDown,
    /// Logged in.
    Done(TokenSet),
}

/// Polls the token endpoint for a device login.
pub async fn device_poll(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    device_code: &SecretString,
    pkce: Option<&Pkce>,
) -> Result<DevicePoll, OidcError> {
    let mut form = vec![
        ("grant_type", DEVICE_GRANT.to_string()),
        ("client_id", client_id.to_string()),
        ("device_code", device_code.expose().to_string()),
    ];
    if let Some(p) = pkce {
        form.push(("code_verifier", p.verifier.expose().to_string()));
    }
    match token_request(http, discovery, &form, None).await {
        Ok(t) => Ok(DevicePoll::Done(t)),
        Err(OidcError::Rejected { error, .. }) if error == "authorization_pending" => {
            Ok(DevicePoll::Pending)
        }
        Err(OidcError::Rejected { error, .. }) if error == "slow_down" => Ok(DevicePoll::SlowDown),
        Err(e) => Err(e),
    }
}

/// The URL the browser opens for an authorization code login.
pub fn authorization_url(
    discovery: &Discovery,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
    pkce: &Pkce,
) -> Result<String, OidcError> {
    let endpoint = discovery.authorization_endpoint.as_deref().ok_or_else(|| {
        OidcError::Unsupported(format!(
            "the identity provider {} has no authorization endpoint; use the device flow",
            discovery.issuer
        ))
    })?;
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| OidcError::Protocol(format!("authorization_endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", scope)
        .append_pair("state", state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url.to_string())
}

/// Exchanges an authorization code.
pub async fn exchange_code(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    pkce: &Pkce,
) -> Result<TokenSet, OidcError> {
    let form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("client_id", client_id.to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri.to_string()),
        ("code_verifier", pkce.verifier.expose().to_string()),
    ];
    token_request(http, discovery, &form, None).await
}

/// The client credentials grant (HTTP Basic client authentication).
pub async fn client_credentials(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    client_secret: &SecretString,
    scope: &str,
) -> Result<TokenSet, OidcError> {
    let form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("scope", scope.to_string()),
    ];
    token_request(http, discovery, &form, Some((client_id, client_secret))).await
}

/// The refresh token grant. The answer may carry a rotated refresh token.
pub async fn refresh(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    refresh_token: &SecretString,
) -> Result<TokenSet, OidcError> {
    let form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("client_id", client_id.to_string()),
        ("refresh_token", refresh_token.expose().to_string()),
    ];
    token_request(http, discovery, &form, None).await
}

async fn token_request(
    http: &reqwest::Client,
    discovery: &Discovery,
    form: &[(&str, String)],
    basic: Option<(&str, &SecretString)>,
) -> Result<TokenSet, OidcError> {
    let v = post_form(
        http,
        &discovery.issuer,
        &discovery.token_endpoint,
        form,
        basic,
    )
    .await?;
    let token_type = v.get("token_type").and_then(Value::as_str).unwrap_or("");
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(OidcError::Protocol(format!(
            "token_type {token_type:?} is not bearer"
        )));
    }
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::Protocol("no access_token".into()))?;
    Ok(TokenSet {
        access_token: SecretString::new(access),
        refresh_token: v
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(SecretString::new),
        expires_in: v
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(|s| s.min(MAX_TOKEN_LIFE_S)),
    })
}

/// POSTs a form; a JSON object on 2xx, [`OidcError::Rejected`] with the OAuth error on 4xx.
async fn post_form(
    http: &reqwest::Client,
    issuer: &str,
    endpoint: &str,
    form: &[(&str, String)],
    basic: Option<(&str, &SecretString)>,
) -> Result<Value, OidcError> {
    let mut req = http.post(endpoint).timeout(TIMEOUT).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret.expose()));
    }
    let answer = req.send().await.map_err(|e| unreachable(issuer, &e))?;
    let status = answer.status();
    let body: Value = match read_limited(answer, issuer).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(e) if status.is_success() => return Err(e),
        Err(_) => Value::Null,
    };
    if status.is_success() {
        return if body.is_object() {
            Ok(body)
        } else {
            Err(OidcError::Protocol(format!(
                "HTTP {} without a JSON object",
                status.as_u16()
            )))
        };
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(OidcError::Unreachable {
            issuer: issuer.to_string(),
            message: format!("HTTP {}", status.as_u16()),
        });
    }
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .map(clean);
    Err(OidcError::Rejected { error, description })
}

/// Keeps a provider's words short and printable.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

fn unreachable(issuer: &str, e: &reqwest::Error) -> OidcError {
    // reqwest's Display includes the URL; endpoint URLs carry no secrets (forms go in bodies).
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), &crate::redact::redact_url(url.as_str()));
    }
    OidcError::Unreachable {
        issuer: issuer.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn discovery(issuer: &str, token: &str, auth: Option<&str>) -> Discovery {
        Discovery {
            issuer: issuer.into(),
            token_endpoint: token.into(),
            authorization_endpoint: auth.map(String::from),
            device_authorization_endpoint: None,
            scopes_supported: Vec::new(),
            code_challenge_methods_supported: Vec::new(),
        }
    }

    #[test]
    fn discovery_must_name_its_issuer_and_use_https() {
        let ok = discovery(
            "https://idp.example/realms/x",
            "https://idp.example/t",
            Some("https://idp.example/a"),
        );
        assert!(check_discovery("https://idp.example/realms/x/", &ok).is_ok());
        // Another issuer: refused (mix-up).
        let other = discovery("https://evil.example", "https://evil.example/t", None);
        let e = check_discovery("https://idp.example/realms/x", &other).unwrap_err();
        assert!(e.to_string().contains("another issuer"), "{e}");
        // Plain http endpoints: refused, unless on this machine.
        let plain = discovery("https://idp.example", "http://idp.example/t", None);
        assert!(check_discovery("https://idp.example", &plain).is_err());
        let plain = discovery(
            "https://idp.example",
            "https://idp.example/t",
            Some("http://idp.example/a"),
        );
        assert!(check_discovery("https://idp.example", &plain).is_err());
        for local in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "http://[::1]:5000",
        ] {
            let d = discovery(
                local,
                &format!("{local}/token"),
                Some(&format!("{local}/auth")),
            );
            assert!(check_discovery(local, &d).is_ok(), "{local}");
        }
    }

    /// One HTTP answer `body` (JSON) to whatever is asked, on a fresh port.
    async fn answer_once(body: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn absurd_lifetimes_from_a_provider_are_bounded() {
        let http = reqwest::Client::new();
        let addr = answer_once(
            r#"{"device_code": "d", "user_code": "U", "verification_uri": "http://x/",
                "expires_in": 18446744073709551615, "interval": 18446744073709551615}"#,
        )
        .await;
        let base = format!("http://{addr}");
        let mut d = discovery(&base, &format!("{base}/token"), None);
        d.device_authorization_endpoint = Some(format!("{base}/device"));
        let start = device_authorize(&http, &d, "c", "openid", None)
            .await
            .unwrap();
        assert_eq!(start.expires_in, MAX_DEVICE_CODE_LIFE_S);
        assert_eq!(start.interval, MAX_POLL_INTERVAL_S);
        // A deadline from it does not overflow.
        let _ = tokio::time::Instant::now() + Duration::from_secs(start.expires_in);
        let addr = answer_once(
            r#"{"access_token": "a", "token_type": "Bearer", "expires_in": 18446744073709551615}"#,
        )
        .await;
        let base = format!("http://{addr}");
        let d = discovery(&base, &format!("{base}/token"), None);
        let set = refresh(&http, &d, "c", &SecretString::new("rt"))
            .await
            .unwrap();
        assert_eq!(set.expires_in, Some(MAX_TOKEN_LIFE_S));
        let _ = time::OffsetDateTime::now_utc() + Duration::from_secs(MAX_TOKEN_LIFE_S);
    }

    #[tokio::test]
    async fn a_huge_answer_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..40 {
                let size = format!("{:x}\r\n", chunk.len());
                if s.write_all(size.as_bytes()).await.is_err()
                    || s.write_all(&chunk).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
        });
        let e = discover(&reqwest::Client::new(), &format!("http://{addr}"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    /// The providers of a `/credentials/oidc` document (as openEO backends list them).
    fn parse_providers(doc: &Value) -> Result<Vec<Provider>, String> {
        let list = doc.get("providers").cloned().ok_or("no providers")?;
        let mut ps: Vec<Provider> = serde_json::from_value(list).map_err(|e| e.to_string())?;
        for p in &mut ps {
            p.issuer = p.issuer.trim_end_matches('/').to_string();
        }
        if ps.is_empty() {
            return Err("no provider".into());
        }
        Ok(ps)
    }

    fn provider(clients: Value) -> Provider {
        parse_providers(&json!({"providers": [{
            "id": "egi", "issuer": "https://aai.egi.eu/oidc/", "title": "EGI",
            "scopes": ["openid", "email"], "default_clients": clients}]}))
        .unwrap()
        .remove(0)
    }

    #[test]
    fn providers_parse_and_the_first_is_the_default() {
        let doc = json!({"providers": [
            {"id": "a", "issuer": "https://a/", "title": "A"},
            {"id": "b", "issuer": "https://b", "title": "B"}]});
        let ps = parse_providers(&doc).unwrap();
        assert_eq!(ps[0].issuer, "https://a");
        assert_eq!(pick_provider(&ps, None).unwrap().id, "a");
        assert_eq!(pick_provider(&ps, Some("b")).unwrap().id, "b");
        let e = pick_provider(&ps, Some("c")).unwrap_err().to_string();
        assert!(e.contains("\"c\"") && e.contains("a, b"), "{e}");
        assert!(parse_providers(&json!({"providers": []})).is_err());
        assert!(parse_providers(&json!({})).is_err());
    }

    #[test]
    fn clients_are_picked_by_the_grants_of_the_flow() {
        let p = provider(json!([
            {"id": "implicit-only", "grant_types": ["implicit"]},
            {"id": "device-no-refresh", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code+pkce"]},
            {"id": "device", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code+pkce", "refresh_token"]},
            {"id": "web", "grant_types": ["authorization_code+pkce"]}
        ]));
        assert_eq!(pick_client(&p, Flow::Device).unwrap().id, "device");
        assert_eq!(pick_client(&p, Flow::Browser).unwrap().id, "web");
        let none = provider(json!([{"id": "implicit-only", "grant_types": ["implicit"]}]));
        assert!(pick_client(&none, Flow::Device).is_none());
    }

    #[test]
    fn scopes_add_offline_access_only_where_supported() {
        let p = provider(json!([]));
        let mut d = Discovery {
            issuer: "https://aai.egi.eu/oidc".into(),
            token_endpoint: "https://t".into(),
            authorization_endpoint: None,
            device_authorization_endpoint: None,
            scopes_supported: vec!["openid".into(), "email".into(), "offline_access".into()],
            code_challenge_methods_supported: vec![],
        };
        assert_eq!(scope(&p, &d, true), "email offline_access openid");
        assert_eq!(scope(&p, &d, false), "email openid");
        d.scopes_supported = vec!["openid".into()];
        assert_eq!(scope(&p, &d, true), "openid");
    }

    #[test]
    fn device_pkce_follows_the_listed_grants() {
        let p = provider(json!([
            {"id": "with", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code+pkce"]},
            {"id": "without", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}
        ]));
        let mut d = Discovery {
            issuer: "https://i".into(),
            token_endpoint: "https://t".into(),
            authorization_endpoint: None,
            device_authorization_endpoint: None,
            scopes_supported: vec![],
            code_challenge_methods_supported: vec!["S256".into()],
        };
        assert!(device_pkce(&p, "with", &d));
        assert!(!device_pkce(&p, "without", &d));
        assert!(device_pkce(&p, "own-client", &d));
        d.code_challenge_methods_supported.clear();
        assert!(!device_pkce(&p, "own-client", &d));
    }

    #[test]
    fn pkce_is_s256_of_a_64_character_verifier() {
        let p = Pkce::new();
        assert_eq!(p.verifier.expose().len(), 64);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(p.verifier.expose().as_bytes()));
        assert_eq!(p.challenge, expected);
        assert!(!p.challenge.contains('='));
        assert_ne!(Pkce::new().verifier.expose(), p.verifier.expose());
    }
}
