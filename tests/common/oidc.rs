//! A real OpenID Connect provider for the login tests: `tests/oidc/server.mjs`, which runs
//! panva's `oidc-provider` from the npm registry (installed by `tests/run` with
//! `npm ci --prefix tests/oidc`), plus a "browser" that follows its redirects and submits
//! its device confirmation form, and a fake openEO backend that checks bearer tokens by
//! introspection at that provider.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use eodispatch::config::{BackendConfig, Config};
use fake_openeo::{FakeConfig, FakeHandle, OidcClient, OidcProvider, TokenCheck};
use serde_json::Value;

/// The public client people log in with (device, browser).
pub const PUBLIC_CLIENT: &str = "eodispatch-public";
/// A service account of the provider.
pub const ROBOT: &str = "ci-robot";
/// Its secret (as registered in server.mjs).
pub const ROBOT_SECRET: &str = "ci-robot-secret-0123456789abcdef";
/// Provider id the fake backend lists.
pub const PROVIDER_ID: &str = "testidp";

/// The provider process.
pub struct Oidc {
    /// Issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    child: std::process::Child,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Oidc {
    /// Starts the provider; access tokens live `access_ttl` seconds.
    pub fn start(access_ttl: u64) -> Oidc {
        Oidc::start_with(access_ttl, &[])
    }

    /// Like [`start`](Self::start) with more arguments (e.g. `--device-ttl 4`).
    pub fn start_with(access_ttl: u64, extra: &[&str]) -> Oidc {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OIDC provider is not installed: run `npm ci --prefix tests/oidc` \
             (tests/run does it)"
        );
        let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--access-ttl", &access_ttl.to_string()])
            .args(extra)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (apt install nodejs)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the provider never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the OIDC provider starts within 20 s");
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected first line from the provider: {line:?}"))
            .to_string();
        Oidc { issuer, child }
    }

    /// POSTs to one of the provider's `/_test/` routes.
    async fn control(&self, path: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    /// `GET /_test/stats`.
    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/_test/stats", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Successful token requests of `grant_type` so far.
    pub async fn grants(&self, grant_type: &str) -> u64 {
        self.stats().await["token"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }

    /// Forgets every grant and token, as an administrator revoking sessions.
    pub async fn revoke_all(&self) {
        self.control("/_test/revoke").await;
    }

    /// The next `n` pending device polls answer `slow_down`.
    pub async fn slow_down(&self, n: u32) {
        self.control(&format!("/_test/slow_down?n={n}")).await;
    }

    /// When the device polls arrived (ms since the epoch).
    pub async fn device_polls(&self) -> Vec<u64> {
        self.stats().await["device_polls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    }

    /// Forgets the access tokens only (refresh tokens stay valid).
    pub async fn revoke_access_tokens(&self) {
        self.control("/_test/revoke?what=access").await;
    }

    /// Every token value the provider issued so far (access, refresh, device codes...).
    pub async fn issued(&self) -> Vec<String> {
        let v: Value = reqwest::get(format!("{}/_test/issued", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    }

    /// The fake backend's configuration: this provider listed with the public client,
    /// tokens checked by introspection.
    pub fn fake_config(&self, queued: f64, running: f64) -> FakeConfig {
        let mut cfg = FakeConfig::default().with_timing(queued, running);
        cfg.token_check = TokenCheck::Introspect {
            url: format!("{}/token/introspection", self.issuer),
            client_id: "fake-openeo".into(),
            client_secret: "fake-openeo-introspection-secret".into(),
        };
        cfg.providers = Some(vec![OidcProvider {
            id: PROVIDER_ID.into(),
            issuer: self.issuer.clone(),
            title: "Test identity provider".into(),
            scopes: vec!["openid".into()],
            default_clients: vec![OidcClient {
                id: PUBLIC_CLIENT.into(),
                grant_types: vec![
                    "urn:ietf:params:oauth:grant-type:device_code+pkce".into(),
                    "refresh_token".into(),
                    "authorization_code+pkce".into(),
                ],
                redirect_urls: vec!["http://127.0.0.1/auth/callback".into()],
            }],
        }]);
        cfg
    }

    /// A fake backend for this provider.
    pub async fn fake(&self, queued: f64, running: f64) -> FakeHandle {
        fake_openeo::start(self.fake_config(queued, running))
            .await
            .expect("the fake backend starts")
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon configuration for `fake` with no token: the daemon must log in.
pub fn config_without_token(root: &Path, url: &str) -> Config {
    let mut c = Config::for_root(root);
    c.poll_interval_min_s = 0.1;
    c.poll_interval_max_s = 0.5;
    c.backends.insert(
        "fake".into(),
        BackendConfig {
            url: url.to_string(),
            max_running_jobs: Some(4),
            requests_per_second: Some(200.0),
            access_token: None,
            provider_id: None,
            ..BackendConfig::default()
        },
    );
    c
}

/// A browser: a cookie jar, following redirects (as a person clicking through).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(20))
        .build()
        .unwrap()
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

/// The user approves a device login: opens the verification page with the code filled
/// in, submits it, confirms, and (the provider signs the test user in) sees success.
pub async fn approve_device(verification_uri_complete: &str) {
    let b = browser();
    let page = b
        .get(verification_uri_complete)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = verification_uri_complete
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let xsrf = hidden(&page, "xsrf").expect("the code page has an xsrf field");
    let code = hidden(&page, "user_code").expect("the code page has the user code");
    let confirm = b
        .post(&action)
        .form(&[("xsrf", xsrf.as_str()), ("user_code", code.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let xsrf = hidden(&confirm, "xsrf").expect("the confirm page has an xsrf field");
    let done = b
        .post(&action)
        .form(&[
            ("xsrf", xsrf.as_str()),
            ("user_code", code.as_str()),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap();
    let status = done.status();
    let text = done.text().await.unwrap();
    assert!(
        status.is_success() && text.contains("Sign-in Success"),
        "device approval ended with {status}: {}",
        &text[..text.len().min(300)]
    );
}

/// Is a Secret Service usable? Without one the keyring tests skip, unless
/// `TESTS_REQUIRE_SECRET_SERVICE=1` (set by tests/run's keyring session).
pub async fn secret_service() -> bool {
    let required = std::env::var_os("TESTS_REQUIRE_SECRET_SERVICE").is_some_and(|v| v == "1");
    let ok = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        && eodispatch::auth::backend_tokens::BackendTokenStore::keyring()
            .probe()
            .await
            .is_ok();
    assert!(
        ok || !required,
        "TESTS_REQUIRE_SECRET_SERVICE=1 but no Secret Service answers"
    );
    if !ok {
        println!("skipped: no Secret Service (run under tests/lib/secret_service.sh)");
    }
    ok
}
