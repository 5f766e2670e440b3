//! Per-actor limits: the linear-memory cap, and the translation of a trap
//! into the error a client sees.

use wasmtime::{ResourceLimiter, Trap};

use super::MAX_TABLE_ELEMENTS;
use crate::error::{DispatchError, ErrorCode};

/// Caps an actor's linear memory and remembers whether it ever refused to
/// grow, so an allocation failure is reported as running out of memory.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    refused: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory` bytes of linear memory.
    pub(crate) fn new(max_memory: u64) -> Self {
        Self {
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            refused: false,
        }
    }

    /// Whether a `memory.grow` was refused since the last call.
    pub(crate) fn take_refused(&mut self) -> bool {
        std::mem::take(&mut self.refused)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The error of a call that needed more than its `budget` of fuel.
pub(crate) fn out_of_fuel(budget: u64) -> DispatchError {
    DispatchError::new(
        ErrorCode::Timeout,
        format!("the dispatch used its whole fuel budget of {budget} (--cpu-fuel)"),
    )
}

/// Turns a failed guest call into the client's error. `fuel` and `timeout`
/// describe the limits in force, for the message.
pub(crate) fn trap_to_error(error: &wasmtime::Error, fuel: u64, timeout: &str) -> DispatchError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => out_of_fuel(fuel),
        Some(Trap::Interrupt) => DispatchError::new(
            ErrorCode::Timeout,
            format!("the dispatch exceeded its deadline of {timeout} (--cpu-timeout)"),
        ),
        Some(Trap::StackOverflow) => DispatchError::new(
            ErrorCode::ExecutionError,
            "the actor overflowed its wasm stack (too deep a recursion)",
        ),
        Some(trap) => DispatchError::new(
            ErrorCode::ExecutionError,
            format!("the actor trapped: {trap}"),
        ),
        None => DispatchError::new(
            ErrorCode::ExecutionError,
            format!("the actor failed: {error:#}"),
        ),
    }
}
