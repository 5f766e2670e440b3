//! The runtime's background work: the alarm loop, the idle evictor, the
//! rounds in which idle actors release what they hold, and the orderly
//! shutdown that stops them.
//!
//! The loops hold only a weak reference to the runtime between rounds, so a
//! runtime dropped without [`Runtime::shutdown`] still goes away.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::{Runtime, Shared};
use crate::{events::StopReason, id::ObjectId};

/// The share of the time between rounds of idle release that one round
/// may work (a tenth of a core at most).
const RELEASE_ROUND_SHARE: u32 = 10;

/// How often idle actors that have been idle for `after` are looked for: a
/// few times per `after`, so an actor releases soon after it has been idle
/// that long.
fn release_round(after: Duration) -> Duration {
    (after / 4).max(Duration::from_millis(50))
}

/// How many alarms are delivered at the same time, at most.
const MAX_CONCURRENT_ALARMS: usize = 32;

/// The running loops.
pub(super) struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What [`Runtime::release_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleRelease {
    /// Idle actors it visited.
    pub actors: usize,
    /// Databases it closed.
    pub databases: usize,
    /// Bytes of memory pages the actors gave back.
    pub bytes: usize,
    /// Whether it visited every actor that was due (else its budget ran
    /// out, and the next call goes on).
    pub complete: bool,
}

/// What [`Runtime::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Objects whose dispatch was still running when the grace period ended;
    /// their uncommitted writes are lost, acknowledged ones are not.
    pub still_busy: usize,
}

impl Runtime {
    /// Starts the alarm loop, the idle evictor and the idle release on the
    /// current tokio runtime, as the configuration asks. A second call does
    /// nothing.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start_background(&self) {
        let mut background = self.shared.background.lock().expect("background lock");
        if background.is_some() || self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let weak = Arc::downgrade(&self.shared);
        if let Some(interval) = self.shared.config.alarms.interval {
            tasks.push(tokio::spawn(alarm_loop(
                weak.clone(),
                stopped.clone(),
                interval,
            )));
        }
        let eviction = &self.shared.config.eviction;
        if let (Some(_), Some(interval)) = (eviction.idle_timeout, eviction.idle_interval) {
            let evict = |runtime: &Runtime| {
                runtime.evict_idle();
            };
            tasks.push(tokio::spawn(every(
                weak.clone(),
                stopped.clone(),
                interval,
                evict,
            )));
        }
        if let Some(after) = eviction.idle_release {
            let round = release_round(after);
            let release = |runtime: &Runtime| {
                runtime.release_idle();
            };
            tasks.push(tokio::spawn(every(weak, stopped, round, release)));
        }
        *background = Some(Background { stop, tasks });
    }

    /// Evicts the actor of `id` if it is idle (its state stays on disk);
    /// true if an actor was evicted. A busy actor is never evicted.
    pub fn evict(&self, id: &ObjectId) -> bool {
        let evicted = self.shared.registry.evict(id);
        if evicted {
            self.stopped(id, StopReason::Evicted);
        }
        evicted
    }

    /// Evicts every actor idle for longer than the idle timeout, by the
    /// runtime's clock; returns how many. Does nothing when idle eviction is
    /// disabled.
    pub fn evict_idle(&self) -> usize {
        let Some(timeout) = self.shared.config.eviction.idle_timeout else {
            return 0;
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.shared.config.clock.now_ms().saturating_sub(timeout_ms);
        let evicted = self.shared.registry.evict_idle(cutoff);
        for id in &evicted {
            self.stopped(id, StopReason::Idle);
        }
        evicted.len()
    }

    /// Has every live actor idle for longer than `idle_release`, by the
    /// runtime's clock, close its database and give back the memory pages
    /// it has not changed (the actors stay live; their next dispatch opens
    /// the database again), least recently used first, working at most a
    /// tenth of the time between the background loop's rounds; the next
    /// call goes on where this one stopped. Each stretch of an actor's
    /// idleness is looked at about once. Does nothing when the setting is
    /// off.
    pub fn release_idle(&self) -> IdleRelease {
        let Some(after) = self.shared.config.eviction.idle_release else {
            return IdleRelease::default();
        };
        self.release_idle_for(release_round(after) / RELEASE_ROUND_SHARE)
    }

    /// [`release_idle`](Self::release_idle), working at most `budget`.
    pub fn release_idle_for(&self, budget: Duration) -> IdleRelease {
        let Some(after) = self.shared.config.eviction.idle_release else {
            return IdleRelease::default();
        };
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.shared.config.clock.now_ms().saturating_sub(after_ms);
        let from = self.shared.released_until_ms.load(Ordering::SeqCst);
        if cutoff <= from {
            return IdleRelease {
                complete: true,
                ..IdleRelease::default()
            };
        }
        let pristine = self
            .shared
            .pristine
            .as_ref()
            .map(|p| p.lock().expect("pristine lock"));
        let pristine = pristine.as_ref().and_then(|p| p.pristine());
        let (mut databases, mut bytes) = (0, 0);
        // Releasing costs about half a millisecond of CPU per actor (page
        // comparisons, and the TLB interrupts that dropping pages costs).
        // A round stops after its budget; the next goes on.
        // TODO: with the budget, a hot object served while 5,000 actors are
        // released loses a fifth of its throughput and its p99 nearly
        // doubles (12,700 to 10,100/s, 4.9 to 8.8 ms at 32 connections);
        // not from malloc_trim (the same without it) nor from CPU share
        // alone. Find what stalls it.
        let budget = Instant::now() + budget;
        let (visited, until) = self
            .shared
            .registry
            .release_idle(from, cutoff, budget, |actor| {
                databases += usize::from(actor.close_idle_database());
                if let Some(pristine) = &pristine {
                    bytes += actor.release_unchanged_pages(pristine);
                }
            });
        self.shared.released_until_ms.store(until, Ordering::SeqCst);
        if databases > 0 {
            // The connections' memory went back to the allocator, which
            // keeps it mapped unless asked.
            // TODO: trimming walks the whole heap under the allocator's
            // lock (tens of milliseconds with gigabytes in use), which
            // other threads' allocations wait for.
            crate::os::trim_heap();
        }
        if visited > 0 {
            tracing::debug!(
                visited,
                databases,
                bytes,
                "idle actors released what they held"
            );
        }
        IdleRelease {
            actors: visited,
            databases,
            bytes,
            complete: until == cutoff,
        }
    }

    /// Stops the background loops, refuses new dispatches, waits at most
    /// `grace` for running ones to finish and commit, and closes every
    /// actor and its database; then releases the storage roots (unless a
    /// dispatch is still running), so another runtime may open them.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let deadline = Instant::now() + grace;
        self.shared.stopping.store(true, Ordering::SeqCst);
        let background = self
            .shared
            .background
            .lock()
            .expect("background lock")
            .take();
        if let Some(background) = background {
            let _ = background.stop.send(true);
            // A loop in the middle of a long dispatch (an alarm) stops when
            // it ends; the drain below waits for that dispatch anyway.
            for task in background.tasks {
                if tokio::time::timeout_at(deadline.into(), task)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let still_busy = self.shared.registry.drain(deadline).await;
        if still_busy > 0 {
            tracing::warn!(still_busy, "shutdown left dispatches running");
        } else {
            // Every database is closed: another runtime may take the roots.
            self.shared.locks.lock().expect("locks lock").clear();
        }
        ShutdownReport { still_busy }
    }
}

/// Delivers due alarms as they come due: sleeps until the earliest one, at
/// most `interval`, and wakes early when the schedule changes.
async fn alarm_loop(shared: Weak<Shared>, mut stop: watch::Receiver<bool>, interval: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_ALARMS));
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let runtime = Runtime { shared };
        let index = runtime.alarm_index().clone();
        let now_ms = runtime.shared.config.clock.now_ms();
        for id in index.take_due(now_ms, slots.available_permits()) {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let runtime = runtime.clone();
            tokio::spawn(async move {
                runtime.deliver_alarm(id).await;
                drop(permit);
            });
        }
        let next_due = index.next_due();
        drop(runtime);
        if next_due.is_some_and(|due| due <= now_ms) {
            // More are due than may run at once: wait for one to finish.
            tokio::select! {
                permit = slots.acquire() => drop(permit),
                _ = stop.changed() => return,
            }
            continue;
        }
        let wait = next_due
            .map_or(interval, |due| Duration::from_millis(due - now_ms))
            .min(interval);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = index.changed().notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs `round` on a blocking thread every `interval`, until stopped or
/// the runtime is gone.
async fn every(
    shared: Weak<Shared>,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
    round: fn(&Runtime),
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let runtime = Runtime { shared };
        let _ = tokio::task::spawn_blocking(move || round(&runtime)).await;
    }
}
