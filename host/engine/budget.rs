//! The memory budget shared by every actor of a runtime.
//!
//! Each actor's linear memory is capped on its own (`--max-memory`), but a
//! thousand live actors each allowed 128 MiB could together take far more
//! than the machine has. [`MemoryBudget`] bounds the sum: an actor's memory
//! limiter reserves from it whatever its memory grows by, and gives it back
//! when the actor is dropped. When a reservation does not fit, the budget
//! first asks its [`Reclaim`] hook (the runtime, which evicts idle actors)
//! to make room, and refuses only when that is not enough.
//!
//! What is counted: an actor's growth past its image's initial memory, plus
//! [`ACTOR_BASELINE`] for the pages of the image it writes to. Memory an
//! actor never grows is shared with the image and mostly not resident, so
//! counting it whole would count the C stack and the snapshot once per
//! actor.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// What every live actor is counted for besides its growth: about what one
/// holds of the image it writes to (its stack, QuickJS's state).
pub(crate) const ACTOR_BASELINE: u64 = 1 << 20;

/// Frees memory on behalf of the budget.
pub(crate) trait Reclaim: Send + Sync {
    /// Drops idle actors until `bytes` more would fit, or none is left to
    /// drop; true when they fit now (another thread may take the room
    /// before the caller does, and the caller then asks again).
    fn reclaim(&self, bytes: u64) -> bool;
}

/// The bytes all actors of a runtime may hold together.
pub(crate) struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    reclaim: OnceLock<Box<dyn Reclaim>>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish_non_exhaustive()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            reclaim: OnceLock::new(),
        }
    }

    /// Sets what frees memory when a reservation does not fit (once).
    pub(crate) fn set_reclaim(&self, reclaim: impl Reclaim + 'static) {
        let _ = self.reclaim.set(Box::new(reclaim));
    }

    /// The limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, reclaiming idle actors' memory when they do not fit;
    /// false when they still do not.
    pub(crate) fn reserve(&self, bytes: u64) -> bool {
        loop {
            if self.try_reserve(bytes) {
                return true;
            }
            let room = self.reclaim.get().is_some_and(|r| r.reclaim(bytes));
            if !room {
                return self.try_reserve(bytes);
            }
        }
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` reserved earlier.
    pub(crate) fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_come_back() {
        let budget = MemoryBudget::new(10);
        assert!(budget.reserve(6));
        assert!(!budget.reserve(5), "nothing to reclaim");
        assert!(budget.reserve(4));
        budget.release(6);
        assert_eq!(budget.used(), 4);
        assert!(budget.reserve(6));
    }

    #[test]
    fn a_reservation_that_does_not_fit_asks_for_room_first() {
        struct Evictor {
            budget: Mutex<Option<Arc<MemoryBudget>>>,
            held: Mutex<Vec<u64>>,
        }
        impl Reclaim for Arc<Evictor> {
            fn reclaim(&self, _bytes: u64) -> bool {
                let Some(freed) = self.held.lock().unwrap().pop() else {
                    return false;
                };
                if let Some(budget) = self.budget.lock().unwrap().as_ref() {
                    budget.release(freed);
                }
                true
            }
        }
        let budget = Arc::new(MemoryBudget::new(10));
        let evictor = Arc::new(Evictor {
            budget: Mutex::new(Some(budget.clone())),
            held: Mutex::new(vec![3, 4]),
        });
        budget.set_reclaim(evictor.clone());
        assert!(budget.reserve(3) && budget.reserve(4));
        // 7 of 10 used by the two "idle actors": 8 fits after both go.
        assert!(budget.reserve(8));
        assert!(evictor.held.lock().unwrap().is_empty());
        assert!(!budget.reserve(3), "nothing left to reclaim");
        // Break the cycle the test built.
        evictor.budget.lock().unwrap().take();
    }
}
