//! Reading an HTTP answer's body with a size limit: the one loop that every client of
//! an outside system (backends, UDP hosts, catalogues, identity providers) uses, so
//! that no answer can grow the daemon's memory beyond what its caller allows.

/// The body of `resp`, or `Ok(None)` when it is larger than `limit` bytes (told by its
/// `Content-Length` before anything is read, or found while reading).
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
