//! The threads dispatches run on.
//!
//! Guest code runs on the native stack of the thread that calls into it, up
//! to `max_wasm_stack` of it, and the host functions and SQLite beneath
//! need more. Whoever embeds the runtime decides the stack size of their
//! own tokio threads, so dispatches run on a blocking pool of the runtime's
//! own, whose threads have room for the configured wasm stack. Stub calls
//! get threads of the same size (see `Runtime::dispatch_nested`).

use tokio::runtime::{Builder, Handle, Runtime};

/// The most threads the pool runs at once; more dispatches queue.
const MAX_DISPATCH_THREADS: usize = 512;

/// A blocking pool with stacks big enough for guest code.
pub(super) struct Workers {
    pool: Option<Runtime>,
    stack_size: usize,
}

impl Workers {
    /// A pool whose threads have `stack_size` bytes of stack.
    pub(super) fn new(stack_size: usize) -> std::io::Result<Self> {
        let pool = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(MAX_DISPATCH_THREADS)
            .thread_stack_size(stack_size)
            .thread_name("go-go-objects-dispatch")
            .enable_all()
            .build()?;
        Ok(Self {
            pool: Some(pool),
            stack_size,
        })
    }

    /// Where to spawn dispatches.
    pub(super) fn handle(&self) -> &Handle {
        self.pool
            .as_ref()
            .expect("the pool lives until drop")
            .handle()
    }

    /// The stack size of the pool's threads, also used for stub calls.
    pub(super) fn stack_size(&self) -> usize {
        self.stack_size
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // The runtime may be dropped inside an async context (or on one of
        // these threads), where a blocking shutdown is not allowed.
        if let Some(pool) = self.pool.take() {
            pool.shutdown_background();
        }
    }
}
