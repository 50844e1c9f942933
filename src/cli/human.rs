//! Small helpers that turn API values into text for people: ages ("5m ago"), byte
//! counts ("1.4 MB"), the host of a backend URL, timestamps in UTC, percentages.

use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::job::rfc3339_z;

/// How long ago `then` was, seen at `now`: `just now`, `42s ago`, `5m ago`, `3h ago`,
/// `6d ago`, and the date (`2026-11-25`) from a week on. A time in the future (a clock
/// that is off) reads `just now`.
pub fn age(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - then).whole_seconds();
    match secs {
        s if s < 5 => "just now".to_string(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s if s < 7 * 86_400 => format!("{}d ago", s / 86_400),
        _ => date(then),
    }
}

/// [`age`] of an RFC 3339 timestamp as sent by the API; the text itself when it does
/// not parse, `-` when there is none.
pub fn age_of(timestamp: Option<&str>, now: OffsetDateTime) -> String {
    match timestamp {
        None => "-".to_string(),
        Some(s) => match rfc3339_z::parse(s) {
            Ok(t) => age(t, now),
            Err(_) => s.to_string(),
        },
    }
}

/// The calendar date of `t` in UTC, `YYYY-MM-DD`.
pub fn date(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// An RFC 3339 timestamp for people: `2026-11-25 16:25:09 UTC (5m ago)`; the text
/// itself when it does not parse.
pub fn timestamp(s: &str, now: OffsetDateTime) -> String {
    match rfc3339_z::parse(s) {
        Ok(t) => {
            let when = t
                .to_offset(UtcOffset::UTC)
                .format(format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]"
                ))
                .unwrap_or_else(|_| s.to_string());
            format!("{when} UTC ({})", age(t, now))
        }
        Err(_) => s.to_string(),
    }
}

/// A byte count in decimal units: `0 B`, `980 B`, `1.4 kB`, `23.0 MB`, `1.2 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A progress value in percent: `42%`, `99.5%`; `-` when unknown.
pub fn percent(p: Option<f64>) -> String {
    match p {
        None => "-".to_string(),
        Some(p) if p.fract() == 0.0 => format!("{p:.0}%"),
        Some(p) => format!("{p:.1}%"),
    }
}

/// The host (and port, when one is given) of a backend URL:
/// `https://openeo.vito.be/openeo/1.2` → `openeo.vito.be`. The text itself when it is
/// not a URL.
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ages() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        let ago = |s: i64| age(now - time::Duration::seconds(s), now);
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(-30), "just now");
        assert_eq!(ago(42), "42s ago");
        assert_eq!(ago(5 * 60 + 59), "5m ago");
        assert_eq!(ago(3 * 3600), "3h ago");
        assert_eq!(ago(6 * 86_400), "6d ago");
        assert_eq!(ago(30 * 86_400), "2026-10-26");
        assert_eq!(age_of(Some("2026-11-25T15:55:00.000Z"), now), "5m ago");
        assert_eq!(age_of(Some("2026-11-25T16:55:00+01:00"), now), "5m ago");
        assert_eq!(age_of(Some("yesterday"), now), "yesterday");
        assert_eq!(age_of(None, now), "-");
    }

    #[test]
    fn timestamps() {
        let now = datetime!(2026-11-25 16:00:00 UTC);
        assert_eq!(
            timestamp("2026-11-25T14:59:59.123Z", now),
            "2026-11-25 14:59:59 UTC (1h ago)"
        );
        assert_eq!(timestamp("nonsense", now), "nonsense");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1400), "1.4 kB");
        assert_eq!(bytes(23_000_000), "23.0 MB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(bytes(1_200_000_000), "1.2 GB");
    }

    #[test]
    fn percentages_and_hosts() {
        assert_eq!(percent(None), "-");
        assert_eq!(percent(Some(42.0)), "42%");
        assert_eq!(percent(Some(99.5)), "99.5%");
        assert_eq!(
            host_of("https://openeo.vito.be/openeo/1.2"),
            "openeo.vito.be"
        );
        assert_eq!(host_of("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(host_of("not a url"), "not a url");
    }
}
