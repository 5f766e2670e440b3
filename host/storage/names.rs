//! The directory of object names behind ids (`<storage root>/names.sqlite`).
//!
//! A Cloudflare-flavour id's string is the object's hash, which cannot be
//! turned back into its name. `env.NS.idFromName(name)` records the pair
//! here, so that `idFromString` of that string finds the named object even
//! before it has ever started (once it has, its own database says who it
//! is). The file is created on first use, so deployments that never make
//! ids this way never have one.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;
use crate::id::ObjectId;

/// The file name under the storage root.
pub const NAMES_FILE: &str = "names.sqlite";

/// Hash → name pairs of one storage root.
pub struct NameDirectory {
    path: PathBuf,
    conn: OnceLock<Result<Mutex<Connection>, String>>,
    /// Ids recorded by this process, so each is written once.
    recorded: Mutex<HashSet<ObjectId>>,
}

impl NameDirectory {
    /// The directory of the storage root `root` (nothing is opened yet).
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join(NAMES_FILE),
            conn: OnceLock::new(),
            recorded: Mutex::new(HashSet::new()),
        }
    }

    fn connection(&self) -> Result<&Mutex<Connection>, StorageError> {
        let opened = self.conn.get_or_init(|| {
            let conn = Connection::open(&self.path).map_err(|e| e.to_string())?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS names (
                     namespace TEXT NOT NULL,
                     hash TEXT NOT NULL,
                     name TEXT NOT NULL,
                     PRIMARY KEY (namespace, hash)
                 );",
            )
            .map_err(|e| e.to_string())?;
            Ok(Mutex::new(conn))
        });
        opened
            .as_ref()
            .map_err(|e| StorageError(format!("failed to open `{}`: {e}", self.path.display())))
    }

    /// Remembers which name `id`'s hash stands for.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the directory cannot be written.
    pub fn record(&self, id: &ObjectId) -> Result<(), StorageError> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.contains(id) {
            return Ok(());
        }
        let conn = self.connection()?.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT OR IGNORE INTO names (namespace, hash, name) VALUES (?1, ?2, ?3)",
            params![id.namespace(), id.hash(), id.name()],
        )
        .map_err(|e| StorageError::context("record an object's name", e))?;
        recorded.insert(id.clone());
        Ok(())
    }

    /// The object of `namespace` whose hash is `hash`, if it was recorded.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the directory cannot be read.
    pub fn lookup(&self, namespace: &str, hash: &str) -> Result<Option<ObjectId>, StorageError> {
        if !self.path.exists() && self.conn.get().is_none() {
            return Ok(None);
        }
        let conn = self.connection()?.lock().unwrap_or_else(|e| e.into_inner());
        let name: Option<String> = conn
            .query_row(
                "SELECT name FROM names WHERE namespace = ?1 AND hash = ?2",
                params![namespace, hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| StorageError::context("look up an object's name", e))?;
        Ok(name.and_then(|name| ObjectId::new(namespace, &name).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_unknown_hashes_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::new("NS", "alice").unwrap();
        let directory = NameDirectory::new(dir.path());
        assert_eq!(directory.lookup("NS", id.hash()).unwrap(), None);
        assert!(
            !dir.path().join(NAMES_FILE).exists(),
            "created on first record"
        );
        directory.record(&id).unwrap();
        directory.record(&id).unwrap();
        drop(directory);
        let directory = NameDirectory::new(dir.path());
        assert_eq!(directory.lookup("NS", id.hash()).unwrap(), Some(id.clone()));
        assert_eq!(directory.lookup("OTHER", id.hash()).unwrap(), None);
    }
}
