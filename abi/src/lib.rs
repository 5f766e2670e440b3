//! The contract between the go-go-objects host and its QuickJS guest module.
//!
//! The guest is a `wasm32-wasip1` module that embeds QuickJS and runs one
//! actor: one instance of one JavaScript class. The host drives it through a
//! handful of exported functions and answers its storage, stub and log
//! requests through imported ones. Everything that crosses the boundary is
//! named here, so neither side spells an import name or a status code itself.
//!
//! # Memory model
//!
//! * The host never allocates inside the guest on its own. To pass input it
//!   calls [`names::EXPORT_ALLOC`] for a buffer of the input's size, copies the
//!   bytes in and hands `(ptr, len)` to an entry point. The guest owns and frees
//!   that buffer.
//! * An entry point returns a [`status`] word and leaves its output (UTF-8
//!   JSON) in a guest-owned buffer that the host locates with
//!   [`names::EXPORT_OUTPUT_PTR`] and [`names::EXPORT_OUTPUT_LEN`] and copies
//!   out before the next call.
//! * A host call ([`names::IMPORT_HOST_CALL`]) passes a request as `(ptr,
//!   len)`; the host keeps its answer and returns the answer's length, and the
//!   guest then fetches it into a buffer of its own with
//!   [`names::IMPORT_HOST_RESPONSE`]. The host never writes guest memory
//!   except inside a range the guest has just named.
//!
//! # Errors and traps
//!
//! Errors that JavaScript should see (a bad key, a missing object) travel as
//! JSON inside a successful call: a host call's answer is `=` followed by
//! the value's JSON, or `!` followed by the error's. A trap is reserved for what the actor cannot
//! recover from: fuel or deadline exhausted, a wasm stack overflow, or a guest
//! that broke this contract. After a trap the host discards the instance.
//!
//! # Versioning
//!
//! [`ABI_VERSION`] changes whenever a name, a signature or the meaning of a
//! status changes. The guest exports it through [`names::EXPORT_ABI_VERSION`]
//! and the host refuses a module whose version differs from its own.

#![no_std]

pub mod names;
pub mod status;

/// The version of this contract; see the crate documentation.
pub const ABI_VERSION: u32 = 4;
