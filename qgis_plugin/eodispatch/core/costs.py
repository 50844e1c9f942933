"""Costs: the live estimate of what the form would submit (``POST /estimate``), what
finished jobs cost (``costs`` of a job, the sum of a task's tiles), budgets
(``GET``/``PUT /budgets``) and the daemon's ``BudgetExceeded`` refusals, in words.

``Estimator`` asks the daemon once the form has been still for ``delay_ms``, and only
the answer to the latest question is shown: a slower answer to an earlier question
(another extent) arrives late and is dropped.

No Qt widgets here.
"""

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .catalogue import number_text
from .client import ApiError, ApiResult, DaemonClient

BUDGET_NAMES = {"per_day": "daily budget", "per_month": "monthly budget", "max_cost": "maximum cost of the job"}


def _num(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def amount_text(amount: Any, unit: Any = None) -> str:
    a = _num(amount)
    if a is None:
        return ""
    return f"{number_text(a)} {unit or ''}".strip()


def estimate_known(answer: Dict[str, Any]) -> bool:
    return answer.get("basis") != "unknown" and _num(answer.get("amount")) is not None


def estimate_text(answer: Dict[str, Any], upscale: bool = False) -> str:
    """The estimate line(s): the amount, the daemon's explanation, and the tile count of
    an upscale task; "Cost unknown" when the daemon cannot tell."""
    explanation = str(answer.get("explanation") or "").strip()
    quantity = answer.get("quantity") if isinstance(answer.get("quantity"), dict) else {}
    tiles = quantity.get("tiles")
    if estimate_known(answer):
        head = f"Estimated cost: {amount_text(answer.get('amount'), answer.get('unit'))}"
        if answer.get("basis") == "per-area":
            head += " (from the area)"
    else:
        head = "Cost unknown"
        if answer.get("cost_unit"):
            head += f" (the catalogue says: {answer['cost_unit']})"
    lines = [head]
    if explanation:
        lines.append(explanation)
    if upscale and isinstance(tiles, int):
        lines.append(f"{tiles} tile{'s' if tiles != 1 else ''}")
    return "\n".join(lines)


def _limit_text(spent: Any, limit: Any, unit: str, period: str) -> str:
    if _num(limit) is None:
        return f"{amount_text(spent or 0, unit)} spent {period} (no limit)"
    return f"{number_text(_num(spent) or 0)} of {amount_text(limit, unit)} spent {period}"


def budget_text(budget: Optional[Dict[str, Any]]) -> str:
    """"Budget of <backend>: 1 of 10 credits spent today; 3 of 100 credits spent this
    month"; empty without a budget."""
    if not isinstance(budget, dict):
        return ""
    unit = str(budget.get("unit") or "")
    return (f"Budget of {budget.get('backend') or 'the backend'}: "
            f"{_limit_text(budget.get('spent_today'), budget.get('per_day'), unit, 'today')}; "
            f"{_limit_text(budget.get('spent_this_month'), budget.get('per_month'), unit, 'this month')}")


def exceed_warning(answer: Dict[str, Any]) -> str:
    """The warning of an estimate that would overspend; empty when it would not."""
    budget = answer.get("budget") if isinstance(answer.get("budget"), dict) else {}
    which = budget.get("would_exceed")
    if not which:
        return ""
    unit = budget.get("unit") or answer.get("unit") or ""
    name = BUDGET_NAMES.get(str(which), str(which))
    if which == "per_day":
        limit, spent = budget.get("per_day"), budget.get("spent_today")
    elif which == "per_month":
        limit, spent = budget.get("per_month"), budget.get("spent_this_month")
    else:
        limit, spent = None, None
    parts = [f"⚠ This would exceed the {name}"]
    if _num(limit) is not None:
        period = "today" if which == "per_day" else "this month"
        parts.append(f" ({number_text(_num(spent) or 0)} of {amount_text(limit, unit)} spent {period})")
    parts.append(": the daemon will refuse it or hold it back.")
    return "".join(parts)


def budget_exceeded(error: Optional[ApiError]) -> bool:
    return error is not None and error.code == "BudgetExceeded"


def budget_exceeded_text(error: ApiError) -> str:
    """A ``BudgetExceeded`` refusal in one sentence: which budget, the limit, what was
    spent, the estimate."""
    body = error.body if isinstance(error.body, dict) else {}
    which = str(body.get("budget") or "")
    name = BUDGET_NAMES.get(which, which or "budget")
    backend = body.get("backend")
    unit = body.get("unit") or ""
    text = f"Refused: the {name}" + (f" of {backend}" if backend else "") + " would be exceeded"
    figures = []
    if _num(body.get("limit")) is not None:
        figures.append(f"limit {amount_text(body.get('limit'), unit)}")
    if _num(body.get("spent")) is not None:
        figures.append(f"spent {amount_text(body.get('spent'), unit)}")
    if _num(body.get("estimate")) is not None:
        figures.append(f"this estimate {amount_text(body.get('estimate'), unit)}")
    if figures:
        text += " (" + ", ".join(figures) + ")"
    text += "."
    if error.message and error.message not in text:
        text += " " + error.message
    return text


def job_cost(job: Dict[str, Any]) -> Optional[float]:
    return _num(job.get("costs"))


def job_unit(job: Dict[str, Any]) -> str:
    est = job.get("estimate") if isinstance(job.get("estimate"), dict) else {}
    return str(est.get("unit") or "")


def job_cost_text(job: Dict[str, Any]) -> str:
    """What the platform charged; before that, the estimate ("≈ …")."""
    cost = job_cost(job)
    if cost is not None:
        return amount_text(cost, job_unit(job))
    est = job.get("estimate") if isinstance(job.get("estimate"), dict) else {}
    if _num(est.get("amount")) is not None:
        return "≈ " + amount_text(est.get("amount"), est.get("unit"))
    return ""


def job_cost_tip(job: Dict[str, Any]) -> str:
    lines = []
    cost = job_cost(job)
    if cost is not None:
        lines.append(f"Reported by the platform: {amount_text(cost, job_unit(job))}")
    est = job.get("estimate") if isinstance(job.get("estimate"), dict) else {}
    if _num(est.get("amount")) is not None:
        lines.append(f"Estimated: {amount_text(est.get('amount'), est.get('unit'))} ({est.get('basis') or '?'})")
    if _num(job.get("max_cost")) is not None:
        lines.append(f"Maximum cost: {number_text(job['max_cost'])}")
    usage = job.get("usage")
    if isinstance(usage, dict) and usage:
        for k, v in usage.items():
            if isinstance(v, dict):
                v = f"{v.get('value', '')} {v.get('unit', '')}".strip()
            lines.append(f"{k}: {v}")
    return "\n".join(lines)


def task_cost(task: Dict[str, Any], tiles: Iterable[Dict[str, Any]] = ()) -> Optional[float]:
    """The task's ``costs`` (the daemon's sum of its tiles), else the sum of the tiles'."""
    cost = _num(task.get("costs"))
    if cost is not None:
        return cost
    values = [c for c in (job_cost(t) for t in tiles) if c is not None]
    return sum(values) if values else None


def task_cost_text(task: Dict[str, Any], tiles: Iterable[Dict[str, Any]] = ()) -> str:
    tiles = list(tiles)
    cost = task_cost(task, tiles)
    if cost is None:
        return ""
    unit = next((job_unit(t) for t in tiles if job_unit(t)), "")
    return amount_text(cost, unit)


def budget_entries(data: Any) -> List[Dict[str, Any]]:
    return [b for b in data if isinstance(b, dict) and b.get("backend")] if isinstance(data, list) else []


def parse_limit(text: str) -> Tuple[Optional[float], Optional[str]]:
    """A budget field: empty = no limit; else a number ≥ 0. ``(value, error)``."""
    text = text.strip().replace(",", ".")
    if not text:
        return None, None
    try:
        v = float(text)
    except ValueError:
        return None, "not a number"
    if v < 0 or v != v:
        return None, "must be 0 or more"
    return v, None


class Estimator(QObject):
    """Debounced ``POST /estimate`` of the body ``provider()`` returns (``None``: nothing
    to estimate yet). Only the latest question's answer is emitted."""

    estimated = pyqtSignal(dict)  # the daemon's answer
    failed = pyqtSignal(object)  # ApiError
    cleared = pyqtSignal()  # nothing to estimate
    busy = pyqtSignal()  # a question is on its way

    def __init__(self, client: DaemonClient, provider: Callable[[], Optional[Dict[str, Any]]],
                 delay_ms: int = 400, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.client = client
        self.provider = provider
        self.seq = 0  # the latest question
        self.asked = 0  # questions sent
        self.dropped = 0  # late answers to earlier questions
        self.last_body: Optional[Dict[str, Any]] = None
        self.last_answer: Optional[Dict[str, Any]] = None
        self.enabled = True
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.ask_now)

    def changed(self, *_args) -> None:
        """The form changed: ask once it has been still for the delay."""
        if self.enabled:
            self._timer.start()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def ask_now(self, force: bool = False) -> None:
        """Asks now (``force``: even when the body is the one last answered, e.g. after
        the budgets changed)."""
        self._timer.stop()
        try:
            body = self.provider()
        except Exception:  # a half-built form: nothing to estimate
            body = None
        if body is None:
            self.seq += 1  # an answer on its way is stale now
            self.last_body = None
            self.last_answer = None
            self.cleared.emit()
            return
        if body == self.last_body and self.last_answer is not None and not force:
            return
        self.ask(body)

    def ask(self, body: Dict[str, Any]) -> None:
        self.seq += 1
        self.asked += 1
        seq = self.seq
        self.last_body = body
        self.last_answer = None  # the answer to this body, once it comes
        self.busy.emit()
        self.client.post("/estimate", body, lambda r, s=seq: self._answered(s, r))

    def _answered(self, seq: int, result: ApiResult) -> None:
        if seq != self.seq:
            self.dropped += 1
            return  # an answer to an earlier question
        if result.ok and isinstance(result.data, dict):
            self.last_answer = result.data
            self.estimated.emit(result.data)
        else:
            self.last_answer = None
            self.failed.emit(result.error)

    def stop(self) -> None:
        self._timer.stop()
        self.seq += 1
