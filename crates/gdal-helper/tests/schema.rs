//! What the helper prints follows the results folder's contract: each entry of
//! `eodispatch-gdal -- FILE...` is a `job.json` layer without what the daemon adds
//! (`docs/job.schema.json`, `$defs/helperEntry`), the answer of `eodispatch-gdal mosaic` a
//! `task.json` layer without what the daemon adds (`docs/task.schema.json`,
//! `$defs/helperMosaic`). The helper reads no `job.json` or `task.json` itself: the
//! daemon merges these entries into them (and the daemon's tests validate the result).
//!
//! The files are made here with GDAL: a single-band GeoTIFF (a min/max stretch), a
//! classified one (a palette), a three-band one (RGB), a GeoJSON (a vector), a file GDAL
//! cannot read and a VRT the helper refuses; then a mosaic of two tiles and one of
//! nothing readable.

use std::path::Path;
use std::process::Command;

use gdal::raster::Buffer;
use gdal::spatial_ref::SpatialRef;
use gdal::DriverManager;
use serde_json::{json, Value};

/// `$id` of `docs/job.schema.json`, by which `docs/task.schema.json` refers to it.
const JOB_SCHEMA_ID: &str = "https://eodispatch.invalid/schemas/job.schema.json";
const TASK_SCHEMA_ID: &str = "https://eodispatch.invalid/schemas/task.schema.json";

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A validator of the definition `pointer` of schema `id` (both schemas from `docs/`).
fn validator(id: &str, pointer: &str) -> jsonschema::Validator {
    let registry = jsonschema::Registry::new()
        .add(JOB_SCHEMA_ID, load("job.schema.json"))
        .unwrap()
        .add(TASK_SCHEMA_ID, load("task.schema.json"))
        .unwrap()
        .prepare()
        .unwrap();
    jsonschema::options()
        .with_registry(&registry)
        .build(&json!({"$ref": format!("{id}#{pointer}")}))
        .unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Runs the helper in `dir`; its JSON answer.
fn helper(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_eodispatch-gdal"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the helper runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the helper prints JSON")
}

/// A GeoTIFF in UTM 33N near Vienna, `bands` bands of `pixel(x, y)`.
fn geotiff(path: &Path, bands: usize, origin_x: f64, pixel: impl Fn(usize, usize) -> u8) {
    let (w, h) = (40, 30);
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver
        .create_with_band_type::<u8, _>(path, w, h, bands)
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32633).unwrap())
        .unwrap();
    ds.set_geo_transform(&[origin_x, 10.0, 0.0, 5_320_000.0, 0.0, -10.0])
        .unwrap();
    for b in 1..=bands {
        let data: Vec<u8> = (0..w * h).map(|i| pixel(i % w, i / w)).collect();
        let mut buffer = Buffer::new((w, h), data);
        ds.rasterband(b)
            .unwrap()
            .write((0, 0), (w, h), &mut buffer)
            .unwrap();
    }
    ds.close().unwrap();
}

#[test]
fn inspected_files_are_job_json_layers_without_the_daemons_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    geotiff(&d.join("grey.tif"), 1, 600_000.0, |x, _| (x * 6) as u8);
    geotiff(&d.join("classes.tif"), 1, 600_000.0, |x, y| {
        ((x / 10 + y / 10) % 3) as u8
    });
    geotiff(&d.join("rgb.tif"), 3, 600_000.0, |x, y| (x + y) as u8);
    std::fs::write(
        d.join("farms.geojson"),
        json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"n": 1},
            "geometry": {"type": "Point", "coordinates": [16.4, 48.0]}}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(d.join("broken.tif"), b"not a GeoTIFF at all").unwrap();
    std::fs::write(
        d.join("outside.vrt"),
        r#"<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" band="1">
<SimpleSource><SourceFilename relativeToVRT="0">/etc/hostname</SourceFilename></SimpleSource>
</VRTRasterBand></VRTDataset>"#,
    )
    .unwrap();
    let files = [
        "grey.tif",
        "classes.tif",
        "rgb.tif",
        "farms.geojson",
        "broken.tif",
        "outside.vrt",
    ];
    let mut args = vec!["--"];
    args.extend(files);
    let out = helper(d, &args);
    let entries = out.as_array().expect("an array");
    assert_eq!(entries.len(), files.len(), "{out:#}");

    let v = validator(JOB_SCHEMA_ID, "/$defs/helperEntry");
    for (file, entry) in files.iter().zip(entries) {
        assert_eq!(errors(&v, entry), Vec::<String>::new(), "{file}: {entry:#}");
    }
    let style = |i: usize| entries[i]["style"]["type"].as_str().unwrap_or_default();
    assert_eq!(
        [style(0), style(1), style(2), style(3)],
        ["minmax", "palette", "rgb", "single"],
        "{out:#}"
    );
    assert_eq!(entries[4]["error_code"], "Unreadable", "{out:#}");
    assert_eq!(entries[5]["error_code"], "Refused", "{out:#}");

    // The schema can fail: a planted error in each entry is found.
    for (i, (at, value)) in [
        ("kind", json!("image")),
        ("readable", json!("yes")),
        ("bounds", json!([0, 0])),
        ("style", json!({"type": "single"})),
        ("layers", json!([{"name": "farms"}])),
        ("error_code", json!("Broken")),
        ("name", json!("the daemon adds names")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut bad = entries[i % entries.len()].clone();
        bad[at] = value;
        assert!(!errors(&v, &bad).is_empty(), "{at} planted in {bad:#}");
    }
}

#[test]
fn a_mosaic_is_a_task_json_layer_without_the_daemons_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (tile, x) in [("tile-1", 600_000.0), ("tile-2", 600_400.0)] {
        std::fs::create_dir(d.join(tile)).unwrap();
        geotiff(&d.join(tile).join("openEO.tif"), 1, x, |x, _| (x * 6) as u8);
    }
    std::fs::create_dir(d.join("tile-3")).unwrap();
    std::fs::write(d.join("tile-3/openEO.tif"), b"no tile").unwrap();
    let v = validator(TASK_SCHEMA_ID, "/$defs/helperMosaic");

    let made = helper(
        d,
        &[
            "mosaic",
            "--out",
            ".",
            "--name",
            "openEO",
            "--",
            "tile-1/openEO.tif",
            "tile-2/openEO.tif",
            "tile-3/openEO.tif",
        ],
    );
    assert_eq!(errors(&v, &made), Vec::<String>::new(), "{made:#}");
    assert_eq!(made["path"], "openEO.vrt", "{made:#}");
    assert_eq!(made["readable"], true, "{made:#}");
    assert_eq!(made["mosaic"]["sources"][2]["used"], false, "{made:#}");

    let failed = helper(
        d,
        &[
            "mosaic",
            "--out",
            ".",
            "--name",
            "nothing",
            "--",
            "tile-3/openEO.tif",
        ],
    );
    assert_eq!(errors(&v, &failed), Vec::<String>::new(), "{failed:#}");
    assert_eq!(failed["error_code"], "MosaicFailed", "{failed:#}");

    // The schema can fail.
    for (at, value) in [
        (
            "mosaic",
            json!({"format": "zip", "crs": null, "sources": []}),
        ),
        ("tiles", json!(2)),
        ("error_code", json!("Refused")),
    ] {
        let mut bad = made.clone();
        bad[at] = value;
        assert!(!errors(&v, &bad).is_empty(), "{at} planted in {bad:#}");
    }
}
