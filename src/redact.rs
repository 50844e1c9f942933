//! Removing secrets from text that may reach a log, the database, an error body or a
//! file: URL queries (signed links carry their signature there), user info in URLs,
//! and bearer credentials.

use reqwest::Url;

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

/// A URL fit to show: no user name, password, query or fragment. Text that does not
/// parse as a URL is cut at the first `?` or `#`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let s = u.to_string();
            // Url adds a `/` to a bare origin; show what was configured.
            if !url.ends_with('/') && u.path() == "/" {
                s.trim_end_matches('/').to_string()
            } else {
                s
            }
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// Removes every URL query (`?k=v...`, up to the next blank, quote or bracket) from
/// free text, e.g. signed `?expires=..&signature=..` links in backend messages.
pub fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '}' | '`')
            })
            .unwrap_or(after.len());
        let token = &after[..end];
        if token.contains('=') {
            rest = &after[end..];
        } else {
            out.push('?');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn urls_lose_queries_and_user_info() {
        assert_eq!(strip_queries("what? yes. a?b=c d"), "what? yes. a d");
        assert_eq!(
            redact_url("https://user:pw@h.example:8443/p/q?x=1#f"),
            "https://h.example:8443/p/q"
        );
        assert_eq!(redact_url("https://h.example"), "https://h.example");
    }
}
