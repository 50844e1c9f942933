//! Backend logins against a real OpenID Connect provider (panva's `oidc-provider` from the
//! npm registry, `tests/oidc/server.mjs`) and a fake openEO backend that checks every bearer
//! token by introspection at that provider; tokens kept in a real Secret Service
//! (gnome-keyring, when the tests run under `tests/lib/secret_service.sh` as `tests/run`
//! does; elsewhere the keyring tests skip unless TESTS_REQUIRE_SECRET_SERVICE=1).

mod common;
#[path = "common/fake.rs"]
mod fake;
#[path = "common/oidc.rs"]
mod oidc;

use std::time::Duration;

use common::TestDaemon;
use eodispatch::auth::backend_tokens::{BackendTokenStore, TokenKey};
use fake::{backend_state, pv_request, submit, wait_for, wait_results, wait_status, Events};
use oidc::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// What every test here needs: the identity provider, a fake backend checking tokens with
/// it, the backend's URL and a temporary root for the daemon.
struct World {
    idp: Oidc,
    fake: fake_openeo::FakeHandle,
    url: String,
    tmp: tempfile::TempDir,
}

impl World {
    /// Access tokens live `access_ttl` s (`extra`: more provider arguments); jobs are
    /// queued and running for `timing` seconds.
    async fn start(access_ttl: u64, extra: &[&str], timing: (f64, f64)) -> World {
        let idp = Oidc::start_with(access_ttl, extra);
        let fake = idp.fake(timing.0, timing.1).await;
        World {
            url: fake.base_url(),
            fake,
            idp,
            tmp: tempfile::tempdir().unwrap(),
        }
    }
}

/// `eodispatch serve` (the real binary) on `port` for the backend `url`, with short poll
/// intervals; output to `log` (or nowhere).
fn spawn_binary(
    root: &std::path::Path,
    port: u16,
    url: &str,
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> std::process::Child {
    let out = |log: Option<&std::path::Path>| match log {
        Some(p) => std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap(),
        ),
        None => std::process::Stdio::null(),
    };
    std::process::Command::new(env!("CARGO_BIN_EXE_eodispatch"))
        .arg("serve")
        .env("HOME", root)
        .envs(common::env_for(root, &format!("127.0.0.1:{port}")))
        .env("EODISPATCH_POLL_INTERVAL_MIN_S", "0.1")
        .env("EODISPATCH_POLL_INTERVAL_MAX_S", "0.5")
        .env("EODISPATCH_BACKENDS__FAKE__URL", url)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(out(log))
        .stderr(out(log))
        .spawn()
        .unwrap()
}

/// Waits until the daemon at `base` is healthy; returns its API token.
async fn wait_healthy(root: &std::path::Path, base: &str) -> String {
    let http = reqwest::Client::new();
    wait_for("the daemon", WAIT, || async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    std::fs::read_to_string(root.join("state/api-token"))
        .unwrap()
        .trim()
        .to_string()
}

async fn job(d: &TestDaemon, id: i64) -> Value {
    let (s, j) = d.get_json(&format!("/unit_jobs/{id}")).await;
    assert_eq!(s, 200, "{j}");
    j
}

/// Waits until job `id` waits for a login (`waiting.reason`, no error, not failed).
async fn wait_login_required(d: &TestDaemon, id: i64) -> Value {
    let j = wait_for("the job to wait for a login", WAIT, || async {
        let j = job(d, id).await;
        (j["waiting"]["reason"] == "login_required").then_some(j)
    })
    .await;
    assert_eq!(j["status"], "created", "{j}");
    assert!(j["error"].is_null(), "a waiting job has not failed: {j}");
    let message = j["waiting"]["message"].as_str().unwrap();
    assert!(
        message.contains("eodispatch login "),
        "says what to run: {j}"
    );
    j
}

/// Starts a device login and approves it like a person would; returns the login id.
async fn device_login(d: &TestDaemon, endpoint: &str) -> String {
    let (s, started) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": endpoint, "method": "device"}),
        )
        .await;
    assert_eq!(s, 202, "{started}");
    let login_id = started["login_id"].as_str().unwrap().to_string();
    approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    wait_logged_in(d, &login_id).await;
    login_id
}

async fn wait_logged_in(d: &TestDaemon, login_id: &str) {
    wait_for("the login to complete", WAIT, || async {
        let (s, v) = d.get_json(&format!("/auth/logins/{login_id}")).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            v["state"] == "pending" || v["state"] == "logged_in",
            "login ended {v}"
        );
        (v["state"] == "logged_in").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_lets_waiting_jobs_run_and_survives_a_restart() {
    if !secret_service().await {
        return;
    }
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let cfg = config_without_token(tmp.path(), &url);
    let d = TestDaemon::start_with(cfg.clone()).await;

    // Before any login: logged out, providers discovered, tokens would go to the keyring.
    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["state"], "logged_out", "{b}");
    assert_eq!(b["token_store"], "keyring");
    assert_eq!(b["providers"][0]["id"], PROVIDER_ID, "{b}");
    assert_eq!(b["providers"][0]["issuer"], idp.issuer.as_str());
    assert_eq!(b["capabilities"]["api_version"], "1.2.0", "{b}");
    // A job submitted now waits for a login: it is not failed.
    let waiting = submit(&d, &pv_request(&url, "before login")).await;
    let j = wait_login_required(&d, waiting).await;
    assert_eq!(j["status"], "created", "{j}");

    let events = Events::subscribe(&d).await;
    let (s, started) = d
        .post_json("/auth/login", &json!({"endpoint": url, "method": "device"}))
        .await;
    assert_eq!(s, 202, "{started}");
    assert_eq!(started["state"], "pending");
    assert_eq!(started["provider_id"], PROVIDER_ID);
    for k in [
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    ] {
        assert!(!started[k].is_null(), "{k} missing: {started}");
    }
    assert!(started.get("device_code").is_none(), "{started}");
    let login_id = started["login_id"].as_str().unwrap().to_string();
    assert_eq!(backend_state(&d, &url).await["login"]["state"], "pending");
    approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    wait_logged_in(&d, &login_id).await;

    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["state"], "logged_in", "{b}");
    assert_eq!(b["login"]["method"], "device");
    assert_eq!(b["login"]["provider_id"], PROVIDER_ID);
    assert_eq!(b["login"]["issuer"], idp.issuer.as_str());
    assert!(b["login"]["expires_at"].is_string(), "{b}");
    // The waiting job went on by itself, and a new one runs too.
    wait_status(&d, waiting, "finished", WAIT).await;
    let went_on: Vec<Value> = events
        .of_kind("job")
        .into_iter()
        .filter(|e| e["id"] == waiting && (e["status"] == "queued" || e["status"] == "running"))
        .collect();
    assert!(
        !went_on.is_empty() && went_on.iter().all(|e| e["waiting"].is_null()),
        "once it goes on, it waits for nothing: {went_on:?}"
    );
    let second = submit(&d, &pv_request(&url, "after login")).await;
    wait_status(&d, second, "finished", WAIT).await;
    let auth_events = events.of_kind("auth");
    assert!(
        auth_events
            .iter()
            .any(|e| e["login"]["state"] == "logged_in" && e["login_id"] == login_id.as_str()),
        "no auth event ending the login: {auth_events:?}"
    );
    // offline_access was asked for (a refresh token), with PKCE (the provider requires it).
    let stats = idp.stats().await;
    assert!(
        stats["scopes_requested"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s
                .as_str()
                .unwrap()
                .split(' ')
                .any(|x| x == "offline_access")),
        "{stats}"
    );
    assert_eq!(idp.grants("refresh_token").await, 0, "{stats}");
    drop(events);

    // Restart: the access token was in memory only; the refresh token in the keyring
    // gives a new one with exactly one refresh.
    d.stop().await;
    let d = TestDaemon::start_with(cfg).await;
    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["state"], "logged_in", "{b}");
    assert_eq!(b["login"]["method"], "device");
    let third = submit(&d, &pv_request(&url, "after restart")).await;
    wait_status(&d, third, "finished", WAIT).await;
    // Its results are fetched with the login too: log out once they are in, or the
    // delivery meets the logout, is refused, and the backend rightly needs a login.
    wait_results(&d, third, "ready", WAIT).await;
    assert_eq!(
        idp.grants("refresh_token").await,
        1,
        "{}",
        idp.stats().await
    );
    // Logging out removes the refresh token from the keyring.
    let (s, b) = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["login"]["state"], "logged_out", "{b}");
    let key = TokenKey::new(&idp.issuer, PUBLIC_CLIENT);
    assert_eq!(BackendTokenStore::keyring().get(&key).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_returns_to_the_callback_once() {
    if !secret_service().await {
        return;
    }
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;

    let (s, started) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": url, "method": "browser"}),
        )
        .await;
    assert_eq!(s, 202, "{started}");
    let auth_url = reqwest::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert!(auth_url
        .as_str()
        .starts_with(&format!("{}/auth?", idp.issuer)));
    let q: std::collections::HashMap<_, _> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], PUBLIC_CLIENT);
    assert_eq!(
        q["redirect_uri"],
        format!("http://127.0.0.1:{}/auth/callback", d.addr.port())
    );
    assert!(q["state"].len() >= 32);

    // The "browser" follows the provider's redirects back to the daemon.
    let b = browser();
    let r = b.get(auth_url.as_str()).send().await.unwrap();
    let landed = r.url().clone();
    let status = r.status();
    let page = r.text().await.unwrap();
    assert_eq!(landed.path(), "/auth/callback", "{landed}");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You can close this tab"), "{page}");
    wait_logged_in(&d, started["login_id"].as_str().unwrap()).await;
    let id = submit(&d, &pv_request(&url, "browser login")).await;
    wait_status(&d, id, "finished", WAIT).await;
    assert_eq!(backend_state(&d, &url).await["login"]["method"], "browser");

    // The state is single-use: the same redirect again is refused.
    let again = b.get(landed.as_str()).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("already used"));
    // A forged state is refused and changes nothing.
    let forged = reqwest::get(d.url("/auth/callback?state=forged&code=abc"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert_eq!(backend_state(&d, &url).await["login"]["state"], "logged_in");
    let _ = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_keep_the_secret_in_the_keyring_until_logout() {
    if !secret_service().await {
        return;
    }
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;
    let key = TokenKey::new(&idp.issuer, ROBOT);

    // A wrong secret is refused, and not echoed.
    let (s, p) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": url, "method": "client_credentials", "client_id": ROBOT,
                    "client_secret": "WRONG-SECRET-SENTINEL"}),
        )
        .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["code"], "LoginRefused");
    assert!(!p.to_string().contains("WRONG-SECRET-SENTINEL"), "{p}");
    assert_eq!(BackendTokenStore::keyring().get(&key).await.unwrap(), None);

    let (s, v) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": url, "method": "client_credentials", "client_id": ROBOT,
                    "client_secret": ROBOT_SECRET}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "logged_in");
    assert!(!v.to_string().contains(ROBOT_SECRET));
    assert_eq!(
        BackendTokenStore::keyring()
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        ROBOT_SECRET
    );
    let id = submit(&d, &pv_request(&url, "service account")).await;
    wait_status(&d, id, "finished", WAIT).await;
    wait_results(&d, id, "ready", WAIT).await; // fetched with the login, before the logout
    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["method"], "client_credentials", "{b}");
    assert!(!b.to_string().contains(ROBOT_SECRET));

    let (s, b) = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["login"]["state"], "logged_out");
    assert_eq!(BackendTokenStore::keyring().get(&key).await.unwrap(), None);
    // Without a login, a new job waits (the backend answers 401).
    let id = submit(&d, &pv_request(&url, "after logout")).await;
    wait_login_required(&d, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_with_an_expiring_token_refresh_once() {
    if !secret_service().await {
        return;
    }
    // Access tokens live 3 s: renewed 1.5 s before expiry.
    let World {
        idp,
        fake,
        url,
        tmp,
    } = World::start(3, &[], (0.1, 0.2)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;
    device_login(&d, &url).await;
    let id = submit(&d, &pv_request(&url, "logs source")).await;
    wait_status(&d, id, "finished", WAIT).await;
    // No job is active now, so the scheduler makes no calls: let the token go stale.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let before = idp.grants("refresh_token").await;
    let calls = (0..50).map(|_| {
        let http = d.http.clone();
        let u = d.url(&format!("/unit_jobs/{id}/logs"));
        let token = d.token.clone();
        async move {
            http.get(u)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = idp.grants("refresh_token").await;
    assert_eq!(after - before, 1, "{}", idp.stats().await);

    // A token the provider revoked early: the backend says 403 TokenInvalid, the daemon
    // renews once and retries, and the caller sees success.
    idp.revoke_access_tokens().await;
    fake.set_token_check(idp.fake_config(0.1, 0.2).token_check); // forget cached answers
    let before = idp.grants("refresh_token").await;
    let (s, v) = d.get_json(&format!("/unit_jobs/{id}/logs")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(idp.grants("refresh_token").await - before, 1);
    let _ = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_makes_jobs_wait_until_the_next_login() {
    if !secret_service().await {
        return;
    }
    let World {
        idp,
        fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;
    device_login(&d, &url).await;
    let events = Events::subscribe(&d).await;

    // The provider forgets every grant (an administrator ended the session).
    idp.revoke_all().await;
    fake.set_token_check(idp.fake_config(0.2, 0.4).token_check);
    let id = submit(&d, &pv_request(&url, "after revocation")).await;
    let j = wait_login_required(&d, id).await;
    assert_eq!(
        j["status"], "created",
        "the job waits, it does not fail: {j}"
    );
    let b = backend_state(&d, &url).await;
    assert_eq!(b["login"]["state"], "login_required", "{b}");
    assert_eq!(b["state"], "login_required", "{b}");
    wait_for("an auth event saying login_required", WAIT, || async {
        events
            .of_kind("auth")
            .iter()
            .any(|e| e["state"] == "login_required" && e["url"] == url.trim_end_matches('/'))
            .then_some(())
    })
    .await;
    // The dead refresh token was removed from the keyring.
    let key = TokenKey::new(&idp.issuer, PUBLIC_CLIENT);
    assert_eq!(BackendTokenStore::keyring().get(&key).await.unwrap(), None);
    // The job stays waiting...
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(job(&d, id).await["status"], "created");
    // ...until the user logs in again.
    device_login(&d, &url).await;
    wait_status(&d, id, "finished", WAIT).await;
    assert_eq!(backend_state(&d, &url).await["login"]["state"], "logged_in");
    let _ = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_requests_are_validated_and_the_callback_is_the_only_open_door() {
    let World {
        idp: _idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;

    let cases = [
        (json!({}), vec!["endpoint"]),
        (json!({"endpoint": "ftp://example.org"}), vec!["endpoint"]),
        (
            json!({"endpoint": url, "method": "password"}),
            vec!["method"],
        ),
        (
            json!({"endpoint": url, "method": "client_credentials"}),
            vec!["client_id", "client_secret"],
        ),
        (
            json!({"endpoint": url, "client_secret": "x"}),
            vec!["client_secret"],
        ),
        (json!({"endpoint": url, "token": "x"}), vec!["token"]),
        (json!({"endpoint": 5}), vec!["endpoint"]),
    ];
    for (body, fields) in cases {
        let (s, p) = d.post_json("/auth/login", &body).await;
        assert_eq!(s, 422, "{body} → {p}");
        let named: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{body} → {p}");
    }
    // An unknown provider is named.
    let (s, p) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": url, "provider_id": "nope"}),
        )
        .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["errors"][0]["name"], "provider_id", "{p}");
    assert!(p["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains(PROVIDER_ID));
    // An unreachable backend is a 503.
    let (s, p) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": format!("http://127.0.0.1:{}", common::free_port())}),
        )
        .await;
    assert_eq!(s, 503, "{p}");
    assert_eq!(p["code"], "BackendUnreachable");
    // Unknown login attempts.
    let (s, p) = d.get_json("/auth/logins/nope").await;
    assert_eq!(s, 404, "{p}");
    assert_eq!(p["code"], "LoginNotFound");

    let raw = |req: String| common::raw_status(&common::raw_http(d.addr, &req));
    let host = format!("127.0.0.1:{}", d.addr.port());
    // The callback needs no token and lets a browser in (Referer, Sec-Fetch-Site)...
    let s = raw(format!(
        "GET /auth/callback?state=x&code=y HTTP/1.1\r\nHost: {host}\r\nReferer: http://idp.example/\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(s, 400);
    // ...but not with a foreign Host (DNS rebinding), and nothing else opens up.
    let s = raw(format!(
        "GET /auth/callback?state=x HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\r\n",
        d.addr.port()
    ));
    assert_eq!(s, 403);
    let s = raw(format!(
        "GET /backends HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n",
        d.token
    ));
    assert_eq!(s, 403);
    let s = raw(format!(
        "GET /auth/logins/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(s, 401);
    // The out-of-the-box backend is listed.
    let (_, list) = d.get_json("/backends").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["url"] == "https://openeofed.dataspace.copernicus.eu"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_is_used_only_when_configured_and_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let World {
        idp: _idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let mut cfg = config_without_token(tmp.path(), &url);
    cfg.token_store = eodispatch::auth::backend_tokens::StoreKind::File;
    let d = TestDaemon::start_with(cfg.clone()).await;
    assert_eq!(backend_state(&d, &url).await["token_store"], "file");
    let (s, v) = d
        .post_json(
            "/auth/login",
            &json!({"endpoint": url, "method": "client_credentials", "client_id": ROBOT,
                    "client_secret": ROBOT_SECRET}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let file = cfg.token_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains(ROBOT_SECRET));
    let id = submit(&d, &pv_request(&url, "file store")).await;
    wait_status(&d, id, "finished", WAIT).await;
    let (s, _) = d.post_json("/auth/logout", &json!({"endpoint": url})).await;
    assert_eq!(s, 200);
    assert!(!std::fs::read_to_string(&file)
        .unwrap()
        .contains(ROBOT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keyring_is_a_clear_error_with_a_remedy() {
    let World {
        idp: _idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let child = common::Child::start_with_env(
        tmp.path(),
        &[
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus"),
            ("EODISPATCH_BACKENDS__FAKE__URL", url.as_str()),
        ],
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/auth/login", child.addr))
        .bearer_auth(child.token())
        .json(
            &json!({"endpoint": url, "method": "client_credentials", "client_id": ROBOT,
                      "client_secret": ROBOT_SECRET}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "TokenStoreUnavailable", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("gnome-keyring") && detail.contains("token_store"),
        "the error should say what to install or configure: {detail}"
    );
    assert!(!p.to_string().contains(ROBOT_SECRET));
}

/// Every file under `dir`, recursively, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_logs_database_answers_or_results() {
    if !secret_service().await {
        return;
    }
    // Access tokens live 3 s, jobs run 4 s: the scenario includes refreshes.
    let World {
        idp,
        fake,
        url,
        tmp,
    } = World::start(3, &[], (0.3, 4.0)).await;
    let root = tmp.path();
    let port = common::free_port();
    let log_path = root.join("daemon.log");
    let mut child = spawn_binary(
        root,
        port,
        &url,
        &[("EODISPATCH_LOG", "debug")],
        Some(&log_path),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let token = wait_healthy(root, &base).await;
    // Everything the API says goes into `answers`.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        let answers = answers.clone();
        async move {
            let mut req = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            answers.lock().unwrap().push_str(&text);
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    // The event stream, recorded throughout.
    let sse = {
        let r = http
            .get(format!("{base}/events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let answers = answers.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            let mut s = r.bytes_stream();
            while let Some(Ok(chunk)) = s.next().await {
                answers
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        })
    };

    // A service-account login first (its secret must stay in the keyring); then
    // a person logs in (device) over it.
    let (s, v) = call(
        reqwest::Method::POST,
        "/auth/login".into(),
        Some(json!({"endpoint": url, "method": "client_credentials",
                    "client_id": ROBOT, "client_secret": ROBOT_SECRET})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Login (device), submit, refresh while the job runs, results and logs.
    let (s, started) = call(
        reqwest::Method::POST,
        "/auth/login".into(),
        Some(json!({"endpoint": url, "method": "device"})),
    )
    .await;
    assert_eq!(s, 202, "{started}");
    approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    let login = format!("/auth/logins/{}", started["login_id"].as_str().unwrap());
    wait_for("login", WAIT, || async {
        (call(reqwest::Method::GET, login.clone(), None).await.1["state"] == "logged_in")
            .then_some(())
    })
    .await;
    let (s, j) = call(
        reqwest::Method::POST,
        "/unit_jobs".into(),
        Some(pv_request(&url, "sentinel run")),
    )
    .await;
    assert_eq!(s, 201, "{j}");
    let id = j["id"].as_i64().unwrap();
    wait_for("the job to finish", Duration::from_secs(40), || async {
        let (_, j) = call(reqwest::Method::GET, format!("/unit_jobs/{id}"), None).await;
        (j["status"] == "finished").then_some(())
    })
    .await;
    assert!(
        idp.grants("refresh_token").await >= 1,
        "the scenario must include a refresh: {}",
        idp.stats().await
    );
    // Renewed ahead of expiry: the backend never saw an expired token while the job ran.
    let st = fake.stats();
    assert_eq!(st.statuses.get(&403), None, "{:?}", st.statuses);
    assert_eq!(st.statuses.get(&401), None, "{:?}", st.statuses);
    for path in [
        format!("/unit_jobs/{id}/results"),
        format!("/unit_jobs/{id}/logs"),
        "/backends".to_string(),
        "/jobs_status".to_string(),
        "/unit_jobs".to_string(),
    ] {
        let (s, v) = call(reqwest::Method::GET, path.clone(), None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    // Failure: the provider revokes everything; the next job waits for a login.
    idp.revoke_all().await;
    fake.set_token_check(idp.fake_config(0.3, 4.0).token_check);
    let (_, j) = call(
        reqwest::Method::POST,
        "/unit_jobs".into(),
        Some(pv_request(&url, "after revocation")),
    )
    .await;
    let id2 = j["id"].as_i64().unwrap();
    wait_for("the job to wait for a login", WAIT, || async {
        let (_, j) = call(reqwest::Method::GET, format!("/unit_jobs/{id2}"), None).await;
        (j["waiting"]["reason"] == "login_required").then_some(())
    })
    .await;
    let (_, b) = call(reqwest::Method::GET, "/backends".into(), None).await;
    assert!(b.to_string().contains("login_required"), "{b}");
    let (s, _) = call(
        reqwest::Method::POST,
        "/auth/logout".into(),
        Some(json!({"endpoint": url})),
    )
    .await;
    assert_eq!(s, 200);
    sse.abort();
    // Stop the daemon cleanly so the log and the database are complete.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let mut secrets = idp.issued().await;
    secrets.push(ROBOT_SECRET.to_string());
    secrets.retain(|s| s.len() >= 16);
    assert!(
        secrets.len() >= 6,
        "too few tokens issued to be a fair test: {}",
        secrets.len()
    );
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log_text.contains("logged in"),
        "the log is not the daemon's: {log_text}"
    );
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("daemon log".into(), log_text.into_bytes()),
        (
            "API answers".into(),
            answers.lock().unwrap().clone().into_bytes(),
        ),
    ];
    for (p, bytes) in files_under(&root.join("state"))
        .into_iter()
        .chain(files_under(&root.join("results")))
        .chain(files_under(&root.join("config")))
    {
        haystacks.push((p.display().to_string(), bytes));
    }
    assert!(
        haystacks.iter().any(|(n, _)| n.ends_with("eodispatch.db")),
        "the database was not scanned"
    );
    for (name, bytes) in &haystacks {
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a token ({}…) was found in {name}",
                &s[..6]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_with_each_flow_and_out() {
    if !secret_service().await {
        return;
    }
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let daemon = common::Child::start_with_env(
        tmp.path(),
        &[("EODISPATCH_BACKENDS__FAKE__URL", url.as_str())],
    );
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_eodispatch"));
        c.args(args)
            .env("HOME", tmp.path())
            .envs(common::env_for(tmp.path(), &daemon.addr.to_string()))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        c
    };
    let run = |mut c: std::process::Command, stdin: &str| {
        use std::io::Write as _;
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // Client credentials: the secret comes from stdin, never argv.
    let (code, _, err) = run(
        cli(&["login", &url, "--client-credentials", "--client-id", ROBOT]),
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("standard input"), "{err}");
    let (code, out, err) = run(
        cli(&["login", &url, "--client-credentials", "--client-id", ROBOT]),
        &format!("{ROBOT_SECRET}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Logged in"), "{out}");
    let (code, out, _) = run(cli(&["backends"]), "");
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.contains(url.trim_end_matches('/')))
        .unwrap();
    assert!(
        line.contains("logged_in") && line.contains("keyring"),
        "{out}"
    );

    // Device: the CLI prints the page and the code, then waits for the person.
    let mut c = cli(&["login", &url, "--no-browser"]);
    let mut child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let page = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the CLI prints the page");
        let t = line.trim();
        if t.starts_with("http") && t.contains("user_code=") {
            break t.to_string();
        }
    };
    approve_device(&page).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Logged in"));
    let (_, out, _) = run(cli(&["backends", "--json"]), "");
    let list: Value = serde_json::from_str(&out).unwrap();
    let b = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["url"] == url.trim_end_matches('/'))
        .unwrap();
    assert_eq!(b["login"]["method"], "device", "{b}");
    // The service account's secret was replaced by the device login, so it left the keyring.
    assert_eq!(
        BackendTokenStore::keyring()
            .get(&TokenKey::new(&idp.issuer, ROBOT))
            .await
            .unwrap(),
        None
    );

    let (code, out, err) = run(cli(&["logout", &url]), "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed from the keyring"), "{out}");
    assert_eq!(
        BackendTokenStore::keyring()
            .get(&TokenKey::new(&idp.issuer, PUBLIC_CLIENT))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_polling_honours_slow_down_and_ends_when_the_code_expires() {
    // No keyring needed: nothing is stored unless a login completes.
    let World {
        idp: _idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &["--device-ttl", "4"], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;

    // Expiry: nobody approves; the attempt ends `expired`, the backend stays logged out.
    let (s, started) = d
        .post_json("/auth/login", &json!({"endpoint": url, "method": "device"}))
        .await;
    assert_eq!(s, 202, "{started}");
    assert_eq!(started["expires_in"], 4);
    let path = format!("/auth/logins/{}", started["login_id"].as_str().unwrap());
    let ended = wait_for("the code to expire", Duration::from_secs(15), || async {
        let (_, v) = d.get_json(&path).await;
        (v["state"] != "pending").then_some(v)
    })
    .await;
    assert_eq!(ended["state"], "expired", "{ended}");
    assert!(ended["error"].as_str().unwrap().contains("expired"));
    assert_eq!(
        backend_state(&d, &url).await["login"]["state"],
        "logged_out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_polling_slows_down_when_told() {
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let d = TestDaemon::start_with(config_without_token(tmp.path(), &url)).await;
    idp.slow_down(1).await;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (s, started) = d
        .post_json("/auth/login", &json!({"endpoint": url, "method": "device"}))
        .await;
    assert_eq!(s, 202, "{started}");
    let interval_ms = started["interval"].as_u64().unwrap() * 1000;
    let polls = wait_for("two polls", Duration::from_secs(30), || async {
        let p = idp.device_polls().await;
        (p.len() >= 2).then_some(p)
    })
    .await;
    // The first poll waits one interval; after `slow_down` the interval grows by 5 s.
    assert!(polls[0] - t0 >= interval_ms - 100, "{polls:?} from {t0}");
    let gap = polls[1] - polls[0];
    assert!(
        gap >= interval_ms + 5000 - 100,
        "poll gap after slow_down was {gap} ms"
    );
    // The attempt is still pending (slow_down is not an error).
    let (_, v) = d
        .get_json(&format!(
            "/auth/logins/{}",
            started["login_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(v["state"], "pending", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_storing_a_rotated_refresh_token_needs_no_new_login() {
    if !secret_service().await {
        return;
    }
    // Tokens live 3 s and are renewed 1.5 s ahead; the provider rotates refresh tokens and
    // treats reuse of an old one as theft (it revokes the grant).
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3, &[], (0.2, 0.4)).await;
    let root = tmp.path();
    let port = common::free_port();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = spawn_binary(
        root,
        port,
        &url,
        &[("EODISPATCH_FAILPOINT", "refresh:after_store")],
        None,
    );
    let token = wait_healthy(root, &base).await;
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post("/auth/login", json!({"endpoint": url, "method": "device"}))
        .await
        .unwrap();
    let started: Value = r.json().await.unwrap();
    approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    let login = format!(
        "{base}/auth/logins/{}",
        started["login_id"].as_str().unwrap()
    );
    wait_for("login", WAIT, || async {
        let v: Value = http
            .get(&login)
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["state"] == "logged_in").then_some(())
    })
    .await;
    // Let the access token go stale, then give the daemon work: it refreshes, stores
    // the rotated refresh token and dies at the failpoint.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = post("/unit_jobs", pv_request(&url, "across a crash"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(
        !status.success(),
        "the daemon should have aborted at the failpoint"
    );
    assert_eq!(idp.grants("refresh_token").await, 1);

    // Restarted: the stored (rotated) refresh token works; no new login.
    let mut second = spawn_binary(root, port, &url, &[], None);
    wait_healthy(root, &base).await;
    let job = wait_for("the job to finish", WAIT, || async {
        let v: Value = http
            .get(format!("{base}/unit_jobs/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["status"] == "finished" || v["waiting"]["reason"] == "login_required").then_some(v)
    })
    .await;
    assert_eq!(job["status"], "finished", "{job}");
    assert!(idp.grants("refresh_token").await >= 2);
    assert_eq!(
        idp.stats().await["token"]["refresh_token:invalid_grant"],
        Value::Null
    );
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_login_example_works_as_written() {
    if !secret_service().await {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Log in to a backend").unwrap()..];
    let section = &section[..section[1..].find("\n## ").unwrap()];
    let block = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("/auth/login"))
        .expect("the curl block");
    let World {
        idp,
        fake: _fake,
        url,
        tmp,
    } = World::start(3600, &[], (0.2, 0.4)).await;
    let root = tmp.path();
    let port = common::free_port();
    let mut daemon = spawn_binary(root, port, &url, &[], None);
    wait_healthy(root, &format!("http://127.0.0.1:{port}")).await;
    let script = block
        .replace(
            "https://openeofed.dataspace.copernicus.eu",
            url.trim_end_matches('/'),
        )
        .replace("127.0.0.1:8421", &format!("127.0.0.1:{port}"))
        .replace("sleep 2", "sleep 0.2");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_eodispatch"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut child = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("HOME", root)
        .envs(common::env_for(root, &format!("127.0.0.1:{port}")))
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first line is the daemon's answer: open the page it names, as a person would.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let Ok(first) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no login answer; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let started: Value = serde_json::from_str(&first).expect("a JSON line");
    approve_device(started["verification_uri_complete"].as_str().unwrap()).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // The reader thread may still hold the last lines: read until it sees the end of stdout.
    let rest: Vec<String> = tokio::task::spawn_blocking(move || rx.iter().collect())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backends: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    let b = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["url"] == url.trim_end_matches('/'))
        .unwrap();
    assert_eq!(b["login"]["state"], "logged_in", "{b}");
    let _ = idp.stats().await;
    let _ = daemon.kill();
    let _ = daemon.wait();
}
