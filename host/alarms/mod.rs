//! Durable alarms: which objects are due when, and how failed alarms retry.
//!
//! Each object keeps its one alarm in its own database (the source of truth,
//! written inside the dispatch that set it). `AlarmIndex` keeps, in memory
//! and in the small index file described in `index.rs`, a hint per object
//! that may have an alarm, ordered by due time, so that finding the next due
//! alarm never reads the databases of objects that have none.
//!
//! The rule that makes the index safe across a crash at any instant: before
//! a dispatch that sets an alarm at `t` commits, the index already holds a
//! row for that object due no later than `t` (`AlarmIndex::ensure_due_by`,
//! written durably); after the commit the row is made exact
//! (`AlarmIndex::set`). A row left too early or pointing at a deleted alarm
//! only causes one look at the object's database, after which the delivery
//! path corrects it.
//!
//! This module never calls the runtime: the runtime asks it for due objects
//! (`AlarmIndex::take_due`), delivers their alarms, and reports the object's
//! next alarm back.

mod index;

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::Mutex,
    time::Duration,
};

use tokio::sync::Notify;

use crate::{
    id::ObjectId,
    storage::{self, AlarmRow, ObjectStorage, StorageError},
};
use index::IndexFile;

pub use index::INDEX_FILE;

/// Default delay before the first retry of a failed alarm (Cloudflare's).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Default number of retries after the first failed run (Cloudflare's).
pub const DEFAULT_MAX_RETRIES: u32 = 6;

/// How a failed alarm is retried: after `first_delay`, then twice as long
/// each time, at most `max_retries` times; then it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub first_delay: Duration,
    /// Retries after the first run; the handler runs at most this plus one
    /// times for one alarm.
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: DEFAULT_RETRY_DELAY,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first), or `None`
    /// when the retries are used up.
    pub fn delay_before(&self, retry: u32) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
        Some(self.first_delay.saturating_mul(factor))
    }
}

/// The alarm row that retries `failed` after its backoff, or `None` when
/// its retries are used up.
pub(crate) fn next_retry(failed: AlarmRow, now_ms: u64, policy: &RetryPolicy) -> Option<AlarmRow> {
    let retry_count = failed.retry_count.saturating_add(1);
    let delay = policy.delay_before(retry_count)?;
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    Some(AlarmRow {
        due_ms: now_ms.saturating_add(delay_ms),
        retry_count,
    })
}

/// Puts a failed alarm back as its next retry, or removes it when the
/// retries are used up; returns the retry's due time.
///
/// # Errors
///
/// [`StorageError`] when the object's database refuses the write.
pub(crate) fn schedule_retry(
    storage: &ObjectStorage,
    failed: AlarmRow,
    now_ms: u64,
    policy: &RetryPolicy,
) -> Result<Option<u64>, StorageError> {
    let retry = next_retry(failed, now_ms, policy);
    match retry {
        Some(row) => storage.set_alarm(row)?,
        None => {
            storage.delete_alarm()?;
        }
    }
    Ok(retry.map(|row| row.due_ms))
}

/// Objects that may have an alarm, by due time.
pub(crate) struct AlarmIndex {
    file: Mutex<IndexFile>,
    schedule: Mutex<Schedule>,
    wake: Notify,
}

#[derive(Default)]
struct Schedule {
    /// Object hash → object and due time.
    by_object: HashMap<String, (ObjectId, u64)>,
    /// (due time, object hash), earliest first.
    queue: BTreeSet<(u64, String)>,
}

impl Schedule {
    fn insert(&mut self, id: &ObjectId, due_ms: u64) {
        self.remove(id);
        self.queue.insert((due_ms, id.hash().to_string()));
        self.by_object
            .insert(id.hash().to_string(), (id.clone(), due_ms));
    }

    fn remove(&mut self, id: &ObjectId) {
        if let Some((_, due)) = self.by_object.remove(id.hash()) {
            self.queue.remove(&(due, id.hash().to_string()));
        }
    }

    fn due_of(&self, id: &ObjectId) -> Option<u64> {
        self.by_object.get(id.hash()).map(|(_, due)| *due)
    }
}

impl AlarmIndex {
    /// Opens the index under `root`, rebuilding it from the object databases
    /// under `object_roots` when it is new or was never completed.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the index file cannot be opened or written.
    pub(crate) fn open(root: &Path, object_roots: &[&Path]) -> Result<Self, StorageError> {
        let (mut file, complete) = IndexFile::open(root)?;
        let rows = if complete {
            file.rows()?
        } else {
            let rows: Vec<_> = object_roots
                .iter()
                .flat_map(|root| scan_object_databases(root))
                .collect();
            file.replace_all(&rows)?;
            if !rows.is_empty() {
                tracing::info!(alarms = rows.len(), "rebuilt the alarm index");
            }
            rows
        };
        let mut schedule = Schedule::default();
        for (id, due) in &rows {
            schedule.insert(id, *due);
        }
        Ok(Self {
            file: Mutex::new(file),
            schedule: Mutex::new(schedule),
            wake: Notify::new(),
        })
    }

    /// Makes sure the index wakes `id` no later than `due_ms`; durable when
    /// it returns. Called before the dispatch that sets the alarm commits.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the index file cannot be written; the alarm
    /// must then not be set.
    pub(crate) fn ensure_due_by(&self, id: &ObjectId, due_ms: u64) -> Result<(), StorageError> {
        if self
            .schedule()
            .due_of(id)
            .is_some_and(|current| current <= due_ms)
        {
            return Ok(());
        }
        let file = self.file.lock().expect("alarm index file lock");
        file.upsert(id, due_ms)?;
        self.schedule().insert(id, due_ms);
        drop(file);
        self.wake.notify_one();
        Ok(())
    }

    /// Records the object's alarm as its database now holds it (`None`: no
    /// alarm). Called after a commit, and after each delivery.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the index file cannot be written. The schedule
    /// in memory is updated all the same, and the file keeps its older row,
    /// which the safety rule above tolerates.
    pub(crate) fn set(&self, id: &ObjectId, due_ms: Option<u64>) -> Result<(), StorageError> {
        let file = self.file.lock().expect("alarm index file lock");
        let written = match due_ms {
            Some(due) => {
                self.schedule().insert(id, due);
                file.upsert(id, due)
            }
            None => {
                self.schedule().remove(id);
                file.remove(id)
            }
        };
        drop(file);
        self.wake.notify_one();
        written
    }

    /// Takes up to `limit` objects due at or before `now_ms` out of the
    /// in-memory schedule (their rows stay in the file). Each must be
    /// delivered and then reported back with [`set`](Self::set) or
    /// [`retry_later`](Self::retry_later).
    pub(crate) fn take_due(&self, now_ms: u64, limit: usize) -> Vec<ObjectId> {
        let mut schedule = self.schedule();
        let due: Vec<(u64, String)> = schedule
            .queue
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .take(limit)
            .cloned()
            .collect();
        due.into_iter()
            .filter_map(|(_, hash)| {
                let (id, _) = schedule.by_object.get(&hash)?.clone();
                schedule.remove(&id);
                Some(id)
            })
            .collect()
    }

    /// Puts `id` back in the in-memory schedule at `due_ms` without touching
    /// the file: for a delivery that could not even look at the object.
    pub(crate) fn retry_later(&self, id: &ObjectId, due_ms: u64) {
        let mut schedule = self.schedule();
        let due = schedule.due_of(id).map_or(due_ms, |d| d.min(due_ms));
        schedule.insert(id, due);
    }

    /// The earliest due time in the schedule.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.schedule().queue.first().map(|(due, _)| *due)
    }

    /// How many objects the schedule holds.
    pub(crate) fn len(&self) -> usize {
        self.schedule().by_object.len()
    }

    /// Notified whenever the schedule changes, so the loop can re-plan.
    pub(crate) fn changed(&self) -> &Notify {
        &self.wake
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().expect("alarm schedule lock")
    }
}

/// Reads every object database under `root` for its alarm; unreadable files
/// are logged and skipped.
fn scan_object_databases(root: &Path) -> Vec<(ObjectId, u64)> {
    let mut rows = Vec::new();
    for path in storage::database_files(root) {
        match storage::read_stored_alarm(&path) {
            Ok(Some(stored)) => rows.push((stored.id, stored.alarm.due_ms)),
            Ok(None) => {}
            Err(e) => tracing::warn!("alarm index: skipping a database: {e}"),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ObjectId::new("COUNTER", name).unwrap()
    }

    #[test]
    fn retries_double_from_the_first_delay_up_to_the_limit() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=7).map(|n| policy.delay_before(n)).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            delays,
            [
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                secs(64),
                None
            ]
        );
        assert_eq!(policy.delay_before(0), None);
    }

    #[test]
    fn hands_out_due_objects_in_order_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let index = AlarmIndex::open(dir.path(), &[dir.path()]).unwrap();
        index.ensure_due_by(&id("late"), 300).unwrap();
        index.ensure_due_by(&id("early"), 100).unwrap();
        index.ensure_due_by(&id("early"), 200).unwrap();
        assert_eq!(
            index.next_due(),
            Some(100),
            "ensure never moves a row later"
        );
        index.set(&id("early"), Some(200)).unwrap();
        index.set(&id("gone"), Some(50)).unwrap();
        index.set(&id("gone"), None).unwrap();

        assert!(index.take_due(199, 10).is_empty());
        let due = index.take_due(1_000, 10);
        assert_eq!(due, [id("early"), id("late")]);
        assert_eq!(index.len(), 0, "taken objects leave the schedule");

        drop(index);
        let reopened = AlarmIndex::open(dir.path(), &[dir.path()]).unwrap();
        assert_eq!(reopened.len(), 2, "the file still names both");
        assert_eq!(reopened.next_due(), Some(200));
    }
}
