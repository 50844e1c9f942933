//! Cost and budgets in the application layer: estimates for a request from the
//! catalogue's price ([`crate::job::cost`]), what was spent on a backend today and
//! this month (the store), the budgets of `config.toml`, and the checks that refuse a
//! submission (`BudgetExceeded`); the scheduler holds back a tile or job that would
//! overspend by the same rule (`Scheduler`'s budget check).
//!
//! Budgets count per UTC day and calendar month. A job counts with what its platform
//! reported it cost, or else with its estimate from when it was accepted; a job whose
//! estimate is unknown counts as nothing until its platform reports a cost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{App, AppError};
use crate::config::{BackendConfig, Config};
use crate::job::cost::{self, BudgetKind, Estimate, Exceeded, Limits, Spent};
use crate::job::validate::FieldError;
use crate::job::{Label, ServiceDetails};
use crate::platform::backends::normalise_endpoint;

/// A backend's budgets and what was spent against them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetEntry {
    /// The backend URL.
    pub backend: String,
    /// `budget_per_day` (`null`: none).
    pub per_day: Option<f64>,
    /// `budget_per_month` (`null`: none).
    pub per_month: Option<f64>,
    /// Reported costs, else estimates, of jobs accepted today (UTC).
    pub spent_today: f64,
    /// The same for this calendar month (UTC).
    pub spent_this_month: f64,
    /// The currency, when an estimate says it.
    pub unit: Option<String>,
}

/// `PUT /budgets`: a backend's budgets (`null` removes one).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// The backend URL (http or https).
    #[schema(schema_with = crate::job::validate::http_url_schema)]
    pub backend: String,
    /// The most all its jobs may cost per UTC day (0 to 1e12; `null` or absent: none).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1e12)]
    pub per_day: Option<f64>,
    /// The most all its jobs may cost per calendar month (0 to 1e12; `null` or absent:
    /// none).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1e12)]
    pub per_month: Option<f64>,
}

/// The estimate of a request, with the service it was priced from and the backend's
/// budgets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EstimateAnswer {
    /// The estimate.
    #[serde(flatten)]
    pub estimate: Estimate,
    /// The catalogue record the price comes from (`null`: no record for this
    /// service).
    pub service: Option<String>,
    /// The backend's budgets and spending, and which budget this request would break.
    pub budget: BudgetLine,
}

/// [`BudgetEntry`] with what this request would do to it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetLine {
    /// The backend, its budgets and spending.
    #[serde(flatten)]
    pub entry: BudgetEntry,
    /// The request's own limit.
    pub max_cost: Option<f64>,
    /// The first budget the request would break (`null`: none, or the amount is
    /// unknown).
    pub would_exceed: Option<BudgetKind>,
    /// The refusal the submission would get, in words.
    pub message: Option<String>,
}

impl App {
    /// The estimate of running `label`/`service` once per parameter set in `runs`
    /// (`is_task`: the runs are a task's tiles), priced from the catalogue; the
    /// catalogue record's id when there is one.
    pub fn estimate_runs(
        &self,
        label: Label,
        service: &ServiceDetails,
        runs: &[&Map<String, Value>],
        is_task: bool,
    ) -> (Estimate, Option<String>) {
        let catalogue = self.catalogue();
        // The record of this service on this backend; else the same application on
        // another backend (a UDP or process keeps its price model across platforms).
        let record = catalogue
            .find_by_service(label, &service.endpoint, &service.application)
            .or_else(|| {
                catalogue
                    .list(&Default::default())
                    .into_iter()
                    .find(|r| r.label == label.as_str() && r.application == service.application)
            });
        match record {
            Some(record) => (
                cost::estimate(
                    record.cost_estimate,
                    record.cost_unit.as_deref(),
                    runs,
                    is_task,
                ),
                Some(record.id),
            ),
            None => (
                Estimate::unknown(
                    None,
                    None,
                    "no catalogue record describes this service, so its price is not known",
                ),
                None,
            ),
        }
    }

    /// The budgets of the backend at `endpoint` and what was spent against them
    /// (every accepted job).
    pub async fn budget_entry(
        &self,
        endpoint: &str,
        unit: Option<String>,
    ) -> Result<BudgetEntry, AppError> {
        let config = self.config();
        let s = config.backend_section(endpoint);
        let [today, month] = self
            .parts()
            .store
            .spent_since(endpoint.to_string(), crate::store::budget_windows(), false)
            .await?;
        Ok(BudgetEntry {
            backend: endpoint.trim_end_matches('/').to_string(),
            per_day: s.and_then(|s| s.budget_per_day),
            per_month: s.and_then(|s| s.budget_per_month),
            spent_today: (today * 1e6).round() / 1e6,
            spent_this_month: (month * 1e6).round() / 1e6,
            unit,
        })
    }

    /// The budget line of a request: its backend's entry and the first budget that
    /// `estimate` (the whole job, or a task's first tile) would break.
    pub async fn budget_line(
        &self,
        endpoint: &str,
        max_cost: Option<f64>,
        amount: Option<f64>,
        unit: Option<String>,
    ) -> Result<BudgetLine, AppError> {
        let entry = self.budget_entry(endpoint, unit.clone()).await?;
        let over = amount.and_then(|a| {
            cost::check_budgets(
                Limits {
                    max_cost,
                    per_day: entry.per_day,
                    per_month: entry.per_month,
                },
                Spent {
                    own: 0.0,
                    today: entry.spent_today,
                    month: entry.spent_this_month,
                },
                a,
                &entry.backend,
                unit.as_deref(),
            )
        });
        Ok(BudgetLine {
            entry,
            max_cost,
            would_exceed: over.as_ref().map(|o| o.budget),
            message: over.as_ref().map(Exceeded::sentence),
        })
    }

    /// Refuses a submission whose estimate breaks a budget.
    pub(super) async fn check_budget(
        &self,
        endpoint: &str,
        max_cost: Option<f64>,
        amount: Option<f64>,
        unit: Option<String>,
    ) -> Result<(), AppError> {
        let Some(a) = amount else { return Ok(()) };
        let limits = self.config().budget_limits(endpoint, max_cost);
        if limits == Limits::default() {
            return Ok(());
        }
        let spent = self
            .parts()
            .store
            .spent_against(limits, endpoint, 0.0, false)
            .await?;
        match cost::check_budgets(
            limits,
            spent,
            a,
            endpoint.trim_end_matches('/'),
            unit.as_deref(),
        ) {
            Some(over) => Err(AppError::BudgetExceeded(over)),
            None => Ok(()),
        }
    }

    /// `POST /estimate`: the estimate of a unit job or upscale task body (a body with
    /// `dimension` is a task), without submitting it.
    pub async fn estimate(&self, body: &Value) -> Result<EstimateAnswer, AppError> {
        if body.get("dimension").is_some() {
            let req = crate::job::validate::parse_task_request(body).map_err(AppError::Invalid)?;
            let tiles = tile_parameters(&req.job.parameters, &req.dimension);
            let runs: Vec<&Map<String, Value>> = tiles.iter().collect();
            let (estimate, service) =
                self.estimate_runs(req.job.label, &req.job.service, &runs, true);
            let (first, _) = self.estimate_runs(
                req.job.label,
                &req.job.service,
                &runs[..1.min(runs.len())],
                false,
            );
            let budget = self
                .budget_line(
                    &req.job.service.endpoint,
                    req.job.max_cost,
                    first.amount,
                    estimate.unit.clone(),
                )
                .await?;
            return Ok(EstimateAnswer {
                estimate,
                service,
                budget,
            });
        }
        let req = crate::job::validate::parse_job_request(body).map_err(AppError::Invalid)?;
        let (estimate, service) =
            self.estimate_runs(req.label, &req.service, &[&req.parameters], false);
        let budget = self
            .budget_line(
                &req.service.endpoint,
                req.max_cost,
                estimate.amount,
                estimate.unit.clone(),
            )
            .await?;
        Ok(EstimateAnswer {
            estimate,
            service,
            budget,
        })
    }

    /// `GET /budgets`: every known backend's budgets and spending (configured ones and
    /// those jobs were sent to).
    pub async fn budgets(&self) -> Result<Vec<BudgetEntry>, AppError> {
        let mut urls: Vec<String> = self
            .config()
            .backends
            .values()
            .map(|b| b.url.clone())
            .collect();
        urls.extend(
            self.parts()
                .backends
                .all()
                .iter()
                .map(|b| b.state().url.clone()),
        );
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for url in urls {
            if seen.insert(normalise_endpoint(&url)) {
                out.push(self.budget_entry(&url, None).await?);
            }
        }
        out.sort_by(|a, b| a.backend.cmp(&b.backend));
        Ok(out)
    }

    /// `PUT /budgets`: sets a backend's budgets in `config.toml` (keeping the rest of
    /// the file, comments included) and applies them at once.
    pub async fn set_budget(&self, req: BudgetRequest) -> Result<BudgetEntry, AppError> {
        let mut errors = Vec::new();
        if let Err(e) = crate::job::validate::check_http_url(&req.backend) {
            errors.push(FieldError::new("backend", e));
        }
        for (name, v) in [("per_day", req.per_day), ("per_month", req.per_month)] {
            if let Some(x) = v {
                if !x.is_finite() || !(0.0..=1e12).contains(&x) {
                    errors.push(FieldError::new(
                        name,
                        "must be a number from 0 to 1e12, or null",
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(AppError::Invalid(errors));
        }
        let config = self.config();
        let path = config.config_file();
        let (name, new_config) = {
            let mut next = (*config).clone();
            let key = normalise_endpoint(&req.backend);
            let name = match next
                .backends
                .iter()
                .find(|(_, b)| normalise_endpoint(&b.url) == key)
            {
                Some((n, _)) => n.clone(),
                None => section_name(&req.backend, &next),
            };
            let entry = next
                .backends
                .entry(name.clone())
                .or_insert_with(|| BackendConfig {
                    url: req.backend.trim_end_matches('/').to_string(),
                    ..BackendConfig::default()
                });
            entry.budget_per_day = req.per_day;
            entry.budget_per_month = req.per_month;
            (name, next)
        };
        let url = new_config.backends[&name].url.clone();
        let (per_day, per_month) = (req.per_day, req.per_month);
        tokio::task::spawn_blocking(move || write_budget(&path, &name, &url, per_day, per_month))
            .await
            .map_err(|e| AppError::Conflict {
                code: "ConfigNotWritten",
                title: "config.toml not written",
                detail: e.to_string(),
            })?
            .map_err(|detail| AppError::Conflict {
                code: "ConfigNotWritten",
                title: "config.toml not written",
                detail,
            })?;
        self.apply_config(&new_config);
        self.parts().scheduler.wake_all();
        self.budget_entry(&req.backend, None).await
    }
}

/// Each tile's parameters: the shared ones with the dimension's value.
pub(super) fn tile_parameters(
    shared: &Map<String, Value>,
    dimension: &crate::job::Dimension,
) -> Vec<Map<String, Value>> {
    dimension
        .values
        .iter()
        .map(|v| {
            let mut p = shared.clone();
            p.insert(dimension.name.clone(), v.clone());
            p
        })
        .collect()
}

/// A new `[backends.<name>]` section name for `url`: its host in letters, digits and
/// `_`, made unique.
fn section_name(url: &str, config: &Config) -> String {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "backend".into());
    let base: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while config.backends.contains_key(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Writes a backend's budgets into `config.toml` with `toml_edit` (other keys and
/// comments stay), atomically: a temporary file in the same folder, then a rename.
fn write_budget(
    path: &std::path::Path,
    name: &str,
    url: &str,
    per_day: Option<f64>,
    per_month: Option<f64>,
) -> Result<(), String> {
    use toml_edit::{value, DocumentMut, Item, Table};
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let backends = doc
        .entry("backends")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| format!("`backends` in {} is not a table", path.display()))?;
    let section = backends
        .entry(name)
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| format!("`backends.{name}` in {} is not a table", path.display()))?;
    if !section.contains_key("url") {
        section["url"] = value(url);
    }
    for (key, v) in [("budget_per_day", per_day), ("budget_per_month", per_month)] {
        match v {
            Some(x) => section[key] = value(x),
            None => {
                section.remove(key);
            }
        }
    }
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no folder", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap_or(0o600);
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode & 0o777)
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(doc.to_string().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {}: {e}", path.display())
    })
}
