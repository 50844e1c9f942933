//! `config.toml` edited while the daemon runs: safe keys apply at once (backends and their
//! limits, poll intervals), an invalid file changes nothing.

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::time::Duration;

use common::TestDaemon;
use fake::{backend_state, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_limits_apply_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let config = eodispatch::config::Config::for_root(tmp.path());
    std::fs::create_dir_all(&config.config_dir).unwrap();
    let file = config.config_file();
    let d = TestDaemon::start_with(config).await;
    let url = "http://127.0.0.1:9";
    assert!(backend_state(&d, url).await.is_null());

    // A new backend with limits appears.
    std::fs::write(
        &file,
        format!("[backends.a]\nurl = \"{url}\"\nmax_running_jobs = 5\nrequests_per_second = 7\n"),
    )
    .unwrap();
    let b = wait_for("the new backend", Duration::from_secs(10), || async {
        let b = backend_state(&d, url).await;
        (!b.is_null()).then_some(b)
    })
    .await;
    assert_eq!(b["max_running_jobs"], 5, "{b}");

    // An invalid file changes nothing.
    std::fs::write(&file, "[backends.a\nurl = ").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(backend_state(&d, url).await["max_running_jobs"], 5);

    // A changed limit applies.
    std::fs::write(
        &file,
        format!("[backends.a]\nurl = \"{url}\"\nmax_running_jobs = 1\n"),
    )
    .unwrap();
    wait_for("the new limit", Duration::from_secs(10), || async {
        (backend_state(&d, url).await["max_running_jobs"] == 1).then_some(())
    })
    .await;
}
