//! Backend authentication: logging in to a backend once and keeping its credential fresh.
//!
//! - [`oidc`]: the protocol (the backend's providers, discovery, device / browser / client
//!   credentials flows and refresh, the flows through the `oauth2` crate);
//! - [`session`]: a logged-in backend and its credential (access token in memory, renewal
//!   ahead of expiry, one renewal at a time per issuer and client);
//! - [`tokens`]: the token store over the OS keyring (or an opt-in 0600 file);
//! - this module: [`Auth`], the daemon's registry of logins: it starts logins (answering
//!   the API at once; device logins are polled by a background task, browser logins end
//!   at `GET /auth/callback`), remembers which backend uses which provider and client (in
//!   SQLite, nothing secret), restores sessions after a restart, logs out, and tells
//!   each backend's login state. It implements [`crate::credentials::Logins`]: the
//!   platforms find a backend's credential through that interface, and this module
//!   knows nothing of platforms (the providers a backend accepts are handed in).

pub mod backend_tokens;
pub mod oidc;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;

use self::backend_tokens::{
    BackendTokenStore, BackendTokenStoreError, SecretString, StoreKind, TokenKey,
};
use self::oidc::{Discovery, Flow, OidcError, Pkce, Provider};
use self::session::{Credential, Method, Session, SessionError};
use crate::background::Background;
use crate::credentials::{normalise_endpoint, Credentials, Logins};
use crate::events::{Event, EventBus};
use crate::store::{LoginRecord, Store, StoreError};

/// How long a browser login may take from start to callback. Pending browser logins
/// are a plain map, swept when a new one starts and checked at the callback: a cache
/// with a time to live would drop a late one at a moment of its choosing, and the
/// callback could no longer reliably tell a late return (the attempt ends `expired`)
/// from an unknown link; it would also want its values `Clone`, which the single-use
/// PKCE verifier is not.
const BROWSER_TTL: Duration = Duration::from_secs(600);

/// Errors of logins and logouts.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The identity provider failed or refused.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The token store failed (no keyring, locked, ...).
    #[error(transparent)]
    Tokens(#[from] BackendTokenStoreError),
    /// Installing the credential failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request field is missing or wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No such login attempt.
    #[error("no login attempt {0}")]
    UnknownLogin(String),
}

/// A login request (`POST /auth/login`), validated at the HTTP edge.
pub struct LoginRequest {
    /// Backend URL.
    pub endpoint: String,
    /// Flow.
    pub method: Method,
    /// A provider other than the backend's first.
    pub provider_id: Option<String>,
    /// A client other than the provider's default one (required for client credentials).
    pub client_id: Option<String>,
    /// Client secret (client credentials only).
    pub client_secret: Option<SecretString>,
}

/// The answer to `POST /auth/login`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginStarted {
    /// Id of this login attempt (`GET /auth/logins/{login_id}`).
    pub login_id: String,
    /// Backend URL.
    pub endpoint: String,
    /// `device`, `browser` or `client_credentials`.
    pub method: &'static str,
    /// `pending` (device, browser) or `logged_in` (client credentials).
    pub state: &'static str,
    /// Provider id used.
    pub provider_id: String,
    /// Device flow: the code the user enters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// Device flow: the page where the code is entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    /// Device flow: the page with the code filled in (if the provider offers one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Device flow: seconds until the code expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Device flow: seconds between the daemon's polls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Browser flow: the page to open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
}

/// Where a login attempt stands (`GET /auth/logins/{login_id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginStatus {
    /// Id of the attempt.
    pub login_id: String,
    /// Backend URL.
    pub endpoint: String,
    /// Flow.
    pub method: &'static str,
    /// `pending`, `logged_in`, `failed` or `expired`.
    pub state: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

/// Login state of a backend in [`BackendEntry`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginInfo {
    /// `logged_in`, `logged_out`, `pending`, `login_required`, or `not_needed` (the
    /// backend offers no login and has not refused us).
    pub state: &'static str,
    /// Whether a login can be started for this backend (it names an identity
    /// provider, or has not been asked yet).
    pub possible: bool,
    /// `device`, `browser`, `client_credentials`, `config_token` or null.
    pub method: Option<&'static str>,
    /// Provider id.
    pub provider_id: Option<String>,
    /// Provider title.
    pub provider_title: Option<String>,
    /// Issuer URL.
    pub issuer: Option<String>,
    /// When the current access token expires (RFC 3339), if known.
    pub expires_at: Option<String>,
    /// Why a new login is needed.
    pub message: Option<String>,
}

struct Attempt {
    endpoint: String,
    method: Method,
    state: &'static str,
    error: Option<String>,
    created: Instant,
}

struct BrowserPending {
    login_id: String,
    endpoint: String,
    provider: Provider,
    client_id: String,
    discovery: Discovery,
    pkce: Pkce,
    redirect_uri: String,
    scope: String,
    created: Instant,
}

/// What the login registry needs of the daemon.
#[derive(Clone)]
pub struct Parts {
    /// Where refresh tokens and client secrets are kept.
    pub tokens: BackendTokenStore,
    /// Which backend uses which provider and client (nothing secret).
    pub store: Store,
    /// Where login changes are published.
    pub events: EventBus,
    /// Owner of the device-login polls.
    pub background: Background,
    /// Base URL of the local API as clients reach it (`discovery::api_url`): the
    /// browser login's redirect comes back there.
    pub api_url: String,
}

struct Inner {
    parts: Parts,
    http: reqwest::Client,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    credentials: Mutex<HashMap<TokenKey, Arc<Credential>>>,
    attempts: Mutex<HashMap<String, Attempt>>,
    browser: Mutex<HashMap<String, BrowserPending>>,
}

/// The daemon's logins. Cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auth {
    /// Logins over `parts.tokens`; nothing is read until [`restore`](Self::restore).
    pub fn new(parts: Parts) -> Auth {
        let http = reqwest::Client::builder()
            .user_agent(concat!("eodispatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // Identity providers answer token requests directly; never follow a
            // redirect with a form full of secrets.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("building the HTTP client (rustls) must not fail");
        Auth(Arc::new(Inner {
            parts,
            http,
            sessions: Mutex::default(),
            credentials: Mutex::default(),
            attempts: Mutex::default(),
            browser: Mutex::default(),
        }))
    }

    /// The token store.
    pub fn tokens(&self) -> &BackendTokenStore {
        &self.0.parts.tokens
    }

    fn events(&self) -> &EventBus {
        &self.0.parts.events
    }

    /// The session of `endpoint`, if logged in.
    pub fn session(&self, endpoint: &str) -> Option<Arc<Session>> {
        lock(&self.0.sessions)
            .get(&normalise_endpoint(endpoint))
            .cloned()
    }

    /// Restores the logins remembered in the store (no keyring access: the first
    /// request of each backend renews its access token).
    pub async fn restore(&self) -> Result<(), StoreError> {
        for r in self.0.parts.store.logins().await? {
            let Some(method) = Method::parse(&r.method) else {
                continue;
            };
            let credential = self.credential(
                TokenKey::new(&r.issuer, &r.client_id),
                method,
                "openid".into(),
                None,
                false,
            );
            let session = Arc::new(Session {
                endpoint: r.endpoint.clone(),
                provider_id: r.provider_id,
                provider_title: r.provider_title,
                credential,
            });
            lock(&self.0.sessions).insert(normalise_endpoint(&r.endpoint), session);
        }
        Ok(())
    }

    /// The shared credential of `key`; `fresh` replaces an existing one (a new login).
    fn credential(
        &self,
        key: TokenKey,
        method: Method,
        scope: String,
        discovery: Option<Discovery>,
        fresh: bool,
    ) -> Arc<Credential> {
        let mut map = lock(&self.0.credentials);
        if !fresh {
            if let Some(c) = map.get(&key) {
                return c.clone();
            }
        }
        let c = Arc::new(Credential::new(
            key.clone(),
            method,
            scope,
            self.0.http.clone(),
            self.0.parts.tokens.clone(),
            discovery,
        ));
        map.insert(key, c.clone());
        c
    }

    /// Starts a login with one of `providers` (those the backend accepts). Device and
    /// browser logins answer `pending` at once and end in the background (an event says
    /// when); client credentials end before answering.
    pub async fn start_login(
        &self,
        req: LoginRequest,
        providers: &[Provider],
    ) -> Result<LoginStarted, AuthError> {
        let endpoint = normalise_endpoint(&req.endpoint);
        let provider = oidc::pick_provider(providers, req.provider_id.as_deref())
            .map_err(|e| AuthError::Invalid {
                field: "provider_id",
                reason: e.to_string(),
            })?
            .clone();
        let discovery = oidc::discover(&self.0.http, &provider.issuer).await?;
        let login_id = oidc::random_token(12);
        let mut started = LoginStarted {
            login_id: login_id.clone(),
            endpoint: endpoint.clone(),
            method: req.method.as_str(),
            state: "pending",
            provider_id: provider.id.clone(),
            user_code: None,
            verification_uri: None,
            verification_uri_complete: None,
            expires_in: None,
            interval: None,
            authorization_url: None,
        };
        let flow_client = |flow: Flow, what: &str| -> Result<String, AuthError> {
            match &req.client_id {
                Some(c) => Ok(c.clone()),
                None => oidc::pick_client(&provider, flow)
                    .map(|c| c.id.clone())
                    .ok_or_else(|| AuthError::Invalid {
                        field: "client_id",
                        reason: format!(
                            "provider {:?} lists no default client for the {what} flow; pass a client_id registered for it",
                            provider.id
                        ),
                    }),
            }
        };
        match req.method {
            Method::Device => {
                let client_id = flow_client(Flow::Device, "device code")?;
                let scope = oidc::scope(&provider, &discovery, true);
                let pkce = oidc::device_pkce(&provider, &client_id, &discovery).then(Pkce::new);
                let dev = oidc::device_authorize(
                    &self.0.http,
                    &discovery,
                    &client_id,
                    &scope,
                    pkce.as_ref(),
                )
                .await?;
                started.user_code = Some(dev.user_code.clone());
                started.verification_uri = Some(dev.verification_uri.clone());
                started.verification_uri_complete = dev.verification_uri_complete.clone();
                started.expires_in = Some(dev.expires_in);
                started.interval = Some(dev.interval);
                self.new_attempt(&login_id, &endpoint, Method::Device);
                let this = self.clone();
                let job = DeviceJob {
                    login_id: login_id.clone(),
                    endpoint: endpoint.clone(),
                    provider,
                    client_id,
                    discovery,
                    pkce,
                    scope,
                    device: dev,
                };
                self.0
                    .parts
                    .background
                    .spawn(async move { this.poll_device(job).await });
            }
            Method::Browser => {
                let client_id = flow_client(Flow::Browser, "authorization code")?;
                let scope = oidc::scope(&provider, &discovery, true);
                let pkce = Pkce::new();
                let redirect_uri = format!("{}/auth/callback", self.0.parts.api_url);
                let (url, state) =
                    oidc::authorization_url(&discovery, &client_id, &redirect_uri, &scope, &pkce)?;
                started.authorization_url = Some(url);
                self.new_attempt(&login_id, &endpoint, Method::Browser);
                let mut pending = lock(&self.0.browser);
                pending.retain(|_, p| p.created.elapsed() < BROWSER_TTL);
                pending.insert(
                    state,
                    BrowserPending {
                        login_id: login_id.clone(),
                        endpoint: endpoint.clone(),
                        provider,
                        client_id,
                        discovery,
                        pkce,
                        redirect_uri,
                        scope,
                        created: Instant::now(),
                    },
                );
            }
            Method::ClientCredentials => {
                let client_id = req.client_id.clone().ok_or(AuthError::Invalid {
                    field: "client_id",
                    reason: "required for client_credentials".into(),
                })?;
                let secret = req.client_secret.as_ref().ok_or(AuthError::Invalid {
                    field: "client_secret",
                    reason: "required for client_credentials".into(),
                })?;
                let scope = oidc::scope(&provider, &discovery, false);
                let set =
                    oidc::client_credentials(&self.0.http, &discovery, &client_id, secret, &scope)
                        .await?;
                self.new_attempt(&login_id, &endpoint, Method::ClientCredentials);
                let done = Done {
                    login_id: login_id.clone(),
                    endpoint: endpoint.clone(),
                    provider: &provider,
                    client_id: &client_id,
                    method: Method::ClientCredentials,
                    discovery,
                    scope,
                };
                if let Err(e) = self.finish(done, set, Some(secret)).await {
                    self.end_attempt(&login_id, "failed", Some(e.to_string()));
                    return Err(e);
                }
                started.state = "logged_in";
            }
        }
        self.events().backend_changed(&endpoint, None);
        Ok(started)
    }

    fn new_attempt(&self, login_id: &str, endpoint: &str, method: Method) {
        let mut attempts = lock(&self.0.attempts);
        attempts.retain(|_, a| a.created.elapsed() < Duration::from_secs(24 * 3600));
        attempts.insert(
            login_id.to_string(),
            Attempt {
                endpoint: endpoint.to_string(),
                method,
                state: "pending",
                error: None,
                created: Instant::now(),
            },
        );
    }

    fn end_attempt(&self, login_id: &str, state: &'static str, error: Option<String>) {
        let endpoint = {
            let mut attempts = lock(&self.0.attempts);
            let Some(a) = attempts.get_mut(login_id) else {
                return;
            };
            a.state = state;
            a.error = error;
            a.endpoint.clone()
        };
        self.events()
            .backend_changed(&endpoint, Some(login_id.to_string()));
    }

    /// Where a login attempt stands.
    pub fn attempt(&self, login_id: &str) -> Result<LoginStatus, AuthError> {
        let attempts = lock(&self.0.attempts);
        let a = attempts
            .get(login_id)
            .ok_or_else(|| AuthError::UnknownLogin(login_id.to_string()))?;
        Ok(LoginStatus {
            login_id: login_id.to_string(),
            endpoint: a.endpoint.clone(),
            method: a.method.as_str(),
            state: a.state,
            error: a.error.clone(),
        })
    }

    async fn poll_device(&self, job: DeviceJob) {
        // A logout or a newer login ends the attempt: polling stops.
        let wanted = || {
            lock(&self.0.attempts)
                .get(&job.login_id)
                .is_some_and(|a| a.state == "pending")
        };
        let end = oidc::device_token(
            &self.0.http,
            &job.discovery,
            &job.client_id,
            &job.device,
            job.pkce.as_ref(),
            wanted,
        )
        .await;
        match end {
            Ok(oidc::DeviceEnd::Done(set)) => {
                let done = Done {
                    login_id: job.login_id.clone(),
                    endpoint: job.endpoint.clone(),
                    provider: &job.provider,
                    client_id: &job.client_id,
                    method: Method::Device,
                    discovery: job.discovery.clone(),
                    scope: job.scope.clone(),
                };
                if let Err(e) = self.finish(done, set, None).await {
                    self.end_attempt(&job.login_id, "failed", Some(e.to_string()));
                }
            }
            Ok(oidc::DeviceEnd::Expired) => self.end_attempt(
                &job.login_id,
                "expired",
                Some("the code expired before the login was completed".into()),
            ),
            Ok(oidc::DeviceEnd::Stopped) => {}
            Err(e) => {
                let state = match &e {
                    OidcError::Rejected { error, .. } if error == "expired_token" => "expired",
                    _ => "failed",
                };
                self.end_attempt(&job.login_id, state, Some(e.to_string()));
            }
        }
    }

    /// Ends a browser login (`GET /auth/callback`). The `state` is single-use.
    pub async fn callback(
        &self,
        state: Option<&str>,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Result<String, String> {
        let pending = state.and_then(|s| lock(&self.0.browser).remove(s));
        let Some(p) = pending else {
            return Err(
                "This login link is unknown or was already used. Start the login again.".into(),
            );
        };
        if p.created.elapsed() >= BROWSER_TTL {
            self.end_attempt(
                &p.login_id,
                "expired",
                Some("the login took too long".into()),
            );
            return Err("This login took too long. Start it again.".into());
        }
        if let Some(e) = error {
            let e: String = e.chars().filter(|c| !c.is_control()).take(200).collect();
            self.end_attempt(
                &p.login_id,
                "failed",
                Some(format!("the identity provider answered {e}")),
            );
            return Err(format!("The identity provider refused the login ({e})."));
        }
        let Some(code) = code else {
            self.end_attempt(
                &p.login_id,
                "failed",
                Some("no code in the redirect".into()),
            );
            return Err("The redirect carried no authorization code.".into());
        };
        let set = match oidc::exchange_code(
            &self.0.http,
            &p.discovery,
            &p.client_id,
            code,
            &p.redirect_uri,
            p.pkce.verifier,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                self.end_attempt(&p.login_id, "failed", Some(e.to_string()));
                return Err(format!("The login could not be completed: {e}"));
            }
        };
        let done = Done {
            login_id: p.login_id.clone(),
            endpoint: p.endpoint.clone(),
            provider: &p.provider,
            client_id: &p.client_id,
            method: Method::Browser,
            discovery: p.discovery.clone(),
            scope: p.scope.clone(),
        };
        match self.finish(done, set, None).await {
            Ok(()) => Ok(p.endpoint),
            Err(e) => {
                self.end_attempt(&p.login_id, "failed", Some(e.to_string()));
                Err(format!("The login could not be completed: {e}"))
            }
        }
    }

    /// A login succeeded: secret into the token store, login into SQLite, session onto
    /// the backend; waiting jobs go on.
    async fn finish(
        &self,
        done: Done<'_>,
        set: oidc::TokenSet,
        secret: Option<&SecretString>,
    ) -> Result<(), AuthError> {
        if done.method != Method::ClientCredentials && set.refresh_token.is_none() {
            tracing::warn!(issuer = %done.provider.issuer, "the provider gave no refresh token: the login lasts as long as the access token");
        }
        let key = TokenKey::new(&done.provider.issuer, done.client_id);
        let credential = self.credential(
            key.clone(),
            done.method,
            done.scope.clone(),
            Some(done.discovery.clone()),
            true,
        );
        credential.install(set, secret).await?;
        self.0
            .parts
            .store
            .put_login(LoginRecord {
                endpoint: done.endpoint.clone(),
                provider_id: done.provider.id.clone(),
                provider_title: Some(done.provider.title.clone()).filter(|t| !t.is_empty()),
                issuer: done.provider.issuer.clone(),
                client_id: done.client_id.to_string(),
                method: done.method.as_str().to_string(),
            })
            .await?;
        let session = Arc::new(Session {
            endpoint: done.endpoint.clone(),
            provider_id: done.provider.id.clone(),
            provider_title: Some(done.provider.title.clone()).filter(|t| !t.is_empty()),
            credential: credential.clone(),
        });
        // Other backends logged in with the same issuer and client share the new
        // credential (their stored refresh token was just replaced).
        let mut others = Vec::new();
        let replaced;
        {
            let mut sessions = lock(&self.0.sessions);
            for (ep, s) in sessions.iter_mut() {
                if ep != &done.endpoint && s.credential.key() == &key {
                    *s = Arc::new(Session {
                        endpoint: s.endpoint.clone(),
                        provider_id: s.provider_id.clone(),
                        provider_title: s.provider_title.clone(),
                        credential: credential.clone(),
                    });
                    others.push((ep.clone(), s.clone()));
                }
            }
            replaced = sessions.insert(done.endpoint.clone(), session.clone());
        }
        // The login this one replaces: its secret goes unless another backend uses it.
        if let Some(old) = replaced.filter(|o| o.credential.key() != &key) {
            let used = lock(&self.0.sessions)
                .values()
                .any(|s| s.credential.key() == old.credential.key());
            if !used {
                lock(&self.0.credentials).remove(old.credential.key());
                if let Err(e) = self.tokens().delete(old.credential.key()).await {
                    tracing::warn!(error = %e, "could not remove the replaced login's secret");
                }
            }
        }
        for (ep, _) in others {
            self.events().publish(Event::LoggedIn { endpoint: ep });
        }
        tracing::info!(backend = %done.endpoint, provider = %done.provider.id, method = done.method.as_str(), "logged in");
        {
            let mut attempts = lock(&self.0.attempts);
            if let Some(a) = attempts.get_mut(&done.login_id) {
                a.state = "logged_in";
            }
        }
        self.events().publish(Event::LoggedIn {
            endpoint: done.endpoint.clone(),
        });
        self.events()
            .backend_changed(&done.endpoint, Some(done.login_id.clone()));
        Ok(())
    }

    /// Logs out of `endpoint`: its secret leaves the token store (unless another
    /// backend still uses the same issuer and client), the login is forgotten.
    pub async fn logout(&self, endpoint: &str) -> Result<(), AuthError> {
        let key = normalise_endpoint(endpoint);
        let removed = lock(&self.0.sessions).remove(&key);
        {
            let mut attempts = lock(&self.0.attempts);
            for a in attempts.values_mut() {
                if a.endpoint == key && a.state == "pending" {
                    a.state = "failed";
                    a.error = Some("logged out".into());
                }
            }
        }
        lock(&self.0.browser).retain(|_, p| p.endpoint != key);
        if let Some(s) = removed {
            let shared = lock(&self.0.sessions)
                .values()
                .any(|o| o.credential.key() == s.credential.key());
            if !shared {
                self.tokens().delete(s.credential.key()).await?;
                lock(&self.0.credentials).remove(s.credential.key());
            }
        }
        self.0.parts.store.delete_login(key.clone()).await?;
        tracing::info!(backend = %key, "logged out");
        self.events().backend_changed(&key, None);
        Ok(())
    }

    /// The login state of `endpoint` (no I/O, no token). `configured_token`: the
    /// backend has a fixed token in `config.toml`; `refused`: its last request was
    /// refused for want of a login; `possible`: it offers a way to log in (or has
    /// not said yet).
    pub fn login_info(
        &self,
        endpoint: &str,
        configured_token: bool,
        refused: bool,
        possible: bool,
    ) -> LoginInfo {
        let key = normalise_endpoint(endpoint);
        let session = lock(&self.0.sessions).get(&key).cloned();
        let pending = lock(&self.0.attempts)
            .values()
            .any(|a| a.endpoint == key && a.state == "pending");
        match &session {
            Some(sess) => {
                let refused = sess.credential.refused();
                LoginInfo {
                    state: if refused.is_some() {
                        "login_required"
                    } else {
                        "logged_in"
                    },
                    possible,
                    method: Some(sess.credential.method().as_str()),
                    provider_id: Some(sess.provider_id.clone()),
                    provider_title: sess.provider_title.clone(),
                    issuer: Some(sess.credential.key().issuer().to_string()),
                    expires_at: sess
                        .credential
                        .expires_at()
                        .map(|t| crate::job::rfc3339_z::format(&t)),
                    message: refused,
                }
            }
            None => LoginInfo {
                state: if pending {
                    "pending"
                } else if configured_token {
                    "logged_in"
                } else if refused {
                    "login_required"
                } else if !possible {
                    "not_needed"
                } else {
                    "logged_out"
                },
                possible,
                method: configured_token.then_some("config_token"),
                provider_id: None,
                provider_title: None,
                issuer: None,
                expires_at: None,
                message: None,
            },
        }
    }

    /// Checks that the token store works (for `doctor`).
    pub async fn probe_store(&self) -> Result<StoreKind, BackendTokenStoreError> {
        self.tokens().probe().await?;
        Ok(self.tokens().kind())
    }
}

impl Logins for Auth {
    fn credentials(&self, endpoint: &str) -> Option<Arc<dyn Credentials>> {
        let session = self.session(endpoint)?;
        Some(session)
    }
}

struct DeviceJob {
    login_id: String,
    endpoint: String,
    provider: Provider,
    client_id: String,
    discovery: Discovery,
    pkce: Option<Pkce>,
    scope: String,
    device: oidc::DeviceStart,
}

struct Done<'a> {
    login_id: String,
    endpoint: String,
    provider: &'a Provider,
    client_id: &'a str,
    method: Method,
    discovery: Discovery,
    scope: String,
}
