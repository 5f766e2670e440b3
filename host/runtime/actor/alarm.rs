//! Delivering an object's alarm to its actor.
//!
//! A delivery looks at the alarm row in the object's database, inside the
//! dispatch's transaction. If the alarm is due, the row is removed before the
//! handler runs (so `getAlarm()` inside `alarm()` answers `null` unless the
//! handler sets a new one) and `alarm({retryCount, isRetry})` is called.
//! Then:
//!
//! * the handler succeeded: the writes commit, and the alarm is whatever the
//!   handler left (none, or the one it set);
//! * the handler threw or rejected: the writes commit as for any dispatch; if
//!   it set a new alarm that one stands, otherwise the failed alarm comes
//!   back as a retry after the policy's backoff, or is dropped once the
//!   retries are used up;
//! * the dispatch trapped, was killed, or storage failed: the writes roll
//!   back (which restores the alarm row), and a second transaction records
//!   the retry the same way.
//!
//! Because the row leaves the database only in the transaction that also
//! holds the handler's writes, an acknowledged alarm runs at least once, and
//! a successful run is never repeated.

use serde::Serialize;

use super::{Actor, Entry};
use crate::{
    alarms::{self, RetryPolicy},
    error::{DispatchError, ErrorCode},
    events::AlarmResult,
    hostcalls::CallContext,
    storage::{AlarmRow, ObjectStorage},
};

/// The input of an alarm dispatch, as the guest reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlarmInput {
    kind: &'static str,
    retry_count: u32,
    is_retry: bool,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AlarmOutcome {
    /// No alarm was due; nothing ran.
    NotDue,
    /// The handler ran.
    Ran {
        /// Which retry this run was (0 for the first run).
        retry_count: u32,
        /// How it ended.
        result: AlarmResult,
        /// The failure, unless it succeeded.
        error: Option<DispatchError>,
    },
}

impl Actor {
    /// Delivers the object's alarm if it is due at `now_ms`.
    ///
    /// # Errors
    ///
    /// A [`DispatchError`] only when the object's storage itself fails; a
    /// failing handler is reported in the [`AlarmReport`].
    pub(crate) fn run_alarm(
        &mut self,
        now_ms: u64,
        policy: &RetryPolicy,
        context: &CallContext,
    ) -> Result<AlarmOutcome, DispatchError> {
        self.begin(context.deadline)?;
        let row = self.storage()?.alarm().map_err(storage_error)?;
        let Some(due) = row.filter(|r| r.due_ms <= now_ms) else {
            // Not due after all: commit nothing, but correct the index.
            self.store.data_mut().host_mut().alarm_changed = true;
            self.finish(true)?;
            self.commit()?;
            return Ok(AlarmOutcome::NotDue);
        };

        self.storage()?.delete_alarm().map_err(storage_error)?;
        self.store.data_mut().host_mut().alarm_changed = true;
        let input = AlarmInput {
            kind: "alarm",
            retry_count: due.retry_count,
            is_retry: due.retry_count > 0,
        };
        let input = serde_json::to_vec(&input).expect("alarm input encodes");
        let result = self.call_checked(Entry::Dispatch, &input, context);
        let keep = self.keeps_writes(&result);
        // The backoff counts from the failure, not from the start of a
        // handler that ran until its deadline.
        let ended_ms = self.store.data().host().clock.now_ms();

        // A failure keeps the alarm the handler set, unless it set none.
        let mut next = if result.is_ok() {
            AlarmResult::Succeeded
        } else {
            AlarmResult::Replaced
        };

        if keep && result.is_err() && self.storage()?.alarm().map_err(storage_error)?.is_none() {
            next = self.retry(due, ended_ms, policy)?;
        }
        self.finish(keep)?;
        if !keep {
            self.begin(context.deadline)?;
            next = self.retry(due, ended_ms, policy)?;
            self.store.data_mut().host_mut().alarm_changed = true;
            self.finish(true)?;
        }
        self.commit()?;
        Ok(AlarmOutcome::Ran {
            retry_count: due.retry_count,
            result: next,
            error: result.err(),
        })
    }

    /// Schedules the retry of the failed alarm `due`, or drops it.
    fn retry(
        &self,
        due: AlarmRow,
        now_ms: u64,
        policy: &RetryPolicy,
    ) -> Result<AlarmResult, DispatchError> {
        let retry =
            alarms::schedule_retry(self.storage()?, due, now_ms, policy).map_err(storage_error)?;
        Ok(if retry.is_some() {
            AlarmResult::WillRetry
        } else {
            AlarmResult::Dropped
        })
    }

    fn storage(&self) -> Result<&ObjectStorage, DispatchError> {
        self.store
            .data()
            .host()
            .storage
            .as_ref()
            .ok_or_else(|| DispatchError::new(ErrorCode::StorageError, "the actor has no storage"))
    }
}

fn storage_error(e: crate::storage::StorageError) -> DispatchError {
    DispatchError::new(ErrorCode::StorageError, e.to_string())
}
