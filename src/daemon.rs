//! The daemon: [`run`] wires configuration, API token, store, event bus and the HTTP
//! API on a listener the caller bound, and shuts everything down through one path when
//! the `shutdown` future completes. [`Daemon`] is the cloneable handle every part uses
//! to reach the shared state.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::events::EventBus;
use crate::platform::backends::Backends;
use crate::platform::udp::UdpCache;
use crate::results::Results;
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError};
use crate::token::{self, ApiToken, TokenError};

/// Version of the daemon (and of its API), from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The listener is not on a loopback address and `allow_remote` is off.
    #[error(
        "refusing to listen on {0}: it is not a loopback address, so other machines could \
         reach the API. Use 127.0.0.1 or [::1], or set `allow_remote = true` in config.toml \
         if you really mean it"
    )]
    NotLoopback(SocketAddr),
    /// The API token file is unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The job store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A folder could not be created or the listener failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Shared state of a running daemon.
struct DaemonState {
    /// The resolved configuration; replaced (safe keys only) when `config.toml` changes.
    config: std::sync::RwLock<Arc<Config>>,
    /// The job store.
    store: Store,
    /// Publishes job and task changes to SSE subscribers.
    events: EventBus,
    /// The local API token.
    token: ApiToken,
    /// Fetched openEO UDP definitions.
    udps: UdpCache,
    /// Backends in use.
    backends: Backends,
    /// Backend logins.
    auth: crate::auth::Auth,
    /// Sends jobs out and follows them.
    scheduler: Scheduler,
    /// Brings finished jobs' results into the results folder.
    results: Results,
    /// Port the API listens on (for the Host check and URLs we hand out).
    port: u16,
    /// When the daemon started (for `/health` uptime).
    started: Instant,
    /// Turns true once shutdown begins; long-lived responses (SSE) end on it.
    shutdown: watch::Receiver<bool>,
}

/// Cheaply cloneable handle to the daemon's shared state.
#[derive(Clone)]
pub struct Daemon(Arc<DaemonState>);

impl Daemon {
    /// The configuration as it is now.
    pub fn config(&self) -> Arc<Config> {
        self.0
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a changed configuration where that is safe while running: poll intervals,
    /// the GDAL helper's path, and backends (new ones, their job and request limits, a
    /// fixed access token). Returns the keys whose change needs a restart (they keep their
    /// old values until then).
    pub fn apply_config(&self, new: &Config) -> Vec<&'static str> {
        let mut slot = self.0.config.write().unwrap_or_else(|e| e.into_inner());
        let old = slot.clone();
        let mut next = (*old).clone();
        next.poll_interval_min_s = new.poll_interval_min_s;
        next.poll_interval_max_s = new.poll_interval_max_s;
        next.geo_bin = new.geo_bin.clone();
        next.backends = new.backends.clone();
        let mut restart = Vec::new();
        let checks: [(&'static str, bool); 8] = [
            ("listen", old.listen != new.listen),
            ("allow_remote", old.allow_remote != new.allow_remote),
            ("state_dir", old.state_dir != new.state_dir),
            ("results_dir", old.results_dir != new.results_dir),
            ("max_body_bytes", old.max_body_bytes != new.max_body_bytes),
            ("log", old.log != new.log),
            ("token_store", old.token_store != new.token_store),
            (
                "download_stall_s",
                old.download_stall_s != new.download_stall_s,
            ),
        ];
        for (key, changed) in checks {
            if changed {
                restart.push(key);
            }
        }
        *slot = Arc::new(next);
        drop(slot);
        self.0.backends.reconfigure(&new.backends);
        restart
    }
    /// The job store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }
    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.0.events
    }
    /// The API token.
    pub fn token(&self) -> &ApiToken {
        &self.0.token
    }
    /// Cache of openEO UDP definitions.
    pub fn udps(&self) -> &UdpCache {
        &self.0.udps
    }
    /// Backends in use.
    pub fn backends(&self) -> &Backends {
        &self.0.backends
    }
    /// Backend logins.
    pub fn auth(&self) -> &crate::auth::Auth {
        &self.0.auth
    }
    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.0.scheduler
    }
    /// The result delivery.
    pub fn results(&self) -> &Results {
        &self.0.results
    }
    /// Port of the local API.
    pub fn port(&self) -> u16 {
        self.0.port
    }
    /// Seconds since start.
    pub fn uptime_secs(&self) -> f64 {
        self.0.started.elapsed().as_secs_f64()
    }
    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        let mut rx = self.0.shutdown.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Runs the daemon on `listener` until `shutdown` completes.
///
/// Refuses a non-loopback listener unless `config.allow_remote`; creates the API token,
/// the state and results folders on first start; opens the store. On shutdown, new
/// connections are refused, in-flight requests finish, event streams end, and the
/// store is flushed and closed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let addr = listener.local_addr().map_err(|source| DaemonError::Io {
        context: "cannot read the listener's address".into(),
        source,
    })?;
    if !addr.ip().is_loopback() && !config.allow_remote {
        return Err(DaemonError::NotLoopback(addr));
    }
    let token = token::load_or_create(&config.token_path())?;
    std::fs::create_dir_all(&config.results_dir).map_err(|source| DaemonError::Io {
        context: format!(
            "cannot create the results folder {}",
            config.results_dir.display()
        ),
        source,
    })?;
    let store = Store::open(&config.db_path()).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let backends = Backends::new(&config);
    for known in crate::auth::KNOWN_BACKENDS {
        backends.get(known);
    }
    let auth = crate::auth::Auth::new(config.token_store());
    let daemon = Daemon(Arc::new(DaemonState {
        config: std::sync::RwLock::new(Arc::new(config)),
        store: store.clone(),
        events: EventBus::new(),
        token,
        udps: UdpCache::new(),
        backends,
        auth,
        scheduler: Scheduler::new(),
        results: Results::new(),
        port: addr.port(),
        started: Instant::now(),
        shutdown: shutdown_rx,
    }));
    daemon.auth().restore(&daemon).await?;
    daemon.scheduler().start(&daemon).await?;
    daemon.results().start(&daemon).await?;
    crate::watch::start(&daemon);
    let app = crate::api::router(daemon.clone());
    tracing::info!(%addr, version = VERSION, "eodispatch listening");
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = shutdown_tx.send(true);
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
        .map_err(|source| DaemonError::Io {
            context: "the API server failed".into(),
            source,
        });
    drop(daemon);
    store.close().await;
    tracing::info!("store closed; bye");
    served
}
