// The JavaScript half of the go-go-objects guest.
//
// Evaluated once per actor, before the user's bundle. Its value is a factory
// that receives the two native host functions, the native helpers and the
// factories of the other parts (web.js, clone.js, cloudflare.js), and
// returns the entry object that the Rust side of the guest calls: load,
// loadModule, describeFailure, construct, dispatch, the timer hooks and
// takeOutcome. A CommonJS bundle gets the reference API (state, synchronous
// storage of JSON values); an ES module bundle gets Cloudflare's
// (cloudflare.js). Nothing here is reachable from the bundle except
// the objects handed to it (state, env, console), so a bundle cannot call the
// host functions with requests of its own making; the host validates every
// request anyway.
//
// Every answer to the host is a JSON "outcome": {"ok":true,...} or
// {"ok":false,"error":{"code","message"}}.
(function (hostCall, hostLog, natives, parts) {
  'use strict';

  // Built-ins captured before user code runs, so that a bundle that replaces
  // JSON or Object methods cannot change how the runtime encodes its answers.
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const ObjectKeys = Object.keys;
  const ObjectProto = Object.prototype;
  const getPrototypeOf = Object.getPrototypeOf;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const defineProperty = Object.defineProperty;
  const freeze = Object.freeze;
  const hasOwnProperty = Object.prototype.hasOwnProperty;
  const ReflectApply = Reflect.apply;
  const ReflectConstruct = Reflect.construct;
  const PromiseCtor = Promise;
  const PromiseResolve = Promise.resolve;
  const PromiseThen = Promise.prototype.then;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const DateGetTime = Date.prototype.getTime;
  const MathTrunc = Math.trunc;
  const StringCtor = String;
  const SymbolIterator = Symbol.iterator;
  const SymbolToString = Symbol.prototype.toString;
  const ArrayIsArray = Array.isArray;
  const FunctionToString = Function.prototype.toString;
  const StringIncludes = String.prototype.includes;
  const StringStartsWith = String.prototype.startsWith;
  const StringSlice = String.prototype.slice;
  const ArrayFilter = Array.prototype.filter;
  const MapCtor = Map;
  const MapSet = Map.prototype.set;
  const MapDelete = Map.prototype.delete;
  const MapForEach = Map.prototype.forEach;
  const MapClear = Map.prototype.clear;
  const WeakSetCtor = WeakSet;
  const WeakSetAdd = WeakSet.prototype.add;
  const WeakSetHas = WeakSet.prototype.has;
  const WeakMapCtor = WeakMap;
  const WeakMapGet = WeakMap.prototype.get;
  const WeakMapSet = WeakMap.prototype.set;

  const LOG_DEBUG = 0;
  const LOG_INFO = 1;
  const LOG_WARN = 2;
  const LOG_ERROR = 3;

  // Method names that are never reachable over RPC, besides names starting
  // with "_" and anything inherited from Object.prototype.
  const RESERVED_METHODS = freeze({
    __proto__: null,
    constructor: true,
    fetch: true,
    alarm: true,
    webSocketMessage: true,
    webSocketClose: true,
    webSocketError: true,
  });

  function hasOwn(object, key) {
    return ReflectApply(hasOwnProperty, object, [key]);
  }

  // Text the host reads must be valid Unicode: a lone surrogate (half of a
  // UTF-16 pair) becomes U+FFFD.
  const toWellFormed = String.prototype.toWellFormed;
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  const RegExpReplace = RegExp.prototype[Symbol.replace];
  const RegExpTest = RegExp.prototype.test;
  function wellFormed(text) {
    if (typeof toWellFormed === 'function') return ReflectApply(toWellFormed, text, []);
    return ReflectApply(RegExpReplace, LONE_SURROGATE, [text, '\uFFFD']);
  }

  function setOwn(object, key, value) {
    defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  }

  // ---- the protocol --------------------------------------------------------

  // JSON for the host, built from plain values without JSON.stringify on
  // objects: a bundle may give Object.prototype or Array.prototype a toJSON,
  // which must change its own results, never the runtime's messages.
  function encode(value) {
    if (value === null || value === undefined) return 'null';
    const type = typeof value;
    if (type === 'string') return JSONstringify(value);
    if (type === 'number') {
      return value === value && value !== Infinity && value !== -Infinity ? StringCtor(value) : 'null';
    }
    if (type === 'boolean') return value ? 'true' : 'false';
    if (ArrayIsArray(value)) {
      let out = '[';
      for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + encode(value[i]);
      return out + ']';
    }
    let out = '{';
    let first = true;
    const keys = ObjectKeys(value);
    for (let i = 0; i < keys.length; i++) {
      const item = value[keys[i]];
      if (item === undefined) continue;
      out += (first ? '' : ',') + JSONstringify(keys[i]) + ':' + encode(item);
      first = false;
    }
    return out + '}';
  }

  // ---- errors -------------------------------------------------------------

  // Errors raised by the runtime carry a gateway code (bad_request, ...). They
  // are remembered here so that a user object with a `code` property is
  // never mistaken for one.
  const codedErrors = new WeakSetCtor();

  function coded(code, message, Ctor) {
    const error = new (Ctor || ErrorCtor)(message);
    defineProperty(error, 'code', { value: code, writable: true, configurable: true });
    ReflectApply(WeakSetAdd, codedErrors, [error]);
    return error;
  }

  function isCoded(value) {
    return value !== null && typeof value === 'object' && ReflectApply(WeakSetHas, codedErrors, [value]);
  }

  // Finds a runtime error inside what a handler threw or rejected with: the
  // value itself, or its `cause`, `error` or `value` property.
  function codeOf(thrown) {
    if (isCoded(thrown)) return thrown.code;
    if (thrown !== null && typeof thrown === 'object') {
      for (const key of ['cause', 'error', 'value']) {
        try {
          const inner = thrown[key];
          if (isCoded(inner)) return inner.code;
        } catch (_) { /* a throwing getter hides nothing of ours */ }
      }
    }
    return null;
  }

  // A one-line description of any thrown value, never throwing itself.
  function errorText(thrown) {
    try {
      // The runtime's own errors already say what happened (and one that
      // came back from another object already names its kind).
      if (isCoded(thrown)) return wellFormed(StringCtor(thrown.message));
      if (typeof thrown === 'string') return wellFormed(thrown);
      if (thrown === undefined) return 'undefined was thrown';
      if (thrown === null) return 'null was thrown';
      if (typeof thrown === 'symbol') return ReflectApply(SymbolToString, thrown, []) + ' was thrown';
      if (typeof thrown === 'object' || typeof thrown === 'function') {
        const message = thrown.message;
        if (typeof message === 'string') {
          const name = typeof thrown.name === 'string' ? thrown.name : 'Error';
          return wellFormed(name + ': ' + message);
        }
        try {
          const json = JSONstringify(thrown);
          if (json !== undefined) return wellFormed(json);
        } catch (_) { /* cyclic or BigInt: fall through */ }
        return 'a value that cannot be described (' + typeof thrown + ', not JSON-encodable)';
      }
      return wellFormed(StringCtor(thrown));
    } catch (_) {
      return 'an exception that could not be described';
    }
  }

  function stackOf(thrown) {
    try {
      if (thrown !== null && typeof thrown === 'object' && typeof thrown.stack === 'string') {
        return wellFormed(thrown.stack);
      }
    } catch (_) { /* no stack */ }
    return undefined;
  }

  function isOutOfMemory(thrown) {
    try {
      return thrown !== null && typeof thrown === 'object' && thrown.name === 'InternalError' &&
        thrown.message === 'out of memory';
    } catch (_) {
      return false;
    }
  }

  function errorOutcome(code, message, stack) {
    return encode({ ok: false, error: { code, message, stack } });
  }

  function failure(thrown) {
    if (isOutOfMemory(thrown)) {
      return errorOutcome('out_of_memory', 'the object ran out of memory');
    }
    const code = codeOf(thrown) || 'execution_error';
    return errorOutcome(code, errorText(thrown), stackOf(thrown));
  }

  function isThenable(value) {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
    return typeof value.then === 'function';
  }

  // ---- host requests ------------------------------------------------------

  function host(request) {
    return answerOf(hostCall(encode(request)));
  }

  // Storage operations on one key (`op` is 'get', 'put' or 'delete'; `key`
  // a string, `value` JSON text or absent) are most of the traffic, so
  // their requests are written out directly rather than by `encode`.
  function hostKey(op, key, value) {
    let request = '{"op":"' + op + '","key":' + JSONstringify(key);
    if (value !== undefined) request += ',"value":' + JSONstringify(value);
    return answerOf(hostCall(request + '}'));
  }

  // A host answer: '=' and the value's JSON, or '!' and the error's.
  function answerOf(answer) {
    if (typeof answer !== 'string') {
      throw coded('execution_error', 'the host rejected a request');
    }
    if (answer === '=null') return null;
    const parsed = JSONparse(ReflectApply(StringSlice, answer, [1]));
    if (answer[0] === '=') return parsed;
    const Ctor = parsed.name === 'RangeError' ? RangeErrorCtor : ErrorCtor;
    throw coded(parsed.code, parsed.message, Ctor);
  }

  // ---- console ------------------------------------------------------------

  function formatArg(value) {
    if (typeof value === 'string') return value;
    if (value !== null && typeof value === 'object') {
      try {
        if (value instanceof ErrorCtor) return errorText(value);
        const json = JSONstringify(value);
        if (json !== undefined) return json;
      } catch (_) { /* fall back below */ }
    }
    return errorText(value);
  }

  function logger(level) {
    return function (...args) {
      let line = '';
      for (let i = 0; i < args.length; i++) {
        line += (i === 0 ? '' : ' ') + formatArg(args[i]);
      }
      // One call, one log line: line breaks are shown, not obeyed.
      hostLog(level, wellFormed(line).replace(/\r/g, '\\r').replace(/\n/g, '\\n'));
    };
  }

  const console = freeze({
    debug: logger(LOG_DEBUG),
    log: logger(LOG_INFO),
    info: logger(LOG_INFO),
    warn: logger(LOG_WARN),
    error: logger(LOG_ERROR),
  });
  defineProperty(globalThis, 'console', { value: console, writable: true, configurable: true });

  // ---- storage ------------------------------------------------------------

  // A key as stored: a string, well-formed (keys are UTF-8 on the host).
  function storageKey(key) {
    if (typeof key !== 'string') {
      throw coded('bad_request', 'storage key must be a string, got ' + typeof key);
    }
    return wellFormed(key);
  }

  function encodeValue(value) {
    let text;
    try {
      text = JSONstringify(value === undefined ? null : value);
    } catch (e) {
      throw coded('bad_request', 'storage value cannot be encoded as JSON: ' + errorText(e));
    }
    if (text === undefined) {
      throw coded('bad_request', 'storage value cannot be encoded as JSON: ' + typeof value);
    }
    return text;
  }

  // A stored value (a number from storage is an integer where it can be:
  // see intIfIntegral in clone.js).
  function decodeValue(text) {
    return text === null || text === undefined ? undefined : internals.clone.intIfIntegral(JSONparse(text));
  }

  function listOptions(options) {
    if (options === undefined || options === null) return {};
    if (typeof options === 'string') return { prefix: options };
    if (typeof options !== 'object') {
      throw coded('bad_request', 'list options must be an object or a prefix string');
    }
    const request = {};
    const bounds = ['prefix', 'start', 'startAfter', 'end'];
    for (let i = 0; i < bounds.length; i++) {
      const bound = options[bounds[i]];
      if (bound === undefined || bound === null) continue;
      if (typeof bound !== 'string') {
        throw coded('bad_request', 'list ' + bounds[i] + ' must be a string', TypeErrorCtor);
      }
      request[bounds[i]] = wellFormed(bound);
    }
    const reverse = options.reverse;
    if (reverse !== undefined && reverse !== null) {
      if (typeof reverse !== 'boolean') {
        throw coded('bad_request', 'list reverse must be a boolean', TypeErrorCtor);
      }
      request.reverse = reverse;
    }
    const limit = options.limit;
    if (limit !== undefined && limit !== null) {
      if (typeof limit !== 'number' || !(limit >= 1) || limit % 1 !== 0) {
        throw coded('bad_request', 'list limit must be a positive integer');
      }
      request.limit = limit;
    }
    return request;
  }

  // Epoch milliseconds from a number or a Date; anything else, and times
  // that are not positive, are a TypeError (a bad_request if uncaught).
  function alarmTime(time) {
    let ms = time;
    if (time !== null && typeof time === 'object') {
      try {
        ms = ReflectApply(DateGetTime, time, []);
      } catch (_) {
        throw coded('bad_request', 'setAlarm expects epoch milliseconds or a Date', TypeErrorCtor);
      }
    }
    if (typeof ms !== 'number') {
      throw coded('bad_request', 'setAlarm expects epoch milliseconds or a Date, got ' + typeof ms,
        TypeErrorCtor);
    }
    let problem = null;
    if (ms !== ms) problem = 'it is not a number';
    else if (ms < 1) problem = 'it must be at least 1 (milliseconds since the epoch)';
    else if (ms > 8640000000000000) problem = 'it is past the latest time a Date can hold';
    if (problem !== null) {
      throw coded('bad_request', 'setAlarm cannot be called with an alarm time ' + StringCtor(ms) +
        ': ' + problem, TypeErrorCtor);
    }
    return MathTrunc(ms);
  }

  // A plain object of key -> value whose iteration (for...of) yields
  // [key, value] pairs in key order, whatever the keys look like.
  function listResult(entries) {
    const out = {};
    const pairs = [];
    for (let i = 0; i < entries.length; i++) {
      const key = entries[i][0];
      const value = decodeValue(entries[i][1]);
      setOwn(out, key, value);
      pairs[pairs.length] = [key, value];
    }
    defineProperty(out, SymbolIterator, {
      value: function* () {
        for (let i = 0; i < pairs.length; i++) yield pairs[i];
      },
      configurable: true,
    });
    return out;
  }

  // The storage of the object this instance serves. It is made while the
  // bundle image is, not per actor: what an actor makes itself lands on
  // private pages, and every closure it makes also writes the reference
  // count of the function it comes from, on a shared page of the image.
  const STORAGE = makeStorage();

  function makeStorage() {
    const storage = {
      get(key) {
        return decodeValue(hostKey('get', storageKey(key)));
      },
      put(key, value) {
        hostKey('put', storageKey(key), encodeValue(value));
      },
      delete(key) {
        return hostKey('delete', storageKey(key));
      },
      list(options) {
        const request = listOptions(options);
        request.op = 'list';
        return listResult(host(request));
      },
      deleteAll() {
        return host({ op: 'deleteAll' });
      },
      setAlarm(time) {
        host({ op: 'setAlarm', time: alarmTime(time) });
      },
      getAlarm() {
        return host({ op: 'getAlarm' });
      },
      deleteAlarm() {
        host({ op: 'deleteAlarm' });
      },
      transaction(callback) {
        if (typeof callback !== 'function') {
          throw coded('bad_request', 'transaction callback must be a function');
        }
        host({ op: 'transactionBegin' });
        let result;
        try {
          result = callback(storage);
        } catch (e) {
          host({ op: 'transactionRollback' });
          throw e;
        }
        let async = false;
        try {
          async = isThenable(result);
        } catch (e) {
          host({ op: 'transactionRollback' });
          throw e;
        }
        if (async) {
          host({ op: 'transactionRollback' });
          // The callback's promise may still reject; nobody awaits it.
          try { ReflectApply(PromiseThen, PromiseResolve.call(PromiseCtor, result), [undefined, () => {}]); } catch (_) { /* not a real promise */ }
          throw coded('bad_request',
            'transaction callback must be synchronous: it returned a promise, and its writes were rolled back');
        }
        host({ op: 'transactionCommit' });
        return result;
      },
    };
    return freeze(storage);
  }

  // ---- randomness ---------------------------------------------------------

  const Uint8ArrayCtor = Uint8Array;
  const TypedArrayProto = getPrototypeOf(Uint8Array.prototype);
  const typedArrayTag = getOwnPropertyDescriptor(TypedArrayProto, Symbol.toStringTag).get;
  const typedArrayBuffer = getOwnPropertyDescriptor(TypedArrayProto, 'buffer').get;
  const typedArrayOffset = getOwnPropertyDescriptor(TypedArrayProto, 'byteOffset').get;
  const typedArrayLength = getOwnPropertyDescriptor(TypedArrayProto, 'byteLength').get;
  const NumberParseInt = Number.parseInt;
  const INTEGER_ARRAYS = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array',
    'Uint16Array', 'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array'];
  const MAX_RANDOM_BYTES = 65536;

  // `length` random bytes from the host, in a new Uint8Array.
  function randomBytes(length) {
    const hex = host({ op: 'randomBytes', len: length });
    const bytes = new Uint8ArrayCtor(length);
    for (let i = 0; i < length; i++) {
      bytes[i] = NumberParseInt(ReflectApply(StringSlice, hex, [2 * i, 2 * i + 2]), 16);
    }
    return bytes;
  }

  function getRandomValues(array) {
    let tag;
    try {
      tag = ReflectApply(typedArrayTag, array, []);
    } catch (_) { /* not a typed array */ }
    let integer = false;
    for (let i = 0; i < INTEGER_ARRAYS.length; i++) {
      if (INTEGER_ARRAYS[i] === tag) integer = true;
    }
    if (!integer) {
      const error = new TypeErrorCtor('getRandomValues needs an integer typed array');
      error.name = 'TypeMismatchError';
      throw error;
    }
    const length = ReflectApply(typedArrayLength, array, []);
    if (length > MAX_RANDOM_BYTES) {
      const error = new ErrorCtor('getRandomValues fills at most 65536 bytes, not ' + length);
      error.name = 'QuotaExceededError';
      throw error;
    }
    const view = new Uint8ArrayCtor(ReflectApply(typedArrayBuffer, array, []),
      ReflectApply(typedArrayOffset, array, []), length);
    const bytes = randomBytes(length);
    for (let i = 0; i < length; i++) view[i] = bytes[i];
    return array;
  }

  function randomUUID() {
    const bytes = randomBytes(16);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let out = '';
    for (let i = 0; i < 16; i++) {
      if (i === 4 || i === 6 || i === 8 || i === 10) out += '-';
      out += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
    }
    return out;
  }

  if (typeof globalThis.crypto === 'undefined') {
    defineProperty(globalThis, 'crypto', {
      value: freeze({ getRandomValues, randomUUID }),
      writable: true,
      configurable: true,
    });
  }

  // Math.random is xoshiro128**, reseeded by the host for every actor (from
  // the operating system, or from --seed and the object in deterministic
  // mode), so actors that start from one pre-initialized image never share
  // a sequence. Bundle code that runs at load time sees a fixed seed.
  let s0 = 0x9e3779b9;
  let s1 = 0x243f6a88;
  let s2 = 0xb7e15162;
  let s3 = 0x85a308d3;
  const MathImul = Math.imul;
  const rotl = (x, k) => ((x << k) | (x >>> (32 - k))) >>> 0;
  const nextWord = () => {
    const result = MathImul(rotl(MathImul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 = (s2 ^ s0) >>> 0;
    s3 = (s3 ^ s1) >>> 0;
    s1 = (s1 ^ s2) >>> 0;
    s0 = (s0 ^ s3) >>> 0;
    s2 = (s2 ^ t) >>> 0;
    s3 = rotl(s3, 11);
    return result;
  };
  function reseed(words) {
    s0 = (words[0] >>> 0) || 1;
    s1 = words[1] >>> 0;
    s2 = words[2] >>> 0;
    s3 = words[3] >>> 0;
  }
  defineProperty(Math, 'random', {
    value: function random() {
      return ((nextWord() >>> 5) * 67108864 + (nextWord() >>> 6)) / 9007199254740992;
    },
    writable: true,
    configurable: true,
  });

  // ---- the other parts -----------------------------------------------------

  const internals = {
    natives, wellFormed, host, hostKey, coded, alarmTime, randomBytes,
    reportError(prefix, thrown) {
      hostLog(LOG_ERROR, prefix + errorText(thrown));
    },
  };
  internals.web = parts.web(internals);
  internals.clone = parts.clone(internals);
  const web = internals.web;
  const cloudflare = parts.cloudflare(internals);

  // ---- env and stubs ------------------------------------------------------

  function makeStub(id) {
    return freeze({
      id: freeze(id),
      rpc(method, args) {
        if (typeof method !== 'string') throw coded('bad_request', 'stub method must be a string');
        if (args === undefined) args = [];
        if (!ArrayIsArray(args)) throw coded('bad_request', 'stub rpc arguments must be an array');
        let encoded;
        try {
          encoded = JSONstringify(args);
        } catch (e) {
          throw coded('bad_request', 'stub rpc arguments cannot be encoded as JSON: ' + errorText(e));
        }
        const result = host({
          op: 'rpc', namespace: id.namespace, name: id.name, method, args: encoded,
        });
        return JSONparse(result);
      },
    });
  }

  function makeEnv(namespaces) {
    const env = {};
    for (let i = 0; i < namespaces.length; i++) {
      const namespace = namespaces[i];
      setOwn(env, namespace, freeze({
        getByName(name) {
          if (typeof name !== 'string') throw coded('bad_request', 'object name must be a string');
          return makeStub(host({ op: 'objectId', namespace, name }));
        },
      }));
    }
    return freeze(env);
  }

  // ---- classes and methods ------------------------------------------------

  function isConstructor(value) {
    if (typeof value !== 'function') return false;
    try {
      ReflectConstruct(StringCtor, [], value);
      return true;
    } catch (_) {
      return false;
    }
  }

  function isClassLike(value) {
    try {
      if (ReflectApply(StringStartsWith, ReflectApply(FunctionToString, value, []), ['class'])) return true;
      const proto = value.prototype;
      return proto !== null && typeof proto === 'object' &&
        ReflectApply(ArrayFilter, Object.getOwnPropertyNames(proto), [(name) => name !== 'constructor']).length > 0;
    } catch (_) {
      return false;
    }
  }

  // Whether `proto` is the prototype of a built-in class (Array, Map,
  // Error...), remembered per prototype: its constructor's source text is
  // all in the form the engine gives native code, which no JavaScript
  // source can have (`[native code]` does not parse).
  const NATIVE_SOURCE = /^function [^(]*\(\) \{\n {4}\[native code\]\n\}$/;
  const builtinPrototypes = new WeakMapCtor();
  function isBuiltinPrototype(proto) {
    let builtin = ReflectApply(WeakMapGet, builtinPrototypes, [proto]);
    if (builtin === undefined) {
      builtin = false;
      const descriptor = getOwnPropertyDescriptor(proto, 'constructor');
      if (descriptor && typeof descriptor.value === 'function') {
        try {
          const source = ReflectApply(FunctionToString, descriptor.value, []);
          // The expression would try every position of a class's source.
          builtin = ReflectApply(StringStartsWith, source, ['function ']) &&
            ReflectApply(RegExpTest, NATIVE_SOURCE, [source]);
        } catch (_) { /* not a function the engine can show */ }
      }
      ReflectApply(WeakMapSet, builtinPrototypes, [proto, builtin]);
    }
    return builtin;
  }

  // The function `name` names on the object's class chain, below
  // Object.prototype and any built-in class it extends; null for anything
  // that is not an RPC method.
  function rpcMethod(instance, name) {
    if (typeof name !== 'string' || name === '' || name[0] === '_') return null;
    if (RESERVED_METHODS[name] === true) return null;
    let proto = getPrototypeOf(instance);
    while (proto !== null && proto !== ObjectProto && !isBuiltinPrototype(proto)) {
      const descriptor = getOwnPropertyDescriptor(proto, name);
      if (descriptor) return typeof descriptor.value === 'function' ? descriptor.value : null;
      proto = getPrototypeOf(proto);
    }
    return null;
  }

  // ---- results ------------------------------------------------------------

  function rpcOutcome(value) {
    const json = JSONstringify(value === undefined ? null : value);
    return '{"ok":true,"result":' + (json === undefined ? 'null' : json) + '}';
  }

  function fetchOutcome(response) {
    if (web.isResponse(response)) return encode({ ok: true, response: web.responseForHost(response) });
    if (response === undefined || response === null) {
      return encode({ ok: true, response: { status: 204, headers: [], body: null } });
    }
    if (typeof response !== 'object') {
      throw coded('execution_error',
        'fetch must return an object with status, headers and body, not a ' + typeof response);
    }
    let status = response.status;
    if (status === undefined || status === null) status = 200;
    if (typeof status !== 'number' || status % 1 !== 0 || status < 200 || status > 599) {
      throw coded('execution_error', 'fetch returned an invalid status: ' + errorText(status));
    }
    const headers = [];
    let contentType = false;
    const given = response.headers;
    if (given !== undefined && given !== null) {
      if (typeof given !== 'object') throw coded('execution_error', 'fetch response headers must be an object');
      const names = ObjectKeys(given);
      for (let i = 0; i < names.length; i++) {
        const value = given[names[i]];
        if (value === undefined || value === null) continue;
        if (names[i].toLowerCase() === 'content-type') contentType = true;
        // An array sends one header line per value (several Set-Cookie).
        const values = ArrayIsArray(value) ? value : [value];
        for (let j = 0; j < values.length; j++) {
          headers[headers.length] = [names[i], wellFormed(StringCtor(values[j]))];
        }
      }
    }
    let body = response.body;
    if (body === undefined || body === null || status === 204 || status === 205 || status === 304) {
      body = null;
    } else if (typeof body === 'string') {
      body = wellFormed(body);
      if (!contentType) headers[headers.length] = ['content-type', 'text/plain; charset=utf-8'];
    } else {
      const json = JSONstringify(body);
      body = json === undefined ? 'null' : wellFormed(json);
      if (!contentType) headers[headers.length] = ['content-type', 'application/json'];
    }
    return encode({ ok: true, response: { status, headers, body } });
  }

  // ---- the actor ----------------------------------------------------------

  let objects = null;
  let instance = null;
  let className = '';
  let outcome = null;
  // 'reference' for CommonJS bundles, 'cloudflare' for ES modules.
  let api = 'reference';
  // Whether the bundle was evaluated as an ES module.
  let moduleBundle = false;

  // A Cloudflare fetch handler must answer with a Response.
  function cloudflareFetchOutcome(response) {
    if (!web.isResponse(response)) {
      throw new TypeErrorCtor("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
    }
    return encode({ ok: true, response: web.responseForHost(response) });
  }

  // Records how a dispatch ended once its value (or promise) is known.
  function settle(value, convert) {
    const finish = (settled) => {
      try {
        outcome = convert(settled);
      } catch (e) {
        outcome = failure(e);
      }
    };
    let thenable;
    try {
      thenable = isThenable(value);
    } catch (e) {
      outcome = failure(e);
      return;
    }
    if (!thenable) {
      finish(value);
      return;
    }
    try {
      const promise = ReflectApply(PromiseResolve, PromiseCtor, [value]);
      ReflectApply(PromiseThen, promise, [finish, (e) => { outcome = failure(e); }]);
    } catch (e) {
      outcome = failure(e);
    }
  }

  function startRpc(input) {
    const method = rpcMethod(instance, input.method);
    if (method === null) {
      throw coded('method_not_found', 'method `' + input.method + '` is not an RPC method of ' + className);
    }
    const args = input.args;
    const intIfIntegral = internals.clone.intIfIntegral;
    for (let i = 0; i < args.length; i++) args[i] = intIfIntegral(args[i]);
    return ReflectApply(method, instance, args);
  }

  // An RPC from a Cloudflare-flavour stub: arguments and result by
  // structured clone. An exception the method throws is the result too,
  // marked with "!", so that the caller gets it back as the same kind of
  // error; only the runtime's own errors (timeouts, out of memory) stay
  // failures of the dispatch.
  function startCloneRpc(input) {
    const clone = internals.clone;
    const thrownText = (e) => {
      try {
        return '!' + clone.serialize(e);
      } catch (_) {
        return '!' + clone.serialize(new ErrorCtor(errorText(e)));
      }
    };
    const method = rpcMethod(instance, input.method);
    if (method === null) {
      return thrownText(new TypeErrorCtor('The RPC receiver does not implement the method "' +
        StringCtor(input.method) + '".'));
    }
    let value;
    try {
      value = ReflectApply(method, instance, clone.deserialize(input.args));
    } catch (e) {
      if (codeOf(e) !== null || isOutOfMemory(e)) throw e;
      return thrownText(e);
    }
    return ReflectApply(PromiseThen, ReflectApply(PromiseResolve, PromiseCtor, [value]), [
      (settled) => clone.serialize(settled),
      (e) => {
        if (codeOf(e) !== null || isOutOfMemory(e)) throw e;
        return thrownText(e);
      },
    ]);
  }

  // A class without alarm() consumes its alarms.
  function startAlarm(input) {
    const handler = instance.alarm;
    if (typeof handler !== 'function') return undefined;
    const info = freeze({ retryCount: input.retryCount, isRetry: input.isRetry });
    return ReflectApply(handler, instance, [info]);
  }

  function startFetch(input) {
    const handler = instance.fetch;
    if (typeof handler !== 'function') throw coded('fetch_not_implemented', 'fetch not implemented');
    if (api === 'cloudflare') {
      const described = input.request;
      const request = web.requestFromHost({ method: described.method, url: described.objectUrl,
        headers: described.headers, bodyBase64: described.bodyBase64 });
      return ReflectApply(handler, instance, [request]);
    }
    const request = input.request;
    if (typeof request.bodyError === 'string') throw coded('bad_request', request.bodyError);
    // The reference request is {method, url, path, query, headers, body,
    // rawBody}; the fields for Cloudflare's Request are not part of it.
    delete request.objectUrl;
    delete request.bodyBase64;
    return ReflectApply(handler, instance, [request]);
  }

  // Describes an exception thrown while the bundle was compiled or run, with
  // the first stack frame (file and line) when there is one.
  function describeFailure(thrown) {
    let message = errorText(thrown);
    if (ReflectApply(StringIncludes, message, ['could not load module'])) {
      message += ' (a bundle can import only cloudflare:workers: bundle its dependencies into one file)';
    }
    if (!moduleBundle && /unsupported keyword: (export|import)|expecting '\('/.test(message) &&
        /\b(export|import)\b/.test(message)) {
      message += ' (to run the bundle as an ES module, name it .mjs)';
    }
    if (moduleBundle && /^ReferenceError: '?(exports|module|require)'? is not defined/.test(message)) {
      message += ' (the bundle was read as an ES module because a line starts with an import or export ' +
        'statement; name it .cjs to run it as CommonJS)';
    }
    const stack = stackOf(thrown);
    if (stack !== undefined) {
      const lines = stack.split('\n');
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i].trim();
        if (line.startsWith('at ')) {
          message += ' (' + line + ')';
          break;
        }
      }
    }
    return errorOutcome('bundle_error', message);
  }

  // ---- unhandled rejections ------------------------------------------------

  // Promises rejected with no handler yet. One that gets a handler later is
  // forgotten; those still unhandled when a dispatch ends are logged (they
  // do not fail the dispatch that happened to create them).
  const unhandled = new MapCtor();

  function trackRejection(promise, reason, handled) {
    if (handled) {
      ReflectApply(MapDelete, unhandled, [promise]);
    } else {
      ReflectApply(MapSet, unhandled, [promise, reason]);
    }
  }

  function reportUnhandled() {
    ReflectApply(MapForEach, unhandled, [(reason) => {
      hostLog(LOG_ERROR, 'unhandled promise rejection: ' + errorText(reason));
    }]);
    ReflectApply(MapClear, unhandled, []);
  }

  return freeze({
    trackRejection,

    // Runs the bundle's module function and describes exports.objects.
    load(moduleFn) {
      const module = { exports: {} };
      const require = (name) => {
        throw new ErrorCtor('require is not available to go-go-objects bundles (asked for `' +
          StringCtor(name) + '`); bundle dependencies into one file');
      };
      try {
        ReflectApply(moduleFn, undefined, [module.exports, module, require]);
        const exported = module.exports;
        objects = exported === null || exported === undefined ? undefined : exported.objects;
      } catch (e) {
        return describeFailure(e);
      }
      if (objects === null || (typeof objects !== 'object' && typeof objects !== 'function')) {
        return errorOutcome('bundle_error', 'the bundle does not set exports.objects to an object of classes');
      }
      const exports = [];
      const names = ObjectKeys(objects);
      for (let i = 0; i < names.length; i++) {
        exports[exports.length] = { name: names[i], isClass: isConstructor(objects[names[i]]) };
      }
      return encode({ ok: true, api, exports });
    },

    // The exports of `cloudflare:workers`, for module bundles to import.
    workersModule() {
      return cloudflare.workersModule;
    },

    // Describes the classes a module bundle exports (every exported class
    // but the default export); they get Cloudflare's API. An exported
    // plain function is a helper, not a class, unless its prototype has
    // methods (a class compiled to ES5).
    loadModule(namespace) {
      api = 'cloudflare';
      objects = {};
      const exports = [];
      const names = ObjectKeys(namespace);
      for (let i = 0; i < names.length; i++) {
        if (names[i] === 'default') continue;
        const value = namespace[names[i]];
        if (!isConstructor(value) || !isClassLike(value)) continue;
        setOwn(objects, names[i], value);
        exports[exports.length] = { name: names[i], isClass: true };
      }
      if (exports.length === 0) {
        return errorOutcome('bundle_error', 'the module exports no classes: export a class per Durable Object (export class Counter extends DurableObject { ... })');
      }
      return encode({ ok: true, api, exports });
    },

    describeFailure,

    // describeFailure for a module bundle.
    describeModuleFailure(thrown) {
      moduleBundle = true;
      return describeFailure(thrown);
    },

    // Runs `new Class(state, env)` (or `new Class(ctx, env)`) for this
    // actor's object.
    construct(inputJson) {
      const input = JSONparse(inputJson);
      outcome = null;
      className = input.className;
      const Class = objects !== null && hasOwn(objects, className) ? objects[className] : undefined;
      if (!isConstructor(Class)) {
        outcome = errorOutcome('execution_error', 'class `' + className + '` not found in exports.objects');
        return;
      }
      const words = input.randomSeed;
      reseed([NumberParseInt(words[0], 16), NumberParseInt(words[1], 16), NumberParseInt(words[2], 16),
        NumberParseInt(words[3], 16)]);
      try {
        if (api === 'cloudflare') {
          instance = ReflectConstruct(Class, [cloudflare.makeCtx(input), cloudflare.makeEnv(input.namespaces)]);
        } else {
          const state = { id: freeze(input.id), storage: STORAGE };
          instance = ReflectConstruct(Class, [state, makeEnv(input.namespaces)]);
        }
        outcome = rpcOutcome(null);
      } catch (e) {
        outcome = failure(e);
      }
    },

    // Starts one dispatch; its outcome is collected by takeOutcome once the
    // job queue is empty.
    dispatch(inputJson) {
      outcome = null;
      const input = JSONparse(inputJson);
      try {
        if (input.kind === 'rpc') {
          settle(startRpc(input), rpcOutcome);
        } else if (input.kind === 'cloneRpc') {
          settle(startCloneRpc(input), rpcOutcome);
        } else if (input.kind === 'fetch') {
          settle(startFetch(input), api === 'cloudflare' ? cloudflareFetchOutcome : fetchOutcome);
        } else if (input.kind === 'alarm') {
          // The handler's value is not used; only how it settled counts.
          settle(startAlarm(input), () => rpcOutcome(null));
        } else {
          outcome = errorOutcome('bad_request', 'unknown dispatch kind `' + input.kind + '`');
        }
      } catch (e) {
        outcome = failure(e);
      }
    },

    // Called when the job queue is empty: -1 when the current dispatch has
    // settled (for a Cloudflare object, with no transaction or
    // blockConcurrencyWhile left unfinished) or no timer is left that could
    // settle it, else how long until the next timer is due.
    nextTimerDelay() {
      if (outcome !== null && !(api === 'cloudflare' && cloudflare.busy())) return -1;
      return web.nextTimerDelay();
    },

    // Runs the timers that are due.
    runDueTimers: web.runDueTimers,

    // The outcome of the last construct or dispatch. Called when the job
    // queue is empty: a dispatch without an outcome then can never settle.
    takeOutcome() {
      if (api === 'cloudflare') {
        try {
          cloudflare.abandonTransactions();
        } catch (e) {
          outcome = failure(e);
        }
        // A blockConcurrencyWhile callback that failed resets the object,
        // as in Cloudflare.
        const blocked = cloudflare.takeBlockerFailure();
        if (blocked !== undefined) {
          outcome = errorOutcome('abandoned', 'blockConcurrencyWhile() callback failed, so the object is reset: ' +
            errorText(blocked.error));
        }
      }
      reportUnhandled();
      const taken = outcome;
      outcome = null;
      if (taken !== null) return taken;
      if (api === 'cloudflare') {
        // workerd answers such a request with a 500; as for a timeout, its
        // writes are dropped and the object is discarded.
        return errorOutcome('abandoned',
          'The script will never generate a response: the handler returned a promise that can never settle (no job, timer or host call is left that could resolve it)');
      }
      return errorOutcome('never_settles',
        'the handler returned a promise that can never settle: no job, timer or host call is left that could resolve it');
    },
  });
})
