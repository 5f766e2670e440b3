//! The per-object database schema and its version.

use rusqlite::Connection;

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

/// Creates or upgrades the schema; a database from a newer build is refused.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| format!("failed to read the schema version: {e}"))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "unsupported schema version {version} (this build knows up to {SCHEMA_VERSION})"
        ));
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn
            .transaction()
            .map_err(|e| format!("failed to start a migration: {e}"))?;
        tx.execute_batch(statements)
            .and_then(|()| tx.pragma_update(None, "user_version", from as i64 + 1))
            .and_then(|()| tx.commit())
            .map_err(|e| format!("failed to migrate the schema from version {from}: {e}"))?;
    }
    Ok(())
}
