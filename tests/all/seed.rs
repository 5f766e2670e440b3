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
fn a_bad_value_names_the_flag() {
    for (flag, value) in [
        ("--cpu-timeout", "soon"),
        ("--idle-timeout", "later"),
        ("--max-memory", "1MiB"),
        ("--max-memory", "100GiB"),
        ("--log-level", "???garbage"),
        ("--max-live-objects", "many"),
    ] {
        let (status, stderr) = run_binary(&[flag, value]);
        assert_eq!(status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (status, stderr) = run_binary(&["--storage", file.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("storage root") && stderr.contains("a-file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn console_and_unhandled_rejections_reach_the_log_with_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let reference = crate::support::fixtures().join("reference/objects.js");
    let cases = crate::support::fixtures().join("cases/07-promises-and-rejections.js");
    let manifest = dir.path().join("m.yaml");
    std::fs::write(&manifest, "objects:\n  Waiter: Waiter\n").unwrap();
    let storage = dir.path().join("s");

    let server = BinaryServer::start(&[
        "--bundle",
        reference.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
    ]);
    assert_eq!(
        post_json(&server.base, "/rpc/COUNTER/talker/log", "[\"hi\"]")
            .await
            .result(),
        true
    );
    assert_eq!(
        post_json(&server.base, "/rpc/COUNTER/talker/logLoneSurrogate", "[]")
            .await
            .result(),
        true
    );
    wait_for_log(&server, "an error line").await;
    wait_for_log(&server, "pair line").await;
    let said = server.log_lines("counter says hi {\"n\":1}");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("INFO")
            && said[0].contains("namespace=\"COUNTER\"")
            && said[0].contains("name=\"talker\""),
        "{}",
        said[0]
    );
    let error = server.log_lines("an error line");
    assert!(error[0].contains("ERROR"), "{}", error[0]);
    let broken = server.log_lines("half \u{fffd} pair line\\nbreak");
    assert_eq!(
        broken.len(),
        1,
        "one line, its break shown: {:?}",
        server.log_lines("half")
    );
    drop(server);

    let server = BinaryServer::start(&[
        "--bundle",
        cases.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
    ]);
    assert_eq!(
        post_json(&server.base, "/rpc/Waiter/w/unhandledBackground", "[]")
            .await
            .result(),
        "ok"
    );
    assert_eq!(
        post_json(&server.base, "/rpc/Waiter/w/handledLater", "[]")
            .await
            .result(),
        "handled:late"
    );
    assert_eq!(
        post_json(&server.base, "/rpc/Waiter/w/readBg", "[]")
            .await
            .result(),
        "kept"
    );
    wait_for_log(&server, "unhandled promise rejection").await;
    let unhandled = server.log_lines("unhandled promise rejection");
    assert_eq!(unhandled.len(), 1, "only the background one: {unhandled:?}");
    assert!(
        unhandled[0].contains("Error: background failure"),
        "{}",
        unhandled[0]
    );
}

async fn wait_for_log(server: &BinaryServer, needle: &str) {
    for _ in 0..100 {
        if !server.log_lines(needle).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no log line with {needle:?}");
}

#[test]
fn a_second_server_on_one_storage_root_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let first = BinaryServer::start(&["--storage", storage]);
    let (status, stderr) = run_binary(&["--storage", storage]);
    assert!(!status.success());
    assert!(stderr.contains("is in use by process"), "{stderr}");
    assert!(stderr.contains(&first.child.id().to_string()), "{stderr}");
    assert!(stderr.contains(storage), "{stderr}");

    // A killed server leaves no lock behind.
    first.kill();
    let again = BinaryServer::start(&["--storage", storage]);
    drop(again);
}
