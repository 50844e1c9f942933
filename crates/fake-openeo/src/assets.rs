//! Result files: their content ([`Content`]: in memory, generated on the fly, or from disk),
//! URL signing (`md5(job_id + user + filename + expires + secret)`, as openeo-python-driver),
//! and serving with `HEAD`, `Accept-Ranges`, `Range` (206 / 416), a strong `ETag` and `If-Range`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest as _, Md5};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::AssetSource;
use crate::error::ApiError;
use crate::geotiff::Grid;
use crate::process::Format;
use crate::state::{Job, Shared};

/// Chunk size of streamed bodies.
const CHUNK: usize = 64 * 1024;

/// The bytes of one result file.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    Memory(Arc<Vec<u8>>),
    Generated {
        seed: u64,
        size: u64,
    },
    File {
        path: PathBuf,
        size: u64,
        modified: u64,
    },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Memory(v) => v.len() as u64,
            Content::Generated { size, .. } | Content::File { size, .. } => *size,
        }
    }

    /// A strong validator: changes whenever the bytes can change.
    pub fn etag(&self, job_id: &str, file: &str) -> String {
        let mut h = Sha256::new();
        h.update(job_id.as_bytes());
        h.update(b"/");
        h.update(file.as_bytes());
        match self {
            Content::Memory(v) => h.update(v.as_slice()),
            Content::Generated { seed, size } => {
                h.update(seed.to_le_bytes());
                h.update(size.to_le_bytes());
            }
            Content::File {
                path,
                size,
                modified,
            } => {
                h.update(path.to_string_lossy().as_bytes());
                h.update(size.to_le_bytes());
                h.update(modified.to_le_bytes());
            }
        }
        format!("\"{}\"", hex(&h.finalize()[..16]))
    }

    /// The bytes `start..=end` as a streamed body.
    fn body(&self, start: u64, end: u64, bytes_per_sec: Option<u64>) -> Body {
        let len = end + 1 - start;
        if let Some(rate) = bytes_per_sec.filter(|r| *r > 0) {
            // Throttled: the same bytes, a chunk at a time with a pause after each.
            let inner = self.body(start, end, None).into_data_stream();
            let stream = inner.then(move |chunk| async move {
                if let Ok(c) = &chunk {
                    let secs = c.len() as f64 / rate as f64;
                    tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
                }
                chunk
            });
            return Body::from_stream(stream);
        }
        match self {
            Content::Memory(v) => {
                Body::from(Bytes::copy_from_slice(&v[start as usize..=end as usize]))
            }
            Content::Generated { seed, .. } => {
                let seed = *seed;
                let stream = futures_util::stream::unfold(start, move |pos| async move {
                    if pos > end {
                        return None;
                    }
                    let n = ((end + 1 - pos) as usize).min(CHUNK);
                    let mut buf = vec![0u8; n];
                    fill_generated(seed, pos, &mut buf);
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), pos + n as u64))
                });
                Body::from_stream(stream)
            }
            Content::File { path, .. } => {
                let path = path.clone();
                let stream = futures_util::stream::unfold(
                    (None::<tokio::fs::File>, len, path),
                    move |(file, remaining, path)| async move {
                        if remaining == 0 {
                            return None;
                        }
                        let mut file = match file {
                            Some(f) => f,
                            None => {
                                let opened = async {
                                    let mut f = tokio::fs::File::open(&path).await?;
                                    f.seek(std::io::SeekFrom::Start(start)).await?;
                                    Ok::<_, std::io::Error>(f)
                                }
                                .await;
                                match opened {
                                    Ok(f) => f,
                                    Err(e) => return Some((Err(e), (None, 0, path))),
                                }
                            }
                        };
                        let mut buf = vec![0u8; (remaining as usize).min(CHUNK)];
                        match file.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(n) => {
                                buf.truncate(n);
                                Some((
                                    Ok(Bytes::from(buf)),
                                    (Some(file), remaining - n as u64, path),
                                ))
                            }
                            Err(e) => Some((Err(e), (None, 0, path))),
                        }
                    },
                );
                Body::from_stream(stream)
            }
        }
    }

    /// `file:checksum` value: multihash sha2-256, hex (`1220` + digest).
    pub fn checksum(&self) -> std::io::Result<String> {
        let mut h = Sha256::new();
        match self {
            Content::Memory(v) => h.update(v.as_slice()),
            Content::Generated { seed, size } => {
                let mut buf = vec![0u8; CHUNK];
                let mut pos = 0;
                while pos < *size {
                    let n = ((*size - pos) as usize).min(CHUNK);
                    fill_generated(*seed, pos, &mut buf[..n]);
                    h.update(&buf[..n]);
                    pos += n as u64;
                }
            }
            Content::File { path, .. } => {
                use std::io::Read;
                let mut f = std::fs::File::open(path)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
        Ok(format!("1220{}", hex(&h.finalize())))
    }
}

/// Deterministic bytes: byte `pos` of the stream keyed by `seed` (8 bytes per hash).
pub(crate) fn fill_generated(seed: u64, pos: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let p = pos + i as u64;
        let word = splitmix(seed ^ (p / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
        let off = (p % 8) as usize;
        let n = (8 - off).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[off..off + n]);
        i += n;
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable seed for a job's file.
pub(crate) fn seed(job_id: &str, file: &str) -> u64 {
    let d = Sha256::digest(format!("{job_id}/{file}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// The content of `file` of `job` (cached in the job when generated in memory).
pub(crate) fn content_of(shared: &Shared, job: &mut Job, file: &str) -> Result<Content, ApiError> {
    let source = shared
        .config
        .assets
        .get(file)
        .cloned()
        .unwrap_or_else(|| AssetSource::default_for(file));
    let seed = seed(&job.id, file);
    let memory = |job: &mut Job, make: fn(&Job, u64) -> Vec<u8>| {
        if let Some(bytes) = job.content_cache.get(file) {
            return Content::Memory(bytes.clone());
        }
        let made = Arc::new(make(job, seed));
        job.content_cache.insert(file.to_string(), made.clone());
        Content::Memory(made)
    };
    Ok(match source {
        AssetSource::Generated { size } => Content::Generated { seed, size },
        AssetSource::GeoTiff => memory(job, |j, seed| {
            crate::geotiff::write(&Grid::for_bbox(j.info.bbox), seed)
        }),
        AssetSource::GroundTiff { pixel } => match job.content_cache.get(file) {
            Some(bytes) => Content::Memory(bytes.clone()),
            None => {
                let made = Arc::new(crate::geotiff::write_ground(&Grid::for_bbox_at(
                    job.info.bbox,
                    pixel,
                )));
                job.content_cache.insert(file.to_string(), made.clone());
                Content::Memory(made)
            }
        },
        AssetSource::NetCdf => memory(job, |j, seed| {
            crate::netcdf::write(&Grid::for_bbox(j.info.bbox), seed, days_since_1990(j))
        }),
        AssetSource::GeoJson => memory(job, |j, seed| geojson(j.info.bbox, seed)),
        AssetSource::Json => memory(job, |j, _| {
            serde_json::to_vec_pretty(&json!({
                "job_id": j.id,
                "bbox": j.info.bbox,
                "values": [0.12, 0.34, 0.56, 0.78],
            }))
            .unwrap_or_default()
        }),
        AssetSource::File(path) => {
            let meta = std::fs::metadata(&path).map_err(|e| {
                ApiError::new(
                    500,
                    "Internal",
                    format!("Asset file {} is not readable: {e}", path.display()),
                )
            })?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            Content::File {
                path,
                size: meta.len(),
                modified,
            }
        }
    })
}

/// The netCDF time coordinate: start of the job's temporal extent, days since 1990-01-01.
fn days_since_1990(job: &Job) -> f64 {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    job.info.temporal[0]
        .as_deref()
        .and_then(|s| s.get(..10))
        .and_then(|d| time::Date::parse(d, &fmt).ok())
        .map(|d| f64::from((d - time::macros::date!(1990 - 01 - 01)).whole_days() as i32))
        .unwrap_or(0.0)
}

/// A FeatureCollection of a few "detected" rectangles inside `bbox`.
fn geojson(bbox: [f64; 4], seed: u64) -> Vec<u8> {
    let [w, s, e, n] = bbox;
    let features: Vec<_> = (0..3)
        .map(|i| {
            let f = (seed.rotate_left(i * 7) % 60) as f64 / 100.0 + 0.1;
            let x0 = w + (e - w) * f;
            let y0 = s + (n - s) * (0.8 - f / 2.0);
            let dx = (e - w) * 0.08;
            let dy = (n - s) * 0.08;
            json!({
                "type": "Feature",
                "id": i,
                "properties": {"class": "pv_farm", "area_m2": 12000 + i * 850},
                "geometry": {"type": "Polygon", "coordinates": [[
                    [x0, y0], [x0 + dx, y0], [x0 + dx, y0 + dy], [x0, y0 + dy], [x0, y0]
                ]]}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features}))
        .unwrap_or_default()
}

/// The signature of a link to `file` (empty for the results document itself).
pub(crate) fn signature(
    secret: &str,
    job_id: &str,
    user: &str,
    file: &str,
    expires: u64,
) -> String {
    let mut h = Md5::new();
    h.update(job_id.as_bytes());
    h.update(user.as_bytes());
    h.update(file.as_bytes());
    h.update(expires.to_string().as_bytes());
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

pub(crate) fn encode_user(user: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user.as_bytes())
}

pub(crate) fn decode_user(b64: &str) -> Option<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
}

/// Checks a signed link; `Ok(user)` if it is valid now.
pub(crate) fn verify(
    shared: &Shared,
    job_id: &str,
    user_b64: &str,
    sig: &str,
    file: &str,
    expires: Option<u64>,
) -> Result<String, ApiError> {
    let bad = || ApiError::new(403, "CredentialsInvalid", "The signed URL is invalid.");
    let user = decode_user(user_b64).ok_or_else(bad)?;
    let expires = expires.ok_or_else(bad)?;
    let expected = signature(&shared.config.signing_secret, job_id, &user, file, expires);
    if !expected.eq_ignore_ascii_case(sig) {
        return Err(bad());
    }
    if crate::state::now() >= expires as f64 {
        return Err(ApiError::new(
            410,
            "ResultLinkExpired",
            "The link to the batch job result has expired. Please request the results again.",
        ));
    }
    Ok(user)
}

/// Answers a GET or HEAD for an asset, honouring `Range` and `If-Range`.
pub(crate) fn serve(
    shared: &Shared,
    content: &Content,
    job_id: &str,
    file: &str,
    last_modified: f64,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let size = content.len();
    let etag = content.etag(job_id, file);
    let last_modified = httpdate(last_modified);
    let ranges = shared.config.ranges_supported;

    let mut range: Option<(u64, u64)> = None;
    if ranges {
        if let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            let if_range_ok = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
                None => true,
                Some(v) if v.starts_with('"') => v == etag,
                Some(v) => v == last_modified,
            };
            if if_range_ok {
                match parse_range(spec, size) {
                    RangeSpec::Full => {}
                    RangeSpec::Partial(a, b) => range = Some((a, b)),
                    RangeSpec::Unsatisfiable => {
                        let mut r = ApiError::new(
                            416,
                            "RangeNotSatisfiable",
                            format!("Range '{spec}' cannot be satisfied (size {size})."),
                        )
                        .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"));
                        r.headers
                            .push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
                        return axum::response::IntoResponse::into_response(r);
                    }
                }
            }
        }
    }

    let media = Format::of_file(file)
        .map(Format::media_type)
        .unwrap_or("application/octet-stream");
    let (status, start, end) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let length = if size == 0 { 0 } else { end + 1 - start };
    let body = if *method == Method::HEAD || size == 0 {
        Body::empty()
    } else {
        content.body(start, end, shared.config.asset_bytes_per_sec)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(media));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ETAG, hv(&etag));
    h.insert(header::LAST_MODIFIED, hv(&last_modified));
    h.insert(
        header::CONTENT_DISPOSITION,
        hv(&format!("attachment; filename=\"{file}\"")),
    );
    if ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if range.is_some() {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {start}-{end}/{size}")),
        );
    }
    response
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

enum RangeSpec {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range; several ranges are answered with the full body.
fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsatisfiable;
    };
    if set.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last b bytes.
        return match b.parse::<u64>() {
            Ok(0) | Err(_) => RangeSpec::Unsatisfiable,
            Ok(_) if size == 0 => RangeSpec::Unsatisfiable,
            Ok(n) => RangeSpec::Partial(size.saturating_sub(n), size - 1),
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Unsatisfiable;
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size - 1),
            _ => return RangeSpec::Unsatisfiable,
        }
    };
    RangeSpec::Partial(start, end)
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(epoch: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch.floor() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_is_positional() {
        let mut all = vec![0u8; 100];
        fill_generated(7, 0, &mut all);
        let mut part = vec![0u8; 30];
        fill_generated(7, 37, &mut part);
        assert_eq!(&all[37..67], &part[..]);
    }

    #[test]
    fn ranges() {
        assert!(matches!(
            parse_range("bytes=0-9", 100),
            RangeSpec::Partial(0, 9)
        ));
        assert!(matches!(
            parse_range("bytes=90-", 100),
            RangeSpec::Partial(90, 99)
        ));
        assert!(matches!(
            parse_range("bytes=-10", 100),
            RangeSpec::Partial(90, 99)
        ));
        assert!(matches!(
            parse_range("bytes=50-500", 100),
            RangeSpec::Partial(50, 99)
        ));
        assert!(matches!(
            parse_range("bytes=100-", 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(
            parse_range("items=0-1", 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Full));
        assert_eq!(httpdate(784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
