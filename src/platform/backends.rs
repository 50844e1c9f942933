//! The registry of backends the daemon talks to: one [`Backend`] per endpoint (its
//! openEO client, request-rate limiter, concurrency limit and reachability), created
//! from `config.toml` or on first use by a job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::openeo::{Bearer, OpenEoBackend, OpenEoError};
use crate::config::{BackendConfig, Config};
use crate::job::rfc3339_z;

/// Default limit on jobs active at once on one backend (as the openEO job manager).
pub const DEFAULT_MAX_RUNNING: u32 = 2;
/// Default request rate towards one backend, per second.
pub const DEFAULT_RATE_PER_S: f64 = 5.0;
/// Default burst of requests towards one backend.
pub const DEFAULT_BURST: f64 = 10.0;

/// Normalises an endpoint for lookups: lower-case scheme and host, no trailing slash.
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

/// A token bucket: at most `rate` requests per second on average, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests per second, as f64 bits (changes with `config.toml`).
    rate: std::sync::atomic::AtomicU64,
    burst: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        let rate = rate.max(0.01);
        let burst = burst.max(1.0);
        RateLimiter {
            rate: std::sync::atomic::AtomicU64::new(rate.to_bits()),
            burst,
            state: tokio::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Changes the average rate (the burst stays).
    pub fn set_rate(&self, rate: f64) {
        self.rate.store(
            rate.max(0.01).to_bits(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let mut s = self.state.lock().await;
        loop {
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.rate();
            s.0 = (s.0 + refill).min(self.burst);
            s.1 = now;
            if s.0 >= 1.0 {
                s.0 -= 1.0;
                return;
            }
            let wait = (1.0 - s.0) / self.rate();
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// What the daemon knows of a backend's reachability and login.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BackendState {
    /// Endpoint as used by jobs.
    pub url: String,
    /// `ok`, `unreachable` (network or 5xx trouble: jobs wait and keep their status)
    /// or `login_required` (the backend refused our credentials: jobs wait).
    pub state: &'static str,
    /// The last problem, in words (no tokens, no URL queries).
    pub message: Option<String>,
    /// When the backend last answered (RFC 3339).
    pub last_contact: Option<String>,
    /// Limit on active jobs.
    pub max_running_jobs: u32,
}

/// One backend.
pub struct Backend {
    /// A configured access token whose provider id is still to be looked up in the
    /// backend's `/credentials/oidc` (its first provider).
    pending_token: tokio::sync::Mutex<Option<crate::config::Secret>>,
    /// The openEO client.
    pub client: OpenEoBackend,
    /// Paces requests.
    pub limiter: RateLimiter,
    /// Limit on jobs active at once (changes with `config.toml`).
    max_running: std::sync::atomic::AtomicU32,
    state: Mutex<BackendState>,
}

impl Backend {
    /// Limit on jobs active at once.
    pub fn max_running(&self) -> u32 {
        self.max_running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// New limits from a changed `config.toml`.
    pub fn set_limits(&self, max_running: u32, rate: f64) {
        let max_running = max_running.max(1);
        self.max_running
            .store(max_running, std::sync::atomic::Ordering::Relaxed);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max_running_jobs = max_running;
        self.limiter.set_rate(rate);
    }

    /// Completes the configured credentials: a token without a provider id gets the
    /// backend's default provider (one request, once).
    pub async fn ensure_credentials(&self) -> Result<(), OpenEoError> {
        let mut pending = self.pending_token.lock().await;
        if let Some(token) = pending.as_ref() {
            let provider = self.client.default_provider_id().await?;
            self.client
                .set_bearer(Some(Bearer::oidc(&provider, token.expose())));
            *pending = None;
        }
        Ok(())
    }

    /// Records a successful contact; `true` if the state changed.
    pub fn mark_ok(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = s.state != "ok";
        s.state = "ok";
        s.message = None;
        s.last_contact = Some(rfc3339_z::format(&OffsetDateTime::now_utc()));
        changed
    }

    /// Records a failure; `true` if the state changed.
    pub fn mark_error(&self, e: &OpenEoError) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let new = match e {
            OpenEoError::Auth { .. } => "login_required",
            _ if e.is_transient() => "unreachable",
            _ => return false,
        };
        let changed = s.state != new;
        s.state = new;
        s.message = Some(e.to_string());
        changed
    }

    /// A snapshot of the state.
    pub fn state(&self) -> BackendState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// All backends, by normalised endpoint. Cheap to clone.
#[derive(Clone, Default)]
pub struct Backends {
    map: Arc<Mutex<HashMap<String, Arc<Backend>>>>,
    configured: Arc<Mutex<Vec<BackendConfig>>>,
}

impl Backends {
    /// The registry, with the backends of `config.toml`.
    pub fn new(config: &Config) -> Backends {
        let b = Backends {
            map: Arc::default(),
            configured: Arc::new(Mutex::new(config.backends.values().cloned().collect())),
        };
        let urls: Vec<String> = b.configured().iter().map(|c| c.url.clone()).collect();
        for url in urls {
            b.get(&url);
        }
        b
    }

    fn configured(&self) -> Vec<BackendConfig> {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies changed `[backends.*]` sections: new backends appear, limits change,
    /// a changed fixed access token is used from the next request on.
    pub fn reconfigure(&self, backends: &std::collections::BTreeMap<String, BackendConfig>) {
        let list: Vec<BackendConfig> = backends.values().cloned().collect();
        *self.configured.lock().unwrap_or_else(|e| e.into_inner()) = list.clone();
        for c in list {
            let backend = self.get(&c.url);
            backend.set_limits(
                c.max_running_jobs.unwrap_or(DEFAULT_MAX_RUNNING),
                c.requests_per_second.unwrap_or(DEFAULT_RATE_PER_S),
            );
            if let (Some(token), Some(provider)) = (&c.access_token, c.provider_id.as_deref()) {
                if backend.client.session().is_none() {
                    backend
                        .client
                        .set_bearer(Some(Bearer::oidc(provider, token.expose())));
                }
            }
        }
    }

    /// The backend for `endpoint`, created on first use.
    pub fn get(&self, endpoint: &str) -> Arc<Backend> {
        let key = normalise_endpoint(endpoint);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                let configured = self.configured();
                let cfg = configured
                    .iter()
                    .find(|c| normalise_endpoint(&c.url) == key);
                let client = OpenEoBackend::new(endpoint.trim_end_matches('/'));
                let token = cfg.and_then(|c| c.access_token.clone());
                if let (Some(token), Some(provider)) =
                    (&token, cfg.and_then(|c| c.provider_id.as_deref()))
                {
                    client.set_bearer(Some(Bearer::oidc(provider, token.expose())));
                }
                let max_running = cfg
                    .and_then(|c| c.max_running_jobs)
                    .unwrap_or(DEFAULT_MAX_RUNNING)
                    .max(1);
                let rate = cfg
                    .and_then(|c| c.requests_per_second)
                    .unwrap_or(DEFAULT_RATE_PER_S);
                let needs_provider =
                    token.is_some() && cfg.is_some_and(|c| c.provider_id.is_none());
                Arc::new(Backend {
                    pending_token: tokio::sync::Mutex::new(if needs_provider {
                        token
                    } else {
                        None
                    }),
                    client,
                    limiter: RateLimiter::new(rate, DEFAULT_BURST.max(rate)),
                    max_running: std::sync::atomic::AtomicU32::new(max_running),
                    state: Mutex::new(BackendState {
                        url: endpoint.trim_end_matches('/').to_string(),
                        state: "ok",
                        message: None,
                        last_contact: None,
                        max_running_jobs: max_running,
                    }),
                })
            })
            .clone()
    }

    /// Every backend known so far.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.state().url.cmp(&b.state().url));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            normalise_endpoint("HTTPS://OpenEOfed.dataspace.copernicus.eu/"),
            "https://openeofed.dataspace.copernicus.eu"
        );
        assert_eq!(
            normalise_endpoint("https://openeo.eodc.eu/openeo/1.2.0/"),
            "https://openeo.eodc.eu/openeo/1.2.0"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_paces_requests() {
        let l = RateLimiter::new(10.0, 2.0);
        let start = tokio::time::Instant::now();
        for _ in 0..12 {
            l.acquire().await;
        }
        // 2 from the burst, then 10 more at 10/s: about 1 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.95..1.1).contains(&took), "{took}");
    }
}
