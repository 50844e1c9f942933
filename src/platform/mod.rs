//! Outside platforms: openEO backends (and later OGC API Processes servers). One
//! module per outside system, plus the registry of backends in use.

pub mod backends;
pub mod openeo;
pub mod udp;

/// Removes secrets from text that may reach a log, the database or an error body:
/// URL query strings (signed links carry their signature there) and anything that
/// looks like a bearer credential after `Bearer `.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // Copy up to the end of the URL's path, drop its query.
        let start = i + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '>' || c == '<')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?[redacted]");
            }
            None => out.push_str(url),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("Bearer ") {
        let start = i + "Bearer ".len();
        result.push_str(&rest[..start]);
        result.push_str("[redacted]");
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn queries_and_bearers_are_removed() {
        let s = redact(
            "GET https://x.example/a/b.tif?expires=1&sig=SIG-SENTINEL failed; \
             header Bearer oidc/egi/AT-SENTINEL was sent to http://h/p",
        );
        assert!(!s.contains("SENTINEL"), "{s}");
        assert!(s.contains("https://x.example/a/b.tif?[redacted]"), "{s}");
        assert!(s.contains("http://h/p"), "{s}");
        assert_eq!(redact("plain words"), "plain words");
    }
}
