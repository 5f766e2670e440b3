//! The entry points the host calls, as thin `extern "C"` shims.
//!
//! Each shim takes ownership of an input buffer the host filled (see
//! `ggo_alloc`), hands it to [`crate::engine`] and leaves the engine's output
//! in [`OUTPUT`] for the host to copy out.

use std::cell::RefCell;

use go_go_objects_abi::{ABI_VERSION, status};

use crate::engine;

thread_local! {
    /// The output of the last entry point, kept alive until the next one.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn set_output(result: Result<String, String>) -> i32 {
    let (code, bytes) = match result {
        Ok(out) => (status::OK, out.into_bytes()),
        Err(message) => (status::GUEST_FAILURE, message.into_bytes()),
    };
    OUTPUT.with(|o| *o.borrow_mut() = bytes);
    code
}

/// Takes back ownership of a buffer allocated by [`ggo_alloc`].
///
/// # Safety
///
/// `ptr` and `len` must describe a buffer returned by `ggo_alloc(len)` that
/// has not been taken back yet.
unsafe fn take_input(ptr: *mut u8, len: i32) -> Vec<u8> {
    let len = len as usize;
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller: the buffer came from `ggo_alloc`,
    // which leaked a `Vec` with exactly this length and capacity.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// Returns the ABI version this guest was built with.
#[unsafe(no_mangle)]
pub extern "C" fn ggo_abi_version() -> i32 {
    ABI_VERSION as i32
}

/// Allocates a buffer of `len` bytes for host input; 0 if `len` is negative.
#[unsafe(no_mangle)]
pub extern "C" fn ggo_alloc(len: i32) -> *mut u8 {
    let Ok(len) = usize::try_from(len) else {
        return std::ptr::null_mut();
    };
    if len == 0 {
        return std::ptr::null_mut();
    }
    let mut buf = vec![0u8; len].into_boxed_slice();
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr
}

/// Creates the engine and evaluates the bundle.
///
/// # Safety
///
/// `ptr`/`len` must be a buffer from [`ggo_alloc`] holding the input.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ggo_load(ptr: *mut u8, len: i32) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { take_input(ptr, len) };
    set_output(engine::load(&input))
}

thread_local! {
    /// The input of [`ggo_init`], until it runs.
    static INIT_INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the input of [`ggo_init`].
///
/// # Safety
///
/// `ptr`/`len` must be a buffer from [`ggo_alloc`] holding the input.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ggo_init_input(ptr: *mut u8, len: i32) {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { take_input(ptr, len) };
    INIT_INPUT.with(|i| *i.borrow_mut() = input);
}

/// Creates the engine and evaluates the bundle given to
/// [`ggo_init_input`]; the output is as [`ggo_load`]'s. A pre-initializer
/// calls this and then snapshots the instance, so actors start with the
/// bundle loaded.
#[unsafe(no_mangle)]
pub extern "C" fn ggo_init() {
    let input = INIT_INPUT.with(|i| std::mem::take(&mut *i.borrow_mut()));
    let _ = set_output(engine::load(&input));
}

/// Constructs the actor's object.
///
/// # Safety
///
/// `ptr`/`len` must be a buffer from [`ggo_alloc`] holding the input.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ggo_construct(ptr: *mut u8, len: i32) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { take_input(ptr, len) };
    set_output(engine::construct(&input))
}

/// Delivers one dispatch and runs it to completion.
///
/// # Safety
///
/// `ptr`/`len` must be a buffer from [`ggo_alloc`] holding the input.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ggo_dispatch(ptr: *mut u8, len: i32) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { take_input(ptr, len) };
    set_output(engine::dispatch(&input))
}

/// Where the last entry point left its output.
#[unsafe(no_mangle)]
pub extern "C" fn ggo_output_ptr() -> *const u8 {
    OUTPUT.with(|o| o.borrow().as_ptr())
}

/// The byte length of the last entry point's output.
#[unsafe(no_mangle)]
pub extern "C" fn ggo_output_len() -> i32 {
    OUTPUT.with(|o| o.borrow().len() as i32)
}
