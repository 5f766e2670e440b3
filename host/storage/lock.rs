//! One server per storage root.
//!
//! Two runtimes over one storage root would run two actors for one object,
//! which breaks every guarantee the storage makes. A runtime therefore holds
//! an exclusive lock on `<root>/lock` (an advisory file lock, released by
//! the operating system when the process ends, however it ends, so a killed
//! server leaves no stale lock) and writes its process id there, for the
//! message another one gets.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, SeekFrom, Write},
    path::Path,
};

use super::StorageError;

/// The lock file's name under the storage root.
pub const LOCK_FILE: &str = "lock";

/// A held lock on a storage root; released when dropped.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// Locks `root` for this process.
    ///
    /// # Errors
    ///
    /// [`StorageError`] naming the root, and the process that holds it when
    /// it is known, when another runtime holds the lock or the lock file
    /// cannot be opened.
    pub fn acquire(root: &Path) -> Result<Self, StorageError> {
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::new(format!("failed to open `{}`: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(StorageError::new(format!(
                    "the storage root `{}` is in use by {holder}: one server per storage root",
                    root.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(StorageError::new(format!(
                    "failed to lock `{}`: {e}",
                    path.display()
                )));
            }
        }
        let record = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        };
        record(&mut file)
            .map_err(|e| StorageError::new(format!("failed to write `{}`: {e}", path.display())))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_root_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path()).unwrap();
        let refused = RootLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("in use by process"), "{refused}");
        assert!(
            refused.contains(&std::process::id().to_string()),
            "{refused}"
        );
        drop(first);
        RootLock::acquire(dir.path()).unwrap();
    }
}
