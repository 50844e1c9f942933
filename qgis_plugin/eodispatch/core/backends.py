"""Backends and waiting jobs in plain words: what the dock's backends table and the job
list show of ``GET /backends`` entries and of a job's ``waiting`` field (see the daemon's ``/openapi.json``).

No Qt widgets here.
"""

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

LOGIN = "login"
LOGOUT = "logout"


@dataclass
class BackendView:
    """One row of the backends table: ``name`` (the title, else the address without
    ``https://``), ``state`` in plain words, ``tip`` (full URL and details) and the
    button it offers: ``LOGIN``, ``LOGOUT`` or ``None``."""

    name: str
    state: str
    tip: str
    button: Optional[str]


def parse_time(value: Any) -> Optional[_dt.datetime]:
    """An RFC 3339 time (``Z`` or an offset; any number of fraction digits) as an aware
    datetime; ``None`` when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("z", "Z")
    text = re.sub(r"Z$", "+00:00", text)
    # Python before 3.11 takes at most 6 fraction digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=_dt.timezone.utc)


def local_clock(value: Any, now: Optional[_dt.datetime] = None, seconds: bool = False) -> str:
    """``HH:MM`` (``HH:MM:SS`` with ``seconds``) in local time; the date before it when
    it is not today. Empty when ``value`` is no time."""
    t = parse_time(value)
    if t is None:
        return ""
    local = t.astimezone()
    today = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone().date()
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    return clock if local.date() == today else f"{local.strftime('%Y-%m-%d')} {clock}"


def short_url(url: Any) -> str:
    """``host[:port][/path]`` of a URL: what tells backends apart, without the scheme."""
    text = str(url or "")
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.netloc:
        return text
    path = parts.path.rstrip("/")
    return parts.netloc + path


def backend_name(entry: Dict[str, Any]) -> str:
    title = entry.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return short_url(entry.get("url"))


def login_possible(entry: Dict[str, Any]) -> bool:
    """``login.possible``; a daemon that does not say yet: possible unless not needed."""
    login = entry.get("login") or {}
    possible = login.get("possible")
    if isinstance(possible, bool):
        return possible
    return login.get("state") != "not_needed"


def backend_view(entry: Dict[str, Any], now: Optional[_dt.datetime] = None) -> BackendView:
    """The plain-words state of a ``GET /backends`` entry (or an ``auth`` event's)."""
    login = entry.get("login") or {}
    lstate = login.get("state")
    state = entry.get("state")
    possible = login_possible(entry)
    url = str(entry.get("url") or "")
    if lstate == "logged_in":
        text, button = "logged in", LOGOUT
    elif lstate == "pending":
        text, button = "logging in…", None
    elif lstate == "not_needed":
        text, button = "no login needed", None
    elif lstate == "login_required" or state == "login_required" or (lstate == "logged_out" and possible):
        text, button = "login needed", (LOGIN if possible else None)
    elif lstate == "logged_out":
        text, button = "no login needed", None
    else:
        text, button = str(lstate or state or "?").replace("_", " "), None
    if state == "unreachable":
        since = local_clock(entry.get("since"), now)
        text = f"unreachable since {since}" if since else "unreachable"
        if button == LOGIN:
            button = None  # a login needs the backend
    tip = [url]
    if entry.get("title") and entry.get("title") != url:
        tip.insert(0, str(entry["title"]))
    if login.get("provider_title") and lstate == "logged_in":
        tip.append(f"Logged in with {login['provider_title']}")
    if text == "login needed" and not possible:
        tip.append("The backend names no identity provider: set an access_token for it in config.toml")
    for extra in (entry.get("message"), login.get("message")):
        if extra:
            tip.append(str(extra))
    return BackendView(backend_name(entry), text, "\n".join(tip), button)


# --- waiting jobs -------------------------------------------------------------------

WAIT_WORDS = {
    "login_required": "login needed",
    "backend_unreachable": "backend unreachable",
    "backend_limit": "backend limit",
    "service_unavailable": "service unavailable",
    "budget": "budget reached",
}


@dataclass
class WaitView:
    """What a waiting job shows: ``text`` for the status cell, ``tip`` the daemon's
    sentence (and when it tries again), ``reason`` and ``backend`` as the daemon gave."""

    text: str
    tip: str
    reason: str
    backend: str


def waiting_view(job: Dict[str, Any], now: Optional[_dt.datetime] = None) -> Optional[WaitView]:
    """``None`` for a job that waits for nothing (``waiting`` null or missing)."""
    w = job.get("waiting")
    if not isinstance(w, dict):
        return None
    reason = str(w.get("reason") or "")
    words = WAIT_WORDS.get(reason, reason.replace("_", " ") or "something")
    message = str(w.get("message") or f"Waiting: {words}")
    extra = []
    since = local_clock(w.get("since"), now)
    if since:
        extra.append(f"waiting since {since}")
    next_try = local_clock(w.get("next_try"), now, seconds=True)
    if next_try:
        extra.append(f"next try at {next_try}")
    tip = message + (f"\n({', '.join(extra)})" if extra else "")
    return WaitView(f"waiting: {words}", tip, reason, str(w.get("backend") or ""))
