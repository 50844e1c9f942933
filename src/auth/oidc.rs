//! The OpenID Connect side of a backend login: what a backend's `/credentials/oidc` offers
//! (providers and their default clients), the issuer's discovery document, and the token
//! endpoint grants the daemon uses — device code (RFC 8628) with PKCE, authorization code
//! with PKCE S256 (RFC 7636), client credentials, and refresh (with rotation).
//!
//! The grants are the `oauth2` crate's: it builds the requests, reads the answers and
//! polls a device login. What stays here is ours: which provider and client a backend
//! offers, discovery (and the checks that make a discovery document safe to use), the
//! scopes, the PKCE challenge on the device authorization request (openEO's "device code
//! flow + PKCE", which `oauth2` does not set there), the HTTP exchange under our timeout
//! and size limit, the bounds on a provider's numbers, and the mapping of `oauth2`'s
//! errors to [`OidcError`].
//!
//! Pure protocol: no storage and no state. Every secret travels as a [`SecretString`]
//! or an `oauth2` secret type (both redact `Debug`) and no error message carries a token:
//! an identity provider's error is reduced to its `error` code and `error_description`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::{BasicClient, BasicTokenResponse, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, ErrorResponseType, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, StandardErrorResponse,
    TokenResponse as _, TokenUrl,
};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::backend_tokens::SecretString;

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
    let body = read_limited(answer)
        .await
        .map_err(|e| transport_error(issuer, e))?;
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

/// A PKCE pair (S256): a random 64-character verifier and its challenge.
pub struct Pkce {
    /// Sent with the token request (single use: the `oauth2` type is not `Clone`).
    pub verifier: PkceCodeVerifier,
    /// Sent with the authorization request.
    pub challenge: PkceCodeChallenge,
}

impl Pkce {
    /// A fresh pair (48 random bytes make the 64-character verifier).
    pub fn new() -> Pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(48);
        Pkce {
            verifier,
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

/// The `oauth2` client of one issuer's token endpoint for `client_id`.
type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(discovery: &Discovery, client_id: &str) -> Result<TokenClient, OidcError> {
    let token_url = TokenUrl::new(discovery.token_endpoint.clone())
        .map_err(|e| OidcError::Protocol(format!("token_endpoint: {e}")))?;
    Ok(BasicClient::new(ClientId::new(client_id.to_string())).set_token_uri(token_url))
}

/// The space-separated scope of [`scope`] as `oauth2` scopes.
fn scopes(scope: &str) -> impl Iterator<Item = Scope> + '_ {
    scope.split_whitespace().map(|s| Scope::new(s.to_string()))
}

/// What the device authorization endpoint answered.
#[derive(Debug)]
pub struct DeviceStart {
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
    /// The answer itself, with the numbers above (it holds the device code, a secret).
    answer: StandardDeviceAuthorizationResponse,
}

/// Starts a device code login. With `pkce`, its challenge goes with the request (openEO's
/// "device code flow + PKCE"; `oauth2` has no setter for it on this request).
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
    let endpoint = DeviceAuthorizationUrl::new(endpoint.to_string())
        .map_err(|e| OidcError::Protocol(format!("device_authorization_endpoint: {e}")))?;
    let client = client(discovery, client_id)?.set_device_authorization_url(endpoint);
    let mut request = client.exchange_device_code().add_scopes(scopes(scope));
    if let Some(p) = pkce {
        request = request
            .add_extra_param("code_challenge", p.challenge.as_str())
            .add_extra_param("code_challenge_method", p.challenge.method().as_str());
    }
    let answer: StandardDeviceAuthorizationResponse = request
        .request_async(&Http::new(http))
        .await
        .map_err(|e| oauth_error(&discovery.issuer, e))?;
    // A provider's numbers are kept within sense: a code lives at most a day, and is
    // polled at least every 5 minutes (no overflow in deadlines). `oauth2` polls with
    // the numbers of the answer, whose fields are private: they are replaced through
    // its serde form.
    let expires_in = answer
        .expires_in()
        .as_secs()
        .clamp(1, MAX_DEVICE_CODE_LIFE_S);
    let interval = answer.interval().as_secs().clamp(1, MAX_POLL_INTERVAL_S);
    let mut form = serde_json::to_value(&answer)
        .map_err(|e| OidcError::Protocol(format!("device authorization answer: {e}")))?;
    form["expires_in"] = expires_in.into();
    form["interval"] = interval.into();
    let answer: StandardDeviceAuthorizationResponse = serde_json::from_value(form)
        .map_err(|e| OidcError::Protocol(format!("device authorization answer: {e}")))?;
    Ok(DeviceStart {
        user_code: answer.user_code().secret().clone(),
        verification_uri: answer.verification_uri().to_string(),
        verification_uri_complete: answer
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        expires_in,
        interval,
        answer,
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

/// How polling a device login ended, when it did not fail.
#[derive(Debug)]
pub enum DeviceEnd {
    /// Logged in.
    Done(TokenSet),
    /// The code expired before the user finished.
    Expired,
    /// The caller no longer wants the login (`go_on` said no).
    Stopped,
}

/// Polls the token endpoint until the user has finished a device login. Waits one
/// interval before the first poll; `authorization_pending` keeps the interval,
/// `slow_down` adds 5 s to it, a request that fails (provider unreachable) doubles it, up
/// to a minute (RFC 8628 §3.5). Before each poll, `go_on` is asked whether the login is
/// still wanted, and the code's lifetime is checked.
pub async fn device_token(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    start: &DeviceStart,
    pkce: Option<&Pkce>,
    go_on: impl Fn() -> bool + Send + Sync,
) -> Result<DeviceEnd, OidcError> {
    let deadline = Instant::now() + Duration::from_secs(start.expires_in);
    let halt = || {
        if Instant::now() >= deadline {
            Some(DeviceEnd::Expired)
        } else if !go_on() {
            Some(DeviceEnd::Stopped)
        } else {
            None
        }
    };
    tokio::time::sleep(Duration::from_secs(start.interval)).await;
    if let Some(end) = halt() {
        return Ok(end);
    }
    let client = client(discovery, client_id)?;
    let mut request = client
        .exchange_device_access_token(&start.answer)
        .set_max_backoff_interval(Duration::from_secs(start.interval.max(60)));
    if let Some(p) = pkce {
        request = request.add_extra_param("code_verifier", p.verifier.secret().as_str());
    }
    // `oauth2` polls and sleeps between polls; the sleep is where a halt is noticed: it
    // then says why and never wakes, and the select below returns.
    let (halted, mut why) = tokio::sync::mpsc::unbounded_channel();
    let sleep = |wait: Duration| -> BoxFuture<'_, ()> {
        let (halted, halt) = (&halted, &halt);
        Box::pin(async move {
            tokio::time::sleep(wait.min(Duration::from_secs(MAX_POLL_INTERVAL_S))).await;
            if let Some(end) = halt() {
                let _ = halted.send(end);
                std::future::pending::<()>().await;
            }
        })
    };
    let http = Http {
        client: http,
        polling: Some(&discovery.issuer),
    };
    let poll = request.request_async(&http, sleep, None);
    tokio::select! {
        biased;
        Some(end) = why.recv() => Ok(end),
        answer = poll => answer
            .map_err(|e| oauth_error(&discovery.issuer, e))
            .and_then(token_set)
            .map(DeviceEnd::Done),
    }
}

/// The URL the browser opens for an authorization code login (with the PKCE challenge),
/// and the `state` it carries (32 random bytes, base64url).
pub fn authorization_url(
    discovery: &Discovery,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    pkce: &Pkce,
) -> Result<(String, String), OidcError> {
    let endpoint = discovery.authorization_endpoint.as_deref().ok_or_else(|| {
        OidcError::Unsupported(format!(
            "the identity provider {} has no authorization endpoint; use the device flow",
            discovery.issuer
        ))
    })?;
    let endpoint = AuthUrl::new(endpoint.to_string())
        .map_err(|e| OidcError::Protocol(format!("authorization_endpoint: {e}")))?;
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| OidcError::Protocol(format!("redirect_uri: {e}")))?;
    let client = client(discovery, client_id)?
        .set_auth_uri(endpoint)
        .set_redirect_uri(redirect);
    let (url, state) = client
        .authorize_url(|| CsrfToken::new_random_len(32))
        .add_scopes(scopes(scope))
        .set_pkce_challenge(pkce.challenge.clone())
        .url();
    Ok((url.to_string(), state.into_secret()))
}

/// Exchanges an authorization code (with the PKCE verifier, used up).
pub async fn exchange_code(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: PkceCodeVerifier,
) -> Result<TokenSet, OidcError> {
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| OidcError::Protocol(format!("redirect_uri: {e}")))?;
    let client = client(discovery, client_id)?.set_redirect_uri(redirect);
    let answer = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(verifier)
        .request_async(&Http::new(http))
        .await
        .map_err(|e| oauth_error(&discovery.issuer, e))?;
    token_set(answer)
}

/// The client credentials grant (HTTP Basic client authentication, id and secret
/// form-encoded first as RFC 6749 §2.3.1 asks).
pub async fn client_credentials(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    client_secret: &SecretString,
    scope: &str,
) -> Result<TokenSet, OidcError> {
    let client = client(discovery, client_id)?
        .set_client_secret(ClientSecret::new(client_secret.expose().to_string()));
    let answer = client
        .exchange_client_credentials()
        .add_scopes(scopes(scope))
        .request_async(&Http::new(http))
        .await
        .map_err(|e| oauth_error(&discovery.issuer, e))?;
    token_set(answer)
}

/// The refresh token grant. The answer may carry a rotated refresh token.
pub async fn refresh(
    http: &reqwest::Client,
    discovery: &Discovery,
    client_id: &str,
    refresh_token: &SecretString,
) -> Result<TokenSet, OidcError> {
    let client = client(discovery, client_id)?;
    let refresh_token = RefreshToken::new(refresh_token.expose().to_string());
    let answer = client
        .exchange_refresh_token(&refresh_token)
        .request_async(&Http::new(http))
        .await
        .map_err(|e| oauth_error(&discovery.issuer, e))?;
    token_set(answer)
}

/// Our reading of a token answer `oauth2` parsed: a bearer token, not empty; an empty
/// refresh token is none; the lifetime is bounded by [`MAX_TOKEN_LIFE_S`].
fn token_set(answer: BasicTokenResponse) -> Result<TokenSet, OidcError> {
    if *answer.token_type() != BasicTokenType::Bearer {
        return Err(OidcError::Protocol(format!(
            "token_type {:?} is not bearer",
            clean(answer.token_type().as_ref())
        )));
    }
    let access = answer.access_token().secret();
    if access.is_empty() {
        return Err(OidcError::Protocol("no access_token".into()));
    }
    Ok(TokenSet {
        access_token: SecretString::new(access.as_str()),
        refresh_token: answer
            .refresh_token()
            .map(|t| t.secret())
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::new(s.as_str())),
        expires_in: answer
            .expires_in()
            .map(|d| d.as_secs().min(MAX_TOKEN_LIFE_S)),
    })
}

/// What went wrong below the OAuth protocol, for `oauth2` to hand back as
/// [`RequestTokenError::Request`]. Carries no secret: URLs are redacted, bodies are not
/// kept.
#[derive(Debug, thiserror::Error)]
enum Transport {
    /// Not reached, timed out, or a server error (5xx) or 429 answered: try again later.
    #[error("{0}")]
    Unreachable(String),
    /// An HTTP error status whose body is not an OAuth error.
    #[error("HTTP {0}")]
    Refused(u16),
    /// The answer is larger than [`MAX_ANSWER_BYTES`].
    #[error("the identity provider's answer is larger than {} KiB", MAX_ANSWER_BYTES / 1024)]
    TooLarge,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The HTTP client `oauth2` sends its requests with: [`send`] over our client.
struct Http<'a> {
    client: &'a reqwest::Client,
    /// The issuer of a device login being polled: `oauth2` polls on (waiting longer)
    /// after a failed request, so each one is logged here.
    polling: Option<&'a str>,
}

impl<'a> Http<'a> {
    fn new(client: &'a reqwest::Client) -> Http<'a> {
        Http {
            client,
            polling: None,
        }
    }
}

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = Transport;
    type Future = BoxFuture<'c, Result<HttpResponse, Transport>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let answer = send(self.client, request).await;
            if let (Err(e), Some(issuer)) = (&answer, self.polling) {
                tracing::warn!(issuer, error = %e, "device login: a poll failed; polling on");
            }
            answer
        })
    }
}

/// Sends one request `oauth2` built, with our per-request timeout and answer size limit
/// (the client never follows redirects: see [`super::Auth::new`]). A server error or 429
/// is [`Transport::Unreachable`], and an error status whose body is not an OAuth error
/// (`{"error": ...}`) is [`Transport::Refused`]; everything else is for `oauth2` to read.
async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let unreachable = |e: reqwest::Error| Transport::Unreachable(transport_message(&e));
    let mut request = reqwest::Request::try_from(request).map_err(unreachable)?;
    *request.timeout_mut() = Some(TIMEOUT);
    let answer = http.execute(request).await.map_err(unreachable)?;
    let status = answer.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Transport::Unreachable(format!("HTTP {}", status.as_u16())));
    }
    let mut response = oauth2::http::Response::builder()
        .status(status)
        .version(answer.version());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let body = match read_limited(answer).await {
        Ok(body) => body,
        // An error answer too large or cut is an error without an OAuth reason.
        Err(_) if !status.is_success() => Vec::new(),
        Err(e) => return Err(e),
    };
    if !status.is_success() {
        let oauth = serde_json::from_slice::<Value>(&body)
            .is_ok_and(|v| v.get("error").is_some_and(Value::is_string));
        if !oauth {
            return Err(Transport::Refused(status.as_u16()));
        }
    }
    response
        .body(body)
        .map_err(|e| Transport::Unreachable(e.to_string()))
}

/// Reads an answer body up to [`MAX_ANSWER_BYTES`].
async fn read_limited(answer: reqwest::Response) -> Result<Vec<u8>, Transport> {
    crate::body_limit::read_limited(answer, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| Transport::Unreachable(transport_message(&e)))?
        .ok_or(Transport::TooLarge)
}

/// Maps what `oauth2` reports to [`OidcError`]: the provider's OAuth error is
/// [`OidcError::Rejected`] (its code and description, cleaned), a transport failure keeps
/// its kind, and an answer that does not parse is [`OidcError::Protocol`]. No message
/// carries a token: a parse error names where it failed, never the values it read.
fn oauth_error<T>(
    issuer: &str,
    e: RequestTokenError<Transport, StandardErrorResponse<T>>,
) -> OidcError
where
    T: ErrorResponseType + std::fmt::Display + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Rejected {
            error: clean(&r.error().to_string()),
            description: r.error_description().map(|d| clean(d)),
        },
        RequestTokenError::Request(e) => transport_error(issuer, e),
        RequestTokenError::Parse(e, _body) => {
            let inner = e.inner().to_string();
            // serde names a missing field, and quotes the values it did not expect.
            let what = if inner.starts_with("missing field") {
                inner
            } else {
                format!("{:?} error", e.inner().classify())
            };
            OidcError::Protocol(format!("the answer does not parse at {}: {what}", e.path()))
        }
        RequestTokenError::Other(message) => OidcError::Protocol(clean(&message)),
    }
}

/// A transport failure as [`OidcError`]: unreachable is transient, an error status
/// without an OAuth reason is a refusal, a huge answer breaks the protocol.
fn transport_error(issuer: &str, e: Transport) -> OidcError {
    match e {
        Transport::Unreachable(message) => OidcError::Unreachable {
            issuer: issuer.to_string(),
            message,
        },
        Transport::Refused(status) => OidcError::Rejected {
            error: format!("http_{status}"),
            description: None,
        },
        Transport::TooLarge => OidcError::Protocol(e.to_string()),
    }
}

/// Keeps a provider's words short and printable.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// reqwest's Display includes the URL; endpoint URLs carry no secrets (forms go in
/// bodies), but the text goes through the one redaction policy all the same.
fn transport_message(e: &reqwest::Error) -> String {
    crate::redact::redact(&e.to_string())
}

fn unreachable(issuer: &str, e: &reqwest::Error) -> OidcError {
    OidcError::Unreachable {
        issuer: issuer.to_string(),
        message: transport_message(e),
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
        use sha2::{Digest as _, Sha256};
        let p = Pkce::new();
        assert_eq!(p.verifier.secret().len(), 64);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(p.verifier.secret().as_bytes()));
        assert_eq!(p.challenge.as_str(), expected);
        assert_eq!(p.challenge.method().as_str(), "S256");
        assert!(!p.challenge.as_str().contains('='));
        assert_ne!(Pkce::new().verifier.secret(), p.verifier.secret());
    }

    #[test]
    fn the_authorization_url_carries_the_flow_and_a_fresh_state() {
        let d = discovery(
            "https://idp.example",
            "https://idp.example/token",
            Some("https://idp.example/auth?kc_idp_hint=egi"),
        );
        let pkce = Pkce::new();
        let (url, state) = authorization_url(
            &d,
            "public",
            "http://127.0.0.1:1/auth/callback",
            "openid offline_access",
            &pkce,
        )
        .unwrap();
        let url = reqwest::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["kc_idp_hint"], "egi", "the endpoint's own query is kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "public");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:1/auth/callback");
        assert_eq!(q["scope"], "openid offline_access");
        assert_eq!(q["state"], state);
        assert_eq!(state.len(), 43);
        assert_eq!(q["code_challenge"], pkce.challenge.as_str());
        assert_eq!(q["code_challenge_method"], "S256");
        let (_, other) =
            authorization_url(&d, "public", "http://127.0.0.1:1/cb", "openid", &pkce).unwrap();
        assert_ne!(state, other);
    }

    /// One HTTP answer (`status` line, JSON `body`) to whatever is asked, on a fresh port;
    /// the request is handed back.
    async fn answer_with(
        status: &'static str,
        body: &'static str,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
        (addr, rx)
    }

    async fn refresh_answered(
        status: &'static str,
        body: &'static str,
    ) -> Result<TokenSet, OidcError> {
        let (addr, _) = answer_with(status, body).await;
        let base = format!("http://{addr}");
        let d = discovery(&base, &format!("{base}/token"), None);
        refresh(&reqwest::Client::new(), &d, "c", &SecretString::new("rt")).await
    }

    #[tokio::test]
    async fn answers_map_to_transient_refused_or_protocol_errors() {
        let e = refresh_answered(
            "400 Bad Request",
            r#"{"error": "invalid_grant", "error_description": "grant\nrevoked"}"#,
        )
        .await
        .unwrap_err();
        match &e {
            OidcError::Rejected { error, description } => {
                assert_eq!(error, "invalid_grant");
                assert_eq!(description.as_deref(), Some("grantrevoked"));
            }
            other => panic!("{other:?}"),
        }
        let e = refresh_answered("503 Service Unavailable", "{}")
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        let e = refresh_answered("429 Too Many Requests", "")
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        let e = refresh_answered("403 Forbidden", "<html>no</html>")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, OidcError::Rejected { error, .. } if error == "http_403"),
            "{e:?}"
        );
        let e = refresh_answered("200 OK", r#"{"access_token": "a", "token_type": "mac"}"#)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not bearer"), "{e}");
        let e = refresh_answered("200 OK", r#"{"access_token": "", "token_type": "Bearer"}"#)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no access_token"), "{e}");
        let e = refresh_answered("200 OK", r#"{"token_type": "bearer"}"#)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("access_token"), "{e}");
        // A token in an answer that does not parse stays out of the message.
        let e = refresh_answered(
            "200 OK",
            r#"{"access_token": "SECRET-ACCESS", "refresh_token": ["SECRET-REFRESH"], "token_type": "bearer"}"#,
        )
        .await
        .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, OidcError::Protocol(_)), "{text}");
        assert!(
            text.contains("refresh_token") && !text.contains("SECRET"),
            "{text}"
        );
        // Rotation: a new refresh token comes back; an empty one is none.
        let set = refresh_answered(
            "200 OK",
            r#"{"access_token": "a", "token_type": "Bearer", "refresh_token": "r2", "expires_in": 60}"#,
        )
        .await
        .unwrap();
        assert_eq!(set.access_token.expose(), "a");
        assert_eq!(set.refresh_token.unwrap().expose(), "r2");
        assert_eq!(set.expires_in, Some(60));
        let set = refresh_answered(
            "200 OK",
            r#"{"access_token": "a", "token_type": "bearer", "refresh_token": ""}"#,
        )
        .await
        .unwrap();
        assert!(set.refresh_token.is_none());
        assert_eq!(set.expires_in, None);
    }

    #[tokio::test]
    async fn grants_send_what_the_provider_expects() {
        let ok = r#"{"access_token": "a", "token_type": "Bearer"}"#;
        let http = reqwest::Client::new();
        let form = |request: &str| -> std::collections::HashMap<String, String> {
            let body = request.split("\r\n\r\n").nth(1).unwrap_or_default();
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect()
        };
        // Refresh: a public client, in the body.
        let (addr, sent) = answer_with("200 OK", ok).await;
        let base = format!("http://{addr}");
        let d = discovery(&base, &format!("{base}/token"), None);
        refresh(&http, &d, "pub", &SecretString::new("rt"))
            .await
            .unwrap();
        let f = form(&sent.await.unwrap());
        assert_eq!(f["grant_type"], "refresh_token");
        assert_eq!(f["client_id"], "pub");
        assert_eq!(f["refresh_token"], "rt");
        // Client credentials: HTTP Basic, the scope in the body.
        let (addr, sent) = answer_with("200 OK", ok).await;
        let base = format!("http://{addr}");
        let d = discovery(&base, &format!("{base}/token"), None);
        client_credentials(
            &http,
            &d,
            "robot",
            &SecretString::new("s3cret"),
            "openid email",
        )
        .await
        .unwrap();
        let request = sent.await.unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        assert!(
            request
                .to_ascii_lowercase()
                .contains(&format!("authorization: basic {basic}").to_ascii_lowercase()),
            "{request}"
        );
        let f = form(&request);
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["scope"], "openid email");
        assert!(!f.contains_key("client_secret"));
        // Authorization code: the verifier and the redirect.
        let (addr, sent) = answer_with("200 OK", ok).await;
        let base = format!("http://{addr}");
        let d = discovery(&base, &format!("{base}/token"), None);
        let pkce = Pkce::new();
        let verifier = pkce.verifier.secret().clone();
        exchange_code(
            &http,
            &d,
            "pub",
            "the-code",
            "http://127.0.0.1:1/cb",
            pkce.verifier,
        )
        .await
        .unwrap();
        let f = form(&sent.await.unwrap());
        assert_eq!(f["grant_type"], "authorization_code");
        assert_eq!(f["code"], "the-code");
        assert_eq!(f["code_verifier"], verifier);
        assert_eq!(f["redirect_uri"], "http://127.0.0.1:1/cb");
        assert_eq!(f["client_id"], "pub");
        // Device authorization with PKCE: the challenge goes with the request.
        let (addr, sent) = answer_with(
            "200 OK",
            r#"{"device_code": "d", "user_code": "U", "verification_url": "http://x/", "expires_in": 60}"#,
        )
        .await;
        let base = format!("http://{addr}");
        let mut d = discovery(&base, &format!("{base}/token"), None);
        d.device_authorization_endpoint = Some(format!("{base}/device"));
        let pkce = Pkce::new();
        let start = device_authorize(&http, &d, "pub", "openid", Some(&pkce))
            .await
            .unwrap();
        assert_eq!(start.verification_uri, "http://x/");
        assert_eq!(start.interval, 5);
        let f = form(&sent.await.unwrap());
        assert_eq!(f["client_id"], "pub");
        assert_eq!(f["scope"], "openid");
        assert_eq!(f["code_challenge"], pkce.challenge.as_str());
        assert_eq!(f["code_challenge_method"], "S256");
        assert!(format!("{start:?}").contains("[redacted]"), "{start:?}");
    }

    #[tokio::test]
    async fn device_polling_stops_when_the_login_is_no_longer_wanted() {
        let (addr, _) = answer_with(
            "200 OK",
            r#"{"device_code": "d", "user_code": "U", "verification_uri": "http://x/", "expires_in": 60, "interval": 1}"#,
        )
        .await;
        let base = format!("http://{addr}");
        let mut d = discovery(&base, &format!("{base}/token"), None);
        d.device_authorization_endpoint = Some(format!("{base}/device"));
        let http = reqwest::Client::new();
        let start = device_authorize(&http, &d, "c", "openid", None)
            .await
            .unwrap();
        // Nobody listens any more: a poll would fail as unreachable and poll on.
        let end = device_token(&http, &d, "c", &start, None, || false).await;
        assert!(matches!(end, Ok(DeviceEnd::Stopped)), "{end:?}");
    }
}
