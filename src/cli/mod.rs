//! The command-line interface: everything `eodispatch <command>` does besides parsing
//! (which is `main.rs`, with clap).
//!
//! - [`serve`] runs the daemon in the foreground;
//! - [`commands`] are the API commands (`token`, `jobs`, `show`, `submit`, `cancel`,
//!   `delete`), built on the small API [`client`], and `paths` (where the daemon and its
//!   files are: the daemon's discovery file while it runs, else the configuration);
//! - [`tasks`] the upscale task commands (`upscale`, `tasks`, `task`, `cancel-task`,
//!   `retry-task`, `delete-task`, and `--wait` with its progress line), with
//!   [`upscale`] building the task from flags;
//! - [`doctor`] checks the installation, one line per check;
//! - [`submit`] builds job bodies from flags, [`table`] and [`human`] format output.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed, or a check failed; 2 a usage
//! error: bad flags (clap), an invalid configuration, an unreadable `--file`. The API
//! token is printed by `eodispatch token` only, never in messages.

pub mod client;
pub mod commands;
pub mod doctor;
pub mod human;
pub mod login;
pub mod serve;
pub mod submit;
pub mod table;
pub mod tasks;
pub mod upscale;

use std::io::Write;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};

pub use client::{ApiProblem, Client, ClientError};

/// Why a command failed; [`CliError::exit_code`] says how the process ends.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The daemon refused the request, or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Input given on the command line is unusable (a `--file` that is not JSON...).
    #[error("{0}")]
    Input(String),
}

impl CliError {
    /// 2 for mistakes in what the user gave (configuration, input files), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Input(_) => ExitCode::from(2),
            CliError::Client(_) => ExitCode::from(1),
        }
    }
}

/// Loads the configuration (defaults < config.toml < `EODISPATCH_*`).
pub fn load_config() -> Result<Config, CliError> {
    Ok(Config::load()?)
}

/// Prints an error the way every command does: `error: <message>` on standard error.
pub fn print_error(e: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "error: {e}");
}

/// Ends a command: prints the error if there is one and gives the exit code.
pub fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            e.exit_code()
        }
    }
}

/// Writes `text` to standard output. A closed pipe (`eodispatch jobs | head -1`) is
/// not an error.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

/// Writes `v` as pretty JSON plus a newline to standard output.
pub fn out_json(v: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    out(&format!("{text}\n"));
}
