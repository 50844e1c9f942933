//! What the helper refuses to let GDAL do with a result file from a backend.
//!
//! Result files come from a remote server and are not trusted. Before GDAL opens one:
//!
//! - the path must be a plain local file (or a Zarr folder): nothing starting with
//!   `/vsi`, no `scheme://`, no `DRIVER:` connection string, no symbolic link;
//! - GDAL must recognise it as one of the formats results come in ([`ALLOWED`]), and it
//!   is then opened with only those drivers (`GDALOpenEx`'s allowed drivers), without
//!   looking at side files next to it (an empty sibling list: no `.aux.xml`, `.ovr`,
//!   `.msk`, world files);
//! - a VRT is opened only after its XML (parsed by GDAL's own parser, as the VRT driver
//!   will parse it) was checked: every source a plain file name relative to the VRT that
//!   exists in the same folder and is itself an allowed format (a VRT source is checked
//!   the same way), no raw-raster bands, no pixel-function code.
//!
//! [`harden`] sets the process-wide GDAL configuration that goes with it (no PAM side
//! files, no raw VRT bands, no Python, no directory listing, PROJ off the network) and
//! routes every HTTP request GDAL could still make through a local "proxy" that answers
//! nothing and records what was asked ([`NetworkCanary`]): a file whose reading makes
//! GDAL reach for the network is refused, whatever the format feature that did it (for
//! example a GeoJSON `crs` of type `link`, which GDAL fetches).

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// GDAL drivers of the formats results come in: GeoTIFF/COG, netCDF, GeoJSON,
/// GeoPackage, (Geo)Parquet, JPEG 2000, PNG, Zarr. `VRT` is allowed separately, after
/// [`check_vrt`].
pub const ALLOWED: [&str; 10] = [
    "GTiff",
    "netCDF",
    "GeoJSON",
    "GPKG",
    "Parquet",
    "JP2OpenJPEG",
    "JP2ECW",
    "JP2KAK",
    "PNG",
    "Zarr",
];

/// `GDAL_OF_RASTER`, `GDAL_OF_VECTOR` (gdal.h macros, not in the bindings).
const OF_RASTER: std::ffi::c_uint = 0x02;
const OF_VECTOR: std::ffi::c_uint = 0x04;

/// The VRT driver's short name.
pub const VRT: &str = "VRT";

/// How deep VRTs may reference VRTs.
const MAX_VRT_DEPTH: usize = 4;

/// Bytes of a file searched for `<VRTDataset` (GDAL's VRT driver looks at the first
/// kilobyte; more is searched so that no other driver's longer read can differ).
const VRT_SNIFF_BYTES: u64 = 1 << 20;

/// Why a file is not opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(pub String);

/// Process-wide GDAL settings of the helper; returns the canary that sees network
/// attempts. Call before anything else touches GDAL.
pub fn harden() -> NetworkCanary {
    // Environment read by PROJ and curl (through GDAL) later on. The helper is still
    // single-threaded here.
    std::env::set_var("PROJ_NETWORK", "OFF");
    for var in ["no_proxy", "NO_PROXY"] {
        std::env::remove_var(var);
    }
    let canary = NetworkCanary::start();
    let proxy = canary.proxy();
    for (key, value) in [
        // Side files: no PAM .aux.xml read or written, no directory listing (so no
        // .ovr, .msk, world file or .aux next to a file is picked up).
        ("GDAL_PAM_ENABLED", "NO"),
        ("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"),
        // VRT: no raw files, no Python pixel functions.
        ("GDAL_VRT_ENABLE_RAWRASTERBAND", "NO"),
        ("GDAL_VRT_ENABLE_PYTHON", "NO"),
        // Network: every HTTP(S) request goes to the canary, which answers nothing.
        ("GDAL_HTTP_PROXY", proxy.as_str()),
        ("GDAL_HTTPS_PROXY", proxy.as_str()),
        ("GDAL_HTTP_MAX_RETRY", "0"),
        ("GDAL_HTTP_TIMEOUT", "10"),
        ("GDAL_HTTP_CONNECTTIMEOUT", "5"),
        // Memory: the daemon caps the address space; keep the block cache well inside.
        ("GDAL_CACHEMAX", "256"),
        ("CPL_LOG_ERRORS", "OFF"),
    ] {
        let _ = gdal::config::set_config_option(key, value);
    }
    // `identify` runs before any open, which is where the gdal crate registers them.
    gdal::DriverManager::register_all();
    canary
}

/// A loopback listener set as GDAL's HTTP(S) proxy: every request GDAL makes arrives
/// here, is recorded (its request line: the URL, or `CONNECT host:443`) and gets no
/// answer.
#[derive(Clone)]
pub struct NetworkCanary {
    port: Option<u16>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl NetworkCanary {
    fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let Ok(listener) = TcpListener::bind(("127.0.0.1", 0)) else {
            return Self { port: None, seen };
        };
        let port = listener.local_addr().ok().map(|a| a.port());
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                let line = text.lines().next().unwrap_or("").trim().to_string();
                let line = if line.is_empty() {
                    "a connection".to_string()
                } else {
                    line.chars().take(300).collect()
                };
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
                // Dropping the stream closes it: GDAL gets no answer.
            }
        });
        Self { port, seen }
    }

    /// `127.0.0.1:PORT`; a closed port when no listener could be made.
    fn proxy(&self) -> String {
        format!("127.0.0.1:{}", self.port.unwrap_or(9))
    }

    /// How many requests were seen so far.
    pub fn count(&self) -> usize {
        self.seen.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// The requests seen after the first `from`.
    pub fn since(&self, from: usize) -> Vec<String> {
        self.seen
            .lock()
            .map(|l| l.iter().skip(from).cloned().collect())
            .unwrap_or_default()
    }
}

/// A path GDAL would read as a local file or folder, not as a network resource, a
/// virtual file system or a driver-specific connection string.
pub fn check_path(path: &str) -> Result<(), Refusal> {
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("/vsi") || lower.starts_with("\\vsi") {
        return Err(Refusal(format!(
            "refused: {path:?} is a GDAL virtual file system path"
        )));
    }
    if path.contains("://") {
        return Err(Refusal(format!("refused: {path:?} is a URL")));
    }
    let colon = match path.find(':') {
        // C:\... on Windows.
        Some(1) if cfg!(windows) && path.as_bytes()[0].is_ascii_alphabetic() => {
            path[2..].contains(':')
        }
        Some(_) => true,
        None => false,
    };
    if colon || path.starts_with('<') {
        return Err(Refusal(format!(
            "refused: {path:?} is not a plain file name (a GDAL connection string?)"
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(Refusal(format!("refused: {path:?} is a symbolic link")))
        }
        Ok(m) if m.is_file() || m.is_dir() => Ok(()),
        Ok(_) => Err(Refusal(format!("refused: {path:?} is not a regular file"))),
        Err(e) => Err(Refusal(format!("cannot read {path:?}: {e}"))),
    }
}

/// The short name of the driver GDAL would pick for `path` among `allowed` (all
/// drivers when `None`), without opening it.
pub fn identify(path: &str, allowed: Option<&[&str]>) -> Option<String> {
    let c_path = CString::new(path).ok()?;
    let c_allowed: Vec<CString> = allowed
        .unwrap_or(&[])
        .iter()
        .filter_map(|d| CString::new(*d).ok())
        .collect();
    let mut ptrs: Vec<*const std::ffi::c_char> = c_allowed.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let no_siblings: [*const std::ffi::c_char; 1] = [std::ptr::null()];
    // SAFETY: all pointers are valid NUL-terminated strings or null-terminated arrays
    // that outlive the call; GDAL returns a driver handle owned by the driver manager.
    let driver = unsafe {
        gdal_sys::GDALIdentifyDriverEx(
            c_path.as_ptr(),
            OF_RASTER | OF_VECTOR,
            if allowed.is_some() {
                ptrs.as_ptr()
            } else {
                std::ptr::null()
            },
            no_siblings.as_ptr(),
        )
    };
    if driver.is_null() {
        return None;
    }
    // SAFETY: a valid driver handle; the name is owned by GDAL.
    let name = unsafe { gdal_sys::GDALGetDriverShortName(driver) };
    if name.is_null() {
        return None;
    }
    // SAFETY: GDAL returns a NUL-terminated string.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Whether the file holds `<VRTDataset` in its text start (what GDAL's VRT driver
/// recognises), searched over more than GDAL looks at.
pub fn looks_like_vrt(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::new();
    if f.take(VRT_SNIFF_BYTES).read_to_end(&mut head).is_err() {
        return false;
    }
    let text = match head.iter().position(|b| *b == 0) {
        Some(i) => &head[..i],
        None => &head[..],
    };
    text.windows(b"<VRTDataset".len())
        .any(|w| w == b"<VRTDataset")
}

/// Which driver set opens `path`: `Ok(true)` for a VRT that passed [`check_vrt`],
/// `Ok(false)` for [`ALLOWED`], else why not.
pub fn vet(path: &str) -> Result<bool, Refusal> {
    check_path(path)?;
    let p = Path::new(path);
    let driver = identify(path, None);
    if driver.as_deref() == Some(VRT) || (p.is_file() && looks_like_vrt(p)) {
        let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut seen = BTreeSet::new();
        check_vrt(p, &dir, 0, &mut seen)?;
        return Ok(true);
    }
    if let Some(d) = driver {
        if !ALLOWED.contains(&d.as_str()) {
            return Err(Refusal(format!(
                "refused: GDAL recognises the file as {d}, which is not a format results come in"
            )));
        }
    }
    Ok(false)
}

/// Checks a VRT file: see the module documentation. `dir` is the job folder.
pub fn check_vrt(
    vrt: &Path,
    dir: &Path,
    depth: usize,
    seen: &mut BTreeSet<PathBuf>,
) -> Result<(), Refusal> {
    let name = vrt.display().to_string();
    if depth > MAX_VRT_DEPTH {
        return Err(Refusal(format!(
            "refused: VRTs nested deeper than {MAX_VRT_DEPTH} ({name})"
        )));
    }
    if !seen.insert(vrt.to_path_buf()) {
        return Err(Refusal(format!(
            "refused: the VRT {name} references itself"
        )));
    }
    let c_path = CString::new(vrt.as_os_str().to_string_lossy().as_bytes())
        .map_err(|_| Refusal(format!("refused: {name}: bad file name")))?;
    // SAFETY: a valid C string; the tree is freed below.
    let root = unsafe { gdal_sys::CPLParseXMLFile(c_path.as_ptr()) };
    if root.is_null() {
        return Err(Refusal(format!(
            "refused: the VRT {name} is not XML GDAL can parse"
        )));
    }
    let mut sources = Vec::new();
    // SAFETY: `root` is the valid tree GDAL just returned, read-only until destroyed.
    let checked = unsafe { walk(root, &mut sources) };
    // SAFETY: destroying the tree GDAL allocated, once.
    unsafe { gdal_sys::CPLDestroyXMLNode(root) };
    checked.map_err(|why| Refusal(format!("refused: the VRT {name} {why}")))?;
    for source in sources {
        let path = dir.join(&source);
        let shown = path.display().to_string();
        check_path(&shown).map_err(|Refusal(why)| {
            Refusal(format!(
                "refused: the VRT {name} has a source that is {why}"
            ))
        })?;
        if !path.is_file() {
            return Err(Refusal(format!(
                "refused: the VRT {name} has a source {source:?} that is not a file of the job folder"
            )));
        }
        let driver = identify(&shown, None);
        if driver.as_deref() == Some(VRT) || looks_like_vrt(&path) {
            check_vrt(&path, dir, depth + 1, seen)?;
        } else if let Some(d) = driver {
            if !ALLOWED.contains(&d.as_str()) {
                return Err(Refusal(format!(
                    "refused: the VRT {name} has a source {source:?} that GDAL reads as {d}"
                )));
            }
        } else {
            return Err(Refusal(format!(
                "refused: the VRT {name} has a source {source:?} that GDAL does not recognise"
            )));
        }
    }
    Ok(())
}

/// A source name a VRT may use: a plain file name of the same folder.
fn plain_file_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && !s
            .chars()
            .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
}

/// Attribute `name` of element `node` (case-insensitive, as GDAL reads them).
///
/// # Safety
/// `node` must be a valid element of a live tree.
unsafe fn attribute(node: *const gdal_sys::CPLXMLNode, name: &str) -> Option<String> {
    let mut child = (*node).psChild;
    while !child.is_null() {
        if (*child).eType == gdal_sys::CPLXMLNodeType::CXT_Attribute
            && value(child).eq_ignore_ascii_case(name)
        {
            return Some(text(child));
        }
        child = (*child).psNext;
    }
    None
}

/// The node's own value (element or attribute name, or text).
///
/// # Safety
/// `node` must be valid.
unsafe fn value(node: *const gdal_sys::CPLXMLNode) -> String {
    if (*node).pszValue.is_null() {
        return String::new();
    }
    CStr::from_ptr((*node).pszValue)
        .to_string_lossy()
        .into_owned()
}

/// The text children of a node, concatenated; `None` for several (refused: GDAL reads
/// only the first).
///
/// # Safety
/// `node` must be valid.
unsafe fn text_children(node: *const gdal_sys::CPLXMLNode) -> Option<String> {
    let mut out = Vec::new();
    let mut child = (*node).psChild;
    while !child.is_null() {
        if (*child).eType == gdal_sys::CPLXMLNodeType::CXT_Text {
            out.push(value(child));
        }
        child = (*child).psNext;
    }
    match out.len() {
        0 => Some(String::new()),
        1 => out.pop(),
        _ => None,
    }
}

/// The text of an attribute node.
///
/// # Safety
/// `node` must be a valid attribute.
unsafe fn text(node: *const gdal_sys::CPLXMLNode) -> String {
    text_children(node).unwrap_or_default()
}

/// Walks the whole tree: collects source file names, refuses what must not be there.
///
/// # Safety
/// `node` must be the root of a valid tree.
unsafe fn walk(node: *const gdal_sys::CPLXMLNode, sources: &mut Vec<String>) -> Result<(), String> {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.is_null() {
            continue;
        }
        stack.push((*n).psNext);
        if (*n).eType != gdal_sys::CPLXMLNodeType::CXT_Element {
            continue;
        }
        stack.push((*n).psChild);
        let element = value(n);
        let e = element.to_ascii_lowercase();
        if let Some(sub) = attribute(n, "subClass") {
            if sub.trim().eq_ignore_ascii_case("VRTRawRasterBand") {
                return Err("has a raw-raster band (reads raw bytes of any file)".into());
            }
        }
        match e.as_str() {
            "sourcefilename" | "sourcedataset" => {
                let name = text_children(n)
                    .ok_or_else(|| format!("has a {element} with mixed content"))?
                    .trim()
                    .to_string();
                if !plain_file_name(&name) {
                    return Err(format!(
                        "has a source {name:?} that is not a plain file name of the job folder"
                    ));
                }
                let relative = attribute(n, "relativeToVRT")
                    .map(|v| v.trim() == "1")
                    .unwrap_or(false);
                if !relative {
                    return Err(format!(
                        "has a source {name:?} that is not relative to the VRT (relativeToVRT=\"1\")"
                    ));
                }
                sources.push(name);
            }
            "imageoffset" | "pixeloffset" | "lineoffset" => {
                return Err("has a raw-raster band (reads raw bytes of any file)".into());
            }
            "pixelfunctioncode" => {
                return Err("carries pixel-function code".into());
            }
            "pixelfunctionlanguage" => {
                return Err("names a pixel-function language".into());
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert!(plain_file_name("openEO.tif"));
        for bad in [
            "",
            "..",
            "../x.tif",
            "/etc/passwd",
            "a/b.tif",
            "a\\b.tif",
            ".hidden",
            "NETCDF:x.nc:v",
            "/vsicurl/http://x",
        ] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for bad in [
            "/vsicurl/http://127.0.0.1/x.tif",
            "/VSIZIP/a.zip/x.tif",
            "http://x/y.tif",
            "NETCDF:\"x.nc\":v",
            "GTIFF_DIR:1:x.tif",
            "<VRTDataset/>",
            "does-not-exist.tif",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
