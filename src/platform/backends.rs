//! The registry of backends the daemon talks to: one [`Backend`] per platform kind and
//! endpoint (its [`Platform`], request-rate limiter, concurrency limit, reachability
//! and the login providers it accepts), created from `config.toml` or on first use by
//! a job. Every request of the scheduler, result delivery and the application layer
//! goes through [`Backend::call`], which paces it and records reachability; a change of
//! reachability is published as a backend event.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::udp::UdpCache;
use super::{connect, Platform, PlatformError};
use crate::config::{BackendConfig, Config};
use crate::credentials::{LoginProvider, Logins};
use crate::events::EventBus;
use crate::job::{rfc3339_z, Label, Status, WaitReason, Waiting};

/// Default limit on jobs active at once on one backend (as the openEO job manager).
pub const DEFAULT_MAX_RUNNING: u32 = 2;
/// Default request rate towards one backend, per second.
pub const DEFAULT_RATE_PER_S: f64 = 5.0;
/// Default burst of requests towards one backend.
pub const DEFAULT_BURST: f64 = 10.0;

pub use crate::credentials::normalise_endpoint;

/// The governor limiter of one backend, on the tokio clock.
type Gcra = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Governor's clock read from tokio's: time since the limiter's origin. Tokio's clock
/// is the one the waits sleep on, so that both agree (also when a test pauses time).
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// At most `rate` requests per second on average, `burst` at once (a token bucket:
/// `governor`'s GCRA). Waiters are served first come, first served. A new rate gives a
/// new limiter, which starts with its burst available.
#[derive(Debug)]
pub struct RateLimiter {
    /// The rate in force and its limiter.
    current: Mutex<(f64, Arc<Gcra>)>,
    burst: NonZeroU32,
    clock: TokioClock,
    /// Held by the request that waits for its turn, so that the others queue behind it.
    turn: tokio::sync::Mutex<()>,
}

impl RateLimiter {
    /// A full bucket (`rate` at least 0.01 per second, `burst` at least 1).
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        let burst = NonZeroU32::new(burst.max(1.0).min(f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let rate = rate.max(0.01);
        RateLimiter {
            current: Mutex::new((rate, Arc::new(gcra(rate, burst, clock)))),
            burst,
            clock,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Changes the average rate (the burst stays).
    pub fn set_rate(&self, rate: f64) {
        let rate = rate.max(0.01);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != rate {
            *current = (rate, Arc::new(gcra(rate, self.burst, self.clock)));
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let limiter = self
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone();
            match limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// A limiter of `rate` (> 0) requests per second with `burst`.
fn gcra(rate: f64, burst: NonZeroU32, clock: TokioClock) -> Gcra {
    let period = Duration::try_from_secs_f64(1.0 / rate)
        .unwrap_or(Duration::MAX)
        .max(Duration::from_nanos(1));
    let quota = governor::Quota::with_period(period)
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst);
    governor::RateLimiter::direct_with_clock(quota, clock)
}

/// What the daemon knows of a backend's reachability.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BackendState {
    /// Endpoint as used by jobs.
    pub url: String,
    /// The kind of platform (the `label` of its jobs).
    pub label: Label,
    /// `ok`, `unreachable` (network or 5xx trouble: jobs wait and keep their status)
    /// or `login_required` (the backend refused our credentials: jobs wait).
    pub state: &'static str,
    /// The last problem, in words (no tokens, no URL queries).
    pub message: Option<String>,
    /// When the backend last answered (RFC 3339).
    pub last_contact: Option<String>,
    /// When `state` became what it is (RFC 3339); `null` while it is `ok`.
    pub since: Option<String>,
    /// Limit on active jobs.
    pub max_running_jobs: u32,
}

/// One backend.
pub struct Backend {
    /// The platform adapter.
    pub platform: Arc<dyn Platform>,
    /// Paces requests.
    pub limiter: RateLimiter,
    /// Limit on jobs active at once (changes with `config.toml`).
    max_running: std::sync::atomic::AtomicU32,
    state: Mutex<BackendState>,
    /// The identity providers it accepts, once asked.
    providers: Mutex<Option<Vec<LoginProvider>>>,
    /// When it was last probed for what it says about itself.
    probed: Mutex<Option<Instant>>,
    /// What its scheduler worker last found about waiting jobs.
    waits: Mutex<Waits>,
    events: EventBus,
}

/// What the scheduler worker last found about a backend's waiting jobs.
#[derive(Default)]
struct Waits {
    /// Since when queued jobs wait for a free slot under `max_running_jobs`.
    limit_since: Option<OffsetDateTime>,
    /// When the worker looks again (while the backend is failing or jobs wait).
    next_try: Option<OffsetDateTime>,
    /// Jobs that wait for a reason of their own: job id → (reason, words, since).
    jobs: HashMap<i64, (WaitReason, String, OffsetDateTime)>,
}

impl Backend {
    /// The kind of platform.
    pub fn label(&self) -> Label {
        self.platform.label()
    }

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

    /// Runs one request of the platform: waits for the rate limiter, completes the
    /// credentials, and records reachability (an event when it changes).
    pub async fn call<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, PlatformError>>,
    ) -> Result<T, PlatformError> {
        self.limiter.acquire().await;
        let r = match self.platform.ensure_credentials().await {
            Ok(()) => request.await,
            Err(e) => Err(e),
        };
        match &r {
            Ok(_) => self.mark_ok(),
            Err(e) => self.mark_error(e),
        }
        r
    }

    /// Records a successful contact.
    pub fn mark_ok(&self) {
        let changed = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let changed = s.state != "ok";
            s.state = "ok";
            s.since = None;
            s.message = None;
            s.last_contact = Some(rfc3339_z::format(&OffsetDateTime::now_utc()));
            changed
        };
        if changed {
            self.publish();
        }
    }

    /// Records a failure (only those that say something about the backend).
    pub fn mark_error(&self, e: &PlatformError) {
        let Some(new) = e.backend_state() else {
            return;
        };
        let changed = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let changed = s.state != new;
            if changed {
                s.since = Some(rfc3339_z::format(&OffsetDateTime::now_utc()));
            }
            s.state = new;
            s.message = Some(e.to_string());
            changed
        };
        if changed {
            self.publish();
        }
    }

    fn publish(&self) {
        let s = self.state();
        tracing::info!(backend = %s.url, state = s.state, "backend state");
        self.events.backend_changed(&s.url, None);
    }

    /// A snapshot of the state.
    pub fn state(&self) -> BackendState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The identity providers it accepts, if asked already (no I/O).
    pub fn cached_providers(&self) -> Option<Vec<LoginProvider>> {
        self.providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The identity providers it accepts (asked once; errors are not kept).
    pub async fn providers(&self) -> Result<Vec<LoginProvider>, PlatformError> {
        if let Some(p) = self.cached_providers() {
            return Ok(p);
        }
        let fresh = self.platform.login_providers().await?;
        *self.providers.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// Asks the backend about itself and its login providers when that was not done
    /// within `every`; `true` when a probe was started.
    pub async fn probe_if_due(&self, every: Duration) -> bool {
        let known = self.platform.info().is_some() && self.cached_providers().is_some();
        {
            let mut probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
            let due = probed.is_none_or(|t| t.elapsed() >= every);
            if known || !due {
                return false;
            }
            *probed = Some(Instant::now());
        }
        self.platform.probe().await;
        let _ = self.providers().await;
        true
    }
}

impl Backend {
    fn waits(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scheduler found queued jobs and no free slot (`true`), or room (`false`).
    /// `true` when this changed.
    pub fn set_limit_reached(&self, reached: bool) -> bool {
        let mut w = self.waits();
        if reached == w.limit_since.is_some() {
            return false;
        }
        w.limit_since = reached.then(OffsetDateTime::now_utc);
        true
    }

    /// Whether queued jobs wait for a free slot.
    pub fn limit_reached(&self) -> bool {
        self.waits().limit_since.is_some()
    }

    /// When the scheduler looks at this backend again (`None`: when woken).
    pub fn set_next_try(&self, at: Option<OffsetDateTime>) {
        self.waits().next_try = at;
    }

    /// Job `id` waits for a reason of its own (its service definition cannot be
    /// read, its login was refused while preparing it); `true` when this is new.
    pub fn set_job_waiting(&self, id: i64, reason: WaitReason, words: &str) -> bool {
        let mut w = self.waits();
        match w.jobs.get(&id) {
            Some((r, m, _)) if *r == reason && m == words => false,
            _ => {
                let since = w
                    .jobs
                    .get(&id)
                    .filter(|(r, _, _)| *r == reason)
                    .map_or_else(OffsetDateTime::now_utc, |(_, _, t)| *t);
                w.jobs.insert(id, (reason, words.to_string(), since));
                true
            }
        }
    }

    /// Job `id` no longer waits for a reason of its own; `true` when it did.
    pub fn clear_job_waiting(&self, id: i64) -> bool {
        self.waits().jobs.remove(&id).is_some()
    }

    /// Forgets the own reasons of jobs not in `active` (ended, deleted).
    pub fn retain_job_waits(&self, active: &std::collections::HashSet<i64>) {
        self.waits().jobs.retain(|id, _| active.contains(id));
    }

    /// What blocks job `id` of this backend now, if anything: a login, the backend's
    /// reachability, a reason of the job's own, or (for a job still queued here,
    /// `queued`) the backend's limit of running jobs. No I/O.
    pub fn waiting(&self, id: i64, status: Status, queued: bool) -> Option<Waiting> {
        if status.is_terminal() {
            return None;
        }
        let s = self.state();
        let w = self.waits();
        let next_try = w.next_try.as_ref().map(rfc3339_z::format);
        let at = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| rfc3339_z::parse(t).ok())
                .map(|t| clock(&t))
        };
        let url = s.url.clone();
        let login = |since: Option<String>| Waiting {
            reason: WaitReason::LoginRequired,
            message: format!(
                "Waiting for a login to {url}: click Log in in the EO Dispatch dock in \
                 QGIS, or run `eodispatch login {url}`"
            ),
            backend: url.clone(),
            since,
            next_try: None,
        };
        match s.state {
            "login_required" => return Some(login(s.since.clone())),
            "unreachable" => {
                let mut message = format!("Backend {url} unreachable");
                if let Some(t) = at(&s.since) {
                    message += &format!(" since {t}");
                }
                if let Some(t) = at(&next_try) {
                    message += &format!(" (next try at {t})");
                }
                if let Some(m) = &s.message {
                    message += &format!(": {m}");
                }
                return Some(Waiting {
                    reason: WaitReason::BackendUnreachable,
                    message,
                    backend: url,
                    since: s.since,
                    next_try,
                });
            }
            _ => {}
        }
        if let Some((reason, words, since)) = w.jobs.get(&id) {
            let since = Some(rfc3339_z::format(since));
            if *reason == WaitReason::LoginRequired {
                return Some(login(since));
            }
            let mut message = words.clone();
            if let Some(t) = at(&next_try) {
                message += &format!(" (next try at {t})");
            }
            return Some(Waiting {
                reason: *reason,
                message,
                backend: url,
                since,
                next_try,
            });
        }
        if queued {
            if let Some(since) = &w.limit_since {
                let n = s.max_running_jobs;
                return Some(Waiting {
                    reason: WaitReason::BackendLimit,
                    message: format!(
                        "The limit of {n} running job{} on {url} is reached: the job is \
                         sent when one of them ends (max_running_jobs in config.toml)",
                        if n == 1 { "" } else { "s" }
                    ),
                    backend: url,
                    since: Some(rfc3339_z::format(since)),
                    next_try: None,
                });
            }
        }
        None
    }
}

/// A time of day in words: `14:02:11 UTC`.
fn clock(t: &OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
}

/// A backend's key: its platform kind and normalised endpoint.
pub type BackendKey = (Label, String);

/// All backends, by platform kind and normalised endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Backends {
    map: Arc<Mutex<HashMap<BackendKey, Arc<Backend>>>>,
    configured: Arc<Mutex<Vec<BackendConfig>>>,
    logins: Arc<dyn Logins>,
    udps: UdpCache,
    events: EventBus,
}

impl Backends {
    /// The registry, with the backends of `config.toml` (openEO unless a section says
    /// otherwise).
    pub fn new(
        config: &Config,
        logins: Arc<dyn Logins>,
        udps: UdpCache,
        events: EventBus,
    ) -> Backends {
        let b = Backends {
            map: Arc::default(),
            configured: Arc::new(Mutex::new(config.backends.values().cloned().collect())),
            logins,
            udps,
            events,
        };
        for c in b.configured() {
            b.get(c.label, &c.url);
        }
        b
    }

    /// The UDP cache shared by the openEO backends.
    pub fn udps(&self) -> &UdpCache {
        &self.udps
    }

    fn configured(&self) -> Vec<BackendConfig> {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn config_for(&self, endpoint: &str) -> Option<BackendConfig> {
        let key = normalise_endpoint(endpoint);
        self.configured()
            .into_iter()
            .find(|c| normalise_endpoint(&c.url) == key)
    }

    /// Applies changed `[backends.*]` sections: new backends appear, limits change,
    /// a changed fixed access token is used from the next request on.
    pub fn reconfigure(&self, backends: &BTreeMap<String, BackendConfig>) {
        let list: Vec<BackendConfig> = backends.values().cloned().collect();
        *self.configured.lock().unwrap_or_else(|e| e.into_inner()) = list.clone();
        for c in &list {
            self.get(c.label, &c.url);
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ((_, key), backend) in map {
            let Some(c) = list.iter().find(|c| normalise_endpoint(&c.url) == key) else {
                continue;
            };
            backend.set_limits(
                c.max_running_jobs.unwrap_or(DEFAULT_MAX_RUNNING),
                c.requests_per_second.unwrap_or(DEFAULT_RATE_PER_S),
            );
            backend.platform.reconfigure(Some(c));
        }
    }

    /// The backend of `label` at `endpoint`, created on first use.
    pub fn get(&self, label: Label, endpoint: &str) -> Arc<Backend> {
        let key = (label, normalise_endpoint(endpoint));
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(&key) {
            return b.clone();
        }
        let cfg = self.config_for(endpoint);
        let url = endpoint.trim().trim_end_matches('/');
        let platform = connect(label, url, cfg.as_ref(), self.logins.clone(), &self.udps);
        let max_running = cfg
            .as_ref()
            .and_then(|c| c.max_running_jobs)
            .unwrap_or(DEFAULT_MAX_RUNNING)
            .max(1);
        let rate = cfg
            .as_ref()
            .and_then(|c| c.requests_per_second)
            .unwrap_or(DEFAULT_RATE_PER_S);
        let backend = Arc::new(Backend {
            platform,
            limiter: RateLimiter::new(rate, DEFAULT_BURST.max(rate)),
            max_running: std::sync::atomic::AtomicU32::new(max_running),
            state: Mutex::new(BackendState {
                url: url.to_string(),
                label,
                state: "ok",
                message: None,
                last_contact: None,
                since: None,
                max_running_jobs: max_running,
            }),
            providers: Mutex::new(None),
            probed: Mutex::new(None),
            waits: Mutex::default(),
            events: self.events.clone(),
        });
        map.insert(key, backend.clone());
        backend
    }

    /// The backend of `label` at `endpoint`, if the daemon knows it (no creation).
    pub fn find(&self, label: Label, endpoint: &str) -> Option<Arc<Backend>> {
        let key = (label, normalise_endpoint(endpoint));
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    /// The backend a login to `endpoint` is for: one already known at that endpoint
    /// (openEO first), else the kind its `config.toml` section names, else openEO.
    pub fn for_login(&self, endpoint: &str) -> Arc<Backend> {
        let key = normalise_endpoint(endpoint);
        let known: Vec<Arc<Backend>> = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            Label::ALL
                .iter()
                .filter_map(|l| map.get(&(*l, key.clone())).cloned())
                .collect()
        };
        if let Some(b) = known.into_iter().next() {
            return b;
        }
        let label = self
            .config_for(endpoint)
            .map(|c| c.label)
            .unwrap_or(Label::Openeo);
        self.get(label, endpoint)
    }

    /// Every backend known so far, by URL.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by_key(|b| {
            let s = b.state();
            (s.url, s.label.as_str())
        });
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

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_and_the_same_rate_keeps_the_bucket() {
        let l = RateLimiter::new(1.0, 1.0);
        let start = tokio::time::Instant::now();
        l.acquire().await;
        // The same rate again (config.toml applied for another reason): no new burst.
        l.set_rate(1.0);
        l.acquire().await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.95..1.1).contains(&took), "{took}");
        // A faster rate: a new limiter, its burst at once, then 20/s.
        l.set_rate(20.0);
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            l.acquire().await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((0.45..0.55).contains(&took), "{took}");
    }
}
