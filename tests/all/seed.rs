//! The seed README's commands, run against the real binary.

use crate::support::{BinaryServer, post_json, run_binary};

#[tokio::test]
async fn the_readme_quick_start_works_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("var/durable-objects");
    let storage = storage.to_str().unwrap();

    let server = BinaryServer::start(&["--storage", storage]);
    let curl = server.next_line().expect("a sample curl line");
    assert!(curl.contains("curl -X POST"), "{curl}");
    assert!(curl.contains("/rpc/COUNTER/global/increment"), "{curl}");

    let first = post_json(&server.base, "/rpc/COUNTER/global/increment", "[1]").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text, "{\"ok\":true,\"result\":1}\n");
    let second = post_json(&server.base, "/rpc/COUNTER/global/increment", "[1]").await;
    assert_eq!(second.text, "{\"ok\":true,\"result\":2}\n");

    let count = reqwest::get(format!("{}/fetch/COUNTER/global/count", server.base))
        .await
        .unwrap();
    assert_eq!(count.status(), 200);
    assert_eq!(count.text().await.unwrap(), "2");

    server.kill();
    let server = BinaryServer::start(&["--storage", storage]);
    let third = post_json(&server.base, "/rpc/COUNTER/global/increment", "[1]").await;
    assert_eq!(
        third.text, "{\"ok\":true,\"result\":3}\n",
        "the count continues after a restart"
    );
}

#[test]
fn a_manifest_without_a_bundle_fails_at_start() {
    let (status, stderr) = run_binary(&["--manifest", "objects.yaml"]);
    assert!(!status.success());
    assert!(stderr.contains("--manifest requires --bundle"), "{stderr}");
}

#[test]
fn a_broken_bundle_fails_at_start_naming_the_file_and_line() {
    let bundle = crate::support::fixtures().join("bundles/syntax-error.js");
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_binary(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--storage",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("syntax-error.js"), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    assert!(stderr.contains(":4"), "the line of the error: {stderr}");
}

#[test]
fn a_bad_duration_names_the_flag() {
    let (status, stderr) = run_binary(&["--cpu-timeout", "soon"]);
    assert!(!status.success());
    assert!(stderr.contains("--cpu-timeout"), "{stderr}");
}
