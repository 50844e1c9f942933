//! The daemon: [`run`] wires configuration, API token, store, event bus, backends,
//! logins, scheduler, result delivery, watcher and the HTTP API on a listener the
//! caller bound, and shuts everything down through one path when the `shutdown`
//! future completes: background tasks are cancelled and awaited, in-flight requests
//! finish, then the store is flushed and closed. While it serves, the discovery file
//! (`discovery`) tells clients where it is.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api_token::{self, ApiTokenError};
use crate::app::App;
use crate::background::Background;
use crate::config::{Config, Settings};
use crate::discovery::Discovery;
use crate::events::EventBus;
use crate::platform::backends::Backends;
use crate::platform::udp::UdpCache;
use crate::results::Results;
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError};

/// Version of the daemon (and of its API), from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long shutdown waits for background tasks to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

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
    Token(#[from] ApiTokenError),
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

/// Logs every panic (with where it happened) before the default hook prints it: a
/// background task that panics is started again, and the log says why.
fn log_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(at = %place, panic = %crate::redact::redact(&what), "panicked");
            default(info);
        }));
    });
}

/// Raises the soft limit on open files to the hard one (API connections, downloads,
/// SQLite and the watcher all need descriptors, and the default soft limit, 1024, is
/// low next to `max_connections`); returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

/// API connections allowed at once: `configured`, but never more than half of the
/// descriptors left after a reserve, so that downloads and the store always have theirs.
fn connection_cap(configured: usize, open_files: u64) -> usize {
    let room = (open_files.saturating_sub(128) / 2) as usize;
    configured.min(room.max(16))
}

/// Runs the daemon on `listener` until `shutdown` completes.
///
/// Refuses a non-loopback listener unless `config.allow_remote`; creates the API token,
/// the state and results folders on first start; opens the store; writes the discovery
/// file once everything runs and removes it when the API stops. On shutdown, new
/// connections are refused, background work is cancelled and awaited, in-flight
/// requests finish, event streams end, and the store is flushed and closed.
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
    // Where clients reach the API: links and redirects the daemon hands out use it,
    // and the discovery file states it (written below, once everything runs).
    let discovery = Discovery::of_daemon(&config, addr);
    let token = api_token::load_or_create(&config.token_path())?;
    crate::private::create_dir(&config.results_dir, config.results_private).map_err(|source| {
        DaemonError::Io {
            context: format!(
                "cannot create the results folder {}",
                config.results_dir.display()
            ),
            source,
        }
    })?;
    let store = Store::open(&config.db_path()).await?;
    let background = Background::new();
    let events = EventBus::new();
    let tokens = config.token_store();
    let settings = Settings::new(config);
    let auth = crate::auth::Auth::new(crate::auth::Parts {
        tokens,
        store: store.clone(),
        events: events.clone(),
        background: background.clone(),
        api_url: discovery.api_url.clone(),
    });
    let backends = Backends::new(
        &settings.get(),
        Arc::new(auth.clone()),
        UdpCache::new(),
        events.clone(),
    );
    let scheduler = Scheduler::new(crate::scheduler::Parts {
        store: store.clone(),
        events: events.clone(),
        backends: backends.clone(),
        settings: settings.clone(),
        background: background.clone(),
    });
    let results = Results::new(crate::results::Parts {
        store: store.clone(),
        events: events.clone(),
        backends: backends.clone(),
        settings: settings.clone(),
        background: background.clone(),
    });
    let catalogue = crate::catalogue::Catalogue::new(settings.clone(), background.clone());
    let app = App::new(crate::app::Parts {
        settings: settings.clone(),
        store: store.clone(),
        events: events.clone(),
        token,
        backends,
        auth: auth.clone(),
        scheduler: scheduler.clone(),
        results: results.clone(),
        background: background.clone(),
        port: addr.port(),
        api_url: discovery.api_url.clone(),
        catalogue: catalogue.clone(),
    });
    app.register_known_backends();
    catalogue.start();
    auth.restore().await?;
    app.start();
    scheduler.start().await?;
    results.start().await?;
    let applier = app.clone();
    crate::watcher::start(crate::watcher::Parts {
        store: store.clone(),
        events,
        settings,
        background: background.clone(),
        apply: Arc::new(move |new: &Config| applier.apply_config(new)),
    });
    let config = app.config();
    let open_files = raise_open_files_limit();
    let max_connections = connection_cap(config.max_connections, open_files);
    if max_connections < config.max_connections {
        tracing::warn!(
            configured = config.max_connections,
            allowed = max_connections,
            open_files,
            "fewer API connections than configured: the open-files limit is low"
        );
    }
    let limits = crate::api::server::Limits {
        header_timeout: Duration::from_secs_f64(config.header_timeout_s),
        max_connections,
        drain: SHUTDOWN_WAIT,
    };
    log_panics();
    let router = crate::api::router(app);
    // Clients find the daemon through this file from now on (removed below).
    let discovery_path = config.discovery_path();
    if let Err(e) = discovery.write(&discovery_path) {
        tracing::warn!(error = %e, "clients will not find the daemon through its discovery file");
    }
    tracing::info!(%addr, api_url = %discovery.api_url, version = VERSION, "eodispatch listening");
    let stopping = background.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        // Background work and event streams end now; requests in flight finish.
        stopping.cancel();
    };
    let served = crate::api::server::serve(listener, router, limits, signal)
        .await
        .map_err(|source| DaemonError::Io {
            context: "the API server failed".into(),
            source,
        });
    // Nothing answers any more: clients must not be sent here.
    if let Err(e) = discovery.remove_if_ours(&discovery_path) {
        tracing::warn!(error = %e, "cannot remove the discovery file");
    }
    if !background.shutdown(SHUTDOWN_WAIT).await {
        tracing::warn!(
            left = background.len(),
            "some background tasks did not end in time"
        );
    }
    store.close().await;
    tracing::info!("store closed; bye");
    served
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn connections_leave_descriptors_for_the_rest() {
        assert_eq!(connection_cap(1024, 20_000), 1024);
        assert_eq!(connection_cap(1024, 1024), 448);
        assert_eq!(connection_cap(1024, 100), 16);
    }
}
