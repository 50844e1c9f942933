//! The small interface between logins and platforms.
//!
//! A platform adapter (`crate::platform`) needs an access token for its backend; the
//! login registry (`crate::auth`) has one. Neither module names the other: both speak
//! these types, and the daemon wires an [`Logins`] implementation (the login registry)
//! into the platform registry at start.
//!
//! - [`SecretString`]: a secret whose `Debug` prints `[REDACTED]` and that has no
//!   `Display`;
//! - [`Credentials`]: a live credential of one backend (access token renewed ahead of
//!   expiry; a refused token renewed once);
//! - [`Logins`]: finds the credential of a backend, if the user logged in to it;
//! - [`LoginProvider`], [`LoginClient`]: an OpenID Connect provider a backend accepts,
//!   as a platform describes it (openEO: `GET /credentials/oidc`; OGC API Processes:
//!   the backend's section of `config.toml`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

/// A secret (a token): `Debug` prints `[REDACTED]`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> SecretString {
        SecretString(secret.into())
    }

    /// The secret text, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> SecretString {
        SecretString(secret)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The refresh token (or client secret) was refused or is gone: log in again.
    #[error("login required: {0}")]
    LoginRequired(String),
    /// The identity provider is unreachable for now.
    #[error("{0}")]
    Unreachable(String),
    /// The token store (keyring) failed.
    #[error("{0}")]
    Store(String),
}

/// The current access token of a logged-in backend.
pub struct AccessToken {
    /// Id of the provider that issued it (openEO sends `oidc/<provider>/<token>`).
    pub provider_id: String,
    /// The token.
    pub token: SecretString,
}

/// A live credential of one backend.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// The current access token, renewed first when it is about to expire.
    async fn access_token(&self) -> Result<AccessToken, CredentialError>;

    /// The backend refused `used`: renew unless someone already did, and return the
    /// token to retry with.
    async fn rejected(&self, used: &SecretString) -> Result<AccessToken, CredentialError>;
}

/// Finds the credential of a backend.
pub trait Logins: Send + Sync {
    /// The credential of `endpoint` (normalised by the implementation), if logged in.
    fn credentials(&self, endpoint: &str) -> Option<Arc<dyn Credentials>>;
}

/// No logins at all (tests, tools).
pub struct NoLogins;

impl Logins for NoLogins {
    fn credentials(&self, _endpoint: &str) -> Option<Arc<dyn Credentials>> {
        None
    }
}

/// Normalises an endpoint for lookups: lower-case scheme and host, no trailing slash.
/// Logins and backends are found under this key.
pub fn normalise_endpoint(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase(),
                path
            )
        }
        None => trimmed.to_string(),
    }
}

/// A client a backend lists for a provider (openEO `default_clients`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LoginClient {
    /// Client id.
    pub id: String,
    /// Grant types, openEO spelling (`authorization_code+pkce`, `..device_code+pkce`, ...).
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Redirect URLs registered for the client.
    #[serde(default)]
    pub redirect_urls: Vec<String>,
}

/// An OpenID Connect provider a backend accepts tokens of.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LoginProvider {
    /// Id (openEO: the middle of `oidc/<id>/<token>`).
    pub id: String,
    /// Issuer URL (no trailing slash).
    pub issuer: String,
    /// Human-readable name.
    #[serde(default)]
    pub title: String,
    /// Scopes to ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Public clients a tool may use.
    #[serde(default)]
    pub default_clients: Vec<LoginClient>,
}
