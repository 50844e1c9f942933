//! `eodispatch login`, `logout` and `backends`: backend logins through the daemon's
//! `/auth/*` API. The daemon does the OAuth work and keeps the tokens in the keyring; this
//! side shows the device code or opens the browser, and waits for the outcome.
//!
//! A client secret is read from standard input, never from the command line (where
//! other users could see it in the process list).

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::Client;
use super::table::Table;
use super::{load_config, out, out_json, CliError};

/// Which flow `eodispatch login` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFlow {
    /// Device code (default; works over SSH and without a browser here).
    Device,
    /// Browser with a redirect back to the daemon.
    Browser,
    /// Client credentials (service accounts).
    ClientCredentials,
}

/// Options of `eodispatch login`.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// Backend URL.
    pub endpoint: String,
    /// Flow.
    pub flow: LoginFlow,
    /// Provider id (default: the backend's first).
    pub provider: Option<String>,
    /// Client id (required for client credentials).
    pub client_id: Option<String>,
    /// Do not try to open a browser.
    pub no_browser: bool,
    /// Print the daemon's answers as JSON.
    pub json: bool,
}

/// `eodispatch login URL`.
pub async fn login(opts: LoginOptions) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let mut body = json!({
        "endpoint": opts.endpoint,
        "method": match opts.flow {
            LoginFlow::Device => "device",
            LoginFlow::Browser => "browser",
            LoginFlow::ClientCredentials => "client_credentials",
        },
    });
    if let Some(p) = &opts.provider {
        body["provider_id"] = json!(p);
    }
    if let Some(c) = &opts.client_id {
        body["client_id"] = json!(c);
    }
    if opts.flow == LoginFlow::ClientCredentials {
        body["client_secret"] = json!(read_secret()?);
    }
    let started = client.post("/auth/login", Some(&body)).await?;
    if opts.json && opts.flow == LoginFlow::ClientCredentials {
        out_json(&started);
        return Ok(ExitCode::SUCCESS);
    }
    match opts.flow {
        LoginFlow::ClientCredentials => {
            out(&format!(
                "Logged in to {} as service account {} (provider {}).\n",
                text(&started, "endpoint"),
                opts.client_id.as_deref().unwrap_or("-"),
                text(&started, "provider_id")
            ));
            return Ok(ExitCode::SUCCESS);
        }
        LoginFlow::Device => {
            let page = started
                .get("verification_uri_complete")
                .and_then(Value::as_str)
                .unwrap_or_else(|| {
                    started
                        .get("verification_uri")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                });
            eprintln!(
                "To log in to {}, open\n\n    {}\n\nand enter the code  {}\n\n(waiting; the code expires in {} s)",
                text(&started, "endpoint"),
                page,
                text(&started, "user_code"),
                text(&started, "expires_in"),
            );
            if !opts.no_browser {
                open_browser(page);
            }
        }
        LoginFlow::Browser => {
            let url = text(&started, "authorization_url");
            eprintln!(
                "Opening the login page of {} in your browser. If it does not open, visit:\n\n    {url}\n",
                text(&started, "endpoint")
            );
            if !opts.no_browser {
                open_browser(&url);
            }
        }
    }
    let login_id = text(&started, "login_id");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = client.get(&format!("/auth/logins/{login_id}"), &[]).await?;
        match status.get("state").and_then(Value::as_str) {
            Some("pending") => continue,
            Some("logged_in") => {
                if opts.json {
                    out_json(&status);
                } else {
                    out(&format!("Logged in to {}.\n", text(&status, "endpoint")));
                }
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                if opts.json {
                    out_json(&status);
                }
                return Err(CliError::Input(format!(
                    "login {}: {}",
                    text(&status, "state"),
                    text(&status, "error")
                )));
            }
        }
    }
}

/// Reads a client secret from standard input (one line; the newline is dropped).
fn read_secret() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Client secret (then Enter; it is read from standard input, not shown in the process list):");
    }
    let mut s = String::new();
    stdin
        .lock()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| {
            CliError::Input(format!(
                "cannot read the client secret from standard input: {e}"
            ))
        })?;
    let secret = s.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        return Err(CliError::Input(
            "no client secret on standard input; pipe it in, e.g. `printf %s \"$SECRET\" | eodispatch login URL --client-credentials --client-id ID`".into(),
        ));
    }
    Ok(secret)
}

/// Best effort: the desktop's opener, detached. Never fails the command.
fn open_browser(url: &str) {
    if url.is_empty() || !(url.starts_with("https://") || url.starts_with("http://")) {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let graphical = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !graphical {
        return;
    }
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// `eodispatch logout URL`.
pub async fn logout(endpoint: String, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let entry = client
        .post("/auth/logout", Some(&json!({ "endpoint": endpoint })))
        .await?;
    if json {
        out_json(&entry);
    } else {
        out(&format!(
            "Logged out of {}; its tokens were removed from the {}.\n",
            text(&entry, "url"),
            text(&entry, "token_store")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch backends`.
pub async fn backends(json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let list = client.get("/backends", &[]).await?;
    if json {
        out_json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(["BACKEND", "STATE", "LOGIN", "PROVIDER", "STORE"]);
    for b in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(vec![
            text(b, "url"),
            text(b, "state"),
            b.pointer("/login/state")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            b.pointer("/login/provider_id")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            text(b, "token_store"),
        ]);
    }
    out(&table.render());
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
