//! The hostile corpus (`fixtures/hostile/`): each attack gets its status
//! and error code, and the server keeps serving every other object.

use serde_json::{Value, json};

use crate::support::{
    BinaryServer, Reply, ServerBuilder, TestServer, fixture, fixtures, post_json,
};

async fn hostile() -> TestServer {
    ServerBuilder::new(fixture("hostile/objects.js"))
        .limits(|l| {
            l.max_memory = 64 * 1024 * 1024;
            l.max_storage_bytes = 1024 * 1024;
            l.max_response_bytes = 8 * 1024 * 1024;
        })
        .start()
        .await
}

/// Asserts the reply, then that another object and the attacker itself
/// still answer.
async fn survives(server: &TestServer, reply: Reply, status: u16, code: Option<&str>) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    if let Some(code) = code {
        assert_eq!(reply.code(), code, "{}", reply.text);
    }
    assert_eq!(
        server.call("HOSTILE", "bystander", "ping", json!([])).await,
        "pong"
    );
    assert_eq!(
        server.call("HOSTILE", "attacker", "ping", json!([])).await,
        "pong"
    );
    if status == 200 {
        reply.result()
    } else {
        Value::Null
    }
}

#[tokio::test]
async fn runaway_code_is_stopped_with_its_limit() {
    let server = hostile().await;
    for (method, status, code) in [
        ("spin", 504, "timeout"),
        ("catastrophicRegex", 504, "timeout"),
        ("memoryBomb", 500, "out_of_memory"),
        ("deepRecursion", 500, "execution_error"),
        ("growingString", 500, "execution_error"),
    ] {
        let reply = server.rpc("HOSTILE", "attacker", method, json!([])).await;
        let message = reply.message();
        survives(&server, reply, status, Some(code)).await;
        match method {
            "spin" | "catastrophicRegex" => {
                assert!(message.contains("fuel"), "{method}: {message}")
            }
            "deepRecursion" => assert!(message.contains("stack"), "{message}"),
            _ => {}
        }
    }
    // A promise chain that never ends keeps every link alive: it runs out of
    // fuel or of memory, whichever comes first, and ends like either.
    let storm = server
        .rpc("HOSTILE", "attacker", "microtaskStorm", json!([]))
        .await;
    let expected = match storm.status {
        504 => "timeout",
        _ => "out_of_memory",
    };
    survives(
        &server,
        storm,
        if expected == "timeout" { 504 } else { 500 },
        Some(expected),
    )
    .await;

    let huge = server
        .rpc("HOSTILE", "attacker", "hugeString", json!([]))
        .await;
    let caught = survives(&server, huge, 200, None).await;
    assert_eq!(
        caught,
        json!({"caught": "RangeError"}),
        "one allocation too large is catchable"
    );
}

#[tokio::test]
async fn there_is_no_way_out_of_the_sandbox() {
    let server = hostile().await;
    let probed = server
        .rpc("HOSTILE", "attacker", "escapes", json!([]))
        .await;
    let probed = survives(&server, probed, 200, None).await;
    for global in [
        "std",
        "os",
        "process",
        "Deno",
        "Bun",
        "fetch",
        "XMLHttpRequest",
        "WebAssembly",
    ] {
        assert_eq!(probed[global], "undefined", "{global}");
    }
    assert_eq!(probed["require"], "refused");
    assert_eq!(probed["evalGlobal"], "undefined");
    let imported = server
        .rpc("HOSTILE", "attacker", "dynamicImport", json!([]))
        .await;
    assert_eq!(survives(&server, imported, 200, None).await, "refused");
}

#[tokio::test]
async fn storage_flooding_stops_at_the_quota_and_loses_nothing() {
    let server = hostile().await;
    let flood = server
        .rpc("HOSTILE", "attacker", "flood", json!([16 * 1024]))
        .await;
    let flood = survives(&server, flood, 200, None).await;
    assert_eq!(flood["error"], true, "{flood}");
    let written = flood["written"].as_u64().unwrap();
    assert!(
        written > 10 && written < 64,
        "a 1 MiB quota holds about 60 chunks: {written}"
    );
    assert_eq!(
        server
            .call("HOSTILE", "attacker", "countFlood", json!([]))
            .await,
        written
    );

    let uncaught = server
        .rpc("HOSTILE", "attacker", "floodUncaught", json!([16 * 1024]))
        .await;
    assert!(
        uncaught.message().contains("--max-storage-bytes"),
        "{}",
        uncaught.text
    );
    survives(&server, uncaught, 507, Some("quota_exceeded")).await;
    assert_eq!(
        server
            .call("HOSTILE", "attacker", "countFlood", json!([]))
            .await,
        written,
        "what was stored before is intact"
    );
    assert!(
        server
            .call("HOSTILE", "attacker", "freeFlood", json!([]))
            .await
            .as_u64()
            > Some(0)
    );
    assert_eq!(
        server
            .call("HOSTILE", "attacker", "countFlood", json!([]))
            .await,
        0
    );
}

#[tokio::test]
async fn giant_results_and_odd_throws_get_clear_errors() {
    let server = hostile().await;
    let giant = server
        .rpc("HOSTILE", "attacker", "giantResponse", json!([12]))
        .await;
    assert!(
        giant.message().contains("--max-response-bytes"),
        "{}",
        giant.text
    );
    survives(&server, giant, 500, Some("execution_error")).await;
    let small = server
        .rpc("HOSTILE", "attacker", "giantResponse", json!([1]))
        .await;
    assert_eq!(small.result().as_str().map(str::len), Some(1024 * 1024));
    let fetched = server.request("GET", "/fetch/HOSTILE/attacker/big").await;
    survives(&server, fetched, 500, Some("execution_error")).await;

    for (method, text) in [
        ("throwNull", "null was thrown"),
        ("throwSymbol", "Symbol(boom) was thrown"),
        ("throwCyclic", "cannot be described"),
        ("returnBigInt", "BigInt"),
    ] {
        let reply = server.rpc("HOSTILE", "attacker", method, json!([])).await;
        assert!(reply.message().contains(text), "{method}: {}", reply.text);
        survives(&server, reply, 500, Some("execution_error")).await;
    }
    let cyclic = server
        .rpc("HOSTILE", "attacker", "returnCyclic", json!([]))
        .await;
    survives(&server, cyclic, 500, Some("execution_error")).await;
    let function = server
        .rpc("HOSTILE", "attacker", "returnFunction", json!([]))
        .await;
    assert_eq!(survives(&server, function, 200, None).await, Value::Null);
}

#[tokio::test]
async fn replaced_built_ins_do_not_break_the_runtime() {
    let server = ServerBuilder::new(fixture("hostile/tampering.js"))
        .start()
        .await;
    assert_eq!(
        server
            .call("TAMPERED", "t", "storageStillWorks", json!([]))
            .await,
        "v1:k:true:true"
    );
    assert_eq!(
        server.call("TAMPERED", "t", "awaited", json!([])).await,
        "settled"
    );
    let thrown = server.rpc("TAMPERED", "t", "throws", json!([])).await;
    assert_eq!(
        (thrown.status, thrown.code().as_str()),
        (500, "execution_error")
    );
    assert_eq!(thrown.message(), "TypeError: still described");
    let missing = server.rpc("TAMPERED", "t", "toString", json!([])).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn ten_thousand_log_lines_are_cut_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixtures().join("hostile/objects.js");
    let server = BinaryServer::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--storage",
        dir.path().to_str().unwrap(),
        "--max-log-lines",
        "50",
    ]);
    let reply = post_json(&server.base, "/rpc/HOSTILE/noisy/logFlood", "[10000]").await;
    assert_eq!(reply.result(), 10000, "the dispatch itself succeeds");
    let again = post_json(&server.base, "/rpc/HOSTILE/noisy/logFlood", "[10]").await;
    assert_eq!(
        again.result(),
        10,
        "the count starts over with each dispatch"
    );
    let mut cut = Vec::new();
    for _ in 0..100 {
        cut = server.log_lines("cut after 50 lines");
        if !cut.is_empty() && server.log_lines("line 9").len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(cut.len(), 1, "one note for the flood");
    let lines = server.log_lines("line ");
    assert_eq!(lines.len(), 50 + 10, "fifty of the flood, ten of the next");
}

#[tokio::test]
async fn random_arguments_from_javascript_never_break_the_object() {
    let server = ServerBuilder::new(fixture("hostile/fuzz.js")).start().await;
    let allowed = [
        "bad_request",
        "quota_exceeded",
        "unknown_namespace",
        "method_not_found",
    ];
    for seed in 1..=4 {
        let outcome = server.call("FUZZ", "f", "fuzz", json!([seed, 400])).await;
        let threw = outcome["threw"].as_object().unwrap();
        let total = outcome["returned"].as_u64().unwrap()
            + threw.values().map(|n| n.as_u64().unwrap()).sum::<u64>();
        assert_eq!(
            total, 400,
            "seed {seed}: every call returned or threw: {outcome}"
        );
        for kind in threw.keys() {
            if let Some(code) = kind.strip_prefix("code:") {
                assert!(
                    allowed.contains(&code),
                    "seed {seed}: unexpected {kind}: {outcome}"
                );
            }
        }
        assert_eq!(server.call("FUZZ", "f", "survived", json!([])).await, 400);
    }
    assert_eq!(server.call("FUZZ", "f", "ping", json!([])).await, "pong");
    let starts = server.runtime.actor_starts();
    assert!(
        starts <= 2,
        "no actor was discarded (f, and the stub target): {starts}"
    );
}
