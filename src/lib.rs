//! eodispatch: a local dispatcher for Earth-observation processing jobs.
//!
//! The daemon is this library; `main.rs` only parses the command line and wires.
//! [`run`] serves the localhost JSON API on a listener the caller bound (tests bind
//! port 0) until the `shutdown` future completes.

pub mod api;
pub mod api_token;
pub mod app;
pub mod auth;
pub mod background;
pub mod body_limit;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod discovery;
pub mod events;
pub mod failpoint;
pub mod job;
pub mod platform;
pub mod private;
pub mod redact;
pub mod results;
pub mod scheduler;
pub mod store;
pub mod tiles;
pub mod watcher;

pub use daemon::run;
