//! SQL that an object's own JavaScript runs against its database
//! (Cloudflare's `ctx.storage.sql.exec`).
//!
//! User statements run in the same connection, and so the same transaction,
//! as the key-value storage, which is what makes `transactionSync` cover
//! both. While they are prepared an authorizer keeps them away from what is
//! not theirs: the tables that hold the key-value pairs, the identity and
//! the alarm, other database files (`ATTACH`), transaction control (which
//! belongs to `transaction()` and `transactionSync()`), temporary tables
//! (which could shadow the runtime's), and pragmas beyond a few that only
//! describe tables; any action the authorizer does not know is refused.
//! Besides, while user SQL runs the connection may attach no database at
//! all, no string or blob may exceed the value limit, and the database may
//! not grow past the storage quota (`PRAGMA max_page_count`). A progress
//! handler stops a statement that runs past the dispatch's deadline.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use rusqlite::{
    fallible_iterator::FallibleIterator,
    hooks::{AuthAction, AuthContext, Authorization},
    limits::Limit,
    types::Value as SqlValue,
};

use super::ObjectStorage;

/// Tables of the runtime's own (see `schema.rs`), hidden from user SQL.
const RESERVED_TABLES: &[&str] = &["kv", "meta", "alarms"];

/// Pragmas user SQL may run: they only describe the user's own tables.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// SQLite virtual machine steps between deadline checks.
const PROGRESS_STEPS: i32 = 10_000;

/// The most bytes (roughly) of result one statement may return.
const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// What user SQL may use: time, value size, database size.
#[derive(Debug, Clone)]
pub struct SqlBounds {
    /// When the dispatch must end.
    pub deadline: Option<Instant>,
    /// The longest string or blob (`--max-value-bytes`).
    pub max_value_bytes: usize,
    /// The most bytes the database may hold (`--max-storage-bytes`).
    pub max_storage_bytes: u64,
}

/// What one `exec` produced: the last statement's columns and rows, and
/// how many rows all its statements read and wrote.
#[derive(Debug, Default)]
pub struct SqlOutcome {
    /// The result's column names.
    pub columns: Vec<String>,
    /// The result's rows.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows the statements returned.
    // TODO: Cloudflare counts the rows SQLite scanned; this counts the rows
    // returned (the same for simple selects, fewer for filtered scans).
    pub rows_read: u64,
    /// Rows the statements inserted, updated or deleted.
    pub rows_written: u64,
}

/// Why user SQL failed, in the form Cloudflare reports it
/// (`"<SQLite's message>: SQLITE_ERROR"`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

impl ObjectStorage {
    /// Runs `sql` (one or more statements; `bindings` go to the last one)
    /// as the object's own SQL, until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`SqlError`] when a statement does not parse, is not allowed, fails
    /// or runs out of time; statements before it keep their effects (as in
    /// Cloudflare), so callers that need all or nothing use a transaction.
    pub fn exec_user_sql(
        &mut self,
        sql: &str,
        bindings: &[SqlValue],
        bounds: &SqlBounds,
    ) -> Result<SqlOutcome, SqlError> {
        let deadline = bounds.deadline;
        let conn = self.connection_mut().map_err(|e| SqlError(e.to_string()))?;
        let guard = |e: rusqlite::Error| SqlError(format!("failed to guard the statement: {e}"));
        let attached = conn
            .set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(guard)?;
        let length_limit = i32::try_from(bounds.max_value_bytes).unwrap_or(i32::MAX);
        let length = conn
            .set_limit(Limit::SQLITE_LIMIT_LENGTH, length_limit)
            .map_err(guard)?;
        let page_size: u64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(4096).max(512))
            .map_err(guard)?;
        let max_pages: i64 = conn
            .query_row("PRAGMA max_page_count", [], |row| row.get(0))
            .map_err(guard)?;
        let quota_pages = i64::try_from(bounds.max_storage_bytes / page_size)
            .unwrap_or(i64::MAX)
            .max(1);
        conn.query_row(
            &format!("PRAGMA max_page_count = {quota_pages}"),
            [],
            |_| Ok(()),
        )
        .map_err(guard)?;
        let denied = Arc::new(Mutex::new(None::<String>));
        let record = denied.clone();
        conn.authorizer(Some(move |context: AuthContext<'_>| {
            match refusal(&context) {
                Some(reason) => {
                    *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    Authorization::Deny
                }
                None => Authorization::Allow,
            }
        }))
        .map_err(|e| SqlError(format!("failed to guard the statement: {e}")))?;
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || deadline.is_some_and(|d| Instant::now() >= d)),
        )
        .map_err(|e| SqlError(format!("failed to bound the statement's time: {e}")))?;

        let outcome = run(conn, sql, bindings);

        let _ = conn.progress_handler(PROGRESS_STEPS, None::<fn() -> bool>);
        let _ = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, attached);
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length);
        let _ = conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| {
            Ok(())
        });
        outcome.map_err(|e| {
            let reason = denied.lock().unwrap_or_else(|e| e.into_inner()).take();
            match (reason, e) {
                (Some(reason), _) => SqlError(format!("{reason}: SQLITE_AUTH")),
                (None, rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::OperationInterrupted =>
                {
                    SqlError("the SQL statement ran past the dispatch's deadline".to_string())
                }
                (None, rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::DiskFull =>
                {
                    SqlError(format!(
                        "database or disk is full: the object may hold {} bytes \
                         (--max-storage-bytes): SQLITE_FULL",
                        bounds.max_storage_bytes
                    ))
                }
                (None, e) => SqlError(describe(&e)),
            }
        })
    }

    /// The database's size in bytes (`ctx.storage.sql.databaseSize`).
    ///
    /// # Errors
    ///
    /// [`SqlError`] when SQLite cannot say.
    pub fn database_size(&self) -> Result<u64, SqlError> {
        let conn = self.connection().map_err(|e| SqlError(e.to_string()))?;
        let pragma = |name: &str| -> Result<u64, SqlError> {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| SqlError(describe(&e)))
        };
        Ok(pragma("page_count")? * pragma("page_size")?)
    }
}

fn run(
    conn: &rusqlite::Connection,
    sql: &str,
    bindings: &[SqlValue],
) -> rusqlite::Result<SqlOutcome> {
    let mut outcome = SqlOutcome::default();
    let mut batch = rusqlite::Batch::new(conn, sql);
    let mut bound = 0usize;
    let mut result_bytes = 0usize;
    // Each statement is prepared only after the one before it ran (it may
    // use a table that one created); bindings are taken in order, as many
    // as each statement has parameters.
    while let Some(mut statement) = batch.next()? {
        let wanted = statement.parameter_count();
        let params =
            bindings
                .get(bound..bound + wanted)
                .ok_or(rusqlite::Error::InvalidParameterCount(
                    bindings.len(),
                    bound + wanted,
                ))?;
        bound += wanted;
        let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
        let width = columns.len();
        let before = conn.total_changes();
        let mut rows = Vec::new();
        let mut cursor = statement.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = cursor.next()? {
            let mut values = Vec::with_capacity(width);
            for column in 0..width {
                let value: SqlValue = row.get(column)?;
                result_bytes += match &value {
                    SqlValue::Text(text) => text.len(),
                    SqlValue::Blob(bytes) => bytes.len(),
                    _ => 8,
                };
                values.push(value);
            }
            if result_bytes > MAX_RESULT_BYTES {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
                    Some(format!(
                        "the result is larger than {} MiB",
                        MAX_RESULT_BYTES / 1024 / 1024
                    )),
                ));
            }
            rows.push(values);
        }
        drop(cursor);
        outcome.rows_read += rows.len() as u64;
        outcome.rows_written += conn.total_changes().saturating_sub(before);
        outcome.columns = columns;
        outcome.rows = rows;
    }
    if bound != bindings.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            bindings.len(),
            bound,
        ));
    }
    Ok(outcome)
}

/// SQLite's message followed by its error code's name, as Cloudflare
/// shows them.
fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let text = message.clone().unwrap_or_else(|| failure.to_string());
            format!("{text}: {}", code_name(failure.extended_code & 0xff))
        }
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => format!(
            "{msg} at offset {offset}: {}",
            code_name(error.extended_code & 0xff)
        ),
        rusqlite::Error::InvalidParameterCount(given, wanted) => format!(
            "Wrong number of parameter bindings for SQL query: {wanted} expected, {given} given"
        ),
        other => other.to_string(),
    }
}

fn code_name(code: i32) -> &'static str {
    use rusqlite::ffi;
    match code {
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        _ => "SQLITE_ERROR",
    }
}

fn is_reserved(table: &str) -> bool {
    RESERVED_TABLES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(table))
        || table
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("_cf_"))
}

/// Why a statement may not do what `context` describes, if it may not.
fn refusal(context: &AuthContext<'_>) -> Option<String> {
    let reserved = |table: &str| {
        is_reserved(table).then(|| {
            format!(
                "access to {table} is prohibited: the name is reserved for the object's own storage"
            )
        })
    };
    match context.action {
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempIndex { .. } => {
            Some("temporary tables, views, triggers and indexes are not allowed".to_string())
        }
        AuthAction::AlterTable { database_name, .. }
            if !database_name.eq_ignore_ascii_case("main") =>
        {
            Some("only tables of the object's own database can be altered".to_string())
        }
        AuthAction::Read { table_name, .. }
        | AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
        | AuthAction::CreateTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::DropTempTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::Analyze { table_name }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::DropIndex { table_name, .. }
        | AuthAction::DropTempIndex { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::DropTrigger { table_name, .. }
        | AuthAction::DropTempTrigger { table_name, .. } => reserved(table_name),
        AuthAction::CreateView { view_name }
        | AuthAction::DropView { view_name }
        | AuthAction::DropTempView { view_name } => reserved(view_name),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(
            "To execute a transaction, please use the state.storage.transaction() or \
             state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or \
             SAVEPOINT statements"
                .to_string(),
        ),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed".to_string())
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let allowed = ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name))
                && !pragma_value.is_some_and(is_reserved);
            (!allowed).then(|| format!("PRAGMA {pragma_name} is not allowed"))
        }
        AuthAction::CreateVtable { table_name, .. } | AuthAction::DropVtable { table_name, .. } => {
            Some(format!("virtual table {table_name} is not allowed"))
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Some("load_extension is not allowed".to_string())
        }
        AuthAction::Select | AuthAction::Recursive | AuthAction::Function { .. } => None,
        AuthAction::Reindex { .. } => None,
        // ATTACH with a computed file name, and whatever a later SQLite
        // adds, arrive here.
        _ => Some("this statement is not allowed".to_string()),
    }
}

/// A value for the guest, as JSON: numbers, text, null, a blob as
/// `{"b": base64}` and a real JSON cannot hold (infinite, NaN) as
/// `{"r": "inf"}`.
pub fn value_to_json(value: &SqlValue) -> serde_json::Value {
    use base64::Engine as _;
    match value {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Integer(n) => serde_json::Value::from(*n),
        SqlValue::Real(x) => serde_json::Number::from_f64(*x).map_or_else(
            || serde_json::json!({ "r": x.to_string() }),
            serde_json::Value::Number,
        ),
        SqlValue::Text(text) => serde_json::Value::String(text.clone()),
        SqlValue::Blob(bytes) => serde_json::json!({
            "b": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    }
}

/// A binding from the guest: the inverse of [`value_to_json`].
///
/// # Errors
///
/// [`SqlError`] for anything else (an object, an array).
pub fn value_from_json(value: &serde_json::Value) -> Result<SqlValue, SqlError> {
    use base64::Engine as _;
    match value {
        serde_json::Value::Null => Ok(SqlValue::Null),
        serde_json::Value::Bool(b) => Ok(SqlValue::Integer(i64::from(*b))),
        serde_json::Value::Number(n) => Ok(match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::String(text) => Ok(SqlValue::Text(text.clone())),
        serde_json::Value::Object(map) => {
            if let Some(encoded) = map.get("b").and_then(|b| b.as_str()) {
                return base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map(SqlValue::Blob)
                    .map_err(|e| SqlError(format!("a blob binding is not base64: {e}")));
            }
            if let Some(digits) = map.get("i").and_then(|i| i.as_str()) {
                return digits.parse().map(SqlValue::Integer).map_err(|_| {
                    SqlError(format!(
                        "the BigInt binding {digits} does not fit in 64 bits"
                    ))
                });
            }
            Err(SqlError("unsupported binding type".to_string()))
        }
        serde_json::Value::Array(_) => Err(SqlError("unsupported binding type".to_string())),
    }
}
