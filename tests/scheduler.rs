//! The scheduler against the fake openEO backend (`crates/fake-openeo`): the APEx
//! notebook's flow end to end, per-backend limits, one listing per cycle, adaptive
//! polling, every fault the fake can inject, the crash points of a submission (the
//! real binary with `EODISPATCH_FAILPOINT`, and `kill -9`), and cancellation.
//!
//! Every test asserts the final state of its jobs and the exact number of jobs created
//! on the fake. Waits poll with deadlines; timings are short (polls every 0.1–0.5 s,
//! jobs queued ~0.2 s and running ~0.5 s).

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestDaemon;
use fake::*;
use fake_openeo::{FakeHandle, FaultKind, FaultRule, JobPlan, JobStatus};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);

/// The fake's single job, asserting there is exactly one.
fn only_remote_job(f: &FakeHandle) -> fake_openeo::JobSnapshot {
    let jobs = f.jobs();
    assert_eq!(jobs.len(), 1, "exactly one remote job: {jobs:#?}");
    assert_eq!(f.stats().jobs_created, 1);
    jobs.into_iter().next().unwrap()
}

/// The distinct statuses a job went through must not include `failed`, and must end
/// with `finished`.
fn assert_clean_history(ev: &Events, id: i64) {
    ev.wait_status(id, "finished");
    let statuses = ev.statuses(id);
    assert!(
        !statuses.iter().any(|s| s == "failed" || s == "canceled"),
        "job {id} went through {statuses:?}"
    );
    assert_eq!(statuses.last().map(String::as_str), Some("finished"));
}

/// Samples the fake in the background: the largest number of remote jobs active at
/// once.
struct ActiveSampler {
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ActiveSampler {
    fn start(base_url: String) -> ActiveSampler {
        let max = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let task = tokio::spawn(async move {
            // Through `/_fake/jobs`, as an outside observer would.
            let http = reqwest::Client::new();
            while !s.load(Ordering::SeqCst) {
                if let Ok(r) = http.get(format!("{base_url}/_fake/jobs")).send().await {
                    if let Ok(Value::Array(jobs)) = r.json::<Value>().await {
                        let active = jobs
                            .iter()
                            .filter(|j| {
                                matches!(
                                    j["status"].as_str(),
                                    Some("created" | "queued" | "running")
                                )
                            })
                            .count();
                        m.fetch_max(active, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        ActiveSampler { max, stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.max.load(Ordering::SeqCst)
    }
}

/// When a counter took each value: `(when, value)` pairs.
type Timeline = Arc<Mutex<Vec<(Instant, u64)>>>;

/// Records when a request counter of the fake changes: `(when, count)` pairs.
fn watch_counter(
    f: &Arc<FakeHandle>,
    method: &'static str,
    route: &'static str,
) -> (Timeline, Arc<AtomicBool>) {
    let seen: Timeline = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (sink, s, f) = (seen.clone(), stop.clone(), f.clone());
    tokio::spawn(async move {
        let mut last = 0;
        while !s.load(Ordering::SeqCst) {
            let n = f.stats().count(method, route);
            if n != last {
                sink.lock().unwrap().push((Instant::now(), n));
                last = n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (seen, stop)
}

// ---------------------------------------------------------------------------
// The APEx notebook's flow
// ---------------------------------------------------------------------------

/// The "Service execution using the APEx Dispatch API" notebook, as a new user runs
/// it with the fake as the service endpoint: submit the PV Farm Detection UDP with a
/// GeoJSON polygon as AOI, poll the job until it is finished, read the results' GeoTIFF
/// link, and the logs. SSE shows each status; the fake got one job calling the UDP by
/// URL with the bounding box of the polygon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pv_farm_detection_notebook_flow_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 1.0).await;
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;

    let polygon = json!({"type": "Polygon", "coordinates": [[
        [16.342, 47.962], [16.414, 47.962], [16.414, 48.008], [16.342, 48.008], [16.342, 47.962]
    ]]});
    let bbox =
        json!({"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008, "crs": 4326});
    let mut body = pv_request(&f.base_url(), "PV farms Vienna");
    body["parameters"]["spatial_extent"] = polygon;
    let (s, job) = d.post_json("/unit_jobs", &body).await;
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["status"], "created");
    assert_eq!(job["parameters"]["spatial_extent"], bbox, "{job}");
    assert_eq!(
        job["parameters"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );

    // Poll GET /unit_jobs/{id} as the notebook does (every 3 s there).
    let job = wait_for("the job to end", LONG, || async {
        let (s, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        assert_eq!(s, 200, "{j}");
        let status = j["status"].as_str().unwrap().to_string();
        assert!(
            ["created", "queued", "running", "finished"].contains(&status.as_str()),
            "{j}"
        );
        if status == "finished" {
            Some(j)
        } else {
            tokio::time::sleep(Duration::from_millis(80)).await;
            None
        }
    })
    .await;
    assert_eq!(job["progress"], 100.0);
    assert_eq!(job["error"], Value::Null);
    assert_eq!(job["parameters"]["spatial_extent"], bbox);

    // Exactly one remote job, carrying our UUID and calling the UDP by URL.
    let remote = only_remote_job(&f);
    assert_eq!(job["backend_job_id"], remote.id.as_str());
    assert_eq!(remote.status, JobStatus::Finished);
    assert_eq!(remote.title.as_deref(), Some("PV farms Vienna"));
    let uuid = job["uuid"].as_str().unwrap();
    assert!(
        remote.description.as_deref().unwrap_or("").contains(uuid),
        "{:?}",
        remote.description
    );
    let graph = remote.process["process_graph"].as_object().unwrap();
    assert_eq!(graph.len(), 2, "{graph:#?}");
    let udp_node = graph
        .values()
        .find(|n| n["process_id"] == PV_ID)
        .expect("a node calling the UDP");
    assert_eq!(udp_node["namespace"], PV_APP);
    assert_eq!(udp_node["arguments"]["spatial_extent"], bbox);
    assert_eq!(
        udp_node["arguments"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );
    let save = graph
        .values()
        .find(|n| n["process_id"] == "save_result")
        .expect("a save_result node");
    assert_eq!(save["arguments"]["format"], "GTiff");
    assert_eq!(save["result"], true);

    // Results: the STAC collection with the GeoTIFF link, which downloads.
    let (s, results) = d.get_json(&format!("/unit_jobs/{id}/results")).await;
    assert_eq!(s, 200, "{results}");
    let href = results["assets"]["openEO.tif"]["href"]
        .as_str()
        .unwrap_or_else(|| panic!("no openEO.tif href in {results}"));
    // The backend's link until the daemon has published the download, then the
    // daemon's own (the download may well be done by now).
    assert!(
        href.starts_with(&f.base_url()) || href.starts_with(&d.url("/files/")),
        "{href}"
    );
    let tif = reqwest::get(href).await.unwrap();
    assert_eq!(tif.status(), 200);
    let bytes = tif.bytes().await.unwrap();
    assert!(bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*"));

    // Logs come from the backend.
    let (s, logs) = d.get_json(&format!("/unit_jobs/{id}/logs")).await;
    assert_eq!(s, 200, "{logs}");
    let messages: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("finished")),
        "{messages:?}"
    );

    // Every change was an event, in order.
    wait_for("the finished event", LONG, || async {
        (ev.statuses(id).last().map(String::as_str) == Some("finished")).then_some(())
    })
    .await;
    assert_eq!(
        ev.statuses(id),
        ["created", "queued", "running", "finished"],
        "{:#?}",
        ev.of_kind("job")
    );
    assert_eq!(f.stats().count("POST", "/jobs"), 1);
    assert_eq!(f.stats().count("POST", "/jobs/{job_id}/results"), 1);
    d.stop().await;
}

// ---------------------------------------------------------------------------
// Limits and polling
// ---------------------------------------------------------------------------

/// Six jobs with `max_running_jobs = 2`: never more than two active on the backend,
/// all six finish, six remote jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_running_jobs_are_active_on_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 0.5).await;
    let d = daemon_for(dir.path(), &f, 2).await;
    let sampler = ActiveSampler::start(f.base_url());
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(submit(&d, &pv_request(&f.base_url(), &format!("limited {i}"))).await);
    }
    wait_all(&d, &ids, "finished", Duration::from_secs(30)).await;
    let max = sampler.finish().await;
    assert_eq!(
        max, 2,
        "at most (and, with 6 queued, exactly) 2 active at once"
    );
    assert_eq!(f.stats().jobs_created, 6);
    assert_eq!(f.stats().count("POST", "/jobs"), 6);
    let remote: BTreeSet<String> = f.jobs().into_iter().map(|j| j.id).collect();
    let linked: BTreeSet<String> = jobs_by_id(&d)
        .await
        .values()
        .map(|j| j["backend_job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(remote, linked, "one remote job per local job");
    d.stop().await;
}

/// The request rate towards one backend is limited (token bucket: a burst of 10, then
/// `requests_per_second`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_backend_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 30.0).await;
    let rate = 4.0;
    let mut cfg = config_for(dir.path(), &f.base_url(), 6);
    cfg.backends.get_mut("fake").unwrap().requests_per_second = Some(rate);
    let started = Instant::now();
    let d = TestDaemon::start_with(cfg).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(submit(&d, &pv_request(&f.base_url(), &format!("paced {i}"))).await);
    }
    // Unpaced, six submissions and starts plus polls every 0.1 s would exceed 40
    // requests in 3 s.
    wait_all(&d, &ids, "running", LONG).await;
    let window = Duration::from_secs(3);
    if started.elapsed() < window {
        tokio::time::sleep(window - started.elapsed()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = f.stats();
    // Discovery and the capabilities are fetched once, outside the limiter.
    let paced = stats.total() - stats.count("GET", "/.well-known/openeo") - stats.count("GET", "/");
    let allowed = 10.0 + rate * elapsed;
    assert!(
        (paced as f64) <= allowed + 1.0,
        "{paced} requests in {elapsed:.2} s, at most {allowed:.1} allowed: {stats:#?}"
    );
    assert_eq!(stats.jobs_created, 6);
    assert_eq!(remote_active(&f), 6);
    d.stop().await;
}

/// With five active jobs, the status of all of them comes from one `GET /jobs` per
/// cycle, not five `GET /jobs/{id}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listing_per_cycle_serves_the_status_of_many_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 4.0).await;
    let d = daemon_for(dir.path(), &f, 5).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&d, &pv_request(&f.base_url(), &format!("listed {i}"))).await);
    }
    wait_all(&d, &ids, "running", LONG).await;
    let before = f.stats();
    // Watch a few cycles.
    wait_for("four more listings", LONG, || async {
        (f.stats().count("GET", "/jobs") >= before.count("GET", "/jobs") + 4).then_some(())
    })
    .await;
    let after = f.stats();
    let listings = after.count("GET", "/jobs") - before.count("GET", "/jobs");
    let singles = after.count("GET", "/jobs/{job_id}") - before.count("GET", "/jobs/{job_id}");
    assert!(
        singles <= 1,
        "{listings} listings and {singles} per-job status requests: {after:#?}"
    );
    wait_all(&d, &ids, "finished", LONG).await;
    assert_eq!(f.stats().jobs_created, 5);
    d.stop().await;
}

/// A job that stays queued is polled less and less often (up to the longest
/// interval), and a client reading the job makes the scheduler look sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_jobs_are_polled_less_often() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(start_fake(3.0, 0.3).await);
    let d = daemon_for(dir.path(), &f, 2).await;
    let (polls, stop) = watch_counter(&f, "GET", "/jobs/{job_id}");
    let id = submit(&d, &pv_request(&f.base_url(), "quiet")).await;
    wait_status(&d, id, "finished", LONG).await;
    stop.store(true, Ordering::SeqCst);
    let polls = polls.lock().unwrap().clone();
    let gaps: Vec<f64> = polls
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect();
    // While queued (3 s) nothing changes: the interval grows from 0.1 s to 0.5 s
    // (±20 %), so there are far fewer than the 30 polls of a fixed 0.1 s.
    assert!(polls.len() <= 20, "{} polls: {gaps:?}", polls.len());
    assert!(
        gaps.iter().any(|g| *g >= 0.35),
        "the interval grew to the maximum: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= 1.0),
        "never beyond the maximum: {gaps:?}"
    );
    assert_eq!(f.stats().jobs_created, 1);
    d.stop().await;
}

/// With long poll intervals (8 s), a client reading an active job gets it polled
/// within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_a_job_makes_the_scheduler_poll_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.0, 2.0).await;
    let mut cfg = config_for(dir.path(), &f.base_url(), 2);
    cfg.poll_interval_min_s = 8.0;
    cfg.poll_interval_max_s = 8.0;
    let d = TestDaemon::start_with(cfg).await;
    let id = submit(&d, &pv_request(&f.base_url(), "nudged")).await;
    let remote = wait_for("the remote job to finish", LONG, || async {
        f.jobs()
            .into_iter()
            .find(|j| j.status == JobStatus::Finished)
            .map(|j| j.id)
    })
    .await;
    let finished_remotely = Instant::now();
    // The last poll saw the job running, so the next regular one comes 6.4–9.6 s
    // after it; reading the job brings it forward.
    let j = jobs_by_id(&d).await.remove(&id).unwrap();
    assert_eq!(j["status"], "running", "{j}");
    wait_for("the local job to finish", LONG, || async {
        let (_, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
        if j["status"] == "finished" {
            Some(())
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    })
    .await;
    let took = finished_remotely.elapsed();
    assert!(took < Duration::from_millis(3000), "took {took:?}");
    assert_eq!(jobs_by_id(&d).await[&id]["backend_job_id"], remote.as_str());
    assert_eq!(f.stats().jobs_created, 1);
    d.stop().await;
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// 429 with `Retry-After: 2` on `POST /jobs`: the job is submitted again no sooner
/// than 2 s later, and created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_on_submission_waits_for_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(start_fake(0.2, 0.5).await);
    f.add_fault(FaultRule::too_many_requests("POST /jobs", 2));
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;
    let (posts, stop) = watch_counter(&f, "POST", "/jobs");
    let id = submit(&d, &pv_request(&f.base_url(), "throttled")).await;
    let job = wait_status(&d, id, "finished", LONG).await;
    stop.store(true, Ordering::SeqCst);
    let posts = posts.lock().unwrap().clone();
    assert_eq!(
        posts.iter().map(|p| p.1).collect::<Vec<_>>(),
        [1, 2],
        "one refused POST, one accepted"
    );
    let gap = (posts[1].0 - posts[0].0).as_secs_f64();
    assert!(gap >= 2.0 - 0.05, "resubmitted after {gap:.3} s");
    assert_eq!(f.stats().faults_fired, 1);
    let remote = only_remote_job(&f);
    assert_eq!(job["backend_job_id"], remote.id.as_str());
    assert_eq!(job["error"], Value::Null);
    assert_clean_history(&ev, id);
    d.stop().await;
}

/// 429 with `Retry-After: 2` on the fourth status request of a job: the next one
/// comes no sooner than 2 s later; the job keeps its status and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_on_polls_waits_for_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(start_fake(0.1, 2.5).await);
    f.add_fault(FaultRule::too_many_requests("GET /jobs/*", 2).after(3));
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;
    let (polls, stop) = watch_counter(&f, "GET", "/jobs/{job_id}");
    let id = submit(&d, &pv_request(&f.base_url(), "throttled polls")).await;
    wait_status(&d, id, "finished", LONG).await;
    stop.store(true, Ordering::SeqCst);
    let polls = polls.lock().unwrap().clone();
    let at = |n: u64| {
        polls
            .iter()
            .find(|p| p.1 == n)
            .unwrap_or_else(|| panic!("poll {n} not seen: {polls:?}"))
            .0
    };
    let gap = (at(5) - at(4)).as_secs_f64();
    assert!(gap >= 2.0 - 0.05, "polled again after {gap:.3} s");
    assert_eq!(f.stats().faults_fired, 1);
    only_remote_job(&f);
    assert_eq!(f.stats().count("POST", "/jobs"), 1);
    assert_clean_history(&ev, id);
    d.stop().await;
}

/// Gateway errors with HTML bodies while polling (502 on the listing, 503 on a job's
/// status): the backend is shown unreachable, jobs keep their status, and finish once
/// it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_with_html_bodies_keep_jobs_waiting() {
    for (route, status, jobs) in [("GET /jobs", 502, 2), ("GET /jobs/*", 503, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let f = start_fake(0.1, 1.0).await;
        let d = daemon_for(dir.path(), &f, 2).await;
        let ev = Events::subscribe(&d).await;
        let mut ids = Vec::new();
        for i in 0..jobs {
            ids.push(submit(&d, &pv_request(&f.base_url(), &format!("gateway {i}"))).await);
        }
        wait_all(&d, &ids, "running", LONG).await;
        f.add_fault(FaultRule::status(route, status).times(0));
        let state = wait_for("the backend to show as unreachable", LONG, || async {
            let b = backend_state(&d, &f.base_url()).await;
            (b["state"] == "unreachable").then_some(b)
        })
        .await;
        let message = state["message"].as_str().unwrap();
        assert!(message.contains(&status.to_string()), "{message}");
        assert!(!message.contains("<html"), "HTML is summarised: {message}");
        // Several failed polls later the jobs still have their status, no error.
        let fired = f.stats().faults_fired;
        wait_for("more failed polls", LONG, || async {
            (f.stats().faults_fired >= fired + 3).then_some(())
        })
        .await;
        for (id, j) in jobs_by_id(&d).await {
            assert_eq!(j["status"], "running", "job {id} kept its status: {j}");
            assert_eq!(j["error"], Value::Null, "{j}");
        }
        f.clear_faults();
        wait_all(&d, &ids, "finished", LONG).await;
        assert_eq!(backend_state(&d, &f.base_url()).await["state"], "ok");
        assert_eq!(f.stats().jobs_created, jobs as u64, "{route}");
        assert_eq!(f.stats().count("POST", "/jobs"), jobs as u64);
        for id in &ids {
            assert_clean_history(&ev, *id);
        }
        d.stop().await;
    }
}

/// An ambiguous failure of `POST /jobs` (a 502 from a gateway, a dropped connection,
/// or the answer lost after the backend created the job) is reconciled through the
/// backend's job list, never blindly retried: exactly one remote job either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_submission_failures_are_reconciled_not_retried() {
    let cases = [
        // (fault, whether the fake created the job, POSTs expected)
        (FaultRule::status("POST /jobs", 502), false, 2),
        (FaultRule::drop_connection("POST /jobs"), false, 2),
        (FaultRule::lose_response("POST /jobs"), true, 1),
    ];
    for (rule, created_anyway, posts) in cases {
        let what = format!("{:?}", rule.kind);
        let dir = tempfile::tempdir().unwrap();
        let f = start_fake(0.2, 0.5).await;
        f.add_fault(rule);
        let d = daemon_for(dir.path(), &f, 2).await;
        let ev = Events::subscribe(&d).await;
        let id = submit(&d, &pv_request(&f.base_url(), "ambiguous")).await;
        let job = wait_status(&d, id, "finished", LONG).await;
        assert_eq!(f.stats().faults_fired, 1, "{what}");
        let remote = only_remote_job(&f);
        assert_eq!(job["backend_job_id"], remote.id.as_str(), "{what}");
        assert_eq!(
            f.stats().count("POST", "/jobs"),
            posts,
            "{what}: created by the faulted POST: {created_anyway}"
        );
        assert_eq!(
            f.stats().count("POST", "/jobs/{job_id}/results"),
            1,
            "{what}"
        );
        assert_clean_history(&ev, id);
        d.stop().await;
    }
}

/// The start of a created job (`POST /jobs/{id}/results`) fails: refused with a 503
/// (the job stays `created` remotely and is started again), or its answer is lost
/// after the backend started it (the next poll sees it queued). One remote job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_recovered_from_the_remote_status() {
    for (rule, starts) in [
        (FaultRule::status("POST /jobs/*/results", 503), 2),
        (FaultRule::lose_response("POST /jobs/*/results"), 1),
    ] {
        let what = format!("{:?}", rule.kind);
        let dir = tempfile::tempdir().unwrap();
        let f = start_fake(0.2, 0.5).await;
        f.add_fault(rule);
        let d = daemon_for(dir.path(), &f, 2).await;
        let ev = Events::subscribe(&d).await;
        let id = submit(&d, &pv_request(&f.base_url(), "restarted")).await;
        let job = wait_status(&d, id, "finished", LONG).await;
        assert_eq!(f.stats().faults_fired, 1, "{what}");
        let remote = only_remote_job(&f);
        assert_eq!(job["backend_job_id"], remote.id.as_str(), "{what}");
        assert_eq!(f.stats().count("POST", "/jobs"), 1, "{what}");
        assert_eq!(
            f.stats().count("POST", "/jobs/{job_id}/results"),
            starts,
            "{what}"
        );
        assert_clean_history(&ev, id);
        d.stop().await;
    }
}

/// Slow answers (0.8 s on every request about jobs): jobs still finish, each created
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_do_not_lose_or_duplicate_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 0.5).await;
    f.add_fault(FaultRule::delay("/jobs**", 800).times(0));
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(submit(&d, &pv_request(&f.base_url(), &format!("slow {i}"))).await);
    }
    wait_all(&d, &ids, "finished", LONG).await;
    // Create, start and at least one poll each were slow.
    assert!(f.stats().faults_fired >= 5, "{:?}", f.stats());
    assert_eq!(f.stats().jobs_created, 2);
    assert_eq!(f.stats().count("POST", "/jobs"), 2);
    assert_eq!(f.stats().count("POST", "/jobs/{job_id}/results"), 2);
    for id in &ids {
        assert_clean_history(&ev, *id);
    }
    d.stop().await;
}

/// Connections dropped without an answer while polling (the listing of two jobs, the
/// status of a single one): jobs keep their status and finish, each created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_while_polling_do_not_fail_jobs() {
    for (route, jobs) in [("GET /jobs", 2), ("GET /jobs/*", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let f = start_fake(0.1, 1.5).await;
        let d = daemon_for(dir.path(), &f, 2).await;
        let ev = Events::subscribe(&d).await;
        let mut ids = Vec::new();
        for i in 0..jobs {
            ids.push(submit(&d, &pv_request(&f.base_url(), &format!("dropped {i}"))).await);
        }
        wait_all(&d, &ids, "running", LONG).await;
        f.add_fault(FaultRule::drop_connection(route).times(3));
        wait_for("three dropped polls", LONG, || async {
            (f.stats().faults_fired >= 3).then_some(())
        })
        .await;
        for (id, j) in jobs_by_id(&d).await {
            assert!(
                j["status"] == "running" || j["status"] == "finished",
                "job {id}: {j}"
            );
            assert_eq!(j["error"], Value::Null, "{j}");
        }
        wait_all(&d, &ids, "finished", LONG).await;
        assert_eq!(f.stats().jobs_created, jobs as u64, "{route}");
        assert_eq!(f.stats().count("POST", "/jobs"), jobs as u64, "{route}");
        for id in &ids {
            assert_clean_history(&ev, *id);
        }
        d.stop().await;
    }
}

/// A backend that is down: a job sent to a closed port waits in `created` with the
/// backend shown unreachable, and runs once the backend comes up there; a running job
/// whose backend stops answering keeps `running` and finishes when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_does_not_fail_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = TestDaemon::start_with(config_for(dir.path(), &url, 2)).await;
    let ev = Events::subscribe(&d).await;
    let id = submit(&d, &pv_request(&url, "waiting for the backend")).await;
    let state = wait_for("the backend to show as unreachable", LONG, || async {
        let b = backend_state(&d, &url).await;
        (b["state"] == "unreachable").then_some(b)
    })
    .await;
    assert!(
        state["message"].as_str().unwrap().contains("127.0.0.1"),
        "{state}"
    );
    // Some retries later the job still waits, without an error.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let j = jobs_by_id(&d).await.remove(&id).unwrap();
    assert_eq!(j["status"], "created", "{j}");
    assert_eq!(j["error"], Value::Null, "{j}");
    assert_eq!(j["backend_job_id"], Value::Null, "{j}");

    // The backend comes up on that port.
    let f = start_fake_on(port, 0.2, 1.5).await;
    wait_status(&d, id, "running", LONG).await;
    assert_eq!(backend_state(&d, &url).await["state"], "ok");

    // It stops answering (every connection dropped) while the job runs.
    f.add_fault(FaultRule::new("/**", FaultKind::Drop).times(0));
    wait_for("the backend to show as unreachable again", LONG, || async {
        (backend_state(&d, &url).await["state"] == "unreachable").then_some(())
    })
    .await;
    let fired = f.stats().faults_fired;
    wait_for("more failed polls", LONG, || async {
        (f.stats().faults_fired >= fired + 3).then_some(())
    })
    .await;
    let j = jobs_by_id(&d).await.remove(&id).unwrap();
    assert_eq!(j["status"], "running", "kept its status: {j}");
    assert_eq!(j["error"], Value::Null, "{j}");
    f.clear_faults();
    let j = wait_status(&d, id, "finished", LONG).await;
    assert_eq!(backend_state(&d, &url).await["state"], "ok");
    let remote = only_remote_job(&f);
    assert_eq!(j["backend_job_id"], remote.id.as_str());
    assert_clean_history(&ev, id);
    // The unreachable state was published as events too.
    assert!(
        ev.of_kind("auth")
            .iter()
            .any(|b| b["state"] == "unreachable"),
        "{:?}",
        ev.kinds()
    );
    d.stop().await;
}

/// Errors that retrying cannot fix fail the job with the backend's own message: a UDP
/// the backend cannot resolve (400 `ProcessNamespaceInvalid`), any other 400 on
/// submission, and a job that fails on the backend (its error log entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_transient_backend_errors_fail_the_job_with_the_backends_message() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.3).await;
    // A second fake serves a copy of the UDP under a name the first does not know.
    let udps = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/catalog/apex/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
        ),
        udps.path().join("pv_copy.json"),
    )
    .unwrap();
    let udp_cfg = fake_openeo::FakeConfig {
        udp_dir: udps.path().to_path_buf(),
        ..Default::default()
    };
    let udp_host = fake_openeo::start(udp_cfg).await.unwrap();
    let d = daemon_for(dir.path(), &f, 2).await;

    // 1. Unknown namespace.
    let mut body = pv_request(&f.base_url(), "unknown namespace");
    body["service"]["application"] = json!(udp_host.udp_url("pv_copy"));
    let id = submit(&d, &body).await;
    let j = wait_status(&d, id, "failed", LONG).await;
    assert_eq!(j["error"]["code"], "ProcessNamespaceInvalid", "{j}");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(message.contains("pv_copy.json"), "{message}");
    assert_eq!(f.stats().jobs_created, 0);
    assert_eq!(f.stats().count("POST", "/jobs"), 1, "not retried");

    // 2. Any other refusal, with the backend's message.
    f.add_fault(FaultRule::new(
        "POST /jobs",
        FaultKind::Status {
            status: 400,
            retry_after: None,
            code: Some("ProcessGraphInvalid".into()),
            message: Some("Collection SENTINEL2_L2A is not available in this region.".into()),
            html: Some(false),
        },
    ));
    let id = submit(&d, &pv_request(&f.base_url(), "refused")).await;
    let j = wait_status(&d, id, "failed", LONG).await;
    assert_eq!(j["error"]["code"], "ProcessGraphInvalid", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Collection SENTINEL2_L2A is not available in this region."),
        "{j}"
    );
    assert_eq!(f.stats().jobs_created, 0);
    assert_eq!(f.stats().count("POST", "/jobs"), 2);

    // 3. A job that fails on the backend.
    f.set_job_plan(
        "doomed",
        JobPlan::failing(0.1, 0.2, "Out of memory in the fake cluster"),
    );
    let id = submit(&d, &pv_request(&f.base_url(), "doomed")).await;
    let j = wait_status(&d, id, "failed", LONG).await;
    assert_eq!(j["backend_status"], "error", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Out of memory in the fake cluster"),
        "{j}"
    );
    let remote = only_remote_job(&f);
    assert_eq!(remote.status, JobStatus::Error);
    assert_eq!(j["backend_job_id"], remote.id.as_str());
    d.stop().await;
}

// ---------------------------------------------------------------------------
// Crash safety (the real binary)
// ---------------------------------------------------------------------------

/// The daemon aborts at `failpoint` while submitting; a restart (without it) on the
/// same folders keeps the job, finds or creates exactly one remote job, and tracks it
/// to `finished`.
async fn crash_at(failpoint: &str, remote_after_crash: usize) {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 0.5).await;
    let mut c = ChildDaemon::start(
        dir.path(),
        &f.base_url(),
        2,
        &[("EODISPATCH_FAILPOINT", failpoint)],
    )
    .await;
    let (s, job) = c
        .post_json("/unit_jobs", &pv_request(&f.base_url(), "crash me"))
        .await;
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let status = c.wait_exit(LONG).await;
    assert!(!status.success(), "aborted: {status:?}");
    assert!(
        c.log_text()
            .contains(&format!("failpoint {failpoint} reached")),
        "{}",
        c.log_text()
    );
    assert_eq!(f.jobs().len(), remote_after_crash, "{failpoint}");
    drop(c);

    let c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    let j = c.wait_status(id, "finished", LONG).await;
    let remote = only_remote_job(&f);
    assert_eq!(j["backend_job_id"], remote.id.as_str());
    assert_eq!(j["uuid"], job["uuid"]);
    assert!(remote
        .description
        .as_deref()
        .unwrap()
        .contains(job["uuid"].as_str().unwrap()));
    assert_eq!(remote.status, JobStatus::Finished);
    assert_eq!(f.stats().count("POST", "/jobs"), 1, "{failpoint}");
    let (_, list) = c.get_json("/unit_jobs").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "no job lost or added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_the_post_submits_once_after_restart() {
    crash_at("submit:before_post", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_post_finds_the_remote_job_by_uuid() {
    crash_at("submit:after_post", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_linking_starts_the_remote_job_after_restart() {
    crash_at("submit:after_link", 1).await;
}

/// `kill -9` while jobs run (and one waits for a free slot): after a restart tracking
/// resumes, every job finishes, no remote job is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_jobs_run_resumes_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 1.5).await;
    let mut c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, j) = c
            .post_json(
                "/unit_jobs",
                &pv_request(&f.base_url(), &format!("killed {i}")),
            )
            .await;
        assert_eq!(s, 201, "{j}");
        ids.push(j["id"].as_i64().unwrap());
    }
    c.wait_status(ids[0], "running", LONG).await;
    c.kill9();
    assert!(f.jobs().len() <= 2, "the limit held: {:#?}", f.jobs());
    drop(c);
    let c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    for id in &ids {
        c.wait_status(*id, "finished", LONG).await;
    }
    assert_eq!(f.stats().jobs_created, 3);
    assert_eq!(f.stats().count("POST", "/jobs"), 3);
    let (_, list) = c.get_json("/unit_jobs").await;
    let linked: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["backend_job_id"].as_str().unwrap().to_string())
        .collect();
    let remote: BTreeSet<String> = f.jobs().into_iter().map(|j| j.id).collect();
    assert_eq!(linked, remote);
    assert!(f.jobs().iter().all(|j| j.status == JobStatus::Finished));
}

/// A kill loop: the daemon is killed with `kill -9` at random moments (mid-submission
/// included) six times while six jobs go through; in the end every job finished and
/// each has exactly one remote job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_keeps_one_remote_job_per_submission() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.4).await;
    // Slow creation and start widen the windows a kill can hit mid-submission.
    f.add_fault(FaultRule::delay("POST /jobs", 150).times(0));
    f.add_fault(FaultRule::delay("POST /jobs/*/results", 100).times(0));
    let mut c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let body = pv_request(&f.base_url(), &format!("loop {i}"));
        let (s, j) = c.post_json("/unit_jobs", &body).await;
        assert_eq!(s, 201, "{j}");
        ids.push(j["id"].as_i64().unwrap());
    }
    let mut kills = Vec::new();
    for _ in 0..6 {
        let after = rand::rng().random_range(10..300);
        kills.push(after);
        tokio::time::sleep(Duration::from_millis(after)).await;
        c.kill9();
        drop(c);
        c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    }
    for id in &ids {
        c.wait_status(*id, "finished", LONG).await;
    }
    let logs: String = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    let reconciled = logs.matches("reconciled a submission").count();
    let resubmitted = logs.matches("no remote job found").count();
    eprintln!("kills after {kills:?} ms; reconciled {reconciled}, resubmitted {resubmitted}");
    let stats = f.stats();
    assert_eq!(
        stats.jobs_created, 6,
        "kills after {kills:?} ms: {stats:#?}"
    );
    let (_, list) = c.get_json("/unit_jobs").await;
    let linked: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["backend_job_id"].as_str().unwrap().to_string())
        .collect();
    let remote: BTreeSet<String> = f.jobs().into_iter().map(|j| j.id).collect();
    assert_eq!(linked, remote, "kills after {kills:?} ms");
    assert!(f.jobs().iter().all(|j| j.status == JobStatus::Finished));
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

/// `POST /unit_jobs/{id}/cancel` cancels the job on the backend and keeps it as
/// `canceled`; `DELETE /unit_jobs/{id}` cancels it on the backend and forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_delete_stop_the_remote_job() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 30.0).await;
    let d = daemon_for(dir.path(), &f, 2).await;
    let a = submit(&d, &pv_request(&f.base_url(), "to cancel")).await;
    let b = submit(&d, &pv_request(&f.base_url(), "to delete")).await;
    wait_all(&d, &[a, b], "running", LONG).await;
    let jobs = jobs_by_id(&d).await;
    let remote_a = jobs[&a]["backend_job_id"].as_str().unwrap().to_string();
    let remote_b = jobs[&b]["backend_job_id"].as_str().unwrap().to_string();

    let (s, j) = d
        .post_json(&format!("/unit_jobs/{a}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["status"], "canceled");
    assert_eq!(remote_status(&f, &remote_a), "canceled");

    assert_eq!(d.delete(&format!("/unit_jobs/{b}")).await, 204);
    assert_eq!(remote_status(&f, &remote_b), "canceled");
    let (s, _) = d.get_json(&format!("/unit_jobs/{b}")).await;
    assert_eq!(s, 404);

    // A few cycles later nothing came back to life.
    let lists = f.stats().count("GET", "/jobs") + f.stats().count("GET", "/jobs/{job_id}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let jobs = jobs_by_id(&d).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[&a]["status"], "canceled");
    assert_eq!(remote_status(&f, &remote_a), "canceled");
    assert_eq!(remote_status(&f, &remote_b), "canceled");
    assert_eq!(
        f.stats().count("GET", "/jobs") + f.stats().count("GET", "/jobs/{job_id}"),
        lists,
        "no job left to poll"
    );
    assert_eq!(f.stats().jobs_created, 2);
    assert_eq!(f.stats().count("POST", "/jobs/{job_id}/results"), 2);
    d.stop().await;
}

/// A cancel that arrives while the scheduler is starting the job (its `POST
/// /jobs/{id}/results` is in flight, slowed to 1 s) sticks: the job stays canceled
/// locally and never runs on the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_the_start_sticks() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 1.0).await;
    f.add_fault(FaultRule::delay("POST /jobs/*/results", 1000));
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;
    let id = submit(&d, &pv_request(&f.base_url(), "cancel while starting")).await;
    let remote = wait_for("the job to be linked", LONG, || async {
        jobs_by_id(&d).await[&id]["backend_job_id"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    let (s, j) = d
        .post_json(&format!("/unit_jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["status"], "canceled");
    // Had the start won, the remote job would be finished 2.2 s from now (1 s delay,
    // 0.2 s queued, 1 s running): watch for 4 s.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline && remote_status(&f, &remote) != "finished" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let local = jobs_by_id(&d).await.remove(&id).unwrap();
    assert_eq!(local["status"], "canceled", "{local}");
    assert_eq!(ev.statuses(id), ["created", "canceled"]);
    let remote_now = remote_status(&f, &remote);
    assert!(
        remote_now == "canceled" || remote_now == "created",
        "the remote job must not run: {remote_now}"
    );
    assert_eq!(f.stats().jobs_created, 1);
    d.stop().await;
}

/// A `DELETE /unit_jobs/{id}` that arrives while the scheduler is starting the job
/// leaves no remote job running behind the forgotten record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_the_start_leaves_no_remote_job_running() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.2, 1.0).await;
    f.add_fault(FaultRule::delay("POST /jobs/*/results", 1000));
    let d = daemon_for(dir.path(), &f, 2).await;
    let id = submit(&d, &pv_request(&f.base_url(), "delete while starting")).await;
    let remote = wait_for("the job to be linked", LONG, || async {
        jobs_by_id(&d).await[&id]["backend_job_id"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    assert_eq!(d.delete(&format!("/unit_jobs/{id}")).await, 204);
    // Had the start won, the remote job would be finished 2.2 s from now.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline && remote_status(&f, &remote) != "finished" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(jobs_by_id(&d).await.is_empty());
    let remote_now = remote_status(&f, &remote);
    assert!(
        remote_now == "canceled" || remote_now == "created" || remote_now == "missing",
        "the remote job must not run: {remote_now}"
    );
    assert_eq!(f.stats().jobs_created, 1);
    d.stop().await;
}
