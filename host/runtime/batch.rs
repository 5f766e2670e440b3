//! Group commit: the dispatches of one object share commits under load.
//!
//! A commit with `Durability::Full` waits for the disk, about a millisecond
//! here, and a dispatch's response may not leave before its writes are
//! committed. When a dispatch ends while others wait for the same object,
//! its writes stay in the open transaction and the next dispatch runs
//! against them (each dispatch in a savepoint of its own, so a trapped one
//! drops only its own writes); its response waits for the commit. The batch
//! is committed when a dispatch ends with nobody waiting, when it holds
//! [`MAX_BATCH`] dispatches or is [`MAX_BATCH_AGE`] old, after a stub call
//! (whose caller holds another object while it waits), and before the
//! actor is discarded, evicted, or runs an alarm. One commit then
//! acknowledges the whole batch, once it is durable (`output_gate.rs`); a
//! failed commit fails every response in it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::oneshot};

use super::{actor::Actor, output_gate::OutputGate};
use crate::{error::DispatchError, storage::LogSync};

/// The most dispatches one commit acknowledges.
pub(super) const MAX_BATCH: usize = 128;

/// The longest a batch stays open under continuous load.
pub(super) const MAX_BATCH_AGE: Duration = Duration::from_millis(10);

/// Where a dispatch learns that its writes were committed.
pub(super) type Ticket = oneshot::Receiver<Result<(), DispatchError>>;

/// What a dispatch in the batch does once the commit is known: answer its
/// caller (a queued client request), or signal its ticket.
pub(super) type Waiter = Box<dyn FnOnce(&Result<(), DispatchError>) + Send>;

/// The dispatches whose writes wait for the next commit.
#[derive(Default)]
pub(super) struct Batch {
    waiting: Vec<Waiter>,
    opened: Option<Instant>,
}

impl Batch {
    /// Adds a dispatch that just ended; returns its ticket.
    pub(super) fn join(&mut self) -> Ticket {
        let (sender, ticket) = oneshot::channel();
        self.join_with(Box::new(move |committed| {
            let _ = sender.send(committed.clone());
        }));
        ticket
    }

    /// Adds a dispatch that just ended, which `waiter` answers once the
    /// batch is committed.
    pub(super) fn join_with(&mut self, waiter: Waiter) {
        if self.waiting.is_empty() {
            self.opened = Some(Instant::now());
        }
        self.waiting.push(waiter);
    }

    /// Whether the batch has waited long enough or grown large enough.
    pub(super) fn is_due(&self) -> bool {
        self.waiting.len() >= MAX_BATCH
            || self
                .opened
                .is_some_and(|opened| opened.elapsed() >= MAX_BATCH_AGE)
    }

    /// Whether no dispatch waits for a commit.
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Commits the actor's open transaction; returns the answers of the
    /// dispatches that waited for it, which leave through `gate` once the
    /// commit is durable.
    pub(super) fn commit(&mut self, actor: &mut Actor, gate: &Arc<OutputGate>) -> Answers {
        let (result, sync) = if actor.has_uncommitted() {
            match actor.commit_unsynced() {
                Ok(sync) => (Ok(()), sync),
                Err(e) => (Err(e), None),
            }
        } else {
            (Ok(()), None)
        };
        self.opened = None;
        Answers {
            waiters: std::mem::take(&mut self.waiting),
            result,
            sync,
            gate: Some(gate.clone()),
        }
    }
}

/// The dispatches a commit acknowledged (or failed), to be told once
/// whoever committed has let go of the object's slot: a caller that has its
/// answer then finds the object idle.
#[must_use = "the dispatches wait until their answers are delivered"]
pub(super) struct Answers {
    waiters: Vec<Waiter>,
    result: Result<(), DispatchError>,
    /// The sync that makes the commit durable, if it needs one.
    sync: Option<LogSync>,
    /// Where the answers wait for syncs.
    gate: Option<Arc<OutputGate>>,
}

impl Answers {
    /// No answers: nothing was committed.
    pub(super) fn none() -> Self {
        Self {
            waiters: Vec::new(),
            result: Ok(()),
            sync: None,
            gate: None,
        }
    }

    /// How many dispatches the commit acknowledged.
    pub(super) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Tells every dispatch how its commit went, once it is durable; a sync
    /// it needs runs on this thread unless one already runs.
    pub(super) fn deliver(self) {
        self.deliver_with(None);
    }

    /// [`deliver`](Self::deliver), with a sync it needs run on a thread of
    /// `workers`.
    pub(super) fn deliver_on(self, workers: &Handle) {
        self.deliver_with(Some(workers));
    }

    fn deliver_with(self, workers: Option<&Handle>) {
        if self.waiters.is_empty() && self.sync.is_none() {
            return;
        }
        // A sync runs even when nobody waits for it: later answers may have
        // read what it makes durable, and it may be the one that covers the
        // database file and the directory.
        match self.gate.clone() {
            Some(gate) => gate.pass(self, workers),
            None => self.release(&Ok(())),
        }
    }

    /// The answers of a commit that went well, for tests of the gate.
    #[cfg(test)]
    pub(super) fn committed(
        waiters: Vec<Waiter>,
        sync: Option<LogSync>,
        gate: &Arc<OutputGate>,
    ) -> Self {
        Self {
            waiters,
            result: Ok(()),
            sync,
            gate: Some(gate.clone()),
        }
    }

    /// Whether the commit waits for a sync of its own.
    pub(super) fn needs_sync(&self) -> bool {
        self.sync.is_some()
    }

    /// The sync the commit waits for.
    pub(super) fn log_sync(&self) -> Option<&LogSync> {
        self.sync.as_ref()
    }

    /// Tells every dispatch how its commit went, given how its sync went.
    pub(super) fn release(self, synced: &Result<(), DispatchError>) {
        let result = match (self.result, synced) {
            (Ok(()), Err(e)) => Err(e.clone()),
            (result, _) => result,
        };
        for waiter in self.waiters {
            waiter(&result);
        }
    }
}

/// What a dispatch answers once its ticket is in; `result` is what the
/// dispatch produced.
pub(super) fn settle<T>(
    result: Result<T, DispatchError>,
    committed: Result<Result<(), DispatchError>, oneshot::error::RecvError>,
) -> Result<T, DispatchError> {
    match committed {
        Ok(committed) => gated(result, &committed),
        Err(_) => Err(uncommitted()),
    }
}

/// What a dispatch answers once its batch is committed (or failed to be).
pub(super) fn gated<T>(
    result: Result<T, DispatchError>,
    committed: &Result<(), DispatchError>,
) -> Result<T, DispatchError> {
    match committed {
        Ok(()) => result,
        Err(commit_failed) => Err(commit_failed.clone()),
    }
}

/// The error of a dispatch whose batch went away without a commit.
pub(super) fn uncommitted() -> DispatchError {
    DispatchError::new(
        crate::ErrorCode::StorageError,
        "the dispatch's writes were not committed: its actor went away",
    )
}
