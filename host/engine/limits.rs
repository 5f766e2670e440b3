//! Per-actor limits: the linear-memory cap, and the translation of a trap
//! into the error a client sees.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, Trap};

use super::{
    MAX_TABLE_ELEMENTS,
    budget::{ACTOR_BASELINE, MemoryBudget},
};
use crate::error::{DispatchError, ErrorCode};

/// Why a `memory.grow` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The actor's own cap (`--max-memory`).
    ActorLimit,
    /// The runtime's budget for all actors (`--max-total-memory`), even
    /// after idle actors were evicted.
    ServerBudget,
}

/// Caps an actor's linear memory, reserves its growth from the runtime's
/// [`MemoryBudget`], and remembers why it last refused to grow, so an
/// allocation failure is reported as running out of memory.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    refused: Option<Refusal>,
    budget: Option<Arc<MemoryBudget>>,
    /// Bytes this actor holds of the budget.
    reserved: u64,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory` bytes of linear memory, within
    /// `budget` when there is one.
    pub(crate) fn new(max_memory: u64, budget: Option<Arc<MemoryBudget>>) -> Self {
        Self {
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            refused: None,
            budget,
            reserved: 0,
        }
    }

    /// Why a `memory.grow` was refused since the last call, if one was.
    pub(crate) fn take_refused(&mut self) -> Option<Refusal> {
        self.refused.take()
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.reserved);
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.refused = Some(Refusal::ActorLimit);
            return Ok(false);
        }
        if let Some(budget) = &self.budget {
            // The initial memory is the image's, shared until written to:
            // an actor is counted for a baseline of it, then for growth.
            let bytes = if current == 0 {
                ACTOR_BASELINE
            } else {
                desired.saturating_sub(current) as u64
            };
            if !budget.reserve(bytes) {
                self.refused = Some(Refusal::ServerBudget);
                return Ok(false);
            }
            self.reserved += bytes;
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
