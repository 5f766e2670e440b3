//! go-go-objects beside workerd, Cloudflare's open-source runtime, on the
//! same workload, measured in one run on this machine.
//!
//! Run with `scripts/bench-workerd.sh`, which installs the pinned workerd
//! (npm package `workerd`) and passes its binary in `WORKERD`. Without
//! `WORKERD` only our side is measured. Both servers serve the same Counter
//! (an increment that reads and writes storage, and a recursive `fib`);
//! workerd's is an SQLite-backed Durable Object on local disk, which syncs
//! each write before it answers, as `--durability full` does here. The load
//! client runs on the same cores as the server under test. Every phase is
//! bounded in time or count; the whole run takes a few minutes. It prints a
//! table and asserts nothing.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use go_go_objects::{ObjectId, bundle::Bundle, events::Event, runtime::Runtime};
use serde_json::json;

#[path = "../tests/common/servers.rs"]
mod servers;

use servers::Server;

/// How long each throughput phase runs.
const PHASE: Duration = Duration::from_secs(5);
/// Distinct objects in the cold-start phase.
const OBJECTS: usize = 10_000;
/// How long the new objects are left idle before memory is measured again:
/// ours release idle actors 10 s after their last use, a few hundred per
/// second at most.
const IDLE_WAIT: Duration = Duration::from_secs(60);

const OURS: &str = r#"
class Counter {
  constructor(state) { this.state = state; }
  increment(by) {
    const next = (this.state.storage.get('count') || 0) + (by || 1);
    this.state.storage.put('count', next);
    return next;
  }
  fib(n) { return n < 2 ? n : this.fib(n - 1) + this.fib(n - 2); }
}
exports.objects = { Counter };
"#;

const WORKER: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  async increment(by) {
    const next = ((await this.ctx.storage.get("count")) ?? 0) + (by || 1);
    await this.ctx.storage.put("count", next);
    return next;
  }
  fib(n) { return n < 2 ? n : this.fib(n - 1) + this.fib(n - 2); }
}
export default {
  async fetch(request, env) {
    const [, , , name, method] = new URL(request.url).pathname.split("/");
    const text = await request.text();
    const args = text ? JSON.parse(text) : [];
    const stub = env.COUNTER.getByName(name);
    return Response.json({ ok: true, result: await stub[method](...args) });
  },
};
"#;

/// The same method, called the same way (`this.fib`), as the actors run.
const FIB: &str =
    "class Compute { fib(n) { return n < 2 ? n : this.fib(n - 1) + this.fib(n - 2); } }
globalThis.compute = new Compute();";

fn start_ours(dir: &Path) -> (Server, Duration) {
    let bundle = dir.join("ours.js");
    std::fs::write(&bundle, OURS).unwrap();
    let storage = dir.join("ours-storage");
    let started = Instant::now();
    let server = servers::start_ours(
        env!("CARGO_BIN_EXE_go-go-objects"),
        [
            "--addr".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--storage".as_ref(),
            storage.as_os_str(),
            // Room for every object of the run live at once, within the
            // pool layout whose compiled code needs no bounds checks (about
            // 13,000 slots).
            "--max-live-objects".as_ref(),
            "12000".as_ref(),
            "--idle-timeout".as_ref(),
            "0".as_ref(),
            "--cpu-timeout".as_ref(),
            "30s".as_ref(),
            "--log-level".as_ref(),
            "warn".as_ref(),
        ],
    );
    (server, started.elapsed())
}

fn start_workerd(binary: &str, dir: &Path, port: u16) -> Server {
    let storage = dir.join("workerd-storage");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(dir.join("worker.js"), WORKER).unwrap();
    let config = format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "disk", disk = (path = "{}", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:{port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-11-01",
  durableObjectNamespaces = [ (className = "Counter", uniqueKey = "bench-counter", enableSql = true) ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [ (name = "COUNTER", durableObjectNamespace = "Counter") ],
);
"#,
        storage.display()
    );
    servers::start_workerd(binary, dir, &config, port)
}

/// Latencies and throughput of one phase.
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(50),
        p99: at(99),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: &'static str) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .body(body)
        .send()
        .await
        .expect("a response");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let _ = response.bytes().await;
    started.elapsed()
}

/// `connections` clients calling `path` for [`PHASE`].
async fn hammer(base: &str, path: &str, body: &'static str, connections: usize) -> Figures {
    let url = format!("{base}{path}");
    let _ = post(&client(), &url, body).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client();
                let mut latencies = Vec::new();
                while started.elapsed() < PHASE {
                    latencies.push(post(&client, &url, body).await);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    figures(latencies, started.elapsed())
}

/// One increment on each of [`OBJECTS`] new objects over 32 connections.
async fn cold_objects(base: &str) -> Figures {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (next, base) = (next.clone(), base.to_string());
            tokio::spawn(async move {
                let client = client();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= OBJECTS {
                        return latencies;
                    }
                    let url = format!("{base}/rpc/COUNTER/cold-{i}/increment");
                    latencies.push(post(&client, &url, "[1]").await);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    figures(latencies, started.elapsed())
}

struct Row {
    what: String,
    ours: String,
    theirs: Option<String>,
    ratio: Option<f64>,
}

fn row(what: impl Into<String>, ours: String, theirs: Option<String>, ratio: Option<f64>) -> Row {
    Row {
        what: what.into(),
        ours,
        theirs,
        ratio,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The HTTP phases against one server: hot object at 1 and 32
/// connections, new objects, RSS per object, compute.
async fn over_http(server: &Server, label: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for connections in [1, 32] {
        let f = hammer(
            &server.base,
            "/rpc/COUNTER/hot/increment",
            "[1]",
            connections,
        )
        .await;
        println!(
            "  {label}: hot object, {connections} conn: {:.0}/s p50 {} p99 {}",
            f.per_second,
            ms(f.p50),
            ms(f.p99)
        );
        out.extend([f.per_second, f.p50.as_secs_f64(), f.p99.as_secs_f64()]);
    }
    let before = server.rss_kib();
    let cold = cold_objects(&server.base).await;
    let after = server.rss_kib();
    println!(
        "  {label}: {OBJECTS} new objects: {:.0}/s p50 {}; RSS {} -> {} MiB",
        cold.per_second,
        ms(cold.p50),
        before / 1024,
        after / 1024
    );
    // Idle objects shed what they hold while idle (ours close their
    // databases after 10 s; workerd may hibernate them): the same wait for
    // both.
    tokio::time::sleep(IDLE_WAIT).await;
    let idle = server.rss_kib();
    println!(
        "  {label}: RSS after {} s idle: {} MiB",
        IDLE_WAIT.as_secs(),
        idle / 1024
    );
    out.extend([
        cold.per_second,
        cold.p50.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / OBJECTS as f64,
        (idle.saturating_sub(before)) as f64 / OBJECTS as f64,
    ]);
    let fib = hammer(&server.base, "/rpc/COUNTER/compute/fib", "[25]", 1).await;
    println!(
        "  {label}: fib(25): {:.1}/s p50 {}",
        fib.per_second,
        ms(fib.p50)
    );
    out.extend([fib.per_second, fib.p50.as_secs_f64()]);
    out
}

fn native_fib() -> Duration {
    let runtime = javy::Runtime::new(javy::Config::default()).unwrap();
    runtime.context().with(|cx| {
        let _: () = cx.eval(FIB).unwrap();
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let n: i32 = cx.eval("compute.fib(25)").unwrap();
            assert_eq!(n, 75025);
            times.push(started.elapsed());
        }
        times.sort_unstable();
        times[times.len() / 2]
    })
}

/// In-process: the median of `method(args)` on a warm object.
async fn in_process(
    runtime: &Runtime,
    method: &str,
    args: serde_json::Value,
    runs: usize,
) -> Duration {
    let id = ObjectId::new("COUNTER", "in-process").unwrap();
    let args = args.as_array().cloned().unwrap_or_default();
    runtime.rpc(&id, method, args.clone()).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        runtime.rpc(&id, method, args.clone()).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}

/// In-process: the medians of `method(args)` on a warm object of each of
/// two runtimes, called in turn (the order alternating), so that both see
/// the same machine.
async fn side_by_side(
    first: &Runtime,
    second: &Runtime,
    method: &str,
    args: serde_json::Value,
    runs: usize,
) -> (Duration, Duration) {
    let id = ObjectId::new("COUNTER", "side-by-side").unwrap();
    let args = args.as_array().cloned().unwrap_or_default();
    let time = |runtime: &Runtime| {
        let (id, args) = (id.clone(), args.clone());
        let runtime = runtime.clone();
        let method = method.to_string();
        async move {
            let started = Instant::now();
            runtime.rpc(&id, &method, args).await.unwrap();
            started.elapsed()
        }
    };
    time(first).await;
    time(second).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..runs {
        if round % 2 == 0 {
            a.push(time(first).await);
            b.push(time(second).await);
        } else {
            b.push(time(second).await);
            a.push(time(first).await);
        }
    }
    a.sort_unstable();
    b.sort_unstable();
    (a[a.len() / 2], b[b.len() / 2])
}

fn build_runtime(dir: &Path, metering: bool, starts: Arc<Mutex<Vec<Duration>>>) -> Runtime {
    Runtime::builder(Bundle::from_source("ours.js", OURS))
        .storage_root(dir)
        .limits(|l| {
            l.fuel_metering = metering;
            l.cpu_timeout = Some(Duration::from_secs(30));
        })
        .config(|c| c.eviction.max_live_objects = Some(5000))
        .on_event(move |event: &Event<'_>| {
            if let Event::ActorStarted { elapsed, .. } = event {
                starts.lock().unwrap().push(*elapsed);
            }
        })
        .build()
        .unwrap()
}

fn main() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workerd = std::env::var("WORKERD")
        .ok()
        .filter(|p| Path::new(p).exists());
    let workerd_version = workerd.as_ref().map(|w| {
        let out = Command::new(w).arg("--version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    println!(
        "== go-go-objects vs {} ==",
        workerd_version
            .as_deref()
            .unwrap_or("(workerd not given: ours only)")
    );

    let mut rows = Vec::new();
    let (ours, _) = start_ours(dir.path());
    let mine = tokio.block_on(over_http(&ours, "ours"));
    drop(ours);
    let theirs = workerd.as_ref().map(|w| {
        let server = start_workerd(w, dir.path(), servers::free_port());
        tokio.block_on(over_http(&server, "workerd"))
    });

    // Start-up with a cached image.
    let mut startups = Vec::new();
    for _ in 0..5 {
        let (server, took) = start_ours(dir.path());
        startups.push(took);
        drop(server);
    }
    startups.sort_unstable();
    let startup = startups[2];

    // In-process: metering's cost, cold starts, and compute beside native.
    let starts = Arc::new(Mutex::new(Vec::new()));
    let metered = build_runtime(&dir.path().join("metered"), true, starts.clone());
    let increment = tokio.block_on(async {
        let increment = in_process(&metered, "increment", json!([1]), 200).await;
        for i in 0..1000 {
            let id = ObjectId::new("COUNTER", &format!("start-{i}")).unwrap();
            metered.rpc(&id, "increment", vec![json!(1)]).await.unwrap();
        }
        increment
    });
    let mut cold = starts.lock().unwrap().clone();
    cold.sort_unstable();
    let cold_p50 = cold[cold.len() / 2];
    let unmetered = build_runtime(&dir.path().join("unmetered"), false, Arc::default());
    let (fib_metered, fib_unmetered) =
        tokio.block_on(side_by_side(&metered, &unmetered, "fib", json!([20]), 31));
    let fib25 = tokio.block_on(in_process(&metered, "fib", json!([25]), 5));
    let native = native_fib();

    let labels = [
        ("hot object, 1 conn: increments/s", true),
        ("hot object, 1 conn: p50", false),
        ("hot object, 1 conn: p99", false),
        ("hot object, 32 conn: increments/s", true),
        ("hot object, 32 conn: p50", false),
        ("hot object, 32 conn: p99", false),
        ("10,000 new objects: objects/s", true),
        ("10,000 new objects: p50", false),
        ("RSS per live object (KiB)", false),
        ("RSS per live object after 60 s idle (KiB)", false),
        ("fib(25): requests/s", true),
        ("fib(25): p50", false),
    ];
    for (i, (label, higher_is_better)) in labels.iter().enumerate() {
        let format = |v: f64| {
            if label.contains("p50") || label.contains("p99") {
                ms(Duration::from_secs_f64(v))
            } else {
                format!("{v:.0}")
            }
        };
        let theirs_value = theirs.as_ref().map(|t| t[i]);
        let ratio = theirs_value.map(|t| {
            if *higher_is_better {
                mine[i] / t
            } else {
                t / mine[i].max(1e-12)
            }
        });
        rows.push(row(
            *label,
            format(mine[i]),
            theirs_value.map(format),
            ratio,
        ));
    }
    rows.push(row(
        "start-up, cached image (median of 5)",
        ms(startup),
        None,
        None,
    ));
    rows.push(row(
        "in-process cold start p50 (instantiate + ctor + db open)",
        ms(cold_p50),
        None,
        None,
    ));
    rows.push(row(
        "in-process increment p50 (one commit)",
        ms(increment),
        None,
        None,
    ));
    rows.push(row(
        "fib(20) with / without fuel metering",
        format!("{} / {}", ms(fib_metered), ms(fib_unmetered)),
        None,
        Some(fib_metered.as_secs_f64() / fib_unmetered.as_secs_f64()),
    ));
    rows.push(row(
        "fib(25) in an actor / native QuickJS",
        format!("{} / {}", ms(fib25), ms(native)),
        None,
        Some(fib25.as_secs_f64() / native.as_secs_f64()),
    ));

    println!();
    println!("| scenario | go-go-objects | workerd | ratio (ours better > 1) |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what,
            r.ours,
            r.theirs.as_deref().unwrap_or("-"),
            r.ratio.map_or("-".to_string(), |x| format!("{x:.2}x"))
        );
    }
    println!();
    println!("(the last two ratios are costs: lower is better)");
}
