//! The actor runtime: one live actor per object, dispatches serialized per
//! object.
//!
//! [`Runtime`] keeps a registry of actor slots keyed by [`ObjectId`]
//! (`registry.rs`). A dispatch holds its object's slot for its whole run
//! (invocation, promise settlement and result conversion), so dispatches to
//! one object never interleave, while other objects run in parallel on
//! dispatch threads (`workers.rs`). Client requests queue in the object's
//! mailbox and run back to back on the thread that holds the slot
//! (`mailbox.rs`); stub calls and alarms wait for the slot itself. The
//! first dispatch to find a slot empty starts the actor while holding the
//! slot, so concurrent first calls start exactly one. A poisoned actor
//! (trap, out of memory, a promise that can never settle) is dropped from
//! its slot and the next dispatch starts a fresh one from storage.
//!
//! The deadline of a dispatch starts when it gets the slot: time spent
//! waiting behind other dispatches is not charged.
//!
//! Alarms (`scheduler.rs`) and eviction go through the same slots, so an
//! alarm never runs beside a request to its object, and a busy actor is
//! never evicted. `background.rs` runs the alarm and eviction loops and the
//! orderly shutdown.

mod actor;
mod background;
mod batch;
mod builder;
mod image;
mod mailbox;
mod output_gate;
mod registry;
mod scheduler;
mod waits;
mod workers;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context;

pub use background::{IdleRelease, ShutdownReport};
pub use builder::RuntimeBuilder;

pub use crate::envelope::{
    DispatchKind, DispatchOutput, DispatchRequest, DispatchValue, FetchRequest, FetchResponse,
};

use crate::{
    alarms::AlarmIndex,
    bundle::{Bundle, BundleError, ClassMap, Image, Manifest},
    config::RuntimeConfig,
    engine::{EngineOptions, GuestEngine, HOST_STACK_MARGIN, MemoryBudget, PageProfile, Reclaim},
    error::{DispatchError, ErrorCode},
    events::{Event, StopReason},
    hostcalls::{CallContext, HostContext, ObjectServices, StubDispatcher},
    id::ObjectId,
    storage::{NameDirectory, ObjectStorage, OpenDatabases, RootLock},
};
use actor::{Actor, PristineInstance};
use registry::{LockError, Registry, SlotGuard};

/// The longest chain of stub calls one request may make (`A` calls `B`
/// calls `C` is a chain of three objects).
pub const MAX_CALL_DEPTH: usize = 16;

/// Serves the classes of one bundle, one actor per object.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

struct Shared {
    engine: GuestEngine,
    image: image::BundleImage,
    classes: Arc<ClassMap>,
    config: RuntimeConfig,
    registry: Registry,
    workers: workers::Workers,
    alarms: Arc<AlarmIndex>,
    actor_starts: AtomicU64,
    next_chain_id: AtomicU64,
    background: Mutex<Option<background::Background>>,
    stopping: AtomicBool,
    /// The storage roots' locks, held until shutdown or drop.
    locks: Mutex<Vec<RootLock>>,
    /// The memory all actors share, when it is bounded.
    memory_budget: Option<Arc<MemoryBudget>>,
    /// The names behind ids made by `idFromName`, per storage root.
    names: Mutex<HashMap<PathBuf, Arc<NameDirectory>>>,
    /// The pages the first actor to serve a dispatch had used, which new
    /// actors get populated up front (`None` inside: the kernel cannot
    /// tell).
    page_profile: OnceLock<Option<PageProfile>>,
    /// First dispatches whose pages were looked at for the profile.
    page_profile_tries: AtomicU32,
    /// The last-use time up to which idle actors released what they hold.
    released_until_ms: AtomicU64,
    /// Held while idle actors are evicted to make room in the memory
    /// budget.
    reclaiming: Mutex<()>,
    /// The object databases open now.
    open_databases: OpenDatabases,
    /// The image as new instances see it, which idle actors compare their
    /// pages with (`None`: releasing is off, or memory is not mapped from
    /// the image copy-on-write here).
    pristine: Option<Mutex<PristineInstance>>,
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bundle or manifest is unusable.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The engine or the storage root could not be set up.
    #[error("failed to start: {0:#}")]
    Engine(anyhow::Error),
}

/// Where a runtime's classes come from.
#[derive(Debug, Clone)]
pub enum ClassSource {
    /// A bundle's source, evaluated (or found in the image cache) at start.
    Bundle(Bundle),
    /// A pre-initialized image made by [`build_image`] or
    /// `go-go-objects build`.
    Image(Image),
}

impl Runtime {
    /// A runtime serving the classes of `source`: [`Runtime::new`] or
    /// [`Runtime::from_image`].
    ///
    /// # Errors
    ///
    /// As those two.
    pub fn from_source(
        source: ClassSource,
        manifest: Option<&Manifest>,
        config: RuntimeConfig,
    ) -> Result<Self, StartError> {
        match source {
            ClassSource::Bundle(bundle) => Self::new(bundle, manifest, config),
            ClassSource::Image(image) => Self::from_image(image, manifest, config),
        }
    }

    /// Compiles the guest, evaluates the bundle once to learn its classes,
    /// checks them against the manifest, and loads the alarm schedule.
    /// Blocks for the compilation (seconds the first time; wasmtime caches
    /// the compiled module on disk). Background loops start with
    /// [`Runtime::start_background`].
    ///
    /// # Errors
    ///
    /// [`StartError::Bundle`] naming the file and every problem when the
    /// bundle does not load or its classes do not fit the manifest;
    /// [`StartError::Engine`] when wasmtime or the storage root cannot be
    /// set up.
    pub fn new(
        bundle: Bundle,
        manifest: Option<&Manifest>,
        config: RuntimeConfig,
    ) -> Result<Self, StartError> {
        let engine = Self::engine(&config)?;
        let image = image::bundle_image(&engine, &bundle, &config)?;
        Self::assemble(engine, image, manifest, config)
    }

    /// Builds a runtime from a bundle image made by [`build_image`] (or
    /// `go-go-objects build`), without the bundle's source.
    ///
    /// # Errors
    ///
    /// [`StartError::Bundle`] when the image is not one of this binary's, was
    /// made for another memory limit or seed than `config`'s, or its classes
    /// do not fit the manifest; otherwise as [`Runtime::new`].
    pub fn from_image(
        image: Image,
        manifest: Option<&Manifest>,
        config: RuntimeConfig,
    ) -> Result<Self, StartError> {
        let engine = Self::engine(&config)?;
        let name = image.name().to_string();
        let invalid = |message: String| BundleError::Image { name, message };
        let image = match image::from_wasm(&engine, image.into_wasm()) {
            Ok(image) => image,
            Err(e) => return Err(invalid(format!("{e:#}")).into()),
        };
        if let Some(mismatch) = image::settings_mismatch(&image.info, &config.limits) {
            return Err(invalid(mismatch).into());
        }
        Self::assemble(engine, image, manifest, config)
    }

    fn engine(config: &RuntimeConfig) -> Result<GuestEngine, StartError> {
        if config.limits.max_memory < crate::config::MIN_MAX_MEMORY {
            return Err(StartError::Engine(anyhow::anyhow!(
                "an actor needs at least 16 MiB of memory (max_memory is {})",
                config.limits.max_memory
            )));
        }
        if config.limits.max_wasm_stack > crate::config::MAX_WASM_STACK {
            return Err(StartError::Engine(anyhow::anyhow!(
                "max_wasm_stack is {} bytes; the guest's own stack allows at most {}",
                config.limits.max_wasm_stack,
                crate::config::MAX_WASM_STACK
            )));
        }
        let engine = GuestEngine::new(&EngineOptions {
            max_wasm_stack: config.limits.max_wasm_stack,
            max_memory: config.limits.max_memory,
            fuel_metering: config.limits.fuel_metering,
            pool_slots: config.eviction.max_live_objects.map(pool_slots),
        })
        .map_err(|e| StartError::Engine(e.into()))?;
        Ok(engine)
    }

    fn assemble(
        engine: GuestEngine,
        image: image::BundleImage,
        manifest: Option<&Manifest>,
        config: RuntimeConfig,
    ) -> Result<Self, StartError> {
        let classes = image.info.classes(manifest)?;
        let workers = workers::Workers::new(config.limits.max_wasm_stack + HOST_STACK_MARGIN)
            .context("failed to start the dispatch threads")
            .map_err(StartError::Engine)?;
        for root in config.storage_roots() {
            crate::storage::create_dirs(root)
                .with_context(|| format!("failed to create the storage root `{}`", root.display()))
                .map_err(StartError::Engine)?;
        }
        let mut locks = Vec::new();
        for root in config.storage_roots() {
            locks.push(RootLock::acquire(root).map_err(|e| StartError::Engine(e.into()))?);
        }
        let alarms = AlarmIndex::open(&config.storage_root, &config.storage_roots())
            .context("failed to load the alarm index")
            .map_err(StartError::Engine)?;
        let memory_budget = config
            .eviction
            .max_total_memory
            .map(|limit| Arc::new(MemoryBudget::new(limit)));
        let pristine = config
            .eviction
            .idle_release
            .and_then(|_| pristine_instance(&engine, &image, &config));
        let runtime = Self {
            shared: Arc::new(Shared {
                engine,
                image,
                classes: Arc::new(classes),
                config,
                registry: Registry::default(),
                workers,
                alarms: Arc::new(alarms),
                actor_starts: AtomicU64::new(0),
                next_chain_id: AtomicU64::new(1),
                background: Mutex::new(None),
                stopping: AtomicBool::new(false),
                locks: Mutex::new(locks),
                memory_budget,
                names: Mutex::new(HashMap::new()),
                page_profile: OnceLock::new(),
                page_profile_tries: AtomicU32::new(0),
                released_until_ms: AtomicU64::new(0),
                reclaiming: Mutex::new(()),
                open_databases: OpenDatabases::default(),
                pristine,
            }),
        };
        if let Some(budget) = &runtime.shared.memory_budget {
            budget.set_reclaim(Reclaimer(Arc::downgrade(&runtime.shared)));
        }
        Ok(runtime)
    }

    /// The namespaces served and their classes.
    pub fn classes(&self) -> &ClassMap {
        &self.shared.classes
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// How many actors have been started since the runtime was built.
    pub fn actor_starts(&self) -> u64 {
        self.shared.actor_starts.load(Ordering::Relaxed)
    }

    /// How many objects currently have a live actor (or one starting).
    pub fn live_objects(&self) -> usize {
        self.shared.registry.live_count()
    }

    /// How many object databases are open (see
    /// [`EvictionConfig::max_open_databases`](crate::config::EvictionConfig)).
    pub fn open_databases(&self) -> usize {
        self.shared.open_databases.count()
    }

    /// The bytes of the memory budget (`max_total_memory`) the live actors
    /// hold; `None` without a budget.
    pub fn memory_in_use(&self) -> Option<u64> {
        self.shared.memory_budget.as_ref().map(|b| b.used())
    }

    /// How many objects the alarm schedule holds (objects that have, or may
    /// have, an alarm).
    pub fn scheduled_alarms(&self) -> usize {
        self.shared.alarms.len()
    }

    /// Delivers one RPC or fetch to an object, starting its actor if needed.
    ///
    /// # Errors
    ///
    /// A [`DispatchError`] whose code says what failed: an unknown namespace
    /// (before any actor starts), a missing method, the handler's own error,
    /// a limit exceeded, a storage failure, or a runtime shutting down.
    pub async fn dispatch(
        &self,
        request: DispatchRequest,
    ) -> Result<DispatchOutput, DispatchError> {
        self.dispatch_queued(request).await
    }

    /// Calls `method(args)` on the object `id` and returns the result as
    /// JSON (`undefined` is `null`).
    ///
    /// # Errors
    ///
    /// As [`Runtime::dispatch`].
    pub async fn rpc(
        &self,
        id: &ObjectId,
        method: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value, DispatchError> {
        let kind = DispatchKind::Rpc {
            method: method.to_string(),
            args,
        };
        let output = self
            .dispatch(DispatchRequest {
                id: id.clone(),
                kind,
            })
            .await?;
        let DispatchValue::Rpc(raw) = output.value else {
            unreachable!("an RPC dispatch answers with an RPC value");
        };
        serde_json::from_str(raw.get()).map_err(|e| {
            DispatchError::new(
                ErrorCode::ExecutionError,
                format!("the result is not JSON: {e}"),
            )
        })
    }

    /// Delivers `request` to the `fetch` handler of the object `id`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::dispatch`]; a class without `fetch` is
    /// [`ErrorCode::FetchNotImplemented`].
    pub async fn fetch(
        &self,
        id: &ObjectId,
        request: FetchRequest,
    ) -> Result<FetchResponse, DispatchError> {
        let kind = DispatchKind::Fetch {
            request: Box::new(request),
        };
        let output = self
            .dispatch(DispatchRequest {
                id: id.clone(),
                kind,
            })
            .await?;
        let DispatchValue::Fetch(response) = output.value else {
            unreachable!("a fetch dispatch answers with a fetch value");
        };
        Ok(response)
    }

    /// Dispatches a client request: queues it in the object's mailbox,
    /// starts a drainer on a dispatch thread if the mailbox has none, and
    /// waits for the outcome, which comes once its writes are committed.
    async fn dispatch_queued(
        &self,
        request: DispatchRequest,
    ) -> Result<DispatchOutput, DispatchError> {
        let DispatchRequest { id, kind } = request;
        let class = self.check_call(&id, &CallContext::default())?.to_string();
        self.refuse_when_stopping()?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let mailbox = self.shared.registry.mailbox(&id);
        if mailbox.post(mailbox::Letter { class, kind, reply }) {
            self.start_drainer(id, mailbox);
        }
        outcome.await.map_err(|_| mailbox::unanswered())?
    }

    /// Dispatches a stub call from the object at the end of `parent`'s chain,
    /// blocking the calling thread until it settles. The call runs on a
    /// thread of its own, so a chain of calls never waits for a free thread
    /// of tokio's blocking pool (which a chain could otherwise use up) and
    /// each level has a whole native stack.
    fn dispatch_nested(
        &self,
        request: DispatchRequest,
        parent: &CallContext,
    ) -> Result<DispatchOutput, DispatchError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            DispatchError::new(ErrorCode::ExecutionError, "stub calls need a tokio runtime")
        })?;
        let (runtime, parent) = (self.clone(), parent.clone());
        let call = move || {
            // The callee may call further objects from this thread.
            let _runtime = handle.enter();
            let DispatchRequest { id, kind } = request;
            let class = runtime.check_call(&id, &parent)?.to_string();
            let (guard, context) = handle.block_on(runtime.acquire(&id, parent))?;
            let (result, ticket) = runtime.run_locked(guard, &id, &class, &kind, &context)?;
            batch::settle(result, handle.block_on(ticket))
        };
        let panicked = || DispatchError::new(ErrorCode::ExecutionError, "a stub call panicked");
        std::thread::Builder::new()
            .name("go-go-objects-stub".into())
            .stack_size(self.shared.workers.stack_size())
            .spawn(call)
            .map_err(|e| {
                DispatchError::new(
                    ErrorCode::ExecutionError,
                    format!("failed to start a thread for a stub call: {e}"),
                )
            })?
            .join()
            .map_err(|_| panicked())?
    }

    /// Checks a call before it waits for anything: the namespace is served,
    /// the object is not already on the chain, and the chain is not too
    /// long. Returns the class.
    fn check_call(&self, id: &ObjectId, parent: &CallContext) -> Result<&str, DispatchError> {
        let class = self.class_of(id)?;
        if parent.chain.contains(id) {
            let path: Vec<String> = parent.chain.iter().map(ToString::to_string).collect();
            return Err(DispatchError::bad_request(format!(
                "call cycle: {} -> {id} would wait on itself",
                path.join(" -> ")
            )));
        }
        if parent.chain.len() >= MAX_CALL_DEPTH {
            return Err(DispatchError::bad_request(format!(
                "call chain too deep: {id} would be the {}th object of one request \
                 (at most {MAX_CALL_DEPTH})",
                parent.chain.len() + 1
            )));
        }
        Ok(class)
    }

    /// The class serving `id`'s namespace.
    fn class_of(&self, id: &ObjectId) -> Result<&str, DispatchError> {
        self.shared
            .classes
            .class_for(id.namespace())
            .ok_or_else(|| {
                DispatchError::new(
                    ErrorCode::UnknownNamespace,
                    format!("unknown durable object namespace {}", id.namespace()),
                )
            })
    }

    /// Waits for the object's slot (bounded by the parent's deadline) and
    /// builds the call context of the dispatch that will hold it.
    async fn acquire(
        &self,
        id: &ObjectId,
        parent: CallContext,
    ) -> Result<(SlotGuard, CallContext), DispatchError> {
        self.refuse_when_stopping()?;
        let chain_id = if parent.chain.is_empty() {
            self.shared.next_chain_id.fetch_add(1, Ordering::Relaxed)
        } else {
            parent.chain_id
        };
        let guard = self
            .shared
            .registry
            .lock(id, chain_id, parent.deadline)
            .await
            .map_err(|e| match e {
                LockError::Timeout => DispatchError::new(
                    ErrorCode::Timeout,
                    format!("timed out waiting for {id}, which is busy"),
                ),
                LockError::Cycle(path) => {
                    let caller = parent
                        .chain
                        .last()
                        .map_or_else(String::new, |c| format!("{c} -> "));
                    let path: Vec<String> = path.iter().map(ToString::to_string).collect();
                    DispatchError::bad_request(format!(
                        "call cycle: {caller}{} -> back to this request: another request holds \
                         {id} and waits for an object this request holds",
                        path.join(" -> ")
                    ))
                }
            })?;
        self.refuse_when_stopping()?;
        Ok((guard, self.call_context(id, chain_id, parent)))
    }

    /// The context of a new client request's dispatch that got the slot of
    /// `id` just now.
    fn client_context(&self, id: &ObjectId) -> CallContext {
        let chain_id = self.shared.next_chain_id.fetch_add(1, Ordering::Relaxed);
        self.call_context(id, chain_id, CallContext::default())
    }

    /// The context of a dispatch of chain `chain_id` that got the slot of
    /// `id` just now: its deadline starts here, bounded by the parent's.
    fn call_context(&self, id: &ObjectId, chain_id: u64, parent: CallContext) -> CallContext {
        let own_deadline = self
            .shared
            .config
            .limits
            .cpu_timeout
            .map(|t| Instant::now() + t);
        let deadline = match (own_deadline, parent.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut chain = parent.chain;
        chain.push(id.clone());
        CallContext {
            chain_id,
            chain,
            deadline,
        }
    }

    fn refuse_when_stopping(&self) -> Result<(), DispatchError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(DispatchError::new(
                ErrorCode::ActorStartFailed,
                "the runtime is shutting down",
            ));
        }
        Ok(())
    }

    /// Runs a stub call on its thread with the object's slot held, and
    /// releases it. Returns the dispatch's result and the ticket of the
    /// commit that holds its writes; the result may be released once the
    /// ticket says so.
    ///
    /// The batch is committed at once rather than left open for the
    /// object's queued requests: the caller holds its own object while it
    /// waits for the ticket, and one of those requests may be waiting for
    /// that object, which would keep the batch open until a deadline.
    fn run_locked(
        &self,
        mut guard: SlotGuard,
        id: &ObjectId,
        class: &str,
        kind: &DispatchKind,
        context: &CallContext,
    ) -> Result<(Result<DispatchOutput, DispatchError>, batch::Ticket), DispatchError> {
        let result = self.run_held(&mut guard, id, class, kind, context)?;
        let ticket = guard.state().batch.join();
        let answers = guard.state().commit_batch();
        self.end_dispatch(&mut guard, id);
        drop(guard);
        self.answer(id, answers);
        Ok((result, ticket))
    }

    /// Runs one dispatch with the object's slot held. The caller then adds
    /// it to the slot's batch (`SlotState::batch`) and calls
    /// [`Runtime::end_batched_dispatch`]; `Err` when no actor could be
    /// started.
    fn run_held(
        &self,
        guard: &mut SlotGuard,
        id: &ObjectId,
        class: &str,
        kind: &DispatchKind,
        context: &CallContext,
    ) -> Result<Result<DispatchOutput, DispatchError>, DispatchError> {
        let started = Instant::now();
        let actor = self.live_actor(guard, id, class, context)?;
        let result = actor.dispatch(kind, context);
        if result.is_ok() && self.shared.page_profile.get().is_none() {
            self.record_page_profile(actor);
        }
        let (kind, method) = match kind {
            DispatchKind::Rpc { method, .. } | DispatchKind::CloneRpc { method, .. } => {
                ("rpc", Some(method.as_str()))
            }
            DispatchKind::Fetch { .. } => ("fetch", None),
        };
        self.shared.config.events.emit(&Event::Dispatched {
            id,
            kind,
            method,
            elapsed: started.elapsed(),
            fuel: match &result {
                Ok(output) => Some(output.fuel_consumed),
                Err(e) => e.fuel_consumed,
            },
            error: result.as_ref().err(),
        });
        Ok(result)
    }

    /// Ends a dispatch that just joined the slot's batch: commits the batch
    /// unless other dispatches wait to join it (see `batch.rs`), then as
    /// [`Runtime::end_dispatch`]. Returns the answers of the commit, for
    /// [`Runtime::answer`] once the slot is let go of (or the next dispatch
    /// starts).
    fn end_batched_dispatch(&self, guard: &mut SlotGuard, id: &ObjectId) -> batch::Answers {
        let waiting = guard.others_waiting();
        let state = guard.state();
        let poisoned = state.actor.as_ref().is_none_or(Actor::is_poisoned);
        let answers = if waiting == 0 || poisoned || state.batch.is_due() {
            state.commit_batch()
        } else {
            // Whoever runs next commits it: this drainer, or what it hands
            // the slot to (see `mailbox.rs`).
            batch::Answers::none()
        };
        self.end_dispatch(guard, id);
        answers
    }

    /// Ends a dispatch: discards a poisoned actor, records the use, and
    /// keeps the open databases within their bound.
    fn end_dispatch(&self, guard: &mut SlotGuard, id: &ObjectId) {
        if !self.discard_if_doomed(guard, id)
            && guard
                .state()
                .actor
                .as_ref()
                .is_some_and(Actor::database_is_open)
        {
            self.shared.registry.database_opened(guard);
        }
        guard.touch(self.shared.config.clock.now_ms());
        self.bound_open_databases();
    }

    /// Discards the object's actor if it may not be used again: it was
    /// poisoned, or a sync of its log failed (what the log holds is in
    /// doubt). Returns whether it did.
    fn discard_if_doomed(&self, guard: &mut SlotGuard, id: &ObjectId) -> bool {
        let state = guard.state();
        if state.gate.has_failed()
            && let Some(actor) = state.actor.as_mut()
        {
            actor.poison();
        }
        if !guard.state().actor.as_ref().is_some_and(Actor::is_poisoned) {
            return false;
        }
        guard.state().actor = None;
        self.stopped(id, StopReason::Discarded);
        true
    }

    /// Tells the dispatches of a commit of `id` how it went once it is
    /// durable, and reports it. A sync it needs runs on this thread, unless
    /// one already runs.
    fn answer(&self, id: &ObjectId, answers: batch::Answers) {
        self.report_commit(id, &answers);
        answers.deliver();
    }

    /// [`answer`](Self::answer), with a sync it needs run on a thread of its
    /// own: for a thread that goes on with the object's next dispatch.
    fn answer_later(&self, id: &ObjectId, answers: batch::Answers) {
        self.report_commit(id, &answers);
        answers.deliver_on(self.shared.workers.handle());
    }

    fn report_commit(&self, id: &ObjectId, answers: &batch::Answers) {
        let dispatches = answers.len();
        if dispatches > 0 {
            self.shared
                .config
                .events
                .emit(&Event::Committed { id, dispatches });
        }
    }

    /// Commits the batch of `id` a little later if nothing else did: the
    /// dispatches that kept it open may have been cancelled.
    pub(super) fn flush_later(&self, id: ObjectId) {
        let runtime = self.clone();
        self.shared.workers.handle().spawn(async move {
            tokio::time::sleep(batch::MAX_BATCH_AGE).await;
            let Some(mut guard) = runtime.shared.registry.lock_to_flush(&id).await else {
                return;
            };
            let workers = runtime.shared.workers.handle().clone();
            let _ = workers
                .spawn_blocking(move || {
                    let answers = guard.state().commit_batch();
                    drop(guard);
                    runtime.answer(&id, answers);
                })
                .await;
        });
    }

    /// The slot's actor, started first if the slot has none.
    fn live_actor<'g>(
        &self,
        guard: &'g mut SlotGuard,
        id: &ObjectId,
        class: &str,
        context: &CallContext,
    ) -> Result<&'g mut Actor, DispatchError> {
        guard.touch(self.shared.config.clock.now_ms());
        let started = guard.state().actor.is_none();
        if started {
            if guard.state().gate.has_failed() {
                guard.state().gate.reset();
            }
            guard.state().actor = Some(self.start_actor(id, class, context)?);
        } else if let Some(actor) = guard.state().actor.as_mut()
            && actor.needs_prefault()
        {
            // It gave pages back while idle: map them again at once.
            self.prefault(actor, id);
        }
        if started && let Some(max) = self.shared.config.eviction.max_live_objects {
            for evicted in self.shared.registry.enforce_limit(max) {
                self.stopped(&evicted, StopReason::LiveLimit);
            }
        }
        Ok(guard
            .state()
            .actor
            .as_mut()
            .expect("the actor was just started"))
    }

    /// Opens the object's storage, instantiates the guest, loads the bundle
    /// and constructs the object.
    fn start_actor(
        &self,
        id: &ObjectId,
        class: &str,
        context: &CallContext,
    ) -> Result<Actor, DispatchError> {
        let started = Instant::now();
        let shared = &self.shared;
        let root = shared.config.storage_root_for(id.namespace());
        let storage = match ObjectStorage::open_with(root, id, shared.config.durability) {
            Ok(storage) => storage,
            Err(first) => {
                // Most often the process is out of open files: idle actors
                // hold some, so close a few and try once more.
                let evicted = shared.registry.evict_least_recent(OPEN_RETRY_EVICTIONS);
                for stopped in &evicted {
                    self.stopped(stopped, StopReason::LiveLimit);
                }
                let retried = (!evicted.is_empty())
                    .then(|| ObjectStorage::open_with(root, id, shared.config.durability).ok())
                    .flatten();
                retried
                    .ok_or_else(|| DispatchError::new(ErrorCode::StorageError, first.to_string()))?
            }
        };
        let services = ObjectServices {
            storage: storage.count_in(&shared.open_databases),
            stubs: Arc::new(Stubs(Arc::downgrade(shared))),
            alarms: shared.alarms.clone(),
            memory_budget: shared.memory_budget.clone(),
        };
        let host = HostContext::for_object(
            id.clone(),
            services,
            shared.config.limits.clone(),
            shared.classes.clone(),
            shared.config.clock.clone(),
        );
        if shared.engine.pool_is_full() {
            // Busy actors hold every slot but the idle ones; free one.
            for evicted in shared.registry.evict_least_recent(1) {
                self.stopped(&evicted, StopReason::LiveLimit);
            }
        }
        let mut actor = Actor::instantiate(&shared.engine, &shared.image.pre, host)?;
        self.prefault(&mut actor, id);
        actor.construct(class, shared.classes.namespaces().collect(), context)?;
        shared.actor_starts.fetch_add(1, Ordering::Relaxed);
        shared.config.events.emit(&Event::ActorStarted {
            id,
            class,
            elapsed: started.elapsed(),
        });
        Ok(actor)
    }

    /// Past the bound on open databases, closes the databases of up to two
    /// of the least recently used idle actors, so closing keeps pace with
    /// opening (each dispatch opens one at most).
    fn bound_open_databases(&self) {
        let shared = &self.shared;
        let Some(max) = shared.config.eviction.max_open_databases else {
            return;
        };
        for _ in 0..2 {
            if shared.open_databases.count() <= max
                || !shared.registry.close_least_recent_database()
            {
                return;
            }
        }
    }

    /// Populates the pages of the profile in `actor`'s memory, if there is
    /// a profile.
    fn prefault(&self, actor: &mut Actor, id: &ObjectId) {
        if let Some(Some(profile)) = self.shared.page_profile.get()
            && !actor.prefault(profile)
        {
            tracing::debug!(
                namespace = id.namespace(),
                name = id.name(),
                "prefaulting refused"
            );
        }
    }

    /// Keeps the pages `actor` has used as the profile that later actors
    /// are prefaulted with (see `engine/pages.rs`).
    fn record_page_profile(&self, actor: &Actor) {
        let profile = actor.page_profile();
        if let Some(profile) = &profile {
            let (written, read) = profile.bytes();
            let tries = self
                .shared
                .page_profile_tries
                .fetch_add(1, Ordering::Relaxed);
            if !profile.is_typical() {
                tracing::debug!(
                    written,
                    read,
                    "a dispatch touched too many pages to profile"
                );
                if tries + 1 >= PAGE_PROFILE_TRIES {
                    let _ = self.shared.page_profile.set(None);
                }
                return;
            }
            tracing::debug!(written, read, "recorded the pages new actors start with");
        }
        let _ = self.shared.page_profile.set(profile);
    }

    /// Reports that the actor of `id` stopped.
    fn stopped(&self, id: &ObjectId, reason: StopReason) {
        self.shared
            .config
            .events
            .emit(&Event::ActorStopped { id, reason });
    }
}

/// A bundle's pre-initialized image, made by [`build_image`].
#[derive(Debug)]
pub struct BuiltImage {
    /// The wasm module, for [`Runtime::from_image`] (with
    /// [`Image::from_bytes`]).
    pub wasm: Vec<u8>,
    /// The namespaces it serves and their classes (with the manifest given
    /// to [`build_image`]; a server may map them again with its own).
    pub classes: ClassMap,
}

/// Makes the pre-initialized image of `bundle` for `config` (or takes it
/// from the cache): a wasm module that [`Runtime::from_image`] serves
/// without the bundle's source. It keeps its exports in a custom section;
/// it is tied to this binary's guest, and to `config`'s memory limit and
/// deterministic seed.
///
/// # Errors
///
/// As [`Runtime::new`] (the bundle's classes are checked against
/// `manifest`), without touching any storage root.
pub fn build_image(
    bundle: &Bundle,
    manifest: Option<&Manifest>,
    config: &RuntimeConfig,
) -> Result<BuiltImage, StartError> {
    let engine = Runtime::engine(config)?;
    let image = image::bundle_image(&engine, bundle, config)?;
    let classes = image.info.classes(manifest)?;
    Ok(BuiltImage {
        wasm: image.wasm,
        classes,
    })
}

/// An instance of the image that never runs, for idle actors to compare
/// their pages with, when the image is mapped copy-on-write.
fn pristine_instance(
    engine: &GuestEngine,
    image: &image::BundleImage,
    config: &RuntimeConfig,
) -> Option<Mutex<PristineInstance>> {
    let host = HostContext::probe(config.limits.clone(), config.clock.clone());
    match PristineInstance::new(engine, &image.pre, host) {
        Ok(instance) if instance.pristine().is_some() => Some(Mutex::new(instance)),
        Ok(_) => {
            tracing::debug!(
                "memory is not mapped from the image here; idle actors keep their pages"
            );
            None
        }
        Err(e) => {
            tracing::warn!("idle actors keep their pages: no pristine instance: {e:#}");
            None
        }
    }
}

/// Instance slots for a live-object limit: the live actors, plus room for
/// the busy ones the limit cannot evict, actors being started, the image
/// being made, and the pristine instance idle actors compare pages with.
fn pool_slots(max_live_objects: usize) -> u32 {
    let spare = (max_live_objects / 4).max(64);
    u32::try_from(max_live_objects + spare).unwrap_or(u32::MAX)
}

/// First dispatches looked at for a typical page profile before giving up
/// on prefaulting.
const PAGE_PROFILE_TRIES: u32 = 8;

/// Idle actors evicted when an object's database cannot be opened, before
/// trying once more.
const OPEN_RETRY_EVICTIONS: usize = 4;

/// Evicts idle actors when the memory budget is full, without keeping the
/// runtime alive.
struct Reclaimer(Weak<Shared>);

/// How many idle actors one round of reclaiming evicts.
const RECLAIM_BATCH: usize = 8;

impl Reclaim for Reclaimer {
    fn reclaim(&self, bytes: u64) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        let Some(budget) = shared.memory_budget.clone() else {
            return false;
        };
        // One thread evicts at a time: the actors another one is evicting
        // are not idle to this one, which would find none left and fail
        // although memory is about to be freed.
        let _one_at_a_time = shared.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
        let runtime = Runtime {
            shared: shared.clone(),
        };
        let mut waits = 0;
        while budget.limit().saturating_sub(budget.used()) < bytes {
            let evicted = runtime.shared.registry.evict_least_recent(RECLAIM_BATCH);
            if evicted.is_empty() {
                // Idle actors may be held for a moment by something else
                // (the live-object bound evicting them, their database
                // being closed, idle release): look again shortly before
                // giving up.
                if waits == RECLAIM_WAITS {
                    return false;
                }
                waits += 1;
                std::thread::sleep(RECLAIM_WAIT);
                continue;
            }
            for id in &evicted {
                runtime.stopped(id, StopReason::MemoryPressure);
            }
        }
        true
    }
}

/// How many times reclaiming looks again for idle actors when it found
/// none, and how long it waits before each look (ten milliseconds in all
/// before a 503 `overloaded`).
const RECLAIM_WAITS: u32 = 10;
const RECLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Routes stub calls back into the runtime without keeping it alive.
struct Stubs(Weak<Shared>);

impl Shared {
    /// The directory of names of the storage root that holds `namespace`.
    fn names_of(&self, namespace: &str) -> Arc<NameDirectory> {
        let root = self.config.storage_root_for(namespace);
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .entry(root.to_path_buf())
            .or_insert_with(|| Arc::new(NameDirectory::new(root)))
            .clone()
    }
}

impl Stubs {
    fn deliver(
        &self,
        context: &CallContext,
        target: ObjectId,
        kind: DispatchKind,
    ) -> Result<DispatchValue, DispatchError> {
        let shared = self.0.upgrade().ok_or_else(|| {
            DispatchError::new(ErrorCode::ExecutionError, "the runtime is shutting down")
        })?;
        let runtime = Runtime { shared };
        let request = DispatchRequest { id: target, kind };
        Ok(runtime.dispatch_nested(request, context)?.value)
    }
}

impl StubDispatcher for Stubs {
    fn call(
        &self,
        context: &CallContext,
        target: ObjectId,
        kind: DispatchKind,
    ) -> Result<String, DispatchError> {
        match self.deliver(context, target, kind)? {
            DispatchValue::Rpc(raw) => Ok(raw.get().to_string()),
            DispatchValue::Fetch(_) => unreachable!("an RPC dispatch answers with an RPC value"),
        }
    }

    fn find_object(&self, namespace: &str, hash: &str) -> Option<ObjectId> {
        let shared = self.0.upgrade()?;
        if let Some(id) = shared.registry.find_by_hash(namespace, hash) {
            return Some(id);
        }
        let root = shared.config.storage_root_for(namespace);
        let path = crate::storage::database_path_for_hash(root, hash);
        let started = crate::storage::read_identity(&path)
            .ok()
            .filter(|id| id.namespace() == namespace && id.hash() == hash);
        started.or_else(|| {
            shared
                .names_of(namespace)
                .lookup(namespace, hash)
                .ok()
                .flatten()
        })
    }

    fn record_name(&self, id: &ObjectId) -> Result<(), DispatchError> {
        let shared = self.0.upgrade().ok_or_else(|| {
            DispatchError::new(ErrorCode::ExecutionError, "the runtime is shutting down")
        })?;
        shared
            .names_of(id.namespace())
            .record(id)
            .map_err(|e| DispatchError::new(ErrorCode::StorageError, e.to_string()))
    }

    fn fetch(
        &self,
        context: &CallContext,
        target: ObjectId,
        request: FetchRequest,
    ) -> Result<FetchResponse, DispatchError> {
        let kind = DispatchKind::Fetch {
            request: Box::new(request),
        };
        match self.deliver(context, target, kind)? {
            DispatchValue::Fetch(response) => Ok(response),
            DispatchValue::Rpc(_) => unreachable!("a fetch dispatch answers with a fetch value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new actor's memory is left alone until it is prefaulted: a page
    /// read before would be mapped shared (with fifteen neighbours), and
    /// each of them the actor then writes copied with a TLB flush on every
    /// CPU (see `Actor::check_abi_version`).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_new_actor_touches_none_of_its_memory_before_it_is_prefaulted() {
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig {
            storage_root: dir.path().to_path_buf(),
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(Bundle::builtin_counter(), None, config).unwrap();
        let shared = &runtime.shared;
        let id = ObjectId::new("COUNTER", "untouched").unwrap();
        let host = HostContext::for_object(
            id,
            ObjectServices {
                storage: ObjectStorage::open(dir.path(), &ObjectId::new("COUNTER", "u").unwrap())
                    .unwrap(),
                stubs: Arc::new(Stubs(Arc::downgrade(shared))),
                alarms: shared.alarms.clone(),
                memory_budget: None,
            },
            shared.config.limits.clone(),
            shared.classes.clone(),
            shared.config.clock.clone(),
        );
        let actor = Actor::instantiate(&shared.engine, &shared.image.pre, host).unwrap();
        let profile = actor.page_profile().expect("pagemap is readable");
        assert_eq!(profile.bytes(), (0, 0), "{profile:?}");
    }
}
