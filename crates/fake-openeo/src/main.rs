//! `fake-openeo`: the fake openEO backend as a standalone process, for plugin and end-to-end
//! tests and demos. Prints one line to stdout when ready:
//! `fake-openeo listening on http://127.0.0.1:PORT (openEO API at http://127.0.0.1:PORT/openeo/1.2)`;
//! logs go to stderr (`RUST_LOG`, default `info`). Stops on Ctrl-C or SIGTERM.

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use fake_openeo::{FakeConfig, JobPlan, TokenCheck, DEFAULT_UDP_DIR};

/// A fake openEO backend (API 1.2) with controllable jobs and fault injection (`/_fake/`).
#[derive(Debug, Parser)]
#[command(name = "fake-openeo", version)]
struct Cli {
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Folder of UDP JSON files that remote namespace URLs resolve to (by file name).
    #[arg(long, default_value = DEFAULT_UDP_DIR)]
    udp_dir: PathBuf,
    /// Seconds a started job stays queued.
    #[arg(long, default_value_t = 0.5)]
    queued_secs: f64,
    /// Seconds a job runs before it finishes.
    #[arg(long, default_value_t = 2.0)]
    running_secs: f64,
    /// Lifetime of signed result links, in seconds.
    #[arg(long, default_value_t = 3600)]
    link_ttl_secs: u64,
    /// Accept only this bearer token (repeatable); default: any non-empty token.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Also accept requests without any token (as the user `anonymous`), for demos
    /// before logging in exists.
    #[arg(long)]
    anonymous: bool,
    /// Check bearer tokens with this OIDC introspection endpoint (RFC 7662) instead; needs
    /// `--introspect-client`.
    #[arg(long, requires = "introspect_client")]
    introspect: Option<String>,
    /// `client_id:client_secret` the fake authenticates with at `--introspect`.
    #[arg(long)]
    introspect_client: Option<String>,
    /// Client id listed as the provider's default client (default `fake-client`).
    #[arg(long)]
    default_client: Option<String>,
    /// Issuer URL of the `fake` OIDC provider.
    #[arg(long, default_value = fake_openeo::DEFAULT_ISSUER)]
    issuer: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let udp_dir = cli.udp_dir.canonicalize().unwrap_or(cli.udp_dir);
    if !udp_dir.is_dir() {
        tracing::warn!(dir = %udp_dir.display(), "UDP folder does not exist; remote UDPs will not resolve");
    }
    let config = FakeConfig {
        bind: cli.bind,
        port: cli.port,
        udp_dir,
        plan: JobPlan::finishing(cli.queued_secs, cli.running_secs),
        link_ttl_secs: cli.link_ttl_secs,
        token_check: if let (Some(url), Some(client)) = (cli.introspect, cli.introspect_client) {
            let (client_id, client_secret) = client
                .split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--introspect-client must be ID:SECRET"))?;
            TokenCheck::Introspect {
                url,
                client_id,
                client_secret,
            }
        } else if cli.anonymous {
            TokenCheck::Anonymous
        } else if cli.tokens.is_empty() {
            TokenCheck::Any
        } else {
            TokenCheck::Static(cli.tokens.into_iter().collect::<HashSet<_>>())
        },
        providers: cli.default_client.map(|id| {
            let mut p = fake_openeo::OidcProvider::fake(&cli.issuer);
            for c in &mut p.default_clients {
                c.id = id.clone();
            }
            vec![p]
        }),
        issuer: cli.issuer,
        ..FakeConfig::default()
    };
    let fake = fake_openeo::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "fake-openeo listening on {} (openEO API at {})",
            fake.base_url(),
            fake.api_url()
        )?;
        out.flush()?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    fake.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
