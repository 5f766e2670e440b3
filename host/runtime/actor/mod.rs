//! One actor: a wasmtime store holding one guest instance that serves one
//! object.
//!
//! An actor is started by instantiating the guest, loading the bundle into it
//! and constructing the object; each of those steps and every dispatch gets a
//! fresh fuel budget and the deadline of the dispatch it serves. A dispatch
//! runs inside one storage transaction, committed when the dispatch returns or
//! throws and rolled back when it traps, runs out of memory or can never
//! settle; those three also *poison* the actor, which its owner then discards
//! so that the next call builds a fresh one from storage.

mod alarm;

use std::time::Instant;

use go_go_objects_abi::{ABI_VERSION, names, status};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wasmtime::{Instance, InstancePre, Memory, Store, TypedFunc};

pub(crate) use alarm::AlarmOutcome;

use crate::envelope::{DispatchKind, DispatchOutput, DispatchValue, FetchResponse};
use crate::storage::LogSync;
use crate::{
    bundle::{Api, Bundle, BundleFormat, ExportInfo},
    engine::{
        EPOCH_TICK, GuestEngine, PageProfile, Preinitializer, Pristine, Refusal, out_of_fuel,
        trap_to_error,
    },
    error::{DispatchError, ErrorCode},
    hostcalls::{ActorState, CallContext, HostContext},
};

/// A dispatch's result is larger than `--max-response-bytes`.
#[derive(Debug, thiserror::Error)]
#[error("the result is {len} bytes, over the limit of {max} (--max-response-bytes)")]
struct OutputTooLarge {
    len: usize,
    max: usize,
}

/// The error of an actor refused memory because all actors together hold
/// the runtime's budget, and no idle one was left to evict.
fn server_memory_full(host: &HostContext) -> DispatchError {
    let (limit, used) = host
        .memory_budget
        .as_ref()
        .map_or((0, 0), |b| (b.limit(), b.used()));
    DispatchError::new(
        ErrorCode::Overloaded,
        format!(
            "the server's memory for objects is in use by busy objects ({used} of {limit} bytes, \
             --max-total-memory); retry later"
        ),
    )
}

/// Room for a fetch response's status and headers around its body.
const ENVELOPE_SLACK: usize = 1 << 20;

/// Fuel a call may use past its budget before wasmtime's next check traps
/// it; see [`Actor::call`].
const FUEL_MARGIN: u64 = 1_000_000;

/// An epoch deadline that is never reached. wasmtime adds the current epoch
/// to it, so it must leave room below `u64::MAX`.
const NO_DEADLINE: u64 = u64::MAX / 4;

/// The guest's entry points.
struct Exports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    init_input: TypedFunc<(i32, i32), ()>,
    init: TypedFunc<(), ()>,
    construct: TypedFunc<(i32, i32), i32>,
    dispatch: TypedFunc<(i32, i32), i32>,
    output_ptr: TypedFunc<(), i32>,
    output_len: TypedFunc<(), i32>,
}

/// A running guest instance and its object.
pub(crate) struct Actor {
    store: Store<ActorState>,
    instance: Instance,
    exports: Exports,
    poisoned: bool,
    /// The fuel the last entry point consumed.
    last_fuel: u64,
    /// Whether kept, uncommitted writes changed the alarm.
    alarm_dirty: bool,
    /// Whether pages were given back since the actor last ran.
    released_pages: bool,
    /// The size of its memory when it was instantiated.
    initial_memory: usize,
}

/// An instance of an image that never runs any code: its memory is the
/// image as every new instance sees it, to compare idle actors' pages with.
pub(crate) struct PristineInstance {
    store: Store<ActorState>,
    memory: wasmtime::Memory,
}

impl PristineInstance {
    /// Instantiates `pre` without calling into it.
    ///
    /// # Errors
    ///
    /// When the instance cannot be made or exports no memory.
    pub(crate) fn new(
        engine: &GuestEngine,
        pre: &InstancePre<ActorState>,
        host: HostContext,
    ) -> wasmtime::Result<Self> {
        let mut store = Store::new(engine.engine(), ActorState::new(host));
        let instance = pre.instantiate(&mut store)?;
        let memory = instance
            .get_memory(&mut store, names::EXPORT_MEMORY)
            .ok_or_else(|| wasmtime::format_err!("the guest exports no memory"))?;
        Ok(Self { store, memory })
    }

    /// The pristine memory, if it is a copy-on-write mapping of the image.
    pub(crate) fn pristine(&self) -> Option<Pristine<'_>> {
        Pristine::check(self.memory.data(&self.store))
    }
}

/// The outcome JSON every entry point produces.
#[derive(Deserialize)]
struct Outcome {
    ok: bool,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    response: Option<FetchResponse>,
    #[serde(default)]
    api: Option<Api>,
    #[serde(default)]
    exports: Option<Vec<ExportInfo>>,
    #[serde(default)]
    error: Option<GuestError>,
}

#[derive(Deserialize)]
struct GuestError {
    code: String,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadInput<'a> {
    filename: &'a str,
    source: &'a str,
    format: BundleFormat,
    memory_limit: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConstructInput<'a> {
    class_name: &'a str,
    id: &'a crate::id::ObjectId,
    namespaces: Vec<&'a str>,
    /// The seed of this actor's `Math.random`, as four words of eight hex
    /// digits: the input has the same length whatever the seed, so the
    /// guest's allocations (and with them when it collects garbage, and
    /// the fuel of what follows) do not depend on it.
    random_seed: [String; 4],
    /// The storage limits Cloudflare-flavour storage checks before it
    /// writes.
    limits: StorageLimits,
}

/// Key and value limits, as the guest sees them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StorageLimits {
    max_key_bytes: usize,
    max_value_bytes: usize,
}

/// Which entry point to call.
#[derive(Clone, Copy)]
enum Entry {
    /// Evaluate the bundle (before a pre-initialization snapshot).
    Init,
    Construct,
    Dispatch,
}

impl Actor {
    /// Instantiates a guest image (`pre`) in a new store of `engine`.
    pub(crate) fn instantiate(
        engine: &GuestEngine,
        pre: &InstancePre<ActorState>,
        host: HostContext,
    ) -> Result<Self, DispatchError> {
        let start_failed = |what: &str, e: wasmtime::Error| {
            if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                return DispatchError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "every instance slot is taken by a busy object ({e}); retry later, or \
                         raise --max-live-objects"
                    ),
                );
            }
            DispatchError::new(
                ErrorCode::ActorStartFailed,
                format!("failed to {what}: {e:#}"),
            )
        };
        let metering = host.limits.fuel_metering;
        let mut store = Store::new(engine.engine(), ActorState::new(host));
        store.limiter(|state| state.limiter_mut());
        if metering {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| start_failed("set fuel", e))?;
        }
        store.set_epoch_deadline(NO_DEADLINE);
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                let refused = store.data_mut().limiter_mut().take_refused();
                if refused == Some(Refusal::ServerBudget) {
                    return Err(server_memory_full(store.data().host()));
                }
                return Err(start_failed("instantiate the guest", e));
            }
        };
        let exports = Exports::resolve(&instance, &mut store)
            .map_err(|e| start_failed("link the guest", e))?;
        let initial_memory = exports.memory.data_size(&store);
        Ok(Self {
            initial_memory,
            store,
            instance,
            exports,
            poisoned: false,
            last_fuel: 0,
            alarm_dirty: false,
            released_pages: false,
        })
    }

    /// Checks that the guest speaks this host's ABI version.
    ///
    /// The guest module is checked once, when a bundle's image is made from
    /// it; an image records the guest it was made from, and one made from
    /// another guest is refused (`image::from_wasm`), so actors started from
    /// an image skip the check. Calling into every new instance would touch
    /// its memory before it is prefaulted (the page the call reads and, by
    /// the kernel's fault-around, fifteen more get mapped shared, and each of
    /// those the actor later writes costs a TLB flush on every CPU).
    ///
    /// # Errors
    ///
    /// When the guest has no version export, or another version.
    pub(crate) fn check_abi_version(&mut self) -> wasmtime::Result<()> {
        let version: TypedFunc<(), i32> = self
            .instance
            .get_typed_func(&mut self.store, names::EXPORT_ABI_VERSION)?;
        let version = version.call(&mut self.store, ())?;
        if version != ABI_VERSION as i32 {
            wasmtime::bail!("the guest speaks ABI version {version}, the host {ABI_VERSION}");
        }
        Ok(())
    }

    /// The module whose initial state is this instance's state now (after
    /// [`initialize`](Self::initialize)).
    ///
    /// # Errors
    ///
    /// When the snapshot cannot be taken.
    pub(crate) fn snapshot(mut self, preinit: &Preinitializer) -> wasmtime::Result<Vec<u8>> {
        preinit.snapshot(&mut self.store, self.instance)
    }

    /// Closes the actor's database unless a transaction is open; returns
    /// whether it closed it. The next storage call opens it again.
    pub(crate) fn close_idle_database(&mut self) -> bool {
        self.store
            .data_mut()
            .host_mut()
            .storage
            .as_mut()
            .is_some_and(crate::storage::ObjectStorage::close_idle)
    }

    /// Whether the actor's database is open.
    pub(crate) fn database_is_open(&self) -> bool {
        self.store
            .data()
            .host()
            .storage
            .as_ref()
            .is_some_and(crate::storage::ObjectStorage::is_open)
    }

    /// Gives back the pages of the actor's memory that hold what `pristine`
    /// holds; returns how many bytes. The actor's next dispatch maps them
    /// again (see [`needs_prefault`](Self::needs_prefault)).
    pub(crate) fn release_unchanged_pages(&mut self, pristine: &Pristine<'_>) -> usize {
        let dead = self.unused_stack();
        let memory = self.exports.memory;
        let released = pristine.release_unchanged(memory.data_mut(&mut self.store), dead);
        self.released_pages |= released > 0;
        released
    }

    /// The part of the guest's memory below its stack pointer: stack that
    /// holds nothing between calls (QuickJS keeps the frames of suspended
    /// async functions on its heap). A recursion that once went deep leaves
    /// its pages written; they are given back with the rest. Empty unless
    /// the guest exports its stack pointer and the end of its data and the
    /// stack lies below the data (wasm-ld's `--stack-first`, Rust's default
    /// for wasm), so that everything under the pointer is stack.
    fn unused_stack(&mut self) -> std::ops::Range<usize> {
        let mut read = |name: &str| {
            let global = self.instance.get_global(&mut self.store, name)?;
            usize::try_from(global.get(&mut self.store).i32()?).ok()
        };
        match (
            read(names::EXPORT_STACK_POINTER),
            read(names::EXPORT_DATA_END),
        ) {
            (Some(stack_pointer), Some(data_end)) if stack_pointer <= data_end => 0..stack_pointer,
            _ => 0..0,
        }
    }

    /// Whether pages were given back since the actor last ran, so that it
    /// should be prefaulted again before its next dispatch; clears the
    /// mark.
    pub(crate) fn needs_prefault(&mut self) -> bool {
        std::mem::take(&mut self.released_pages)
    }

    /// Which pages of its memory the actor has used so far.
    ///
    /// Only the memory the instance started with counts: what the actor
    /// grew is its own.
    pub(crate) fn page_profile(&self) -> Option<PageProfile> {
        let memory = self.exports.memory.data(&self.store);
        PageProfile::record(&memory[..self.initial_memory.min(memory.len())])
    }

    /// Populates the pages `profile` names in this actor's memory; returns
    /// whether the kernel did.
    pub(crate) fn prefault(&mut self, profile: &PageProfile) -> bool {
        let memory = self.exports.memory;
        profile.populate(memory.data_ptr(&self.store), memory.data_size(&self.store))
    }

    /// Whether the actor must be discarded.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Evaluates the bundle, for a pre-initialization snapshot; returns its
    /// exports, or the bundle's own error message (a syntax error, no
    /// `exports.objects`) as `Ok(Err(..))`.
    pub(crate) fn initialize(
        &mut self,
        bundle: &Bundle,
        context: &CallContext,
    ) -> Result<Result<(Api, Vec<ExportInfo>), String>, DispatchError> {
        let max_memory = self.store.data().host().limits.max_memory;
        let input = LoadInput {
            filename: bundle.script_name(),
            source: bundle.source(),
            format: bundle.format(),
            memory_limit: super::image::heap_limit(max_memory),
        };
        let input = serde_json::to_vec(&input).expect("load input encodes");
        let (outcome, _) = self.call(Entry::Init, &input, context)?;
        if outcome.ok {
            Ok(Ok((
                outcome.api.unwrap_or_default(),
                outcome.exports.unwrap_or_default(),
            )))
        } else {
            let error = outcome
                .error
                .map_or_else(|| "unknown error".into(), |e| e.message);
            Ok(Err(error))
        }
    }

    /// Runs `new Class(state, env)` and commits what it wrote.
    pub(crate) fn construct(
        &mut self,
        class_name: &str,
        namespaces: Vec<&str>,
        context: &CallContext,
    ) -> Result<(), DispatchError> {
        let id = self.store.data().host().id.clone();
        let random_seed = self
            .store
            .data_mut()
            .host_mut()
            .random_words()
            .map(|word| format!("{word:08x}"));
        let input = ConstructInput {
            class_name,
            id: &id,
            namespaces,
            random_seed,
            limits: StorageLimits {
                max_key_bytes: self.store.data().host().limits.max_key_bytes,
                max_value_bytes: self.store.data().host().limits.max_value_bytes,
            },
        };
        let input = serde_json::to_vec(&input).expect("construct input encodes");
        self.transactional(Entry::Construct, &input, context)?;
        self.commit()
    }

    /// Delivers one dispatch, inside a storage transaction.
    pub(crate) fn dispatch(
        &mut self,
        kind: &DispatchKind,
        context: &CallContext,
    ) -> Result<DispatchOutput, DispatchError> {
        let input = serde_json::to_vec(kind).expect("dispatch input encodes");
        let (outcome, fuel_consumed) = self
            .transactional(Entry::Dispatch, &input, context)
            .map_err(|mut e| {
                e.fuel_consumed = Some(self.last_fuel);
                e
            })?;
        let value = match kind {
            DispatchKind::Rpc { .. } | DispatchKind::CloneRpc { .. } => DispatchValue::Rpc(
                outcome
                    .result
                    .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON")),
            ),
            DispatchKind::Fetch { .. } => {
                DispatchValue::Fetch(outcome.response.ok_or_else(|| {
                    DispatchError::new(
                        ErrorCode::ExecutionError,
                        "the guest sent no fetch response",
                    )
                })?)
            }
        };
        let len = match &value {
            DispatchValue::Rpc(raw) => raw.get().len(),
            DispatchValue::Fetch(response) => response.body.as_ref().map_or(0, String::len),
        };
        let max = self.store.data().host().limits.max_response_bytes;
        if len > max {
            let mut error = DispatchError::new(
                ErrorCode::ExecutionError,
                OutputTooLarge { len, max }.to_string(),
            );
            error.fuel_consumed = Some(fuel_consumed);
            return Err(error);
        }
        Ok(DispatchOutput {
            value,
            fuel_consumed,
        })
    }

    /// Runs an entry point inside a savepoint of the storage transaction:
    /// its writes are kept on success and on a JavaScript error, and
    /// dropped (and the actor poisoned) on anything worse. They are
    /// committed by [`commit`](Self::commit), possibly together with those
    /// of later dispatches.
    fn transactional(
        &mut self,
        entry: Entry,
        input: &[u8],
        context: &CallContext,
    ) -> Result<(Outcome, u64), DispatchError> {
        self.begin(context.deadline)?;
        let result = self.call_checked(entry, input, context);
        let keep = self.keeps_writes(&result);
        self.finish(keep)?;
        result
    }

    /// Calls an entry point and turns an error outcome into a
    /// [`DispatchError`]; a timeout or running out of memory poisons the
    /// actor.
    fn call_checked(
        &mut self,
        entry: Entry,
        input: &[u8],
        context: &CallContext,
    ) -> Result<(Outcome, u64), DispatchError> {
        let (outcome, fuel) = self.call(entry, input, context)?;
        if outcome.ok {
            return Ok((outcome, fuel));
        }
        // `abandoned` (a Cloudflare-flavour dispatch that can never settle,
        // or a failed blockConcurrencyWhile) answers as an execution error
        // but is treated like a timeout: writes dropped, actor discarded.
        let abandoned = outcome
            .error
            .as_ref()
            .is_some_and(|e| e.code == "abandoned");
        let error = outcome.error.map_or_else(
            || DispatchError::new(ErrorCode::ExecutionError, "unknown error"),
            |e| DispatchError::new(ErrorCode::from_guest(&e.code), e.message),
        );
        if abandoned || matches!(error.code, ErrorCode::Timeout | ErrorCode::OutOfMemory) {
            self.poisoned = true;
        }
        Err(error)
    }

    /// Whether a dispatch that ended with `result` keeps its writes: yes when
    /// it returned or threw, no when it trapped, was killed or hit a storage
    /// failure.
    fn keeps_writes<T>(&self, result: &Result<T, DispatchError>) -> bool {
        match result {
            Ok(_) => true,
            Err(e) => !self.poisoned && e.code != ErrorCode::StorageError,
        }
    }

    /// Opens the savepoint of one entry point, which must end by
    /// `deadline`.
    fn begin(&mut self, deadline: Option<Instant>) -> Result<(), DispatchError> {
        self.store.data_mut().host_mut().alarm_changed = false;
        self.with_storage(|s| {
            s.set_deadline(deadline);
            s.begin()
        })
    }

    /// Keeps (`keep`) or drops the writes of the entry point that
    /// [`begin`](Self::begin) opened.
    fn finish(&mut self, keep: bool) -> Result<(), DispatchError> {
        let changed = std::mem::take(&mut self.store.data_mut().host_mut().alarm_changed);
        if let Err(e) = self.with_storage(|s| s.end(keep)) {
            self.poisoned = true;
            return Err(e);
        }
        self.alarm_dirty |= keep && changed;
        Ok(())
    }

    /// Whether kept writes wait for [`commit`](Self::commit).
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.store
            .data()
            .host()
            .storage
            .as_ref()
            .is_some_and(|s| s.has_uncommitted())
    }

    /// Commits the writes every entry point kept since the last commit;
    /// after a commit that changed the alarm, tells the alarm index.
    ///
    /// # Errors
    ///
    /// A storage error when the commit fails; the writes are then lost and
    /// the actor is poisoned.
    pub(crate) fn commit(&mut self) -> Result<(), DispatchError> {
        match self.commit_unsynced()? {
            Some(sync) => sync.perform().map_err(|e| {
                self.poisoned = true;
                DispatchError::new(ErrorCode::StorageError, e.to_string())
            }),
            None => Ok(()),
        }
    }

    /// [`commit`](Self::commit), except that the sync that makes the commit
    /// durable, if it needs one, is left to the caller (see
    /// [`ObjectStorage::commit_unsynced`](crate::storage::ObjectStorage::commit_unsynced)).
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit), for the commit itself.
    pub(crate) fn commit_unsynced(&mut self) -> Result<Option<LogSync>, DispatchError> {
        let committed = match self.store.data_mut().host_mut().storage.as_mut() {
            Some(storage) => storage.commit_unsynced(),
            None => Ok(None),
        };
        let sync = match committed {
            Ok(sync) => sync,
            Err(e) => {
                self.poisoned = true;
                self.alarm_dirty = false;
                return Err(DispatchError::new(ErrorCode::StorageError, e.to_string()));
            }
        };
        if !std::mem::take(&mut self.alarm_dirty) {
            return Ok(sync);
        }
        // The alarm index may hold a row later than the object's alarm only
        // once the commit that moved the alarm is durable: a commit that
        // changed the alarm is synced here, before the index hears of it.
        if let Some(sync) = sync {
            sync.perform().map_err(|e| {
                self.poisoned = true;
                DispatchError::new(ErrorCode::StorageError, e.to_string())
            })?;
        }
        self.report_alarm();
        Ok(None)
    }

    /// Marks the actor as unusable: the runtime discards it after the
    /// current dispatch (a sync of its commits failed, or its storage failed
    /// in the middle of an alarm delivery).
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Tells the alarm index what the object's database now holds. A failure
    /// is logged: the index keeps a row that is early, never late.
    fn report_alarm(&self) {
        let host = self.store.data().host();
        let (Some(storage), Some(index)) = (&host.storage, &host.alarms) else {
            return;
        };
        let reported = storage
            .alarm()
            .and_then(|alarm| index.set(&host.id, alarm.map(|a| a.due_ms)));
        if let Err(e) = reported {
            let (namespace, name) = (host.id.namespace(), host.id.name());
            tracing::warn!(namespace, name, "failed to update the alarm index: {e}");
        }
    }

    fn with_storage(
        &mut self,
        f: impl FnOnce(&mut crate::storage::ObjectStorage) -> Result<(), crate::storage::StorageError>,
    ) -> Result<(), DispatchError> {
        match self.store.data_mut().host_mut().storage.as_mut() {
            Some(storage) => {
                f(storage).map_err(|e| DispatchError::new(ErrorCode::StorageError, e.to_string()))
            }
            None => Ok(()),
        }
    }

    /// Calls one entry point with a fresh fuel budget and the context's
    /// deadline; returns the parsed outcome and the fuel consumed.
    fn call(
        &mut self,
        entry: Entry,
        input: &[u8],
        context: &CallContext,
    ) -> Result<(Outcome, u64), DispatchError> {
        let limits = self.store.data().host().limits.clone();
        let budget = match entry {
            Entry::Init | Entry::Construct => limits.start_fuel.unwrap_or(limits.cpu_fuel),
            Entry::Dispatch => limits.cpu_fuel,
        };
        // wasmtime checks fuel only at function entries and loop heads, so
        // a call may overdraw its fuel a little before it would trap. The
        // store gets a margin over the budget, and any use past the budget
        // counts as running out: the limit is exact, and a dispatch that
        // succeeds used at most its budget.
        let metered = budget.saturating_add(FUEL_MARGIN);
        self.store.data_mut().host_mut().call = context.clone();
        if limits.fuel_metering {
            self.store.set_fuel(metered).map_err(internal)?;
        }
        self.store.data_mut().enter(metered);
        self.store
            .set_epoch_deadline(epoch_ticks_until(context.deadline));
        let timeout = limits.cpu_timeout.map_or_else(
            || "none".to_string(),
            |t| humantime::format_duration(t).to_string(),
        );

        let result = self.call_raw(entry, input);
        let used = if limits.fuel_metering {
            metered - self.store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        let fuel_consumed = used.min(budget);
        self.last_fuel = fuel_consumed;
        self.store.data_mut().leave(used);
        let refused = self.store.data_mut().limiter_mut().take_refused();
        if limits.fuel_metering {
            self.store.set_fuel(u64::MAX).map_err(internal)?;
        }
        self.store.set_epoch_deadline(NO_DEADLINE);

        if let Some(refusal) = refused {
            self.poisoned = true;
            return Err(match refusal {
                Refusal::ActorLimit => DispatchError::new(
                    ErrorCode::OutOfMemory,
                    format!(
                        "the object ran out of memory (limit {} bytes, --max-memory)",
                        limits.max_memory
                    ),
                ),
                Refusal::ServerBudget => server_memory_full(self.store.data().host()),
            });
        }
        let (status_word, output) = result.map_err(|e| {
            if let Some(too_large) = e.downcast_ref::<OutputTooLarge>() {
                return DispatchError::new(ErrorCode::ExecutionError, too_large.to_string());
            }
            self.poisoned = true;
            trap_to_error(&e, budget, &timeout)
        })?;
        if used > budget {
            self.poisoned = true;
            return Err(out_of_fuel(budget));
        }
        if status_word != status::OK {
            self.poisoned = true;
            return Err(DispatchError::new(
                ErrorCode::ExecutionError,
                format!("the guest failed: {}", String::from_utf8_lossy(&output)),
            ));
        }
        let outcome: Outcome = serde_json::from_slice(&output).map_err(|e| {
            self.poisoned = true;
            DispatchError::new(
                ErrorCode::ExecutionError,
                format!("the guest sent a malformed outcome: {e}"),
            )
        })?;
        Ok((outcome, fuel_consumed))
    }

    /// Copies the input in, calls the entry point and copies the output out.
    fn call_raw(&mut self, entry: Entry, input: &[u8]) -> wasmtime::Result<(i32, Vec<u8>)> {
        let len = i32::try_from(input.len())?;
        let ptr = self.exports.alloc.call(&mut self.store, len)?;
        if ptr == 0 && len != 0 {
            wasmtime::bail!("the guest could not allocate {len} bytes for its input");
        }
        self.exports
            .memory
            .write(&mut self.store, ptr as u32 as usize, input)?;
        let status_word = match entry {
            Entry::Init => {
                self.exports.init_input.call(&mut self.store, (ptr, len))?;
                self.exports.init.call(&mut self.store, ())?;
                status::OK
            }
            Entry::Construct => self.exports.construct.call(&mut self.store, (ptr, len))?,
            Entry::Dispatch => self.exports.dispatch.call(&mut self.store, (ptr, len))?,
        };

        let out_ptr = self.exports.output_ptr.call(&mut self.store, ())? as u32 as usize;
        let out_len = self.exports.output_len.call(&mut self.store, ())? as u32 as usize;
        // The output is the result in the guest's JSON envelope; the
        // result itself is measured once decoded (see `dispatch`). JSON
        // escapes make the envelope at most six times larger.
        let max = self.store.data().host().limits.max_response_bytes;
        if out_len > max.saturating_mul(6).saturating_add(ENVELOPE_SLACK) {
            return Err(wasmtime::Error::new(OutputTooLarge { len: out_len, max }));
        }
        let mut output = vec![0u8; out_len];
        self.exports
            .memory
            .read(&self.store, out_ptr, &mut output)?;
        Ok((status_word, output))
    }
}

impl Exports {
    fn resolve(instance: &Instance, store: &mut Store<ActorState>) -> wasmtime::Result<Self> {
        Ok(Self {
            memory: instance
                .get_memory(&mut *store, names::EXPORT_MEMORY)
                .ok_or_else(|| wasmtime::format_err!("the guest exports no memory"))?,
            alloc: instance.get_typed_func(&mut *store, names::EXPORT_ALLOC)?,
            init_input: instance.get_typed_func(&mut *store, names::EXPORT_INIT_INPUT)?,
            init: instance.get_typed_func(&mut *store, names::EXPORT_INIT)?,
            construct: instance.get_typed_func(&mut *store, names::EXPORT_CONSTRUCT)?,
            dispatch: instance.get_typed_func(&mut *store, names::EXPORT_DISPATCH)?,
            output_ptr: instance.get_typed_func(&mut *store, names::EXPORT_OUTPUT_PTR)?,
            output_len: instance.get_typed_func(&mut *store, names::EXPORT_OUTPUT_LEN)?,
        })
    }
}

/// Epoch ticks from now until `deadline`, rounded up; effectively never
/// without one.
fn epoch_ticks_until(deadline: Option<Instant>) -> u64 {
    match deadline {
        None => NO_DEADLINE,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let ticks = left.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
            u64::try_from(ticks)
                .unwrap_or(NO_DEADLINE)
                .clamp(1, NO_DEADLINE)
        }
    }
}

fn internal(e: wasmtime::Error) -> DispatchError {
    DispatchError::new(ErrorCode::ExecutionError, format!("wasmtime failed: {e:#}"))
}
