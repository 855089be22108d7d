/**
 * MessagePack settings for the WebSocket transport.
 *
 * Python's msgpack writes any integer >= 2^32 (every millisecond timestamp) as
 * a 64-bit int. With `useBigInt64: false` @msgpack/msgpack decodes those as
 * `high * 2^32 + low`, an exact JS number below 2^53, so `created_at` and
 * friends arrive as plain numbers. (`useBigInt64: true` would turn them into
 * bigint.) Integers of 2^53 or more in user payloads lose precision, as they
 * would through `JSON.parse`.
 *
 * @packageDocumentation
 */

import { Decoder, Encoder } from "@msgpack/msgpack";

/** Encodes with `undefined` members left out (never sent as nil = null). */
export function createMsgpackEncoder(): Encoder {
  return new Encoder({ useBigInt64: false, ignoreUndefined: true, forceIntegerToFloat: false });
}

/** Decodes 64-bit ints as JS numbers (exact below 2^53). */
export function createMsgpackDecoder(): Decoder {
  return new Decoder({ useBigInt64: false });
}
