//! `eodispatch-gdal`: the GDAL helper of the eodispatch daemon.
//!
//! ```text
//! eodispatch-gdal [--optimise] -- FILE...
//! eodispatch-gdal mosaic [--out DIR] --name NAME [--cog] [--crs CRS] -- FILE...
//! ```
//!
//! The second form builds one mosaic out of many tiles' files: see [`mosaic`].
//!
//! Inspects each file with the system GDAL and prints one JSON array on stdout, one
//! object per file in the order given: the `layers[]` entries of the results manifest
//! `job.json` (see docs/results-folder.md and docs/job.schema.json) without the display `name`, which the
//! daemon adds. Paths are printed as given; the daemon runs the helper inside the
//! staging folder with relative names, so NetCDF subdataset URIs come out relative too
//! (`NETCDF:"openEO.nc":var`). Every argument after `--` is a file, even one that
//! starts with `-` (asset names come from the backend).
//!
//! - Rasters: driver, CRS (authority code, else WKT), bounds in the native CRS and in
//!   WGS84, size, and per band data type, nodata, statistics and description; NetCDF
//!   subdatasets; a style hint (a palette for classified single-band integer data, an
//!   RGB composite for three or more bands, else a min/max stretch).
//! - With `--optimise`, a GeoTIFF larger than [`COG_MIN_SIDE`] pixels a side that has no
//!   overviews is rewritten as a Cloud-Optimised GeoTIFF (tiled, DEFLATE, overviews) in
//!   place (through a temporary file and a rename), so QGIS and `/vsicurl/` display it
//!   fast. The result records `"optimised": "cog"`.
//! - Vectors (GeoJSON — including a legacy `crs` member —, GeoPackage, GeoParquet where
//!   the GDAL build has the driver): per layer the name, geometry type, feature count,
//!   CRS and extent (native and WGS84).
//! - A file GDAL cannot open is reported with `"readable": false`, `"error_code":
//!   "Unreadable"` and GDAL's message; a file the helper does not let GDAL open (see
//!   [`safety`]: formats results come in only, VRTs with local sources only, no network)
//!   with `"error_code": "Refused"` and the reason. The helper still exits 0. Exit 2
//!   means bad usage.
//!
//! Why a separate process: linking GDAL into the daemon costs about 35 MB resident and
//! 50 ms at start, for work done once per job; a crash inside GDAL on a hostile file
//! also stays out of the daemon, which runs the helper under a memory limit and a
//! timeout. PAM side files (`.aux.xml`) are disabled so that the job folder holds only
//! what the backend sent (and the manifest).

mod mosaic;
mod safety;

use std::io::Write;

use gdal::raster::{GdalDataType, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::LayerAccess;
use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags, Metadata};
use serde_json::{json, Map, Value};

/// Rasters at most this many pixels on both sides are left as they are.
const COG_MIN_SIDE: usize = 1024;

/// At most this many distinct values make a single-band integer raster "classified".
const MAX_CLASSES: usize = 16;

/// Colour of class 0 in a classified layer with other classes.
const BACKGROUND: &str = "#d9d9d9";

/// Colours of classes, in order (ColorBrewer Set1 + Dark2).
const PALETTE: [&str; 16] = [
    "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
    "#999999", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
];

fn main() {
    if std::env::args().nth(1).as_deref() == Some("mosaic") {
        let args = match mosaic::parse(std::env::args().skip(2)) {
            Ok(a) => a,
            Err(why) => {
                eprintln!("eodispatch-gdal mosaic: {why}");
                std::process::exit(2);
            }
        };
        let canary = safety::harden();
        let out = mosaic::run(&args, &canary);
        let text = serde_json::to_string(&out).unwrap_or_else(|_| "{}".into());
        if writeln!(std::io::stdout().lock(), "{text}").is_err() {
            std::process::exit(1);
        }
        return;
    }
    let mut optimise = false;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" => {
                files.extend(args.by_ref());
                break;
            }
            "--optimise" | "--optimize" => optimise = true,
            "--version" => {
                println!(
                    "eodispatch-gdal {} (GDAL {})",
                    env!("CARGO_PKG_VERSION"),
                    gdal::version::version_info("RELEASE_NAME")
                );
                return;
            }
            "-h" | "--help" => {
                println!("usage: eodispatch-gdal [--optimise] -- FILE...\n       eodispatch-gdal mosaic [--out DIR] --name NAME [--cog] [--crs CRS] -- FILE...\nprints JSON describing each file, or the mosaic made");
                return;
            }
            a if a.starts_with('-') => {
                eprintln!("eodispatch-gdal: unknown option {a} (file names go after --)");
                std::process::exit(2);
            }
            _ => files.push(arg),
        }
    }
    let canary = safety::harden();
    let out: Vec<Value> = files
        .iter()
        .map(|f| {
            let before = canary.count();
            let layer = inspect(f, optimise);
            let asked = canary.since(before);
            if asked.is_empty() {
                layer
            } else {
                eprintln!("eodispatch-gdal: {f}: GDAL tried the network: {asked:?}");
                refused(
                    f,
                    &format!(
                        "refused: reading the file makes GDAL reach for the network ({})",
                        asked.join("; ")
                    ),
                )
            }
        })
        .collect();
    let text = serde_json::to_string(&out).unwrap_or_else(|_| "[]".into());
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").is_err() {
        std::process::exit(1);
    }
}

/// Opens a file for reading as raster or vector with the drivers of `drivers`, not
/// looking at side files.
fn open_with(path: &str, drivers: &[&str]) -> gdal::errors::Result<Dataset> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_READONLY
                | GdalOpenFlags::GDAL_OF_RASTER
                | GdalOpenFlags::GDAL_OF_VECTOR
                | GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
            allowed_drivers: Some(drivers),
            sibling_files: Some(&[]),
            ..DatasetOptions::default()
        },
    )
}

/// Opens a file the helper wrote itself (the COG) with the allowed drivers.
fn open(path: &str) -> gdal::errors::Result<Dataset> {
    open_with(path, &safety::ALLOWED)
}

/// An entry for a file not opened, with why.
fn refused(path: &str, why: &str) -> Value {
    json!({"path": path, "kind": "other", "readable": false, "error": why, "error_code": "Refused"})
}

/// One manifest layer entry for `path`.
fn inspect(path: &str, optimise: bool) -> Value {
    let mut out = Map::new();
    out.insert("path".into(), json!(path));
    let vrt = match safety::vet(path) {
        Ok(vrt) => vrt,
        Err(safety::Refusal(why)) => return refused(path, &why),
    };
    let opened = if vrt {
        open_with(path, &[safety::VRT])
    } else {
        open(path)
    };
    let ds = match opened {
        Ok(ds) => ds,
        Err(e) => {
            out.insert("kind".into(), json!("other"));
            out.insert("readable".into(), json!(false));
            out.insert(
                "error".into(),
                json!(format!("GDAL cannot open the file: {e}")),
            );
            out.insert("error_code".into(), json!("Unreadable"));
            return Value::Object(out);
        }
    };
    let is_raster = ds.raster_count() > 0 || !subdatasets(&ds).is_empty();
    let is_vector = !is_raster && ds.layer_count() > 0;
    if is_raster {
        let mut optimised = Value::Null;
        let ds = if optimise {
            match maybe_cog(ds, path) {
                Ok((ds, done)) => {
                    if done {
                        optimised = json!("cog");
                    }
                    ds
                }
                Err((ds, why)) => {
                    out.insert("optimise_error".into(), json!(why));
                    ds
                }
            }
        } else {
            ds
        };
        out.insert("kind".into(), json!("raster"));
        out.insert("readable".into(), json!(true));
        out.insert("error".into(), Value::Null);
        raster(&ds, &mut out);
        out.insert("optimised".into(), optimised);
    } else if is_vector {
        out.insert("kind".into(), json!("vector"));
        out.insert("readable".into(), json!(true));
        out.insert("error".into(), Value::Null);
        vector(&ds, &mut out);
    } else {
        out.insert("kind".into(), json!("other"));
        out.insert("readable".into(), json!(false));
        out.insert(
            "error".into(),
            json!(format!(
                "GDAL opened the file ({}) but found neither raster bands nor vector layers",
                ds.driver().short_name()
            )),
        );
        out.insert("error_code".into(), json!("Unreadable"));
    }
    Value::Object(out)
}

/// `"EPSG:32631"` when the CRS has an authority code, else its WKT.
fn crs_name(srs: &SpatialRef) -> Option<String> {
    if let (Some(name), Ok(code)) = (srs.auth_name(), srs.auth_code()) {
        return Some(format!("{name}:{code}"));
    }
    srs.to_wkt().ok().filter(|w| !w.is_empty())
}

/// `[minx, miny, maxx, maxy]` of `bounds` (native CRS) in WGS84 longitude/latitude.
fn to_wgs84(srs: &SpatialRef, bounds: [f64; 4]) -> Option<[f64; 4]> {
    let mut src = srs.clone();
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut wgs84 = SpatialRef::from_epsg(4326).ok()?;
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let t = CoordTransform::new(&src, &wgs84).ok()?;
    let b = t.transform_bounds(&bounds, 21).ok()?;
    b.iter().all(|v| v.is_finite()).then_some(b)
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// NetCDF (HDF, ...) subdatasets: `[{uri, description}]`.
fn subdatasets(ds: &Dataset) -> Vec<Value> {
    let Some(items) = ds.metadata_domain("SUBDATASETS") else {
        return Vec::new();
    };
    let mut names = std::collections::BTreeMap::new();
    let mut descs = std::collections::BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        let Some(rest) = k.strip_prefix("SUBDATASET_") else {
            continue;
        };
        if let Some(n) = rest.strip_suffix("_NAME") {
            names.insert(n.parse::<u32>().unwrap_or(0), v.to_string());
        } else if let Some(n) = rest.strip_suffix("_DESC") {
            descs.insert(n.parse::<u32>().unwrap_or(0), v.to_string());
        }
    }
    names
        .into_iter()
        .map(|(n, uri)| json!({"uri": uri, "description": descs.get(&n)}))
        .collect()
}

/// Rewrites a large GeoTIFF without overviews as a COG; `(dataset, rewritten)`.
fn maybe_cog(ds: Dataset, path: &str) -> Result<(Dataset, bool), (Dataset, String)> {
    let (w, h) = ds.raster_size();
    let has_overviews = ds
        .rasterband(1)
        .ok()
        .and_then(|b| b.overview_count().ok())
        .is_some_and(|n| n > 0);
    if ds.driver().short_name() != "GTiff"
        || (w <= COG_MIN_SIDE && h <= COG_MIN_SIDE)
        || has_overviews
    {
        return Ok((ds, false));
    }
    let tmp = format!("{path}.cog-tmp");
    let result = write_cog(&ds, &tmp);
    match result {
        Ok(()) => {
            drop(ds);
            if let Err(e) = std::fs::rename(&tmp, path) {
                let _ = std::fs::remove_file(&tmp);
                let ds = open(path).map_err(|_| unreachable_reopen())?;
                return Err((ds, format!("cannot replace the file with its COG: {e}")));
            }
            match open(path) {
                Ok(ds) => Ok((ds, true)),
                Err(e) => {
                    // Should not happen: GDAL just wrote it. Report, keep going.
                    eprintln!("eodispatch-gdal: cannot reopen {path} after COG conversion: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(why) => {
            let _ = std::fs::remove_file(&tmp);
            Err((ds, format!("COG conversion failed: {why}")))
        }
    }
}

/// Writes `ds` as a Cloud Optimized GeoTIFF at `to` (DEFLATE, 512 px blocks, overviews):
/// the one COG recipe of the results folder, for inspected files and mosaics alike.
fn write_cog(ds: &Dataset, to: &str) -> Result<(), String> {
    let driver = DriverManager::get_driver_by_name("COG").map_err(|e| e.to_string())?;
    let options = RasterCreationOptions::from_iter([
        "COMPRESS=DEFLATE",
        "BLOCKSIZE=512",
        "OVERVIEWS=AUTO",
        "NUM_THREADS=2",
    ]);
    let copy = ds
        .create_copy(&driver, to, &options)
        .map_err(|e| e.to_string())?;
    copy.close().map_err(|e| e.to_string())
}

fn unreachable_reopen() -> (Dataset, String) {
    eprintln!("eodispatch-gdal: a file vanished during optimisation");
    std::process::exit(1);
}

/// Raster facts into `out`.
fn raster(ds: &Dataset, out: &mut Map<String, Value>) {
    out.insert("driver".into(), json!(ds.driver().short_name()));
    let srs = ds.spatial_ref().ok();
    out.insert("crs".into(), json!(srs.as_ref().and_then(crs_name)));
    let (w, h) = ds.raster_size();
    let bounds = ds.geo_transform().ok().map(|gt| {
        let corner = |px: f64, py: f64| {
            (
                gt[0] + px * gt[1] + py * gt[2],
                gt[3] + px * gt[4] + py * gt[5],
            )
        };
        let cs = [
            corner(0.0, 0.0),
            corner(w as f64, 0.0),
            corner(0.0, h as f64),
            corner(w as f64, h as f64),
        ];
        let minx = cs.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
        let maxx = cs.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
        let miny = cs.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        let maxy = cs.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
        [minx, miny, maxx, maxy]
    });
    out.insert("bounds".into(), json!(bounds));
    let wgs84 = match (&srs, bounds) {
        (Some(s), Some(b)) => to_wgs84(s, b),
        _ => None,
    };
    out.insert("bounds_wgs84".into(), json!(wgs84));
    out.insert("width".into(), json!(w));
    out.insert("height".into(), json!(h));
    let mut bands = Vec::new();
    let mut stats_of = Vec::new();
    for i in 1..=ds.raster_count() {
        let Ok(band) = ds.rasterband(i) else { continue };
        let stats = band.get_statistics(true, true).ok().flatten();
        let dt = band.band_type();
        bands.push(json!({
            "index": i,
            "data_type": dt.name(),
            "nodata": band.no_data_value().map(finite),
            "min": stats.as_ref().map(|s| finite(s.min)),
            "max": stats.as_ref().map(|s| finite(s.max)),
            "mean": stats.as_ref().map(|s| finite(s.mean)),
            "stddev": stats.as_ref().map(|s| finite(s.std_dev)),
            "description": band.description().ok().filter(|d| !d.is_empty()),
        }));
        stats_of.push((dt, stats));
    }
    out.insert("bands".into(), Value::Array(bands));
    let subs = subdatasets(ds);
    out.insert(
        "subdatasets".into(),
        if subs.is_empty() {
            Value::Null
        } else {
            Value::Array(subs)
        },
    );
    out.insert("style".into(), raster_style(ds, &stats_of));
}

/// The style hint of a raster.
fn raster_style(
    ds: &Dataset,
    stats: &[(GdalDataType, Option<gdal::raster::StatisticsAll>)],
) -> Value {
    if stats.len() >= 3 {
        let s: Vec<_> = stats[..3].iter().map(|(_, s)| s.as_ref()).collect();
        if s.iter().all(Option::is_some) {
            let min: Vec<f64> = s.iter().flatten().map(|s| s.min).collect();
            let max: Vec<f64> = s.iter().flatten().map(|s| s.max).collect();
            return json!({"type": "rgb", "bands": [1, 2, 3], "min": min, "max": max});
        }
        return Value::Null;
    }
    let Some((dt, Some(st))) = stats.first() else {
        return Value::Null;
    };
    let Ok(band) = ds.rasterband(1) else {
        return Value::Null;
    };
    if let Some(ct) = band.color_table() {
        let lo = st.min.max(0.0) as usize;
        let hi = (st.max.max(0.0) as usize).min(ct.entry_count().saturating_sub(1));
        let classes: Vec<Value> = (lo..=hi)
            .filter_map(|v| {
                let e = ct.entry_as_rgb(v)?;
                Some(json!({"value": v, "color": format!("#{:02x}{:02x}{:02x}", e.r, e.g, e.b), "label": v.to_string()}))
            })
            .take(256)
            .collect();
        if !classes.is_empty() {
            return json!({"type": "palette", "band": 1, "classes": classes});
        }
    }
    if dt.is_integer() && st.max.is_finite() && st.min.is_finite() && st.max - st.min < 64.0 {
        let (lo, hi) = (st.min.round(), st.max.round());
        let n = (hi - lo) as usize + 1;
        if let Ok(hist) = band.histogram(lo - 0.5, hi + 0.5, n, false, false) {
            let present: Vec<i64> = hist
                .counts()
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, _)| lo as i64 + i as i64)
                .filter(|v| band.no_data_value().is_none_or(|nd| nd != *v as f64))
                .collect();
            if !present.is_empty() && present.len() <= MAX_CLASSES {
                // Class 0 next to other classes is usually "nothing found" (a mask's
                // background): light grey, so the classes that matter stand out.
                let background = present.len() > 1 && present.contains(&0);
                let mut next = 0;
                let classes: Vec<Value> = present
                    .iter()
                    .map(|v| {
                        let color = if background && *v == 0 {
                            BACKGROUND
                        } else {
                            next += 1;
                            PALETTE[(next - 1) % PALETTE.len()]
                        };
                        json!({"value": v, "color": color, "label": v.to_string()})
                    })
                    .collect();
                return json!({"type": "palette", "band": 1, "classes": classes});
            }
        }
    }
    // A stretch over mean ± 2σ, inside the data range.
    let (mut lo, mut hi) = (st.min, st.max);
    if dt.is_floating() && st.std_dev.is_finite() && st.std_dev > 0.0 {
        lo = lo.max(st.mean - 2.0 * st.std_dev);
        hi = hi.min(st.mean + 2.0 * st.std_dev);
    }
    json!({"type": "minmax", "band": 1, "min": finite(lo), "max": finite(hi)})
}

/// CRS, native bounds and WGS84 bounds of a layer.
type Footprint = (Option<String>, Option<[f64; 4]>, Option<[f64; 4]>);

/// Vector facts into `out`.
fn vector(ds: &Dataset, out: &mut Map<String, Value>) {
    out.insert("driver".into(), json!(ds.driver().short_name()));
    let mut layers = Vec::new();
    let mut first: Option<Footprint> = None;
    for layer in ds.layers() {
        let srs = layer.spatial_ref();
        let crs = srs.as_ref().and_then(crs_name);
        let geometry_type = layer
            .defn()
            .geom_fields()
            .next()
            .map(|g| gdal::vector::geometry_type_to_name(g.field_type()));
        let extent = layer
            .get_extent()
            .ok()
            .map(|e| [e.MinX, e.MinY, e.MaxX, e.MaxY])
            .filter(|b| b.iter().all(|v| v.is_finite()));
        let extent_wgs84 = match (&srs, extent) {
            (Some(s), Some(b)) => to_wgs84(s, b),
            _ => None,
        };
        if first.is_none() {
            first = Some((crs.clone(), extent, extent_wgs84));
        }
        layers.push(json!({
            "name": layer.name(),
            "geometry_type": geometry_type,
            "feature_count": layer.try_feature_count().unwrap_or_else(|| layer.feature_count()),
            "crs": crs,
            "extent": extent,
            "extent_wgs84": extent_wgs84,
        }));
    }
    let (crs, bounds, wgs84) = first.unwrap_or((None, None, None));
    out.insert("crs".into(), json!(crs));
    out.insert("bounds".into(), json!(bounds));
    out.insert("bounds_wgs84".into(), json!(wgs84));
    out.insert("layers".into(), Value::Array(layers));
    out.insert(
        "style".into(),
        json!({"type": "single", "color": "#e41a1c"}),
    );
}
