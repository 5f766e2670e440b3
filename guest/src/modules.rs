//! ES module bundles and the `cloudflare:workers` module they import.
//!
//! A module bundle is compiled and evaluated as a QuickJS module named after
//! its file. Before that, `cloudflare:workers` is declared as a native module
//! whose exports are the values the prelude built (the `DurableObject` base
//! class and its relatives), so that the bundle's `import` resolves without
//! a module loader; any other import fails with QuickJS's own error.

use std::cell::RefCell;

use javy::quickjs::{
    Ctx, Module, Object, Persistent, Value,
    module::{Declarations, Exports, ModuleDef},
    promise::PromiseState,
};

/// The name bundles import the runtime's classes from.
pub const WORKERS_MODULE: &str = "cloudflare:workers";

/// The names `cloudflare:workers` exports; the prelude's object must hold
/// each of them.
const WORKERS_EXPORTS: &[&str] = &["DurableObject", "RpcTarget", "WorkerEntrypoint"];

thread_local! {
    /// The prelude's exports for `cloudflare:workers`, while a bundle loads.
    static WORKERS: RefCell<Option<Persistent<Object<'static>>>> = const { RefCell::new(None) };
}

struct WorkersModule;

impl ModuleDef for WorkersModule {
    fn declare<'js>(decl: &Declarations<'js>) -> javy::quickjs::Result<()> {
        for name in WORKERS_EXPORTS {
            decl.declare(*name)?;
        }
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> javy::quickjs::Result<()> {
        let workers = WORKERS
            .with(|w| w.borrow().clone())
            .ok_or(javy::quickjs::Error::Unknown)?
            .restore(ctx)?;
        for name in WORKERS_EXPORTS {
            exports.export(*name, workers.get::<_, Value>(*name)?)?;
        }
        Ok(())
    }
}

/// How evaluating a module bundle went.
pub enum Evaluated<'js> {
    /// The module's namespace object (its exports).
    Namespace(Object<'js>),
    /// What was thrown while it compiled or ran.
    Thrown(Value<'js>),
    /// Its top-level `await` is still pending with nothing left to run.
    NeverSettles,
}

/// Declares `cloudflare:workers` with `workers` as its exports, then
/// compiles and runs the bundle, running jobs until its top-level code
/// (which may `await`) has finished.
pub fn evaluate<'js>(
    ctx: &Ctx<'js>,
    workers: Object<'js>,
    filename: &str,
    source: &str,
) -> Result<Evaluated<'js>, String> {
    WORKERS.with(|w| *w.borrow_mut() = Some(Persistent::save(ctx, workers)));
    let outcome = evaluate_with_workers(ctx, filename, source);
    WORKERS.with(|w| *w.borrow_mut() = None);
    outcome
}

fn evaluate_with_workers<'js>(
    ctx: &Ctx<'js>,
    filename: &str,
    source: &str,
) -> Result<Evaluated<'js>, String> {
    Module::declare_def::<WorkersModule, _>(ctx.clone(), WORKERS_MODULE)
        .map_err(|e| format!("failed to declare {WORKERS_MODULE}: {e}"))?;
    let declared = match Module::declare(ctx.clone(), filename, source) {
        Ok(module) => module,
        Err(e) => return Ok(Evaluated::Thrown(crate::engine::caught(ctx, e))),
    };
    let (module, promise) = match declared.eval() {
        Ok(evaluated) => evaluated,
        Err(e) => return Ok(Evaluated::Thrown(crate::engine::caught(ctx, e))),
    };
    while ctx.execute_pending_job() {}
    match promise.state() {
        PromiseState::Resolved => {}
        PromiseState::Pending => return Ok(Evaluated::NeverSettles),
        PromiseState::Rejected => {
            let thrown = match promise.result::<Value>() {
                Some(Err(e)) => crate::engine::caught(ctx, e),
                _ => Value::new_undefined(ctx.clone()),
            };
            return Ok(Evaluated::Thrown(thrown));
        }
    }
    module
        .namespace()
        .map(Evaluated::Namespace)
        .map_err(|e| format!("failed to read the module's exports: {e}"))
}
