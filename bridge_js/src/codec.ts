/**
 * MessagePack for the WebSocket transport: a small codec for the JSON data
 * model, which is all the protocol carries.
 *
 * It is checked against @msgpack/msgpack (a dev dependency: the tests compare
 * bytes and decoded values on fixed and random inputs, and feed it fuzzed
 * bytes). Shipping our own keeps the browser entry small and the package free
 * of runtime dependencies.
 *
 * Decoding: Python's msgpack writes any integer >= 2^32 (every millisecond
 * timestamp) as a 64-bit int; those become `high * 2^32 + low`, an exact JS
 * number below 2^53, so `created_at` and friends arrive as plain numbers.
 * Integers of 2^53 or more in user payloads lose precision, as they would
 * through `JSON.parse`. Bin becomes a `Uint8Array`; ext types, which the
 * protocol never uses, are refused. A `__proto__` key becomes an own
 * property, as with `JSON.parse`.
 *
 * Encoding treats values the way `JSON.stringify` does, so stdio and
 * WebSocket carry the same thing: `toJSON()` is called (a `Date` becomes its
 * ISO string), `undefined`, functions and symbols are left out of objects and
 * become nil in arrays. Integers are sent as integers up to 2^53, other
 * numbers as float64, a `Uint8Array` as bin. For those values the bytes are
 * the ones @msgpack/msgpack's `Encoder` writes.
 *
 * @packageDocumentation
 */

/** Encodes values as MessagePack. */
export interface MsgpackEncoder {
  encode(value: unknown): Uint8Array<ArrayBuffer>;
}

const MAX_DEPTH = 512;
const utf8 = new TextEncoder();

class Writer {
  bytes = new Uint8Array(256);
  view = new DataView(this.bytes.buffer);
  pos = 0;

  reserve(n: number): number {
    const at = this.pos;
    if (at + n > this.bytes.length) {
      const bigger = new Uint8Array(Math.max(this.bytes.length * 2, at + n));
      bigger.set(this.bytes);
      this.bytes = bigger;
      this.view = new DataView(bigger.buffer);
    }
    this.pos += n;
    return at;
  }

  /** A type byte followed by an unsigned integer of 1, 2 or 4 bytes. */
  head(type: number, size: 1 | 2 | 4, n: number): void {
    const at = this.reserve(1 + size);
    this.bytes[at] = type;
    if (size === 1) this.bytes[at + 1] = n;
    else if (size === 2) this.view.setUint16(at + 1, n);
    else this.view.setUint32(at + 1, n);
  }

  /** A header for a length: fixed form below `fixLimit`, else 8/16/32-bit forms starting at `type8` (null: no 8-bit form). */
  length(n: number, fix: number, fixLimit: number, type8: number | null, type16: number): void {
    if (n < fixLimit) this.byte(fix + n);
    else if (type8 !== null && n < 0x100) this.head(type8, 1, n);
    else if (n < 0x10000) this.head(type16, 2, n);
    else this.head(type16 + 1, 4, n);
  }

  byte(b: number): void {
    const at = this.reserve(1); // Grows this.bytes: read it after.
    this.bytes[at] = b;
  }

  raw(data: Uint8Array): void {
    const at = this.reserve(data.length);
    this.bytes.set(data, at);
  }
}

function writeNumber(w: Writer, n: number): void {
  if (!Number.isSafeInteger(n)) {
    const at = w.reserve(9);
    w.bytes[at] = 0xcb;
    w.view.setFloat64(at + 1, n);
  } else if (n >= 0) {
    if (n < 0x80) w.byte(n);
    else if (n < 0x100) w.head(0xcc, 1, n);
    else if (n < 0x10000) w.head(0xcd, 2, n);
    else if (n < 0x100000000) w.head(0xce, 4, n);
    else {
      w.head(0xcf, 4, Math.floor(n / 0x100000000));
      w.raw(u32(n >>> 0));
    }
  } else if (n >= -0x20) {
    w.byte(n & 0xff);
  } else if (n >= -0x80) {
    w.head(0xd0, 1, n & 0xff);
  } else if (n >= -0x8000) {
    w.head(0xd1, 2, n & 0xffff);
  } else if (n >= -0x80000000) {
    w.head(0xd2, 4, n >>> 0);
  } else {
    w.head(0xd3, 4, Math.floor(n / 0x100000000) >>> 0);
    w.raw(u32(n >>> 0));
  }
}

function u32(n: number): Uint8Array {
  return Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function writeString(w: Writer, text: string): void {
  const n = text.length;
  if (n < 32) {
    // ASCII, the common case of keys and short values: straight into the buffer.
    const at = w.reserve(n + 1);
    let i = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      w.bytes[at + 1 + i] = c;
    }
    if (i === n) {
      w.bytes[at] = 0xa0 + n;
      return;
    }
    w.pos = at;
  }
  const data = utf8.encode(text);
  w.length(data.length, 0xa0, 32, 0xd9, 0xda);
  w.raw(data);
}

const skipped = (v: unknown): boolean => v === undefined || typeof v === "function" || typeof v === "symbol";

function write(w: Writer, value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new RangeError(`MessagePack: nested deeper than ${MAX_DEPTH} (a cycle?)`);
  if (value === null || skipped(value)) {
    w.byte(0xc0);
  } else if (typeof value === "boolean") {
    w.byte(value ? 0xc3 : 0xc2);
  } else if (typeof value === "number") {
    writeNumber(w, value);
  } else if (typeof value === "string") {
    writeString(w, value);
  } else if (typeof value === "bigint") {
    throw new TypeError("MessagePack: cannot encode a bigint (JSON cannot either)");
  } else if (ArrayBuffer.isView(value)) {
    const data = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    w.length(data.length, 0, 0, 0xc4, 0xc5);
    w.raw(data);
  } else if (Array.isArray(value)) {
    w.length(value.length, 0x90, 16, null, 0xdc);
    for (const item of value) write(w, item, depth + 1);
  } else {
    const object = value as { toJSON?: unknown };
    if (typeof object.toJSON === "function") {
      write(w, (object.toJSON as () => unknown)(), depth + 1);
      return;
    }
    const record = object as Record<string, unknown>;
    const keys = Object.keys(record).filter((key) => !skipped(record[key]));
    w.length(keys.length, 0x80, 16, null, 0xde);
    for (const key of keys) {
      writeString(w, key);
      write(w, record[key], depth + 1);
    }
  }
}

/** Encodes one value; see the module notes for how values map. */
export function encodeMsgpack(value: unknown): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  write(w, value, 0);
  return w.bytes.slice(0, w.pos);
}

/** An encoder with the client's settings (see {@link encodeMsgpack}). */
export function createMsgpackEncoder(): MsgpackEncoder {
  return { encode: encodeMsgpack };
}

/** Decodes MessagePack. */
export interface MsgpackDecoder {
  decode(bytes: Uint8Array): unknown;
}

/** A decoder with the client's settings (see {@link decodeMsgpack}). */
export function createMsgpackDecoder(): MsgpackDecoder {
  return { decode: decodeMsgpack };
}

const utf8Decoder = new TextDecoder();

/**
 * Decodes one MessagePack value that fills `bytes` exactly. Throws a
 * `RangeError` for truncated input or trailing bytes, a `TypeError` for ext
 * types, the reserved byte 0xc1 and map keys that are not strings or numbers.
 */
export function decodeMsgpack(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const take = (n: number): number => {
    const at = pos;
    if (at + n > bytes.length) throw new RangeError(`MessagePack: truncated input (needs ${n} bytes at offset ${at} of ${bytes.length})`);
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[take(1)] as number;
  const u16 = (): number => view.getUint16(take(2));
  const u32 = (): number => view.getUint32(take(4));
  const str = (n: number): string => {
    const at = take(n);
    if (n <= 32) {
      // ASCII, the common case of keys and short values, without TextDecoder's call cost.
      let out = "";
      for (let i = at; i < at + n; i++) {
        const c = bytes[i] as number;
        if (c >= 0x80) return utf8Decoder.decode(bytes.subarray(at, at + n));
        out += String.fromCharCode(c);
      }
      return out;
    }
    return utf8Decoder.decode(bytes.subarray(at, at + n));
  };
  const array = (n: number, depth: number): unknown[] => {
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(read(depth + 1));
    return out;
  };
  const map = (n: number, depth: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = read(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") throw new TypeError(`MessagePack: a map key must be a string or a number, not ${key === null ? "nil" : typeof key}`);
      const value = read(depth + 1);
      if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      else out[key] = value;
    }
    return out;
  };
  const read = (depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new RangeError(`MessagePack: nested deeper than ${MAX_DEPTH}`);
    const b = u8();
    if (b < 0x80) return b;
    if (b < 0x90) return map(b & 0x0f, depth);
    if (b < 0xa0) return array(b & 0x0f, depth);
    if (b < 0xc0) return str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
      case 0xc5:
      case 0xc6: {
        const n = b === 0xc4 ? u8() : b === 0xc5 ? u16() : u32();
        const at = take(n);
        return bytes.slice(at, at + n);
      }
      case 0xca:
        return view.getFloat32(take(4));
      case 0xcb:
        return view.getFloat64(take(8));
      case 0xcc:
        return u8();
      case 0xcd:
        return u16();
      case 0xce:
        return u32();
      case 0xcf:
        return u32() * 0x100000000 + u32();
      case 0xd0:
        return view.getInt8(take(1));
      case 0xd1:
        return view.getInt16(take(2));
      case 0xd2:
        return view.getInt32(take(4));
      case 0xd3:
        return view.getInt32(take(4)) * 0x100000000 + u32();
      case 0xd9:
        return str(u8());
      case 0xda:
        return str(u16());
      case 0xdb:
        return str(u32());
      case 0xdc:
        return array(u16(), depth);
      case 0xdd:
        return array(u32(), depth);
      case 0xde:
        return map(u16(), depth);
      case 0xdf:
        return map(u32(), depth);
      default:
        throw new TypeError(`MessagePack: type byte 0x${b.toString(16)} is not used by the protocol (ext or reserved)`);
    }
  };
  const value = read(0);
  if (pos !== bytes.length) throw new RangeError(`MessagePack: ${bytes.length - pos} extra bytes after the value`);
  return value;
}
