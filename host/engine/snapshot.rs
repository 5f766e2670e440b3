//! Pre-initialization: a guest module with a bundle already evaluated.
//!
//! Evaluating a bundle (creating the QuickJS runtime, running the prelude
//! and the user's code) costs milliseconds; doing it once is enough. The
//! [`Preinitializer`] instruments the guest with `wasmtime-wizer`; the
//! runtime instantiates that, has the guest evaluate the bundle (its
//! `ggo_init` export), and then [`Preinitializer::snapshot`] turns the
//! instance's memory and globals into the data of a new module. An actor
//! instantiated from that module starts with the engine and the user's
//! classes in memory (mapped copy-on-write by wasmtime), and only runs its
//! constructor.

use std::{
    future::Future,
    pin::pin,
    task::{Context as TaskContext, Poll, Waker},
};

use go_go_objects_abi::names;
use wasmtime::{Instance, InstancePre, Store, Val, bail};
use wasmtime_wizer::{InstanceState, ModuleContext, SnapshotVal, ValType, Wizer};

use super::GuestEngine;
use crate::hostcalls::ActorState;

/// Makes pre-initialized images of the guest.
pub(crate) struct Preinitializer {
    wizer: Wizer,
    cx: ModuleContext<'static>,
    instrumented: InstancePre<ActorState>,
}

impl Preinitializer {
    /// Instruments and compiles the guest for pre-initialization.
    ///
    /// # Errors
    ///
    /// When the guest cannot be instrumented or compiled.
    pub(crate) fn new(engine: &GuestEngine) -> wasmtime::Result<Self> {
        let mut wizer = Wizer::new();
        wizer.init_func(names::EXPORT_INIT).keep_init_func(true);
        let (cx, instrumented) = wizer.instrument(engine.guest_wasm())?;
        let instrumented = engine.prepare(&instrumented)?;
        Ok(Self {
            wizer,
            cx,
            instrumented,
        })
    }

    /// The instrumented guest, to instantiate and initialize.
    pub(crate) fn instance_pre(&self) -> &InstancePre<ActorState> {
        &self.instrumented
    }

    /// The module whose initial state is `instance`'s current state.
    ///
    /// # Errors
    ///
    /// When the snapshot cannot be taken.
    pub(crate) fn snapshot(
        &self,
        store: &mut Store<ActorState>,
        instance: Instance,
    ) -> wasmtime::Result<Vec<u8>> {
        let mut state = Snapshotting { store, instance };
        complete(self.wizer.snapshot(&self.cx, &mut state))?
    }
}

/// The instance's state, as the snapshot reads it.
struct Snapshotting<'s> {
    store: &'s mut Store<ActorState>,
    instance: Instance,
}

impl InstanceState for Snapshotting<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let global = self
            .instance
            .get_global(&mut *self.store, name)
            .expect("the instrumented module exports its globals");
        match global.get(&mut *self.store) {
            Val::I32(x) => SnapshotVal::I32(x),
            Val::I64(x) => SnapshotVal::I64(x),
            Val::F32(x) => SnapshotVal::F32(x),
            Val::F64(x) => SnapshotVal::F64(x),
            Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            other => panic!("a global of an unsupported type: {other:?}"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self
            .instance
            .get_memory(&mut *self.store, name)
            .expect("the instrumented module exports its memories");
        contents(memory.data(&*self.store));
    }
}

/// Runs a future that never waits (the snapshot reads a store that is
/// right here) to its end.
fn complete<F: Future>(future: F) -> wasmtime::Result<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => bail!("the snapshot waited, which it never should"),
    }
}
