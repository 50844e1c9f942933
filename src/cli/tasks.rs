//! The upscale task commands: `upscale` (split an area into tiles with `POST /tiles`,
//! then `POST /upscale_tasks`), `tasks`, `task`, `cancel-task`, `retry-task`,
//! `delete-task`, and `--wait`.
//!
//! `--wait` follows a task through the daemon's event stream (`GET /events`: each
//! `task` event carries the task's status, progress, counts and results), reading the
//! task again when the stream starts, says it lagged, or is quiet for a while; when
//! the daemon has no stream to spare it polls instead. It ends when the task has
//! ended *and* the results of its finished tiles have been delivered (or failed to
//! be), so that the files are there when the command returns. On a terminal it shows
//! one progress line, redrawn in place; otherwise a plain line each time something
//! worth reading changed. Exit code 0 when every tile finished and its results are in
//! place, 1 otherwise.
//!
//! The renderers are pure functions of the JSON (and "now"), tested without a daemon.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::client::{Client, ClientError};
use super::commands::{quoted_title, text, wait_word, TITLE_WIDTH};
use super::table::{Align, Table};
use super::upscale::{area_polygon, UpscaleFlags};
use super::{human, load_config, out, out_json, CliError};

/// How long the event stream may stay silent before the task is read again.
pub const QUIET: Duration = Duration::from_secs(30);
/// How often the task is read when there is no event stream.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// Width of the progress bar, in characters.
pub const BAR_WIDTH: usize = 24;

/// `eodispatch upscale`: tiles the area, creates the task, and follows it with `wait`.
pub async fn upscale(flags: UpscaleFlags, wait: bool, json: bool) -> Result<ExitCode, CliError> {
    let aoi = area_polygon(&flags.area)?;
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let services = match flags.service {
        super::upscale::ServiceChoice::Catalogue(_) => Some(client.get("/services", &[]).await?),
        super::upscale::ServiceChoice::Direct { .. } => None,
    };
    let service = flags
        .resolve_service(
            services
                .as_ref()
                .and_then(Value::as_array)
                .map(Vec::as_slice),
        )
        .map_err(CliError::Input)?;
    let tiles = client
        .post("/tiles", Some(&json!({"aoi": aoi, "grid": flags.grid})))
        .await?;
    let cells = tiles
        .get("geometries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if cells.is_empty() {
        return Err(CliError::Input(
            "the area gives no tiles: is it a polygon with an area?".into(),
        ));
    }
    let body = flags.task_body(&service, cells).map_err(CliError::Input)?;
    let task = client.post("/upscale_tasks", Some(&body)).await?;
    let id = task.get("id").and_then(Value::as_i64).unwrap_or_default();
    if !json {
        out(&format!(
            "Created upscale task {id} {}: {} tiles of {} (status: {})\n",
            quoted_title(&task),
            task.pointer("/counts").map_or(0, total),
            flags.grid.replace('x', " × ").replace("km", " km"),
            text(&task, "/status"),
        ));
    }
    if wait {
        return follow_and_report(&client, id, json, &config.results_dir).await;
    }
    if json {
        out_json(&task);
    } else {
        out(&format!("Follow it with `eodispatch task {id} --wait`.\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch tasks`: lists upscale tasks, newest first.
pub async fn tasks(json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let list = client.get("/upscale_tasks", &[]).await?;
    if json {
        out_json(&list);
    } else {
        let tasks = list.as_array().map(Vec::as_slice).unwrap_or_default();
        out(&render_tasks(tasks, OffsetDateTime::now_utc()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch task ID`: one task with its sub-jobs; with `wait`, followed to its end.
pub async fn task(id: i64, wait: bool, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    if wait {
        return follow_and_report(&client, id, json, &config.results_dir).await;
    }
    let task = client.get(&format!("/upscale_tasks/{id}"), &[]).await?;
    if json {
        out_json(&task);
    } else {
        out(&render_task(&task, OffsetDateTime::now_utc()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch cancel-task ID`: cancels every sub-job that has not ended.
pub async fn cancel_task(id: i64, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let task = client
        .post(&format!("/upscale_tasks/{id}/cancel"), None)
        .await?;
    if json {
        out_json(&task);
    } else {
        out(&format!(
            "Task {id} {} is now {}: {}\n",
            quoted_title(&task),
            text(&task, "/status"),
            tiles_text(task.get("counts"))
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch retry-task ID`: submits the failed and canceled sub-jobs again.
pub async fn retry_task(id: i64, wait: bool, json: bool) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    let task = client
        .post(&format!("/upscale_tasks/{id}/retry"), None)
        .await?;
    if !json {
        out(&format!(
            "Task {id} {}: its failed and canceled tiles will be submitted again ({})\n",
            quoted_title(&task),
            tiles_text(task.get("counts"))
        ));
    }
    if wait {
        return follow_and_report(&client, id, json, &config.results_dir).await;
    }
    if json {
        out_json(&task);
    }
    Ok(ExitCode::SUCCESS)
}

/// `eodispatch delete-task ID`: forgets a task and its sub-jobs.
pub async fn delete_task(id: i64) -> Result<ExitCode, CliError> {
    let config = load_config()?;
    let client = Client::connect(&config)?;
    client.delete(&format!("/upscale_tasks/{id}")).await?;
    out(&format!(
        "Forgot upscale task {id} and its sub-jobs; result files already delivered stay in {}\n",
        config.results_dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Follows task `id` to its end (with a progress display on standard error), then
/// prints the outcome (or, with `json`, the task) and gives the exit code.
async fn follow_and_report(
    client: &Client,
    id: i64,
    json: bool,
    results_dir: &std::path::Path,
) -> Result<ExitCode, CliError> {
    let mut view = Progress::new(id, std::io::stderr().is_terminal());
    let followed = follow(client, id, &mut view).await;
    view.finish();
    followed?;
    let task = client.get(&format!("/upscale_tasks/{id}"), &[]).await?;
    if json {
        out_json(&task);
    } else {
        out(&render_outcome(&task, results_dir));
    }
    Ok(if succeeded(&task) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether a task finished with every tile's results in place.
pub fn succeeded(task: &Value) -> bool {
    task.get("status").and_then(Value::as_str) == Some("finished")
        && task.pointer("/results/failed").and_then(Value::as_u64) == Some(0)
}

/// Whether a task (or a `task` event) says there is nothing more to wait for: it has
/// ended, and no finished tile's results are still on their way.
pub fn ended(task: &Value) -> bool {
    matches!(
        task.get("status").and_then(Value::as_str),
        Some("finished" | "failed" | "canceled")
    ) && task.pointer("/results/pending").and_then(Value::as_u64) == Some(0)
}

/// Follows task `id` until [`ended`]; the last state seen.
async fn follow(client: &Client, id: i64, view: &mut Progress) -> Result<Value, CliError> {
    let path = format!("/upscale_tasks/{id}");
    loop {
        match client.stream("/events").await {
            Ok(resp) => {
                if let Some(last) = watch(client, &path, id, resp, view).await? {
                    return Ok(last);
                }
                // The stream ended (the daemon restarted, or the stream's time ran
                // out): open a new one.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // No event stream to spare: read the task every POLL_EVERY instead.
            Err(ClientError::Problem(p)) if p.status == 503 => loop {
                let task = client.get(&path, &[]).await?;
                if view.update(&task) {
                    return Ok(task);
                }
                tokio::time::sleep(POLL_EVERY).await;
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one event stream; `Some(task)` once the task [`ended`], `None` when the
/// stream ended first.
async fn watch(
    client: &Client,
    path: &str,
    id: i64,
    mut resp: reqwest::Response,
    view: &mut Progress,
) -> Result<Option<Value>, CliError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(QUIET, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None) | Err(_)) => return Ok(None),
            Err(_quiet) => {
                let task = client.get(path, &[]).await?;
                if view.update(&task) {
                    return Ok(Some(task));
                }
                continue;
            }
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let (event, data) = sse_block(&String::from_utf8_lossy(&block));
            let task = match event.as_str() {
                // The stream starts (nothing before it was seen), or missed events.
                "hello" | "lagged" => client.get(path, &[]).await?,
                "task" => {
                    let Ok(task) = serde_json::from_str::<Value>(&data) else {
                        continue;
                    };
                    if task.get("id").and_then(Value::as_i64) != Some(id) {
                        continue;
                    }
                    if task.get("deleted").and_then(Value::as_bool) == Some(true) {
                        return Err(CliError::Client(ClientError::Problem(Box::new(
                            super::client::ApiProblem {
                                title: "Upscale task deleted".into(),
                                status: 404,
                                detail: format!("upscale task {id} was deleted while waiting"),
                                code: "TaskNotFound".into(),
                                request_id: String::new(),
                                errors: Vec::new(),
                                hint: None,
                            },
                        ))));
                    }
                    task
                }
                _ => continue,
            };
            if view.update(&task) {
                return Ok(Some(task));
            }
        }
    }
}

/// The event name and data of one Server-Sent Events block.
pub fn sse_block(block: &str) -> (String, String) {
    let mut event = String::new();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (event, data)
}

/// The progress display of `--wait` on standard error.
///
/// On a terminal an `indicatif` bar: it finds the terminal's width, cuts the line to
/// it (a wrapped line could not be redrawn in place), redraws at most 20 times a
/// second and keeps its line apart from other output. Elsewhere plain lines of our own,
/// one when something worth reading changed (`indicatif` hides itself there).
pub struct Progress {
    id: i64,
    /// The bar, on a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// Whether the bar was drawn.
    drawn: bool,
    /// What the last plain line said (without the percentage's last digit).
    last: Option<String>,
}

/// Positions of the bar: tenths of a percent.
const BAR_STEPS: u64 = 1000;

/// The terminal line: `task 3 running [####----]  42%  5/12 finished, ... · results
/// ...` (prefix: the task and its status; message: [`bar_message`], cut to fit).
pub fn bar_style() -> indicatif::ProgressStyle {
    let template = format!("task {{prefix}} [{{bar:{BAR_WIDTH}}}] {{wide_msg}}");
    indicatif::ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#-")
}

impl Progress {
    /// A display for task `id`; `tty`: one line redrawn in place.
    pub fn new(id: i64, tty: bool) -> Progress {
        let bar = tty.then(|| {
            indicatif::ProgressBar::with_draw_target(
                Some(BAR_STEPS),
                indicatif::ProgressDrawTarget::stderr(),
            )
            .with_style(bar_style())
        });
        Progress {
            id,
            bar,
            drawn: false,
            last: None,
        }
    }

    /// Shows `task` (a task or a `task` event); whether it [`ended`].
    pub fn update(&mut self, task: &Value) -> bool {
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("{} {}", self.id, text(task, "/status")));
            bar.set_message(bar_message(task));
            bar.set_position((progress_of(task) * BAR_STEPS as f64 / 100.0).round() as u64);
            self.drawn = true;
        } else {
            let key = plain_key(task);
            if self.last.as_ref() != Some(&key) {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", plain_line(self.id, task));
                let _ = err.flush();
                self.last = Some(key);
            }
        }
        ended(task)
    }

    /// Ends the display: the bar stays as last drawn, the cursor goes to the next line.
    pub fn finish(&mut self) {
        match self.bar.take() {
            Some(bar) if self.drawn => bar.abandon(),
            Some(bar) => bar.finish_and_clear(),
            None => {}
        }
    }
}

fn count(counts: Option<&Value>, key: &str) -> u64 {
    counts
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn total(counts: &Value) -> u64 {
    [
        "created", "queued", "running", "finished", "canceled", "failed",
    ]
    .iter()
    .map(|k| count(Some(counts), k))
    .sum()
}

/// `5/12 finished, 1 failed, 2 running, 4 waiting`: the counts in words, the parts
/// that are 0 left out (`created` and `queued` are both waiting).
pub fn tiles_text(counts: Option<&Value>) -> String {
    let all = counts.map_or(0, total);
    let mut parts = vec![format!("{}/{all} finished", count(counts, "finished"))];
    let waiting = count(counts, "created") + count(counts, "queued");
    for (n, word) in [
        (count(counts, "failed"), "failed"),
        (count(counts, "canceled"), "canceled"),
        (count(counts, "running"), "running"),
        (waiting, "waiting"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    parts.join(", ")
}

/// `results 4 ready, 1 failed, 2 on the way, 12.3 MB`: the delivery in words; empty
/// before anything was delivered.
fn results_text(task: &Value) -> String {
    let r = task.get("results");
    let n = |k: &str| {
        r.and_then(|r| r.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut parts = Vec::new();
    for (v, word) in [
        (n("ready"), "ready"),
        (n("failed"), "failed"),
        (n("pending"), "on the way"),
    ] {
        if v > 0 {
            parts.push(format!("{v} {word}"));
        }
    }
    if parts.is_empty() && n("bytes") == 0 {
        return String::new();
    }
    parts.push(human::bytes(n("bytes")));
    format!("results {}", parts.join(", "))
}

fn progress_of(task: &Value) -> f64 {
    task.get("progress")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
        .clamp(0.0, 100.0)
}

/// The words after the bar: `  42%  5/12 finished, ... · results ...`.
pub fn bar_message(task: &Value) -> String {
    let percent = format!("{:.0}%", progress_of(task));
    let mut line = format!("{percent:>4}  {}", tiles_text(task.get("counts")));
    let r = results_text(task);
    if !r.is_empty() {
        line.push_str(" · ");
        line.push_str(&r);
    }
    line
}

/// The plain line: `task 3: running, 42%, 5/12 finished, ...; results ...`.
pub fn plain_line(id: i64, task: &Value) -> String {
    let mut line = format!(
        "task {id}: {}, {}, {}",
        text(task, "/status"),
        human::percent(Some(progress_of(task).floor())),
        tiles_text(task.get("counts"))
    );
    let r = results_text(task);
    if !r.is_empty() {
        line.push_str("; ");
        line.push_str(&r);
    }
    line
}

/// What must change for a new plain line: the status, counts and deliveries, or the
/// progress by a tenth.
fn plain_key(task: &Value) -> String {
    format!(
        "{} {} {} {} {} {}",
        text(task, "/status"),
        task.get("counts").map(Value::to_string).unwrap_or_default(),
        text(task, "/results/ready"),
        text(task, "/results/failed"),
        text(task, "/results/pending"),
        (progress_of(task) / 10.0).floor()
    )
}

/// The last words of `--wait`: how the task ended and what to do next.
pub fn render_outcome(task: &Value, results_dir: &std::path::Path) -> String {
    let id = text(task, "/id");
    let status = text(task, "/status");
    let mut out = format!(
        "Task {id} {} {status}: {}\n",
        quoted_title(task),
        tiles_text(task.get("counts"))
    );
    let ready = task
        .pointer("/results/ready")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if ready > 0 {
        out.push_str(&format!(
            "The results of {ready} tiles are in {}.\n",
            results_dir.display()
        ));
    }
    let failed_delivery = task
        .pointer("/results/failed")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if failed_delivery > 0 {
        out.push_str(&format!(
            "The results of {failed_delivery} tiles could not be delivered: `eodispatch task {id}` \
             lists the tiles, `eodispatch show ID` says why.\n"
        ));
    }
    let counts = task.get("counts");
    if count(counts, "failed") + count(counts, "canceled") > 0 {
        out.push_str(&format!(
            "`eodispatch retry-task {id}` submits the failed and canceled tiles again.\n"
        ));
    }
    out
}

/// The `eodispatch tasks` table: ID, STATUS, PROGRESS, TILES (finished/total), TITLE,
/// CREATED.
pub fn render_tasks(tasks: &[Value], now: OffsetDateTime) -> String {
    if tasks.is_empty() {
        return "No upscale tasks yet. Create one with `eodispatch upscale`.\n".to_string();
    }
    let mut t = Table::new(["ID", "STATUS", "PROGRESS", "TILES", "TITLE", "CREATED"])
        .align(0, Align::Right)
        .align(2, Align::Right)
        .align(3, Align::Right)
        .max_width(4, TITLE_WIDTH);
    for task in tasks {
        let counts = task.get("counts");
        t.row([
            text(task, "/id"),
            text(task, "/status"),
            human::percent(task.get("progress").and_then(Value::as_f64)),
            format!("{}/{}", count(counts, "finished"), counts.map_or(0, total)),
            task.get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            human::age_of(task.get("created").and_then(Value::as_str), now),
        ]);
    }
    t.render()
}

/// The `eodispatch task ID` view: `key: value` lines, then the sub-jobs.
pub fn render_task(task: &Value, now: OffsetDateTime) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("id", text(task, "/id")),
        ("title", text(task, "/title")),
        ("status", text(task, "/status")),
        (
            "progress",
            human::percent(task.get("progress").and_then(Value::as_f64)),
        ),
        ("tiles", tiles_text(task.get("counts"))),
    ];
    let r = results_text(task);
    lines.push((
        "results",
        r.strip_prefix("results ").unwrap_or("-").to_string(),
    ));
    lines.extend([
        ("label", text(task, "/label")),
        ("endpoint", text(task, "/service/endpoint")),
    ]);
    if task
        .pointer("/service/namespace")
        .is_some_and(|v| !v.is_null())
    {
        lines.push(("namespace", text(task, "/service/namespace")));
    }
    lines.extend([
        ("application", text(task, "/service/application")),
        ("format", text(task, "/format")),
        ("tiles go to", text(task, "/dimension/name")),
    ]);
    for key in ["created", "updated"] {
        let value = match task.get(key).and_then(Value::as_str) {
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
    let jobs = task
        .get("jobs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !jobs.is_empty() {
        let mut t = Table::new(["ID", "STATUS", "TITLE"])
            .align(0, Align::Right)
            .max_width(2, TITLE_WIDTH + 20);
        for job in jobs {
            let mut status = text(job, "/status");
            if let Some(w) = job.get("waiting").filter(|w| !w.is_null()) {
                status = format!("{status} ({})", wait_word(w));
            }
            t.row([text(job, "/id"), status, text(job, "/title")]);
        }
        out.push_str("sub-jobs:\n");
        for line in t.render().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    let counts = task.get("counts");
    if count(counts, "failed") + count(counts, "canceled") > 0 {
        out.push_str(&format!(
            "\n`eodispatch retry-task {}` submits the failed and canceled tiles again.\n",
            text(task, "/id")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn summary(id: i64, status: &str, progress: f64, counts: Value, results: Value) -> Value {
        json!({"id": id, "title": "PV farms Vienna", "label": "openeo", "status": status,
               "created": "2026-11-25T15:55:00.000Z", "updated": "2026-11-25T15:58:00.000Z",
               "progress": progress, "counts": counts, "results": results})
    }

    fn counts(c: u64, q: u64, r: u64, f: u64, x: u64, e: u64) -> Value {
        json!({"created": c, "queued": q, "running": r, "finished": f, "canceled": x, "failed": e})
    }

    fn results(ready: u64, failed: u64, pending: u64, bytes: u64) -> Value {
        json!({"bytes": bytes, "total_bytes": bytes, "ready": ready, "failed": failed, "pending": pending})
    }

    #[test]
    fn tasks_table() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let a = summary(
            3,
            "running",
            42.5,
            counts(2, 1, 2, 5, 0, 1),
            results(4, 0, 1, 0),
        );
        let mut b = summary(
            1,
            "finished",
            100.0,
            counts(0, 0, 0, 2, 0, 0),
            results(2, 0, 0, 9),
        );
        b["title"] = json!("Small");
        b["created"] = json!("2026-10-01T08:00:00.000Z");
        assert_eq!(
            render_tasks(&[a, b], now),
            "ID  STATUS    PROGRESS  TILES  TITLE            CREATED\n\
             \x203  running      42.5%   5/11  PV farms Vienna  5m ago\n\
             \x201  finished      100%    2/2  Small            2026-10-01\n"
        );
        assert!(render_tasks(&[], now).contains("eodispatch upscale"));
    }

    /// A terminal of 100 columns that keeps its current line.
    #[derive(Debug, Clone, Default)]
    struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

    impl Screen {
        fn line(&self) -> String {
            self.0.lock().unwrap().clone()
        }
        fn put(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.put(s)?;
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.put(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_lines() {
        let t = summary(
            3,
            "running",
            42.4,
            counts(3, 1, 2, 5, 0, 1),
            results(4, 0, 1, 12_300_000),
        );
        assert_eq!(
            bar_message(&t),
            " 42%  5/12 finished, 1 failed, 2 running, 4 waiting \
             · results 4 ready, 1 on the way, 12.3 MB"
        );
        // The terminal line as indicatif draws it, cut to the terminal's width.
        let screen = Screen::default();
        let mut view = Progress::new(3, false);
        view.bar = Some(
            indicatif::ProgressBar::with_draw_target(
                Some(BAR_STEPS),
                indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
            )
            .with_style(bar_style()),
        );
        assert!(!view.update(&t));
        assert_eq!(
            screen.line(),
            format!(
                "task 3 running [{}{}]  42%  5/12 finished, 1 failed, 2 running, 4 waiting · \
                 resu",
                "#".repeat(10),
                "-".repeat(14)
            )
        );
        // Finished: the line stays as it was last drawn.
        view.finish();
        assert!(screen.line().starts_with("task 3 running [##########---"));
        assert_eq!(
            plain_line(3, &t),
            "task 3: running, 42%, 5/12 finished, 1 failed, 2 running, 4 waiting; \
             results 4 ready, 1 on the way, 12.3 MB"
        );
        // Nothing delivered yet: no results part.
        let fresh = summary(
            4,
            "created",
            0.0,
            counts(2, 0, 0, 0, 0, 0),
            results(0, 0, 0, 0),
        );
        assert_eq!(
            plain_line(4, &fresh),
            "task 4: created, 0%, 0/2 finished, 2 waiting"
        );
        // A new plain line for a status, count or delivery change, or ten points more.
        let mut later = t.clone();
        later["progress"] = json!(48.0);
        assert_eq!(plain_key(&t), plain_key(&later));
        later["progress"] = json!(50.0);
        assert_ne!(plain_key(&t), plain_key(&later));
        let mut delivered = t.clone();
        delivered["results"]["ready"] = json!(5);
        assert_ne!(plain_key(&t), plain_key(&delivered));
    }

    #[test]
    fn a_task_has_ended_when_its_results_are_in() {
        let done = summary(
            1,
            "finished",
            100.0,
            counts(0, 0, 0, 2, 0, 0),
            results(2, 0, 0, 9),
        );
        assert!(ended(&done) && succeeded(&done));
        let mut delivering = done.clone();
        delivering["results"]["pending"] = json!(1);
        assert!(!ended(&delivering));
        let failed = summary(
            1,
            "failed",
            100.0,
            counts(0, 0, 0, 1, 0, 1),
            results(1, 0, 0, 9),
        );
        assert!(ended(&failed) && !succeeded(&failed));
        let mut undelivered = done.clone();
        undelivered["results"]["failed"] = json!(1);
        assert!(ended(&undelivered) && !succeeded(&undelivered));
        let running = summary(
            1,
            "running",
            50.0,
            counts(0, 0, 1, 1, 0, 0),
            results(1, 0, 0, 9),
        );
        assert!(!ended(&running));
    }

    #[test]
    fn outcomes_say_what_to_do_next() {
        let dir = std::path::Path::new("/home/u/EODispatch");
        let done = summary(
            1,
            "finished",
            100.0,
            counts(0, 0, 0, 2, 0, 0),
            results(2, 0, 0, 9),
        );
        assert_eq!(
            render_outcome(&done, dir),
            "Task 1 \"PV farms Vienna\" finished: 2/2 finished\n\
             The results of 2 tiles are in /home/u/EODispatch.\n"
        );
        let failed = summary(
            1,
            "failed",
            100.0,
            counts(0, 0, 0, 1, 0, 1),
            results(1, 0, 0, 9),
        );
        let text = render_outcome(&failed, dir);
        assert!(text.starts_with("Task 1 \"PV farms Vienna\" failed: 1/2 finished, 1 failed\n"));
        assert!(text.contains("`eodispatch retry-task 1`"), "{text}");
    }

    #[test]
    fn task_view() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let mut t = summary(
            3,
            "failed",
            100.0,
            counts(0, 0, 0, 1, 0, 1),
            results(1, 0, 0, 1400),
        );
        t["service"] = json!({"endpoint": "https://openeo.example.org", "namespace": null,
                              "application": "https://example.org/udp/pv.json"});
        t["format"] = json!("gtiff");
        t["dimension"] = json!({"name": "spatial_extent", "values": []});
        t["jobs"] = json!([
            {"id": 7, "title": "PV farms Vienna - Processing Job 1", "status": "finished", "waiting": null},
            {"id": 8, "title": "PV farms Vienna - Processing Job 2", "status": "failed", "waiting": null}
        ]);
        let view = render_task(&t, now);
        let expected = "\
id:           3
title:        PV farms Vienna
status:       failed
progress:     100%
tiles:        1/2 finished, 1 failed
results:      1 ready, 1.4 kB
label:        openeo
endpoint:     https://openeo.example.org
application:  https://example.org/udp/pv.json
format:       gtiff
tiles go to:  spatial_extent
created:      2026-11-25 15:55:00 UTC (5m ago)
updated:      2026-11-25 15:58:00 UTC (2m ago)
sub-jobs:
  ID  STATUS    TITLE
   7  finished  PV farms Vienna - Processing Job 1
   8  failed    PV farms Vienna - Processing Job 2

`eodispatch retry-task 3` submits the failed and canceled tiles again.
";
        assert_eq!(view, expected);
    }

    #[test]
    fn sse_blocks_are_parsed() {
        assert_eq!(
            sse_block("event: task\nid: 4\ndata: {\"id\":1}\n\n"),
            ("task".to_string(), "{\"id\":1}".to_string())
        );
        assert_eq!(
            sse_block(": keep-alive\n\n"),
            (String::new(), String::new())
        );
    }
}
