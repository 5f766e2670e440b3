//! The host side of the guest ABI: the functions a guest imports, and the
//! state they act on.
//!
//! Every import is registered in [`add_to_linker`] under
//! [`names::IMPORT_MODULE`]. Guest memory is touched only through the checked
//! helpers in `memory.rs`; a request the guest gets wrong in form (a bad
//! pointer, invalid UTF-8, an over-long message) traps the actor, while a
//! request that is well formed but fails (a bad key, a missing namespace) is
//! answered with an error code that JavaScript sees as a thrown `Error`.

#[cfg(test)]
mod fuzz;
mod memory;
mod requests;
mod time;

use std::{sync::Arc, time::Instant};

use go_go_objects_abi::{names, status};
use wasmtime::{Caller, Linker, bail, error::Context, format_err};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::{
    alarms::AlarmIndex,
    bundle::ClassMap,
    clock::SharedClock,
    config::Limits,
    engine::{MemoryBudget, MemoryLimiter},
    envelope::{DispatchKind, FetchRequest, FetchResponse},
    error::DispatchError,
    id::ObjectId,
    storage::ObjectStorage,
};

/// The largest request a guest may send in one host call.
pub(crate) const MAX_HOST_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The longest console line kept; longer lines are cut.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// Calls from one object to another (`env.NS.getByName(name).rpc(...)`).
///
/// The runtime implements this; host calls only see the trait, so they do not
/// depend on the runtime.
pub(crate) trait StubDispatcher: Send + Sync {
    /// Dispatches an RPC (`DispatchKind::Rpc` or `CloneRpc`) to `target`
    /// on behalf of the caller whose call chain and deadline are in
    /// `context`, blocking until it settles. Returns the result as JSON
    /// text.
    ///
    /// # Errors
    ///
    /// The target's failure, or a [`DispatchError`] when the call would form a
    /// cycle.
    fn call(
        &self,
        context: &CallContext,
        target: ObjectId,
        kind: DispatchKind,
    ) -> Result<String, DispatchError>;

    /// The object of `namespace` whose hash is `hash`, if one has ever been
    /// started (it has a database) or is live.
    fn find_object(&self, namespace: &str, hash: &str) -> Option<ObjectId>;

    /// Remembers `id`'s name for [`Self::find_object`] (an id made by
    /// `idFromName`, whose string may be handed to `idFromString` later).
    ///
    /// # Errors
    ///
    /// A `storage_error` when the directory of names cannot be written.
    fn record_name(&self, id: &ObjectId) -> Result<(), DispatchError>;

    /// Delivers `request` to `target`'s `fetch` handler, like [`Self::call`].
    ///
    /// # Errors
    ///
    /// As for [`Self::call`].
    fn fetch(
        &self,
        context: &CallContext,
        target: ObjectId,
        request: FetchRequest,
    ) -> Result<FetchResponse, DispatchError>;
}

/// Who is calling and until when: set before each dispatch.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallContext {
    /// Identifies the call chain (one client request or alarm and the stub
    /// calls it makes), for deadlock detection.
    pub(crate) chain_id: u64,
    /// The objects whose dispatches wait on this one, outermost first,
    /// ending with this object.
    pub(crate) chain: Vec<ObjectId>,
    /// When the outermost dispatch must end.
    pub(crate) deadline: Option<Instant>,
}

/// The data of one actor's wasmtime store.
pub(crate) struct ActorState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    time: time::GuestTime,
    host: HostContext,
}

/// What host calls need besides WASI.
pub(crate) struct HostContext {
    /// The object this actor serves.
    pub(crate) id: ObjectId,
    /// Its database; `None` for the start-up probe that only describes the
    /// bundle.
    pub(crate) storage: Option<ObjectStorage>,
    /// The limits in force.
    pub(crate) limits: Limits,
    /// The namespaces of the bundle, for stubs.
    pub(crate) classes: Arc<ClassMap>,
    /// Where stub calls go; `None` for the probe.
    pub(crate) stubs: Option<Arc<dyn StubDispatcher>>,
    /// The alarm index, told of alarms before and after they are stored;
    /// `None` for the probe.
    pub(crate) alarms: Option<Arc<AlarmIndex>>,
    /// The time source, also the guest's wall clock.
    pub(crate) clock: SharedClock,
    /// The current dispatch's caller chain and deadline.
    pub(crate) call: CallContext,
    /// Whether the current dispatch set or deleted the alarm.
    pub(crate) alarm_changed: bool,
    /// Console lines the current entry point has written.
    log_lines: u32,
    /// The `--seed` in deterministic mode.
    pub(crate) seed: Option<u64>,
    /// The memory all actors share, if it is bounded.
    pub(crate) memory_budget: Option<Arc<MemoryBudget>>,
    /// In deterministic mode, host time minus the guest's logical time when
    /// the actor started: alarm times the guest sets and reads are
    /// logical, and are moved by this much to the host's clock.
    pub(crate) logical_offset_ms: Option<i64>,
    /// Random bytes for `crypto.getRandomValues` and friends.
    pub(crate) random: rand::rngs::StdRng,
    /// The answer to the last `host_call`, until the guest fetches it.
    pending_answer: Option<Vec<u8>>,
}

impl HostContext {
    /// Four random words from the actor's generator (the seed of its
    /// `Math.random`).
    pub(crate) fn random_words(&mut self) -> [u32; 4] {
        use rand::Rng as _;
        std::array::from_fn(|_| self.random.next_u32())
    }
}

/// What an object's [`HostContext`] is built from.
pub(crate) struct ObjectServices {
    /// Its database.
    pub(crate) storage: ObjectStorage,
    /// Where stub calls go.
    pub(crate) stubs: Arc<dyn StubDispatcher>,
    /// The alarm index.
    pub(crate) alarms: Arc<AlarmIndex>,
    /// The memory all actors share, if it is bounded.
    pub(crate) memory_budget: Option<Arc<MemoryBudget>>,
}

impl HostContext {
    /// A context for the object `id`.
    pub(crate) fn for_object(
        id: ObjectId,
        services: ObjectServices,
        limits: Limits,
        classes: Arc<ClassMap>,
        clock: SharedClock,
    ) -> Self {
        Self {
            random: time::actor_rng(&id, limits.seed, "js"),
            seed: limits.seed,
            logical_offset_ms: limits.seed.map(|_| time::logical_offset_ms(clock.now_ms())),
            memory_budget: services.memory_budget,
            id,
            storage: Some(services.storage),
            limits,
            classes,
            stubs: Some(services.stubs),
            alarms: Some(services.alarms),
            clock,
            call: CallContext::default(),
            alarm_changed: false,
            log_lines: 0,
            pending_answer: None,
        }
    }

    /// A context for the start-up probe that only evaluates the bundle: no
    /// storage, no stubs, no alarms.
    pub(crate) fn probe(limits: Limits, clock: SharedClock) -> Self {
        let id = ObjectId::new("bundle", "probe").expect("a valid id");
        Self {
            random: time::actor_rng(&id, limits.seed, "js"),
            seed: limits.seed,
            logical_offset_ms: None,
            memory_budget: None,
            id,
            storage: None,
            limits,
            classes: Arc::default(),
            stubs: None,
            alarms: None,
            clock,
            call: CallContext::default(),
            alarm_changed: false,
            log_lines: 0,
            pending_answer: None,
        }
    }
}

impl ActorState {
    /// Store data for one actor. WASI gets no preopened directories, no
    /// environment, no arguments and no sockets; guest stdout and stderr go
    /// nowhere (console output reaches the log through [`names::IMPORT_LOG`]).
    pub(crate) fn new(host: HostContext) -> Self {
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        if host.seed.is_some() {
            wasi.secure_random(time::actor_rng(&host.id, host.seed, "wasi"))
                .insecure_random(time::actor_rng(&host.id, host.seed, "wasi-insecure"))
                .insecure_random_seed(0);
        }
        let limiter = MemoryLimiter::new(host.limits.max_memory, host.memory_budget.clone());
        Self {
            wasi: wasi.build_p1(),
            limiter,
            time: time::GuestTime::new(host.seed.is_some()),
            host,
        }
    }

    /// The WASI context, for the WASI imports.
    pub(crate) fn wasi_mut(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    /// The memory limiter, for `Store::limiter`.
    pub(crate) fn limiter_mut(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// The guest clock's view of the current entry point: it starts with
    /// `budget` fuel.
    pub(crate) fn enter(&mut self, budget: u64) {
        self.time.enter(budget);
        self.host.log_lines = 0;
    }

    /// The current entry point ended having consumed `fuel`.
    pub(crate) fn leave(&mut self, fuel: u64) {
        self.time.leave(fuel);
    }

    /// The host-call context.
    pub(crate) fn host(&self) -> &HostContext {
        &self.host
    }

    /// The host-call context, mutably.
    pub(crate) fn host_mut(&mut self) -> &mut HostContext {
        &mut self.host
    }
}

/// Registers every host function the guest imports.
///
/// # Errors
///
/// When a name is registered twice (a bug).
pub(crate) fn add_to_linker(linker: &mut Linker<ActorState>) -> wasmtime::Result<()> {
    linker
        .func_wrap(names::IMPORT_MODULE, names::IMPORT_HOST_CALL, host_call)
        .context("failed to link `host_call`")?;
    linker
        .func_wrap(
            names::IMPORT_MODULE,
            names::IMPORT_HOST_RESPONSE,
            host_response,
        )
        .context("failed to link `host_response`")?;
    linker
        .func_wrap(names::IMPORT_MODULE, names::IMPORT_LOG, log)
        .context("failed to link `log`")?;
    time::add_to_linker(linker)
}

/// `host_call(ptr, len) -> answer_len`: reads a JSON request, performs it and
/// keeps the JSON answer for `host_response`.
fn host_call(mut caller: Caller<'_, ActorState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let request = memory::read(&mut caller, ptr, len, MAX_HOST_REQUEST_BYTES)?;
    let answer = requests::handle(&mut caller.data_mut().host, &request);
    let answer_len =
        i32::try_from(answer.len()).map_err(|_| format_err!("a host answer exceeded 2 GiB"))?;
    caller.data_mut().host.pending_answer = Some(answer);
    Ok(answer_len)
}

/// `host_response(ptr, len) -> written`: copies the pending answer into the
/// guest buffer `ptr..ptr+len`, which must be exactly its size.
fn host_response(mut caller: Caller<'_, ActorState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let answer = caller
        .data_mut()
        .host
        .pending_answer
        .take()
        .ok_or_else(|| format_err!("guest broke the ABI: host_response without host_call"))?;
    if usize::try_from(len).ok() != Some(answer.len()) {
        bail!(
            "guest broke the ABI: host_response of {len} bytes for an answer of {}",
            answer.len()
        );
    }
    memory::write(&mut caller, ptr, &answer)?;
    Ok(len)
}

/// `log(level, ptr, len)`: one console line, logged with the object's id.
fn log(mut caller: Caller<'_, ActorState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let host = &mut caller.data_mut().host;
    host.log_lines = host.log_lines.saturating_add(1);
    let (lines, max) = (host.log_lines, host.limits.max_log_lines);
    if lines > max {
        if lines == max + 1 {
            let id = &host.id;
            let (namespace, name) = (id.namespace(), id.name());
            tracing::warn!(
                target: "go_go_objects::console",
                namespace,
                name,
                "console output of this dispatch cut after {max} lines (--max-log-lines)"
            );
        }
        return Ok(());
    }

    // Only the part of a long line that is kept is copied out.
    let kept = len.clamp(0, MAX_LOG_LINE_BYTES as i32);
    let bytes = memory::read(&mut caller, ptr, kept, MAX_LOG_LINE_BYTES)?;
    let mut line = String::from_utf8_lossy(&bytes).into_owned();
    if kept < len {
        line.push_str(" [cut]");
    }
    let id = &caller.data().host.id;
    let (namespace, name) = (id.namespace(), id.name());
    match level {
        status::LOG_DEBUG => {
            tracing::debug!(target: "go_go_objects::console", namespace, name, "{line}")
        }
        status::LOG_WARN => {
            tracing::warn!(target: "go_go_objects::console", namespace, name, "{line}")
        }
        status::LOG_ERROR => {
            tracing::error!(target: "go_go_objects::console", namespace, name, "{line}")
        }
        _ => tracing::info!(target: "go_go_objects::console", namespace, name, "{line}"),
    }
    Ok(())
}
