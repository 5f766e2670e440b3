//! Names of the functions that cross the host/guest boundary.
//!
//! Signatures use wasm's `i32` for pointers, lengths and status words.

/// The import module under which the host provides its functions.
pub const IMPORT_MODULE: &str = "go_go_objects";

/// `host_call(ptr, len) -> i32`: performs the JSON request at `ptr..ptr+len`
/// and returns the byte length of its JSON answer, which the guest must fetch
/// with [`IMPORT_HOST_RESPONSE`] before its next host call.
pub const IMPORT_HOST_CALL: &str = "host_call";

/// `host_response(ptr, len) -> i32`: copies the pending answer of the last
/// [`IMPORT_HOST_CALL`] into `ptr..ptr+len` and returns the number of bytes
/// written. `len` must equal the length `host_call` returned.
pub const IMPORT_HOST_RESPONSE: &str = "host_response";

/// `log(level, ptr, len)`: a console line from JavaScript; `level` is one of
/// the `LOG_*` constants in [`crate::status`].
pub const IMPORT_LOG: &str = "log";

/// `sleep(ms: i64)`: waits until the guest's earliest timer is due, never
/// past the dispatch's deadline (in deterministic mode, only moves the
/// logical clock).
pub const IMPORT_SLEEP: &str = "sleep";

/// `abi_version() -> i32`: the [`crate::ABI_VERSION`] the guest was built with.
pub const EXPORT_ABI_VERSION: &str = "ggo_abi_version";

/// `alloc(len) -> ptr`: a guest buffer for host input, freed by the entry point
/// that consumes it. Returns 0 when the guest is out of memory.
pub const EXPORT_ALLOC: &str = "ggo_alloc";

/// `load(ptr, len) -> status`: creates the JavaScript engine and evaluates the
/// bundle described by the JSON input. The output describes the bundle's
/// exported classes.
pub const EXPORT_LOAD: &str = "ggo_load";

/// `init_input(ptr, len)`: keeps the JSON input of [`EXPORT_INIT`], which
/// takes no arguments (a pre-initializer calls it).
pub const EXPORT_INIT_INPUT: &str = "ggo_init_input";

/// `init()`: [`EXPORT_LOAD`] with the input given to [`EXPORT_INIT_INPUT`];
/// the pre-initializer snapshots the instance after it.
pub const EXPORT_INIT: &str = "ggo_init";

/// `construct(ptr, len) -> status`: runs `new Class(state, env)` for the
/// object described by the JSON input.
pub const EXPORT_CONSTRUCT: &str = "ggo_construct";

/// `dispatch(ptr, len) -> status`: delivers one RPC, fetch or alarm and runs
/// the job queue until its promise settles or nothing is left to run.
pub const EXPORT_DISPATCH: &str = "ggo_dispatch";

/// `output_ptr() -> ptr`: where the last entry point left its output.
pub const EXPORT_OUTPUT_PTR: &str = "ggo_output_ptr";

/// `output_len() -> len`: the byte length of that output.
pub const EXPORT_OUTPUT_LEN: &str = "ggo_output_len";

/// The exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";

/// The guest's shadow-stack pointer (a mutable `i32` global, exported by a
/// linker flag in `.cargo/config.toml`). Between calls nothing lives below
/// it, so an idle actor may give those pages back.
pub const EXPORT_STACK_POINTER: &str = "__stack_pointer";

/// The end of the guest's static data (an `i32` global, exported the same
/// way): a stack pointer below it shows the stack comes first in memory,
/// below all data, so that everything under the pointer is stack.
pub const EXPORT_DATA_END: &str = "__data_end";

/// Every export the host requires, for validation at load time.
pub const REQUIRED_EXPORTS: &[&str] = &[
    EXPORT_MEMORY,
    EXPORT_ABI_VERSION,
    EXPORT_ALLOC,
    EXPORT_LOAD,
    EXPORT_INIT_INPUT,
    EXPORT_INIT,
    EXPORT_CONSTRUCT,
    EXPORT_DISPATCH,
    EXPORT_OUTPUT_PTR,
    EXPORT_OUTPUT_LEN,
];
