//! Flags shared by `serve` and `run`: the bundle and the per-actor limits.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::parse::{parse_actor_memory, parse_byte_size, parse_duration, parse_wasm_stack};
use crate::{
    bundle::{self, Bundle, Image, Manifest, WranglerConfig},
    config::{self, Limits},
    runtime::ClassSource,
    storage::Durability,
};

/// Which classes to serve.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The bundle: a CommonJS script whose `exports.objects` holds the
    /// classes to serve (the reference API), or an ES module exporting
    /// classes (Cloudflare's API); without it, the built-in Counter is
    /// served as COUNTER.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// JSON or YAML `objects: {NAMESPACE: Class}` map; needs --bundle or
    /// --image. Without it, namespaces are derived from the export names
    /// (ChatRoom → CHAT_ROOM).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// A pre-initialized bundle image made by `go-go-objects build`, served
    /// instead of a bundle's source.
    #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
    pub image: Option<PathBuf>,

    /// A Wrangler configuration (wrangler.toml, .json or .jsonc): its
    /// Durable Object bindings are the namespaces, and its `main` is the
    /// bundle unless --bundle or --image is given.
    #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
    pub wrangler: Option<PathBuf>,
}

impl BundleArgs {
    /// Reads the bundle (or takes the built-in counter) and the manifest.
    ///
    /// # Errors
    ///
    /// When `--manifest` comes without `--bundle`, or a file cannot be read
    /// or parsed; the message names the file.
    pub fn load(&self) -> anyhow::Result<(Bundle, Option<Manifest>)> {
        if self.manifest.is_some() && self.bundle.is_none() {
            bail!("--manifest requires --bundle or --image");
        }
        let wrangler = self.read_wrangler()?;
        let from_wrangler = wrangler.as_ref().and_then(|w| w.main.clone());
        let bundle = match (self.bundle.clone(), from_wrangler) {
            (Some(path), _) | (None, Some(path)) => Bundle::from_file(&path)?,
            (None, None) if wrangler.is_some() => {
                bail!("--wrangler needs a `main` in the configuration, or --bundle")
            }
            (None, None) => Bundle::builtin_counter(),
        };
        match wrangler {
            Some(wrangler) => Ok((bundle, Some(wrangler.manifest))),
            None => Ok((bundle, self.read_manifest()?)),
        }
    }

    /// The bundle or the image (`--image`), and the manifest.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load); or when the image cannot be read.
    pub fn load_source(&self) -> anyhow::Result<(ClassSource, Option<Manifest>)> {
        let Some(image) = &self.image else {
            let (bundle, manifest) = self.load()?;
            return Ok((ClassSource::Bundle(bundle), manifest));
        };
        let image = Image::from_file(image)?;
        let manifest = match self.read_wrangler()? {
            Some(wrangler) => Some(wrangler.manifest),
            None => self.read_manifest()?,
        };
        Ok((ClassSource::Image(image), manifest))
    }

    fn read_wrangler(&self) -> anyhow::Result<Option<WranglerConfig>> {
        Ok(self
            .wrangler
            .as_deref()
            .map(bundle::read_wrangler)
            .transpose()?)
    }

    fn read_manifest(&self) -> anyhow::Result<Option<Manifest>> {
        Ok(self
            .manifest
            .as_deref()
            .map(bundle::read_manifest)
            .transpose()?)
    }
}

/// The limits of every actor, and deterministic mode.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Wall-clock deadline of one dispatch, including promise settlement and
    /// calls to other objects (`250ms`, `2s`; 0 disables).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub cpu_timeout: Duration,

    /// Fuel budget of one dispatch: a deterministic CPU limit, about one unit
    /// per wasm instruction (0 disables).
    #[arg(long, value_name = "FUEL", default_value_t = config::DEFAULT_CPU_FUEL)]
    pub cpu_fuel: u64,

    /// Linear-memory cap of one actor, 16MiB to 4GiB (`64MiB`, `1GiB`).
    #[arg(long, value_name = "BYTES", default_value = "128MiB", value_parser = parse_actor_memory)]
    pub max_memory: u64,

    /// Most native stack guest code may use (`8MiB` allows about 12,000
    /// nested JavaScript calls); deeper recursion is a 500.
    #[arg(long, value_name = "BYTES", default_value = "8MiB", value_parser = parse_wasm_stack)]
    pub max_wasm_stack: u64,

    /// Largest storage key, in UTF-8 bytes.
    #[arg(long, value_name = "BYTES", default_value = "2KiB", value_parser = parse_byte_size)]
    pub max_key_bytes: u64,

    /// Largest stored value, in bytes of JSON.
    #[arg(long, value_name = "BYTES", default_value = "2MiB", value_parser = parse_byte_size)]
    pub max_value_bytes: u64,

    /// Most bytes one object's database may hold; a `put` past it fails
    /// with 507 `quota_exceeded`.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_byte_size)]
    pub max_storage_bytes: u64,

    /// Largest result of one dispatch (an RPC result's JSON, a fetch
    /// response).
    #[arg(long, value_name = "BYTES", default_value = "32MiB", value_parser = parse_byte_size)]
    pub max_response_bytes: u64,

    /// Most console lines one dispatch writes to the log; the rest are
    /// dropped, with one warning.
    #[arg(long, value_name = "COUNT", default_value_t = config::DEFAULT_MAX_LOG_LINES)]
    pub max_log_lines: u32,

    /// When a write counts as done, before its response is sent: `full`, on
    /// disk (a power loss loses nothing acknowledged); `normal`, in the
    /// write-ahead log (a crash of the server loses nothing acknowledged, a
    /// power loss may lose the last writes).
    #[arg(long, value_name = "MODE", default_value = "full")]
    pub durability: DurabilityArg,

    /// Make every actor reproducible: `Date.now()` starts at
    /// 2026-01-01T00:00:00Z and advances 1 ms per 10 million fuel consumed;
    /// `Math.random()` and `crypto.getRandomValues()` are seeded from --seed
    /// and the object.
    #[arg(long)]
    pub deterministic: bool,

    /// The seed of deterministic mode.
    #[arg(
        long,
        value_name = "SEED",
        default_value_t = 0,
        requires = "deterministic"
    )]
    pub seed: u64,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    /// On disk before the response.
    Full,
    /// In the write-ahead log before the response.
    Normal,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Full => Self::Full,
            DurabilityArg::Normal => Self::Normal,
        }
    }
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            cpu_timeout: (!self.cpu_timeout.is_zero()).then_some(self.cpu_timeout),
            cpu_fuel: if self.cpu_fuel == 0 {
                u64::MAX
            } else {
                self.cpu_fuel
            },
            max_memory: self.max_memory,
            max_wasm_stack: usize::try_from(self.max_wasm_stack).unwrap_or(usize::MAX),
            max_key_bytes: usize::try_from(self.max_key_bytes).unwrap_or(usize::MAX),
            max_value_bytes: usize::try_from(self.max_value_bytes).unwrap_or(usize::MAX),
            max_storage_bytes: self.max_storage_bytes,
            max_response_bytes: usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX),
            max_log_lines: self.max_log_lines,
            seed: self.deterministic.then_some(self.seed),
            ..Limits::default()
        }
    }
}
