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
//! eviction and `Date.now()` in JavaScript.
//!
//! # Example
//!
//! Serve the built-in counter on an ephemeral port, nested under `/do`:
//!
//! ```no_run
//! use go_go_objects::{bundle::Bundle, config::RuntimeConfig, gateway, runtime::Runtime};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let runtime = Runtime::new(Bundle::builtin_counter(), None, RuntimeConfig::default())?;
//! runtime.start_background(); // alarms and idle eviction
//! let app = axum::Router::new().nest("/do", gateway::router(runtime.clone(), Default::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
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
pub mod error;
pub mod events;
pub mod gateway;
mod hostcalls;
pub mod id;
pub mod runtime;
pub mod storage;
pub mod telemetry;

pub use error::{DispatchError, ErrorCode};
pub use id::ObjectId;
pub use runtime::Runtime;
