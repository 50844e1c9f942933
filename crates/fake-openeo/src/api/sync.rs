//! `POST /result`: synchronous processing. The process graph is checked as for a batch
//! job; the answer is the file its first `save_result` produces (the same content a
//! batch job with this graph would have), with that format's media type. Each call
//! counts as a job created for the statistics of the sync route, not in `jobs_created`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::jobs::{new_job_id, parse_object};
use crate::assets::{content_of, fill_generated, Content};
use crate::auth::User;
use crate::error::ApiError;
use crate::process::{analyse, Format};
use crate::state::{now, Job, Level, Phase, Shared};

/// The largest answer the fake builds in memory.
const MAX_SYNC_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) async fn result(
    State(shared): State<Arc<Shared>>,
    user: User,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = parse_object(&body)?;
    let process = m.get("process").cloned().ok_or_else(|| {
        ApiError::new(
            400,
            "ProcessGraphMissing",
            "No process graph specified (`process` is required).",
        )
    })?;
    let info = analyse(&process, &shared.config.udp_dir)?;
    let format = info.assets.first().copied().unwrap_or(Format::GTiff);
    let t = now();
    let mut job = Job {
        id: new_job_id(),
        user: user.id.clone(),
        seq: 0,
        title: None,
        description: None,
        process,
        billing_plan: None,
        budget: None,
        log_level: Level::Info,
        extra: Default::default(),
        created: t,
        phase: Phase::Created,
        phase_at: t,
        logs: Vec::new(),
        info,
        last_plan: None,
        content_cache: HashMap::new(),
        checksum_cache: HashMap::new(),
    };
    let content = content_of(&shared, &mut job, format.file_name())?;
    if content.len() > MAX_SYNC_BYTES {
        return Err(ApiError::new(
            400,
            "ResultTooLarge",
            "The result is too large for synchronous processing: use a batch job.",
        ));
    }
    let bytes = match content {
        Content::Memory(v) => v.as_ref().clone(),
        Content::Generated { seed, size } => {
            let mut buf = vec![0u8; size as usize];
            fill_generated(seed, 0, &mut buf);
            buf
        }
        Content::File { path, .. } => tokio::fs::read(&path)
            .await
            .map_err(|e| ApiError::new(500, "Internal", format!("Asset file unreadable: {e}")))?,
    };
    Ok(([(header::CONTENT_TYPE, format.media_type())], bytes).into_response())
}
