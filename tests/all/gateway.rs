//! The HTTP surface: routes, envelopes, bad input refused before any actor
//! starts.

use serde_json::json;

use crate::support::{ServerBuilder, TestServer, fixture};

async fn reference() -> TestServer {
    ServerBuilder::new(fixture("reference/objects.js"))
        .start()
        .await
}

#[tokio::test]
async fn rpc_answers_the_success_envelope() {
    let server = reference().await;
    let reply = server.post("/rpc/COUNTER/gw/increment", "[2]").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, "{\"ok\":true,\"result\":2}\n");
    assert_eq!(reply.headers["content-type"], "application/json");
    let args_object = server
        .post("/rpc/COUNTER/gw/increment", "{\"args\":[3]}")
        .await;
    assert_eq!(args_object.result(), 5);
    let empty = server.post("/rpc/COUNTER/gw/increment", "").await;
    assert_eq!(empty.result(), 6);
    let undefined = server.post("/rpc/COUNTER/gw/put", "[\"k\"]").await;
    assert_eq!(undefined.result(), true);
}

#[tokio::test]
async fn bad_names_are_refused_and_nothing_is_written() {
    let server = reference().await;
    let long = "n".repeat(1025);
    for path in [
        "/rpc/COUNTER/with%2Fslash/increment".to_string(),
        "/rpc/COUNTER/../increment".to_string(),
        "/rpc/COUNTER/..%2F..%2Fetc/increment".to_string(),
        "/rpc/COUNTER/bad%00name/increment".to_string(),
        "/rpc/COUNTER/back%5Cslash/increment".to_string(),
        format!("/rpc/COUNTER/{long}/increment"),
        "/rpc/COUNTER/%FF%FE/increment".to_string(),
    ] {
        let reply = server.post(&path, "[1]").await;
        assert!(
            reply.status == 400 || reply.status == 404,
            "{path}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(reply.json()["ok"], false, "{path}");
    }
    assert_eq!(server.database_count(), 0, "no object was created");
    assert_eq!(server.runtime.actor_starts(), 0);
}

#[tokio::test]
async fn unknown_namespaces_are_rejected_before_any_actor_starts() {
    let server = reference().await;
    for ns in ["NOPE", "counter", "__proto__", "constructor", "toString"] {
        let reply = server.post(&format!("/rpc/{ns}/x/increment"), "[]").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (404, "unknown_namespace"),
            "{ns}"
        );
        let fetch = server.request("GET", &format!("/fetch/{ns}/x/count")).await;
        assert_eq!(fetch.status, 404, "{ns}");
    }
    assert_eq!(server.runtime.actor_starts(), 0);
    assert_eq!(server.database_count(), 0);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_run_no_code() {
    let server = reference().await;
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
        let reply = server
            .post("/rpc/COUNTER/body/increment", body.to_vec())
            .await;
        assert_eq!((reply.status, reply.code().as_str()), (400, "bad_request"));
    }
    assert_eq!(server.runtime.actor_starts(), 0);
}

#[tokio::test]
async fn routes_methods_and_sizes() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .gateway(|g| g.max_request_bytes = 1024)
        .start()
        .await;
    for path in [
        "/rpc/COUNTER/x",
        "/rpc/COUNTER",
        "/rpc",
        "/rpc/COUNTER/x/value/extra",
        "/nothing",
    ] {
        let reply = server.post(path, "[]").await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    for method in ["GET", "PUT", "DELETE"] {
        let reply = server.request(method, "/rpc/COUNTER/x/value").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.headers["allow"], "POST");
        assert_eq!(reply.code(), "method_not_allowed");
    }
    let big = format!("[\"{}\"]", "x".repeat(2048));
    let reply = server.post("/rpc/COUNTER/x/put", big).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (413, "request_too_large")
    );
    assert_eq!(server.runtime.actor_starts(), 0);
}

#[tokio::test]
async fn fetch_requests_and_responses_keep_their_shape() {
    let server = reference().await;
    let response = server
        .client
        .post(format!(
            "{}/fetch/COUNTER/f/echo?q=1&q=2&e=%20x",
            server.base
        ))
        .header("content-type", "application/json")
        .body("{\"x\":[1,2]}")
        .send()
        .await
        .unwrap();
    let reply = crate::support::read(response).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo");
    assert!(
        echo["url"]
            .as_str()
            .unwrap()
            .ends_with("/fetch/COUNTER/f/echo?q=1&q=2&e=%20x")
    );
    assert!(
        echo["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(echo["query"], json!({"q": ["1", "2"], "e": " x"}));
    assert_eq!(echo["contentType"], "application/json");
    assert_eq!(echo["body"], json!({"x": [1, 2]}));
    assert_eq!(echo["rawBody"], "{\"x\":[1,2]}");

    let text = server.request("GET", "/fetch/COUNTER/f/text").await;
    assert_eq!(
        text.headers["content-type"], "text/csv",
        "an explicit content type is kept"
    );
    assert_eq!(text.text, "a,b\n1,2\n");

    let nothing = server.request("GET", "/fetch/COUNTER/f/nothing").await;
    assert_eq!((nothing.status, nothing.text.as_str()), (204, ""));

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/fetch/COUNTER/f/redirect", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "/elsewhere?x=1");

    for code in [201, 418, 599] {
        let reply = server
            .request("GET", &format!("/fetch/COUNTER/f/status?code={code}"))
            .await;
        assert_eq!(reply.status, code);
        assert_eq!(reply.text, format!("status {code}"));
    }
    let no_content = server
        .request("GET", "/fetch/COUNTER/f/status?code=204")
        .await;
    assert_eq!((no_content.status, no_content.text.as_str()), (204, ""));

    let head = server.request("HEAD", "/fetch/COUNTER/f/text").await;
    assert_eq!((head.status, head.text.as_str()), (200, ""));

    let throws = server.request("GET", "/fetch/COUNTER/f/throws").await;
    assert_eq!(
        (throws.status, throws.code().as_str()),
        (500, "execution_error")
    );
    let bad_header = server.request("GET", "/fetch/COUNTER/f/bad-header").await;
    assert_eq!(bad_header.status, 500);
    let own_404 = server.request("GET", "/fetch/COUNTER/f/nope").await;
    assert_eq!(
        (own_404.status, own_404.text.as_str()),
        (404, "no route /nope")
    );

    let missing = server.request("GET", "/fetch/NO_FETCH/f/").await;
    assert_eq!(
        (missing.status, missing.text.as_str()),
        (404, "fetch not implemented")
    );
}

#[tokio::test]
async fn dev_errors_off_hides_server_error_messages_only() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .gateway(|g| g.dev_errors = false)
        .start()
        .await;
    let rejected = server.rpc("COUNTER", "d", "rejectAsync", json!([])).await;
    assert_eq!(rejected.status, 500);
    assert_eq!(rejected.message(), "internal server error");
    let bad = server
        .rpc("COUNTER", "d", "badStorageAfterAwait", json!([]))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.message().contains("empty"), "{}", bad.text);
}

#[tokio::test]
async fn fetch_responses_cannot_forge_framing_and_may_repeat_headers() {
    let server = reference().await;
    let framing = server.request("GET", "/fetch/COUNTER/h/framing").await;
    assert_eq!(
        (framing.status, framing.text.as_str()),
        (200, "hello world")
    );
    assert_eq!(
        framing.headers["content-length"], "11",
        "the gateway frames the body"
    );
    assert!(framing.headers.get("transfer-encoding").is_none());

    let cookies = server.request("GET", "/fetch/COUNTER/h/cookies").await;
    let lines: Vec<_> = cookies.headers.get_all("set-cookie").iter().collect();
    assert_eq!(
        lines,
        ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"]
    );

    let empty = server.request("GET", "/fetch/COUNTER/h/no-content").await;
    assert_eq!((empty.status, empty.text.as_str()), (204, ""));
    assert!(
        empty.headers.get("content-type").is_none(),
        "{:?}",
        empty.headers
    );
}

#[tokio::test]
async fn error_responses_carry_the_fuel_of_the_dispatch() {
    let server = reference().await;
    let thrown = server.rpc("COUNTER", "f", "rejectAsync", json!([])).await;
    assert_eq!(thrown.status, 500);
    assert!(thrown.fuel() > 0);
    let missing = server.rpc("COUNTER", "f", "nope", json!([])).await;
    assert_eq!(missing.status, 404);
    assert!(missing.fuel() > 0, "the lookup ran in the guest");
    let refused = server.rpc("NOPE", "f", "value", json!([])).await;
    assert!(
        refused.headers.get("x-fuel-consumed").is_none(),
        "nothing ran"
    );
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_arrives() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .gateway(|g| g.max_request_bytes = 1024)
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"POST /rpc/COUNTER/x/increment HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 999999999\r\n\r\n[]",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let server = crate::support::BinaryServer::start(&[
        "--storage",
        storage,
        "--header-read-timeout",
        "300ms",
    ]);
    let mut slow = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"POST /rpc/COUNTER/x/increment HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the server closed the connection");
    assert!(
        matches!(closed, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
        "{closed:?}"
    );
    let reply = crate::support::post_json(&server.base, "/rpc/COUNTER/x/increment", "[1]").await;
    assert_eq!(reply.result(), 1, "other clients are served");
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_within_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .gateway(|g| g.body_read_timeout = Some(std::time::Duration::from_millis(800)))
        .start()
        .await;
    let stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /rpc/COUNTER/x/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[",
        )
        .await
        .unwrap();
    // One byte every 200 ms: each gap is short, the whole body is not.
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut answer))
        .await
        .expect("answered before the body was complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "cut off at the deadline, not after the whole trickle"
    );
    trickle.abort();
    assert_eq!(server.database_count(), 0, "no actor started");
}
