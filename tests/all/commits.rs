//! Group commit: under load one commit acknowledges several dispatches of
//! one object, every response still waits for the commit of its writes, and
//! a trapped dispatch drops only its own writes.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use go_go_objects::{events::Event, runtime::Runtime};
use serde_json::json;

use crate::support::{BinaryServer, ServerBuilder, fixture, post_json};

/// The sizes of the commits the runtime reported.
type Commits = Arc<Mutex<Vec<usize>>>;

fn counting_commits(
    runtime: go_go_objects::runtime::RuntimeBuilder,
) -> (go_go_objects::runtime::RuntimeBuilder, Commits) {
    let commits: Commits = Arc::default();
    let sink = commits.clone();
    let runtime = runtime.on_event(move |event: &Event<'_>| {
        if let Event::Committed { dispatches, .. } = event {
            sink.lock().unwrap().push(*dispatches);
        }
    });
    (runtime, commits)
}

#[tokio::test]
async fn queued_dispatches_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (builder, commits) = counting_commits(
        Runtime::builder(fixture("reference/objects.js")).storage_root(dir.path()),
    );
    let runtime = builder.start().await.unwrap();
    let id = go_go_objects::ObjectId::new("COUNTER", "hot").unwrap();

    let calls: Vec<_> = (0..48)
        .map(|_| {
            let (runtime, id) = (runtime.clone(), id.clone());
            tokio::spawn(async move { runtime.rpc(&id, "slowIncrement", vec![json!(2)]).await })
        })
        .collect();
    let mut values = Vec::new();
    for call in calls {
        values.push(call.await.unwrap().unwrap().as_i64().unwrap());
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (1..=48).collect::<Vec<_>>(),
        "every increment, once"
    );

    let commits = commits.lock().unwrap().clone();
    assert_eq!(
        commits.iter().sum::<usize>(),
        48,
        "each dispatch in exactly one commit"
    );
    assert!(
        commits.len() < 48,
        "queued dispatches shared commits: {commits:?}"
    );
    assert!(commits.iter().all(|&n| n <= 128));

    // All of it is on disk: a fresh runtime on the same storage sees it.
    runtime.shutdown(Duration::from_secs(5)).await;
    drop(runtime);
    let again = Runtime::builder(fixture("reference/objects.js"))
        .storage_root(dir.path())
        .build()
        .unwrap();
    assert_eq!(again.rpc(&id, "value", vec![]).await.unwrap(), 48);
}

#[tokio::test]
async fn a_trap_in_a_batch_drops_only_its_own_writes() {
    let server = Arc::new(
        ServerBuilder::new(fixture("reference/objects.js"))
            .limits(|l| l.cpu_fuel = 300_000_000)
            .start()
            .await,
    );
    let mut calls = Vec::new();
    for i in 0..12 {
        let server = server.clone();
        calls.push(tokio::spawn(async move {
            let method = if i == 6 { "burn" } else { "slowIncrement" };
            server.rpc("COUNTER", "mixed", method, json!([1])).await
        }));
    }
    let mut ok = 0;
    for call in calls {
        let reply = call.await.unwrap();
        match reply.status {
            200 => ok += 1,
            504 => assert_eq!(reply.code(), "timeout"),
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(ok, 11);
    assert_eq!(
        server.call("COUNTER", "mixed", "value", json!([])).await,
        11
    );
}

#[tokio::test]
async fn normal_durability_keeps_what_it_acknowledged_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let server = BinaryServer::start(&["--storage", storage, "--durability", "normal"]);
    for n in 1..=30 {
        let reply = post_json(&server.base, "/rpc/COUNTER/n/increment", "[1]").await;
        assert_eq!(reply.result(), n);
    }
    server.kill();
    let server = BinaryServer::start(&["--storage", storage, "--durability", "normal"]);
    let value = post_json(&server.base, "/rpc/COUNTER/n/value", "[]").await;
    assert_eq!(value.result(), 30);
}
