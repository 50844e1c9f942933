//! File and folder names for the results folder, made from what a backend sends.
//!
//! Asset keys, titles and hrefs come from a remote results document and are not
//! trusted: [`sanitise`] makes one safe file name of them (no path separators, no
//! `..`, no leading dot so nothing hidden, no control or Windows-reserved characters,
//! bounded length), [`unique_names`] removes collisions (case-insensitively, and with
//! the names the daemon writes itself), and [`folder_name`] builds the
//! `<date>_<title-slug>_<id>` job folder name. Pure functions, no I/O.
//!
//! Side files: GDAL and QGIS read some files next to a data file by themselves — a
//! QGIS style (`x.qml`, which can carry actions and Python), PAM metadata
//! (`x.tif.aux.xml`: georeferencing, nodata, colour tables), external overviews
//! (`x.tif.ovr`: what is shown zoomed out), masks, world files. An asset named like
//! one ([`is_side_file`]) would change how another result looks or where it lies, so
//! [`asset_file_name`] keeps it under an inert name (`x.tif.aux.xml.sidecar`) that
//! neither reads. Overviews the daemon makes (the COG rewrite) are inside the GeoTIFF.

/// Names the daemon writes into every job folder; assets never take them.
pub const RESERVED: [&str; 2] = ["job.json", "results.json"];

/// Endings of side files that GDAL or QGIS apply to a neighbouring file by themselves
/// (lower case): QGIS styles and metadata, GDAL PAM, `.aux`, external overviews and
/// masks, world files and MapInfo georeferencing, RPC and IMD metadata, SQLite
/// journals (a GeoPackage's `-wal` is replayed into it on opening).
const SIDE_FILE_ENDINGS: [&str; 22] = [
    ".qml", ".qmd", ".sld", ".aux.xml", ".aux", ".ovr", ".msk", ".wld", ".tfw", ".tifw", ".tiffw",
    ".j2w", ".pgw", ".pngw", ".jgw", ".tab", ".rpb", "_rpc.txt", ".imd", "-wal", "-shm",
    "-journal",
];

/// Added to the name of a side file from the backend: nothing reads `*.sidecar`.
pub const INERT_SUFFIX: &str = ".sidecar";

/// Whether GDAL or QGIS would apply a file of this name to a file next to it.
pub fn is_side_file(name: &str) -> bool {
    let lower = name.to_lowercase();
    SIDE_FILE_ENDINGS.iter().any(|e| lower.ends_with(e))
}

/// Whether a name is a side file kept under its inert name.
pub fn is_inert_side_file(name: &str) -> bool {
    name.to_lowercase().ends_with(INERT_SUFFIX)
}

/// Longest file name produced, in bytes (ext4 allows 255; room for suffixes).
const MAX_NAME_BYTES: usize = 120;

/// Longest title slug in a folder name, in characters.
const MAX_SLUG_CHARS: usize = 40;

/// A safe file name for an asset: the last path segment of `raw` (either separator),
/// with anything but letters, digits, `.`, `-`, `_`, `+`, `=`, `,`, `(`, `)` and
/// spaces replaced by `_`, leading dots and spaces removed, and cut to a sane
/// length keeping the extension. An empty result becomes `asset`.
pub fn sanitise(raw: &str) -> String {
    let last = raw
        .rsplit(['/', '\\'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric()
                || matches!(c, '.' | '-' | '_' | '+' | '=' | ',' | '(' | ')' | ' ')
            {
                c
            } else {
                '_'
            }
        })
        .collect();
    name = name
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_string();
    if name.is_empty() || name.chars().all(|c| c == '_') {
        name = "asset".to_string();
    }
    if name.len() > MAX_NAME_BYTES {
        let (stem, ext) = split_ext(&name);
        let ext: String = ext.chars().take(16).collect();
        let mut stem = stem.to_string();
        while stem.len() + ext.len() > MAX_NAME_BYTES {
            stem.pop();
        }
        name = format!("{stem}{ext}");
    }
    name
}

/// `("openEO", ".tif")`; no extension gives `(name, "")`.
pub fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

pub use crate::platform::http::extension_for;

/// The file name for one asset: its key when that looks like `name.ext`, else the key
/// plus an extension for its media type; then [`sanitise`]d. A side file
/// ([`is_side_file`]) gets [`INERT_SUFFIX`].
pub fn asset_file_name(key: &str, media_type: Option<&str>) -> String {
    let base = sanitise(key);
    let name = if split_ext(&base).1.is_empty() {
        sanitise(&format!("{base}{}", extension_for(media_type)))
    } else {
        base
    };
    if is_side_file(&name) {
        sanitise(&format!("{name}{INERT_SUFFIX}"))
    } else {
        name
    }
}

/// Makes names unique, case-insensitively and apart from [`RESERVED`]: a repeated name
/// gets `-2`, `-3`, ... before its extension. Order is kept.
pub fn unique_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut taken: std::collections::HashSet<String> =
        RESERVED.iter().map(|r| r.to_string()).collect();
    let mut out = Vec::new();
    for name in names {
        let mut candidate = name.clone();
        let (stem, ext) = split_ext(&name);
        let mut n = 1;
        while taken.contains(&candidate.to_lowercase()) || candidate.ends_with(".part") {
            n += 1;
            candidate = format!("{stem}-{n}{ext}");
            if candidate.ends_with(".part") {
                candidate.push_str(".bin");
            }
        }
        taken.insert(candidate.to_lowercase());
        out.push(candidate);
    }
    out
}

/// A short, safe slug of a title: lower-case ASCII letters and digits, runs of
/// anything else as one `-`, at most 40 characters; `job` if nothing is left.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        let c = deaccent(c);
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
            if out.len() >= MAX_SLUG_CHARS {
                break;
            }
        } else {
            dash = true;
        }
    }
    if out.is_empty() {
        "job".to_string()
    } else {
        out
    }
}

fn deaccent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'a',
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
        'ç' | 'Ç' => 'c',
        'ñ' | 'Ñ' => 'n',
        other => other,
    }
}

/// `<YYYY-MM-DD>_<title-slug>_<id>`.
pub fn folder_name(date: time::Date, title: &str, id: i64) -> String {
    format!(
        "{:04}-{:02}-{:02}_{}_{}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        slug(title),
        id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_names_are_neutralised() {
        assert_eq!(sanitise("../../etc/passwd"), "passwd");
        assert_eq!(sanitise("..\\..\\evil.tif"), "evil.tif");
        assert_eq!(sanitise("/abs/path/x.nc"), "x.nc");
        assert_eq!(sanitise(".."), "asset");
        assert_eq!(sanitise("."), "asset");
        assert_eq!(sanitise(""), "asset");
        assert_eq!(sanitise(".bashrc"), "bashrc");
        assert_eq!(sanitise("a/.."), "asset");
        assert_eq!(sanitise("x\0y:z*?.tif"), "x_y_z__.tif");
        assert_eq!(sanitise("trailing. . "), "trailing");
        assert_eq!(sanitise("openEO.tif"), "openEO.tif");
        let long = format!("{}.tif", "a".repeat(500));
        let s = sanitise(&long);
        assert!(s.len() <= 120 && s.ends_with(".tif"), "{s}");
    }

    #[test]
    fn collisions_get_suffixes() {
        let names = unique_names(
            ["a.tif", "A.TIF", "a.tif", "job.json", "x.part"]
                .into_iter()
                .map(String::from),
        );
        assert_eq!(
            names,
            ["a.tif", "A-2.TIF", "a-3.tif", "job-2.json", "x-2.part.bin"]
        );
    }

    #[test]
    fn keys_without_extension_get_one_from_the_media_type() {
        assert_eq!(
            asset_file_name("result", Some("image/tiff; application=geotiff")),
            "result.tif"
        );
        assert_eq!(asset_file_name("openEO.nc", None), "openEO.nc");
        assert_eq!(asset_file_name("blob", None), "blob");
    }

    #[test]
    fn side_files_get_an_inert_name() {
        for (key, name) in [
            ("openEO.tif.aux.xml", "openEO.tif.aux.xml.sidecar"),
            ("openEO.TIF.AUX.XML", "openEO.TIF.AUX.XML.sidecar"),
            ("openEO.qml", "openEO.qml.sidecar"),
            ("openEO.tif.ovr", "openEO.tif.ovr.sidecar"),
            ("openEO.tif.msk", "openEO.tif.msk.sidecar"),
            ("openEO.tfw", "openEO.tfw.sidecar"),
            ("result.gpkg-wal", "result.gpkg-wal.sidecar"),
            ("style.sld", "style.sld.sidecar"),
        ] {
            assert_eq!(asset_file_name(key, None), name, "{key}");
            assert!(is_inert_side_file(name));
            assert_eq!(sanitise(name), name, "served as is by /files");
        }
        for key in [
            "openEO.tif",
            "openEO.nc",
            "result.json",
            "metadata.xml",
            "a.gpkg",
        ] {
            assert_eq!(asset_file_name(key, None), key);
            assert!(!is_inert_side_file(key));
        }
        let names = unique_names(
            ["a.qml", "a.qml"]
                .into_iter()
                .map(|k| asset_file_name(k, None)),
        );
        assert_eq!(names, ["a.qml.sidecar", "a.qml-2.sidecar"]);
        assert!(names.iter().all(|n| !is_side_file(n)));
    }

    #[test]
    fn folder_names() {
        let d = time::macros::date!(2024 - 05 - 03);
        assert_eq!(
            folder_name(d, "PV farms: Wien / Süd (2023)!", 42),
            "2024-05-03_pv-farms-wien-sud-2023_42"
        );
        assert_eq!(folder_name(d, "***", 7), "2024-05-03_job_7");
    }
}
