//! Storage semantics seen from JavaScript.

use serde_json::json;

use crate::support::{ServerBuilder, fixture};

/// The time the idle-release tests start at.
const T0: u64 = 1_800_000_000_000;

/// A server for `bundle` on `clock` whose actors release what they hold
/// after 10 s idle.
async fn releasing_server(
    bundle: go_go_objects::bundle::Bundle,
    clock: &go_go_objects::clock::ManualClock,
) -> crate::support::TestServer {
    ServerBuilder::new(bundle)
        .clock(clock)
        .config(|c| c.eviction.idle_release = Some(std::time::Duration::from_secs(10)))
        .start()
        .await
}

#[tokio::test]
async fn list_is_sorted_literal_and_limited() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .start()
        .await;
    for key in [
        "user_1",
        "userA",
        "percent%",
        "percentA1",
        "10",
        "9",
        "b",
        "a",
    ] {
        server.call("COUNTER", "l", "put", json!([key, key])).await;
    }
    let all = server.call("COUNTER", "l", "list", json!([])).await;
    assert_eq!(
        all["keys"],
        json!([
            "10",
            "9",
            "a",
            "b",
            "percent%",
            "percentA1",
            "userA",
            "user_1"
        ])
    );
    assert_eq!(
        server.call("COUNTER", "l", "list", json!([{}])).await["keys"],
        all["keys"]
    );
    let prefixed = server
        .call("COUNTER", "l", "list", json!([{"prefix": "user_"}]))
        .await;
    assert_eq!(prefixed["keys"], json!(["user_1"]));
    assert_eq!(prefixed["object"], json!({"user_1": "user_1"}));
    let percent = server
        .call("COUNTER", "l", "list", json!(["percent%"]))
        .await;
    assert_eq!(percent["keys"], json!(["percent%"]));
    let limited = server
        .call("COUNTER", "l", "list", json!([{"limit": 3}]))
        .await;
    assert_eq!(limited["keys"], json!(["10", "9", "a"]));
    let both = server
        .call("COUNTER", "l", "list", json!([{"prefix": "p", "limit": 1}]))
        .await;
    assert_eq!(both["keys"], json!(["percent%"]));
    let bad = server
        .rpc("COUNTER", "l", "list", json!([{"limit": 0}]))
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn keys_values_and_deletes() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .limits(|l| l.max_value_bytes = 64)
        .start()
        .await;
    server
        .call(
            "COUNTER",
            "k",
            "put",
            json!([" padded ", {"nested": [1, null]}]),
        )
        .await;
    assert_eq!(
        server.call("COUNTER", "k", "get", json!(["padded"])).await,
        json!({"nested": [1, null]}),
        "keys are trimmed"
    );
    assert_eq!(
        server.call("COUNTER", "k", "get", json!(["absent"])).await,
        "missing"
    );
    assert_eq!(
        server
            .call("COUNTER", "k", "remove", json!(["padded"]))
            .await,
        true
    );
    assert_eq!(
        server
            .call("COUNTER", "k", "remove", json!(["padded"]))
            .await,
        false
    );
    let empty = server.rpc("COUNTER", "k", "put", json!(["", 1])).await;
    assert_eq!((empty.status, empty.code().as_str()), (400, "bad_request"));
    let large = server
        .rpc("COUNTER", "k", "put", json!(["big", "x".repeat(100)]))
        .await;
    assert_eq!(large.status, 400);
    assert!(large.message().contains("over the limit"), "{}", large.text);
}

#[tokio::test]
async fn the_database_layout_follows_the_object_hash() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .start()
        .await;
    server
        .call("COUNTER", "layout", "increment", json!([]))
        .await;
    let id = go_go_objects::ObjectId::new("COUNTER", "layout").unwrap();
    let path = go_go_objects::storage::database_path(&server.storage_root, &id);
    assert!(path.exists(), "{}", path.display());
    assert!(
        path.to_str()
            .unwrap()
            .contains(&format!("objects/{}/", &id.hash()[..2]))
    );
}

/// A live object idle past `idle_release` closes its database
/// (without a checkpoint, so its write-ahead log stays and no index file
/// appears) and stays live; its next dispatch opens the database again and
/// sees everything it had committed. An object in use keeps its database.
#[tokio::test]
async fn idle_databases_close_and_the_next_dispatch_opens_them_again() {
    let clock = go_go_objects::clock::ManualClock::new(T0);
    let server = releasing_server(fixture("reference/objects.js"), &clock).await;
    assert_eq!(
        server
            .call("COUNTER", "idle", "increment", json!([5]))
            .await,
        json!(5)
    );
    assert_eq!(
        server
            .call("COUNTER", "used", "increment", json!([1]))
            .await,
        json!(1)
    );
    assert_eq!(
        server.runtime.release_idle().databases,
        0,
        "not idle long enough"
    );

    clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(
        server
            .call("COUNTER", "used", "increment", json!([1]))
            .await,
        json!(2)
    );
    assert_eq!(
        server.runtime.release_idle().databases,
        1,
        "only the idle object"
    );
    assert_eq!(
        server.runtime.release_idle().databases,
        0,
        "each stretch once"
    );
    assert_eq!(server.runtime.live_objects(), 2);

    let idle = go_go_objects::ObjectId::new("COUNTER", "idle").unwrap();
    let path = go_go_objects::storage::database_path(&server.storage_root, &idle);
    let beside = |suffix: &str| {
        path.with_file_name(format!(
            "{}{suffix}",
            path.file_name().unwrap().to_string_lossy()
        ))
    };
    assert!(beside("-wal").exists(), "the log stays");
    assert!(!beside("-shm").exists(), "no index file");
    assert_eq!(
        go_go_objects::storage::read_values(&path).unwrap()["count"],
        "5"
    );

    assert_eq!(
        server
            .call("COUNTER", "idle", "increment", json!([1]))
            .await,
        json!(6)
    );
    assert_eq!(
        server
            .call("COUNTER", "idle", "get", json!(["count"]))
            .await,
        json!(6)
    );
    assert!(!beside("-shm").exists());

    // Idle again: the second stretch of idleness closes it again.
    clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(server.runtime.release_idle().databases, 2);
    assert_eq!(
        server
            .call("COUNTER", "used", "increment", json!([1]))
            .await,
        json!(3)
    );
}

/// Idle actors give back the memory pages that hold what the image holds;
/// what they changed stays, so their in-memory state is intact when they
/// run again.
#[tokio::test]
async fn idle_actors_give_back_unchanged_pages_and_keep_their_state() {
    const SOURCE: &str = r#"
class Memo {
  constructor(state) { this.state = state; this.items = []; }
  fill(n) {
    for (let i = 0; i < n; i++) this.items.push('item ' + i + ' ' + 'x'.repeat(i % 50));
    return this.items.length;
  }
  checksum() {
    let sum = 0;
    for (const item of this.items) for (let i = 0; i < item.length; i++) sum = (sum * 31 + item.charCodeAt(i)) % 1000003;
    return [this.items.length, sum];
  }
}
exports.objects = { Memo };
"#;
    let clock = go_go_objects::clock::ManualClock::new(T0);
    let bundle = go_go_objects::bundle::Bundle::from_source("memo.js", SOURCE);
    let server = releasing_server(bundle, &clock).await;
    assert_eq!(
        server.call("MEMO", "m", "fill", json!([5000])).await,
        json!(5000)
    );
    let before = server.call("MEMO", "m", "checksum", json!([])).await;
    clock.advance(std::time::Duration::from_secs(11));
    let released = server.runtime.release_idle();
    assert_eq!((released.actors, released.databases), (1, 1));
    if cfg!(target_os = "linux") {
        assert!(released.bytes >= 64 * 1024, "{released:?}");
    }
    assert_eq!(
        server.call("MEMO", "m", "checksum", json!([])).await,
        before
    );
    assert_eq!(
        server.call("MEMO", "m", "fill", json!([10])).await,
        json!(5010)
    );
    // Released again after the next stretch of idleness, still intact.
    clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(server.runtime.release_idle().actors, 1);
    let after = server.call("MEMO", "m", "checksum", json!([])).await;
    assert_eq!(after[0], json!(5010));
}

#[tokio::test]
async fn idle_actors_give_back_the_stack_a_deep_recursion_wrote() {
    const SOURCE: &str = r#"
class Deep {
  constructor(state) { this.state = state; this.calls = 0; }
  depth(n) { this.calls++; return n === 0 ? 0 : 1 + this.depth(n - 1); }
  calls() { return this.calls; }
}
exports.objects = { Deep };
"#;
    let clock = go_go_objects::clock::ManualClock::new(T0);
    let bundle = go_go_objects::bundle::Bundle::from_source("deep.js", SOURCE);
    let server = releasing_server(bundle, &clock).await;
    // The same actor twice over: once shallow, once after a recursion 2,000
    // calls deep, whose stack pages hold nothing once it has returned.
    let mut given_back = Vec::new();
    for (name, depth) in [("shallow", 1), ("deep", 2000)] {
        assert_eq!(
            server.call("DEEP", name, "depth", json!([depth])).await,
            json!(depth)
        );
        clock.advance(std::time::Duration::from_secs(11));
        let released = server.runtime.release_idle();
        assert_eq!(released.actors, 1, "{released:?}");
        given_back.push(released.bytes);
    }
    if cfg!(target_os = "linux") {
        assert!(
            given_back[1] >= given_back[0] + (512 << 10),
            "the deep recursion's stack is given back: {given_back:?}"
        );
    }
    // The stack works as before, and the object kept its state.
    assert_eq!(
        server.call("DEEP", "deep", "depth", json!([2000])).await,
        json!(2000)
    );
    assert_eq!(
        server.call("DEEP", "deep", "calls", json!([])).await,
        json!(4002)
    );
}

/// A release with no time left visits nobody and says so; the next one
/// goes on where it stopped.
#[tokio::test]
async fn an_idle_release_out_of_budget_leaves_the_rest_for_the_next() {
    let clock = go_go_objects::clock::ManualClock::new(T0);
    let server = releasing_server(fixture("reference/objects.js"), &clock).await;
    for name in ["a", "b", "c"] {
        server.call("COUNTER", name, "increment", json!([1])).await;
        clock.advance(std::time::Duration::from_millis(5));
    }
    clock.advance(std::time::Duration::from_secs(11));
    let none = server.runtime.release_idle_for(std::time::Duration::ZERO);
    assert_eq!((none.actors, none.complete), (0, false));
    let all = server.runtime.release_idle();
    assert_eq!((all.actors, all.databases, all.complete), (3, 3, true));
    assert_eq!(server.runtime.release_idle().actors, 0);
    assert_eq!(
        server.call("COUNTER", "b", "increment", json!([1])).await,
        json!(2)
    );
}
