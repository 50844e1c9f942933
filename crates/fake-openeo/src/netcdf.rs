//! A small, valid netCDF classic (CDF-1) file for a job's extent, without libnetcdf: dimensions
//! `t` (1), `y`, `x` on the same UTM grid as the GeoTIFF, coordinate variables, a CF
//! `transverse_mercator` grid mapping `crs` (with `spatial_ref`/`crs_wkt` WKT and a GDAL
//! `GeoTransform`), and one byte variable `pv_farm(t, y, x)`, as openEO backends lay out their
//! netCDF results.

use crate::geotiff::{self, Grid};

const NC_BYTE: u32 = 1;
const NC_CHAR: u32 = 2;
const NC_DOUBLE: u32 = 6;
const NC_DIMENSION: u32 = 0x0A;
const NC_VARIABLE: u32 = 0x0B;
const NC_ATTRIBUTE: u32 = 0x0C;

/// An attribute value.
enum Attr {
    Text(String),
    Doubles(Vec<f64>),
    Byte(i8),
}

/// A non-record variable.
struct Var {
    name: &'static str,
    dims: Vec<u32>,
    attrs: Vec<(&'static str, Attr)>,
    nc_type: u32,
    data: Vec<u8>,
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    put_u32(out, name.len() as u32);
    out.extend_from_slice(name.as_bytes());
    pad4(out);
}

fn put_attrs(out: &mut Vec<u8>, attrs: &[(&str, Attr)]) {
    if attrs.is_empty() {
        put_u32(out, 0);
        put_u32(out, 0);
        return;
    }
    put_u32(out, NC_ATTRIBUTE);
    put_u32(out, attrs.len() as u32);
    for (name, value) in attrs {
        put_name(out, name);
        match value {
            Attr::Text(s) => {
                put_u32(out, NC_CHAR);
                put_u32(out, s.len() as u32);
                out.extend_from_slice(s.as_bytes());
            }
            Attr::Doubles(v) => {
                put_u32(out, NC_DOUBLE);
                put_u32(out, v.len() as u32);
                for d in v {
                    out.extend_from_slice(&d.to_be_bytes());
                }
            }
            Attr::Byte(b) => {
                put_u32(out, NC_BYTE);
                put_u32(out, 1);
                out.push(*b as u8);
            }
        }
        pad4(out);
    }
}

/// WKT1 of WGS 84 / UTM zone `zone`, as GDAL writes it.
fn utm_wkt(epsg: u32) -> (String, f64, bool) {
    let south = epsg >= 32700;
    let zone = epsg % 100;
    let cm = f64::from(zone * 6) - 183.0;
    let wkt = format!(
        "PROJCS[\"WGS 84 / UTM zone {zone}{hemi}\",GEOGCS[\"WGS 84\",DATUM[\"WGS_1984\",\
         SPHEROID[\"WGS 84\",6378137,298.257223563,AUTHORITY[\"EPSG\",\"7030\"]],\
         AUTHORITY[\"EPSG\",\"6326\"]],PRIMEM[\"Greenwich\",0,AUTHORITY[\"EPSG\",\"8901\"]],\
         UNIT[\"degree\",0.0174532925199433,AUTHORITY[\"EPSG\",\"9122\"]],\
         AUTHORITY[\"EPSG\",\"4326\"]],PROJECTION[\"Transverse_Mercator\"],\
         PARAMETER[\"latitude_of_origin\",0],PARAMETER[\"central_meridian\",{cm}],\
         PARAMETER[\"scale_factor\",0.9996],PARAMETER[\"false_easting\",500000],\
         PARAMETER[\"false_northing\",{fn}],UNIT[\"metre\",1,AUTHORITY[\"EPSG\",\"9001\"]],\
         AXIS[\"Easting\",EAST],AXIS[\"Northing\",NORTH],AUTHORITY[\"EPSG\",\"{epsg}\"]]",
        hemi = if south { "S" } else { "N" },
        fn = if south { 10_000_000 } else { 0 },
    );
    (wkt, cm, south)
}

/// Writes the netCDF file for `grid`; `days` is the time coordinate (days since 1990-01-01).
pub(crate) fn write(grid: &Grid, seed: u64, days: f64) -> Vec<u8> {
    let (w, h) = (grid.width as usize, grid.height as usize);
    let xs: Vec<u8> = (0..w)
        .flat_map(|i| (grid.min_x + (i as f64 + 0.5) * grid.pixel).to_be_bytes())
        .collect();
    let ys: Vec<u8> = (0..h)
        .flat_map(|j| (grid.max_y - (j as f64 + 0.5) * grid.pixel).to_be_bytes())
        .collect();
    let (wkt, cm, south) = utm_wkt(grid.epsg);
    let geotransform = format!(
        "{} {} 0 {} 0 -{}",
        grid.min_x, grid.pixel, grid.max_y, grid.pixel
    );
    let text = |s: &str| Attr::Text(s.to_string());
    let vars = vec![
        Var {
            name: "t",
            dims: vec![0],
            attrs: vec![
                ("standard_name", text("time")),
                ("long_name", text("t")),
                ("axis", text("T")),
                ("units", text("days since 1990-01-01")),
            ],
            nc_type: NC_DOUBLE,
            data: days.to_be_bytes().to_vec(),
        },
        Var {
            name: "y",
            dims: vec![1],
            attrs: vec![
                ("standard_name", text("projection_y_coordinate")),
                ("long_name", text("y coordinate of projection")),
                ("units", text("m")),
            ],
            nc_type: NC_DOUBLE,
            data: ys,
        },
        Var {
            name: "x",
            dims: vec![2],
            attrs: vec![
                ("standard_name", text("projection_x_coordinate")),
                ("long_name", text("x coordinate of projection")),
                ("units", text("m")),
            ],
            nc_type: NC_DOUBLE,
            data: xs,
        },
        Var {
            name: "crs",
            dims: vec![],
            attrs: vec![
                ("grid_mapping_name", text("transverse_mercator")),
                ("longitude_of_central_meridian", Attr::Doubles(vec![cm])),
                ("latitude_of_projection_origin", Attr::Doubles(vec![0.0])),
                (
                    "scale_factor_at_central_meridian",
                    Attr::Doubles(vec![0.9996]),
                ),
                ("false_easting", Attr::Doubles(vec![500_000.0])),
                (
                    "false_northing",
                    Attr::Doubles(vec![if south { 10_000_000.0 } else { 0.0 }]),
                ),
                ("crs_wkt", Attr::Text(wkt.clone())),
                ("spatial_ref", Attr::Text(wkt)),
                ("GeoTransform", Attr::Text(geotransform)),
            ],
            nc_type: NC_CHAR,
            data: vec![0],
        },
        Var {
            name: "pv_farm",
            dims: vec![0, 1, 2],
            attrs: vec![
                ("long_name", text("pv_farm")),
                ("grid_mapping", text("crs")),
                ("_FillValue", Attr::Byte(-1)),
            ],
            nc_type: NC_BYTE,
            data: geotiff::pixels(grid, seed),
        },
    ];

    // Header, with `begin` offsets patched once the header length is known.
    let mut out = Vec::new();
    out.extend_from_slice(b"CDF\x01");
    put_u32(&mut out, 0); // numrecs
    put_u32(&mut out, NC_DIMENSION);
    put_u32(&mut out, 3);
    for (name, len) in [("t", 1), ("y", h), ("x", w)] {
        put_name(&mut out, name);
        put_u32(&mut out, len as u32);
    }
    put_attrs(
        &mut out,
        &[
            ("Conventions", text("CF-1.9")),
            ("institution", text("fake-openeo")),
            ("title", text("Fake openEO result")),
        ],
    );
    put_u32(&mut out, NC_VARIABLE);
    put_u32(&mut out, vars.len() as u32);
    let mut begin_slots = Vec::new();
    for v in &vars {
        put_name(&mut out, v.name);
        put_u32(&mut out, v.dims.len() as u32);
        for d in &v.dims {
            put_u32(&mut out, *d);
        }
        put_attrs(&mut out, &v.attrs);
        put_u32(&mut out, v.nc_type);
        put_u32(&mut out, v.data.len().next_multiple_of(4) as u32);
        begin_slots.push(out.len());
        put_u32(&mut out, 0);
    }
    for (v, slot) in vars.iter().zip(begin_slots) {
        let begin = out.len() as u32;
        out[slot..slot + 4].copy_from_slice(&begin.to_be_bytes());
        out.extend_from_slice(&v.data);
        pad4(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_size() {
        let g = Grid::for_bbox([16.342, 47.962, 16.414, 48.008]);
        let nc = write(&g, 1, 12_000.0);
        assert_eq!(&nc[..4], b"CDF\x01");
        assert_eq!(nc.len() % 4, 0);
        let pixels = (g.width * g.height) as usize;
        assert!(nc.len() > pixels && nc.len() < pixels + 16 * 1024 + 8 * (pixels / 100));
    }
}
