//! ES module bundles with Cloudflare's Durable Objects API: the failure
//! cases in `shared/cases/` that concern this flavour (their bundles as ES
//! modules in `fixtures/cloudflare/cases/`, or made from the CommonJS
//! fixtures in `fixtures/cases/` for cases both flavours run), and the API
//! pieces they do not reach (module errors, timers, transactions, ids, env,
//! web classes, SQL, stubs, `--wrangler`, what review found).

use std::time::Duration;

use go_go_objects::bundle::Bundle;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{ServerBuilder, TestServer, fixture, fixture_as_module, fixtures};

/// A server for one case bundle, its classes served under their own names.
async fn case(file: &str, classes: &[&str], dir: &std::path::Path) -> TestServer {
    // Cases that apply to both flavours keep one bundle, in CommonJS.
    let bundle = if fixtures().join("cases").join(file).exists() {
        fixture_as_module(&format!("cases/{file}"))
    } else {
        fixture(&format!("cloudflare/cases/{file}"))
    };
    let manifest = classes
        .iter()
        .fold(String::from("objects:\n"), |out, class| {
            out + &format!("  {class}: {class}\n")
        });
    ServerBuilder::new(bundle)
        .manifest(&manifest)
        .storage(dir)
        .limits(|l| {
            // Some cases hash megabytes in JavaScript.
            l.cpu_fuel = 100_000_000_000;
            l.cpu_timeout = Some(Duration::from_secs(60));
        })
        .start()
        .await
}

fn expected(file: &str) -> Value {
    let path = fixtures().join("cloudflare/cases").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn source(text: &str) -> Bundle {
    Bundle::from_source("objects.js", text)
}

// ---- 01: value kinds -------------------------------------------------------

#[tokio::test]
async fn case_01_every_value_kind_survives_storage_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected("01-value-kinds.expected.json");
    let server = case("01-value-kinds.js", &["Vault"], dir.path()).await;
    let call = |name: &'static str, method: &'static str| {
        let server = &server;
        async move { server.call("Vault", name, method, json!([])).await }
    };
    assert_eq!(
        call("v1", "writeAll").await,
        json!({"count": 41, "errors": {}})
    );
    let read = call("v1", "readAll").await;
    for (key, value) in want["readAll"].as_object().unwrap() {
        assert_eq!(&read[key], value, "{key}");
    }
    assert_eq!(read, want["readAll"]);
    assert_eq!(call("v1", "rejects").await, want["rejects"]);
    assert_eq!(
        call("v1", "putEntries").await,
        json!({"listed": ["e:a", "e:c"], "b": {"t": "undefined"}})
    );
    assert_eq!(
        call("v1", "missing").await,
        json!({"one": {"t": "undefined"}, "manyKind": "[object Map]", "manyKeys": ["n:zero"]})
    );

    // Another object of the namespace sees none of it.
    let other = call("v2", "readAll").await;
    let other = other.as_object().unwrap();
    assert_eq!(other.len(), 42);
    for (key, value) in other {
        match key.as_str() {
            "graph:cycle" => assert_eq!(value, &json!({"isObject": false, "selfIsSame": false})),
            "graph:shared" => assert_eq!(value, &json!({"isArray": false, "sameRef": false})),
            "class:point:checks" => {
                assert_eq!(value, &json!({"instanceOfPoint": false, "hasNorm": false}));
            }
            _ => assert_eq!(value, &json!({"t": "undefined"}), "{key}"),
        }
    }

    server.runtime.shutdown(Duration::from_secs(5)).await;
    drop(server);
    let server = case("01-value-kinds.js", &["Vault"], dir.path()).await;
    assert_eq!(
        server.call("Vault", "v1", "readAll", json!([])).await,
        want["readAll"],
        "decoded from SQLite after a restart"
    );
}

// ---- 02: list order --------------------------------------------------------

#[tokio::test]
async fn case_02_list_and_multi_get_follow_utf8_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let all = json!({"kind":"[object Map]","size":20,"entries":[
        ["0021",4],["002c,0020",5],["0031,0030",15],["0032",17],["0039",16],
        ["0042",18],["005a",10],["0061",1],["0061,0000",3],["0061,0020,0062",19],
        ["0061,0062",2],["0062",0],["007e",6],["007f",7],["0080",8],["00e9",9],
        ["ff3a",11],["ffff",13],["d835,de55",12],["d83d,de00",14]]});
    let server = case("02-list-order-utf8.js", &["Sorter"], dir.path()).await;
    assert_eq!(server.call("Sorter", "s", "seed", json!([])).await, 20);
    assert_eq!(server.call("Sorter", "s", "listAll", json!([])).await, all);
    assert_eq!(
        server
            .call(
                "Sorter",
                "s",
                "listAll",
                json!([{"reverse": true, "limit": 5}])
            )
            .await,
        json!({"kind":"[object Map]","size":5,"entries":[["d83d,de00",14],["d835,de55",12],
            ["ffff",13],["ff3a",11],["00e9",9]]})
    );
    assert_eq!(
        server.call("Sorter", "s", "multiGet", json!([])).await,
        json!({"kind":"[object Map]","entries":[["0031,0030",15],["0032",17],["0061",1],
            ["0062",0],["ffff",13],["d83d,de00",14]]})
    );
    server.runtime.shutdown(Duration::from_secs(5)).await;
    drop(server);
    let server = case("02-list-order-utf8.js", &["Sorter"], dir.path()).await;
    assert_eq!(server.call("Sorter", "s", "listAll", json!([])).await, all);
}

// ---- 07: promises ------------------------------------------------------------

#[tokio::test]
async fn case_07_a_promise_that_can_never_settle_is_a_prompt_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = case("07-promises-and-rejections.js", &["Waiter"], dir.path()).await;
    let call = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.rpc("Waiter", "w", method, args).await }
    };
    let started = std::time::Instant::now();
    let never = call("neverSettles", json!([])).await;
    assert_eq!(never.status, 500, "{}", never.text);
    assert!(
        never.message().contains("will never generate a response"),
        "{}",
        never.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "well before the deadline"
    );
    assert_eq!(call("ping", json!([])).await.result(), "pong");
    assert_eq!(call("sharedNeverSettles", json!([])).await.status, 500);
    assert_eq!(call("ping", json!([])).await.result(), "pong");
    crate::cases::case_07_settling_steps(&server).await;
}

// ---- 15: odd keys and big values ---------------------------------------------

#[tokio::test]
async fn case_15_odd_keys_and_big_values_with_cloudflare_storage() {
    crate::cases::case_15_steps(fixture_as_module("cases/15-keys-nul-size.js")).await;
}

// ---- 18: fetch fidelity ----------------------------------------------------

/// One raw HTTP/1.1 exchange, for what reqwest hides (the reason phrase,
/// header lines as sent); returns the status line, the header lines and the
/// body.
async fn raw_http(base: &str, request: &str) -> (String, Vec<String>, Vec<u8>) {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n").map(str::to_string);
    let status = lines.next().unwrap();
    (status, lines.collect(), bytes[split + 4..].to_vec())
}

fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

#[tokio::test]
async fn case_18_requests_and_responses_pass_through_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = case("18-fetch-fidelity.js", &["Web"], dir.path()).await;
    let f = format!("{}/fetch/Web/w", server.base);
    let client = &server.client;

    let bytes: Vec<u8> = (0..1024).map(|i| (i % 256) as u8).collect();
    let echo = client
        .put(format!("{f}/echo?q=1&q=2&e=%20x"))
        .header("X-MiXeD-CaSe", "Value")
        .header("X-Repeated", "1")
        .header("X-Repeated", "2")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.headers()["content-type"], "application/json");
    assert_eq!(
        echo.json::<Value>().await.unwrap(),
        json!({"method":"PUT","pathname":"/echo","search":"?q=1&q=2&e=%20x","q":["1","2"],
            "mixed":"Value","repeated":"1, 2","headerNamesLowercase":true,"bodyLength":1024,
            "bodyHash":"840389c5","bodyHead":"0001020304050607"})
    );
    let invalid_utf8 = client
        .post(format!("{f}/echo"))
        .body(vec![0xff, 0xfe, 0x00, 0x80])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(invalid_utf8["bodyLength"], 4);
    assert_eq!(invalid_utf8["bodyHash"], "57e12310");
    assert_eq!(invalid_utf8["bodyHead"], "fffe0080");
    let empty = server.request("GET", "/fetch/Web/w/echo").await.json();
    assert_eq!(
        (&empty["method"], &empty["bodyLength"], &empty["bodyHash"]),
        (&json!("GET"), &json!(0), &json!("811c9dc5"))
    );

    let binary = client.get(format!("{f}/bytes")).send().await.unwrap();
    assert_eq!(binary.headers()["content-type"], "application/octet-stream");
    assert_eq!(binary.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let big = client.get(format!("{f}/big")).send().await.unwrap();
    let expected_hash = big.headers()["x-expected-hash"]
        .to_str()
        .unwrap()
        .to_string();
    let big = big.bytes().await.unwrap();
    assert_eq!(big.len(), 5 * 1024 * 1024);
    assert_eq!(expected_hash, "9a0c9dc5");
    assert_eq!(fnv1a(&big), expected_hash);
    assert!(
        big.iter()
            .enumerate()
            .all(|(i, b)| *b == ((i * 31) & 0xff) as u8)
    );

    let text = client.get(format!("{f}/text-utf8")).send().await.unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        text.bytes().await.unwrap().as_ref(),
        "h\u{e9}llo \u{1F600} \u{0} end".as_bytes()
    );

    let host = server.base.trim_start_matches("http://").to_string();
    let get = |path: &str| {
        format!("GET /fetch/Web/w{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let (_, headers, _) = raw_http(&server.base, &get("/cookies")).await;
    let lower: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    assert!(
        lower.contains(&"set-cookie: a=1; path=/; httponly".to_string()),
        "{headers:?}"
    );
    assert!(
        lower.contains(&"set-cookie: b=2; expires=wed, 21 oct 2037 07:28:00 gmt".to_string()),
        "{headers:?}"
    );
    assert!(
        lower.contains(&"x-multi: one, two".to_string()),
        "{headers:?}"
    );
    assert!(
        lower.contains(&"x-custom-case: kept".to_string()),
        "{headers:?}"
    );

    let (status, _, body) = raw_http(&server.base, &get("/status/201")).await;
    assert_eq!(status, "HTTP/1.1 201 Custom Text");
    assert_eq!(body, b"status 201");
    for code in [418, 599] {
        let reply = server
            .request("GET", &format!("/fetch/Web/w/status/{code}"))
            .await;
        assert_eq!(reply.status, code);
        assert_eq!(reply.text, format!("status {code}"));
    }
    for code in [204, 304] {
        let (status, headers, body) =
            raw_http(&server.base, &get(&format!("/status/{code}"))).await;
        assert!(status.starts_with(&format!("HTTP/1.1 {code}")), "{status}");
        assert!(body.is_empty());
        assert!(
            !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("content-length: ")
                    && !h.ends_with(": 0")),
            "{headers:?}"
        );
    }
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{f}/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "/elsewhere?x=1");

    let (status, headers, body) = raw_http(&server.base, &get("/empty")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-length: 0"))
    );
    assert!(body.is_empty());

    let head = client.head(format!("{f}/bytes")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    // The connection stays usable after HEAD.
    assert_eq!(server.request("GET", "/fetch/Web/w/echo").await.status, 200);

    assert_eq!(
        server.request("GET", "/fetch/Web/w/throws").await.status,
        500
    );
    let plain = server.request("GET", "/fetch/Web/w/not-a-response").await;
    assert_eq!(plain.status, 500);
    assert!(
        plain.text.contains("did not resolve to 'Response'"),
        "{}",
        plain.text
    );
    let nope = server.request("GET", "/fetch/Web/w/nope").await;
    assert_eq!((nope.status, nope.text.as_str()), (404, "no route /nope"));
}

// ---- module bundles ----------------------------------------------------------

#[tokio::test]
async fn module_classes_get_ctx_env_and_derived_namespaces() {
    let server = ServerBuilder::new(fixture("cloudflare/counter.js"))
        .start()
        .await;
    assert_eq!(
        server.call("COUNTER", "a", "increment", json!([2])).await,
        2
    );
    assert_eq!(server.call("COUNTER", "a", "increment", json!([])).await, 3);
    let who = server.call("COUNTER", "a", "whoami", json!([])).await;
    let id = who["id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(who["name"], "a");
    assert_eq!(who["hasEnv"], json!(["COUNTER"]));
    assert_eq!(
        server.call("COUNTER", "a", "later", json!([30])).await,
        true
    );

    let fetched = server
        .post("/fetch/COUNTER/a/some/path?x=1", "hello")
        .await
        .json();
    assert_eq!(
        fetched,
        json!({"path": "/some/path", "search": "?x=1", "method": "POST", "body": "hello",
            "count": 3})
    );
    // Neither the default export nor the base class is a namespace; fetch
    // and the constructor are not RPC methods.
    assert_eq!(
        server.runtime.classes().namespaces().collect::<Vec<_>>(),
        ["COUNTER"]
    );
    let reply = server.rpc("COUNTER", "a", "fetch", json!([])).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (404, "method_not_found")
    );
}

#[test]
fn broken_module_bundles_fail_with_the_file_and_the_reason() {
    let cases = [
        (
            "import { DurableObject } from 'cloudflare:workers';\nexport class A {\n  m() { return 1 +; }\n}\n",
            "SyntaxError",
        ),
        (
            "import { leftPad } from 'left-pad';\nexport class A {}\n",
            "can import only cloudflare:workers",
        ),
        (
            "import { Nope } from 'cloudflare:workers';\nexport class A {}\n",
            "Nope",
        ),
        (
            "export const x = 1;\nexport default class Y {}\n",
            "exports no classes",
        ),
        (
            "export class A {}\nthrow new Error('top-level boom');\n",
            "top-level boom",
        ),
        (
            "export class A {}\nawait new Promise(() => {});\n",
            "top-level await never settles",
        ),
        // Read as a module (a line starts with `export const`), but CommonJS.
        (
            "export const x = 1;\nexports.objects = {};\n",
            "name it .cjs",
        ),
    ];
    for (text, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = go_go_objects::config::RuntimeConfig {
            storage_root: dir.path().to_path_buf(),
            ..Default::default()
        };
        match go_go_objects::runtime::Runtime::new(source(text), None, config) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains("objects.js"), "{message}");
                assert!(message.contains(needle), "{needle}: {message}");
            }
        }
    }
}

#[tokio::test]
async fn top_level_await_and_module_format_detection() {
    let server = ServerBuilder::new(source(
        "const v = await Promise.resolve(5);\n\
         export class Holder { get() { return v; } }\n",
    ))
    .start()
    .await;
    assert_eq!(server.call("HOLDER", "h", "get", json!([])).await, 5);

    // A .cjs file is CommonJS whatever it contains.
    let commonjs = Bundle::from_source(
        "objects.cjs",
        "exports.objects = { Thing: class { ping() { return typeof this; } } };\n\
         const text = `\nexport class NotAModule {}`;\n",
    );
    assert_eq!(
        commonjs.format(),
        go_go_objects::bundle::BundleFormat::CommonJs
    );
    assert_eq!(
        source("exports.objects = {};").format(),
        go_go_objects::bundle::BundleFormat::CommonJs
    );
    assert_eq!(
        source("  export { A };").format(),
        go_go_objects::bundle::BundleFormat::Module
    );
}

// ---- storage API -----------------------------------------------------------

const STORAGE_BUNDLE: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Store extends DurableObject {
  async batch() {
    await this.ctx.storage.put({ a: 1, b: 2, c: 3, " a": 4, "": 5 });
    const many = await this.ctx.storage.get(["c", "a", "zz", ""]);
    const deleted = await this.ctx.storage.delete(["a", "zz", "b"]);
    const one = await this.ctx.storage.delete("c");
    const rest = [...(await this.ctx.storage.list())];
    return { many: [...many], deleted, one, rest };
  }
  async listOptions() {
    await this.ctx.storage.deleteAll();
    for (const k of ["k1", "k2", "k3", "k4", "x1"]) await this.ctx.storage.put(k, k);
    const keys = async (o) => [...(await this.ctx.storage.list(o)).keys()];
    const errors = [];
    for (const o of [{ start: "k1", startAfter: "k1" }, { limit: 0 }]) {
      try { await this.ctx.storage.list(o); } catch (e) { errors.push(e.name + ": " + e.message); }
    }
    return {
      start: await keys({ start: "k2" }),
      startAfter: await keys({ startAfter: "k2" }),
      end: await keys({ end: "k3" }),
      prefix: await keys({ prefix: "k", reverse: true, limit: 2 }),
      errors,
    };
  }
  async transactions() {
    await this.ctx.storage.deleteAll();
    await this.ctx.storage.put("n", 1);
    const sync = this.ctx.storage.transactionSync(() => {
      this.ctx.storage.put("n", 2);
      return "sync-result";
    });
    let threw = null;
    try {
      this.ctx.storage.transactionSync(() => { this.ctx.storage.put("n", 99); throw new Error("undo"); });
    } catch (e) { threw = e.message; }
    const afterSync = await this.ctx.storage.get("n");
    await this.ctx.storage.transaction(async (txn) => { await txn.put("n", 50); txn.rollback(); });
    const afterRollback = await this.ctx.storage.get("n");
    let asyncError = null;
    try {
      await this.ctx.storage.transaction(async (txn) => { await txn.put("n", 60); throw new RangeError("nope"); });
    } catch (e) { asyncError = e.name; }
    const value = await this.ctx.storage.transaction(async (txn) => { await txn.put("n", 70); return "kept"; });
    return { sync, threw, afterSync, afterRollback, asyncError, value, final: await this.ctx.storage.get("n") };
  }
  async abandoned() {
    // A transaction whose closure never finishes is rolled back with the
    // dispatch; the write inside it is gone.
    this.ctx.storage.transaction(async (txn) => { await txn.put("ghost", 1); await new Promise(() => {}); });
    return "left";
  }
  async ghost() { return (await this.ctx.storage.get("ghost")) ?? null; }
  async alarms() {
    await this.ctx.storage.setAlarm(new Date(Date.now() + 3_600_000));
    const set = typeof (await this.ctx.storage.getAlarm());
    await this.ctx.storage.deleteAlarm();
    return { set, after: await this.ctx.storage.getAlarm(), sync: await this.ctx.storage.sync() ?? null };
  }
  async badPut() {
    const out = [];
    for (const [k, v] of [["f", () => 1], ["u", undefined], ["k".repeat(3000), 1]]) {
      try { await this.ctx.storage.put(k, v); out.push("stored"); } catch (e) { out.push(e.name); }
    }
    return out;
  }
}
"#;

#[tokio::test]
async fn storage_methods_follow_cloudflare() {
    let server = ServerBuilder::new(source(STORAGE_BUNDLE)).start().await;
    let call = |method: &'static str| {
        let server = &server;
        async move { server.call("STORE", "s", method, json!([])).await }
    };
    assert_eq!(
        call("batch").await,
        json!({"many": [["", 5], ["a", 1], ["c", 3]], "deleted": 2, "one": true,
            "rest": [["", 5], [" a", 4]]}),
        "keys are exact: the empty key and a leading space are keys of their own"
    );
    assert_eq!(
        call("listOptions").await,
        json!({
            "start": ["k2", "k3", "k4", "x1"],
            "startAfter": ["k3", "k4", "x1"],
            "end": ["k1", "k2"],
            "prefix": ["k4", "k3"],
            "errors": [
                "TypeError: list() cannot be called with both start and startAfter values.",
                "TypeError: List limit must be positive."
            ],
        })
    );
    assert_eq!(
        call("transactions").await,
        json!({"sync": "sync-result", "threw": "undo", "afterSync": 2, "afterRollback": 2,
            "asyncError": "RangeError", "value": "kept", "final": 70})
    );
    assert_eq!(call("abandoned").await, "left");
    assert_eq!(call("ghost").await, Value::Null);
    assert_eq!(
        call("alarms").await,
        json!({"set": "number", "after": null, "sync": null})
    );
    assert_eq!(
        call("badPut").await,
        json!(["DataCloneError", "TypeError", "RangeError"])
    );
}

// ---- web platform ------------------------------------------------------------

const WEB_BUNDLE: &str = r#"
export class Web {
  urls() {
    const u = new URL("HTTPS://User:Pw@Example.COM:443/a/./b/../c d?x=1&y=%20#frag");
    const rel = new URL("../up?q", "http://h.test/one/two/three");
    const params = new URLSearchParams("a=1&b=x+y&a=%F0%9F%98%80");
    params.append("c", "é &");
    u.searchParams.set("x", "2");
    let invalid = null;
    try { new URL("not a url"); } catch (e) { invalid = e.name; }
    return {
      href: u.href, origin: u.origin, host: u.host, pathname: u.pathname, search: u.search,
      hash: u.hash, username: u.username, rel: rel.href, all: params.getAll("a"),
      b: params.get("b"), params: params.toString(), invalid,
      canParse: [URL.canParse("http://x"), URL.canParse("nope")],
    };
  }
  encodings() {
    const bytes = new TextEncoder().encode("h\u00e9\u{1F600}");
    return {
      btoa: btoa("hello\u00ff"), atob: atob(" aGVs bG8= "),
      bytes: Array.from(bytes), text: new TextDecoder().decode(bytes),
      clone: structuredClone(new Map([[1, new Date(0)]])).get(1).toISOString(),
      uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
    };
  }
  async bodies() {
    const r = new Request("http://x.test/p", { method: "post", body: "abc", headers: { "X-A": "1" } });
    const copy = r.clone();
    const text = await r.text();
    let reused = null;
    try { await r.text(); } catch (e) { reused = e.name; }
    const res = Response.json({ a: 1 }, { status: 201 });
    const h = new Headers([["B", "2"], ["a", "1"]]);
    h.append("a", "3");
    return {
      method: r.method, text, reused, copied: await copy.arrayBuffer().then((b) => b.byteLength),
      status: res.status, ok: res.ok, type: res.headers.get("content-type"), json: await res.json(),
      headers: [...h], bad: (() => { try { new Response("x", { status: 99 }); } catch (e) { return e.name; } })(),
    };
  }
  async timers() {
    const order = [];
    const cancelled = setTimeout(() => order.push("cancelled"), 5);
    clearTimeout(cancelled);
    await new Promise((resolve) => {
      setTimeout(() => order.push("t20"), 20);
      setTimeout(() => order.push("t10"), 10);
      queueMicrotask(() => order.push("micro"));
      let n = 0;
      const id = setInterval(() => { order.push("i" + ++n); if (n === 2) { clearInterval(id); setTimeout(resolve, 15); } }, 4);
    });
    return order;
  }
  async sleepsForever() {
    await new Promise((resolve) => setTimeout(resolve, 3_600_000));
    return "woke";
  }
}
"#;

#[tokio::test]
async fn web_platform_classes_behave_like_the_standards() {
    let server = ServerBuilder::new(source(WEB_BUNDLE))
        .limits(|l| l.cpu_timeout = Some(Duration::from_millis(600)))
        .start()
        .await;
    let call = |method: &'static str| {
        let server = &server;
        async move { server.call("WEB", "w", method, json!([])).await }
    };
    assert_eq!(
        call("urls").await,
        json!({
            "href": "https://User:Pw@example.com/a/c%20d?x=2&y=+#frag",
            "origin": "https://example.com", "host": "example.com", "pathname": "/a/c%20d",
            "search": "?x=2&y=+", "hash": "#frag", "username": "User",
            "rel": "http://h.test/one/up?q", "all": ["1", "\u{1F600}"], "b": "x y",
            "params": "a=1&b=x+y&a=%F0%9F%98%80&c=%C3%A9+%26", "invalid": "TypeError",
            "canParse": [true, false],
        })
    );
    assert_eq!(
        call("encodings").await,
        json!({"btoa": "aGVsbG//", "atob": "hello", "bytes": [104, 195, 169, 240, 159, 152, 128],
            "text": "h\u{e9}\u{1F600}", "clone": "1970-01-01T00:00:00.000Z", "uuid": true})
    );
    assert_eq!(
        call("bodies").await,
        json!({"method": "POST", "text": "abc", "reused": "TypeError", "copied": 3,
            "status": 201, "ok": true, "type": "application/json", "json": {"a": 1},
            "headers": [["a", "1, 3"], ["b", "2"]], "bad": "RangeError"})
    );
    // Timer order on a clock that only moves when timers wait (on the real
    // clock a busy machine may run an interval late, as browsers do).
    let clock = go_go_objects::clock::ManualClock::new(1_700_000_000_000);
    let timed = ServerBuilder::new(source(WEB_BUNDLE))
        .clock(&clock)
        .start()
        .await;
    assert_eq!(
        timed.call("WEB", "w", "timers", json!([])).await,
        json!(["micro", "i1", "i2", "t10", "t20"])
    );
    // A timer past the deadline ends the dispatch at the deadline.
    let started = std::time::Instant::now();
    let reply = server.rpc("WEB", "w", "sleepsForever", json!([])).await;
    assert_eq!((reply.status, reply.code().as_str()), (504, "timeout"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(call("urls").await["host"], "example.com");
}

// ---- 14: transactions across KV and SQL --------------------------------------

#[tokio::test]
async fn case_14_transactions_cover_kv_and_sql_together() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        std::sync::Arc::new(case("14-transactions-rollback.js", &["Bank"], dir.path()).await);
    let call = |method: &'static str, args: Value| {
        let server = server.clone();
        async move { server.call("Bank", "k", method, args).await }
    };
    let after = |a: i64, b: i64, moves: i64| json!({"a": a, "b": b, "moves": moves});
    assert_eq!(
        call("supported", json!([])).await,
        json!({"transactionSync": true, "transaction": true})
    );
    assert_eq!(call("setup", json!([])).await, after(100, 0, 0));
    assert_eq!(
        call("transferSync", json!([30, false])).await,
        json!({"result": "committed", "error": null, "after": after(70, 30, 1)})
    );
    assert_eq!(
        call("transferSync", json!([50, true])).await,
        json!({"result": null, "error": "halfway", "after": after(70, 30, 1)})
    );
    assert_eq!(
        call("sqlOnlyFailure", json!([])).await,
        json!({"threw": true, "after": after(70, 30, 1)})
    );
    assert_eq!(
        call("nestedSync", json!([])).await,
        json!({"trace": ["inner-rolled-back", "outer-continues"], "amounts": [30, 1]})
    );
    assert_eq!(
        call("asyncTxn", json!(["rollback"])).await,
        json!({"error": null, "after": after(70, 30, 2)})
    );
    assert_eq!(
        call("asyncTxn", json!(["throw"])).await,
        json!({"error": "async-fail", "after": after(70, 30, 2)})
    );
    assert_eq!(
        call("asyncTxn", json!(["commit"])).await,
        json!({"error": null, "after": after(1, 99, 2)})
    );

    server.runtime.shutdown(Duration::from_secs(5)).await;
    let server = std::sync::Arc::into_inner(server).expect("no other handle");
    drop(server);
    let server =
        std::sync::Arc::new(case("14-transactions-rollback.js", &["Bank"], dir.path()).await);
    assert_eq!(
        server.call("Bank", "k", "snapshot", json!([])).await,
        after(1, 99, 2)
    );
    let transfers: Vec<_> = [true, false, true]
        .into_iter()
        .map(|fail| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .call("Bank", "k", "transferSync", json!([5, fail]))
                    .await
            })
        })
        .collect();
    for transfer in transfers {
        transfer.await.unwrap();
    }
    assert_eq!(
        server.call("Bank", "k", "snapshot", json!([])).await,
        after(-4, 104, 3),
        "only the transfer that did not fail applied"
    );
}

// ---- ctx.storage.sql -----------------------------------------------------------

const SQL_BUNDLE: &str = r#"
export class Db {
  constructor(ctx) { this.sql = ctx.storage.sql; }
  cursor() {
    const c = this.sql.exec(
      "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB);" +
      "DELETE FROM t; INSERT INTO t(name, score, data) VALUES (?, ?, ?), (?, ?, ?)",
      "a", 1.5, new Uint8Array([0, 255]), "b", null, null);
    const written = c.rowsWritten;
    const rows = this.sql.exec("SELECT id, name, score, data FROM t ORDER BY id");
    const columns = rows.columnNames;
    const first = rows.next().value;
    const rest = [...rows];
    const raw = this.sql.exec("SELECT name, id FROM t ORDER BY id").raw().toArray();
    let one = null;
    try { this.sql.exec("SELECT * FROM t").one(); } catch (e) { one = e.message; }
    return {
      written, columns, first: { ...first, data: [...new Uint8Array(first.data)] }, rest, raw, one,
      count: this.sql.exec("SELECT count(*) AS n FROM t").one().n,
      read: this.sql.exec("SELECT * FROM t").toArray().length,
      size: this.sql.databaseSize > 0,
    };
  }
  refusals() {
    const out = {};
    for (const [label, query] of [
      ["syntax", "SELEC 1"],
      ["missing", "SELECT * FROM nowhere"],
      ["kv", "SELECT * FROM kv"],
      ["meta", "CREATE TABLE meta(x)"],
      ["cf", "CREATE TABLE _cf_mine(x)"],
      ["attach", "ATTACH DATABASE '/tmp/x.sqlite' AS x"],
      ["begin", "BEGIN TRANSACTION"],
      ["pragma", "PRAGMA journal_mode = DELETE"],
      ["bindings", "SELECT ?"],
    ]) {
      try { this.sql.exec(query); out[label] = "ran"; } catch (e) { out[label] = e.name + ": " + e.message; }
    }
    out.tableInfo = this.sql.exec("PRAGMA table_info(t)").toArray().map((c) => c.name);
    return out;
  }
  runaway() {
    return this.sql.exec(
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c").one();
  }
  async kvStillWorks() {
    await this.ctx?.storage?.put?.("k", 1);
    return this.sql.exec("SELECT 40 + 2 AS v").one().v;
  }
}
"#;

#[tokio::test]
async fn sql_runs_against_the_objects_own_tables_only() {
    let server = ServerBuilder::new(source(SQL_BUNDLE))
        .limits(|l| l.cpu_timeout = Some(Duration::from_millis(700)))
        .start()
        .await;
    let call = |method: &'static str| {
        let server = &server;
        async move { server.call("DB", "d", method, json!([])).await }
    };
    assert_eq!(
        call("cursor").await,
        json!({
            "written": 2,
            "columns": ["id", "name", "score", "data"],
            "first": {"id": 1, "name": "a", "score": 1.5, "data": [0, 255]},
            "rest": [{"id": 2, "name": "b", "score": null, "data": null}],
            "raw": [["a", 1], ["b", 2]],
            "one": "Expected exactly one result from SQL query, but got multiple results.",
            "count": 2,
            "read": 2,
            "size": true,
        })
    );
    let refusals = call("refusals").await;
    let text = |label: &str| refusals[label].as_str().unwrap().to_string();
    assert!(
        text("syntax").starts_with("Error: near \"SELEC\": syntax error"),
        "{refusals}"
    );
    assert!(text("syntax").ends_with(": SQLITE_ERROR"), "{refusals}");
    assert_eq!(
        text("missing"),
        "Error: no such table: nowhere: SQLITE_ERROR"
    );
    for label in ["kv", "meta", "cf"] {
        assert!(text(label).contains("is prohibited"), "{label}: {refusals}");
        assert!(text(label).ends_with("SQLITE_AUTH"), "{label}: {refusals}");
    }
    assert!(text("attach").contains("ATTACH"), "{refusals}");
    assert!(text("begin").contains("transactionSync()"), "{refusals}");
    assert!(text("pragma").contains("PRAGMA journal_mode"), "{refusals}");
    assert!(
        text("bindings").contains("Wrong number of parameter bindings"),
        "{refusals}"
    );
    assert_eq!(
        refusals["tableInfo"],
        json!(["id", "name", "score", "data"])
    );

    // A statement that would run forever ends at the deadline, and the
    // object goes on. The statement's error (500) and the dispatch's own
    // deadline (504) arrive together; either may be the answer.
    let started = std::time::Instant::now();
    let runaway = server.rpc("DB", "d", "runaway", json!([])).await;
    assert!(
        matches!(runaway.status, 500 | 504),
        "{} {}",
        runaway.status,
        runaway.text
    );
    assert!(runaway.text.contains("deadline"), "{}", runaway.text);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(call("kvStillWorks").await, 42);
}

// ---- --wrangler ------------------------------------------------------------------

#[tokio::test]
async fn a_wrangler_configuration_names_the_bundle_and_the_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::copy(
        fixtures().join("cloudflare/counter.js"),
        dir.path().join("src/index.js"),
    )
    .unwrap();
    let config = dir.path().join("wrangler.jsonc");
    std::fs::write(
        &config,
        "{\n  // as Cloudflare projects write it\n  \"name\": \"demo\",\n  \"main\": \"src/index.js\",\n  \
         \"durable_objects\": { \"bindings\": [ { \"name\": \"COUNTERS\", \"class_name\": \"Counter\" }, ] },\n  \
         \"migrations\": [ { \"tag\": \"v1\", \"new_sqlite_classes\": [\"Counter\"] } ],\n}\n",
    )
    .unwrap();
    let storage = dir.path().join("storage");
    let server = crate::support::BinaryServer::start(&[
        "--wrangler",
        config.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
    ]);
    let reply = crate::support::post_json(&server.base, "/rpc/COUNTERS/a/increment", "[5]").await;
    assert_eq!(reply.result(), 5);
    let unknown = crate::support::post_json(&server.base, "/rpc/COUNTER/a/increment", "[]").await;
    assert_eq!(unknown.status, 404, "only the bound namespace exists");
    server.kill();

    let (status, stderr) = crate::support::run_binary(&[
        "--wrangler",
        config.to_str().unwrap(),
        "--manifest",
        "m.yaml",
    ]);
    assert!(!status.success());
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

// ---- stubs ---------------------------------------------------------------------

const STUB_BUNDLE: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Caller extends DurableObject {
  async clone() {
    const cyclic = { n: 1 };
    cyclic.self = cyclic;
    const back = await this.env.CALLEE.getByName("c").echo(new Map([["k", cyclic]]), 10n);
    return { map: back[0] instanceof Map, cycle: back[0].get("k").self === back[0].get("k"), big: typeof back[1] };
  }
  async errors() {
    const out = {};
    try { await this.env.CALLEE.getByName("c").fail(); } catch (e) { out.thrown = [e.name, e.message, e instanceof RangeError]; }
    try { await this.env.CALLEE.getByName("c").missing(); } catch (e) { out.missing = [e.name, e.message]; }
    return out;
  }
  async fetchIt() {
    const response = await this.env.CALLEE.getByName("c").fetch("http://callee.test/p?q=1", {
      method: "POST", body: new Uint8Array([0, 255]), headers: { "x-h": "v" },
    });
    return { status: response.status, statusText: response.statusText, header: response.headers.get("x-seen"),
      bytes: [...new Uint8Array(await response.arrayBuffer())] };
  }
  async remember(v) { await this.env.CALLEE.getByName("named").put(v); return this.env.CALLEE.idFromName("named").toString(); }
  mint(name) { return this.env.CALLEE.idFromName(name).toString(); }
  async viaString(hex, name, v) {
    await this.env.CALLEE.get(this.env.CALLEE.idFromString(hex)).put(v);
    return this.env.CALLEE.getByName(name).get();
  }
  async recall(hex) {
    const id = this.env.CALLEE.idFromString(hex);
    return { name: id.name ?? null, value: await this.env.CALLEE.get(id).get() };
  }
}
export class Callee extends DurableObject {
  echo(...args) { return args; }
  fail() { throw new RangeError("out of range"); }
  async put(v) { await this.ctx.storage.put("v", v); }
  async get() { return (await this.ctx.storage.get("v")) ?? null; }
  async fetch(request) {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(new Uint8Array([...body].reverse()), {
      status: 207, statusText: "Multi", headers: { "x-seen": request.method + " " + new URL(request.url).search + " " + request.headers.get("x-h") },
    });
  }
}
"#;

#[tokio::test]
async fn stubs_carry_structured_clones_errors_and_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        ServerBuilder::new(source(STUB_BUNDLE))
            .storage(dir.path())
            .start()
    };
    let server = start().await;
    let call = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.call("CALLER", "a", method, args).await }
    };
    assert_eq!(
        call("clone", json!([])).await,
        json!({"map": true, "cycle": true, "big": "bigint"})
    );
    assert_eq!(
        call("errors", json!([])).await,
        json!({
            "thrown": ["RangeError", "out of range", true],
            "missing": ["TypeError", "The RPC receiver does not implement the method \"missing\"."],
        })
    );
    assert_eq!(
        call("fetchIt", json!([])).await,
        json!({"status": 207, "statusText": "Multi", "header": "POST ?q=1 v", "bytes": [255, 0]})
    );
    let hex = call("remember", json!(["kept"])).await;
    assert_eq!(
        call("recall", json!([hex.clone()])).await,
        json!({"name": null, "value": "kept"})
    );
    // An id string of a named object that never started leads to it too.
    let fresh = call("mint", json!(["fresh"])).await;
    assert_eq!(
        call("viaString", json!([fresh, "fresh", "via-string"])).await,
        "via-string"
    );
    let unstarted = call("mint", json!(["later"])).await;

    // After a restart the named object is not live: its database says who
    // it is; the one that never started is in the directory of names.
    server.runtime.shutdown(Duration::from_secs(5)).await;
    drop(server);
    let server = start().await;
    assert_eq!(
        server.call("CALLER", "b", "recall", json!([hex])).await,
        json!({"name": null, "value": "kept"})
    );
    assert_eq!(
        server
            .call(
                "CALLER",
                "b",
                "viaString",
                json!([unstarted, "later", "found"])
            )
            .await,
        "found"
    );
}

// ---- found in review: each attack gets a clean error --------------------------

const HARDENING_BUNDLE: &str = r#"
import { DurableObject } from "cloudflare:workers";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export function helper(ctx) { ctx.storage.put("helper-ran", true); }
export class Guarded extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.ready = false;
    ctx.blockConcurrencyWhile(async () => { await sleep(30); this.ready = true; });
  }
  isReady() { return this.ready; }
  sql(query, ...bindings) {
    try { return { rows: this.ctx.storage.sql.exec(query, ...bindings).toArray() }; }
    catch (e) { return { error: e.message }; }
  }
  async put(k, v) { await this.ctx.storage.put(k, v); return (await this.ctx.storage.get(k)) ?? null; }
  async concurrent() {
    const s = this.ctx.storage;
    const t1 = s.transaction(async (txn) => { await txn.put("c", 1); await sleep(10); return "ok"; });
    const t2 = s.transaction(async (txn) => { await txn.put("d", 2); await sleep(20); throw new Error("no"); });
    const settled = await Promise.allSettled([t1, t2]);
    return { settled: settled.map((r) => r.status), c: (await s.get("c")) ?? null, d: (await s.get("d")) ?? null };
  }
  async leaveOpen() {
    this.ctx.storage.transaction(async (txn) => {
      await txn.put("inside", 1);
      await new Promise(() => {});
    });
    return "left";
  }
  async afterAbandon() {
    return (await this.ctx.storage.get("inside")) ?? null;
  }
  clones() {
    const a = [1, 2];
    Object.defineProperty(a, "__proto__", { value: { evil: true }, enumerable: true, configurable: true, writable: true });
    const back = structuredClone(a);
    const dom = structuredClone(new DOMException("m", "DataCloneError"));
    return { isArray: Array.isArray(back), map: typeof back.map, own: Object.keys(back), dom: [dom instanceof DOMException, dom.name, dom.message] };
  }
  async fetch(request) {
    const body = new Uint8Array(await request.arrayBuffer());
    const url = new URL(request.url);
    return new Response(body, { headers: { "x-path": url.pathname, "x-search": url.search, "x-host": url.host } });
  }
}
"#;

#[tokio::test]
async fn attacks_from_review_get_clean_errors() {
    let server = ServerBuilder::new(source(HARDENING_BUNDLE))
        .limits(|l| l.max_storage_bytes = 1024 * 1024)
        .start()
        .await;
    let call = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.call("GUARDED", "g", method, args).await }
    };
    let sql = |query: &'static str, args: Vec<Value>| {
        let mut all = vec![json!(query)];
        all.extend(args);
        call("sql", Value::from(all))
    };
    // An exported function is not a class: no namespace, never run.
    assert_eq!(
        server.runtime.classes().namespaces().collect::<Vec<_>>(),
        ["GUARDED"]
    );
    // blockConcurrencyWhile in the constructor holds the first request.
    assert_eq!(call("isReady", json!([])).await, true);

    let victim = tempfile::tempdir().unwrap();
    let victim_file = victim.path().join("victim.sqlite");
    for (query, args) in [
        ("ATTACH ? AS v", vec![json!(victim_file.to_str().unwrap())]),
        ("ATTACH ':memory:' AS m", vec![]),
        ("ATTACH 'x' || '.sqlite' AS m", vec![]),
        (
            "CREATE TEMP TABLE x(key TEXT PRIMARY KEY, value_json BLOB, updated_at_ms INTEGER)",
            vec![],
        ),
        ("CREATE TABLE temp.kv(a)", vec![]),
        ("SELECT zeroblob(500000000)", vec![]),
    ] {
        let reply = sql(query, args).await;
        assert!(reply["error"].is_string(), "{query}: {reply}");
    }
    assert!(!victim_file.exists(), "no file was created");
    assert_eq!(
        call("put", json!(["a", 1])).await,
        1,
        "KV still reads its own table"
    );

    // SQL counts against --max-storage-bytes.
    let big = sql(
        "CREATE TABLE big(x BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 \
         FROM n WHERE i < 50) INSERT INTO big SELECT randomblob(100000) FROM n",
        vec![],
    )
    .await;
    assert!(
        big["error"]
            .as_str()
            .unwrap_or_default()
            .contains("SQLITE_FULL"),
        "{big}"
    );
    assert_eq!(call("put", json!(["b", 2])).await, 2);

    // Transactions run one after the other; each keeps its own outcome.
    assert_eq!(
        call("concurrent", json!([])).await,
        json!({"settled": ["fulfilled", "rejected"], "c": 1, "d": null})
    );
    assert_eq!(call("leaveOpen", json!([])).await, "left");
    assert_eq!(call("afterAbandon", json!([])).await, Value::Null);

    assert_eq!(
        call("clones", json!([])).await,
        json!({"isArray": true, "map": "function", "own": ["0", "1", "__proto__"],
            "dom": [true, "DataCloneError", "m"]})
    );

    // The object's URL keeps the client's escapes; a bad Host is replaced.
    let response = server
        .client
        .post(format!("{}/fetch/GUARDED/g/a%3Fb%23c%2Fd?q=1", server.base))
        .header("host", "h/admin?")
        .body(vec![7u8; 4 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-path"], "/a%3Fb%23c%2Fd");
    assert_eq!(response.headers()["x-search"], "?q=1");
    assert_eq!(response.headers()["x-host"], "localhost");
    let bad_port = server
        .client
        .get(format!("{}/fetch/GUARDED/g/p", server.base))
        .header("host", "evil.test:99999")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_port.status(),
        200,
        "an impossible port is not the client's host"
    );
    assert_eq!(bad_port.headers()["x-host"], "localhost");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        bytes.len(),
        4 * 1024 * 1024,
        "a 4 MiB body fits the default limits"
    );
    assert!(bytes.iter().all(|b| *b == 7));
}

// ---- found in the second review -------------------------------------------------

const REVIEW_TWO_BUNDLE: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Second extends DurableObject {
  mark() { this.marked = true; }
  fill(from, n) { const v = "x".repeat(1024 * 1024); for (let i = from; i < from + n; i++) this.ctx.storage.kv.put("big" + i, v); }
  async listAll() {
    try { return (await this.ctx.storage.list()).size; } catch (e) { return e.name + ": " + e.message; }
  }
  async hang() { this.ctx.storage.kv.put("hung", true); await new Promise(() => {}); }
  async hung() { return { hung: this.ctx.storage.kv.get("hung") ?? null, marked: this.marked ?? false }; }
  async failBlock() {
    await this.ctx.blockConcurrencyWhile(async () => { this.ctx.storage.kv.put("blocked", 1); throw new Error("nope"); }).catch(() => {});
    return "caught";
  }
  async manyTimers(n) {
    let fired = 0;
    for (let i = 0; i < n; i++) setTimeout(() => fired++, i % 50);
    await new Promise((resolve) => setTimeout(resolve, 60));
    return fired;
  }
  stranger(hex) { try { this.env.SECOND.idFromString(hex); return "ok"; } catch (e) { return e.name; } }
  async fetch() { return new Response(new Uint8Array([104, 105])); }
}
"#;

#[tokio::test]
async fn second_review_findings_stay_fixed() {
    let server = ServerBuilder::new(source(REVIEW_TWO_BUNDLE))
        .limits(|l| l.max_storage_bytes = 200 * 1024 * 1024)
        .start()
        .await;
    let call = |method: &'static str, args: Value| {
        let server = &server;
        async move { server.call("SECOND", "s", method, args).await }
    };
    // A listing past 32 MiB is refused before it is held in memory.
    for from in [0, 10, 20, 30] {
        call("fill", json!([from, 10])).await;
    }
    let listed = call("listAll", json!([])).await;
    assert!(
        listed
            .as_str()
            .unwrap_or_default()
            .starts_with("RangeError: list() would return"),
        "{listed}"
    );
    // A promise that can never settle drops its writes and resets the object.
    call("mark", json!([])).await;
    let hang = server.rpc("SECOND", "s", "hang", json!([])).await;
    assert_eq!(hang.status, 500, "{}", hang.text);
    assert_eq!(
        call("hung", json!([])).await,
        json!({"hung": null, "marked": false}),
        "the write was rolled back and the object is a fresh one"
    );
    // So does a blockConcurrencyWhile callback that fails.
    let blocked = server.rpc("SECOND", "s", "failBlock", json!([])).await;
    assert_eq!(blocked.status, 500, "{}", blocked.text);
    assert!(
        blocked.message().contains("blockConcurrencyWhile"),
        "{}",
        blocked.text
    );
    // Thousands of timers cost what they are, not their square.
    assert_eq!(call("manyTimers", json!([5000])).await, 5000);
    // A live object's id from this namespace resolves without waiting for its
    // database.
    let other = server.call("SECOND", "other", "hung", json!([])).await;
    assert!(other.is_object());
    let hex = go_go_objects::ObjectId::new("SECOND", "other")
        .unwrap()
        .hash()
        .to_string();
    assert_eq!(call("stranger", json!([hex])).await, "ok");
}

#[test]
fn the_runner_prints_response_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("worker.mjs");
    std::fs::write(&bundle, REVIEW_TWO_BUNDLE).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_go-go-objects"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .args(["SECOND/r", "--fetch", "/x"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(report["response"]["body"], "hi", "{report}");
}
