//! A logged-in backend: its [`Session`] (provider id, method) over a shared [`Credential`]
//! (one per issuer and client id, so two backends that use the same provider and client
//! never refresh the same rotating refresh token at once).
//!
//! The access token lives in memory only. It is renewed ahead of expiry (a quarter of its
//! lifetime plus a second before, at most a minute) by at most one refresh at a time per credential:
//! callers that find it stale wait on the credential's lock, and the first one through
//! refreshes while the others then find the fresh token. A rotated refresh token is written
//! to the token store before the new access token is handed out. When the backend refuses
//! a token (403 `TokenInvalid`) the caller reports it with [`Session::rejected`], which
//! renews once unless another caller already did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::backend_tokens::{BackendTokenStore, BackendTokenStoreError, SecretString, TokenKey};
use super::oidc::{self, Discovery, OidcError};
use async_trait::async_trait;

use crate::credentials::{AccessToken, Credentials};

/// Longest head start of a renewal before the access token expires.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// How a credential is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Device code login; renewed with the refresh token.
    Device,
    /// Browser login; renewed with the refresh token.
    Browser,
    /// Service account; renewed by the client credentials grant with the stored secret.
    ClientCredentials,
}

impl Method {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Device => "device",
            Method::Browser => "browser",
            Method::ClientCredentials => "client_credentials",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "device" => Some(Method::Device),
            "browser" => Some(Method::Browser),
            "client_credentials" => Some(Method::ClientCredentials),
            _ => None,
        }
    }
}

/// Why no access token could be had (the credentials interface's error).
pub use crate::credentials::CredentialError as SessionError;

struct Access {
    token: SecretString,
    /// When to renew (ahead of expiry); `None`: no known expiry.
    renew_at: Option<Instant>,
    /// Expiry, for display.
    expires_utc: Option<OffsetDateTime>,
}

/// One (issuer, client id) credential: the access token, the renewal lock, and the
/// state of the login.
pub struct Credential {
    key: TokenKey,
    method: Method,
    scope: String,
    http: reqwest::Client,
    tokens: BackendTokenStore,
    discovery: OnceCell<Discovery>,
    access: RwLock<Option<Access>>,
    renewal: tokio::sync::Mutex<()>,
    /// `Some(reason)` once the refresh token was refused: a new login is needed.
    refused: Mutex<Option<String>>,
    renewals: AtomicU64,
}

impl Credential {
    /// A credential whose secret (refresh token or client secret) is in `tokens` under
    /// `key`. `discovery` is known right after a login, fetched on first renewal after a
    /// restart.
    pub fn new(
        key: TokenKey,
        method: Method,
        scope: String,
        http: reqwest::Client,
        tokens: BackendTokenStore,
        discovery: Option<Discovery>,
    ) -> Credential {
        let cell = OnceCell::new();
        if let Some(d) = discovery {
            let _ = cell.set(d);
        }
        Credential {
            key,
            method,
            scope,
            http,
            tokens,
            discovery: cell,
            access: RwLock::new(None),
            renewal: tokio::sync::Mutex::new(()),
            refused: Mutex::new(None),
            renewals: AtomicU64::new(0),
        }
    }

    /// The token store key.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// How it is renewed.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Renewals so far (refresh or client credentials grants sent).
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Why a new login is needed, if it is.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the current access token expires, if known.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|a| a.expires_utc)
    }

    /// Installs the tokens of a fresh login: the secret goes to the token store first
    /// (a refresh token, or for client credentials the client secret), then the access
    /// token is kept in memory.
    pub async fn install(
        &self,
        set: oidc::TokenSet,
        secret: Option<&SecretString>,
    ) -> Result<(), SessionError> {
        let keep = match self.method {
            Method::ClientCredentials => secret,
            _ => set.refresh_token.as_ref(),
        };
        if let Some(s) = keep {
            self.tokens
                .put(&self.key, s.expose())
                .await
                .map_err(store_error)?;
        }
        self.set_access(set);
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn set_access(&self, set: oidc::TokenSet) {
        let now = Instant::now();
        let (renew_at, expires_utc) = match set.expires_in {
            Some(secs) => {
                let life = Duration::from_secs(secs);
                // A quarter of the lifetime plus a second (providers count `iat`/`exp` in
                // whole seconds, so a token can expire up to a second before our clock
                // says), at most a minute, at most half the lifetime.
                let margin = (life / 4 + Duration::from_secs(1))
                    .min(MAX_MARGIN)
                    .min(life / 2);
                (
                    Some(now + life - margin),
                    Some(OffsetDateTime::now_utc() + life),
                )
            }
            None => (None, None),
        };
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Some(Access {
            token: set.access_token,
            renew_at,
            expires_utc,
        });
    }

    fn fresh(&self) -> Option<SecretString> {
        let guard = self.access.read().unwrap_or_else(|e| e.into_inner());
        let a = guard.as_ref()?;
        match a.renew_at {
            Some(at) if Instant::now() >= at => None,
            _ => Some(a.token.clone()),
        }
    }

    /// A valid access token, renewed first if it is about to expire.
    pub async fn access_token(&self) -> Result<SecretString, SessionError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _one = self.renewal.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        self.renew().await
    }

    /// The backend refused `used`: renew unless someone already did, and return the
    /// token to retry with.
    pub async fn rejected(&self, used: &SecretString) -> Result<SecretString, SessionError> {
        let _one = self.renewal.lock().await;
        {
            let guard = self.access.read().unwrap_or_else(|e| e.into_inner());
            if let Some(a) = guard.as_ref() {
                if a.token.expose() != used.expose() {
                    return Ok(a.token.clone());
                }
            }
        }
        self.renew().await
    }

    /// Renews; the caller holds the renewal lock.
    async fn renew(&self) -> Result<SecretString, SessionError> {
        if let Some(reason) = self.refused() {
            return Err(SessionError::LoginRequired(reason));
        }
        let discovery = self
            .discovery
            .get_or_try_init(|| oidc::discover(&self.http, self.key.issuer()))
            .await
            .map_err(|e| self.oidc_error(e))?;
        let mut secret = self
            .tokens
            .get(&self.key)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                self.refuse(match self.method {
                    Method::ClientCredentials => {
                        "the client secret is no longer in the token store".to_string()
                    }
                    _ => "no refresh token in the token store".to_string(),
                })
            })?;
        let mut reread = false;
        let set = loop {
            self.renewals.fetch_add(1, Ordering::Relaxed);
            let answer = match self.method {
                Method::ClientCredentials => {
                    oidc::client_credentials(
                        &self.http,
                        discovery,
                        self.key.client_id(),
                        &secret,
                        &self.scope,
                    )
                    .await
                }
                _ => oidc::refresh(&self.http, discovery, self.key.client_id(), &secret).await,
            };
            match answer {
                Ok(s) => break s,
                Err(e @ OidcError::Rejected { .. }) => {
                    if self.method == Method::ClientCredentials {
                        return Err(self.refuse(e.to_string()));
                    }
                    // Another writer (a second daemon on the same keyring) may have
                    // rotated the refresh token since we read it: try the stored one once.
                    let stored = self.tokens.get(&self.key).await.ok().flatten();
                    match stored {
                        Some(now) if now.expose() != secret.expose() && !reread => {
                            secret = now;
                            reread = true;
                            continue;
                        }
                        Some(now) if now.expose() == secret.expose() => {
                            // The refused token is dead; do not keep it around.
                            if let Err(err) = self.tokens.delete(&self.key).await {
                                tracing::warn!(issuer = %self.key.issuer(), error = %err, "could not remove a refused refresh token");
                            }
                        }
                        _ => {}
                    }
                    return Err(self.refuse(e.to_string()));
                }
                Err(e) => return Err(self.oidc_error(e)),
            }
        };
        if self.method != Method::ClientCredentials {
            if let Some(rotated) = &set.refresh_token {
                if rotated.expose() != secret.expose() {
                    // Stored before the new access token is used: a crash now still
                    // leaves the valid (rotated) refresh token in the store.
                    self.tokens
                        .put(&self.key, rotated.expose())
                        .await
                        .map_err(store_error)?;
                    crate::failpoint::failpoint("refresh:after_store");
                }
            }
        }
        tracing::info!(issuer = %self.key.issuer(), client = %self.key.client_id(), "access token renewed");
        let token = set.access_token.clone();
        self.set_access(set);
        Ok(token)
    }

    fn refuse(&self, reason: String) -> SessionError {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        tracing::warn!(issuer = %self.key.issuer(), reason = %reason, "login required");
        SessionError::LoginRequired(reason)
    }

    fn oidc_error(&self, e: OidcError) -> SessionError {
        if e.is_transient() {
            SessionError::Unreachable(e.to_string())
        } else {
            self.refuse(e.to_string())
        }
    }
}

fn store_error(e: BackendTokenStoreError) -> SessionError {
    SessionError::Store(e.to_string())
}

/// A backend's login: which provider id to put in the bearer, over a shared credential.
pub struct Session {
    /// Normalised backend URL.
    pub endpoint: String,
    /// Provider id (`oidc/<provider_id>/<token>`).
    pub provider_id: String,
    /// Provider title.
    pub provider_title: Option<String>,
    /// The credential.
    pub credential: std::sync::Arc<Credential>,
}

#[async_trait]
impl Credentials for Session {
    async fn access_token(&self) -> Result<AccessToken, SessionError> {
        Ok(AccessToken {
            provider_id: self.provider_id.clone(),
            token: self.credential.access_token().await?,
        })
    }

    async fn rejected(&self, used: &SecretString) -> Result<AccessToken, SessionError> {
        Ok(AccessToken {
            provider_id: self.provider_id.clone(),
            token: self.credential.rejected(used).await?,
        })
    }
}
