import { describe, expect, it } from "vitest";
import { createMsgpackDecoder, createMsgpackEncoder } from "../src/index.js";

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
