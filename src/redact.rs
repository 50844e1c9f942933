//! Removing secrets from text that may reach a log, the database, an error body or a
//! file. The one place that decides what is shown of a URL, whoever shows it:
//!
//! - a URL ([`redact_url`]) loses its user name and password, its query (signed links
//!   carry their signature there, OAuth redirects their code) and its fragment;
//! - free text ([`redact`]): every URL in it is shown the same way, any other
//!   `?name=value...` (a relative link's query) is removed, and what follows `Bearer `
//!   becomes `[redacted]`;
//! - free text with known secrets ([`redact_with`]): the same, and each of those values
//!   (an access token, wherever it appears) becomes `[REDACTED]`.

use reqwest::Url;

/// What ends a URL or a query in free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '{' | '}' | '`')
}

/// Removes secrets from free text (see the module's rules): URLs without user info,
/// query or fragment, no relative `?name=value` queries, no bearer credentials.
pub fn redact(text: &str) -> String {
    redact_bearers(&strip_queries(&redact_urls(text)))
}

/// [`redact`], and every non-empty value of `secrets` replaced by `[REDACTED]`.
pub fn redact_with<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = redact(text);
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "[REDACTED]");
        }
    }
    out
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

/// Every `scheme://...` in `text` without user info, query or fragment; the rest of
/// the text as it is (no parsing: a URL in a message stays as the message wrote it).
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(ends_url).unwrap_or(tail.len());
        let url = &tail[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, after) = url.split_at(authority_end);
        let host = authority
            .rfind('@')
            .map_or(authority, |at| &authority[at + 1..]);
        out.push_str(host);
        out.push_str(&after[..after.find(['?', '#']).unwrap_or(after.len())]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Removes every `?name=value...` (up to the next blank, quote or bracket) from free
/// text; a `?` not followed by a `=` somewhere in its word is kept.
fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| ends_url(c) || matches!(c, '[' | ']'))
            .unwrap_or(after.len());
        if after[..end].contains('=') {
            rest = &after[end..];
        } else {
            out.push('?');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `Bearer <anything>` becomes `Bearer [redacted]`.
fn redact_bearers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("Bearer ") {
        let start = i + "Bearer ".len();
        out.push_str(&rest[..start]);
        out.push_str("[redacted]");
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        rest = &tail[end..];
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
        assert!(s.contains("GET https://x.example/a/b.tif failed"), "{s}");
        assert!(
            s.contains("Bearer [redacted] was sent to http://h/p"),
            "{s}"
        );
        assert_eq!(redact("plain words"), "plain words");
        assert_eq!(redact("what? yes. a?b=c d"), "what? yes. a d");
    }

    #[test]
    fn urls_in_text_are_shown_like_urls() {
        let s = redact(
            "fetch of \"https://user:PW-SENTINEL@h.example:8443/p/q?x=1#frag\" and \
             (http://[::1]:8421/files/a.tif?X-Amz-Signature=SIG-SENTINEL) and ./rel?token=T-SENTINEL",
        );
        assert!(!s.contains("SENTINEL"), "{s}");
        assert!(s.contains("\"https://h.example:8443/p/q\""), "{s}");
        assert!(s.contains("(http://[::1]:8421/files/a.tif)"), "{s}");
        assert!(s.ends_with("./rel"), "{s}");
        for url in [
            "https://user:pw@h.example:8443/p/q?x=1#f",
            "https://h.example/a.json#id",
            "http://127.0.0.1:9/x?sig=1",
        ] {
            assert_eq!(redact(url), redact_url(url), "{url}");
        }
    }

    #[test]
    fn known_secrets_are_replaced() {
        let s = redact_with(
            "token oidc/egi/AT-123 or AT-123 at https://h/x?sig=1",
            ["AT-123", ""],
        );
        assert_eq!(s, "token oidc/egi/[REDACTED] or [REDACTED] at https://h/x");
    }

    #[test]
    fn urls_lose_queries_and_user_info() {
        assert_eq!(
            redact_url("https://user:pw@h.example:8443/p/q?x=1#f"),
            "https://h.example:8443/p/q"
        );
        assert_eq!(redact_url("https://h.example"), "https://h.example");
    }
}
