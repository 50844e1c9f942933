"""Compatibility check of the fake openEO backend with the real openEO Python client.

Run against a running `fake-openeo` binary (not part of `cargo test`; needs `pip install openeo`):

    cargo run -p fake-openeo -- --queued-secs 0.5 --running-secs 1 &
    python crates/fake-openeo/tests/python_client_check.py http://127.0.0.1:PORT

It connects through `/.well-known/openeo`, authenticates with a bearer token, runs the eurac PV
farm UDP by namespace URL (the fake's own `/udp/` copy and the APEx raw URL), waits for the job,
downloads the results (HEAD + Range path of the client), reads the logs, checks that an unknown
UDP is refused with ProcessNamespaceInvalid, and prints one line per check. Exit code 0 = all
passed.
"""

import json
import pathlib
import sys
import tempfile

import openeo
from openeo.rest import OpenEoApiError

APEX_URL = (
    "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/"
    "algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
)
EXTENT = {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326}

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def main(base):
    con = openeo.connect(base).authenticate_bearer_token("oidc/fake/abc")
    check("connect via /.well-known/openeo", con.root_url.endswith("/openeo/1.2"), con.root_url)
    caps = con.capabilities()
    check("capabilities api_version", caps.api_version() == "1.2.0", caps.api_version())
    check("supports /jobs POST", caps.supports_endpoint("/jobs", "POST"))
    me = con.describe_account()
    check("describe_account (/me)", me.get("user_id") == "user", json.dumps(me))
    check("list_output_formats", "GTiff" in con.list_output_formats())

    for label, namespace in [("fake /udp URL", f"{base}/udp/eurac_pv_farm_detection.json"),
                             ("APEx raw URL", APEX_URL)]:
        cube = con.datacube_from_process(
            "eurac_pv_farm_detection",
            namespace=namespace,
            spatial_extent=EXTENT,
            temporal_extent=["2023-05-01", "2023-09-30"],
        ).save_result("GTiff")
        job = cube.create_job(title=f"python client check ({label})")
        check(f"create_job ({label})", job.job_id.startswith("j-"), job.job_id)
        job.start_and_wait(max_poll_interval=1, print=lambda *a, **k: None)
        check(f"start_and_wait ({label})", job.status() == "finished", job.status())
        res = job.get_results()
        with tempfile.TemporaryDirectory() as tmp:
            files = res.download_files(tmp)
            names = sorted(pathlib.Path(f).name for f in files)
            check(f"download_files ({label})", "openEO.tif" in names, ", ".join(names))
            tif = pathlib.Path(tmp) / "openEO.tif"
            size = res.get_metadata()["assets"]["openEO.tif"]["file:size"]
            check(f"asset size ({label})", tif.stat().st_size == size, f"{tif.stat().st_size} bytes")
            check(f"GeoTIFF magic ({label})", tif.read_bytes()[:4] == b"II*\x00")
        logs = job.logs()
        check(f"logs ({label})", len(logs) >= 3, f"{len(logs)} entries")
        check(f"logs level=warning ({label})",
              all(e["level"] in ("error", "warning") for e in job.logs(level="warning")))

    listed = con.list_jobs()
    check("list_jobs", len(listed) >= 2, f"{len(listed)} jobs")

    bad = con.datacube_from_process(
        "not_the_right_id", namespace=f"{base}/udp/eurac_pv_farm_detection.json"
    ).save_result("GTiff")
    try:
        bad.create_job(title="should fail")
        check("ProcessNamespaceInvalid", False, "job was created")
    except OpenEoApiError as e:
        check("ProcessNamespaceInvalid", e.code == "ProcessNamespaceInvalid", f"{e.http_status_code} {e.code}")

    failing = con.datacube_from_process(
        "eurac_pv_farm_detection", namespace=f"{base}/udp/eurac_pv_farm_detection.json"
    ).save_result("GTiff").create_job(title="job that should error (fail)")
    import urllib.request
    req = urllib.request.Request(
        f"{base}/_fake/plan",
        data=json.dumps({"match": "(fail)", "outcome": "error",
                         "error_message": "Out of memory (planned)"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
    try:
        failing.start_and_wait(max_poll_interval=1, print=lambda *a, **k: None)
        check("JobFailedException on error", False, "no exception")
    except openeo.rest.JobFailedException as e:
        check("JobFailedException on error", "Out of memory" in json.dumps(failing.logs(level="error")), str(e)[:80])

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"))
