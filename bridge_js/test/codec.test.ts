import { describe, expect, it } from "vitest";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { createMsgpackDecoder, createMsgpackEncoder, decodeMsgpack, encodeMsgpack } from "../src/index.js";

const hex = (s: string): Uint8Array => new Uint8Array(s.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);

describe("msgpack settings", () => {
  it("decodes Python's uint64 millisecond timestamps as exact JS numbers", () => {
    // msgpack.packb({"created_at": 1750000000123, "small": 5}) from Python's msgpack 1.x.
    const bytes = hex("82aa637265617465645f6174cf000001977420dc7ba5736d616c6c05");
    const value = createMsgpackDecoder().decode(bytes) as { created_at: unknown; small: unknown };
    expect(typeof value.created_at).toBe("number");
    expect(value.created_at).toBe(1_750_000_000_123);
    expect(value.small).toBe(5);
  });

  it("keeps integers up to 2^53 - 1 exact (int64 and uint64)", () => {
    const encoder = createMsgpackEncoder();
    const decoder = createMsgpackDecoder();
    for (const n of [2 ** 32, 2 ** 32 + 1, 4_102_444_800_000, Number.MAX_SAFE_INTEGER, -(2 ** 40) - 3]) {
      expect(decoder.decode(encoder.encode({ n }))).toEqual({ n });
    }
    // int64 (0xd3) as Python writes negative big ints.
    expect(decoder.decode(hex("d3ffffff0000000000"))).toBe(-(2 ** 40));
  });

  it("leaves undefined members out instead of sending nil", () => {
    const bytes = createMsgpackEncoder().encode({ group: "g", value: null, extra: undefined });
    expect(createMsgpackDecoder().decode(bytes)).toEqual({ group: "g", value: null });
  });
});

describe("encodeMsgpack (the client's own encoder)", () => {
  // @msgpack/msgpack's Encoder with the settings the client used before is the oracle.
  const oracle = new Encoder({ useBigInt64: false, ignoreUndefined: true, forceIntegerToFloat: false });
  const decoder = createMsgpackDecoder();
  const ints = [0, 1, 31, 127, 128, 255, 256, 65_535, 65_536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, 4_102_444_800_000, Number.MAX_SAFE_INTEGER];
  const negatives = [-1, -31, -32, -33, -127, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 40) - 3, Number.MIN_SAFE_INTEGER];
  const floats = [0.5, -1.25, 1e300, -1e-300, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60, Number.MAX_VALUE];
  const strings = ["", "a", "x".repeat(31), "x".repeat(32), "é☃😀", "y".repeat(255), "y".repeat(256), "z".repeat(65_535), "z".repeat(65_536)];
  const values: unknown[] = [
    null,
    true,
    false,
    ...ints,
    ...negatives,
    ...floats,
    ...strings,
    [],
    Array.from({ length: 15 }, (_, i) => i),
    Array.from({ length: 16 }, (_, i) => i),
    Array.from({ length: 70_000 }, (_, i) => i % 7),
    {},
    Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])),
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
    Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i])),
    new Uint8Array([1, 2, 3]),
    new Uint8Array(300),
    new Uint8Array(70_000),
    { jsonrpc: "2.0", id: 7, method: "task.submit", params: { task_type: "demo::sleep", payload: { ms: 1, nested: [1, "two", { three: 3.5 }] }, tags: { a: "b" } } },
  ];

  it("writes the same bytes as @msgpack/msgpack for the JSON data model", () => {
    for (const value of values) {
      const ours = encodeMsgpack(value);
      expect(Buffer.from(ours).equals(Buffer.from(oracle.encode(value))), JSON.stringify(value)?.slice(0, 60)).toBe(true);
    }
  });

  it("matches @msgpack/msgpack on 2,000 random JSON values", () => {
    let seed = 12_345;
    const rand = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const scalar = (): unknown => {
      const pick = Math.floor(rand() * 6);
      if (pick === 0) return null;
      if (pick === 1) return rand() < 0.5;
      if (pick === 2) return Math.floor((rand() - 0.5) * 2 ** (1 + Math.floor(rand() * 53)));
      if (pick === 3) return (rand() - 0.5) * 10 ** Math.floor(rand() * 20);
      if (pick === 4) return String.fromCodePoint(...Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 0x2000)));
      return "k".repeat(Math.floor(rand() * 300));
    };
    const value = (depth: number): unknown => {
      if (depth > 2 || rand() < 0.4) return scalar();
      const n = Math.floor(rand() * 20);
      return rand() < 0.5 ? Array.from({ length: n }, () => value(depth + 1)) : Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}${String(scalar())}`, value(depth + 1)]));
    };
    const mismatches: unknown[] = [];
    for (let i = 0; i < 2000; i++) {
      const v = value(0);
      if (!Buffer.from(encodeMsgpack(v)).equals(Buffer.from(oracle.encode(v)))) mismatches.push(v);
    }
    expect(mismatches).toEqual([]);
  });

  it("round-trips through the decoder, chunk boundaries aside", () => {
    for (const value of values) {
      const decoded = decoder.decode(encodeMsgpack(value));
      if (value instanceof Uint8Array) expect(decoded).toEqual(value);
      else expect(decoded).toEqual(value);
    }
  });

  it("treats values as JSON.stringify does: toJSON, undefined, functions", () => {
    const at = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));
    const value = { at, skip: undefined, fn: () => 1, list: [undefined, () => 1, 2], nested: { toJSON: () => ({ replaced: true }) } };
    expect(decoder.decode(encodeMsgpack(value))).toEqual(JSON.parse(JSON.stringify(value)));
    expect(decoder.decode(encodeMsgpack(undefined))).toBeNull();
  });

  it("refuses bigint and cycles with an error, like JSON", () => {
    expect(() => encodeMsgpack({ n: 1n })).toThrow(TypeError);
    const cycle: Record<string, unknown> = {};
    cycle["self"] = cycle;
    expect(() => encodeMsgpack(cycle)).toThrow(RangeError);
  });

  it("createMsgpackEncoder() encodes the same way", () => {
    expect(createMsgpackEncoder().encode({ a: [1, 2] })).toEqual(encodeMsgpack({ a: [1, 2] }));
  });
});

describe("decodeMsgpack (the client's own decoder)", () => {
  const oracleDecoder = new Decoder({ useBigInt64: false });
  const oracleEncoder = new Encoder({ useBigInt64: false, ignoreUndefined: true });

  it("decodes what Python's msgpack writes: every int width, float64, str8, bin, nested maps", () => {
    // msgpack.packb({"a": 12, "b": 256, "c": 65536, "d": 1750000000123, "e": -32, "f": -(2**40) - 1, "g": 1.5, "h": "x" * 32},
    // use_bin_type=True) from Python's msgpack 1.x.
    const bytes = hex(
      "88a1610ca162cd0100a163ce00010000a164cf000001977420dc7ba165e0a166d3fffffeffffffffffa167cb3ff8000000000000a168d9207878787878787878787878787878787878787878787878787878787878787878",
    );
    expect(decodeMsgpack(bytes)).toEqual({ a: 12, b: 256, c: 65_536, d: 1_750_000_000_123, e: -32, f: -(2 ** 40) - 1, g: 1.5, h: "x".repeat(32) });
    expect(decodeMsgpack(hex("c40301ff02"))).toEqual(new Uint8Array([1, 255, 2]));
    expect(decodeMsgpack(hex("ca3fc00000"))).toBe(1.5);
  });

  it("gives the same values as @msgpack/msgpack for every encoding width", () => {
    const values: unknown[] = [
      ...[0, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER],
      ...[-1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER],
      ...["", "ascii", "é☃😀", "é".repeat(20), "x".repeat(300), "y".repeat(70_000)],
      Array.from({ length: 20 }, (_, i) => i),
      Array.from({ length: 70_000 }, () => null),
      Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, [i, { deep: true }]])),
      Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i])),
      new Uint8Array(70_000).fill(7),
      { nested: { a: [1.25, -0.5, null, true, false, "s"] } },
    ];
    for (const value of values) {
      const bytes = oracleEncoder.encode(value);
      expect(decodeMsgpack(bytes)).toEqual(oracleDecoder.decode(bytes));
    }
  });

  it("refuses truncated input, trailing bytes, ext types, 0xc1 and non-scalar map keys", () => {
    expect(() => decodeMsgpack(hex("92 01".replace(" ", "")))).toThrow(RangeError);
    expect(() => decodeMsgpack(hex("cd01"))).toThrow(RangeError);
    expect(() => decodeMsgpack(hex("0102"))).toThrow(/extra bytes/);
    expect(() => decodeMsgpack(hex("d6ffffffffff"))).toThrow(TypeError); // timestamp ext
    expect(() => decodeMsgpack(hex("c1"))).toThrow(TypeError);
    expect(() => decodeMsgpack(hex("8190c0"))).toThrow(/map key/);
    expect(() => decodeMsgpack(new Uint8Array(0))).toThrow(RangeError);
  });

  it("makes __proto__ an own property, as JSON.parse does", () => {
    const value = decodeMsgpack(encodeMsgpack(JSON.parse('{"__proto__": {"polluted": true}}'))) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  it("on fuzzed bytes, only returns what @msgpack/msgpack returns, or throws", () => {
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * n);
    };
    const base = encodeMsgpack({ jsonrpc: "2.0", method: "event", params: { subscription: 3, seq: 2 ** 33, kind: "progress", percent: 0.5, message: "é", tags: { a: "b" }, list: [1, -5, 300] } });
    let agreed = 0;
    for (let i = 0; i < 5000; i++) {
      const bytes = rand(5) === 0 ? base.slice(0, rand(base.length + 1)) : base.slice();
      for (let k = rand(4); k > 0; k--) if (bytes.length > 0) bytes[rand(bytes.length)] = rand(256);
      let ours: unknown;
      let theirs: unknown;
      let oursFailed = false;
      let theirsFailed = false;
      try {
        ours = decodeMsgpack(bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(Error);
        oursFailed = true;
      }
      try {
        theirs = oracleDecoder.decode(bytes);
      } catch {
        theirsFailed = true;
      }
      // Never looser: what ours accepts, @msgpack/msgpack accepts (ours also refuses ext types).
      if (!oursFailed) expect(theirsFailed).toBe(false);
      // Same value, unless the bytes hold invalid UTF-8 (ours puts U+FFFD, as TextDecoder and JSON lines do).
      const text = JSON.stringify(ours) ?? "";
      if (!oursFailed && !theirsFailed && !text.includes("\ufffd")) {
        expect(text).toEqual(JSON.stringify(theirs));
        agreed += 1;
      }
    }
    expect(agreed).toBeGreaterThan(100);
  });
});
