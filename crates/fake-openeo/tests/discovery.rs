//! Discovery, capabilities, the other public documents, CORS and authentication.

mod common;

use std::collections::HashSet;

use common::*;
use fake_openeo::{FakeConfig, TokenCheck, REMOTE_PROCESS_DEFINITION};
use serde_json::Value;

#[tokio::test]
async fn well_known_lists_the_versioned_api() {
    let fake = fake().await;
    let r = client()
        .get(format!("{}/.well-known/openeo", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["versions"][0]["url"], fake.api_url());
    assert_eq!(v["versions"][0]["api_version"], "1.2.0");
    assert!(fake.api_url().ends_with("/openeo/1.2"));
}

#[tokio::test]
async fn capabilities_with_and_without_trailing_slash() {
    let fake = fake().await;
    for url in [fake.api_url(), format!("{}/", fake.api_url())] {
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let c: Value = r.json().await.unwrap();
        assert_eq!(c["api_version"], "1.2.0");
        assert_eq!(c["stac_version"], "1.0.0");
        for key in ["backend_version", "id", "title", "description", "links"] {
            assert!(!c[key].is_null(), "{key} missing");
        }
        let conforms: Vec<&str> = c["conformsTo"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(conforms.contains(&REMOTE_PROCESS_DEFINITION));
        let endpoints = c["endpoints"].as_array().unwrap();
        let has = |path: &str, method: &str| {
            endpoints.iter().any(|e| {
                e["path"] == path && e["methods"].as_array().unwrap().iter().any(|m| m == method)
            })
        };
        assert!(has("/jobs", "POST"));
        assert!(has("/jobs", "GET"));
        assert!(has("/jobs/{job_id}", "PATCH"));
        assert!(has("/jobs/{job_id}/results", "DELETE"));
        assert!(has("/jobs/{job_id}/logs", "GET"));
        assert!(has("/credentials/oidc", "GET"));
        assert!(has("/me", "GET"));
    }
    // Other paths too: a trailing slash changes nothing.
    let (code, _) = get_json(&fake, "/jobs/").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn cors_headers_and_preflight() {
    let fake = fake().await;
    let r = client().get(fake.api_url()).send().await.unwrap();
    let expose = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for h in ["Location", "OpenEO-Identifier", "OpenEO-Costs", "Link"] {
        assert!(expose.contains(h), "{expose}");
    }
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{}/jobs", fake.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn documents_file_formats_processes_conformance_oidc() {
    let fake = fake().await;
    let (_, f) = get_json(&fake, "/file_formats").await;
    for fmt in ["GTiff", "netCDF", "GeoJSON", "JSON"] {
        assert!(f["output"][fmt].is_object(), "{fmt}");
    }
    let (_, p) = get_json(&fake, "/processes").await;
    let ids: Vec<&str> = p["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(ids.contains(&"load_collection") && ids.contains(&"save_result"));
    let (_, c) = get_json(&fake, "/conformance").await;
    assert!(c["conformsTo"].as_array().unwrap().len() >= 2);

    let (code, o) = get_json(&fake, "/credentials/oidc").await;
    assert_eq!(code, 200);
    let p = &o["providers"][0];
    assert_eq!(p["id"], "fake");
    assert_eq!(p["issuer"], "http://127.0.0.1:1/fake-issuer");
    assert_eq!(p["scopes"][0], "openid");
    let grants = p["default_clients"][0]["grant_types"].as_array().unwrap();
    assert!(grants
        .iter()
        .any(|g| g == "urn:ietf:params:oauth:grant-type:device_code+pkce"));
    assert!(grants.iter().any(|g| g == "refresh_token"));
    assert_eq!(p["default_clients"][0]["id"], "fake-client");
}

#[tokio::test]
async fn issuer_is_configurable() {
    let fake = fake_with(FakeConfig {
        issuer: "http://127.0.0.1:9999/realms/test/".into(),
        ..FakeConfig::default()
    })
    .await;
    let (_, o) = get_json(&fake, "/credentials/oidc").await;
    assert_eq!(
        o["providers"][0]["issuer"],
        "http://127.0.0.1:9999/realms/test"
    );
}

#[tokio::test]
async fn udp_files_are_served() {
    let fake = fake().await;
    let r = client()
        .get(fake.udp_url("eurac_pv_farm_detection"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "eurac_pv_farm_detection");
    let r = client()
        .get(fake.udp_url("nope.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

async fn me_status(fake: &fake_openeo::FakeHandle, auth: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{}/me", fake.api_url()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

#[tokio::test]
async fn auth_errors_are_openeo_errors() {
    let fake = fake().await;
    let (code, e) = me_status(&fake, None).await;
    assert_eq!(code, 401);
    assert_eq!(e["code"], "AuthenticationRequired");
    assert!(e["id"].is_string() && e["message"].is_string() && e["links"].is_array());
    for bad in [
        "Bearer abc",
        "Bearer oidc/unknown/abc",
        "Bearer oidc/fake/",
        "Basic dXNlcjpwYXNz",
        "Bearer basic/x/abc",
    ] {
        let (code, e) = me_status(&fake, Some(bad)).await;
        assert_eq!(code, 403, "{bad}");
        assert_eq!(e["code"], "TokenInvalid", "{bad}");
    }
    let (code, me) = me_status(&fake, Some(TOKEN)).await;
    assert_eq!(code, 200);
    assert_eq!(me["user_id"], "user");
    let (code, _) = me_status(&fake, Some("Bearer basic//sometoken")).await;
    assert_eq!(code, 200);
    // Job routes need a token as well.
    let r = client()
        .get(format!("{}/jobs", fake.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn static_tokens_are_users_and_jobs_are_per_user() {
    let tokens: HashSet<String> = ["alice-token", "bob-token"].map(String::from).into();
    let fake = fake_with(FakeConfig::default().with_token_check(TokenCheck::Static(tokens))).await;
    let (code, e) = me_status(&fake, Some("Bearer oidc/fake/mallory")).await;
    assert_eq!((code, e["code"].as_str()), (403, Some("TokenInvalid")));
    let (code, me) = me_status(&fake, Some("Bearer oidc/fake/alice-token")).await;
    assert_eq!(code, 200);
    assert_eq!(me["user_id"], "alice-token");

    let r = client()
        .post(format!("{}/jobs", fake.api_url()))
        .header("Authorization", "Bearer oidc/fake/alice-token")
        .json(&simple_job("alice's", "GTiff"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.headers()["openeo-identifier"]
        .to_str()
        .unwrap()
        .to_string();
    let r = client()
        .get(format!("{}/jobs/{id}", fake.api_url()))
        .header("Authorization", "Bearer oidc/fake/bob-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "JobNotFound");
    let r = client()
        .get(format!("{}/jobs", fake.api_url()))
        .header("Authorization", "Bearer oidc/fake/bob-token")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(fake.jobs()[0].user, "alice-token");
}

/// A tiny userinfo endpoint: token `good` is user `u-123`.
async fn userinfo_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/userinfo",
        get(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth == "Bearer good" {
                (
                    StatusCode::OK,
                    axum::Json(serde_json::json!({"sub": "u-123", "name": "Ursula"})),
                )
            } else {
                (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/userinfo", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn userinfo_token_check() {
    let (url, task) = userinfo_server().await;
    let fake =
        fake_with(FakeConfig::default().with_token_check(TokenCheck::Userinfo { url })).await;
    let (code, me) = me_status(&fake, Some("Bearer oidc/fake/good")).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["user_id"], "u-123");
    assert_eq!(me["name"], "Ursula");
    let (code, e) = me_status(&fake, Some("Bearer oidc/fake/bad")).await;
    assert_eq!(code, 403);
    assert_eq!(e["code"], "TokenInvalid");
    // Cached: still valid while the provider is gone.
    task.abort();
    let (code, _) = me_status(&fake, Some("Bearer oidc/fake/good")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openeo_errors() {
    let fake = fake().await;
    let (code, e) = get_json(&fake, "/nothing/here").await;
    assert_eq!(code, 404);
    assert_eq!(e["code"], "NotFound");
    let r = client()
        .put(format!("{}/jobs", fake.api_url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let e: Value = r.json().await.unwrap();
    assert!(e["code"].is_string());
}

#[tokio::test]
async fn tokens_can_be_revoked_at_run_time() {
    let fake = fake().await;
    assert_eq!(me_status(&fake, Some("Bearer oidc/fake/old")).await.0, 200);
    let r = client()
        .post(format!("{}/_fake/tokens", fake.base_url()))
        .json(&serde_json::json!({"valid": ["new"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, e) = me_status(&fake, Some("Bearer oidc/fake/old")).await;
    assert_eq!((code, e["code"].as_str()), (403, Some("TokenInvalid")));
    assert_eq!(me_status(&fake, Some("Bearer oidc/fake/new")).await.0, 200);
    fake.set_token_check(TokenCheck::Any);
    assert_eq!(me_status(&fake, Some("Bearer oidc/fake/old")).await.0, 200);
    fake.set_token_check(TokenCheck::Static(HashSet::new()));
    assert_eq!(me_status(&fake, Some("Bearer oidc/fake/old")).await.0, 403);
    fake.reset();
    assert_eq!(me_status(&fake, Some("Bearer oidc/fake/old")).await.0, 200);
}
