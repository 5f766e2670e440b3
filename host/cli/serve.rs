//! The flags of the gateway and how they become a running server.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{ArgAction, Args};
use tokio::net::TcpListener;

use super::parse::{parse_byte_size, parse_duration};
use crate::{
    bundle::{self, Bundle},
    config::{self, Limits, RuntimeConfig},
    gateway::{self, GatewayOptions},
    runtime::Runtime,
};

/// Flags of the gateway.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:8787",
        env = "GO_GO_OBJECTS_ADDR"
    )]
    pub addr: String,

    /// Storage root: one SQLite database per object under `objects/`.
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_STORAGE, env = "GO_GO_OBJECTS_STORAGE")]
    pub storage: PathBuf,

    /// CommonJS bundle whose `exports.objects` holds the classes to serve;
    /// without it, the built-in Counter is served as COUNTER.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// JSON or YAML `objects: {NAMESPACE: Class}` map; needs --bundle. Without
    /// it, namespaces are derived from the export names (ChatRoom → CHAT_ROOM).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Wall-clock deadline of one dispatch, including promise settlement and
    /// calls to other objects (`250ms`, `2s`; 0 disables).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub cpu_timeout: Duration,

    /// Fuel budget of one dispatch: a deterministic CPU limit, about one unit
    /// per wasm instruction (0 disables).
    #[arg(long, value_name = "FUEL", default_value_t = config::DEFAULT_CPU_FUEL)]
    pub cpu_fuel: u64,

    /// Linear-memory cap of one actor (`64MiB`, `1GiB`).
    #[arg(long, value_name = "BYTES", default_value = "128MiB", value_parser = parse_byte_size)]
    pub max_memory: u64,

    /// Largest request body the gateway accepts; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_byte_size)]
    pub max_request_bytes: u64,

    /// Show real messages in 5xx responses (`--dev-errors=false` answers
    /// "internal server error").
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev_errors: bool,

    /// Log filter when RUST_LOG is not set (`info`, `debug`, `warn`, or a
    /// tracing directive such as `go_go_objects=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,
}

impl ServeArgs {
    /// The runtime configuration these flags describe.
    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            storage_root: self.storage.clone(),
            limits: Limits {
                cpu_timeout: (!self.cpu_timeout.is_zero()).then_some(self.cpu_timeout),
                cpu_fuel: if self.cpu_fuel == 0 {
                    u64::MAX
                } else {
                    self.cpu_fuel
                },
                max_memory: self.max_memory,
                ..Limits::default()
            },
        }
    }

    /// Loads the bundle, starts the runtime and serves until SIGINT or
    /// SIGTERM.
    ///
    /// # Errors
    ///
    /// When the flags are inconsistent, the bundle or manifest is unusable
    /// (the message names the file and the reason), or the address cannot be
    /// bound.
    pub async fn execute(self) -> anyhow::Result<()> {
        if self.manifest.is_some() && self.bundle.is_none() {
            bail!("--manifest requires --bundle");
        }
        let builtin = self.bundle.is_none();
        let bundle = match &self.bundle {
            Some(path) => Bundle::from_file(path)?,
            None => Bundle::builtin_counter(),
        };
        let manifest = self
            .manifest
            .as_deref()
            .map(bundle::read_manifest)
            .transpose()?;
        let config = self.runtime_config();
        let runtime =
            tokio::task::spawn_blocking(move || Runtime::new(bundle, manifest.as_ref(), config))
                .await
                .context("the start-up task failed")??;

        let options = GatewayOptions {
            max_request_bytes: usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
            dev_errors: self.dev_errors,
        };
        let app = gateway::router(runtime.clone(), options);
        let listener = TcpListener::bind(&self.addr)
            .await
            .with_context(|| format!("failed to listen on {}", self.addr))?;
        let local = listener
            .local_addr()
            .context("failed to read the bound address")?;

        println!("go-go-objects listening on http://{local}");
        if builtin {
            println!(
                "try: curl -X POST http://{local}/rpc/COUNTER/global/increment \
                 -H 'content-type: application/json' -d '[1]'"
            );
        }
        for (namespace, class) in runtime.classes().iter() {
            tracing::info!(namespace, class, "serving");
        }

        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server failed")?;
        tracing::info!("shut down");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
