//! Opening SQLite connections with the store's pragmas, the start-up integrity check,
//! and the embedded, append-only schema migrations (tracked with `PRAGMA user_version`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;

/// The migrations, in order: `(version, sql)`. Append-only: never edit or reorder a
/// released entry; add `NNNN_name.sql` with the next version instead.
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_idempotency_keys.sql")),
    (3, include_str!("migrations/0003_backend_logins.sql")),
    (4, include_str!("migrations/0004_submit_started.sql")),
    (5, include_str!("migrations/0005_task_mosaic.sql")),
    (6, include_str!("migrations/0006_costs.sql")),
];

/// The newest schema version this binary knows (`PRAGMA user_version` after all
/// migrations). A database with a higher version is refused ([`StoreError::TooNew`]).
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// `PRAGMA application_id` of our databases ('EODS'), set by migration 1.
pub(super) const APPLICATION_ID: i64 = 0x454F_4453;

/// How long a connection waits for a lock held by another connection.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Prepared statements cached per connection (`prepare_cached`).
const STATEMENT_CACHE: usize = 64;

/// Maps an error met while opening `path`: "not a database" means a damaged or
/// foreign file, anything else is an open error.
fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Opens the writer connection: creates the file if needed, switches it to WAL, sets
/// the pragmas, runs `PRAGMA quick_check` and the migrations.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let err = open_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    set_pragmas(&conn).map_err(&err)?;
    quick_check(&conn, path)?;
    migrate(&mut conn, path)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opens a read-only connection for the reader pool (the writer has created the file
/// and put it in WAL mode already).
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let err = open_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    set_pragmas(&conn).map_err(&err)?;
    conn.pragma_update(None, "query_only", true).map_err(&err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The per-connection pragmas (journal_mode is per file and set by the writer).
fn set_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// `PRAGMA quick_check` must answer a single `ok`.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = open_error(path);
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(&err)?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        let mut detail = lines.into_iter().take(5).collect::<Vec<_>>().join("; ");
        if detail.is_empty() {
            detail = String::from("quick_check returned nothing");
        }
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        })
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Refuses a database that is not ours or is newer than this binary.
fn check_identity(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let err = open_error(path);
    let version = user_version(conn).map_err(&err)?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(&err)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(&err)?;
    let ours = app_id == APPLICATION_ID || (app_id == 0 && version == 0 && objects == 0);
    if !ours {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    if version > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Applies every migration newer than the database, each in its own
/// `BEGIN IMMEDIATE` transaction that also sets `user_version`. Safe against another
/// process migrating the same file at the same time (the version is read again inside
/// the transaction).
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current = check_identity(conn, path)?;
    for &(version, sql) in MIGRATIONS {
        if i64::from(version) <= current {
            continue;
        }
        let failed = |source: rusqlite::Error| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Someone else may have migrated while we waited for the lock.
        let now = check_identity(&tx, path)?;
        if now >= i64::from(version) {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(path = %path.display(), version, "job store migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one() {
        for (i, (version, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                *version as usize,
                i + 1,
                "migration versions must be 1, 2, 3..."
            );
            assert!(!sql.trim().is_empty());
        }
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }

    #[test]
    fn migrations_apply_to_an_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), i64::from(SCHEMA_VERSION));
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        // Running again is a no-op.
        migrate(&mut conn, &path).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for t in ["meta", "unit_jobs", "upscale_tasks"] {
            assert!(
                tables.iter().any(|n| n == t),
                "missing table {t}: {tables:?}"
            );
        }
    }
}
