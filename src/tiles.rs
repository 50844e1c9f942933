//! Tiling of an area of interest into a grid of square cells (`POST /tiles`).
//!
//! The hosted APEx Dispatch API projects the AOI to Web Mercator (EPSG:3857) and walks
//! cells from the AOI's bounding-box corner, so its "20 km" cells are 20 km of Mercator
//! metres (about 12.6 km on the ground at 51° N) and the grid moves with every AOI
//! (its `POST /tiles` endpoint). We keep the request and the response shape
//! (`{aoi: Polygon, grid}` → GeoJSON `GeometryCollection` of Polygons) but compute the
//! cells differently:
//!
//! * **True kilometres.** Cells are squares in the UTM projection (WGS84 ellipsoid) of
//!   the AOI's centre: the zone of the longitude of the bounding-box centre, the northern
//!   zone (EPSG:326xx) when the latitude of the bounding-box centre is ≥ 0, the southern
//!   one (EPSG:327xx, false northing 10 000 000 m) otherwise. The grid's CRS is therefore
//!   that EPSG code ([`grid_zone`] returns it), and a 20x20km cell is 20 000 m × 20 000 m
//!   in it, i.e. true kilometres up to the UTM scale factor (0.9996 on the central
//!   meridian, ≤ 1.001 at the zone edges). Standard 6° zones are used, without the
//!   Norway / Svalbard exceptions.
//! * **Snapped grid.** Cell edges lie on multiples of the cell size in UTM easting and
//!   northing, so the same area always gives the same cells, whatever the AOI, and
//!   adjacent AOIs (in the same zone) share cells exactly.
//! * **Intersection, not clipping.** A cell is kept when its square and the AOI share a
//!   region of positive area; cells are returned whole, never clipped to the AOI (no tiny
//!   slivers). The test is done in UTM coordinates: an AOI edge (the outer ring or a hole)
//!   passes through the cell's interior, or the cell lies inside the AOI (which covers
//!   "one polygon's vertex inside the other" and "cell inside a hole" — such a cell is
//!   dropped). A cell that only touches the AOI along a line or at a point is dropped.
//!   AOI edges are straight lines in longitude/latitude (as GeoJSON has them); they are
//!   densified every [`AOI_STEP_DEG`] before projection so that their curvature in UTM is
//!   followed to well under a metre.
//! * **Output.** Every cell is a GeoJSON Polygon in WGS84 longitude/latitude whose ring
//!   carries [`POINTS_PER_EDGE`] points per edge (the edges of a UTM square are slightly
//!   curved in longitude/latitude), is closed and counter-clockwise (RFC 7946).
//!   Coordinates are rounded to 1e-9° (≈ 0.1 mm). Cells are ordered row by row from the
//!   north-west: northernmost row first, west to east within a row.
//! * **Limit.** At most [`MAX_CELLS`] cells; beyond that the request is refused with the
//!   number of cells the AOI would need ([`TileError::TooManyCells`]).
//!
//! The transverse Mercator projection is implemented here (Krüger's series to 6th order
//! in the third flattening n, in Karney's 2011 formulation, with the exact conformal
//! latitude): forward and inverse agree with PROJ to well below a millimetre in the zone
//! and a few degrees outside it (see the tests, which compare against `gdaltransform`).
//!
//! Limitations: an AOI spanning several zones is gridded in the zone of its centre, so
//! cells far from that zone are squares of that zone's projection (on the ground they
//! shrink by the projection's scale factor, e.g. by 1.5 % at 10° of longitude from the
//! central meridian on the equator). AOIs wider than [`MAX_SPAN_DEG`] degrees of
//! longitude, hence also AOIs crossing the antimeridian (written with longitudes on both
//! sides of ±180°), are refused ([`TileError::TooWide`]): there is no antimeridian
//! support. Only `Polygon` AOIs are tiled (no `MultiPolygon`).
//!
//! Pure computation: no I/O, no GDAL.
//!
//! The cell test is ours rather than the `geo` crate's. `geo` has the predicate (a
//! prepared `relate` per cell, interiors meeting: `T********`) and picks the same cells
//! for the AOIs of the tests (holes and cells that only touch the AOI included), but
//! one `relate` per candidate cell costs from 2 to 9 000 times the single scan over
//! the edges done here, growing with the AOI: 1 s against 1 ms for 2 080 cells of a
//! 10° × 10° AOI, 26 s against 3 ms for the 18 000 cells of 30° × 30° (counted before
//! such a request is refused), in a debug build. The projection stays ours as well:
//! `geo` projects only through the PROJ C library.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// Maximum number of cells one request may produce.
pub const MAX_CELLS: u64 = 10_000;

/// Widest AOI accepted, in degrees of longitude (bounding box). Keeps every AOI vertex
/// within 48° of the grid's central meridian, where the transverse Mercator projection
/// is well behaved, and refuses AOIs that cross the antimeridian.
pub const MAX_SPAN_DEG: f64 = 90.0;

/// Points per cell edge in the returned rings (the corner plus 7 intermediate points).
pub const POINTS_PER_EDGE: usize = 8;

/// Longest AOI edge piece, in degrees, before projection to UTM (see the module docs).
pub const AOI_STEP_DEG: f64 = 0.05;

/// Grid sizes offered by `POST /tiles` (APEx `GridTypeEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum Grid {
    /// Cells of 20 km × 20 km.
    #[serde(rename = "20x20km")]
    Km20,
    /// Cells of 250 km × 250 km.
    #[serde(rename = "250x250km")]
    Km250,
}

impl Grid {
    /// All grids, smallest cells first.
    pub const ALL: [Grid; 2] = [Grid::Km20, Grid::Km250];

    /// Side of a cell in UTM metres.
    pub fn cell_size_m(self) -> f64 {
        match self {
            Grid::Km20 => 20_000.0,
            Grid::Km250 => 250_000.0,
        }
    }

    /// The wire name (`20x20km`, `250x250km`).
    pub fn as_str(self) -> &'static str {
        match self {
            Grid::Km20 => "20x20km",
            Grid::Km250 => "250x250km",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Grid> {
        Grid::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an AOI cannot be tiled. The messages are meant for the API client.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// The AOI needs more cells than [`MAX_CELLS`].
    #[error(
        "the AOI would need {cells} grid cells, more than the maximum of {max}; \
         use the larger grid (250x250km) or a smaller AOI"
    )]
    TooManyCells { cells: u64, max: u64 },
    /// The AOI's outer ring encloses no area.
    #[error("the AOI polygon encloses no area")]
    EmptyAoi,
    /// The AOI is too wide in longitude (or crosses the antimeridian).
    #[error(
        "the AOI spans {span_deg:.1}° of longitude, more than {max_deg}°; AOIs crossing \
         the antimeridian are not supported: split the AOI"
    )]
    TooWide { span_deg: f64, max_deg: f64 },
    /// The AOI is not a GeoJSON Polygon with valid WGS84 positions.
    #[error("invalid AOI: {0}")]
    InvalidAoi(String),
}

// ---------------------------------------------------------------------------------------
// Transverse Mercator (Krüger series, Karney 2011) and UTM
// ---------------------------------------------------------------------------------------

/// WGS84 semi-major axis (m).
const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
const WGS84_F: f64 = 1.0 / 298.257_223_563;
/// UTM scale factor on the central meridian.
const UTM_K0: f64 = 0.9996;
/// UTM false easting (m).
const UTM_FALSE_EASTING: f64 = 500_000.0;
/// UTM false northing of southern zones (m).
const UTM_FALSE_NORTHING_SOUTH: f64 = 10_000_000.0;

/// Constants of the transverse Mercator series for one ellipsoid.
struct TmSeries {
    /// k0 times the rectifying radius A.
    k0_a: f64,
    /// Krüger coefficients α1..α6 (geographic → projected).
    alpha: [f64; 6],
    /// Krüger coefficients β1..β6 (projected → geographic).
    beta: [f64; 6],
}

impl TmSeries {
    const fn new(a: f64, f: f64, k0: f64) -> TmSeries {
        let n = f / (2.0 - f);
        let n2 = n * n;
        let n3 = n2 * n;
        let n4 = n3 * n;
        let n5 = n4 * n;
        let n6 = n5 * n;
        let rect = a / (1.0 + n) * (1.0 + n2 / 4.0 + n4 / 64.0 + n6 / 256.0);
        TmSeries {
            k0_a: k0 * rect,
            alpha: [
                n / 2.0 - 2.0 * n2 / 3.0 + 5.0 * n3 / 16.0 + 41.0 * n4 / 180.0 - 127.0 * n5 / 288.0
                    + 7891.0 * n6 / 37800.0,
                13.0 * n2 / 48.0 - 3.0 * n3 / 5.0 + 557.0 * n4 / 1440.0 + 281.0 * n5 / 630.0
                    - 1983433.0 * n6 / 1935360.0,
                61.0 * n3 / 240.0 - 103.0 * n4 / 140.0
                    + 15061.0 * n5 / 26880.0
                    + 167603.0 * n6 / 181440.0,
                49561.0 * n4 / 161280.0 - 179.0 * n5 / 168.0 + 6601661.0 * n6 / 7257600.0,
                34729.0 * n5 / 80640.0 - 3418889.0 * n6 / 1995840.0,
                212378941.0 * n6 / 319334400.0,
            ],
            beta: [
                n / 2.0 - 2.0 * n2 / 3.0 + 37.0 * n3 / 96.0 - n4 / 360.0 - 81.0 * n5 / 512.0
                    + 96199.0 * n6 / 604800.0,
                n2 / 48.0 + n3 / 15.0 - 437.0 * n4 / 1440.0 + 46.0 * n5 / 105.0
                    - 1118711.0 * n6 / 3870720.0,
                17.0 * n3 / 480.0 - 37.0 * n4 / 840.0 - 209.0 * n5 / 4480.0 + 5569.0 * n6 / 90720.0,
                4397.0 * n4 / 161280.0 - 11.0 * n5 / 504.0 - 830251.0 * n6 / 7257600.0,
                4583.0 * n5 / 161280.0 - 108847.0 * n6 / 3991680.0,
                20648693.0 * n6 / 638668800.0,
            ],
        }
    }
}

const UTM_WGS84: TmSeries = TmSeries::new(WGS84_A, WGS84_F, UTM_K0);

/// First eccentricity of WGS84.
fn wgs84_e() -> f64 {
    (WGS84_F * (2.0 - WGS84_F)).sqrt()
}

/// tan of the conformal latitude from tan of the geodetic latitude.
fn taup_of_tau(tau: f64, e: f64) -> f64 {
    let tau1 = tau.hypot(1.0);
    let sig = (e * (e * tau / tau1).atanh()).sinh();
    sig.hypot(1.0) * tau - sig * tau1
}

/// tan of the geodetic latitude from tan of the conformal latitude (Newton iteration).
fn tau_of_taup(taup: f64, e: f64) -> f64 {
    let e2m = 1.0 - e * e;
    let mut tau = taup / e2m;
    let tol = f64::EPSILON.sqrt() * 0.1 * taup.abs().max(1.0);
    for _ in 0..8 {
        let taupa = taup_of_tau(tau, e);
        let dtau =
            (taup - taupa) * (1.0 + e2m * tau * tau) / (e2m * tau.hypot(1.0) * taupa.hypot(1.0));
        tau += dtau;
        if dtau.abs() < tol {
            break;
        }
    }
    tau
}

/// Wraps a longitude difference into [-180, 180).
fn wrap_deg(x: f64) -> f64 {
    let y = (x + 180.0).rem_euclid(360.0) - 180.0;
    if y.is_finite() {
        y
    } else {
        x
    }
}

/// A UTM zone on the WGS84 ellipsoid (EPSG:326zz north, EPSG:327zz south).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtmZone {
    /// Zone number, 1..=60.
    pub zone: u8,
    /// Northern hemisphere (false northing 0) or southern (10 000 000 m).
    pub north: bool,
}

impl UtmZone {
    /// The EPSG code of the zone's WGS84 / UTM CRS.
    pub fn epsg(&self) -> u32 {
        (if self.north { 32600 } else { 32700 }) + u32::from(self.zone)
    }

    /// The standard 6° zone of a longitude (no Norway/Svalbard exceptions); southern
    /// when `lat < 0`.
    pub fn for_lonlat(lon: f64, lat: f64) -> UtmZone {
        let lon = wrap_deg(lon);
        let zone = ((lon + 180.0) / 6.0).floor().clamp(0.0, 59.0) as u8 + 1;
        UtmZone {
            zone,
            north: lat >= 0.0 || lat.is_nan(),
        }
    }

    /// Longitude of the zone's central meridian, in degrees.
    pub fn central_meridian(&self) -> f64 {
        f64::from(self.zone) * 6.0 - 183.0
    }

    fn false_northing(&self) -> f64 {
        if self.north {
            0.0
        } else {
            UTM_FALSE_NORTHING_SOUTH
        }
    }

    /// Projects WGS84 longitude/latitude (degrees) to (easting, northing) in metres.
    pub fn forward(&self, lon: f64, lat: f64) -> (f64, f64) {
        let tm = &UTM_WGS84;
        let e = wgs84_e();
        let lam = wrap_deg(lon - self.central_meridian()).to_radians();
        let phi = lat.to_radians();
        let tau = phi.sin() / phi.cos();
        let taup = taup_of_tau(tau, e);
        let (sl, cl) = lam.sin_cos();
        let xip = taup.atan2(cl);
        let etap = (sl / taup.hypot(cl)).asinh();
        let mut xi = xip;
        let mut eta = etap;
        for (j, a) in tm.alpha.iter().enumerate() {
            let k = 2.0 * (j as f64 + 1.0);
            let (s, c) = (k * xip).sin_cos();
            xi += a * s * (k * etap).cosh();
            eta += a * c * (k * etap).sinh();
        }
        (
            UTM_FALSE_EASTING + tm.k0_a * eta,
            self.false_northing() + tm.k0_a * xi,
        )
    }

    /// Projects (easting, northing) in metres back to WGS84 (longitude, latitude) in
    /// degrees.
    pub fn inverse(&self, easting: f64, northing: f64) -> (f64, f64) {
        let tm = &UTM_WGS84;
        let e = wgs84_e();
        let xi = (northing - self.false_northing()) / tm.k0_a;
        let eta = (easting - UTM_FALSE_EASTING) / tm.k0_a;
        let mut xip = xi;
        let mut etap = eta;
        for (j, b) in tm.beta.iter().enumerate() {
            let k = 2.0 * (j as f64 + 1.0);
            let (s, c) = (k * xi).sin_cos();
            xip -= b * s * (k * eta).cosh();
            etap -= b * c * (k * eta).sinh();
        }
        let (sx, cx) = xip.sin_cos();
        let she = etap.sinh();
        let taup = sx / she.hypot(cx);
        let lam = she.atan2(cx);
        let tau = tau_of_taup(taup, e);
        let lat = tau.atan().to_degrees();
        let lon = wrap_deg(self.central_meridian() + lam.to_degrees());
        (lon, lat)
    }
}

// ---------------------------------------------------------------------------------------
// Tiling
// ---------------------------------------------------------------------------------------

/// A point in UTM metres.
#[derive(Debug, Clone, Copy)]
struct Pt {
    x: f64,
    y: f64,
}

/// The AOI: its rings as given (longitude/latitude), without the closing position.
struct Aoi {
    rings: Vec<Vec<(f64, f64)>>,
}

fn parse_aoi(aoi: &Value) -> Result<Aoi, TileError> {
    let invalid = |m: &str| TileError::InvalidAoi(m.to_string());
    match aoi.get("type").and_then(Value::as_str) {
        Some("Polygon") => {}
        Some(other) => {
            return Err(TileError::InvalidAoi(format!(
                "expected a GeoJSON Polygon, got {other:?}"
            )))
        }
        None => return Err(invalid("expected a GeoJSON Polygon with a \"type\"")),
    }
    let rings_json = aoi
        .get("coordinates")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("\"coordinates\" must be an array of linear rings"))?;
    if rings_json.is_empty() {
        return Err(TileError::EmptyAoi);
    }
    let mut rings = Vec::with_capacity(rings_json.len());
    for ring_json in rings_json {
        let positions = ring_json
            .as_array()
            .ok_or_else(|| invalid("a linear ring must be an array of positions"))?;
        let mut ring = Vec::with_capacity(positions.len());
        for p in positions {
            let pair = p.as_array().filter(|a| a.len() >= 2);
            let lonlat = pair.and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
            let (lon, lat) = lonlat
                .ok_or_else(|| invalid("a position must be [longitude, latitude] numbers"))?;
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(TileError::InvalidAoi(format!(
                    "position [{lon}, {lat}] is outside WGS84 longitude/latitude bounds"
                )));
            }
            ring.push((lon, lat));
        }
        if ring.len() > 1 && ring.first() == ring.last() {
            ring.pop();
        }
        rings.push(ring);
    }
    // Holes with fewer than 3 positions enclose nothing; the outer ring must enclose area.
    let outer = &rings[0];
    if outer.len() < 3 || shoelace(outer) == 0.0 {
        return Err(TileError::EmptyAoi);
    }
    rings.retain(|r| r.len() >= 3);
    Ok(Aoi { rings })
}

/// Twice the signed area of a ring (implicitly closed).
fn shoelace(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (x0, y0) = ring[i];
            let (x1, y1) = ring[(i + 1) % n];
            x0 * y1 - x1 * y0
        })
        .sum()
}

/// The zone whose grid tiles this AOI: that of its bounding-box centre.
fn zone_of(aoi: &Aoi) -> Result<UtmZone, TileError> {
    let outer = &aoi.rings[0];
    let (mut lon0, mut lon1, mut lat0, mut lat1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(lon, lat) in outer {
        lon0 = lon0.min(lon);
        lon1 = lon1.max(lon);
        lat0 = lat0.min(lat);
        lat1 = lat1.max(lat);
    }
    let span = lon1 - lon0;
    if span > MAX_SPAN_DEG {
        return Err(TileError::TooWide {
            span_deg: span,
            max_deg: MAX_SPAN_DEG,
        });
    }
    Ok(UtmZone::for_lonlat(
        (lon0 + lon1) / 2.0,
        (lat0 + lat1) / 2.0,
    ))
}

/// The UTM zone (and so the EPSG code) of the grid that [`tiles`] uses for this AOI.
pub fn grid_zone(aoi: &Value) -> Result<UtmZone, TileError> {
    zone_of(&parse_aoi(aoi)?)
}

/// Projects a ring to UTM after densifying its (longitude/latitude straight) edges.
fn project_ring(zone: &UtmZone, ring: &[(f64, f64)]) -> Result<Vec<Pt>, TileError> {
    let n = ring.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (lon0, lat0) = ring[i];
        let (lon1, lat1) = ring[(i + 1) % n];
        let len = (lon1 - lon0).abs().max((lat1 - lat0).abs());
        let pieces = (len / AOI_STEP_DEG).ceil().max(1.0) as usize;
        for k in 0..pieces {
            let t = k as f64 / pieces as f64;
            let (x, y) = zone.forward(lon0 + t * (lon1 - lon0), lat0 + t * (lat1 - lat0));
            if !x.is_finite() || !y.is_finite() {
                return Err(TileError::InvalidAoi(format!(
                    "position near [{lon0}, {lat0}] cannot be projected to UTM zone {}",
                    zone.epsg()
                )));
            }
            out.push(Pt { x, y });
        }
    }
    Ok(out)
}

/// Whether segment p–q meets the open rectangle (x0, x1) × (y0, y1) (Liang–Barsky
/// clipping to the closed rectangle; the clipped piece lies in the open rectangle
/// unless it is a single point or runs along the boundary, and then its midpoint is on
/// the boundary).
fn segment_meets_open_rect(p: Pt, q: Pt, x0: f64, x1: f64, y0: f64, y1: f64) -> bool {
    let dx = q.x - p.x;
    let dy = q.y - p.y;
    let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
    for (pk, qk) in [
        (-dx, p.x - x0),
        (dx, x1 - p.x),
        (-dy, p.y - y0),
        (dy, y1 - p.y),
    ] {
        if pk == 0.0 {
            if qk < 0.0 {
                return false;
            }
        } else {
            let t = qk / pk;
            if pk < 0.0 {
                if t > t1 {
                    return false;
                }
                t0 = t0.max(t);
            } else {
                if t < t0 {
                    return false;
                }
                t1 = t1.min(t);
            }
        }
    }
    let tm = 0.5 * (t0 + t1);
    let mx = p.x + tm * dx;
    let my = p.y + tm * dy;
    mx > x0 && mx < x1 && my > y0 && my < y1
}

/// Cells of the snapped grid (column, row indices: south-west corner at
/// (col · size, row · size) in UTM) that intersect the AOI, north-west first.
struct Cells {
    zone: UtmZone,
    size: f64,
    cells: Vec<(i64, i64)>,
}

fn compute_cells(aoi: &Value, grid: Grid) -> Result<Cells, TileError> {
    let aoi = parse_aoi(aoi)?;
    let zone = zone_of(&aoi)?;
    let size = grid.cell_size_m();
    let rings: Vec<Vec<Pt>> = aoi
        .rings
        .iter()
        .map(|r| project_ring(&zone, r))
        .collect::<Result<_, _>>()?;

    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &rings[0] {
        xmin = xmin.min(p.x);
        xmax = xmax.max(p.x);
        ymin = ymin.min(p.y);
        ymax = ymax.max(p.y);
    }
    // Candidate cells: those meeting the bounding box of the outer ring.
    let c0 = (xmin / size).floor() as i64;
    let c1 = ((xmax / size).ceil() as i64).max(c0 + 1);
    let r0 = (ymin / size).floor() as i64;
    let r1 = ((ymax / size).ceil() as i64).max(r0 + 1);
    let ncols = (c1 - c0) as usize;
    let nrows = (r1 - r0) as usize;
    // Bounded by MAX_SPAN_DEG: at most ~ 610 × 1000 candidates for 20 km cells.
    let mut keep = vec![false; ncols * nrows];
    // For the inside test: x of the crossings of each row's centre line with the rings.
    let mut crossings: Vec<Vec<f64>> = vec![Vec::new(); nrows];

    for ring in &rings {
        let n = ring.len();
        for i in 0..n {
            let p = ring[i];
            let q = ring[(i + 1) % n];
            // 1. Cells whose interior this edge passes through.
            let ca = ((p.x.min(q.x) / size).floor() as i64).max(c0);
            let cb = ((p.x.max(q.x) / size).floor() as i64).min(c1 - 1);
            let ra = ((p.y.min(q.y) / size).floor() as i64).max(r0);
            let rb = ((p.y.max(q.y) / size).floor() as i64).min(r1 - 1);
            for r in ra..=rb {
                for c in ca..=cb {
                    let idx = (r - r0) as usize * ncols + (c - c0) as usize;
                    if keep[idx] {
                        continue;
                    }
                    let (x0, y0) = (c as f64 * size, r as f64 * size);
                    if segment_meets_open_rect(p, q, x0, x0 + size, y0, y0 + size) {
                        keep[idx] = true;
                    }
                }
            }
            // 2. Crossings with the centre lines of the rows (half-open rule).
            if p.y != q.y {
                let lo = ((p.y.min(q.y) / size - 0.5).floor() as i64).max(r0);
                let hi = ((p.y.max(q.y) / size - 0.5).ceil() as i64).min(r1 - 1);
                for r in lo..=hi {
                    let y = (r as f64 + 0.5) * size;
                    if (p.y > y) != (q.y > y) {
                        let x = p.x + (y - p.y) * (q.x - p.x) / (q.y - p.y);
                        crossings[(r - r0) as usize].push(x);
                    }
                }
            }
        }
    }
    // 3. Cells no edge passes through are wholly inside or wholly outside the AOI
    //    (holes included, even-odd rule): test their centre.
    for (ri, xs) in crossings.iter_mut().enumerate() {
        xs.sort_by(f64::total_cmp);
        let mut k = 0;
        for ci in 0..ncols {
            let xc = ((c0 + ci as i64) as f64 + 0.5) * size;
            while k < xs.len() && xs[k] < xc {
                k += 1;
            }
            if k % 2 == 1 {
                keep[ri * ncols + ci] = true;
            }
        }
    }

    let mut cells = Vec::new();
    for ri in (0..nrows).rev() {
        for ci in 0..ncols {
            if keep[ri * ncols + ci] {
                cells.push((c0 + ci as i64, r0 + ri as i64));
            }
        }
    }
    Ok(Cells { zone, size, cells })
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// The GeoJSON Polygon of one cell: counter-clockwise from the south-west corner,
/// [`POINTS_PER_EDGE`] points per edge, closed.
fn cell_polygon(zone: &UtmZone, size: f64, col: i64, row: i64) -> Value {
    let (x0, y0) = (col as f64 * size, row as f64 * size);
    let corners = [
        (x0, y0),
        (x0 + size, y0),
        (x0 + size, y0 + size),
        (x0, y0 + size),
    ];
    let mut ring = Vec::with_capacity(4 * POINTS_PER_EDGE + 1);
    for i in 0..4 {
        let (ax, ay) = corners[i];
        let (bx, by) = corners[(i + 1) % 4];
        for k in 0..POINTS_PER_EDGE {
            let t = k as f64 / POINTS_PER_EDGE as f64;
            let (lon, lat) = zone.inverse(ax + t * (bx - ax), ay + t * (by - ay));
            ring.push(json!([round9(lon), round9(lat)]));
        }
    }
    ring.push(ring[0].clone());
    json!({"type": "Polygon", "coordinates": [ring]})
}

/// Tiles `aoi` (a validated GeoJSON Polygon) with `grid`: the cells of the snapped UTM
/// grid that intersect it, as `{"type":"GeometryCollection","geometries":[Polygon…]}`.
/// See the module documentation for the grid definition.
pub fn tiles(aoi: &Value, grid: Grid) -> Result<Value, TileError> {
    let Cells { zone, size, cells } = compute_cells(aoi, grid)?;
    let n = cells.len() as u64;
    if n > MAX_CELLS {
        return Err(TileError::TooManyCells {
            cells: n,
            max: MAX_CELLS,
        });
    }
    let geometries: Vec<Value> = cells
        .iter()
        .map(|&(c, r)| cell_polygon(&zone, size, c, r))
        .collect();
    Ok(json!({"type": "GeometryCollection", "geometries": geometries}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// (lon, lat, EPSG, easting, northing) computed with GDAL 3.6.2 / PROJ:
    /// `echo "lon lat" | gdaltransform -s_srs '+proj=longlat +datum=WGS84' -t_srs EPSG:x`.
    const REFERENCE: [(f64, f64, u32, f64, f64); 16] = [
        (16.342, 47.962, 32633, 600179.725328066, 5312948.12432861),
        (5.13, 51.35, 32631, 648326.484841227, 5690901.01941887),
        (-46.6, -23.5, 32723, 336625.13185735, 7400218.86017604),
        // Near the zone edges (λ ≈ ±3°).
        (12.0001, 47.0, 32633, 271938.036774024, 5209532.55676786),
        (17.9999, 60.0, 32633, 667289.247180285, 6655205.23065686),
        (-6.0, -33.9, 32730, 222584.01648209, 6244878.75706353),
        (151.2, -33.87, 32756, 333510.650080743, 6250800.24118355),
        (-66.5, -79.9, 32719, 548929.285087871, 1128524.57185305),
        (-69.0, -79.9, 32719, 500000.0, 1129575.67787744),
        (17.5, 83.9, 32633, 529650.446857125, 9317573.46821494),
        (11.5, 0.5, 32632, 778265.77829555, 55318.0399765434),
        (-179.9, -0.5, 32701, 177176.037446753, 9944663.62243432),
        // Outside the zone (λ = -7°, +10°, -5.5°).
        (8.0, 52.0, 32633, 19737.0665186544, 5784207.40208238),
        (25.0, 10.0, 32633, 1601255.22689239, 1122228.28291302),
        (-50.5, -15.0, 32723, -92084.2128403326, 8334302.41712322),
        (15.0, 83.9, 32633, 500000.0, 9316930.15406656),
    ];

    fn zone_of_epsg(epsg: u32) -> UtmZone {
        let north = (32601..=32660).contains(&epsg);
        assert!(north || (32701..=32760).contains(&epsg), "not UTM: {epsg}");
        UtmZone {
            zone: (epsg % 100) as u8,
            north,
        }
    }

    /// Distance in metres between two nearby lon/lat points (local approximation).
    fn lonlat_dist_m(a: (f64, f64), b: (f64, f64)) -> f64 {
        let m_per_deg = 111_320.0;
        let dx = (a.0 - b.0) * m_per_deg * a.1.to_radians().cos();
        let dy = (a.1 - b.1) * m_per_deg;
        dx.hypot(dy)
    }

    #[test]
    fn zone_selection_and_epsg() {
        assert_eq!(UtmZone::for_lonlat(5.13, 51.35).epsg(), 32631);
        assert_eq!(UtmZone::for_lonlat(-46.6, -23.5).epsg(), 32723);
        assert_eq!(UtmZone::for_lonlat(-180.0, 10.0).epsg(), 32601);
        assert_eq!(UtmZone::for_lonlat(180.0, 10.0).epsg(), 32601);
        assert_eq!(UtmZone::for_lonlat(179.99, -1.0).epsg(), 32760);
        assert_eq!(UtmZone::for_lonlat(0.0, 0.0).epsg(), 32631);
        assert_eq!(UtmZone::for_lonlat(-0.0001, -0.0001).epsg(), 32730);
        assert_eq!(UtmZone::for_lonlat(12.0, 47.0).epsg(), 32633);
        assert_eq!(
            UtmZone {
                zone: 33,
                north: true
            }
            .central_meridian(),
            15.0
        );
        assert_eq!(
            UtmZone {
                zone: 1,
                north: false
            }
            .central_meridian(),
            -177.0
        );
    }

    #[test]
    fn projection_matches_proj_reference_values() {
        for &(lon, lat, epsg, e, n) in &REFERENCE {
            let z = zone_of_epsg(epsg);
            let (x, y) = z.forward(lon, lat);
            let d = (x - e).hypot(y - n);
            println!("forward {lon} {lat} EPSG:{epsg}: Δ = {:.3e} m", d);
            assert!(
                d < 1e-3,
                "forward {lon},{lat} EPSG:{epsg}: ({x}, {y}) vs ({e}, {n})"
            );
            let (lo, la) = z.inverse(e, n);
            let d = lonlat_dist_m((lo, la), (lon, lat));
            println!("inverse EPSG:{epsg} {e} {n}: Δ = {:.3e} m", d);
            assert!(
                d < 1e-3,
                "inverse EPSG:{epsg} {e},{n}: ({lo}, {la}) vs ({lon}, {lat})"
            );
        }
    }

    /// Runs gdaltransform on some points; `None` when it is not installed.
    fn gdaltransform(s_srs: &str, t_srs: &str, pts: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
        use std::io::Write;
        let mut child = match Command::new("gdaltransform")
            .args(["-s_srs", s_srs, "-t_srs", t_srs])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("gdaltransform: {e}"),
        };
        let mut stdin = child.stdin.take().unwrap();
        for (a, b) in pts {
            writeln!(stdin, "{a:.12} {b:.12}").unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gdaltransform failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let res: Vec<(f64, f64)> = text
            .lines()
            .map(|l| {
                let v: Vec<f64> = l.split_whitespace().map(|t| t.parse().unwrap()).collect();
                assert!(v.len() >= 2, "unexpected gdaltransform output {l:?}");
                (v[0], v[1])
            })
            .collect();
        assert_eq!(res.len(), pts.len(), "gdaltransform output {text:?}");
        Some(res)
    }

    #[test]
    fn projection_matches_live_gdaltransform() {
        const LONLAT: &str = "+proj=longlat +datum=WGS84 +no_defs";
        // Sanity check of the axis order: Vienna is at E 600 km in zone 33N.
        let Some(v) = gdaltransform(LONLAT, "EPSG:32633", &[(16.342, 47.962)]) else {
            println!("SKIPPED: gdaltransform is not installed");
            return;
        };
        assert!(
            (v[0].0 - 600_179.7).abs() < 1.0,
            "gdaltransform axis order: {v:?}"
        );
        let mut points: Vec<(f64, f64, u32)> = REFERENCE.iter().map(|r| (r.0, r.1, r.2)).collect();
        // More points: latitude bands at the zone edges and up to 9° outside them.
        for (lat, north) in [(-75.3, false), (-41.7, false), (-0.2, false), (0.3, true)] {
            for dl in [-9.0, -3.0, -1.1, 0.7, 2.999, 9.0] {
                let z = UtmZone { zone: 34, north };
                points.push((z.central_meridian() + dl, lat, z.epsg()));
            }
        }
        for (lat, dl) in [
            (33.3, -2.9),
            (57.8, 3.0),
            (72.1, 8.5),
            (44.0, -6.0),
            (89.5, 2.0),
        ] {
            points.push((-75.0 + dl, lat, 32618));
        }
        let mut epsgs: Vec<u32> = points.iter().map(|p| p.2).collect();
        epsgs.sort_unstable();
        epsgs.dedup();
        let mut worst: f64 = 0.0;
        let mut checked = 0;
        for epsg in epsgs {
            let z = zone_of_epsg(epsg);
            let t = format!("EPSG:{epsg}");
            let lonlat: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.2 == epsg)
                .map(|p| (p.0, p.1))
                .collect();
            let gdal = gdaltransform(LONLAT, &t, &lonlat).unwrap();
            // Inverse of points off the grid of reference values.
            let shifted: Vec<(f64, f64)> = gdal
                .iter()
                .map(|&(e, n)| (e + 1234.567, n - 2345.678))
                .collect();
            let gdal_inv = gdaltransform(&t, LONLAT, &shifted).unwrap();
            for i in 0..lonlat.len() {
                let (lon, lat) = lonlat[i];
                let (e, n) = gdal[i];
                let (x, y) = z.forward(lon, lat);
                let d = (x - e).hypot(y - n);
                worst = worst.max(d);
                assert!(
                    d < 1e-3,
                    "forward {lon},{lat} {t}: ({x}, {y}) vs GDAL ({e}, {n})"
                );
                let (pe, pn) = shifted[i];
                let (glon, glat) = gdal_inv[i];
                let (lo, la) = z.inverse(pe, pn);
                let d = lonlat_dist_m((lo, la), (glon, glat));
                worst = worst.max(d);
                assert!(
                    d < 1e-3,
                    "inverse {pe},{pn} {t}: ({lo}, {la}) vs GDAL ({glon}, {glat})"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, points.len());
        println!("{checked} points, largest difference to gdaltransform: {worst:.3e} m");
    }

    #[test]
    fn forward_inverse_round_trip() {
        let mut worst_deg: f64 = 0.0;
        let mut worst_m: f64 = 0.0;
        for zone in [1u8, 17, 31, 33, 60] {
            for north in [true, false] {
                let z = UtmZone { zone, north };
                let cm = z.central_meridian();
                let lats: &[f64] = if north {
                    &[0.0, 0.001, 12.5, 45.0, 51.35, 70.0, 84.0, 89.9]
                } else {
                    &[-0.001, -12.5, -23.5, -45.0, -70.0, -80.0, -89.9]
                };
                for &lat in lats {
                    for dl in [-8.0, -3.0, -2.5, -0.5, 0.0, 1.0, 3.0, 7.5] {
                        let lon = wrap_deg(cm + dl);
                        let (e, n) = z.forward(lon, lat);
                        let (lo, la) = z.inverse(e, n);
                        let dd = wrap_deg(lo - lon).abs().max((la - lat).abs());
                        worst_deg = worst_deg.max(dd);
                        assert!(dd < 1e-11, "{z:?} {lon},{lat} -> {e},{n} -> {lo},{la}");
                        let (e2, n2) = z.forward(lo, la);
                        let dm = (e2 - e).hypot(n2 - n);
                        worst_m = worst_m.max(dm);
                        assert!(dm < 1e-6, "{z:?} {e},{n}: back to {e2},{n2}");
                    }
                }
            }
        }
        println!("round trip: worst {worst_deg:.2e}°, {worst_m:.2e} m");
        // Scale on the central meridian of the equator: 0.9996 m per metre.
        let z = UtmZone {
            zone: 31,
            north: true,
        };
        let (_, n) = z.forward(3.0, 1.0);
        assert!((n - 110_574.389 * 0.9996).abs() < 0.1, "{n}");
    }

    #[test]
    fn grid_names() {
        assert_eq!(Grid::parse("20x20km"), Some(Grid::Km20));
        assert_eq!(Grid::parse("250x250km"), Some(Grid::Km250));
        assert_eq!(Grid::parse("20km"), None);
        for g in Grid::ALL {
            assert_eq!(serde_json::to_value(g).unwrap(), json!(g.as_str()));
            let back: Grid = serde_json::from_value(json!(g.as_str())).unwrap();
            assert_eq!(back, g);
        }
        assert_eq!(Grid::Km20.cell_size_m(), 20_000.0);
        assert_eq!(Grid::Km250.cell_size_m(), 250_000.0);
    }

    // --- helpers for the tiling tests ---------------------------------------------------

    fn positions(v: &Value) -> Vec<(f64, f64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect()
    }

    fn aoi_rings(aoi: &Value) -> Vec<Vec<(f64, f64)>> {
        aoi["coordinates"]
            .as_array()
            .unwrap()
            .iter()
            .map(positions)
            .collect()
    }

    /// Even-odd point in polygon, planar in lon/lat (rings closed).
    fn inside_lonlat(rings: &[Vec<(f64, f64)>], (x, y): (f64, f64)) -> bool {
        let mut inside = false;
        for ring in rings {
            for w in ring.windows(2) {
                let ((x0, y0), (x1, y1)) = (w[0], w[1]);
                if (y0 > y) != (y1 > y) && x < x0 + (y - y0) * (x1 - x0) / (y1 - y0) {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Checks one returned cell: a closed, counter-clockwise ring of 4 × 8 points
    /// whose corners are a `size` square on the snapped grid of `zone` and whose other
    /// points lie on its edges (all to 1 mm). Returns the (column, row) of the cell.
    fn check_cell(poly: &Value, zone: &UtmZone, size: f64) -> (i64, i64) {
        assert_eq!(poly["type"], "Polygon");
        let rings = poly["coordinates"].as_array().unwrap();
        assert_eq!(rings.len(), 1);
        let ring = positions(&rings[0]);
        assert_eq!(ring.len(), 4 * POINTS_PER_EDGE + 1);
        assert_eq!(ring.first(), ring.last(), "ring not closed");
        assert!(
            shoelace(&ring[..ring.len() - 1]) > 0.0,
            "ring not counter-clockwise"
        );
        let utm: Vec<(f64, f64)> = ring.iter().map(|&(lo, la)| zone.forward(lo, la)).collect();
        let (x0, y0) = utm[0];
        let col = (x0 / size).round();
        let row = (y0 / size).round();
        assert!(
            (x0 - col * size).abs() < 1e-3 && (y0 - row * size).abs() < 1e-3,
            "{x0} {y0}"
        );
        let corners = [
            (col * size, row * size),
            ((col + 1.0) * size, row * size),
            ((col + 1.0) * size, (row + 1.0) * size),
            (col * size, (row + 1.0) * size),
        ];
        for (i, &(x, y)) in utm.iter().enumerate().take(4 * POINTS_PER_EDGE) {
            let (ax, ay) = corners[i / POINTS_PER_EDGE];
            let (bx, by) = corners[(i / POINTS_PER_EDGE + 1) % 4];
            let t = (i % POINTS_PER_EDGE) as f64 / POINTS_PER_EDGE as f64;
            let (ex, ey) = (ax + t * (bx - ax), ay + t * (by - ay));
            assert!(
                (x - ex).hypot(y - ey) < 1e-3,
                "point {i}: ({x}, {y}) vs ({ex}, {ey})"
            );
        }
        // Side lengths from the corner points themselves.
        for k in 0..4 {
            let a = utm[k * POINTS_PER_EDGE];
            let b = utm[((k + 1) % 4) * POINTS_PER_EDGE];
            let side = (a.0 - b.0).hypot(a.1 - b.1);
            assert!((side - size).abs() < 1e-3, "side {k}: {side}");
        }
        (col as i64, row as i64)
    }

    /// Checks every cell of a `tiles` answer and returns their (column, row).
    fn check_collection(fc: &Value, zone: &UtmZone, size: f64) -> Vec<(i64, i64)> {
        assert_eq!(fc["type"], "GeometryCollection");
        let cells: Vec<(i64, i64)> = fc["geometries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| check_cell(g, zone, size))
            .collect();
        // Row by row from the north-west, no duplicates.
        for w in cells.windows(2) {
            assert!(
                w[1].1 < w[0].1 || (w[1].1 == w[0].1 && w[1].0 > w[0].0),
                "order: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
        cells
    }

    /// Independent reference: the cells (north-west first) of which some point of a
    /// `k` × `k` sample grid lies inside the AOI (planar lon/lat point-in-polygon).
    fn brute_force_cells(aoi: &Value, zone: &UtmZone, size: f64, k: usize) -> Vec<(i64, i64)> {
        let rings = aoi_rings(aoi);
        let utm: Vec<(f64, f64)> = rings[0].iter().map(|&(a, b)| zone.forward(a, b)).collect();
        let fold = |f: fn(f64, f64) -> f64, init: f64, sel: fn(&(f64, f64)) -> f64| {
            utm.iter().map(sel).fold(init, f)
        };
        let c0 = (fold(f64::min, f64::MAX, |p| p.0) / size).floor() as i64 - 1;
        let c1 = (fold(f64::max, f64::MIN, |p| p.0) / size).ceil() as i64 + 1;
        let r0 = (fold(f64::min, f64::MAX, |p| p.1) / size).floor() as i64 - 1;
        let r1 = (fold(f64::max, f64::MIN, |p| p.1) / size).ceil() as i64 + 1;
        let mut out = Vec::new();
        for r in (r0..r1).rev() {
            for c in c0..c1 {
                let hit = (0..k * k).any(|s| {
                    let x = (c as f64 + ((s % k) as f64 + 0.5) / k as f64) * size;
                    let y = (r as f64 + ((s / k) as f64 + 0.5) / k as f64) * size;
                    inside_lonlat(&rings, zone.inverse(x, y))
                });
                if hit {
                    out.push((c, r));
                }
            }
        }
        out
    }

    const NOTEBOOK_AOI: &str = r#"{"type":"Polygon","coordinates":[[[5.13,51.35],[4.84,51.33],[4.79,51.12],[5.16,51.12],[5.19,51.34],[5.13,51.35]]]}"#;

    fn aoi(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn notebook_aoi_20km() {
        let aoi = aoi(NOTEBOOK_AOI);
        let zone = grid_zone(&aoi).unwrap();
        assert_eq!(
            zone,
            UtmZone {
                zone: 31,
                north: true
            }
        );
        assert_eq!(zone.epsg(), 32631);
        let out = tiles(&aoi, Grid::Km20).unwrap();
        let cells = check_collection(&out, &zone, 20_000.0);
        println!("notebook AOI, 20x20km: {} cells {cells:?}", cells.len());
        // In EPSG:32631 the AOI's vertices span E 625 275 – 652 537 m and
        // N 5 664 693 – 5 690 901 m (gdaltransform): columns 31–32 and rows 283–284,
        // and the AOI contains the common corner (640 000, 5 680 000), so all 4 cells.
        assert_eq!(cells, vec![(31, 284), (32, 284), (31, 283), (32, 283)]);
        assert_eq!(cells, brute_force_cells(&aoi, &zone, 20_000.0, 40));
        // Every AOI vertex lies inside some cell.
        for (lon, lat) in &aoi_rings(&aoi)[0] {
            let (x, y) = zone.forward(*lon, *lat);
            assert!(cells.iter().any(|&(c, r)| {
                let (x0, y0) = (c as f64 * 20_000.0, r as f64 * 20_000.0);
                x >= x0 && x <= x0 + 20_000.0 && y >= y0 && y <= y0 + 20_000.0
            }));
        }
        // First cell: north-west, corners on multiples of 20 km.
        let first = &out["geometries"][0]["coordinates"][0][0];
        let (x, y) = zone.forward(first[0].as_f64().unwrap(), first[1].as_f64().unwrap());
        assert!((x - 620_000.0).abs() < 1e-3 && (y - 5_680_000.0).abs() < 1e-3);
    }

    #[test]
    fn grid_is_snapped_and_shared_by_adjacent_aois() {
        let a = aoi(
            r#"{"type":"Polygon","coordinates":[[[4.80,51.15],[5.00,51.15],[5.00,51.30],[4.80,51.30],[4.80,51.15]]]}"#,
        );
        let b = aoi(
            r#"{"type":"Polygon","coordinates":[[[4.95,51.20],[5.10,51.20],[5.10,51.40],[4.95,51.40],[4.95,51.20]]]}"#,
        );
        let ta = tiles(&a, Grid::Km20).unwrap();
        let tb = tiles(&b, Grid::Km20).unwrap();
        let ga = ta["geometries"].as_array().unwrap();
        let gb = tb["geometries"].as_array().unwrap();
        let shared = ga.iter().filter(|g| gb.contains(g)).count();
        println!("{} and {} cells, {shared} identical", ga.len(), gb.len());
        assert!(shared >= 1);
        // The notebook AOI's cells are the same objects too.
        let tn = tiles(&aoi(NOTEBOOK_AOI), Grid::Km20).unwrap();
        assert!(ga
            .iter()
            .any(|g| tn["geometries"].as_array().unwrap().contains(g)));
    }

    #[test]
    fn grid_250km() {
        let zone = UtmZone {
            zone: 31,
            north: true,
        };
        let out = tiles(&aoi(NOTEBOOK_AOI), Grid::Km250).unwrap();
        // The notebook AOI lies inside E 500–750 km, N 5 500–5 750 km.
        assert_eq!(check_collection(&out, &zone, 250_000.0), vec![(2, 22)]);

        // Roughly Belgium: E 464–746 km, N 5 483–5 706 km in 31N: 2 × 2 cells.
        let belgium = aoi(
            r#"{"type":"Polygon","coordinates":[[[2.5,49.5],[6.4,49.5],[6.4,51.5],[2.5,51.5],[2.5,49.5]]]}"#,
        );
        let out = tiles(&belgium, Grid::Km250).unwrap();
        let cells = check_collection(&out, &zone, 250_000.0);
        assert_eq!(cells, vec![(1, 22), (2, 22), (1, 21), (2, 21)]);

        // A large AOI (10° × 10°) checked against sampling.
        let big = aoi(
            r#"{"type":"Polygon","coordinates":[[[-1.0,45.0],[9.0,45.0],[9.0,55.0],[-1.0,55.0],[-1.0,45.0]]]}"#,
        );
        assert_eq!(grid_zone(&big).unwrap(), zone);
        let out = tiles(&big, Grid::Km250).unwrap();
        let cells = check_collection(&out, &zone, 250_000.0);
        println!("10°x10° AOI, 250x250km: {} cells {cells:?}", cells.len());
        assert_eq!(cells, brute_force_cells(&big, &zone, 250_000.0, 100));
    }

    #[test]
    fn too_many_cells() {
        let huge = aoi(
            r#"{"type":"Polygon","coordinates":[[[0.0,35.0],[30.0,35.0],[30.0,65.0],[0.0,65.0],[0.0,35.0]]]}"#,
        );
        let needed = compute_cells(&huge, Grid::Km20).unwrap().cells.len() as u64;
        match tiles(&huge, Grid::Km20) {
            Err(e @ TileError::TooManyCells { cells, max }) => {
                assert_eq!(max, MAX_CELLS);
                assert_eq!(cells, needed);
                assert!(cells > MAX_CELLS);
                let msg = e.to_string();
                println!("{msg}");
                assert!(
                    msg.contains(&cells.to_string()) && msg.contains("250x250km"),
                    "{msg}"
                );
            }
            other => panic!("expected TooManyCells, got {other:?}"),
        }
        // About 7.2 million km² / 400 km² ≈ 18 000 cells.
        assert!((15_000..25_000).contains(&needed), "{needed}");
        let out = tiles(&huge, Grid::Km250).unwrap();
        let zone = grid_zone(&huge).unwrap();
        assert_eq!(zone.epsg(), 32633);
        let n = check_collection(&out, &zone, 250_000.0).len();
        assert!((100..200).contains(&n), "{n}");
    }

    #[test]
    fn polygon_with_hole() {
        let with_hole = aoi(r#"{"type":"Polygon","coordinates":[
            [[2.0,44.5],[4.0,44.5],[4.0,46.0],[2.0,46.0],[2.0,44.5]],
            [[2.7,45.0],[2.7,45.5],[3.3,45.5],[3.3,45.0],[2.7,45.0]]]}"#);
        let without = aoi(r#"{"type":"Polygon","coordinates":[
            [[2.0,44.5],[4.0,44.5],[4.0,46.0],[2.0,46.0],[2.0,44.5]]]}"#);
        let zone = grid_zone(&with_hole).unwrap();
        assert_eq!(zone.epsg(), 32631);
        let full = check_collection(&tiles(&without, Grid::Km20).unwrap(), &zone, 20_000.0);
        let holed = check_collection(&tiles(&with_hole, Grid::Km20).unwrap(), &zone, 20_000.0);
        println!(
            "without hole {} cells, with hole {}",
            full.len(),
            holed.len()
        );
        // Outer ring: E 420 502 – 579 498, N 4 927 409 – 5 094 534: columns 21–28 and
        // rows 246–254, all 72 cells meet it. The hole spans E 476 355 – 523 645 and
        // N ≈ 4 982 500 – 5 038 540: only the cells (24, 250) and (25, 250) lie fully
        // inside it.
        assert_eq!(full.len(), 72);
        assert_eq!(holed.len(), 70);
        let missing: Vec<_> = full.iter().filter(|c| !holed.contains(c)).collect();
        assert_eq!(missing, vec![&(24, 250), &(25, 250)]);
        assert_eq!(holed, brute_force_cells(&with_hole, &zone, 20_000.0, 40));
    }

    #[test]
    fn southern_hemisphere() {
        let sp = aoi(
            r#"{"type":"Polygon","coordinates":[[[-46.8,-23.7],[-46.4,-23.7],[-46.35,-23.45],[-46.6,-23.3],[-46.8,-23.45],[-46.8,-23.7]]]}"#,
        );
        let zone = grid_zone(&sp).unwrap();
        assert_eq!(
            zone,
            UtmZone {
                zone: 23,
                north: false
            }
        );
        assert_eq!(zone.epsg(), 32723);
        let out = tiles(&sp, Grid::Km20).unwrap();
        let cells = check_collection(&out, &zone, 20_000.0);
        println!("São Paulo AOI, 20x20km: {} cells {cells:?}", cells.len());
        // Vertices in EPSG:32723 (gdaltransform): E 316 130 – 362 104 m,
        // N 7 377 828 – 7 422 366 m: columns 15–18, rows 368–371. Not met: (15, 371)
        // (the NW edge reaches N 7 420 000 at E ≈ 333.5 km), (18, 371) and (18, 368)
        // (the east edge crosses E 360 km at N ≈ 7 393 955 – 7 407 354).
        // (17, 371) is met by the top vertex' eastern edge, which crosses E 340 km at
        // N ≈ 7 420 065. So 16 − 3 = 13 cells.
        assert_eq!(cells.len(), 13);
        for c in [(15, 371), (18, 371), (18, 368)] {
            assert!(!cells.contains(&c), "{c:?}");
        }
        assert!(cells.contains(&(17, 371)));
        // That sliver is only ~65 m high: too thin for the 500 m sampling below, so check
        // a point in it directly, and compare the other cells with the sampling.
        let rings = aoi_rings(&sp);
        assert!(inside_lonlat(&rings, zone.inverse(340_010.0, 7_420_010.0)));
        assert!(!inside_lonlat(&rings, zone.inverse(340_010.0, 7_420_100.0)));
        let mut sampled = brute_force_cells(&sp, &zone, 20_000.0, 40);
        sampled.insert(1, (17, 371));
        assert_eq!(cells, sampled);
        // Northings carry the southern false northing.
        let p = &out["geometries"][0]["coordinates"][0][0];
        assert!(p[1].as_f64().unwrap() < -23.0);
    }

    #[test]
    fn refused_aois() {
        let across = aoi(
            r#"{"type":"Polygon","coordinates":[[[179.0,0.0],[-179.0,0.0],[-179.0,1.0],[179.0,1.0],[179.0,0.0]]]}"#,
        );
        assert!(matches!(
            tiles(&across, Grid::Km250),
            Err(TileError::TooWide { .. })
        ));
        let flat =
            aoi(r#"{"type":"Polygon","coordinates":[[[0.0,0.0],[1.0,1.0],[2.0,2.0],[0.0,0.0]]]}"#);
        assert!(matches!(tiles(&flat, Grid::Km20), Err(TileError::EmptyAoi)));
        let empty = aoi(r#"{"type":"Polygon","coordinates":[]}"#);
        assert!(matches!(
            tiles(&empty, Grid::Km20),
            Err(TileError::EmptyAoi)
        ));
        let point = aoi(r#"{"type":"Point","coordinates":[0.0,0.0]}"#);
        assert!(matches!(
            tiles(&point, Grid::Km20),
            Err(TileError::InvalidAoi(_))
        ));
        let bad =
            aoi(r#"{"type":"Polygon","coordinates":[[[0.0,0.0],[1.0,95.0],[2.0,2.0],[0.0,0.0]]]}"#);
        assert!(matches!(
            tiles(&bad, Grid::Km20),
            Err(TileError::InvalidAoi(_))
        ));
    }

    #[test]
    fn segment_against_open_cell() {
        let p = |x, y| Pt { x, y };
        let meets = |a, b| segment_meets_open_rect(a, b, 0.0, 10.0, 0.0, 10.0);
        assert!(meets(p(-5.0, 5.0), p(15.0, 5.0)), "crossing");
        assert!(meets(p(2.0, 2.0), p(3.0, 4.0)), "inside");
        assert!(meets(p(-5.0, 5.0), p(5.0, 5.0)), "entering");
        assert!(meets(p(5.0, 5.0), p(5.0, 5.0)), "degenerate, inside");
        assert!(meets(p(-1.0, 8.0), p(1.0, 11.0)), "cutting a corner");
        assert!(!meets(p(0.0, -5.0), p(0.0, 15.0)), "along the west edge");
        assert!(!meets(p(2.0, 10.0), p(8.0, 10.0)), "on the north edge");
        assert!(
            !meets(p(-5.0, 5.0), p(5.0, 15.0)),
            "through the corner only"
        );
        assert!(!meets(p(-5.0, 5.0), p(0.0, 5.0)), "ending on the boundary");
        assert!(!meets(p(11.0, -5.0), p(11.0, 15.0)), "outside");
        assert!(!meets(p(-5.0, -4.0), p(15.0, -6.0)), "outside, below");
    }

    #[test]
    fn cells_only_touching_the_aoi_are_dropped() {
        // The central meridian 3° E is the grid line E = 500 000 m of zone 31N (and a
        // straight line both in lon/lat and in UTM): cells west of it only touch the AOI.
        let aoi = aoi(
            r#"{"type":"Polygon","coordinates":[[[3.0,45.0],[3.3,45.0],[3.3,45.3],[3.0,45.3],[3.0,45.0]]]}"#,
        );
        let zone = grid_zone(&aoi).unwrap();
        assert_eq!(zone.epsg(), 32631);
        assert_eq!(zone.forward(3.0, 45.1).0, 500_000.0);
        let cells = check_collection(&tiles(&aoi, Grid::Km20).unwrap(), &zone, 20_000.0);
        println!("{cells:?}");
        assert!(cells.iter().all(|&(c, _)| c >= 25), "{cells:?}");
        assert!(cells.iter().any(|&(c, _)| c == 25), "{cells:?}");
        assert_eq!(cells, brute_force_cells(&aoi, &zone, 20_000.0, 40));
    }
}
