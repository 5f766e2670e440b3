//! The library as a Rust application uses it: the builder, the router
//! under a prefix, event hooks, per-namespace storage, bound dispatch, and
//! the example application over HTTP.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, http::HeaderMap};
use go_go_objects::{
    ErrorCode, ObjectId,
    bound::{BoundDispatcher, BoundError},
    events::Event,
    gateway::{self, GatewayOptions},
    runtime::Runtime,
    storage,
};
use serde_json::json;

use crate::support::{fixture, post_json, read};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

async fn runtime_in(dir: &std::path::Path) -> Runtime {
    Runtime::builder(fixture("reference/objects.js"))
        .storage_root(dir)
        .start()
        .await
        .expect("the runtime starts")
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn the_gateway_mounts_under_a_prefix_next_to_the_host_routes() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path()).await;
    let app = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .nest(
            "/do",
            gateway::router(runtime.clone(), GatewayOptions::default()),
        );
    let base = serve(app).await;
    let reply = post_json(&base, "/do/rpc/COUNTER/mounted/increment", "[7]").await;
    assert_eq!(reply.result(), 7);
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    assert_eq!(
        post_json(&base, "/rpc/COUNTER/mounted/value", "[]")
            .await
            .status,
        404
    );

    let id = ObjectId::new("COUNTER", "mounted").unwrap();
    assert_eq!(runtime.rpc(&id, "value", vec![]).await.unwrap(), 7);
    assert_eq!(runtime.shutdown(Duration::from_secs(5)).await.still_busy, 0);
}

#[tokio::test]
async fn hooks_see_dispatches_starts_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let runtime = Runtime::builder(fixture("reference/objects.js"))
        .storage_root(dir.path())
        .namespace_storage("CHAT_ROOM", dir.path().join("rooms"))
        .on_event(move |event: &Event<'_>| {
            let line = match event {
                Event::Dispatched {
                    id,
                    kind,
                    method,
                    fuel,
                    error,
                    ..
                } => format!(
                    "dispatch {id} {kind} {} fuel={} error={:?}",
                    method.unwrap_or("-"),
                    fuel.is_some_and(|f| f > 0),
                    error.map(|e| e.code)
                ),
                Event::ActorStarted { id, class, .. } => format!("start {id} {class}"),
                Event::ActorStopped { id, reason } => format!("stop {id} {reason:?}"),
                Event::AlarmRan { id, outcome, .. } => format!("alarm {id} {outcome:?}"),
                Event::Committed { .. } => return,
                _ => "other".to_string(),
            };
            sink.lock().unwrap().push(line);
        })
        .start()
        .await
        .unwrap();
    let room = ObjectId::new("CHAT_ROOM", "lobby").unwrap();
    assert_eq!(runtime.rpc(&room, "ping", vec![]).await.unwrap(), "pong");
    let missing = runtime.rpc(&room, "nope", vec![]).await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::MethodNotFound);
    assert!(runtime.evict(&room));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "start CHAT_ROOM/lobby ChatRoom",
            "dispatch CHAT_ROOM/lobby rpc ping fuel=true error=None",
            "dispatch CHAT_ROOM/lobby rpc nope fuel=true error=Some(MethodNotFound)",
            "stop CHAT_ROOM/lobby Evicted",
        ]
    );
    assert!(storage::database_path(&dir.path().join("rooms"), &room).exists());
    assert!(!storage::database_path(dir.path(), &room).exists());
    runtime.shutdown(Duration::from_secs(5)).await;
}

// ---- bound dispatch: the reference's bound-dispatcher tests -----------------

#[tokio::test]
async fn bound_names_are_stable_isolated_and_reveal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path()).await;
    let bound = BoundDispatcher::new(runtime.clone(), KEY, ["COUNTER"]).unwrap();
    let alice = bound.object_for("COUNTER", "alice").unwrap();
    assert_eq!(
        alice,
        bound.object_for("COUNTER", "alice").unwrap(),
        "stable"
    );
    assert_ne!(
        alice,
        bound.object_for("COUNTER", "bob").unwrap(),
        "distinct per user"
    );
    assert_ne!(
        alice,
        bound.object_for("COUNTER", " alice").unwrap(),
        "ids are not normalized"
    );
    assert!(alice.name().starts_with("v1_"), "{}", alice.name());
    assert!(!alice.name().contains("alice"));
    let other_key = BoundDispatcher::new(runtime.clone(), &[7u8; 32], ["COUNTER"]).unwrap();
    assert_ne!(alice, other_key.object_for("COUNTER", "alice").unwrap());

    // Two users, two objects.
    assert_eq!(
        bound
            .rpc("COUNTER", "alice", "increment", vec![json!(7)])
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        bound.rpc("COUNTER", "bob", "value", vec![]).await.unwrap(),
        0
    );
    assert_eq!(
        bound
            .rpc("COUNTER", "alice", "value", vec![])
            .await
            .unwrap(),
        7
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bound_dispatch_refuses_injection_before_any_actor_starts() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path()).await;
    let bound = BoundDispatcher::new(runtime.clone(), KEY, ["COUNTER"]).unwrap();
    let refused = bound
        .rpc("CHAT_ROOM", "alice", "ping", vec![])
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnknownNamespace);

    let identify = |headers: &HeaderMap| {
        headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let base = serve(gateway::bound_router(
        bound,
        identify,
        GatewayOptions::default(),
    ))
    .await;
    let client = reqwest::Client::new();
    let send = |path: &str, user: Option<&str>| {
        let mut request = client.post(format!("{base}{path}")).body("[]");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    let named = send("/rpc/COUNTER/someone-else/value", Some("alice")).await;
    assert_eq!((named.status, named.code().as_str()), (400, "bad_request"));
    let outside = send("/rpc/CHAT_ROOM/ping", Some("alice")).await;
    assert_eq!(
        (outside.status, outside.code().as_str()),
        (404, "unknown_namespace")
    );
    let anonymous = send("/rpc/COUNTER/value", None).await;
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (401, "unauthorized")
    );
    assert_eq!(runtime.actor_starts(), 0, "nothing reached an actor");

    let mine = send("/rpc/COUNTER/increment", Some("carol")).await;
    assert_eq!(mine.result(), 1);
    let fetched = client
        .get(format!("{base}/fetch/COUNTER/count"))
        .header("x-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.text().await.unwrap(), "1");
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bound_dispatchers_validate_their_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path()).await;
    let new = |key: &[u8], namespaces: &[&str]| {
        BoundDispatcher::new(runtime.clone(), key, namespaces.iter().copied()).unwrap_err()
    };
    assert_eq!(new(&KEY[..31], &["COUNTER"]), BoundError::KeyTooShort(31));
    assert_eq!(new(KEY, &[]), BoundError::NoNamespaces);
    assert!(matches!(new(KEY, &["bad/ns"]), BoundError::Namespace(..)));
    assert!(matches!(
        new(KEY, &["NOT_SERVED"]),
        BoundError::Namespace(..)
    ));

    let mut key = KEY.to_vec();
    let bound = BoundDispatcher::new(runtime.clone(), &key, ["COUNTER"]).unwrap();
    let before = bound.object_for("COUNTER", "dave").unwrap();
    key.fill(0);
    assert_eq!(
        bound.object_for("COUNTER", "dave").unwrap(),
        before,
        "the key was copied"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

// ---- the example application ----------------------------------------------------

/// Starts the example on an ephemeral port; returns it and its address.
fn start_example(storage: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples").join("embedded"))
        .unwrap();
    assert!(
        example.exists(),
        "cargo test builds examples: {}",
        example.display()
    );
    let mut child = Command::new(&example)
        .args(["--addr", "127.0.0.1:0", "--storage"])
        .arg(storage)
        .args(extra)
        .env_remove("EXAMPLE_BINDING_KEY")
        .env_remove("EXAMPLE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let base = line
        .strip_prefix("example listening on ")
        .unwrap()
        .to_string();
    (child, base)
}

#[tokio::test]
async fn the_example_application_serves_its_routes_and_per_user_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_example(dir.path(), &["--admin-token", "s3cret"]);

    let client = reqwest::Client::new();
    let as_user = |user: &'static str, path: &'static str, body: &'static str| {
        let request = client
            .post(format!("{base}{path}"))
            .header("x-user", user)
            .body(body);
        async move { read(request.send().await.unwrap()).await }
    };
    assert_eq!(
        as_user("alice", "/me/rpc/COUNTER/increment", "[2]")
            .await
            .result(),
        2
    );
    assert_eq!(
        as_user("alice", "/me/rpc/COUNTER/increment", "[2]")
            .await
            .result(),
        4
    );
    assert_eq!(
        as_user("bob", "/me/rpc/COUNTER/value", "[]").await.result(),
        0
    );
    let who = client
        .get(format!("{base}/whoami"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(who.text().await.unwrap(), "alice");
    assert_eq!(
        post_json(&base, "/me/rpc/COUNTER/value", "[]").await.status,
        401
    );

    // The raw gateway needs the admin token.
    assert_eq!(
        post_json(&base, "/do/rpc/COUNTER/global/increment", "[1]")
            .await
            .status,
        401
    );
    let admin = client
        .post(format!("{base}/do/rpc/COUNTER/global/increment"))
        .header("authorization", "Bearer s3cret")
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(read(admin).await.result(), 1);

    // The binding key was made once, private, and survives a restart.
    let key = dir.path().join("binding.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, base) = start_example(dir.path(), &[]);
    let again = client
        .post(format!("{base}/me/rpc/COUNTER/value"))
        .header("x-user", "alice")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(read(again).await.result(), 4, "alice finds her counter");
    assert_eq!(
        post_json(&base, "/do/rpc/COUNTER/global/value", "[]")
            .await
            .status,
        404,
        "no raw gateway without an admin token"
    );
    let _ = child.kill();
    let _ = child.wait();
}
