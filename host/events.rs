//! What happens inside a runtime, for observers.
//!
//! Every [`Event`] is written to the log as a `tracing` event with target
//! `go_go_objects::events`, a stable `event` field (`dispatch.end`,
//! `actor.start`, `actor.stop`, `storage.commit`, `alarm.run`) and the
//! object's `namespace`
//! and `name`; and, when the runtime was given one, passed to an
//! [`EventHook`]. Hooks run on the dispatching thread, inside the object's
//! turn: they must be quick and must not dispatch to the runtime.

use std::{fmt, sync::Arc, time::Duration};

use crate::{error::DispatchError, id::ObjectId};

/// Something that happened to one object.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A client, a stub call or the runner dispatched to the object.
    Dispatched {
        /// The object.
        id: &'a ObjectId,
        /// `"rpc"` or `"fetch"`.
        kind: &'static str,
        /// The RPC method, for `"rpc"`.
        method: Option<&'a str>,
        /// From getting the object's turn to the result.
        elapsed: Duration,
        /// The fuel the dispatch consumed, when it ran.
        fuel: Option<u64>,
        /// How it failed, if it did.
        error: Option<&'a DispatchError>,
    },
    /// An actor started: instantiated, bundle loaded, object constructed.
    ActorStarted {
        /// The object.
        id: &'a ObjectId,
        /// The class that serves it.
        class: &'a str,
        /// How long the start took.
        elapsed: Duration,
    },
    /// An actor stopped; its state stays on disk.
    ActorStopped {
        /// The object.
        id: &'a ObjectId,
        /// Why.
        reason: StopReason,
    },
    /// The writes of some dispatches were committed together.
    Committed {
        /// The object.
        id: &'a ObjectId,
        /// How many dispatches the commit acknowledged.
        dispatches: usize,
    },
    /// An alarm handler ran.
    AlarmRan {
        /// The object.
        id: &'a ObjectId,
        /// Which retry this run was (0 for the first).
        retry_count: u32,
        /// How it ended.
        outcome: AlarmResult,
    },
}

/// Why an actor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// It trapped, ran out of fuel, time or memory, or could never settle.
    Discarded,
    /// It was idle for the idle timeout.
    Idle,
    /// The live-object limit evicted it (least recently used).
    LiveLimit,
    /// Another actor needed memory and all actors together were at the
    /// memory budget (least recently used).
    MemoryPressure,
    /// [`crate::Runtime::evict`] asked for it.
    Evicted,
}

/// How an alarm run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlarmResult {
    /// The handler succeeded.
    Succeeded,
    /// The handler failed and will run again.
    WillRetry,
    /// The handler failed and its alarm was dropped for good.
    Dropped,
    /// The handler failed after setting a new alarm, which replaces the
    /// retries.
    Replaced,
}

/// Receives the runtime's [`Event`]s.
pub trait EventHook: Send + Sync + 'static {
    /// Called for every event, on the thread where it happened.
    fn on_event(&self, event: &Event<'_>);
}

impl<F> EventHook for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// An optional shared hook, as the runtime configuration holds it.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<dyn EventHook>>);

impl Events {
    /// Events go to `hook` (and to the log).
    pub fn to(hook: impl EventHook) -> Self {
        Self(Some(Arc::new(hook)))
    }

    /// Logs `event` and passes it to the hook.
    pub(crate) fn emit(&self, event: &Event<'_>) {
        log(event);
        if let Some(hook) = &self.0 {
            hook.on_event(event);
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(hook)"
        } else {
            "Events(log only)"
        })
    }
}

fn log(event: &Event<'_>) {
    const TARGET: &str = "go_go_objects::events";
    match event {
        Event::Dispatched {
            id,
            kind,
            method,
            elapsed,
            fuel,
            error,
        } => tracing::debug!(
            target: TARGET,
            event = "dispatch.end",
            namespace = id.namespace(),
            name = id.name(),
            kind,
            method,
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            fuel,
            code = error.map(|e| e.code.as_str()),
            "dispatch {}",
            if error.is_some() { "failed" } else { "finished" }
        ),
        Event::ActorStarted { id, class, elapsed } => tracing::info!(
            target: TARGET,
            event = "actor.start",
            namespace = id.namespace(),
            name = id.name(),
            class,
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "actor started"
        ),
        Event::ActorStopped { id, reason } => tracing::info!(
            target: TARGET,
            event = "actor.stop",
            namespace = id.namespace(),
            name = id.name(),
            reason = ?reason,
            "actor stopped"
        ),
        Event::Committed { id, dispatches } => tracing::trace!(
            target: TARGET,
            event = "storage.commit",
            namespace = id.namespace(),
            name = id.name(),
            dispatches,
            "committed"
        ),
        Event::AlarmRan {
            id,
            retry_count,
            outcome,
        } => tracing::debug!(
            target: TARGET,
            event = "alarm.run",
            namespace = id.namespace(),
            name = id.name(),
            retry_count,
            outcome = ?outcome,
            "alarm ran"
        ),
    }
}
