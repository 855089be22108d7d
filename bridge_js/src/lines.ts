/**
 * JSON-lines framing (the stdio transport): a decoder that copes with chunks
 * split anywhere, several lines per chunk, `\r\n` endings and empty fragments,
 * and a {@link Transport} over any "write text / end" pair.
 *
 * Raw CR and LF never occur inside a JSON text (strings escape them), so any
 * run of them is a line separator.
 *
 * @packageDocumentation
 */

import { TaskmillError } from "./errors.js";
import { DEFAULT_MAX_MESSAGE_BYTES, type RpcMessage, type Transport, type TransportSink } from "./transport.js";

export interface JsonLinesDecoderOptions {
  /**
   * `"stream"`: a line ends only at CR or LF; text after the last one waits
   * for the next chunk (Node pipes, Tauri's `raw` encoding).
   *
   * `"lines"`: chunks are mostly whole lines whose terminator may be missing
   * (the Tauri shell plugin emits one event per line, without it). An
   * unterminated tail that parses as a complete JSON object is taken as a
   * line; one that does not waits for the rest.
   *
   * Defaults to `"stream"`.
   */
  readonly mode?: "stream" | "lines";
  /** A line longer than this (in UTF-16 units) is dropped with an error. Defaults to 64 Mi. */
  readonly maxLineLength?: number;
}

const SEPARATOR = /[\r\n]+/;

/** Splits text chunks into JSON values, one per line. */
export class JsonLinesDecoder {
  readonly #mode: "stream" | "lines";
  readonly #maxLineLength: number;
  readonly #onValue: (value: unknown) => void;
  readonly #onError: (error: Error) => void;
  #text: InstanceType<typeof TextDecoder> | undefined;
  #tail = "";

  constructor(onValue: (value: unknown) => void, onError: (error: Error) => void, options: JsonLinesDecoderOptions = {}) {
    this.#onValue = onValue;
    this.#onError = onError;
    this.#mode = options.mode ?? "stream";
    this.#maxLineLength = options.maxLineLength ?? 64 * 1024 * 1024;
  }

  /** Feeds a chunk: text, or UTF-8 bytes (decoded statefully across chunks). */
  push(chunk: string | Uint8Array): void {
    let text: string;
    if (typeof chunk === "string") {
      text = chunk;
    } else {
      this.#text ??= new TextDecoder("utf-8");
      text = this.#text.decode(chunk, { stream: true });
    }
    if (text.length === 0) return;
    const parts = (this.#tail + text).split(SEPARATOR);
    this.#tail = parts.pop() ?? "";
    for (const line of parts) this.#line(line);
    if (this.#tail.length > 0 && this.#mode === "lines" && this.#tail.trimEnd().endsWith("}")) {
      const value = tryParse(this.#tail);
      if (value !== NOT_JSON) {
        this.#tail = "";
        this.#onValue(value);
      }
    }
    if (this.#tail.length > this.#maxLineLength) {
      this.#tail = "";
      this.#onError(new Error(`line longer than ${this.#maxLineLength} characters dropped`));
    }
  }

  /** Flushes a final unterminated line (end of stream). */
  end(): void {
    if (this.#text !== undefined) this.#tail += this.#text.decode();
    const tail = this.#tail;
    this.#tail = "";
    this.#line(tail);
  }

  #line(line: string): void {
    if (line.trim().length === 0) return;
    const value = tryParse(line);
    if (value === NOT_JSON) {
      const shown = line.length > 200 ? `${line.slice(0, 200)}...` : line;
      this.#onError(new Error(`not a JSON line: ${shown}`));
    } else {
      this.#onValue(value);
    }
  }
}

const NOT_JSON = Symbol("not-json");

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return NOT_JSON;
  }
}

/** Serializes one message as a JSON line, checking the size limit. */
export function encodeJsonLine(message: RpcMessage, maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES): string {
  const text = JSON.stringify(message);
  // A UTF-16 unit is at most 3 UTF-8 bytes; only measure when it could matter.
  if (text.length * 3 > maxMessageBytes) {
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > maxMessageBytes) throw tooLarge(bytes, maxMessageBytes, message);
  }
  return `${text}\n`;
}

/** @internal */
export function tooLarge(bytes: number, max: number, message: RpcMessage): TaskmillError {
  const method = "method" in message ? message.method : undefined;
  return new TaskmillError(`message of ${bytes} bytes exceeds the ${max}-byte limit`, {
    code: -32600,
    kind: "invalid_request",
    method,
  });
}

export interface LineTransportOptions {
  /**
   * Writes text (one or more complete lines) to the peer. If it returns a
   * promise, later lines are queued and written, coalesced, once it settles,
   * so the order is kept.
   */
  readonly write: (text: string) => void | Promise<void>;
  /** Ends the writing side (stdin EOF: the sidecar shuts down gracefully). */
  readonly end: () => void;
  /** Defaults to 4 MiB, the sidecar's default limit. */
  readonly maxMessageBytes?: number;
  readonly decoder?: JsonLinesDecoderOptions;
}

/** A line transport plus the hooks its owner feeds with what the peer writes. */
export interface LineTransport {
  readonly transport: Transport;
  /** Feeds a chunk of the peer's output. */
  feed(chunk: string | Uint8Array): void;
  /** Reports that the peer's output ended or the process exited. Idempotent. */
  closed(error?: Error): void;
}

/** Builds a JSON-lines {@link Transport} over a write/end pair. */
export function createLineTransport(sink: TransportSink, options: LineTransportOptions): LineTransport {
  const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const decoder = new JsonLinesDecoder(
    (value) => {
      if (!isClosed) sink.message(value);
    },
    (error) => {
      if (!isClosed) sink.protocolError(error);
    },
    options.decoder,
  );
  let isClosed = false;
  let inFlight = false;
  let queued = "";

  const closed = (error?: Error): void => {
    if (isClosed) return;
    decoder.end();
    isClosed = true;
    sink.close(error);
  };

  const flush = (text: string): void => {
    let result: void | Promise<void>;
    try {
      result = options.write(text);
    } catch (error) {
      closed(asError(error, "write to the sidecar failed"));
      return;
    }
    if (result !== undefined && typeof result.then === "function") {
      inFlight = true;
      result.then(
        () => {
          inFlight = false;
          if (queued.length > 0 && !isClosed) {
            const next = queued;
            queued = "";
            flush(next);
          }
        },
        (error: unknown) => {
          inFlight = false;
          closed(asError(error, "write to the sidecar failed"));
        },
      );
    }
  };

  const transport: Transport = {
    send(message) {
      if (isClosed) throw TaskmillError.client("disconnected", "the connection is closed");
      const line = encodeJsonLine(message, max);
      if (inFlight) queued += line;
      else flush(line);
    },
    close(reason) {
      if (isClosed) return;
      try {
        options.end();
      } finally {
        closed(reason);
      }
    },
  };
  return { transport, feed: (chunk) => decoder.push(chunk), closed };
}

/** @internal */
export function asError(error: unknown, fallback: string): Error {
  if (error instanceof Error) return error;
  return new Error(typeof error === "string" && error.length > 0 ? error : fallback);
}
