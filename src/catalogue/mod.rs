//! The service catalogue: which services exist, for pickers and forms (`GET /services`,
//! `GET /services/{id}`, `GET /catalogue`), read from APEx-style catalogues.
//!
//! - [`record`]: reading service records (both APEx shapes), platforms and benchmark
//!   scenarios;
//! - [`source`]: the kinds of source (the bundled snapshot, a folder, a GitHub
//!   repository, a web folder, an OGC API Records collection), HTTP caching and the
//!   last good copy on disk;
//! - [`bundled`]: the snapshot of `catalog/apex/` compiled in by `build.rs`.
//!
//! [`Catalogue`] is the handle: it reads the sources of `catalogues` (config.toml; env
//! `EODISPATCH_CATALOGUES`, comma-separated; default: the public APEx repository on
//! GitHub) at start and every `catalogue_refresh_s`, in a background task. Records of
//! several sources merge by id, the first source winning. A source that has not been
//! read yet, or cannot be read, is stood in for by its last good copy
//! (`state_dir/catalogue/`, state `cached`) or, without one, by the bundled snapshot
//! (state `offline`; the records say `source: "bundled"`). A record that cannot be used
//! is skipped with a warning naming it and why, and counted per source.

pub mod bundled;
pub mod record;
pub mod source;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::background::Background;
use crate::config::Settings;
use crate::job::Label;

pub use record::{Contact, PlatformInfo, RecordLink, ServiceDetails, ServiceRecord};
pub use source::{SourceSpec, DEFAULT_CATALOGUE};

/// Default of `catalogue_refresh_s`: every six hours.
pub const DEFAULT_REFRESH_S: f64 = 21600.0;

/// Filters of [`Catalogue::list`] (`GET /services`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Words that must all appear (case-insensitive) in the title, description or
    /// keywords.
    pub q: Option<String>,
    /// A keyword the service must have (case-insensitive, whole keyword).
    pub keyword: Option<String>,
    /// Part of the platform's id, title or URL, or of the service's endpoint
    /// (case-insensitive).
    pub platform: Option<String>,
    /// Only services of this kind.
    pub kind: Option<Label>,
}

impl Query {
    /// Whether `r` passes every filter.
    pub fn matches(&self, r: &ServiceRecord) -> bool {
        if let Some(kind) = self.kind {
            if r.kind != kind.as_str() {
                return false;
            }
        }
        if let Some(k) = self
            .keyword
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            if !r.keywords.iter().any(|x| x.trim().eq_ignore_ascii_case(k)) {
                return false;
            }
        }
        if let Some(q) = &self.q {
            let hay =
                format!("{}\n{}\n{}", r.title, r.description, r.keywords.join("\n")).to_lowercase();
            if !q
                .split_whitespace()
                .all(|w| hay.contains(&w.to_lowercase()))
            {
                return false;
            }
        }
        if let Some(p) = self
            .platform
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let p = p.to_lowercase();
            let mut fields = vec![r.endpoint.to_lowercase()];
            if let Some(pl) = &r.platform {
                fields.push(pl.id.to_lowercase());
                fields.extend(pl.title.as_deref().map(str::to_lowercase));
                fields.extend(pl.url.as_deref().map(str::to_lowercase));
            }
            if !fields.iter().any(|f| f.contains(&p)) {
                return false;
            }
        }
        true
    }
}

/// How a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Read at the last refresh.
    Ok,
    /// Not read (yet, or at the last refresh): its last good copy is served.
    Cached,
    /// Not readable and no copy of it: the bundled snapshot stands in.
    Offline,
    /// The bundled snapshot itself, or standing in before the first read.
    Bundled,
}

/// One source in `GET /catalogue`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SourceStatus {
    /// The source as configured (URLs without query or user info).
    pub source: String,
    /// `bundled`, `folder`, `repository` or `records`.
    pub kind: &'static str,
    /// How it stands.
    pub state: SourceState,
    /// Services it gives now.
    pub records: usize,
    /// Records left out (unreadable or not runnable), see the log.
    pub skipped: usize,
    /// When it was last read successfully (RFC 3339), if ever.
    pub refreshed_at: Option<String>,
    /// Why the last read failed.
    pub error: Option<String>,
    /// Requests sent at its last read.
    pub requests: u64,
    /// Of these, answered `304 Not Modified`.
    pub not_modified: u64,
}

/// `GET /catalogue`: the sources and how they stand.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CatalogueStatus {
    /// Services listed (after merging by id).
    pub services: usize,
    /// Seconds between refreshes.
    pub refresh_s: f64,
    /// When the last refresh ended (RFC 3339), if one has.
    pub refreshed_at: Option<String>,
    /// The sources, in the configured order (the first wins for a duplicate id).
    pub sources: Vec<SourceStatus>,
}

/// What one source gives now.
struct Slot {
    spec: SourceSpec,
    status: SourceStatus,
    /// Its services (`None`: the bundled snapshot stands in).
    entries: Option<Arc<Vec<ServiceDetails>>>,
}

struct State {
    slots: Vec<Slot>,
    merged: Arc<Vec<ServiceDetails>>,
    refreshed_at: Option<String>,
}

struct Inner {
    settings: Settings,
    background: Background,
    http: source::Http,
    state: RwLock<State>,
    refreshing: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    bundled: Built,
    /// `catalogue_refresh_s` the refresh task waits with now (f64 bits).
    refresh_bits: std::sync::atomic::AtomicU64,
}

/// Services built from one source's documents.
#[derive(Clone)]
struct Built {
    entries: Arc<Vec<ServiceDetails>>,
    skipped: usize,
    platforms: Arc<HashMap<String, PlatformInfo>>,
    scenarios: Arc<record::Scenarios>,
}

/// The catalogue handle. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Catalogue(Arc<Inner>);

fn now_text() -> String {
    crate::job::rfc3339_z::format(&time::OffsetDateTime::now_utc())
}

/// The configured sources (an invalid entry, refused when the configuration was
/// loaded, is logged and left out here).
fn specs_of(list: &[String]) -> Vec<SourceSpec> {
    let mut out: Vec<SourceSpec> = Vec::new();
    for s in list {
        match SourceSpec::parse(s) {
            Ok(spec) if !out.contains(&spec) => out.push(spec),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "catalogue source left out"),
        }
    }
    if out.is_empty() {
        out.push(SourceSpec::Bundled);
    }
    out
}

impl Catalogue {
    /// A catalogue over the configured sources: the last good copies on disk, else the
    /// bundled snapshot, until [`start`](Self::start)'s first refresh.
    pub fn new(settings: Settings, background: Background) -> Catalogue {
        let bundled = build(&source::Loaded::bundled(), bundled::NAME, None);
        let inner = Inner {
            settings,
            background,
            http: source::Http::new(),
            state: RwLock::new(State {
                slots: Vec::new(),
                merged: Arc::new(Vec::new()),
                refreshed_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            bundled,
            refresh_bits: std::sync::atomic::AtomicU64::new(0),
        };
        let c = Catalogue(Arc::new(inner));
        c.reconfigure();
        c
    }

    fn saved_dir(&self) -> PathBuf {
        self.0.settings.get().state_dir.join("catalogue")
    }

    /// Takes over a changed `catalogues` list (sources kept keep what they have; new
    /// ones start from their copy on disk) and wakes the refresh task.
    pub fn reconfigure(&self) {
        let specs = specs_of(&self.0.settings.get().catalogues);
        let dir = self.saved_dir();
        let (first, changed) = {
            let mut st = self.0.state.write().unwrap_or_else(|e| e.into_inner());
            let first = st.slots.is_empty();
            let current: Vec<&SourceSpec> = st.slots.iter().map(|s| &s.spec).collect();
            if current.len() == specs.len() && current.iter().zip(&specs).all(|(a, b)| *a == b) {
                (first, false)
            } else {
                let mut old: Vec<Slot> = std::mem::take(&mut st.slots);
                st.slots = specs
                    .into_iter()
                    .map(|spec| match old.iter().position(|s| s.spec == spec) {
                        Some(i) => old.swap_remove(i),
                        None => self.initial_slot(spec, &dir),
                    })
                    .collect();
                st.merged = self.merge(&st.slots);
                (first, true)
            }
        };
        let refresh_s = self.0.settings.get().catalogue_refresh_s;
        let waiting = f64::from_bits(
            self.0
                .refresh_bits
                .load(std::sync::atomic::Ordering::SeqCst),
        );
        if (changed && !first) || (waiting > 0.0 && waiting != refresh_s) {
            self.0.wake.notify_one();
        }
    }

    fn initial_slot(&self, spec: SourceSpec, dir: &std::path::Path) -> Slot {
        let name = spec.name();
        let mut status = SourceStatus {
            source: name.clone(),
            kind: spec.kind(),
            state: SourceState::Bundled,
            records: 0,
            skipped: 0,
            refreshed_at: None,
            error: None,
            requests: 0,
            not_modified: 0,
        };
        let mut entries = None;
        if spec == SourceSpec::Bundled {
            status.records = self.0.bundled.entries.len();
            status.skipped = self.0.bundled.skipped;
            entries = Some(self.0.bundled.entries.clone());
        } else if spec.is_remote() {
            if let Some((loaded, at)) = source::restore(dir, &name) {
                let built = build(&loaded, &name, Some(&self.0.bundled));
                status.state = SourceState::Cached;
                status.records = built.entries.len();
                status.skipped = built.skipped;
                status.refreshed_at = Some(at);
                entries = Some(built.entries);
            }
        }
        Slot {
            spec,
            status,
            entries,
        }
    }

    /// Services of every source, merged by id (first source wins), sorted by title.
    fn merge(&self, slots: &[Slot]) -> Arc<Vec<ServiceDetails>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for slot in slots {
            let entries = slot.entries.as_ref().unwrap_or(&self.0.bundled.entries);
            for e in entries.iter() {
                if seen.insert(e.record.id.clone()) {
                    out.push(e.clone());
                }
            }
        }
        out.sort_by(|a, b| {
            a.record
                .title
                .to_lowercase()
                .cmp(&b.record.title.to_lowercase())
                .then_with(|| a.record.id.cmp(&b.record.id))
        });
        Arc::new(out)
    }

    /// Starts the refresh task: a refresh now, then every `catalogue_refresh_s` (and at
    /// once when the sources change); it ends with the daemon.
    pub fn start(&self) {
        let me = self.clone();
        self.0.background.spawn_supervised("catalogue", move || {
            let me = me.clone();
            async move {
                loop {
                    me.refresh_now().await;
                    let secs = me.0.settings.get().catalogue_refresh_s;
                    me.0.refresh_bits
                        .store(secs.to_bits(), std::sync::atomic::Ordering::SeqCst);
                    let wait = Duration::from_secs_f64(secs.max(1.0));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = me.0.wake.notified() => {}
                    }
                }
            }
        });
    }

    /// Reads every source once (one refresh at a time).
    pub async fn refresh_now(&self) {
        let _one = self.0.refreshing.lock().await;
        let specs: Vec<SourceSpec> = {
            let st = self.0.state.read().unwrap_or_else(|e| e.into_inner());
            st.slots.iter().map(|s| s.spec.clone()).collect()
        };
        let dir = self.saved_dir();
        let mut results = Vec::new();
        for spec in specs {
            if spec == SourceSpec::Bundled {
                continue;
            }
            let name = spec.name();
            let _ = self.0.http.take_counts();
            let read = source::load(&spec, &self.0.http).await;
            let counts = self.0.http.take_counts();
            let outcome = match read {
                Ok(loaded) => {
                    let built = build(&loaded, &name, Some(&self.0.bundled));
                    if spec.is_remote() {
                        let d = dir.clone();
                        let n = name.clone();
                        let at = now_text();
                        let saved =
                            tokio::task::spawn_blocking(move || source::save(&d, &n, &loaded, &at))
                                .await;
                        match saved {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(source = %name, error = %e, "cannot keep a copy of the catalogue")
                            }
                            Err(e) => {
                                tracing::warn!(source = %name, error = %e, "cannot keep a copy of the catalogue")
                            }
                        }
                    }
                    tracing::info!(source = %name, services = built.entries.len(), skipped = built.skipped,
                        requests = counts.requests, not_modified = counts.not_modified, "catalogue read");
                    Ok(built)
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot read the catalogue source");
                    Err(e.0)
                }
            };
            results.push((spec, outcome, counts));
        }
        let mut st = self.0.state.write().unwrap_or_else(|e| e.into_inner());
        let now = now_text();
        for (spec, outcome, counts) in results {
            let Some(slot) = st.slots.iter_mut().find(|s| s.spec == spec) else {
                continue;
            };
            slot.status.requests = counts.requests;
            slot.status.not_modified = counts.not_modified;
            match outcome {
                Ok(built) => {
                    slot.status.state = SourceState::Ok;
                    slot.status.records = built.entries.len();
                    slot.status.skipped = built.skipped;
                    slot.status.refreshed_at = Some(now.clone());
                    slot.status.error = None;
                    slot.entries = Some(built.entries);
                }
                Err(e) => {
                    slot.status.error = Some(e);
                    if slot.entries.is_some() {
                        slot.status.state = SourceState::Cached;
                    } else {
                        slot.status.state = SourceState::Offline;
                        slot.status.records = self.0.bundled.entries.len();
                        slot.status.skipped = self.0.bundled.skipped;
                    }
                }
            }
        }
        st.merged = self.merge(&st.slots);
        st.refreshed_at = Some(now);
    }

    fn merged(&self) -> Arc<Vec<ServiceDetails>> {
        self.0
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .merged
            .clone()
    }

    /// The services passing `query`, sorted by title.
    pub fn list(&self, query: &Query) -> Vec<ServiceRecord> {
        self.merged()
            .iter()
            .filter(|e| query.matches(&e.record))
            .map(|e| e.record.clone())
            .collect()
    }

    /// Everything about one service.
    pub fn get(&self, id: &str) -> Option<ServiceDetails> {
        self.merged().iter().find(|e| e.record.id == id).cloned()
    }

    /// The service a job's `label` and `service` point at (endpoints compared without
    /// a trailing slash).
    pub fn find_by_service(
        &self,
        label: Label,
        endpoint: &str,
        application: &str,
    ) -> Option<ServiceRecord> {
        let want = endpoint.trim_end_matches('/');
        self.merged()
            .iter()
            .find(|e| {
                e.record.label == label.as_str()
                    && e.record.endpoint.trim_end_matches('/') == want
                    && e.record.application == application
            })
            .map(|e| e.record.clone())
    }

    /// The sources and how they stand.
    pub fn status(&self) -> CatalogueStatus {
        let st = self.0.state.read().unwrap_or_else(|e| e.into_inner());
        CatalogueStatus {
            services: st.merged.len(),
            refresh_s: self.0.settings.get().catalogue_refresh_s,
            refreshed_at: st.refreshed_at.clone(),
            sources: st.slots.iter().map(|s| s.status.clone()).collect(),
        }
    }
}

/// Builds the services of one source: records parsed (bad ones logged and counted),
/// platforms looked up (the source's own, else the bundled ones by file name),
/// defaults from benchmark scenarios (the source's own, else the bundled ones).
fn build(loaded: &source::Loaded, source_name: &str, fallback: Option<&Built>) -> Built {
    let mut platforms: HashMap<String, PlatformInfo> = HashMap::new();
    for f in &loaded.platforms {
        match serde_json::from_str::<Value>(&f.text) {
            Ok(doc) => {
                if let Some(p) = record::platform_info(&doc) {
                    platforms.insert(record::stem_of(&f.path).to_string(), p.clone());
                    platforms.entry(p.id.clone()).or_insert(p);
                }
            }
            Err(e) => {
                tracing::warn!(source = %source_name, file = %f.path, error = %e, "platform record is not JSON; skipped")
            }
        }
    }
    let mut scenarios = record::Scenarios::default();
    for f in &loaded.scenarios {
        match serde_json::from_str::<Value>(&f.text) {
            Ok(doc) => scenarios.add(&f.path, &doc),
            Err(e) => {
                tracing::warn!(source = %source_name, file = %f.path, error = %e, "benchmark scenario is not JSON; skipped")
            }
        }
    }
    let mut entries: Vec<ServiceDetails> = Vec::new();
    let mut ids = HashSet::new();
    let mut skipped = 0;
    for f in &loaded.records {
        let doc = match serde_json::from_str::<Value>(&f.text) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(source = %source_name, record = %f.path, error = %e, "catalogue record is not JSON; skipped");
                skipped += 1;
                continue;
            }
        };
        let parsed = match record::parse_record(&doc) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(why) => {
                tracing::warn!(source = %source_name, record = %f.path, reason = %why, "catalogue record skipped");
                skipped += 1;
                continue;
            }
        };
        if !ids.insert(parsed.record.id.clone()) {
            tracing::warn!(source = %source_name, record = %f.path, id = %parsed.record.id, "a second record with the same id; skipped");
            skipped += 1;
            continue;
        }
        let base = f.url.as_deref().and_then(|u| Url::parse(u).ok());
        let rel_path = loaded.repository_layout.then_some(f.path.as_str());
        let platform = parsed.platform_link().map(|l| {
            let known = rel_path
                .and_then(|p| record::join_relative(p, &l.href))
                .map(|p| record::stem_of(&p).to_string())
                .or_else(|| Some(record::stem_of(&l.href).to_string()))
                .and_then(|stem| {
                    platforms
                        .get(&stem)
                        .or_else(|| fallback.and_then(|b| b.platforms.get(&stem)))
                        .cloned()
                });
            known.unwrap_or_else(|| PlatformInfo {
                id: record::stem_of(&l.href).to_string(),
                title: l.title.clone(),
                url: Some(record::resolve(&l.href, base.as_ref())),
            })
        });
        let mut rec = parsed.record;
        rec.platform = platform;
        rec.source = source_name.to_string();
        rec.thumbnail = rec.thumbnail.map(|t| record::resolve(&t, base.as_ref()));
        let defaults = scenarios
            .defaults_for(&rec, rel_path)
            .or_else(|| fallback.and_then(|b| b.scenarios.defaults_for(&rec, None)))
            .unwrap_or_default();
        let links = parsed
            .links
            .into_iter()
            .map(|mut l| {
                l.href = record::resolve(&l.href, base.as_ref());
                l
            })
            .collect();
        entries.push(ServiceDetails {
            record: rec,
            links,
            contacts: parsed.contacts,
            defaults,
        });
    }
    Built {
        entries: Arc::new(entries),
        skipped,
        platforms: Arc::new(platforms),
        scenarios: Arc::new(scenarios),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Built {
        build(&source::Loaded::bundled(), bundled::NAME, None)
    }

    #[test]
    fn the_bundled_snapshot_gives_all_seventy_services() {
        let b = bundled();
        assert_eq!(b.entries.len(), 70);
        assert_eq!(b.skipped, 0);
        let pv = b
            .entries
            .iter()
            .find(|e| e.record.id == "eurac_pv_farm_detection")
            .unwrap();
        let p = pv.record.platform.as_ref().unwrap();
        assert_eq!(p.id, "cdse_openeo_federation");
        assert_eq!(
            p.title.as_deref(),
            Some("CDSE openEO Federation processing backend")
        );
        assert_eq!(pv.record.cost_estimate, Some(0.001));
        assert_eq!(pv.record.source, "bundled");
        assert_eq!(
            pv.defaults["temporal_extent"][0], "2023-05-01",
            "{:?}",
            pv.defaults
        );
        let ogc = b
            .entries
            .iter()
            .filter(|e| e.record.kind == "ogc_api_process")
            .count();
        assert_eq!(ogc, 14);
    }

    #[tokio::test]
    async fn sources_merge_by_id_and_the_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        // A folder with one record (retitled), one new record and a platform.
        let folder = dir.path().join("mine");
        let rec = "algorithm_catalog/vito/max_ndvi_composite/records/max_ndvi_composite.json";
        let mut doc: Value = serde_json::from_str(bundled::file(rec).unwrap()).unwrap();
        doc["properties"]["title"] = serde_json::json!("Mine first");
        let mut new = doc.clone();
        new["id"] = serde_json::json!("only_mine");
        new["properties"]["title"] = serde_json::json!("Only mine");
        for (path, d) in [
            (rec.to_string(), &doc),
            (
                "algorithm_catalog/me/only_mine/records/only_mine.json".to_string(),
                &new,
            ),
        ] {
            let p = folder.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d.to_string()).unwrap();
        }
        let mut config = crate::config::Config::for_root(dir.path());
        config.catalogues = vec![folder.display().to_string(), "bundled".into()];
        let c = Catalogue::new(Settings::new(config), Background::new());
        // Before the first refresh the folder is stood in for by the bundled snapshot.
        assert_eq!(c.list(&Query::default()).len(), 70);
        assert_eq!(c.status().sources[0].state, SourceState::Bundled);
        c.refresh_now().await;
        let st = c.status();
        assert_eq!(st.sources[0].state, SourceState::Ok, "{st:?}");
        assert_eq!(st.sources[0].records, 2);
        assert_eq!(st.sources[1].state, SourceState::Bundled);
        let all = c.list(&Query::default());
        assert_eq!(all.len(), 71);
        assert_eq!(st.services, 71);
        let mine = c.get("max_ndvi_composite").unwrap();
        assert_eq!(mine.record.title, "Mine first");
        assert_eq!(mine.record.source, folder.display().to_string());
        // The folder has no platforms: the bundled ones name it.
        assert_eq!(
            mine.record.platform.as_ref().unwrap().id,
            "cdse_openeo_federation"
        );
        assert_eq!(
            c.get("eurac_pv_farm_detection").unwrap().record.source,
            "bundled"
        );
        let found = c
            .find_by_service(
                Label::Openeo,
                &format!("{}/", mine.record.endpoint),
                &mine.record.application,
            )
            .unwrap();
        assert_eq!(found.id, "max_ndvi_composite");
        assert!(c
            .find_by_service(
                Label::OgcApiProcess,
                &mine.record.endpoint,
                &mine.record.application
            )
            .is_none());
        // The folder gone: what was read stays, marked cached, with the error.
        std::fs::remove_dir_all(&folder).unwrap();
        c.refresh_now().await;
        let st = c.status();
        assert_eq!(st.sources[0].state, SourceState::Cached);
        assert!(st.sources[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not a folder"));
        assert_eq!(c.list(&Query::default()).len(), 71);
    }

    #[test]
    fn queries_filter() {
        let b = bundled();
        let all: Vec<&ServiceRecord> = b.entries.iter().map(|e| &e.record).collect();
        let count = |q: Query| all.iter().filter(|r| q.matches(r)).count();
        assert_eq!(count(Query::default()), 70);
        assert_eq!(
            count(Query {
                kind: Some(Label::OgcApiProcess),
                ..Query::default()
            }),
            14
        );
        assert!(
            count(Query {
                q: Some("NDVI".into()),
                ..Query::default()
            }) >= 1
        );
        assert_eq!(
            count(Query {
                q: Some("ndvi zzzunknown".into()),
                ..Query::default()
            }),
            0
        );
        assert_eq!(
            count(Query {
                platform: Some("gep".into()),
                ..Query::default()
            }),
            5
        );
        assert_eq!(
            count(Query {
                keyword: Some("sentinel-2".into()),
                ..Query::default()
            }),
            all.iter()
                .filter(|r| r
                    .keywords
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case("Sentinel-2")))
                .count()
        );
    }
}
