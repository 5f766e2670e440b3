//! The central alarm index: one small SQLite file, `<root>/alarms.sqlite`,
//! with a row for every object that may have an alarm.
//!
//! The file holds *hints*, not the truth: each object's own database says
//! whether it has an alarm and when. The index only has to guarantee that an
//! object with an alarm due at `t` has a row due no later than `t`, so that
//! the scheduler wakes it in time; a row that is too early or that names an
//! object without an alarm costs one wasted look at that object's database
//! and is then corrected. `meta.complete` records that the file covers every
//! object; a file without it (new, or lost) is rebuilt by reading every object
//! database once.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::{id::ObjectId, storage::StorageError};

/// The version of the index file's schema, in `PRAGMA user_version`.
const INDEX_SCHEMA_VERSION: i64 = 1;

/// The index file's name under the storage root.
pub const INDEX_FILE: &str = "alarms.sqlite";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS object_alarms (
        object_hash TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        due_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );";

/// The open index file.
pub(super) struct IndexFile {
    conn: Connection,
}

fn index_error(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::new(format!("alarm index: failed to {what}: {e}"))
}

impl IndexFile {
    /// Opens or creates the file; the second value says whether it already
    /// covers every object.
    pub(super) fn open(root: &Path) -> Result<(Self, bool), StorageError> {
        let path = root.join(INDEX_FILE);
        let open = |e| {
            index_error(
                &format!(
                    "open `{}` (if it is damaged, delete it: it is rebuilt from the object \
                     databases at the next start)",
                    path.display()
                ),
                e,
            )
        };
        let conn = Connection::open(&path).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open)?;
        if version > INDEX_SCHEMA_VERSION {
            return Err(index_error(
                &format!("open `{}`", path.display()),
                format!("unsupported schema version {version}"),
            ));
        }
        conn.execute_batch(SCHEMA).map_err(open)?;
        conn.pragma_update(None, "user_version", INDEX_SCHEMA_VERSION)
            .map_err(open)?;
        let complete = conn
            .query_row("SELECT value FROM meta WHERE key = 'complete'", [], |row| {
                row.get::<_, String>(0)
            })
            .is_ok();
        Ok((Self { conn }, complete))
    }

    /// Every row: object and due time.
    pub(super) fn rows(&self) -> Result<Vec<(ObjectId, u64)>, StorageError> {
        let read = |e| index_error("read", e);
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, name, due_at_ms FROM object_alarms")
            .map_err(read)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(read)?;
        let mut out = Vec::new();
        for row in rows {
            let (namespace, name, due) = row.map_err(read)?;
            match ObjectId::new(&namespace, &name) {
                Ok(id) => out.push((id, u64::try_from(due).unwrap_or(0))),
                Err(e) => tracing::warn!("alarm index: skipping a row: {e}"),
            }
        }
        Ok(out)
    }

    /// Replaces every row with `rows` and marks the file complete, in one
    /// transaction.
    pub(super) fn replace_all(&mut self, rows: &[(ObjectId, u64)]) -> Result<(), StorageError> {
        let write = |e| index_error("rebuild", e);
        let tx = self.conn.transaction().map_err(write)?;
        tx.execute("DELETE FROM object_alarms", []).map_err(write)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO object_alarms
                     (object_hash, namespace, name, due_at_ms, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(write)?;
            for (id, due) in rows {
                insert
                    .execute(params![
                        id.hash(),
                        id.namespace(),
                        id.name(),
                        to_i64(*due),
                        now()
                    ])
                    .map_err(write)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('complete', '1')",
            [],
        )
        .map_err(write)?;
        tx.commit().map_err(write)
    }

    /// Writes the row of `id`; it is on disk when this returns.
    pub(super) fn upsert(&self, id: &ObjectId, due_ms: u64) -> Result<(), StorageError> {
        self.conn
            .prepare_cached(
                "INSERT INTO object_alarms (object_hash, namespace, name, due_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (object_hash) DO UPDATE SET
                     due_at_ms = excluded.due_at_ms, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id.hash(),
                    id.namespace(),
                    id.name(),
                    to_i64(due_ms),
                    now()
                ])
            })
            .map(|_| ())
            .map_err(|e| index_error("write", e))
    }

    /// Removes the row of `id`.
    pub(super) fn remove(&self, id: &ObjectId) -> Result<(), StorageError> {
        self.conn
            .prepare_cached("DELETE FROM object_alarms WHERE object_hash = ?1")
            .and_then(|mut stmt| stmt.execute([id.hash()]))
            .map(|_| ())
            .map_err(|e| index_error("write", e))
    }
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    to_i64(crate::clock::Clock::now_ms(&crate::clock::SystemClock))
}
