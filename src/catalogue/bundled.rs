//! The APEx catalogue snapshot compiled into the daemon (`catalog/apex/`, walked by
//! `build.rs`): every JSON file by its path in the repository layout. It is the
//! catalogue served before the first refresh and whenever a source cannot be read, and
//! the offline fallback of UDP URLs ([`crate::platform::udp::BUNDLED`]).

include!(concat!(env!("OUT_DIR"), "/catalog_apex.rs"));

/// The name of the bundled snapshot as a catalogue source (`catalogues = ["bundled"]`).
pub const NAME: &str = "bundled";

/// The bundled file at `path` (relative to `catalog/apex/`).
pub fn file(path: &str) -> Option<&'static str> {
    FILES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| FILES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_snapshot_is_bundled_and_sorted() {
        let records = FILES
            .iter()
            .filter(|(p, _)| p.split('/').nth(3) == Some("records"))
            .count();
        assert_eq!(records, 70);
        let platforms = FILES
            .iter()
            .filter(|(p, _)| p.starts_with("platform_catalog/"))
            .count();
        assert_eq!(platforms, 7);
        assert!(FILES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(file("platform_catalog/gep.json").is_some());
        assert!(file("platform_catalog/nope.json").is_none());
    }
}
