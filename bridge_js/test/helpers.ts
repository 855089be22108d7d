/**
 * An in-memory sidecar double: a {@link Connector} whose connections are
 * driven by the test. Messages are JSON round-tripped both ways, as on the wire.
 */

import type { Connector, RpcMessage, RpcRequest, Transport, TransportSink } from "../src/index.js";

/** Return this from a handler to leave the request unanswered. */
export const NO_REPLY = Symbol("no-reply");

export class RpcErrorReply {
  readonly code: number;
  readonly message: string;
  readonly data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    this.code = code;
    this.message = message;
    this.data = data;
  }
}

type Handler = (params: Record<string, unknown>, link: FakeLink, request: RpcRequest) => unknown;

const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** The server side of one connection. */
export class FakeLink {
  readonly received: RpcMessage[] = [];
  closed = false;
  /** Requests received and not yet answered, and the most there ever were. */
  inFlight = 0;
  peakInFlight = 0;
  /** Subscriptions open on this link (through the default handlers), and the most there ever were. */
  readonly subscriptions = new Set<number>();
  peakSubscriptions = 0;
  readonly transport: Transport;
  readonly #sink: TransportSink;
  readonly #server: FakeServer;
  #waiters: { match: (m: RpcMessage) => boolean; resolve: (m: RpcMessage) => void }[] = [];

  constructor(server: FakeServer, sink: TransportSink) {
    this.#server = server;
    this.#sink = sink;
    this.transport = {
      send: (message) => {
        if (this.closed) throw new Error("fake link closed");
        const copy = clone(message);
        this.received.push(copy);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.match(copy)) return true;
          w.resolve(copy);
          return false;
        });
        if ("method" in copy && "id" in copy) {
          // Like the sidecar, refuse a request that arrives while the limit is reached.
          const busy = this.#server.limits && this.inFlight >= SIDECAR_LIMITS.requestsInFlight;
          this.inFlight += 1;
          this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
          queueMicrotask(() => {
            if (!busy) this.#server.handle(this, copy);
            else if (!this.closed) {
              const error = limitExceeded("requests_in_flight", SIDECAR_LIMITS.requestsInFlight);
              this.fail(copy.id, error.code, error.message, error.data);
            }
          });
        }
      },
      close: () => this.drop(),
    };
  }

  /** Server → client. */
  push(message: object): void {
    if (this.closed) return;
    if ("id" in message && !("method" in message)) this.inFlight -= 1;
    this.#sink.message(clone(message));
  }

  respond(id: unknown, result: unknown): void {
    this.push({ jsonrpc: "2.0", id, result });
  }

  fail(id: unknown, code: number, message: string, data?: unknown): void {
    this.push({ jsonrpc: "2.0", id, error: data === undefined ? { code, message } : { code, message, data } });
  }

  notify(method: string, params: unknown): void {
    this.push({ jsonrpc: "2.0", method, params });
  }

  /** The connection drops (as seen by the client). */
  drop(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.#sink.close(error);
  }

  /** Resolves with the first message (already received or future) matching. */
  waitFor(match: (m: RpcMessage) => boolean): Promise<RpcMessage> {
    const found = this.received.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  /** Resolves with the next request of `method` not yet taken by `request()`. */
  request(method: string): Promise<RpcRequest> {
    return this.waitFor((m) => "method" in m && m.method === method && "id" in m && !this.#taken.has(m)).then((m) => {
      this.#taken.add(m);
      return m as RpcRequest;
    });
  }
  readonly #taken = new Set<RpcMessage>();

  methods(): string[] {
    return this.received.flatMap((m) => ("method" in m ? [m.method] : []));
  }
}

/** The sidecar's per-connection limits (session.py); past one, -32008 limit_exceeded. */
export const SIDECAR_LIMITS = { subscriptions: 1000, requestsInFlight: 1024 } as const;

const limitExceeded = (limit: string, max: number): RpcErrorReply =>
  new RpcErrorReply(-32008, `limit ${limit} (${max}) reached`, { kind: "limit_exceeded", limit, max });

export class FakeServer {
  readonly links: FakeLink[] = [];
  /** Enforce {@link SIDECAR_LIMITS}, as the real sidecar does. */
  limits = true;
  /** Whether connections ask for session.hello. */
  hello = true;
  failConnects = 0;
  #subscription = 0;
  #worker = 0;
  readonly handlers: Record<string, Handler> = {
    "session.hello": () => ({ protocol: 1, version: "0.0.0-test", session: `sess-${this.links.length}` }),
    "events.subscribe": (_params, link) => {
      if (this.limits && link.subscriptions.size >= SIDECAR_LIMITS.subscriptions) throw limitExceeded("subscriptions", SIDECAR_LIMITS.subscriptions);
      const subscription = ++this.#subscription;
      link.subscriptions.add(subscription);
      link.peakSubscriptions = Math.max(link.peakSubscriptions, link.subscriptions.size);
      return { subscription };
    },
    "events.unsubscribe": (params, link) => {
      link.subscriptions.delete(params["subscription"] as number);
      return {};
    },
    "worker.register": () => ({ worker: `w${++this.#worker}` }),
    "worker.unregister": () => ({}),
  };

  readonly connector: Connector = async (sink) => {
    await Promise.resolve();
    if (this.failConnects > 0) {
      this.failConnects -= 1;
      throw new Error("connection refused (fake)");
    }
    const link = new FakeLink(this, sink);
    this.links.push(link);
    return { transport: link.transport, hello: this.hello ? { token: "secret" } : null };
  };

  get last(): FakeLink {
    const link = this.links.at(-1);
    if (link === undefined) throw new Error("no link yet");
    return link;
  }

  handle(link: FakeLink, request: RpcRequest): void {
    const handler = this.handlers[request.method];
    if (handler === undefined) return; // Left for the test to answer.
    let result: unknown;
    try {
      result = handler((request.params ?? {}) as Record<string, unknown>, link, request);
    } catch (error) {
      if (error instanceof RpcErrorReply) link.fail(request.id, error.code, error.message, error.data);
      else link.fail(request.id, -32603, String(error));
      return;
    }
    if (result === NO_REPLY) return;
    link.respond(request.id, result);
  }
}

/** A task record with defaults. */
export function record(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 1,
    task_type: "demo::echo",
    domain: "demo",
    key: "k",
    label: "demo::echo",
    priority: 128,
    effective_priority: 128,
    status: "pending",
    payload: null,
    group: null,
    tags: {},
    parent_id: null,
    retry_count: 0,
    max_retries: 3,
    last_error: null,
    created_at: 1_750_000_000_000,
    started_at: null,
    run_after: null,
    expires_at: null,
    depends_on: [],
    progress: { percent: 0, message: null, reported: false, extrapolated: false },
    expected_io: { disk_read: 0, disk_write: 0, net_rx: 0, net_tx: 0 },
    ...over,
  };
}

/** A history record with defaults. */
export function historyRecord(over: Record<string, unknown> = {}): Record<string, unknown> {
  return record({
    status: "completed",
    history_id: 10,
    finished_at: 1_750_000_001_000,
    duration_ms: 5,
    result: null,
    actual_io: { disk_read: 0, disk_write: 0, net_rx: 0, net_tx: 0 },
    ...over,
  });
}

export function taskEvent(kind: string, subscription: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    subscription,
    seq: 1,
    at: 1_750_000_000_500,
    kind,
    task_id: 1,
    task_type: "demo::echo",
    domain: "demo",
    key: "k",
    label: "demo::echo",
    tags: {},
    base_priority: 128,
    effective_priority: 128,
    parent_id: null,
    ...over,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` returns true. */
export async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(2);
  }
}
