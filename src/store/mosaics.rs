//! What the store keeps of an upscale task's mosaic (migration 5): the kind asked for in
//! the request, the published task folder, and what the published mosaic holds, so that
//! a restart knows whether to build it again (`results::mosaic`).

use rusqlite::{params, Connection, OptionalExtension as _};
use serde_json::Value;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::job::MosaicKind;

/// The mosaic columns of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMosaic {
    /// The task's UUID.
    pub uuid: Uuid,
    /// The kind asked for in the request (`None`: the configured one).
    pub kind: Option<MosaicKind>,
    /// The task folder, once published.
    pub results_dir: Option<String>,
    /// What the published mosaic holds (JSON written by `results::mosaic`).
    pub state: Option<Value>,
}

/// Stores the kind a task's request asked for (inside the task's insert).
pub(super) fn set_kind(
    conn: &Connection,
    task_id: i64,
    kind: MosaicKind,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE upscale_tasks SET mosaic = ?2 WHERE id = ?1")?
        .execute(params![task_id, kind.as_str()])?;
    Ok(())
}

impl Store {
    /// The mosaic columns of task `id`; `None` if there is no such task.
    pub async fn task_mosaic(&self, id: i64) -> Result<Option<TaskMosaic>, StoreError> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT uuid, mosaic, results_dir, mosaic_state FROM upscale_tasks WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()?;
            let Some((uuid, kind, results_dir, state)) = row else {
                return Ok(None);
            };
            let bad = |column: &'static str, detail: String| StoreError::BadRow {
                table: "upscale_tasks",
                column,
                id,
                detail,
            };
            Ok(Some(TaskMosaic {
                uuid: Uuid::parse_str(&uuid).map_err(|e| bad("uuid", e.to_string()))?,
                kind: match kind {
                    None => None,
                    Some(k) => Some(
                        MosaicKind::parse(&k).ok_or_else(|| bad("mosaic", format!("{k:?}")))?,
                    ),
                },
                results_dir,
                state: match state {
                    None => None,
                    Some(s) => {
                        Some(serde_json::from_str(&s).map_err(|e| bad("mosaic_state", e.to_string()))?)
                    }
                },
            }))
        })
        .await
    }

    /// Remembers the published task folder of task `id`.
    pub async fn set_task_results_dir(&self, id: i64, dir: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached("UPDATE upscale_tasks SET results_dir = ?2 WHERE id = ?1")?
                .execute(params![id, dir])?;
            Ok(())
        })
        .await
    }

    /// Remembers what the published mosaic of task `id` holds.
    pub async fn set_task_mosaic_state(&self, id: i64, state: Value) -> Result<(), StoreError> {
        let text = serde_json::to_string(&state)?;
        self.write(move |c| {
            c.prepare_cached("UPDATE upscale_tasks SET mosaic_state = ?2 WHERE id = ?1")?
                .execute(params![id, text])?;
            Ok(())
        })
        .await
    }
}
