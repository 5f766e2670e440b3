//! Property tests of the gateway over real HTTP: whatever the method, path,
//! body and content type, the answer is a well-formed response, never a
//! panic or a 5xx, and an error is the JSON envelope.

use std::io::{Read, Write};

use go_go_objects::bundle::Bundle;
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::Value;

use crate::support::ServerBuilder;

/// One path segment, as a client might send it (already percent-encoded
/// where it must be, so the request line stays valid).
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("COUNTER".to_string()),
        Just("global".to_string()),
        Just("increment".to_string()),
        Just("value".to_string()),
        Just("count".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("%2F".to_string()),
        Just("%2e%2e".to_string()),
        Just("%00".to_string()),
        Just("%FF%FE".to_string()),
        Just("__proto__".to_string()),
        Just("constructor".to_string()),
        Just(String::new()),
        "[A-Za-z0-9_.~-]{1,12}",
        "(%[0-9A-F]{2}){1,6}",
        "[a-z]{1025,1100}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let query = "(\\?[a-z=&%0-9]{0,12})?";
    let route = prop_oneof![Just("rpc"), Just("fetch"), Just("other"), Just("")];
    let anything = (
        route,
        prop::collection::vec(segment(), 0..6),
        any::<bool>(),
        query,
    )
        .prop_map(|(route, segments, slash, query)| {
            let mut path = format!("/{route}");
            for s in segments {
                path.push('/');
                path.push_str(&s);
            }
            if slash {
                path.push('/');
            }
            path + &query
        });
    let namespace = prop_oneof![3 => Just("COUNTER".to_string()), 1 => segment()];
    let name = prop_oneof![2 => "[a-z0-9_-]{1,10}", 1 => segment()];
    let method = prop_oneof![
        2 => Just("increment".to_string()),
        1 => Just("value".to_string()),
        1 => segment()
    ];
    let rpc = (namespace.clone(), name, method)
        .prop_map(|(ns, name, method)| format!("/rpc/{ns}/{name}/{method}"));
    let fetch = (
        namespace,
        segment(),
        prop::collection::vec(segment(), 0..3),
        query,
    )
        .prop_map(|(ns, name, rest, query)| {
            format!("/fetch/{ns}/{name}/{}{query}", rest.join("/"))
        });
    prop_oneof![2 => rpc, 2 => fetch, 1 => anything]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"[]".to_vec()),
        Just(b"[1]".to_vec()),
        Just(b"{\"args\":[2]}".to_vec()),
        Just(b"[\"\\ud800\"]".to_vec()),
        "\\PC{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<i64>().prop_map(|n| format!("[{n}]").into_bytes()),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        1 => Just("GET"),
        4 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("DELETE"),
        1 => Just("PATCH"),
        1 => Just("OPTIONS"),
        1 => Just("HEAD"),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("text/plain")),
        Just(Some("application/json; charset=utf-8")),
        Just(Some("multipart/form-data")),
    ]
}

/// A response read off the wire.
struct Raw {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// Sends one request as raw bytes (so the path is exactly what was
/// generated) and reads the response to the end of the connection.
fn send(addr: &str, method: &str, path: &str, body: &[u8], content_type: Option<&str>) -> Raw {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Raw {
        status,
        headers: head.to_ascii_lowercase(),
        body: answer[split + 4..].to_vec(),
    }
}

#[test]
fn every_request_gets_a_well_formed_answer_and_none_a_5xx() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let server = tokio.block_on(ServerBuilder::new(Bundle::builtin_counter()).start());
    let addr = server.base.trim_start_matches("http://").to_string();

    let config = Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let inputs = (method(), path(), body(), content_type());
    let result = runner.run(&inputs, |(method, path, body, content_type)| {
        let raw = send(&addr, method, &path, &body, content_type);
        prop_assert!(raw.status < 500, "{method} {path}: {}", raw.status);
        if raw.status < 400 || method == "HEAD" {
            return Ok(());
        }
        let is_json = raw.headers.contains("content-type: application/json");
        if is_json {
            let envelope: Value = serde_json::from_slice(&raw.body)
                .map_err(|e| TestCaseError::fail(format!("{method} {path}: bad JSON: {e}")))?;
            prop_assert_eq!(&envelope["ok"], &Value::Bool(false));
            prop_assert!(envelope["error"]["code"].is_string());
            prop_assert!(envelope["error"]["message"].is_string());
        } else {
            // Not the envelope: the counter's own `fetch` 404, or hyper's
            // bare 400 for a request it cannot parse.
            let own_fetch = path.starts_with("/fetch/") && raw.body == b"not found";
            let unparsable = raw.status == 400 && raw.body.is_empty();
            prop_assert!(
                own_fetch || unparsable,
                "{method} {path}: {} {:?}",
                raw.status,
                raw.body
            );
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The server is still there.
    let after = send(&addr, "POST", "/rpc/COUNTER/after/value", b"[]", None);
    assert_eq!(after.status, 200);
}
