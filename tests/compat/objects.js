// The classes of the compatibility suite, written the way Cloudflare's
// documentation writes Durable Objects. Both runtimes serve this same file:
// go-go-objects directly, workerd behind front.js. Each method returns a
// JSON description of what it saw, so that the two answers can be compared
// as JSON.
import { DurableObject } from "cloudflare:workers";

function hex(bytes) {
  let out = "";
  for (const b of new Uint8Array(bytes)) out += (b < 16 ? "0" : "") + b.toString(16);
  return out;
}

// A JSON-safe description of any value, naming its exact kind.
function describe(v, seen = new Set()) {
  if (v === undefined) return { t: "undefined" };
  if (v === null) return { t: "null" };
  switch (typeof v) {
    case "number": return { t: "number", v: Object.is(v, -0) ? "-0" : String(v) };
    case "bigint": return { t: "bigint", v: v.toString() };
    case "string": case "boolean": return { t: typeof v, v };
    case "function": case "symbol": return { t: typeof v };
  }
  if (seen.has(v)) return { t: "cycle" };
  seen.add(v);
  if (v instanceof Date) return { t: "Date", v: isNaN(v) ? "Invalid" : v.toISOString() };
  if (v instanceof RegExp) return { t: "RegExp", v: String(v) };
  if (v instanceof Map) return { t: "Map", v: [...v].map(([k, x]) => [describe(k, seen), describe(x, seen)]) };
  if (v instanceof Set) return { t: "Set", v: [...v].map((x) => describe(x, seen)) };
  if (v instanceof ArrayBuffer) return { t: "ArrayBuffer", v: hex(v) };
  if (ArrayBuffer.isView(v)) return { t: v.constructor.name, v: hex(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)) };
  if (v instanceof Error) return { t: "Error", name: v.name, message: v.message };
  if (Array.isArray(v)) return { t: "Array", v: Array.from({ length: v.length }, (_, i) => (i in v ? describe(v[i], seen) : { t: "hole" })) };
  return { t: "Object", plain: Object.getPrototypeOf(v) === Object.prototype, v: Object.entries(v).map(([k, x]) => [k, describe(x, seen)]) };
}

async function failure(promiseOrFn) {
  try {
    const value = typeof promiseOrFn === "function" ? await promiseOrFn() : await promiseOrFn;
    return { threw: false, value: describe(value) };
  } catch (e) {
    return { threw: true, name: e && e.name, message: e && e.message };
  }
}

class Point {
  constructor(x, y) { this.x = x; this.y = y; }
  norm() { return Math.hypot(this.x, this.y); }
}

export class Compat extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
  }

  // ---- key-value storage ----------------------------------------------------

  async putGet() {
    await this.ctx.storage.put("greeting", "hello");
    return { value: await this.ctx.storage.get("greeting"), missing: describe(await this.ctx.storage.get("nope")) };
  }

  async multiPutGet() {
    await this.ctx.storage.put({ b: 2, a: 1, c: undefined, d: 4 });
    const many = await this.ctx.storage.get(["d", "zz", "a", "b", "c"]);
    return { kind: Object.prototype.toString.call(many), entries: [...many] };
  }

  async deletes() {
    await this.ctx.storage.put({ x1: 1, x2: 2, x3: 3 });
    return {
      one: await this.ctx.storage.delete("x1"),
      again: await this.ctx.storage.delete("x1"),
      many: await this.ctx.storage.delete(["x2", "x3", "x4"]),
    };
  }

  async seedList() {
    await this.ctx.storage.deleteAll();
    await this.ctx.storage.put({ "a": 1, "b": 2, "ba": 3, "bb": 4, "c": 5, "\u00e9": 6, "Z": 7, "\u{1F600}": 8, "\uFF3A": 9 });
    return [...(await this.ctx.storage.list())].map(([k]) => k);
  }

  async listWith(options) {
    const listed = await this.ctx.storage.list(options);
    return { kind: Object.prototype.toString.call(listed), entries: [...listed] };
  }

  async listErrors() {
    return {
      both: await failure(() => this.ctx.storage.list({ start: "a", startAfter: "a" })),
      zero: await failure(() => this.ctx.storage.list({ limit: 0 })),
    };
  }

  async deleteAll() {
    await this.ctx.storage.put("k", 1);
    await this.ctx.storage.deleteAll();
    return (await this.ctx.storage.list()).size;
  }

  async valueKinds() {
    const values = {
      map: new Map([[1, "one"], [{ k: 1 }, [2]]]),
      set: new Set([1, "1", NaN]),
      date: new Date(86400000),
      invalidDate: new Date(NaN),
      regexp: /a+b/gi,
      bigint: 2n ** 70n,
      u8: new Uint8Array([0, 127, 255]),
      f64: new Float64Array([1.5, -0]),
      buffer: new Uint8Array([9, 8]).buffer,
      numbers: [NaN, -0, Infinity, -Infinity, 2 ** 53 + 2],
      sparse: [1, , 3], // eslint-disable-line no-sparse-arrays
      undefinedField: { a: undefined, b: null },
      boxed: [new String("s"), new Number(1), new Boolean(false)], // eslint-disable-line no-new-wrappers
    };
    const out = {};
    for (const [key, value] of Object.entries(values)) {
      await this.ctx.storage.put("kind:" + key, value);
      out[key] = describe(await this.ctx.storage.get("kind:" + key));
    }
    return out;
  }

  async graphs() {
    const cycle = { name: "c" };
    cycle.self = cycle;
    const shared = { n: 1 };
    await this.ctx.storage.put("cycle", cycle);
    await this.ctx.storage.put("shared", [shared, shared]);
    const c = await this.ctx.storage.get("cycle");
    const s = await this.ctx.storage.get("shared");
    return { cycle: c.self === c, shared: s[0] === s[1] };
  }

  async classInstance() {
    await this.ctx.storage.put("point", new Point(3, 4));
    const p = await this.ctx.storage.get("point");
    return { value: describe(p), isPoint: p instanceof Point, hasNorm: typeof p.norm };
  }

  async errorValue() {
    await this.ctx.storage.put("error", new RangeError("boom"));
    const e = await this.ctx.storage.get("error");
    return { isRangeError: e instanceof RangeError, name: e.name, message: e.message };
  }

  async uncloneable() {
    const out = {};
    for (const [label, value] of [["function", () => 1], ["symbol", Symbol("s")], ["weakmap", new WeakMap()], ["nested", { f() {} }]]) {
      const result = await failure(() => this.ctx.storage.put("bad:" + label, value));
      out[label] = { threw: result.threw, name: result.name, stored: (await this.ctx.storage.get("bad:" + label)) !== undefined };
    }
    return out;
  }

  async putUndefined() {
    return failure(() => this.ctx.storage.put("u", undefined));
  }

  async keyLimit() {
    return {
      at: await failure(() => this.ctx.storage.put("k".repeat(2048), 1)),
      over: await failure(() => this.ctx.storage.put("k".repeat(2049), 1)),
      readOver: describe(await this.ctx.storage.get("k".repeat(4096))),
    };
  }

  async valueLimit() {
    const big = "v".repeat(3 * 1024 * 1024);
    const result = await failure(() => this.ctx.storage.put("big", big));
    return { threw: result.threw, name: result.name, stored: (await this.ctx.storage.get("big")) !== undefined };
  }

  async oddKeys() {
    const keys = ["a", "a\u0000", "a\u0000b", "\u0000", " a", "A"];
    for (let i = 0; i < keys.length; i++) await this.ctx.storage.put(keys[i], i);
    const back = [];
    for (const k of keys) back.push(await this.ctx.storage.get(k));
    const listed = [...(await this.ctx.storage.list({ prefix: "a" }))];
    return { back, listed: listed.map(([k, v]) => [[...k].map((c) => c.charCodeAt(0)), v]) };
  }

  // ---- transactions -----------------------------------------------------------

  async transactionSyncCommit() {
    const result = this.ctx.storage.transactionSync(() => {
      this.ctx.storage.kv.put("t", 1);
      return "done";
    });
    return { result, t: await this.ctx.storage.get("t") };
  }

  async transactionSyncRollback() {
    await this.ctx.storage.put("t", 1);
    const result = await failure(() => this.ctx.storage.transactionSync(() => {
      this.ctx.storage.kv.put("t", 2);
      throw new Error("undo");
    }));
    return { result, t: await this.ctx.storage.get("t") };
  }

  async transactionExplicitRollback() {
    await this.ctx.storage.put("t", 1);
    const value = await this.ctx.storage.transaction(async (txn) => {
      await txn.put("t", 2);
      txn.rollback();
      return "rolled";
    });
    return { value, t: await this.ctx.storage.get("t") };
  }

  async transactionThrows() {
    await this.ctx.storage.put("t", 1);
    const result = await failure(() => this.ctx.storage.transaction(async (txn) => {
      await txn.put("t", 3);
      throw new TypeError("async undo");
    }));
    return { result, t: await this.ctx.storage.get("t") };
  }

  async nestedTransactions() {
    await this.ctx.storage.put("n", 0);
    this.ctx.storage.transactionSync(() => {
      this.ctx.storage.kv.put("n", 1);
      try {
        this.ctx.storage.transactionSync(() => {
          this.ctx.storage.kv.put("n", 2);
          throw new Error("inner");
        });
      } catch (_) { /* the inner part is undone */ }
    });
    return this.ctx.storage.get("n");
  }

  // ---- SQL --------------------------------------------------------------------

  sqlBasics() {
    this.sql.exec("DROP TABLE IF EXISTS items");
    this.sql.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)");
    const insert = this.sql.exec("INSERT INTO items(name, price) VALUES (?, ?), (?, ?)", "pen", 1.5, "ink", 3);
    const rows = this.sql.exec("SELECT * FROM items ORDER BY id");
    return { written: insert.rowsWritten, columns: rows.columnNames, rows: rows.toArray() };
  }

  sqlOne() {
    this.sqlBasics();
    const none = (() => { try { return this.sql.exec("SELECT * FROM items WHERE id = 99").one(); } catch (e) { return e.message; } })();
    const many = (() => { try { return this.sql.exec("SELECT * FROM items").one(); } catch (e) { return e.message; } })();
    return { one: this.sql.exec("SELECT name FROM items WHERE id = 1").one(), none, many };
  }

  sqlRaw() {
    this.sqlBasics();
    const cursor = this.sql.exec("SELECT name, price FROM items ORDER BY id");
    return { raw: cursor.raw().toArray(), iterated: [...this.sql.exec("SELECT id FROM items ORDER BY id")].map((r) => r.id) };
  }

  sqlTypes() {
    const row = this.sql.exec("SELECT ? AS n, ? AS i, ? AS f, ? AS s, ? AS b, typeof(?) AS bt",
      null, 42, 2.5, "text", new Uint8Array([1, 2, 3]), new Uint8Array([1])).one();
    return { n: describe(row.n), i: describe(row.i), f: describe(row.f), s: describe(row.s), b: describe(row.b), bt: row.bt };
  }

  sqlErrors() {
    const run = (query) => { try { this.sql.exec(query); return "ran"; } catch (e) { return e.name + ": " + e.message; } };
    return { missing: run("SELECT * FROM no_such_table"), syntax: run("SELEC 1") };
  }

  sqlTransactionStatement() {
    try {
      this.sql.exec("BEGIN TRANSACTION");
      return "ran";
    } catch (e) {
      return e.name;
    }
  }

  sqlWithKv() {
    this.sql.exec("CREATE TABLE IF NOT EXISTS log(x)");
    this.sql.exec("DELETE FROM log");
    this.ctx.storage.kv.put("flag", "before");
    try {
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("INSERT INTO log VALUES (1)");
        this.ctx.storage.kv.put("flag", "inside");
        throw new Error("abort");
      });
    } catch (_) { /* rolled back */ }
    return { flag: this.ctx.storage.kv.get("flag"), rows: this.sql.exec("SELECT count(*) AS c FROM log").one().c };
  }

  sqlCounters() {
    this.sqlBasics();
    const all = this.sql.exec("SELECT * FROM items");
    const rows = all.toArray().length;
    const update = this.sql.exec("UPDATE items SET price = price + 1");
    return { rows, read: all.rowsRead, written: update.rowsWritten };
  }

  async syncs() {
    await this.ctx.storage.put("synced", 1);
    return { sync: describe(await this.ctx.storage.sync()), value: await this.ctx.storage.get("synced") };
  }

  sqlDatabaseSize() {
    this.sqlBasics();
    return this.sql.databaseSize > 0;
  }

  // ---- alarms -------------------------------------------------------------------

  async alarms() {
    const at = Date.now() + 3600 * 1000;
    await this.ctx.storage.setAlarm(at);
    const got = await this.ctx.storage.getAlarm();
    await this.ctx.storage.deleteAlarm();
    return { same: got === at, after: await this.ctx.storage.getAlarm() };
  }

  async alarmFires() {
    await this.ctx.storage.put("alarmed", false);
    await this.ctx.storage.setAlarm(Date.now() + 50);
    return true;
  }

  async alarmFired() {
    return this.ctx.storage.get("alarmed");
  }

  async alarm(info) {
    await this.ctx.storage.put("alarmed", { retryCount: info.retryCount });
  }

  // ---- ctx and env --------------------------------------------------------------

  ids() {
    const id = this.ctx.id;
    const again = this.env.COMPAT.idFromName(id.name);
    const other = this.env.COMPAT.idFromName("someone-else");
    const unique = this.env.COMPAT.newUniqueId();
    return {
      hex: /^[0-9a-f]{64}$/.test(id.toString()),
      name: id.name,
      equalsSelf: id.equals(again),
      sameString: again.toString() === id.toString(),
      differs: other.toString() !== id.toString(),
      uniqueHex: /^[0-9a-f]{64}$/.test(unique.toString()),
      uniqueName: describe(unique.name),
    };
  }

  async blockConcurrency() {
    const value = await this.ctx.blockConcurrencyWhile(async () => {
      await this.ctx.storage.put("blocked", true);
      return "inside";
    });
    return { value, stored: await this.ctx.storage.get("blocked"), waitUntil: typeof this.ctx.waitUntil };
  }

  async stubRpc() {
    const stub = this.env.OTHER.getByName("helper");
    return { sum: await stub.add(2, 3), again: await this.env.OTHER.get(this.env.OTHER.idFromName("helper")).add(1, 1) };
  }

  async stubRpcError() {
    return failure(() => this.env.OTHER.getByName("helper").fail("from the other side"));
  }

  async stubRpcState() {
    const stub = this.env.OTHER.getByName("counter");
    await stub.bump();
    await stub.bump();
    return stub.bump();
  }

  async stubStructuredClone() {
    const echoed = await this.env.OTHER.getByName("helper").echo(new Map([[1, new Date(0)]]));
    return describe(echoed);
  }

  async stubFetch() {
    const response = await this.env.OTHER.getByName("helper").fetch("http://other.test/path?x=1");
    return { status: response.status, text: await response.text() };
  }

  async idFromStringRoundTrip() {
    const named = this.env.OTHER.idFromName("helper");
    const back = this.env.OTHER.idFromString(named.toString());
    await this.env.OTHER.get(named).remember("kept");
    return { equals: back.equals(named), recalled: await this.env.OTHER.get(back).recall() };
  }

  // ---- web platform -------------------------------------------------------------

  urls() {
    const u = new URL("https://Example.COM:443/a/./b/../c?x=1&y=2#frag");
    const rel = new URL("../up?q=1", "http://h.test/one/two/three");
    u.searchParams.append("z", "a b");
    return {
      href: u.href, origin: u.origin, host: u.host, hostname: u.hostname, port: u.port,
      pathname: u.pathname, search: u.search, hash: u.hash, rel: rel.href,
      invalid: (() => { try { new URL("no scheme"); return "parsed"; } catch (e) { return e.name; } })(),
    };
  }

  searchParams() {
    const p = new URLSearchParams("a=1&b=x+y&a=%F0%9F%98%80&c");
    p.append("d", "é &=");
    p.delete("b");
    const sorted = new URLSearchParams(p);
    sorted.sort();
    return { all: p.getAll("a"), c: p.get("c"), has: p.has("d"), text: p.toString(), sorted: sorted.toString(), size: p.size };
  }

  headers() {
    const h = new Headers({ "Content-Type": "text/plain", "X-B": "1" });
    h.append("x-b", "2");
    h.append("Set-Cookie", "a=1");
    h.append("Set-Cookie", "b=2");
    h.set("X-A", "only");
    const invalid = (() => { try { h.set("bad name", "x"); return "set"; } catch (e) { return e.name; } })();
    return { entries: [...h], xb: h.get("X-B"), cookies: h.getSetCookie(), has: h.has("content-type"), invalid };
  }

  async requests() {
    const r = new Request("https://example.com/path?q=1", { method: "post", headers: { "X-A": "1" }, body: "payload" });
    const copy = r.clone();
    const text = await r.text();
    const reused = await failure(() => r.text());
    const get = (() => { try { new Request("https://example.com", { method: "GET", body: "x" }); return "made"; } catch (e) { return e.name; } })();
    return { method: r.method, url: r.url, header: r.headers.get("x-a"), text, copy: await copy.text(), used: r.bodyUsed, reused: reused.name, get };
  }

  async responses() {
    const json = Response.json({ a: 1 }, { status: 201, headers: { "X-Y": "z" } });
    const plain = new Response("body", { status: 299, statusText: "Fine" });
    const empty = new Response(null, { status: 204 });
    const bad = (() => { try { new Response("x", { status: 600 }); return "made"; } catch (e) { return e.name; } })();
    const redirect = Response.redirect("https://example.com/next", 301);
    return {
      json: { status: json.status, ok: json.ok, type: json.headers.get("content-type"), body: await json.json() },
      plain: { status: plain.status, statusText: plain.statusText, ok: plain.ok, text: await plain.text(), type: plain.headers.get("content-type") },
      empty: { status: empty.status, body: empty.body },
      bad,
      redirect: { status: redirect.status, location: redirect.headers.get("location") },
    };
  }

  encodings() {
    const bytes = new TextEncoder().encode("h\u00e9\u{1F600}");
    return {
      bytes: [...bytes],
      text: new TextDecoder().decode(bytes),
      lossy: new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62])),
      btoa: btoa("hello\u00ff"),
      atob: atob("aGVsbG8="),
      badAtob: (() => { try { atob("!!"); return "decoded"; } catch (e) { return e.name; } })(),
      badBtoa: (() => { try { btoa("\u0100"); return "encoded"; } catch (e) { return e.name; } })(),
    };
  }

  cloning() {
    const original = { when: new Date(0), tags: new Set(["a"]), nested: { list: [1, 2] } };
    const copy = structuredClone(original);
    const uncloneable = (() => { try { structuredClone(() => 1); return "cloned"; } catch (e) { return e.name; } })();
    return { value: describe(copy), distinct: copy !== original && copy.nested !== original.nested, uncloneable };
  }

  randomness() {
    const values = crypto.getRandomValues(new Uint8Array(16));
    return {
      uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
      length: values.length,
      random: typeof Math.random(),
    };
  }

  async microtasksAndTimers() {
    const order = [];
    await new Promise((resolve) => {
      setTimeout(() => { order.push("timeout 20"); resolve(); }, 20);
      setTimeout(() => order.push("timeout 5"), 5);
      const cancelled = setTimeout(() => order.push("cancelled"), 1);
      clearTimeout(cancelled);
      queueMicrotask(() => order.push("microtask"));
      Promise.resolve().then(() => order.push("promise"));
      order.push("sync");
    });
    return order;
  }

  consoleLog() {
    return { log: typeof console.log, result: describe(console.log("compat suite says hi")) };
  }

  // ---- fetch ----------------------------------------------------------------------

  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/echo": {
        const body = new Uint8Array(await request.arrayBuffer());
        return Response.json({
          method: request.method, pathname: url.pathname, search: url.search,
          q: url.searchParams.getAll("q"), header: request.headers.get("x-test"),
          length: body.length, head: hex(body.slice(0, 4)),
        });
      }
      case "/bytes": {
        const out = new Uint8Array(300);
        for (let i = 0; i < out.length; i++) out[i] = (i * 7) & 0xff;
        return new Response(out, { headers: { "content-type": "application/octet-stream" } });
      }
      case "/status":
        return new Response("made", { status: 418, statusText: "Teapot" });
      case "/cookies": {
        const h = new Headers();
        h.append("Set-Cookie", "a=1; Path=/");
        h.append("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT");
        h.append("X-Multi", "one");
        h.append("X-Multi", "two");
        return new Response("cookies", { headers: h });
      }
      case "/empty":
        return new Response(null, { status: 204 });
      case "/redirect":
        return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
      case "/throws":
        throw new Error("handler failed");
      case "/plain-object":
        return { status: 200, body: "not a Response" };
      case "/never":
        return new Promise(() => {});
      case "/storage":
        await this.ctx.storage.put("via-fetch", url.searchParams.get("v"));
        return new Response(String(await this.ctx.storage.get("via-fetch")));
      default:
        return new Response("no route " + url.pathname, { status: 404 });
    }
  }
}

export class Other extends DurableObject {
  add(a, b) {
    return a + b;
  }

  fail(message) {
    throw new Error(message);
  }

  async bump() {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + 1;
    await this.ctx.storage.put("n", n);
    return n;
  }

  echo(value) {
    return value;
  }

  async remember(value) {
    await this.ctx.storage.put("memory", value);
  }

  async recall() {
    return (await this.ctx.storage.get("memory")) ?? null;
  }

  async fetch(request) {
    return new Response("other saw " + new URL(request.url).pathname);
  }
}
