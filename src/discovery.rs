//! The discovery file: where a running daemon says how to reach it, so that its clients
//! (the CLI, the QGIS plugin, `./install`) read one file instead of each deriving the
//! address and folders from `config.toml` and the environment.
//!
//! The daemon writes `daemon.json` into its state folder (next to the API token, in the
//! same private folder: [`crate::config::Config::discovery_path`]) once it listens, and
//! removes it when it stops cleanly. It holds:
//!
//! - `api_url`: the URL the API is reached at, from the address really bound (port 0
//!   resolved); a daemon on every address (`0.0.0.0` / `[::]`) is reached over loopback
//!   (`http://127.0.0.1:PORT` / `http://[::1]:PORT`, [`api_url`]);
//! - `token_file`, `results_dir`, `state_dir`, `config_file`: the daemon's paths;
//! - `pid`, `version`, `started` (RFC 3339, UTC).
//!
//! The file is replaced in one step, private from creation (0600). A daemon that did not
//! stop cleanly leaves its file behind: [`find`] tells such a stale file (its process is
//! gone) from a running daemon's. `eodispatch paths` prints the same facts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Name of the discovery file inside the state folder.
pub const FILE_NAME: &str = "daemon.json";

/// Why the discovery file could not be written, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The file system refused.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a discovery file this version can read.
    #[error(
        "{path} is not a discovery file ({reason}); the daemon writes it again when it starts"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What a running daemon publishes about itself: the content of `daemon.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Base URL of the API without a trailing slash, e.g. `http://127.0.0.1:8421`.
    pub api_url: String,
    /// The API token file.
    pub token_file: PathBuf,
    /// The folder results are published into.
    pub results_dir: PathBuf,
    /// The state folder (database, API token, this file).
    pub state_dir: PathBuf,
    /// The `config.toml` the daemon read (it may not exist).
    pub config_file: PathBuf,
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's version.
    pub version: String,
    /// When the daemon started listening (RFC 3339, UTC).
    pub started: String,
}

/// What [`find`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A daemon runs and published this.
    Running(Discovery),
    /// A file left by a daemon whose process is gone (it did not stop cleanly).
    Stale(Discovery),
    /// No discovery file: no daemon runs with this state folder.
    Absent,
}

/// The address a client connects to for a daemon listening on `listen`: an unspecified
/// address (`0.0.0.0`, `::`) becomes the loopback address of its family.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// The API's base URL for a daemon listening on `listen` (see [`connect_addr`]), e.g.
/// `http://127.0.0.1:8421` or `http://[::1]:8421`.
pub fn api_url(listen: SocketAddr) -> String {
    format!("http://{}", connect_addr(listen))
}

/// The socket address of an `api_url` written by [`api_url`] (an IP address, never a
/// name), or `None` for anything else.
pub fn addr_of_url(url: &str) -> Option<SocketAddr> {
    let u = reqwest::Url::parse(url).ok()?;
    let port = u.port_or_known_default()?;
    match u.host()? {
        url::Host::Ipv4(ip) => Some((ip, port).into()),
        url::Host::Ipv6(ip) => Some((ip, port).into()),
        url::Host::Domain(_) => None,
    }
}

impl Discovery {
    /// The facts of a daemon of this process running with `config` on `bound` (the
    /// listener's real address), started now.
    pub fn of_daemon(config: &Config, bound: SocketAddr) -> Discovery {
        let started = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Discovery {
            api_url: api_url(bound),
            started,
            pid: std::process::id(),
            ..Discovery::of_config(config)
        }
    }

    /// The facts as the configuration gives them, for when no daemon runs: the
    /// configured address, no pid, this program's version.
    pub fn of_config(config: &Config) -> Discovery {
        Discovery {
            api_url: api_url(config.listen),
            token_file: config.token_path(),
            results_dir: config.results_dir.clone(),
            state_dir: config.state_dir.clone(),
            config_file: config.config_file(),
            pid: 0,
            version: crate::daemon::VERSION.to_string(),
            started: String::new(),
        }
    }

    /// Writes the file at `path` in one step, mode 0600 from creation (its folder is the
    /// private state folder).
    pub fn write(&self, path: &Path) -> Result<(), DiscoveryError> {
        let mut text = serde_json::to_vec_pretty(self).expect("strings and numbers serialise");
        text.push(b'\n');
        crate::private::replace_file(path, &text).map_err(|source| DiscoveryError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Removes the file at `path` if it still holds what this daemon wrote (another
    /// daemon may have started since and written its own). Returns whether it did.
    pub fn remove_if_ours(&self, path: &Path) -> Result<bool, DiscoveryError> {
        match read(path)? {
            Some(found) if &found == self => {}
            _ => return Ok(false),
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(DiscoveryError::Io {
                action: "remove",
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Reads the discovery file at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Discovery>, DiscoveryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DiscoveryError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DiscoveryError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Reads the discovery file at `path` and tells a running daemon's from a stale one.
pub fn find(path: &Path) -> Result<Found, DiscoveryError> {
    Ok(match read(path)? {
        None => Found::Absent,
        Some(d) if process_alive(d.pid) => Found::Running(d),
        Some(d) => Found::Stale(d),
    })
}

/// Whether a process with this id exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        pid != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_over_loopback() {
        let u = |s: &str| api_url(s.parse().unwrap());
        assert_eq!(u("0.0.0.0:9000"), "http://127.0.0.1:9000");
        assert_eq!(u("[::]:8421"), "http://[::1]:8421");
        assert_eq!(u("127.0.0.1:8421"), "http://127.0.0.1:8421");
        assert_eq!(u("[::1]:8421"), "http://[::1]:8421");
        assert_eq!(u("127.0.0.2:1"), "http://127.0.0.2:1");
        for s in ["0.0.0.0:9000", "[::]:8421", "127.0.0.2:1"] {
            let listen: SocketAddr = s.parse().unwrap();
            assert_eq!(addr_of_url(&api_url(listen)), Some(connect_addr(listen)));
        }
        assert_eq!(addr_of_url("http://localhost:1"), None);
    }

    #[test]
    fn written_private_read_back_and_removed_only_by_its_daemon() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::for_root(root.path());
        crate::private::ensure_dir(&config.state_dir).unwrap();
        let path = config.discovery_path();
        assert_eq!(find(&path).unwrap(), Found::Absent);
        let ours = Discovery::of_daemon(&config, "0.0.0.0:4321".parse().unwrap());
        assert_eq!(ours.api_url, "http://127.0.0.1:4321");
        ours.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(find(&path).unwrap(), Found::Running(ours.clone()));
        // Another daemon took over: ours does not remove its file.
        let other = Discovery {
            api_url: "http://127.0.0.1:4322".into(),
            ..ours.clone()
        };
        other.write(&path).unwrap();
        assert!(!ours.remove_if_ours(&path).unwrap());
        assert!(path.exists());
        assert!(other.remove_if_ours(&path).unwrap());
        assert!(!path.exists());
        // A daemon that did not stop cleanly: its process is gone.
        let gone = Discovery {
            pid: u32::MAX - 1,
            ..ours
        };
        gone.write(&path).unwrap();
        assert_eq!(find(&path).unwrap(), Found::Stale(gone));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(find(&path), Err(DiscoveryError::Malformed { .. })));
    }
}
