"""Where the local eodispatch daemon is and how to reach it.

A running daemon says so itself: it writes the discovery file ``daemon.json`` into its
state folder (``src/discovery.rs``; ``eodispatch paths --json`` prints the same facts)
with ``api_url`` (the address it really listens on, a daemon on every address reached
over loopback), ``token_file``, ``results_dir``, ``state_dir``, ``config_file``, ``pid``,
``version`` and ``started``, and removes it when it stops. The plugin reads that file.

To find the file, and only when there is none (the daemon is not running, or did not
stop cleanly and left a stale one behind), the plugin follows the daemon's own rules
(``src/config.rs``): defaults < ``config.toml`` < ``EODISPATCH_*`` environment variables.

- configuration folder: ``$EODISPATCH_CONFIG_DIR`` or ``$XDG_CONFIG_HOME/eodispatch``
  (``~/.config/eodispatch``), holding an optional ``config.toml``;
- state folder (API token ``api-token``, database, log, ``daemon.json``): ``state_dir``
  or ``$XDG_STATE_HOME/eodispatch`` (``~/.local/state/eodispatch``);
- results folder: ``results_dir``, default ``~/EODispatch``;
- address: ``listen``, default ``127.0.0.1:8421`` (``0.0.0.0`` is reached at
  ``127.0.0.1``, ``[::]`` at ``[::1]``, as the daemon writes it).

``DaemonInfo.origin`` says which of the two the facts come from. The plugin reads the
token from the token file on every (re)connection, so a daemon re-created with a new
token is picked up without restarting QGIS.

No Qt widgets here.
"""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

DEFAULT_LISTEN = "127.0.0.1:8421"
TOKEN_FILE = "api-token"
DISCOVERY_FILE = "daemon.json"
ENV_PREFIX = "EODISPATCH_"

#: ``DaemonInfo.origin``: the facts come from a running daemon's discovery file.
FROM_DISCOVERY = "discovery"
#: ... from ``config.toml`` and the environment: there is no discovery file.
FROM_CONFIG = "config"
#: ... from ``config.toml`` and the environment: the discovery file is stale (its
#: process is gone) or unreadable.
FROM_CONFIG_STALE = "stale"


def _expand_home(value: str, home: Path) -> Path:
    if value == "~":
        return home
    if value.startswith("~/"):
        return home / value[2:]
    return Path(value)


def _xdg(env: Mapping[str, str], var: str, fallback: str, home: Path) -> Path:
    value = env.get(var, "")
    if value and os.path.isabs(value):
        return Path(value)
    return home / fallback


def _read_toml_top(path: Path) -> Dict[str, object]:
    """Top-level keys of ``config.toml`` (empty when absent or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        import tomllib  # Python >= 3.11

        return dict(tomllib.loads(text))
    except ImportError:
        pass
    except Exception:  # an invalid file: the daemon refuses it too; use the defaults
        return {}
    # Python < 3.11: enough for the top-level string keys the plugin needs.
    out: Dict[str, object] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            break
        if "=" not in line or line.startswith("#"):
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        if value[:1] in ('"', "'"):
            end = value.find(value[0], 1)
            out[key] = value[1:end] if end > 0 else value[1:]
    return out


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def read_discovery(path: Path) -> Tuple[Optional[Dict[str, Any]], str]:
    """The discovery file at ``path`` if a running daemon wrote it, and why not otherwise:
    ``(facts, "")``, ``(None, "")`` when there is none, ``(None, reason)`` when it is stale
    or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror or e}"
    try:
        facts = json.loads(text)
        pid = int(facts["pid"])
        for key in ("api_url", "token_file", "results_dir", "state_dir"):
            if not isinstance(facts.get(key), str) or not facts[key]:
                raise ValueError(f"no {key}")
    except (ValueError, KeyError, TypeError) as e:
        return None, f"{path} is not a discovery file ({e})"
    if not _process_alive(pid):
        return None, f"{path} was left by process {pid}, which is gone (the daemon did not stop cleanly)"
    return facts, ""


@dataclass
class DaemonInfo:
    """The daemon's address and folders: from its discovery file while it runs, else as
    the daemon itself resolves them from the configuration."""

    listen: str
    config_dir: Path
    state_dir: Path
    results_dir: Path
    #: The API's base URL from the discovery file (``None``: derived from ``listen``).
    api_url: Optional[str] = None
    #: The token file from the discovery file (``None``: ``state_dir/api-token``).
    token_file: Optional[Path] = None
    #: The running daemon's process id (from the discovery file).
    pid: Optional[int] = None
    #: Where the facts come from: ``FROM_DISCOVERY``, ``FROM_CONFIG`` or ``FROM_CONFIG_STALE``.
    origin: str = FROM_CONFIG
    #: Why a discovery file was not used (stale, unreadable), for the status line.
    note: str = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; a daemon on every address is reached over loopback
        (``0.0.0.0`` at ``127.0.0.1``, ``[::]`` at ``[::1]``)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host, _, port = self.listen.rpartition(":")
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "[::]":
            host = "[::1]"
        return f"http://{host}:{port}"

    @property
    def token_path(self) -> Path:
        return self.token_file or self.state_dir / TOKEN_FILE

    @property
    def discovery_path(self) -> Path:
        return self.state_dir / DISCOVERY_FILE

    @property
    def origin_text(self) -> str:
        """Where the address comes from, for the dock's status line and the log."""
        if self.origin == FROM_DISCOVERY:
            return f"found through {self.discovery_path}"
        if self.origin == FROM_CONFIG_STALE:
            return f"address from the configuration: {self.note}"
        return f"address from the configuration: no {self.discovery_path}"

    def read_token(self) -> Optional[str]:
        """The API token, or ``None`` while the daemon never ran (no token file)."""
        try:
            token = self.token_path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return token or None

    @classmethod
    def resolve(cls, env: Optional[Mapping[str, str]] = None) -> "DaemonInfo":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("HOME") or Path.home())
        if env.get("EODISPATCH_CONFIG_DIR"):
            config_dir = _expand_home(env["EODISPATCH_CONFIG_DIR"], home)
        else:
            config_dir = _xdg(env, "XDG_CONFIG_HOME", ".config", home) / "eodispatch"
        file = _read_toml_top(config_dir / "config.toml")

        def setting(key: str) -> Optional[str]:
            value = env.get(ENV_PREFIX + key.upper()) or file.get(key)
            return str(value) if value not in (None, "") else None

        state = setting("state_dir")
        state_dir = (
            _expand_home(state, home)
            if state
            else _xdg(env, "XDG_STATE_HOME", ".local/state", home) / "eodispatch"
        )
        listen = setting("listen") or DEFAULT_LISTEN
        facts, note = read_discovery(state_dir / DISCOVERY_FILE)
        if facts is not None:
            return cls(
                listen=listen,
                config_dir=config_dir,
                state_dir=Path(facts["state_dir"]),
                results_dir=Path(facts["results_dir"]),
                api_url=str(facts["api_url"]),
                token_file=Path(facts["token_file"]),
                pid=int(facts["pid"]),
                origin=FROM_DISCOVERY,
            )
        results = setting("results_dir")
        results_dir = _expand_home(results or "~/EODispatch", home)
        return cls(
            listen=listen,
            config_dir=config_dir,
            state_dir=state_dir,
            results_dir=results_dir,
            origin=FROM_CONFIG_STALE if note else FROM_CONFIG,
            note=note,
        )


def find_binary() -> Optional[str]:
    """The ``eodispatch`` program: ``$PATH``, then ``~/.local/bin`` (where ./install puts it)."""
    found = shutil.which("eodispatch")
    if found:
        return found
    candidate = Path.home() / ".local" / "bin" / "eodispatch"
    return str(candidate) if os.access(candidate, os.X_OK) else None


def start_daemon(info: DaemonInfo, binary: Optional[str] = None) -> Tuple[str, Optional[int]]:
    """Starts ``eodispatch serve`` in the background, detached from QGIS (it keeps
    running when QGIS exits), logging to ``state_dir/daemon.log``. Returns what was
    started and its process id (``None`` through systemd); raises ``RuntimeError`` with a remedy when there is none. Does not wait:
    the caller polls ``/health``.

    With a systemd user service installed, ``systemctl --user start eodispatch`` is used
    instead so that there is only one daemon."""
    unit = Path.home() / ".config" / "systemd" / "user" / "eodispatch.service"
    systemctl = shutil.which("systemctl")
    if unit.exists() and systemctl:
        done = subprocess.run(
            [systemctl, "--user", "start", "eodispatch"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=10,
            check=False,
        )
        if done.returncode == 0:
            return "systemctl --user start eodispatch", None
    binary = binary or find_binary()
    if not binary:
        raise RuntimeError(
            "the eodispatch program was not found (not in PATH nor ~/.local/bin); "
            "run ./install from the eodispatch repository"
        )
    info.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(info.state_dir / "daemon.log", "ab")  # noqa: SIM115 (handed to the child)
    try:
        proc = subprocess.Popen(  # noqa: S603
            [binary, "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    return binary, proc.pid
