//! Bundle loading and namespace resolution, through the real guest.

use go_go_objects::{
    bundle::{Bundle, BundleError},
    config::RuntimeConfig,
    runtime::{Runtime, StartError},
};
use serde_json::json;

use crate::support::{ServerBuilder, fixture, manifest};

fn start_error(bundle: Bundle, manifest_yaml: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        storage_root: dir.path().to_path_buf(),
        ..RuntimeConfig::default()
    };
    let manifest = manifest_yaml.map(manifest);
    match Runtime::new(bundle, manifest.as_ref(), config) {
        Ok(_) => panic!("the bundle was accepted"),
        Err(StartError::Bundle(e)) => e.to_string(),
        Err(e) => panic!("not a bundle error: {e}"),
    }
}

#[test]
fn broken_bundles_fail_with_the_file_and_the_reason() {
    let err = start_error(fixture("bundles/syntax-error.js"), None);
    assert!(
        err.contains("syntax-error.js") && err.contains("SyntaxError"),
        "{err}"
    );

    let err = start_error(fixture("bundles/no-objects.js"), None);
    assert!(
        err.contains("no-objects.js") && err.contains("exports.objects"),
        "{err}"
    );

    let err = start_error(fixture("bundles/not-a-class.js"), None);
    assert!(err.contains("helper is not a class"), "{err}");

    let err = start_error(fixture("bundles/collision.js"), None);
    assert!(err.contains("both derive the namespace CHAT_ROOM"), "{err}");

    let err = start_error(fixture("bundles/throws-at-load.js"), None);
    assert!(err.contains("configuration missing"), "{err}");

    let err = start_error(
        fixture("reference/objects.js"),
        Some("objects:\n  X: Missing\n"),
    );
    assert!(
        err.contains("Missing") && err.contains("not among"),
        "{err}"
    );
}

#[test]
fn a_bundle_error_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        storage_root: dir.path().to_path_buf(),
        ..RuntimeConfig::default()
    };
    let result = Runtime::new(fixture("bundles/syntax-error.js"), None, config);
    assert!(matches!(
        result,
        Err(StartError::Bundle(BundleError::Load { .. }))
    ));
}

#[tokio::test]
async fn namespaces_are_derived_from_exports() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .start()
        .await;
    let namespaces: Vec<_> = server.runtime.classes().namespaces().collect();
    assert_eq!(namespaces, ["CHAT_ROOM", "COUNTER", "NO_FETCH", "TALLY"]);
    assert_eq!(
        server.call("CHAT_ROOM", "lobby", "ping", json!([])).await,
        "pong"
    );
    assert_eq!(server.call("COUNTER", "a", "increment", json!([])).await, 1);
}

#[tokio::test]
async fn an_explicit_manifest_serves_only_its_namespaces() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .manifest("objects:\n  ROOMS: ChatRoom\n  TALLY: Counter\n")
        .start()
        .await;
    assert_eq!(
        server.call("ROOMS", "lobby", "ping", json!([])).await,
        "pong"
    );
    assert_eq!(server.call("TALLY", "t", "increment", json!([4])).await, 4);
    let reply = server.rpc("COUNTER", "t", "increment", json!([])).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (404, "unknown_namespace")
    );
}

#[tokio::test]
async fn module_exports_works_and_require_is_refused() {
    let server = ServerBuilder::new(fixture("bundles/module-exports.js"))
        .start()
        .await;
    assert_eq!(
        server.call("GREETER", "g", "hello", json!(["you"])).await,
        "hello you"
    );
    let message = server.call("GREETER", "g", "requireError", json!([])).await;
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("require is not available"),
        "{message}"
    );
}
