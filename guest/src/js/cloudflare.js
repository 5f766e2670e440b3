// Cloudflare's Durable Objects API, for classes exported by ES module
// bundles: the `cloudflare:workers` module (DurableObject and friends),
// `ctx` (id, storage, blockConcurrencyWhile, waitUntil), `ctx.storage` with
// Cloudflare's asynchronous key-value methods and structured-clone values,
// and `env` with one namespace binding per class.
//
// Evaluated to a factory that the prelude calls with its internals; it
// returns what the prelude needs to construct such an object and to finish
// a dispatch (rolling back a transaction its promise left open).
(function (internals) {
  'use strict';

  const host = internals.host;
  const hostKey = internals.hostKey;
  const clone = internals.clone;
  const web = internals.web;
  const JSONparse = JSON.parse;
  const alarmTime = internals.alarmTime;
  const wellFormed = internals.wellFormed;
  const ReflectApply = Reflect.apply;
  const ObjectKeys = Object.keys;
  const ArrayIsArray = Array.isArray;
  const StringCtor = String;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const ErrorCtor = Error;
  const MapCtor = Map;
  const MapSet = Map.prototype.set;
  const PromiseCtor = Promise;
  const PromiseResolve = Promise.resolve;
  const PromiseReject = Promise.reject;
  const PromiseThen = Promise.prototype.then;
  const freeze = Object.freeze;
  const defineProperty = Object.defineProperty;
  const MAX_KEYS_PER_CALL = 128;

  // ---- cloudflare:workers -------------------------------------------------

  class DurableObject {
    constructor(ctx, env) {
      this.ctx = ctx;
      this.env = env;
    }
  }

  class RpcTarget {}

  class WorkerEntrypoint {
    constructor(ctx, env) {
      this.ctx = ctx;
      this.env = env;
    }
  }

  const workersModule = freeze({ DurableObject, RpcTarget, WorkerEntrypoint });

  // ---- ids ----------------------------------------------------------------

  const UNIQUE_ID = /^[0-9a-f]{64}$/;
  const idStrings = new WeakMap();
  // The object name behind each id, whether or not it shows as `name`.
  const idNames = new WeakMap();

  // An object's id: `toString()` is 64 hex digits; `name` is the name it
  // was made from (undefined for a unique id, and for one made by
  // idFromString, as in Cloudflare).
  class DurableObjectId {
    constructor(hex, name, shownName) {
      idStrings.set(this, hex);
      idNames.set(this, name === undefined ? hex : name);
      const shown = arguments.length > 2 ? shownName : name;
      if (shown !== undefined) defineProperty(this, 'name', { value: shown, enumerable: true });
    }

    toString() {
      const hex = idStrings.get(this);
      if (hex === undefined) throw new TypeErrorCtor('Illegal invocation: not a DurableObjectId');
      return hex;
    }

    equals(other) {
      return other !== null && typeof other === 'object' && idStrings.get(other) === idStrings.get(this);
    }

    toJSON() {
      return this.toString();
    }
  }

  // The id of the object the host describes ({namespace, name, hash}): a
  // name that is itself 64 hex digits came from newUniqueId.
  function idFor(described) {
    if (UNIQUE_ID.test(described.name)) return new DurableObjectId(described.name, undefined);
    return new DurableObjectId(described.hash, described.name);
  }

  // The object name behind an id.
  function nameOf(id) {
    const name = idNames.get(id);
    if (name === undefined) throw new TypeErrorCtor('expected a DurableObjectId');
    return name;
  }

  // ---- keys and values ----------------------------------------------------

  const utf8Length = internals.natives.utf8Length;

  function makeStorage(limits, transactions) {
    // A key as stored: a string, well-formed. Only writes check its size
    // (a key too long to store is simply never found).
    function toKey(key, writing) {
      if (typeof key === 'symbol') throw new TypeErrorCtor('Cannot convert a Symbol value to a string');
      const text = wellFormed(StringCtor(key));
      if (writing && utf8Length(text) > limits.maxKeyBytes) {
        throw new RangeErrorCtor('Keys cannot be larger than ' + limits.maxKeyBytes + ' bytes.');
      }
      return text;
    }

    function toValue(value) {
      const text = clone.serialize(value);
      if (utf8Length(text) > limits.maxValueBytes) {
        throw new RangeErrorCtor('Values cannot be larger than ' + limits.maxValueBytes + ' bytes.');
      }
      return text;
    }

    function keyList(keys) {
      if (keys.length > MAX_KEYS_PER_CALL) {
        throw new RangeErrorCtor('Maximum number of keys is ' + MAX_KEYS_PER_CALL + '.');
      }
      const out = [];
      for (let i = 0; i < keys.length; i++) out[i] = toKey(keys[i]);
      return out;
    }

    function entryMap(entries) {
      const map = new MapCtor();
      for (let i = 0; i < entries.length; i++) {
        ReflectApply(MapSet, map, [entries[i][0], clone.deserialize(entries[i][1])]);
      }
      return map;
    }

    // Runs `body` inside one storage transaction (a savepoint).
    function atomically(body) {
      host({ op: 'transactionBegin' });
      let result;
      try {
        result = body();
      } catch (e) {
        host({ op: 'transactionRollback' });
        throw e;
      }
      host({ op: 'transactionCommit' });
      return result;
    }

    function get(keys) {
      if (ArrayIsArray(keys)) return entryMap(host({ op: 'getMany', keys: keyList(keys) }));
      return clone.deserialize(hostKey('get', toKey(keys)));
    }

    function put(keyOrEntries, value) {
      if (keyOrEntries !== null && typeof keyOrEntries === 'object' && !ArrayIsArray(keyOrEntries)) {
        const names = ObjectKeys(keyOrEntries);
        if (names.length > MAX_KEYS_PER_CALL) {
          throw new RangeErrorCtor('Maximum number of pairs is ' + MAX_KEYS_PER_CALL + '.');
        }
        const pairs = [];
        for (let i = 0; i < names.length; i++) {
          const item = keyOrEntries[names[i]];
          if (item === undefined) continue;
          pairs[pairs.length] = [toKey(names[i], true), toValue(item)];
        }
        atomically(() => {
          for (let i = 0; i < pairs.length; i++) hostKey('put', pairs[i][0], pairs[i][1]);
        });
        return undefined;
      }
      const key = toKey(keyOrEntries, true);
      if (value === undefined) throw new TypeErrorCtor('put() called with undefined value.');
      hostKey('put', key, toValue(value));
      return undefined;
    }

    function remove(keys) {
      if (ArrayIsArray(keys)) {
        const list = keyList(keys);
        return atomically(() => {
          let count = 0;
          for (let i = 0; i < list.length; i++) if (hostKey('delete', list[i])) count++;
          return count;
        });
      }
      return hostKey('delete', toKey(keys));
    }

    function list(options) {
      const request = { op: 'list' };
      if (options !== undefined && options !== null) {
        if (typeof options !== 'object') throw new TypeErrorCtor('list() options must be an object');
        if (options.start !== undefined && options.startAfter !== undefined) {
          throw new TypeErrorCtor('list() cannot be called with both start and startAfter values.');
        }
        const bounds = ['start', 'startAfter', 'end', 'prefix'];
        for (let i = 0; i < bounds.length; i++) {
          const bound = options[bounds[i]];
          if (bound !== undefined && bound !== null) request[bounds[i]] = wellFormed(StringCtor(bound));
        }
        if (options.reverse !== undefined) request.reverse = !!options.reverse;
        if (options.limit !== undefined && options.limit !== null) {
          const limit = +options.limit;
          if (!(limit > 0)) throw new TypeErrorCtor('List limit must be positive.');
          request.limit = Math.floor(limit);
        }
      }
      return entryMap(host(request));
    }

    // A method that answers with a promise, as Cloudflare's storage does;
    // a failure rejects it rather than throwing.
    function later(fn) {
      return function (...args) {
        try {
          return ReflectApply(PromiseResolve, PromiseCtor, [ReflectApply(fn, undefined, args)]);
        } catch (e) {
          return ReflectApply(PromiseReject, PromiseCtor, [e]);
        }
      };
    }

    function getAlarm() {
      return host({ op: 'getAlarm' });
    }

    function setAlarm(time) {
      host({ op: 'setAlarm', time: alarmTime(time) });
    }

    function deleteAlarm() {
      host({ op: 'deleteAlarm' });
    }

    function transactionSync(callback) {
      if (typeof callback !== 'function') throw new TypeErrorCtor('transactionSync() needs a function');
      return atomically(() => callback());
    }

    // transaction(async txn => ...): commits when the closure's promise
    // fulfils, rolls back when it rejects or the closure called
    // txn.rollback().
    //
    // Transactions run one after another (each is one savepoint, and
    // savepoints only nest): a transaction() called while another is open
    // starts when that one has finished.
    // TODO: a plain ctx.storage write made while a transaction is open
    // lands inside it (one connection, one savepoint stack), and is undone
    // if that transaction rolls back.
    let queue = ReflectApply(PromiseResolve, PromiseCtor, []);
    function transaction(closure) {
      if (typeof closure !== 'function') {
        return ReflectApply(PromiseReject, PromiseCtor, [new TypeErrorCtor('transaction() needs a function')]);
      }
      const run = ReflectApply(PromiseThen, queue, [() => runTransaction(closure)]);
      queue = ReflectApply(PromiseThen, run, [() => undefined, () => undefined]);
      return run;
    }

    function runTransaction(closure) {
      let rolledBack = false;
      const record = { open: true };
      host({ op: 'transactionBegin' });
      transactions[transactions.length] = record;
      const finish = (commit) => {
        if (!record.open) return;
        record.open = false;
        transactions.splice(transactions.indexOf(record), 1);
        host({ op: commit && !rolledBack ? 'transactionCommit' : 'transactionRollback' });
      };
      // Once the transaction has ended (or was abandoned with its
      // dispatch), its txn refuses to be used.
      const live = (fn) => later((...args) => {
        if (!record.open) throw new ErrorCtor('this transaction has already ended');
        return ReflectApply(fn, undefined, args);
      });
      const txn = freeze({
        get: live(get),
        put: live(put),
        delete: live(remove),
        list: live(list),
        getAlarm: live(getAlarm),
        setAlarm: live(setAlarm),
        deleteAlarm: live(deleteAlarm),
        rollback() {
          rolledBack = true;
        },
      });
      let started;
      try {
        started = ReflectApply(PromiseResolve, PromiseCtor, [closure(txn)]);
      } catch (e) {
        finish(false);
        return ReflectApply(PromiseReject, PromiseCtor, [e]);
      }
      return ReflectApply(PromiseThen, started, [
        (result) => {
          finish(true);
          return result;
        },
        (error) => {
          finish(false);
          throw error;
        },
      ]);
    }

    return freeze({
      get: later(get),
      put: later(put),
      delete: later(remove),
      list: later(list),
      deleteAll: later(() => {
        host({ op: 'deleteAll' });
        return undefined;
      }),
      getAlarm: later(getAlarm),
      setAlarm: later(setAlarm),
      deleteAlarm: later(deleteAlarm),
      transaction,
      transactionSync,
      sync: () => ReflectApply(PromiseResolve, PromiseCtor, []),
      sql,
      // The synchronous key-value API of SQLite-backed objects.
      kv: freeze({ get, put, delete: remove, list }),
    });
  }

  // ---- ctx.storage.sql ------------------------------------------------------

  const cursors = new WeakMap();

  function sqlBinding(value) {
    if (value === null || value === undefined) return null;
    switch (typeof value) {
      case 'number':
        if (value !== value || value === Infinity || value === -Infinity) {
          throw new TypeErrorCtor('SQL bindings cannot be NaN or infinite');
        }
        return value;
      case 'string':
        return wellFormed(value);
      case 'boolean':
        return value ? 1 : 0;
      case 'bigint':
        return { i: value.toString() };
      default: {
        const bytes = web.bytesOf(value);
        if (bytes !== null) return { b: web.bytesToBase64(bytes) };
        throw new TypeErrorCtor('Unsupported type of SQL binding: ' + typeof value);
      }
    }
  }

  function sqlValue(value) {
    if (value !== null && typeof value === 'object') {
      if (typeof value.r === 'string') return value.r === 'NaN' ? NaN : value.r[0] === '-' ? -Infinity : Infinity;
      const bytes = web.base64ToBytes(value.b);
      return bytes.buffer;
    }
    return value;
  }

  // The rows of one exec, read as objects, as arrays (raw()) or all at
  // once; like Cloudflare's cursor it is consumed as it is read.
  class SqlStorageCursor {
    constructor(result) {
      cursors.set(this, { result, next: 0 });
    }

    get columnNames() {
      return cursors.get(this).result.columns.slice();
    }

    get rowsRead() {
      return cursors.get(this).result.rowsRead;
    }

    get rowsWritten() {
      return cursors.get(this).result.rowsWritten;
    }

    next() {
      const state = cursors.get(this);
      if (state.next >= state.result.rows.length) return { done: true, value: undefined };
      return { done: false, value: rowObject(state.result, state.result.rows[state.next++]) };
    }

    toArray() {
      const out = [];
      for (let step = this.next(); !step.done; step = this.next()) out[out.length] = step.value;
      return out;
    }

    one() {
      const state = cursors.get(this);
      const left = state.result.rows.length - state.next;
      if (left === 0) throw new ErrorCtor('Expected exactly one result from SQL query, but got no results.');
      if (left > 1) throw new ErrorCtor('Expected exactly one result from SQL query, but got multiple results.');
      return this.next().value;
    }

    raw() {
      const state = cursors.get(this);
      const rows = {
        next() {
          if (state.next >= state.result.rows.length) return { done: true, value: undefined };
          return { done: false, value: state.result.rows[state.next++].map(sqlValue) };
        },
        toArray() {
          const out = [];
          for (let step = this.next(); !step.done; step = this.next()) out[out.length] = step.value;
          return out;
        },
        [Symbol.iterator]() {
          return this;
        },
      };
      return rows;
    }

    [Symbol.iterator]() {
      return this;
    }
  }

  function rowObject(result, row) {
    const out = {};
    for (let i = 0; i < result.columns.length; i++) {
      defineProperty(out, result.columns[i], { value: sqlValue(row[i]), writable: true, enumerable: true,
        configurable: true });
    }
    return out;
  }

  const sql = freeze({
    exec(query, ...bindings) {
      if (typeof query !== 'string') throw new TypeErrorCtor('exec() needs an SQL string');
      const encoded = [];
      for (let i = 0; i < bindings.length; i++) encoded[i] = sqlBinding(bindings[i]);
      let result;
      try {
        result = host({ op: 'sqlExec', query: wellFormed(query), bindings: encoded });
      } catch (e) {
        // A failed statement is an ordinary Error with SQLite's message.
        throw new ErrorCtor(StringCtor(e.message));
      }
      return new SqlStorageCursor(result);
    },
    get databaseSize() {
      return host({ op: 'sqlDatabaseSize' });
    },
  });

  // ---- env ----------------------------------------------------------------

  // A stub: any method name is an RPC to the object (arguments and result
  // by structured clone; an exception the method threw is rethrown here),
  // and fetch() delivers a Request to its fetch handler.
  function makeStub(namespace, id) {
    const name = nameOf(id);
    const call = (method, args) => {
      let result;
      try {
        result = JSONparse(host({ op: 'rpc', namespace, name, method, args: clone.serialize(args), cloned: true }));
      } catch (e) {
        return ReflectApply(PromiseReject, PromiseCtor, [e]);
      }
      if (result[0] === '!') {
        return ReflectApply(PromiseReject, PromiseCtor, [clone.deserialize(result.slice(1))]);
      }
      return ReflectApply(PromiseResolve, PromiseCtor, [clone.deserialize(result)]);
    };
    const fetch = (input, init) => {
      let request;
      try {
        request = new web.Request(input, init);
      } catch (e) {
        return ReflectApply(PromiseReject, PromiseCtor, [e]);
      }
      return ReflectApply(PromiseThen, request.arrayBuffer(), [(body) => {
        const headers = {};
        for (const [key, value] of request.headers) headers[key] = value;
        const bytes = new Uint8Array(body);
        const answer = host({
          op: 'fetch', namespace, name,
          request: { method: request.method, url: request.url, path: new URL(request.url).pathname, query: {},
            headers, body: null, rawBody: '', objectUrl: request.url,
            bodyBase64: bytes.length === 0 ? '' : web.bytesToBase64(bytes) },
        });
        let responseBody = null;
        if (typeof answer.bodyBase64 === 'string') responseBody = web.base64ToBytes(answer.bodyBase64);
        else if (typeof answer.body === 'string') responseBody = answer.body;
        const nullBody = answer.status === 204 || answer.status === 205 || answer.status === 304;
        return new web.Response(nullBody ? null : responseBody, {
          status: answer.status, statusText: answer.statusText || '', headers: answer.headers,
        });
      }]);
    };
    const target = Object.create(null);
    target.id = id;
    target.name = id.name;
    target.fetch = fetch;
    return new Proxy(target, {
      get(object, property) {
        if (Object.prototype.hasOwnProperty.call(object, property)) return object[property];
        if (typeof property !== 'string' || property === 'then') return undefined;
        return (...args) => call(property, args);
      },
    });
  }

  function makeNamespace(namespace) {
    return freeze({
      idFromName(name) {
        const described = host({ op: 'objectId', namespace, name: wellFormed(StringCtor(name)) });
        return new DurableObjectId(described.hash, described.name);
      },
      idFromString(hex) {
        const text = StringCtor(hex);
        if (!UNIQUE_ID.test(text)) throw new TypeErrorCtor('Invalid Durable Object ID: must be 64 hex digits');
        // The object that already has this hash, if there is one, else
        // the unique object of that id.
        const described = host({ op: 'idFromString', namespace, id: text });
        return new DurableObjectId(text, described.name, undefined);
      },
      newUniqueId() {
        const bytes = internals.randomBytes(32);
        let hex = '';
        for (let i = 0; i < bytes.length; i++) hex += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
        return new DurableObjectId(hex, undefined);
      },
      get(id) {
        return makeStub(namespace, id);
      },
      getByName(name) {
        return makeStub(namespace, this.idFromName(name));
      },
    });
  }

  function makeEnv(namespaces) {
    const env = {};
    for (let i = 0; i < namespaces.length; i++) {
      defineProperty(env, namespaces[i], { value: makeNamespace(namespaces[i]), enumerable: true });
    }
    return freeze(env);
  }

  // ---- ctx ----------------------------------------------------------------

  // The transactions begun by transaction() and not yet finished, oldest
  // first.
  const transactions = [];

  // The size limits of keys and values, set when the object is made.
  const storageLimits = { maxKeyBytes: 0, maxValueBytes: 0 };

  // The storage of the object this instance serves. It is made while the
  // bundle image is, not per actor: what an actor makes itself lands on
  // private pages, and every closure it makes also writes the reference
  // count of the function it comes from, on a shared page of the image.
  const STORAGE = makeStorage(storageLimits, transactions);

  function makeCtx(input) {
    storageLimits.maxKeyBytes = input.limits.maxKeyBytes;
    storageLimits.maxValueBytes = input.limits.maxValueBytes;
    return freeze({
      id: idFor(input.id),
      storage: STORAGE,
      blockConcurrencyWhile,
      waitUntil,
      acceptWebSocket,
      getWebSockets,
    });
  }

  // Dispatches to one object never interleave, so the callback only has to
  // finish: until it does, the current construction or dispatch keeps
  // running its jobs and timers (until its deadline).
  function blockConcurrencyWhile(callback) {
    let started;
    try {
      started = ReflectApply(PromiseResolve, PromiseCtor, [callback()]);
    } catch (e) {
      if (blockers.failure === undefined) blockers.failure = { error: e };
      return ReflectApply(PromiseReject, PromiseCtor, [e]);
    }
    blockers.count += 1;
    const done = () => {
      blockers.count -= 1;
    };
    return ReflectApply(PromiseThen, started, [
      (value) => {
        done();
        return value;
      },
      (error) => {
        done();
        if (blockers.failure === undefined) blockers.failure = { error };
        throw error;
      },
    ]);
  }

  // The job queue runs until the dispatch settles; promises handed here
  // that are still pending then continue in the next dispatch.
  function waitUntil(promise) {
    void promise;
  }

  function acceptWebSocket() {
    throw new ErrorCtor('WebSockets are not supported by go-go-objects');
  }

  function getWebSockets() {
    return [];
  }

  // Callbacks of blockConcurrencyWhile not yet finished, and the first
  // failure of one (which resets the object).
  const blockers = { count: 0, failure: undefined };

  function takeBlockerFailure() {
    const failure = blockers.failure;
    blockers.failure = undefined;
    return failure;
  }

  // Whether the object still has work its current dispatch must wait for:
  // an open transaction or a blockConcurrencyWhile callback.
  function busy() {
    return transactions.length > 0 || blockers.count > 0;
  }

  // A transaction whose promise never settled within its dispatch cannot
  // stay open into the next one: roll it back.
  function abandonTransactions() {
    while (transactions.length > 0) {
      const record = transactions.pop();
      record.open = false;
      host({ op: 'transactionRollback' });
    }
  }

  return { workersModule, DurableObject, makeCtx, makeEnv, abandonTransactions, busy, takeBlockerFailure };
})
