//! Time as the runtime sees it.
//!
//! Everything that depends on the time of day goes through one [`Clock`]:
//! when an alarm is due, how long a retry waits, how long an actor has been
//! idle, and what `Date.now()` answers inside JavaScript (the guest's WASI
//! clock reads it, except in deterministic mode). Production uses [`SystemClock`];
//! tests and embedders that want to control time use [`ManualClock`], so no
//! test waits seconds of real time for an alarm or an eviction.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Where `Date.now()` starts in deterministic mode: 2026-01-01T00:00:00Z.
pub const DETERMINISTIC_EPOCH_MS: u64 = 1_767_225_600_000;

/// How much fuel one logical millisecond takes in deterministic mode
/// (roughly what this project's machines burn in a real millisecond).
pub const FUEL_PER_MILLISECOND: u64 = 10_000_000;

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Waits `duration` (a guest timer): the thread sleeps, unless the
    /// clock only moves when told to.
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The machine's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_ms` until it is advanced.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// Moves the clock on instead of waiting, so timers in tests fire at
    /// once.
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

/// A shared clock, as the runtime configuration holds it.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl SharedClock {
    /// Wraps `clock`.
    pub fn new(clock: impl Clock) -> Self {
        Self(Arc::new(clock))
    }

    /// The current time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedClock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let shared = SharedClock::new(clock.clone());
        assert_eq!(shared.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(shared.now_ms(), 3_000);
        clock.set(5);
        assert_eq!(shared.now_ms(), 5);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }
}
