/**
 * The WebSocket transport: a browser `WebSocket` or an injected constructor
 * (the `ws` package in Node < 22). Binary frames carry MessagePack, text
 * frames JSON; the sidecar answers in the encoding of the first frame it
 * received, which is our `session.hello`.
 *
 * @packageDocumentation
 */

import { TaskmillClient } from "./client.js";
import type { ClientOptions } from "./rpc.js";
import type { AnyTasks } from "./tasks.js";
import { decodeMsgpack, encodeMsgpack } from "./codec.js";
import { ErrorCode, TaskmillError, toTaskmillError } from "./errors.js";
import { encodeJsonLine, tooLarge } from "./lines.js";
import { DEFAULT_MAX_MESSAGE_BYTES, type Connector, type Transport, type TransportSink } from "./transport.js";

/* eslint-disable @typescript-eslint/no-explicit-any -- event parameter types differ between the DOM and `ws`. */
/** The part of the WebSocket API this client uses; the DOM class and `ws` both fit. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array<ArrayBuffer> | string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => unknown) | null;
  onmessage: ((event: any) => unknown) | null;
  onclose: ((event: any) => unknown) | null;
  onerror: ((event: any) => unknown) | null;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Where to connect: a sidecar's `transports.ws` (URL and token). */
export interface WsEndpointInput {
  readonly url: string;
  /** Sent in `session.hello`. Null/undefined sends an empty token. */
  readonly token?: string | null;
}

/**
 * The endpoint, or a function returning it. The function is called before
 * every (re)connect, so a restarted sidecar's new port and token are used.
 *
 * A token the sidecar refused is not final with a function: it may be the
 * previous sidecar's, read before the restarted one's ready line arrived.
 * The function is asked again (with a short backoff, up to
 * `connectTimeoutMs`) until it returns another token, and the client
 * reconnects with that one. A fixed endpoint's refused token ends the client
 * (kind `unauthorized`).
 */
export type WsEndpointProvider = WsEndpointInput | (() => WsEndpointInput | Promise<WsEndpointInput>);

export interface WebSocketConnectorOptions {
  readonly endpoint: WsEndpointProvider;
  /** Defaults to `globalThis.WebSocket`; pass the `ws` package's class in Node < 22. */
  readonly WebSocket?: WebSocketConstructor;
  /** `"msgpack"` (binary frames) or `"json"` (text frames). Defaults to `"msgpack"`. */
  readonly encoding?: "msgpack" | "json";
  /**
   * Gives up opening the socket after this long; also how long an endpoint
   * function that still returns a refused token is asked again. Defaults to 10000.
   */
  readonly connectTimeoutMs?: number;
  /** Defaults to 4 MiB, the sidecar's default limit. */
  readonly maxMessageBytes?: number;
}

const OPEN = 1;

/** Builds a {@link Connector} that opens a WebSocket to the sidecar. */
export function webSocketConnector(options: WebSocketConnectorOptions): Connector {
  const encoding = options.encoding ?? "msgpack";
  const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const provider = options.endpoint;
  // The last token the sidecar refused, from the provider: not used again.
  let refused: Refused | null = null;
  return async (sink, signal) => {
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Ctor === undefined) {
      throw TaskmillError.client("connect_failed", "no global WebSocket: pass the `ws` package's class as the WebSocket option");
    }
    const endpoint = typeof provider === "function" ? await askProvider(provider, refused, timeoutMs, signal) : provider;
    if (signal.aborted) throw TaskmillError.client("closed", "connect aborted", { cause: signal.reason });
    let socket: WebSocketLike;
    try {
      socket = new Ctor(endpoint.url);
      socket.binaryType = "arraybuffer";
    } catch (error) {
      // An invalid URL: the DOM throws a SyntaxError, `ws` an Error.
      throw toTaskmillError(error, "connect_failed", `cannot open a WebSocket to ${JSON.stringify(endpoint.url)}`);
    }
    await waitOpen(socket, endpoint.url, timeoutMs, signal);
    const transport = attach(socket, sink, encoding, max);
    const token = endpoint.token ?? "";
    if (typeof provider !== "function") return { transport, hello: { token } };
    return { transport, hello: { token }, refused: (error) => void (refused = { token, error }) };
  };
}

interface Refused {
  readonly token: string;
  readonly error: TaskmillError;
}

/**
 * Asks the endpoint provider; while it returns the token the sidecar refused,
 * asks again after 25, 50, 100... (at most 500) ms, for up to `timeoutMs`,
 * then fails with kind `unauthorized`.
 */
async function askProvider(
  provider: () => WsEndpointInput | Promise<WsEndpointInput>,
  refused: Refused | null,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<WsEndpointInput> {
  const started = Date.now();
  for (let asks = 1, delayMs = 25; ; asks += 1, delayMs = Math.min(2 * delayMs, 500)) {
    let endpoint: WsEndpointInput;
    try {
      endpoint = await provider();
    } catch (error) {
      throw toTaskmillError(error, "connect_failed", "the endpoint provider failed");
    }
    if (refused === null || (endpoint.token ?? "") !== refused.token) return endpoint;
    if (signal.aborted) throw TaskmillError.client("closed", "connect aborted", { cause: signal.reason });
    const waited = Date.now() - started;
    if (waited >= timeoutMs) {
      throw new TaskmillError(
        `the sidecar refused the token (${refused.error.message}) and the endpoint provider still returned it after ${waited} ms (${asks} times)`,
        { code: ErrorCode.Unauthorized, kind: "unauthorized", data: refused.error.data, cause: refused.error },
      );
    }
    await pause(Math.min(delayMs, timeoutMs - waited), signal);
  }
}

/** Resolves after `ms`, or at once when `signal` fires (the caller checks it). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function waitOpen(socket: WebSocketLike, url: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (message: string, cause?: unknown): void => {
      cleanup();
      socket.onclose = null;
      socket.onerror = null;
      try {
        socket.close();
      } catch {
        // Already closed.
      }
      reject(TaskmillError.client("connect_failed", message, { cause }));
    };
    const timer = setTimeout(() => fail(`WebSocket ${url} did not open within ${timeoutMs} ms`), timeoutMs);
    const onAbort = (): void => fail("connect aborted", signal.reason);
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.onopen = null;
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.onopen = () => {
      cleanup();
      resolve();
    };
    socket.onerror = (event: unknown) => fail(`WebSocket ${url} failed to open${describeError(event)}`, errorOf(event));
    socket.onclose = (event: { code?: number; reason?: string }) =>
      fail(`WebSocket ${url} closed while opening (code ${event.code ?? "?"}${event.reason ? `, ${event.reason}` : ""})`);
  });
}

function attach(socket: WebSocketLike, sink: TransportSink, encoding: "msgpack" | "json", max: number): Transport {
  let closed = false;
  let lastError: Error | undefined;

  const finish = (error?: Error): void => {
    if (closed) return;
    closed = true;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    sink.close(error);
  };

  socket.onmessage = (event: { data: unknown }) => {
    if (closed) return;
    const data = event.data;
    let message: unknown;
    try {
      if (typeof data === "string") {
        message = JSON.parse(data);
      } else if (data instanceof ArrayBuffer) {
        message = decodeMsgpack(new Uint8Array(data));
      } else if (ArrayBuffer.isView(data)) {
        message = decodeMsgpack(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } else if (Array.isArray(data) && data.every((part) => part instanceof Uint8Array)) {
        // `ws` with binaryType "fragments".
        const parts = data as Uint8Array[];
        const joined = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
        let offset = 0;
        for (const part of parts) {
          joined.set(part, offset);
          offset += part.byteLength;
        }
        message = decodeMsgpack(joined);
      } else {
        sink.protocolError(new Error(`unexpected WebSocket frame type: ${Object.prototype.toString.call(data)}`));
        return;
      }
    } catch (error) {
      sink.protocolError(new Error(`undecodable frame: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
      return;
    }
    sink.message(message);
  };
  socket.onerror = (event: unknown) => {
    lastError = errorOf(event) ?? new Error(`WebSocket error${describeError(event)}`);
  };
  socket.onclose = (event: { code?: number; reason?: string }) => {
    const code = event.code ?? 1006;
    const reason = event.reason ?? "";
    if (code === 1000 && lastError === undefined) {
      finish();
    } else if (code === 4401) {
      finish(
        new TaskmillError(`the sidecar closed the session as unauthorized${reason ? ` (${reason})` : ""}`, {
          code: -32001,
          kind: "unauthorized",
          cause: lastError,
        }),
      );
    } else {
      finish(new Error(`WebSocket closed (code ${code}${reason ? `, ${reason}` : ""})`, { cause: lastError }));
    }
  };

  return {
    send(message) {
      if (closed || socket.readyState !== OPEN) throw TaskmillError.client("disconnected", "the WebSocket is not open");
      if (encoding === "json") {
        const line = encodeJsonLine(message, max);
        socket.send(line.slice(0, -1));
        return;
      }
      // A fresh copy backed by its own ArrayBuffer.
      const bytes = encodeMsgpack(message);
      if (bytes.byteLength > max) throw tooLarge(bytes.byteLength, max, message);
      socket.send(bytes);
    },
    close(reason) {
      if (closed) return;
      try {
        socket.close(1000, "client closed");
      } catch {
        // Already closing.
      }
      finish(reason);
    },
  };
}

function errorOf(event: unknown): Error | undefined {
  if (event instanceof Error) return event;
  if (typeof event === "object" && event !== null && "error" in event) {
    const inner = (event as { error: unknown }).error;
    if (inner instanceof Error) return inner;
  }
  return undefined;
}

function describeError(event: unknown): string {
  const error = errorOf(event);
  if (error !== undefined) return `: ${error.message}`;
  if (typeof event === "object" && event !== null && "message" in event) {
    const message = (event as { message: unknown }).message;
    if (typeof message === "string" && message.length > 0) return `: ${message}`;
  }
  return "";
}

/** Options of {@link connectWebSocket}: where to connect plus client options. */
export type ConnectWebSocketOptions = WebSocketConnectorOptions & Omit<ClientOptions, "connector">;

/**
 * Creates a client over WebSocket and connects it (`session.hello` first).
 * Reconnects with backoff by default, calling `endpoint` again each time.
 * Rejects with a `TaskmillError` (kind `connect_failed`, `unauthorized`...)
 * when the first connection fails.
 */
export async function connectWebSocket<Tasks = AnyTasks>(options: ConnectWebSocketOptions): Promise<TaskmillClient<Tasks>> {
  const client = new TaskmillClient<Tasks>({ ...options, connector: webSocketConnector(options) });
  await client.connect();
  return client;
}
