//! go-go-objects: a WebAssembly-sandboxed host for Durable Objects-style
//! JavaScript actors.
//!
//! A bundle of JavaScript classes is served over HTTP. Each object (a
//! namespace and a name) is one actor: its own wasmtime instance of a QuickJS
//! guest, a fuel budget per dispatch, and its own SQLite database that
//! JavaScript reads and writes synchronously through host functions.
//! Dispatches to one object never interleave, even across `await`.
//!
//! The crate is a library first; the `go-go-objects` binary is a thin command
//! line over it. A request flows through the modules in one direction:
//!
//! * [`gateway`] — the axum routes (`/rpc/...`, `/fetch/...`) and the error
//!   envelope;
//! * [`runtime`] — the registry of actors, per-object serialization, actor
//!   start-up and discard;
//! * `engine` — wasmtime configured for fuel and epoch deadlines, and the
//!   embedded guest module;
//! * `hostcalls` — the functions the guest imports: storage, alarms, stubs,
//!   console;
//! * [`storage`] — one SQLite database per object;
//! * [`alarms`] — the index of objects with alarms, and the retry policy.
//!
//! [`bound`] gives each authenticated user an object of their own;
//! [`events`] reports what happens to observers.
//!
//! [`bundle`] reads bundles and manifests and derives namespaces; [`id`]
//! validates object identities; [`clock`] is the time source of alarms,
//! eviction and `Date.now()` in JavaScript; `os` holds the few system calls
//! without a safe wrapper (with one block in `engine/pages.rs`, the host's
//! only `unsafe` code).
//!
//! # Example
//!
//! Serve the built-in counter nested under `/do`, after one call from Rust
//! code, until SIGINT or SIGTERM:
//!
//! ```no_run
//! use go_go_objects::{ObjectId, bundle::Bundle, gateway, runtime::Runtime};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let runtime = Runtime::builder(Bundle::builtin_counter())
//!     .storage_root("./var/durable-objects")
//!     .limits(|limits| limits.cpu_fuel = 1_000_000_000)
//!     .start() // also starts the alarm and eviction loops
//!     .await?;
//! let count = runtime
//!     .rpc(&ObjectId::new("COUNTER", "global")?, "increment", vec![1.into()])
//!     .await?;
//! println!("the counter is at {count}");
//!
//! let app = axum::Router::new().nest("/do", gateway::router(runtime.clone(), Default::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! gateway::serve(listener, app, Default::default(), gateway::shutdown_signal()).await;
//! runtime.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(())
//! # }
//! ```

pub mod alarms;
pub mod bound;
pub mod bundle;

pub mod cli;
pub mod clock;
pub mod config;
mod engine;
mod envelope;
pub mod error;
pub mod events;
pub mod gateway;
mod hostcalls;
pub mod id;
mod os;
pub mod runtime;
pub mod storage;
pub mod telemetry;

pub use error::{DispatchError, ErrorCode};
pub use id::ObjectId;
pub use runtime::Runtime;
