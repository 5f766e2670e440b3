//! Noisy neighbours: how much one object burning its whole fuel budget on
//! every call slows down another object.
//!
//! Run with `scripts/bench.sh neighbours`. It starts the server binary,
//! measures the latency of calls to a quiet object alone, then again while
//! one noisy object spins through its full fuel budget on every call (two
//! clients keep its queue full),
//! and prints the p50 and p99 of both runs and their ratio. Bounded: 2,000
//! calls per run.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

const NOISY: &str = r#"
class Neighbour {
  constructor(state) { this.state = state; }
  ping() { return this.state.storage.get('n') || 0; }
  spin() { for (;;) {} }
}
exports.objects = { Neighbour };
"#;

const CALLS: usize = 600;

/// Clients keeping the one noisy object busy: its calls queue behind each
/// other, so it burns one core without a pause.
const NOISY_CLIENTS: usize = 2;

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let bundle = dir.path().join("neighbours.js");
    std::fs::write(&bundle, NOISY).expect("the bundle");
    let mut child = Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(["--addr", "127.0.0.1:0", "--bundle"])
        .arg(&bundle)
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = loop {
        let line = lines.next().expect("a line").expect("text");
        if let Some(url) = line.strip_prefix("go-go-objects listening on ") {
            break url.to_string();
        }
    };

    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    tokio.block_on(async {
        let client = reqwest::Client::new();
        let quiet = format!("{base}/rpc/NEIGHBOUR/quiet/ping");
        latencies(&client, &quiet, 50).await; // warm up
        let alone = latencies(&client, &quiet, CALLS).await;

        let stop = Arc::new(AtomicBool::new(false));
        let burned = Arc::new(AtomicU64::new(0));
        let noise: Vec<_> = (0..NOISY_CLIENTS)
            .map(|_| {
                let (client, stop, burned) = (client.clone(), stop.clone(), burned.clone());
                let url = format!("{base}/rpc/NEIGHBOUR/noisy/spin");
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let response = client.post(&url).body("[]").send().await;
                        if response.is_ok_and(|r| r.status() == 504) {
                            burned.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let loaded = latencies(&client, &quiet, CALLS).await;
        stop.store(true, Ordering::SeqCst);
        for task in noise {
            let _ = task.await;
        }

        println!("== a quiet object beside one object that burns 4e9 fuel on every call ==");
        println!(
            "quiet alone:      p50 {:>8.2?}  p99 {:>8.2?}",
            pct(&alone, 50),
            pct(&alone, 99)
        );
        println!(
            "quiet with noise: p50 {:>8.2?}  p99 {:>8.2?}",
            pct(&loaded, 50),
            pct(&loaded, 99)
        );
        println!(
            "ratio with/alone: p50 {:.2}x  p99 {:.2}x  ({} full-budget calls of the noisy objects)",
            pct(&loaded, 50).as_secs_f64() / pct(&alone, 50).as_secs_f64(),
            pct(&loaded, 99).as_secs_f64() / pct(&alone, 99).as_secs_f64(),
            burned.load(Ordering::SeqCst)
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

async fn latencies(client: &reqwest::Client, url: &str, calls: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let response = client
            .post(url)
            .body("[]")
            .send()
            .await
            .expect("a response");
        assert!(response.status().is_success());
        let _ = response.bytes().await;
        out.push(started.elapsed());
    }
    out.sort_unstable();
    out
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
