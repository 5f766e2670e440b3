//! The wasmtime side of the sandbox, narrowed to what actors need.
//!
//! [`GuestEngine`] owns the one `wasmtime::Engine` and the linker with the
//! host functions, and compiles guest images into `InstancePre`s, so
//! starting an actor is a cheap instantiation. The guest module is embedded
//! in this binary by `build.rs`; `snapshot.rs` pre-initializes it with a
//! bundle, so actors start with the bundle already evaluated. The engine
//! meters fuel, so CPU limits are deterministic, and uses epoch interruption
//! for the wall-clock deadline: a background thread advances the epoch every
//! [`EPOCH_TICK`].

mod budget;
mod custom;
mod limits;
mod pages;
mod snapshot;

use std::{sync::Arc, thread, time::Duration};

use go_go_objects_abi::names;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, bail, error::Context,
};

use crate::hostcalls::{self, ActorState};

pub(crate) use budget::{MemoryBudget, Reclaim};
pub(crate) use custom::{append_custom_section, find_custom_section};
pub(crate) use limits::{MemoryLimiter, Refusal, out_of_fuel, trap_to_error};
pub(crate) use pages::{PageProfile, Pristine};
pub(crate) use snapshot::Preinitializer;

/// The guest module, built by `build.rs`.
const GUEST_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.wasm"));

/// How often the epoch advances; the wall-clock deadline is rounded up to
/// whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The native stack a thread needs besides the guest's own: wasmtime's
/// entry, the host functions and SQLite beneath them.
pub(crate) const HOST_STACK_MARGIN: usize = 4 * 1024 * 1024;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    /// The most native stack guest code may use.
    pub(crate) max_wasm_stack: usize,
    /// The linear-memory cap of one instance.
    pub(crate) max_memory: u64,
    /// Whether fuel is metered.
    pub(crate) fuel_metering: bool,
    /// Instances are taken from a pool of this many slots (reserved up
    /// front, reused with their memory reset copy-on-write); `None`
    /// allocates each instance on its own.
    pub(crate) pool_slots: Option<u32>,
}

/// The most table elements an instance may have (QuickJS needs a few
/// thousand).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Bytes of a pooled memory kept resident when its slot is reused.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 64 * 1024;

/// The most virtual address space the instance pool may reserve. Linux gives
/// a process 128 TiB (47 bits); this leaves 64 TiB for everything else,
/// and fits about 16,000 slots of the full layout (`--max-live-objects`
/// up to about 13,000, with the spare slots), whose compiled code needs no
/// bounds checks: about 20% faster for compute than the compact layout.
const POOL_ADDRESS_BUDGET: u64 = 64 << 40;

/// The 4 GiB reservation (plus 32 MiB guard) wasmtime gives each memory by
/// default, which lets compiled code skip bounds checks.
const DEFAULT_SLOT_ADDRESSES: u64 = (4 << 30) + (32 << 20);

/// The guard after each memory of a compact pool.
const COMPACT_GUARD: u64 = 2 << 20;

/// How pooled memories are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolLayout {
    /// wasmtime's default: 4 GiB of addresses per memory, no bounds checks.
    Full,
    /// Only `reservation` bytes per memory, with bounds checks in the
    /// compiled code (a little slower), so many more slots fit.
    Compact { reservation: u64 },
}

/// The layout that fits `slots` memories of `max_memory` bytes in
/// [`POOL_ADDRESS_BUDGET`], or `None` when none does.
fn pool_layout(slots: u32, max_memory: u64) -> Option<PoolLayout> {
    let slots = u64::from(slots);
    if slots.saturating_mul(DEFAULT_SLOT_ADDRESSES) <= POOL_ADDRESS_BUDGET {
        return Some(PoolLayout::Full);
    }
    let reservation = compact_reservation(max_memory);
    let compact = slots.saturating_mul(reservation + COMPACT_GUARD);
    (compact <= POOL_ADDRESS_BUDGET).then_some(PoolLayout::Compact { reservation })
}

/// The reservation of a compact slot for memories of `max_memory` bytes.
fn compact_reservation(max_memory: u64) -> u64 {
    max_memory.next_multiple_of(64 << 10)
}

/// wasmtime's configuration for `options`, with a pool of `slots` in
/// `layout` when given.
fn configure(options: &EngineOptions, pool: Option<(u32, PoolLayout)>) -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(options.fuel_metering)
        .epoch_interruption(true)
        .max_wasm_stack(options.max_wasm_stack)
        .async_stack_size(options.max_wasm_stack + HOST_STACK_MARGIN);
    if let Some((slots, layout)) = pool {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
            .table_elements(MAX_TABLE_ELEMENTS)
            // Keep the image's first pages resident between uses of a slot,
            // so a reused slot needs no page faults for them.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let PoolLayout::Compact { reservation } = layout {
            config
                .memory_reservation(reservation)
                .memory_guard_size(COMPACT_GUARD);
        }
    }
    match Cache::new(CacheConfig::new()) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::warn!("compiled-module cache unavailable: {e:#}"),
    }
    config
}

/// The wasmtime engine and the host functions linked for guests.
#[derive(Clone)]
pub(crate) struct GuestEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<ActorState>,
    /// The instance pool's size and layout, when there is one.
    pool: Option<(u32, PoolLayout)>,
}

impl GuestEngine {
    /// Configures wasmtime, links the host functions and starts the epoch
    /// thread.
    ///
    /// # Errors
    ///
    /// When the engine cannot be configured, or this binary was built
    /// without its guest module.
    pub(crate) fn new(options: &EngineOptions) -> wasmtime::Result<Self> {
        if GUEST_WASM.is_empty() {
            bail!("this binary was built without its guest module (a clippy or stub build)");
        }
        let layout = options.pool_slots.and_then(|slots| {
            let layout = pool_layout(slots, options.max_memory);
            if layout.is_none() {
                tracing::warn!(
                    slots,
                    max_memory = options.max_memory,
                    "the instance pool would not fit in the address space; allocating each \
                     instance on its own"
                );
            }
            layout.map(|layout| (slots, layout))
        });
        let (engine, pool) = match Engine::new(&configure(options, layout)) {
            Ok(engine) => (engine, layout),
            // Another pool in this process (an embedder's second runtime)
            // may hold the addresses the full layout needs.
            Err(e) if matches!(layout, Some((_, PoolLayout::Full))) => {
                let reservation = compact_reservation(options.max_memory);
                let compact = layout.map(|(slots, _)| (slots, PoolLayout::Compact { reservation }));
                tracing::warn!(
                    "could not reserve the instance pool with 4 GiB per slot ({e:#}); using \
                     slots of --max-memory each, with bounds checks"
                );
                let engine = Engine::new(&configure(options, compact))
                    .context("failed to configure wasmtime")?;
                (engine, compact)
            }
            Err(e) => return Err(e.context("failed to configure wasmtime")),
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut ActorState| {
            state.wasi_mut()
        })
        .context("failed to link WASI")?;
        hostcalls::add_to_linker(&mut linker)?;

        spawn_epoch_ticker(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                pool,
            }),
        })
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether every slot of the instance pool is taken (never, without a
    /// pool).
    pub(crate) fn pool_is_full(&self) -> bool {
        let (Some((slots, _)), Some(metrics)) = (
            self.inner.pool,
            self.inner.engine.pooling_allocator_metrics(),
        ) else {
            return false;
        };
        metrics.core_instances() >= u64::from(slots)
    }

    /// The guest module this binary embeds.
    pub(crate) fn guest_wasm(&self) -> &'static [u8] {
        GUEST_WASM
    }

    /// Compiles (or loads from wasmtime's cache) a guest image (the guest,
    /// its instrumented form, or a pre-initialized bundle), checks its
    /// exports and links it, ready to instantiate in new stores.
    ///
    /// # Errors
    ///
    /// When the module does not compile, lacks an export, or imports
    /// something the host does not provide.
    pub(crate) fn prepare(&self, wasm: &[u8]) -> wasmtime::Result<InstancePre<ActorState>> {
        let module =
            Module::new(&self.inner.engine, wasm).context("failed to compile the guest module")?;
        check_exports(&module)?;
        self.inner
            .linker
            .instantiate_pre(&module)
            .context("failed to link the guest module")
    }
}

/// Reports every missing export at once.
fn check_exports(module: &Module) -> wasmtime::Result<()> {
    let missing: Vec<&str> = names::REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|name| module.get_export(name).is_none())
        .collect();
    if !missing.is_empty() {
        bail!("the guest module lacks the exports {}", missing.join(", "));
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    thread::Builder::new()
        .name("go-go-objects-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .expect("failed to spawn the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pool_slots: u32) -> EngineOptions {
        EngineOptions {
            max_wasm_stack: 1 << 20,
            max_memory: 64 << 20,
            fuel_metering: true,
            pool_slots: Some(pool_slots),
        }
    }

    /// A second large pool in one process finds the address space taken by
    /// the first and falls back to compact slots instead of failing.
    #[test]
    fn a_pool_that_does_not_fit_beside_another_gets_compact_slots() {
        // 12,000 slots of the full layout are 48 TiB: two do not fit in
        // Linux's 128 TiB beside everything else.
        let first = GuestEngine::new(&options(12_000)).unwrap();
        assert_eq!(first.inner.pool, Some((12_000, PoolLayout::Full)));
        let second = GuestEngine::new(&options(12_000)).unwrap();
        assert_eq!(
            second.inner.pool,
            Some((
                12_000,
                PoolLayout::Compact {
                    reservation: 64 << 20
                }
            )),
            "the second pool has bounds-checked slots"
        );
    }

    #[test]
    fn the_pool_fits_the_address_space() {
        const MIB: u64 = 1 << 20;
        assert_eq!(pool_layout(1_250, 128 * MIB), Some(PoolLayout::Full));
        assert_eq!(
            pool_layout(25_000, 128 * MIB),
            Some(PoolLayout::Compact {
                reservation: 128 * MIB
            })
        );
        assert_eq!(pool_layout(25_000, 4 << 30), None);
    }
}
