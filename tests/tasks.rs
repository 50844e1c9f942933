//! Upscale tasks end to end against the fake openEO backend (`crates/fake-openeo`):
//! the documented aggregate status when a tile fails, a retry that resubmits only that
//! tile, concurrent retries that make one attempt, a cancel that reaches every active
//! tile on the backend, the backend's limit during a fan-out, `kill -9` loops during a
//! fan-out with the real binary, and the `eodispatch upscale`, `tasks`, `task`,
//! `retry-task`, `cancel-task` and `delete-task` commands with `--wait`.
//!
//! Every test counts the jobs created on the fake: a tile is never sent twice by the
//! daemon itself. A tile is made to fail by a fake plan rule matching the UUID of its
//! first attempt (a retry has a new UUID, and so runs normally); to learn that UUID in
//! time, the fake answers the first submission with `429 Retry-After`.

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/schema.rs"]
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDaemon;
use fake::*;
use fake_openeo::{FakeHandle, FaultRule, JobPlan, JobStatus};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(30);

/// A task of `tiles` small boxes near Vienna running the PV farm UDP on `endpoint`.
fn task_request(endpoint: &str, title: &str, tiles: usize) -> Value {
    let values: Vec<Value> = (0..tiles)
        .map(|i| {
            let west = 16.30 + 0.02 * i as f64;
            json!({"west": west, "south": 47.96, "east": west + 0.02, "north": 47.98})
        })
        .collect();
    let mut body = pv_request(endpoint, title);
    body["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("spatial_extent");
    body["dimension"] = json!({"name": "spatial_extent", "values": values});
    body
}

/// Creates a task; its JSON.
async fn create_task(d: &TestDaemon, body: &Value) -> Value {
    let (s, task) = d.post_json("/upscale_tasks", body).await;
    assert_eq!(s, 201, "{task}");
    task
}

/// The ids of a task's sub-jobs, in dimension order.
fn job_ids(task: &Value) -> Vec<i64> {
    task["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

/// Whether a task has ended and its finished tiles' deliveries too.
fn ended(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("finished" | "failed" | "canceled")
    ) && task["results"]["pending"] == 0
}

/// Waits until task `id` [`ended`]; the task.
async fn wait_ended(d: &TestDaemon, id: i64) -> Value {
    let deadline = Instant::now() + LONG;
    loop {
        let (s, t) = d.get_json(&format!("/upscale_tasks/{id}")).await;
        assert_eq!(s, 200, "{t}");
        if ended(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {t}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Makes the fake refuse the next submission with `429 Retry-After: secs`: nothing
/// reaches the fake for that long, time enough to give a tile its plan.
fn hold_submissions(f: &FakeHandle, secs: u64) {
    f.add_fault(FaultRule::too_many_requests("POST /jobs", secs));
}

/// Makes the current attempt of job `id` fail on the fake (matched by its UUID).
async fn fail_attempt(d: &TestDaemon, f: &FakeHandle, id: i64, message: &str) -> String {
    let (s, job) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(
        f.stats().jobs_created,
        0,
        "the rule must come before the start"
    );
    let uuid = job["uuid"].as_str().unwrap().to_string();
    f.set_job_plan(&uuid, JobPlan::failing(0.1, 0.2, message));
    uuid
}

/// How many remote jobs carry `uuid` in their description.
fn remote_attempts(f: &FakeHandle, uuid: &str) -> usize {
    f.jobs()
        .iter()
        .filter(|j| j.description.as_deref().unwrap_or("").contains(uuid))
        .count()
}

/// The size of every file delivered for job `job` (its results folder, less the
/// daemon's own `job.json` and `results.json`).
fn delivered_bytes(job: &Value) -> u64 {
    let dir = PathBuf::from(job["results"]["dir"].as_str().expect("a results folder"));
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name();
            n != "job.json" && n != "results.json"
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The sub-jobs of task `id` as full jobs, by id.
async fn sub_jobs(d: &TestDaemon, id: i64) -> BTreeMap<i64, Value> {
    jobs_by_id(d)
        .await
        .into_iter()
        .filter(|(_, j)| j["upscale_task_id"] == id)
        .collect()
}

/// Samples the fake: the largest number of remote jobs active at once.
struct ActiveSampler {
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ActiveSampler {
    fn start(f: &Arc<FakeHandle>) -> ActiveSampler {
        let max = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s, f) = (max.clone(), stop.clone(), f.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                m.fetch_max(remote_active(&f), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
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

// ---------------------------------------------------------------------------
// A failing tile, retry
// ---------------------------------------------------------------------------

/// One of three tiles fails on the backend: the task is `failed` (not `finished`:
/// a tile is missing) with counts 2 finished / 1 failed, progress 100 and the two
/// finished tiles' results delivered. `task` events follow it, without the sub-jobs.
/// A retry resubmits only that tile (one new remote job; the finished tiles' remote
/// jobs stay the only ones with their UUIDs), the task runs again and finishes with
/// every tile's results delivered once. Nothing is left to retry or cancel then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tile_fails_the_task_and_a_retry_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.4).await;
    hold_submissions(&f, 1);
    let d = daemon_for(dir.path(), &f, 2).await;
    let ev = Events::subscribe(&d).await;
    let task = create_task(&d, &task_request(&f.base_url(), "Tiles", 3)).await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "created");
    assert_eq!(task["progress"], 0.0);
    assert_eq!(
        task["results"],
        json!({"bytes": 0, "total_bytes": 0, "ready": 0, "failed": 0, "pending": 0})
    );
    let ids = job_ids(&task);
    let failing_uuid = fail_attempt(&d, &f, ids[1], "Out of memory on tile 2").await;

    let t = wait_ended(&d, id).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(
        t["counts"],
        json!({"created": 0, "queued": 0, "running": 0, "finished": 2, "canceled": 0, "failed": 1})
    );
    assert_eq!(t["progress"], 100.0);
    assert_eq!(t["results"]["ready"], 2, "{t}");
    assert_eq!(t["results"]["failed"], 0);
    let statuses: Vec<&str> = t["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["finished", "failed", "finished"]);
    let (_, failed) = d.get_json(&format!("/unit_jobs/{}", ids[1])).await;
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Out of memory on tile 2"),
        "{failed}"
    );
    assert_eq!(f.stats().jobs_created, 3);

    // The task's events: its summary as it changed, never `finished`, ending failed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mine = || -> Vec<Value> {
        ev.of_kind("task")
            .into_iter()
            .filter(|t| t["id"] == id)
            .collect()
    };
    while mine().last().map(ended) != Some(true) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = mine();
    let last = events.last().unwrap();
    assert!(ended(last), "the deliveries are published too: {last}");
    assert_eq!(last["status"], "failed");
    assert_eq!(last["counts"], t["counts"]);
    assert_eq!(last["results"], t["results"]);
    assert!(events.iter().all(|e| e.get("jobs").is_none()), "{events:?}");
    assert!(events.iter().all(|e| e["status"] != "finished"));
    assert!(events.iter().any(|e| e["status"] == "running"));
    // A tile's progress alone is published: same counts, more progress.
    assert!(
        events.windows(2).any(|w| w[0]["counts"] == w[1]["counts"]
            && w[0]["progress"].as_f64() < w[1]["progress"].as_f64()),
        "progress is published while tiles run: {events:?}"
    );

    // Retry: only the failed tile, as a new attempt.
    let finished_uuids: Vec<String> = {
        let jobs = sub_jobs(&d, id).await;
        [ids[0], ids[2]]
            .iter()
            .map(|j| jobs[j]["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, retried) = d
        .post_json(&format!("/upscale_tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, 200, "{retried}");
    assert_eq!(retried["status"], "running", "some ended, one to come");
    assert_eq!(retried["counts"]["created"], 1);
    assert_eq!(retried["counts"]["finished"], 2);
    let t = wait_ended(&d, id).await;
    assert_eq!(t["status"], "finished", "{t}");
    assert_eq!(t["counts"]["finished"], 3);
    assert_eq!(t["results"]["ready"], 3);
    assert_eq!(f.stats().jobs_created, 4, "only the failed tile went again");
    assert_eq!(remote_attempts(&f, &failing_uuid), 1);
    for uuid in &finished_uuids {
        assert_eq!(
            remote_attempts(&f, uuid),
            1,
            "finished tiles are never resubmitted"
        );
    }
    let jobs = sub_jobs(&d, id).await;
    assert_eq!(
        remote_attempts(&f, jobs[&ids[1]]["uuid"].as_str().unwrap()),
        1
    );
    // Every tile's results delivered once: the sums are the files on disk.
    let on_disk: u64 = jobs.values().map(delivered_bytes).sum();
    let stored: u64 = jobs
        .values()
        .map(|j| j["results"]["bytes"].as_u64().unwrap())
        .sum();
    assert!(on_disk > 0);
    assert_eq!(stored, on_disk);
    assert_eq!(t["results"]["bytes"], on_disk);
    assert_eq!(t["results"]["total_bytes"], on_disk);

    let (s, p) = d
        .post_json(&format!("/upscale_tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (409, Some("NothingToRetry")),
        "{p}"
    );
    let (s, p) = d
        .post_json(&format!("/upscale_tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("TaskEnded")), "{p}");
    assert_eq!(f.stats().jobs_created, 4);
    d.stop().await;
}

/// Two task retries and a retry of the failed sub-job itself, all at once: exactly one
/// of them makes a new attempt (the others answer 409), so the backend gets one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_make_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.2).await;
    hold_submissions(&f, 1);
    let d = daemon_for(dir.path(), &f, 2).await;
    let task = create_task(&d, &task_request(&f.base_url(), "Twice", 2)).await;
    let id = task["id"].as_i64().unwrap();
    let ids = job_ids(&task);
    fail_attempt(&d, &f, ids[0], "Boom").await;
    let t = wait_ended(&d, id).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(f.stats().jobs_created, 2);

    let retry_task = format!("/upscale_tasks/{id}/retry");
    let retry_job = format!("/unit_jobs/{}/retry", ids[0]);
    let empty = json!({});
    let (a, b, c) = tokio::join!(
        d.post_json(&retry_task, &empty),
        d.post_json(&retry_task, &empty),
        d.post_json(&retry_job, &empty),
    );
    let codes = [a.0, b.0, c.0];
    assert_eq!(
        codes.iter().filter(|s| **s == 200).count(),
        1,
        "one retry wins: {a:?} {b:?} {c:?}"
    );
    assert_eq!(codes.iter().filter(|s| **s == 409).count(), 2);
    let t = wait_ended(&d, id).await;
    assert_eq!(t["status"], "finished", "{t}");
    assert_eq!(f.stats().jobs_created, 3, "one new attempt");
    d.stop().await;
}

// ---------------------------------------------------------------------------
// Cancel, delete, unknown tasks
// ---------------------------------------------------------------------------

/// Cancel while two tiles run on the backend and three wait for a slot: the two
/// remote jobs are canceled on the fake, the waiting ones are never sent, every tile
/// is `canceled` and so is the task. Canceling again is a 409; a retry makes five new
/// attempts, and deleting the task cancels the ones that started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_every_active_tile_on_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 30.0).await;
    let d = daemon_for(dir.path(), &f, 2).await;
    let task = create_task(&d, &task_request(&f.base_url(), "Cancel me", 5)).await;
    let id = task["id"].as_i64().unwrap();
    wait_for("two running tiles", LONG, || async {
        let (_, t) = d.get_json(&format!("/upscale_tasks/{id}")).await;
        (t["counts"]["running"] == 2).then_some(())
    })
    .await;
    assert_eq!(f.jobs().len(), 2);

    let (s, t) = d
        .post_json(&format!("/upscale_tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["status"], "canceled");
    assert_eq!(t["counts"]["canceled"], 5, "{t}");
    for j in f.jobs() {
        assert_eq!(j.status, JobStatus::Canceled, "{j:?}");
    }
    // A few cycles later nothing was sent and nothing came back to life.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(f.stats().jobs_created, 2);
    let jobs = sub_jobs(&d, id).await;
    assert_eq!(jobs.len(), 5);
    for j in jobs.values() {
        assert_eq!(j["status"], "canceled", "{j}");
        assert_eq!(j["error"]["code"], "Canceled");
    }
    let (s, p) = d
        .post_json(&format!("/upscale_tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("TaskEnded")), "{p}");

    // Canceled tiles can be retried; deleting the task cancels what started again.
    let (s, t) = d
        .post_json(&format!("/upscale_tasks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["counts"]["created"], 5);
    wait_for("two new remote jobs", LONG, || async {
        (remote_active(&f) == 2).then_some(())
    })
    .await;
    assert_eq!(d.delete(&format!("/upscale_tasks/{id}")).await, 204);
    assert_eq!(remote_active(&f), 0, "{:#?}", f.jobs());
    assert_eq!(f.stats().jobs_created, 4);
    let (s, _) = d.get_json(&format!("/upscale_tasks/{id}")).await;
    assert_eq!(s, 404);
    assert!(sub_jobs(&d, id).await.is_empty());

    for path in ["cancel", "retry"] {
        let (s, p) = d
            .post_json(&format!("/upscale_tasks/{id}/{path}"), &json!({}))
            .await;
        assert_eq!((s, p["code"].as_str()), (404, Some("TaskNotFound")), "{p}");
    }
    d.stop().await;
}

/// Six tiles with `max_running_jobs = 2`: never more than two active on the backend
/// during the fan-out, six remote jobs, the task finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_respects_the_backends_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(start_fake(0.1, 0.3).await);
    let d = daemon_for(dir.path(), &f, 2).await;
    let sampler = ActiveSampler::start(&f);
    let task = create_task(&d, &task_request(&f.base_url(), "Limited", 6)).await;
    let t = wait_ended(&d, task["id"].as_i64().unwrap()).await;
    let max = sampler.finish().await;
    assert_eq!(t["status"], "finished", "{t}");
    assert_eq!(max, 2, "at most (and, with six tiles, exactly) two at once");
    assert_eq!(f.stats().jobs_created, 6);
    d.stop().await;
}

// ---------------------------------------------------------------------------
// kill -9 during the fan-out (the real binary)
// ---------------------------------------------------------------------------

/// The daemon is killed with `kill -9` six times at random moments while a task of
/// six tiles fans out (slow submissions widen the windows a kill can hit). After each
/// restart the task is there and goes on; in the end every tile finished exactly once
/// on the fake (one remote job per tile, linked to it), and every tile's results were
/// delivered once: one folder per tile, the delivered bytes those of the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loops_during_a_fan_out_lose_and_repeat_nothing() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.4).await;
    f.add_fault(FaultRule::delay("POST /jobs", 150).times(0));
    f.add_fault(FaultRule::delay("POST /jobs/*/results", 100).times(0));
    let mut c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
    let (s, task) = c
        .post_json("/upscale_tasks", &task_request(&f.base_url(), "Killed", 6))
        .await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let mut kills = Vec::new();
    for _ in 0..6 {
        let after = rand::rng().random_range(10..300);
        kills.push(after);
        tokio::time::sleep(Duration::from_millis(after)).await;
        c.kill9();
        drop(c);
        c = ChildDaemon::start(dir.path(), &f.base_url(), 2, &[]).await;
        let (s, t) = c.get_json(&format!("/upscale_tasks/{id}")).await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(t["jobs"].as_array().unwrap().len(), 6);
        assert_eq!(t["counts"]["failed"], 0, "kills after {kills:?} ms: {t}");
    }
    let deadline = Instant::now() + LONG;
    let t = loop {
        let (_, t) = c.get_json(&format!("/upscale_tasks/{id}")).await;
        if ended(&t) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "kills after {kills:?} ms: {t}; log:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("kills after {kills:?} ms");
    assert_eq!(t["status"], "finished", "kills after {kills:?} ms: {t}");
    assert_eq!(t["counts"]["finished"], 6);
    assert_eq!(t["results"]["ready"], 6, "{t}");
    let stats = f.stats();
    assert_eq!(
        stats.jobs_created, 6,
        "kills after {kills:?} ms: {stats:#?}"
    );
    assert!(f.jobs().iter().all(|j| j.status == JobStatus::Finished));
    let (_, list) = c.get_json("/unit_jobs?limit=100").await;
    let jobs: Vec<&Value> = list.as_array().unwrap().iter().collect();
    assert_eq!(jobs.len(), 6);
    let linked: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["backend_job_id"].as_str().unwrap().to_string())
        .collect();
    let remote: BTreeSet<String> = f.jobs().into_iter().map(|j| j.id).collect();
    assert_eq!(linked, remote, "kills after {kills:?} ms");
    for j in &jobs {
        assert_eq!(remote_attempts(&f, j["uuid"].as_str().unwrap()), 1, "{j}");
    }
    // Results: one folder per tile (no second copy), bytes as on disk.
    let published = manifests(&dir.path().join("results"));
    assert_eq!(published.len(), 6, "{published:?}");
    let dirs: BTreeSet<&str> = jobs
        .iter()
        .map(|j| j["results"]["dir"].as_str().unwrap())
        .collect();
    assert_eq!(dirs.len(), 6);
    let mut total = 0;
    for j in &jobs {
        let on_disk = delivered_bytes(j);
        assert_eq!(j["results"]["bytes"], on_disk, "{j}");
        assert_eq!(j["results"]["total_bytes"], on_disk, "{j}");
        total += on_disk;
    }
    assert_eq!(t["results"]["bytes"], total);
}

/// Every published `job.json` under `dir` (outside `.incoming`).
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n == ".incoming") {
            continue;
        }
        if p.is_dir() {
            out.extend(manifests(&p));
        } else if p.file_name().is_some_and(|n| n == "job.json") {
            schema::assert_job_json(&serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
            out.push(p);
        } else if p.file_name().is_some_and(|n| n == "task.json") {
            schema::assert_task_json(&serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

/// Runs the `eodispatch` binary against `d`; exit code, stdout, stderr.
async fn cli(d: &TestDaemon, args: &[&str]) -> (i32, String, String) {
    let out = cli_command(d, args).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_command(d: &TestDaemon, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_eodispatch"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EODISPATCH_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .env("EODISPATCH_STATE_DIR", &d.config.state_dir)
        .env("EODISPATCH_RESULTS_DIR", &d.config.results_dir)
        .env("EODISPATCH_CONFIG_DIR", &d.config.config_dir)
        .env("EODISPATCH_LISTEN", d.addr.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `eodispatch upscale --wait` on a box that gives several tiles, one of them failing:
/// progress lines on standard error (not a terminal), the outcome on standard output,
/// exit code 1; `tasks` and `task` show it; `retry-task --wait` finishes it (exit 0)
/// with every tile's results in place; `cancel-task` has nothing left to do;
/// `delete-task` forgets it. Mistakes in the area or the service exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_tasks_and_wait_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fake(0.1, 0.3).await;
    hold_submissions(&f, 2);
    let d = daemon_for(dir.path(), &f, 2).await;
    let base = f.base_url();
    let upscale = cli_command(
        &d,
        &[
            "upscale",
            "--endpoint",
            &base,
            "--application",
            PV_APP,
            "--bbox",
            "16.28,47.90,16.40,48.02",
            "--grid",
            "20km",
            "--time",
            "2023-05-01/2023-09-30",
            "--title",
            "CLI tiles",
            "--wait",
        ],
    )
    .output();
    let upscale = tokio::spawn(upscale);
    // While the first submission is held back, make the second tile's first attempt fail.
    let second = wait_for("the task", LONG, || async {
        let (_, tasks) = d.get_json("/upscale_tasks").await;
        let id = tasks.as_array()?.first()?["id"].as_i64()?;
        let (_, t) = d.get_json(&format!("/upscale_tasks/{id}")).await;
        t["jobs"][1]["id"].as_i64()
    })
    .await;
    fail_attempt(&d, &f, second, "No data for this tile").await;
    let out = upscale.await.unwrap().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let (_, t) = d.get_json("/upscale_tasks/1").await;
    let tiles = t["jobs"].as_array().unwrap().len();
    assert!(tiles >= 2, "{t}");
    assert!(
        stdout.starts_with(&format!(
            "Created upscale task 1 \"CLI tiles\": {tiles} tiles of 20 × 20 km (status: created)\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "Task 1 \"CLI tiles\" failed: {}/{tiles} finished, 1 failed\n",
            tiles - 1
        )),
        "{stdout}"
    );
    assert!(stdout.contains("`eodispatch retry-task 1`"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("task 1: ")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains(": running, ")), "{stderr}");
    assert!(
        lines.last().unwrap().starts_with("task 1: failed, 100%"),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "no redrawing off a terminal");

    let (code, out, err) = cli(&d, &["tasks"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ID  STATUS  PROGRESS  TILES  TITLE      CREATED\n"),
        "{out}"
    );
    let done = format!("{}/{tiles}", tiles - 1);
    assert!(
        out.contains(&format!(" 1  failed      100%  {done:>5}  CLI tiles  ")),
        "{out}"
    );
    let (code, out, _) = cli(&d, &["task", "1"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("status:       failed\n"), "{out}");
    assert!(out.contains("CLI tiles - Processing Job 2"), "{out}");
    let (code, out, _) = cli(&d, &["task", "1", "--json"]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["counts"]["failed"], 1);

    let (code, out, err) = cli(&d, &["retry-task", "1", "--wait"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "Task 1 \"CLI tiles\" finished: {tiles}/{tiles} finished\n\
             The results of {tiles} tiles are in {}.\n",
            d.config.results_dir.display()
        )),
        "{out}"
    );
    assert_eq!(f.stats().jobs_created as usize, tiles + 1);
    let (_, t) = d.get_json("/upscale_tasks/1").await;
    assert_eq!(t["results"]["ready"], tiles);

    let (code, _, err) = cli(&d, &["cancel-task", "1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Nothing to cancel"), "{err}");
    let (code, out, _) = cli(&d, &["delete-task", "1"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("Forgot upscale task 1"), "{out}");
    let (code, _, err) = cli(&d, &["task", "1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("there is no upscale task with id 1"), "{err}");

    // Mistakes in what the user gave.
    let two = dir.path().join("two.geojson");
    let poly = json!({"type": "Polygon", "coordinates": [[[16.3, 48.0], [16.4, 48.0], [16.4, 48.1], [16.3, 48.0]]]});
    let feature = json!({"type": "Feature", "properties": {}, "geometry": poly});
    std::fs::write(
        &two,
        json!({"type": "FeatureCollection", "features": [feature, feature]}).to_string(),
    )
    .unwrap();
    let area = two.display().to_string();
    let (code, _, err) = cli(
        &d,
        &[
            "upscale",
            "--endpoint",
            &base,
            "--application",
            PV_APP,
            "--area",
            &area,
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("this collection has 2 features"), "{err}");
    let (code, _, err) = cli(
        &d,
        &[
            "upscale",
            "--service",
            "nope",
            "--bbox",
            "16.3,48,16.4,48.1",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no service \"nope\"") && err.contains("eurac_pv_farm_detection"),
        "{err}"
    );
    assert_eq!(f.stats().jobs_created as usize, tiles + 1);
    d.stop().await;
}

/// `eodispatch upscale --service ID` takes the service from the catalogue (without
/// `--wait`: the task is created and printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_a_catalogue_service() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let area = dir.path().join("aoi.geojson");
    std::fs::write(
        &area,
        json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
               "coordinates": [[[16.30, 47.95], [16.45, 47.95], [16.45, 48.05], [16.30, 48.05], [16.30, 47.95]]]}})
        .to_string(),
    )
    .unwrap();
    let area = area.display().to_string();
    let (code, out, err) = cli(
        &d,
        &[
            "upscale",
            "--service",
            "eurac_pv_farm_detection",
            "--area",
            &area,
            "--time",
            "2023-05-01/2023-09-30",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["service"]["application"], PV_APP);
    assert_eq!(task["dimension"]["name"], "spatial_extent");
    assert!(!task["jobs"].as_array().unwrap().is_empty());
    assert_eq!(
        task["parameters"]["temporal_extent"],
        json!(["2023-05-01", "2023-09-30"])
    );
    assert_eq!(
        d.delete(&format!("/upscale_tasks/{}", task["id"])).await,
        204
    );
    d.stop().await;
}
