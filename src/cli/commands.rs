//! The API commands: `token`, `jobs`, `show`, `submit`, `cancel`, `delete`; and
//! `paths`, which says where the daemon and its files are without asking it.
//!
//! Each loads the configuration, talks to the daemon through [`Client`] and prints
//! either a human view (aligned columns, `key: value` lines) or, with `--json`, the
//! daemon's JSON as it came. The renderers are pure functions of the JSON and "now",
//! so that they are tested without a daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::client::{read_token, Client};
use super::human;
use super::submit::{read_job_file, JobFlags};
use super::table::{Align, Table};
use super::{load_config, out, out_json, CliError};
use crate::config::Config;
use crate::discovery::{self, Discovery, DiscoveryError, Found};
use crate::job::Status;

/// Widest TITLE column in `eodispatch jobs`; longer titles end in `…`.
pub const TITLE_WIDTH: usize = 40;

/// Value parser of `--status`: lists the statuses in help and errors.
pub fn status_parser() -> impl TypedValueParser<Value = Status> {
    PossibleValuesParser::new(Status::ALL.map(Status::as_str))
        .try_map(|s| Status::parse(&s).ok_or_else(|| format!("unknown status {s:?}")))
}

/// `eodispatch token`: prints the API token from the token file.
pub fn token() -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let token = read_token(&config)?;
    out(&format!("{}\n", token.expose()));
    Ok(ExitCode::SUCCESS)
}

/// What `eodispatch paths` reports: the discovery file's facts while the daemon runs,
/// else the configuration's (with no `pid` nor `started`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathsReport {
    /// `running`, `not_running`, `stale` (a discovery file whose process is gone) or
    /// `unreadable` (a discovery file that cannot be read).
    pub daemon: &'static str,
    /// Why the facts come from the configuration, when there is more to say than "not
    /// running".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where a running daemon's discovery file is.
    pub discovery_file: PathBuf,
    /// Base URL of the API.
    pub api_url: String,
    /// The API token file.
    pub token_file: PathBuf,
    /// The results folder.
    pub results_dir: PathBuf,
    /// The state folder.
    pub state_dir: PathBuf,
    /// The configuration file (it may not exist).
    pub config_file: PathBuf,
    /// The running daemon's process id.
    pub pid: Option<u32>,
    /// The running daemon's version, else this program's.
    pub version: String,
    /// When the running daemon started (RFC 3339).
    pub started: Option<String>,
}

impl PathsReport {
    /// The report for `config`, given what the discovery file held.
    pub fn new(config: &Config, found: Result<Found, DiscoveryError>) -> PathsReport {
        let file = config.discovery_path();
        let (daemon, note, facts) = match found {
            Ok(Found::Running(d)) => ("running", None, d),
            Ok(Found::Absent) => ("not_running", None, Discovery::of_config(config)),
            Ok(Found::Stale(d)) => (
                "stale",
                Some(format!(
                    "{} was left by process {}, which is gone (the daemon did not stop cleanly)",
                    file.display(),
                    d.pid
                )),
                Discovery::of_config(config),
            ),
            Err(e) => (
                "unreadable",
                Some(e.to_string()),
                Discovery::of_config(config),
            ),
        };
        let running = daemon == "running";
        PathsReport {
            daemon,
            note,
            discovery_file: file,
            api_url: facts.api_url,
            token_file: facts.token_file,
            results_dir: facts.results_dir,
            state_dir: facts.state_dir,
            config_file: facts.config_file,
            pid: running.then_some(facts.pid),
            version: facts.version,
            started: running.then_some(facts.started),
        }
    }

    /// One `name  value` line per fact (what `./install` reads), after a line saying
    /// whether the daemon runs.
    pub fn render(&self) -> String {
        let status = match (self.pid, &self.note) {
            (Some(pid), _) => format!(
                "running (pid {pid}, version {}, since {})",
                self.version,
                self.started.as_deref().unwrap_or("?")
            ),
            (None, Some(note)) => {
                format!("not running: {note}; the paths below come from the configuration")
            }
            (None, None) => "not running; the paths below come from the configuration".into(),
        };
        let mut lines = vec![("daemon", status)];
        if let Some(pid) = self.pid {
            lines.push(("pid", pid.to_string()));
        }
        let path = |p: &PathBuf| p.display().to_string();
        lines.extend([
            ("api_url", self.api_url.clone()),
            ("token_file", path(&self.token_file)),
            ("results_dir", path(&self.results_dir)),
            ("state_dir", path(&self.state_dir)),
            ("config_file", path(&self.config_file)),
            ("discovery_file", path(&self.discovery_file)),
        ]);
        lines
            .into_iter()
            .map(|(name, value)| format!("{name:<15} {value}\n"))
            .collect()
    }
}

/// `eodispatch paths`: where the daemon is (its discovery file while it runs, else the
/// configuration). Exit code 0 either way.
pub fn paths(json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let report = PathsReport::new(&config, discovery::find(&config.discovery_path()));
    if json {
        out_json(&report);
    } else {
        out(&report.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `eodispatch jobs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobsOptions {
    /// Only jobs with this status.
    pub status: Option<Status>,
    /// At most this many jobs (the daemon's default otherwise).
    pub limit: Option<u32>,
    /// Print the JSON array as the daemon sent it.
    pub json: bool,
}

/// `eodispatch jobs`: lists jobs, newest first.
pub async fn jobs(opts: JobsOptions) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let mut query = Vec::new();
    if let Some(s) = opts.status {
        query.push(("status", s.as_str().to_string()));
    }
    if let Some(n) = opts.limit {
        query.push(("limit", n.to_string()));
    }
    let list = client.get("/unit_jobs", &query).await?;
    if opts.json {
        out_json(&list);
    } else {
        let jobs = list.as_array().map(Vec::as_slice).unwrap_or_default();
        out(&render_jobs(jobs, opts.status, OffsetDateTime::now_utc()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch show ID`: one job.
pub async fn show(id: i64, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let job = client.get(&format!("/unit_jobs/{id}"), &[]).await?;
    if json {
        out_json(&job);
    } else {
        out(&render_job(&job, OffsetDateTime::now_utc()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `eodispatch submit` takes the job from.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSource {
    /// `--file PATH` (`-` for standard input): a full `POST /unit_jobs` body.
    File(std::path::PathBuf),
    /// The flags.
    Flags(Box<JobFlags>),
}

/// `eodispatch submit`: sends a job and prints the created job.
pub async fn submit(source: JobSource, json: bool) -> Result<ExitCode, CliError> {
    let body = match source {
        JobSource::File(path) => read_job_file(&path)?,
        JobSource::Flags(flags) => flags.to_body().map_err(CliError::Input)?,
    };
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let job = client.post("/unit_jobs", Some(&body)).await?;
    if json {
        out_json(&job);
    } else {
        out(&format!(
            "Submitted job {} {} (status: {})\n",
            text(&job, "/id"),
            quoted_title(&job),
            text(&job, "/status")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch cancel ID`: cancels a job on its backend and keeps the record.
pub async fn cancel(id: i64, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let job = client
        .post(&format!("/unit_jobs/{id}/cancel"), None)
        .await?;
    if json {
        out_json(&job);
    } else {
        out(&format!(
            "Job {id} {} is now {}\n",
            quoted_title(&job),
            text(&job, "/status")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch retry ID`: submits a failed or canceled job again, as a new attempt.
pub async fn retry(id: i64, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let job = client.post(&format!("/unit_jobs/{id}/retry"), None).await?;
    if json {
        out_json(&job);
    } else {
        out(&format!(
            "Job {id} {} will be submitted again (status: {})\n",
            quoted_title(&job),
            text(&job, "/status")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch delete ID`: forgets a job (canceling it first if it is active).
pub async fn delete(id: i64) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    client.delete(&format!("/unit_jobs/{id}")).await?;
    out(&format!(
        "Forgot job {id}; result files already delivered stay in {}\n",
        config.results_dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A string or number at `pointer` as text; `-` when absent or null.
pub(crate) fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The job's (or task's) title in double quotes (for one-line messages).
pub(crate) fn quoted_title(job: &Value) -> String {
    format!(
        "{:?}",
        job.get("title").and_then(Value::as_str).unwrap_or("")
    )
}

/// The `eodispatch jobs` table: ID, STATUS, PROGRESS, TITLE, BACKEND, CREATED, RESULTS.
pub fn render_jobs(jobs: &[Value], status: Option<Status>, now: OffsetDateTime) -> String {
    if jobs.is_empty() {
        return match status {
            Some(s) => format!("No jobs with status {}.\n", s.as_str()),
            None => "No jobs yet. Submit one with `eodispatch submit`.\n".to_string(),
        };
    }
    let mut t = Table::new([
        "ID", "STATUS", "PROGRESS", "TITLE", "BACKEND", "CREATED", "RESULTS",
    ])
    .align(0, Align::Right)
    .align(2, Align::Right)
    .max_width(3, TITLE_WIDTH);
    // Why jobs wait, once per distinct message, under the table.
    let mut waits: Vec<(String, Vec<String>)> = Vec::new();
    for job in jobs {
        let mut status = text(job, "/status");
        if let Some(w) = job.get("waiting").filter(|w| !w.is_null()) {
            status = format!("{status} ({})", wait_word(w));
            let message = text(w, "/message");
            let id = text(job, "/id");
            match waits.iter_mut().find(|(m, _)| *m == message) {
                Some((_, ids)) => ids.push(id),
                None => waits.push((message, vec![id])),
            }
        }
        t.row([
            text(job, "/id"),
            status,
            human::percent(job.get("progress").and_then(Value::as_f64)),
            job.get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            job.pointer("/service/endpoint")
                .and_then(Value::as_str)
                .map_or_else(|| "-".to_string(), human::host_of),
            human::age_of(job.get("created").and_then(Value::as_str), now),
            text(job, "/results/state"),
        ]);
    }
    let mut out = t.render();
    for (message, ids) in waits {
        let which = if ids.len() == 1 { "job" } else { "jobs" };
        out.push_str(&format!(
            "\n{which} {} waiting: {message}\n",
            ids.join(", ")
        ));
    }
    out
}

/// A waiting reason in two or three words, for tables.
pub(crate) fn wait_word(w: &Value) -> &'static str {
    match w.get("reason").and_then(Value::as_str) {
        Some("login_required") => "login needed",
        Some("backend_unreachable") => "backend unreachable",
        Some("backend_limit") => "backend limit",
        Some("service_unavailable") => "service unreadable",
        Some("budget") => "budget spent",
        _ => "waiting",
    }
}

/// The `eodispatch show` view: aligned `key: value` lines, then the parameters as
/// indented pretty JSON.
pub fn render_job(job: &Value, now: OffsetDateTime) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("id", text(job, "/id")),
        ("uuid", text(job, "/uuid")),
        ("title", text(job, "/title")),
        ("status", text(job, "/status")),
    ];
    if job.get("waiting").is_some_and(|v| !v.is_null()) {
        lines.push(("waiting", text(job, "/waiting/message")));
    }
    lines.extend([
        ("label", text(job, "/label")),
        ("endpoint", text(job, "/service/endpoint")),
    ]);
    if job
        .pointer("/service/namespace")
        .is_some_and(|v| !v.is_null())
    {
        lines.push(("namespace", text(job, "/service/namespace")));
    }
    lines.extend([
        ("application", text(job, "/service/application")),
        ("format", text(job, "/format")),
        ("backend job id", text(job, "/backend_job_id")),
    ]);
    if job.get("backend_status").is_some_and(|v| !v.is_null()) {
        lines.push(("backend status", text(job, "/backend_status")));
    }
    lines.extend([
        (
            "progress",
            human::percent(job.get("progress").and_then(Value::as_f64)),
        ),
        ("error", error_text(job.get("error"))),
        ("results state", text(job, "/results/state")),
        ("results dir", text(job, "/results/dir")),
        ("results bytes", results_bytes(job.get("results"))),
    ]);
    if job.get("upscale_task_id").is_some_and(|v| !v.is_null()) {
        lines.push(("upscale task", text(job, "/upscale_task_id")));
    }
    // Money: the estimate when accepted, the limit, what the platform reported.
    if let Some(e) = job.get("estimate").filter(|e| !e.is_null()) {
        let words = e.get("explanation").and_then(Value::as_str).unwrap_or("-");
        lines.push(("estimate", words.to_string()));
    }
    if job.get("max_cost").is_some_and(|v| !v.is_null()) {
        lines.push(("max cost", text(job, "/max_cost")));
    }
    if job.get("costs").is_some_and(|v| !v.is_null()) {
        let unit = job
            .pointer("/estimate/unit")
            .and_then(Value::as_str)
            .unwrap_or("(backend currency)");
        lines.push(("costs", format!("{} {unit}", text(job, "/costs"))));
    }
    for key in ["created", "updated"] {
        let value = match job.get(key).and_then(Value::as_str) {
            Some(s) => human::timestamp(s, now),
            None => "-".to_string(),
        };
        lines.push((key, value));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in &lines {
        let key = format!("{key}:");
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out.push_str("parameters:\n");
    let params = job
        .get("parameters")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let pretty = serde_json::to_string_pretty(&params).unwrap_or_default();
    for line in pretty.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `message (code)` of a job error; `-` when there is none.
fn error_text(error: Option<&Value>) -> String {
    match error {
        None | Some(Value::Null) => "-".to_string(),
        Some(e) => {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            match e.get("code").and_then(Value::as_str) {
                Some(code) if !code.is_empty() => format!("{message} ({code})"),
                _ => message.to_string(),
            }
        }
    }
}

/// `1.2 MB` or `1.2 MB of 3.4 MB`.
fn results_bytes(results: Option<&Value>) -> String {
    let Some(r) = results else {
        return "-".to_string();
    };
    let done = r.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    match r.get("total_bytes").and_then(Value::as_u64) {
        Some(total) => format!("{} of {}", human::bytes(done), human::bytes(total)),
        None => human::bytes(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn paths_from_the_discovery_file_or_the_configuration() {
        let root = std::path::Path::new("/home/ada");
        let mut config = Config::for_root(root);
        config.listen = "[::]:8421".parse().unwrap();
        let running = Discovery::of_daemon(&config, "[::]:39001".parse().unwrap());
        let report = PathsReport::new(&config, Ok(Found::Running(running.clone())));
        let json = serde_json::to_value(&report).unwrap();
        for (key, value) in serde_json::to_value(&running).unwrap().as_object().unwrap() {
            assert_eq!(&json[key], value, "{key}");
        }
        assert_eq!(json["daemon"], "running");
        assert!(json.get("note").is_none());
        let text = report.render();
        assert!(
            text.contains("\napi_url         http://[::1]:39001\n"),
            "{text}"
        );
        assert!(text.contains(&format!("\npid             {}\n", std::process::id())));

        let stopped = PathsReport::new(&config, Ok(Found::Absent));
        assert_eq!(stopped.daemon, "not_running");
        assert_eq!(stopped.api_url, "http://[::1]:8421");
        assert_eq!((stopped.pid, stopped.started.as_deref()), (None, None));
        assert_eq!(stopped.token_file, root.join("state/api-token"));
        assert!(!stopped.render().contains("\npid "));

        let gone = Discovery { pid: 7, ..running };
        let stale = PathsReport::new(&config, Ok(Found::Stale(gone)));
        assert_eq!(stale.daemon, "stale");
        assert_eq!(stale.pid, None);
        assert!(stale.render().starts_with(
            "daemon          not running: /home/ada/state/daemon.json was left by process 7"
        ));
    }

    fn job(id: i64, status: &str, title: &str, created: &str) -> Value {
        json!({
            "id": id, "title": title, "label": "openeo", "status": status,
            "service": {"endpoint": "https://openeo.vito.be/openeo/1.2", "namespace": null,
                        "application": "https://example.org/udp/ndvi.json"},
            "parameters": {"spatial_extent": {"west": 5, "south": 51, "east": 5.1, "north": 51.1},
                           "temporal_extent": ["2023-05-01", "2023-09-30"]},
            "created": created, "updated": created,
            "uuid": "0b6b5a52-8d1e-4bbf-9d6a-1f2f0e2f8f30", "format": "gtiff",
            "backend_job_id": null, "progress": null, "error": null,
            "results": {"state": "pending", "dir": null, "bytes": 0, "total_bytes": null},
            "upscale_task_id": null
        })
    }

    #[test]
    fn jobs_table() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let mut running = job(
            12,
            "running",
            "NDVI time series",
            "2026-11-25T15:55:00.000Z",
        );
        running["progress"] = json!(42.0);
        let old = job(
            3,
            "finished",
            "Parcel delineation",
            "2026-10-01T08:00:00.000Z",
        );
        let text = render_jobs(&[running, old], None, now);
        assert_eq!(
            text,
            "ID  STATUS    PROGRESS  TITLE               BACKEND         CREATED     RESULTS\n\
             12  running        42%  NDVI time series    openeo.vito.be  5m ago      pending\n\
             \x203  finished         -  Parcel delineation  openeo.vito.be  2026-10-01  pending\n"
        );
    }

    #[test]
    fn empty_job_lists() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        assert!(render_jobs(&[], None, now).contains("eodispatch submit"));
        assert_eq!(
            render_jobs(&[], Some(Status::Running), now),
            "No jobs with status running.\n"
        );
    }

    #[test]
    fn job_view() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let mut j = job(7, "canceled", "NDVI", "2026-11-25T15:00:00.000Z");
        j["error"] = json!({"code": "Canceled", "message": "canceled by the user"});
        j["results"] = json!({"state": "downloading", "dir": null, "bytes": 1_400_000, "total_bytes": 3_000_000});
        let text = render_job(&j, now);
        let expected_head = "\
id:              7
uuid:            0b6b5a52-8d1e-4bbf-9d6a-1f2f0e2f8f30
title:           NDVI
status:          canceled
label:           openeo
endpoint:        https://openeo.vito.be/openeo/1.2
application:     https://example.org/udp/ndvi.json
format:          gtiff
backend job id:  -
progress:        -
error:           canceled by the user (Canceled)
results state:   downloading
results dir:     -
results bytes:   1.4 MB of 3.0 MB
created:         2026-11-25 15:00:00 UTC (1h ago)
updated:         2026-11-25 15:00:00 UTC (1h ago)
parameters:
  {
    \"spatial_extent\": {
";
        assert!(text.starts_with(expected_head), "{text}");
        assert!(text.ends_with("  }\n"), "{text}");
        assert!(!text.contains("namespace"), "{text}");
    }

    #[test]
    fn job_view_shows_namespace_and_task_when_set() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let mut j = job(7, "queued", "NDVI", "2026-11-25T15:00:00.000Z");
        j["service"]["namespace"] = json!("terradue");
        j["upscale_task_id"] = json!(2);
        j["backend_status"] = json!("error");
        let text = render_job(&j, now);
        assert!(text.contains("backend status:  error\n"), "{text}");
        assert!(text.contains("namespace:       terradue\n"), "{text}");
        assert!(text.contains("upscale task:    2\n"), "{text}");
        assert!(!text.contains("costs"), "{text}");
        j["estimate"] = json!({"amount": 2.5, "unit": "platform credits",
            "explanation": "0.1 platform credits per km² × 25 km² = 2.5 platform credits"});
        j["costs"] = json!(3.1);
        j["max_cost"] = json!(10.0);
        let text = render_job(&j, now);
        assert!(
            text.contains("estimate:        0.1 platform credits per km² × 25 km² = 2.5"),
            "{text}"
        );
        assert!(
            text.contains("costs:           3.1 platform credits\n"),
            "{text}"
        );
        assert!(text.contains("max cost:        10.0\n"), "{text}");
    }

    #[test]
    fn waiting_jobs_say_why_in_the_view_and_the_table() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let login = json!({"reason": "login_required", "backend": "https://openeo.vito.be",
            "message": "Waiting for a login to https://openeo.vito.be: click Log in in the \
                        EO Dispatch dock in QGIS, or run `eodispatch login https://openeo.vito.be`",
            "since": null, "next_try": null});
        let mut a = job(7, "created", "NDVI", "2026-11-25T15:00:00.000Z");
        a["waiting"] = login.clone();
        let mut b = job(8, "created", "NDVI 2", "2026-11-25T15:00:00.000Z");
        b["waiting"] = login;
        let mut c = job(9, "created", "NDVI 3", "2026-11-25T15:00:00.000Z");
        c["waiting"] = json!({"reason": "backend_limit", "backend": "https://x",
            "message": "The limit of 2 running jobs on https://x is reached", "since": null,
            "next_try": null});
        let view = render_job(&a, now);
        assert!(
            view.contains("status:          created\nwaiting:         Waiting for a login to https://openeo.vito.be: click Log in"),
            "{view}"
        );
        assert!(
            !render_job(&job(7, "created", "NDVI", "2026-11-25T15:00:00.000Z"), now)
                .contains("waiting")
        );
        let table = render_jobs(&[a, b, c], None, now);
        assert!(table.contains("7  created (login needed)"), "{table}");
        assert!(table.contains("9  created (backend limit)"), "{table}");
        assert!(
            table.contains("\njobs 7, 8 waiting: Waiting for a login to https://openeo.vito.be: click Log in in the EO Dispatch dock in QGIS, or run `eodispatch login https://openeo.vito.be`\n"),
            "{table}"
        );
        assert!(
            table
                .contains("\njob 9 waiting: The limit of 2 running jobs on https://x is reached\n"),
            "{table}"
        );
    }
}
