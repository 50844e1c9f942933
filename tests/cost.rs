//! Cost before and after a job, and budgets: `POST /estimate` over every service of the
//! bundled APEx catalogue (a table over every `cost_unit` variant), `max_cost` sent as
//! the openEO `budget`, the costs and usage the (fake) backend reports kept on the job
//! and summed on a task, `budget_per_day` refusing a job with `BudgetExceeded`, a task
//! holding back its tiles at its `max_cost`, and `PUT /budgets` writing `config.toml`.

mod common;
#[path = "common/fake.rs"]
mod fake;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestDaemon;
use fake::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(40);

/// Area of a longitude/latitude box on the sphere, km² (computed here independently of
/// the daemon's polygon formula).
fn box_km2(w: f64, s: f64, e: f64, n: f64) -> f64 {
    let r = 6371.0088_f64;
    r * r * (e - w).to_radians() * (n.to_radians().sin() - s.to_radians().sin())
}

/// The estimate table: every service of the catalogue priced for one box and one
/// month; each understood unit's amount checked against its own formula, every other
/// one `unknown` with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cost_unit_of_the_catalogue_is_estimated_or_said_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path()).await;
    let (s, services) = d.get_json("/services").await;
    assert_eq!(s, 200, "{services}");
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), 70);
    let (w, so, e, n) = (5.0, 51.0, 5.2, 51.1);
    let area = box_km2(w, so, e, n);
    let days = 30.0; // 2024-06-01 .. 2024-07-01
    let mut table: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for svc in services {
        let body = json!({
            "title": "estimate",
            "label": svc["label"],
            "service": {"endpoint": svc["endpoint"], "application": svc["application"],
                        "namespace": svc["namespace"]},
            "parameters": {
                "spatial_extent": {"west": w, "south": so, "east": e, "north": n},
                "temporal_extent": ["2024-06-01", "2024-07-01"]
            },
            "format": "gtiff"
        });
        let (s, est) = d.post_json("/estimate", &body).await;
        assert_eq!(s, 200, "{}: {est}", svc["id"]);
        assert_eq!(
            est["service"], svc["id"],
            "priced from its own record: {est}"
        );
        let price = svc["cost_estimate"].as_f64();
        let unit = svc["cost_unit"].as_str().unwrap_or("").to_string();
        let amount = est["amount"].as_f64();
        let expected: Option<f64> = match (price, unit.as_str()) {
            (Some(p), "platform credits per km²") => Some(p * area),
            (Some(p), "platform credits") => Some(p),
            (Some(p), u)
                if u.starts_with("platform credits per km² per observation")
                    || u.starts_with("platform credits per km² and observation") =>
            {
                Some(p * area * (days / 5.0_f64).ceil())
            }
            (Some(p), "platform credits per km² per year") => Some(p * area * days / 365.25),
            (Some(p), u) if u.contains("3 months") => Some(p * area * days / 30.436875 / 3.0),
            // 0.2° × cos(51°) ≈ 14 km, 0.1° ≈ 11 km: one S2 tile, one month.
            (Some(p), u) if u.contains("S2 tile") => Some(p),
            _ => None,
        };
        match expected {
            Some(x) => {
                let got = amount.unwrap_or_else(|| panic!("{}: no amount: {est}", svc["id"]));
                assert!(
                    (got - x).abs() <= 1e-3 * x.max(1.0),
                    "{} {unit}: {got} != {x}: {est}",
                    svc["id"]
                );
                assert_ne!(est["basis"], "unknown", "{est}");
                assert!(
                    est["explanation"].as_str().unwrap().contains(" = "),
                    "{est}"
                );
            }
            None => {
                assert_eq!(est["basis"], "unknown", "{} {unit:?}: {est}", svc["id"]);
                assert!(amount.is_none(), "{est}");
                assert!(
                    est["explanation"].as_str().is_some_and(|x| x.len() > 20),
                    "{est}"
                );
            }
        }
        let row = table
            .entry(if unit.is_empty() {
                "(none)".into()
            } else {
                unit.clone()
            })
            .or_insert((0, String::new()));
        row.0 += 1;
        row.1 = format!(
            "{:>10} {:<16} {:<8} {}",
            amount.map_or("-".into(), |a| format!("{a:.3}")),
            est["unit"].as_str().unwrap_or("-"),
            est["basis"].as_str().unwrap(),
            est["explanation"].as_str().unwrap()
        );
    }
    println!("cost_unit variants for a {area:.1} km² box and {days} days:");
    for (unit, (count, example)) in &table {
        println!("{count:>3} × {unit:<62} e.g. {example}");
    }
    // Every variant of the snapshot was met (the units are listed in job::cost's test).
    assert!(table.len() >= 10, "{table:?}");
    d.stop().await;
}

/// The PV request over `w..e`, `s..n`.
fn pv_box(url: &str, title: &str, max_cost: Option<f64>) -> Value {
    let mut b = pv_request(url, title);
    if let Some(m) = max_cost {
        b["max_cost"] = json!(m);
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_kept_max_cost_is_sent_and_a_daily_budget_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.1, 0.3).await;
    let mut config = config_for(dir.path(), &fake.base_url(), 2);
    let d = TestDaemon::start_with(config.clone()).await;

    // The PV service costs 0.001 credits per km² in the catalogue.
    let body = pv_box(&fake.base_url(), "priced", Some(5.0));
    let (s, est) = d.post_json("/estimate", &body).await;
    assert_eq!(s, 200, "{est}");
    assert_eq!(est["basis"], "per-area", "{est}");
    assert_eq!(est["unit"], "platform credits", "{est}");
    let area = est["quantity"]["area_km2"].as_f64().unwrap();
    assert!((25.0..32.0).contains(&area), "{est}");
    let amount = est["amount"].as_f64().unwrap();
    assert!((amount - 0.001 * area).abs() < 1e-6, "{est}");
    assert_eq!(est["budget"]["would_exceed"], Value::Null, "{est}");

    let id = submit(&d, &body).await;
    let job = wait_status(&d, id, "finished", LONG).await;
    assert_eq!(job["max_cost"], 5.0, "{job}");
    assert_eq!(job["estimate"]["amount"], est["amount"], "{job}");
    // The fake reports costs and usage once the job ended.
    let costs = job["costs"]
        .as_f64()
        .unwrap_or_else(|| panic!("costs: {job}"));
    assert!(costs > 0.5, "{job}");
    assert!(job["usage"]["cpu"]["value"].as_u64().is_some(), "{job}");
    // max_cost went out as the openEO budget.
    let remote = job["backend_job_id"].as_str().unwrap();
    let r: Value = reqwest::Client::new()
        .get(format!(
            "{}/jobs/{remote}",
            fake.api_url().trim_end_matches('/')
        ))
        .bearer_auth(format!("oidc/fake/{TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["budget"], 5.0, "{r}");

    // A job whose estimate exceeds its own max_cost is refused.
    let (s, p) = d
        .post_json(
            "/unit_jobs",
            &pv_box(&fake.base_url(), "too dear", Some(0.001)),
        )
        .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["code"], "BudgetExceeded", "{p}");
    assert_eq!(p["budget"], "max_cost", "{p}");

    // A daily budget: what was spent today (the first job's reported cost) plus the
    // estimate would go over: refused, naming the budget, spent and estimate.
    let budget = costs + amount / 2.0;
    let (s, b) = put_budget(&d, &fake.base_url(), Some(budget), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["per_day"], budget, "{b}");
    assert!(
        (b["spent_today"].as_f64().unwrap() - costs).abs() < 1e-6,
        "{b}"
    );
    let text = std::fs::read_to_string(d.config.config_file()).unwrap();
    assert!(text.contains("budget_per_day"), "{text}");
    let before = d.job_count().await;
    let (s, p) = d
        .post_json("/unit_jobs", &pv_box(&fake.base_url(), "over budget", None))
        .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["code"], "BudgetExceeded", "{p}");
    assert_eq!(p["budget"], "per_day", "{p}");
    assert!((p["spent"].as_f64().unwrap() - costs).abs() < 1e-6, "{p}");
    assert_eq!(p["estimate"], est["amount"], "{p}");
    assert_eq!(p["limit"], budget, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("budget_per_day"),
        "{p}"
    );
    assert_eq!(d.job_count().await, before, "nothing stored");
    let (_, est2) = d
        .post_json("/estimate", &pv_box(&fake.base_url(), "x", None))
        .await;
    assert_eq!(est2["budget"]["would_exceed"], "per_day", "{est2}");

    // Raised: accepted again; GET /budgets lists the backend.
    let (s, _) = put_budget(&d, &fake.base_url(), Some(budget + 10.0), Some(1000.0)).await;
    assert_eq!(s, 200);
    let (_, all) = d.get_json("/budgets").await;
    let mine = all
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == fake.base_url().trim_end_matches('/'))
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(mine["per_month"], 1000.0, "{all}");
    let (s, j) = d
        .post_json("/unit_jobs", &pv_box(&fake.base_url(), "fits", None))
        .await;
    assert_eq!(s, 201, "{j}");
    // Bad budgets are named.
    let (s, p) = d
        .http
        .put(d.url("/budgets"))
        .bearer_auth(&d.token)
        .json(&json!({"backend": "ftp://x", "per_day": -1, "extra": 1}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let p: Value = p.json().await.unwrap();
    assert_eq!(s, 422, "{p}");
    let names: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"extra"), "{p}");
    d.stop().await;
    // The budget survives a restart (it is in config.toml).
    config.backends.get_mut("fake").unwrap().budget_per_day = None;
    let loaded = eodispatch::config::Config::load_from(&[
        ("HOME".to_string(), dir.path().display().to_string()),
        (
            "EODISPATCH_CONFIG_DIR".to_string(),
            config.config_dir.display().to_string(),
        ),
    ])
    .unwrap();
    assert_eq!(
        loaded
            .backend_section(&fake.base_url())
            .and_then(|b| b.budget_per_day),
        Some(budget + 10.0)
    );
}

async fn put_budget(
    d: &TestDaemon,
    backend: &str,
    per_day: Option<f64>,
    per_month: Option<f64>,
) -> (u16, Value) {
    let r = d
        .http
        .put(d.url("/budgets"))
        .bearer_auth(&d.token)
        .json(&json!({"backend": backend, "per_day": per_day, "per_month": per_month}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_holds_back_its_tiles_at_its_max_cost_and_sums_their_costs() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(0.1, 0.2).await;
    let d = daemon_for(dir.path(), &fake, 10).await;
    // Four equal tiles of the PV box, each ~27 km² (0.001 credits per km²).
    let tile = json!({"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008});
    let body = json!({
        "title": "budgeted task",
        "label": "openeo",
        "service": {"endpoint": fake.base_url(), "application": PV_APP},
        "parameters": {"temporal_extent": ["2023-05-01", "2023-09-30"]},
        "format": "gtiff",
        "dimension": {"name": "spatial_extent", "values": [tile, tile, tile, tile]},
        "max_cost": 0.07
    });
    let (s, est) = d.post_json("/estimate", &body).await;
    assert_eq!(s, 200, "{est}");
    assert_eq!(est["quantity"]["tiles"], 4, "{est}");
    let per_tile = est["amount"].as_f64().unwrap() / 4.0;
    assert!(per_tile * 2.0 < 0.07 && per_tile * 3.0 > 0.07, "{est}");
    let (s, task) = d.post_json("/upscale_tasks", &body).await;
    assert_eq!(s, 201, "{task}");
    let tid = task["id"].as_i64().unwrap();
    assert_eq!(task["max_cost"], 0.07, "{task}");
    // Two tiles fit the budget; they run and finish; the other two wait, saying why.
    let t = wait_for(
        "two tiles finished and two waiting for budget",
        LONG,
        || async {
            let (_, t) = d.get_json(&format!("/upscale_tasks/{tid}")).await;
            let jobs = t["jobs"].as_array().unwrap();
            let finished = jobs.iter().filter(|j| j["status"] == "finished").count();
            let waiting = jobs
                .iter()
                .filter(|j| j["waiting"]["reason"] == "budget")
                .count();
            (finished == 2 && waiting == 2).then_some(t)
        },
    )
    .await;
    let waiting = t["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["waiting"]["reason"] == "budget")
        .unwrap();
    let why = waiting["waiting"]["message"].as_str().unwrap();
    assert!(why.contains("max_cost"), "{why}");
    // Only two jobs ever reached the backend.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fake_jobs = fake.jobs();
    assert_eq!(fake_jobs.len(), 2, "{fake_jobs:?}");
    // The task sums its finished tiles' reported costs.
    let mut sum = 0.0;
    for j in t["jobs"].as_array().unwrap() {
        let (_, full) = d.get_json(&format!("/unit_jobs/{}", j["id"])).await;
        sum += full["costs"].as_f64().unwrap_or(0.0);
    }
    let (_, t) = d.get_json(&format!("/upscale_tasks/{tid}")).await;
    assert!(sum > 0.0);
    assert!((t["costs"].as_f64().unwrap() - sum).abs() < 1e-9, "{t}");
    d.stop().await;
}
