//! What keeps asset downloads at disk speed (issue 13, point 9; the numbers are
//! `benches/download.sh`'s, in the README): a download that starts from zero writes a
//! new file instead of truncating the old one (ext4 writes back a file truncated to
//! zero when it is closed, `auto_da_alloc`, and the download waited for that), and the
//! transfer runs on a thread of its own, so it works from any runtime.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use eodispatch::results::download::{self, Asset, Fetched, Sidecar};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server answering every request with `200`, `len` bytes of `b'n'` and `ETag: "v2"`.
async fn server(len: usize) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/a.tif", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\netag: \"v2\"\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&vec![b'n'; len]).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// A part file of another version of the asset (its sidecar names ETag `"v1"`): the
/// server sends the whole new file (`200`), and the download writes it into a new
/// file (another inode), not into the old one truncated to zero. (Before: the same
/// inode, truncated with `set_len(0)`, which ext4 flushes on close.)
#[tokio::test]
async fn a_download_from_zero_writes_a_new_file() {
    let url = server(300_000).await;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("a.tif.part");
    let sidecar = dir.path().join("a.tif.part.json");
    std::fs::write(&part, vec![b'o'; 100_000]).unwrap();
    Sidecar {
        key: "a.tif".into(),
        etag: Some("\"v1\"".into()),
        last_modified: None,
        size: Some(300_000),
    }
    .write(&sidecar)
    .unwrap();
    let old = std::fs::metadata(&part).unwrap().ino();
    // Keep the old inode alive, so that a new file cannot get its number back.
    let _old_file = std::fs::File::open(&part).unwrap();
    let asset = Asset {
        key: "a.tif",
        url,
        auth: None,
        loopback_ok: true,
        part: part.clone(),
        sidecar,
        expected_size: Some(300_000),
        checksum: None,
        progress: Arc::new(AtomicU64::new(0)),
    };
    let http = download::client(Duration::from_secs(5));
    // A current-thread runtime, as `#[tokio::test]` has: the transfer has its own.
    let out = tokio::time::timeout(Duration::from_secs(30), download::fetch(&http, &asset))
        .await
        .unwrap();
    assert_eq!(out.unwrap(), Fetched::Complete);
    assert_eq!(std::fs::read(&part).unwrap(), vec![b'n'; 300_000]);
    assert_ne!(
        std::fs::metadata(&part).unwrap().ino(),
        old,
        "the part file was truncated instead of made anew"
    );
}

/// Dropping the download's future stops the transfer on its thread: the part file
/// stops growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_download_stops_it() {
    // A server that sends 1 MiB and then trickles forever.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/a.tif", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                let _ = sock.read(&mut chunk).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\netag: \"v\"\r\n\r\n";
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&vec![b't'; 1 << 20]).await;
                loop {
                    if sock.write_all(&[b't'; 1000]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("a.tif.part");
    let asset = Asset {
        key: "a.tif",
        url,
        auth: None,
        loopback_ok: true,
        part: part.clone(),
        sidecar: dir.path().join("a.tif.part.json"),
        expected_size: None,
        checksum: None,
        progress: Arc::new(AtomicU64::new(0)),
    };
    let http = download::client(Duration::from_secs(5));
    let r = tokio::time::timeout(Duration::from_millis(800), download::fetch(&http, &asset)).await;
    assert!(r.is_err(), "the download cannot have finished: {r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let len = std::fs::metadata(&part).unwrap().len();
    assert!(len >= 1 << 20, "{len}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        len,
        "still writing"
    );
}
