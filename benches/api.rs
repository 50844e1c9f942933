//! Benchmark of the local API against the real binary (targets in README.md, "Performance").
//!
//! `cargo bench --bench api` starts `eodispatch serve` with every folder in a fresh
//! temporary directory and prints, measured in one run on this machine:
//!
//! 1. start-to-healthy time (spawn until `GET /health` answers 200, polled every 1 ms);
//! 2. idle resident memory;
//! 3. `POST /unit_jobs` throughput and latency (C = 1, then C = 32) up to 10 000 jobs;
//! 4. resident memory with 10 000 jobs;
//! 5. `GET /unit_jobs/{id}` on random existing ids (C = 32 and C = 8);
//! 6. `GET /unit_jobs?limit=100` and `GET /health` for context;
//!
//! then a summary table against the targets, and stops the daemon with SIGTERM.
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client on raw tokio sockets in a
//! single-threaded runtime, so that the daemon keeps most of the other core. Client and
//! daemon share the machine's cores: the numbers are a lower bound of what the daemon
//! does alone. Nothing is asserted about speed.
//!
//! The daemon's scheduler picks up the submitted jobs; its outgoing requests are sent
//! to a dead local proxy (`HTTP(S)_PROXY`), so the benchmark never contacts the real
//! backend and backend calls fail at once, as on a machine without network.
//!
//! `API_BENCH_PERF=<file>` additionally records the daemon with
//! `perf record -g` during the `GET /unit_jobs/{id}` C = 32 phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Jobs stored by the POST phases together.
const TOTAL_JOBS: usize = 10_000;
/// Of which the single-connection POST phase submits this many.
const POST_C1_JOBS: usize = 2_000;
/// Fresh-folder start measurements.
const STARTS: usize = 5;
/// Proxy for the daemon's outgoing requests: nothing listens there.
const DEAD_PROXY: &str = "http://127.0.0.1:9";
/// A phase gives up after this many failed requests.
const MAX_ERRORS: usize = 1_000;

fn main() {
    let machine = Machine::read();
    println!("eodispatch API benchmark");
    println!("machine: {} cores, {}", machine.cores, machine.cpu);
    println!(
        "load average before the run: {} (other work on the machine distorts the numbers)",
        machine.load
    );
    println!(
        "note: client (1 tokio thread) and daemon share these {} cores; numbers are a lower bound",
        machine.cores
    );
    println!(
        "note: the daemon's outgoing requests (scheduler, UDP fetch) go to the dead proxy \
         {DEAD_PROXY}: nothing leaves the machine"
    );
    println!();

    // 1. Start-to-healthy.
    println!("== start until GET /health answers 200 (polled every 1 ms) ==");
    let mut fresh_ms = Vec::new();
    let mut reused_root = None;
    for i in 0..STARTS {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut d, healthy) = Daemon::start(dir.path());
        let ms = healthy.as_secs_f64() * 1e3;
        println!("  fresh folder #{}: {ms:7.2} ms", i + 1);
        fresh_ms.push(ms);
        d.stop();
        if i == 0 {
            reused_root = Some(dir);
        }
    }
    let reused_root = reused_root.expect("first start folder");
    let (mut d, healthy) = Daemon::start(reused_root.path());
    let existing_ms = healthy.as_secs_f64() * 1e3;
    println!("  existing (empty) DB: {existing_ms:7.2} ms");
    d.stop();
    drop(reused_root);
    let start_stats = Stats::of(&fresh_ms);
    println!(
        "  fresh folders: min {:.2} / median {:.2} / max {:.2} ms",
        start_stats.min, start_stats.median, start_stats.max
    );
    println!();

    // The daemon under load.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut daemon, healthy) = Daemon::start(dir.path());
    println!(
        "== load daemon: pid {}, {} (healthy after {:.2} ms) ==",
        daemon.pid(),
        daemon.addr,
        healthy.as_secs_f64() * 1e3
    );
    let token = std::fs::read_to_string(dir.path().join("state/api-token"))
        .expect("API token file")
        .trim()
        .to_string();
    let client = Client::new(daemon.addr, &token);

    // 2. Idle memory.
    std::thread::sleep(Duration::from_secs(1));
    let idle = Mem::of(daemon.pid());
    println!("idle for 1 s: {idle}");
    println!();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pid = daemon.pid();

    // 3. POST.
    println!("== POST /unit_jobs (valid PV job), until {TOTAL_JOBS} jobs exist ==");
    let post1 = rt.block_on(run_phase(
        &client,
        pid,
        "POST /unit_jobs",
        1,
        Target::Post,
        201,
        Mode::Count(POST_C1_JOBS),
    ));
    post1.print();
    let post32 = rt.block_on(run_phase(
        &client,
        pid,
        "POST /unit_jobs",
        32,
        Target::Post,
        201,
        Mode::Count(TOTAL_JOBS - POST_C1_JOBS),
    ));
    post32.print();
    // 4. Memory with 10 000 jobs (before the one big listing below inflates it).
    std::thread::sleep(Duration::from_secs(1));
    let loaded = Mem::of(pid);
    let ids = rt.block_on(stored_ids(&client));
    println!("  jobs stored (GET /unit_jobs?limit=10000): {}", ids.len());
    println!();
    println!("after the POSTs, idle 1 s: {loaded}");
    println!();

    // 5. GET by id.
    println!("== GET /unit_jobs/{{id}}, random existing ids, 1 s warm-up + 5 s ==");
    let ids = Arc::new(ids);
    let timed = Mode::Timed {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(5),
    };
    let perf = std::env::var_os("API_BENCH_PERF").map(|out| {
        let child = Command::new("perf")
            .args(["record", "-g", "-F", "999", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        (out, child)
    });
    let get32 = rt.block_on(run_phase(
        &client,
        pid,
        "GET /unit_jobs/{id}",
        32,
        Target::GetId(ids.clone()),
        200,
        timed,
    ));
    if let Some((out, child)) = perf {
        match child {
            Ok(mut c) => {
                let _ = Command::new("kill")
                    .args(["-INT", &c.id().to_string()])
                    .status();
                let _ = c.wait();
                println!("  perf profile of this phase: {}", out.to_string_lossy());
            }
            Err(e) => println!("  perf could not start: {e}"),
        }
    }
    get32.print();
    let get8 = rt.block_on(run_phase(
        &client,
        pid,
        "GET /unit_jobs/{id}",
        8,
        Target::GetId(ids.clone()),
        200,
        timed,
    ));
    get8.print();
    println!();

    // 6. Context.
    println!("== context: 1 s warm-up + 3 s ==");
    let short = Mode::Timed {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(3),
    };
    let list = rt.block_on(run_phase(
        &client,
        pid,
        "GET /unit_jobs?limit=100",
        8,
        Target::Path("/unit_jobs?limit=100"),
        200,
        short,
    ));
    list.print();
    let health = rt.block_on(run_phase(
        &client,
        pid,
        "GET /health",
        8,
        Target::Path("/health"),
        200,
        short,
    ));
    health.print();
    let after = Mem::of(pid);
    println!("after all load: {after}");
    println!();

    // Stop, then restart on the 10 000-job database.
    drop(rt);
    let (code, took) = daemon.stop();
    println!(
        "SIGTERM: exited with {} after {:.0} ms ({})",
        code.map_or("a signal".to_string(), |c| c.to_string()),
        took.as_secs_f64() * 1e3,
        if code == Some(0) {
            "clean"
        } else {
            "NOT clean"
        }
    );
    let log = daemon.log_text();
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!(
        "daemon log: {} lines, {} WARN/ERROR{}",
        log.lines().count(),
        noisy.len(),
        if noisy.is_empty() {
            ""
        } else {
            "; the last ones:"
        }
    );
    for line in &noisy[noisy.len().saturating_sub(5)..] {
        println!("  {}", &line[..line.len().min(300)]);
    }
    let (mut again, healthy) = Daemon::start(dir.path());
    let restart_ms = healthy.as_secs_f64() * 1e3;
    println!(
        "restart on the {}-job database: healthy after {restart_ms:.2} ms",
        ids.len()
    );
    let (code2, _) = again.stop();
    println!();

    // Summary.
    let yes_no = |ok: bool| if ok { "yes" } else { "NO" };
    let rows: Vec<[String; 4]> = vec![
        [
            "GET /unit_jobs/{id} req/s, C=32 (10k jobs)".into(),
            format!("{:.0}", get32.rate()),
            "≥ 20 000".into(),
            yes_no(get32.rate() >= 20_000.0).into(),
        ],
        [
            "GET /unit_jobs/{id} p99, C=32".into(),
            format!("{:.2} ms", get32.pct(0.99)),
            "≤ 5 ms".into(),
            yes_no(get32.pct(0.99) <= 5.0).into(),
        ],
        [
            "GET /unit_jobs/{id} p50 / p99.9, C=32".into(),
            format!("{:.2} / {:.2} ms", get32.pct(0.5), get32.pct(0.999)),
            "-".into(),
            "".into(),
        ],
        [
            "GET /unit_jobs/{id} req/s, C=8".into(),
            format!("{:.0}", get8.rate()),
            "≥ 20 000".into(),
            yes_no(get8.rate() >= 20_000.0).into(),
        ],
        [
            "GET /unit_jobs/{id} p99, C=8".into(),
            format!("{:.2} ms", get8.pct(0.99)),
            "≤ 5 ms".into(),
            yes_no(get8.pct(0.99) <= 5.0).into(),
        ],
        [
            "GET errors (C=32 + C=8)".into(),
            format!("{}", get32.error_count() + get8.error_count()),
            "0".into(),
            yes_no(get32.error_count() + get8.error_count() == 0).into(),
        ],
        [
            "POST /unit_jobs req/s, C=32".into(),
            format!("{:.0}", post32.rate()),
            "≥ 2 000".into(),
            yes_no(post32.rate() >= 2_000.0).into(),
        ],
        [
            "POST /unit_jobs req/s, C=1".into(),
            format!("{:.0}", post1.rate()),
            "(context)".into(),
            "".into(),
        ],
        [
            "POST p50 / p99, C=32".into(),
            format!("{:.2} / {:.2} ms", post32.pct(0.5), post32.pct(0.99)),
            "-".into(),
            "".into(),
        ],
        [
            "POST non-201 / jobs stored".into(),
            format!(
                "{} / {}",
                post1.error_count() + post32.error_count(),
                ids.len()
            ),
            format!("0 / {TOTAL_JOBS}"),
            yes_no(post1.error_count() + post32.error_count() == 0 && ids.len() == TOTAL_JOBS)
                .into(),
        ],
        [
            "idle RSS after start".into(),
            format!("{:.1} MiB", idle.rss_mib()),
            "≤ 20 MB".into(),
            yes_no(idle.rss_kib as f64 * 1024.0 <= 20e6).into(),
        ],
        [
            "  of which anonymous / file-backed (libs)".into(),
            format!(
                "{:.1} / {:.1} MiB",
                idle.anon_kib as f64 / 1024.0,
                idle.file_kib as f64 / 1024.0
            ),
            "-".into(),
            "".into(),
        ],
        [
            "RSS with 10k jobs / after load (peak)".into(),
            format!(
                "{:.1} / {:.1} MiB ({:.1})",
                loaded.rss_mib(),
                after.rss_mib(),
                after.hwm_kib as f64 / 1024.0
            ),
            "-".into(),
            "".into(),
        ],
        [
            "healthy after start, fresh (median)".into(),
            format!("{:.1} ms", start_stats.median),
            "≤ 100 ms".into(),
            yes_no(start_stats.median <= 100.0).into(),
        ],
        [
            "healthy after start, fresh (min / max)".into(),
            format!("{:.1} / {:.1} ms", start_stats.min, start_stats.max),
            "≤ 100 ms".into(),
            yes_no(start_stats.max <= 100.0).into(),
        ],
        [
            "healthy after start, existing DB (empty / 10k)".into(),
            format!("{existing_ms:.1} / {restart_ms:.1} ms"),
            "≤ 100 ms".into(),
            yes_no(existing_ms.max(restart_ms) <= 100.0).into(),
        ],
        [
            "GET /unit_jobs?limit=100 req/s, C=8".into(),
            format!("{:.0}", list.rate()),
            "(context)".into(),
            "".into(),
        ],
        [
            "GET /health req/s, C=8".into(),
            format!("{:.0}", health.rate()),
            "(context)".into(),
            "".into(),
        ],
        [
            "SIGTERM exit code (load / restart)".into(),
            format!("{code:?} / {code2:?}"),
            "Some(0)".into(),
            yes_no(code == Some(0) && code2 == Some(0)).into(),
        ],
    ];
    println!("== summary ==");
    println!("command: cargo bench --bench api   (release profile)");
    println!(
        "machine: nproc {}, CPU {}, Linux {}, load average at start {}",
        machine.cores, machine.cpu, machine.kernel, machine.load
    );
    println!(
        "client: 1-thread tokio raw HTTP/1.1 keep-alive, on the same {} cores as the daemon",
        machine.cores
    );
    print_table(&["metric", "measured", "target", "met"], &rows);
}

/// What the summary says about the machine.
struct Machine {
    cores: usize,
    /// `/proc/loadavg` when the benchmark began.
    load: String,
    cpu: String,
    kernel: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".to_string(), |(_, v)| v.trim().to_string());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load: std::fs::read_to_string("/proc/loadavg").map_or_else(
                |_| "?".to_string(),
                |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            ),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "?".to_string(), |s| s.trim().to_string()),
        }
    }
}

fn print_table(head: &[&str; 4], rows: &[[String; 4]]) {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut s = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w - cell.chars().count();
            let _ = write!(s, " {cell}{} |", " ".repeat(pad));
        }
        println!("{s}");
    };
    line(*head);
    let mut sep = String::from("|");
    for w in widths {
        let _ = write!(sep, "{}|", "-".repeat(w + 2));
    }
    println!("{sep}");
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
}

/// Min, median and max of some numbers.
struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Stats {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

// ---------------------------------------------------------------------------------
// The daemon as a child process.

/// `eodispatch serve` running with its folders under a temporary root.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Daemon {
    /// Spawns the daemon on a free port and returns it with the time from spawn until
    /// `/health` answered 200.
    fn start(root: &Path) -> (Daemon, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = root.join("daemon.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log file");
        let err = out.try_clone().expect("daemon log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eodispatch"));
        // Only our settings: the daemon refuses unknown EODISPATCH_* variables, and
        // inherited ones would change what is measured.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EODISPATCH_") {
                cmd.env_remove(key);
            }
        }
        // The scheduler starts sending the benchmark's jobs to their (real) backend:
        // every outgoing request goes to a dead local proxy instead, so that nothing
        // leaves the machine and backend calls fail at once, as when offline.
        for key in ["NO_PROXY", "no_proxy"] {
            cmd.env_remove(key);
        }
        for key in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env(key, DEAD_PROXY);
        }
        cmd.arg("serve")
            .env("HOME", root)
            .env("EODISPATCH_CONFIG_DIR", root.join("config"))
            .env("EODISPATCH_STATE_DIR", root.join("state"))
            .env("EODISPATCH_RESULTS_DIR", root.join("results"))
            .env("EODISPATCH_LISTEN", addr.to_string())
            .env("EODISPATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let t0 = Instant::now();
        let child = cmd.spawn().expect("spawn eodispatch serve");
        let mut d = Daemon { child, addr, log };
        let deadline = t0 + Duration::from_secs(20);
        loop {
            if health_ok(addr) {
                return (d, t0.elapsed());
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "the daemon exited during start ({status}); log:\n{}",
                    d.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the daemon was not healthy within 20 s; log:\n{}",
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (through `kill -TERM`), then waits up to 30 s; exit code and how long
    /// the exit took.
    fn stop(&mut self) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {} failed", self.pid());
        let deadline = t0 + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if status.code() != Some(0) {
                    println!(
                        "  daemon exit {status}; log tail:\n{}",
                        tail(&self.log_text(), 20)
                    );
                }
                return (status.code(), t0.elapsed());
            }
            if Instant::now() > deadline {
                println!("  daemon did not exit within 30 s of SIGTERM; killing it");
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One `GET /health` on a fresh connection: did it answer 200?
fn health_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = StdTcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200 ")
}

/// Resident memory of a process, from `/proc/<pid>/status`.
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
    /// Of `rss_kib`: anonymous (heap, stacks) and file-backed (binary, shared libraries).
    anon_kib: u64,
    file_kib: u64,
}

impl Mem {
    fn of(pid: u32) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Mem {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
        }
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.1} MiB ({:.1} MB; anonymous {:.1} MiB, file-backed {:.1} MiB), VmHWM {:.1} MiB",
            self.rss_mib(),
            self.rss_kib as f64 * 1024.0 / 1e6,
            self.anon_kib as f64 / 1024.0,
            self.file_kib as f64 / 1024.0,
            self.hwm_kib as f64 / 1024.0
        )
    }
}

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_secs(pid: &str) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is field 3,
    // utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / ticks
}

// ---------------------------------------------------------------------------------
// The load generator.

/// Where and as whom requests go.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    /// `Host`, `Authorization` headers and the final empty line of a GET.
    get_tail: Arc<[u8]>,
    /// A complete `POST /unit_jobs` request.
    post: Arc<[u8]>,
}

impl Client {
    fn new(addr: SocketAddr, token: &str) -> Client {
        let common = format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n");
        let body = serde_json::to_vec(&pv_job("PV farms Vienna (bench)")).expect("json");
        let mut post = format!(
            "POST /unit_jobs HTTP/1.1\r\n{common}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        post.extend_from_slice(&body);
        Client {
            addr,
            get_tail: format!("{common}\r\n").into_bytes().into(),
            post: post.into(),
        }
    }

    /// A GET request of `path` into `out`.
    fn get(&self, out: &mut Vec<u8>, path: std::fmt::Arguments<'_>) {
        out.clear();
        let _ = write!(out, "GET {path} HTTP/1.1\r\n");
        out.extend_from_slice(&self.get_tail);
    }
}

/// The valid `POST /unit_jobs` body of the tests (`tests/common/mod.rs`).
fn pv_job(title: &str) -> Value {
    json!({
        "title": title,
        "label": "openeo",
        "service": {
            "endpoint": "https://openeofed.dataspace.copernicus.eu",
            "application": "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
        },
        "parameters": {
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
            "temporal_extent": ["2023-05-01", "2023-09-30"]
        },
        "format": "gtiff"
    })
}

/// One HTTP/1.1 keep-alive connection. A response is read exactly: the head up to the
/// empty line, then `Content-Length` bytes (or the chunks of a chunked body).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` read from the socket.
    filled: usize,
    /// Bytes of `buf` belonging to the last response.
    consumed: usize,
    /// Body of the last response: a range of `buf`, or `chunked` when `None`.
    body: Option<(usize, usize)>,
    chunked: Vec<u8>,
    /// The server said `Connection: close`.
    closing: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
            consumed: 0,
            body: Some((0, 0)),
            chunked: Vec::new(),
            closing: false,
        })
    }

    /// Reads more bytes from the socket.
    async fn fill(&mut self) -> std::io::Result<()> {
        if self.filled == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.filled += n;
        Ok(())
    }

    /// Position just after the next `\r\n` at or after `from`, reading as needed.
    async fn line_end(&mut self, from: usize) -> std::io::Result<usize> {
        let mut searched = from;
        loop {
            if let Some(i) = find(&self.buf[searched..self.filled], b"\r\n") {
                return Ok(searched + i + 2);
            }
            searched = self.filled.saturating_sub(1).max(from);
            self.fill().await?;
        }
    }

    /// Sends one request and reads its response; returns the status code.
    async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        // Drop the previous response (there is no pipelining, so normally nothing is left).
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        self.stream.write_all(req).await?;

        let mut searched = 0;
        let head_end = loop {
            if let Some(i) = find(&self.buf[searched..self.filled], b"\r\n\r\n") {
                break searched + i + 4;
            }
            searched = self.filled.saturating_sub(3);
            self.fill().await?;
        };
        let head = &self.buf[..head_end];
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response head");
        if !head.starts_with(b"HTTP/1.1 ") || head.len() < 12 {
            return Err(bad());
        }
        let status = std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(bad)?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value.eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                self.closing = value.eq_ignore_ascii_case(b"close");
            }
        }
        if status == 204 || status == 304 || status < 200 {
            length = Some(0);
        }
        if chunked {
            self.read_chunked(head_end).await?;
        } else {
            let n = length.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "response without length")
            })?;
            while self.filled < head_end + n {
                self.fill().await?;
            }
            self.body = Some((head_end, head_end + n));
            self.consumed = head_end + n;
        }
        Ok(status)
    }

    async fn read_chunked(&mut self, mut pos: usize) -> std::io::Result<()> {
        self.chunked.clear();
        loop {
            let end = self.line_end(pos).await?;
            let size = std::str::from_utf8(&self.buf[pos..end - 2])
                .ok()
                .and_then(|s| s.split(';').next())
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk"))?;
            pos = end;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let end = self.line_end(pos).await?;
                    let empty = end == pos + 2;
                    pos = end;
                    if empty {
                        break;
                    }
                }
                break;
            }
            while self.filled < pos + size + 2 {
                self.fill().await?;
            }
            self.chunked.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
        self.body = None;
        self.consumed = pos;
        Ok(())
    }

    /// Body of the last response.
    fn body(&self) -> &[u8] {
        match self.body {
            Some((a, b)) => &self.buf[a..b],
            None => &self.chunked,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Ids of every stored job (one list request, outside any measurement).
async fn stored_ids(client: &Client) -> Vec<i64> {
    let mut conn = Conn::open(client.addr).await.expect("connect");
    let mut req = Vec::new();
    client.get(&mut req, format_args!("/unit_jobs?limit=10000"));
    let status = conn.send(&req).await.expect("list jobs");
    let list: Value = serde_json::from_slice(conn.body()).unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET /unit_jobs?limit=10000: {list}");
    list.as_array()
        .map(|a| a.iter().filter_map(|j| j["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// What a phase requests.
#[derive(Clone)]
enum Target {
    Post,
    GetId(Arc<Vec<i64>>),
    Path(&'static str),
}

/// How long a phase runs.
#[derive(Clone, Copy)]
enum Mode {
    /// Until this many requests succeeded (every one measured).
    Count(usize),
    /// Unmeasured warm-up, then a measured period.
    Timed { warmup: Duration, measure: Duration },
}

/// Shared by the connections of a phase.
struct Plan {
    client: Client,
    target: Target,
    expect: u16,
    /// `Count`: requests still to succeed.
    remaining: AtomicIsize,
    /// `Timed`: measuring from / stopping at.
    measure_from: Instant,
    stop_at: Option<Instant>,
    errors: AtomicUsize,
}

#[derive(Default)]
struct WorkerOut {
    lat_us: Vec<u32>,
    /// Measured requests that got the expected status.
    ok: usize,
    errors: BTreeMap<String, usize>,
}

async fn worker(plan: Arc<Plan>, index: usize) -> WorkerOut {
    let mut out = WorkerOut {
        lat_us: Vec::with_capacity(1 << 16),
        ..WorkerOut::default()
    };
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ ((index as u64 + 1) * 0x2545_F491_4F6C_DD1D);
    let mut req = Vec::with_capacity(1024);
    let mut conn: Option<Conn> = None;
    let counted = plan.stop_at.is_none();
    loop {
        if let Some(stop) = plan.stop_at {
            if Instant::now() >= stop {
                break;
            }
        } else if plan.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
            plan.remaining.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if plan.errors.load(Ordering::Relaxed) >= MAX_ERRORS {
            break;
        }
        let payload: &[u8] = match &plan.target {
            Target::Post => &plan.client.post,
            Target::GetId(ids) => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let id = ids[(rng % ids.len() as u64) as usize];
                plan.client.get(&mut req, format_args!("/unit_jobs/{id}"));
                &req
            }
            Target::Path(p) => {
                if req.is_empty() {
                    plan.client.get(&mut req, format_args!("{p}"));
                }
                &req
            }
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(plan.client.addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    *out.errors.entry(format!("connect: {e}")).or_default() += 1;
                    plan.errors.fetch_add(1, Ordering::Relaxed);
                    if counted {
                        plan.remaining.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let result = c.send(payload).await;
        let t1 = Instant::now();
        let ok = match result {
            Ok(status) if status == plan.expect => true,
            Ok(status) => {
                *out.errors.entry(format!("HTTP {status}")).or_default() += 1;
                if plan.errors.load(Ordering::Relaxed) == 0 {
                    let body = c.body();
                    println!(
                        "  first unexpected response: {status} {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    );
                }
                false
            }
            Err(e) => {
                *out.errors.entry(format!("io: {e}")).or_default() += 1;
                c.closing = true;
                false
            }
        };
        if c.closing {
            conn = None;
        }
        if !ok {
            plan.errors.fetch_add(1, Ordering::Relaxed);
            if counted {
                plan.remaining.fetch_add(1, Ordering::Relaxed);
            }
        }
        if t0 >= plan.measure_from {
            let us = (t1 - t0).as_micros();
            out.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            out.ok += usize::from(ok);
        }
    }
    out
}

/// Result of one phase.
struct Phase {
    name: String,
    conns: usize,
    /// Measured requests (successful or not).
    requests: usize,
    /// Of which got the expected status.
    ok: usize,
    elapsed: Duration,
    lat_us: Vec<u32>,
    errors: BTreeMap<String, usize>,
    daemon_cpu: f64,
    client_cpu: f64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Percentile `p` (0..1) of the latency, in ms.
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * self.lat_us.len() as f64).ceil() as usize).clamp(1, self.lat_us.len());
        f64::from(self.lat_us[rank - 1]) / 1e3
    }

    fn print(&self) {
        println!(
            "  {:<26} C={:<2} {:>7} req in {:5.2} s = {:>7.0} req/s | p50 {:6.2} p99 {:6.2} \
             p99.9 {:6.2} max {:7.2} ms | errors {} | CPU daemon {:3.0}% client {:3.0}%",
            self.name,
            self.conns,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.pct(0.5),
            self.pct(0.99),
            self.pct(0.999),
            self.lat_us.last().map_or(f64::NAN, |&m| f64::from(m) / 1e3),
            self.error_count(),
            self.daemon_cpu * 100.0,
            self.client_cpu * 100.0,
        );
        for (kind, n) in &self.errors {
            println!("      {n:>7} × {kind}");
        }
    }
}

/// Runs `conns` connections of `target` requests and collects the measurements.
async fn run_phase(
    client: &Client,
    daemon_pid: u32,
    name: &str,
    conns: usize,
    target: Target,
    expect: u16,
    mode: Mode,
) -> Phase {
    let start = Instant::now();
    let (count, measure_from, stop_at) = match mode {
        Mode::Count(n) => (n, start, None),
        Mode::Timed { warmup, measure } => (0, start + warmup, Some(start + warmup + measure)),
    };
    let plan = Arc::new(Plan {
        client: client.clone(),
        target,
        expect,
        remaining: AtomicIsize::new(count as isize),
        measure_from,
        stop_at,
        errors: AtomicUsize::new(0),
    });
    let pid = daemon_pid.to_string();
    // CPU use over the measured period: sampled when it begins and when all is done.
    let sampler = {
        let pid = pid.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            (cpu_secs(&pid), cpu_secs("self"), Instant::now())
        })
    };
    let workers: Vec<_> = (0..conns)
        .map(|i| tokio::spawn(worker(plan.clone(), i)))
        .collect();
    let mut lat_us = Vec::new();
    let mut ok = 0;
    let mut errors = BTreeMap::new();
    for w in workers {
        let out = w.await.expect("worker");
        lat_us.extend_from_slice(&out.lat_us);
        ok += out.ok;
        for (k, n) in out.errors {
            *errors.entry(k).or_default() += n;
        }
    }
    let end = Instant::now();
    let (d0, c0, t0) = sampler.await.expect("sampler");
    let wall = (end - t0).as_secs_f64().max(1e-9);
    lat_us.sort_unstable();
    Phase {
        name: name.to_string(),
        conns,
        requests: lat_us.len(),
        ok,
        elapsed: end - measure_from,
        lat_us,
        errors,
        daemon_cpu: (cpu_secs(&pid) - d0) / wall,
        client_cpu: (cpu_secs("self") - c0) / wall,
    }
}
