//! Storage semantics seen from JavaScript.

use serde_json::json;

use crate::support::{ServerBuilder, fixture};

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
