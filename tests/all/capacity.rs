//! The live-object bound under load: actors evicted and started again while
//! their objects are in use keep every acknowledged write, and more busy
//! objects than the instance pool holds get 503 `overloaded`, not a hang or
//! a 500. The bound on open databases closes idle actors' databases and
//! keeps them live.

use std::time::Duration;

use serde_json::json;

use crate::support::{BinaryServer, ServerBuilder, fixture, post_json};

#[tokio::test]
async fn objects_evicted_and_started_again_under_load_lose_nothing() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .config(|c| c.eviction.max_live_objects = Some(4))
        .start()
        .await;
    let server = std::sync::Arc::new(server);
    const TASKS: usize = 8;
    const CALLS: usize = 40;
    const OBJECTS: usize = 12;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for call in 0..CALLS {
                // Every task walks the objects in its own order, so one
                // object is evicted by one task while another reopens it.
                let object = (call * (task + 1) + task) % OBJECTS;
                let reply = server
                    .rpc("COUNTER", &format!("o{object}"), "increment", json!([1]))
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.text);
            }
        }));
    }
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("the calls finish: eviction never deadlocks");

    let mut total = 0;
    for object in 0..OBJECTS {
        let value = server
            .call("COUNTER", &format!("o{object}"), "value", json!([]))
            .await;
        total += value.as_u64().unwrap();
    }
    assert_eq!(total, (TASKS * CALLS) as u64, "every increment was kept");
    assert!(server.runtime.live_objects() <= 4);
}

#[tokio::test]
async fn more_busy_objects_than_instance_slots_get_overloaded() {
    // One live object leaves 65 instance slots (the spare is at least 64).
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .config(|c| c.eviction.max_live_objects = Some(1))
        .limits(|l| {
            l.cpu_fuel = u64::MAX;
            // Seventy-five spinning actors share two cores.
            l.cpu_timeout = Some(Duration::from_secs(60));
        })
        .start()
        .await;
    let server = std::sync::Arc::new(server);
    const BUSY: usize = 75;
    let mut calls = Vec::new();
    for i in 0..BUSY {
        let server = server.clone();
        calls.push(tokio::spawn(async move {
            let path = format!("/rpc/COUNTER/busy{i}/slowIncrement");
            let reply = server.post(&path, "[3000]").await;
            (reply.status, reply.code(), reply.headers.clone())
        }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for call in calls {
        let (status, code, headers) = call.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert_eq!(code, "overloaded");
                assert_eq!(headers["retry-after"], "1");
                overloaded += 1;
            }
            other => panic!("unexpected {other} {code}"),
        }
    }
    // How many overlap depends on scheduling on a loaded machine; at least
    // the last arrivals find every slot taken.
    assert!(overloaded >= 1, "{ok} ok, {overloaded} overloaded");
    assert!(ok >= 1, "{ok} ok, {overloaded} overloaded");
    // Once the busy ones are done, their slots serve others again.
    let reply = server
        .rpc("COUNTER", "after", "increment", json!([1]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Keeps a buffer of `mb` MiB alive in the actor, then spins `ms`.
const HOARDER: &str = r#"
    class Hoarder {
      hold(mb, ms) {
        this.keep = new Uint8Array(mb * 1048576);
        this.keep.fill(1);
        const until = Date.now() + ms;
        while (Date.now() < until) {}
        return this.keep.length / 1048576;
      }
    }
    exports.objects = { Hoarder };
"#;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn the_memory_budget_evicts_idle_actors_to_make_room() {
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "hoarder.js",
        HOARDER,
    ))
    .config(|c| c.eviction.max_total_memory = Some(300 * MIB))
    .start()
    .await;
    for i in 0..10 {
        let reply = server
            .rpc("HOARDER", &format!("h{i}"), "hold", json!([64, 0]))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let in_use = server.runtime.memory_in_use().unwrap();
        assert!(in_use <= 300 * MIB, "{in_use} bytes in use");
    }
    let live = server.runtime.live_objects();
    assert!(
        (2..=4).contains(&live),
        "about 300 MiB / 65 MiB live, not all ten: {live}"
    );
    // Evicting everything gives all of it back.
    while server.runtime.live_objects() > 0 {
        for i in 0..10 {
            server
                .runtime
                .evict(&go_go_objects::ObjectId::new("HOARDER", &format!("h{i}")).unwrap());
        }
    }
    assert_eq!(server.runtime.memory_in_use(), Some(0));
}

#[tokio::test]
async fn busy_actors_over_the_memory_budget_get_overloaded_not_killed_neighbours() {
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "hoarder.js",
        HOARDER,
    ))
    .limits(|l| {
        l.max_memory = 256 * MIB;
        l.cpu_fuel = u64::MAX;
        l.cpu_timeout = Some(Duration::from_secs(60));
    })
    .config(|c| c.eviction.max_total_memory = Some(250 * MIB))
    .start()
    .await;
    let server = std::sync::Arc::new(server);
    let busy = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("HOARDER", "a", "hold", json!([150, 3000])).await })
    };
    // Wait until the first one holds its memory (and spins).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.runtime.memory_in_use().unwrap() < 150 * MIB {
        assert!(
            std::time::Instant::now() < deadline,
            "the first never allocated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = server.rpc("HOARDER", "b", "hold", json!([150, 0])).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "overloaded");
    assert!(
        refused.message().contains("--max-total-memory"),
        "{}",
        refused.text
    );
    let busy = busy.await.unwrap();
    assert_eq!(
        busy.status, 200,
        "the busy one was not harmed: {}",
        busy.text
    );
    assert_eq!(busy.result(), 150);
    // With the first one idle, it is evicted to make room.
    let retried = server.rpc("HOARDER", "b", "hold", json!([150, 0])).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
}

/// Waits, at most five seconds, until `done`.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn past_the_bound_on_open_databases_idle_actors_close_theirs_and_stay_live() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .config(|c| c.eviction.max_open_databases = Some(4))
        .start()
        .await;
    for round in 1..=2 {
        for object in 0..12 {
            let name = format!("o{object}");
            assert_eq!(
                server.call("COUNTER", &name, "increment", json!([1])).await,
                json!(round),
                "{name} keeps its count when its database opens again"
            );
        }
        assert!(
            eventually(|| server.runtime.open_databases() <= 4).await,
            "round {round}: {} databases stay open",
            server.runtime.open_databases()
        );
    }
    assert_eq!(server.runtime.live_objects(), 12, "the actors stay live");
    assert_eq!(server.runtime.actor_starts(), 12, "none was started twice");
}

#[tokio::test]
async fn an_open_file_limit_too_low_for_the_open_databases_lowers_their_bound_only() {
    // 600 files leave (600 - 256) / 2 = 172 databases, half of which are
    // kept for the moments the bound is passed: 86.
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 600 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(["--max-live-objects", "5000", "--storage"])
        .arg(dir.path());
    let server = BinaryServer::start_command(command);
    // More objects than the limit has files for: each stays live.
    for object in 0..300 {
        let reply = post_json(
            &server.base,
            &format!("/rpc/COUNTER/o{object}/increment"),
            "[1]",
        )
        .await;
        assert_eq!(
            reply.result(),
            json!(1),
            "object {object}: {}",
            reply.json()
        );
    }
    let warnings = server.log_lines("needs more open files");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("--max-open-databases 1024")
            && warnings[0].contains("at most 86 open"),
        "{}",
        warnings[0]
    );
}

#[tokio::test]
async fn new_objects_over_the_memory_budget_evict_idle_ones_without_failing() {
    // Room for about 24 actors (each counts 1 MiB and what it grew); new
    // objects arrive eight at a time, so starts reclaim memory concurrently
    // and must each find idle actors of their own to evict (at most eight
    // are busy, so there always are some).
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .config(|c| c.eviction.max_total_memory = Some(24 * MIB))
        .start()
        .await;
    let server = std::sync::Arc::new(server);
    new_objects_at_once(&server, 8, 60, ("COUNTER", "increment", json!([1]))).await;
    assert!(server.runtime.memory_in_use().unwrap() <= 24 * MIB);
    assert!(server.runtime.live_objects() <= 24);
}

#[tokio::test]
async fn the_memory_budget_and_the_live_object_bound_evicting_together_do_not_refuse() {
    // Each dispatch needs about 3 MiB for a moment; three run at once, so
    // 16 MiB always has room once idle actors go. New objects keep the
    // live-object bound evicting too, and reclaiming must not give up
    // while it does.
    const SOURCE: &str = r#"
class Temp {
  constructor(state) { this.state = state; }
  tmp(kb) { let x = new Uint8Array(kb * 1024); x.fill(2); x = null; return kb; }
}
exports.objects = { Temp };
"#;
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "temp.js", SOURCE,
    ))
    .config(|c| {
        c.eviction.max_total_memory = Some(16 * MIB);
        c.eviction.max_live_objects = Some(3);
    })
    .start()
    .await;
    let server = std::sync::Arc::new(server);
    new_objects_at_once(&server, 3, 60, ("TEMP", "tmp", json!([3000]))).await;
}

/// `tasks` clients at once, each calling `method(args)` of `namespace` on
/// `calls` new objects one after another; every call must answer 200.
async fn new_objects_at_once(
    server: &std::sync::Arc<crate::support::TestServer>,
    tasks: usize,
    calls: usize,
    (namespace, method, args): (&'static str, &'static str, serde_json::Value),
) {
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let (server, args) = (server.clone(), args.clone());
            tokio::spawn(async move {
                for i in 0..calls {
                    let name = format!("n{task}-{i}");
                    let reply = server.rpc(namespace, &name, method, args.clone()).await;
                    assert_eq!(reply.status, 200, "{name}: {}", reply.text);
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("the calls finish")
            .unwrap();
    }
}
