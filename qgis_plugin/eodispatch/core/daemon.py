"""Where the local eodispatch daemon is and how to reach it.

The daemon's files follow its own rules (``src/config.rs``): defaults < ``config.toml`` <
``EODISPATCH_*`` environment variables.

- configuration folder: ``$EODISPATCH_CONFIG_DIR`` or ``$XDG_CONFIG_HOME/eodispatch``
  (``~/.config/eodispatch``), holding an optional ``config.toml``;
- state folder (API token ``api-token``, database, log): ``state_dir`` or
  ``$XDG_STATE_HOME/eodispatch`` (``~/.local/state/eodispatch``);
- results folder: ``results_dir``, default ``~/EODispatch``;
- address: ``listen``, default ``127.0.0.1:8421``.

The plugin reads the token from the token file on every (re)connection, so a daemon
re-created with a new token is picked up without restarting QGIS.

No Qt widgets here.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

DEFAULT_LISTEN = "127.0.0.1:8421"
TOKEN_FILE = "api-token"
ENV_PREFIX = "EODISPATCH_"


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


@dataclass
class DaemonInfo:
    """The daemon's address and folders as the daemon itself resolves them."""

    listen: str
    config_dir: Path
    state_dir: Path
    results_dir: Path

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; a daemon on every address is reached over loopback."""
        host, _, port = self.listen.rpartition(":")
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    @property
    def token_path(self) -> Path:
        return self.state_dir / TOKEN_FILE

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
        results = setting("results_dir")
        results_dir = _expand_home(results or "~/EODispatch", home)
        return cls(
            listen=setting("listen") or DEFAULT_LISTEN,
            config_dir=config_dir,
            state_dir=state_dir,
            results_dir=results_dir,
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
