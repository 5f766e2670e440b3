//! The QuickJS guest module of go-go-objects.
//!
//! One instance of this `wasm32-wasip1` module runs one actor: it embeds
//! QuickJS (through the `javy` crate), evaluates the user's CommonJS bundle,
//! constructs one object of one class and delivers RPC and fetch dispatches to
//! it. Everything that reaches the outside world goes through the host
//! functions named in `go_go_objects_abi::names`.
//!
//! * [`exports`] and [`imports`] are the only unsafe code: thin shims that
//!   decode pointers and delegate to safe Rust.
//! * [`engine`] owns the JavaScript runtime, loads the prelude and the bundle,
//!   and drives the job queue until a dispatch's promise settles.
//! * `prelude.js` is the JavaScript half: the `state`, `state.storage`, `env`
//!   and `console` objects the bundle sees, the RPC method allow-list and the
//!   conversion of results and errors into JSON outcomes.

pub mod engine;
pub mod exports;
pub mod imports;
