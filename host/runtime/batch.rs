//! Group commit: the dispatches of one object share commits under load.
//!
//! A commit with `Durability::Full` waits for the disk, about a millisecond
//! here, and a dispatch's response may not leave before its writes are
//! committed. When a dispatch ends while others wait for the same object,
//! its writes stay in the open transaction and the next dispatch runs
//! against them (each dispatch in a savepoint of its own, so a trapped one
//! drops only its own writes); its response waits for the commit. The batch
//! is committed when a dispatch ends with nobody waiting, when it holds
//! [`MAX_BATCH`] dispatches or is [`MAX_BATCH_AGE`] old, and before the
//! actor is discarded, evicted, or runs an alarm. One commit then
//! acknowledges the whole batch (Cloudflare calls the rule that a response
//! waits for its writes an output gate); a failed commit fails every
//! response in it.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::actor::Actor;
use crate::error::DispatchError;

/// The most dispatches one commit acknowledges.
pub(super) const MAX_BATCH: usize = 128;

/// The longest a batch stays open under continuous load.
pub(super) const MAX_BATCH_AGE: Duration = Duration::from_millis(10);

/// Where a dispatch learns that its writes were committed.
pub(super) type Ticket = oneshot::Receiver<Result<(), DispatchError>>;

/// The dispatches whose writes wait for the next commit.
#[derive(Default)]
pub(super) struct Batch {
    waiting: Vec<oneshot::Sender<Result<(), DispatchError>>>,
    opened: Option<Instant>,
}

impl Batch {
    /// Adds a dispatch that just ended; returns its ticket.
    pub(super) fn join(&mut self) -> Ticket {
        let (sender, ticket) = oneshot::channel();
        if self.waiting.is_empty() {
            self.opened = Some(Instant::now());
        }
        self.waiting.push(sender);
        ticket
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

    /// Whether the batch has exactly one dispatch (it was just opened).
    pub(super) fn just_opened(&self) -> bool {
        self.waiting.len() == 1
    }

    /// Commits the actor's open transaction and tells every waiting
    /// dispatch how it went; returns how many there were.
    pub(super) fn commit(&mut self, actor: &mut Actor) -> usize {
        let result = if actor.has_uncommitted() {
            actor.commit()
        } else {
            Ok(())
        };
        self.opened = None;
        let dispatches = self.waiting.len();
        for sender in self.waiting.drain(..) {
            let _ = sender.send(result.clone());
        }
        dispatches
    }
}

/// Waits for a dispatch's ticket; `result` is what the dispatch produced.
pub(super) fn settle<T>(
    result: Result<T, DispatchError>,
    committed: Result<Result<(), DispatchError>, oneshot::error::RecvError>,
) -> Result<T, DispatchError> {
    match committed {
        Ok(Ok(())) => result,
        Ok(Err(commit_failed)) => Err(commit_failed),
        Err(_) => Err(DispatchError::new(
            crate::ErrorCode::StorageError,
            "the dispatch's writes were not committed: its actor went away",
        )),
    }
}
