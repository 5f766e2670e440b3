//! Pre-initialized images: `go-go-objects build` writes one, `--image`
//! serves it without the bundle's source, and an image made for other
//! settings or not made by us is refused at start with the file and the
//! reason.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use go_go_objects::{
    ObjectId,
    bundle::Image,
    config::RuntimeConfig,
    runtime::{DispatchKind, DispatchRequest, Runtime, build_image},
};
use serde_json::json;

use crate::support::{BinaryServer, fixture, fixtures, post_json};

/// Runs the binary with `args` and returns its output.
fn binary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Starts the server with `args` and expects it to exit with an error
/// within a minute; returns its stderr.
fn refused_at_start(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{args:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_built_image_serves_the_bundle_without_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("objects.js");
    std::fs::copy(fixtures().join("reference/objects.js"), &source).unwrap();
    let image = dir.path().join("objects.wasm");
    let built = binary(&[
        "build",
        "--bundle",
        source.to_str().unwrap(),
        "--output",
        image.to_str().unwrap(),
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let listing = text(&built.stdout);
    assert!(listing.contains("COUNTER: Counter"), "{listing}");
    assert!(listing.contains("CHAT_ROOM: ChatRoom"), "{listing}");

    // The source is gone; the image alone is served.
    std::fs::remove_file(&source).unwrap();
    let storage = dir.path().join("storage");
    let server = BinaryServer::start(&[
        "--image",
        image.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
    ]);
    let reply = post_json(&server.base, "/rpc/COUNTER/a/increment", "[5]").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.result(), 5);
    let reply = post_json(&server.base, "/rpc/COUNTER/a/increment", "[2]").await;
    assert_eq!(reply.result(), 7);
    let reply = post_json(&server.base, "/rpc/CHAT_ROOM/lobby/nosuch", "[]").await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}

#[tokio::test]
async fn an_image_costs_the_same_fuel_as_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture("bundles/deterministic.js");
    let config = |root: &str| RuntimeConfig {
        storage_root: dir.path().join(root),
        ..RuntimeConfig::default()
    };
    let built = build_image(&bundle, None, &config("unused")).expect("the image builds");
    assert_eq!(built.classes.iter().count(), 1);
    assert!(
        !dir.path().join("unused").exists(),
        "building touches no storage"
    );

    let from_source = Runtime::new(bundle, None, config("a")).unwrap();
    let from_image = Runtime::from_image(
        Image::from_bytes("dice.wasm", built.wasm),
        None,
        config("b"),
    )
    .unwrap();
    let id = ObjectId::new("DICE", "d").unwrap();
    let request = || DispatchRequest {
        id: id.clone(),
        kind: DispatchKind::Rpc {
            method: "work".into(),
            args: vec![json!(3000)],
        },
    };
    let a = from_source.dispatch(request()).await.unwrap();
    let b = from_image.dispatch(request()).await.unwrap();
    assert_eq!(a.fuel_consumed, b.fuel_consumed);
    match (a.value, b.value) {
        (
            go_go_objects::runtime::DispatchValue::Rpc(a),
            go_go_objects::runtime::DispatchValue::Rpc(b),
        ) => assert_eq!(a.get(), b.get()),
        _ => panic!("an RPC returns an RPC result"),
    }
}

#[test]
fn an_image_for_other_settings_or_no_image_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("dice.wasm");
    let bundle = fixtures().join("bundles/deterministic.js");
    let built = binary(&[
        "build",
        "--bundle",
        bundle.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--max-memory",
        "64MiB",
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let image = image.to_str().unwrap();
    let storage = dir.path().join("storage");
    let storage = storage.to_str().unwrap();

    let serve = |extra: &[&str]| {
        let mut args = vec!["--image", image, "--storage", storage];
        args.extend_from_slice(extra);
        refused_at_start(&args)
    };
    let message = serve(&[]);
    assert!(
        message.contains(image) && message.contains("--max-memory 64MiB, not 128MiB"),
        "{message}"
    );
    let message = serve(&["--max-memory", "64MiB", "--deterministic"]);
    assert!(message.contains("--deterministic --seed 0"), "{message}");
    assert!(
        !dir.path().join("storage").exists(),
        "a refused image touches no storage"
    );

    // The runner takes images too, with the same checks.
    let ran = binary(&[
        "run",
        "--image",
        image,
        "--max-memory",
        "64MiB",
        "DICE/d",
        "--method",
        "work",
        "--args",
        "[10]",
    ]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let ran = binary(&["run", "--image", image, "DICE/d", "--method", "work"]);
    assert_eq!(ran.status.code(), Some(2), "{}", text(&ran.stderr));

    let not_an_image = dir.path().join("objects.js");
    std::fs::copy(&bundle, &not_an_image).unwrap();
    let not_an_image = not_an_image.to_str().unwrap();
    let message = refused_at_start(&["--image", not_an_image, "--storage", storage]);
    assert!(
        message.contains(not_an_image) && message.contains("not a go-go-objects image"),
        "{message}"
    );

    let missing = binary(&["build", "--bundle", "/nonexistent/objects.js", "-o", image]);
    assert!(!missing.status.success());
    let message = text(&missing.stderr);
    assert!(message.contains("/nonexistent/objects.js"), "{message}");
    let message = refused_at_start(&["--bundle", bundle.to_str().unwrap(), "--image", image]);
    assert!(message.contains("--image"), "{message}");
}
