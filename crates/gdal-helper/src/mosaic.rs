//! `eodispatch-gdal mosaic`: one layer out of the same output of many tiles.
//!
//! ```text
//! eodispatch-gdal mosaic [--out DIR] --name NAME [--cog] [--crs CRS] -- FILE...
//! ```
//!
//! The daemon runs it inside a task folder with `--out .` and the tiles' files as paths
//! relative to it (`<tile folder>/openEO.tif`). It prints one JSON object: the layer entry
//! of the result (as the inspect mode describes a file: `path`, `kind`, `readable`, CRS,
//! bounds, bands, style, ...) with a `mosaic` member: `{format, crs, sources: [{path, used,
//! warped, error}]}`. It exits 0 even when no mosaic could be made (`readable: false`,
//! `error_code: "MosaicFailed"`), 2 on bad usage.
//!
//! - **Inputs** are result files of a backend, not trusted: each passes the same checks as
//!   in the inspect mode ([`safety::vet`]: a plain local file of an allowed format, a VRT
//!   only with local sources next to it) and is opened with the allowed drivers only; a
//!   file whose reading makes GDAL reach for the network is refused. Inputs GDAL cannot
//!   open, or of the other kind (a vector among rasters), are left out and named in
//!   `sources` with why.
//! - **Rasters** become `NAME.vrt` (GDAL's `BuildVRT`, highest resolution, sources relative
//!   to the VRT, so the folder can be moved), or with `--cog` a Cloud-Optimised GeoTIFF
//!   `NAME.tif` (DEFLATE, 512-pixel blocks, overviews) made from that VRT. **One CRS**: the
//!   one given with `--crs`, else the CRS most inputs have (on a tie, the first input's).
//!   Inputs in another CRS (a neighbouring UTM zone) are warped into it first (`gdalwarp`'s
//!   library call: nearest neighbour, the mosaic's pixel size, pixels aligned to multiples
//!   of it, `-tap`, so they line up with the native tiles) into
//!   `NAME.warped/<input path with / as _>.tif` (kept: a later run reuses a warped tile
//!   whose CRS is still the target's); warped tiles come first in the VRT, so where tiles
//!   overlap the native ones are drawn on top.
//! - **Vectors** become one GeoPackage `NAME.gpkg` with one layer `NAME` holding every
//!   feature of every input's first layer (`ogr2ogr -append`'s library call), in the CRS of
//!   the first input's layer (others transformed).
//! - **Atomic**: every file is written under a hidden temporary name (`.tmp-...`) in its
//!   final folder, fsynced and renamed over the old one, then the folder is fsynced; a
//!   reader sees the old file or the new one, never half of one. Temporary files of an
//!   earlier run that was killed are removed first.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

use gdal::vector::LayerAccess;
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use serde_json::{json, Map, Value};

use crate::safety::{self, NetworkCanary, Refusal};

/// Prefix of the temporary files of a run.
const TMP: &str = ".tmp-";

/// What was asked on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Folder of the result (`.` by default).
    pub out: String,
    /// Base name of the result files and of the vector layer.
    pub name: String,
    /// A COG instead of a VRT for rasters.
    pub cog: bool,
    /// The CRS of the mosaic (`EPSG:32632`), else chosen from the inputs.
    pub crs: Option<String>,
    /// The inputs.
    pub files: Vec<String>,
}

/// Parses the arguments after `mosaic`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        out: ".".into(),
        name: String::new(),
        cog: false,
        crs: None,
        files: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" => {
                a.files.extend(args.by_ref());
                break;
            }
            "--cog" => a.cog = true,
            "--out" | "--name" | "--crs" => {
                let v = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                match arg.as_str() {
                    "--out" => a.out = v,
                    "--name" => a.name = v,
                    _ => a.crs = Some(v),
                }
            }
            other => return Err(format!("unknown option {other} (file names go after --)")),
        }
    }
    if !plain_name(&a.name) {
        return Err("--name must be a plain file name without extension".into());
    }
    if a.files.is_empty() {
        return Err("no input files (after --)".into());
    }
    safety::check_path(&a.out).map_err(|Refusal(why)| format!("--out: {why}"))?;
    if !Path::new(&a.out).is_dir() {
        return Err(format!("--out {:?} is not a folder", a.out));
    }
    Ok(a)
}

/// A name usable as a file name stem: not hidden, no separators or special characters.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `dir/name`, or `name` when `dir` is `.` (so that paths stay relative to the VRT).
fn join(dir: &str, name: &str) -> String {
    if dir == "." || dir.is_empty() {
        name.to_string()
    } else {
        Path::new(dir).join(name).display().to_string()
    }
}

/// One input as it was found.
struct Input {
    path: String,
    ds: Option<Dataset>,
    kind: &'static str,
    crs: Option<String>,
    error: Option<String>,
}

/// Runs the mosaic; the JSON to print.
pub fn run(args: &Args, canary: &NetworkCanary) -> Value {
    remove_stale(&args.out, &args.name);
    let mut inputs: Vec<Input> = args.files.iter().map(|f| open_input(f, canary)).collect();
    let rasters = inputs.iter().filter(|i| i.kind == "raster").count();
    let vectors = inputs.iter().filter(|i| i.kind == "vector").count();
    let kind = if rasters > 0 {
        "raster"
    } else if vectors > 0 {
        "vector"
    } else {
        ""
    };
    for i in inputs.iter_mut() {
        if i.error.is_none() && i.kind != kind {
            i.error = Some(format!("a {} among {kind} inputs: left out", i.kind));
            i.ds = None;
        }
    }
    let outcome = match kind {
        "raster" => raster_mosaic(args, &mut inputs),
        "vector" => vector_mosaic(args, &mut inputs),
        _ => Err("no input could be read".to_string()),
    };
    let sources: Vec<Value> = inputs
        .iter()
        .map(|i| {
            json!({
                "path": i.path,
                "used": i.error.is_none(),
                "crs": i.crs,
                "warped": Value::Null,
                "error": i.error,
            })
        })
        .collect();
    match outcome {
        Ok(done) => {
            let mut layer = describe(&done.path, kind);
            let mut sources = sources;
            for (s, w) in sources.iter_mut().zip(&done.warped) {
                s["warped"] = json!(w);
            }
            if let Value::Object(m) = &mut layer {
                m.insert(
                    "mosaic".into(),
                    json!({"format": done.format, "crs": done.crs, "sources": sources}),
                );
            }
            layer
        }
        Err(why) => json!({
            "path": args.name,
            "kind": if kind.is_empty() { "other" } else { kind },
            "readable": false,
            "error": format!("no mosaic: {why}"),
            "error_code": "MosaicFailed",
            "mosaic": {"format": Value::Null, "crs": Value::Null, "sources": sources},
        }),
    }
}

/// Removes temporary files a killed run left for this name.
fn remove_stale(out: &str, name: &str) {
    let warped = join(out, &format!("{name}.warped"));
    for dir in [out.to_string(), warped] {
        let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "." } else { &dir }) else {
            continue;
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let ours = n.starts_with(&format!("{TMP}{name}."))
                || (dir.ends_with(".warped") && n.starts_with(TMP));
            if ours && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Vets and opens one input.
fn open_input(path: &str, canary: &NetworkCanary) -> Input {
    let mut input = Input {
        path: path.to_string(),
        ds: None,
        kind: "other",
        crs: None,
        error: None,
    };
    let before = canary.count();
    let opened = match safety::vet(path) {
        Err(Refusal(why)) => Err(why),
        Ok(true) => crate::open_with(path, &[safety::VRT]).map_err(|e| e.to_string()),
        Ok(false) => crate::open(path).map_err(|e| format!("GDAL cannot open the file: {e}")),
    };
    let asked = canary.since(before);
    if !asked.is_empty() {
        input.error = Some(format!(
            "refused: reading the file makes GDAL reach for the network ({})",
            asked.join("; ")
        ));
        return input;
    }
    match opened {
        Err(why) => input.error = Some(why),
        Ok(ds) => {
            let subdatasets = !crate::subdatasets(&ds).is_empty();
            if ds.raster_count() > 0 && !subdatasets {
                input.kind = "raster";
                input.crs = ds.spatial_ref().ok().as_ref().and_then(crate::crs_name);
                if input.crs.is_none() || ds.geo_transform().is_err() {
                    input.error = Some("the raster has no CRS or no georeferencing".into());
                    return input;
                }
            } else if ds.layer_count() > 0 && ds.raster_count() == 0 {
                input.kind = "vector";
            } else {
                input.error = Some(
                    "neither a single raster nor a vector file (subdatasets are not mosaicked)"
                        .into(),
                );
                return input;
            }
            input.ds = Some(ds);
        }
    }
    input
}

/// What a successful run made.
struct Done {
    /// The result file (as printed).
    path: String,
    /// `vrt`, `cog` or `gpkg`.
    format: &'static str,
    /// The mosaic's CRS.
    crs: Option<String>,
    /// Per input, the warped copy used instead of it.
    warped: Vec<Option<String>>,
}

/// The CRS to use: the asked one, else the most common of `crss` (first on a tie).
fn pick_crs(asked: Option<&str>, crss: &[&str]) -> Option<String> {
    if let Some(c) = asked {
        return Some(c.to_string());
    }
    let mut best: Option<(&str, usize)> = None;
    for c in crss {
        let n = crss.iter().filter(|x| *x == c).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((c, n));
        }
    }
    best.map(|(c, _)| c.to_string())
}

fn raster_mosaic(args: &Args, inputs: &mut [Input]) -> Result<Done, String> {
    let crss: Vec<&str> = inputs
        .iter()
        .filter(|i| i.ds.is_some())
        .filter_map(|i| i.crs.as_deref())
        .collect();
    let target = pick_crs(args.crs.as_deref(), &crss).ok_or("no raster has a CRS")?;
    let target_srs = gdal::spatial_ref::SpatialRef::from_definition(&target)
        .map_err(|e| format!("unknown CRS {target}: {e}"))?;
    // The pixel size: the finest of the inputs already in the target CRS, else of all.
    let res = |only_target: bool| {
        inputs
            .iter()
            .filter(|i| !only_target || i.crs.as_deref() == Some(target.as_str()))
            .filter_map(|i| i.ds.as_ref()?.geo_transform().ok())
            .map(|gt| gt[1].abs().min(gt[5].abs()))
            .filter(|r| r.is_finite() && *r > 0.0)
            .fold(None, |acc: Option<f64>, r| {
                Some(acc.map_or(r, |a| a.min(r)))
            })
    };
    let pixel = res(true)
        .or_else(|| res(false))
        .ok_or("no raster has a pixel size")?;
    let mut warped: Vec<Option<String>> = vec![None; inputs.len()];
    let mut first: Vec<Dataset> = Vec::new();
    let mut native: Vec<Dataset> = Vec::new();
    for (k, i) in inputs.iter_mut().enumerate() {
        let Some(ds) = i.ds.take() else { continue };
        if i.crs.as_deref() == Some(target.as_str()) {
            native.push(ds);
            continue;
        }
        match warp(args, &i.path, ds, &target, &target_srs, pixel) {
            Ok((path, w)) => {
                warped[k] = Some(path);
                first.push(w);
            }
            Err(why) => i.error = Some(format!("cannot warp it into {target}: {why}")),
        }
    }
    let sources: Vec<Dataset> = first.into_iter().chain(native).collect();
    if sources.is_empty() {
        return Err("no raster could be used".into());
    }
    let vrt_tmp = join(&args.out, &format!("{TMP}{}.vrt", args.name));
    let options = gdal::programs::raster::BuildVRTOptions::new(["-resolution", "highest"])
        .map_err(|e| e.to_string())?;
    let vrt = gdal::programs::raster::build_vrt(Some(Path::new(&vrt_tmp)), &sources, Some(options))
        .map_err(|e| format!("BuildVRT: {e}"))?;
    vrt.close().map_err(|e| format!("writing the VRT: {e}"))?;
    drop(sources);
    let (path, format) = if args.cog {
        let tif_tmp = join(&args.out, &format!("{TMP}{}.tif", args.name));
        let made = (|| -> Result<(), String> {
            let vrt = crate::open_with(&vrt_tmp, &[safety::VRT]).map_err(|e| e.to_string())?;
            crate::write_cog(&vrt, &tif_tmp)
        })();
        let _ = std::fs::remove_file(&vrt_tmp);
        if let Err(why) = made {
            let _ = std::fs::remove_file(&tif_tmp);
            return Err(format!("COG: {why}"));
        }
        let path = join(&args.out, &format!("{}.tif", args.name));
        commit(&tif_tmp, &path)?;
        (path, "cog")
    } else {
        let path = join(&args.out, &format!("{}.vrt", args.name));
        commit(&vrt_tmp, &path)?;
        (path, "vrt")
    };
    Ok(Done {
        path,
        format,
        crs: Some(target),
        warped,
    })
}

/// Warps `ds` into `target` on the grid of `pixel` metres; reuses an earlier warped copy
/// in that CRS. `(path, dataset)`.
fn warp(
    args: &Args,
    input: &str,
    ds: Dataset,
    target: &str,
    target_srs: &gdal::spatial_ref::SpatialRef,
    pixel: f64,
) -> Result<(String, Dataset), String> {
    let folder = join(&args.out, &format!("{}.warped", args.name));
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {folder}: {e}"))?;
    let file: String = input
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = format!("{}.tif", file.trim_start_matches('.'));
    let path = join(&folder, &file);
    if let Ok(old) = crate::open_with(&path, &["GTiff"]) {
        let same = old.spatial_ref().is_ok_and(|s| &s == target_srs)
            && old
                .geo_transform()
                .is_ok_and(|gt| (gt[1] - pixel).abs() < 1e-9 * pixel);
        if same {
            return Ok((path, old));
        }
    }
    let tmp = join(&folder, &format!("{TMP}{file}"));
    let px = format!("{pixel}");
    let mut argv = vec![
        "-of",
        "GTiff",
        "-t_srs",
        target,
        "-tr",
        &px,
        &px,
        "-tap",
        "-r",
        "near",
        "-co",
        "COMPRESS=DEFLATE",
        "-co",
        "TILED=YES",
    ];
    let nodata = ds
        .rasterband(1)
        .ok()
        .and_then(|b| b.no_data_value())
        .map(|v| v.to_string());
    if let Some(nd) = &nodata {
        argv.extend(["-srcnodata", nd, "-dstnodata", nd]);
    }
    let made = gdal_warp(&tmp, &ds, &argv);
    drop(ds);
    if let Err(why) = made {
        let _ = std::fs::remove_file(&tmp);
        return Err(why);
    }
    commit(&tmp, &path)?;
    let w = crate::open_with(&path, &["GTiff"]).map_err(|e| e.to_string())?;
    Ok((path, w))
}

/// A NULL-terminated `char**` for GDAL's `*OptionsNew`.
struct Argv {
    _owned: Vec<CString>,
    ptrs: Vec<*mut c_char>,
}

fn argv(args: &[&str]) -> Result<Argv, String> {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| CString::new(*a).map_err(|_| format!("bad argument {a:?}")))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr() as *mut c_char).collect();
    ptrs.push(null_mut());
    Ok(Argv {
        _owned: owned,
        ptrs,
    })
}

/// `gdalwarp` as a library call: `src` into a new file `dest`.
fn gdal_warp(dest: &str, src: &Dataset, args: &[&str]) -> Result<(), String> {
    let mut a = argv(args)?;
    let c_dest = CString::new(dest).map_err(|_| "bad file name".to_string())?;
    // SAFETY: `a.ptrs` is a NULL-terminated array of valid C strings that outlives the
    // call; GDAL copies what it keeps.
    let options = unsafe { gdal_sys::GDALWarpAppOptionsNew(a.ptrs.as_mut_ptr(), null_mut()) };
    if options.is_null() {
        return Err("bad warp options".into());
    }
    let mut handles = [src.c_dataset()];
    let mut usage: c_int = 0;
    // SAFETY: valid destination name, one valid source handle, valid options; the
    // returned dataset (if any) is ours to close.
    let out = unsafe {
        gdal_sys::GDALWarp(
            c_dest.as_ptr(),
            null_mut(),
            1,
            handles.as_mut_ptr(),
            options,
            &mut usage,
        )
    };
    // SAFETY: freeing the options made above, once.
    unsafe { gdal_sys::GDALWarpAppOptionsFree(options) };
    if out.is_null() {
        return Err(last_error("GDALWarp"));
    }
    // SAFETY: `out` is a dataset GDAL just opened for us; wrapping it closes it once.
    let out = unsafe { Dataset::from_c_dataset(out) };
    out.close().map_err(|e| e.to_string())
}

/// GDAL's last error message.
fn last_error(what: &str) -> String {
    // SAFETY: GDAL returns a pointer to its own, NUL-terminated, thread-local message.
    let msg = unsafe { std::ffi::CStr::from_ptr(gdal_sys::CPLGetLastErrorMsg()) }
        .to_string_lossy()
        .into_owned();
    if msg.is_empty() {
        format!("{what} failed")
    } else {
        format!("{what}: {msg}")
    }
}

fn vector_mosaic(args: &Args, inputs: &mut [Input]) -> Result<Done, String> {
    let tmp = join(&args.out, &format!("{TMP}{}.gpkg", args.name));
    let _ = std::fs::remove_file(&tmp);
    let c_dest = CString::new(tmp.as_str()).map_err(|_| "bad file name".to_string())?;
    let mut dest: gdal_sys::GDALDatasetH = null_mut();
    let mut crs: Option<String> = None;
    let mut target_srs: Option<gdal::spatial_ref::SpatialRef> = None;
    for i in inputs.iter_mut() {
        let Some(ds) = i.ds.take() else { continue };
        let layer_srs = ds.layer(0).ok().and_then(|l| l.spatial_ref());
        let layer_crs = layer_srs.as_ref().and_then(crate::crs_name);
        let mut a: Vec<String> = Vec::new();
        if dest.is_null() {
            a.extend(["-f", "GPKG"].map(String::from));
            crs = layer_crs.clone();
            target_srs = layer_srs;
        } else {
            a.push("-append".into());
            if let (Some(t), Some(s)) = (&target_srs, &layer_srs) {
                if t != s {
                    a.push("-t_srs".into());
                    a.push(t.to_wkt().map_err(|e| e.to_string())?);
                }
            }
        }
        a.extend(["-nln".to_string(), args.name.clone()]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut av = argv(&refs)?;
        // SAFETY: a NULL-terminated array of valid C strings, outliving the call.
        let options =
            unsafe { gdal_sys::GDALVectorTranslateOptionsNew(av.ptrs.as_mut_ptr(), null_mut()) };
        if options.is_null() {
            return Err("bad vector options".into());
        }
        let mut handles = [ds.c_dataset()];
        let mut usage: c_int = 0;
        // SAFETY: a valid destination (name the first time, handle after), one valid
        // source, valid options.
        let out = unsafe {
            gdal_sys::GDALVectorTranslate(
                if dest.is_null() {
                    c_dest.as_ptr()
                } else {
                    null()
                },
                dest,
                1,
                handles.as_mut_ptr(),
                options,
                &mut usage,
            )
        };
        // SAFETY: freeing the options made above, once.
        unsafe { gdal_sys::GDALVectorTranslateOptionsFree(options) };
        if out.is_null() {
            i.error = Some(last_error("VectorTranslate"));
            continue;
        }
        dest = out;
    }
    if dest.is_null() {
        let _ = std::fs::remove_file(&tmp);
        return Err("no vector could be used".into());
    }
    // SAFETY: `dest` is the dataset GDAL opened for us; wrapping it closes it once.
    let out = unsafe { Dataset::from_c_dataset(dest) };
    out.close()
        .map_err(|e| format!("writing the GeoPackage: {e}"))?;
    let path = join(&args.out, &format!("{}.gpkg", args.name));
    commit(&tmp, &path)?;
    Ok(Done {
        path,
        format: "gpkg",
        crs,
        warped: vec![None; inputs.len()],
    })
}

/// Makes `tmp` read-only, fsyncs it, renames it to `path` (replacing it) and fsyncs the
/// folder. Read-only because readers must not write: GDAL writes a VRT opened by name
/// back to its file when it closes after computing statistics (QGIS does), which would
/// put an older mosaic over one republished meanwhile. The next build replaces the
/// file by a rename, which its mode does not prevent.
fn commit(tmp: &str, path: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut mode = std::fs::metadata(tmp)
        .map_err(|e| format!("cannot read {tmp}: {e}"))?
        .permissions();
    mode.set_mode(mode.mode() & !0o222);
    std::fs::set_permissions(tmp, mode).map_err(|e| format!("cannot make {tmp} read-only: {e}"))?;
    let sync = |p: &str| std::fs::File::open(p).and_then(|f| f.sync_all());
    sync(tmp).map_err(|e| format!("cannot sync {tmp}: {e}"))?;
    std::fs::rename(tmp, path).map_err(|e| format!("cannot rename {tmp} to {path}: {e}"))?;
    let dir = Path::new(path)
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::File::open(&dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// The layer entry of the file the helper made.
fn describe(path: &str, kind: &str) -> Value {
    let drivers: &[&str] = if path.ends_with(".vrt") {
        &[safety::VRT]
    } else {
        &safety::ALLOWED
    };
    let mut out = Map::new();
    out.insert("path".into(), json!(path));
    let ds = Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_READONLY
                | GdalOpenFlags::GDAL_OF_RASTER
                | GdalOpenFlags::GDAL_OF_VECTOR,
            allowed_drivers: Some(drivers),
            ..DatasetOptions::default()
        },
    );
    match ds {
        Ok(ds) => {
            out.insert("kind".into(), json!(kind));
            out.insert("readable".into(), json!(true));
            out.insert("error".into(), Value::Null);
            if kind == "raster" {
                crate::raster(&ds, &mut out);
                out.insert("optimised".into(), Value::Null);
            } else {
                crate::vector(&ds, &mut out);
            }
        }
        Err(e) => {
            out.insert("kind".into(), json!(kind));
            out.insert("readable".into(), json!(false));
            out.insert(
                "error".into(),
                json!(format!("cannot reopen the mosaic: {e}")),
            );
            out.insert("error_code".into(), json!("MosaicFailed"));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let a = parse(s(&["--name", "openEO", "--cog", "--", "-a/b.tif"])).unwrap();
        assert_eq!(a.name, "openEO");
        assert!(a.cog);
        assert_eq!(a.out, ".");
        assert_eq!(a.files, ["-a/b.tif"]);
        for bad in [
            &["--name", "../x", "--", "a.tif"][..],
            &["--name", ".x", "--", "a.tif"],
            &["--name", "x"],
            &["--name", "x", "--out", "/vsicurl/http://x", "--", "a"],
            &["--name", "x", "--bogus", "--", "a"],
        ] {
            assert!(parse(s(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_most_common_crs_wins_and_a_tie_goes_to_the_first() {
        let (a, b) = ("EPSG:32632", "EPSG:32633");
        assert_eq!(pick_crs(None, &[a, b, b]), Some(b.into()));
        assert_eq!(pick_crs(None, &[a, b, b, a]), Some(a.into()));
        assert_eq!(pick_crs(None, &[b, a]), Some(b.into()));
        assert_eq!(pick_crs(None, &[]), None);
        assert_eq!(pick_crs(Some("EPSG:3035"), &[a]), Some("EPSG:3035".into()));
    }
}
