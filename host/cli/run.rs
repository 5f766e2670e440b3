//! `go-go-objects run`: one dispatch, offline, with a JSON report.
//!
//! The dispatch runs on a runtime of its own against a storage root (a
//! temporary one unless `--storage` is given), and the report on stdout
//! says what it returned, the fuel it consumed, how long it took and which
//! storage keys of the object it wrote or deleted. Because fuel is
//! deterministic, the report's `fuel` is the same on every run and every
//! machine for the same bundle, state and input, which is what lets CI gate
//! a handler on its CPU cost with `--fuel-limit`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};

use super::{
    common::{BundleArgs, LimitArgs},
    parse::parse_log_filter,
};
use crate::{
    ObjectId,
    bundle::Manifest,
    config::{AlarmConfig, EvictionConfig, RuntimeConfig},
    error::{DispatchError, ErrorCode},
    gateway::{FetchRoute, fetch_request},
    runtime::{ClassSource, DispatchKind, DispatchOutput, DispatchRequest, DispatchValue, Runtime},
    storage,
};

/// The dispatch succeeded (an RPC returned; a fetch answered, whatever its
/// status).
pub const EXIT_OK: u8 = 0;
/// The handler failed: it threw or rejected, or its result cannot be encoded.
pub const EXIT_HANDLER_ERROR: u8 = 1;
/// Bad usage: a flag, the object, the arguments, the bundle or the manifest.
pub const EXIT_USAGE: u8 = 2;
/// A limit was exceeded: `--fuel-limit`, fuel, deadline or memory.
pub const EXIT_LIMIT: u8 = 3;
/// The runtime itself failed (storage, the engine).
pub const EXIT_RUNTIME: u8 = 4;

/// The help text's list of exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the dispatch succeeded (an RPC returned; a fetch answered, any status)
  1  the handler failed: it threw or rejected, or returned what JSON cannot encode
  2  bad usage: a flag, the object, --args, the bundle, the manifest, an unknown
     namespace or method
  3  a limit was exceeded: --fuel-limit, --cpu-fuel, --cpu-timeout or --max-memory
  4  the runtime failed: storage or the engine";

/// Flags of `run`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct RunArgs {
    /// The object to dispatch to: NAMESPACE/NAME (e.g. COUNTER/global).
    #[arg(value_name = "NAMESPACE/NAME")]
    pub object: String,

    /// RPC method to call.
    #[arg(
        long,
        value_name = "METHOD",
        required_unless_present = "fetch",
        conflicts_with = "fetch"
    )]
    pub method: Option<String>,

    /// Arguments of --method: a JSON array.
    #[arg(long, value_name = "JSON", default_value = "[]")]
    pub args: String,

    /// Deliver a request to the object's fetch handler at this path
    /// (`/count?x=1`).
    #[arg(long, value_name = "PATH")]
    pub fetch: Option<String>,

    /// HTTP method of the --fetch request.
    #[arg(long, value_name = "METHOD", default_value = "GET", requires = "fetch")]
    pub request_method: String,

    /// A header of the --fetch request, `Name: value`; may repeat.
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "fetch")]
    pub headers: Vec<String>,

    /// Body of the --fetch request.
    #[arg(
        long,
        value_name = "TEXT",
        requires = "fetch",
        conflicts_with = "body_file"
    )]
    pub body: Option<String>,

    /// Body of the --fetch request, read from a file.
    #[arg(long, value_name = "FILE", requires = "fetch")]
    pub body_file: Option<PathBuf>,

    /// Storage root to run against; without it, a temporary one that is
    /// discarded afterwards.
    #[arg(long, value_name = "DIR")]
    pub storage: Option<PathBuf>,

    /// Fail with exit code 3 when the dispatch needs more fuel than this;
    /// the report says how much it needed. The dispatch runs with this
    /// budget (the actor's start keeps --cpu-fuel), so it fails exactly where
    /// a server with --cpu-fuel FUEL answers 504.
    #[arg(long, value_name = "FUEL", value_parser = clap::value_parser!(u64).range(1..))]
    pub fuel_limit: Option<u64>,

    /// Which classes to serve.
    #[command(flatten)]
    pub bundle: BundleArgs,

    /// Per-actor limits.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Log filter (to stderr) when RUST_LOG is not set.
    #[arg(long, value_name = "FILTER", default_value = "warn", value_parser = parse_log_filter)]
    pub log_level: String,
}

/// A failure before or around the dispatch, with its exit code.
struct Failure {
    exit: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        exit: EXIT_USAGE,
        error: error.into(),
    }
}

fn runtime_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        exit: EXIT_RUNTIME,
        error: error.into(),
    }
}

impl RunArgs {
    /// Runs the dispatch, prints the report on stdout, and returns the exit
    /// code (see [`EXIT_CODES_HELP`]).
    pub async fn execute(self) -> ExitCode {
        match self.run().await {
            Ok((report, exit)) => {
                println!("{report}");
                ExitCode::from(exit)
            }
            Err(failure) => {
                eprintln!("go-go-objects run: {:#}", failure.error);
                ExitCode::from(failure.exit)
            }
        }
    }

    async fn run(&self) -> Result<(Value, u8), Failure> {
        let id = parse_object(&self.object).map_err(usage)?;
        let kind = self.dispatch_kind(&id).map_err(usage)?;
        let (source, manifest) = self.bundle.load_source().map_err(usage)?;

        let scratch = tempfile::tempdir().map_err(runtime_failure)?;
        let root = self
            .storage
            .clone()
            .unwrap_or_else(|| scratch.path().join("storage"));
        let pristine = match self.fuel_limit {
            Some(_) => Some(copy_storage(&root, &scratch.path().join("pristine"))?),
            None => None,
        };
        let before = stored_values(&root, &id);

        let budget = self.fuel_limit;
        let run = execute_once(
            &source,
            manifest.as_ref(),
            self.config(&root, budget),
            &id,
            &kind,
        );
        let (result, wall) = run.await?;
        let after = stored_values(&root, &id);

        let mut report = json!({
            "ok": false,
            "object": id,
            "dispatch": match kind { DispatchKind::Rpc { .. } | DispatchKind::CloneRpc { .. } => "rpc", DispatchKind::Fetch { .. } => "fetch" },
            "storage": storage_changes(&before, &after),
        });
        let exit = match result {
            Ok(output) => {
                report["ok"] = json!(true);
                report["fuel"] = json!(output.fuel_consumed);
                report["wallTimeMs"] = json!(wall.as_secs_f64() * 1000.0);
                match output.value {
                    DispatchValue::Rpc(raw) => {
                        report["result"] = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                    }
                    DispatchValue::Fetch(response) => {
                        // Bytes from a Response: text when they are UTF-8,
                        // else base64.
                        let bytes = response.body_base64.as_deref().map(|encoded| {
                            base64::engine::general_purpose::STANDARD
                                .decode(encoded)
                                .unwrap_or_default()
                        });
                        let (body, body_base64) = match bytes {
                            Some(bytes) => match String::from_utf8(bytes) {
                                Ok(text) => (Some(text), None),
                                Err(_) => (None, response.body_base64.clone()),
                            },
                            None => (response.body.clone(), None),
                        };
                        report["response"] = json!({
                            "status": response.status,
                            "headers": response.headers,
                            "body": body,
                        });
                        if let Some(encoded) = body_base64 {
                            report["response"]["bodyBase64"] = json!(encoded);
                        }
                    }
                }
                EXIT_OK
            }
            Err(error) => {
                let out_of_budget = budget.is_some_and(|b| {
                    error.code == ErrorCode::Timeout && error.fuel_consumed == Some(b)
                });
                if let (true, Some(limit), Some(pristine)) = (out_of_budget, budget, &pristine) {
                    let needed = self
                        .measure_need(&source, manifest.as_ref(), pristine, &id, &kind)
                        .await?;
                    report["fuelLimit"] = json!(limit);
                    report["fuelNeeded"] = needed.map_or(Value::Null, Value::from);
                    let need = needed.map_or_else(
                        || format!("more than --cpu-fuel {}", self.limits.limits().cpu_fuel),
                        |n| n.to_string(),
                    );
                    report["error"] = json!({
                        "code": "timeout",
                        "message": format!("the dispatch needs {need} fuel, more than --fuel-limit {limit}"),
                    });
                } else {
                    report["error"] =
                        json!({"code": error.code.as_str(), "message": error.message});
                }
                report["fuel"] = error.fuel_consumed.map_or(Value::Null, Value::from);
                report["wallTimeMs"] = json!(wall.as_secs_f64() * 1000.0);
                exit_code(error.code)
            }
        };
        Ok((report, exit))
    }

    /// The dispatch's fuel with the full --cpu-fuel budget, on a copy of the
    /// storage as it was before the run; `None` when even that is not enough.
    async fn measure_need(
        &self,
        source: &ClassSource,
        manifest: Option<&Manifest>,
        pristine: &Path,
        id: &ObjectId,
        kind: &DispatchKind,
    ) -> Result<Option<u64>, Failure> {
        let config = self.config(pristine, None);
        let (result, _) = execute_once(source, manifest, config, id, kind).await?;
        Ok(match result {
            Ok(output) => Some(output.fuel_consumed),
            Err(error) if error.code == ErrorCode::Timeout => None,
            Err(error) => error.fuel_consumed,
        })
    }

    fn config(&self, root: &Path, dispatch_budget: Option<u64>) -> RuntimeConfig {
        let mut limits = self.limits.limits();
        if let Some(budget) = dispatch_budget {
            limits.start_fuel = Some(limits.cpu_fuel);
            limits.cpu_fuel = budget;
        }
        RuntimeConfig {
            storage_root: root.to_path_buf(),
            durability: self.limits.durability.into(),
            limits,
            alarms: AlarmConfig {
                interval: None,
                ..AlarmConfig::default()
            },
            eviction: EvictionConfig {
                idle_timeout: None,
                idle_interval: None,
                max_live_objects: None,
                idle_release: None,
                max_open_databases: None,
                max_total_memory: None,
            },
            ..RuntimeConfig::default()
        }
    }

    fn dispatch_kind(&self, id: &ObjectId) -> anyhow::Result<DispatchKind> {
        if let Some(method) = &self.method {
            let args: Value = serde_json::from_str(&self.args).context("--args is not JSON")?;
            let Value::Array(args) = args else {
                anyhow::bail!("--args must be a JSON array of arguments");
            };
            return Ok(DispatchKind::Rpc {
                method: method.clone(),
                args,
            });
        }
        let path = self.fetch.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let method = Method::from_bytes(self.request_method.as_bytes())
            .context("--request-method is not an HTTP method")?;
        let uri: Uri = format!("/fetch/{}/{}{path}", id.namespace(), id.name())
            .parse()
            .context("--fetch is not a valid path")?;
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("localhost"));
        for line in &self.headers {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("--header {line:?} is not `Name: value`"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {line:?} has an invalid name"))?;
            let value = HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {line:?} has an invalid value"))?;
            headers.append(name, value);
        }
        let body = match (&self.body, &self.body_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(file)) => std::fs::read(file)
                .with_context(|| format!("failed to read --body-file `{}`", file.display()))?,
            (None, None) => Vec::new(),
        };
        let rest = uri.path()[format!("/fetch/{}/{}", id.namespace(), id.name()).len()..]
            .trim_start_matches('/')
            .to_string();
        let route = FetchRoute {
            rest: &rest,
            fixed_segments: 3,
        };
        let request = fetch_request(&method, &uri, &headers, route, &body, None)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        Ok(DispatchKind::Fetch {
            request: Box::new(request),
        })
    }
}

/// Starts a runtime on `config`, runs one dispatch, shuts the runtime down.
async fn execute_once(
    source: &ClassSource,
    manifest: Option<&Manifest>,
    config: RuntimeConfig,
    id: &ObjectId,
    kind: &DispatchKind,
) -> Result<(Result<DispatchOutput, DispatchError>, Duration), Failure> {
    let (source, manifest) = (source.clone(), manifest.cloned());
    let runtime = tokio::task::spawn_blocking(move || {
        Runtime::from_source(source, manifest.as_ref(), config)
    })
    .await
    .map_err(runtime_failure)?
    .map_err(|e| match e {
        crate::runtime::StartError::Bundle(e) => usage(e),
        e => runtime_failure(e),
    })?;
    let request = DispatchRequest {
        id: id.clone(),
        kind: kind.clone(),
    };
    let started = Instant::now();
    let result = runtime.dispatch(request).await;
    let wall = started.elapsed();
    runtime.shutdown(Duration::from_secs(10)).await;
    Ok((result, wall))
}

/// `NAMESPACE/NAME` as an object id.
fn parse_object(text: &str) -> anyhow::Result<ObjectId> {
    let (namespace, name) = text
        .split_once('/')
        .with_context(|| format!("the object {text:?} is not NAMESPACE/NAME"))?;
    ObjectId::new(namespace, name).map_err(Into::into)
}

/// The exit code of a failed dispatch.
fn exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Timeout | ErrorCode::OutOfMemory | ErrorCode::QuotaExceeded => EXIT_LIMIT,
        ErrorCode::UnknownNamespace
        | ErrorCode::MethodNotFound
        | ErrorCode::FetchNotImplemented
        | ErrorCode::NotFound
        | ErrorCode::MethodNotAllowed
        | ErrorCode::RequestTooLarge
        | ErrorCode::RequestTimeout
        | ErrorCode::Unauthorized => EXIT_USAGE,
        ErrorCode::StorageError | ErrorCode::Overloaded => EXIT_RUNTIME,
        ErrorCode::BadRequest | ErrorCode::ActorStartFailed | ErrorCode::ExecutionError => {
            EXIT_HANDLER_ERROR
        }
    }
}

/// The object's stored keys and JSON values; empty when it has no database.
fn stored_values(root: &Path, id: &ObjectId) -> BTreeMap<String, String> {
    let path = storage::database_path(root, id);
    if !path.exists() {
        return BTreeMap::new();
    }
    storage::read_values(&path).unwrap_or_default()
}

/// Keys whose value is new or changed, and keys that are gone.
fn storage_changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Value {
    let written: Vec<&String> = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(value))
        .map(|(key, _)| key)
        .collect();
    let deleted: Vec<&String> = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .collect();
    json!({ "written": written, "deleted": deleted })
}

/// Copies the storage root (if it exists) to `to`, for a second run from the
/// same state; returns `to`.
fn copy_storage(from: &Path, to: &Path) -> Result<PathBuf, Failure> {
    std::fs::create_dir_all(to).map_err(runtime_failure)?;
    if from.exists() {
        copy_dir(from, to)
            .with_context(|| format!("failed to copy the storage root `{}`", from.display()))
            .map_err(runtime_failure)?;
    }
    Ok(to.to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_written_and_deleted_keys() {
        let before = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let after = BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())]);
        assert_eq!(
            storage_changes(&before, &after),
            json!({"written": ["c"], "deleted": ["b"]})
        );
        assert!(parse_object("COUNTER/global").is_ok());
        assert!(parse_object("COUNTER").is_err());
        assert!(parse_object("COUNTER/a/b").is_err());
    }
}
