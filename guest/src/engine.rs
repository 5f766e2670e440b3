//! The JavaScript engine of one actor.
//!
//! [`load`] creates a QuickJS runtime with the limits the host asked for,
//! evaluates the JavaScript parts of the runtime (`js/prelude.js` returns the
//! entry object that holds every function the host reaches; `js/web.js`,
//! `js/clone.js` and `js/cloudflare.js` add the web platform classes,
//! structured clone and Cloudflare's API) and then the user's bundle: a
//! CommonJS bundle wrapped as a module function, or an ES module (see
//! [`crate::modules`]). [`construct`] and [`dispatch`] call into the
//! entry object and then run the job queue until it is empty, so that a
//! dispatch's promise settles within the same call whenever it can settle at
//! all. Fuel keeps counting while jobs run, so an endless promise chain is
//! stopped like any other loop.

use std::cell::RefCell;

use javy::{
    Config, Runtime,
    quickjs::{Ctx, Function, Object, Persistent, Value, context::EvalOptions},
};
use serde::Deserialize;

use crate::{
    imports,
    modules::{self, Evaluated},
};

/// The JavaScript half of the guest.
const PRELUDE: &str = include_str!("js/prelude.js");

/// The parts the prelude builds on, each a factory it calls with its
/// internals: name, source.
const PARTS: &[(&str, &str)] = &[
    ("web", include_str!("js/web.js")),
    ("clone", include_str!("js/clone.js")),
    ("cloudflare", include_str!("js/cloudflare.js")),
];

/// The file name QuickJS reports for prelude frames in stack traces.
const PRELUDE_FILENAME: &str = "<go-go-objects prelude>";

/// Heap growth after which QuickJS collects cyclic garbage. javy's default
/// never collects (it expects short programs); an actor lives long.
const GC_THRESHOLD: usize = 2 * 1024 * 1024;

/// What the host sends to [`load`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadInput {
    /// The bundle's file name, for error messages and stack traces.
    filename: String,
    /// The bundle's source.
    source: String,
    /// `commonjs` or `module`.
    format: BundleFormat,
    /// QuickJS's own heap limit in bytes; a failed allocation under it is a
    /// catchable `InternalError: out of memory`.
    memory_limit: usize,
}

/// How a bundle's source is evaluated.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BundleFormat {
    /// A script that sets `exports.objects`.
    Commonjs,
    /// An ES module whose exported classes are the objects.
    Module,
}

/// A loaded engine: the runtime and the prelude's entry object.
struct Engine {
    runtime: Runtime,
    entry: Persistent<Object<'static>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// The prelude's `trackRejection`, which QuickJS's rejection tracker
    /// calls.
    static TRACK_REJECTION: RefCell<Option<Persistent<Function<'static>>>> =
        const { RefCell::new(None) };
}

/// Creates the engine and evaluates the bundle; returns the prelude's JSON
/// description of the bundle's exports (or of why it failed).
pub fn load(input: &[u8]) -> Result<String, String> {
    let input: LoadInput =
        serde_json::from_slice(input).map_err(|e| format!("invalid load input: {e}"))?;

    let mut config = Config::default();
    // QuickJS's own stack limit does nothing on WASI (it cannot see the
    // native stack): the host's wasm stack limit bounds recursion instead.
    config
        .memory_limit(input.memory_limit)
        .gc_threshold(GC_THRESHOLD)
        .text_encoding(true);
    let runtime = Runtime::new(config).map_err(|e| format!("failed to create QuickJS: {e}"))?;

    runtime
        .context()
        .runtime()
        .set_host_promise_rejection_tracker(Some(Box::new(track_rejection)));
    let (entry, description) = runtime.context().with(|ctx| -> Result<_, String> {
        let entry = install_prelude(&ctx)?;
        let track: Function = entry
            .get("trackRejection")
            .map_err(|e| format!("the prelude has no `trackRejection`: {e}"))?;
        TRACK_REJECTION.with(|t| *t.borrow_mut() = Some(Persistent::save(&ctx, track)));
        let description = evaluate_bundle(&ctx, &entry, &input)?;
        Ok((Persistent::save(&ctx, entry), description))
    })?;

    // Collect what loading left behind, so that an actor started from a
    // snapshot of this state does not begin with a collection that touches
    // (and copies) every page of the heap, and give each actor the full
    // threshold of growth before its first collection.
    let quickjs = runtime.context().runtime();
    quickjs.run_gc();
    let in_use = usize::try_from(quickjs.memory_usage().malloc_size).unwrap_or(0);
    quickjs.set_gc_threshold(in_use + GC_THRESHOLD);
    ENGINE.with(|e| *e.borrow_mut() = Some(Engine { runtime, entry }));
    fill_allocator_holes();
    Ok(description)
}

/// The largest hole [`fill_allocator_holes`] looks for.
const LARGEST_HOLE: usize = 64 * 1024;

/// Takes every free chunk that loading left inside the heap, for good.
///
/// Actors start from a snapshot of this state, and the allocator would
/// otherwise place each actor's first objects in those holes, scattered over
/// the whole heap: every page it writes becomes a private copy of its own.
/// With the holes taken, an actor's allocations come from the top of the
/// heap, side by side, on as few pages as they need. The holes themselves
/// stay untouched in the image, which all actors share.
fn fill_allocator_holes() {
    use std::alloc::{Layout, alloc, dealloc};
    // A block larger than any hole comes from the top of the heap: its
    // address is where the top begins.
    let probe = Layout::from_size_align(LARGEST_HOLE * 2, 16).expect("a valid layout");
    // SAFETY: the layout is non-zero; the block is freed at once.
    let top = unsafe {
        let block = alloc(probe);
        if block.is_null() {
            return;
        }
        dealloc(block, probe);
        block as usize
    };
    let mut size = LARGEST_HOLE;
    while size >= 16 {
        let layout = Layout::from_size_align(size, 8).expect("a valid layout");
        loop {
            // SAFETY: the layout is non-zero; a block from a hole is kept
            // (leaked) on purpose, one from the top is freed at once.
            let block = unsafe { alloc(layout) };
            if block.is_null() {
                return;
            }
            if block as usize >= top {
                unsafe { dealloc(block, layout) };
                break;
            }
        }
        size /= 2;
    }
}

/// QuickJS's report of a promise rejected without a handler (`handled`
/// false) or given one later (`handled` true), passed on to the prelude.
fn track_rejection<'js>(ctx: Ctx<'js>, promise: Value<'js>, reason: Value<'js>, handled: bool) {
    let track = TRACK_REJECTION.with(|t| t.borrow().clone());
    if let Some(Ok(track)) = track.map(|t| t.restore(&ctx)) {
        let _: Result<(), _> = track.call((promise, reason, handled));
    }
}

/// Runs the prelude and returns its entry object.
fn install_prelude<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>, String> {
    let host_call = Function::new(ctx.clone(), |request: String| -> Option<String> {
        imports::call(&request)
    })
    .map_err(|e| format!("failed to create host_call: {e}"))?;
    let host_log = Function::new(ctx.clone(), |level: i32, message: String| {
        imports::write_log(level, &message)
    })
    .map_err(|e| format!("failed to create host_log: {e}"))?;

    let natives = crate::natives::install(ctx)
        .map_err(|e| format!("failed to create the native helpers: {e}"))?;
    let parts = Object::new(ctx.clone()).map_err(|e| e.to_string())?;
    for (name, source) in PARTS {
        let filename = format!("<go-go-objects {name}>");
        let part: Function = ctx
            .eval_with_options(*source, eval_options(&filename, true))
            .map_err(|e| format!("failed to evaluate {filename}: {}", exception_text(ctx, e)))?;
        parts.set(*name, part).map_err(|e| e.to_string())?;
    }

    let factory: Function = ctx
        .eval_with_options(PRELUDE, eval_options(PRELUDE_FILENAME, true))
        .map_err(|e| format!("failed to evaluate the prelude: {}", exception_text(ctx, e)))?;
    factory
        .call((host_call, host_log, natives, parts))
        .map_err(|e| format!("failed to install the prelude: {}", exception_text(ctx, e)))
}

/// Evaluates the bundle and has the prelude describe its classes.
fn evaluate_bundle<'js>(
    ctx: &Ctx<'js>,
    entry: &Object<'js>,
    input: &LoadInput,
) -> Result<String, String> {
    match input.format {
        BundleFormat::Commonjs => evaluate_commonjs(ctx, entry, input),
        BundleFormat::Module => evaluate_module(ctx, entry, input),
    }
}

/// Runs the bundle as an ES module and hands its namespace to the prelude,
/// which describes the exported classes.
fn evaluate_module<'js>(
    ctx: &Ctx<'js>,
    entry: &Object<'js>,
    input: &LoadInput,
) -> Result<String, String> {
    let workers: Object = call_entry(ctx, entry, "workersModule", ())?;
    match modules::evaluate(ctx, workers, &input.filename, &input.source)? {
        Evaluated::Namespace(namespace) => call_entry(ctx, entry, "loadModule", (namespace,)),
        Evaluated::Thrown(thrown) => call_entry(ctx, entry, "describeModuleFailure", (thrown,)),
        Evaluated::NeverSettles => call_entry(
            ctx,
            entry,
            "describeModuleFailure",
            ("the module's top-level await never settles",),
        ),
    }
}

/// Compiles the bundle as a CommonJS module function and hands it to the
/// prelude, which runs it and describes `exports.objects`.
fn evaluate_commonjs<'js>(
    ctx: &Ctx<'js>,
    entry: &Object<'js>,
    input: &LoadInput,
) -> Result<String, String> {
    // The wrapper opens on the bundle's first line so line numbers in syntax
    // errors and stack traces match the file.
    let wrapped = format!(
        "(function (exports, module, require) {{{}\n}})",
        input.source
    );
    let module_fn =
        match ctx.eval_with_options::<Value, _>(wrapped, eval_options(&input.filename, false)) {
            Ok(f) => f,
            Err(e) => return call_entry(ctx, entry, "describeFailure", (caught(ctx, e),)),
        };
    call_entry(ctx, entry, "load", (module_fn,))
}

/// Constructs the object; returns a JSON outcome.
pub fn construct(input: &[u8]) -> Result<String, String> {
    run_entry("construct", input)
}

/// Delivers one dispatch and settles it; returns a JSON outcome.
pub fn dispatch(input: &[u8]) -> Result<String, String> {
    run_entry("dispatch", input)
}

/// Calls `entry[name](input)`, drains the job queue, then collects the
/// outcome with `entry.takeOutcome()`.
fn run_entry(name: &str, input: &[u8]) -> Result<String, String> {
    let input = String::from_utf8(input.to_vec()).map_err(|_| "input is not UTF-8".to_string())?;
    ENGINE.with(|cell| {
        let guard = cell.borrow();
        let engine = guard.as_ref().ok_or("the engine is not loaded")?;

        engine.runtime.context().with(|ctx| -> Result<(), String> {
            let entry = restore_entry(&ctx, engine)?;
            call_entry::<_, ()>(&ctx, &entry, name, (input,))
        })?;

        run_until_settled(engine)?;

        engine.runtime.context().with(|ctx| {
            let entry = restore_entry(&ctx, engine)?;
            call_entry(&ctx, &entry, "takeOutcome", ())
        })
    })
}

/// Runs jobs, and timers when no job is left, until the dispatch has an
/// outcome or nothing is left that could give it one.
fn run_until_settled(engine: &Engine) -> Result<(), String> {
    loop {
        drain_jobs(&engine.runtime);
        let delay = engine
            .runtime
            .context()
            .with(|ctx| -> Result<f64, String> {
                let entry = restore_entry(&ctx, engine)?;
                call_entry(&ctx, &entry, "nextTimerDelay", ())
            })?;
        if delay < 0.0 {
            return Ok(());
        }
        if delay > 0.0 {
            imports::sleep_ms(delay.ceil() as i64);
        }
        engine.runtime.context().with(|ctx| -> Result<(), String> {
            let entry = restore_entry(&ctx, engine)?;
            call_entry(&ctx, &entry, "runDueTimers", ())
        })?;
    }
}

/// Runs queued promise jobs until none is left.
///
/// A job that throws only rejects its own promise; the loop goes on, since
/// other jobs may still settle the dispatch.
fn drain_jobs(runtime: &Runtime) {
    while runtime.has_pending_jobs() {
        let _ = runtime.resolve_pending_jobs();
    }
}

fn restore_entry<'js>(ctx: &Ctx<'js>, engine: &Engine) -> Result<Object<'js>, String> {
    engine
        .entry
        .clone()
        .restore(ctx)
        .map_err(|e| format!("failed to restore the entry object: {e}"))
}

/// Calls a prelude function; an exception from the prelude itself is a guest
/// failure, since the prelude catches everything the bundle throws.
fn call_entry<'js, A, R>(
    ctx: &Ctx<'js>,
    entry: &Object<'js>,
    name: &str,
    args: A,
) -> Result<R, String>
where
    A: javy::quickjs::function::IntoArgs<'js>,
    R: javy::quickjs::FromJs<'js>,
{
    let f: Function = entry
        .get(name)
        .map_err(|e| format!("the prelude has no `{name}`: {e}"))?;
    f.call(args)
        .map_err(|e| format!("prelude `{name}` failed: {}", exception_text(ctx, e)))
}

/// Takes the pending exception (if the error is one) as a JS value.
pub(crate) fn caught<'js>(ctx: &Ctx<'js>, e: javy::quickjs::Error) -> Value<'js> {
    if e.is_exception() {
        ctx.catch()
    } else {
        javy::quickjs::String::from_str(ctx.clone(), &e.to_string())
            .map(Value::from)
            .unwrap_or_else(|_| Value::new_undefined(ctx.clone()))
    }
}

fn exception_text(ctx: &Ctx<'_>, e: javy::quickjs::Error) -> String {
    let value = caught(ctx, e);
    if let Some(exception) = value.as_exception() {
        return exception.to_string();
    }
    value
        .as_string()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| format!("{value:?}"))
}

fn eval_options(filename: &str, strict: bool) -> EvalOptions {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = strict;
    options.filename = Some(filename.to_string());
    options
}
