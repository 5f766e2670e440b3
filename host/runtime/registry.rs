//! The registry of actor slots: at most one live actor per object.
//!
//! A slot is an async mutex around an optional [`Actor`], plus the time it
//! was last used and the object's mailbox of queued client requests
//! (`mailbox.rs`). A dispatch holds the slot's lock for its whole run, which
//! is what serializes dispatches to one object. Eviction only takes slots
//! whose lock is free (an actor in the middle of a dispatch is never
//! evicted), drops the actor and removes the slot from the map, so the map
//! stays as small as the set of live objects.
//!
//! Removing a slot races with a dispatcher that already cloned it and waits
//! for its lock. The evictor therefore marks the slot *retired* while
//! holding its lock; a dispatcher that finds its slot retired fetches the
//! current one from the map again, so two slots (and two actors) never serve
//! one object at the same time. The evictor keeps the slot in the map, and
//! its lock held, until the actor is dropped and its database closed, so a
//! new actor for the object never opens the database while the old one is
//! still closing it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::{
    actor::Actor,
    batch::{Answers, Batch},
    mailbox::Mailbox,
    output_gate::OutputGate,
    waits::WaitGraph,
};
use crate::id::ObjectId;

/// What a slot's lock protects.
#[derive(Default)]
pub(super) struct SlotState {
    /// The live actor, if one is running.
    pub(super) actor: Option<Actor>,
    /// Dispatches whose writes wait for the actor's next commit.
    pub(super) batch: Batch,
    /// Where their answers wait for their commits' syncs.
    pub(super) gate: Arc<OutputGate>,
    /// Set when the slot left the map; its holder must look again.
    retired: bool,
}

impl SlotState {
    /// Commits the batch, if one is waiting; returns the answers of the
    /// dispatches it acknowledged.
    pub(super) fn commit_batch(&mut self) -> Answers {
        match self.actor.as_mut() {
            Some(actor) => self.batch.commit(actor, &self.gate),
            None => Answers::none(),
        }
    }
}

/// One object's place in the registry.
struct Slot {
    /// The object.
    id: ObjectId,
    state: Arc<AsyncMutex<SlotState>>,
    last_used_ms: AtomicU64,
    /// Whether the slot is in the registry's queue of open databases.
    in_open_order: AtomicBool,
    /// Its last use when it was queued there (or passed over).
    open_order_ms: AtomicU64,
    /// Dispatches waiting for the lock (the flusher of a batch does not
    /// count).
    waiting: AtomicUsize,
    /// Client dispatches queued for the object (see `mailbox.rs`).
    mailbox: Arc<Mailbox>,
}

impl Slot {
    fn new(id: ObjectId) -> Self {
        Self {
            id,
            state: Arc::default(),
            last_used_ms: AtomicU64::new(0),
            in_open_order: AtomicBool::new(false),
            open_order_ms: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            mailbox: Arc::default(),
        }
    }
}

/// A held slot: the object's dispatches wait until it is dropped.
pub(super) struct SlotGuard {
    state: OwnedMutexGuard<SlotState>,
    slot: Arc<Slot>,
    id: ObjectId,
    waits: Arc<WaitGraph>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.waits.released(&self.id);
    }
}

/// Why a slot was not acquired.
#[derive(Debug)]
pub(super) enum LockError {
    /// The deadline passed while the object was busy.
    Timeout,
    /// Waiting would close a cycle of chains waiting for each other; the
    /// objects around it, starting with the one asked for.
    Cycle(Vec<ObjectId>),
}

impl SlotGuard {
    /// The slot's state.
    pub(super) fn state(&mut self) -> &mut SlotState {
        &mut self.state
    }

    /// Records that the object was used at `now_ms`.
    pub(super) fn touch(&self, now_ms: u64) {
        self.slot.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// How many dispatches wait for this slot: through its lock or in its
    /// mailbox.
    pub(super) fn others_waiting(&self) -> usize {
        self.lock_waiters() + self.slot.mailbox.len()
    }

    /// How many dispatches wait for this slot's lock (the mailbox's
    /// drainer, when it waits, among them).
    pub(super) fn lock_waiters(&self) -> usize {
        self.slot.waiting.load(Ordering::SeqCst)
    }

    /// Records that call chain `chain` now holds the object: the holder
    /// runs a queued request of that chain.
    pub(super) fn hand_to(&self, chain: u64) {
        self.waits.acquired(chain, &self.id);
    }
}

/// Every object with a slot.
#[derive(Default)]
pub(super) struct Registry {
    slots: Mutex<HashMap<ObjectId, Arc<Slot>>>,
    waits: Arc<WaitGraph>,
    /// Slots whose actors opened their databases, in about the order of
    /// their last use (see [`Registry::close_least_recent_database`]).
    open_order: Mutex<VecDeque<Weak<Slot>>>,
}

/// Entries [`Registry::close_least_recent_database`] looks at before it
/// gives up.
const CLOSE_TRIES: usize = 16;

impl Registry {
    /// Waits, on behalf of call chain `chain`, for the slot of `id`, at most
    /// until `deadline`.
    pub(super) async fn lock(
        &self,
        id: &ObjectId,
        chain: u64,
        deadline: Option<Instant>,
    ) -> Result<SlotGuard, LockError> {
        self.waits
            .start_waiting(chain, id)
            .map_err(LockError::Cycle)?;
        // However this wait ends (even by being cancelled), it is no longer
        // a wait afterwards.
        let _waiting = Waiting {
            waits: &self.waits,
            chain,
        };
        loop {
            let slot = self.slot(id);
            let locking = slot.state.clone().lock_owned();
            let queued = Queued::on(slot.clone());
            let state = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), locking)
                    .await
                    .map_err(|_| LockError::Timeout)?,
                None => locking.await,
            };
            drop(queued);
            if !state.retired {
                self.waits.acquired(chain, id);
                return Ok(self.guard(id, slot, state));
            }
        }
    }

    /// Takes the slot of `id` for chain `chain` if nothing holds it or waits
    /// for it right now.
    pub(super) fn try_lock(&self, id: &ObjectId, chain: u64) -> Option<SlotGuard> {
        let slot = self.slot(id);
        let state = slot.state.clone().try_lock_owned().ok()?;
        if state.retired {
            return None;
        }
        self.waits.acquired(chain, id);
        Some(self.guard(id, slot, state))
    }

    /// Takes the slot of `id` to commit its batch, without counting as a
    /// waiting dispatch; `None` when the slot is gone (whoever retired it
    /// committed).
    pub(super) async fn lock_to_flush(&self, id: &ObjectId) -> Option<SlotGuard> {
        let slot = self.map().get(id).cloned()?;
        let state = slot.state.clone().lock_owned().await;
        if state.retired {
            return None;
        }
        Some(self.guard(id, slot, state))
    }

    /// The mailbox of `id`'s slot (made if the object has none).
    pub(super) fn mailbox(&self, id: &ObjectId) -> Arc<Mailbox> {
        self.slot(id).mailbox.clone()
    }

    /// The guard of `slot` (of `id`), whose lock `state` holds.
    fn guard(
        &self,
        id: &ObjectId,
        slot: Arc<Slot>,
        state: OwnedMutexGuard<SlotState>,
    ) -> SlotGuard {
        SlotGuard {
            state,
            slot,
            id: id.clone(),
            waits: self.waits.clone(),
        }
    }

    fn slot(&self, id: &ObjectId) -> Arc<Slot> {
        let mut slots = self.map();
        slots
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Slot::new(id.clone())))
            .clone()
    }

    /// How many objects have a live actor (or one running a dispatch).
    /// The object of `namespace` with a slot whose hash is `hash`.
    pub(super) fn find_by_hash(&self, namespace: &str, hash: &str) -> Option<ObjectId> {
        self.map()
            .keys()
            .find(|id| id.namespace() == namespace && id.hash() == hash)
            .cloned()
    }

    pub(super) fn live_count(&self) -> usize {
        self.map()
            .values()
            .filter(|slot| slot.state.try_lock().map_or(true, |s| s.actor.is_some()))
            .count()
    }

    /// Evicts the actor of `id` if it is idle; true if one was evicted.
    pub(super) fn evict(&self, id: &ObjectId) -> bool {
        let retiring = self.map().get(id).and_then(retire);
        let Some(retiring) = retiring else {
            return false;
        };
        !self.finish_retiring(vec![retiring]).is_empty()
    }

    /// Calls `release` on each idle actor last used after `after_ms` and at
    /// or before `cutoff_ms` (the actors stay live), least recently used
    /// first, until `budget` has passed. Returns how many it called it on,
    /// and the last-use time up to which it went: `cutoff_ms` when it went
    /// through all, else where the next round should go on from. Rounds
    /// that move the window forward visit each actor about once per
    /// stretch of idleness.
    pub(super) fn release_idle(
        &self,
        after_ms: u64,
        cutoff_ms: u64,
        budget: Instant,
        mut release: impl FnMut(&mut Actor),
    ) -> (usize, u64) {
        let idle = self.by_last_use(|last_used| last_used > after_ms && last_used <= cutoff_ms);
        let mut released = 0;
        for (last_used, slot) in idle {
            if Instant::now() >= budget {
                // Objects last used at this very millisecond come round
                // again; releasing twice is harmless.
                return (released, last_used.saturating_sub(1).max(after_ms));
            }
            if on_idle_actor(&slot, &mut release).is_some() {
                released += 1;
            }
        }
        (released, cutoff_ms)
    }

    /// Records that the actor of `guard`'s slot has its database open, so
    /// that [`close_least_recent_database`] may close it once it is among
    /// the least recently used (nothing when it is recorded already).
    ///
    /// [`close_least_recent_database`]: Self::close_least_recent_database
    pub(super) fn database_opened(&self, guard: &SlotGuard) {
        let slot = &guard.slot;
        if slot.in_open_order.swap(true, Ordering::AcqRel) {
            return;
        }
        slot.open_order_ms
            .store(slot.last_used_ms.load(Ordering::Relaxed), Ordering::Relaxed);
        // Slots that left the map linger until they come round; drop them
        // when they outnumber the rest, so the queue stays as long as the
        // map. (The map's lock is never held while taking the queue's.)
        let slots = self.map().len();
        let mut order = self.open_order();
        order.push_back(Arc::downgrade(slot));
        if order.len() > 2 * slots + 64 {
            order.retain(|slot| slot.strong_count() > 0);
        }
    }

    /// Closes the database of one idle actor among the least recently used
    /// that have theirs open; false when it found none in a few tries. The
    /// actor stays live and opens it again when it next uses storage.
    ///
    /// The order is the one in which actors opened their databases, with a
    /// second chance (a clock): an actor used since it was queued goes to
    /// the back instead, as does one busy now.
    pub(super) fn close_least_recent_database(&self) -> bool {
        for _ in 0..CLOSE_TRIES {
            let Some(queued) = self.open_order().pop_front() else {
                return false;
            };
            let Some(slot) = queued.upgrade() else {
                continue;
            };
            let requeue = || self.open_order().push_back(queued.clone());
            let last_used = slot.last_used_ms.load(Ordering::Relaxed);
            if last_used > slot.open_order_ms.swap(last_used, Ordering::Relaxed) {
                requeue();
                continue;
            }
            let Ok(mut state) = slot.state.try_lock() else {
                requeue();
                continue;
            };
            if !state.batch.is_empty() {
                requeue();
                continue;
            }
            let retired = state.retired;
            match state.actor.as_mut().filter(|_| !retired) {
                Some(actor) if actor.database_is_open() => {
                    if actor.close_idle_database() {
                        slot.in_open_order.store(false, Ordering::Release);
                        return true;
                    }
                    requeue();
                }
                // Closed meanwhile (idle, or evicted): it is queued again
                // when it opens again.
                _ => slot.in_open_order.store(false, Ordering::Release),
            }
        }
        false
    }

    /// The slots whose last use `within` accepts, least recently used
    /// first.
    fn by_last_use(&self, within: impl Fn(u64) -> bool) -> Vec<(u64, Arc<Slot>)> {
        let mut slots: Vec<(u64, Arc<Slot>)> = self
            .map()
            .values()
            .filter_map(|slot| {
                let last_used = slot.last_used_ms.load(Ordering::Relaxed);
                within(last_used).then(|| (last_used, slot.clone()))
            })
            .collect();
        slots.sort_unstable_by_key(|(last_used, _)| *last_used);
        slots
    }

    /// Evicts every idle actor last used at or before `cutoff_ms`, and drops
    /// such slots that have no actor; returns the evicted objects.
    pub(super) fn evict_idle(&self, cutoff_ms: u64) -> Vec<ObjectId> {
        let retiring: Vec<Retiring> = self
            .map()
            .values()
            .filter(|slot| slot.last_used_ms.load(Ordering::Relaxed) <= cutoff_ms)
            .filter_map(retire)
            .collect();
        self.finish_retiring(retiring)
    }

    /// Drops the actors of retired slots (closing their databases) without
    /// the map's lock, then removes the slots and releases them; returns the
    /// objects whose actor was dropped.
    fn finish_retiring(&self, mut retiring: Vec<Retiring>) -> Vec<ObjectId> {
        let mut evicted = Vec::new();
        for entry in &mut retiring {
            if entry.state.actor.take().is_some() {
                evicted.push(entry.id.clone());
            }
        }
        let mut slots = self.map();
        for entry in &retiring {
            if slots
                .get(&entry.id)
                .is_some_and(|slot| Arc::ptr_eq(slot, &entry.slot))
            {
                slots.remove(&entry.id);
            }
        }
        drop(slots);
        // Waiters wake now, find the slot retired and take a new one.
        drop(retiring);
        evicted
    }

    /// Evicts least recently used idle actors when more than `max` are
    /// live; returns the evicted objects.
    ///
    /// Counting live actors and finding the least recently used visit every
    /// slot, so once past the bound it evicts down to a 64th below it: the
    /// next starts find the map within the bound and need neither.
    pub(super) fn enforce_limit(&self, max: usize) -> Vec<ObjectId> {
        // Every live actor has a slot, so a map within the limit needs no
        // count.
        if self.map().len() <= max {
            return Vec::new();
        }
        let live = self.live_count();
        if live <= max {
            return Vec::new();
        }
        self.evict_least_recent(live - max + max / 64)
    }

    /// Evicts the `count` least recently used idle actors (fewer when fewer
    /// are idle); returns the evicted objects. An actor that another thread
    /// evicts meanwhile does not count, so concurrent callers each evict
    /// their own.
    pub(super) fn evict_least_recent(&self, count: usize) -> Vec<ObjectId> {
        let mut retiring = Vec::new();
        for (_, slot) in self.by_last_use(|_| true) {
            if retiring.len() >= count {
                break;
            }
            let Ok(state) = slot.state.clone().try_lock_owned() else {
                continue;
            };
            if !state.retired && state.actor.is_some() {
                retiring.push(retire_held(slot, state));
            }
        }
        self.finish_retiring(retiring)
    }

    /// Retires every slot, waiting for running dispatches until `deadline`;
    /// returns how many slots were still busy at the deadline.
    pub(super) async fn drain(&self, deadline: Instant) -> usize {
        let slots: Vec<Arc<Slot>> = self.map().drain().map(|(_, slot)| slot).collect();
        let mut busy = 0;
        for slot in slots {
            let locking = slot.state.clone().lock_owned();
            match tokio::time::timeout_at(deadline.into(), locking).await {
                Ok(mut state) => {
                    state.commit_batch().deliver();
                    state.gate.wait_idle();
                    state.retired = true;
                    state.actor = None;
                }
                Err(_) => busy += 1,
            }
        }
        busy
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Arc<Slot>>> {
        self.slots.lock().expect("actor registry lock")
    }

    fn open_order(&self) -> std::sync::MutexGuard<'_, VecDeque<Weak<Slot>>> {
        self.open_order.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a dispatch as waiting for a slot while it exists.
struct Queued {
    slot: Arc<Slot>,
}

impl Queued {
    fn on(slot: Arc<Slot>) -> Self {
        slot.waiting.fetch_add(1, Ordering::SeqCst);
        Self { slot }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.slot.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Withdraws a chain's wait when dropped.
struct Waiting<'a> {
    waits: &'a WaitGraph,
    chain: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waits.gave_up(self.chain);
    }
}

/// A slot being retired, held until its actor is dropped.
struct Retiring {
    id: ObjectId,
    slot: Arc<Slot>,
    state: OwnedMutexGuard<SlotState>,
}

/// Runs `f` on the actor of `slot` when the slot is idle: not held, not
/// retired, no commit waiting, an actor live. `None` when it is not.
fn on_idle_actor<T>(slot: &Slot, f: impl FnOnce(&mut Actor) -> T) -> Option<T> {
    let mut state = slot.state.try_lock().ok()?;
    if state.retired || !state.batch.is_empty() {
        return None;
    }
    state.actor.as_mut().map(f)
}

/// Retires an idle slot: `None` when the slot is busy. Its actor is dropped
/// by [`Registry::finish_retiring`] once the map's lock is released, since
/// dropping closes the database.
fn retire(slot: &Arc<Slot>) -> Option<Retiring> {
    let state = slot.state.clone().try_lock_owned().ok()?;
    Some(retire_held(slot.clone(), state))
}

/// Retires `slot`, whose lock `state` holds.
fn retire_held(slot: Arc<Slot>, mut state: OwnedMutexGuard<SlotState>) -> Retiring {
    state.commit_batch().deliver();
    // A later slot for the object has a gate of its own: every answer that
    // waits for a sync here leaves before it can answer anything.
    state.gate.wait_idle();
    state.retired = true;
    Retiring {
        id: slot.id.clone(),
        slot,
        state,
    }
}
