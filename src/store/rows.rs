//! The SQL of the store and the mapping between rows and domain types. Every function
//! here runs on a connection it is given: the readers call the `select_*` ones, the
//! writer thread the others (inside its batch transaction).
//!
//! A value that does not parse is never a panic: it is [`StoreError::BadRow`] naming
//! the table, column and row.

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{JobFilter, JobPatch, StoreError};
use crate::job::cost::Estimate;
use crate::job::{
    now_utc, rfc3339_z, Dimension, Job, JobError, JobRequest, JobSummary, Label, OutputFormat,
    Results, ResultsState, ServiceDetails, Status, StatusCounts, SubmitState, Task, TaskRequest,
    TaskResults, TaskSummary,
};

// ---------------------------------------------------------------------------------
// Reading columns

/// Reads column `idx` (named `column` for errors) of a row of `table` with id `id`.
fn col<T: FromSql>(
    row: &Row<'_>,
    table: &'static str,
    id: i64,
    idx: usize,
    column: &'static str,
) -> Result<T, StoreError> {
    row.get(idx).map_err(|e| StoreError::BadRow {
        table,
        column,
        id,
        detail: e.to_string(),
    })
}

fn bad(table: &'static str, column: &'static str, id: i64, detail: String) -> StoreError {
    StoreError::BadRow {
        table,
        column,
        id,
        detail,
    }
}

fn parse_enum<T>(
    s: String,
    parse: fn(&str) -> Option<T>,
    table: &'static str,
    id: i64,
    column: &'static str,
) -> Result<T, StoreError> {
    parse(&s).ok_or_else(|| bad(table, column, id, format!("unknown value {s:?}")))
}

fn parse_time(
    s: String,
    table: &'static str,
    id: i64,
    column: &'static str,
) -> Result<OffsetDateTime, StoreError> {
    rfc3339_z::parse(&s).map_err(|e| bad(table, column, id, format!("{s:?}: {e}")))
}

fn parse_object(
    s: String,
    table: &'static str,
    id: i64,
    column: &'static str,
) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(&s).map_err(|e| bad(table, column, id, e.to_string()))
}

fn to_u64(v: i64, table: &'static str, id: i64, column: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| bad(table, column, id, format!("negative: {v}")))
}

/// Bytes as stored (SQLite integers are signed; no file comes near 2^63 bytes).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------
// Jobs

/// The columns [`job_from_row`] reads, in order.
macro_rules! job_columns {
    () => {
        "id, uuid, title, label, status, endpoint, namespace, application, parameters, \
         format, backend_job_id, progress, error_code, error_message, results_state, \
         results_dir, results_bytes, results_total_bytes, upscale_task_id, created, updated, \
         backend_status, submit_state, submit_started, max_cost, estimate, costs, usage"
    };
}

const JOBS: &str = "unit_jobs";

/// Maps a row selected with `job_columns!()`.
fn job_from_row(row: &Row<'_>) -> Result<Job, StoreError> {
    let id: i64 = col(row, JOBS, 0, 0, "id")?;
    macro_rules! get {
        ($idx:expr, $name:expr) => {
            col(row, JOBS, id, $idx, $name)?
        };
    }
    let uuid: String = get!(1, "uuid");
    let uuid = Uuid::parse_str(&uuid).map_err(|e| bad(JOBS, "uuid", id, e.to_string()))?;
    let label = parse_enum(get!(3, "label"), Label::parse, JOBS, id, "label")?;
    let status = parse_enum(get!(4, "status"), Status::parse, JOBS, id, "status")?;
    let format = parse_enum(get!(9, "format"), OutputFormat::parse, JOBS, id, "format")?;
    let error_code: Option<String> = get!(12, "error_code");
    let error_message: Option<String> = get!(13, "error_message");
    let error = match (error_code, error_message) {
        (None, None) => None,
        (Some(code), Some(message)) => Some(JobError { code, message }),
        (Some(_), None) => return Err(bad(JOBS, "error_message", id, "NULL with a code".into())),
        (None, Some(_)) => return Err(bad(JOBS, "error_code", id, "NULL with a message".into())),
    };
    let results_state = parse_enum(
        get!(14, "results_state"),
        ResultsState::parse,
        JOBS,
        id,
        "results_state",
    )?;
    let total: Option<i64> = get!(17, "results_total_bytes");
    let submit_state = parse_enum(
        get!(22, "submit_state"),
        SubmitState::parse,
        JOBS,
        id,
        "submit_state",
    )?;
    let submit_started: Option<String> = get!(23, "submit_started");
    let submit_started = match submit_started {
        Some(t) => Some(parse_time(t, JOBS, id, "submit_started")?),
        None => None,
    };
    Ok(Job {
        id,
        submit_started,
        title: get!(2, "title"),
        label,
        status,
        service: ServiceDetails {
            endpoint: get!(5, "endpoint"),
            namespace: get!(6, "namespace"),
            application: get!(7, "application"),
        },
        parameters: parse_object(get!(8, "parameters"), JOBS, id, "parameters")?,
        created: parse_time(get!(19, "created"), JOBS, id, "created")?,
        updated: parse_time(get!(20, "updated"), JOBS, id, "updated")?,
        uuid,
        format,
        backend_job_id: get!(10, "backend_job_id"),
        backend_status: get!(21, "backend_status"),
        submit_state,
        progress: get!(11, "progress"),
        error,
        results: Results {
            state: results_state,
            dir: get!(15, "results_dir"),
            bytes: to_u64(get!(16, "results_bytes"), JOBS, id, "results_bytes")?,
            total_bytes: total
                .map(|t| to_u64(t, JOBS, id, "results_total_bytes"))
                .transpose()?,
        },
        upscale_task_id: get!(18, "upscale_task_id"),
        waiting: None,
        max_cost: get!(24, "max_cost"),
        estimate: parse_json_opt(get!(25, "estimate"), JOBS, id, "estimate")?,
        costs: get!(26, "costs"),
        usage: parse_json_opt(get!(27, "usage"), JOBS, id, "usage")?,
    })
}

/// A nullable JSON column.
fn parse_json_opt<T: serde::de::DeserializeOwned>(
    s: Option<String>,
    table: &'static str,
    id: i64,
    column: &'static str,
) -> Result<Option<T>, StoreError> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| bad(table, column, id, e.to_string())))
        .transpose()
}

/// Runs a query returning `job_columns!()` rows.
fn query_jobs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Job>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(job_from_row(row)?);
    }
    Ok(out)
}

/// Distinct endpoints of the jobs that are not terminal.
pub(super) fn select_active_backends(
    conn: &Connection,
) -> Result<Vec<(Label, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT label, endpoint FROM unit_jobs \
         WHERE status IN ('created', 'queued', 'running')",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (label, endpoint) = row?;
        let label = parse_enum(label, Label::parse, JOBS, 0, "label")?;
        out.push((label, endpoint));
    }
    Ok(out)
}

/// Remote job ids linked to local jobs of `label` on `endpoints`.
pub(super) fn select_linked_remote_ids(
    conn: &Connection,
    label: Label,
    endpoints: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT backend_job_id FROM unit_jobs \
         WHERE label = ?1 AND endpoint = ?2 AND backend_job_id IS NOT NULL",
    )?;
    let mut out = Vec::new();
    for e in endpoints {
        let rows = stmt.query_map(params![label.as_str(), e], |r| r.get::<_, String>(0))?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// A scheduler's work list for the given endpoints: every non-terminal job already
/// handed to the backend (or being handed), and then the oldest queued ones, at most
/// enough to fill `max_active`.
pub(super) fn select_scheduler_jobs(
    conn: &Connection,
    label: Label,
    endpoints: &[String],
    max_active: u32,
) -> Result<Vec<Job>, StoreError> {
    const ACTIVE: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM unit_jobs WHERE label = ?1 AND endpoint = ?2 \
          AND status IN ('created', 'queued', 'running') \
          AND submit_state != 'pending' ORDER BY id"
    );
    const QUEUED: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM unit_jobs WHERE label = ?1 AND endpoint = ?2 AND status = 'created' \
          AND submit_state = 'pending' ORDER BY id LIMIT ?3"
    );
    let mut out = Vec::new();
    for e in endpoints {
        out.extend(query_jobs(conn, ACTIVE, params![label.as_str(), e])?);
    }
    // Queued jobs beyond the free slots are not needed (one extra in case one of
    // them cannot be sent).
    let free = i64::from(max_active)
        .saturating_sub(out.len() as i64)
        .max(0)
        + 1;
    let mut queued = Vec::new();
    for e in endpoints {
        queued.extend(query_jobs(conn, QUEUED, params![label.as_str(), e, free])?);
    }
    queued.sort_by_key(|j| j.id);
    queued.truncate(free as usize);
    out.extend(queued);
    Ok(out)
}

/// One job by id.
pub(super) fn select_job(conn: &Connection, id: i64) -> Result<Option<Job>, StoreError> {
    const SQL: &str = concat!("SELECT ", job_columns!(), " FROM unit_jobs WHERE id = ?1");
    let mut stmt = conn.prepare_cached(SQL)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => job_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// One job by its UUID.
pub(super) fn select_job_by_uuid(conn: &Connection, uuid: Uuid) -> Result<Option<Job>, StoreError> {
    const SQL: &str = concat!("SELECT ", job_columns!(), " FROM unit_jobs WHERE uuid = ?1");
    let mut stmt = conn.prepare_cached(SQL)?;
    let mut rows = stmt.query([uuid.hyphenated().to_string()])?;
    match rows.next()? {
        Some(row) => job_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// The WHERE clauses of a [`JobFilter`], as four fixed statements (so each is prepared
/// once and can use its index): `?1` status (ignored when not filtering), then
/// `?2` limit (-1: all) and `?3` offset.
macro_rules! filtered {
    ($head:expr, $tail:expr) => {
        [
            concat!($head, " WHERE ?1 IS NULL", $tail),
            concat!($head, " WHERE status = ?1", $tail),
            concat!(
                $head,
                " WHERE ?1 IS NULL AND upscale_task_id IS NULL",
                $tail
            ),
            concat!(
                $head,
                " WHERE status = ?1 AND upscale_task_id IS NULL",
                $tail
            ),
        ]
    };
}

fn filter_variant(filter: &JobFilter) -> usize {
    usize::from(filter.status.is_some()) + 2 * usize::from(filter.standalone_only)
}

/// Jobs matching `filter`, newest first.
pub(super) fn select_jobs(conn: &Connection, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
    const SQL: [&str; 4] = filtered!(
        concat!("SELECT ", job_columns!(), " FROM unit_jobs"),
        " ORDER BY id DESC LIMIT ?2 OFFSET ?3"
    );
    let limit = filter.limit.map(i64::from).unwrap_or(-1);
    query_jobs(
        conn,
        SQL[filter_variant(filter)],
        params![
            filter.status.map(Status::as_str),
            limit,
            i64::from(filter.offset)
        ],
    )
}

/// How many jobs match `filter` (ignoring its limit and offset).
pub(super) fn count_jobs(conn: &Connection, filter: &JobFilter) -> Result<u64, StoreError> {
    const SQL: [&str; 4] = filtered!("SELECT count(*) FROM unit_jobs", "");
    let n: i64 = conn
        .prepare_cached(SQL[filter_variant(filter)])?
        .query_row([filter.status.map(Status::as_str)], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The sub-jobs of a task, in dimension order.
pub(super) fn select_jobs_of_task(conn: &Connection, task_id: i64) -> Result<Vec<Job>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM unit_jobs WHERE upscale_task_id = ?1 ORDER BY task_index, id"
    );
    query_jobs(conn, SQL, [task_id])
}

/// A unit job row about to be inserted.
struct NewJob<'a> {
    uuid: Uuid,
    title: &'a str,
    label: Label,
    service: &'a ServiceDetails,
    parameters: &'a str,
    request: Option<&'a str>,
    format: OutputFormat,
    task: Option<(i64, i64)>,
    now: &'a str,
    max_cost: Option<f64>,
    estimate: Option<&'a Estimate>,
}

fn insert_row(conn: &Connection, j: &NewJob<'_>) -> Result<i64, StoreError> {
    const SQL: &str = "INSERT INTO unit_jobs (uuid, title, label, status, endpoint, namespace, \
        application, parameters, request, format, upscale_task_id, task_index, created, updated, \
        max_cost, estimate, estimate_amount) \
        VALUES (?1, ?2, ?3, 'created', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)";
    let estimate = j.estimate.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(SQL)?.execute(params![
        j.uuid.hyphenated().to_string(),
        j.title,
        j.label.as_str(),
        j.service.endpoint,
        j.service.namespace,
        j.service.application,
        j.parameters,
        j.request,
        j.format.as_str(),
        j.task.map(|t| t.0),
        j.task.map(|t| t.1),
        j.now,
        j.max_cost,
        estimate,
        j.estimate.and_then(|e| e.amount),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The client's request as stored in `unit_jobs.request` (audit).
fn request_json(req: &JobRequest) -> Result<String, StoreError> {
    let value = serde_json::json!({
        "title": req.title,
        "label": req.label,
        "service": req.service,
        "parameters": req.parameters,
        "format": req.format,
        "max_cost": req.max_cost,
    });
    Ok(serde_json::to_string(&value)?)
}

/// Inserts a new standalone job (status `created`, results pending).
/// Inserts a job under an idempotency key: the job created before under the same key
/// and body (`false`), or a new one (`true`); `KeyReused` for another body.
pub(super) fn insert_job_idempotent(
    conn: &Connection,
    req: JobRequest,
    uuid: Uuid,
    key: &str,
    body_hash: &str,
) -> Result<(Job, bool), StoreError> {
    let known: Option<(String, i64)> = conn
        .prepare_cached("SELECT body_hash, job_id FROM idempotency_keys WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((hash, job_id)) = known {
        if hash != body_hash {
            return Err(StoreError::KeyReused);
        }
        if let Some(job) = select_job(conn, job_id)? {
            return Ok((job, false));
        }
    }
    let job = insert_job(conn, req, uuid)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO idempotency_keys (key, body_hash, job_id, created) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        key,
        body_hash,
        job.id,
        rfc3339_z::format(&job.created)
    ])?;
    Ok((job, true))
}

pub(super) fn insert_job(
    conn: &Connection,
    req: JobRequest,
    uuid: Uuid,
) -> Result<Job, StoreError> {
    let now = now_utc();
    let now_s = rfc3339_z::format(&now);
    let parameters = serde_json::to_string(&req.parameters)?;
    let request = request_json(&req)?;
    let id = insert_row(
        conn,
        &NewJob {
            uuid,
            title: &req.title,
            label: req.label,
            service: &req.service,
            parameters: &parameters,
            request: Some(&request),
            format: req.format,
            task: None,
            now: &now_s,
            max_cost: req.max_cost,
            estimate: req.estimate.as_ref(),
        },
    )?;
    Ok(Job {
        id,
        submit_started: None,
        title: req.title,
        label: req.label,
        status: Status::Created,
        service: req.service,
        parameters: req.parameters,
        created: now,
        updated: now,
        uuid,
        format: req.format,
        backend_job_id: None,
        backend_status: None,
        submit_state: SubmitState::Pending,
        progress: None,
        error: None,
        results: Results::default(),
        upscale_task_id: None,
        waiting: None,
        max_cost: req.max_cost,
        estimate: req.estimate,
        costs: None,
        usage: None,
    })
}

/// Applies a patch and sets `updated`; `None` when there is no such job.
pub(super) fn update_job(
    conn: &Connection,
    id: i64,
    patch: &JobPatch,
) -> Result<Option<Job>, StoreError> {
    const SQL: &str = "UPDATE unit_jobs SET \
        status = CASE WHEN ?2 THEN ?3 ELSE status END, \
        backend_job_id = CASE WHEN ?4 THEN ?5 ELSE backend_job_id END, \
        progress = CASE WHEN ?6 THEN ?7 ELSE progress END, \
        error_code = CASE WHEN ?8 THEN ?9 ELSE error_code END, \
        error_message = CASE WHEN ?8 THEN ?10 ELSE error_message END, \
        results_state = CASE WHEN ?11 THEN ?12 ELSE results_state END, \
        results_dir = CASE WHEN ?11 THEN ?13 ELSE results_dir END, \
        results_bytes = CASE WHEN ?11 THEN ?14 ELSE results_bytes END, \
        results_total_bytes = CASE WHEN ?11 THEN ?15 ELSE results_total_bytes END, \
        updated = ?16, \
        backend_status = CASE WHEN ?17 THEN ?18 ELSE backend_status END, \
        submit_state = CASE WHEN ?19 THEN ?20 ELSE submit_state END, \
        submit_attempts = submit_attempts + CASE WHEN ?19 AND ?20 = 'submitting' THEN 1 ELSE 0 END, \
        submit_started = CASE WHEN ?19 AND ?20 = 'submitting' THEN ?16 ELSE submit_started END, \
        costs = CASE WHEN ?22 THEN ?23 ELSE costs END, \
        usage = CASE WHEN ?24 THEN ?25 ELSE usage END \
        WHERE id = ?1 AND (NOT ?21 OR status IN ('created', 'queued', 'running'))";
    let now = rfc3339_z::format(&now_utc());
    let error = patch.error.as_ref().map(|e| e.as_ref());
    let results = patch.results.as_ref();
    let usage = match &patch.usage {
        Some(Some(u)) => Some(serde_json::to_string(u)?),
        _ => None,
    };
    let changed = conn.prepare_cached(SQL)?.execute(params![
        id,
        patch.status.is_some(),
        patch.status.map(Status::as_str),
        patch.backend_job_id.is_some(),
        patch.backend_job_id.as_ref().and_then(|b| b.as_deref()),
        patch.progress.is_some(),
        patch.progress.flatten(),
        error.is_some(),
        error.flatten().map(|e| e.code.as_str()),
        error.flatten().map(|e| e.message.as_str()),
        results.is_some(),
        results.map(|r| r.state.as_str()),
        results.and_then(|r| r.dir.as_deref()),
        results.map(|r| to_i64(r.bytes)),
        results.and_then(|r| r.total_bytes).map(to_i64),
        now,
        patch.backend_status.is_some(),
        patch.backend_status.as_ref().and_then(|b| b.as_deref()),
        patch.submit_state.is_some(),
        patch.submit_state.map(SubmitState::as_str),
        patch.only_if_active,
        patch.costs.is_some(),
        patch.costs.flatten(),
        patch.usage.is_some(),
        usage,
    ])?;
    if changed == 0 {
        return Ok(None);
    }
    select_job(conn, id)
}

/// Makes a failed or canceled job a new attempt: back to `created` and not submitted,
/// with a new UUID (so that the remote job of the last attempt is never mistaken for
/// the new one), no remote id, error or results. `None` when the job does not exist
/// or is not failed or canceled (a finished job is never run again).
pub(super) fn retry_job(conn: &Connection, id: i64, uuid: Uuid) -> Result<Option<Job>, StoreError> {
    const SQL: &str = "UPDATE unit_jobs SET status = 'created', uuid = ?2, \
        backend_job_id = NULL, backend_status = NULL, progress = NULL, \
        error_code = NULL, error_message = NULL, submit_state = 'pending', \
        submit_started = NULL, results_state = 'pending', results_dir = NULL, \
        results_bytes = 0, results_total_bytes = NULL, costs = NULL, usage = NULL, updated = ?3 \
        WHERE id = ?1 AND status IN ('failed', 'canceled')";
    let now = rfc3339_z::format(&now_utc());
    let changed =
        conn.prepare_cached(SQL)?
            .execute(params![id, uuid.hyphenated().to_string(), now])?;
    if changed == 0 {
        return Ok(None);
    }
    select_job(conn, id)
}

/// Retries every failed or canceled sub-job of a task (each as [`retry_job`], with
/// its own new UUID from `uuid`); the jobs as they were and as they are now.
pub(super) fn retry_jobs_of_task(
    conn: &Connection,
    task_id: i64,
    mut uuid: impl FnMut() -> Uuid,
) -> Result<Vec<(Job, Job)>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM unit_jobs WHERE upscale_task_id = ?1 AND status IN ('failed', 'canceled') \
          ORDER BY task_index, id"
    );
    let mut out = Vec::new();
    for before in query_jobs(conn, SQL, [task_id])? {
        if let Some(after) = retry_job(conn, before.id, uuid())? {
            out.push((before, after));
        }
    }
    Ok(out)
}

/// Applies `patch` to every sub-job of a task that has not ended and was not handed
/// to its backend yet (`submit_state` pending); the jobs as they are now.
pub(super) fn update_unsent_of_task(
    conn: &Connection,
    task_id: i64,
    patch: &JobPatch,
) -> Result<Vec<Job>, StoreError> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM unit_jobs WHERE upscale_task_id = ?1 \
             AND status IN ('created', 'queued', 'running') AND submit_state = 'pending' \
             ORDER BY task_index, id",
        )?
        .query_map([task_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(job) = update_job(conn, id, patch)? {
            out.push(job);
        }
    }
    Ok(out)
}

/// Deletes one job; `true` if it existed.
pub(super) fn delete_job(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM unit_jobs WHERE id = ?1")?
        .execute([id])?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------------
// Tasks

const TASKS: &str = "upscale_tasks";

/// Inserts a task and one sub-job per dimension value.
pub(super) fn insert_task(conn: &Connection, req: TaskRequest) -> Result<Task, StoreError> {
    let now = now_utc();
    let now_s = rfc3339_z::format(&now);
    let job = &req.job;
    conn.prepare_cached(
        "INSERT INTO upscale_tasks (uuid, title, label, endpoint, namespace, application, \
         parameters, format, dimension, created, updated, max_cost) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
    )?
    .execute(params![
        Uuid::new_v4().hyphenated().to_string(),
        job.title,
        job.label.as_str(),
        job.service.endpoint,
        job.service.namespace,
        job.service.application,
        serde_json::to_string(&job.parameters)?,
        job.format.as_str(),
        serde_json::to_string(&req.dimension)?,
        now_s,
        job.max_cost,
    ])?;
    let task_id = conn.last_insert_rowid();
    if let Some(kind) = req.mosaic {
        super::mosaics::set_kind(conn, task_id, kind)?;
    }
    let mut jobs = Vec::with_capacity(req.dimension.values.len());
    for (index, value) in req.dimension.values.iter().enumerate() {
        let index_usize = index;
        let mut parameters = job.parameters.clone();
        parameters.insert(req.dimension.name.clone(), value.clone());
        let title = format!("{} - Processing Job {}", job.title, index + 1);
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        let id = insert_row(
            conn,
            &NewJob {
                uuid: Uuid::new_v4(),
                title: &title,
                label: job.label,
                service: &job.service,
                parameters: &serde_json::to_string(&parameters)?,
                request: None,
                format: job.format,
                task: Some((task_id, index)),
                now: &now_s,
                max_cost: None,
                estimate: req.tile_estimates.get(index_usize),
            },
        )?;
        jobs.push(JobSummary {
            id,
            title,
            label: job.label,
            status: Status::Created,
            service: job.service.clone(),
            parameters,
            waiting: None,
        });
    }
    let counts = StatusCounts::of(jobs.iter().map(|j| j.status));
    Ok(Task {
        id: task_id,
        title: req.job.title,
        label: req.job.label,
        status: counts.task_status(),
        service: req.job.service,
        parameters: req.job.parameters,
        format: req.job.format,
        dimension: req.dimension,
        created: now,
        updated: now,
        progress: counts.task_progress(0.0),
        counts,
        results: TaskResults::default(),
        max_cost: req.job.max_cost,
        costs: None,
        estimate: {
            let known: Vec<f64> = req.tile_estimates.iter().filter_map(|e| e.amount).collect();
            (!known.is_empty()).then(|| known.iter().sum())
        },
        jobs,
    })
}

/// One task with its sub-jobs and derived status, progress and results.
pub(super) fn select_task(conn: &Connection, id: i64) -> Result<Option<Task>, StoreError> {
    // One read transaction: the counts and the list of jobs agree.
    let tx = conn.unchecked_transaction()?;
    let conn: &Connection = &tx;
    let Some(summary) = select_task_summary(conn, id)? else {
        return Ok(None);
    };
    const SQL: &str = "SELECT endpoint, namespace, application, parameters, format, dimension \
        FROM upscale_tasks WHERE id = ?1";
    let mut task = {
        let mut stmt = conn.prepare_cached(SQL)?;
        let mut rows = stmt.query([id])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        macro_rules! get {
            ($idx:expr, $name:expr) => {
                col(row, TASKS, id, $idx, $name)?
            };
        }
        let dimension: String = get!(5, "dimension");
        let dimension: Dimension = serde_json::from_str(&dimension)
            .map_err(|e| bad(TASKS, "dimension", id, e.to_string()))?;
        Task {
            id,
            title: summary.title,
            label: summary.label,
            status: summary.status,
            service: ServiceDetails {
                endpoint: get!(0, "endpoint"),
                namespace: get!(1, "namespace"),
                application: get!(2, "application"),
            },
            parameters: parse_object(get!(3, "parameters"), TASKS, id, "parameters")?,
            format: parse_enum(get!(4, "format"), OutputFormat::parse, TASKS, id, "format")?,
            dimension,
            created: summary.created,
            updated: summary.updated,
            progress: summary.progress,
            counts: summary.counts,
            results: summary.results,
            max_cost: summary.max_cost,
            costs: summary.costs,
            estimate: summary.estimate,
            jobs: Vec::new(),
        }
    };

    const JOBS_SQL: &str = "SELECT id, title, label, status, endpoint, namespace, application, \
        parameters FROM unit_jobs WHERE upscale_task_id = ?1 ORDER BY task_index, id";
    let mut stmt = conn.prepare_cached(JOBS_SQL)?;
    let mut rows = stmt.query([id])?;
    while let Some(row) = rows.next()? {
        let job_id: i64 = col(row, JOBS, 0, 0, "id")?;
        macro_rules! get {
            ($idx:expr, $name:expr) => {
                col(row, JOBS, job_id, $idx, $name)?
            };
        }
        task.jobs.push(JobSummary {
            id: job_id,
            title: get!(1, "title"),
            label: parse_enum(get!(2, "label"), Label::parse, JOBS, job_id, "label")?,
            status: parse_enum(get!(3, "status"), Status::parse, JOBS, job_id, "status")?,
            service: ServiceDetails {
                endpoint: get!(4, "endpoint"),
                namespace: get!(5, "namespace"),
                application: get!(6, "application"),
            },
            parameters: parse_object(get!(7, "parameters"), JOBS, job_id, "parameters")?,
            waiting: None,
        });
    }
    Ok(Some(task))
}

/// The summary query of tasks (with the given `WHERE` clause): each task's
/// sub-jobs counted per status, the sum of the active ones' progress (as
/// [`crate::job::progress_share`] defines it), the sums of their results delivery and
/// the latest `updated`, in one aggregate query.
macro_rules! task_summaries {
    ($where:expr) => {
        concat!(
            "SELECT t.id, t.title, t.label, t.created, t.updated, \
               coalesce(sum(j.status = 'created'), 0), coalesce(sum(j.status = 'queued'), 0), \
               coalesce(sum(j.status = 'running'), 0), coalesce(sum(j.status = 'finished'), 0), \
               coalesce(sum(j.status = 'canceled'), 0), coalesce(sum(j.status = 'failed'), 0), \
               coalesce(sum(CASE WHEN j.status IN ('created', 'queued', 'running') \
                   THEN min(max(coalesce(j.progress, 0.0), 0.0), 100.0) ELSE 0.0 END), 0.0), \
               coalesce(sum(j.results_bytes), 0), coalesce(sum(j.results_total_bytes), 0), \
               coalesce(sum(j.results_state = 'ready'), 0), \
               coalesce(sum(j.results_state = 'failed'), 0), \
               coalesce(sum(j.status = 'finished' \
                   AND j.results_state IN ('pending', 'downloading')), 0), max(j.updated), \
               t.max_cost, sum(j.costs), sum(j.estimate_amount) \
             FROM upscale_tasks t LEFT JOIN unit_jobs j ON j.upscale_task_id = t.id ",
            $where,
            " GROUP BY t.id ORDER BY t.id DESC"
        )
    };
}

/// Maps a row of [`task_summaries!`].
fn summary_from_row(row: &Row<'_>) -> Result<TaskSummary, StoreError> {
    let id: i64 = col(row, TASKS, 0, 0, "id")?;
    macro_rules! get {
        ($idx:expr, $name:expr) => {
            col(row, TASKS, id, $idx, $name)?
        };
    }
    let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    let counts = StatusCounts {
        created: count(get!(5, "created")),
        queued: count(get!(6, "queued")),
        running: count(get!(7, "running")),
        finished: count(get!(8, "finished")),
        canceled: count(get!(9, "canceled")),
        failed: count(get!(10, "failed")),
    };
    let active_progress: f64 = get!(11, "progress");
    let results = TaskResults {
        bytes: to_u64(get!(12, "results_bytes"), JOBS, id, "results_bytes")?,
        total_bytes: to_u64(
            get!(13, "results_total_bytes"),
            JOBS,
            id,
            "results_total_bytes",
        )?,
        ready: count(get!(14, "ready")),
        failed: count(get!(15, "failed")),
        pending: count(get!(16, "pending")),
    };
    let mut updated = parse_time(get!(4, "updated"), TASKS, id, "updated")?;
    let jobs_updated: Option<String> = get!(17, "updated");
    if let Some(t) = jobs_updated {
        updated = updated.max(parse_time(t, JOBS, id, "updated")?);
    }
    Ok(TaskSummary {
        id,
        title: get!(1, "title"),
        label: parse_enum(get!(2, "label"), Label::parse, TASKS, id, "label")?,
        status: counts.task_status(),
        created: parse_time(get!(3, "created"), TASKS, id, "created")?,
        updated,
        progress: counts.task_progress(active_progress),
        counts,
        results,
        max_cost: get!(18, "max_cost"),
        costs: get!(19, "costs"),
        estimate: get!(20, "estimate_amount"),
    })
}

/// The summary of one task, `None` if there is no such task.
pub(super) fn select_task_summary(
    conn: &Connection,
    id: i64,
) -> Result<Option<TaskSummary>, StoreError> {
    const SQL: &str = task_summaries!("WHERE t.id = ?1");
    let mut stmt = conn.prepare_cached(SQL)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => summary_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// Every task's summary, newest first.
pub(super) fn select_tasks(conn: &Connection) -> Result<Vec<TaskSummary>, StoreError> {
    const SQL: &str = task_summaries!("");
    let mut stmt = conn.prepare_cached(SQL)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(summary_from_row(row)?);
    }
    Ok(out)
}

/// Deletes a task and (by cascade) its sub-jobs; `true` if it existed.
pub(super) fn delete_task(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM upscale_tasks WHERE id = ?1")?
        .execute([id])?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------------
// Health

/// Writes the time of this health check into `meta`.
pub(super) fn touch_health(conn: &Connection) -> Result<(), StoreError> {
    // Runs inside the writer's BEGIN IMMEDIATE: proves the writer thread is alive and
    // can take the write lock, without writing (an unauthenticated /health must not
    // cause fsyncs).
    conn.prepare_cached("SELECT count(*) FROM meta")?
        .query_row([], |_| Ok(()))?;
    Ok(())
}

/// A trivial read of the schema.
pub(super) fn read_health(conn: &Connection) -> Result<(), StoreError> {
    let _: i64 = conn
        .prepare_cached("SELECT count(*) FROM meta")?
        .query_row([], |r| r.get(0))?;
    Ok(())
}
