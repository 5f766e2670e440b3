// Structured clone: the value encoding of Cloudflare-flavour storage and of
// the global structuredClone.
//
// Values become JSON text that starts with "~" (so it can never be mistaken
// for the plain JSON that CommonJS-flavour storage writes). Inside, plain
// JSON stands for itself where it can (finite numbers other than -0,
// booleans, null, strings) and everything else is an array whose first item
// is a tag:
//
//   ["u"] undefined          ["n", "NaN" | "Infinity" | "-Infinity" | "-0"]
//   ["i", "123"] BigInt      ["r", k] the k-th object already seen (cycles, shared references)
//   ["O", [key, value, ...]] object     ["A", length, [index, value, ...], [key, value, ...]] array
//   ["D", ms | null] Date    ["R", source, flags] RegExp
//   ["M", [key, value, ...]] Map        ["S", [value, ...]] Set
//   ["E", name, message, stack, cause?] Error   ["X", name, message] DOMException
//   ["B", base64] ArrayBuffer  ["V", type, buffer, byteOffset, length] typed array or DataView
//   ["W", kind, value] boxed primitive (kind "s", "n", "b" or "i")
//
// Objects are numbered in the order the encoder first meets them and the
// decoder rebuilds them in the same order, so references resolve to the
// same object. Class instances become plain objects of their own enumerable
// properties, as in workerd; functions, symbols and other objects that
// cannot be cloned throw a DataCloneError.
(function (internals) {
  'use strict';

  const web = internals.web;
  const DOMException = web.DOMException;
  const ReflectApply = Reflect.apply;
  const ObjectKeys = Object.keys;
  const ObjectProto = Object.prototype;
  const getPrototypeOf = Object.getPrototypeOf;
  const ObjectToString = Object.prototype.toString;
  const ArrayIsArray = Array.isArray;
  const JSONstringify = JSON.stringify;
  const JSONparse = JSON.parse;
  const StringCtor = String;
  const MapCtor = Map;
  const SetCtor = Set;
  const DateCtor = Date;
  const RegExpCtor = RegExp;
  const BigIntCtor = BigInt;
  const ObjectCtor = Object;
  const ArrayBufferCtor = ArrayBuffer;
  const ArrayBufferSlice = ArrayBuffer.prototype.slice;
  const arrayBufferLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get;
  const MapGet = Map.prototype.get;
  const MapSetFn = Map.prototype.set;
  const MapHas = Map.prototype.has;
  const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, 'size').get;
  const MapEntries = Map.prototype.entries;
  const setSize = Object.getOwnPropertyDescriptor(Set.prototype, 'size').get;
  const SetValues = Set.prototype.values;
  const SetAdd = Set.prototype.add;
  const DateGetTime = Date.prototype.getTime;
  const regexpSource = Object.getOwnPropertyDescriptor(RegExp.prototype, 'source').get;
  const regexpFlags = Object.getOwnPropertyDescriptor(RegExp.prototype, 'flags').get;
  const NumberValueOf = Number.prototype.valueOf;
  const StringValueOf = String.prototype.valueOf;
  const BooleanValueOf = Boolean.prototype.valueOf;
  const BigIntValueOf = BigInt.prototype.valueOf;
  const BigIntToString = BigInt.prototype.toString;
  const TypedArrayProto = getPrototypeOf(Uint8Array.prototype);
  const typedArrayTag = Object.getOwnPropertyDescriptor(TypedArrayProto, Symbol.toStringTag).get;
  const viewBuffer = Object.getOwnPropertyDescriptor(TypedArrayProto, 'buffer').get;
  const viewOffset = Object.getOwnPropertyDescriptor(TypedArrayProto, 'byteOffset').get;
  const viewLength = Object.getOwnPropertyDescriptor(TypedArrayProto, 'length').get;
  const dataViewBuffer = Object.getOwnPropertyDescriptor(DataView.prototype, 'buffer').get;
  const dataViewOffset = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteOffset').get;
  const dataViewLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength').get;
  const VIEWS = {
    Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array, DataView,
  };
  if (typeof Float16Array === 'function') VIEWS.Float16Array = Float16Array; // eslint-disable-line no-undef
  const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const INDEX = /^(0|[1-9][0-9]*)$/;

  function cloneError(value) {
    let shown;
    try {
      shown = typeof value === 'symbol' ? value.toString() : typeof value === 'function'
        ? StringCtor(value) : '#<' + (ReflectApply(ObjectToString, value, []).slice(8, -1)) + '>';
    } catch (_) {
      shown = 'the value';
    }
    if (shown.length > 80) shown = shown.slice(0, 77) + '...';
    return new DOMException(shown + ' could not be cloned.', 'DataCloneError');
  }

  function brand(value, getter) {
    try {
      ReflectApply(getter, value, []);
      return true;
    } catch (_) {
      return false;
    }
  }

  // ---- encode -------------------------------------------------------------

  function encodeNode(value, seen) {
    switch (typeof value) {
      case 'undefined': return ['u'];
      case 'boolean': return value;
      case 'string': return value;
      case 'number':
        if (value !== value) return ['n', 'NaN'];
        if (value === Infinity) return ['n', 'Infinity'];
        if (value === -Infinity) return ['n', '-Infinity'];
        if (value === 0 && 1 / value < 0) return ['n', '-0'];
        return value;
      case 'bigint': return ['i', ReflectApply(BigIntToString, value, [])];
      case 'symbol':
      case 'function':
        throw cloneError(value);
      default:
        break;
    }
    if (value === null) return null;
    const known = ReflectApply(MapGet, seen, [value]);
    if (known !== undefined) return ['r', known];
    ReflectApply(MapSetFn, seen, [value, ReflectApply(mapSize, seen, [])]);

    if (ArrayIsArray(value)) {
      const length = value.length;
      const items = [];
      const extra = [];
      const keys = ObjectKeys(value);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (INDEX.test(key) && +key < length) {
          items[items.length] = +key;
          items[items.length] = encodeNode(value[key], seen);
        } else {
          extra[extra.length] = key;
          extra[extra.length] = encodeNode(value[key], seen);
        }
      }
      return extra.length === 0 ? ['A', length, items] : ['A', length, items, extra];
    }
    const proto = getPrototypeOf(value);
    if (proto === ObjectProto || proto === null) return encodeObject(value, seen);
    if (brand(value, DateGetTime)) {
      const ms = ReflectApply(DateGetTime, value, []);
      return ['D', ms === ms ? ms : null];
    }
    if (brand(value, regexpFlags) && brand(value, regexpSource) && ReflectApply(ObjectToString, value, []) === '[object RegExp]') {
      return ['R', ReflectApply(regexpSource, value, []), ReflectApply(regexpFlags, value, [])];
    }
    if (brand(value, mapSize)) {
      const entries = [];
      const iterator = ReflectApply(MapEntries, value, []);
      for (let step = iterator.next(); !step.done; step = iterator.next()) {
        entries[entries.length] = encodeNode(step.value[0], seen);
        entries[entries.length] = encodeNode(step.value[1], seen);
      }
      return ['M', entries];
    }
    if (brand(value, setSize)) {
      const items = [];
      const iterator = ReflectApply(SetValues, value, []);
      for (let step = iterator.next(); !step.done; step = iterator.next()) {
        items[items.length] = encodeNode(step.value, seen);
      }
      return ['S', items];
    }
    if (brand(value, arrayBufferLength)) {
      const length = ReflectApply(arrayBufferLength, value, []);
      const bytes = new Uint8Array(ReflectApply(ArrayBufferSlice, value, [0, length]));
      return ['B', web.bytesToBase64(bytes)];
    }
    const tag = ReflectApply(typedArrayTag, value, []);
    if (tag !== undefined) {
      return ['V', tag, encodeNode(ReflectApply(viewBuffer, value, []), seen),
        ReflectApply(viewOffset, value, []), ReflectApply(viewLength, value, [])];
    }
    if (brand(value, dataViewBuffer)) {
      return ['V', 'DataView', encodeNode(ReflectApply(dataViewBuffer, value, []), seen),
        ReflectApply(dataViewOffset, value, []), ReflectApply(dataViewLength, value, [])];
    }
    if (brand(value, NumberValueOf)) return ['W', 'n', encodeNode(ReflectApply(NumberValueOf, value, []), seen)];
    if (brand(value, StringValueOf)) return ['W', 's', ReflectApply(StringValueOf, value, [])];
    if (brand(value, BooleanValueOf)) return ['W', 'b', ReflectApply(BooleanValueOf, value, [])];
    if (brand(value, BigIntValueOf)) {
      return ['W', 'i', ReflectApply(BigIntToString, ReflectApply(BigIntValueOf, value, []), [])];
    }
    if (value instanceof DOMException) {
      return ['X', StringCtor(value.name), StringCtor(value.message)];
    }
    const kind = ReflectApply(ObjectToString, value, []);
    if (kind === '[object Error]') {
      let name = 'Error';
      try {
        const own = value.name;
        if (typeof own === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, own)) name = own;
      } catch (_) { /* a throwing getter: a plain Error */ }
      const message = value.message;
      const stack = value.stack;
      const node = ['E', name, message === undefined ? null : StringCtor(message),
        typeof stack === 'string' ? stack : null];
      if (Object.prototype.hasOwnProperty.call(value, 'cause')) node[4] = encodeNode(value.cause, seen);
      return node;
    }
    if (kind !== '[object Object]' && kind !== '[object Arguments]') {
      // WeakMap, WeakSet, Promise, WeakRef, generators and the like.
      throw cloneError(value);
    }
    return encodeObject(value, seen);
  }

  function encodeObject(value, seen) {
    const props = [];
    const keys = ObjectKeys(value);
    for (let i = 0; i < keys.length; i++) {
      props[props.length] = keys[i];
      props[props.length] = encodeNode(value[keys[i]], seen);
    }
    return ['O', props];
  }

  // The stored text of `value`; throws a DataCloneError for a value that
  // cannot be cloned.
  function serialize(value) {
    return '~' + JSONstringify(encodeNode(value, new MapCtor()));
  }

  // ---- decode -------------------------------------------------------------

  // QuickJS's JSON.parse makes every number a double, and arithmetic on
  // doubles takes the engine's slow path (fib(25) on a number from JSON: a
  // third slower than on an integer). A whole number that fits in 32 bits
  // becomes an integer again (`v | 0`), which JavaScript cannot tell apart;
  // -0 stays as it is.
  function intIfIntegral(v) {
    return typeof v === 'number' && (v | 0) === v && (v !== 0 || 1 / v > 0) ? v | 0 : v;
  }

  function decodeNode(node, refs) {
    if (node === null || typeof node !== 'object') return intIfIntegral(node);
    switch (node[0]) {
      case 'u': return undefined;
      case 'n': return node[1] === '-0' ? -0 : +node[1];
      case 'i': return BigIntCtor(node[1]);
      case 'r': return refs[node[1]];
      case 'O': {
        const out = {};
        refs[refs.length] = out;
        const props = node[1];
        for (let i = 0; i < props.length; i += 2) {
          Object.defineProperty(out, props[i], { value: decodeNode(props[i + 1], refs), writable: true,
            enumerable: true, configurable: true });
        }
        return out;
      }
      case 'A': {
        const out = new Array(node[1]);
        refs[refs.length] = out;
        const items = node[2];
        for (let i = 0; i < items.length; i += 2) out[items[i]] = decodeNode(items[i + 1], refs);
        const extra = node[3];
        if (extra !== undefined) {
          for (let i = 0; i < extra.length; i += 2) {
            Object.defineProperty(out, extra[i], { value: decodeNode(extra[i + 1], refs), writable: true,
              enumerable: true, configurable: true });
          }
        }
        return out;
      }
      case 'D': {
        const out = new DateCtor(node[1] === null ? NaN : node[1]);
        refs[refs.length] = out;
        return out;
      }
      case 'R': {
        const out = new RegExpCtor(node[1], node[2]);
        refs[refs.length] = out;
        return out;
      }
      case 'M': {
        const out = new MapCtor();
        refs[refs.length] = out;
        const entries = node[1];
        for (let i = 0; i < entries.length; i += 2) {
          ReflectApply(MapSetFn, out, [decodeNode(entries[i], refs), decodeNode(entries[i + 1], refs)]);
        }
        return out;
      }
      case 'S': {
        const out = new SetCtor();
        refs[refs.length] = out;
        const items = node[1];
        for (let i = 0; i < items.length; i++) ReflectApply(SetAdd, out, [decodeNode(items[i], refs)]);
        return out;
      }
      case 'E': {
        const Ctor = Object.prototype.hasOwnProperty.call(ERRORS, node[1]) ? ERRORS[node[1]] : Error;
        const out = node[2] === null ? new Ctor() : new Ctor(node[2]);
        refs[refs.length] = out;
        if (node[3] !== null) {
          Object.defineProperty(out, 'stack', { value: node[3], writable: true, configurable: true });
        }
        if (node.length > 4) {
          Object.defineProperty(out, 'cause', { value: decodeNode(node[4], refs), writable: true,
            configurable: true });
        }
        return out;
      }
      case 'X': {
        const out = new DOMException(node[2], node[1]);
        refs[refs.length] = out;
        return out;
      }
      case 'B': {
        const out = web.base64ToBytes(node[1]);
        const buffer = ReflectApply(viewBuffer, out, []);
        refs[refs.length] = buffer;
        return buffer;
      }
      case 'V': {
        const index = refs.length;
        refs[index] = null;
        const buffer = decodeNode(node[2], refs);
        const Ctor = Object.prototype.hasOwnProperty.call(VIEWS, node[1]) ? VIEWS[node[1]] : Uint8Array;
        const out = new Ctor(buffer, node[3], node[4]);
        refs[index] = out;
        return out;
      }
      case 'W': {
        let primitive = node[2];
        if (node[1] === 'i') primitive = BigIntCtor(primitive);
        else if (node[1] === 'n') primitive = decodeNode(primitive, []);
        const out = ObjectCtor(primitive);
        refs[refs.length] = out;
        return out;
      }
      default:
        throw new TypeError('stored value has an unknown tag ' + StringCtor(node[0]));
    }
  }

  // The value of stored text: structured clone text (starting with "~"),
  // or the plain JSON that CommonJS-flavour storage writes.
  function deserialize(text) {
    if (text === null || text === undefined) return undefined;
    if (text[0] !== '~') return intIfIntegral(JSONparse(text));
    return decodeNode(JSONparse(text.slice(1)), []);
  }

  function structuredClone(value, options) {
    if (arguments.length === 0) {
      throw new TypeError("Failed to execute 'structuredClone': 1 argument required, but only 0 present.");
    }
    void options; // TODO: the transfer option is accepted and ignored: nothing is detached.
    return deserialize(serialize(value));
  }
  Object.defineProperty(globalThis, 'structuredClone', { value: structuredClone, writable: true,
    configurable: true });

  return { serialize, deserialize, structuredClone, MapHas, intIfIntegral };
})
