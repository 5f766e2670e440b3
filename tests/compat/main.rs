//! The compatibility suite: the classes of `objects.js`, written as
//! Cloudflare's users write them, served by our binary and by workerd
//! (Cloudflare's runtime, behind `front.js`), with the requests of
//! `cases.json` sent to both and the answers compared.
//!
//! * `WORKERD` names the workerd binary (`scripts/workerd.sh` installs the
//!   pinned one and prints its path; `scripts/test.sh` sets it). With it,
//!   every case must give workerd's answer on both runtimes, and workerd's
//!   answers must equal the ones recorded in `expected.json`.
//! * Without it, our answers are compared with `expected.json` alone.
//! * `GGO_COMPAT_RECORD=1` (with `WORKERD`) rewrites `expected.json` from
//!   workerd's answers.
//!
//! A case with a `difference` is one the two runtimes cannot agree on yet
//! (the README lists them with their reasons); the suite checks that they
//! still differ, so that a fixed one is noticed and moved back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};

#[path = "../common/servers.rs"]
mod servers;

use servers::Server;

#[derive(Deserialize)]
struct Suite {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    covers: String,
    #[serde(default)]
    rpc: Option<Rpc>,
    #[serde(default)]
    fetch: Option<Fetch>,
    #[serde(default)]
    compare_headers: Vec<String>,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    wait_ms: u64,
    /// Why the runtimes cannot give the same answer (listed in the README).
    #[serde(default)]
    difference: Option<String>,
}

#[derive(Deserialize)]
struct Rpc {
    namespace: String,
    object: String,
    method: String,
    args: Vec<Value>,
}

#[derive(Deserialize)]
struct Fetch {
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_hex: Option<String>,
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn start_ours(dir: &Path) -> Server {
    let bundle = here().join("objects.js");
    let storage = dir.join("ours");
    servers::start_ours(
        env!("CARGO_BIN_EXE_go-go-objects"),
        [
            "--addr".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--storage".as_ref(),
            storage.as_os_str(),
            "--cpu-timeout".as_ref(),
            "5s".as_ref(),
            "--log-level".as_ref(),
            "warn".as_ref(),
        ],
    )
}

fn start_workerd(binary: &str, dir: &Path) -> Server {
    let port = servers::free_port();
    let storage = dir.join("workerd");
    std::fs::create_dir_all(&storage).unwrap();
    for file in ["front.js", "objects.js"] {
        std::fs::copy(here().join(file), dir.join(file)).unwrap();
    }
    let config = format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "disk", disk = (path = "{storage}", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:{port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "front.js", esModule = embed "front.js"),
    (name = "objects.js", esModule = embed "objects.js"),
  ],
  compatibilityDate = "2025-11-01",
  durableObjectNamespaces = [
    (className = "Compat", uniqueKey = "compat-compat", enableSql = true),
    (className = "Other", uniqueKey = "compat-other", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [
    (name = "COMPAT", durableObjectNamespace = "Compat"),
    (name = "OTHER", durableObjectNamespace = "Other"),
  ],
);
"#,
        storage = storage.display()
    );
    servers::start_workerd(binary, dir, &config, port)
}

/// What a runtime answered, reduced to what the case compares.
async fn answer(client: &reqwest::Client, base: &str, case: &Case) -> Value {
    if case.wait_ms > 0 {
        tokio::time::sleep(Duration::from_millis(case.wait_ms)).await;
    }
    if let Some(rpc) = &case.rpc {
        let url = format!("{base}/rpc/{}/{}/{}", rpc.namespace, rpc.object, rpc.method);
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(Value::from(rpc.args.clone()).to_string())
            .send()
            .await;
        let Ok(response) = response else {
            return json!({"error": "no answer"});
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // Failures are compared by status and message: the error codes are
        // the gateway's own.
        return match body.get("ok") {
            Some(Value::Bool(true)) => json!({"status": status, "result": body["result"]}),
            _ => json!({"status": status, "error": body["error"]["message"]}),
        };
    }
    let fetch = case.fetch.as_ref().expect("a case is an rpc or a fetch");
    let method = reqwest::Method::from_bytes(fetch.method.as_bytes()).unwrap();
    let mut request = client.request(method, format!("{base}{}", fetch.path));
    for (name, value) in &fetch.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &fetch.body_hex {
        request = request.body(hex::decode(body).unwrap());
    }
    let Ok(response) = request.send().await else {
        return json!({"error": "no answer"});
    };
    let status = response.status().as_u16();
    let mut headers = serde_json::Map::new();
    for name in &case.compare_headers {
        let values: Vec<Value> = response
            .headers()
            .get_all(name.as_str())
            .iter()
            .map(|v| Value::from(v.to_str().unwrap_or("(not text)")))
            .collect();
        headers.insert(name.clone(), Value::from(values));
    }
    let bytes = response.bytes().await.unwrap_or_default();
    let body = if status >= 500 {
        // A failed handler's body is each runtime's own error page.
        Value::Null
    } else if case.binary {
        Value::from(hex::encode(&bytes))
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&bytes).into_owned()))
    };
    json!({"status": status, "headers": headers, "body": body})
}

fn workerd_binary() -> Option<String> {
    std::env::var("WORKERD").ok().filter(|w| !w.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_answers_as_workerd_does() {
    let suite: Suite =
        serde_json::from_str(&std::fs::read_to_string(here().join("cases.json")).unwrap())
            .expect("cases.json parses");
    assert!(suite.cases.len() >= 40, "the suite has at least 40 cases");
    let expected_path = here().join("expected.json");
    let recorded: BTreeMap<String, Value> = std::fs::read_to_string(&expected_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let record = std::env::var("GGO_COMPAT_RECORD").is_ok_and(|v| v == "1");

    let dir = tempfile::tempdir().unwrap();
    let ours = start_ours(dir.path());
    let workerd = workerd_binary().map(|binary| start_workerd(&binary, dir.path()));
    if workerd.is_none() {
        eprintln!("WORKERD is not set: comparing with the answers recorded in expected.json");
    }
    assert!(
        !record || workerd.is_some(),
        "GGO_COMPAT_RECORD needs WORKERD"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut problems = Vec::new();
    let mut answers = BTreeMap::new();
    for case in &suite.cases {
        let theirs = match &workerd {
            Some(server) => answer(&client, &server.base, case).await,
            None => match recorded.get(&case.name) {
                Some(value) => value.clone(),
                None => {
                    problems.push(format!(
                        "{}: no recorded answer in expected.json",
                        case.name
                    ));
                    continue;
                }
            },
        };
        let mine = answer(&client, &ours.base, case).await;
        if workerd.is_some() && !record && recorded.get(&case.name) != Some(&theirs) {
            problems.push(format!(
                "{}: workerd's answer differs from expected.json (rerun with \
                 GGO_COMPAT_RECORD=1 if workerd changed)\n  workerd: {theirs}",
                case.name
            ));
        }
        match (&case.difference, mine == theirs) {
            (None, false) => problems.push(format!(
                "{} ({}):\n  ours:    {mine}\n  workerd: {theirs}",
                case.name, case.covers
            )),
            (Some(_), true) => problems.push(format!(
                "{}: now answers as workerd does; remove its `difference` here and in the README",
                case.name
            )),
            _ => {}
        }
        answers.insert(case.name.clone(), theirs);
    }
    if record {
        let text = serde_json::to_string_pretty(&answers).unwrap();
        std::fs::write(&expected_path, text + "\n").unwrap();
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases differ:\n{}",
        problems.len(),
        suite.cases.len(),
        problems.join("\n")
    );
}
