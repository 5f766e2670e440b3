//! Benchmarks of the work the runtime does besides requests: the alarm loop
//! and the memory that live actors hold.
//!
//! Run with `scripts/bench.sh lifecycle` (or `cargo bench --bench
//! lifecycle`). It prints figures; it asserts nothing. Every loop is bounded
//! in count, and the whole run takes a minute or two on a 2-core machine.
//!
//! 1. The alarm loop beside 10,000 objects that have no alarm and 10 that
//!    have one: start-up with the index, start-up that rebuilds the index by
//!    reading every database, the cost of one round of the loop, and the
//!    cost of the per-round scan of every database that a design without an
//!    index pays. Then how late alarms fire, through the real loop.
//! 2. The server's resident memory with `--max-live-objects 1000` after
//!    10,000 objects were touched, next to an unbounded server after 1,000.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use go_go_objects::{
    ObjectId,
    bundle::{Bundle, Manifest},
    config::RuntimeConfig,
    runtime::{DispatchKind, DispatchRequest, DispatchValue, Runtime},
    storage::{self, ObjectStorage},
};
use serde_json::json;

const WITHOUT_ALARMS: usize = 10_000;
const WITH_ALARMS: usize = 10;

/// Records how late each alarm ran, by its own clock.
const LATENESS_BUNDLE: &str = r#"
class Timer {
  constructor(state) { this.state = state; }
  arm(at) { this.state.storage.put('due', at); this.state.storage.setAlarm(at); return true; }
  lateness() { return this.state.storage.get('lateness'); }
  alarm() { this.state.storage.put('lateness', Date.now() - this.state.storage.get('due')); }
}
exports.objects = { Timer };
"#;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    tokio.block_on(alarm_loop());
    tokio.block_on(live_object_memory());
}

fn runtime_at(root: &Path, background: bool) -> (Runtime, Duration) {
    let manifest = Manifest::parse("objects:\n  TIMER: Timer\n").expect("manifest");
    let config = RuntimeConfig {
        storage_root: root.to_path_buf(),
        ..RuntimeConfig::default()
    };
    let started = Instant::now();
    let bundle = Bundle::from_source("lateness.js", LATENESS_BUNDLE);
    let runtime = Runtime::new(bundle, Some(&manifest), config).expect("the runtime starts");
    let took = started.elapsed();
    if background {
        runtime.start_background();
    }
    (runtime, took)
}

async fn rpc(runtime: &Runtime, name: &str, method: &str, args: serde_json::Value) -> String {
    let request = DispatchRequest {
        id: ObjectId::new("TIMER", name).expect("an id"),
        kind: DispatchKind::Rpc {
            method: method.into(),
            args: args.as_array().cloned().unwrap_or_default(),
        },
    };
    match runtime
        .dispatch(request)
        .await
        .expect("the dispatch succeeds")
        .value
    {
        DispatchValue::Rpc(raw) => raw.get().to_string(),
        DispatchValue::Fetch(_) => unreachable!(),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn now_ms() -> u64 {
    go_go_objects::clock::Clock::now_ms(&go_go_objects::clock::SystemClock)
}

async fn alarm_loop() {
    println!("== alarm loop: {WITHOUT_ALARMS} objects without alarms, {WITH_ALARMS} with ==");
    let empty = tempfile::tempdir().expect("a temp dir");
    let (runtime, on_empty) = runtime_at(empty.path(), false);
    drop(runtime);
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path();

    // Objects without alarms: one real database, copied under every other
    // object's path (the loop never reads them, which is the point).
    let template_id = ObjectId::new("TIMER", "template").expect("an id");
    drop(ObjectStorage::open(root, &template_id).expect("a database"));
    let template = storage::database_path(root, &template_id);
    for i in 0..WITHOUT_ALARMS {
        let id = ObjectId::new("TIMER", &format!("idle-{i}")).expect("an id");
        let path = storage::database_path(root, &id);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::copy(&template, &path).expect("a copy");
    }

    let (runtime, _) = runtime_at(root, false);
    let far = now_ms() + 3_600_000;
    for i in 0..WITH_ALARMS {
        rpc(&runtime, &format!("armed-{i}"), "arm", json!([far])).await;
    }
    runtime.shutdown(Duration::from_secs(10)).await;
    drop(runtime);

    let (runtime, with_index) = runtime_at(root, false);
    println!("start-up, empty storage root:        {on_empty:>10.1?}");
    println!("start-up, index present:             {with_index:>10.1?}");
    let mut rounds = Vec::new();
    for _ in 0..1_000 {
        let started = Instant::now();
        assert_eq!(runtime.run_due_alarms().await, 0);
        rounds.push(started.elapsed());
    }
    let round = median(rounds);
    println!("one round of the loop (median of 1000): {round:>10.1?}");
    runtime.shutdown(Duration::from_secs(10)).await;
    drop(runtime);

    std::fs::remove_file(root.join(go_go_objects::alarms::INDEX_FILE)).expect("the index");
    let (runtime, rebuilt) = runtime_at(root, false);
    println!("start-up, index rebuilt by a scan:   {rebuilt:>10.1?}");
    assert_eq!(runtime.scheduled_alarms(), WITH_ALARMS);
    runtime.shutdown(Duration::from_secs(10)).await;
    drop(runtime);

    let scans: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let found = storage::database_files(root)
                .iter()
                .filter_map(|p| storage::read_stored_alarm(p).ok().flatten())
                .count();
            assert_eq!(found, WITH_ALARMS);
            started.elapsed()
        })
        .collect();
    let scan = median(scans);
    println!("a scan of every database (median of 3): {scan:>10.1?}");
    println!(
        "per-round cost, index vs scan:        1 : {:.0}",
        scan.as_secs_f64() / round.as_secs_f64().max(1e-9)
    );

    let (runtime, _) = runtime_at(root, true);
    let due = now_ms() + 300;
    for i in 0..WITH_ALARMS {
        rpc(
            &runtime,
            &format!("late-{i}"),
            "arm",
            json!([due + i as u64 * 20]),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut lateness = Vec::new();
    for i in 0..WITH_ALARMS {
        let late = rpc(&runtime, &format!("late-{i}"), "lateness", json!([])).await;
        lateness.push(Duration::from_millis(late.parse().expect("fired")));
    }
    let worst = *lateness.iter().max().expect("samples");
    println!(
        "alarm lateness through the loop:      median {:?}, worst {worst:?}",
        median(lateness)
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

async fn live_object_memory() {
    println!("== resident memory of live objects ==");
    let checkpoints = [1_000, 2_500, 5_000, 10_000];
    let bounded = touch_objects(&["--max-live-objects", "1000"], &checkpoints).await;
    println!(
        "--max-live-objects 1000 (RSS at start {} MiB):",
        bounded.start / 1024
    );
    for (touched, rss) in &bounded.samples {
        println!("  {touched:>6} objects touched: RSS {:>5} MiB", rss / 1024);
    }
    let unbounded = touch_objects(&[], &[1_000]).await;
    let (touched, rss) = unbounded.samples[0];
    let per_object = (rss - unbounded.start) / touched as u64;
    println!(
        "no bound, {touched} objects live: RSS {} MiB (at start {} MiB), about {per_object} KiB \
         per live object",
        rss / 1024,
        unbounded.start / 1024,
    );
}

/// Resident memory (KiB) at start and after each checkpoint of touched
/// objects.
struct Rss {
    start: u64,
    samples: Vec<(usize, u64)>,
}

/// Starts the binary, increments distinct counters over four connections up
/// to each checkpoint in turn, and reads its resident memory at each.
async fn touch_objects(flags: &[&str], checkpoints: &[usize]) -> Rss {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut child, base) = start_binary(dir.path(), flags);
    let client = reqwest::Client::new();
    increment(&client, &base, usize::MAX).await;
    let start = rss_kib(child.id());
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut from = 0;
    for &to in checkpoints {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    for i in (from + w..to).step_by(4) {
                        increment(&client, &base, i).await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("a worker");
        }
        samples.push((to, rss_kib(child.id())));
        from = to;
    }
    let took = started.elapsed();
    println!(
        "  ({from} cold starts over HTTP in {took:.1?}: {:.0} objects/s)",
        from as f64 / took.as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
    Rss { start, samples }
}

async fn increment(client: &reqwest::Client, base: &str, object: usize) {
    let url = format!("{base}/rpc/COUNTER/o{object}/increment");
    let response = client
        .post(url)
        .body("[1]")
        .send()
        .await
        .expect("a response");
    assert!(response.status().is_success());
}

fn start_binary(dir: &Path, flags: &[&str]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(["--addr", "127.0.0.1:0", "--storage"])
        .arg(dir)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("a listening line").expect("text");
        if let Some(url) = line.strip_prefix("go-go-objects listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
