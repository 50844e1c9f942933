"""Issue 12 in the plugin, against the real daemon (its bundled APEx catalogue) and the
fake openEO backend: the service browser (list, search, filters, details, links,
choosing fills the form with the catalogue's defaults), the live cost estimate (follows
the extent, ignores a late answer to an earlier question, tile count of an upscale
task, budget warning), costs of finished jobs and tasks in the job list, BudgetExceeded
refusals, and the budget dialog (PUT then GET)."""

import json
import time
import urllib.parse

import pytest

from conftest import pv_job, wait_until

PV_ID = "eurac_pv_farm_detection"
# Two boxes near Vienna of clearly different areas.
BOX_A = {"west": 16.30, "south": 47.95, "east": 16.40, "north": 48.00}
BOX_B = {"west": 16.20, "south": 47.90, "east": 16.60, "north": 48.10}
BOX_C = {"west": 16.34, "south": 47.96, "east": 16.42, "north": 48.01}


@pytest.fixture
def plugin(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon, fresh_settings):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    import eodispatch

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    qgis_canvas.resize(800, 600)
    qgis_canvas.setExtent(QgsRectangle(16.3, 47.9, 16.5, 48.05))
    p = eodispatch.classFactory(qgis_iface)
    p.initGui()
    p.start()
    wait_until(lambda: p.stream.is_connected, message="event stream")
    yield p
    p.unload()


def services(daemon, query=""):
    status, data = daemon.api("GET", "/services" + query)
    assert status == 200, (status, data)
    return data


def haystack(record):
    parts = [record.get("id"), record.get("title"), record.get("description")]
    parts += record.get("keywords") or []
    platform = record.get("platform") or {}
    parts.append(platform.get("title"))
    return " ".join(str(p) for p in parts if p).lower()


def settle_filter(browser):
    wait_until(lambda: not browser.filter_pending, message="search applied")


def open_browser(dock, daemon):
    want = [s["id"] for s in services(daemon)]
    browser = dock.open_browser()
    wait_until(lambda: browser.ids() == want, message=f"the browser lists the daemon's {len(want)} services")
    return browser, want


# --- service browser ------------------------------------------------------------------


def test_browser_lists_searches_filters_and_shows_a_service(plugin, daemon, monkeypatch):
    from eodispatch.gui import browser as B

    browser, ids = open_browser(plugin.dock, daemon)
    assert len(ids) == 70, "the daemon bundles the 70-record APEx snapshot"
    assert browser.count_label.text() == "70 services"
    # Where the list comes from (GET /catalogue): each source and how it stands (offline in
    # the tests: the bundled snapshot stands in).
    from eodispatch.core.catalogue import source_text

    status, catalogue = daemon.api("GET", "/catalogue")
    assert status == 200 and catalogue["sources"], catalogue
    want = "\n".join(source_text(x) for x in catalogue["sources"])
    wait_until(lambda: browser.sources_label.text() == want, message="catalogue sources")
    assert all(x["source"] in want and x["state"] in ("ok", "cached", "offline", "bundled") for x in catalogue["sources"])

    # Typing: nothing happens per key, the list follows after a pause.
    t0 = time.monotonic()
    for ch in "ndvi":
        browser.search.insert(ch)
    assert time.monotonic() - t0 < 0.2
    assert browser.list.count() == 70 and browser.filter_pending
    settle_filter(browser)
    records = services(daemon)
    ndvi = [r["id"] for r in records if "ndvi" in haystack(r)]
    assert 0 < len(ndvi) < 70
    assert browser.ids() == ndvi
    assert browser.count_label.text() == f"{len(ndvi)} of 70 services"

    # A keyword of the catalogue narrows it too (every word must match).
    browser.search.setText("solar sentinel-2")
    settle_filter(browser)
    solar = [r["id"] for r in records if "solar" in haystack(r) and "sentinel-2" in haystack(r)]
    assert PV_ID in solar and browser.ids() == solar and len(solar) < 70

    # The kind and platform filters agree with the daemon's own filters.
    browser.search.clear()
    settle_filter(browser)
    ogc = browser.kind_filter.findData("ogc_api_process")
    assert ogc > 0
    browser.kind_filter.setCurrentIndex(ogc)
    want = [r["id"] for r in services(daemon, "?kind=ogc_api_process")]
    assert 0 < len(want) < 70 and browser.ids() == want
    browser.kind_filter.setCurrentIndex(0)
    platforms = [browser.platform_filter.itemData(i) for i in range(1, browser.platform_filter.count())]
    assert len(platforms) >= 2, platforms
    pid = platforms[0]
    browser.platform_filter.setCurrentIndex(1)
    want = [r["id"] for r in records if (r.get("platform") or {}).get("id") == pid]
    assert 0 < len(want) < 70 and browser.ids() == want
    # The daemon's filter (a part of the platform's id, title or URL) finds them too.
    assert set(want) <= {r["id"] for r in services(daemon, "?platform=" + urllib.parse.quote(pid))}
    browser.platform_filter.setCurrentIndex(0)
    assert len(browser.ids()) == 70

    # The PV service: description, platform, cost and unit, links; no internet: no thumbnail.
    assert browser.select(PV_ID)
    record = next(r for r in records if r["id"] == PV_ID)
    assert browser.title_label.text() == record["title"]
    assert record["description"] and record["description"] in browser.description.toPlainText()
    assert record["platform"] and browser.platform_label.text() == record["platform"]["title"]
    assert isinstance(record["cost_estimate"], (int, float)) and record["cost_unit"]
    assert browser.cost_label.text().startswith(str(record["cost_estimate"]))
    assert record["cost_unit"] in browser.cost_label.text()
    status, detail = daemon.api("GET", f"/services/{PV_ID}")
    assert status == 200
    hrefs = [x["href"] for x in detail["links"] if x["href"].startswith(("http://", "https://"))]
    assert len(hrefs) >= 3, detail["links"]
    wait_until(lambda: browser.link_urls() == hrefs, message=f"links of the service {hrefs}: {browser.link_urls()}")
    # No internet in the tests: the placeholder (with internet: the image).
    wait_until(lambda: browser.thumbnail.text() in (B.NO_PREVIEW, ""), timeout=30, message="thumbnail or placeholder")
    assert browser.thumbnail.text() == B.NO_PREVIEW or not browser.thumbnail.pixmap().isNull()
    opened = []
    monkeypatch.setattr(B.QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url.toString())))
    browser.open_link(browser.links.item(len(hrefs) - 1))
    assert opened == [hrefs[-1]]


def test_service_detail_and_unknown_service(daemon):
    """What the browser reads for a selected service; an unknown id is a 404 problem."""
    status, detail = daemon.api("GET", f"/services/{PV_ID}")
    assert status == 200 and detail["id"] == PV_ID
    assert isinstance(detail["links"], list) and isinstance(detail["defaults"], dict)
    status, body = daemon.api("GET", "/services/no-such-service")
    assert status == 404 and isinstance(body, dict) and body.get("status") == 404
    assert "no-such-service" in str(body.get("detail")), body


def test_choosing_a_service_fills_the_form_with_its_defaults(plugin, daemon):
    dock = plugin.dock
    status, detail = daemon.api("GET", f"/services/{PV_ID}")
    assert status == 200
    defaults = detail["defaults"]
    assert defaults.get("temporal_extent") == ["2023-05-01", "2023-09-30"], "the PV benchmark scenario"
    browser, _ = open_browser(dock, daemon)
    assert browser.select(PV_ID)
    browser.choose()
    assert browser.isHidden()
    assert dock.service_combo.currentData()["id"] == PV_ID
    assert dock.endpoint_edit.text() == detail["endpoint"] and dock.application_edit.text() == detail["application"]
    assert dock.title_edit.text() == detail["title"]
    wait_until(lambda: "temporal_extent" in dock.applied_defaults, message="defaults in the form")
    values, errors = dock.form.values()
    assert not errors
    assert values["temporal_extent"] == defaults["temporal_extent"]
    # `bbox` is no parameter of the UDP: left out, the form's extent stays.
    assert "bbox" not in values and "spatial_extent" in values
    # The choice is remembered like a pick in the list.
    from qgis.core import QgsSettings

    from eodispatch.gui.dock import SERVICE_CHOICE_KEY

    assert QgsSettings().value(SERVICE_CHOICE_KEY) == PV_ID


# --- live cost estimate ---------------------------------------------------------------


def choose_pv(dock, daemon):
    record = next(r for r in services(daemon) if r["id"] == PV_ID)
    dock.choose_service(record, {"defaults": {}})
    wait_until(lambda: "spatial_extent" in dock.form.editors and dock.upscale_check.isEnabled(), message="PV form")
    return record


def settle_estimate(dock):
    wait_until(lambda: not dock.estimator.pending and not dock.estimate_label.isHidden()
               and dock.estimator.last_answer is not None
               and dock.estimator.last_body == dock.estimate_body(), timeout=20, message="estimate shown")
    return dock.estimator.last_answer


def expected(daemon, body):
    status, answer = daemon.api("POST", "/estimate", body)
    assert status == 200, answer
    return answer


def test_live_estimate_follows_the_extent(plugin, daemon):
    from eodispatch.core import costs as K

    dock = plugin.dock
    choose_pv(dock, daemon)
    extent = dock.form.editors["spatial_extent"]
    extent.set_value(BOX_A)
    settle_estimate(dock)
    body_a = dock.estimate_body()
    want_a = expected(daemon, body_a)
    assert want_a["basis"] == "per-area" and want_a["amount"] > 0 and want_a["quantity"]["area_km2"] > 0
    assert want_a["explanation"] and want_a["explanation"] in dock.estimate_label.text()
    assert dock.estimate_label.text().startswith(K.estimate_text(want_a))
    assert want_a["service"] == PV_ID

    # Two quick changes: one question (after the pause), for the last extent.
    asked = dock.estimator.asked
    extent.set_value(BOX_B)
    extent.set_value(BOX_C)
    answer = settle_estimate(dock)
    want_c = expected(daemon, dock.estimate_body())
    assert dock.estimate_body()["parameters"]["spatial_extent"]["east"] == BOX_C["east"]
    assert dock.estimator.asked == asked + 1
    assert answer["amount"] == want_c["amount"] and answer["amount"] != want_a["amount"]
    assert want_c["explanation"] in dock.estimate_label.text()
    assert want_a["explanation"] not in dock.estimate_label.text()

    # The form never waited for the daemon: the GUI thread kept turning.
    from qgis.PyQt.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    for box in (BOX_A, BOX_B, BOX_C, BOX_A):
        extent.set_value(box)
        wait_until(lambda: not dock.estimator.pending, timeout=5, message="debounce")
    settle_estimate(dock)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert gaps and max(gaps) < 0.25, max(gaps)


class DelayingClient:
    """The dock's client, with the answer to each ``POST`` held back by the next delay."""

    def __init__(self, real, delays):
        self.real = real
        self.delays = list(delays)

    def post(self, path, body, callback):
        from qgis.PyQt.QtCore import QTimer

        delay = self.delays.pop(0) if self.delays else 0.0

        def later(result):
            QTimer.singleShot(int(delay * 1000), lambda: callback(result))

        return self.real.post(path, body, later)


def test_a_late_answer_to_an_earlier_extent_is_ignored(plugin, daemon):
    dock = plugin.dock
    choose_pv(dock, daemon)
    extent = dock.form.editors["spatial_extent"]
    extent.set_value(BOX_A)
    settle_estimate(dock)
    estimator = dock.estimator
    estimator.client = DelayingClient(dock.client, [1.5, 0.0])
    extent.set_value(BOX_B)
    body_b = dock.estimate_body()
    estimator.ask_now()  # answered in 1.5 s
    extent.set_value(BOX_C)
    body_c = dock.estimate_body()
    estimator.ask_now()  # answered at once
    want_b, want_c = expected(daemon, body_b), expected(daemon, body_c)
    assert want_b["explanation"] != want_c["explanation"]
    wait_until(lambda: estimator.last_answer is not None and estimator.last_body == body_c, message="answer for C")
    wait_until(lambda: estimator.dropped >= 1, timeout=10, message="the late answer for B arrived")
    assert estimator.last_answer["amount"] == want_c["amount"]
    assert want_c["explanation"] in dock.estimate_label.text()
    assert want_b["explanation"] not in dock.estimate_label.text()


def test_estimate_of_an_upscale_task_counts_its_tiles(plugin, daemon):
    dock = plugin.dock
    choose_pv(dock, daemon)
    dock.form.editors["spatial_extent"].set_value(BOX_B)
    dock.upscale_check.setChecked(True)
    wait_until(lambda: dock.upscale.cells and not dock.upscale.busy, message="cells")
    n = len(dock.upscale.cells)
    assert n >= 2
    answer = settle_estimate(dock)
    assert "dimension" in dock.estimator.last_body
    assert answer["quantity"]["tiles"] == n
    assert f"{n} tiles" in dock.estimate_label.text()
    assert answer["explanation"] in dock.estimate_label.text()


def test_estimate_shows_the_budget_and_warns_before_overspending(plugin, daemon):
    dock = plugin.dock
    record = choose_pv(dock, daemon)
    dock.form.editors["spatial_extent"].set_value(BOX_A)
    answer = settle_estimate(dock)
    amount = answer["amount"]
    assert amount > 0
    status, entry = daemon.api("PUT", "/budgets", {"backend": record["endpoint"], "per_day": amount * 1000,
                                                    "per_month": None})
    assert status == 200, entry
    dock.form.editors["spatial_extent"].set_value(BOX_C)
    answer = settle_estimate(dock)
    budget = answer["budget"]
    assert budget is not None and not budget["would_exceed"]
    assert budget["backend"].rstrip("/") == record["endpoint"].rstrip("/")
    assert budget["per_day"] == amount * 1000
    assert "Budget of" in dock.estimate_label.text() and "spent today" in dock.estimate_label.text()
    assert dock.estimate_warning.isHidden()
    status, entry = daemon.api("PUT", "/budgets", {"backend": record["endpoint"], "per_day": amount / 10,
                                                    "per_month": None})
    assert status == 200, entry
    dock.form.editors["spatial_extent"].set_value(BOX_A)
    answer = settle_estimate(dock)
    assert answer["budget"]["would_exceed"] == "per_day"
    wait_until(lambda: not dock.estimate_warning.isHidden(), message="warning")
    assert "daily budget" in dock.estimate_warning.text()


def test_unknown_cost_says_so(plugin, daemon):
    """A catalogue service without a price: the estimate says the cost is unknown."""
    dock = plugin.dock
    record = next(r for r in services(daemon) if r["id"] == "ndsi")  # its UDP is bundled
    assert record["label"] == "openeo" and record["cost_estimate"] is None
    dock.choose_service(record, {"defaults": {}})
    wait_until(lambda: dock.form.specs, timeout=20, message="form")
    if dock.form.extent_widget() is not None:
        dock.form.extent_widget().set_value(BOX_A)
    answer = settle_estimate(dock)
    assert answer["basis"] == "unknown" and answer["amount"] is None
    assert dock.estimate_label.text().startswith("Cost unknown")


# --- costs of jobs, refusals ------------------------------------------------------------


def wait_daemon(daemon, path, predicate, timeout=40):
    deadline = time.time() + timeout
    data = None
    while time.time() < deadline:
        _, data = daemon.api("GET", path)
        if predicate(data):
            return data
        time.sleep(0.2)
    raise AssertionError(f"{path}: {data}")


def test_job_list_shows_what_finished_jobs_and_tasks_cost(plugin, daemon, fake_backend):
    from eodispatch.core import costs as K
    from eodispatch.gui.jobs import COST, COLUMNS

    dock = plugin.dock
    assert COLUMNS[COST] == "Cost"
    status, job = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "PV costs"))
    assert status == 201, job
    jid = job["id"]
    job = wait_daemon(daemon, f"/unit_jobs/{jid}",
                      lambda j: j["status"] == "finished" and j.get("costs") is not None)
    assert job["costs"] > 0
    wait_until(lambda: jid in dock.job_list.items and dock.job_list.items[jid].text(COST) == K.job_cost_text(job),
               timeout=20, message="the job's cost in the list")
    assert K.number_text(job["costs"]) in dock.job_list.items[jid].text(COST)
    assert not dock.job_list.items[jid].text(COST).startswith("≈")

    body = pv_job(fake_backend, "PV costs tiles")
    box = body["parameters"].pop("spatial_extent")
    half = (box["west"] + box["east"]) / 2
    body["dimension"] = {"name": "spatial_extent", "values": [dict(box, east=half), dict(box, west=half)]}
    status, task = daemon.api("POST", "/upscale_tasks", body)
    assert status == 201, task
    tid = task["id"]
    task = wait_daemon(daemon, f"/upscale_tasks/{tid}",
                       lambda t: t["status"] == "finished" and all(j["status"] == "finished" for j in t["jobs"])
                       and t.get("costs") is not None, timeout=60)
    tiles = [daemon.api("GET", f"/unit_jobs/{j['id']}")[1] for j in task["jobs"]]
    assert all(t.get("costs") is not None for t in tiles)
    assert abs(task["costs"] - sum(t["costs"] for t in tiles)) < 1e-6
    wait_until(lambda: tid in dock.job_list.task_items
               and dock.job_list.task_items[tid].text(COST).split()[0] == K.number_text(task["costs"]),
               timeout=20, message="the task's sum in its row")


def test_budget_exceeded_refusal_is_one_clear_sentence(plugin, daemon):
    """The daemon refuses a job over the daily budget of its backend; the dock names the
    budget, the limit, what was spent and the estimate."""
    dock = plugin.dock
    record = choose_pv(dock, daemon)
    dock.form.editors["spatial_extent"].set_value(BOX_B)
    answer = settle_estimate(dock)
    assert answer["amount"] > 0
    limit = answer["amount"] / 100
    status, entry = daemon.api("PUT", "/budgets", {"backend": record["endpoint"], "per_day": limit,
                                                    "per_month": None})
    assert status == 200, entry
    jobs_before = daemon.api("GET", "/unit_jobs")[1]
    messages = []
    dock.notify = lambda text, level, duration: messages.append(text)
    dock.submit()
    wait_until(lambda: dock.submit_button.isEnabled() and not dock.general_error.isHidden(), message="refusal shown")
    text = dock.general_error.text()
    assert text.startswith("Refused: the daily budget"), text
    from eodispatch.core.catalogue import number_text

    assert f"limit {number_text(limit)}" in text and "spent 0" in text
    assert f"this estimate {number_text(answer['amount'])}" in text
    assert messages and messages[-1] == text
    assert dock.last_job is None
    assert daemon.api("GET", "/unit_jobs")[1] == jobs_before


def test_budget_exceeded_problem_is_worded_from_its_fields(plugin):
    """The dock's wording of the contract's problem (no daemon needed to build it)."""
    from eodispatch.core.client import ApiError, ApiResult

    dock = plugin.dock
    body = {"type": "about:blank", "title": "Budget exceeded", "status": 422, "code": "BudgetExceeded",
            "detail": "the monthly budget of https://b.example is 5", "budget": "per_month",
            "backend": "https://b.example", "limit": 5, "spent": 4.5, "estimate": 1.25}
    dock._submitted(ApiResult(422, body, ApiError.from_problem(422, body, "HTTP 422")))
    text = dock.general_error.text()
    assert text.startswith("Refused: the monthly budget of https://b.example would be exceeded")
    assert "(limit 5, spent 4.5, this estimate 1.25)" in text
    body = dict(body, budget="max_cost", code="BudgetExceeded")
    dock._task_submitted(ApiResult(422, body, ApiError.from_problem(422, body, "HTTP 422")))
    assert dock.general_error.text().startswith("Refused: the maximum cost of the job")


# --- budget dialog ----------------------------------------------------------------------


def test_budget_dialog_round_trip(plugin, daemon, fake_backend):
    dock = plugin.dock
    # A job makes the fake backend a known backend.
    status, job = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "PV budget"))
    assert status == 201, job
    wait_daemon(daemon, "/budgets", lambda b: isinstance(b, list) and any(
        x["backend"].rstrip("/") == fake_backend.rstrip("/") for x in b))
    dialog = dock.open_budgets()
    wait_until(lambda: dialog.loaded and dialog.row_of(fake_backend) >= 0, message="budgets listed")
    row = dialog.row_of(fake_backend)
    assert dialog.editor(row, "per_day").text() == ""  # no limit yet
    assert dialog.set_limits(fake_backend, 5, 120.5)
    dialog.save()
    wait_until(lambda: not dialog.busy and dialog.loaded, message="saved and read again")
    assert dialog.status.text().startswith("Saved"), dialog.status.text()
    _, budgets = daemon.api("GET", "/budgets")
    entry = next(b for b in budgets if b["backend"].rstrip("/") == fake_backend.rstrip("/"))
    assert entry["per_day"] == 5 and entry["per_month"] == 120.5
    row = dialog.row_of(fake_backend)
    assert dialog.editor(row, "per_day").text() == "5" and dialog.editor(row, "per_month").text() == "120.5"
    config = (daemon.root / "config" / "config.toml").read_text()
    assert "120.5" in config

    # Cleared: no limit again; a bad number is refused before anything is sent.
    dialog.editor(row, "per_month").setText("lots")
    dialog.save()
    assert "not a number" in dialog.status.text() and not dialog.busy
    dialog.set_limits(fake_backend, None, None)
    dialog.save()
    wait_until(lambda: not dialog.busy and dialog.loaded, message="cleared")
    _, budgets = daemon.api("GET", "/budgets")
    entry = next(b for b in budgets if b["backend"].rstrip("/") == fake_backend.rstrip("/"))
    assert entry["per_day"] is None and entry["per_month"] is None
    assert json.dumps(entry)


# --- wording (no daemon) ----------------------------------------------------------------


def test_cost_wording(qgis_app):
    from eodispatch.core import catalogue as C
    from eodispatch.core import costs as K

    assert C.number_text(0.001) == "0.001" and C.number_text(12.0) == "12" and C.number_text(1234.5) == "1,234.5"
    assert C.cost_text({"cost_estimate": 0.125, "cost_unit": "platform credits per km²"}) == \
        "0.125 platform credits per km²"
    assert C.cost_text({"cost_estimate": None, "cost_unit": None}) == "cost unknown"
    unknown = {"amount": None, "unit": None, "basis": "unknown", "explanation": "no cost in the catalogue",
               "quantity": {}, "budget": None}
    assert K.estimate_text(unknown) == "Cost unknown\nno cost in the catalogue"
    tiles = {"amount": 2.5, "unit": "EUR", "basis": "per-area", "explanation": "x", "quantity": {"tiles": 4}}
    assert K.estimate_text(tiles, upscale=True).splitlines() == ["Estimated cost: 2.5 EUR (from the area)", "x",
                                                                 "4 tiles"]
    budget = {"backend": "https://b", "per_day": 10, "per_month": None, "spent_today": 9.5, "spent_this_month": 20,
              "unit": "credits", "would_exceed": "per_day"}
    assert K.budget_text(budget) == ("Budget of https://b: 9.5 of 10 credits spent today; "
                                     "20 credits spent this month (no limit)")
    assert K.exceed_warning({"budget": budget}).startswith("⚠ This would exceed the daily budget (9.5 of 10 credits")
    assert K.exceed_warning({"budget": dict(budget, would_exceed=None)}) == ""
    assert K.job_cost_text({"costs": 0.62, "estimate": {"amount": 0.5, "unit": "credits"}}) == "0.62 credits"
    assert K.job_cost_text({"costs": None, "estimate": {"amount": 0.5, "unit": "credits"}}) == "≈ 0.5 credits"
    assert K.task_cost_text({"costs": None}, [{"costs": 1.5}, {"costs": 0.25}, {"costs": None}]) == "1.75"
    assert K.parse_limit("") == (None, None) and K.parse_limit("2,5") == (2.5, None)
    assert K.parse_limit("-1")[1] and K.parse_limit("x")[1]
    records = [{"id": "a", "title": "NDVI max", "kind": "openeo", "keywords": []},
               {"id": "b", "title": "Other", "kind": "ogc_api_process", "keywords": ["NDVI"]},
               {"id": "c", "title": "Third", "kind": "openeo", "keywords": [], "platform": {"id": "p", "title": "P"}}]
    assert [r["id"] for r in C.filter_records(records, "ndvi")] == ["a", "b"]
    assert [r["id"] for r in C.filter_records(records, "ndvi", kind="openeo")] == ["a"]
    assert [r["id"] for r in C.filter_records(records, platform="p")] == ["c"]
