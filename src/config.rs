//! Typed configuration: defaults < `config.toml` < `EODISPATCH_*` environment variables.
//!
//! Zero configuration works: the daemon listens on `127.0.0.1:8421`, keeps its state
//! (database, API token, and while it runs the discovery file `daemon.json`) in
//! `$XDG_STATE_HOME/eodispatch` (`~/.local/state/eodispatch`),
//! reads an optional `$XDG_CONFIG_HOME/eodispatch/config.toml` and publishes results in
//! `~/EODispatch`.
//!
//! Every key of `config.toml` can be overridden by an environment variable named
//! `EODISPATCH_<KEY>` (upper case; `__` separates nested tables, e.g.
//! `EODISPATCH_BACKENDS__X__TOKEN`). Values are read as TOML scalars when they parse as
//! one (`true`, `8421`) and as strings otherwise. `EODISPATCH_CONFIG_DIR` moves the
//! folder `config.toml` is read from. Unknown keys are errors, so typos do not pass
//! silently.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default address of the local API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8421";
/// Default limit on request bodies (1 MiB): an AOI polygon with tens of thousands of
/// vertices fits; anything larger is a mistake or an attack.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default of `header_timeout_s`.
pub const DEFAULT_HEADER_TIMEOUT_S: f64 = 10.0;
/// Default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of `max_event_streams`.
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 32;
/// Default of `download_stall_s`.
pub const DEFAULT_DOWNLOAD_STALL_S: f64 = 30.0;
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "EODISPATCH_";
/// Environment variable that moves the configuration folder.
pub const ENV_CONFIG_DIR: &str = "EODISPATCH_CONFIG_DIR";
/// Name of the API token file inside the state folder.
pub const TOKEN_FILE: &str = "api-token";
/// Name of the SQLite database inside the state folder.
pub const DB_FILE: &str = "eodispatch.db";

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.toml` could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `config.toml` is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value has the wrong type or an unknown key was given.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// Where the configuration came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// `config.toml` holds a secret (an access token) but others may read it.
    #[error(
        "{path} holds an access token but can be read by other users (mode {mode:o}); \
         make it private with `chmod 600 {path}`, or remove the token and use \
         `eodispatch login`"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No home folder to derive default paths from.
    #[error(
        "cannot find the home folder; set HOME or EODISPATCH_STATE_DIR and EODISPATCH_RESULTS_DIR"
    )]
    NoHome,
}

/// A secret from the configuration (an access token): `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// A backend known to the daemon beyond those it learns from submitted jobs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL of the backend, e.g. `https://openeofed.dataspace.copernicus.eu`.
    pub url: String,
    /// Maximum number of jobs active (submitted and not ended) at once on this backend
    /// (default 2).
    pub max_running_jobs: Option<u32>,
    /// Average requests per second sent to this backend (default 5).
    pub requests_per_second: Option<f64>,
    /// A fixed openEO access token, for backends without a login flow (and for tests);
    /// sent as `Bearer oidc/<provider_id>/<token>`. Prefer `eodispatch login`.
    pub access_token: Option<Secret>,
    /// The OIDC provider id of `access_token` (default: the backend's first provider
    /// in `/credentials/oidc`).
    pub provider_id: Option<String>,
    /// The kind of platform: `openeo` (default) or `ogc_api_process` (an OGC API
    /// Processes server; `url` is its base, before any namespace and `/processes`).
    #[serde(default)]
    pub label: crate::job::Label,
    /// OGC API Processes servers behind OpenID Connect (they have no
    /// `/credentials/oidc`): the identity provider's issuer URL.
    pub issuer: Option<String>,
    /// The OAuth client id registered for eodispatch at `issuer` (public client:
    /// device code and authorization code with PKCE).
    pub client_id: Option<String>,
    /// Scopes to ask `issuer` for, besides `openid` (and `offline_access` when offered).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The most all jobs on this backend may cost per day (UTC), in the backend's
    /// currency (credits, EUR): a job whose estimate would go over is refused, a tile
    /// waits.
    pub budget_per_day: Option<f64>,
    /// The same per calendar month (UTC).
    pub budget_per_month: Option<f64>,
}

/// The daemon's configuration, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address of the local API; loopback only unless `allow_remote`.
    pub listen: SocketAddr,
    /// Allow binding a non-loopback address (the token is still required).
    pub allow_remote: bool,
    /// Folder `config.toml` is read from.
    pub config_dir: PathBuf,
    /// Folder of the database and API token (created 0700).
    pub state_dir: PathBuf,
    /// Folder results are published into (watched by the QGIS plugin).
    pub results_dir: PathBuf,
    /// Limit on request bodies in bytes.
    pub max_body_bytes: usize,
    /// `tracing` filter for the daemon's log (e.g. `info`, `eodispatch=debug`).
    pub log: String,
    /// Shortest interval between two polls of a backend, in seconds (default 5).
    pub poll_interval_min_s: f64,
    /// Longest interval between two polls of a backend, in seconds (default 60).
    pub poll_interval_max_s: f64,
    /// Where backend refresh tokens and client secrets are kept: the OS keyring
    /// (default) or, only when asked for, a 0600 file in the state folder.
    pub token_store: crate::auth::backend_tokens::StoreKind,
    /// Extra backends, by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// The GDAL helper `eodispatch-gdal` (default: next to the daemon's executable,
    /// else on `PATH`; see `results::gdal_helper`).
    pub gdal_bin: Option<PathBuf>,
    /// A result download that receives nothing for this many seconds is abandoned and
    /// resumed (default 30).
    pub download_stall_s: f64,
    /// Seconds a client has to send a request's headers, and an idle keep-alive
    /// connection to send its next request, before the API closes it (default 10).
    pub header_timeout_s: f64,
    /// Connections to the API open at once; more wait (default 1024, and at most half
    /// of the open-files limit).
    pub max_connections: usize,
    /// Event streams (`GET /events`) open at once; more are refused with 503 (default 32).
    pub max_event_streams: usize,
    /// Seconds an ordinary request (body included; not `/events` or `/files`) may take
    /// before it is cut off with 408 (default 60).
    pub request_timeout_s: f64,
    /// The results folder and each job folder are private to the user (0700, `job.json`
    /// and `results.json` 0600; default true); `false` leaves them to the umask
    /// (e.g. to share results with a group).
    pub results_private: bool,
    /// How upscale tasks' rasters are mosaicked when the request does not say:
    /// `vrt` (default) or `cog` (see `results::mosaic`). Takes effect at once.
    pub mosaic: crate::job::MosaicKind,
    /// Service catalogues, in order (see `catalogue`): `bundled`, a folder, a GitHub
    /// repository, a web folder or an OGC API Records collection URL (default: the
    /// public APEx catalogue). Takes effect at once.
    pub catalogues: Vec<String>,
    /// Seconds between catalogue refreshes (default 21600). Takes effect at once.
    pub catalogue_refresh_s: f64,
}

/// A list of strings given as a TOML array or as one comma-separated string (as
/// environment variables give it).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    List(Vec<String>),
    Text(String),
}

impl StringList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringList::List(v) => v,
            StringList::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What `config.toml` and the environment may contain; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    allow_remote: Option<bool>,
    state_dir: Option<String>,
    results_dir: Option<String>,
    max_body_bytes: Option<usize>,
    log: Option<String>,
    poll_interval_min_s: Option<f64>,
    poll_interval_max_s: Option<f64>,
    token_store: Option<crate::auth::backend_tokens::StoreKind>,
    #[serde(default)]
    backends: BTreeMap<String, BackendConfig>,
    /// `geo_bin` was this key's name before the helper became `eodispatch-gdal`.
    #[serde(alias = "geo_bin")]
    gdal_bin: Option<String>,
    download_stall_s: Option<f64>,
    header_timeout_s: Option<f64>,
    max_connections: Option<usize>,
    max_event_streams: Option<usize>,
    request_timeout_s: Option<f64>,
    results_private: Option<bool>,
    mosaic: Option<crate::job::MosaicKind>,
    catalogues: Option<StringList>,
    catalogue_refresh_s: Option<f64>,
}

impl Config {
    /// Loads the configuration from the real environment and file system.
    pub fn load() -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(&env)
    }

    /// Loads the configuration with the given environment variables (tests pass their
    /// own instead of mutating the process environment).
    pub fn load_from(env: &[(String, String)]) -> Result<Config, ConfigError> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let home = get("HOME").map(PathBuf::from).or_else(dirs::home_dir);
        let config_dir = match get(ENV_CONFIG_DIR) {
            Some(d) => expand_home(&d, home.as_deref())?,
            None => {
                xdg_dir(&get, "XDG_CONFIG_HOME", ".config", home.as_deref())?.join("eodispatch")
            }
        };
        let file = config_dir.join("config.toml");
        let mut table = match std::fs::read_to_string(&file) {
            Ok(text) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: file.clone(),
                    message: e.message().to_string(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(source) => return Err(ConfigError::Read { path: file, source }),
        };
        check_secret_file(&file, &table)?;
        let file_origin = file.display().to_string();
        // Check the file alone first so that its errors name the file.
        toml::Value::Table(table.clone())
            .try_into::<RawConfig>()
            .map_err(|e| ConfigError::Invalid {
                origin: file_origin.clone(),
                message: e.message().to_string(),
            })?;
        let mut env_keys = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Not configuration: the folder of config.toml, and the crash-test failpoint.
            if name == ENV_CONFIG_DIR || name == crate::failpoint::FAILPOINT_ENV {
                continue;
            }
            let path: Vec<String> = key.split("__").map(|p| p.to_ascii_lowercase()).collect();
            insert_path(&mut table, &path, scalar(value));
            env_keys.push(name.clone());
        }
        let raw: RawConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: format!("{file_origin} and environment {}", env_keys.join(", ")),
                    message: e.message().to_string(),
                })?;
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            origin: "listen".into(),
            message: format!(
                "{listen_text:?} is not an IP address and port such as {DEFAULT_LISTEN}"
            ),
        })?;
        let state_dir = match raw.state_dir {
            Some(d) => expand_home(&d, home.as_deref())?,
            None => {
                xdg_dir(&get, "XDG_STATE_HOME", ".local/state", home.as_deref())?.join("eodispatch")
            }
        };
        let gdal_bin = match raw.gdal_bin {
            Some(p) => Some(expand_home(&p, home.as_deref())?),
            None => None,
        };
        let results_dir = match raw.results_dir {
            Some(d) => expand_home(&d, home.as_deref())?,
            None => home.clone().ok_or(ConfigError::NoHome)?.join("EODispatch"),
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                origin: "max_body_bytes".into(),
                message: "must be at least 1024".into(),
            });
        }
        let poll_interval_min_s = raw.poll_interval_min_s.unwrap_or(5.0);
        let poll_interval_max_s = raw.poll_interval_max_s.unwrap_or(60.0);
        if !(0.01..=3600.0).contains(&poll_interval_min_s)
            || !(poll_interval_min_s..=86400.0).contains(&poll_interval_max_s)
        {
            return Err(ConfigError::Invalid {
                origin: "poll_interval_min_s, poll_interval_max_s".into(),
                message: "need 0.01 <= min <= 3600 and min <= max <= 86400 seconds".into(),
            });
        }
        let header_timeout_s = raw.header_timeout_s.unwrap_or(DEFAULT_HEADER_TIMEOUT_S);
        if !(0.1..=600.0).contains(&header_timeout_s) {
            return Err(ConfigError::Invalid {
                origin: "header_timeout_s".into(),
                message: "need 0.1 <= header_timeout_s <= 600 seconds".into(),
            });
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let max_event_streams = raw.max_event_streams.unwrap_or(DEFAULT_MAX_EVENT_STREAMS);
        if !(4..=65536).contains(&max_connections) || !(1..=4096).contains(&max_event_streams) {
            return Err(ConfigError::Invalid {
                origin: "max_connections, max_event_streams".into(),
                message: "need 4 <= max_connections <= 65536 and 1 <= max_event_streams <= 4096"
                    .into(),
            });
        }
        let request_timeout_s = raw.request_timeout_s.unwrap_or(60.0);
        if !(0.1..=3600.0).contains(&request_timeout_s) {
            return Err(ConfigError::Invalid {
                origin: "request_timeout_s".into(),
                message: "need 0.1 <= request_timeout_s <= 3600 seconds".into(),
            });
        }
        let download_stall_s = raw.download_stall_s.unwrap_or(DEFAULT_DOWNLOAD_STALL_S);
        if !(0.1..=3600.0).contains(&download_stall_s) {
            return Err(ConfigError::Invalid {
                origin: "download_stall_s".into(),
                message: "need 0.1 <= download_stall_s <= 3600 seconds".into(),
            });
        }
        let catalogues = match raw.catalogues {
            None => vec![crate::catalogue::DEFAULT_CATALOGUE.to_string()],
            Some(list) => list
                .into_vec()
                .into_iter()
                .map(|c| match c.strip_prefix('~') {
                    Some(_) => expand_home(&c, home.as_deref()).map(|p| p.display().to_string()),
                    None => Ok(c),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        for c in &catalogues {
            crate::catalogue::SourceSpec::parse(c).map_err(|message| ConfigError::Invalid {
                origin: "catalogues".into(),
                message,
            })?;
        }
        let catalogue_refresh_s = raw
            .catalogue_refresh_s
            .unwrap_or(crate::catalogue::DEFAULT_REFRESH_S);
        if !(1.0..=30.0 * 86400.0).contains(&catalogue_refresh_s) {
            return Err(ConfigError::Invalid {
                origin: "catalogue_refresh_s".into(),
                message: "need 1 <= catalogue_refresh_s <= 2592000 seconds".into(),
            });
        }
        Ok(Config {
            catalogues,
            catalogue_refresh_s,
            poll_interval_min_s,
            poll_interval_max_s,
            listen,
            allow_remote: raw.allow_remote.unwrap_or(false),
            config_dir,
            state_dir,
            results_dir,
            max_body_bytes,
            log: raw.log.unwrap_or_else(|| "info".to_string()),
            token_store: raw
                .token_store
                .unwrap_or(crate::auth::backend_tokens::StoreKind::Keyring),
            backends: raw.backends,
            gdal_bin,
            download_stall_s,
            header_timeout_s,
            max_connections,
            max_event_streams,
            request_timeout_s,
            results_private: raw.results_private.unwrap_or(true),
            mosaic: raw.mosaic.unwrap_or_default(),
        })
    }

    /// A configuration for tests and embedding: everything under `root`, API on an
    /// address chosen by the caller.
    pub fn for_root(root: &Path) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            results_dir: root.join("results"),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            log: "info".into(),
            poll_interval_min_s: 5.0,
            poll_interval_max_s: 60.0,
            token_store: crate::auth::backend_tokens::StoreKind::Keyring,
            backends: BTreeMap::new(),
            gdal_bin: None,
            download_stall_s: DEFAULT_DOWNLOAD_STALL_S,
            header_timeout_s: DEFAULT_HEADER_TIMEOUT_S,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
            request_timeout_s: 60.0,
            results_private: true,
            mosaic: crate::job::MosaicKind::Vrt,
            catalogues: vec![crate::catalogue::bundled::NAME.to_string()],
            catalogue_refresh_s: crate::catalogue::DEFAULT_REFRESH_S,
        }
    }

    /// The `[backends.*]` section of the backend at `endpoint`, if any.
    pub fn backend_section(&self, endpoint: &str) -> Option<&BackendConfig> {
        let want = crate::credentials::normalise_endpoint(endpoint);
        self.backends
            .values()
            .find(|b| crate::credentials::normalise_endpoint(&b.url) == want)
    }

    /// The budgets that apply to a job on the backend at `endpoint` with its own
    /// `max_cost` (or its task's): the backend section's daily and monthly budgets.
    pub fn budget_limits(&self, endpoint: &str, max_cost: Option<f64>) -> crate::job::cost::Limits {
        let section = self.backend_section(endpoint);
        crate::job::cost::Limits {
            max_cost,
            per_day: section.and_then(|s| s.budget_per_day),
            per_month: section.and_then(|s| s.budget_per_month),
        }
    }

    /// Path of the API token file.
    pub fn token_path(&self) -> PathBuf {
        self.state_dir.join(TOKEN_FILE)
    }

    /// Path of the discovery file a running daemon writes (see `discovery`).
    pub fn discovery_path(&self) -> PathBuf {
        self.state_dir.join(crate::discovery::FILE_NAME)
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join(DB_FILE)
    }

    /// Path of the token file, used only with `token_store = "file"`.
    pub fn token_file(&self) -> PathBuf {
        self.state_dir.join("backend-tokens.json")
    }

    /// The token store the configuration asks for.
    pub fn token_store(&self) -> crate::auth::backend_tokens::BackendTokenStore {
        match self.token_store {
            crate::auth::backend_tokens::StoreKind::Keyring => {
                crate::auth::backend_tokens::BackendTokenStore::keyring()
            }
            crate::auth::backend_tokens::StoreKind::File => {
                crate::auth::backend_tokens::BackendTokenStore::file(self.token_file())
            }
        }
    }

    /// Path of `config.toml` (which may not exist).
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
}

/// `$VAR` if set and absolute, else `$HOME/<fallback>` (the XDG base directory rule).
fn xdg_dir(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
    fallback: &str,
    home: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    match get(var) {
        Some(v) if Path::new(&v).is_absolute() => Ok(PathBuf::from(v)),
        _ => Ok(home.ok_or(ConfigError::NoHome)?.join(fallback)),
    }
}

/// Expands a leading `~/` to the home folder.
fn expand_home(p: &str, home: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if p == "~" {
        return home.map(Path::to_path_buf).ok_or(ConfigError::NoHome);
    }
    match p.strip_prefix("~/") {
        Some(rest) => Ok(home.ok_or(ConfigError::NoHome)?.join(rest)),
        None => Ok(PathBuf::from(p)),
    }
}

/// Reads an environment value as a TOML scalar when it is one, else as a string.
fn scalar(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets `table[path[0]][path[1]]... = value`, creating tables on the way.
fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert_path(t, rest, value);
            }
        }
    }
}

/// A `config.toml` with a secret in it (a backend's `access_token`) must be readable by
/// its owner only.
fn check_secret_file(file: &Path, table: &toml::Table) -> Result<(), ConfigError> {
    let has_secret = table
        .get("backends")
        .and_then(toml::Value::as_table)
        .is_some_and(|backends| {
            backends.values().any(|b| {
                b.get("access_token")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|t| !t.trim().is_empty())
            })
        });
    if !has_secret {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ConfigError::Insecure {
                    path: file.to_path_buf(),
                    mode,
                });
            }
        }
    }
    Ok(())
}

/// The configuration as it is now, shared by the parts of a running daemon: replaced
/// (safe keys only) when `config.toml` changes. Cheap to clone.
#[derive(Clone)]
pub struct Settings(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Config>>>);

impl Settings {
    /// Settings starting from `config`.
    pub fn new(config: Config) -> Settings {
        Settings(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(config),
        )))
    }

    /// The configuration as it is now.
    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes over the keys of `new` that can change while running: poll intervals,
    /// the GDAL helper's path, backends and the catalogue keys. Returns the keys whose change needs a
    /// restart (they keep their old values until then).
    pub fn apply(&self, new: &Config) -> Vec<&'static str> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        let old = slot.clone();
        let mut next = (*old).clone();
        next.poll_interval_min_s = new.poll_interval_min_s;
        next.poll_interval_max_s = new.poll_interval_max_s;
        next.gdal_bin = new.gdal_bin.clone();
        next.mosaic = new.mosaic;
        next.backends = new.backends.clone();
        next.catalogues = new.catalogues.clone();
        next.catalogue_refresh_s = new.catalogue_refresh_s;
        let checks: [(&'static str, bool); 13] = [
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
            (
                "header_timeout_s",
                old.header_timeout_s != new.header_timeout_s,
            ),
            (
                "max_connections",
                old.max_connections != new.max_connections,
            ),
            (
                "max_event_streams",
                old.max_event_streams != new.max_event_streams,
            ),
            (
                "request_timeout_s",
                old.request_timeout_s != new.request_timeout_s,
            ),
            (
                "results_private",
                old.results_private != new.results_private,
            ),
        ];
        *slot = std::sync::Arc::new(next);
        checks
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| key)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn zero_configuration_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let c = Config::load_from(&env(&[("HOME", home)])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8421");
        assert!(!c.allow_remote);
        assert_eq!(c.config_dir, dir.path().join(".config/eodispatch"));
        assert_eq!(c.state_dir, dir.path().join(".local/state/eodispatch"));
        assert_eq!(c.results_dir, dir.path().join("EODispatch"));
        assert_eq!(
            c.token_path(),
            dir.path().join(".local/state/eodispatch/api-token")
        );
    }

    #[test]
    fn xdg_variables_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let c = Config::load_from(&env(&[
            ("HOME", home),
            ("XDG_CONFIG_HOME", "/xdg/config"),
            ("XDG_STATE_HOME", "/xdg/state"),
        ]))
        .unwrap();
        assert_eq!(c.config_dir, PathBuf::from("/xdg/config/eodispatch"));
        assert_eq!(c.state_dir, PathBuf::from("/xdg/state/eodispatch"));
    }

    #[test]
    fn file_then_environment_override() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("config.toml"),
            "listen = \"127.0.0.1:9000\"\nresults_dir = \"~/Results\"\nlog = \"debug\"\n\
             [backends.vito]\nurl = \"https://openeo.vito.be\"\nmax_running_jobs = 3\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let cfg_s = cfg.to_str().unwrap();
        let c = Config::load_from(&env(&[
            ("HOME", home),
            ("EODISPATCH_CONFIG_DIR", cfg_s),
            ("EODISPATCH_LISTEN", "127.0.0.1:9100"),
            ("EODISPATCH_ALLOW_REMOTE", "true"),
            ("EODISPATCH_BACKENDS__VITO__MAX_RUNNING_JOBS", "5"),
        ]))
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert!(c.allow_remote);
        assert_eq!(c.results_dir, dir.path().join("Results"));
        assert_eq!(c.log, "debug");
        assert_eq!(c.backends["vito"].url, "https://openeo.vito.be");
        assert_eq!(c.backends["vito"].max_running_jobs, Some(5));
    }

    #[test]
    fn the_gdal_helper_key_keeps_its_old_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("config.toml"),
            "geo_bin = \"/opt/eodispatch-gdal\"\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let cfg_s = cfg.to_str().unwrap();
        let c =
            Config::load_from(&env(&[("HOME", home), ("EODISPATCH_CONFIG_DIR", cfg_s)])).unwrap();
        assert_eq!(
            c.gdal_bin.as_deref(),
            Some(Path::new("/opt/eodispatch-gdal"))
        );
        let c = Config::load_from(&env(&[
            ("HOME", home),
            ("EODISPATCH_GDAL_BIN", "/x/helper"),
        ]))
        .unwrap();
        assert_eq!(c.gdal_bin.as_deref(), Some(Path::new("/x/helper")));
    }

    #[test]
    fn catalogues_from_the_file_or_a_comma_separated_variable() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let c = Config::load_from(&env(&[("HOME", home)])).unwrap();
        assert_eq!(c.catalogues, [crate::catalogue::DEFAULT_CATALOGUE]);
        assert_eq!(c.catalogue_refresh_s, 21600.0);
        let cfg = dir.path().join(".config/eodispatch");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("config.toml"),
            "catalogues = [\"~/apex\", \"bundled\"]\ncatalogue_refresh_s = 60\n",
        )
        .unwrap();
        let c = Config::load_from(&env(&[("HOME", home)])).unwrap();
        assert_eq!(
            c.catalogues,
            [
                dir.path().join("apex").display().to_string(),
                "bundled".into()
            ]
        );
        assert_eq!(c.catalogue_refresh_s, 60.0);
        let c = Config::load_from(&env(&[
            ("HOME", home),
            (
                "EODISPATCH_CATALOGUES",
                "http://127.0.0.1:9/apex/, /srv/apex",
            ),
        ]))
        .unwrap();
        assert_eq!(c.catalogues, ["http://127.0.0.1:9/apex/", "/srv/apex"]);
        let e = Config::load_from(&env(&[
            ("HOME", home),
            ("EODISPATCH_CATALOGUES", "ftp://x"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("catalogues"), "{e}");
        let e = Config::load_from(&env(&[
            ("HOME", home),
            ("EODISPATCH_CATALOGUE_REFRESH_S", "0"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("catalogue_refresh_s"), "{e}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let c = Config::load_from(&env(&[
            ("HOME", home),
            ("EODISPATCH_BACKENDS__X__URL", "https://x.example"),
            ("EODISPATCH_BACKENDS__X__ACCESS_TOKEN", "AT-SENTINEL"),
        ]))
        .unwrap();
        assert_eq!(
            c.backends["x"].access_token.as_ref().map(Secret::expose),
            Some("AT-SENTINEL")
        );
        assert!(!format!("{c:?}").contains("AT-SENTINEL"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let e = Config::load_from(&env(&[("HOME", home), ("EODISPATCH_LISTN", "x")])).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::load_from(&env(&[("HOME", home), ("EODISPATCH_LISTEN", "nowhere")]))
            .unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
        let cfg = dir.path().join(".config/eodispatch");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("config.toml"), "listen = [").unwrap();
        let e = Config::load_from(&env(&[("HOME", home)])).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }
}
