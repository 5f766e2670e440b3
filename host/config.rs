//! Runtime settings and their defaults.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{alarms::RetryPolicy, clock::SharedClock, events::Events, storage::Durability};

/// Default storage root.
pub const DEFAULT_STORAGE: &str = "./var/durable-objects";

/// Default wall-clock deadline of one dispatch, covering promise settlement.
pub const DEFAULT_CPU_TIMEOUT: Duration = Duration::from_secs(2);

/// Default fuel budget of one dispatch. One unit is roughly one wasm
/// instruction; on this project's machines `while (true) {}` burns about ten
/// billion a second, so it is stopped after about 0.4 s, while `fib(20)`
/// needs about 19 million.
pub const DEFAULT_CPU_FUEL: u64 = 4_000_000_000;

/// The smallest linear-memory cap an actor can start with: the guest's
/// image, its 8 MiB C stack, and QuickJS.
pub const MIN_MAX_MEMORY: u64 = 16 * 1024 * 1024;

/// The largest native stack guest code may use: the size of the guest's
/// own C stack in its linear memory, which a deeper recursion would
/// overrun first.
pub const MAX_WASM_STACK: usize = 8 * 1024 * 1024;

/// Default linear-memory cap of one actor.
pub const DEFAULT_MAX_MEMORY: u64 = 128 * 1024 * 1024;

/// Default native stack of guest code.
pub const DEFAULT_MAX_WASM_STACK: usize = 8 * 1024 * 1024;

/// Default largest request body the gateway accepts.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Default largest storage key, in UTF-8 bytes (Cloudflare's limit).
pub const DEFAULT_MAX_KEY_BYTES: usize = 2048;

/// Default largest stored value, as encoded JSON (the limit of Cloudflare's
/// SQLite-backed objects).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;

/// Default bound on how late the alarm loop notices a due alarm it was not
/// told about (it is woken at once for alarms set through this runtime).
pub const DEFAULT_ALARM_INTERVAL: Duration = Duration::from_secs(1);

/// Default time an actor may stay idle before it is evicted.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Default period of the idle evictor.
pub const DEFAULT_IDLE_INTERVAL: Duration = Duration::from_secs(60);

/// How long an actor is idle before its database is closed, by default.
/// Opening a database again costs about 0.1 ms, so an object used
/// every few seconds keeps its database.
pub const DEFAULT_IDLE_RELEASE: Duration = Duration::from_secs(10);

/// Default bound on live actors. Each holds its instance (about 0.6 MiB
/// resident) and, while its database is open, two open files (its database
/// and its WAL).
pub const DEFAULT_MAX_LIVE_OBJECTS: usize = 1000;

/// Default bound on the object databases open at once. Opening one more
/// costs SQLite a walk over the list of every file the process has open, so
/// a few thousand open databases made each new object cost a third more
/// CPU; reopening the database of an actor that was not used among the
/// last thousand costs about 0.1 ms.
pub const DEFAULT_MAX_OPEN_DATABASES: usize = 1024;

/// Default bound on the time shutdown waits for in-flight dispatches.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Default most bytes of one object's database.
pub const DEFAULT_MAX_STORAGE_BYTES: u64 = 1024 * 1024 * 1024;

/// Default largest result of one dispatch.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Default most console lines of one dispatch.
pub const DEFAULT_MAX_LOG_LINES: u32 = 1000;

/// The limits applied to every actor.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one dispatch; `None` disables it.
    pub cpu_timeout: Option<Duration>,
    /// Fuel budget of one dispatch.
    pub cpu_fuel: u64,
    /// Whether wasmtime meters fuel at all. Without it there is no fuel
    /// limit and no fuel figure (responses report 0): only for measuring
    /// what metering costs.
    pub fuel_metering: bool,
    /// Fuel budget of each step of an actor start (evaluating the bundle,
    /// running the constructor); `None` is the same as `cpu_fuel`.
    pub start_fuel: Option<u64>,
    /// Linear-memory cap of one actor, in bytes.
    pub max_memory: u64,
    /// The most native stack guest code may use, in bytes: bounds the depth
    /// of recursion (about 12,000 JavaScript calls with the default). The
    /// threads that run dispatches get this plus a margin for the host.
    pub max_wasm_stack: usize,
    /// Largest storage key, in bytes.
    pub max_key_bytes: usize,
    /// Largest stored value, in bytes of JSON.
    pub max_value_bytes: usize,
    /// Most bytes one object's database may hold; a `put` past it fails
    /// with `quota_exceeded`.
    pub max_storage_bytes: u64,
    /// Largest result of one dispatch (an RPC result's JSON, a fetch
    /// response), in bytes.
    pub max_response_bytes: usize,
    /// Most console lines one dispatch writes to the log; the rest are
    /// dropped with a note.
    pub max_log_lines: u32,
    /// Deterministic mode with this seed: `Date.now()` is logical time that
    /// advances with fuel, and `Math.random()` and `crypto.getRandomValues()`
    /// are seeded from the seed and the object; `None` for real time and
    /// randomness.
    pub seed: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_timeout: Some(DEFAULT_CPU_TIMEOUT),
            cpu_fuel: DEFAULT_CPU_FUEL,
            start_fuel: None,
            fuel_metering: true,
            max_memory: DEFAULT_MAX_MEMORY,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_storage_bytes: DEFAULT_MAX_STORAGE_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_log_lines: DEFAULT_MAX_LOG_LINES,
            seed: None,
        }
    }
}

/// How alarms are delivered.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    /// The longest the background loop sleeps before looking for due alarms
    /// again; `None` disables the loop (alarms are still stored, and
    /// [`crate::Runtime::run_due_alarms`] delivers them on demand).
    pub interval: Option<Duration>,
    /// How failed alarms are retried.
    pub retry: RetryPolicy,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            interval: Some(DEFAULT_ALARM_INTERVAL),
            retry: RetryPolicy::default(),
        }
    }
}

/// When live actors are evicted (their instance dropped, their database
/// closed; state stays on disk).
#[derive(Debug, Clone)]
pub struct EvictionConfig {
    /// An actor idle this long is evicted; `None` disables idle eviction.
    pub idle_timeout: Option<Duration>,
    /// How often the idle evictor runs; `None` disables the loop.
    pub idle_interval: Option<Duration>,
    /// The most live actors; past it, the least recently used idle ones are
    /// evicted. `None` is no bound.
    pub max_live_objects: Option<usize>,
    /// A live actor idle this long closes its database (its two open files
    /// and SQLite's memory for it, about 100 KiB) and stays live; its next
    /// dispatch opens it again (about 0.1 ms). `None` keeps
    /// databases open as long as their actors live.
    pub idle_release: Option<Duration>,
    /// The most object databases open at once. Past it, each dispatch
    /// closes the databases of up to two of the least recently used idle
    /// actors; they stay live and open it again on their next storage
    /// call. `None` is no bound: a database
    /// stays open while its actor lives (or until `idle_release`).
    pub max_open_databases: Option<usize>,
    /// The most memory all actors may hold together: each is counted for
    /// what its linear memory grew past its image, plus 1 MiB. When an
    /// actor needs more, the least recently used idle actors are evicted;
    /// when none is left, the growth fails (503 `overloaded`). `None` is no
    /// bound.
    pub max_total_memory: Option<u64>,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            idle_interval: Some(DEFAULT_IDLE_INTERVAL),
            max_live_objects: Some(DEFAULT_MAX_LIVE_OBJECTS),
            idle_release: Some(DEFAULT_IDLE_RELEASE),
            max_open_databases: Some(DEFAULT_MAX_OPEN_DATABASES),
            max_total_memory: None,
        }
    }
}

/// Everything a [`crate::Runtime`] needs besides the bundle.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where object databases live.
    pub storage_root: PathBuf,
    /// Per-actor limits.
    pub limits: Limits,
    /// Alarm delivery.
    pub alarms: AlarmConfig,
    /// Eviction of live actors.
    pub eviction: EvictionConfig,
    /// The time source of alarms, eviction and `Date.now()` in JavaScript.
    pub clock: SharedClock,
    /// Where the databases of some namespaces live instead of
    /// `storage_root` (namespace → root). The alarm index stays under
    /// `storage_root`.
    pub namespace_storage: BTreeMap<String, PathBuf>,
    /// Who hears of dispatches, actor starts and stops, and alarm runs
    /// (they are logged either way).
    pub events: Events,
    /// When a commit counts as done, and so when a response may be sent.
    pub durability: Durability,
}

impl RuntimeConfig {
    /// The storage root of `namespace`'s objects.
    pub fn storage_root_for(&self, namespace: &str) -> &Path {
        self.namespace_storage
            .get(namespace)
            .unwrap_or(&self.storage_root)
    }

    /// Every distinct storage root, the default one first.
    pub fn storage_roots(&self) -> Vec<&Path> {
        let mut roots = vec![self.storage_root.as_path()];
        for root in self.namespace_storage.values() {
            if !roots.contains(&root.as_path()) {
                roots.push(root);
            }
        }
        roots
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            storage_root: PathBuf::from(DEFAULT_STORAGE),
            limits: Limits::default(),
            alarms: AlarmConfig::default(),
            eviction: EvictionConfig::default(),
            clock: SharedClock::default(),
            namespace_storage: BTreeMap::new(),
            events: Events::default(),
            durability: Durability::default(),
        }
    }
}
