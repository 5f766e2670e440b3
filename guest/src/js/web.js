// The web platform pieces a Durable Object uses: DOMException, Headers,
// Request, Response, URL, URLSearchParams, atob, btoa, queueMicrotask and
// timers.
//
// Evaluated to a factory that the prelude calls with its internals before
// any bundle code runs; it installs the classes as globals and returns the
// helpers the rest of the runtime needs (reading a Response into an
// outcome, building a Request from the host's description, running timers).
// Per-instance state lives in WeakMaps, so a bundle cannot reach or forge it.
(function (internals) {
  'use strict';

  const natives = internals.natives;
  const ReflectApply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const ObjectKeys = Object.keys;
  const ArrayIsArray = Array.isArray;
  const StringCtor = String;
  const NumberCtor = Number;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const SyntaxErrorCtor = SyntaxError;
  const WeakMapCtor = WeakMap;
  const WeakMapGet = WeakMap.prototype.get;
  const WeakMapSet = WeakMap.prototype.set;
  const WeakMapHas = WeakMap.prototype.has;
  const Uint8ArrayCtor = Uint8Array;
  const ArrayBufferCtor = ArrayBuffer;
  const ArrayBufferIsView = ArrayBuffer.isView;
  const ArrayBufferSlice = ArrayBuffer.prototype.slice;
  const arrayBufferLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get;
  const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
  const viewBuffer = Object.getOwnPropertyDescriptor(TypedArrayProto, 'buffer').get;
  const viewOffset = Object.getOwnPropertyDescriptor(TypedArrayProto, 'byteOffset').get;
  const viewLength = Object.getOwnPropertyDescriptor(TypedArrayProto, 'byteLength').get;
  const DataViewProto = DataView.prototype;
  const dataViewBuffer = Object.getOwnPropertyDescriptor(DataViewProto, 'buffer').get;
  const dataViewOffset = Object.getOwnPropertyDescriptor(DataViewProto, 'byteOffset').get;
  const dataViewLength = Object.getOwnPropertyDescriptor(DataViewProto, 'byteLength').get;
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const PromiseCtor = Promise;
  const PromiseResolve = Promise.resolve;
  const PromiseThen = Promise.prototype.then;
  const DateNow = Date.now;
  const SymbolIterator = Symbol.iterator;
  const SymbolToStringTag = Symbol.toStringTag;
  const encodeURIComponentFn = encodeURIComponent;
  const TextEncoderCtor = globalThis.TextEncoder;
  const TextDecoderCtor = globalThis.TextDecoder;
  const utf8Encoder = new TextEncoderCtor();
  const utf8Decoder = new TextDecoderCtor();
  const utf8Encode = (text) => ReflectApply(TextEncoderCtor.prototype.encode, utf8Encoder, [text]);
  const utf8Decode = (bytes) => ReflectApply(TextDecoderCtor.prototype.decode, utf8Decoder, [bytes]);
  const wellFormed = internals.wellFormed;

  function install(name, value) {
    defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }

  function slot(map, object, what) {
    const state = ReflectApply(WeakMapGet, map, [object]);
    if (state === undefined) throw new TypeErrorCtor('Illegal invocation: not a ' + what);
    return state;
  }

  // ---- DOMException -------------------------------------------------------

  const DOM_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };

  class DOMException extends ErrorCtor {
    constructor(message = '', name = 'Error') {
      super(StringCtor(message));
      defineProperty(this, 'name', { value: StringCtor(name), writable: true, configurable: true });
    }

    get code() {
      const code = DOM_CODES[this.name];
      return typeof code === 'number' ? code : 0;
    }
  }
  defineProperty(DOMException.prototype, SymbolToStringTag, { value: 'DOMException', configurable: true });
  install('DOMException', DOMException);

  // ---- bytes --------------------------------------------------------------

  // A copy of the bytes of an ArrayBuffer or a view, as a Uint8Array; null
  // for anything else.
  function bytesOf(value) {
    if (value === null || typeof value !== 'object') return null;
    try {
      const length = ReflectApply(arrayBufferLength, value, []);
      return new Uint8ArrayCtor(ReflectApply(ArrayBufferSlice, value, [0, length]));
    } catch (_) { /* not an ArrayBuffer */ }
    if (!ArrayBufferIsView(value)) return null;
    let buffer;
    let offset;
    let length;
    try {
      buffer = ReflectApply(viewBuffer, value, []);
      offset = ReflectApply(viewOffset, value, []);
      length = ReflectApply(viewLength, value, []);
    } catch (_) {
      buffer = ReflectApply(dataViewBuffer, value, []);
      offset = ReflectApply(dataViewOffset, value, []);
      length = ReflectApply(dataViewLength, value, []);
    }
    return new Uint8ArrayCtor(ReflectApply(ArrayBufferSlice, buffer, [offset, offset + length]));
  }

  function bytesToBase64(bytes) {
    return natives.bytesToBase64(ReflectApply(viewBuffer, bytes, []), ReflectApply(viewOffset, bytes, []),
      ReflectApply(viewLength, bytes, []));
  }

  function base64ToBytes(text) {
    const buffer = natives.base64ToBytes(text);
    if (buffer === null || buffer === undefined) throw new TypeErrorCtor('invalid base64 from the host');
    return new Uint8ArrayCtor(buffer);
  }

  // ---- atob, btoa, queueMicrotask ------------------------------------------

  function btoa(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("Failed to execute 'btoa': 1 argument required");
    const encoded = natives.latin1ToBase64(StringCtor(data));
    if (encoded === null || encoded === undefined) {
      throw new DOMException('The string to be encoded contains characters outside of the Latin1 range.',
        'InvalidCharacterError');
    }
    return encoded;
  }

  function atob(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("Failed to execute 'atob': 1 argument required");
    const text = StringCtor(data).replace(/[\t\n\f\r ]/g, '');
    const decoded = /^[A-Za-z0-9+/]*={0,2}$/.test(text) ? natives.base64ToLatin1(text) : null;
    if (decoded === null || decoded === undefined) {
      throw new DOMException('The string to be decoded is not correctly encoded.', 'InvalidCharacterError');
    }
    return decoded;
  }

  function queueMicrotask(callback) {
    if (typeof callback !== 'function') {
      throw new TypeErrorCtor("Failed to execute 'queueMicrotask': parameter 1 is not of type 'Function'.");
    }
    ReflectApply(PromiseThen, ReflectApply(PromiseResolve, PromiseCtor, []), [() => callback()]);
  }

  install('atob', atob);
  install('btoa', btoa);
  install('queueMicrotask', queueMicrotask);

  // ---- timers -------------------------------------------------------------

  // Timers run inside the dispatch that is waiting for them: when the job
  // queue is empty and the dispatch has not settled, the engine sleeps until
  // the earliest timer is due (never past the dispatch's deadline) and runs
  // it.
  // TODO: timers still pending when a dispatch settles (and so the rest of
  // a ctx.waitUntil promise waiting on one) run only during the object's
  // next dispatch, not on their own.

  // Pending timers by id, and the same timers in due order (earliest
  // first, then by id), so that finding the next one costs nothing and
  // running the due ones costs only as much as there are.
  const timers = new Map();
  let queue = [];
  let nextTimerId = 1;

  function enqueue(timer) {
    let low = 0;
    let high = queue.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const other = queue[mid];
      if (other.due < timer.due || (other.due === timer.due && other.id < timer.id)) low = mid + 1;
      else high = mid;
    }
    queue.splice(low, 0, timer);
  }

  function addTimer(callback, delay, args, repeat) {
    if (typeof callback !== 'function') {
      throw new TypeErrorCtor('timer callback must be a function (strings are not evaluated)');
    }
    let ms = NumberCtor(delay);
    if (!(ms >= 0)) ms = 0;
    if (ms > 2147483647) ms = 1;
    const id = nextTimerId++;
    const timer = { id, due: ReflectApply(DateNow, Date, []) + ms, ms, callback, args, repeat };
    timers.set(id, timer);
    enqueue(timer);
    return id;
  }

  function clearTimer(id) {
    // The queue drops it when it reaches the front.
    timers.delete(NumberCtor(id));
  }

  install('setTimeout', (callback, delay, ...args) => addTimer(callback, delay, args, false));
  install('setInterval', (callback, delay, ...args) => addTimer(callback, delay, args, true));
  install('clearTimeout', clearTimer);
  install('clearInterval', clearTimer);

  // The earliest timer still pending, dropping cleared ones on the way.
  function earliest() {
    let start = 0;
    while (start < queue.length && timers.get(queue[start].id) !== queue[start]) start++;
    if (start > 0) queue = queue.slice(start);
    return queue.length > 0 ? queue[0] : undefined;
  }

  // Milliseconds until the earliest timer is due (0 if one is), or -1.
  function nextTimerDelay() {
    const timer = earliest();
    if (timer === undefined) return -1;
    const wait = timer.due - ReflectApply(DateNow, Date, []);
    return wait > 0 ? wait : 0;
  }

  // Runs every timer that is due, earliest first; a throwing callback is
  // logged and does not stop the others. Timers that callbacks add run in
  // a later round.
  function runDueTimers() {
    const now = ReflectApply(DateNow, Date, []);
    const due = [];
    for (let timer = earliest(); timer !== undefined && timer.due <= now; timer = earliest()) {
      queue.shift();
      due[due.length] = timer;
    }
    for (let i = 0; i < due.length; i++) {
      const timer = due[i];
      if (timers.get(timer.id) !== timer) continue;
      if (timer.repeat) {
        timer.due = now + (timer.ms > 0 ? timer.ms : 1);
        enqueue(timer);
      } else {
        timers.delete(timer.id);
      }
      try {
        ReflectApply(timer.callback, undefined, timer.args);
      } catch (e) {
        internals.reportError('uncaught exception in a timer: ', e);
      }
    }
  }

  // In a list of [name, value] pairs, the first pair named `key` takes
  // `value` and the others named so go; with none, the pair is appended.
  function setPair(list, key, value) {
    let kept = 0;
    let placed = false;
    for (let i = 0; i < list.length; i++) {
      if (list[i][0] !== key) {
        list[kept++] = list[i];
      } else if (!placed) {
        list[kept++] = [key, value];
        placed = true;
      }
    }
    list.length = kept;
    if (!placed) list[list.length] = [key, value];
  }

  // ---- Headers ------------------------------------------------------------

  const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const HEADER_VALUE_FORBIDDEN = /[\0\r\n]/;
  const headerLists = new WeakMapCtor();

  function headerName(name) {
    const text = StringCtor(name);
    if (!HEADER_NAME.test(text)) throw new TypeErrorCtor('Invalid header name.');
    return text.toLowerCase();
  }

  function headerValue(value) {
    const text = StringCtor(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
    if (HEADER_VALUE_FORBIDDEN.test(text)) throw new TypeErrorCtor('Invalid header value.');
    return text;
  }

  class Headers {
    constructor(init) {
      ReflectApply(WeakMapSet, headerLists, [this, []]);
      if (init === undefined) return;
      if (init === null || (typeof init !== 'object' && typeof init !== 'function')) {
        throw new TypeErrorCtor("Failed to construct 'Headers': the provided value is not of type 'HeadersInit'.");
      }
      if (ReflectApply(WeakMapHas, headerLists, [init])) {
        const list = headerLists.get(init);
        for (let i = 0; i < list.length; i++) this.append(list[i][0], list[i][1]);
      } else if (typeof init[SymbolIterator] === 'function') {
        for (const pair of init) {
          const items = [...pair];
          if (items.length !== 2) {
            throw new TypeErrorCtor('Failed to construct \'Headers\': a header pair must have exactly two items.');
          }
          this.append(items[0], items[1]);
        }
      } else {
        const names = ObjectKeys(init);
        for (let i = 0; i < names.length; i++) this.append(names[i], init[names[i]]);
      }
    }

    append(name, value) {
      const list = slot(headerLists, this, 'Headers');
      list[list.length] = [headerName(name), headerValue(value)];
    }

    delete(name) {
      const list = slot(headerLists, this, 'Headers');
      const key = headerName(name);
      let kept = 0;
      for (let i = 0; i < list.length; i++) if (list[i][0] !== key) list[kept++] = list[i];
      list.length = kept;
    }

    get(name) {
      const list = slot(headerLists, this, 'Headers');
      const key = headerName(name);
      let out = null;
      for (let i = 0; i < list.length; i++) {
        if (list[i][0] === key) out = out === null ? list[i][1] : out + ', ' + list[i][1];
      }
      return out;
    }

    getSetCookie() {
      const list = slot(headerLists, this, 'Headers');
      const out = [];
      for (let i = 0; i < list.length; i++) if (list[i][0] === 'set-cookie') out[out.length] = list[i][1];
      return out;
    }

    getAll(name) {
      const key = headerName(name);
      if (key !== 'set-cookie') throw new TypeErrorCtor('getAll() can only be used with the header name "Set-Cookie".');
      return this.getSetCookie();
    }

    has(name) {
      const list = slot(headerLists, this, 'Headers');
      const key = headerName(name);
      for (let i = 0; i < list.length; i++) if (list[i][0] === key) return true;
      return false;
    }

    set(name, value) {
      const list = slot(headerLists, this, 'Headers');
      const key = headerName(name);
      setPair(list, key, headerValue(value));
    }

    forEach(callback, thisArg) {
      for (const [name, value] of this.entries()) ReflectApply(callback, thisArg, [value, name, this]);
    }

    // Sorted by name; values of one name combined with ", ", except
    // Set-Cookie, whose values stay separate.
    * entries() {
      const list = slot(headerLists, this, 'Headers');
      const names = [];
      for (let i = 0; i < list.length; i++) if (!names.includes(list[i][0])) names[names.length] = list[i][0];
      names.sort();
      for (let i = 0; i < names.length; i++) {
        if (names[i] === 'set-cookie') {
          const cookies = this.getSetCookie();
          for (let j = 0; j < cookies.length; j++) yield ['set-cookie', cookies[j]];
        } else {
          yield [names[i], this.get(names[i])];
        }
      }
    }

    * keys() {
      for (const [name] of this.entries()) yield name;
    }

    * values() {
      for (const [, value] of this.entries()) yield value;
    }

    [SymbolIterator]() {
      return this.entries();
    }
  }
  defineProperty(Headers.prototype, SymbolToStringTag, { value: 'Headers', configurable: true });
  install('Headers', Headers);

  // ---- bodies -------------------------------------------------------------

  const bodies = new WeakMapCtor();

  // The bytes and default content type of a body init.
  function extractBody(init) {
    if (init === undefined || init === null) return { bytes: null, type: null };
    if (typeof init === 'string') return { bytes: utf8Encode(init), type: 'text/plain;charset=UTF-8' };
    const bytes = bytesOf(init);
    if (bytes !== null) return { bytes, type: null };
    if (ReflectApply(WeakMapHas, searchLists, [init])) {
      return { bytes: utf8Encode(init.toString()), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
    }
    if (ReflectApply(WeakMapHas, bodies, [init])) {
      // A Request or Response as a body: its bytes, read now.
      const other = bodies.get(init);
      return { bytes: other.bytes, type: null };
    }
    // TODO: ReadableStream, Blob and FormData bodies are not implemented;
    // like any other object they are sent as their string conversion.
    return { bytes: utf8Encode(StringCtor(init)), type: 'text/plain;charset=UTF-8' };
  }

  function consume(object) {
    const body = slot(bodies, object, 'Request or Response');
    if (body.used) {
      return ReflectApply(PromiseCtor.reject, PromiseCtor, [new TypeErrorCtor(
        'Body has already been used. It can only be used once. Use tee() first if you need to read it twice.')]);
    }
    body.used = true;
    const bytes = body.bytes === null ? new Uint8ArrayCtor(0) : body.bytes;
    return ReflectApply(PromiseResolve, PromiseCtor, [bytes]);
  }

  // A one-chunk stand-in for a ReadableStream of the body's bytes.
  function bodyStream(object, body) {
    return {
      get locked() { return body.used; },
      getReader() {
        let done = false;
        const read = () => {
          if (done) return ReflectApply(PromiseResolve, PromiseCtor, [{ value: undefined, done: true }]);
          done = true;
          return ReflectApply(PromiseThen, consume(object), [(bytes) => ({ value: bytes, done: false })]);
        };
        return { read, releaseLock() {}, cancel() { done = true; body.used = true; return PromiseCtor.resolve(); } };
      },
    };
  }

  const bodyMethods = {
    get body() {
      const body = slot(bodies, this, 'Request or Response');
      return body.bytes === null ? null : bodyStream(this, body);
    },
    get bodyUsed() {
      return slot(bodies, this, 'Request or Response').used;
    },
    arrayBuffer() {
      return ReflectApply(PromiseThen, consume(this), [(bytes) => ReflectApply(viewBuffer, bytes, [])]);
    },
    bytes() {
      return consume(this);
    },
    text() {
      return ReflectApply(PromiseThen, consume(this), [(bytes) => utf8Decode(bytes)]);
    },
    json() {
      return ReflectApply(PromiseThen, consume(this), [(bytes) => JSONparse(utf8Decode(bytes))]);
    },
    blob() {
      return PromiseCtor.reject(new TypeErrorCtor('Blob bodies are not supported by go-go-objects'));
    },
    formData() {
      return PromiseCtor.reject(new TypeErrorCtor('FormData bodies are not supported by go-go-objects'));
    },
  };

  function installBody(Class) {
    const names = ['body', 'bodyUsed', 'arrayBuffer', 'bytes', 'text', 'json', 'blob', 'formData'];
    for (let i = 0; i < names.length; i++) {
      defineProperty(Class.prototype, names[i],
        Object.getOwnPropertyDescriptor(bodyMethods, names[i]));
    }
  }

  function copyBody(from) {
    const body = slot(bodies, from, 'Request or Response');
    if (body.used) throw new TypeErrorCtor('Body has already been used. It can only be used once.');
    return { bytes: body.bytes, used: false };
  }

  // ---- Request ------------------------------------------------------------

  const requests = new WeakMapCtor();
  const NORMALIZED_METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'];

  function requestMethod(method) {
    const text = StringCtor(method);
    if (!HEADER_NAME.test(text)) throw new TypeErrorCtor('Invalid HTTP method: ' + text);
    const upper = text.toUpperCase();
    if (upper === 'CONNECT' || upper === 'TRACE' || upper === 'TRACK') {
      throw new TypeErrorCtor('Forbidden HTTP method: ' + text);
    }
    return NORMALIZED_METHODS.includes(upper) ? upper : text;
  }

  class Request {
    constructor(input, init) {
      if (init === undefined || init === null) init = {};
      let state;
      let body;
      if (ReflectApply(WeakMapHas, requests, [input])) {
        const from = requests.get(input);
        state = { method: from.method, url: from.url, headers: new Headers(from.headers),
          redirect: from.redirect, cf: from.cf };
        body = init.body === undefined ? copyBody(input) : null;
      } else {
        let url;
        try {
          url = new URL(StringCtor(input)).href;
        } catch (_) {
          throw new TypeErrorCtor('Invalid URL: ' + StringCtor(input));
        }
        state = { method: 'GET', url, headers: new Headers(), redirect: 'follow', cf: undefined };
        body = { bytes: null, used: false };
      }
      if (init.method !== undefined) state.method = requestMethod(init.method);
      if (init.headers !== undefined) state.headers = new Headers(init.headers);
      if (init.redirect !== undefined) state.redirect = StringCtor(init.redirect);
      if (init.cf !== undefined) state.cf = init.cf;
      if (init.body !== undefined && init.body !== null) {
        if (state.method === 'GET' || state.method === 'HEAD') {
          throw new TypeErrorCtor('Request with a GET or HEAD method cannot have a body.');
        }
        const extracted = extractBody(init.body);
        body = { bytes: extracted.bytes, used: false };
        if (extracted.type !== null && !state.headers.has('content-type')) {
          state.headers.set('content-type', extracted.type);
        }
      }
      ReflectApply(WeakMapSet, requests, [this, state]);
      ReflectApply(WeakMapSet, bodies, [this, body]);
    }

    get method() { return slot(requests, this, 'Request').method; }
    get url() { return slot(requests, this, 'Request').url; }
    get headers() { return slot(requests, this, 'Request').headers; }
    get redirect() { return slot(requests, this, 'Request').redirect; }
    get cf() { return slot(requests, this, 'Request').cf; }
    get signal() { return null; }

    clone() {
      slot(requests, this, 'Request');
      return new Request(this);
    }
  }
  installBody(Request);
  defineProperty(Request.prototype, SymbolToStringTag, { value: 'Request', configurable: true });
  install('Request', Request);

  // The Request an object's fetch handler receives, from the host's
  // description: method, url, header pairs and the body in base64.
  function requestFromHost(described) {
    const request = new Request(described.url, { method: described.method, headers: described.headers });
    if (described.bodyBase64 !== undefined && described.bodyBase64 !== '') {
      bodies.get(request).bytes = base64ToBytes(described.bodyBase64);
    }
    return request;
  }

  // ---- Response -----------------------------------------------------------

  const responses = new WeakMapCtor();
  const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

  class Response {
    constructor(body, init) {
      if (init === undefined || init === null) init = {};
      const status = init.status === undefined ? 200 : NumberCtor(init.status);
      if (!(status % 1 === 0 && status >= 200 && status <= 599)) {
        throw new RangeErrorCtor('Responses may only be constructed with status codes in the range 200 to 599, inclusive.');
      }
      const statusText = init.statusText === undefined ? '' : StringCtor(init.statusText);
      if (!REASON_PHRASE.test(statusText)) throw new TypeErrorCtor('Invalid statusText.');
      const headers = new Headers(init.headers);
      const extracted = extractBody(body);
      if (extracted.bytes !== null && (status === 204 || status === 205 || status === 304)) {
        throw new TypeErrorCtor('Response with null body status (101, 204, 205, or 304) cannot have a body.');
      }
      if (extracted.type !== null && !headers.has('content-type')) headers.set('content-type', extracted.type);
      ReflectApply(WeakMapSet, responses, [this, { status, statusText, headers, webSocket: init.webSocket }]);
      ReflectApply(WeakMapSet, bodies, [this, { bytes: extracted.bytes, used: false }]);
    }

    static json(data, init) {
      const text = JSONstringify(data);
      if (text === undefined) throw new TypeErrorCtor('Response.json: the value cannot be converted to JSON');
      const response = new Response(text, init);
      const headers = responses.get(response).headers;
      if (init === undefined || init === null || init.headers === undefined || !new Headers(init.headers).has('content-type')) {
        headers.set('content-type', 'application/json');
      }
      return response;
    }

    static redirect(url, status) {
      const code = status === undefined ? 302 : NumberCtor(status);
      if (![301, 302, 303, 307, 308].includes(code)) {
        throw new RangeErrorCtor('Invalid redirect status code: ' + StringCtor(status));
      }
      return new Response(null, { status: code, headers: { location: new URL(StringCtor(url)).href } });
    }

    get status() { return slot(responses, this, 'Response').status; }
    get statusText() { return slot(responses, this, 'Response').statusText; }
    get headers() { return slot(responses, this, 'Response').headers; }
    get ok() {
      const status = slot(responses, this, 'Response').status;
      return status >= 200 && status <= 299;
    }
    get redirected() { return false; }
    get type() { return 'default'; }
    get url() { return ''; }
    get webSocket() { return slot(responses, this, 'Response').webSocket || null; }

    clone() {
      const state = slot(responses, this, 'Response');
      const copy = new Response(null, { status: state.status, statusText: state.statusText, headers: state.headers });
      bodies.set(copy, copyBody(this));
      return copy;
    }
  }
  installBody(Response);
  defineProperty(Response.prototype, SymbolToStringTag, { value: 'Response', configurable: true });
  install('Response', Response);

  function isResponse(value) {
    return value !== null && typeof value === 'object' && ReflectApply(WeakMapHas, responses, [value]);
  }

  // How the host sends a Response: status, reason text, header pairs (as
  // the Headers iterate them: sorted, one line per name except
  // Set-Cookie) and the body in base64 (null when there is none).
  function responseForHost(response) {
    const state = slot(responses, response, 'Response');
    const body = bodies.get(response);
    return {
      status: state.status,
      statusText: state.statusText === '' ? undefined : state.statusText,
      headers: [...state.headers.entries()],
      bodyBase64: body.bytes === null ? undefined : bytesToBase64(body.bytes),
    };
  }

  // ---- URLSearchParams ----------------------------------------------------

  const searchLists = new WeakMapCtor();
  const searchOwners = new WeakMapCtor();

  function percentDecode(text) {
    if (!/%[0-9A-Fa-f]{2}/.test(text)) return text;
    const bytes = utf8Encode(text);
    const out = new Uint8ArrayCtor(bytes.length);
    let n = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length + 0 && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) {
        out[n++] = hexValue(bytes[i + 1]) * 16 + hexValue(bytes[i + 2]);
        i += 2;
      } else {
        out[n++] = b;
      }
    }
    return utf8Decode(out.subarray(0, n));
  }

  function isHex(b) {
    return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  }

  function hexValue(b) {
    return b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x61 + 10;
  }

  function parseForm(text) {
    const list = [];
    const parts = text.split('&');
    for (let i = 0; i < parts.length; i++) {
      if (parts[i] === '') continue;
      const eq = parts[i].indexOf('=');
      const name = eq < 0 ? parts[i] : parts[i].slice(0, eq);
      const value = eq < 0 ? '' : parts[i].slice(eq + 1);
      list[list.length] = [percentDecode(name.replace(/\+/g, ' ')), percentDecode(value.replace(/\+/g, ' '))];
    }
    return list;
  }

  function formEncode(text) {
    return encodeURIComponentFn(wellFormed(text))
      .replace(/%20/g, '+')
      .replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  }

  class URLSearchParams {
    constructor(init) {
      let list = [];
      if (init === undefined || init === null) {
        list = [];
      } else if (ReflectApply(WeakMapHas, searchLists, [init])) {
        const from = searchLists.get(init);
        for (let i = 0; i < from.length; i++) list[i] = [from[i][0], from[i][1]];
      } else if (typeof init === 'object' || typeof init === 'function') {
        if (typeof init[SymbolIterator] === 'function') {
          for (const pair of init) {
            const items = [...pair];
            if (items.length !== 2) throw new TypeErrorCtor('Each URLSearchParams pair must have exactly two items.');
            list[list.length] = [wellFormed(StringCtor(items[0])), wellFormed(StringCtor(items[1]))];
          }
        } else {
          const names = ObjectKeys(init);
          for (let i = 0; i < names.length; i++) {
            list[list.length] = [wellFormed(names[i]), wellFormed(StringCtor(init[names[i]]))];
          }
        }
      } else {
        const text = StringCtor(init);
        list = parseForm(text[0] === '?' ? text.slice(1) : text);
      }
      ReflectApply(WeakMapSet, searchLists, [this, list]);
    }

    get size() { return slot(searchLists, this, 'URLSearchParams').length; }

    append(name, value) {
      const list = slot(searchLists, this, 'URLSearchParams');
      list[list.length] = [wellFormed(StringCtor(name)), wellFormed(StringCtor(value))];
      updateOwner(this);
    }

    delete(name, value) {
      const list = slot(searchLists, this, 'URLSearchParams');
      const key = StringCtor(name);
      const only = value === undefined ? undefined : StringCtor(value);
      let kept = 0;
      for (let i = 0; i < list.length; i++) {
        if (list[i][0] !== key || (only !== undefined && list[i][1] !== only)) list[kept++] = list[i];
      }
      list.length = kept;
      updateOwner(this);
    }

    get(name) {
      const list = slot(searchLists, this, 'URLSearchParams');
      const key = StringCtor(name);
      for (let i = 0; i < list.length; i++) if (list[i][0] === key) return list[i][1];
      return null;
    }

    getAll(name) {
      const list = slot(searchLists, this, 'URLSearchParams');
      const key = StringCtor(name);
      const out = [];
      for (let i = 0; i < list.length; i++) if (list[i][0] === key) out[out.length] = list[i][1];
      return out;
    }

    has(name, value) {
      const list = slot(searchLists, this, 'URLSearchParams');
      const key = StringCtor(name);
      const only = value === undefined ? undefined : StringCtor(value);
      for (let i = 0; i < list.length; i++) {
        if (list[i][0] === key && (only === undefined || list[i][1] === only)) return true;
      }
      return false;
    }

    set(name, value) {
      const list = slot(searchLists, this, 'URLSearchParams');
      setPair(list, wellFormed(StringCtor(name)), wellFormed(StringCtor(value)));
      updateOwner(this);
    }

    sort() {
      const list = slot(searchLists, this, 'URLSearchParams');
      // A stable sort by UTF-16 code units of the names.
      const indexed = list.map((pair, i) => [pair, i]);
      indexed.sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1]));
      for (let i = 0; i < indexed.length; i++) list[i] = indexed[i][0];
      updateOwner(this);
    }

    forEach(callback, thisArg) {
      const list = slot(searchLists, this, 'URLSearchParams');
      for (let i = 0; i < list.length; i++) ReflectApply(callback, thisArg, [list[i][1], list[i][0], this]);
    }

    * entries() {
      const list = slot(searchLists, this, 'URLSearchParams');
      for (let i = 0; i < list.length; i++) yield [list[i][0], list[i][1]];
    }

    * keys() {
      for (const [name] of this.entries()) yield name;
    }

    * values() {
      for (const [, value] of this.entries()) yield value;
    }

    [SymbolIterator]() {
      return this.entries();
    }

    toString() {
      const list = slot(searchLists, this, 'URLSearchParams');
      let out = '';
      for (let i = 0; i < list.length; i++) {
        out += (i === 0 ? '' : '&') + formEncode(list[i][0]) + '=' + formEncode(list[i][1]);
      }
      return out;
    }
  }
  defineProperty(URLSearchParams.prototype, SymbolToStringTag, { value: 'URLSearchParams', configurable: true });
  install('URLSearchParams', URLSearchParams);

  function updateOwner(params) {
    const owner = ReflectApply(WeakMapGet, searchOwners, [params]);
    if (owner !== undefined) {
      const text = params.toString();
      urls.get(owner).query = text === '' ? null : text;
    }
  }

  // ---- URL ----------------------------------------------------------------

  // A parser for the URLs Durable Objects see: special schemes (http,
  // https, ws, wss, ftp, file) with authority and path normalization, and
  // other schemes with an opaque path. Host names are lower-cased, not
  // converted to punycode.
  // TODO: internationalized host names (IDNA) and IPv4 shorthand forms
  // ("http://0x7f.1/") are not normalized the way the URL standard does.
  const SPECIAL_PORTS = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21', 'file:': '' };
  const urls = new WeakMapCtor();
  const FORBIDDEN_HOST = /[\0\t\n\r #/:<>?@[\\\]^|%]/;

  function isSpecial(protocol) {
    return Object.prototype.hasOwnProperty.call(SPECIAL_PORTS, protocol);
  }

  // Percent-encodes the characters of `text` that match `unsafe`, and every
  // non-ASCII character as its UTF-8 bytes.
  function encodeSet(text, unsafe) {
    let out = '';
    for (const c of wellFormed(text)) {
      const code = c.codePointAt(0);
      if (code < 0x21 || code > 0x7e || unsafe.indexOf(c) >= 0) {
        out += code > 0x7e ? encodeURIComponentFn(c) : '%' + (code < 16 ? '0' : '') + code.toString(16).toUpperCase();
      } else {
        out += c;
      }
    }
    return out;
  }

  const PATH_SET = '"#<>?`{}';
  const QUERY_SET = '"#<>';
  const SPECIAL_QUERY_SET = '"#<>\'';
  const FRAGMENT_SET = '"<>`';
  const USERINFO_SET = '"#<>?`{}/:;=@[\\]^|';

  function invalidUrl(input) {
    return new TypeErrorCtor('Invalid URL: ' + input);
  }

  function normalizePath(path, special) {
    // The path starts with a slash: the first segment is the one after it.
    const segments = (special ? path.split(/[/\\]/) : path.split('/')).slice(1);
    const out = [];
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i];
      const lower = segment.toLowerCase();
      const last = i === segments.length - 1;
      if (lower === '..' || lower === '.%2e' || lower === '%2e.' || lower === '%2e%2e') {
        if (out.length > 0) out.length -= 1;
        if (last) out[out.length] = '';
      } else if (lower === '.' || lower === '%2e') {
        if (last) out[out.length] = '';
      } else {
        out[out.length] = encodeSet(segment, PATH_SET);
      }
    }
    return '/' + out.join('/');
  }

  function parseAuthority(authority, special, input) {
    let rest = authority;
    let username = '';
    let password = '';
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = rest.slice(0, at);
      rest = rest.slice(at + 1);
      const colon = userinfo.indexOf(':');
      username = encodeSet(colon < 0 ? userinfo : userinfo.slice(0, colon), USERINFO_SET);
      password = colon < 0 ? '' : encodeSet(userinfo.slice(colon + 1), USERINFO_SET);
    }
    let hostname = rest;
    let port = '';
    const bracket = rest.lastIndexOf(']');
    const colon = rest.lastIndexOf(':');
    if (colon > bracket) {
      hostname = rest.slice(0, colon);
      port = rest.slice(colon + 1);
      if (!/^[0-9]*$/.test(port)) throw invalidUrl(input);
      if (port !== '') {
        const value = NumberCtor(port);
        if (value > 65535) throw invalidUrl(input);
        port = StringCtor(value);
      }
    }
    if (hostname[0] === '[') {
      if (hostname[hostname.length - 1] !== ']' || !/^\[[0-9A-Fa-f:.]+\]$/.test(hostname)) throw invalidUrl(input);
      hostname = hostname.toLowerCase();
    } else {
      hostname = percentDecode(hostname);
      if (special) hostname = hostname.toLowerCase();
      if (FORBIDDEN_HOST.test(hostname)) throw invalidUrl(input);
      if (special && hostname === '' && at >= 0) throw invalidUrl(input);
    }
    return { username, password, hostname, port };
  }

  // Splits off "?query" and "#fragment" from the end of `rest`.
  function splitTail(rest) {
    let fragment = null;
    let query = null;
    const hash = rest.indexOf('#');
    if (hash >= 0) {
      fragment = rest.slice(hash + 1);
      rest = rest.slice(0, hash);
    }
    const question = rest.indexOf('?');
    if (question >= 0) {
      query = rest.slice(question + 1);
      rest = rest.slice(0, question);
    }
    return { rest, query, fragment };
  }

  function parseUrl(input, base) {
    const text = StringCtor(input).replace(/^[\0- ]+|[\0- ]+$/g, '').replace(/[\t\n\r]/g, '');
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
    let record;
    if (scheme !== null) {
      const protocol = scheme[1].toLowerCase() + ':';
      const special = isSpecial(protocol);
      const after = text.slice(scheme[0].length);
      if (special && base !== undefined && base.protocol === protocol && !/^[/\\]/.test(after)) {
        return parseRelative(after, base, text);
      }
      record = { protocol, username: '', password: '', hostname: '', port: '', path: '', opaque: false,
        query: null, fragment: null };
      const tail = splitTail(after);
      let rest = tail.rest;
      if (special) {
        rest = rest.replace(/^[/\\]*/, (slashes) => {
          return protocol === 'file:' && slashes.length > 2 ? '//' : '';
        });
        const end = rest.search(/[/\\]/);
        const authority = end < 0 ? rest : rest.slice(0, end);
        const path = end < 0 ? '' : rest.slice(end);
        const parsed = parseAuthority(authority, true, text);
        if (parsed.hostname === '' && protocol !== 'file:') throw invalidUrl(text);
        record.username = parsed.username;
        record.password = parsed.password;
        record.hostname = parsed.hostname;
        record.port = parsed.port === SPECIAL_PORTS[protocol] ? '' : parsed.port;
        record.path = normalizePath(path, true);
      } else if (rest.startsWith('//')) {
        const end = rest.indexOf('/', 2);
        const authority = end < 0 ? rest.slice(2) : rest.slice(2, end);
        const parsed = parseAuthority(authority, false, text);
        record.username = parsed.username;
        record.password = parsed.password;
        record.hostname = parsed.hostname;
        record.port = parsed.port;
        record.path = end < 0 ? '' : normalizePath(rest.slice(end), false);
      } else if (rest.startsWith('/')) {
        record.path = normalizePath(rest, false);
      } else {
        record.opaque = true;
        record.path = encodeSet(rest, '');
      }
      record.query = tail.query === null ? null : encodeSet(tail.query, special ? SPECIAL_QUERY_SET : QUERY_SET);
      record.fragment = tail.fragment === null ? null : encodeSet(tail.fragment, FRAGMENT_SET);
      return record;
    }
    if (base === undefined || base.opaque) throw invalidUrl(text);
    return parseRelative(text, base, text);
  }

  function parseRelative(text, base, input) {
    const special = isSpecial(base.protocol);
    const record = { protocol: base.protocol, username: base.username, password: base.password,
      hostname: base.hostname, port: base.port, path: base.path, opaque: false, query: base.query, fragment: null };
    const tail = splitTail(text);
    const rest = tail.rest;
    const slash = special ? /^[/\\]{2}/ : /^\/\//;
    if (slash.test(rest)) {
      return parseUrl(base.protocol + rest + (tail.query === null ? '' : '?' + tail.query) +
        (tail.fragment === null ? '' : '#' + tail.fragment));
    }
    if (rest !== '') {
      record.query = null;
      if (rest[0] === '/' || (special && rest[0] === '\\')) {
        record.path = normalizePath(rest, special);
      } else {
        const dir = base.path.slice(0, base.path.lastIndexOf('/') + 1);
        record.path = normalizePath(dir + rest, special);
      }
    }
    if (tail.query !== null) record.query = encodeSet(tail.query, special ? SPECIAL_QUERY_SET : QUERY_SET);
    if (tail.fragment !== null) record.fragment = encodeSet(tail.fragment, FRAGMENT_SET);
    if (record.hostname === '' && record.protocol !== 'file:' && special) throw invalidUrl(input);
    return record;
  }

  function hostOf(record) {
    return record.hostname + (record.port === '' ? '' : ':' + record.port);
  }

  function hrefOf(record) {
    let out = record.protocol;
    if (!record.opaque && (record.hostname !== '' || isSpecial(record.protocol))) {
      out += '//';
      if (record.username !== '' || record.password !== '') {
        out += record.username + (record.password === '' ? '' : ':' + record.password) + '@';
      }
      out += hostOf(record);
    }
    out += record.path;
    if (record.query !== null) out += '?' + record.query;
    if (record.fragment !== null) out += '#' + record.fragment;
    return out;
  }

  function record(url) {
    return slot(urls, url, 'URL');
  }

  class URL {
    constructor(input, base) {
      let baseRecord;
      if (base !== undefined) {
        baseRecord = ReflectApply(WeakMapHas, urls, [base]) ? urls.get(base) : parseUrl(StringCtor(base));
      }
      const parsed = parseUrl(input, baseRecord);
      ReflectApply(WeakMapSet, urls, [this, parsed]);
    }

    static canParse(input, base) {
      try {
        new URL(input, base); // eslint-disable-line no-new
        return true;
      } catch (_) {
        return false;
      }
    }

    static parse(input, base) {
      try {
        return new URL(input, base);
      } catch (_) {
        return null;
      }
    }

    get href() { return hrefOf(record(this)); }
    set href(value) {
      const parsed = parseUrl(StringCtor(value));
      const state = record(this);
      for (const key of ObjectKeys(parsed)) state[key] = parsed[key];
      syncParams(this);
    }

    get origin() {
      const state = record(this);
      return isSpecial(state.protocol) && state.protocol !== 'file:' ? state.protocol + '//' + hostOf(state) : 'null';
    }

    get protocol() { return record(this).protocol; }
    set protocol(value) {
      const state = record(this);
      const next = StringCtor(value).replace(/:.*$/, '').toLowerCase() + ':';
      if (!/^[a-z][a-z0-9+.-]*:$/.test(next) || isSpecial(next) !== isSpecial(state.protocol)) return;
      state.protocol = next;
      if (state.port === SPECIAL_PORTS[next]) state.port = '';
    }

    get username() { return record(this).username; }
    set username(value) { record(this).username = encodeSet(StringCtor(value), USERINFO_SET); }
    get password() { return record(this).password; }
    set password(value) { record(this).password = encodeSet(StringCtor(value), USERINFO_SET); }

    get host() { return hostOf(record(this)); }
    set host(value) {
      const state = record(this);
      if (state.opaque) return;
      try {
        const parsed = parseAuthority(StringCtor(value).replace(/[/?#\\].*$/, ''), isSpecial(state.protocol), value);
        if (parsed.hostname === '' && isSpecial(state.protocol)) return;
        state.hostname = parsed.hostname;
        state.port = parsed.port === SPECIAL_PORTS[state.protocol] ? '' : parsed.port;
      } catch (_) { /* an invalid host leaves the URL unchanged */ }
    }

    get hostname() { return record(this).hostname; }
    set hostname(value) {
      const state = record(this);
      const port = state.port;
      this.host = StringCtor(value).replace(/:.*$/, '');
      state.port = port;
    }

    get port() { return record(this).port; }
    set port(value) {
      const state = record(this);
      const digits = /^[0-9]*/.exec(StringCtor(value))[0];
      if (digits === '' && StringCtor(value) !== '') return;
      if (digits !== '' && NumberCtor(digits) > 65535) return;
      const port = digits === '' ? '' : StringCtor(NumberCtor(digits));
      state.port = port === SPECIAL_PORTS[state.protocol] ? '' : port;
    }

    get pathname() { return record(this).path; }
    set pathname(value) {
      const state = record(this);
      if (state.opaque) return;
      const text = StringCtor(value);
      const special = isSpecial(state.protocol);
      state.path = normalizePath(text[0] === '/' || (special && text[0] === '\\') ? text : '/' + text, special);
    }

    get search() {
      const query = record(this).query;
      return query === null || query === '' ? '' : '?' + query;
    }
    set search(value) {
      const state = record(this);
      const text = StringCtor(value);
      const query = text[0] === '?' ? text.slice(1) : text;
      state.query = text === '' ? null : encodeSet(query, isSpecial(state.protocol) ? SPECIAL_QUERY_SET : QUERY_SET);
      syncParams(this);
    }

    get searchParams() {
      const state = record(this);
      if (state.params === undefined) {
        state.params = new URLSearchParams(state.query === null ? '' : state.query);
        ReflectApply(WeakMapSet, searchOwners, [state.params, this]);
      }
      return state.params;
    }

    get hash() {
      const fragment = record(this).fragment;
      return fragment === null || fragment === '' ? '' : '#' + fragment;
    }
    set hash(value) {
      const text = StringCtor(value);
      const fragment = text[0] === '#' ? text.slice(1) : text;
      record(this).fragment = text === '' ? null : encodeSet(fragment, FRAGMENT_SET);
    }

    toString() { return this.href; }
    toJSON() { return this.href; }
  }
  defineProperty(URL.prototype, SymbolToStringTag, { value: 'URL', configurable: true });
  for (const name of ['href', 'origin', 'protocol', 'username', 'password', 'host', 'hostname', 'port',
    'pathname', 'search', 'searchParams', 'hash']) {
    const descriptor = Object.getOwnPropertyDescriptor(URL.prototype, name);
    descriptor.enumerable = true;
    defineProperty(URL.prototype, name, descriptor);
  }
  install('URL', URL);

  // After the query changed through the URL, its URLSearchParams follows.
  function syncParams(url) {
    const state = record(url);
    if (state.params !== undefined) {
      searchLists.set(state.params, parseForm(state.query === null ? '' : state.query));
    }
  }

  return {
    DOMException,
    Headers,
    Request,
    Response,
    isResponse,
    requestFromHost,
    responseForHost,
    bytesOf,
    bytesToBase64,
    base64ToBytes,
    nextTimerDelay,
    runDueTimers,
    SyntaxErrorCtor,
    ArrayBufferCtor,
  };
})
