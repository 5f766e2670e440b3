//! `go-go-objects run` and deterministic mode: reproducible fuel, time and
//! randomness, and `--fuel-limit` agreeing with the server's `--cpu-fuel`.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{BinaryServer, ServerBuilder, fixture, fixtures, post_json};

fn dice() -> String {
    fixtures()
        .join("bundles/deterministic.js")
        .to_str()
        .unwrap()
        .to_string()
}

/// Runs `go-go-objects run ARGS` and returns its exit code and report.
fn run(args: &[&str]) -> (i32, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .arg("run")
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_same_dispatch_reports_the_same_fuel_in_one_process_and_in_many() {
    let bundle = dice();
    let mut fuels = Vec::new();
    for _ in 0..20 {
        let (code, report, stderr) = run(&[
            "--bundle", &bundle, "DICE/d", "--method", "work", "--args", "[5000]",
        ]);
        assert_eq!(code, 0, "{report} {stderr}");
        assert_eq!(report["result"], expected_work(5000));
        fuels.push(report["fuel"].as_u64().unwrap());
    }
    assert!(
        fuels.iter().all(|&f| f == fuels[0]),
        "fuel differs across processes: {fuels:?}"
    );

    let server = ServerBuilder::new(fixture("bundles/deterministic.js"))
        .start()
        .await;
    for i in 0..20 {
        let reply = server
            .rpc("DICE", &format!("d{i}"), "work", json!([5000]))
            .await;
        assert_eq!(reply.fuel(), fuels[0], "in-process run {i}");
    }

    let (_, other, _) = run(&[
        "--bundle", &bundle, "DICE/d", "--method", "work", "--args", "[5001]",
    ]);
    assert_ne!(other["fuel"], fuels[0], "more work, more fuel");
}

fn expected_work(n: u64) -> u64 {
    (0..n).fold(0, |x, i| (x * 31 + i) % 1_000_003)
}

#[test]
fn deterministic_mode_fixes_time_and_randomness_per_seed() {
    let bundle = dice();
    let roll = |extra: &[&str]| {
        let mut args = vec!["--bundle", bundle.as_str(), "DICE/d", "--method", "roll"];
        args.extend_from_slice(extra);
        let (code, report, stderr) = run(&args);
        assert_eq!(code, 0, "{report} {stderr}");
        report
    };
    let first = roll(&["--deterministic"]);
    let second = roll(&["--deterministic"]);
    assert_eq!(first["result"], second["result"]);
    assert_eq!(first["fuel"], second["fuel"]);
    let date = first["result"]["date"].as_str().unwrap();
    assert!(date.starts_with("2026-01-01T00:00:00."), "{date}");

    let reseeded = roll(&["--deterministic", "--seed", "7"]);
    assert_eq!(
        reseeded["result"],
        roll(&["--deterministic", "--seed", "7"])["result"]
    );
    for field in ["random", "bytes", "uuid"] {
        assert_ne!(first["result"][field], reseeded["result"][field], "{field}");
    }
    let real = roll(&[]);
    assert_ne!(real["result"]["random"], roll(&[])["result"]["random"]);
    assert!(
        !real["result"]["date"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01")
    );

    // Logical time advances with fuel: ten million per millisecond.
    let (_, timed, _) = run(&[
        "--bundle",
        &bundle,
        "DICE/d",
        "--method",
        "elapsed",
        "--args",
        "[100000]",
        "--deterministic",
    ]);
    let elapsed = timed["result"].as_u64().unwrap();
    let fuel = timed["fuel"].as_u64().unwrap();
    assert!(
        elapsed > 0 && elapsed <= fuel / 10_000_000 + 1,
        "{elapsed} ms for {fuel} fuel"
    );

    let (_, bad, _) = run(&["--bundle", &bundle, "DICE/d", "--method", "badRandom"]);
    assert_eq!(
        bad["result"],
        json!({"float": "TypeMismatchError", "large": "QuotaExceededError"})
    );
}

#[tokio::test]
async fn a_fuel_limit_below_the_need_fails_where_the_server_answers_504() {
    let bundle = dice();
    let work = [
        "--bundle",
        bundle.as_str(),
        "DICE/w",
        "--method",
        "work",
        "--args",
        "[20000]",
    ];
    let (code, report, _) = run(&work);
    assert_eq!(code, 0);
    let need = report["fuel"].as_u64().unwrap();

    let limit = (need - 1).to_string();
    let mut limited = work.to_vec();
    limited.extend(["--fuel-limit", limit.as_str()]);
    let (code, report, _) = run(&limited);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["fuelNeeded"], need);
    assert_eq!(report["fuelLimit"], need - 1);
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&need.to_string()) && message.contains("--fuel-limit"),
        "{message}"
    );
    assert_eq!(
        report["storage"]["written"],
        json!([]),
        "an over-limit dispatch writes nothing"
    );

    let exact = need.to_string();
    let mut enough = work.to_vec();
    enough.extend(["--fuel-limit", exact.as_str()]);
    assert_eq!(run(&enough).0, 0, "exactly the need is enough");

    for (fuel, status) in [(need - 1, 504), (need, 200)] {
        let dir = tempfile::tempdir().unwrap();
        let fuel = fuel.to_string();
        let server = BinaryServer::start(&[
            "--bundle",
            &bundle,
            "--storage",
            dir.path().to_str().unwrap(),
            "--cpu-fuel",
            &fuel,
        ]);
        let reply = post_json(&server.base, "/rpc/DICE/w/work", "[20000]").await;
        assert_eq!(reply.status, status, "--cpu-fuel {fuel}: {}", reply.text);
    }
}

#[test]
fn exit_codes_storage_reports_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("s");
    let storage = storage.to_str().unwrap();
    let (code, first, _) = run(&[
        "--storage",
        storage,
        "COUNTER/c",
        "--method",
        "increment",
        "--args",
        "[2]",
    ]);
    assert_eq!((code, first["result"].clone()), (0, json!(2)));
    assert_eq!(
        first["storage"],
        json!({"written": ["count"], "deleted": []})
    );
    let (_, second, _) = run(&["--storage", storage, "COUNTER/c", "--method", "increment"]);
    assert_eq!(second["result"], 3, "state persists in --storage");
    let (code, _, stderr) = run(&["COUNTER/c", "--method", "increment", "--fuel-limit", "0"]);
    assert_eq!(code, 2, "a fuel limit of 0 is a usage error: {stderr}");
    let (code, fetched, _) = run(&["--storage", storage, "COUNTER/c", "--fetch", "/count"]);
    assert_eq!(code, 0);
    assert_eq!(fetched["response"]["status"], 200);
    assert_eq!(fetched["response"]["body"], "3");

    let reference = fixtures().join("reference/objects.js");
    let reference = reference.to_str().unwrap();
    let (code, thrown, _) = run(&[
        "--bundle",
        reference,
        "COUNTER/x",
        "--method",
        "rejectAsync",
    ]);
    assert_eq!(code, 1, "{thrown}");
    assert_eq!(thrown["error"]["code"], "execution_error");
    let (code, _, _) = run(&["--bundle", reference, "COUNTER/x", "--method", "burn"]);
    assert_eq!(code, 3);
    for bad in [
        vec!["COUNTER", "--method", "increment"],
        vec!["COUNTER/x", "--method", "increment", "--args", "{}"],
        vec!["COUNTER/x", "--method", "nope"],
        vec!["NOPE/x", "--method", "increment"],
        vec!["COUNTER/x"],
    ] {
        assert_eq!(run(&bad).0, 2, "{bad:?}");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (code, _, stderr) = run(&[
        "--storage",
        file.to_str().unwrap(),
        "COUNTER/x",
        "--method",
        "value",
    ]);
    assert_eq!(code, 4, "{stderr}");
}

#[tokio::test]
async fn a_deterministic_server_answers_like_the_runner_and_logs_fuel() {
    let bundle = dice();
    let (_, report, _) = run(&[
        "--bundle",
        &bundle,
        "--deterministic",
        "--seed",
        "5",
        "DICE/s",
        "--method",
        "roll",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&[
        "--bundle",
        &bundle,
        "--storage",
        dir.path().to_str().unwrap(),
        "--deterministic",
        "--seed",
        "5",
        "--log-level",
        "go_go_objects::events=debug",
    ]);
    let reply = post_json(&server.base, "/rpc/DICE/s/roll", "[]").await;
    assert_eq!(reply.result(), report["result"]);
    assert_eq!(reply.fuel(), report["fuel"].as_u64().unwrap());
    for _ in 0..100 {
        if !server.log_lines("dispatch finished").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lines = server.log_lines("dispatch finished");
    assert!(
        lines[0].contains(&format!("fuel={}", reply.fuel())),
        "{lines:?}"
    );
}
