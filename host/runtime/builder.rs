//! [`RuntimeBuilder`]: a [`Runtime`] from a bundle and settings, step by step.

use std::path::PathBuf;

use super::{ClassSource, Runtime, StartError};
use crate::{
    bundle::{Bundle, Image, Manifest},
    clock::{Clock, SharedClock},
    config::{Limits, RuntimeConfig},
    events::{EventHook, Events},
};

/// Builds a [`Runtime`]; start from [`Runtime::builder`].
///
/// ```no_run
/// use go_go_objects::{bundle::Bundle, runtime::Runtime};
///
/// # async fn run() -> anyhow::Result<()> {
/// let runtime = Runtime::builder(Bundle::from_file("objects.js".as_ref())?)
///     .storage_root("./var/durable-objects")
///     .limits(|limits| limits.cpu_fuel = 1_000_000_000)
///     .on_event(|event: &go_go_objects::events::Event<'_>| println!("{event:?}"))
///     .start()
///     .await?;
/// # runtime.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RuntimeBuilder {
    source: ClassSource,
    manifest: Option<Manifest>,
    config: RuntimeConfig,
}

impl Runtime {
    /// A builder for a runtime serving `bundle`, with the default settings.
    pub fn builder(bundle: Bundle) -> RuntimeBuilder {
        Self::builder_from(ClassSource::Bundle(bundle))
    }

    /// A builder for a runtime serving a pre-initialized image (from
    /// [`super::build_image`] or `go-go-objects build`); its memory limit and
    /// deterministic seed must be the ones the image was built with.
    pub fn builder_from_image(image: Image) -> RuntimeBuilder {
        Self::builder_from(ClassSource::Image(image))
    }

    /// A builder for a runtime serving the classes of `source`.
    pub fn builder_from(source: ClassSource) -> RuntimeBuilder {
        RuntimeBuilder {
            source,
            manifest: None,
            config: RuntimeConfig::default(),
        }
    }
}

impl RuntimeBuilder {
    /// Maps namespaces to classes explicitly instead of deriving them.
    pub fn manifest(mut self, manifest: Manifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Where object databases live.
    pub fn storage_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.config.storage_root = root.into();
        self
    }

    /// Keeps the databases of `namespace` under `root` instead.
    pub fn namespace_storage(mut self, namespace: &str, root: impl Into<PathBuf>) -> Self {
        self.config
            .namespace_storage
            .insert(namespace.to_string(), root.into());
        self
    }

    /// Changes the per-actor limits.
    pub fn limits(mut self, change: impl FnOnce(&mut Limits)) -> Self {
        change(&mut self.config.limits);
        self
    }

    /// Changes any setting.
    pub fn config(mut self, change: impl FnOnce(&mut RuntimeConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Uses `clock` for alarms, eviction and `Date.now()`.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = SharedClock::new(clock);
        self
    }

    /// When a commit counts as done (and a response may be sent).
    pub fn durability(mut self, durability: crate::storage::Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Passes every [`crate::events::Event`] to `hook`.
    pub fn on_event(mut self, hook: impl EventHook) -> Self {
        self.config.events = Events::to(hook);
        self
    }

    /// Builds the runtime without starting its background loops. Blocks
    /// while the guest module compiles (or loads from the cache).
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`] or [`Runtime::from_image`].
    pub fn build(self) -> Result<Runtime, StartError> {
        Runtime::from_source(self.source, self.manifest.as_ref(), self.config)
    }

    /// Builds the runtime on a blocking thread and starts its background
    /// loops (alarms, idle eviction); stop them with [`Runtime::shutdown`].
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`].
    pub async fn start(self) -> Result<Runtime, StartError> {
        let runtime = tokio::task::spawn_blocking(move || self.build())
            .await
            .map_err(|e| StartError::Engine(anyhow::anyhow!("the start-up task failed: {e}")))??;
        runtime.start_background();
        Ok(runtime)
    }
}
