//! `eodispatch serve`: runs the daemon in the foreground until SIGINT or SIGTERM, with
//! its log on standard error (filter: `log` in the configuration, e.g. `info` or
//! `eodispatch=debug`). This is what the systemd user service starts.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use super::{load_config, print_error};

/// Runs the daemon; `listen` overrides the configured address. Exit code 1 when it
/// cannot start (address in use, non-loopback address refused, insecure token file)
/// or fails; 2 for an invalid configuration.
pub async fn serve(listen: Option<SocketAddr>) -> ExitCode {
    let mut config = match load_config() {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return e.exit_code();
        }
    };
    if let Some(addr) = listen {
        config.listen = addr;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|e| {
        print_error(&format!(
            "the log filter {:?} is invalid ({e}); logging at info level",
            config.log
        ));
        tracing_subscriber::EnvFilter::new("info")
    });
    // Colours only on a terminal: the journal (systemd) and log files get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            print_error(&format!("cannot listen on {}: {e}", config.listen));
            return ExitCode::from(1);
        }
    };
    match crate::run(config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::from(1)
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd stop).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
