//! Durable storage: one SQLite database per object.
//!
//! The file for an object lives at `<root>/objects/<hh>/<hash>.sqlite`, where
//! `hash` is the object's [`ObjectId::hash`] and `hh` its first two
//! characters. Databases use WAL. With [`Durability::Full`] a commit counts
//! once its log is synced ([`LogSync`]), so a committed dispatch survives a
//! crash of the process or the machine; the sync may run on another thread
//! while the object goes on (see [`ObjectStorage::commit_unsynced`]).
//!
//! Every dispatch runs inside one SQLite transaction ([`ObjectStorage::begin`]
//! / [`commit`](ObjectStorage::commit) / [`rollback`](ObjectStorage::rollback));
//! `state.storage.transaction()` nests a savepoint inside it. Values are
//! stored as the JSON text the guest produced.

mod lock;
mod names;
mod schema;
mod sql;

use std::{
    cell::{Cell, OnceCell},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, TransactionState, config::DbConfig, params,
};

use crate::id::ObjectId;

pub use names::{NAMES_FILE, NameDirectory};
pub use sql::{SqlBounds, SqlError, SqlOutcome, value_from_json, value_to_json};

pub use lock::{LOCK_FILE, RootLock};
pub use schema::SCHEMA_VERSION;

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(String);

impl StorageError {
    /// An error with `message`.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn context(what: &str, e: impl std::fmt::Display) -> Self {
        Self(format!("failed to {what}: {e}"))
    }
}

/// The path of an object's database under a storage root.
pub fn database_path(root: &Path, id: &ObjectId) -> PathBuf {
    database_path_for_hash(root, id.hash())
}

/// The path of the database of the object whose hash is `hash` (64 hex
/// digits).
pub fn database_path_for_hash(root: &Path, hash: &str) -> PathBuf {
    root.join("objects")
        .join(hash.get(..2).unwrap_or("00"))
        .join(format!("{hash}.sqlite"))
}

/// The database of one object, open while it is in use.
///
/// [`close_idle`](Self::close_idle) closes the connection of an object that
/// is not in the middle of a transaction (the runtime does it to actors idle
/// for a while, so they hold no open files and none of SQLite's memory);
/// the next use opens it again.
pub struct ObjectStorage {
    /// The connection, empty while closed.
    conn: OnceCell<Connection>,
    /// Counts the connection in an [`OpenDatabases`] while it is open.
    counted: OnceCell<OpenGuard>,
    /// Where open connections are counted, if anywhere.
    open_databases: Option<OpenDatabases>,
    path: PathBuf,
    id: ObjectId,
    durability: Durability,
    /// Depth of `state.storage.transaction()` savepoints currently open.
    savepoints: u32,
    /// Whether a dispatch's transaction was begun and not yet ended.
    in_transaction: Cell<bool>,
    /// Whether a dispatch began while the database was closed: its
    /// transaction begins when the dispatch first uses storage, so a
    /// dispatch that does not never opens the database.
    begin_pending: Cell<bool>,
    /// The current dispatch's deadline, which bounds how long opening the
    /// database waits for another process's lock.
    deadline: Option<Instant>,
    /// Whether the directory must be synced with the log's next sync: the
    /// connection opened (and may have created) the log since the last one.
    directory_unsynced: Cell<bool>,
    /// Whether the database file must be synced with the log's next sync:
    /// its first page is written unsynced when it is created, by this actor
    /// or by an earlier one that ended before it wrote anything durably.
    database_unsynced: Cell<bool>,
}

/// The sync that makes the commits written to one object's write-ahead log
/// durable, which may run on any thread.
///
/// With [`Durability::Full`] SQLite writes a commit into the log without
/// syncing it (`synchronous = NORMAL`, whose checkpoints still sync the log
/// before copying it and the database after), and the commit counts once
/// this has run. It syncs the log by its path: the log a commit went into
/// is either still there or was checkpointed into the database, synced, and
/// removed when its connection closed, so a log that is gone holds nothing
/// unsynced.
#[derive(Debug, Clone)]
pub struct LogSync {
    log: PathBuf,
    /// The database file, when its first page may not be on disk yet.
    database: Option<PathBuf>,
    /// The database's directory, when the log may be new in it.
    directory: Option<PathBuf>,
}

impl LogSync {
    /// A sync of the file at `log` alone, for tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn of_file(log: PathBuf) -> Self {
        Self {
            log,
            database: None,
            directory: None,
        }
    }

    /// Makes this sync also cover everything `other` covers (both belong to
    /// the same database).
    pub fn absorb(&mut self, other: Self) {
        if self.database.is_none() {
            self.database = other.database;
        }
        if self.directory.is_none() {
            self.directory = other.directory;
        }
    }

    /// Syncs the database file when its first page may not be on disk, the
    /// log, and the directory when either may be new in it.
    ///
    /// # Errors
    ///
    /// [`StorageError`] naming the file that could not be synced; the
    /// commits it covers may then be lost in a power failure.
    pub fn perform(&self) -> Result<(), StorageError> {
        // A file that is gone was checkpointed or removed with its data
        // synced; a directory must be there.
        let sync = |path: &Path, is_file: bool| -> Result<(), StorageError> {
            let synced = match std::fs::File::open(path) {
                Ok(file) if is_file => file.sync_data(),
                Ok(dir) => dir.sync_all(),
                Err(e) if is_file && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            synced.map_err(|e| StorageError::context(&format!("sync `{}`", path.display()), e))
        };
        if let Some(database) = &self.database {
            sync(database, true)?;
        }
        sync(&self.log, true)?;
        if let Some(directory) = &self.directory {
            sync(directory, false)?;
        }
        Ok(())
    }
}

/// How many object databases are open, among the [`ObjectStorage`]s counted
/// in it ([`ObjectStorage::count_in`]).
///
/// Each open database holds two files (the database and its write-ahead
/// log), and SQLite's Unix layer walks a list of every file the process has
/// open each time it opens another, so a server that kept thousands open
/// would pay for each of them on every new object.
#[derive(Debug, Clone, Default)]
pub struct OpenDatabases(Arc<AtomicUsize>);

impl OpenDatabases {
    /// How many are open now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn guard(&self) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.0.clone())
    }
}

/// One open database in an [`OpenDatabases`] count, until dropped.
#[derive(Debug)]
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The largest write-ahead log that closing an idle database leaves as it
/// is (sixteen pages); a larger one is checkpointed into the database.
const KEEP_LOG_BYTES: u64 = 64 * 1024;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 32;

/// The longest opening a database waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl ObjectStorage {
    /// Opens (creating if needed) the database of `id` under `root`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] naming the file when it cannot be created, opened or
    /// migrated, or was written by a newer schema.
    pub fn open(root: &Path, id: &ObjectId) -> Result<Self, StorageError> {
        Self::open_with(root, id, Durability::Full)
    }

    /// [`open`](Self::open) with the given durability of commits.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(
        root: &Path,
        id: &ObjectId,
        durability: Durability,
    ) -> Result<Self, StorageError> {
        let path = database_path(root, id);
        let dir = path.parent().expect("database path has a parent");
        create_dirs(dir)
            .map_err(|e| StorageError::context(&format!("create `{}`", dir.display()), e))?;
        let (conn, _) = connect(&path, id, durability, BUSY_TIMEOUT)?;
        Ok(Self {
            conn: OnceCell::from(conn),
            counted: OnceCell::new(),
            open_databases: None,
            path,
            id: id.clone(),
            durability,
            savepoints: 0,
            in_transaction: Cell::new(false),
            begin_pending: Cell::new(false),
            deadline: None,
            directory_unsynced: Cell::new(true),
            database_unsynced: Cell::new(true),
        })
    }

    /// Counts this database in `open` while its connection is open (from
    /// now on, and each time it opens again).
    #[must_use]
    pub fn count_in(mut self, open: &OpenDatabases) -> Self {
        if self.is_open() {
            let _ = self.counted.set(open.guard());
        }
        self.open_databases = Some(open.clone());
        self
    }

    /// The connection, opened again if it was closed (and the pending
    /// dispatch transaction begun in it).
    fn connection(&self) -> Result<&Connection, StorageError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let wait = self.deadline.map_or(BUSY_TIMEOUT, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(BUSY_TIMEOUT)
        });
        let (conn, wrote_first_page) = connect(&self.path, &self.id, self.durability, wait)?;
        self.directory_unsynced.set(true);
        if wrote_first_page {
            // The file was gone, or lost its page, while it was closed.
            self.database_unsynced.set(true);
        }
        if self.begin_pending.get() {
            conn.execute_batch("BEGIN; SAVEPOINT dispatch")
                .map_err(|e| StorageError::context("begin a transaction", e))?;
            self.begin_pending.set(false);
            self.in_transaction.set(true);
        }
        if let Some(open) = &self.open_databases {
            let _ = self.counted.set(open.guard());
        }
        Ok(self.conn.get_or_init(|| conn))
    }

    /// Sets the deadline of the dispatch about to begin: opening the
    /// database again waits for another process's lock at most until then.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The connection, opened again if it was closed, for changes to its
    /// settings.
    fn connection_mut(&mut self) -> Result<&mut Connection, StorageError> {
        self.connection()?;
        Ok(self.conn.get_mut().expect("the connection was just opened"))
    }

    /// Closes the connection unless a transaction is open; returns whether
    /// it closed one. The next use opens it again.
    ///
    /// A small write-ahead log stays as it is: every commit in it is already
    /// as durable as the object's durability says, and checkpointing it into
    /// the database on the way out would cost two syncs. Whoever opens the
    /// database next reads the log with it. A log past 64 KiB is
    /// checkpointed.
    pub fn close_idle(&mut self) -> bool {
        let idle = self.conn.get().is_some_and(Connection::is_autocommit)
            && !self.in_transaction.get()
            && !self.begin_pending.get()
            && self.savepoints == 0;
        if !idle {
            return false;
        }
        let Some(conn) = self.conn.take() else {
            return false;
        };
        // A log that has grown is checkpointed as usual when the connection
        // closes, so that logs stay small and opening again stays quick.
        let log_size = std::fs::metadata(wal_path(&self.path)).map_or(0, |m| m.len());
        if log_size <= KEEP_LOG_BYTES {
            let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        }
        drop(conn);
        self.counted.take();
        true
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        self.conn.get().is_some()
    }

    /// Starts one dispatch: opens the batch's transaction if none is open,
    /// and a savepoint of the dispatch's own inside it.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when SQLite refuses.
    pub fn begin(&mut self) -> Result<(), StorageError> {
        self.savepoints = 0;
        let fail = |e| StorageError::context("begin a transaction", e);
        if !self.in_transaction.get() {
            if !self.is_open() {
                self.begin_pending.set(true);
                return Ok(());
            }
            execute_cached(self.connection()?, "BEGIN").map_err(fail)?;
            self.in_transaction.set(true);
        }
        execute_cached(self.connection()?, "SAVEPOINT dispatch").map_err(fail)
    }

    /// Ends one dispatch: keeps its writes in the open transaction (`keep`)
    /// or drops them, and only them.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when SQLite refuses; the whole transaction is then
    /// rolled back.
    pub fn end(&mut self, keep: bool) -> Result<(), StorageError> {
        self.savepoints = 0;
        if self.begin_pending.replace(false) {
            // The dispatch never used storage.
            return Ok(());
        }
        let conn = self.connection()?;
        let ended = if keep {
            execute_cached(conn, "RELEASE dispatch")
        } else {
            execute_cached(conn, "ROLLBACK TO dispatch")
                .and_then(|()| execute_cached(conn, "RELEASE dispatch"))
        };
        ended.map_err(|e| {
            self.rollback();
            StorageError::context("end a dispatch", e)
        })
    }

    /// Whether writes wait in an open transaction for [`commit`](Self::commit).
    pub fn has_uncommitted(&self) -> bool {
        self.in_transaction.get()
    }

    /// The bytes the object's data takes: the database's pages in use.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when SQLite cannot say.
    pub fn used_bytes(&self) -> Result<u64, StorageError> {
        let pragma = |name: &str| -> Result<u64, StorageError> {
            self.connection()?
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| StorageError::context("measure the database", e))
        };
        let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        Ok(pages * pragma("page_size")?)
    }

    /// Commits the open transaction: the writes of every dispatch that ended
    /// since the last commit. With `Durability::Full` they are on disk when
    /// this returns.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the commit or its sync fails; after a failed
    /// commit the writes are rolled back.
    pub fn commit(&mut self) -> Result<(), StorageError> {
        match self.commit_unsynced()? {
            Some(sync) => sync.perform(),
            None => Ok(()),
        }
    }

    /// Commits the open transaction as [`commit`](Self::commit) does, but
    /// leaves the sync that makes it durable to the caller: `Some` when
    /// there is one to run before the commit may be acknowledged (with
    /// `Durability::Full`, after a commit that wrote). Later transactions
    /// may run, and commit, before it does; a sync covers every commit
    /// before it.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the commit fails; the writes are then rolled back.
    pub fn commit_unsynced(&mut self) -> Result<Option<LogSync>, StorageError> {
        if self.write_commit()? {
            Ok(self.log_sync())
        } else {
            Ok(None)
        }
    }

    /// The sync that the commits written so far need, if any.
    fn log_sync(&self) -> Option<LogSync> {
        (self.durability == Durability::Full).then(|| LogSync {
            log: wal_path(&self.path),
            database: self
                .database_unsynced
                .replace(false)
                .then(|| self.path.clone()),
            directory: self
                .directory_unsynced
                .replace(false)
                .then(|| self.path.parent().map(Path::to_path_buf))
                .flatten(),
        })
    }

    /// Writes the open transaction's commit into the log; returns whether
    /// the transaction wrote.
    fn write_commit(&mut self) -> Result<bool, StorageError> {
        self.savepoints = 0;
        self.begin_pending.set(false);
        let began = self.in_transaction.replace(false);
        let Some(conn) = self.conn.get() else {
            return Ok(false);
        };
        if conn.is_autocommit() {
            if began {
                // SQLite rolled the transaction back by itself (it does on
                // some errors): the dispatch's writes are gone.
                return Err(StorageError::new(
                    "the dispatch's transaction was rolled back after a storage error",
                ));
            }
            return Ok(false);
        }
        // A transaction that only read writes nothing into the log.
        let wrote = !matches!(
            conn.transaction_state(None::<&str>),
            Ok(TransactionState::Read | TransactionState::None)
        );
        execute_cached(conn, "COMMIT").map_err(|e| {
            self.rollback();
            StorageError::context("commit", e)
        })?;
        Ok(wrote)
    }

    /// Drops every write of the open transaction.
    pub fn rollback(&mut self) {
        self.savepoints = 0;
        self.in_transaction.set(false);
        self.begin_pending.set(false);
        if let Some(conn) = self.conn.get()
            && !conn.is_autocommit()
        {
            // A failed rollback leaves SQLite to roll back when the
            // connection closes, which discarding the actor does.
            let _ = conn.execute_batch("ROLLBACK");
        }
    }

    /// Opens a nested transaction (`state.storage.transaction`).
    ///
    /// # Errors
    ///
    /// [`StorageError`] when SQLite refuses.
    pub fn savepoint(&mut self) -> Result<(), StorageError> {
        self.connection()?
            .execute_batch("SAVEPOINT user_txn")
            .map_err(|e| StorageError::context("open a transaction", e))?;
        self.savepoints += 1;
        Ok(())
    }

    /// Keeps the writes of the innermost nested transaction.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when no nested transaction is open or SQLite refuses.
    pub fn release_savepoint(&mut self) -> Result<(), StorageError> {
        self.close_savepoint("RELEASE user_txn")
    }

    /// Drops the writes of the innermost nested transaction.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when no nested transaction is open or SQLite refuses.
    pub fn rollback_savepoint(&mut self) -> Result<(), StorageError> {
        self.close_savepoint("ROLLBACK TO user_txn; RELEASE user_txn")
    }

    fn close_savepoint(&mut self, sql: &str) -> Result<(), StorageError> {
        if self.savepoints == 0 {
            return Err(StorageError("no transaction is open".to_string()));
        }
        self.connection()?
            .execute_batch(sql)
            .map_err(|e| StorageError::context("close a transaction", e))?;
        self.savepoints -= 1;
        Ok(())
    }

    /// The JSON text stored under `key`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the read fails.
    pub fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
        let read = |e| StorageError::context("read a key", e);
        self.connection()?
            .prepare_cached("SELECT value_json FROM kv WHERE key = ?1")
            .map_err(read)?
            .query_row([key], |row| row.get::<_, String>(0))
            .optional()
            .map_err(read)
    }

    /// Stores JSON text under `key`, replacing any value.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the write fails.
    pub fn put(&self, key: &str, value_json: &str) -> Result<(), StorageError> {
        let write = |e| StorageError::context("write a key", e);
        self.connection()?
            .prepare_cached(
                "INSERT INTO kv (key, value_json, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET
                     value_json = excluded.value_json, updated_at_ms = excluded.updated_at_ms",
            )
            .map_err(write)?
            .execute(params![key, value_json, now_ms()])
            .map_err(write)?;
        Ok(())
    }

    /// Removes `key`; true if it existed.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the write fails.
    pub fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let write = |e| StorageError::context("delete a key", e);
        let removed = self
            .connection()?
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(write)?
            .execute([key])
            .map_err(write)?;
        Ok(removed > 0)
    }

    /// Removes every key; returns how many there were.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the write fails.
    pub fn delete_all(&self) -> Result<usize, StorageError> {
        self.connection()?
            .execute("DELETE FROM kv", [])
            .map_err(|e| StorageError::context("delete every key", e))
    }

    /// Keys and JSON values in key order (by UTF-8 bytes), or reverse
    /// order, limited by `query`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the read fails.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<(String, String)>, StorageError> {
        Ok(self.list_within(query, usize::MAX)?.unwrap_or_default())
    }

    /// As [`list`](Self::list), but `None` as soon as the keys and values
    /// read add up to more than `max_bytes`, so that a huge listing is
    /// refused before it is held in memory.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the read fails.
    pub fn list_within(
        &self,
        query: &ListQuery,
        max_bytes: usize,
    ) -> Result<Option<Vec<(String, String)>>, StorageError> {
        let read = |e| StorageError::context("list keys", e);
        let mut conditions = Vec::new();
        let mut bounds: Vec<&str> = Vec::new();
        if let Some(prefix) = query.prefix.as_deref().filter(|p| !p.is_empty()) {
            // Every key that starts with the prefix sorts at or after it and
            // before the prefix followed by byte 0xF5, which never occurs in
            // UTF-8; no other key falls in that range, which the primary
            // key's index serves.
            bounds.push(prefix);
            let n = bounds.len();
            conditions.push(format!("key >= ?{n} AND key < ?{n} || CAST(x'F5' AS TEXT)"));
        }
        for (bound, op) in [
            (&query.start, ">="),
            (&query.start_after, ">"),
            (&query.end, "<"),
        ] {
            if let Some(bound) = bound {
                bounds.push(bound);
                conditions.push(format!("key {op} ?{}", bounds.len()));
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if query.reverse { "DESC" } else { "ASC" };
        let limit = query
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql =
            format!("SELECT key, value_json FROM kv {filter} ORDER BY key {order} LIMIT {limit}");
        let mut stmt = self.connection()?.prepare_cached(&sql).map_err(read)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(bounds), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(read)?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for row in rows {
            let (key, value) = row.map_err(read)?;
            bytes = bytes.saturating_add(key.len() + value.len());
            if bytes > max_bytes {
                return Ok(None);
            }
            entries.push((key, value));
        }
        Ok(Some(entries))
    }
}

/// Which keys [`ObjectStorage::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys starting with this, matched literally.
    pub prefix: Option<String>,
    /// Only keys at or after this.
    pub start: Option<String>,
    /// Only keys after this.
    pub start_after: Option<String>,
    /// Only keys before this.
    pub end: Option<String>,
    /// Last key first.
    pub reverse: bool,
    /// At most this many.
    pub limit: Option<u64>,
}

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// On disk: a commit counts once the write-ahead log is synced (a
    /// [`LogSync`]). A power loss loses nothing acknowledged.
    #[default]
    Full,
    /// In the write-ahead log: a commit counts once it is written there,
    /// unsynced. A crash of the process loses nothing acknowledged; a power
    /// loss may lose the last commits.
    Normal,
}

/// Writes the object's namespace, name and hash into `meta` (once), so a
/// database file can be traced back to its object.
fn record_identity(conn: &Connection, id: &ObjectId) -> rusqlite::Result<()> {
    let now = now_ms();
    let mut insert = conn.prepare_cached(
        "INSERT INTO meta (key, value_json, updated_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO NOTHING",
    )?;
    for (key, value) in [
        ("object.namespace", id.namespace()),
        ("object.name", id.name()),
        ("object.hash", id.hash()),
    ] {
        let json = serde_json::to_string(value).expect("strings encode as JSON");
        insert.execute(params![key, json, now])?;
    }
    Ok(())
}

/// The one alarm of an object, as its database holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmRow {
    /// When it is due, in milliseconds since the Unix epoch.
    pub due_ms: u64,
    /// How many times its handler has already failed.
    pub retry_count: u32,
}

impl ObjectStorage {
    /// The object's alarm, if it has one.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the read fails.
    pub fn alarm(&self) -> Result<Option<AlarmRow>, StorageError> {
        read_alarm(self.connection()?).map_err(|e| StorageError::context("read the alarm", e))
    }

    /// Replaces the object's alarm.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the write fails.
    pub fn set_alarm(&self, alarm: AlarmRow) -> Result<(), StorageError> {
        let due = i64::try_from(alarm.due_ms).unwrap_or(i64::MAX);
        self.connection()?
            .prepare_cached(
                "INSERT INTO alarms (singleton, due_at_ms, updated_at_ms, retry_count)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (singleton) DO UPDATE SET due_at_ms = excluded.due_at_ms,
                     updated_at_ms = excluded.updated_at_ms, retry_count = excluded.retry_count",
            )
            .and_then(|mut stmt| stmt.execute(params![due, now_ms(), alarm.retry_count]))
            .map_err(|e| StorageError::context("write the alarm", e))?;
        Ok(())
    }

    /// Removes the object's alarm; true if there was one.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the write fails.
    pub fn delete_alarm(&self) -> Result<bool, StorageError> {
        self.connection()?
            .prepare_cached("DELETE FROM alarms")
            .and_then(|mut stmt| stmt.execute([]))
            .map(|removed| removed > 0)
            .map_err(|e| StorageError::context("delete the alarm", e))
    }
}

fn read_alarm(conn: &Connection) -> rusqlite::Result<Option<AlarmRow>> {
    conn.prepare_cached("SELECT due_at_ms, retry_count FROM alarms WHERE singleton = 1")?
        .query_row([], |row| {
            Ok(AlarmRow {
                due_ms: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                retry_count: row.get(1)?,
            })
        })
        .optional()
}

/// An object database found under a storage root, with its alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlarm {
    /// The object, as its `meta` table records it.
    pub id: ObjectId,
    /// Its alarm.
    pub alarm: AlarmRow,
}

/// Creates `dir` and whichever of its parents are missing, each synced
/// into its parent directory, so that files synced inside them are found
/// after a power loss too (a new file's sync makes its own entry durable,
/// not the entries of the directories above it).
///
/// # Errors
///
/// When a directory cannot be created or synced.
pub(crate) fn create_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        // Another thread may have made it a moment ago and not synced it
        // yet: sync it here too.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists || !dir.is_dir() => return Err(e),
        _ => {}
    }
    let parent = match dir.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => return Ok(()),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Opens (creating if needed) the database at `path`, which belongs to
/// `id`, with its commits left unsynced (see [`LogSync`]); says whether it
/// wrote the file's first page, unsynced with `Full`.
fn connect(
    path: &Path,
    id: &ObjectId,
    durability: Durability,
    busy_timeout: Duration,
) -> Result<(Connection, bool), StorageError> {
    let open = |e| StorageError::context(&format!("open `{}`", path.display()), e);
    // A missing file, or an empty one (a crash can leave a file created and
    // never written), gets its first page written below.
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(busy_timeout).map_err(open)?;
    // Room for every statement a dispatch uses (reads, writes, listing,
    // alarms, and the transaction's own), so none is parsed again.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // One connection per database, held by its actor: exclusive locking
    // keeps the write-ahead log's index in memory (no `-shm` file to create
    // and map) and saves a lock per transaction. It must come before
    // anything that reads the file (most pragmas load the schema), or the
    // index of a log left by an earlier close would go to a `-shm` file.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(open)?;
    // Until the connection is set up, closing it (when a step below fails)
    // must not checkpoint the log into the database.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(open)?;
    if fresh {
        // Switching to WAL writes the database's first page, which marks it
        // as a WAL database. It is written in rollback mode, with the
        // in-memory journal (a `-journal` file created and deleted would
        // cost a third of a new object on this disk, and a file that holds
        // nothing yet has nothing to restore). SQLite deletes the log of a
        // database file that has no pages, so the page must be on disk
        // before any commit in the log counts: with `Full` the first
        // `LogSync` of each `ObjectStorage` syncs the database file along
        // with the log (so a new object that never writes never waits for a
        // sync); `Normal` never syncs commits, so it syncs the page now.
        let first_page_sync = match durability {
            Durability::Full => "OFF",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", first_page_sync)
            .map_err(open)?;
        conn.pragma_update(None, "journal_mode", "MEMORY")
            .map_err(open)?;
    }
    if let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
        if !fresh && first_page_lost(path, &e) {
            // Nothing in it ever counted (see `first_page_lost`): start it
            // anew.
            drop(conn);
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| file.set_len(0))
                .map_err(|e| StorageError::context(&format!("empty `{}`", path.display()), e))?;
            return connect(path, id, durability, busy_timeout);
        }
        return Err(open(e));
    }
    // The schema and the identity need not reach the disk by themselves:
    // they go into the log, whose next sync (the first commit that counts)
    // takes them along, and a crash before it leaves nothing that the next
    // open would not redo. (`NORMAL` would sync a new log's header, and the
    // directory, as it writes it.) With no syncs at all, nothing may be
    // checkpointed meanwhile.
    conn.pragma_update(None, "synchronous", "OFF")
        .map_err(open)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(open)?;
    schema::migrate(&mut conn, |tx| record_identity(tx, id))
        .map_err(|e| StorageError(format!("`{}`: {e}", path.display())))?;
    // Commits go into the log unsynced with either durability (in WAL mode
    // `NORMAL` syncs only checkpoints: the log before it is copied, the
    // database after); with `Full` each counts once a `LogSync` has run.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(open)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(open)?;
    Ok((conn, fresh))
}

/// The log size, in pages, past which a commit checkpoints it (SQLite's
/// default).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;

/// The size of a database's first page (SQLite's default page size).
const FIRST_PAGE_BYTES: u64 = 4096;

/// Whether `error`, from the first read of the database file at `path`,
/// means that its first page was lost before anything in it counted.
///
/// The first page is written unsynced when the file is created, and synced
/// before the first commit counts (see [`LogSync`]). SQLite refuses a file
/// as "not a database" only when neither the file nor the log holds a
/// readable first page: every commit puts the pages it changed into the
/// log, the first one (the schema) page 1 among them, and a log with a
/// valid commit lets SQLite read the page from there. So a file of at most
/// one page that SQLite refuses holds nothing that counted: what a power
/// failure leaves of a new database. A longer file was checkpointed into,
/// with every page synced, and is never emptied.
fn first_page_lost(path: &Path, error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
        && std::fs::metadata(path).is_ok_and(|m| m.len() <= FIRST_PAGE_BYTES)
}

/// Runs `sql`, one statement without results, prepared once per connection
/// (every dispatch begins and ends a transaction and a savepoint, and
/// parsing them each time was a noticeable part of a short dispatch).
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Opens an existing object database to read it without changing the data
/// or leaving an index file beside it.
///
/// The database may have a write-ahead log that its actor left when it
/// closed the database for being idle. A read-only connection would read
/// it through a `-shm` index file that it creates and cannot remove, so the
/// reader opens the database as its actors do, in exclusive locking mode
/// (the log's index in memory), queries only, and closes without a
/// checkpoint. Where there was no log, opening leaves an empty one, which
/// the actor uses when it opens the database (removing it afterwards could
/// race with that). While it reads, the object's actor waits to open it
/// (and it waits for a live actor, up to the busy timeout).
fn open_for_reading(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    Ok(conn)
}

/// The write-ahead log beside the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Reads the identity and alarm of the database at `path` without changing
/// it; `None` when it has no alarm.
///
/// # Errors
///
/// [`StorageError`] naming the file when it cannot be read or its identity
/// is missing or invalid.
pub fn read_stored_alarm(path: &Path) -> Result<Option<StoredAlarm>, StorageError> {
    let fail = |e: &dyn std::fmt::Display| StorageError(format!("`{}`: {e}", path.display()));
    let conn = open_for_reading(path).map_err(|e| fail(&e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| fail(&e))?;
    let alarm = if version >= 2 {
        read_alarm(&conn)
    } else {
        // Version 1 had no retry count; the database is migrated when its
        // object next starts.
        conn.query_row(
            "SELECT due_at_ms FROM alarms WHERE singleton = 1",
            [],
            |row| {
                Ok(AlarmRow {
                    due_ms: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    retry_count: 0,
                })
            },
        )
        .optional()
    };
    let Some(alarm) = alarm.map_err(|e| fail(&e))? else {
        return Ok(None);
    };
    let id = identity(&conn, path)?;
    Ok(Some(StoredAlarm { id, alarm }))
}

/// The object whose database is at `path`, as its `meta` table records it,
/// read without changing the file.
///
/// # Errors
///
/// [`StorageError`] naming the file when it cannot be read (it does not
/// exist, or a live actor holds it) or its identity is missing or invalid.
pub fn read_identity(path: &Path) -> Result<ObjectId, StorageError> {
    let fail = |e: rusqlite::Error| StorageError(format!("`{}`: {e}", path.display()));
    // A live actor holds its database exclusively: fail at once rather
    // than wait for it.
    let conn = open_for_reading(path).map_err(fail)?;
    conn.busy_timeout(std::time::Duration::ZERO).map_err(fail)?;
    identity(&conn, path)
}

fn identity(conn: &Connection, path: &Path) -> Result<ObjectId, StorageError> {
    let fail = |e: &dyn std::fmt::Display| StorageError(format!("`{}`: {e}", path.display()));
    let meta = |key: &str| -> Result<String, StorageError> {
        let json: String = conn
            .query_row("SELECT value_json FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .map_err(|e| fail(&format!("no `{key}` in meta: {e}")))?;
        serde_json::from_str(&json).map_err(|e| fail(&format!("bad `{key}` in meta: {e}")))
    };
    ObjectId::new(&meta("object.namespace")?, &meta("object.name")?).map_err(|e| fail(&e))
}

/// Every key and JSON value of the database at `path`, read without
/// changing it.
///
/// # Errors
///
/// [`StorageError`] naming the file when it cannot be read.
pub fn read_values(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>, StorageError> {
    let fail = |e: rusqlite::Error| StorageError(format!("`{}`: {e}", path.display()));
    let conn = open_for_reading(path).map_err(fail)?;
    let mut stmt = conn
        .prepare("SELECT key, value_json FROM kv")
        .map_err(fail)?;
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(fail)?;
    rows.collect::<Result<_, _>>().map_err(fail)
}

/// Every object database under `root`, in no particular order.
pub fn database_files(root: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(root.join("objects")) else {
        return Vec::new();
    };
    dirs.flatten()
        .flat_map(|dir| {
            std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "sqlite"))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, ObjectStorage) {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "t").unwrap();
        let storage = ObjectStorage::open(dir.path(), &id).unwrap();
        (dir, storage)
    }

    /// Runs `work` in one dispatch's transaction on `s`, kept and committed
    /// (synced).
    fn in_dispatch<T>(s: &mut ObjectStorage, work: impl FnOnce(&ObjectStorage) -> T) -> T {
        s.begin().unwrap();
        let result = work(s);
        s.end(true).unwrap();
        s.commit().unwrap();
        result
    }

    /// Opens `id`'s database under `root`, stores `n`, commits (synced)
    /// and closes it leaving the log as it is; returns the database's path.
    fn commit_and_keep_log(root: &Path, id: &ObjectId, n: &str) -> PathBuf {
        let mut s = ObjectStorage::open(root, id).unwrap();
        in_dispatch(&mut s, |s| s.put("n", n).unwrap());
        assert!(s.close_idle(), "a small log is kept");
        let path = database_path(root, id);
        assert!(wal_path(&path).exists());
        path
    }

    /// The stored `n` of `id`, read through a new `ObjectStorage`.
    fn stored_n(root: &Path, id: &ObjectId) -> Option<String> {
        let mut s = ObjectStorage::open(root, id).unwrap();
        in_dispatch(&mut s, |s| s.get("n").unwrap())
    }

    #[test]
    fn a_first_page_lost_before_anything_counted_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "torn").unwrap();
        let path = database_path(dir.path(), &id);
        create_dirs(path.parent().unwrap()).unwrap();
        // What a power failure can leave of a new database whose first page
        // and log never reached the disk: the file, empty or holding stale
        // bytes, and no log or an empty one.
        for (left, log) in [
            (Vec::new(), None),
            (vec![0; 4096], None),
            (b"stale".to_vec(), None),
            (vec![0; 4096], Some(Vec::new())),
        ] {
            std::fs::write(&path, &left).unwrap();
            match log {
                Some(log) => std::fs::write(wal_path(&path), log).unwrap(),
                None => drop(std::fs::remove_file(wal_path(&path))),
            }
            assert_eq!(stored_n(dir.path(), &id), None);
            commit_and_keep_log(dir.path(), &id, "1");
            assert_eq!(stored_n(dir.path(), &id).as_deref(), Some("1"));
        }
    }

    #[test]
    fn a_lost_first_page_is_read_from_the_log_that_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "zeroed").unwrap();
        let path = commit_and_keep_log(dir.path(), &id, "7");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        // The page is gone from the file, not from the log: SQLite reads it
        // from there, and nothing may be emptied.
        std::fs::write(&path, vec![0; 4096]).unwrap();
        assert_eq!(stored_n(dir.path(), &id).as_deref(), Some("7"));
    }

    #[test]
    fn a_damaged_database_longer_than_one_page_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "damaged").unwrap();
        let path = database_path(dir.path(), &id);
        create_dirs(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0; 8192]).unwrap();
        let err = ObjectStorage::open(dir.path(), &id)
            .err()
            .expect("a damaged database is refused")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    }

    #[test]
    fn a_database_that_cannot_be_set_up_keeps_its_log_out_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "newer").unwrap();
        let path = commit_and_keep_log(dir.path(), &id, "3");
        // A newer build's schema version, committed into the log.
        {
            let conn = Connection::open(&path).unwrap();
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                .unwrap();
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let log = std::fs::metadata(wal_path(&path)).unwrap().len();
        let err = ObjectStorage::open(dir.path(), &id)
            .err()
            .expect("a newer schema is refused")
            .to_string();
        assert!(err.contains("unsupported schema version"), "{err}");
        // Closing the refused connection did not copy the log into the
        // database (without syncs) and remove it.
        assert_eq!(std::fs::metadata(wal_path(&path)).unwrap().len(), log);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    }

    fn keys(entries: Vec<(String, String)>) -> Vec<String> {
        entries.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn lists_prefixes_literally_and_in_order() {
        let (_dir, s) = open();
        for key in [
            "user_1",
            "userA",
            "percent%",
            "percentA1",
            "b",
            "a",
            "é",
            "z\u{10FFFF}x",
        ] {
            s.put(key, "1").unwrap();
        }
        let prefix = |p: &str| ListQuery {
            prefix: Some(p.into()),
            ..ListQuery::default()
        };
        assert_eq!(keys(s.list(&prefix("user_")).unwrap()), ["user_1"]);
        assert_eq!(keys(s.list(&prefix("percent%")).unwrap()), ["percent%"]);
        assert_eq!(keys(s.list(&prefix("z")).unwrap()), ["z\u{10FFFF}x"]);
        let limited = ListQuery {
            limit: Some(3),
            ..ListQuery::default()
        };
        assert_eq!(
            keys(s.list(&limited).unwrap()),
            ["a", "b", "percent%"],
            "sorted, limited without a prefix"
        );
        assert_eq!(s.list(&ListQuery::default()).unwrap().len(), 8);
        let window = ListQuery {
            start_after: Some("a".into()),
            end: Some("user_1".into()),
            reverse: true,
            limit: Some(2),
            ..ListQuery::default()
        };
        assert_eq!(keys(s.list(&window).unwrap()), ["userA", "percentA1"]);
        let from = ListQuery {
            start: Some("b".into()),
            limit: Some(1),
            ..ListQuery::default()
        };
        assert_eq!(keys(s.list(&from).unwrap()), ["b"]);
    }

    #[test]
    fn rollback_drops_a_dispatch_and_savepoints_nest() {
        let (_dir, mut s) = open();
        s.begin().unwrap();
        s.put("kept", "1").unwrap();
        s.savepoint().unwrap();
        s.put("dropped", "2").unwrap();
        s.rollback_savepoint().unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert_eq!(s.get("kept").unwrap().as_deref(), Some("1"));
        assert_eq!(s.get("dropped").unwrap(), None);

        s.begin().unwrap();
        s.put("kept", "3").unwrap();
        s.rollback();
        assert_eq!(s.get("kept").unwrap().as_deref(), Some("1"));
        assert!(s.release_savepoint().is_err(), "no savepoint is open");

        // Two dispatches in one batch: the second's rollback keeps the first.
        s.begin().unwrap();
        s.put("first", "1").unwrap();
        s.end(true).unwrap();
        s.begin().unwrap();
        s.put("second", "2").unwrap();
        s.end(false).unwrap();
        assert!(s.has_uncommitted());
        s.commit().unwrap();
        assert!(!s.has_uncommitted());
        assert_eq!(s.get("first").unwrap().as_deref(), Some("1"));
        assert_eq!(s.get("second").unwrap(), None);
    }

    #[test]
    fn the_alarm_row_is_kept_and_found_from_the_file() {
        let (dir, s) = open();
        assert_eq!(s.alarm().unwrap(), None);
        let row = AlarmRow {
            due_ms: 1_700_000_000_000,
            retry_count: 2,
        };
        s.set_alarm(row).unwrap();
        assert_eq!(s.alarm().unwrap(), Some(row));
        let files = database_files(dir.path());
        assert_eq!(files.len(), 1);
        // The actor's connection holds the database exclusively: readers
        // of the file come after it.
        drop(s);
        let stored = read_stored_alarm(&files[0]).unwrap().unwrap();
        assert_eq!((stored.id.name(), stored.alarm), ("t", row));
        let id = ObjectId::new("COUNTER", "t").unwrap();
        let s = ObjectStorage::open(dir.path(), &id).unwrap();
        assert!(s.delete_alarm().unwrap());
        assert!(!s.delete_alarm().unwrap());
        drop(s);
        assert_eq!(read_stored_alarm(&files[0]).unwrap(), None);
    }

    #[test]
    fn a_commit_that_wrote_leaves_a_sync_and_the_first_after_opening_covers_the_files_it_made() {
        let (dir, mut s) = open();
        let commit = |s: &mut ObjectStorage, write: bool| {
            s.begin().unwrap();
            if write {
                s.put("n", "1").unwrap();
            } else {
                s.get("n").unwrap();
            }
            s.end(true).unwrap();
            s.commit_unsynced().unwrap()
        };
        let first = commit(&mut s, true).expect("a write needs a sync");
        let database = database_path(dir.path(), &ObjectId::new("COUNTER", "t").unwrap());
        assert_eq!(first.log, wal_path(&database));
        assert_eq!(first.directory.as_deref(), database.parent());
        // The first page was written unsynced when the file was created.
        assert_eq!(first.database.as_deref(), Some(database.as_path()));
        first.perform().unwrap();
        let second = commit(&mut s, true).expect("a write needs a sync");
        assert_eq!(second.directory, None, "the directory was synced once");
        assert_eq!(second.database, None, "the database file was synced once");
        assert!(commit(&mut s, false).is_none(), "a read needs no sync");

        // A commit that wrote nothing leaves the directory to the first
        // that does.
        assert!(s.close_idle());
        assert!(commit(&mut s, false).is_none());
        assert!(commit(&mut s, true).unwrap().directory.is_some());

        // Opening again may create the log again: its first sync covers the
        // directory again.
        assert!(s.close_idle());
        let reopened = commit(&mut s, true).unwrap();
        assert!(reopened.directory.is_some());
        assert_eq!(reopened.database, None, "the file is not new again");

        // A file removed while it was closed is made again, and its new
        // first page synced with the next commit.
        assert!(s.close_idle());
        std::fs::remove_file(&database).unwrap();
        std::fs::remove_file(wal_path(&database)).unwrap();
        let remade = commit(&mut s, true).unwrap();
        assert_eq!(remade.database.as_deref(), Some(database.as_path()));

        // A log that is gone was checkpointed and synced: nothing to do.
        let gone = LogSync {
            log: dir.path().join("gone.sqlite-wal"),
            database: None,
            directory: None,
        };
        gone.perform().unwrap();
        // Anything else that stops the sync is an error naming the file.
        let blocked = LogSync {
            log: database.join("not-a-directory-wal"),
            database: None,
            directory: None,
        };
        let err = blocked.perform().unwrap_err().to_string();
        assert!(err.contains("not-a-directory-wal"), "{err}");
    }

    #[test]
    fn with_normal_durability_commits_need_no_sync() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "normal").unwrap();
        let mut s = ObjectStorage::open_with(dir.path(), &id, Durability::Normal).unwrap();
        s.begin().unwrap();
        s.put("n", "1").unwrap();
        s.end(true).unwrap();
        assert!(s.commit_unsynced().unwrap().is_none());
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("COUNTER", "again").unwrap();
        let mut s = ObjectStorage::open(dir.path(), &id).unwrap();
        s.begin().unwrap();
        s.put("n", "5").unwrap();
        s.commit().unwrap();
        drop(s);
        let s = ObjectStorage::open(dir.path(), &id).unwrap();
        assert_eq!(s.get("n").unwrap().as_deref(), Some("5"));
        assert!(database_path(dir.path(), &id).exists());
    }

    /// The files beside the database: `-wal`, `-shm`, ...
    fn companions(dir: &Path, id: &ObjectId) -> Vec<String> {
        let path = database_path(dir, id);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut found: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
            .filter_map(|file| file.strip_prefix(&name).map(str::to_string))
            .filter(|suffix| !suffix.is_empty())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn an_idle_database_closes_only_outside_transactions_and_reopens_on_use() {
        let (dir, mut s) = open();
        let id = ObjectId::new("COUNTER", "t").unwrap();
        s.begin().unwrap();
        s.put("n", "1").unwrap();
        s.end(true).unwrap();
        assert!(!s.close_idle(), "a transaction is open");
        assert!(s.is_open());
        s.commit().unwrap();
        assert!(s.close_idle());
        assert!(!s.is_open());
        assert!(!s.close_idle(), "already closed");
        // The log stays, with no index file beside it.
        assert_eq!(companions(dir.path(), &id), ["-wal"]);
        // Commit and rollback of a closed database have nothing to do.
        s.commit().unwrap();
        s.rollback();
        assert!(!s.is_open());
        // The next use opens it again, with everything committed.
        assert_eq!(s.get("n").unwrap().as_deref(), Some("1"));
        assert!(s.is_open());
        s.begin().unwrap();
        s.put("n", "2").unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert!(s.close_idle());
        assert_eq!(companions(dir.path(), &id), ["-wal"]);
    }

    #[test]
    fn a_log_left_by_an_idle_close_is_read_by_every_later_reader() {
        let (dir, mut s) = open();
        let id = ObjectId::new("COUNTER", "t").unwrap();
        s.begin().unwrap();
        s.put("n", "7").unwrap();
        s.set_alarm(AlarmRow {
            due_ms: 42,
            retry_count: 0,
        })
        .unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert!(s.close_idle());
        // As after a crash: nothing but the files on disk.
        drop(s);
        assert_eq!(companions(dir.path(), &id), ["-wal"]);
        let path = database_path(dir.path(), &id);
        assert_eq!(read_identity(&path).unwrap(), id);
        assert_eq!(read_stored_alarm(&path).unwrap().unwrap().alarm.due_ms, 42);
        assert_eq!(read_values(&path).unwrap()["n"], "7");
        assert_eq!(
            companions(dir.path(), &id),
            ["-wal"],
            "readers leave no files"
        );
        let s = ObjectStorage::open(dir.path(), &id).unwrap();
        assert_eq!(s.get("n").unwrap().as_deref(), Some("7"));
        // Closing as eviction does checkpoints the log away.
        drop(s);
        assert!(companions(dir.path(), &id).is_empty());
    }

    #[test]
    fn a_dispatch_that_does_not_use_storage_leaves_a_closed_database_closed() {
        let (_dir, mut s) = open();
        s.begin().unwrap();
        s.put("n", "1").unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert!(s.close_idle());
        s.begin().unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert!(!s.is_open(), "nothing needed the database");
        // One that does opens it, inside the dispatch's transaction.
        s.begin().unwrap();
        s.put("n", "2").unwrap();
        assert!(s.is_open() && s.has_uncommitted());
        s.end(false).unwrap();
        s.commit().unwrap();
        assert_eq!(
            s.get("n").unwrap().as_deref(),
            Some("1"),
            "the dropped write is gone"
        );
    }

    #[test]
    fn closing_an_idle_database_checkpoints_a_log_that_has_grown() {
        let (dir, mut s) = open();
        let id = ObjectId::new("COUNTER", "t").unwrap();
        let value = format!("\"{}\"", "x".repeat(100_000));
        s.begin().unwrap();
        s.put("big", &value).unwrap();
        s.end(true).unwrap();
        s.commit().unwrap();
        assert!(s.close_idle());
        assert!(
            companions(dir.path(), &id).is_empty(),
            "checkpointed and removed"
        );
        assert_eq!(s.get("big").unwrap(), Some(value));
    }

    #[test]
    fn opening_again_waits_for_another_process_lock_no_longer_than_the_deadline() {
        let (dir, mut s) = open();
        let id = ObjectId::new("COUNTER", "t").unwrap();
        assert!(s.close_idle());
        // Another connection (as another process would) holds the file.
        let other = Connection::open(database_path(dir.path(), &id)).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        s.set_deadline(Some(Instant::now()));
        s.begin().unwrap();
        let refused = s.get("n").unwrap_err();
        assert!(refused.to_string().contains("locked"), "{refused}");
        s.end(false).unwrap();
        other.execute_batch("ROLLBACK").unwrap();
        drop(other);
        s.set_deadline(None);
        assert_eq!(s.get("n").unwrap(), None);
    }
}
