//! `go-go-objects build`: a bundle's pre-initialized image, as a file.
//!
//! The image is the guest with the bundle already evaluated, so a server
//! started with `--image` neither needs the bundle's source nor evaluates
//! it. An image is tied to the binary that built it and to the settings
//! that shape the snapshot (`--max-memory`, `--deterministic` and
//! `--seed`); a server started with other settings or another version
//! refuses it with the reason.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{
    common::BundleArgs,
    parse::{parse_actor_memory, parse_log_filter},
};
use crate::{
    config::{Limits, RuntimeConfig},
    runtime::build_image,
};

/// Flags of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Which bundle to build (and the manifest to check it against).
    #[command(flatten)]
    pub bundle: BundleArgs,

    /// Where to write the image.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,

    /// The --max-memory the image will be served with.
    #[arg(long, value_name = "BYTES", default_value = "128MiB", value_parser = parse_actor_memory)]
    pub max_memory: u64,

    /// Build for a server in deterministic mode.
    #[arg(long)]
    pub deterministic: bool,

    /// The --seed the image will be served with.
    #[arg(
        long,
        value_name = "SEED",
        default_value_t = 0,
        requires = "deterministic"
    )]
    pub seed: u64,

    /// Log filter, in `tracing` directive syntax.
    #[arg(long, value_name = "FILTER", default_value = "warn", value_parser = parse_log_filter)]
    pub log_level: String,
}

impl BuildArgs {
    /// Builds the image and writes it to `--output`; prints what it serves.
    ///
    /// # Errors
    ///
    /// When `--image` is given (an image cannot be built again), the bundle
    /// or manifest is unusable (the message names the file and the
    /// reason), or the output cannot be written.
    pub async fn execute(self) -> anyhow::Result<()> {
        if self.bundle.image.is_some() {
            anyhow::bail!("build takes --bundle, not --image");
        }
        let (bundle, manifest) = self.bundle.load()?;
        let config = RuntimeConfig {
            limits: Limits {
                max_memory: self.max_memory,
                seed: self.deterministic.then_some(self.seed),
                ..Limits::default()
            },
            ..RuntimeConfig::default()
        };
        let built =
            tokio::task::spawn_blocking(move || build_image(&bundle, manifest.as_ref(), &config))
                .await
                .context("the build task failed")??;
        write_atomically(&self.output, &built.wasm)?;
        println!(
            "wrote {} ({} bytes)",
            self.output.display(),
            built.wasm.len()
        );
        for (namespace, class) in built.classes.iter() {
            println!("  {namespace}: {class}");
        }
        if self.bundle.manifest.is_some() || self.bundle.wrangler.is_some() {
            // The image holds the classes, not the namespaces chosen for
            // them.
            println!("serve it with the same --manifest or --wrangler to keep these namespaces");
        }
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path`, so a reader never sees half an image.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let fail = |e: std::io::Error| anyhow::anyhow!("failed to write `{}`: {e}", path.display());
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut file, bytes).map_err(fail)?;
    // Temporary files are private; an image is read by whoever serves it.
    let readable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    file.as_file().set_permissions(readable).map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
