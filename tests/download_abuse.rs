//! Downloads a backend cannot abuse (issue 13, point 2): bodies longer than declared
//! are cut off at the declared size and treated as corrupt, redirects go only where a
//! backend may send us (for asset downloads and API requests alike), and the bearer
//! never follows a redirect to another origin.
//!
//! Two kinds of tests: [`download::fetch`] and the openEO adapter against raw TCP
//! servers that answer what no well-behaved server would (bodies without a length that
//! never end, redirects to `0.0.0.0`, hosts off loopback); and whole deliveries through
//! the daemon against the fake backend's `oversize` and `redirect` faults.
//!
//! No test sends anything off this machine: link-local targets are `[fe80::1]`
//! (refused before any connection; without the rule the connection fails at once, no
//! zone), and "another host" is this machine's own non-loopback address.

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestDaemon;
use eodispatch::platform::http::Bearer;
use eodispatch::platform::openeo::OpenEoBackend;
use eodispatch::results::download::{self, Asset, DownloadError, Fetched};
use fake::*;
use fake_openeo::{AssetSource, FakeConfig, FakeHandle, FaultRule};
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;

// =====================================================================================
// Raw servers
// =====================================================================================

/// One request as a raw server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Request line.
    line: String,
    /// The `Authorization` header, if any.
    authorization: Option<String>,
    /// The `Range` header, if any.
    range: Option<String>,
}

/// What a raw server does with a request: write the whole answer (head and body) to
/// the socket. Returns how many body bytes it managed to write.
type Answer = Arc<
    dyn Fn(Seen, TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>
        + Send
        + Sync,
>;

/// A raw HTTP/1.1 server on `ip` (one request per connection). Returns its base URL,
/// what it saw, and the body bytes it wrote in total.
async fn raw_server(ip: IpAddr, answer: Answer) -> (Url, Arc<Mutex<Vec<Seen>>>, Arc<AtomicU64>) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = Url::parse(&format!("http://{addr}/")).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(AtomicU64::new(0));
    let (seen2, written2) = (seen.clone(), written.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (seen, written, answer) = (seen2.clone(), written2.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_string())
                    })
                };
                let s = Seen {
                    line: head.lines().next().unwrap_or("").to_string(),
                    authorization: header("authorization"),
                    range: header("range"),
                };
                seen.lock().unwrap().push(s.clone());
                let n = answer(s, sock).await;
                written.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    (base, seen, written)
}

fn answer<F, Fut>(f: F) -> Answer
where
    F: Fn(Seen, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    Arc::new(move |s, sock| Box::pin(f(s, sock)))
}

/// Writes `head` and then `body_len` bytes of `byte` (`u64::MAX`: until the peer goes
/// away); returns the body bytes written.
async fn write_answer(mut sock: TcpStream, head: String, byte: u8, body_len: u64) -> u64 {
    if sock.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let block = vec![byte; 64 * 1024];
    let mut sent = 0u64;
    while sent < body_len {
        let n = (body_len - sent).min(block.len() as u64) as usize;
        if sock.write_all(&block[..n]).await.is_err() {
            return sent;
        }
        sent += n as u64;
    }
    let _ = sock.shutdown().await;
    sent
}

/// A redirect answer.
async fn redirect(sock: TcpStream, location: String) -> u64 {
    write_answer(
        sock,
        format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        0,
        0,
    )
    .await
}

/// A `200` with `len` bytes of `byte` and an honest `Content-Length`.
async fn file(sock: TcpStream, byte: u8, len: u64) -> u64 {
    write_answer(
        sock,
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\netag: \"v1\"\r\nconnection: close\r\n\r\n"
        ),
        byte,
        len,
    )
    .await
}

/// A plain answer without a body.
async fn status(sock: TcpStream, status: &str) -> u64 {
    write_answer(
        sock,
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        0,
        0,
    )
    .await
}

/// This machine's own address off loopback (the source address of its default route;
/// nothing is sent), if it has one that can be listened on.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9")
        .or_else(|_| s.connect("8.8.8.8:53"))
        .ok()?;
    let ip = s.local_addr().ok()?.ip();
    let usable = !ip.is_loopback()
        && !ip.is_unspecified()
        && std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok();
    usable.then_some(ip)
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

// =====================================================================================
// download::fetch directly
// =====================================================================================

struct Target {
    _dir: tempfile::TempDir,
    part: PathBuf,
    sidecar: PathBuf,
    progress: Arc<AtomicU64>,
}

fn target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    Target {
        part: dir.path().join("a.tif.part"),
        sidecar: dir.path().join("a.tif.part.json"),
        _dir: dir,
        progress: Arc::default(),
    }
}

fn asset<'a>(t: &Target, url: Url, auth: Option<&str>, size: Option<u64>) -> Asset<'a> {
    Asset {
        key: "a.tif",
        // As the daemon does: a backend on loopback may link to loopback.
        loopback_ok: eodispatch::platform::http::is_loopback_url(&url),
        url,
        auth: auth.map(|a| HeaderValue::from_str(a).unwrap()),
        part: t.part.clone(),
        sidecar: t.sidecar.clone(),
        expected_size: size,
        checksum: None,
        progress: t.progress.clone(),
    }
}

/// Runs `fetch` (at most `within`) while watching the part file's size; returns the
/// outcome and the largest size the part file ever had.
async fn fetch_watched(a: &Asset<'_>, within: Duration) -> (Result<Fetched, DownloadError>, u64) {
    let http = download::client(Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, largest, part) = (stop.clone(), largest.clone(), a.part.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::metadata(&part) {
                    largest.fetch_max(m.len(), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let out = tokio::time::timeout(within, download::fetch(&http, a))
        .await
        .unwrap_or_else(|_| panic!("fetch did not end within {within:?}"));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    (out, largest.load(Ordering::Relaxed))
}

/// A body without any length (`connection: close`) that does not stop at the results
/// document's `file:size`: it is cut off there — the part file never grows past it and
/// the server is not read much further than the socket buffers hold — and counts as
/// corrupt: downloaded again from zero, then `OversizedBody`. (Before: the whole
/// 256 MiB were written, then "restarting from zero", six times, then `DownloadFailed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_file_size_is_cut_off_and_corrupt() {
    const DECLARED: u64 = MIB;
    const SENT: u64 = 256 * MIB;
    let (base, seen, written) = raw_server(
        LOOPBACK,
        answer(|_, sock| {
            write_answer(
                sock,
                "HTTP/1.1 200 OK\r\netag: \"v1\"\r\nconnection: close\r\n\r\n".into(),
                b'x',
                SENT,
            )
        }),
    )
    .await;
    let t = target();
    let a = asset(&t, base.join("a.tif").unwrap(), None, Some(DECLARED));
    let (out, largest) = fetch_watched(&a, Duration::from_secs(60)).await;
    match out {
        Err(e @ DownloadError::Oversized { .. }) => {
            assert_eq!(e.code(), "OversizedBody");
            let text = e.to_string();
            assert!(
                text.contains("file:size") && text.contains(&DECLARED.to_string()),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(largest <= DECLARED, "the part file reached {largest} bytes");
    assert!(!t.part.exists(), "a corrupt part file is not kept");
    let requests = seen.lock().unwrap().len() as u64;
    assert_eq!(requests, 1 + u64::from(download::MAX_FULL_RESTARTS));
    // Each cut answer was read no further than the socket buffers reach (loopback
    // receive buffers grow to 32 MiB here), far from the 256 MiB sent each time.
    let read = written.load(Ordering::Relaxed);
    assert!(
        read < requests * 64 * MIB,
        "{read} bytes written by the server for {requests} requests"
    );
}

/// A resumed download: the `206` declares `bytes 1000-1999/2000` but its body (no
/// `Content-Length`) goes on for 256 MiB. Cut off at byte 2000; the next request
/// (from zero) gets an honest `200` and the file completes — at no time larger than
/// 2000 bytes. (Before: the 256 MiB were appended to the part file first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_longer_than_its_content_range_is_cut_off() {
    const TOTAL: u64 = 2000;
    let overrun = Arc::new(AtomicU64::new(0));
    let counter = overrun.clone();
    let (base, seen, _) = raw_server(
        LOOPBACK,
        answer(move |s, sock| {
            let counter = counter.clone();
            async move {
                if s.range.as_deref() == Some("bytes=1000-") {
                    let n = write_answer(
                        sock,
                        "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 1000-1999/2000\r\netag: \"v1\"\r\nconnection: close\r\n\r\n".into(),
                        b'x',
                        256 * MIB,
                    )
                    .await;
                    counter.fetch_add(n, Ordering::Relaxed);
                    n
                } else {
                    file(sock, b'x', TOTAL).await
                }
            }
        }),
    )
    .await;
    let t = target();
    std::fs::write(&t.part, vec![b'x'; 1000]).unwrap();
    download::Sidecar {
        key: "a.tif".into(),
        etag: Some("\"v1\"".into()),
        last_modified: None,
        size: Some(TOTAL),
    }
    .write(&t.sidecar)
    .unwrap();
    let a = asset(&t, base.join("a.tif").unwrap(), None, None);
    let (out, largest) = fetch_watched(&a, Duration::from_secs(60)).await;
    assert_eq!(out.unwrap(), Fetched::Complete);
    assert_eq!(std::fs::read(&t.part).unwrap(), vec![b'x'; TOTAL as usize]);
    assert!(largest <= TOTAL, "the part file reached {largest} bytes");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(seen[1].range, None, "{seen:?}");
    let read = overrun.load(Ordering::Relaxed);
    assert!(read < 64 * MIB, "the server wrote {read} bytes of the 206");
}

/// Sizes at the end of the `u64` range in `Content-Length`, `Content-Range` and
/// `file:size` (offset + length does not fit) panic nowhere: the bytes that came are
/// kept, the next answer (404) ends the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sizes_do_not_overflow() {
    let requests = Arc::new(AtomicU64::new(0));
    let count = requests.clone();
    let (base, seen, _) = raw_server(
        LOOPBACK,
        answer(move |_, sock| {
            let first = count.fetch_add(1, Ordering::Relaxed) == 0;
            async move {
                if first {
                    let head = "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 10-18446744073709551614/18446744073709551615\r\ncontent-length: 18446744073709551615\r\netag: \"v1\"\r\nconnection: close\r\n\r\n";
                    write_answer(sock, head.into(), b'x', 10).await
                } else {
                    status(sock, "404 Not Found").await
                }
            }
        }),
    )
    .await;
    let t = target();
    std::fs::write(&t.part, b"0123456789").unwrap();
    download::Sidecar {
        key: "a.tif".into(),
        etag: Some("\"v1\"".into()),
        last_modified: None,
        size: Some(u64::MAX),
    }
    .write(&t.sidecar)
    .unwrap();
    let a = asset(&t, base.join("a.tif").unwrap(), None, Some(u64::MAX));
    let (out, largest) = fetch_watched(&a, Duration::from_secs(60)).await;
    assert!(
        matches!(out, Err(DownloadError::Refused { status: 404 })),
        "{out:?}"
    );
    assert!(largest <= 20, "{largest}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].range.as_deref(), Some("bytes=10-"), "{seen:?}");
}

/// Redirect targets a backend may never send us: `0.0.0.0` (which Linux connects to
/// this machine), another scheme, a link-local address. Each is refused at once with
/// `RedirectRefused`, and nothing reaches the address behind `0.0.0.0`. (Before: the
/// download followed `0.0.0.0` to the listening server, and the others were retried as
/// transient failures until `DownloadFailed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_redirects_to_forbidden_targets_are_refused() {
    let (behind, behind_seen, _) =
        raw_server(LOOPBACK, answer(|_, sock| file(sock, b'x', 10))).await;
    let port = behind.port().unwrap();
    for location in [
        format!("http://0.0.0.0:{port}/a.tif"),
        format!("http://[::ffff:0.0.0.0]:{port}/a.tif"),
        "http://[fe80::1]:9/latest/meta-data/".to_string(),
        format!("ftp://127.0.0.1:{port}/a.tif"),
    ] {
        let to = location.clone();
        let (base, _, _) =
            raw_server(LOOPBACK, answer(move |_, sock| redirect(sock, to.clone()))).await;
        let t = target();
        let a = asset(&t, base.join("a.tif").unwrap(), None, Some(10));
        let started = Instant::now();
        let (out, _) = fetch_watched(&a, Duration::from_secs(60)).await;
        match out {
            Err(e @ DownloadError::RedirectRefused(_)) => {
                assert_eq!(e.code(), "RedirectRefused");
            }
            other => panic!("{location}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{location}");
    }
    assert!(
        behind_seen.lock().unwrap().is_empty(),
        "{:?}",
        behind_seen.lock().unwrap()
    );
}

/// A link that redirects to itself forever: refused after five hops, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_download_redirects_are_refused() {
    let (base, seen, _) =
        raw_server(LOOPBACK, answer(|_, sock| redirect(sock, "/again".into()))).await;
    let t = target();
    let a = asset(&t, base.join("a.tif").unwrap(), None, None);
    let (out, _) = fetch_watched(&a, Duration::from_secs(60)).await;
    assert!(
        matches!(&out, Err(DownloadError::RedirectRefused(m)) if m.contains("redirects")),
        "{out:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1 + download::MAX_REDIRECTS);
}

/// A link off loopback (this machine's own network address) may not redirect to
/// loopback (`127.0.0.1`, `localhost`): the local service behind it sees nothing.
/// (Before: followed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_off_loopback_cannot_redirect_to_loopback() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIPPED: this machine has no non-loopback address to listen on");
        return;
    };
    let (local, local_seen, _) = raw_server(LOOPBACK, answer(|_, sock| file(sock, b'x', 10))).await;
    let port = local.port().unwrap();
    for location in [
        format!("http://127.0.0.1:{port}/a.tif"),
        format!("http://localhost:{port}/a.tif"),
        format!("http://[::ffff:127.0.0.1]:{port}/a.tif"),
    ] {
        let to = location.clone();
        let (base, _, _) = raw_server(ip, answer(move |_, sock| redirect(sock, to.clone()))).await;
        let t = target();
        let a = asset(&t, base.join("a.tif").unwrap(), None, Some(10));
        let (out, _) = fetch_watched(&a, Duration::from_secs(60)).await;
        assert!(
            matches!(&out, Err(DownloadError::RedirectRefused(m)) if m.contains("loopback")),
            "{location}: {out:?}"
        );
    }
    assert!(local_seen.lock().unwrap().is_empty());
}

/// The asset link itself is judged by the redirect rule before any request: a backend
/// off loopback cannot point the daemon at a service on this machine, and no backend
/// at a link-local or metadata address. (Before: the link was fetched.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_links_are_judged_before_the_first_request() {
    let (local, local_seen, _) = raw_server(LOOPBACK, answer(|_, sock| file(sock, b'x', 10))).await;
    let t = target();
    let mut a = asset(&t, local.join("a.tif").unwrap(), None, Some(10));
    a.loopback_ok = false; // as for a backend off loopback
    let (out, _) = fetch_watched(&a, Duration::from_secs(20)).await;
    assert!(
        matches!(&out, Err(DownloadError::RedirectRefused(m))
            if m.contains("an asset link to 127.0.0.1") && m.contains("loopback")),
        "{out:?}"
    );
    assert!(local_seen.lock().unwrap().is_empty());
    for link in ["http://[fe80::1]:9/a.tif", "http://169.254.169.254/a.tif"] {
        let t = target();
        let a = asset(&t, Url::parse(link).unwrap(), None, Some(10));
        let (out, _) = fetch_watched(&a, Duration::from_secs(20)).await;
        assert!(
            matches!(&out, Err(DownloadError::RedirectRefused(m)) if m.contains("never followed")),
            "{link}: {out:?}"
        );
    }
}

/// The bearer goes to the link's own origin (after its refusal) and never further: a
/// redirect to another origin — another port on the same host, or another host —
/// arrives without it, and the download completes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_does_not_follow_a_download_redirect_to_another_origin() {
    let other_hosts: Vec<IpAddr> = [Some(LOOPBACK), non_loopback_ip()]
        .into_iter()
        .flatten()
        .collect();
    for other_ip in other_hosts {
        let (other, other_seen, _) =
            raw_server(other_ip, answer(|_, sock| file(sock, b'y', 1000))).await;
        let to = other.join("signed/a.tif?sig=1").unwrap().to_string();
        let (own, own_seen, _) = raw_server(
            // A backend on loopback or on this machine's address.
            if other_ip == LOOPBACK {
                LOOPBACK
            } else {
                other_ip
            },
            answer(move |s, sock| {
                let to = to.clone();
                async move {
                    if s.authorization.is_none() {
                        status(sock, "401 Unauthorized").await
                    } else {
                        redirect(sock, to).await
                    }
                }
            }),
        )
        .await;
        let t = target();
        let a = asset(
            &t,
            own.join("jobs/j-1/results/a.tif").unwrap(),
            Some("Bearer oidc/fake/SECRET-token"),
            Some(1000),
        );
        let (out, _) = fetch_watched(&a, Duration::from_secs(60)).await;
        assert_eq!(out.unwrap(), Fetched::Complete);
        assert_eq!(std::fs::read(&t.part).unwrap(), vec![b'y'; 1000]);
        let own_seen = own_seen.lock().unwrap().clone();
        assert_eq!(own_seen.len(), 2, "{own_seen:?}");
        assert_eq!(own_seen[0].authorization, None);
        assert_eq!(
            own_seen[1].authorization.as_deref(),
            Some("Bearer oidc/fake/SECRET-token")
        );
        let other_seen = other_seen.lock().unwrap().clone();
        assert_eq!(other_seen.len(), 1, "{other_seen:?}");
        assert_eq!(other_seen[0].authorization, None, "{other_seen:?}");
    }
}

// =====================================================================================
// API requests (the openEO adapter's client)
// =====================================================================================

/// The API client follows the same rule: a backend on loopback may not redirect to
/// `0.0.0.0` or a link-local address, one off loopback not to loopback; the request
/// fails as a protocol error naming the host, and nothing reaches the local service.
/// (Before: `0.0.0.0` and loopback were followed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_redirects_follow_the_same_rule() {
    let job = json!({"id": "j-1", "status": "running", "progress": 12.5}).to_string();
    let (local, local_seen, _) = raw_server(
        LOOPBACK,
        answer(move |_, sock| {
            let job = job.clone();
            async move {
                write_answer(
                    sock,
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{job}", job.len()),
                    0,
                    0,
                )
                .await
            }
        }),
    )
    .await;
    let port = local.port().unwrap();
    let mut cases = vec![
        (LOOPBACK, format!("http://0.0.0.0:{port}/jobs/j-1")),
        (LOOPBACK, "http://[fe80::1]:9/jobs/j-1".to_string()),
    ];
    if let Some(ip) = non_loopback_ip() {
        cases.push((ip, format!("http://127.0.0.1:{port}/jobs/j-1")));
        cases.push((ip, format!("http://localhost:{port}/jobs/j-1")));
    } else {
        eprintln!("SKIPPED (part): no non-loopback address to listen on");
    }
    for (ip, location) in cases {
        let to = location.clone();
        let (own, _) = {
            let (base, seen, _) = raw_server(
                ip,
                answer(move |s, sock| {
                    let to = to.clone();
                    async move {
                        if s.line.starts_with("GET /jobs/j-1 ") {
                            redirect(sock, to).await
                        } else {
                            status(sock, "404 Not Found").await
                        }
                    }
                }),
            )
            .await;
            (base, seen)
        };
        let b = OpenEoBackend::new(own.as_str().trim_end_matches('/'));
        b.set_bearer(Some(Bearer::oidc("fake", "SECRET-token")));
        let started = Instant::now();
        let e = b.job("j-1").await.expect_err(&location);
        let text = e.to_string();
        assert_eq!(e.code(), "BackendProtocol", "{location}: {e:?}");
        assert!(text.contains("refused"), "{location}: {text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{location}");
    }
    assert!(local_seen.lock().unwrap().is_empty());
}

// =====================================================================================
// Whole deliveries against the fake backend
// =====================================================================================

const ASSET: u64 = 4 * MIB;

async fn delivery(cfg: FakeConfig, root: &Path) -> (FakeHandle, TestDaemon, i64) {
    let cfg = cfg
        .with_timing(0.1, 0.2)
        .with_asset("openEO.tif", AssetSource::Generated { size: ASSET });
    let fake = fake_openeo::start(cfg).await.expect("the fake starts");
    let mut config = config_for(root, &fake.base_url(), 4);
    config.gdal_bin = Some(gdal_bin());
    let d = TestDaemon::start_with(config).await;
    let id = submit(&d, &pv_request(&fake.base_url(), "abuse")).await;
    (fake, d, id)
}

/// Entries of the results folder other than `.incoming`.
fn visible(results: &Path) -> Vec<String> {
    std::fs::read_dir(results)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".incoming")
                .collect()
        })
        .unwrap_or_default()
}

/// The largest `.part` file under `dir`, sampled until `stop`.
fn watch_parts(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut largest = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "part") {
                        largest = largest.max(e.metadata().map(|m| m.len()).unwrap_or(0));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        largest
    })
}

const ASSETS: &str = "/results/assets/";

/// Every download of the asset runs 256 MiB past its `file:size` (no `Content-Length`):
/// the delivery fails with `OversizedBody` after the restarts, the job stays
/// `finished`, nothing is published, the part file never grows past the declared
/// 4 MiB, and the fake was read only a little past it. (Before: every attempt wrote
/// 260 MiB, then `DownloadFailed` after six.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_asset_fails_as_corrupt_and_nothing_is_published() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default().with_fault(
        FaultRule {
            path_contains: Some(ASSETS.into()),
            ..FaultRule::oversize("GET /**", 256 * MIB)
        }
        .times(0),
    );
    let (fake, d, id) = delivery(cfg, root.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_parts(d.config.results_dir.clone(), stop.clone());
    let job = wait_results(&d, id, "failed", Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let largest = watcher.join().unwrap();
    assert_eq!(job["error"]["code"], "OversizedBody", "{job}");
    assert_eq!(job["status"], "finished");
    assert!(visible(&d.config.results_dir).is_empty());
    assert!(largest <= ASSET, "a part file reached {largest} bytes");
    let stats = fake.stats();
    let downloads = u64::from(download::MAX_FULL_RESTARTS) + 1;
    assert_eq!(stats.faults_fired, downloads, "{stats:?}");
    assert!(
        stats.oversize_bytes_sent < downloads * 64 * MIB,
        "{} extra bytes sent",
        stats.oversize_bytes_sent
    );
    d.stop().await;
}

/// A download cut short, then a resumed `206` that runs past its `Content-Range`:
/// cut off at the range's end, downloaded again from zero, and published intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_range_running_past_its_end_is_cut_off() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default()
        .with_fault(FaultRule {
            path_contains: Some(ASSETS.into()),
            ..FaultRule::truncate("GET /**", MIB)
        })
        .with_fault(FaultRule {
            path_contains: Some(ASSETS.into()),
            ..FaultRule::oversize("GET /**", 256 * MIB)
        });
    let (fake, d, id) = delivery(cfg, root.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_parts(d.config.results_dir.clone(), stop.clone());
    let job = wait_results(&d, id, "ready", Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let largest = watcher.join().unwrap();
    assert!(largest <= ASSET, "a part file reached {largest} bytes");
    let dir = PathBuf::from(job["results"]["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(dir.join("openEO.tif")).unwrap().len(),
        ASSET
    );
    let stats = fake.stats();
    assert_eq!(stats.faults_fired, 2, "{stats:?}");
    assert!(
        stats.oversize_bytes_sent < 64 * MIB,
        "{} extra bytes sent",
        stats.oversize_bytes_sent
    );
    d.stop().await;
}

/// An asset link that redirects to a link-local address: refused at once
/// (`RedirectRefused`), not retried as a network failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_redirect_to_a_link_local_address_fails_the_delivery() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig::default().with_fault(
        FaultRule {
            path_contains: Some(ASSETS.into()),
            ..FaultRule::redirect("GET /**", "http://[fe80::1]:9/latest/meta-data/")
        }
        .times(0),
    );
    let (fake, d, id) = delivery(cfg, root.path()).await;
    let job = wait_results(&d, id, "failed", Duration::from_secs(20)).await;
    assert_eq!(job["error"]["code"], "RedirectRefused", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("fe80::1") && m.contains("link-local")),
        "{job}"
    );
    assert_eq!(fake.stats().faults_fired, 1);
    assert!(visible(&d.config.results_dir).is_empty());
    d.stop().await;
}

/// A results document whose links point at a cloud metadata address: the delivery
/// fails at once with `RedirectRefused` naming the host, nothing is published, and the
/// daemon never connects there (a retried network failure would take minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_links_to_a_metadata_address_fail_the_delivery() {
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        asset_link_host: Some("169.254.169.254:80".into()),
        ..FakeConfig::default()
    };
    let (_fake, d, id) = delivery(cfg, root.path()).await;
    let job = wait_results(&d, id, "failed", Duration::from_secs(20)).await;
    assert_eq!(job["error"]["code"], "RedirectRefused", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("an asset link to 169.254.169.254")),
        "{job}"
    );
    assert!(visible(&d.config.results_dir).is_empty());
    d.stop().await;
}

/// Asset links that need the token (the backend's own route): the backend refuses the
/// first request (401), answers the one with the token with a redirect to another
/// origin — which never sees the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_redirected_to_another_origin_loses_the_bearer() {
    let (other, other_seen, _) =
        raw_server(LOOPBACK, answer(|_, sock| status(sock, "404 Not Found"))).await;
    let root = tempfile::tempdir().unwrap();
    let cfg = FakeConfig {
        unsigned_asset_links: true,
        ..FakeConfig::default()
    }
    .with_fault(
        FaultRule {
            path_contains: Some(ASSETS.into()),
            ..FaultRule::redirect("GET /**", other.join("bucket/openEO.tif").unwrap())
        }
        .after(1),
    );
    let (fake, d, id) = delivery(cfg, root.path()).await;
    let job = wait_results(&d, id, "failed", Duration::from_secs(20)).await;
    assert_eq!(job["error"]["code"], "AssetUnavailable", "{job}");
    let stats = fake.stats();
    assert_eq!(
        stats.count("GET", "/jobs/{job_id}/results/assets/{filename}"),
        2,
        "a refusal without the token, a redirect with it: {stats:?}"
    );
    let other_seen = other_seen.lock().unwrap().clone();
    assert_eq!(other_seen.len(), 1, "{other_seen:?}");
    assert!(other_seen[0].line.starts_with("GET /bucket/openEO.tif "));
    assert_eq!(other_seen[0].authorization, None, "{other_seen:?}");
    d.stop().await;
}
