//! A bundle's image: the guest pre-initialized with the bundle.
//!
//! At start-up the runtime instantiates the instrumented guest with a
//! context of no object (no storage, no stubs), has it evaluate the bundle,
//! and snapshots the instance into a new module (see `engine/snapshot.rs`).
//! Every actor is instantiated from that module and only runs its
//! constructor. The image carries, in a custom section, what the bundle
//! exports, so it can be cached and served without evaluating the bundle
//! again.
//!
//! Images are cached on disk under `<cache>/go-go-objects/images/`, keyed by
//! the guest, the bundle's name and source, and the settings that shape the
//! snapshot (the JavaScript heap limit, deterministic mode and its seed), so
//! a restart with an unchanged bundle does not evaluate it again; wasmtime
//! caches the compiled code of the image in the same way. Bundle code that
//! runs at load time (top level) runs once, when the image is made, not per
//! actor.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::InstancePre;

use super::{StartError, actor::Actor};
use crate::{
    bundle::{Api, Bundle, BundleError, ClassMap, ExportInfo, Manifest, resolve_classes},
    config::{Limits, RuntimeConfig},
    engine::{GuestEngine, Preinitializer, append_custom_section, find_custom_section},
    hostcalls::{ActorState, CallContext, HostContext},
};

/// The name of the custom section that describes an image.
pub(crate) const IMAGE_SECTION: &str = "go-go-objects.image";

/// The version of the image description.
const IMAGE_VERSION: u32 = 1;

/// What an image says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageInfo {
    /// [`IMAGE_VERSION`].
    pub(crate) version: u32,
    /// The SHA-256 of the guest module it was made from.
    pub(crate) guest: String,
    /// The bundle's file name.
    pub(crate) bundle: String,
    /// The API its classes are given.
    #[serde(default)]
    pub(crate) api: Api,
    /// The classes it exports (`exports.objects` or the module's).
    pub(crate) exports: Vec<ExportInfo>,
    /// The JavaScript heap limit baked into it.
    pub(crate) memory_limit: u64,
    /// The `--seed` of deterministic mode it was made in, if any.
    pub(crate) seed: Option<u64>,
}

impl ImageInfo {
    /// The namespace → class map of the image's classes under `manifest`.
    ///
    /// # Errors
    ///
    /// As [`resolve_classes`].
    pub(crate) fn classes(&self, manifest: Option<&Manifest>) -> Result<ClassMap, BundleError> {
        resolve_classes(&self.bundle, self.api, &self.exports, manifest)
    }
}

/// A bundle's image, compiled and linked.
pub(crate) struct BundleImage {
    /// The module's bytes (for `build`).
    pub(crate) wasm: Vec<u8>,
    /// What it says about itself.
    pub(crate) info: ImageInfo,
    /// Ready to instantiate.
    pub(crate) pre: InstancePre<ActorState>,
}

/// The guest's hash, set by `build.rs`.
pub(crate) const GUEST_SHA256: &str = env!("GUEST_SHA256");

/// The JavaScript heap limit of actors with `max_memory` of linear memory:
/// QuickJS gets three quarters, so that running out of heap is a catchable
/// error before linear memory runs out.
pub(crate) fn heap_limit(max_memory: u64) -> u64 {
    (max_memory / 4 * 3).min(u64::from(u32::MAX))
}

/// Why an image cannot serve actors with `limits`: it was made for another
/// memory limit or deterministic mode, which are baked into its snapshot.
pub(crate) fn settings_mismatch(info: &ImageInfo, limits: &Limits) -> Option<String> {
    let describe_seed = |seed: Option<u64>| match seed {
        Some(seed) => format!("--deterministic --seed {seed}"),
        None => "no --deterministic".to_string(),
    };
    if info.memory_limit != heap_limit(limits.max_memory) {
        // The heap limit is three quarters of --max-memory.
        let built_for = info.memory_limit / 3 * 4;
        Some(format!(
            "it was built for --max-memory {}, not {}; build it again with the server's \
             --max-memory",
            describe_bytes(built_for),
            describe_bytes(limits.max_memory)
        ))
    } else if info.seed != limits.seed {
        Some(format!(
            "it was built with {}, and this server runs with {}; build it again with the \
             server's flags",
            describe_seed(info.seed),
            describe_seed(limits.seed)
        ))
    } else {
        None
    }
}

/// `bytes` as the flags spell sizes.
fn describe_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The image of `bundle` for `config`: from the disk cache, or made now.
pub(crate) fn bundle_image(
    engine: &GuestEngine,
    bundle: &Bundle,
    config: &RuntimeConfig,
) -> Result<BundleImage, StartError> {
    let path = cache_dir().map(|dir| dir.join(format!("{}.wasm", image_key(bundle, config))));
    if let Some(image) = path.as_deref().and_then(|p| cached(engine, p)) {
        return Ok(image);
    }
    let started = Instant::now();
    let wasm = make_image(engine, bundle, config)?;
    let image = from_wasm(engine, wasm).map_err(StartError::Engine)?;
    tracing::info!(
        bundle = bundle.filename(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "made the bundle's pre-initialized image"
    );
    if let Some(path) = path {
        store_in_cache(&path, &image.wasm);
    }
    Ok(image)
}

/// An image read back from its bytes (the cache, or a `build` artifact).
///
/// # Errors
///
/// When the bytes are not an image of this guest, or do not compile.
pub(crate) fn from_wasm(engine: &GuestEngine, wasm: Vec<u8>) -> anyhow::Result<BundleImage> {
    let section = find_custom_section(&wasm, IMAGE_SECTION).ok_or_else(|| {
        anyhow::anyhow!("not a go-go-objects image (no `{IMAGE_SECTION}` section)")
    })?;
    let info: ImageInfo = serde_json::from_slice(section)
        .map_err(|e| anyhow::anyhow!("the image's description is unreadable: {e}"))?;
    if info.version != IMAGE_VERSION || info.guest != GUEST_SHA256 {
        anyhow::bail!(
            "the image was built by another version of go-go-objects (guest {}, this binary's {})",
            info.guest,
            GUEST_SHA256
        );
    }
    let pre = engine
        .prepare(&wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(BundleImage { wasm, info, pre })
}

/// Evaluates the bundle in the instrumented guest and snapshots it.
fn make_image(
    engine: &GuestEngine,
    bundle: &Bundle,
    config: &RuntimeConfig,
) -> Result<Vec<u8>, StartError> {
    let engine_error = |e: wasmtime::Error| StartError::Engine(anyhow::anyhow!("{e:#}"));
    let load_failed = |message: String| BundleError::Load {
        file: bundle.filename().to_string(),
        message,
    };
    let preinit = Preinitializer::new(engine).map_err(engine_error)?;
    let host = HostContext::probe(config.limits.clone(), config.clock.clone());
    let mut actor = Actor::instantiate(engine, preinit.instance_pre(), host)
        .map_err(|e| load_failed(e.message))?;
    actor
        .check_abi_version()
        .map_err(|e| load_failed(format!("{e:#}")))?;
    let context = CallContext {
        deadline: config.limits.cpu_timeout.map(|t| Instant::now() + t),
        ..CallContext::default()
    };
    let (api, exports) = match actor.initialize(bundle, &context) {
        Ok(Ok(described)) => described,
        Ok(Err(message)) => return Err(load_failed(message).into()),
        Err(e) => return Err(load_failed(e.message).into()),
    };
    let snapshot = actor.snapshot(&preinit).map_err(engine_error)?;
    let info = ImageInfo {
        version: IMAGE_VERSION,
        guest: GUEST_SHA256.to_string(),
        bundle: bundle.filename().to_string(),
        api,
        exports,
        memory_limit: heap_limit(config.limits.max_memory),
        seed: config.limits.seed,
    };
    let description = serde_json::to_vec(&info).expect("image descriptions encode");
    Ok(append_custom_section(snapshot, IMAGE_SECTION, &description))
}

/// The cache key of an image: everything that shapes the snapshot.
fn image_key(bundle: &Bundle, config: &RuntimeConfig) -> String {
    let mut hasher = Sha256::new();
    for part in [
        GUEST_SHA256,
        &IMAGE_VERSION.to_string(),
        bundle.script_name(),
        bundle.source(),
        &heap_limit(config.limits.max_memory).to_string(),
        &format!("{:?}", config.limits.seed),
    ] {
        hasher.update(part.len().to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where images are cached: `$GO_GO_OBJECTS_CACHE`, or the user's cache
/// directory, or the system's temporary one.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("GO_GO_OBJECTS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("go-go-objects"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("go-go-objects"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("go-go-objects"));
    let dir = base.join("images");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn cached(engine: &GuestEngine, path: &Path) -> Option<BundleImage> {
    let wasm = std::fs::read(path).ok()?;
    match from_wasm(engine, wasm) {
        Ok(image) => Some(image),
        Err(e) => {
            tracing::warn!("ignoring the cached image `{}`: {e:#}", path.display());
            None
        }
    }
}

/// Writes the image next to its final name and renames it, so a reader
/// never sees half of one.
fn store_in_cache(path: &Path, wasm: &[u8]) {
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    let stored = std::fs::write(&partial, wasm).and_then(|()| std::fs::rename(&partial, path));
    if let Err(e) = stored {
        tracing::warn!("failed to cache the image at `{}`: {e}", path.display());
        let _ = std::fs::remove_file(&partial);
    }
}
