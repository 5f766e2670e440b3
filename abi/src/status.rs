//! Status words returned by the guest's entry points, and log levels.

/// The entry point ran; its output is a JSON outcome (which may itself report
/// a JavaScript error).
pub const OK: i32 = 0;

/// The guest could not run the entry point at all (bad input, engine not
/// loaded); its output is a UTF-8 message. The host treats the instance as
/// broken.
pub const GUEST_FAILURE: i32 = 1;

/// `console.debug`.
pub const LOG_DEBUG: i32 = 0;
/// `console.log` and `console.info`.
pub const LOG_INFO: i32 = 1;
/// `console.warn`.
pub const LOG_WARN: i32 = 2;
/// `console.error`.
pub const LOG_ERROR: i32 = 3;
