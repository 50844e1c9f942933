//! `/files/{uuid}/{name}` (*ext*): the files of published job folders, without a token.
//!
//! The job's random UUID is the capability (docs/security.md, "Local API"), so
//! that scripts written for the hosted APEx API (`rasterio.open(href)`,
//! `requests.get(href)`) and GDAL's `/vsicurl/` read results with no header. Only
//! regular files directly inside the folder of a job whose results are `ready` are
//! served: no listing, no subfolders, no hidden files, no symbolic links, and the name
//! must be one that [`crate::results::names::sanitise`] leaves unchanged, so `..` and
//! separators never reach the file system. `GET` and `HEAD`; one byte range (`206`,
//! `416` with `bytes */N`), a strong `ETag`, `If-Range`, `Last-Modified`,
//! `If-None-Match` / `If-Modified-Since` (`304`), a `Content-Type` from the extension;
//! bodies are streamed from the file.
//!
//! The HTTP part is ours rather than `tower-http`'s `ServeFile`: that service has no
//! `ETag`, so neither `If-Range` with one (a download resumed after the file changed
//! would splice two files) nor `If-None-Match`; it answers several ranges, an unknown
//! unit or a suffix longer than the file with `416` where HTTP says to send the whole
//! file, `bytes=0-` on an empty file with a `206` of `bytes 0-0/0`, writes its `416` in
//! plain text instead of our problem shape, and opens the path again itself. Wrapping
//! it to fix all that would be longer than the few lines below.

use std::path::Path;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use uuid::Uuid;

use super::extract::Segments;
use super::problem::{Problem, ProblemBody};
use crate::app::App;
use crate::job::ResultsState;
use crate::results::names;

fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "FileNotFound",
        "No such file",
        "there is no such file among the published results",
    )
}

/// The media type of a result file, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = names::split_ext(name).1.to_ascii_lowercase();
    match ext.as_str() {
        ".tif" | ".tiff" => "image/tiff; application=geotiff",
        ".nc" => "application/netcdf",
        ".geojson" => "application/geo+json",
        ".json" => "application/json",
        ".gpkg" => "application/geopackage+sqlite3",
        ".parquet" => "application/vnd.apache.parquet",
        ".csv" => "text/csv",
        ".txt" => "text/plain; charset=utf-8",
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".zip" => "application/zip",
        ".xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

/// A file of a published job folder (*ext*; no token: the job UUID is the
/// capability). Supports `HEAD` and one `Range`.
#[utoipa::path(get, path = "/files/{uuid}/{name}", tag = "unit jobs",
    security(()),
    params(("uuid" = String, Path, description = "The job's UUID"),
           ("name" = String, Path, description = "File name in the job folder"),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023")),
    responses(
        (status = 200, description = "The file"),
        (status = 206, description = "The asked range"),
        (status = 404, description = "No such published file", body = ProblemBody, content_type = "application/problem+json"),
        (status = 416, description = "Range not satisfiable", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn file(
    State(d): State<App>,
    Segments((uuid, name)): Segments<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let uuid = Uuid::parse_str(&uuid).map_err(|_| not_found())?;
    if names::sanitise(&name) != name {
        return Err(not_found());
    }
    let job = d.store().job_by_uuid(uuid).await?.ok_or_else(not_found)?;
    let dir = match (&job.results.state, &job.results.dir) {
        (ResultsState::Ready, Some(dir)) => dir.clone(),
        _ => return Err(not_found()),
    };
    let path = Path::new(&dir).join(&name);
    let meta = tokio::fs::symlink_metadata(&path)
        .await
        .map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("\"{:x}-{:x}\"", size, mtime.as_nanos());
    let last_modified = time::OffsetDateTime::from_unix_timestamp(mtime.as_secs() as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ))
            .ok()
        })
        .unwrap_or_default();

    if not_modified(&headers, &etag, mtime.as_secs()) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        validators(resp.headers_mut(), &etag, &last_modified);
        return Ok(resp);
    }
    let range_wanted = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(
            |_| match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
                None => true,
                Some(v) => v == etag || v == last_modified,
            },
        );
    let range = match range_wanted.map(|r| parse_range(r, size)) {
        None | Some(RangeSpec::Full) => None,
        Some(RangeSpec::Partial(a, b)) => Some((a, b)),
        Some(RangeSpec::Unsatisfiable) => {
            let mut resp = Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RangeNotSatisfiable",
                "Range not satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(resp);
        }
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1 - a),
        None => (StatusCode::OK, 0, size),
    };
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|_| not_found())?;
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Problem::internal(&e))?;
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            256 * 1024,
        ))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    validators(h, &etag, &last_modified);
    if let Some((a, b)) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// `ETag`, `Last-Modified` and `Cache-Control` of a file's answer (`200`, `206`, `304`).
fn validators(h: &mut HeaderMap, etag: &str, last_modified: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    // Results do not change once published; let GDAL and QGIS cache them.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
}

/// Whether the client's copy is current (`304`): `If-None-Match` names the file's
/// `etag` (or is `*`; weak tags compare by their opaque part), or, without
/// `If-None-Match`, the file was not modified after `If-Modified-Since`. `mtime` is
/// in seconds since 1970; a date in another form than the one we send is ignored.
pub fn not_modified(headers: &HeaderMap, etag: &str, mtime: u64) -> bool {
    let header = |name| {
        let values = headers.get_all(name).iter();
        let text: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
        (!text.is_empty()).then(|| text.join(","))
    };
    if let Some(tags) = header(header::IF_NONE_MATCH) {
        return tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    }
    let Some(since) = header(header::IF_MODIFIED_SINCE) else {
        return false;
    };
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(since.trim(), format)
        .ok()
        .is_some_and(|t| {
            let since = t.assume_utc().unix_timestamp();
            i64::try_from(mtime).is_ok_and(|m| m <= since)
        })
}

/// A parsed `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve the whole file (several ranges, or an unparsable header in another unit).
    Full,
    /// Bytes `a..=b`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range against a file of `size` bytes.
pub fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if set.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(n) if n > 0 && size > 0 => RangeSpec::Partial(size.saturating_sub(n), size - 1),
            _ => RangeSpec::Unsatisfiable,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Partial(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeSpec::Partial(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), RangeSpec::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Full);
    }

    #[test]
    fn conditions() {
        let etag = "\"2a-17\"";
        let mtime = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
        let h = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(k.clone(), HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert!(!not_modified(&h(&[]), etag, mtime));
        let inm = header::IF_NONE_MATCH;
        assert!(not_modified(&h(&[(inm.clone(), etag)]), etag, mtime));
        assert!(not_modified(
            &h(&[(inm.clone(), "W/\"2a-17\"")]),
            etag,
            mtime
        ));
        assert!(not_modified(
            &h(&[(inm.clone(), "\"x\", \"2a-17\"")]),
            etag,
            mtime
        ));
        assert!(not_modified(
            &h(&[(inm.clone(), "\"x\""), (inm.clone(), etag)]),
            etag,
            mtime
        ));
        assert!(not_modified(&h(&[(inm.clone(), "*")]), etag, mtime));
        assert!(!not_modified(&h(&[(inm.clone(), "\"x\"")]), etag, mtime));
        let ims = header::IF_MODIFIED_SINCE;
        let at = "Tue, 14 Nov 2023 22:13:20 GMT";
        let before = "Tue, 14 Nov 2023 22:13:19 GMT";
        assert!(not_modified(&h(&[(ims.clone(), at)]), etag, mtime));
        assert!(!not_modified(&h(&[(ims.clone(), before)]), etag, mtime));
        assert!(!not_modified(
            &h(&[(ims.clone(), "Tuesday, 14-Nov-23 22:13:20 GMT")]),
            etag,
            mtime
        ));
        // If-None-Match decides when both are there.
        assert!(!not_modified(&h(&[(inm, "\"x\""), (ims, at)]), etag, mtime));
    }

    #[test]
    fn types() {
        assert_eq!(content_type("a.TIF"), "image/tiff; application=geotiff");
        assert_eq!(content_type("a.nc"), "application/netcdf");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
