//! The failure cases in `shared/cases/` that concern the CommonJS flavour,
//! each turned into a test. The case bundles are in `fixtures/cases/`; their
//! classes are served under their own names through a manifest, as the case
//! texts address them (`/rpc/Spin/a/ping`).
//!
//! Parts that need what this flavour does not have yet are left out and
//! named: alarms (case 12's alarm step) and WHATWG `Response` objects from
//! `fetch` (case 12's fetch step).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BinaryServer, ServerBuilder, TestServer, fixture, fixtures, post_json};

async fn case(file: &str, manifest: &str) -> TestServer {
    ServerBuilder::new(fixture(&format!("cases/{file}")))
        .manifest(manifest)
        .start()
        .await
}

fn assert_status(reply: &crate::support::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.code(), code, "{}", reply.text);
}

// ---- 06: CPU limit classes -----------------------------------------------

#[tokio::test]
async fn case_06_every_runaway_shape_gets_504_and_a_fresh_budget() {
    let server = Arc::new(
        case(
            "06-cpu-limit-classes.js",
            "objects:\n  Spin: Spin\n  BadCtor: BadCtor\n",
        )
        .await,
    );
    assert_eq!(server.call("Spin", "a", "ping", json!([])).await, "pong");
    for i in 1..=500 {
        assert_eq!(
            server.call("Spin", "a", "cheap", json!([i])).await,
            2997 + i
        );
    }
    assert_eq!(
        server.call("Spin", "a", "slowButFinite", json!([])).await,
        1_990_000
    );

    assert_status(
        &server.rpc("Spin", "a", "spinSync", json!([])).await,
        504,
        "timeout",
    );
    assert_eq!(server.call("Spin", "a", "ping", json!([])).await, "pong");
    assert_status(
        &server.rpc("Spin", "a", "spinSync", json!([])).await,
        504,
        "timeout",
    );

    assert_status(
        &server.rpc("Spin", "a", "spinCatch", json!([])).await,
        504,
        "timeout",
    );
    assert_eq!(
        server.call("Spin", "a", "leftovers", json!([])).await,
        json!({"swallowed": null, "finallyRan": null}),
        "neither catch nor finally of a killed request commits anything"
    );

    assert_status(
        &server.rpc("Spin", "a", "spinMicrotasks", json!([])).await,
        504,
        "timeout",
    );
    assert_status(
        &server.rpc("Spin", "a", "detachedLoop", json!([])).await,
        504,
        "timeout",
    );
    assert_eq!(server.call("Spin", "a", "ping", json!([])).await, "pong");

    assert_status(
        &server.rpc("BadCtor", "x", "ping", json!([])).await,
        504,
        "timeout",
    );
    assert_status(
        &server.rpc("BadCtor", "x", "ping", json!([])).await,
        504,
        "timeout",
    );
    assert_eq!(server.call("Spin", "a", "ping", json!([])).await, "pong");

    // Isolation: another object answers while one burns its budget, and a
    // call queued behind a runaway on the same object gets a fresh instance.
    let burning = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("Spin", "b", "spinSync", json!([])).await })
    };
    assert_eq!(server.call("Spin", "c", "ping", json!([])).await, "pong");
    assert_status(&burning.await.unwrap(), 504, "timeout");

    let spin = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("Spin", "d", "spinSync", json!([])).await })
    };
    tokio::task::yield_now().await;
    let queued = server.rpc("Spin", "d", "ping", json!([])).await;
    assert_eq!(queued.result(), "pong");
    assert_status(&spin.await.unwrap(), 504, "timeout");
}

// ---- 07: promises and rejections -----------------------------------------

#[tokio::test]
async fn case_07_promises_at_the_dispatch_boundary() {
    let server = case(
        "07-promises-and-rejections.js",
        "objects:\n  Waiter: Waiter\n",
    )
    .await;
    let call = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.rpc("Waiter", "w", method, args).await }
    };
    assert_eq!(call("ping", json!([])).await.result(), "pong");

    let never = call("neverSettles", json!([])).await;
    assert_status(&never, 504, "timeout");
    assert!(
        never.message().contains("can never settle"),
        "{}",
        never.text
    );
    assert_eq!(call("ping", json!([])).await.result(), "pong");

    assert_status(&call("sharedNeverSettles", json!([])).await, 504, "timeout");
    assert_status(&call("sharedNeverSettles", json!([])).await, 504, "timeout");
    assert_eq!(call("ping", json!([])).await.result(), "pong");
    case_07_settling_steps(&server).await;
}

/// The steps of case 07 from step 5 on, where both flavours answer alike:
/// rejections, thrown non-errors, thenables, long chains and a timer.
pub(crate) async fn case_07_settling_steps(server: &TestServer) {
    let call = |method: &'static str, args: Value| async move {
        server.rpc("Waiter", "w", method, args).await
    };
    assert_eq!(call("unhandledBackground", json!([])).await.result(), "ok");
    assert_eq!(call("readBg", json!([])).await.result(), "kept");
    assert_eq!(
        call("handledLater", json!([])).await.result(),
        "handled:late"
    );

    let typed = call("rejectsError", json!([])).await;
    assert_eq!(typed.status, 500);
    assert!(
        typed.text.contains("TypeError") && typed.text.contains("boom-typed"),
        "{}",
        typed.text
    );
    let string = call("throwsString", json!([])).await;
    assert_eq!(string.status, 500);
    assert!(
        string.text.contains("plain string thrown"),
        "{}",
        string.text
    );
    assert_status(
        &call("throwsUndefined", json!([])).await,
        500,
        "execution_error",
    );
    let object = call("throwsObject", json!([])).await;
    assert_status(&object, 500, "execution_error");
    assert!(object.text.contains("object thrown"), "{}", object.text);
    assert_status(
        &call("rejectsWithNull", json!([])).await,
        500,
        "execution_error",
    );
    assert_eq!(call("ping", json!([])).await.result(), "pong");

    assert_eq!(call("returnsThenable", json!([])).await.result(), 42);
    assert_eq!(call("deepAwaitChain", json!([10000])).await.result(), 10000);
    assert_eq!(call("timer", json!([])).await.result(), "fired");
}

// ---- 08: memory exhaustion -----------------------------------------------

#[tokio::test]
async fn case_08_memory_exhaustion_ends_the_request_not_the_runtime() {
    // The case wants the memory cap, not the CPU budget, to end the bombs:
    // filling 128 MiB byte by byte costs more than the default fuel.
    let server = Arc::new(
        ServerBuilder::new(fixture("cases/08-memory-exhaustion.js"))
            .manifest("objects:\n  Hog: Hog\n")
            .limits(|limits| {
                limits.cpu_fuel = 100_000_000_000;
                limits.cpu_timeout = Some(Duration::from_secs(30));
            })
            .start()
            .await,
    );
    assert_eq!(server.call("Hog", "h", "setup", json!([])).await, true);
    assert_eq!(server.call("Hog", "h", "grow", json!([8])).await, 8);

    for method in ["doubling", "arrayBomb"] {
        let reply = server.rpc("Hog", "h", method, json!([])).await;
        assert!(
            reply.status == 500 || reply.status == 504,
            "{method}: {}",
            reply.text
        );
    }
    let huge = server.rpc("Hog", "h", "grow", json!([100000])).await;
    assert_status(&huge, 500, "out_of_memory");

    let single = server.call("Hog", "h", "singleHuge", json!([])).await;
    for kind in ["arraybuffer", "repeat", "typed"] {
        assert_eq!(single[kind]["caught"], true, "{kind}: {single}");
    }
    assert_eq!(
        server.call("Hog", "h", "state", json!([])).await,
        json!({"v": 1, "note": "before"})
    );

    let mut sizes = Vec::new();
    let mut failed_at = None;
    for i in 0..40 {
        let reply = server.rpc("Hog", "h", "leak", json!([16])).await;
        if reply.status == 200 {
            sizes.push(reply.result().as_i64().unwrap());
        } else {
            assert!(reply.status >= 500, "{}", reply.text);
            failed_at = Some(i);
            break;
        }
    }
    let failed_at = failed_at.expect("the leak eventually runs out of memory");
    assert_eq!(
        sizes,
        (1..=failed_at as i64).map(|n| 16 * n).collect::<Vec<_>>()
    );
    assert_eq!(
        server.call("Hog", "h", "leak", json!([16])).await,
        16,
        "a fresh instance"
    );

    let bomb = server.rpc("Hog", "h", "writeThenBomb", json!([])).await;
    assert!(bomb.status >= 500, "{}", bomb.text);
    assert_eq!(
        server.call("Hog", "h", "state", json!([])).await,
        json!({"v": 1, "note": "before"}),
        "the write from the bombed turn was rolled back"
    );

    let bombing = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("Hog", "h", "doubling", json!([])).await })
    };
    assert_eq!(server.call("Hog", "other", "ping", json!([])).await, "pong");
    assert!(bombing.await.unwrap().status >= 500);
    assert_eq!(server.call("Hog", "h", "ping", json!([])).await, "pong");
}

// ---- 12: concurrency and serialization -----------------------------------

#[tokio::test]
async fn case_12_no_lost_updates_and_no_interleaving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(
        ServerBuilder::new(fixture("cases/12-concurrency-serialization.js"))
            .manifest("objects:\n  Counter: Counter\n")
            .storage(dir.path())
            .start()
            .await,
    );
    assert_eq!(
        server.call("Counter", "x", "resetAll", json!([])).await,
        true
    );

    let concurrent = |name: &'static str, method: &'static str, count: usize| {
        let server = server.clone();
        async move {
            let calls: Vec<_> = (0..count)
                .map(|i| {
                    let server = server.clone();
                    let args = if method == "traced" {
                        json!([format!("t{i}")])
                    } else {
                        json!([])
                    };
                    let name = if name == "w" {
                        format!("w{i}")
                    } else {
                        name.to_string()
                    };
                    tokio::spawn(async move { server.rpc("Counter", &name, method, args).await })
                })
                .collect();
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.unwrap().result());
            }
            results
        }
    };

    let mut values: Vec<i64> = concurrent("x", "incr", 50)
        .await
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=50).collect::<Vec<_>>());
    assert_eq!(
        server.call("Counter", "x", "report", json!([])).await,
        json!({"n": 50, "traceLength": 0, "interleaved": false, "maxInFlight": 1})
    );

    concurrent("y", "traced", 20).await;
    assert_eq!(
        server.call("Counter", "y", "report", json!([])).await,
        json!({"n": 0, "traceLength": 40, "interleaved": false, "maxInFlight": 1})
    );

    let ones = concurrent("w", "incr", 50).await;
    assert!(
        ones.iter().all(|v| v == 1),
        "fifty objects, one increment each"
    );

    server.runtime.shutdown(Duration::from_secs(5)).await;
    drop(server);
    let restarted = ServerBuilder::new(fixture("cases/12-concurrency-serialization.js"))
        .manifest("objects:\n  Counter: Counter\n")
        .storage(dir.path())
        .start()
        .await;
    assert_eq!(
        restarted.call("Counter", "x", "report", json!([])).await,
        json!({"n": 50, "traceLength": 0, "interleaved": false, "maxInFlight": 0})
    );
}

// ---- 16: gateway bad input -----------------------------------------------

#[tokio::test]
async fn case_16_gateway_input_and_the_rpc_surface() {
    let server = case("16-gateway-bad-input.js", "objects:\n  Echo: Echo\n").await;
    let post = |path: &'static str, body: &'static [u8]| {
        let server = &server;
        async move { server.post(path, body.to_vec()).await }
    };

    for (body, expected) in [
        (
            &b"[1,\"two\",{\"x\":null},[true]]"[..],
            json!([1, "two", {"x": null}, [true]]),
        ),
        (b"[]", json!([])),
        (b"[{\"a\":1,\"a\":2}]", json!([{"a": 2}])),
    ] {
        assert_eq!(post("/rpc/Echo/e/echo", body).await.result(), expected);
    }
    assert_eq!(
        post("/rpc/Echo/e/arity", b"[1]").await.result(),
        json!({"a": 1, "b": "undefined", "argc": 1})
    );
    assert_eq!(
        post("/rpc/Echo/e/arity", b"[1,2,3]").await.result(),
        json!({"a": 1, "b": 2, "argc": 3})
    );
    assert_eq!(
        post("/rpc/Echo/e/echo", b"").await.result(),
        json!([]),
        "empty body: no arguments"
    );

    for body in [
        &b"[1,"[..],
        b"{\"a\":1}",
        b"5",
        b"null",
        b"\"str\"",
        b"[1] x",
        b"[\"\xff\xfe\"]",
        b"[\"\\ud800\"]",
    ] {
        assert_status(&post("/rpc/Echo/e/echo", body).await, 400, "bad_request");
    }

    for method in [
        "nope",
        "toString",
        "valueOf",
        "hasOwnProperty",
        "isPrototypeOf",
        "__proto__",
        "__defineGetter__",
        "propertyIsEnumerable",
        "toLocaleString",
        "constructor",
        "instanceFn",
        "fetch",
        "alarm",
        "ec%00ho",
    ] {
        let reply = server.post(&format!("/rpc/Echo/e/{method}"), "[]").await;
        assert_eq!(reply.status, 404, "{method}: {}", reply.text);
    }
    assert_eq!(
        post("/rpc/Echo/e/bumps", b"[]").await.result(),
        0,
        "no handler ran"
    );

    for path in [
        "/rpc/Nope/e/echo",
        "/rpc/echo/e/echo",
        "/rpc/__proto__/e/echo",
        "/rpc/constructor/e/echo",
        "/rpc/toString/e/echo",
        "/rpc/hasOwnProperty/e/echo",
        "/rpc/Echo/e",
        "/rpc/Echo",
        "/rpc",
        "/rpc/Echo/e/echo/extra",
        "/nothing-here",
    ] {
        assert_eq!(server.post(path, "[]").await.status, 404, "{path}");
    }
    for method in ["GET", "PUT", "DELETE"] {
        let reply = server.request(method, "/rpc/Echo/e/echo").await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers["allow"], "POST");
    }

    // Oversized: over the default limit, refused with 413; a lying length
    // is refused at once, before any body arrives.
    let big = vec![b'1'; 17 * 1024 * 1024];
    let reply = server.post("/rpc/Echo/e/echo", big).await;
    assert_status(&reply, 413, "request_too_large");
    let lying = server
        .client
        .post(format!("{}/rpc/Echo/e/echo", server.base))
        .header("content-length", "999999999")
        .body("[]")
        .send()
        .await;
    if let Ok(response) = lying {
        assert!(
            matches!(response.status().as_u16(), 400 | 413),
            "{}",
            response.status()
        );
    }
    assert_eq!(post("/rpc/Echo/e/echo", b"[1]").await.result(), json!([1]));

    for (method, expected) in [
        ("resultUndefined", json!(null)),
        ("resultNaN", json!([null, null, 0])),
        ("resultDate", json!("1970-01-01T00:00:00.000Z")),
        ("resultMap", json!({})),
        ("resultFunction", json!(null)),
        ("resultToJSON", json!("custom")),
        ("resultNulString", json!("a\u{0}b\u{2028}c")),
    ] {
        assert_eq!(
            server.call("Echo", "e", method, json!([])).await,
            expected,
            "{method}"
        );
    }
    let bigint = server.rpc("Echo", "e", "resultBigInt", json!([])).await;
    assert_status(&bigint, 500, "execution_error");
    assert!(bigint.text.contains("BigInt"), "{}", bigint.text);
    let cycle = server.rpc("Echo", "e", "resultCycle", json!([])).await;
    assert_status(&cycle, 500, "execution_error");
    assert!(cycle.text.contains("circular"), "{}", cycle.text);
}

// ---- 04: un-awaited writes are durable once acknowledged ------------------

fn journal_args(storage: &str) -> Vec<String> {
    let bundle = fixtures().join("cases/04-unawaited-writes-durability.js");
    let manifest = fixtures().join("cases/04-manifest.yaml");
    vec![
        "--bundle".into(),
        bundle.to_str().unwrap().into(),
        "--manifest".into(),
        manifest.to_str().unwrap().into(),
        "--storage".into(),
        storage.into(),
    ]
}

#[tokio::test]
async fn case_04_acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = journal_args(dir.path().to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = BinaryServer::start(&args);
    let rpc = |method: &str, arg: Value| {
        let base = server.base.clone();
        let path = format!("/rpc/Journal/j/{method}");
        async move { post_json(&base, &path, &arg.to_string()).await.result() }
    };

    for n in 1..=20 {
        let reply = rpc("record", json!([n])).await;
        assert_eq!(
            reply,
            json!({"n": n, "sawOwnWrite": true, "logCount": n, "last": n})
        );
    }
    for n in 1..=20 {
        assert_eq!(rpc("plant", json!([n])).await, true);
    }
    for n in 1..=20 {
        assert_eq!(rpc("touch", json!([n])).await, n);
    }
    assert_eq!(rpc("overwrite", json!([])).await, 1000);
    assert_eq!(
        rpc("deleteThenRead", json!([])).await,
        json!({"afterDelete": true})
    );

    // Fifty objects touched in parallel, then the kill.
    let calls: Vec<_> = (1..=50)
        .map(|i| {
            let base = server.base.clone();
            tokio::spawn(async move {
                post_json(
                    &base,
                    &format!("/rpc/Journal/p{i}/touch"),
                    &format!("[{i}]"),
                )
                .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().status, 200);
    }
    server.kill();

    let server = BinaryServer::start(&args);
    let summary = post_json(&server.base, "/rpc/Journal/j/summary", "[]")
        .await
        .result();
    assert_eq!(
        summary,
        json!({"last": 20, "logCount": 20, "firstLog": "log:0001", "lastLog": "log:0020",
               "touchCount": 20, "goneCount": 0, "hot": 1000})
    );
    for i in 1..=50 {
        let summary = post_json(&server.base, &format!("/rpc/Journal/p{i}/summary"), "[]")
            .await
            .result();
        assert_eq!(
            summary,
            json!({"last": null, "logCount": 0, "firstLog": null, "lastLog": null,
                   "touchCount": 1, "goneCount": 0, "hot": null}),
            "p{i}"
        );
    }
}

// ---- 15: keys with NULs, long keys, big values ------------------------------

#[tokio::test]
async fn case_15_odd_keys_stay_distinct_and_big_values_are_exact_or_refused() {
    case_15_steps(fixture("cases/15-keys-nul-size.js")).await;
}

/// The steps of case 15 against `bundle` (the CommonJS bundle, or the same
/// classes as an ES module), including a restart.
pub(crate) async fn case_15_steps(bundle: go_go_objects::bundle::Bundle) {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        // Building a 4 MiB string 32 characters at a time takes more than
        // the default fuel.
        ServerBuilder::new(bundle.clone())
            .manifest("objects:\n  Keys: Keys\n")
            .storage(dir.path())
            .limits(|l| {
                l.cpu_fuel = 100_000_000_000;
                l.cpu_timeout = Some(Duration::from_secs(60));
            })
            .start()
    };
    let server = start().await;
    let rpc = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.call("Keys", "k", method, args).await }
    };
    assert_eq!(rpc("seedNul", json!([])).await, 8);
    let read = rpc("readNul", json!([])).await;
    let each = json!({"0061":"v0","0061,0000":"v1","0061,0000,0062":"v2","0000":"v3",
        "0061,0001":"v4","0041":"v5","043a,043b,044e,0447":"v6","d83d,dd11":"v7"});
    assert_eq!(read["each"], each);
    assert_eq!(
        read["listed"],
        json!([
            "0000",
            "0041",
            "0061",
            "0061,0000",
            "0061,0000,0062",
            "0061,0001",
            "043a,043b,044e,0447",
            "d83d,dd11"
        ])
    );
    assert_eq!(read["afterA"], json!(["0061,0000", "0061,0000,0062"]));
    assert_eq!(read["prefixNul"], json!(["0061,0000", "0061,0000,0062"]));
    assert_eq!(
        rpc("deleteA", json!([])).await,
        json!({"deleted": true, "again": false, "nulStillThere": "v1"})
    );
    let after_delete = rpc("readNul", json!([])).await;
    assert_eq!(after_delete["each"]["0061"], Value::Null);
    assert_eq!(after_delete["listed"].as_array().unwrap().len(), 7);
    assert_eq!(
        rpc("nulValue", json!([])).await,
        json!({"sameLength": true, "same": true})
    );
    assert_eq!(
        rpc("longKey", json!([2048])).await,
        json!({"len": 2048, "accepted": true, "readBack": 2048})
    );
    assert_eq!(
        rpc("longKey", json!([4096])).await,
        json!({"len": 4096, "accepted": false, "error": "RangeError", "readBack": null})
    );
    assert_eq!(
        rpc("longKeysDistinct", json!([])).await,
        json!(["one", "two"])
    );
    for (n, hash) in [(131072, "4e229dc5"), (1048576, "e94c9dc5")] {
        assert_eq!(
            rpc("bigValue", json!([n])).await,
            json!({"n": n, "accepted": true, "error": null, "backLength": n,
                   "backHash": hash, "wantHash": hash})
        );
    }
    assert_eq!(
        rpc("bigValue", json!([4194304])).await,
        json!({"n": 4194304, "accepted": false, "error": "RangeError", "backLength": 1048576,
               "backHash": "e94c9dc5", "wantHash": "21dc9dc5"}),
        "refused before the write: the previous value is intact"
    );

    let before_restart = rpc("readNul", json!([])).await;
    assert_eq!(before_restart["each"], after_delete["each"]);
    server.runtime.shutdown(Duration::from_secs(5)).await;
    drop(server);
    let server = start().await;
    let again = server.call("Keys", "k", "readNul", json!([])).await;
    assert_eq!(again, before_restart, "identical after a restart");
    assert_eq!(
        server.call("Keys", "k", "bigValue", json!([1048576])).await["backHash"],
        "e94c9dc5"
    );
    assert_eq!(
        server
            .call("Keys", "k", "longKeysDistinct", json!([]))
            .await,
        json!(["one", "two"])
    );
}
