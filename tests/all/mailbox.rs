//! Client dispatches queued for a busy object: they run in order on the
//! thread that holds it, a request whose caller left before it started
//! never runs, and a stub call or alarm waiting for the object goes ahead
//! of the queue rather than behind all of it.

use std::time::Duration;

use go_go_objects::{ObjectId, runtime::Runtime};
use serde_json::json;

use crate::support::{ServerBuilder, fixture};

async fn runtime(dir: &tempfile::TempDir) -> Runtime {
    Runtime::builder(fixture("reference/objects.js"))
        .storage_root(dir.path())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queued_request_whose_caller_left_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let id = ObjectId::new("COUNTER", "left").unwrap();

    let busy = {
        let (runtime, id) = (runtime.clone(), id.clone());
        tokio::spawn(async move { runtime.rpc(&id, "spin", vec![json!(400)]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = {
        let (runtime, id) = (runtime.clone(), id.clone());
        tokio::spawn(async move { runtime.rpc(&id, "increment", vec![json!(1)]).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_eq!(busy.await.unwrap().unwrap(), json!(true));

    assert_eq!(
        runtime.rpc(&id, "value", vec![]).await.unwrap(),
        0,
        "the abandoned increment was skipped"
    );
    assert_eq!(
        runtime.rpc(&id, "increment", vec![json!(1)]).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn queued_requests_run_in_order_and_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let id = ObjectId::new("COUNTER", "order").unwrap();
    // The first holds the object while the rest queue, one at a time, so
    // that their order in the mailbox is known.
    let mut calls = vec![{
        let (runtime, id) = (runtime.clone(), id.clone());
        tokio::spawn(async move { runtime.rpc(&id, "slowIncrement", vec![json!(300)]).await })
    }];
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let (runtime, id) = (runtime.clone(), id.clone());
        calls.push(tokio::spawn(async move {
            runtime.rpc(&id, "increment", vec![json!(1)]).await
        }));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut values = Vec::new();
    for call in calls {
        values.push(call.await.unwrap().unwrap().as_i64().unwrap());
    }
    assert_eq!(
        values,
        (1..=21).collect::<Vec<_>>(),
        "in the order they came"
    );
}

#[tokio::test]
async fn a_stub_call_goes_ahead_of_a_busy_queue() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&dir).await;
    let hot = ObjectId::new("COUNTER", "hot").unwrap();
    const CLIENTS: usize = 32;
    const EACH: usize = 10;

    // Enough clients that the object's mailbox never empties: those a
    // commit answers queue again while the others' requests run.
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (runtime, hot) = (runtime.clone(), hot.clone());
            tokio::spawn(async move {
                for _ in 0..EACH {
                    runtime
                        .rpc(&hot, "slowIncrement", vec![json!(2)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let caller = ObjectId::new("COUNTER", "caller").unwrap();
    let seen = runtime
        .rpc(&caller, "callOther", vec![json!("hot"), json!("value")])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(
        seen < (CLIENTS * EACH) as u64 / 2,
        "the stub call waited behind the queue: it saw {seen}"
    );
    for client in load {
        client.await.unwrap();
    }
    assert_eq!(
        runtime.rpc(&hot, "value", vec![]).await.unwrap(),
        json!(CLIENTS * EACH)
    );
}

#[tokio::test]
async fn two_objects_calling_each_other_under_load_never_wait_for_a_deadline() {
    // Each stub call commits before it answers: a batch of the callee left
    // open for its queued requests would make the caller wait on them while
    // holding its own object, which one of them may be waiting for.
    let server = std::sync::Arc::new(
        ServerBuilder::new(fixture("reference/objects.js"))
            .limits(|l| l.cpu_timeout = Some(Duration::from_secs(2)))
            .start()
            .await,
    );
    let calls: Vec<_> = [("a", "b"), ("b", "a")]
        .into_iter()
        .cycle()
        .take(8)
        .map(|(from, to)| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    let reply = server
                        .rpc("COUNTER", from, "callOther", json!([to, "value"]))
                        .await;
                    statuses.push((reply.status, reply.code()));
                }
                statuses
            })
        })
        .collect();
    let mut answered = 0;
    for call in calls {
        for (status, code) in call.await.unwrap() {
            match status {
                200 => answered += 1,
                // Two requests that each hold one object and want the other.
                400 => assert!(code == "bad_request", "{code}"),
                other => panic!("{other} {code}: a stub call waited for a deadline"),
            }
        }
    }
    assert!(answered > 0);
}
