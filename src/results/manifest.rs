//! The two documents written into every job folder, built from data (no I/O):
//!
//! - `results.json`: the backend's STAC results document with each asset's `href`
//!   made relative (`openEO.tif`) and the backend's link kept as `redact::redact_url`
//!   shows it (no query: signed links carry their signature there and expire anyway), as
//!   `alternate.remote.href`;
//! - `job.json`: the manifest of docs/results-folder.md (schema: docs/job.schema.json) — job, service,
//!   parameters, the STAC file name and one layer per asset as the GDAL helper
//!   described it, with a display name.
//!
//! [`served_document`] turns a published `results.json` into the answer of
//! `GET /unit_jobs/{id}/results` after the download: daemon URLs as `href`, the
//! absolute path as `alternate.local.href`.

use serde_json::{json, Map, Value};

use crate::job::{rfc3339_z, Job};
use crate::redact::redact_url;

/// Version of the manifest format (`eodispatch_manifest`).
pub const MANIFEST_VERSION: u32 = 1;

/// One downloaded asset: its key in the results document and its file name.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Key in the backend's `assets`.
    pub key: String,
    /// Sanitised file name in the job folder.
    pub name: String,
}

/// `results.json`: the document with relative hrefs. Assets not downloaded are
/// dropped; `file:size` is updated and `file:checksum` removed for files the helper
/// rewrote (`sizes` gives the final sizes by file name).
pub fn local_document(doc: &Value, stored: &[Stored], rewritten: &[(String, u64)]) -> Value {
    let mut out = doc.clone();
    let mut assets = Map::new();
    let old = doc.get("assets").and_then(Value::as_object);
    for s in stored {
        let Some(mut a) = old.and_then(|o| o.get(&s.key)).cloned() else {
            continue;
        };
        if let Value::Object(m) = &mut a {
            let remote = m
                .get("href")
                .and_then(Value::as_str)
                .map(redact_url)
                .unwrap_or_default();
            m.insert("href".into(), json!(s.name));
            let mut alternate = m
                .get("alternate")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            // Outputs that came inline have no remote copy.
            if remote.starts_with("http://") || remote.starts_with("https://") {
                alternate.insert("remote".into(), json!({"href": remote}));
            }
            if !alternate.is_empty() {
                m.insert("alternate".into(), Value::Object(alternate));
            }
            if let Some((_, size)) = rewritten.iter().find(|(n, _)| n == &s.name) {
                m.insert("file:size".into(), json!(size));
                m.remove("file:checksum");
            }
        }
        assets.insert(s.key.clone(), a);
    }
    if let Value::Object(m) = &mut out {
        m.insert("assets".into(), Value::Object(assets));
        // Links to the backend's signed documents would only expire.
        if let Some(Value::Array(links)) = m.get_mut("links") {
            for l in links.iter_mut() {
                if let Some(h) = l.get("href").and_then(Value::as_str).map(redact_url) {
                    l["href"] = json!(h);
                }
            }
        }
    }
    out
}

/// The display name of a layer: the asset title when it differs from the file
/// name, else the file name without extension; prefixed with the job title when
/// the job has several assets.
pub fn display_name(job: &Job, doc: &Value, stored: &Stored, many: bool) -> String {
    let (title, _) = layer_title(doc, stored);
    with_job_title(job, &title, many)
}

/// The asset's title when it has its own (`true`), else its file name without
/// extension (`false`).
fn layer_title(doc: &Value, stored: &Stored) -> (String, bool) {
    match doc["assets"][&stored.key]["title"]
        .as_str()
        .filter(|t| !t.trim().is_empty() && *t != stored.key)
    {
        Some(t) => (t.to_string(), true),
        None => (
            crate::results::names::split_ext(&stored.name).0.to_string(),
            false,
        ),
    }
}

fn with_job_title(job: &Job, title: &str, many: bool) -> String {
    if !many && (title == "openEO" || title.eq_ignore_ascii_case("result")) {
        job.title.clone()
    } else {
        format!("{} – {title}", job.title)
    }
}

/// The display names of all layers, told apart: where two would be the same
/// (`output.tiff` and `output.nc`, or two assets with one title), the file name is
/// kept whole (`Job – output.tiff`), or added after an asset title (`Job – NDVI
/// (ndvi_2.tif)`).
pub fn display_names(job: &Job, doc: &Value, stored: &[Stored]) -> Vec<String> {
    let many = stored.len() > 1;
    let first: Vec<String> = stored
        .iter()
        .map(|s| display_name(job, doc, s, many))
        .collect();
    let count = |name: &str| {
        first
            .iter()
            .filter(|n| n.to_lowercase() == name.to_lowercase())
            .count()
    };
    stored
        .iter()
        .zip(&first)
        .map(|(s, name)| {
            if count(name) < 2 {
                return name.clone();
            }
            match layer_title(doc, s) {
                (title, true) => format!("{} ({})", with_job_title(job, &title, many), s.name),
                (_, false) => with_job_title(job, &s.name, many),
            }
        })
        .collect()
}

/// `job.json`. `layers` are the helper's entries in the order of `stored`.
pub fn manifest(job: &Job, doc: &Value, stored: &[Stored], layers: Vec<Value>) -> Value {
    let names = display_names(job, doc, stored);
    let layers: Vec<Value> = stored
        .iter()
        .zip(names)
        .zip(layers)
        .map(|((s, name), layer)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("path".into(), json!(s.name));
            m.insert("asset".into(), json!(s.key));
            if let Value::Object(l) = layer {
                for (k, v) in l {
                    if k != "path" {
                        m.insert(k, v);
                    }
                }
            }
            with_common_keys(&mut m);
            Value::Object(m)
        })
        .collect();
    json!({
        "eodispatch_manifest": MANIFEST_VERSION,
        "job": {
            "id": job.id,
            "uuid": job.uuid,
            "title": job.title,
            "status": job.status,
            "created": rfc3339_z::format(&job.created),
            "updated": rfc3339_z::format(&job.updated),
            "backend_job_id": job.backend_job_id,
            "label": job.label,
            "format": job.format,
        },
        "service": job.service,
        "parameters": job.parameters,
        "stac": "results.json",
        "layers": layers,
    })
}

/// A layer entry for a file the helper did not describe (`error_code` is added by the
/// caller).
pub fn unreadable_layer(path: &str, error: &str) -> Value {
    json!({"path": path, "kind": "other", "readable": false, "error": error})
}

/// `GET /unit_jobs/{id}/results` after publication: `results.json` with `href` a
/// daemon URL (`{base}/files/{uuid}/{name}`), `alternate.local.href` the absolute
/// path (`dir/name`); `alternate.remote.href` stays.
pub fn served_document(local: &Value, base: &str, uuid: &str, dir: &str) -> Value {
    let mut out = local.clone();
    if let Some(Value::Object(assets)) = out.get_mut("assets") {
        for (_, a) in assets.iter_mut() {
            let Some(name) = a.get("href").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if name.contains('/') || name.contains("..") {
                continue;
            }
            a["href"] = json!(format!("{base}/files/{uuid}/{}", encode_segment(&name)));
            let path = std::path::Path::new(dir).join(&name);
            if let Value::Object(m) = a {
                let alt = m
                    .entry("alternate")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(alt) = alt {
                    alt.insert("local".into(), json!({"href": path.display().to_string()}));
                }
            }
        }
    }
    out
}

/// Percent-encodes a file name for a URL path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Gives a layer entry every common key of `job.json` layers (also `task.json`'s):
/// `null` when unknown, `kind` "other" and `readable` false when not said.
pub(crate) fn with_common_keys(m: &mut Map<String, Value>) {
    for key in [
        "kind",
        "readable",
        "error",
        "error_code",
        "driver",
        "crs",
        "bounds",
        "bounds_wgs84",
        "style",
    ] {
        m.entry(key).or_insert(match key {
            "kind" => json!("other"),
            "readable" => json!(false),
            _ => Value::Null,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn layers_always_have_the_common_keys() {
        let job = sample_job();
        let stored = [Stored {
            key: "a".into(),
            name: "a.bin".into(),
        }];
        let m = manifest(
            &job,
            &json!({"assets": {}}),
            &stored,
            vec![unreadable_layer("a.bin", "GDAL helper not found")],
        );
        let l = &m["layers"][0];
        assert_eq!(l["path"], "a.bin");
        assert_eq!(l["readable"], false);
        assert_eq!(l["error"], "GDAL helper not found");
        for k in [
            "error_code",
            "driver",
            "crs",
            "bounds",
            "bounds_wgs84",
            "style",
        ] {
            assert!(l.get(k).is_some_and(Value::is_null), "{k}: {l}");
        }
        assert_eq!(m["stac"], "results.json");
        assert_eq!(m["job"]["id"], 7);
    }

    #[test]
    fn results_with_one_stem_get_names_that_tell_them_apart() {
        let job = sample_job();
        let stored: Vec<Stored> = ["output.tiff", "output.nc", "other.tif", "a.tif", "b.tif"]
            .iter()
            .map(|n| Stored {
                key: n.to_string(),
                name: n.to_string(),
            })
            .collect();
        let doc = json!({"assets": {"a.tif": {"title": "NDVI"}, "b.tif": {"title": "NDVI"}}});
        let m = manifest(&job, &doc, &stored, vec![json!({}); 5]);
        let names: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "t – output.tiff",
                "t – output.nc",
                "t – other",
                "t – NDVI (a.tif)",
                "t – NDVI (b.tif)"
            ]
        );
    }

    /// A finished openEO job with plain values (tests of this module and of `mosaic`).
    pub(crate) fn sample_job() -> Job {
        use crate::job::*;
        let now = time::OffsetDateTime::now_utc();
        Job {
            id: 7,
            title: "t".into(),
            label: Label::Openeo,
            status: Status::Finished,
            service: ServiceDetails {
                endpoint: "http://b".into(),
                namespace: None,
                application: "http://u".into(),
            },
            parameters: Default::default(),
            created: now,
            updated: now,
            uuid: uuid::Uuid::new_v4(),
            format: OutputFormat::Gtiff,
            backend_job_id: Some("j-1".into()),
            backend_status: None,
            submit_state: SubmitState::Submitted,
            submit_started: None,
            progress: None,
            error: None,
            results: Results::default(),
            upscale_task_id: None,
            waiting: None,
            max_cost: None,
            estimate: None,
            costs: None,
            usage: None,
        }
    }

    #[test]
    fn local_then_served() {
        let doc = json!({"assets": {
            "openEO.tif": {"href": "http://b/x/openEO.tif?expires=1&sig=SECRET", "file:size": 5, "file:checksum": "1220aa"},
            "gone": {"href": "http://b/gone"}
        }, "links": [{"rel": "canonical", "href": "http://b/r?sig=SECRET"}]});
        let stored = [Stored {
            key: "openEO.tif".into(),
            name: "openEO.tif".into(),
        }];
        let local = local_document(&doc, &stored, &[("openEO.tif".into(), 9)]);
        assert!(!local.to_string().contains("SECRET"), "{local}");
        assert_eq!(local["assets"]["openEO.tif"]["href"], "openEO.tif");
        assert_eq!(local["assets"]["openEO.tif"]["file:size"], 9);
        assert!(local["assets"]["openEO.tif"].get("file:checksum").is_none());
        assert!(local["assets"].get("gone").is_none());
        let served = served_document(&local, "http://127.0.0.1:1", "u-1", "/r/d");
        let a = &served["assets"]["openEO.tif"];
        assert_eq!(a["href"], "http://127.0.0.1:1/files/u-1/openEO.tif");
        assert_eq!(a["alternate"]["local"]["href"], "/r/d/openEO.tif");
        assert_eq!(a["alternate"]["remote"]["href"], "http://b/x/openEO.tif");
    }
}
