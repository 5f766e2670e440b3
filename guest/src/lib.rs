//! The QuickJS guest module of go-go-objects.
//!
//! One instance of this `wasm32-wasip1` module runs one actor: it embeds
//! QuickJS (through the `javy` crate), evaluates the user's bundle (CommonJS
//! or an ES module),
//! constructs one object of one class and delivers RPC and fetch dispatches to
//! it. Everything that reaches the outside world goes through the host
//! functions named in `go_go_objects_abi::names`.
//!
//! * [`exports`] and [`imports`] are the only unsafe code: thin shims that
//!   decode pointers and delegate to safe Rust.
//! * [`engine`] owns the JavaScript runtime, loads the prelude and the bundle,
//!   and drives the job queue until a dispatch's promise settles.
//! * [`modules`] evaluates ES module bundles and provides the
//!   `cloudflare:workers` module they import; [`natives`] holds the few
//!   helpers written in Rust for speed (base64).
//! * `js/prelude.js` is the JavaScript half: the `state`, `state.storage`,
//!   `env` and `console` objects the bundle sees, the RPC method allow-list
//!   and the conversion of results and errors into JSON outcomes. It builds
//!   on `js/web.js` (`Request`, `Response`, `Headers`, `URL` and the other
//!   web platform pieces), `js/clone.js` (structured clone, which storage
//!   and `structuredClone` use) and `js/cloudflare.js` (Cloudflare's
//!   `ctx`, `ctx.storage` and `env` for ES module classes).

pub mod engine;
pub mod exports;
pub mod imports;
pub mod modules;
pub mod natives;
