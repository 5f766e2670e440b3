//! Test harness: servers over real HTTP on 127.0.0.1, real SQLite files in
//! temporary directories, and the real guest module.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use go_go_objects::{
    bundle::{Bundle, Manifest},
    clock::{ManualClock, SharedClock},
    config::{Limits, RuntimeConfig},
    gateway::{self, GatewayOptions},
    runtime::Runtime,
};
use serde_json::Value;
use tempfile::TempDir;

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A bundle from `fixtures/<relative>`.
pub fn fixture(relative: &str) -> Bundle {
    Bundle::from_file(&fixtures().join(relative)).expect("fixture exists")
}

/// The CommonJS fixture `fixtures/<relative>` as an ES module: its
/// `exports.objects = { A, B };` line becomes `export { A, B };`, so the same
/// classes get Cloudflare's API (as the case texts say for that flavour).
pub fn fixture_as_module(relative: &str) -> Bundle {
    let path = fixtures().join(relative);
    let source = std::fs::read_to_string(&path).expect("fixture exists");
    let start = source
        .find("exports.objects = {")
        .expect("the fixture sets exports.objects");
    let end = start + source[start..].find('}').expect("a closing brace") + 1;
    let names = &source[start + "exports.objects = {".len()..end - 1];
    let module = format!("{}export {{{names}}};{}", &source[..start], &source[end..]);
    let name = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".js", ".mjs");
    Bundle::from_source(name, module)
}

/// A manifest from YAML text.
pub fn manifest(yaml: &str) -> Manifest {
    Manifest::parse(yaml).expect("valid manifest")
}

/// Builds an in-process server.
pub struct ServerBuilder {
    bundle: Bundle,
    manifest: Option<Manifest>,
    config: RuntimeConfig,
    gateway: GatewayOptions,
    storage: Option<PathBuf>,
    background: bool,
}

impl ServerBuilder {
    pub fn new(bundle: Bundle) -> Self {
        Self {
            bundle,
            manifest: None,
            config: RuntimeConfig::default(),
            gateway: GatewayOptions::default(),
            storage: None,
            background: false,
        }
    }

    pub fn manifest(mut self, yaml: &str) -> Self {
        self.manifest = Some(manifest(yaml));
        self
    }

    pub fn limits(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(&mut self.config.limits);
        self
    }

    /// Changes the runtime configuration (alarms, eviction, clock).
    pub fn config(mut self, f: impl FnOnce(&mut RuntimeConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Uses `clock` for alarms, eviction and `Date.now()`.
    pub fn clock(mut self, clock: &ManualClock) -> Self {
        self.config.clock = SharedClock::new(clock.clone());
        self
    }

    pub fn gateway(mut self, f: impl FnOnce(&mut GatewayOptions)) -> Self {
        f(&mut self.gateway);
        self
    }

    pub fn storage(mut self, dir: &Path) -> Self {
        self.storage = Some(dir.to_path_buf());
        self
    }

    /// Starts the alarm loop and the idle evictor (off by default: tests
    /// drive them through the runtime).
    pub fn background(mut self) -> Self {
        self.background = true;
        self
    }

    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage_root = self.storage.unwrap_or_else(|| dir.path().join("storage"));
        let config = RuntimeConfig {
            storage_root: storage_root.clone(),
            ..self.config
        };
        let (bundle, manifest) = (self.bundle, self.manifest);
        let runtime =
            tokio::task::spawn_blocking(move || Runtime::new(bundle, manifest.as_ref(), config))
                .await
                .unwrap()
                .expect("runtime starts");
        if self.background {
            runtime.start_background();
        }
        let app = gateway::router(runtime.clone(), self.gateway);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            base,
            runtime,
            storage_root,
            client: reqwest::Client::new(),
            _dir: dir,
            server,
        }
    }
}

/// A gateway served on an ephemeral loopback port.
pub struct TestServer {
    pub base: String,
    pub runtime: Runtime,
    pub storage_root: PathBuf,
    pub client: reqwest::Client,
    _dir: TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The `result` of a successful RPC envelope.
    pub fn result(&self) -> Value {
        let json = self.json();
        assert_eq!(
            json["ok"], true,
            "not a success: {} {}",
            self.status, self.text
        );
        json["result"].clone()
    }

    /// The error code of an error envelope.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn fuel(&self) -> u64 {
        self.headers["x-fuel-consumed"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        text,
    }
}

impl TestServer {
    /// `POST /rpc/ns/name/method` with a JSON array of arguments.
    pub async fn rpc(&self, ns: &str, name: &str, method: &str, args: Value) -> Reply {
        self.post(&format!("/rpc/{ns}/{name}/{method}"), args.to_string())
            .await
    }

    /// The result of an RPC that must succeed.
    pub async fn call(&self, ns: &str, name: &str, method: &str, args: Value) -> Value {
        self.rpc(ns, name, method, args).await.result()
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn request(&self, method: &str, path: &str) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// How many object database files exist.
    pub fn database_count(&self) -> usize {
        count_databases(&self.storage_root)
    }
}

pub fn count_databases(root: &Path) -> usize {
    go_go_objects::storage::database_files(root).len()
}

/// The `go-go-objects` binary, started on an ephemeral port.
pub struct BinaryServer {
    pub child: Child,
    pub base: String,
    /// Lines printed after the listening line.
    pub stdout: std::sync::mpsc::Receiver<String>,
    /// Everything written to stderr (the log) so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BinaryServer {
    /// Starts the binary with `args` plus `--addr 127.0.0.1:0` and waits for
    /// its listening line.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_go-go-objects"));
        command.args(args);
        Self::start_command(command)
    }

    /// Starts `command` (the binary, or a program that runs it with the
    /// arguments given so far) with `--addr 127.0.0.1:0` added, and waits
    /// for the listening line.
    pub fn start_command(mut command: Command) -> Self {
        let mut child = command
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in log.lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the binary printed its listening line")
                .unwrap();
            if let Some(url) = line.strip_prefix("go-go-objects listening on ") {
                break url.to_string();
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        let (sender, stdout) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Self {
            child,
            base,
            stdout,
            stderr,
        }
    }

    /// The log lines written so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.stderr.lock().unwrap();
        log.lines()
            .filter(|l| l.contains(needle))
            .map(String::from)
            .collect()
    }

    /// The next line printed, waiting at most five seconds.
    pub fn next_line(&self) -> Option<String> {
        self.stdout.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion and returns its exit status and stderr.
pub fn run_binary(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A blocking HTTP client for tests that drive the binary.
pub async fn post_json(base: &str, path: &str, body: &str) -> Reply {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    read(response).await
}
