//! The OpenAPI document (`GET /openapi.json`) states the contract the daemon keeps: the
//! request bodies' schemas accept exactly what the request parser accepts (checked here
//! on a corpus of bodies and URLs with a JSON Schema validator), every operation lists
//! the answers of the layers in front of it (401, 403, ...), and the error codes are an
//! enum naming every code. `tests/schemathesis/run.sh` checks the same contract against
//! the running daemon with generated requests.

use eodispatch::api::problem::ErrorCode;
use eodispatch::job::validate::{check_http_url, parse_job_request, parse_task_request};
use serde_json::{json, Value};

/// A validator for the component schema `name` of the document.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn doc() -> Value {
    serde_json::to_value(eodispatch::api::openapi()).unwrap()
}

fn job() -> Value {
    json!({"title": "NDVI", "label": "openeo",
        "service": {"endpoint": "https://openeo.example.org",
                    "application": "https://example.org/udp.json"},
        "parameters": {"spatial_extent": {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1}},
        "format": "gtiff"})
}

/// `base` with `/pointer` set to `v` (`Value::Null` as a marker removes it when `remove`).
fn with(base: &Value, pointer: &str, v: Option<Value>) -> Value {
    let mut out = base.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let m = out.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match v {
        Some(v) => {
            m.insert(key.to_string(), v);
        }
        None => {
            m.shift_remove(key);
        }
    }
    out
}

#[test]
fn job_and_task_schemas_accept_what_the_parser_accepts() {
    let doc = doc();
    let job_schema = validator(&doc, "JobRequestBody");
    let task_schema = validator(&doc, "TaskRequestBody");
    let base = job();
    let mut bodies = vec![base.clone()];
    for (ptr, v) in [
        ("/title", Some(json!(""))),
        ("/title", Some(json!("   "))),
        ("/title", Some(json!("\u{3000}\u{a0}"))),
        ("/title", Some(json!("\u{1c}"))),
        ("/title", Some(json!("x".repeat(500)))),
        ("/title", Some(json!("x".repeat(501)))),
        ("/title", Some(json!(3))),
        ("/title", None),
        ("/label", Some(json!("wps"))),
        ("/label", Some(json!("ogc_api_process"))),
        ("/format", Some(json!("GTiff"))),
        ("/format", Some(json!("netcdf"))),
        ("/parameters", Some(json!([]))),
        ("/parameters", Some(json!({}))),
        ("/max_cost", Some(json!(0))),
        ("/max_cost", Some(json!(1e12))),
        ("/max_cost", Some(json!(1.5e12))),
        ("/max_cost", Some(json!(-1))),
        ("/max_cost", Some(Value::Null)),
        ("/max_cost", Some(json!("5"))),
        ("/colour", Some(json!("red"))),
        ("/service/endpoint", Some(json!(""))),
        ("/service/endpoint", Some(json!("ftp://x"))),
        ("/service/application", Some(json!(" "))),
        ("/service/application", Some(json!("s1-coherence"))),
        ("/service/namespace", Some(json!("ns"))),
        ("/service/namespace", Some(Value::Null)),
        ("/service/namespace", Some(json!(1))),
        ("/service/extra", Some(json!(1))),
        ("/service", None),
    ] {
        bodies.push(with(&base, ptr, v));
    }
    for body in &bodies {
        assert_eq!(
            job_schema.is_valid(body),
            parse_job_request(body).is_ok(),
            "schema and parser disagree on {body}"
        );
    }
    let task = with(
        &base,
        "/dimension",
        Some(json!({"name": "threshold", "values": [1, "a", {"x": 1}]})),
    );
    let mut tasks = vec![task.clone()];
    for (ptr, v) in [
        ("/dimension/name", Some(json!(" "))),
        ("/dimension/values", Some(json!([]))),
        ("/dimension/values", Some(json!(vec![0; 10_001]))),
        ("/dimension/values", Some(json!("x"))),
        ("/dimension/extra", Some(json!(1))),
        ("/mosaic", Some(json!("cog"))),
        ("/mosaic", Some(json!("tif"))),
        ("/mosaic", Some(Value::Null)),
        ("/dimension", None),
    ] {
        tasks.push(with(&task, ptr, v));
    }
    for body in &tasks {
        assert_eq!(
            task_schema.is_valid(body),
            parse_task_request(body).is_ok(),
            "schema and parser disagree on {body}"
        );
    }
}

#[test]
fn the_url_pattern_is_the_url_check() {
    let doc = doc();
    let pattern =
        doc["components"]["schemas"]["ServiceBody"]["properties"]["endpoint"]["pattern"].clone();
    let schema = json!({"type": "string", "pattern": pattern});
    let v = jsonschema::validator_for(&schema).unwrap();
    for url in [
        "https://openeo.example.org",
        "HTTP://a",
        "http://a:0",
        "http://a:65535/x?y#z",
        "http://a:65536",
        "http://a:00080",
        "http://a:",
        "http://a:1:2",
        "http://[::1]:8080/p",
        "http://[::1]x",
        "http://[zz]",
        "http://[",
        "http://",
        "http:///p",
        "http://user:pw@host",
        "http://h st",
        "http://host/a b",
        "http://host/\u{7f}",
        "http://host/\u{2003}",
        "http://hôst.example/ü",
        "http://a_b~c%20.d-e",
        "http://a,b",
        "https://a/b://c",
        "ftp://a",
        "https:/a",
        "a",
        "",
    ] {
        assert_eq!(
            v.is_valid(&json!(url)),
            check_http_url(url).is_ok(),
            "pattern and check disagree on {url:?}"
        );
    }
}

#[test]
fn every_operation_states_the_answers_of_the_layers_in_front_of_it() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            assert!(has("403"), "{method} {path}: no 403");
            let public = ["/health", "/auth/callback"].contains(&path.as_str())
                || path.starts_with("/files/");
            assert_eq!(has("401"), !public, "{method} {path}: 401");
            if ["post", "put", "delete", "patch"].contains(&method.as_str()) {
                assert!(has("413") && has("415"), "{method} {path}: 413/415");
            }
            if op.get("requestBody").is_some() || path.contains('{') {
                assert!(has("400"), "{method} {path}: 400");
            }
        }
    }
}

#[test]
fn error_codes_are_an_enum_of_every_code() {
    let doc = doc();
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all);
    // `ProblemBody` is an `allOf` (its extra members are flattened): look for `code`.
    let problem = doc["components"]["schemas"]["ProblemBody"].to_string();
    assert!(
        problem.contains(r##""code":{"$ref":"#/components/schemas/ErrorCode""##),
        "{problem}"
    );
    // Every code written in the daemon's source is one of them.
    let mut missing = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                // `Problem::new(StatusCode::X, "Code", ...)` and `code: "Code"` of a conflict.
                let after_status = i > 0 && lines[i - 1].trim_start().starts_with("StatusCode::");
                let conflict = line.trim_start().starts_with("code: \"")
                    && !line.contains(".into()")
                    && !line.contains(".to_string()");
                if !(after_status || conflict) {
                    continue;
                }
                if let Some(code) = line.split('"').nth(1) {
                    if code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && code.chars().all(|c| c.is_ascii_alphanumeric())
                        && ErrorCode::parse(code).is_none()
                    {
                        missing.push(format!("{}:{}: {code}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "codes missing from ErrorCode: {missing:#?}"
    );
}
