//! The answer of a synchronous execution, kept in the job's staging folder until its
//! results are delivered: `results_dir/.incoming/<uuid>/answer/body` and `meta.json`
//! (media type). Written completely (temporary file, fsync, rename) before the job is
//! marked finished, so a crash never leaves a half answer that looks whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use uuid::Uuid;

use super::publish::INCOMING;
use crate::platform::Payload;

/// The folder of a job's kept answer.
pub fn dir(results_dir: &Path, uuid: Uuid) -> PathBuf {
    results_dir
        .join(INCOMING)
        .join(uuid.hyphenated().to_string())
        .join("answer")
}

/// Keeps `answer` for the job `uuid`.
pub fn save(results_dir: &Path, uuid: Uuid, answer: &Payload) -> std::io::Result<()> {
    let dir = dir(results_dir, uuid);
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir.join("body"), &answer.body)?;
    let meta = json!({"media_type": answer.media_type});
    write_atomic(&dir.join("meta.json"), meta.to_string().as_bytes())?;
    Ok(())
}

/// The kept answer of the job whose staging folder is `staging`, if any.
pub fn read(staging: &Path) -> Option<Payload> {
    let dir = staging.join("answer");
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let body = std::fs::read(dir.join("body")).ok()?;
    Some(Payload {
        media_type: meta["media_type"].as_str().map(str::to_string),
        body,
    })
}

/// Whether job `uuid` has a kept answer.
pub fn is_kept(results_dir: &Path, uuid: Uuid) -> bool {
    dir(results_dir, uuid).parent().and_then(read).is_some()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let uuid = Uuid::new_v4();
        let answer = Payload {
            media_type: Some("application/geo+json".into()),
            body: br#"{"type":"FeatureCollection","features":[]}"#.to_vec(),
        };
        save(root.path(), uuid, &answer).unwrap();
        let staging = root
            .path()
            .join(INCOMING)
            .join(uuid.hyphenated().to_string());
        assert_eq!(read(&staging), Some(answer));
        assert!(is_kept(root.path(), uuid));
        assert!(!is_kept(root.path(), Uuid::new_v4()));
        assert_eq!(read(&root.path().join("nothing")), None);
    }
}
