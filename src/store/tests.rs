//! Tests of the job store against real SQLite files in temporary folders.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::{json, Map, Value};
use time::Duration;

use super::*;
use crate::job::{
    Dimension, JobError, Label, OutputFormat, Results, ResultsState, ServiceDetails, Status,
    StatusCounts, SubmitState,
};

fn request(title: &str) -> JobRequest {
    let mut parameters = Map::new();
    parameters.insert(
        "spatial_extent".into(),
        json!({"west": 5.0, "south": 51.1, "east": 5.1, "north": 51.2}),
    );
    parameters.insert(
        "temporal_extent".into(),
        json!(["2025-05-01", "2025-05-31"]),
    );
    parameters.insert("nested".into(), json!({"a": [1, 2.5, null, true, "x"]}));
    JobRequest {
        title: title.into(),
        label: Label::Openeo,
        service: ServiceDetails {
            endpoint: "https://openeo.dataspace.copernicus.eu".into(),
            namespace: None,
            application: "https://example.org/udp/ndvi.json".into(),
        },
        parameters,
        format: OutputFormat::Gtiff,
        max_cost: Some(12.5),
        estimate: Some(crate::job::cost::estimate(
            Some(0.1),
            Some("platform credits per km²"),
            &[&serde_json::from_value(
                json!({"spatial_extent": {"west": 0, "south": 0, "east": 0.1, "north": 0.1}}),
            )
            .unwrap()],
            false,
        )),
    }
}

fn ogc_request(title: &str) -> JobRequest {
    JobRequest {
        title: title.into(),
        label: Label::OgcApiProcess,
        service: ServiceDetails {
            endpoint: "https://ogc.example.org".into(),
            namespace: Some("ns-1".into()),
            application: "water-bodies".into(),
        },
        parameters: Map::new(),
        format: OutputFormat::Netcdf,
        max_cost: None,
        estimate: None,
    }
}

fn task_request(title: &str, n: usize) -> TaskRequest {
    TaskRequest {
        job: request(title),
        dimension: Dimension {
            name: "spatial_extent".into(),
            values: (0..n).map(|i| json!({"tile": i})).collect(),
        },
        mosaic: None,
        tile_estimates: Vec::new(),
    }
}

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("state/jobs.sqlite"))
        .await
        .expect("open store")
}

#[tokio::test]
async fn job_round_trips_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let req = request("NDVI Leuven");
    let job = store.insert_job(req.clone()).await.unwrap();
    assert!(job.id > 0);
    assert_eq!(job.title, req.title);
    assert_eq!(job.label, req.label);
    assert_eq!(job.service, req.service);
    assert_eq!(job.parameters, req.parameters);
    assert_eq!(job.format, req.format);
    assert_eq!(job.status, Status::Created);
    assert_eq!(job.results, Results::default());
    assert_eq!(job.created, job.updated);
    assert_eq!(job.uuid.get_version_num(), 4);
    assert_eq!(
        (job.backend_job_id.clone(), job.progress, job.error.clone()),
        (None, None, None)
    );
    assert_eq!(job.upscale_task_id, None);
    // What insert returns is exactly what is stored (timestamps to the millisecond).
    assert_eq!(store.job(job.id).await.unwrap().as_ref(), Some(&job));
    assert_eq!(
        store.job_by_uuid(job.uuid).await.unwrap().as_ref(),
        Some(&job)
    );

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let patch = JobPatch {
        costs: Some(Some(3.25)),
        usage: Some(Some(json!({"cpu": {"value": 40, "unit": "cpu-seconds"}}))),
        status: Some(Status::Finished),
        backend_job_id: Some(Some("j-2405abc".into())),
        progress: Some(Some(87.5)),
        error: Some(Some(JobError {
            code: "Internal".into(),
            message: "backend said: \"oops\" ünïcödé".into(),
        })),
        results: Some(Results {
            state: ResultsState::Ready,
            dir: Some("/home/u/EODispatch/2025-05-01_ndvi_1".into()),
            bytes: 5_000_000_000,
            total_bytes: Some(5_000_000_001),
        }),
        backend_status: Some(Some("error".into())),
        submit_state: Some(SubmitState::Submitted),
        only_if_active: false,
    };
    let updated = store
        .update_job(job.id, patch.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, Status::Finished);
    assert_eq!(updated.backend_job_id.as_deref(), Some("j-2405abc"));
    assert_eq!(updated.progress, Some(87.5));
    assert_eq!(updated.error, patch.error.clone().unwrap());
    assert_eq!(updated.results, patch.results.clone().unwrap());
    assert_eq!(updated.backend_status.as_deref(), Some("error"));
    assert_eq!(updated.submit_state, SubmitState::Submitted);
    assert_eq!(job.submit_state, SubmitState::Pending);
    assert_eq!(updated.created, job.created);
    assert!(updated.updated > job.updated, "updated must move on");
    assert_eq!(
        (updated.uuid, &updated.parameters, &updated.service),
        (job.uuid, &job.parameters, &job.service)
    );
    assert_eq!(store.job(job.id).await.unwrap(), Some(updated.clone()));

    // The scheduler's guard: no change to a job that has ended.
    let refused = store
        .update_job(
            job.id,
            JobPatch {
                status: Some(Status::Queued),
                only_if_active: true,
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        refused, None,
        "a finished job must not be moved by a guarded patch"
    );
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().status,
        Status::Finished
    );

    // An empty patch changes nothing but `updated`.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let same = store
        .update_job(job.id, JobPatch::default())
        .await
        .unwrap()
        .unwrap();
    assert!(same.updated > updated.updated);
    assert_eq!(same.status, updated.status);
    assert_eq!(same.backend_job_id, updated.backend_job_id);
    assert_eq!(same.progress, updated.progress);
    assert_eq!(same.results, updated.results);
    assert_eq!(same.error, updated.error);

    // Clearing the optional fields.
    let cleared = store
        .update_job(
            job.id,
            JobPatch {
                backend_job_id: Some(None),
                progress: Some(None),
                error: Some(None),
                results: Some(Results::default()),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.backend_job_id, None);
    assert_eq!(cleared.progress, None);
    assert_eq!(cleared.error, None);
    assert_eq!(cleared.results, Results::default());
    assert_eq!(cleared.status, Status::Finished);
    assert_eq!(store.job(job.id).await.unwrap(), Some(cleared));

    // The other label/format and a namespace round-trip too.
    let ogc = store.insert_job(ogc_request("WB")).await.unwrap();
    assert_eq!(store.job(ogc.id).await.unwrap(), Some(ogc));

    assert_eq!(store.update_job(999_999, patch).await.unwrap(), None);
    assert_eq!(store.job(999_999).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn request_is_kept_for_audit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let job = store.insert_job(request("audit")).await.unwrap();
    let stored: String = store
        .read(move |c| {
            Ok(c.query_row(
                "SELECT request FROM unit_jobs WHERE id = ?1",
                [job.id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(v["title"], "audit");
    assert_eq!(v["label"], "openeo");
    assert_eq!(v["format"], "gtiff");
    assert_eq!(
        v["service"]["application"],
        "https://example.org/udp/ndvi.json"
    );
    assert_eq!(v["parameters"]["nested"]["a"][1], 2.5);
}

#[tokio::test]
async fn lists_are_newest_first_with_filter_limit_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            store
                .insert_job(request(&format!("j{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    for id in ids.iter().step_by(3) {
        store
            .update_job(
                *id,
                JobPatch {
                    status: Some(Status::Running),
                    ..JobPatch::default()
                },
            )
            .await
            .unwrap();
    }
    let all: Vec<i64> = store
        .jobs(JobFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(all, expected);

    let page: Vec<i64> = store
        .jobs(JobFilter {
            limit: Some(3),
            offset: 2,
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(page, expected[2..5]);

    let past_end = store
        .jobs(JobFilter {
            offset: 50,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert!(past_end.is_empty());
    let none = store
        .jobs(JobFilter {
            limit: Some(0),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());

    let running = JobFilter {
        status: Some(Status::Running),
        ..JobFilter::default()
    };
    let got: Vec<i64> = store
        .jobs(running.clone())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let want: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|id| ids.iter().step_by(3).any(|r| r == id))
        .collect();
    assert_eq!(got, want);
    assert_eq!(store.count_jobs(running.clone()).await.unwrap(), 4);
    let page: Vec<i64> = store
        .jobs(JobFilter {
            limit: Some(2),
            offset: 1,
            ..running
        })
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(page, want[1..3]);
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 10);
    let failed = store
        .jobs(JobFilter {
            status: Some(Status::Failed),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert!(failed.is_empty());
}

#[tokio::test]
async fn standalone_only_leaves_out_task_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let a = store.insert_job(request("a")).await.unwrap();
    let task = store.insert_task(task_request("t", 3)).await.unwrap();
    let b = store.insert_job(request("b")).await.unwrap();

    let all = store.jobs(JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all.iter()
            .filter(|j| j.upscale_task_id == Some(task.id))
            .count(),
        3
    );
    let standalone = JobFilter {
        standalone_only: true,
        ..JobFilter::default()
    };
    let ids: Vec<i64> = store
        .jobs(standalone.clone())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, vec![b.id, a.id]);
    assert_eq!(store.count_jobs(standalone.clone()).await.unwrap(), 2);
    let created_standalone = store
        .jobs(JobFilter {
            status: Some(Status::Created),
            limit: Some(1),
            ..standalone
        })
        .await
        .unwrap();
    assert_eq!(created_standalone.len(), 1);
    assert_eq!(created_standalone[0].id, b.id);
}

#[tokio::test]
async fn tasks_fan_out_and_derive_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let req = task_request("Tiles", 3);
    let task = store.insert_task(req.clone()).await.unwrap();
    assert_eq!(task.status, Status::Created);
    assert_eq!(task.counts.created, 3);
    assert_eq!(task.counts.total(), 3);
    assert_eq!(task.dimension, req.dimension);
    assert_eq!(task.parameters, req.job.parameters);
    assert_eq!(task.jobs.len(), 3);
    for (n, j) in task.jobs.iter().enumerate() {
        assert_eq!(j.title, format!("Tiles - Processing Job {}", n + 1));
        assert_eq!(j.parameters["spatial_extent"], json!({"tile": n}));
        assert_eq!(
            j.parameters["temporal_extent"],
            req.job.parameters["temporal_extent"]
        );
        assert_eq!(j.parameters.len(), req.job.parameters.len());
        assert_eq!(j.status, Status::Created);
    }
    // The returned task is what is stored.
    assert_eq!(store.task(task.id).await.unwrap().as_ref(), Some(&task));
    let full = store.jobs_of_task(task.id).await.unwrap();
    assert_eq!(
        full.iter().map(|j| j.id).collect::<Vec<_>>(),
        task.jobs.iter().map(|j| j.id).collect::<Vec<_>>()
    );
    assert!(full.iter().all(|j| j.upscale_task_id == Some(task.id)));
    assert_eq!(
        full.iter().map(|j| j.uuid).collect::<HashSet<_>>().len(),
        3,
        "each sub-job has its own uuid"
    );

    let set = |id: i64, s: Status| {
        let store = store.clone();
        async move {
            store
                .update_job(
                    id,
                    JobPatch {
                        status: Some(s),
                        ..JobPatch::default()
                    },
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    let ids: Vec<i64> = task.jobs.iter().map(|j| j.id).collect();
    let expect = |status: Status| {
        let store = store.clone();
        async move {
            let t = store.task(task.id).await.unwrap().unwrap();
            let summary = store
                .tasks()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.id == task.id)
                .unwrap();
            assert_eq!(t.status, status);
            assert_eq!(summary.status, status);
            t
        }
    };

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let j = set(ids[0], Status::Queued).await;
    let t = expect(Status::Queued).await;
    assert_eq!(
        t.counts,
        StatusCounts {
            created: 2,
            queued: 1,
            ..StatusCounts::default()
        }
    );
    assert_eq!(t.updated, j.updated, "task.updated follows its jobs");
    assert!(t.updated > t.created);

    set(ids[0], Status::Finished).await;
    set(ids[1], Status::Failed).await;
    expect(Status::Running).await;
    set(ids[2], Status::Canceled).await;
    // Not every tile finished: not `finished`.
    let t = expect(Status::Failed).await;
    assert_eq!(
        (t.counts.finished, t.counts.failed, t.counts.canceled),
        (1, 1, 1)
    );
    set(ids[0], Status::Failed).await;
    expect(Status::Failed).await;
    for id in &ids {
        set(*id, Status::Canceled).await;
    }
    expect(Status::Canceled).await;

    // A task without values (not accepted by validation, but the store copes).
    let empty = store.insert_task(task_request("Empty", 0)).await.unwrap();
    assert_eq!(empty.status, Status::Created);
    // tasks(): newest first, including the empty one.
    let list = store.tasks().await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![empty.id, task.id]
    );
    assert_eq!(list[0].title, "Empty");
    assert_eq!(list[0].status, Status::Created);
    assert_eq!(list[1].label, Label::Openeo);
    assert_eq!(store.task(12345).await.unwrap(), None);
}

/// Progress and results delivery are sums over the sub-jobs, the same in the task and
/// in its summary (one is read from rows, the other aggregated by SQL).
#[tokio::test]
async fn task_progress_and_results_sum_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let task = store.insert_task(task_request("Sums", 4)).await.unwrap();
    let ids: Vec<i64> = task.jobs.iter().map(|j| j.id).collect();
    let patch = |status: Status, progress: Option<f64>, results: Option<Results>| JobPatch {
        status: Some(status),
        progress: Some(progress),
        results,
        ..JobPatch::default()
    };
    let delivered = |state: ResultsState, bytes: u64, total: Option<u64>| Results {
        state,
        dir: None,
        bytes,
        total_bytes: total,
    };
    let updates = [
        patch(
            Status::Running,
            Some(40.0),
            Some(delivered(ResultsState::Pending, 0, None)),
        ),
        patch(Status::Queued, None, None),
        patch(
            Status::Finished,
            Some(100.0),
            Some(delivered(ResultsState::Ready, 1000, Some(1000))),
        ),
        patch(
            Status::Finished,
            Some(100.0),
            Some(delivered(ResultsState::Failed, 300, Some(500))),
        ),
    ];
    for (id, p) in ids.iter().zip(updates) {
        store.update_job(*id, p).await.unwrap().unwrap();
    }
    let t = store.task(task.id).await.unwrap().unwrap();
    let summary = store.task_summary(task.id).await.unwrap().unwrap();
    // (40 + 0 + 100 + 100) / 4
    assert_eq!(t.progress, 60.0);
    assert_eq!(
        t.results,
        crate::job::TaskResults {
            bytes: 1300,
            total_bytes: 1500,
            ready: 1,
            failed: 1,
            pending: 0,
        }
    );
    assert_eq!(t.status, Status::Running);
    assert_eq!(summary, TaskSummary::from(&t));
    assert_eq!(store.tasks().await.unwrap(), vec![summary]);
    // A backend's nonsense progress stays within bounds, as progress_share says.
    store
        .update_job(ids[0], patch(Status::Running, Some(250.0), None))
        .await
        .unwrap();
    let t = store.task(task.id).await.unwrap().unwrap();
    assert_eq!(t.progress, 75.0);
    assert_eq!(
        t.progress,
        t.counts
            .task_progress(crate::job::progress_share(Status::Running, Some(250.0)))
    );
    // A finished job whose results are on their way is pending.
    store
        .update_job(
            ids[1],
            patch(
                Status::Finished,
                Some(100.0),
                Some(delivered(ResultsState::Downloading, 10, Some(20))),
            ),
        )
        .await
        .unwrap();
    let t = store.task(task.id).await.unwrap().unwrap();
    assert_eq!((t.results.pending, t.results.bytes), (1, 1310));
    assert_eq!(store.task_summary(12345).await.unwrap(), None);
}

/// A task's failed and canceled sub-jobs are retried in one write, each with a new
/// UUID; finished and active ones are not, and a second retry finds nothing to do.
#[tokio::test]
async fn retrying_a_task_touches_only_failed_and_canceled_jobs_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let task = store.insert_task(task_request("Retry", 4)).await.unwrap();
    let ids: Vec<i64> = task.jobs.iter().map(|j| j.id).collect();
    for (id, status) in ids.iter().zip([
        Status::Finished,
        Status::Failed,
        Status::Canceled,
        Status::Running,
    ]) {
        store
            .update_job(
                *id,
                JobPatch {
                    status: Some(status),
                    backend_job_id: Some(Some(format!("remote-{id}"))),
                    submit_state: Some(SubmitState::Submitted),
                    ..JobPatch::default()
                },
            )
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        store.retry_jobs_of_task(task.id),
        store.retry_jobs_of_task(task.id)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (done, none) = if a.is_empty() { (b, a) } else { (a, b) };
    assert!(none.is_empty(), "the second retry found nothing: {none:?}");
    assert_eq!(
        done.iter().map(|(_, j)| j.id).collect::<Vec<_>>(),
        vec![ids[1], ids[2]]
    );
    for (before, after) in &done {
        assert_ne!(before.uuid, after.uuid);
        assert_eq!(after.status, Status::Created);
        assert_eq!(after.submit_state, SubmitState::Pending);
        assert_eq!(after.backend_job_id, None);
    }
    let jobs = store.jobs_of_task(task.id).await.unwrap();
    assert_eq!(jobs[0].status, Status::Finished);
    assert_eq!(
        jobs[0].backend_job_id.as_deref(),
        Some(&*format!("remote-{}", ids[0]))
    );
    assert_eq!(jobs[3].status, Status::Running);
    assert!(store.retry_jobs_of_task(task.id).await.unwrap().is_empty());
}

/// Only the sub-jobs not handed to a backend yet are patched by
/// `update_unsent_of_task`.
#[tokio::test]
async fn unsent_sub_jobs_are_patched_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let task = store.insert_task(task_request("Unsent", 3)).await.unwrap();
    let ids: Vec<i64> = task.jobs.iter().map(|j| j.id).collect();
    store
        .update_job(
            ids[0],
            JobPatch {
                submit_state: Some(SubmitState::Submitting),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    store
        .update_job(
            ids[1],
            JobPatch {
                status: Some(Status::Failed),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    let patched = store
        .update_unsent_of_task(
            task.id,
            JobPatch {
                status: Some(Status::Canceled),
                only_if_active: true,
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        patched.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    let jobs = store.jobs_of_task(task.id).await.unwrap();
    let statuses: Vec<Status> = jobs.iter().map(|j| j.status).collect();
    assert_eq!(
        statuses,
        [Status::Created, Status::Failed, Status::Canceled]
    );
}

#[tokio::test]
async fn deletes_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let lone = store.insert_job(request("lone")).await.unwrap();
    let t1 = store.insert_task(task_request("t1", 4)).await.unwrap();
    let t2 = store.insert_task(task_request("t2", 2)).await.unwrap();
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 7);

    assert!(store.delete_task(t1.id).await.unwrap());
    assert!(!store.delete_task(t1.id).await.unwrap());
    assert_eq!(store.task(t1.id).await.unwrap(), None);
    for j in &t1.jobs {
        assert_eq!(store.job(j.id).await.unwrap(), None, "sub-job must go too");
    }
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 3);
    assert_eq!(store.task(t2.id).await.unwrap().unwrap().jobs.len(), 2);

    // Deleting one sub-job leaves the task with the others.
    assert!(store.delete_job(t2.jobs[0].id).await.unwrap());
    let t2_now = store.task(t2.id).await.unwrap().unwrap();
    assert_eq!(t2_now.jobs.len(), 1);
    assert_eq!(t2_now.counts.total(), 1);

    assert!(store.delete_job(lone.id).await.unwrap());
    assert!(!store.delete_job(lone.id).await.unwrap());
    assert_eq!(store.job(lone.id).await.unwrap(), None);
    assert_eq!(store.tasks().await.unwrap().len(), 1);
}

fn pragmas(c: &Connection) -> Result<(String, i64, i64, i64), StoreError> {
    Ok((
        c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
        c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
        c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?,
        c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
    ))
}

#[tokio::test]
async fn pragmas_are_in_effect_on_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let want = (String::from("wal"), 2, 5000, 1);
    assert_eq!(store.write(pragmas).await.unwrap(), want, "writer");
    // Take every reader at once, so that each connection is checked.
    let mut reads = Vec::new();
    for _ in 0..readers::READERS {
        let store = store.clone();
        reads.push(tokio::spawn(async move {
            store
                .read(|c| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let query_only: i64 = c.query_row("PRAGMA query_only", [], |r| r.get(0))?;
                    Ok((pragmas(c)?, query_only))
                })
                .await
        }));
    }
    for r in reads {
        let (p, query_only) = r.await.unwrap().unwrap();
        assert_eq!(p, want, "reader");
        assert_eq!(query_only, 1);
    }
    // Readers really are read-only.
    let err = store
        .read(|c| Ok(c.execute("DELETE FROM unit_jobs", [])?))
        .await;
    assert!(err.is_err());
    let version: i64 = store
        .read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(version, i64::from(SCHEMA_VERSION));
    // Health proves the writer works without writing (no fsync per /health).
    let before = store.write_stats();
    store.health().await.unwrap();
    let after = store.write_stats();
    assert_eq!(after.ops, before.ops + 1);
    let changes: i64 = store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(changes, 0, "health wrote to meta");
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/jobs.sqlite");
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.path(), path);
    let job = store.insert_job(request("persist")).await.unwrap();
    let job = store
        .update_job(
            job.id,
            JobPatch {
                status: Some(Status::Running),
                progress: Some(Some(12.0)),
                backend_job_id: Some(Some("b-1".into())),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let task = store
        .insert_task(task_request("persist task", 2))
        .await
        .unwrap();
    store.close().await;
    // A clean close leaves no WAL content behind.
    let wal = path.with_file_name("jobs.sqlite-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL not checkpointed"
    );

    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.job(job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(store.task(task.id).await.unwrap(), Some(task.clone()));
    let next = store.insert_job(request("after restart")).await.unwrap();
    assert!(
        next.id > task.jobs.last().unwrap().id,
        "ids are never reused"
    );
    // Dropping the last handle (without close) also keeps every answered write.
    drop(store);
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL not checkpointed on drop"
    );
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.job(next.id).await.unwrap(), Some(next));
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 4);
    store.close().await;
}

#[tokio::test]
async fn ids_are_not_reused_after_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let a = store.insert_job(request("a")).await.unwrap();
    store.delete_job(a.id).await.unwrap();
    let b = store.insert_job(request("b")).await.unwrap();
    assert!(b.id > a.id);
}

#[tokio::test]
async fn refuses_a_database_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite");
    Store::open(&path).await.unwrap().close().await;
    let future = i64::from(SCHEMA_VERSION) + 1;
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", future).unwrap();
    }
    let err = Store::open(&path).await.unwrap_err();
    match &err {
        StoreError::TooNew {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*found, future);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
}

#[tokio::test]
async fn refuses_damaged_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5au8; 8192]).unwrap();
    let err = Store::open(&garbage).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&garbage.display().to_string()));

    let foreign = dir.path().join("other.sqlite");
    {
        let c = Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
    }
    let err = Store::open(&foreign).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains(&foreign.display().to_string()));
}

#[tokio::test]
async fn refuses_a_file_where_the_folder_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let err = Store::open(&blocker.join("jobs.sqlite")).await.unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
}

#[tokio::test]
async fn a_bad_row_is_an_error_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let job = store.insert_job(request("bad")).await.unwrap();
    let task = store
        .insert_task(task_request("bad task", 1))
        .await
        .unwrap();
    let (jid, tid) = (job.id, task.id);
    store
        .write(move |c| {
            c.execute(
                "UPDATE unit_jobs SET parameters = 'not json' WHERE id = ?1",
                [jid],
            )?;
            c.execute(
                "UPDATE upscale_tasks SET created = 'yesterday' WHERE id = ?1",
                [tid],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    match store.job(jid).await {
        Err(StoreError::BadRow {
            table, column, id, ..
        }) => assert_eq!((table, column, id), ("unit_jobs", "parameters", jid)),
        other => panic!("expected BadRow, got {other:?}"),
    }
    assert!(store.jobs(JobFilter::default()).await.is_err());
    match store.task(tid).await {
        Err(StoreError::BadRow { table, column, .. }) => {
            assert_eq!((table, column), ("upscale_tasks", "created"))
        }
        other => panic!("expected BadRow, got {other:?}"),
    }
    // The pool still works after errors.
    store.health().await.unwrap();
    assert!(store.job(task.jobs[0].id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_failing_write_does_not_undo_the_others_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    // Run a batch by hand on a separate writer connection to control its content.
    let path = store.path().to_path_buf();
    let conn = schema::open_writer(&path).unwrap();
    let mut ops: Vec<Box<dyn writer::Op>> = Vec::new();
    let mut answers = Vec::new();
    for i in 0..3 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = request(&format!("batch {i}"));
        let op = writer::TypedOp::new(
            move |c: &Connection| -> Result<Job, StoreError> {
                let job = rows::insert_job(c, req, Uuid::new_v4())?;
                if i == 1 {
                    // Violates the CHECK on status after having inserted a row.
                    c.execute(
                        "UPDATE unit_jobs SET status = 'bogus' WHERE id = ?1",
                        [job.id],
                    )?;
                }
                Ok(job)
            },
            tx,
        );
        ops.push(Box::new(op));
        answers.push(rx);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), StoreError>>();
    ops.push(Box::new(writer::TypedOp::new(
        |_: &Connection| -> Result<(), StoreError> { panic!("boom") },
        tx,
    )));
    writer::run_batch(&conn, &mut ops);
    assert!(ops.is_empty());
    let mut results = Vec::new();
    for rx in answers {
        results.push(rx.await.unwrap());
    }
    assert!(matches!(rx.await.unwrap(), Err(StoreError::Internal(_))));
    let ok0 = results[0].as_ref().unwrap().clone();
    assert!(results[1].is_err());
    let ok2 = results[2].as_ref().unwrap().clone();
    assert_eq!(store.job(ok0.id).await.unwrap(), Some(ok0));
    assert_eq!(store.job(ok2.id).await.unwrap(), Some(ok2));
    let titles: Vec<String> = store
        .jobs(JobFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.title)
        .collect();
    assert_eq!(titles, vec!["batch 2", "batch 0"]);
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_inserts_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut handles = Vec::new();
    for t in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let job = store
                    .insert_job(request(&format!("t{t} j{i}")))
                    .await
                    .expect("insert must not fail");
                ids.push((job.id, job.uuid));
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    let mut uuids = HashSet::new();
    for h in handles {
        for (id, uuid) in h.await.unwrap() {
            assert!(ids.insert(id), "duplicate id {id}");
            assert!(uuids.insert(uuid), "duplicate uuid {uuid}");
        }
    }
    assert_eq!(ids.len(), 2000);
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 2000);
    let listed: HashSet<i64> = store
        .jobs(JobFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, ids);
    // Group commit: concurrent writes share transactions (and fsyncs).
    let stats = store.write_stats();
    assert_eq!(stats.ops, 2000);
    assert!(
        stats.batches < 1000,
        "expected group commit, got {} transactions for {} writes",
        stats.batches,
        stats.ops
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_writer_process_never_sees_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let path = store.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<u32, String> {
            // Like a second process: its own connection, its own transactions.
            let c = Connection::open(&path).map_err(|e| e.to_string())?;
            c.busy_timeout(std::time::Duration::from_millis(5000))
                .map_err(|e| e.to_string())?;
            c.execute_batch("CREATE TABLE IF NOT EXISTS other (n INTEGER)")
                .map_err(|e| e.to_string())?;
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) || rounds < 50 {
                c.execute_batch("BEGIN IMMEDIATE")
                    .map_err(|e| format!("begin: {e}"))?;
                let n: i64 = c
                    .query_row("SELECT count(*) FROM unit_jobs", [], |r| r.get(0))
                    .map_err(|e| format!("read: {e}"))?;
                c.execute("INSERT INTO other (n) VALUES (?1)", [n])
                    .map_err(|e| format!("write: {e}"))?;
                c.execute_batch("COMMIT")
                    .map_err(|e| format!("commit: {e}"))?;
                rounds += 1;
                // SQLite's locks are not fair: a loop that re-takes the write lock
                // within microseconds of releasing it starves every other connection
                // whatever their busy_timeout. A real second process pauses.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(rounds)
        })
    };
    let mut handles = Vec::new();
    for t in 0..20 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..50 {
                store
                    .insert_job(request(&format!("{t}/{i}")))
                    .await
                    .map_err(|e| e.to_string())?;
                if i % 10 == 0 {
                    store
                        .jobs(JobFilter::default())
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok::<(), String>(())
        }));
    }
    for h in handles {
        h.await.unwrap().expect("store write failed");
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = other.join().unwrap().expect("other writer failed");
    assert!(rounds >= 50);
    assert_eq!(store.count_jobs(JobFilter::default()).await.unwrap(), 1000);
    store.close().await;
}

#[tokio::test]
async fn closing_finishes_queued_writes_and_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let path = store.path().to_path_buf();
    let other = store.clone();
    // Queue writes without awaiting their answers, then close at once.
    let pending: Vec<_> = (0..50)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.insert_job(request(&format!("q{i}"))).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let mut answered = Vec::new();
    for p in pending {
        if let Ok(job) = p.await.unwrap() {
            answered.push(job);
        }
    }
    store.close().await;
    assert!(matches!(other.job(1).await, Err(StoreError::Closed)));
    assert!(matches!(
        other.insert_job(request("late")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(other.health().await, Err(StoreError::Closed)));
    drop(other);
    let store = Store::open(&path).await.unwrap();
    for job in answered {
        assert_eq!(store.job(job.id).await.unwrap(), Some(job));
    }
}

#[tokio::test]
async fn timestamps_are_stored_as_rfc3339_utc_millis() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let job = store.insert_job(request("ts")).await.unwrap();
    let id = job.id;
    let (created, status, label, format, results_state): (String, String, String, String, String) =
        store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT created, status, label, format, results_state FROM unit_jobs WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?)
            })
            .await
            .unwrap();
    assert_eq!(created.len(), "2026-11-25T16:25:09.614Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    assert_eq!(
        (
            status.as_str(),
            label.as_str(),
            format.as_str(),
            results_state.as_str()
        ),
        ("created", "openeo", "gtiff", "pending")
    );
    let now = crate::job::now_utc();
    assert!((now - job.created).abs() < Duration::seconds(5));
}
