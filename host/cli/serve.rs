//! The flags of the gateway and how they become a running server.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{ArgAction, Args};
use tokio::net::TcpListener;

use super::{
    common::{BundleArgs, LimitArgs},
    parse::{TotalMemory, parse_byte_size, parse_duration, parse_log_filter, parse_total_memory},
};
use crate::{
    alarms::{self, RetryPolicy},
    config::{self, AlarmConfig, EvictionConfig, RuntimeConfig},
    gateway::{self, GatewayOptions, ServeOptions},
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

    /// Which classes to serve.
    #[command(flatten)]
    pub bundle: BundleArgs,

    /// Per-actor limits.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Storage root: one SQLite database per object under `objects/`.
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_STORAGE, env = "GO_GO_OBJECTS_STORAGE")]
    pub storage: PathBuf,

    /// Longest the alarm loop sleeps before it looks for due alarms again;
    /// alarms set through this server are noticed at once (0 disables alarm
    /// delivery; alarms stay stored).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub alarm_interval: Duration,

    /// Delay before the first retry of a failed alarm; each further retry
    /// waits twice as long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub alarm_retry_delay: Duration,

    /// Retries of a failed alarm before it is dropped.
    #[arg(long, value_name = "COUNT", default_value_t = alarms::DEFAULT_MAX_RETRIES)]
    pub alarm_max_retries: u32,

    /// An actor idle this long is evicted; its state stays on disk (0
    /// disables idle eviction).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How often idle actors are looked for (0 disables the idle evictor).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub idle_interval: Duration,

    /// A live actor idle this long closes its database (two open files and
    /// about 100 KiB of memory) and gives back its stack and the memory
    /// pages it has not changed; its next dispatch that uses storage opens
    /// the database again, which costs about 0.1 ms (0 keeps everything).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub idle_release: Duration,

    /// Most live actors; past it the least recently used idle ones are
    /// evicted (0: no bound).
    #[arg(long, value_name = "COUNT", default_value_t = config::DEFAULT_MAX_LIVE_OBJECTS)]
    pub max_live_objects: usize,

    /// Most object databases open at once (two open files each); past it
    /// the least recently used idle actors close theirs and stay live, and
    /// open it again on their next storage call (0: no bound).
    #[arg(long, value_name = "COUNT", default_value_t = config::DEFAULT_MAX_OPEN_DATABASES)]
    pub max_open_databases: usize,

    /// Most memory all actors may hold together (`4GiB`): each counts for
    /// what its memory grew past the bundle's image, plus 1 MiB. Past it,
    /// the least recently used idle actors are evicted; when only busy ones
    /// are left, the growth fails with 503 `overloaded`. `auto` is half of
    /// the machine's (or the container's) memory; 0 is no bound.
    #[arg(long, value_name = "BYTES", default_value = "auto", value_parser = parse_total_memory)]
    pub max_total_memory: TotalMemory,

    /// Time a client has to send its request headers; a slower one is
    /// disconnected (0 waits forever).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a client has to send a whole request body once its headers are
    /// in; a slower one gets 408 (0 waits forever).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, value_name = "COUNT", default_value_t = gateway::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// How long shutdown waits for running dispatches to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest request body the gateway accepts; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_byte_size)]
    pub max_request_bytes: u64,

    /// Show real messages in 5xx responses (`--dev-errors=false` answers
    /// "internal server error").
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev_errors: bool,

    /// Log filter when RUST_LOG is not set (`info`, `debug`, `warn`, or a
    /// tracing directive such as `go_go_objects=debug`).
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,
}

impl ServeArgs {
    /// The runtime configuration these flags describe.
    pub fn runtime_config(&self) -> RuntimeConfig {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        RuntimeConfig {
            storage_root: self.storage.clone(),
            durability: self.limits.durability.into(),
            limits: self.limits.limits(),
            alarms: AlarmConfig {
                interval: nonzero(self.alarm_interval),
                retry: RetryPolicy {
                    first_delay: self.alarm_retry_delay,
                    max_retries: self.alarm_max_retries,
                },
            },
            eviction: EvictionConfig {
                idle_timeout: nonzero(self.idle_timeout),
                idle_interval: nonzero(self.idle_interval),
                max_live_objects: (self.max_live_objects > 0).then_some(self.max_live_objects),
                idle_release: nonzero(self.idle_release),
                max_open_databases: (self.max_open_databases > 0)
                    .then_some(self.max_open_databases),
                max_total_memory: self.max_total_memory.resolve(),
            },
            ..RuntimeConfig::default()
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
        let builtin = self.bundle.bundle.is_none()
            && self.bundle.image.is_none()
            && self.bundle.wrangler.is_none();
        let (source, manifest) = self.bundle.load_source()?;
        let mut config = self.runtime_config();
        fit_open_file_limit(&mut config.eviction);
        let runtime = tokio::task::spawn_blocking(move || {
            Runtime::from_source(source, manifest.as_ref(), config)
        })
        .await
        .context("the start-up task failed")??;

        let options = GatewayOptions {
            max_request_bytes: usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
            dev_errors: self.dev_errors,
            body_read_timeout: (!self.body_read_timeout.is_zero())
                .then_some(self.body_read_timeout),
        };
        let app = gateway::router(runtime.clone(), options);
        let listener = TcpListener::bind(&self.addr)
            .await
            .with_context(|| format!("failed to listen on --addr {}", self.addr))?;
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

        runtime.start_background();
        let serving = ServeOptions {
            header_read_timeout: (!self.header_read_timeout.is_zero())
                .then_some(self.header_read_timeout),
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_timeout,
        };
        let signalled = Arc::new(OnceLock::new());
        let signal = {
            let signalled = signalled.clone();
            async move {
                gateway::shutdown_signal().await;
                let _ = signalled.set(Instant::now());
            }
        };
        gateway::serve(listener, app, serving, signal).await;
        // One --shutdown-timeout in all, for open requests and the actors.
        let spent = signalled.get().map_or(Duration::ZERO, Instant::elapsed);
        let report = runtime
            .shutdown(self.shutdown_timeout.saturating_sub(spent))
            .await;
        tracing::info!(still_busy = report.still_busy, "shut down");
        Ok(())
    }
}

/// Open files the server needs besides those of object databases.
const BASE_OPEN_FILES: u64 = 256;

/// Open files each open object database holds: the database and its
/// write-ahead log (exclusive locking keeps the log's index in memory, so
/// there is no `-shm`).
const FILES_PER_DATABASE: u64 = 2;

/// Databases that may be open beyond `--max-open-databases` for a moment:
/// each dispatch closes two past the bound, but every dispatch thread may
/// have opened one meanwhile.
const OPEN_DATABASES_SLACK: u64 = 512;

/// Raises the open-file limit to what the databases that `eviction` lets be
/// open at once need (the hard limit too, when the process may). When the
/// limit cannot be raised far enough, lowers `max_open_databases` (or, when
/// that has no bound, `max_live_objects`) to what it allows, with a
/// warning.
fn fit_open_file_limit(eviction: &mut EvictionConfig) {
    let open_at_once = match (eviction.max_open_databases, eviction.max_live_objects) {
        (Some(open), Some(live)) => Some((open as u64 + OPEN_DATABASES_SLACK).min(live as u64)),
        (Some(open), None) => Some(open as u64 + OPEN_DATABASES_SLACK),
        (None, live) => live.map(|live| live as u64),
    };
    let needed = open_at_once.map(|n| n * FILES_PER_DATABASE + BASE_OPEN_FILES);
    if let Some(needed) = needed {
        // Raising the hard limit needs privileges; without them this fails
        // and the soft limit is raised to the hard one below.
        if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE)
            && soft.max(hard) < needed
        {
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed);
        }
    }
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("failed to read the open-file limit: {e}");
            return;
        }
    };
    let Some(needed) = needed else {
        tracing::warn!(
            limit,
            "no --max-open-databases or --max-live-objects bound: each open database holds 2 \
             open files"
        );
        return;
    };
    if limit >= needed {
        return;
    }
    let databases = limit.saturating_sub(BASE_OPEN_FILES) / FILES_PER_DATABASE;
    let allowed = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
    if let Some(max) = eviction.max_open_databases {
        let fitted = allowed(databases - OPEN_DATABASES_SLACK.min(databases / 2));
        tracing::warn!(
            limit,
            needed,
            "--max-open-databases {max} needs more open files than allowed (ulimit -n); \
             keeping at most {fitted} open"
        );
        eviction.max_open_databases = Some(fitted);
    } else if let Some(max) = eviction.max_live_objects {
        let fitted = allowed(databases);
        tracing::warn!(
            limit,
            needed,
            "--max-live-objects {max} needs more open files than allowed (ulimit -n); serving \
             at most {fitted} live objects"
        );
        eviction.max_live_objects = Some(fitted);
    }
}
