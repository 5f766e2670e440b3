//! The output gate: the answers of an object's dispatches leave only once
//! the writes they may have seen are durable, in the order they were
//! committed.
//!
//! With `Durability::Full` a commit is written into the object's log
//! unsynced, and the sync that makes it durable (a [`LogSync`]) runs after.
//! When the object is idle the thread that committed runs the sync itself.
//! When more dispatches wait for the object, the sync runs on a thread of
//! its own while the object goes on with them: their writes go into later
//! commits, and one sync covers every commit written before it started, so
//! under load syncs are shared the way commits are (`batch.rs`).
//!
//! Answers that wait for no sync of their own still leave after those
//! already waiting: a dispatch that only read may have read writes whose
//! sync is still running. When a sync fails, every answer waiting at the
//! gate fails with it, as does every later one until the object's actor is
//! replaced (the runtime discards it: the log can no longer be trusted).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::runtime::Handle;

use super::batch::Answers;
use crate::{
    error::{DispatchError, ErrorCode},
    storage::LogSync,
};

/// One object's gate (see the module docs).
#[derive(Default)]
pub(super) struct OutputGate {
    state: Mutex<GateState>,
    /// Signalled when a sync ends and nothing waits at the gate.
    idle: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Answers waiting for the sync that runs, in commit order.
    waiting: Vec<Answers>,
    /// Whether a sync runs (and its thread will pass `waiting` too).
    syncing: bool,
    /// Why a sync failed, until the actor is replaced.
    failed: Option<DispatchError>,
}

impl OutputGate {
    /// Lets `answers` through once the writes they may have seen are
    /// durable. A sync that is needed while none runs runs on this thread,
    /// or on a thread of `background` when given.
    pub(super) fn pass(self: &Arc<Self>, answers: Answers, background: Option<&Handle>) {
        let mut state = self.state();
        if state.syncing {
            state.waiting.push(answers);
            return;
        }
        if let Some(failed) = &state.failed {
            let failed = failed.clone();
            drop(state);
            answers.release(&Err(failed));
            return;
        }
        if !answers.needs_sync() {
            drop(state);
            answers.release(&Ok(()));
            return;
        }
        state.syncing = true;
        state.waiting.push(answers);
        drop(state);
        match background {
            Some(workers) => {
                let gate = Arc::clone(self);
                drop(workers.spawn_blocking(move || gate.run_syncs()));
            }
            None => self.run_syncs(),
        }
    }

    /// Runs syncs until no answer waits for one.
    fn run_syncs(&self) {
        loop {
            let (answers, failed) = {
                let mut state = self.state();
                if state.waiting.is_empty() {
                    state.syncing = false;
                    drop(state);
                    self.idle.notify_all();
                    return;
                }
                (std::mem::take(&mut state.waiting), state.failed.clone())
            };
            let synced = match failed {
                Some(failed) => Err(failed),
                None => sync_all(&answers),
            };
            if let Err(e) = &synced {
                self.state().failed.get_or_insert_with(|| e.clone());
            }
            for answers in answers {
                answers.release(&synced);
            }
        }
    }

    /// Whether a sync failed since the actor started: the actor must be
    /// replaced.
    pub(super) fn has_failed(&self) -> bool {
        self.state().failed.is_some()
    }

    /// Opens the gate to a new actor after a failed sync, once every answer
    /// of the old one is out: later answers wait for its syncs only.
    pub(super) fn reset(&self) {
        self.wait_idle();
        self.state().failed = None;
    }

    /// Waits until no sync runs, so that every answer passed so far is out.
    pub(super) fn wait_idle(&self) {
        let mut state = self.state();
        while state.syncing {
            state = self.idle.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs one sync that covers every commit of `answers`.
fn sync_all(answers: &[Answers]) -> Result<(), DispatchError> {
    let mut syncs = answers.iter().filter_map(Answers::log_sync).cloned();
    let Some(mut sync) = syncs.next() else {
        return Ok(());
    };
    syncs.for_each(|other| sync.absorb(other));
    perform(&sync)
}

fn perform(sync: &LogSync) -> Result<(), DispatchError> {
    sync.perform().map_err(|e| {
        tracing::error!("a commit could not be made durable: {e}");
        DispatchError::new(ErrorCode::StorageError, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::{
        path::Path,
        sync::mpsc::{self, Receiver},
        time::Duration,
    };

    use super::*;
    use crate::runtime::batch::Waiter;

    /// A waiter that reports `label` and how its commit went on `sent`.
    fn waiter(label: &'static str, sent: &mpsc::Sender<(&'static str, bool)>) -> Vec<Waiter> {
        let sent = sent.clone();
        vec![Box::new(move |result: &Result<(), DispatchError>| {
            let _ = sent.send((label, result.is_ok()));
        })]
    }

    fn released(received: &Receiver<(&'static str, bool)>) -> Option<(&'static str, bool)> {
        received.recv_timeout(Duration::from_millis(200)).ok()
    }

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("log-wal");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success(), "mkfifo failed");
        path
    }

    #[test]
    fn answers_leave_after_the_sync_they_wait_for_and_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(OutputGate::default());
        let (sent, received) = mpsc::channel();

        // Idle: an answer without a sync leaves at once; one with a sync
        // leaves once this thread has synced.
        gate.pass(Answers::committed(waiter("read", &sent), None, &gate), None);
        assert_eq!(released(&received), Some(("read", true)));
        let log = dir.path().join("real-wal");
        std::fs::write(&log, b"frames").unwrap();
        let sync = LogSync::of_file(log);
        gate.pass(
            Answers::committed(waiter("wrote", &sent), Some(sync), &gate),
            None,
        );
        assert_eq!(released(&received), Some(("wrote", true)));

        // A sync that blocks (opening a FIFO waits for a writer) runs on a
        // thread of its own; answers passed meanwhile wait behind it, even
        // those that need no sync, and fail with it.
        let tokio = tokio::runtime::Runtime::new().unwrap();
        let blocking = fifo(dir.path());
        let sync = LogSync::of_file(blocking.clone());
        gate.pass(
            Answers::committed(waiter("first", &sent), Some(sync), &gate),
            Some(tokio.handle()),
        );
        gate.pass(
            Answers::committed(waiter("later read", &sent), None, &gate),
            None,
        );
        assert_eq!(
            released(&received),
            None,
            "nothing leaves while the sync runs"
        );
        // Let the sync open the FIFO; syncing a FIFO fails.
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&blocking)
            .unwrap();
        assert_eq!(released(&received), Some(("first", false)));
        assert_eq!(released(&received), Some(("later read", false)));
        gate.wait_idle();
        assert!(gate.has_failed());

        // Until the actor is replaced, every answer fails.
        gate.pass(
            Answers::committed(waiter("doubt", &sent), None, &gate),
            None,
        );
        assert_eq!(released(&received), Some(("doubt", false)));
        gate.reset();
        assert!(!gate.has_failed());
        gate.pass(
            Answers::committed(waiter("fresh", &sent), None, &gate),
            None,
        );
        assert_eq!(released(&received), Some(("fresh", true)));
    }

    #[test]
    fn a_sync_that_nobody_waits_for_still_runs_before_later_answers() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(OutputGate::default());
        let (sent, received) = mpsc::channel();
        // A commit whose dispatches were answered already (or had nobody to
        // answer) still leaves a sync: later answers may read its writes.
        let tokio = tokio::runtime::Runtime::new().unwrap();
        let blocking = fifo(dir.path());
        Answers::committed(Vec::new(), Some(LogSync::of_file(blocking.clone())), &gate)
            .deliver_on(tokio.handle());
        gate.pass(
            Answers::committed(waiter("read after", &sent), None, &gate),
            None,
        );
        assert_eq!(released(&received), None, "the read waits for the sync");
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&blocking)
            .unwrap();
        assert_eq!(released(&received), Some(("read after", false)));
        gate.wait_idle();
        assert!(gate.has_failed(), "the sync ran, and failed");
    }
}
