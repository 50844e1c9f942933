//! The results folder's contract as a check: every `job.json` and `task.json` a test
//! reads is validated against `docs/job.schema.json` and `docs/task.schema.json` (JSON
//! Schema 2020-12, the same files the GDAL helper's and the plugin's tests use), so that
//! what the daemon writes and what the documents promise cannot drift apart.
//!
//! Include with `#[path = "common/schema.rs"] mod schema;`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

/// `$id` of `docs/job.schema.json` (`docs/task.schema.json` refers to it by it).
pub const JOB_SCHEMA_ID: &str = "https://eodispatch.invalid/schemas/job.schema.json";

/// The two compiled schemas.
struct Schemas {
    job: jsonschema::Validator,
    task: jsonschema::Validator,
}

/// A schema of `docs/`, parsed.
pub fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A validator of `schema`, whose references to `job.schema.json` are resolved from the
/// file in `docs/` (nothing is fetched).
pub fn compile(schema: &Value) -> jsonschema::Validator {
    let registry = jsonschema::Registry::new()
        .add(JOB_SCHEMA_ID, load("job.schema.json"))
        .expect("the job schema's $id is a URI")
        .prepare()
        .expect("the job schema's references resolve");
    jsonschema::options()
        .with_registry(&registry)
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema compiles: {e}"))
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        job: compile(&load("job.schema.json")),
        task: compile(&load("task.schema.json")),
    })
}

/// What is wrong with `doc` under `validator`: one line per error (`/layers/0/kind:
/// ...`); empty when it is valid.
pub fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Errors of a `job.json` against `docs/job.schema.json`.
pub fn job_json_errors(doc: &Value) -> Vec<String> {
    errors(&schemas().job, doc)
}

/// Errors of a `task.json` against `docs/task.schema.json`.
pub fn task_json_errors(doc: &Value) -> Vec<String> {
    errors(&schemas().task, doc)
}

/// Panics, naming every error and the document, unless `doc` is a valid `job.json`.
#[track_caller]
pub fn assert_job_json(doc: &Value) {
    let errors = job_json_errors(doc);
    assert!(
        errors.is_empty(),
        "job.json breaks docs/job.schema.json:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

/// Panics, naming every error and the document, unless `doc` is a valid `task.json`.
#[track_caller]
pub fn assert_task_json(doc: &Value) {
    let errors = task_json_errors(doc);
    assert!(
        errors.is_empty(),
        "task.json breaks docs/task.schema.json:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

/// Validates a published folder: its `job.json`, or its `task.json` and the `job.json`
/// of every tile folder in it. Returns how many documents were checked.
#[track_caller]
pub fn assert_folder(dir: &Path) -> usize {
    let read = |p: &Path| -> Value {
        let text = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    if dir.join("task.json").is_file() {
        assert_task_json(&read(&dir.join("task.json")));
        let mut n = 1;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.join("job.json").is_file() {
                assert_job_json(&read(&p.join("job.json")));
                n += 1;
            }
        }
        n
    } else {
        assert_job_json(&read(&dir.join("job.json")));
        1
    }
}
