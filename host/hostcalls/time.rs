//! The guest's clock and randomness.
//!
//! The guest reads the time through WASI's `clock_time_get`, which this
//! module provides in place of wasmtime-wasi's (QuickJS's `Date.now()` and
//! `new Date()` end there). Normally the wall clock is the runtime's
//! [`crate::clock::Clock`], the same time source as alarms and eviction.
//! In deterministic mode time is logical: it starts at
//! [`DETERMINISTIC_EPOCH_MS`] when the actor starts and advances only with
//! the fuel the actor has consumed, one millisecond per
//! [`FUEL_PER_MILLISECOND`], so the same code and input read the same times.
//!
//! Random bytes (`crypto.getRandomValues`, and `Math.random` in
//! deterministic mode) come from a per-actor generator: seeded from the
//! operating system normally, and from the `--seed` and the object's hash in
//! deterministic mode.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use wasmtime::{Caller, Linker, error::Context};

use go_go_objects_abi::names;

use super::{ActorState, memory};
use crate::{
    clock::{DETERMINISTIC_EPOCH_MS, FUEL_PER_MILLISECOND},
    id::ObjectId,
};

/// WASI's clock ids and the one error this function returns.
const CLOCK_REALTIME: i32 = 0;
const CLOCK_THREAD_CPUTIME: i32 = 3;
const ERRNO_INVAL: i32 = 28;

/// What the guest's clock needs to know about its actor.
pub(crate) struct GuestTime {
    /// Whether time is logical.
    deterministic: bool,
    /// When the actor was instantiated (for the monotonic clock).
    started: Instant,
    /// Fuel consumed by earlier entry points of this actor.
    fuel_spent: u64,
    /// The fuel budget the current entry point started with.
    entry_budget: u64,
    /// In deterministic mode, milliseconds the guest's timers have slept:
    /// logical time moves on by as much.
    slept_ms: u64,
}

impl GuestTime {
    pub(crate) fn new(deterministic: bool) -> Self {
        Self {
            deterministic,
            started: Instant::now(),
            fuel_spent: 0,
            entry_budget: 0,
            slept_ms: 0,
        }
    }

    /// An entry point starts with `budget` fuel.
    pub(crate) fn enter(&mut self, budget: u64) {
        self.entry_budget = budget;
    }

    /// The entry point ended having consumed `fuel`.
    pub(crate) fn leave(&mut self, fuel: u64) {
        self.fuel_spent = self.fuel_spent.saturating_add(fuel);
        self.entry_budget = 0;
    }
}

/// The longest one `sleep` waits; a guest timer further out sleeps again.
const MAX_SLEEP_MS: u64 = 60_000;

/// Replaces WASI's `clock_time_get` with [`clock_time_get`] and adds the
/// guest's `sleep`.
///
/// # Errors
///
/// When the linker refuses the definition (a bug).
pub(super) fn add_to_linker(linker: &mut Linker<ActorState>) -> wasmtime::Result<()> {
    linker
        .func_wrap(names::IMPORT_MODULE, names::IMPORT_SLEEP, sleep)
        .context("failed to link `sleep`")?;
    linker.allow_shadowing(true);
    let linked = linker
        .func_wrap("wasi_snapshot_preview1", "clock_time_get", clock_time_get)
        .map(|_| ())
        .context("failed to link `clock_time_get`");
    linker.allow_shadowing(false);
    linked
}

/// `clock_time_get(id, precision, time_ptr) -> errno`: writes the time of
/// clock `id`, in nanoseconds, at `time_ptr`.
fn clock_time_get(
    mut caller: Caller<'_, ActorState>,
    clock_id: i32,
    _precision: i64,
    time_ptr: i32,
) -> wasmtime::Result<i32> {
    if !(CLOCK_REALTIME..=CLOCK_THREAD_CPUTIME).contains(&clock_id) {
        return Ok(ERRNO_INVAL);
    }
    let remaining = caller.get_fuel().unwrap_or(0);
    let state = caller.data();
    let time = &state.time;
    let nanos = if time.deterministic {
        let fuel = time
            .fuel_spent
            .saturating_add(time.entry_budget.saturating_sub(remaining));
        let logical_ms_as_ns = u128::from(fuel) * 1_000_000 / u128::from(FUEL_PER_MILLISECOND);
        let since = u64::try_from(logical_ms_as_ns)
            .unwrap_or(u64::MAX)
            .saturating_add(time.slept_ms.saturating_mul(1_000_000));
        if clock_id == CLOCK_REALTIME {
            (DETERMINISTIC_EPOCH_MS * 1_000_000).saturating_add(since)
        } else {
            since
        }
    } else if clock_id == CLOCK_REALTIME {
        state.host().clock.now_ms().saturating_mul(1_000_000)
    } else {
        u64::try_from(time.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    };
    memory::write(&mut caller, time_ptr, &nanos.to_le_bytes())?;
    Ok(0)
}

/// `sleep(ms)`: the guest has nothing to run until a timer is due in `ms`.
/// Waits that long, but never past the dispatch's deadline (the epoch
/// interruption then ends the dispatch as soon as the guest runs again); in
/// deterministic mode the logical clock moves on instead.
fn sleep(mut caller: Caller<'_, ActorState>, ms: i64) -> wasmtime::Result<()> {
    let ms = u64::try_from(ms).unwrap_or(0).min(MAX_SLEEP_MS);
    let state = caller.data_mut();
    if state.time.deterministic {
        state.time.slept_ms = state.time.slept_ms.saturating_add(ms);
        return Ok(());
    }
    let mut wait = Duration::from_millis(ms);
    if let Some(deadline) = state.host.call.deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        wait = wait.min(left + Duration::from_millis(1));
    }
    state.host.clock.0.sleep(wait);
    Ok(())
}

/// Host time minus logical time for an actor started at host time
/// `host_now_ms` (its logical clock starts at [`DETERMINISTIC_EPOCH_MS`]).
pub(crate) fn logical_offset_ms(host_now_ms: u64) -> i64 {
    let host = i64::try_from(host_now_ms).unwrap_or(i64::MAX);
    let epoch = i64::try_from(DETERMINISTIC_EPOCH_MS).unwrap_or(i64::MAX);
    host.saturating_sub(epoch)
}

/// The random generator of the actor serving `id`: seeded from `seed` and
/// the object in deterministic mode, from the operating system otherwise.
pub(crate) fn actor_rng(id: &ObjectId, seed: Option<u64>, stream: &str) -> StdRng {
    match seed {
        Some(seed) => {
            let mut hasher = Sha256::new();
            hasher.update(seed.to_le_bytes());
            hasher.update([0]);
            hasher.update(id.hash().as_bytes());
            hasher.update([0]);
            hasher.update(stream.as_bytes());
            StdRng::from_seed(hasher.finalize().into())
        }
        None => {
            let mut seed = [0u8; 32];
            wasmtime_wasi::thread_rng().fill_bytes(&mut seed);
            StdRng::from_seed(seed)
        }
    }
}

/// `len` random bytes from `rng`, as lower-case hex.
pub(super) fn random_hex(rng: &mut StdRng, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_repeat_per_object_and_seed() {
        let a = ObjectId::new("NS", "a").unwrap();
        let b = ObjectId::new("NS", "b").unwrap();
        let draw = |id: &ObjectId, seed| random_hex(&mut actor_rng(id, Some(seed), "js"), 16);
        assert_eq!(draw(&a, 7), draw(&a, 7));
        assert_ne!(draw(&a, 7), draw(&a, 8));
        assert_ne!(draw(&a, 7), draw(&b, 7));
        assert_ne!(
            random_hex(&mut actor_rng(&a, None, "js"), 16),
            random_hex(&mut actor_rng(&a, None, "js"), 16)
        );
    }
}
