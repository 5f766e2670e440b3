//! Mailboxes: the client dispatches queued for one object run back to back
//! on the thread that holds it.
//!
//! Were each dispatch to wait for its object's slot on its own task, every
//! hand-over between two dispatches of a busy object would wake the next
//! one's task and then a dispatch thread for it, while the object sat
//! unused: two thread wake-ups in the path of every dispatch. A client
//! dispatch instead leaves its request in the object's mailbox. Whoever
//! finds the mailbox without a drainer starts one on a dispatch thread; the
//! drainer takes the object's slot and runs the queued requests one after
//! another until the mailbox is empty. Group commit counts the queued
//! requests as waiting dispatches, so their writes share commits, and each
//! caller is woken once: with its result, when the commit holding its
//! writes is done.
//!
//! Between two requests the drainer gives the slot up when something waits
//! for it through the registry's lock (an alarm, a stub call from another
//! object), and a new drainer takes it again behind them, so a busy mailbox
//! never starves those. No dispatch thread ever blocks on a slot's lock: a
//! drainer that cannot take the slot at once waits for it on a task first.
//! A request whose caller went away before it started is skipped. Stub
//! calls never use a mailbox: they wait for the lock under their chain's
//! deadline and its cycle check.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, atomic::Ordering},
};

use tokio::sync::oneshot;

use super::{Runtime, batch, registry::SlotGuard};
use crate::{
    envelope::{DispatchKind, DispatchOutput},
    error::{DispatchError, ErrorCode},
    hostcalls::CallContext,
    id::ObjectId,
};

/// What a caller gets back once the commit that holds the dispatch's writes
/// is in: the dispatch's result, or why it failed or never ran.
pub(super) type Outcome = Result<DispatchOutput, DispatchError>;

/// One queued client dispatch.
pub(super) struct Letter {
    /// The class serving the object's namespace.
    pub(super) class: String,
    /// What to deliver.
    pub(super) kind: DispatchKind,
    /// Where the outcome goes.
    pub(super) reply: oneshot::Sender<Outcome>,
}

/// The requests queued for one object, and whether a drainer runs them.
#[derive(Default)]
pub(super) struct Mailbox {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    letters: VecDeque<Letter>,
    draining: bool,
}

impl Mailbox {
    /// Queues `letter`; true when the mailbox had no drainer, and the caller
    /// must start one.
    pub(super) fn post(&self, letter: Letter) -> bool {
        let mut queue = self.queue();
        queue.letters.push_back(letter);
        !std::mem::replace(&mut queue.draining, true)
    }

    /// The next request; `None` when the mailbox is empty, and the drainer
    /// that asked is no longer its drainer.
    fn next(&self) -> Option<Letter> {
        let mut queue = self.queue();
        let letter = queue.letters.pop_front();
        if letter.is_none() {
            queue.draining = false;
        }
        letter
    }

    /// Whether requests wait for a drainer that gives the slot up; when
    /// none do, it is no longer the mailbox's drainer.
    fn keeps_drainer(&self) -> bool {
        let mut queue = self.queue();
        queue.draining = !queue.letters.is_empty();
        queue.draining
    }

    /// Answers every queued request with `error`; the mailbox has no
    /// drainer afterwards.
    fn refuse_all(&self, error: &DispatchError) {
        let letters: Vec<Letter> = {
            let mut queue = self.queue();
            queue.draining = false;
            queue.letters.drain(..).collect()
        };
        for letter in letters {
            let _ = letter.reply.send(Err(error.clone()));
        }
    }

    /// How many requests wait.
    pub(super) fn len(&self) -> usize {
        self.queue().letters.len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lets the mailbox go if its drainer unwinds: the queued requests are
/// dropped (their callers learn that the dispatch failed) and the next post
/// starts a new drainer.
struct Abandon<'a>(&'a Mailbox);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue();
            queue.letters.clear();
            queue.draining = false;
        }
    }
}

impl Runtime {
    /// Starts the drainer of `mailbox`, which holds requests for `id`: on a
    /// dispatch thread at once when the object's slot is free, else once a
    /// task has waited for the slot.
    pub(super) fn start_drainer(&self, id: ObjectId, mailbox: Arc<Mailbox>) {
        let chain = self.shared.next_chain_id.fetch_add(1, Ordering::Relaxed);
        let workers = self.shared.workers.handle();
        let runtime = self.clone();
        if let Some(guard) = self.shared.registry.try_lock(&id, chain) {
            drop(workers.spawn_blocking(move || runtime.drain(guard, &id, &mailbox)));
            return;
        }
        let threads = workers.clone();
        drop(workers.spawn(async move {
            match runtime.acquire(&id, CallContext::default()).await {
                Ok((guard, _)) => {
                    drop(threads.spawn_blocking(move || runtime.drain(guard, &id, &mailbox)));
                }
                Err(e) => mailbox.refuse_all(&e),
            }
        }));
    }

    /// Runs the requests queued in `mailbox` for `id` with its slot held,
    /// until the mailbox is empty or something else waits for the slot.
    /// Answers go out before the next request runs, and after the slot is
    /// let go of when none is left, so a caller with its answer finds the
    /// object idle.
    fn drain(&self, mut guard: SlotGuard, id: &ObjectId, mailbox: &Arc<Mailbox>) {
        let _abandon = Abandon(mailbox);
        let mut outbox = Outbox::default();
        while let Some(letter) = mailbox.next() {
            // The object goes on while their commit is synced.
            outbox.send_later(self, id);
            if letter.reply.is_closed() {
                continue;
            }
            let Letter { class, kind, reply } = letter;
            let ran = self.refuse_when_stopping().and_then(|()| {
                let context = self.client_context(id);
                guard.hand_to(context.chain_id);
                self.run_held(&mut guard, id, &class, &kind, &context)
            });
            match ran {
                Ok(result) => {
                    // The answer leaves with the commit of its writes.
                    guard.state().batch.join_with(Box::new(move |committed| {
                        let _ = reply.send(batch::gated(result, committed));
                    }));
                    outbox
                        .answers
                        .push(self.end_batched_dispatch(&mut guard, id));
                }
                Err(e) => outbox.refused.push((reply, e)),
            }
            if guard.lock_waiters() > 0 {
                // An alarm or a stub call goes first; the rest of the
                // mailbox queues behind it. Either commits the open batch
                // before it runs, unless it gives up waiting first.
                if !guard.state().batch.is_empty() {
                    self.flush_later(id.clone());
                }
                drop(guard);
                outbox.send(self, id);
                if mailbox.keeps_drainer() {
                    self.start_drainer(id.clone(), mailbox.clone());
                }
                return;
            }
        }
        if !guard.state().batch.is_empty() {
            // The last requests' callers went away while the batch stayed
            // open for them.
            outbox.answers.push(guard.state().commit_batch());
        }
        drop(guard);
        outbox.send(self, id);
    }
}

/// Answers a drainer has not sent yet.
#[derive(Default)]
struct Outbox {
    answers: Vec<batch::Answers>,
    refused: Vec<(oneshot::Sender<Outcome>, DispatchError)>,
}

impl Outbox {
    /// Sends the answers, running a sync they need on this thread.
    fn send(&mut self, runtime: &Runtime, id: &ObjectId) {
        for answers in self.answers.drain(..) {
            runtime.answer(id, answers);
        }
        self.send_refused();
    }

    /// Sends the answers, running a sync they need on a thread of its own.
    fn send_later(&mut self, runtime: &Runtime, id: &ObjectId) {
        for answers in self.answers.drain(..) {
            runtime.answer_later(id, answers);
        }
        self.send_refused();
    }

    fn send_refused(&mut self) {
        for (reply, error) in self.refused.drain(..) {
            let _ = reply.send(Err(error));
        }
    }
}

/// The error of a request that was dropped without an answer: its drainer
/// panicked, or its batch went away uncommitted.
pub(super) fn unanswered() -> DispatchError {
    DispatchError::new(
        ErrorCode::ExecutionError,
        "the dispatch ended without an answer: its actor went away",
    )
}
