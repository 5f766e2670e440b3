//! The per-object database schema and its version.

use rusqlite::{Connection, Transaction};

/// The schema version this build writes, stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

/// Statements that bring a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: key/value pairs, the object's identity, its one alarm.
    "CREATE TABLE IF NOT EXISTS kv (
         key TEXT PRIMARY KEY,
         value_json BLOB NOT NULL,
         updated_at_ms INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS meta (
         key TEXT PRIMARY KEY,
         value_json BLOB NOT NULL,
         updated_at_ms INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS alarms (
         singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
         due_at_ms INTEGER NOT NULL,
         updated_at_ms INTEGER NOT NULL
     );",
    // 1 -> 2: how many times the current alarm has already failed, so that
    // retries keep their count (and their limit) across restarts.
    "ALTER TABLE alarms ADD COLUMN retry_count INTEGER NOT NULL DEFAULT 0;",
];

/// Creates or upgrades the schema and runs `then`, all in one transaction
/// (a new database is set up in one write); a database from a newer build
/// is refused.
pub(super) fn migrate(
    conn: &mut Connection,
    then: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
) -> Result<(), String> {
    let tx = conn
        .transaction()
        .map_err(|e| format!("failed to start a migration: {e}"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| format!("failed to read the schema version: {e}"))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "unsupported schema version {version} (this build knows up to {SCHEMA_VERSION})"
        ));
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(statements)
            .map_err(|e| format!("failed to migrate the schema from version {from}: {e}"))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| format!("failed to record the schema version: {e}"))?;
    }
    then(&tx).map_err(|e| format!("failed to record the object's identity: {e}"))?;
    tx.commit()
        .map_err(|e| format!("failed to commit the schema: {e}"))
}
