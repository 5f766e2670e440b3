//! Alarm delivery: from the alarm index to the object's actor.
//!
//! A due object is delivered through the same slot as its requests, so its
//! alarm never runs beside a request. When the object has no live actor, its
//! database is first read without starting one: an index row that turns out
//! early or stale is corrected at the cost of one read, and only a due alarm
//! starts the actor. An actor that cannot even start counts as a failed run
//! and is retried with the same backoff as a throwing handler.

use std::sync::Arc;

use super::{Runtime, actor::AlarmOutcome, registry::SlotGuard};
use crate::{
    alarms,
    error::DispatchError,
    events::{AlarmResult, Event},
    hostcalls::CallContext,
    id::ObjectId,
    storage::{self, ObjectStorage},
};

/// What became of one due object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Its handler ran (successfully or not).
    Ran,
    /// Nothing was due after all; the index was corrected.
    NotDue,
    /// The object could not be looked at; it is tried again later.
    Deferred,
}

impl Runtime {
    /// Delivers every alarm due now by the runtime's clock and waits for the
    /// handlers; returns how many ran. The background loop does the same on
    /// its own; this is for tests and embedders that drive time themselves.
    pub async fn run_due_alarms(&self) -> usize {
        let now_ms = self.shared.config.clock.now_ms();
        let due = self.shared.alarms.take_due(now_ms, usize::MAX);
        let deliveries: Vec<_> = due
            .into_iter()
            .map(|id| {
                let runtime = self.clone();
                tokio::spawn(async move { runtime.deliver_alarm(id).await })
            })
            .collect();
        let mut ran = 0;
        for delivery in deliveries {
            if matches!(delivery.await, Ok(Delivery::Ran)) {
                ran += 1;
            }
        }
        ran
    }

    /// Delivers the alarm of one object that the index says is due.
    pub(super) async fn deliver_alarm(&self, id: ObjectId) -> Delivery {
        let class = match self.class_of(&id) {
            Ok(class) => class.to_string(),
            Err(_) => {
                // The namespace is no longer served: keep the alarm stored
                // for a bundle that serves it, but stop looking at it.
                tracing::warn!(
                    namespace = id.namespace(),
                    name = id.name(),
                    "an alarm is stored for a namespace this bundle does not serve"
                );
                return Delivery::Deferred;
            }
        };
        let Ok((guard, context)) = self.acquire(&id, CallContext::default()).await else {
            self.defer(&id);
            return Delivery::Deferred;
        };
        let runtime = self.clone();
        let task = self
            .shared
            .workers
            .handle()
            .spawn_blocking(move || runtime.alarm_locked(guard, &id, &class, &context));
        task.await.unwrap_or(Delivery::Deferred)
    }

    /// Runs on a blocking thread with the object's slot held.
    fn alarm_locked(
        &self,
        mut guard: SlotGuard,
        id: &ObjectId,
        class: &str,
        context: &CallContext,
    ) -> Delivery {
        // The alarm commits on its own: commit what waits before it.
        let answers = guard.state().commit_batch();
        self.answer(id, answers);
        // That commit, or an earlier sync, may have failed: the alarm runs
        // in a fresh actor then, not in one whose state is in doubt.
        self.discard_if_doomed(&mut guard, id);
        let now_ms = self.shared.config.clock.now_ms();
        if guard.state().actor.is_none() {
            match self.peek_alarm(id, now_ms) {
                Ok(true) => {}
                Ok(false) => return Delivery::NotDue,
                Err(e) => {
                    warn(id, &format!("failed to read the alarm: {e}"));
                    self.defer(id);
                    return Delivery::Deferred;
                }
            }
        }

        let policy = self.shared.config.alarms.retry;
        let report = match self.live_actor(&mut guard, id, class, context) {
            Ok(actor) => {
                let report = actor.run_alarm(now_ms, &policy, context);
                if report.is_err() {
                    // Its storage failed partway, which may leave the
                    // delivery's transaction open: discard the actor, so
                    // that the transaction rolls back and the next delivery
                    // starts from what is on disk.
                    actor.poison();
                }
                report
            }
            Err(start_error) => self.fail_without_actor(id, start_error, now_ms),
        };
        self.end_dispatch(&mut guard, id);
        match report {
            Ok(outcome) => {
                self.report_alarm(id, &outcome);
                match outcome {
                    AlarmOutcome::NotDue => Delivery::NotDue,
                    _ => Delivery::Ran,
                }
            }
            Err(e) => {
                warn(id, &format!("alarm delivery failed: {}", e.message));
                self.defer(id);
                Delivery::Deferred
            }
        }
    }

    /// Reads the alarm of an object without a live actor: true when it is
    /// due; otherwise the index is corrected from what the database holds.
    fn peek_alarm(&self, id: &ObjectId, now_ms: u64) -> Result<bool, String> {
        let root = self.shared.config.storage_root_for(id.namespace());
        let path = storage::database_path(root, id);
        let stored = if path.exists() {
            storage::read_stored_alarm(&path).map_err(|e| e.to_string())?
        } else {
            None
        };
        let due = stored.map(|s| s.alarm.due_ms);
        if due.is_some_and(|due| due <= now_ms) {
            return Ok(true);
        }
        if let Err(e) = self.shared.alarms.set(id, due) {
            warn(id, &format!("failed to update the alarm index: {e}"));
        }
        Ok(false)
    }

    /// Records a failed run for an object whose actor could not start.
    fn fail_without_actor(
        &self,
        id: &ObjectId,
        error: DispatchError,
        now_ms: u64,
    ) -> Result<AlarmOutcome, DispatchError> {
        let storage_error = |e: storage::StorageError| {
            DispatchError::new(crate::ErrorCode::StorageError, e.to_string())
        };
        let mut storage = ObjectStorage::open_with(
            self.shared.config.storage_root_for(id.namespace()),
            id,
            self.shared.config.durability,
        )
        .map_err(storage_error)?;
        storage.begin().map_err(storage_error)?;
        let Some(due) = storage
            .alarm()
            .map_err(storage_error)?
            .filter(|a| a.due_ms <= now_ms)
        else {
            storage.end(true).map_err(storage_error)?;
            storage.commit().map_err(storage_error)?;
            return Ok(AlarmOutcome::NotDue);
        };
        let policy = self.shared.config.alarms.retry;
        let failed_ms = self.shared.config.clock.now_ms();
        let next =
            alarms::schedule_retry(&storage, due, failed_ms, &policy).map_err(storage_error)?;
        storage.end(true).map_err(storage_error)?;
        storage.commit().map_err(storage_error)?;
        if let Err(e) = self.shared.alarms.set(id, next) {
            warn(id, &format!("failed to update the alarm index: {e}"));
        }
        Ok(AlarmOutcome::Ran {
            retry_count: due.retry_count,
            result: if next.is_some() {
                AlarmResult::WillRetry
            } else {
                AlarmResult::Dropped
            },
            error: Some(error),
        })
    }

    /// Puts an object the delivery could not look at back in the schedule,
    /// one retry delay from now.
    fn defer(&self, id: &ObjectId) {
        let delay = self.shared.config.alarms.retry.first_delay;
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let at = self.shared.config.clock.now_ms().saturating_add(delay_ms);
        self.shared.alarms.retry_later(id, at);
    }

    /// The alarm index, for the background loop.
    pub(super) fn alarm_index(&self) -> &Arc<alarms::AlarmIndex> {
        &self.shared.alarms
    }
}

impl Runtime {
    /// Reports an alarm run: an event, and a warning or error for failures.
    fn report_alarm(&self, id: &ObjectId, outcome: &AlarmOutcome) {
        let AlarmOutcome::Ran {
            retry_count,
            result,
            error,
        } = outcome
        else {
            return;
        };
        self.shared.config.events.emit(&Event::AlarmRan {
            id,
            retry_count: *retry_count,
            outcome: *result,
        });
        let (Some(error), namespace, name) = (error, id.namespace(), id.name()) else {
            return;
        };
        let code = error.code.as_str();
        match result {
            AlarmResult::Dropped => tracing::error!(
                namespace,
                name,
                retry_count,
                code,
                "alarm dropped after its last retry failed: {}",
                error.message
            ),
            AlarmResult::WillRetry => tracing::warn!(
                namespace,
                name,
                retry_count,
                code,
                "alarm failed and will be retried: {}",
                error.message
            ),
            _ => tracing::warn!(
                namespace,
                name,
                retry_count,
                code,
                "alarm failed after setting a new alarm: {}",
                error.message
            ),
        }
    }
}

fn warn(id: &ObjectId, message: &str) {
    tracing::warn!(namespace = id.namespace(), name = id.name(), "{message}");
}
