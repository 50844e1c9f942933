//! Cost estimates before submitting: a catalogue record's `cost_estimate` and free-text
//! `cost_unit` ("platform credits per km²", "€ per input product", "€ per region
//! corresponding to a S2 tile extent, per month", ...) applied to a job's parameters.
//!
//! [`CostModel::parse`] reads every unit the APEx catalogue uses into a currency and
//! what the price is per ([`Per`]); a unit it does not understand is `None`, and the
//! estimate then says `unknown` rather than guessing. [`estimate`] finds the quantities
//! in the parameters (area in km² of the spatial extent on the sphere, months and
//! observations from the temporal extent, input products from list parameters) and
//! multiplies. How sure the figure is travels with it ([`Basis`]): `exact` for a fixed
//! price, `per-area` for a figure computed from the extent (and, for observations, an
//! assumed revisit), `unknown` when a quantity cannot be known before the run.
//!
//! Nothing here does I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Mean Earth radius in km (spherical areas).
const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Side of a Sentinel-2 tile (MGRS granule), km.
const S2_TILE_KM: f64 = 109.8;
/// Days between two Sentinel-2 observations of a place (two satellites).
const S2_REVISIT_DAYS: f64 = 5.0;
/// Mean days per month.
const DAYS_PER_MONTH: f64 = 30.436875;

/// The money a price is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    /// The platform's credits (openEO backends: CDSE, Terrascope).
    Credits,
    /// Euro.
    Euro,
}

impl Currency {
    /// How amounts are labelled in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Currency::Credits => "platform credits",
            Currency::Euro => "EUR",
        }
    }
}

/// What one unit of the price buys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Per {
    /// A fixed price per run.
    Run,
    /// Per km² of the spatial extent…
    Km2,
    /// …and per observation (Sentinel-2 revisit assumed from the temporal extent).
    Km2Observation,
    /// …and per year of the temporal extent.
    Km2Year,
    /// …and per `n` months of the temporal extent.
    Km2Months(u32),
    /// Per input product (counted from the parameters when they list them).
    InputProduct,
    /// Per Sentinel-2 tile extent covered, per month of the temporal extent.
    S2TileMonth,
}

/// A price as a catalogue record states it, understood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Price per unit.
    pub price: f64,
    /// Its currency.
    pub currency: Currency,
    /// Per what.
    pub per: Per,
}

impl CostModel {
    /// Reads a record's `cost_estimate` and `cost_unit`; `None` when the unit is
    /// missing or not understood (the estimate is then `unknown`).
    pub fn parse(price: f64, unit: &str) -> Option<CostModel> {
        if !price.is_finite() || price < 0.0 {
            return None;
        }
        let u = unit.to_lowercase();
        let currency = if u.contains('€') || u.contains("eur") {
            Currency::Euro
        } else if u.contains("credit") {
            Currency::Credits
        } else {
            return None;
        };
        let area = u.contains("km²") || u.contains("km2") || u.contains("square kilomet");
        let per = if u.contains("s2 tile") || u.contains("sentinel-2 tile") {
            if u.contains("month") {
                Per::S2TileMonth
            } else {
                return None;
            }
        } else if u.contains("product") {
            Per::InputProduct
        } else if area {
            if u.contains("observation") && !u.contains("month") {
                Per::Km2Observation
            } else if u.contains("year") {
                Per::Km2Year
            } else if u.contains("month") {
                Per::Km2Months(leading_number(&u, "month").unwrap_or(1))
            } else if u.contains(" per ") && u.matches(" per ").count() > 1 {
                // Per km² per something we do not know.
                return None;
            } else {
                Per::Km2
            }
        } else if !u.contains(" per ") {
            Per::Run
        } else {
            return None;
        };
        Some(CostModel {
            price,
            currency,
            per,
        })
    }
}

/// The integer written just before `word` ("3 months" → 3).
fn leading_number(text: &str, word: &str) -> Option<u32> {
    let before = &text[..text.find(word)?];
    before.split_whitespace().last()?.parse().ok()
}

/// How sure an estimate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Basis {
    /// A fixed price: what the run costs.
    #[serde(rename = "exact")]
    Exact,
    /// Computed from the extent (and where said, an assumed number of observations).
    #[serde(rename = "per-area")]
    PerArea,
    /// Not known before the run (unit not understood, or a quantity missing).
    #[serde(rename = "unknown")]
    Unknown,
}

/// The quantities an estimate was computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quantity {
    /// Area of the spatial extent, km² (summed over tiles for a task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area_km2: Option<f64>,
    /// Number of tiles (upscale tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<u32>,
    /// Sentinel-2 tile extents covered (units per S2 tile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s2_tiles: Option<u32>,
    /// Months of the temporal extent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub months: Option<f64>,
    /// Years of the temporal extent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub years: Option<f64>,
    /// Observations assumed in the temporal extent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observations: Option<u32>,
    /// Input products listed in the parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products: Option<u32>,
}

/// An estimate of what a job or task will cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Estimate {
    /// The amount, `null` when it cannot be known before the run.
    pub amount: Option<f64>,
    /// The amount's currency (`platform credits` or `EUR`), when known.
    pub unit: Option<String>,
    /// The catalogue's own words for the price (`cost_unit`).
    pub cost_unit: Option<String>,
    /// The catalogue's price per unit (`cost_estimate`).
    pub price: Option<f64>,
    /// How sure the amount is.
    pub basis: Basis,
    /// What it was computed from.
    pub quantity: Quantity,
    /// The computation, or why there is none, in one sentence.
    pub explanation: String,
}

impl Estimate {
    /// No estimate, saying why.
    pub fn unknown(price: Option<f64>, cost_unit: Option<&str>, why: impl Into<String>) -> Self {
        Estimate {
            amount: None,
            unit: None,
            cost_unit: cost_unit.map(str::to_string),
            price,
            basis: Basis::Unknown,
            quantity: Quantity::default(),
            explanation: why.into(),
        }
    }
}

/// Rounds an amount for display and storage (6 significant decimals are plenty).
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Formats a number without trailing zeros.
fn num(x: f64) -> String {
    let s = format!("{:.3}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Estimates one run per parameter set (one for a unit job, one per tile for a task)
/// at the price `price` `cost_unit` of a catalogue record.
pub fn estimate(
    price: Option<f64>,
    cost_unit: Option<&str>,
    runs: &[&Map<String, Value>],
    is_task: bool,
) -> Estimate {
    let Some(p) = price else {
        return Estimate::unknown(
            None,
            cost_unit,
            "the catalogue gives no cost estimate for this service",
        );
    };
    let Some(unit) = cost_unit.filter(|u| !u.trim().is_empty()) else {
        return Estimate::unknown(
            Some(p),
            None,
            format!("the catalogue gives a cost of {} without a unit", num(p)),
        );
    };
    let Some(model) = CostModel::parse(p, unit) else {
        return Estimate::unknown(
            Some(p),
            Some(unit),
            format!("the cost unit {unit:?} is not one eodispatch understands"),
        );
    };
    let cur = model.currency.as_str();
    let mut q = Quantity {
        tiles: is_task.then_some(runs.len() as u32),
        ..Quantity::default()
    };
    let mut total = 0.0;
    let mut basis = Basis::Exact;
    for params in runs {
        let one = match run_amount(&model, params, &mut q) {
            Ok((amount, b)) => {
                if b == Basis::PerArea {
                    basis = Basis::PerArea;
                }
                amount
            }
            Err(why) => {
                return Estimate {
                    quantity: q,
                    ..Estimate::unknown(Some(p), Some(unit), why)
                }
            }
        };
        total += one;
    }
    let mut factors = Vec::new();
    if let Some(a) = q.area_km2 {
        factors.push(format!("{} km²", num(a)));
    }
    if let Some(t) = q.s2_tiles {
        factors.push(format!("{t} Sentinel-2 tile extent(s)"));
    }
    if let Some(m) = q.months {
        factors.push(format!("{} month(s)", num(m)));
    }
    if let Some(y) = q.years {
        factors.push(format!("{} year(s)", num(y)));
    }
    if let Some(o) = q.observations {
        factors.push(format!(
            "{o} observation(s) (one every {} days assumed)",
            num(S2_REVISIT_DAYS)
        ));
    }
    if let Some(n) = q.products {
        factors.push(format!("{n} input product(s)"));
    }
    let runs_note = match q.tiles {
        Some(t) => format!(" over {t} tile(s)"),
        None => String::new(),
    };
    let explanation = if factors.is_empty() {
        format!("{} {cur} per run{runs_note} = {} {cur}", num(p), num(total))
    } else {
        format!(
            "{} {unit} × {}{runs_note} = {} {cur}",
            num(p),
            factors.join(" × "),
            num(total)
        )
    };
    Estimate {
        amount: Some(round(total)),
        unit: Some(cur.to_string()),
        cost_unit: Some(unit.to_string()),
        price: Some(p),
        basis,
        quantity: Quantity {
            area_km2: q.area_km2.map(round),
            months: q.months.map(round),
            years: q.years.map(round),
            ..q
        },
        explanation,
    }
}

/// One run's amount, adding its quantities to `q`.
fn run_amount(
    model: &CostModel,
    params: &Map<String, Value>,
    q: &mut Quantity,
) -> Result<(f64, Basis), String> {
    let add = |slot: &mut Option<f64>, v: f64| *slot = Some(slot.unwrap_or(0.0) + v);
    let area = || {
        spatial_area_km2(params).ok_or_else(|| {
            "the price is per km² but the parameters have no spatial extent whose area \
             can be computed"
                .to_string()
        })
    };
    let days = || {
        temporal_days(params).ok_or_else(|| {
            "the price depends on the time span but the parameters have no temporal extent"
                .to_string()
        })
    };
    let p = model.price;
    Ok(match model.per {
        Per::Run => (p, Basis::Exact),
        Per::Km2 => {
            let a = area()?;
            add(&mut q.area_km2, a);
            (p * a, Basis::PerArea)
        }
        Per::Km2Observation => {
            let a = area()?;
            let d = days()?;
            let obs = (d / S2_REVISIT_DAYS).ceil().max(1.0) as u32;
            add(&mut q.area_km2, a);
            q.observations = Some(q.observations.unwrap_or(0) + obs);
            (p * a * f64::from(obs), Basis::PerArea)
        }
        Per::Km2Year => {
            let a = area()?;
            let years = days()? / 365.25;
            add(&mut q.area_km2, a);
            add(&mut q.years, years);
            (p * a * years, Basis::PerArea)
        }
        Per::Km2Months(n) => {
            let a = area()?;
            let months = days()? / DAYS_PER_MONTH;
            add(&mut q.area_km2, a);
            add(&mut q.months, months);
            (p * a * months / f64::from(n.max(1)), Basis::PerArea)
        }
        Per::S2TileMonth => {
            let (w_km, h_km) = spatial_size_km(params).ok_or_else(|| {
                "the price is per Sentinel-2 tile extent but the parameters have no spatial \
                 extent"
                    .to_string()
            })?;
            let tiles =
                ((w_km / S2_TILE_KM).ceil().max(1.0) * (h_km / S2_TILE_KM).ceil().max(1.0)) as u32;
            let months = (days()? / DAYS_PER_MONTH).ceil().max(1.0);
            q.s2_tiles = Some(q.s2_tiles.unwrap_or(0) + tiles);
            add(&mut q.months, months);
            (p * f64::from(tiles) * months, Basis::PerArea)
        }
        Per::InputProduct => {
            let n = count_products(params).ok_or_else(|| {
                "the price is per input product and the number of products is only known \
                 when the platform runs the job"
                    .to_string()
            })?;
            q.products = Some(q.products.unwrap_or(0) + n);
            (p * f64::from(n), Basis::Exact)
        }
    })
}

/// Names under which services take their area, most likely first.
const SPATIAL_NAMES: [&str; 8] = [
    "spatial_extent",
    "geometry",
    "geometries",
    "aoi",
    "bbox",
    "area",
    "polygon",
    "extent",
];

/// The spatial extent among the parameters: a known name first, else any value of
/// a spatial shape.
fn spatial_value(params: &Map<String, Value>) -> Option<&Value> {
    SPATIAL_NAMES
        .iter()
        .filter_map(|n| params.get(*n))
        .chain(params.values())
        .find(|v| rings(v).is_some() || projected_bbox(v).is_some())
}

/// Area in km² of the spatial extent.
pub fn spatial_area_km2(params: &Map<String, Value>) -> Option<f64> {
    let v = spatial_value(params)?;
    if let Some((w, s, e, n)) = projected_bbox(v) {
        return Some((e - w).abs() * (n - s).abs() / 1e6);
    }
    let rings = rings(v)?;
    let area: f64 = rings
        .iter()
        .map(|(ring, hole)| {
            let a = ring_area_km2(ring);
            if *hole {
                -a
            } else {
                a
            }
        })
        .sum();
    (area > 0.0).then_some(area)
}

/// East-west and north-south size in km of the spatial extent's bounding box.
fn spatial_size_km(params: &Map<String, Value>) -> Option<(f64, f64)> {
    let v = spatial_value(params)?;
    if let Some((w, s, e, n)) = projected_bbox(v) {
        return Some(((e - w).abs() / 1e3, (n - s).abs() / 1e3));
    }
    let rings = rings(v)?;
    let pts = rings.iter().flat_map(|(r, _)| r.iter());
    let (mut w, mut s, mut e, mut n) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in pts {
        w = w.min(x);
        e = e.max(x);
        s = s.min(y);
        n = n.max(y);
    }
    let km_per_deg = EARTH_RADIUS_KM.to_radians();
    let mid = ((s + n) / 2.0).to_radians().cos();
    Some(((e - w) * km_per_deg * mid, (n - s) * km_per_deg))
}

/// A bounding box in metres (a projected CRS such as UTM): `(west, south, east, north)`.
fn projected_bbox(v: &Value) -> Option<(f64, f64, f64, f64)> {
    let o = v.as_object()?;
    let crs = o.get("crs")?;
    let code = match crs {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.rsplit([':', '/']).next()?.parse().ok()?,
        _ => return None,
    };
    if code == 4326 {
        return None;
    }
    let f = |k: &str| o.get(k).and_then(Value::as_f64);
    Some((f("west")?, f("south")?, f("east")?, f("north")?))
}

/// The rings of a spatial value in longitude/latitude, each with whether it is a hole:
/// an openEO bounding box, an OGC `{"bbox": [...]}`, or GeoJSON.
fn rings(v: &Value) -> Option<Vec<(Vec<(f64, f64)>, bool)>> {
    let o = v.as_object()?;
    let f = |k: &str| o.get(k).and_then(Value::as_f64);
    if let (Some(w), Some(s), Some(e), Some(n)) = (f("west"), f("south"), f("east"), f("north")) {
        if projected_bbox(v).is_some() {
            return None;
        }
        return Some(vec![(bbox_ring(w, s, e, n), false)]);
    }
    if let Some(b) = o.get("bbox").and_then(Value::as_array) {
        let b: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
        if b.len() == 4 {
            return Some(vec![(bbox_ring(b[0], b[1], b[2], b[3]), false)]);
        }
        if b.len() == 6 {
            return Some(vec![(bbox_ring(b[0], b[1], b[3], b[4]), false)]);
        }
    }
    let polygon = |c: &Value| -> Option<Vec<(Vec<(f64, f64)>, bool)>> {
        let rings = c.as_array()?;
        let mut out = Vec::new();
        for (i, r) in rings.iter().enumerate() {
            let pts: Vec<(f64, f64)> = r
                .as_array()?
                .iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    Some((p.first()?.as_f64()?, p.get(1)?.as_f64()?))
                })
                .collect();
            if pts.len() >= 3 {
                out.push((pts, i > 0));
            }
        }
        (!out.is_empty()).then_some(out)
    };
    match o.get("type")?.as_str()? {
        "Polygon" => polygon(o.get("coordinates")?),
        "MultiPolygon" => {
            let mut out = Vec::new();
            for p in o.get("coordinates")?.as_array()? {
                out.extend(polygon(p)?);
            }
            (!out.is_empty()).then_some(out)
        }
        "Feature" => rings(o.get("geometry")?),
        "FeatureCollection" => {
            let mut out = Vec::new();
            for feat in o.get("features")?.as_array()? {
                if let Some(r) = rings(feat) {
                    out.extend(r);
                }
            }
            (!out.is_empty()).then_some(out)
        }
        "GeometryCollection" => {
            let mut out = Vec::new();
            for g in o.get("geometries")?.as_array()? {
                if let Some(r) = rings(g) {
                    out.extend(r);
                }
            }
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

fn bbox_ring(w: f64, s: f64, e: f64, n: f64) -> Vec<(f64, f64)> {
    vec![(w, s), (e, s), (e, n), (w, n)]
}

/// Area of a longitude/latitude ring on the sphere, km² (edges follow lines of
/// constant direction closely enough for extents of up to a few degrees).
fn ring_area_km2(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    let mut sum = 0.0;
    for i in 0..n {
        let (lon0, lat0) = ring[i];
        let (lon1, lat1) = ring[(i + 1) % n];
        if (lon0, lat0) == (lon1, lat1) {
            continue;
        }
        sum +=
            (lon1 - lon0).to_radians() * (2.0 + lat0.to_radians().sin() + lat1.to_radians().sin());
    }
    (sum * EARTH_RADIUS_KM * EARTH_RADIUS_KM / 2.0).abs()
}

/// Days of the temporal extent (`temporal_extent`, or a start and an end parameter).
pub fn temporal_days(params: &Map<String, Value>) -> Option<f64> {
    let pair = |a: &Value, b: &Value| -> Option<f64> {
        let a = super::validate::parse_strict_date_or_datetime(a.as_str()?).ok()?;
        let b = super::validate::parse_strict_date_or_datetime(b.as_str()?).ok()?;
        let secs = (b.instant() - a.instant()).as_seconds_f64();
        // A date-only end is inclusive of its day in APEx scenarios; at least one day.
        Some((secs / 86400.0).max(1.0))
    };
    for name in ["temporal_extent", "time_range", "period", "date_range"] {
        if let Some(arr) = params.get(name).and_then(Value::as_array) {
            if arr.len() == 2 {
                if let Some(d) = pair(&arr[0], &arr[1]) {
                    return Some(d);
                }
            }
        }
    }
    for (start, end) in [
        ("start_date", "end_date"),
        ("start", "end"),
        ("startdate", "enddate"),
        ("start_time", "end_time"),
    ] {
        if let (Some(a), Some(b)) = (params.get(start), params.get(end)) {
            if let Some(d) = pair(a, b) {
                return Some(d);
            }
        }
    }
    None
}

/// Number of input products listed in the parameters: a list parameter whose name
/// speaks of products (or references), or whose items name Sentinel products.
fn count_products(params: &Map<String, Value>) -> Option<u32> {
    let looks_like_product = |v: &Value| {
        v.as_str().is_some_and(|s| {
            let s = s.trim();
            s.starts_with("S1") || s.starts_with("S2") || s.starts_with("S3") || s.contains("://")
        }) || v.get("href").is_some()
    };
    let mut best: Option<u32> = None;
    for (name, v) in params {
        let Some(items) = v.as_array() else { continue };
        if items.is_empty() {
            continue;
        }
        let named = {
            let n = name.to_lowercase();
            n.contains("product")
                || n.contains("reference")
                || n.contains("input")
                || n.contains("scene")
        };
        if named || items.iter().all(looks_like_product) {
            best = Some(best.unwrap_or(0).max(items.len() as u32));
        }
    }
    best
}

/// Which budget a cost would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// The job's or task's own `max_cost`.
    MaxCost,
    /// The backend's `budget_per_day`.
    PerDay,
    /// The backend's `budget_per_month`.
    PerMonth,
}

impl BudgetKind {
    /// The configuration key or request field that sets it.
    pub fn setting(self) -> &'static str {
        match self {
            BudgetKind::MaxCost => "max_cost",
            BudgetKind::PerDay => "budget_per_day",
            BudgetKind::PerMonth => "budget_per_month",
        }
    }
}

/// The limits that apply to one submission.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// The job's or task's own limit.
    pub max_cost: Option<f64>,
    /// The backend's daily budget.
    pub per_day: Option<f64>,
    /// The backend's monthly budget.
    pub per_month: Option<f64>,
}

/// What was spent (or committed) so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    /// Against `max_cost` (a task's tiles so far; 0 for a new job).
    pub own: f64,
    /// On the backend today (UTC).
    pub today: f64,
    /// On the backend this month (UTC).
    pub month: f64,
}

/// A budget that a cost would break: what a `BudgetExceeded` problem says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exceeded {
    /// Which budget.
    pub budget: BudgetKind,
    /// The backend concerned.
    pub backend: String,
    /// The budget's amount.
    pub limit: f64,
    /// Spent (or committed to jobs already accepted) against it.
    pub spent: f64,
    /// What the job (or tile) is estimated to cost.
    pub estimate: f64,
    /// The currency, when known.
    pub unit: Option<String>,
}

impl Exceeded {
    /// The refusal in one sentence, with what to do.
    pub fn sentence(&self) -> String {
        let unit = self.unit.as_deref().unwrap_or("(backend currency)");
        let what = match self.budget {
            BudgetKind::MaxCost => "the max_cost of".to_string(),
            BudgetKind::PerDay => format!("today's budget (budget_per_day) on {} of", self.backend),
            BudgetKind::PerMonth => {
                format!(
                    "this month's budget (budget_per_month) on {} of",
                    self.backend
                )
            }
        };
        format!(
            "estimated {} {unit} with {} {unit} spent would exceed {what} {} {unit}; \
             raise {} or make the area or time span smaller",
            num(self.estimate),
            num(self.spent),
            num(self.limit),
            self.budget.setting()
        )
    }
}

impl Exceeded {
    /// Why a job waits for this budget, in one sentence.
    pub fn waiting_sentence(&self) -> String {
        let unit = self.unit.as_deref().unwrap_or("(backend currency)");
        let what = match self.budget {
            BudgetKind::MaxCost => "its upscale task's max_cost".to_string(),
            BudgetKind::PerDay => format!("today's budget on {}", self.backend),
            BudgetKind::PerMonth => format!("this month's budget on {}", self.backend),
        };
        format!(
            "Waiting for budget: {} {unit} of {what} of {} {unit} are spent and this job is \
             estimated at {} {unit}; raise {} (or wait for the next {}) to send it",
            num(self.spent),
            num(self.limit),
            num(self.estimate),
            self.budget.setting(),
            match self.budget {
                BudgetKind::PerMonth => "month",
                BudgetKind::PerDay => "day",
                BudgetKind::MaxCost => "retry",
            }
        )
    }
}

/// The first budget that `amount` on top of `spent` would break, if any.
pub fn check_budgets(
    limits: Limits,
    spent: Spent,
    amount: f64,
    backend: &str,
    unit: Option<&str>,
) -> Option<Exceeded> {
    let checks = [
        (BudgetKind::MaxCost, limits.max_cost, spent.own),
        (BudgetKind::PerDay, limits.per_day, spent.today),
        (BudgetKind::PerMonth, limits.per_month, spent.month),
    ];
    checks.into_iter().find_map(|(budget, limit, spent)| {
        let limit = limit?;
        // A tolerance for sums of rounded amounts.
        (spent + amount > limit + 1e-9).then(|| Exceeded {
            budget,
            backend: backend.to_string(),
            limit,
            spent: round(spent),
            estimate: round(amount),
            unit: unit.map(str::to_string),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Every cost unit in the APEx catalogue snapshot is understood (or on purpose not).
    #[test]
    fn every_catalogue_unit_is_understood() {
        let cases: [(&str, Option<(Currency, Per)>); 12] = [
            (
                "platform credits per km²",
                Some((Currency::Credits, Per::Km2)),
            ),
            ("platform credits", Some((Currency::Credits, Per::Run))),
            (
                "platform credits per km² per observation",
                Some((Currency::Credits, Per::Km2Observation)),
            ),
            (
                "platform credits per km² and observation.",
                Some((Currency::Credits, Per::Km2Observation)),
            ),
            (
                "platform credits per km² per year",
                Some((Currency::Credits, Per::Km2Year)),
            ),
            (
                "platform credits per km² and 3 months of  observation.",
                Some((Currency::Credits, Per::Km2Months(3))),
            ),
            (
                "€ per input product",
                Some((Currency::Euro, Per::InputProduct)),
            ),
            (
                "€ per input product (Amplitude or Coherence)",
                Some((Currency::Euro, Per::InputProduct)),
            ),
            (
                "€ per S1 AMP/COHE, S2 L2A or Spectral/Biophysical input product",
                Some((Currency::Euro, Per::InputProduct)),
            ),
            (
                "€ per region corresponding to a S2 tile extent, per month",
                Some((Currency::Euro, Per::S2TileMonth)),
            ),
            ("per km²", None),
            ("platform credits per km² per fortnight", None),
        ];
        for (unit, want) in cases {
            let got = CostModel::parse(1.0, unit).map(|m| (m.currency, m.per));
            assert_eq!(got, want, "{unit}");
        }
    }

    #[test]
    fn area_of_a_degree_box_at_the_equator_and_at_60_degrees() {
        let eq = params(json!({"spatial_extent": {"west": 0, "south": 0, "east": 1, "north": 1}}));
        let a = spatial_area_km2(&eq).unwrap();
        assert!((a - 12364.0).abs() < 15.0, "{a}");
        let north = params(json!({"geometry": {"type": "Polygon",
            "coordinates": [[[0, 60], [1, 60], [1, 61], [0, 61], [0, 60]]]}}));
        let b = spatial_area_km2(&north).unwrap();
        assert!((b - 6079.0).abs() < 15.0, "{b}");
        // A UTM box in metres: 10 km × 20 km.
        let utm = params(json!({"spatial_extent": {"west": 500000, "south": 5000000,
            "east": 510000, "north": 5020000, "crs": "EPSG:32631"}}));
        assert_eq!(spatial_area_km2(&utm), Some(200.0));
        // OGC bbox form.
        let ogc = params(
            json!({"aoi": {"bbox": [0, 0, 1, 1], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}}),
        );
        assert!((spatial_area_km2(&ogc).unwrap() - a).abs() < 1e-6);
        // A hole is taken out.
        let holed = params(
            json!({"spatial_extent": {"type": "Polygon", "coordinates": [
            [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]],
            [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75], [0.25, 0.25]]]}}),
        );
        let h = spatial_area_km2(&holed).unwrap();
        assert!((h - a * 0.75).abs() < 10.0, "{h}");
    }

    #[test]
    fn estimates_per_area_observation_and_run() {
        let p = params(json!({
            "spatial_extent": {"west": 5.0, "south": 51.2, "east": 5.1, "north": 51.3},
            "temporal_extent": ["2023-06-01", "2023-07-01"]}));
        let area = spatial_area_km2(&p).unwrap();
        let e = estimate(Some(0.1), Some("platform credits per km²"), &[&p], false);
        assert_eq!(e.basis, Basis::PerArea);
        assert_eq!(e.unit.as_deref(), Some("platform credits"));
        assert!((e.amount.unwrap() - 0.1 * area).abs() < 1e-3);
        assert!(e.explanation.contains("km²"), "{}", e.explanation);
        let o = estimate(
            Some(0.1),
            Some("platform credits per km² per observation"),
            &[&p],
            false,
        );
        assert_eq!(o.quantity.observations, Some(6));
        assert!((o.amount.unwrap() - 0.6 * area).abs() < 1e-3);
        let flat = estimate(Some(45.0), Some("platform credits"), &[&p], false);
        assert_eq!((flat.amount, flat.basis), (Some(45.0), Basis::Exact));
        // A task of three tiles: three runs.
        let t = estimate(Some(45.0), Some("platform credits"), &[&p, &p, &p], true);
        assert_eq!((t.amount, t.quantity.tiles), (Some(135.0), Some(3)));
    }

    #[test]
    fn s2_tiles_per_month_and_products() {
        let p = params(
            json!({"aoi": {"west": 10.0, "south": 45.0, "east": 11.5, "north": 45.5},
            "start_date": "2024-01-01", "end_date": "2024-03-31"}),
        );
        let e = estimate(
            Some(18.0),
            Some("€ per region corresponding to a S2 tile extent, per month"),
            &[&p],
            false,
        );
        // 1.5° × cos(45.25°) ≈ 117 km wide → 2 columns; 0.5° ≈ 56 km high → 1 row; 3 months.
        assert_eq!(e.quantity.s2_tiles, Some(2));
        assert_eq!(e.quantity.months, Some(3.0));
        assert_eq!(e.amount, Some(108.0));
        assert_eq!(e.unit.as_deref(), Some("EUR"));
        let none = estimate(Some(1.5), Some("€ per input product"), &[&p], false);
        assert_eq!((none.amount, none.basis), (None, Basis::Unknown));
        assert!(
            none.explanation.contains("input product"),
            "{}",
            none.explanation
        );
        let listed =
            params(json!({"input_products": ["S1A_IW_SLC__1SDV_2024", "S1A_IW_SLC__1SDV_2025"]}));
        let two = estimate(Some(1.5), Some("€ per input product"), &[&listed], false);
        assert_eq!((two.amount, two.quantity.products), (Some(3.0), Some(2)));
    }

    #[test]
    fn budgets_are_checked_in_order_and_say_what_is_spent() {
        let limits = Limits {
            max_cost: Some(10.0),
            per_day: Some(50.0),
            per_month: Some(100.0),
        };
        let none = check_budgets(limits, Spent::default(), 10.0, "b", None);
        assert_eq!(none, None);
        let own = check_budgets(limits, Spent::default(), 10.5, "b", None).unwrap();
        assert_eq!((own.budget, own.limit), (BudgetKind::MaxCost, 10.0));
        let day = check_budgets(
            limits,
            Spent {
                own: 0.0,
                today: 45.0,
                month: 45.0,
            },
            6.0,
            "b",
            Some("EUR"),
        )
        .unwrap();
        assert_eq!(
            (day.budget, day.spent, day.estimate),
            (BudgetKind::PerDay, 45.0, 6.0)
        );
        assert!(
            day.sentence().contains("budget_per_day"),
            "{}",
            day.sentence()
        );
        let month = check_budgets(
            limits,
            Spent {
                own: 0.0,
                today: 0.0,
                month: 99.0,
            },
            2.0,
            "b",
            None,
        )
        .unwrap();
        assert_eq!(month.budget, BudgetKind::PerMonth);
        assert_eq!(
            check_budgets(
                Limits::default(),
                Spent {
                    own: 1e9,
                    today: 1e9,
                    month: 1e9
                },
                1e9,
                "b",
                None
            ),
            None
        );
    }

    #[test]
    fn unknown_says_why() {
        let p = params(json!({}));
        assert_eq!(estimate(None, None, &[&p], false).basis, Basis::Unknown);
        let no_unit = estimate(Some(1.0), None, &[&p], false);
        assert!(no_unit.explanation.contains("without a unit"));
        let odd = estimate(Some(1.0), Some("bananas per hour"), &[&p], false);
        assert!(odd.explanation.contains("not one eodispatch understands"));
        let no_area = estimate(Some(1.0), Some("platform credits per km²"), &[&p], false);
        assert!(
            no_area.explanation.contains("no spatial extent"),
            "{}",
            no_area.explanation
        );
        // Zero is a price, not an unknown.
        let q = params(
            json!({"spatial_extent": {"west": 0, "south": 0, "east": 0.1, "north": 0.1},
            "temporal_extent": ["2024-01-01", "2024-01-11"]}),
        );
        let zero = estimate(
            Some(0.0),
            Some("platform credits per km² per observation"),
            &[&q],
            false,
        );
        assert_eq!(zero.amount, Some(0.0));
    }
}
