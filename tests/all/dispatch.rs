//! Actors and dispatch: the reference's acceptance tests, limits, stubs.

use std::sync::Arc;

use serde_json::json;

use crate::support::{ServerBuilder, TestServer, fixture};

async fn reference() -> TestServer {
    ServerBuilder::new(fixture("reference/objects.js"))
        .start()
        .await
}

#[tokio::test]
async fn twenty_concurrent_first_calls_start_one_actor() {
    let server = Arc::new(reference().await);
    let calls = (0..20).map(|_| {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .rpc("COUNTER", "first", "increment", json!([1]))
                .await
        })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().status, 200);
    }
    assert_eq!(server.runtime.actor_starts(), 1);
    assert_eq!(
        server.call("COUNTER", "first", "value", json!([])).await,
        20
    );
}

#[tokio::test]
async fn async_read_await_write_calls_never_interleave() {
    let server = Arc::new(reference().await);
    let calls = (0..16).map(|_| {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .rpc("COUNTER", "serial", "asyncReadThenIncrement", json!([]))
                .await
        })
    });
    let mut results: Vec<i64> = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().result().as_i64().unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, (1..=16).collect::<Vec<_>>());
    assert_eq!(
        server.call("COUNTER", "serial", "value", json!([])).await,
        16
    );
}

#[tokio::test]
async fn async_results_rejections_and_coded_errors() {
    let server = reference().await;
    assert_eq!(
        server
            .call("COUNTER", "a", "asyncIncrement", json!([7]))
            .await,
        7
    );
    assert_eq!(server.call("COUNTER", "a", "value", json!([])).await, 7);

    let rejected = server.rpc("COUNTER", "a", "rejectAsync", json!([])).await;
    assert_eq!(
        (rejected.status, rejected.code().as_str()),
        (500, "execution_error")
    );
    assert!(
        rejected.message().contains("rejected on purpose"),
        "{}",
        rejected.text
    );

    let coded = server
        .rpc("COUNTER", "a", "badStorageAfterAwait", json!([]))
        .await;
    assert_eq!((coded.status, coded.code().as_str()), (400, "bad_request"));
    assert!(
        coded.message().contains("must not be empty"),
        "{}",
        coded.text
    );
}

#[tokio::test]
async fn a_never_settling_promise_times_out_at_once_and_cannot_write_later() {
    let server = reference().await;
    let pending = server.rpc("COUNTER", "p", "pending", json!([])).await;
    assert_eq!((pending.status, pending.code().as_str()), (504, "timeout"));
    assert!(
        pending.message().contains("can never settle"),
        "detected, not waited out: {}",
        pending.text
    );

    let late = server
        .rpc("COUNTER", "p", "latePendingWrite", json!([]))
        .await;
    assert_eq!(late.status, 504);
    // The timed-out actor was discarded: the continuation it left behind is
    // gone with it, so nothing can write `late`.
    assert_eq!(
        server.call("COUNTER", "p", "resolveLate", json!([])).await,
        false
    );
    assert_eq!(server.call("COUNTER", "p", "lateValue", json!([])).await, 0);
    assert_eq!(server.runtime.actor_starts(), 3);
}

#[tokio::test]
async fn transactions_commit_roll_back_and_refuse_async_callbacks() {
    let server = reference().await;
    let refused = server
        .rpc("COUNTER", "t", "badAsyncTransaction", json!([]))
        .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "bad_request")
    );
    assert!(
        refused.message().contains("synchronous"),
        "{}",
        refused.text
    );
    assert_eq!(
        server
            .call("COUNTER", "t", "get", json!(["inTransaction"]))
            .await,
        "missing"
    );

    assert_eq!(
        server
            .call("COUNTER", "t", "transfer", json!([5, false]))
            .await,
        5
    );
    let failed = server
        .rpc("COUNTER", "t", "transfer", json!([3, true]))
        .await;
    assert_eq!(failed.status, 500);
    assert_eq!(server.call("COUNTER", "t", "get", json!(["a"])).await, -5);
    assert_eq!(server.call("COUNTER", "t", "get", json!(["b"])).await, 5);
}

#[tokio::test]
async fn only_class_methods_are_callable() {
    let server = reference().await;
    for method in [
        "hasOwnProperty",
        "toString",
        "constructor",
        "__proto__",
        "fetch",
        "_private",
        "nope",
        "state",
        "alarm",
    ] {
        let reply = server.rpc("COUNTER", "m", method, json!([])).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (404, "method_not_found"),
            "{method}"
        );
    }
    assert_eq!(server.call("COUNTER", "m", "value", json!([])).await, 0);

    assert_eq!(server.call("TALLY", "t", "size", json!([])).await, 0);
    for inherited in ["push", "join", "toString", "map"] {
        let reply = server.rpc("TALLY", "t", inherited, json!([])).await;
        assert_eq!(reply.status, 404, "{inherited} of a built-in base class");
    }
    // A class is built in only when the engine wrote its source, however
    // much a bundle's own source talks about native code.
    assert_eq!(
        server
            .call("COUNTER", "m", "nativeLooking", json!([]))
            .await,
        json!("[native code]\n}")
    );
}

#[tokio::test]
async fn half_surrogate_pairs_do_not_break_errors_or_logs() {
    let server = reference().await;
    let thrown = server
        .rpc("COUNTER", "u", "throwLoneSurrogate", json!([]))
        .await;
    assert_eq!(
        (thrown.status, thrown.code().as_str()),
        (500, "execution_error")
    );
    assert_eq!(thrown.message(), "Error: bad \u{fffd} half");
    assert_eq!(
        server
            .call("COUNTER", "u", "get", json!(["beforeThrow"]))
            .await,
        true,
        "a throw keeps the dispatch's writes"
    );
    assert_eq!(
        server
            .call("COUNTER", "u", "logLoneSurrogate", json!([]))
            .await,
        true
    );
    assert_eq!(
        server.runtime.actor_starts(),
        1,
        "the actor was never discarded"
    );
}

#[tokio::test]
async fn a_key_with_half_a_surrogate_pair_is_stored_as_u_fffd() {
    let server = reference().await;
    assert_eq!(
        server
            .call("COUNTER", "k", "putLoneSurrogateKey", json!([7]))
            .await,
        json!([7, 7, ["k\u{fffd}"]])
    );
}

#[tokio::test]
async fn state_id_is_namespace_name_and_hash() {
    let server = reference().await;
    let id = server.call("COUNTER", "who", "whoami", json!([])).await;
    assert_eq!(id["namespace"], "COUNTER");
    assert_eq!(id["name"], "who");
    assert_eq!(id["hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn fetch_handlers_sync_and_async() {
    let server = reference().await;
    server
        .call("COUNTER", "global", "increment", json!([3]))
        .await;
    let count = server.request("GET", "/fetch/COUNTER/global/count").await;
    assert_eq!((count.status, count.text.as_str()), (200, "3"));
    assert_eq!(count.headers["x-counter"], "yes");
    let async_count = server
        .request("GET", "/fetch/COUNTER/global/async-count")
        .await;
    assert_eq!((async_count.status, async_count.text.as_str()), (202, "3"));
    assert_eq!(async_count.headers["x-async"], "yes");
}

#[tokio::test]
async fn stubs_call_other_objects_and_refuse_cycles() {
    let server = reference().await;
    server.call("COUNTER", "b", "increment", json!([5])).await;
    assert_eq!(
        server
            .call("COUNTER", "a", "callOther", json!(["b", "value"]))
            .await,
        5
    );
    assert_eq!(
        server
            .call("COUNTER", "a", "callOther", json!(["b", "increment", [2]]))
            .await,
        7
    );

    let to_self = server.rpc("COUNTER", "a", "callSelf", json!([])).await;
    assert_eq!(
        (to_self.status, to_self.code().as_str()),
        (400, "bad_request")
    );
    assert!(to_self.message().contains("call cycle"), "{}", to_self.text);

    let cycle = server.rpc("COUNTER", "a", "pingPong", json!(["b"])).await;
    assert_eq!((cycle.status, cycle.code().as_str()), (400, "bad_request"));
    assert!(
        cycle
            .message()
            .contains("COUNTER/a -> COUNTER/b -> COUNTER/a"),
        "{}",
        cycle.text
    );

    let missing = server
        .rpc("COUNTER", "a", "callOther", json!(["b", "nope"]))
        .await;
    assert_eq!(missing.code(), "method_not_found");
}

#[tokio::test]
async fn a_cycle_across_two_requests_fails_at_once_instead_of_deadlocking() {
    let server = Arc::new(
        ServerBuilder::new(fixture("reference/objects.js"))
            .limits(|l| l.cpu_timeout = None)
            .start()
            .await,
    );
    server.call("COUNTER", "x", "increment", json!([])).await;
    server.call("COUNTER", "y", "increment", json!([])).await;
    let towards = |from: &'static str, to: &'static str| {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .rpc("COUNTER", from, "spinThenCall", json!([300, to, "value"]))
                .await
        })
    };
    let (x, y) = (towards("x", "y"), towards("y", "x"));
    let mut replies = [x.await.unwrap(), y.await.unwrap()];
    replies.sort_by_key(|r| r.status);
    assert_eq!(replies[0].result(), 1, "one request completes");
    assert_eq!(
        (replies[1].status, replies[1].code().as_str()),
        (400, "bad_request")
    );
    assert!(
        replies[1].message().contains("call cycle"),
        "{}",
        replies[1].text
    );
}

#[tokio::test]
async fn stub_chains_are_bounded_and_never_starve_the_thread_pool() {
    let server = Arc::new(reference().await);
    let deepest = server.call("COUNTER", "c0", "chain", json!([0, 15])).await;
    assert_eq!(deepest, 15, "sixteen objects in one chain");
    let too_deep = server.rpc("COUNTER", "c0", "chain", json!([0, 16])).await;
    assert_eq!(
        (too_deep.status, too_deep.code().as_str()),
        (400, "bad_request")
    );
    assert!(too_deep.message().contains("too deep"), "{}", too_deep.text);

    // Many chains at once: each level runs on a thread of its own, so none
    // waits for a free pool thread that the others hold.
    let chains: Vec<_> = (0..48)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let reply = server
                    .rpc(
                        "COUNTER",
                        &format!("p{i}"),
                        "callOther",
                        json!([format!("q{i}"), "chain", [0, 2]]),
                    )
                    .await;
                reply.result()
            })
        })
        .collect();
    for chain in chains {
        assert_eq!(chain.await.unwrap(), 2);
    }
}

#[tokio::test]
async fn a_runaway_object_gets_504_while_another_keeps_answering() {
    let server = Arc::new(
        ServerBuilder::new(fixture("reference/objects.js"))
            .limits(|l| l.cpu_fuel = 2_000_000_000)
            .start()
            .await,
    );
    let runaway = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("COUNTER", "loop", "burn", json!([])).await })
    };
    assert_eq!(
        server.call("COUNTER", "calm", "increment", json!([])).await,
        1
    );
    let runaway = runaway.await.unwrap();
    assert_eq!((runaway.status, runaway.code().as_str()), (504, "timeout"));
    assert!(runaway.message().contains("fuel"), "{}", runaway.text);

    assert_eq!(
        server.call("COUNTER", "loop", "increment", json!([])).await,
        1
    );
    assert_eq!(
        server.call("COUNTER", "calm", "increment", json!([])).await,
        2
    );
}

#[tokio::test]
async fn the_wall_clock_deadline_answers_504() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .limits(|l| {
            l.cpu_timeout = Some(std::time::Duration::from_millis(250));
            l.cpu_fuel = u64::MAX;
        })
        .start()
        .await;
    let reply = server.rpc("COUNTER", "slow", "spin", json!([5000])).await;
    assert_eq!((reply.status, reply.code().as_str()), (504, "timeout"));
    assert!(reply.message().contains("--cpu-timeout"), "{}", reply.text);
    assert_eq!(
        server.call("COUNTER", "slow", "increment", json!([])).await,
        1
    );
}

#[tokio::test]
async fn the_same_dispatch_on_a_fresh_object_costs_the_same_fuel() {
    let server = reference().await;
    let mut fuels = Vec::new();
    for i in 0..5 {
        let name = format!("fresh-{i}");
        let reply = server.rpc("COUNTER", &name, "increment", json!([2])).await;
        assert_eq!(reply.result(), 2);
        fuels.push(reply.fuel());
    }
    assert!(fuels[0] > 0);
    assert!(
        fuels.iter().all(|&f| f == fuels[0]),
        "fuel differs: {fuels:?}"
    );

    let mut more = Vec::new();
    for i in 0..3 {
        let reply = server
            .rpc(
                "COUNTER",
                &format!("fresh-{i}"),
                "transfer",
                json!([1, false]),
            )
            .await;
        more.push(reply.fuel());
    }
    assert!(more.iter().all(|&f| f == more[0]), "fuel differs: {more:?}");
    assert_ne!(more[0], fuels[0], "different work costs different fuel");
}

/// What a new actor works out once (which of its prototypes are built in)
/// costs little beside the dispatch itself, however long its class's
/// source is.
#[tokio::test]
async fn a_new_objects_first_dispatch_costs_about_what_later_ones_do() {
    let server = reference().await;
    let first = server
        .rpc("COUNTER", "first", "increment", json!([1]))
        .await;
    let second = server
        .rpc("COUNTER", "first", "increment", json!([1]))
        .await;
    assert_eq!(second.result(), 2);
    let (first, second) = (first.fuel(), second.fuel());
    assert!(
        first < 2 * second,
        "first dispatch {first} fuel, the next {second}"
    );
}

#[tokio::test]
async fn the_response_limit_counts_the_result_not_its_envelope() {
    const SIZED: &str = r#"
        class Sized {
          text(n) { return 'y'.repeat(n); }
          async fetch(request) {
            const n = Number(request.query.n);
            return { status: 200, headers: { 'x-big': 'h'.repeat(1000) }, body: '"'.repeat(n) };
          }
        }
        exports.objects = { Sized };
    "#;
    const LIMIT: usize = 1 << 20;
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "sized.js", SIZED,
    ))
    .limits(|l| l.max_response_bytes = LIMIT)
    .start()
    .await;
    // A body of quotes doubles in the guest's JSON envelope; only the body
    // counts.
    let exact = server
        .request("GET", &format!("/fetch/SIZED/s/?n={LIMIT}"))
        .await;
    assert_eq!(exact.status, 200, "{}", exact.text);
    assert_eq!(exact.text.len(), LIMIT);
    let over = server
        .request("GET", &format!("/fetch/SIZED/s/?n={}", LIMIT + 1))
        .await;
    assert_eq!(over.status, 500);
    assert!(
        over.message().contains("--max-response-bytes"),
        "{}",
        over.text
    );

    // An RPC result counts as its JSON: the string and its two quotes.
    let rpc = server.rpc("SIZED", "s", "text", json!([LIMIT - 2])).await;
    assert_eq!(rpc.status, 200);
    let rpc = server.rpc("SIZED", "s", "text", json!([LIMIT - 1])).await;
    assert_eq!(rpc.status, 500);
    assert!(
        rpc.message().contains(&format!("{} bytes", LIMIT + 1)),
        "{}",
        rpc.text
    );
}

const NUMBERS: &str = r#"
class Numbers {
  constructor(state) { this.state = state; }
  fib(n) { return n < 2 ? n : this.fib(n - 1) + this.fib(n - 2); }
  fibOfInteger(n) { return this.fib(n | 0); }
  fibOfDouble(n) { return this.fib(n + 0.5 - 0.5); }
  store(n) { this.state.storage.put('n', n); }
  fibOfStored() { return this.fib(this.state.storage.get('n')); }
  same(n) { return [Object.is(n, -0), n, n + 1, n * 2]; }
}
exports.objects = { Numbers };
"#;

#[tokio::test]
async fn whole_numbers_from_json_are_integers_to_the_engine() {
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "numbers.js",
        NUMBERS,
    ))
    .start()
    .await;
    // JSON's numbers arrive as doubles; arithmetic on doubles takes the
    // engine's slow path. An argument or a stored value that is a whole
    // number costs no more than one made an integer in JavaScript (`n | 0`,
    // which costs a little itself).
    let fuel = |reply: crate::support::Reply| {
        assert_eq!(reply.result(), json!(6765), "{}", reply.text);
        reply.fuel()
    };
    // First calls pay for looking methods up once.
    server.call("NUMBERS", "n", "store", json!([1])).await;
    for method in ["fib", "fibOfInteger", "fibOfDouble", "fibOfStored"] {
        server.call("NUMBERS", "n", method, json!([1])).await;
    }
    let argument = fuel(server.rpc("NUMBERS", "n", "fib", json!([20])).await);
    let integer = fuel(
        server
            .rpc("NUMBERS", "n", "fibOfInteger", json!([20]))
            .await,
    );
    assert!(
        argument <= integer,
        "{argument} fuel for a JSON argument, {integer} for an integer"
    );
    let double = fuel(server.rpc("NUMBERS", "n", "fibOfDouble", json!([20])).await);
    assert!(
        integer * 5 < double * 4,
        "{integer} fuel for an integer, {double} for a double"
    );
    server.call("NUMBERS", "n", "store", json!([20])).await;
    let stored = fuel(server.rpc("NUMBERS", "n", "fibOfStored", json!([])).await);
    assert!(
        stored * 5 < double * 4,
        "{stored} fuel for a stored number, {double} for a double"
    );

    // Nothing JavaScript can see changes: -0, fractions and numbers past 32
    // bits stay what they were.
    for (arg, expected) in [
        (json!(-0.0), json!([true, 0, 1, 0])),
        (json!(0), json!([false, 0, 1, 0])),
        (json!(1.5), json!([false, 1.5, 2.5, 3])),
        (
            json!(2147483648u64),
            json!([false, 2147483648u64, 2147483649u64, 4294967296u64]),
        ),
        (
            json!(-2147483649i64),
            json!([false, -2147483649i64, -2147483648i64, -4294967298i64]),
        ),
    ] {
        assert_eq!(
            server.call("NUMBERS", "n", "same", json!([arg])).await,
            expected,
            "{arg}"
        );
    }
}
