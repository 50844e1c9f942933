//! A small, valid GeoTIFF for a job's extent, without GDAL: a UTM grid (WGS84 / UTM zone of the
//! extent's centre, 10 m pixels, at most [`MAX_SIDE`] pixels a side) and a baseline TIFF writer
//! (one uint8 band, uncompressed strips) with the GeoTIFF tags `ModelPixelScale`,
//! `ModelTiepoint` and `GeoKeyDirectory` (projected CRS by EPSG code, pixel-is-area).
//!
//! [`write_ground`] writes the "ground" variant for mosaic tests: one uint16 band on a grid of a
//! chosen pixel size, each pixel's value a function of its position in the UTM grid
//! ([`ground_value`]), so that two files covering the same ground in the same zone hold the same
//! values there, and a mosaic can be compared pixel by pixel with the tiles it was built from.

/// Largest width or height of a generated raster, in pixels.
pub(crate) const MAX_SIDE: u32 = 1024;

/// A north-up raster grid in a UTM CRS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Grid {
    /// EPSG code: 326zz (north) or 327zz (south).
    pub epsg: u32,
    /// West edge (easting), metres.
    pub min_x: f64,
    /// North edge (northing), metres.
    pub max_y: f64,
    /// Pixel size, metres.
    pub pixel: f64,
    pub width: u32,
    pub height: u32,
}

impl Grid {
    /// The grid covering a WGS84 bbox `[west, south, east, north]`.
    pub fn for_bbox(bbox: [f64; 4]) -> Grid {
        Grid::for_bbox_at(bbox, 10.0)
    }

    /// The grid covering a WGS84 bbox with pixels of `pixel` metres (coarser when the extent
    /// would need more than [`MAX_SIDE`] pixels a side); edges on multiples of the pixel size.
    pub fn for_bbox_at(bbox: [f64; 4], pixel: f64) -> Grid {
        let [w, s, e, n] = bbox;
        let lon_c = (w + e) / 2.0;
        let lat_c = (s + n) / 2.0;
        let zone = (((lon_c + 180.0) / 6.0).floor() as i32 + 1).clamp(1, 60);
        let south = lat_c < 0.0;
        let epsg = if south { 32700 } else { 32600 } + zone as u32;
        // Project points along the bbox edges; the projected bbox is their envelope.
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for i in 0..=8 {
            let f = f64::from(i) / 8.0;
            for (lon, lat) in [
                (w + (e - w) * f, s),
                (w + (e - w) * f, n),
                (w, s + (n - s) * f),
                (e, s + (n - s) * f),
            ] {
                let (x, y) = utm_forward(lon, lat, zone, south);
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
        let extent = (x1 - x0).max(y1 - y0).max(pixel);
        let mut pixel = pixel;
        if extent / pixel > f64::from(MAX_SIDE) {
            pixel = (extent / f64::from(MAX_SIDE) / pixel).ceil() * pixel;
        }
        let min_x = (x0 / pixel).floor() * pixel;
        let min_y = (y0 / pixel).floor() * pixel;
        let max_x = (x1 / pixel).ceil() * pixel;
        let max_y = (y1 / pixel).ceil() * pixel;
        Grid {
            epsg,
            min_x,
            max_y,
            pixel,
            width: (((max_x - min_x) / pixel).round() as u32).clamp(1, MAX_SIDE),
            height: (((max_y - min_y) / pixel).round() as u32).clamp(1, MAX_SIDE),
        }
    }

    /// `[min_x, min_y, max_x, max_y]` in the grid's CRS.
    pub fn proj_bbox(&self) -> [f64; 4] {
        [
            self.min_x,
            self.max_y - f64::from(self.height) * self.pixel,
            self.min_x + f64::from(self.width) * self.pixel,
            self.max_y,
        ]
    }
}

/// WGS84 geographic → UTM (Krüger series, sub-millimetre within a zone).
pub(crate) fn utm_forward(lon: f64, lat: f64, zone: i32, south: bool) -> (f64, f64) {
    let a = 6_378_137.0_f64;
    let f = 1.0 / 298.257_223_563;
    let k0 = 0.9996;
    let n = f / (2.0 - f);
    let big_a = a / (1.0 + n) * (1.0 + n * n / 4.0 + n.powi(4) / 64.0);
    let alpha = [
        n / 2.0 - 2.0 / 3.0 * n * n + 5.0 / 16.0 * n.powi(3),
        13.0 / 48.0 * n * n - 3.0 / 5.0 * n.powi(3),
        61.0 / 240.0 * n.powi(3),
    ];
    let lon0 = f64::from(zone * 6 - 183).to_radians();
    let phi = lat.to_radians();
    let dl = lon.to_radians() - lon0;
    let c = 2.0 * n.sqrt() / (1.0 + n);
    let t = (phi.sin().atanh() - c * (c * phi.sin()).atanh()).sinh();
    let xi = t.atan2(dl.cos());
    let eta = (dl.sin() / (1.0 + t * t).sqrt()).atanh();
    let mut e = eta;
    let mut nn = xi;
    for (j, al) in alpha.iter().enumerate() {
        let k = 2.0 * (j as f64 + 1.0);
        e += al * (k * xi).cos() * (k * eta).sinh();
        nn += al * (k * xi).sin() * (k * eta).cosh();
    }
    let x = 500_000.0 + k0 * big_a * e;
    let y = k0 * big_a * nn + if south { 10_000_000.0 } else { 0.0 };
    (x, y)
}

/// Pixel values: a "detection mask" — 0 background, 1 inside a few rectangles placed by `seed`.
pub(crate) fn pixels(grid: &Grid, seed: u64) -> Vec<u8> {
    let (w, h) = (grid.width as usize, grid.height as usize);
    let mut data = vec![0u8; w * h];
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..5 {
        let rw = 1 + (next() as usize % w.div_ceil(6).max(1));
        let rh = 1 + (next() as usize % h.div_ceil(6).max(1));
        let x0 = next() as usize % w;
        let y0 = next() as usize % h;
        for y in y0..(y0 + rh).min(h) {
            for x in x0..(x0 + rw).min(w) {
                data[y * w + x] = 1;
            }
        }
    }
    data
}

/// Writes a little-endian classic GeoTIFF of `grid` (uint8, one band, nodata 255).
pub(crate) fn write(grid: &Grid, seed: u64) -> Vec<u8> {
    write_band(grid, &pixels(grid, seed), 1, *b"255\0")
}

/// The value of the ground variant at pixel column `col`, row `row` of the whole UTM grid of
/// `pixel` metres (column = easting / pixel, row = northing / pixel, of the pixel's lower-left
/// corner): never 0 (the nodata value), the same for the same ground pixel in every file.
pub(crate) fn ground_value(col: i64, row: i64) -> u16 {
    (col.wrapping_mul(31).wrapping_add(row.wrapping_mul(17))).rem_euclid(65_000) as u16 + 1
}

/// Writes the ground variant: uint16, one band, nodata 0, values [`ground_value`].
pub(crate) fn write_ground(grid: &Grid) -> Vec<u8> {
    let (w, h) = (grid.width as usize, grid.height as usize);
    let col0 = (grid.min_x / grid.pixel).round() as i64;
    let top = (grid.max_y / grid.pixel).round() as i64;
    let mut data = Vec::with_capacity(w * h * 2);
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            data.extend_from_slice(&ground_value(col0 + x, top - 1 - y).to_le_bytes());
        }
    }
    write_band(grid, &data, 2, *b"0\0\0\0")
}

/// Writes a little-endian classic GeoTIFF of `grid`: one unsigned band of `bytes` bytes per
/// sample (1 or 2), `data` in row order (little-endian samples), `nodata` the GDAL_NODATA text
/// (NUL-padded to 4 bytes).
fn write_band(grid: &Grid, data: &[u8], bytes: u32, nodata: [u8; 4]) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const DOUBLE: u16 = 12;
    const ASCII: u16 = 2;
    let (w, h) = (grid.width, grid.height);
    let row_bytes = w.max(1) * bytes;
    let rows_per_strip = (8192 / row_bytes).clamp(1, h);
    let strips = h.div_ceil(rows_per_strip);

    // Out-of-line values, laid out after the IFD.
    let scale = [grid.pixel, grid.pixel, 0.0];
    let tiepoint = [0.0, 0.0, 0.0, grid.min_x, grid.max_y, 0.0];
    let geokeys: [u16; 16] = [
        1,
        1,
        0,
        3, // version, revision, minor, number of keys
        1024,
        0,
        1,
        1, // GTModelType = projected
        1025,
        0,
        1,
        1, // GTRasterType = pixel is area
        3072,
        0,
        1,
        grid.epsg as u16, // ProjectedCSType
    ];
    let nodata_len = nodata.iter().position(|b| *b == 0).map_or(4, |i| i + 1) as u32;

    let n_entries: u32 = 15;
    let ifd_len = 2 + 12 * n_entries + 4;
    let mut extra: Vec<u8> = Vec::new();
    let extra_base = 8 + ifd_len;
    let mut put = |bytes: &[u8]| -> u32 {
        if extra.len() % 2 == 1 {
            extra.push(0);
        }
        let off = extra_base + extra.len() as u32;
        extra.extend_from_slice(bytes);
        off
    };
    let scale_off = put(&scale
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>());
    let tie_off = put(&tiepoint
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>());
    let keys_off = put(&geokeys
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>());
    let offsets_off = put(&vec![0u8; strips as usize * 4]);
    let counts_off = put(&vec![0u8; strips as usize * 4]);
    let mut data_start = extra_base + extra.len() as u32;
    if data_start % 2 == 1 {
        extra.push(0);
        data_start += 1;
    }
    // Fill strip offsets and counts.
    for i in 0..strips {
        let rows = rows_per_strip.min(h - i * rows_per_strip);
        let off = data_start + i * rows_per_strip * row_bytes;
        let cnt = rows * row_bytes;
        let o = (offsets_off - extra_base) as usize + i as usize * 4;
        extra[o..o + 4].copy_from_slice(&off.to_le_bytes());
        let c = (counts_off - extra_base) as usize + i as usize * 4;
        extra[c..c + 4].copy_from_slice(&cnt.to_le_bytes());
    }
    let (strip_offsets, strip_counts) = if strips == 1 {
        (data_start, row_bytes * h)
    } else {
        (offsets_off, counts_off)
    };

    let mut out = Vec::with_capacity(data_start as usize + data.len());
    out.extend_from_slice(b"II");
    out.extend_from_slice(&42u16.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(n_entries as u16).to_le_bytes());
    let mut entry = |tag: u16, typ: u16, count: u32, value: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&typ.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    };
    entry(256, LONG, 1, w); // ImageWidth
    entry(257, LONG, 1, h); // ImageLength
    entry(258, SHORT, 1, bytes * 8); // BitsPerSample
    entry(259, SHORT, 1, 1); // Compression: none
    entry(262, SHORT, 1, 1); // Photometric: min-is-black
    entry(273, LONG, strips, strip_offsets); // StripOffsets
    entry(277, SHORT, 1, 1); // SamplesPerPixel
    entry(278, LONG, 1, rows_per_strip); // RowsPerStrip
    entry(279, LONG, strips, strip_counts); // StripByteCounts
    entry(284, SHORT, 1, 1); // PlanarConfiguration: chunky
    entry(339, SHORT, 1, 1); // SampleFormat: unsigned int
    entry(33550, DOUBLE, 3, scale_off); // ModelPixelScale
    entry(33922, DOUBLE, 6, tie_off); // ModelTiepoint
    entry(34735, SHORT, 16, keys_off); // GeoKeyDirectory
    entry(42113, ASCII, nodata_len, u32::from_le_bytes(nodata)); // GDAL_NODATA
    out.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    out.extend_from_slice(&extra);
    debug_assert_eq!(out.len() as u32, data_start);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_matches_proj() {
        // Reference: `gdaltransform -s_srs "+proj=longlat +datum=WGS84" -t_srs EPSG:32633`.
        let (x, y) = utm_forward(16.342, 47.962, 33, false);
        assert!((x - 600_179.725_328).abs() < 0.001, "x {x}");
        assert!((y - 5_312_948.124_329).abs() < 0.001, "y {y}");
        let (x, y) = utm_forward(15.0, 0.0, 33, false);
        assert!((x - 500_000.0).abs() < 1e-6 && y.abs() < 1e-6);
        let (_, y) = utm_forward(15.0, -10.0, 33, true);
        assert!(y < 10_000_000.0 && y > 8_000_000.0);
    }

    #[test]
    fn grid_covers_the_bbox_and_tiff_has_the_right_size() {
        let g = Grid::for_bbox([16.342, 47.962, 16.414, 48.008]);
        assert_eq!(g.epsg, 32633);
        assert_eq!(g.pixel, 10.0);
        let [x0, y0, x1, y1] = g.proj_bbox();
        let (ax, ay) = utm_forward(16.342, 47.962, 33, false);
        let (bx, by) = utm_forward(16.414, 48.008, 33, false);
        assert!(x0 <= ax && y0 <= ay && x1 >= bx && y1 >= by);
        let tif = write(&g, 42);
        assert_eq!(&tif[..4], b"II*\0");
        let pixels = (g.width * g.height) as usize;
        assert!(tif.len() > pixels && tif.len() < pixels + 1024);
        // Large extents get coarser pixels, never more than MAX_SIDE a side.
        let big = Grid::for_bbox([10.0, 45.0, 14.0, 48.0]);
        assert!(big.width <= MAX_SIDE && big.height <= MAX_SIDE && big.pixel > 10.0);
    }

    #[test]
    fn ground_variant_is_uint16_and_positional() {
        let g = Grid::for_bbox_at([11.8, 47.9, 12.1, 48.1], 100.0);
        assert_eq!(g.pixel, 100.0);
        let tif = write_ground(&g);
        let pixels = (g.width * g.height) as usize;
        assert!(tif.len() > 2 * pixels && tif.len() < 2 * pixels + 1024);
        // The first pixel holds the value of its own ground position.
        let data_start = tif.len() - 2 * pixels;
        let first = u16::from_le_bytes([tif[data_start], tif[data_start + 1]]);
        let col = (g.min_x / 100.0).round() as i64;
        let row = (g.max_y / 100.0).round() as i64 - 1;
        assert_eq!(first, ground_value(col, row));
        assert_ne!(ground_value(col, row), ground_value(col + 1, row));
        assert!((0..1000).all(|i| ground_value(i * 7919, -i) != 0));
    }
}
