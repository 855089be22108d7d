/**
 * The taskmill client: request/response correlation, subscriptions, workers,
 * connection state and reconnects, over any {@link Connector}.
 *
 * @packageDocumentation
 */

import { TaskmillError, isRecord, isTaskmillError } from "./errors.js";
import type { Connection, Connector, RpcFailure, RpcId, RpcMessage, Transport, TransportSink } from "./transport.js";
import {
  HISTORY_STATUSES,
  PROTOCOL_VERSION,
  type CancelWhereParams,
  type DependenciesResult,
  type EventFilter,
  type EventKind,
  type EventOf,
  type HelloResult,
  type HistoryParams,
  type HistoryStats,
  type HistoryTaskRecord,
  type ListParams,
  type ListResult,
  type LookupResult,
  type MethodName,
  type MethodParams,
  type MethodResult,
  type Metrics,
  type PriorityInput,
  type RateLimitParams,
  type RateLimitTarget,
  type RecurringSchedule,
  type SidecarInfo,
  type SidecarReady,
  type Snapshot,
  type SubmitParams,
  type SubmitResult,
  type TagKeysResult,
  type TagValuesResult,
  type TaskId,
  type TaskRecord,
  type TaskType,
  type WorkerCancelParams,
  type WorkerExecuteParams,
} from "./types.js";
import { WorkerEntry, type RequestOptions, type WorkOptions, type WorkerHandle, type WorkerHandler, type WorkerHost, type WorkerTaskTypes } from "./worker.js";

/** This package's version, sent in `session.hello`. */
export const VERSION = "0.1.0";

/** Where the client is in its life. */
export type ConnectionState =
  /** Not connected and not trying: before `connect()`, or after a drop with reconnect off or exhausted. */
  | "disconnected"
  /** The first `connect()` is in progress. */
  | "connecting"
  /** Connected, handshake done, subscriptions and workers restored. */
  | "open"
  /** Lost the connection; waiting to retry or retrying. */
  | "reconnecting"
  /** `close()` was called. Final. */
  | "closed";

/** Connection notices, discriminated by `type`. */
export type ConnectionEvent =
  | { readonly type: "connecting"; readonly attempt: number }
  | {
      readonly type: "open";
      /** True when this is a reconnect (a `resync` notice follows). */
      readonly reconnected: boolean;
      /** The `session.hello` result, when a handshake was made (WebSocket). */
      readonly session: HelloResult | null;
      /** The `sidecar.ready` params, when the connector spawned the sidecar. */
      readonly ready: SidecarReady | null;
    }
  | {
      readonly type: "closed";
      readonly error: Error | undefined;
      readonly willReconnect: boolean;
      /** Delay before the next attempt, when `willReconnect`. */
      readonly delayMs: number | undefined;
    }
  /**
   * After a reconnect, once subscriptions and workers are restored: events
   * were missed while disconnected, so refetch what you show (`snapshot()`).
   */
  | { readonly type: "resync" }
  /** Something went wrong that did not close the connection (bad frame, a handler threw, a subscription was refused on restore). */
  | { readonly type: "error"; readonly error: Error };

export interface ReconnectOptions {
  /** First delay. Defaults to 250. */
  readonly initialDelayMs?: number;
  /** Upper bound of the delay. Defaults to 5000. */
  readonly maxDelayMs?: number;
  /** Growth per failed attempt. Defaults to 1.6. */
  readonly factor?: number;
  /** Each delay is drawn uniformly from `[delay * (1 - jitter), delay]`. Defaults to 0.5. */
  readonly jitter?: number;
  /** Attempts after one drop before giving up (state `disconnected`). Defaults to Infinity. */
  readonly maxAttempts?: number;
}

export interface ClientOptions {
  /** Opens a connection; called again for every reconnect. */
  readonly connector: Connector;
  /** `"name/version"` sent as `client` in `session.hello`. Defaults to `"taskmill-bridge/<version>"`. */
  readonly clientName?: string;
  /** Default timeout of each request. Defaults to 30000; 0 = none. */
  readonly requestTimeoutMs?: number;
  /**
   * Reconnect automatically after the connection drops (only after it was
   * open once: a failing first `connect()` rejects). `true` uses the
   * defaults. Defaults to `true`.
   */
  readonly reconnect?: boolean | ReconnectOptions;
}

/** Removes a subscription. `ready` settles when the sidecar has confirmed it (or refused it). */
export interface Unsubscribe {
  (): Promise<void>;
  readonly ready: Promise<void>;
}

/** An async iterator of events; `return()` (or `break`) unsubscribes. */
export interface EventStream<E> extends AsyncIterableIterator<E> {
  /** Settles when the sidecar has confirmed the subscription. */
  readonly ready: Promise<void>;
  return(): Promise<IteratorResult<E, undefined>>;
}

/** Options of {@link TaskmillClient.waitFor}. */
export interface WaitForOptions {
  /** Rejects with kind `"timeout"` after this long. Defaults to no timeout. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** The kinds after which a task may be finished; `waitFor` re-reads the record when one arrives. */
export const TERMINAL_EVENT_KINDS = [
  "completed",
  "failed",
  "dead_lettered",
  "cancelled",
  "superseded",
  "expired",
  "dependency_failed",
] as const satisfies readonly EventKind[];

interface Link {
  readonly gen: number;
  transport: Transport | null;
  closed: boolean;
  hello: HelloResult | null;
  ready: SidecarReady | null;
}

interface Pending {
  readonly method: string;
  readonly params: unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  id: RpcId | null;
  link: Link | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Sub {
  readonly filter: EventFilter | undefined;
  readonly handler: (event: never) => void;
  serverId: number | null;
  link: Link | null;
  inflight: Link | null;
  active: boolean;
  confirmed: boolean;
  readonly ready: Promise<void>;
  readonly resolveReady: () => void;
  readonly rejectReady: (error: Error) => void;
}

const ORPHAN_LIMIT = 1000;

/**
 * A client of the taskmill sidecar. Create it with a connector (or use
 * `connectWebSocket`, `spawnSidecar` from `taskmill-bridge/node`,
 * `spawnTauriSidecar` from `taskmill-bridge/tauri`), then `connect()`.
 */
export class TaskmillClient {
  readonly #connector: Connector;
  readonly #clientName: string;
  readonly #timeoutMs: number;
  readonly #reconnect: Required<ReconnectOptions> | null;
  readonly #lifetime = new AbortController();
  #state: ConnectionState = "disconnected";
  #link: Link | null = null;
  #gen = 0;
  #nextId = 1;
  #everOpened = false;
  #connecting: Promise<void> | null = null;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #pending = new Map<RpcId, Pending>();
  readonly #queued: Pending[] = [];
  readonly #subs = new Set<Sub>();
  readonly #subsByServerId = new Map<number, Sub>();
  readonly #orphans = new Map<number, unknown[]>();
  #orphanCount = 0;
  /** events.subscribe requests in flight on the current link; events for unknown ids are kept only meanwhile. */
  #subscribing = 0;
  readonly #workers = new Set<WorkerEntry>();
  readonly #listeners = new Set<(event: ConnectionEvent) => void>();
  readonly #workerHost: WorkerHost;

  constructor(options: ClientOptions) {
    this.#connector = options.connector;
    this.#clientName = options.clientName ?? `taskmill-bridge/${VERSION}`;
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    const r = options.reconnect ?? true;
    this.#reconnect =
      r === false
        ? null
        : {
            initialDelayMs: 250,
            maxDelayMs: 5000,
            factor: 1.6,
            jitter: 0.5,
            maxAttempts: Number.POSITIVE_INFINITY,
            ...(r === true ? {} : r),
          };
    this.#workerHost = {
      respond: (link, message) => this.#sendOn(link as Link, message),
      notify: (link, method, params) => {
        if (!(link as Link).closed) this.#sendOn(link as Link, { jsonrpc: "2.0", method, params });
      },
      spawnChild: (params, opts) => this.request("worker.spawn_child", params, opts),
      report: (error) => this.#emit({ type: "error", error }),
    };
  }

  // -------------------------------------------------------------------------
  // Connection

  /** The current connection state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The `session.hello` result of the current connection, if any. */
  get session(): HelloResult | null {
    return this.#state === "open" ? (this.#link?.hello ?? null) : null;
  }

  /** The `sidecar.ready` params of the current connection, when the connector spawned the sidecar. */
  get ready(): SidecarReady | null {
    return this.#link?.ready ?? null;
  }

  /** Listens to connection notices. Returns a function that stops listening. */
  onConnection(listener: (event: ConnectionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Connects (handshake, then subscriptions and workers made so far). Resolves
   * when open; rejects if this first attempt fails (call it again to retry).
   */
  connect(): Promise<void> {
    if (this.#state === "closed") return Promise.reject(TaskmillError.client("closed", "the client is closed"));
    if (this.#state === "open") return Promise.resolve();
    if (this.#connecting !== null) return this.#connecting;
    if (this.#state === "reconnecting") {
      return new Promise<void>((resolve, reject) => {
        const off = this.onConnection((event) => {
          if (event.type === "open") {
            off();
            resolve();
          } else if (event.type === "closed" && !event.willReconnect) {
            off();
            reject(event.error ?? TaskmillError.client("disconnected", "could not reconnect"));
          }
        });
      });
    }
    const attempt = this.#attempt(1).then(
      () => {
        this.#connecting = null;
      },
      (error: unknown) => {
        this.#connecting = null;
        const err = error instanceof Error ? error : new Error(String(error));
        if (this.#state !== "closed") {
          this.#state = "disconnected";
          this.#emit({ type: "closed", error: err, willReconnect: false, delayMs: undefined });
          this.#rejectQueued("disconnected", `could not connect: ${err.message}`, err);
        }
        throw err;
      },
    );
    this.#connecting = attempt;
    return attempt;
  }

  /**
   * Closes the connection for good: pending requests reject with kind
   * `"closed"`, event streams end, running worker tasks are aborted. Over
   * stdio this closes the sidecar's stdin, which makes it shut down.
   */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#lifetime.abort(TaskmillError.client("closed", "the client is closed"));
    const link = this.#link;
    const error = TaskmillError.client("closed", "the client is closed");
    this.#rejectQueued("closed", "the client is closed");
    if (link !== null) {
      this.#dropLink(link, error);
      link.transport?.close();
    }
    for (const worker of this.#workers) worker.active = false;
    this.#emit({ type: "closed", error: undefined, willReconnect: false, delayMs: undefined });
  }

  async #attempt(attempt: number): Promise<void> {
    const link: Link = { gen: ++this.#gen, transport: null, closed: false, hello: null, ready: null };
    this.#link = link;
    if (this.#state !== "reconnecting") this.#state = "connecting";
    this.#emit({ type: "connecting", attempt });
    const sink: TransportSink = {
      message: (message) => this.#onMessage(link, message),
      protocolError: (error) => this.#emit({ type: "error", error }),
      close: (error) => this.#onClose(link, error),
    };
    let connection: Connection;
    try {
      connection = await this.#connector(sink, this.#lifetime.signal);
    } catch (error) {
      link.closed = true;
      throw error;
    }
    link.transport = connection.transport;
    link.ready = connection.ready ?? null;
    const stale = (): TaskmillError | undefined =>
      this.#state === "closed"
        ? TaskmillError.client("closed", "the client is closed")
        : link.closed
          ? TaskmillError.client("disconnected", "the connection closed during the handshake")
          : undefined;
    try {
      const early = stale();
      if (early !== undefined) throw early;
      if (connection.hello !== null) {
        const hello = (await this.#rawRequest(link, "session.hello", {
          token: connection.hello.token,
          protocol: PROTOCOL_VERSION,
          client: this.#clientName,
        })) as HelloResult;
        if (!isRecord(hello) || hello.protocol !== PROTOCOL_VERSION) {
          throw TaskmillError.client("protocol_error", `the sidecar speaks protocol ${String(isRecord(hello) ? hello.protocol : "?")}, this client speaks ${PROTOCOL_VERSION}`);
        }
        link.hello = hello;
      }
      await this.#restore(link);
      const late = stale();
      if (late !== undefined) throw late;
    } catch (error) {
      if (!link.closed) {
        link.closed = true;
        this.#dropLink(link, error instanceof Error ? error : new Error(String(error)));
        connection.transport.close();
      }
      throw error;
    }
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    this.#state = "open";
    this.#flushQueued(link);
    this.#emit({ type: "open", reconnected, session: link.hello, ready: link.ready });
    if (reconnected) this.#emit({ type: "resync" });
  }

  /** Re-subscribes and re-registers everything made so far on a fresh link. */
  async #restore(link: Link): Promise<void> {
    for (;;) {
      const subs = [...this.#subs].filter((s) => s.active && s.link !== link && s.inflight !== link);
      const workers = [...this.#workers].filter((w) => w.active && w.link !== link);
      if (subs.length === 0 && workers.length === 0) return;
      await Promise.all([...subs.map((s) => this.#subscribeOn(link, s)), ...workers.map((w) => this.#registerOn(link, w))]);
      if (link.closed) throw TaskmillError.client("disconnected", "the connection closed during the handshake");
    }
  }

  #onClose(link: Link, error: Error | undefined): void {
    if (link.closed) return;
    link.closed = true;
    if (link !== this.#link) return;
    const wasOpen = this.#state === "open";
    // A close the sidecar explained (WebSocket 4401: unauthorized) rejects with that error.
    const reason =
      isTaskmillError(error) && error.code !== 0
        ? error
        : TaskmillError.client("disconnected", `the connection closed${error ? `: ${error.message}` : ""}`, { cause: error });
    this.#dropLink(link, reason);
    if (!wasOpen) return; // A handshake in progress fails through its own requests.
    this.#afterDrop(error, 0);
  }

  /** After a drop (or a failed reconnect attempt): schedule the next attempt or give up. */
  #afterDrop(error: Error | undefined, failedAttempts: number): void {
    const r = this.#reconnect;
    if (r === null || failedAttempts >= r.maxAttempts) {
      this.#state = "disconnected";
      this.#emit({ type: "closed", error, willReconnect: false, delayMs: undefined });
      this.#rejectQueued("disconnected", "the connection is closed", error);
      return;
    }
    this.#state = "reconnecting";
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * r.factor ** failedAttempts);
    const delayMs = Math.round(base * (1 - r.jitter * Math.random()));
    this.#emit({ type: "closed", error, willReconnect: true, delayMs });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#state !== "reconnecting") return;
      this.#attempt(failedAttempts + 1).catch((err: unknown) => {
        if (this.#state !== "reconnecting") return;
        this.#afterDrop(err instanceof Error ? err : new Error(String(err)), failedAttempts + 1);
      });
    }, delayMs);
  }

  /** Forgets everything tied to a link: its requests reject, its worker tasks abort. */
  #dropLink(link: Link, error: Error): void {
    link.closed = true;
    for (const [id, pending] of this.#pending) {
      if (pending.link !== link) continue;
      this.#pending.delete(id);
      this.#settle(pending);
      pending.reject(error);
    }
    for (const sub of this.#subs) {
      if (sub.link === link) {
        sub.link = null;
        if (sub.serverId !== null) this.#subsByServerId.delete(sub.serverId);
        sub.serverId = null;
      }
      if (sub.inflight === link) sub.inflight = null;
    }
    for (const worker of this.#workers) worker.disconnected(link);
    this.#orphans.clear();
    this.#orphanCount = 0;
    this.#subscribing = 0;
  }

  #emit(event: ConnectionEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        if (event.type !== "error") this.#emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
      }
    }
  }

  // -------------------------------------------------------------------------
  // Requests

  /** Sends a typed request. Method and param names are the wire names (protocol.md section 5). */
  request<M extends MethodName>(method: M, params: MethodParams<M>, options?: RequestOptions): Promise<MethodResult<M>> {
    return this.call(method, params, options) as Promise<MethodResult<M>>;
  }

  /**
   * Sends any request, untyped. While connecting or reconnecting the request
   * waits (within its timeout) and is sent once open; while disconnected or
   * closed it rejects at once. It is never re-sent after a drop.
   */
  call(method: string, params: object = {}, options: RequestOptions = {}): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      if (this.#state === "closed") {
        reject(TaskmillError.client("closed", "the client is closed", { method }));
        return;
      }
      if (this.#state === "disconnected") {
        reject(TaskmillError.client("disconnected", "not connected (call connect() first)", { method }));
        return;
      }
      const pending = this.#arm({ method, params, resolve, reject }, options);
      if (pending === null) return;
      if (this.#state === "open" && this.#link !== null) this.#sendPending(this.#link, pending);
      else this.#queued.push(pending);
    });
  }

  /** A request on a specific link, bypassing the open-gate (handshake and restore). */
  #rawRequest(link: Link, method: string, params: object): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const pending = this.#arm({ method, params, resolve, reject }, {});
      if (pending !== null) this.#sendPending(link, pending);
    });
  }

  #arm(
    base: { method: string; params: unknown; resolve: (value: unknown) => void; reject: (error: Error) => void },
    options: RequestOptions,
  ): Pending | null {
    const pending: Pending = { ...base, id: null, link: null, timer: undefined, signal: undefined, onAbort: undefined };
    const signal = options.signal;
    if (signal?.aborted === true) {
      base.reject(TaskmillError.client("aborted", `${base.method} aborted`, { method: base.method, cause: signal.reason }));
      return null;
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    if (timeoutMs > 0) {
      pending.timer = setTimeout(() => {
        this.#forget(pending);
        base.reject(TaskmillError.client("timeout", `${base.method} timed out after ${timeoutMs} ms`, { method: base.method }));
      }, timeoutMs);
    }
    if (signal !== undefined) {
      pending.signal = signal;
      pending.onAbort = () => {
        this.#forget(pending);
        base.reject(TaskmillError.client("aborted", `${base.method} aborted`, { method: base.method, cause: signal.reason }));
      };
      signal.addEventListener("abort", pending.onAbort, { once: true });
    }
    return pending;
  }

  #sendPending(link: Link, pending: Pending): void {
    const id = this.#nextId++;
    pending.id = id;
    pending.link = link;
    this.#pending.set(id, pending);
    try {
      if (link.closed || link.transport === null) throw TaskmillError.client("disconnected", "the connection is closed", { method: pending.method });
      link.transport.send({ jsonrpc: "2.0", id, method: pending.method, params: pending.params });
    } catch (error) {
      this.#forget(pending);
      pending.reject(isTaskmillError(error) ? error : TaskmillError.client("disconnected", `could not send ${pending.method}`, { method: pending.method, cause: error }));
    }
  }

  #sendOn(link: Link, message: RpcMessage): void {
    if (link.closed || link.transport === null) return;
    link.transport.send(message);
  }

  #forget(pending: Pending): void {
    this.#settle(pending);
    if (pending.id !== null && this.#pending.get(pending.id) === pending) this.#pending.delete(pending.id);
    const index = this.#queued.indexOf(pending);
    if (index >= 0) this.#queued.splice(index, 1);
  }

  #settle(pending: Pending): void {
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    pending.timer = undefined;
    if (pending.signal !== undefined && pending.onAbort !== undefined) pending.signal.removeEventListener("abort", pending.onAbort);
    pending.onAbort = undefined;
  }

  #flushQueued(link: Link): void {
    const queued = this.#queued.splice(0);
    for (const pending of queued) this.#sendPending(link, pending);
  }

  #rejectQueued(kind: "closed" | "disconnected", message: string, cause?: unknown): void {
    const queued = this.#queued.splice(0);
    for (const pending of queued) {
      this.#settle(pending);
      pending.reject(TaskmillError.client(kind, `${pending.method}: ${message}`, { method: pending.method, cause }));
    }
  }

  // -------------------------------------------------------------------------
  // Incoming messages

  #onMessage(link: Link, message: unknown): void {
    if (link.closed || !isRecord(message)) {
      if (!link.closed) this.#emit({ type: "error", error: new Error("received a message that is not a JSON-RPC object") });
      return;
    }
    const method = message["method"];
    const id = message["id"];
    if (typeof method === "string") {
      if (id === undefined || id === null) this.#onNotification(link, method, message["params"]);
      else if (typeof id === "string" || typeof id === "number") this.#onServerRequest(link, id, method, message["params"]);
      return;
    }
    if ("result" in message || "error" in message) {
      const pending = typeof id === "number" || typeof id === "string" ? this.#pending.get(id) : undefined;
      if (pending === undefined || pending.link !== link) {
        if ("error" in message && isRecord(message["error"])) {
          const err = TaskmillError.fromRpc(message["error"] as unknown as RpcFailure["error"]);
          this.#emit({ type: "error", error: err });
        }
        return; // A late answer to a request that timed out or was aborted.
      }
      this.#pending.delete(pending.id as RpcId);
      this.#settle(pending);
      if ("error" in message) {
        const error = message["error"];
        pending.reject(
          isRecord(error) && typeof error["code"] === "number"
            ? TaskmillError.fromRpc({ code: error["code"], message: String(error["message"] ?? ""), data: error["data"] }, pending.method)
            : TaskmillError.client("protocol_error", `${pending.method}: malformed error response`, { method: pending.method }),
        );
      } else {
        pending.resolve(message["result"]);
      }
      return;
    }
    this.#emit({ type: "error", error: new Error("received a message that is neither a request, a notification nor a response") });
  }

  #onNotification(link: Link, method: string, params: unknown): void {
    if (method === "event") {
      if (!isRecord(params) || typeof params["subscription"] !== "number") return;
      const sub = this.#subsByServerId.get(params["subscription"]);
      if (sub === undefined || sub.link !== link) {
        // It may be for a subscription whose confirmation is still on its way.
        if (this.#subscribing > 0 && link === this.#link && this.#orphanCount < ORPHAN_LIMIT) {
          const list = this.#orphans.get(params["subscription"]) ?? [];
          list.push(params);
          this.#orphans.set(params["subscription"], list);
          this.#orphanCount += 1;
        }
        return;
      }
      this.#deliver(sub, params);
    } else if (method === "worker.cancel") {
      if (!isRecord(params) || typeof params["task_id"] !== "number") return;
      for (const worker of this.#workers) if (worker.cancel(params as unknown as WorkerCancelParams)) break;
    }
    // Other notifications (a second sidecar.ready, future additions) are ignored.
  }

  #deliver(sub: Sub, event: unknown): void {
    if (!sub.active) return;
    try {
      (sub.handler as (event: unknown) => void)(event);
    } catch (error) {
      this.#emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
    }
  }

  #onServerRequest(link: Link, id: RpcId, method: string, params: unknown): void {
    const fail = (code: number, message: string, kind: string): void => {
      try {
        this.#sendOn(link, { jsonrpc: "2.0", id, error: { code, message, data: { kind } } });
      } catch (error) {
        this.#emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
      }
    };
    if (method !== "worker.execute") {
      fail(-32601, `the client has no method ${method}`, "method_not_found");
      return;
    }
    if (!isRecord(params) || typeof params["worker"] !== "string" || !isRecord(params["task"]) || typeof params["task"]["id"] !== "number") {
      fail(-32602, "worker.execute needs worker and task", "invalid_params");
      return;
    }
    const execute = params as unknown as WorkerExecuteParams;
    const worker = [...this.#workers].find((w) => w.link === link && w.serverId === execute.worker && w.active);
    if (worker === undefined) {
      fail(-32002, `no worker ${execute.worker} on this connection`, "not_found");
      return;
    }
    worker.execute(link, id, execute);
  }

  // -------------------------------------------------------------------------
  // Subscriptions

  /**
   * Subscribes to events matching `filter` (protocol section 6). Works before
   * `connect()` and survives reconnects (re-subscribed each time). With
   * `kinds` given, the handler's event type is narrowed to those kinds.
   */
  subscribe<K extends EventKind = EventKind>(filter: EventFilter<K> | undefined, handler: (event: EventOf<K>) => void): Unsubscribe {
    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    ready.catch(() => undefined);
    const sub: Sub = {
      filter,
      handler: handler as (event: never) => void,
      serverId: null,
      link: null,
      inflight: null,
      active: true,
      confirmed: false,
      ready,
      resolveReady,
      rejectReady,
    };
    if (this.#state === "closed") {
      sub.active = false;
      rejectReady(TaskmillError.client("closed", "the client is closed"));
    } else {
      this.#subs.add(sub);
      if (this.#state === "open" && this.#link !== null) void this.#subscribeOn(this.#link, sub);
    }
    const unsubscribe = (): Promise<void> => this.#unsubscribe(sub);
    return Object.assign(unsubscribe, { ready });
  }

  /** Calls `handler` for every event of one kind; the event type is narrowed to it. */
  on<K extends EventKind>(kind: K, handler: (event: EventOf<K>) => void): Unsubscribe {
    return this.subscribe<K>({ kinds: [kind] }, handler);
  }

  /** Events matching `filter` as an async iterator; `break` (or `return()`) unsubscribes. */
  events<K extends EventKind = EventKind>(filter?: EventFilter<K>, options: { readonly signal?: AbortSignal } = {}): EventStream<EventOf<K>> {
    const buffer: EventOf<K>[] = [];
    let waiting: { resolve: (r: IteratorResult<EventOf<K>, undefined>) => void; reject: (e: Error) => void } | null = null;
    let done = false;
    let failure: Error | null = null;
    const finish = (error: Error | null): void => {
      if (done) return;
      done = true;
      failure = error;
      offConnection();
      options.signal?.removeEventListener("abort", onAbort);
      void unsubscribe();
      if (waiting !== null) {
        const w = waiting;
        waiting = null;
        if (error !== null && buffer.length === 0) w.reject(error);
        else w.resolve({ value: undefined, done: true });
      }
    };
    const unsubscribe = this.subscribe<K>(filter, (event) => {
      if (done) return;
      if (waiting !== null) {
        const w = waiting;
        waiting = null;
        w.resolve({ value: event, done: false });
      } else {
        buffer.push(event);
      }
    });
    unsubscribe.ready.catch((error: unknown) => finish(error instanceof Error ? error : new Error(String(error))));
    const offConnection = this.onConnection((event) => {
      if (event.type === "closed" && this.#state === "closed") finish(null);
    });
    const onAbort = (): void => finish(null);
    if (options.signal?.aborted === true) finish(null);
    else options.signal?.addEventListener("abort", onAbort, { once: true });

    const stream: EventStream<EventOf<K>> = {
      ready: unsubscribe.ready,
      next: () => {
        const value = buffer.shift();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        if (done) {
          if (failure !== null) {
            const error = failure;
            failure = null;
            return Promise.reject(error);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiting = { resolve, reject };
        });
      },
      return: () => {
        finish(null);
        buffer.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return stream;
      },
    };
    return stream;
  }

  async #subscribeOn(link: Link, sub: Sub): Promise<void> {
    if (!sub.active || sub.inflight === link) return;
    sub.inflight = link;
    this.#subscribing += 1;
    try {
      const result = (await this.#rawRequest(link, "events.subscribe", sub.filter === undefined ? {} : { filter: sub.filter })) as { subscription: number };
      if (sub.inflight === link) sub.inflight = null;
      this.#subscribeDone(link);
      const serverId = result.subscription;
      if (!sub.active || link.closed) {
        if (!link.closed) void this.#rawRequest(link, "events.unsubscribe", { subscription: serverId }).catch(() => undefined);
        return;
      }
      sub.serverId = serverId;
      sub.link = link;
      this.#subsByServerId.set(serverId, sub);
      if (!sub.confirmed) {
        sub.confirmed = true;
        sub.resolveReady();
      }
      const early = this.#orphans.get(serverId);
      if (early !== undefined) {
        this.#orphans.delete(serverId);
        this.#orphanCount -= early.length;
        for (const event of early) this.#deliver(sub, event);
      }
    } catch (error) {
      if (sub.inflight === link) sub.inflight = null;
      this.#subscribeDone(link);
      if (isTaskmillError(error) && error.code !== 0) {
        // The sidecar refused the filter: this subscription cannot work.
        sub.active = false;
        this.#subs.delete(sub);
        sub.rejectReady(error);
        if (sub.confirmed) this.#emit({ type: "error", error });
      }
      // Otherwise the link dropped: the subscription is restored on reconnect.
    }
  }

  #subscribeDone(link: Link): void {
    if (link !== this.#link || link.closed) return;
    this.#subscribing = Math.max(0, this.#subscribing - 1);
    if (this.#subscribing === 0 && this.#orphanCount > 0) {
      // Deliver-or-drop happens synchronously after each confirmation, so what is left is for nobody.
      queueMicrotask(() => {
        if (this.#subscribing === 0) {
          this.#orphans.clear();
          this.#orphanCount = 0;
        }
      });
    }
  }

  async #unsubscribe(sub: Sub): Promise<void> {
    if (!sub.active) return;
    sub.active = false;
    this.#subs.delete(sub);
    if (!sub.confirmed) sub.rejectReady(TaskmillError.client("aborted", "unsubscribed before the subscription was confirmed"));
    const { serverId, link } = sub;
    if (serverId === null || link === null) return;
    this.#subsByServerId.delete(serverId);
    sub.serverId = null;
    sub.link = null;
    if (link.closed || this.#state !== "open") return;
    try {
      await this.#rawRequest(link, "events.unsubscribe", { subscription: serverId });
    } catch {
      // Gone already (connection dropped, or the sidecar forgot it): nothing to undo.
    }
  }

  // -------------------------------------------------------------------------
  // Workers

  /**
   * Executes tasks of `taskTypes` in this process (protocol section 8).
   * Resolves once registered; the worker is re-registered after every
   * reconnect. Rejects if the sidecar refuses the registration.
   */
  async work(taskTypes: WorkerTaskTypes, handler: WorkerHandler, options: WorkOptions = {}): Promise<WorkerHandle> {
    if (this.#state === "closed") throw TaskmillError.client("closed", "the client is closed", { method: "worker.register" });
    if (this.#state === "disconnected") throw TaskmillError.client("disconnected", "not connected (call connect() first)", { method: "worker.register" });
    const entry = new WorkerEntry(taskTypes, handler, options, this.#workerHost);
    entry.onStop = async (w) => {
      this.#workers.delete(w);
      const { link, serverId } = w;
      if (link !== null && serverId !== null && !(link as Link).closed) {
        try {
          await this.#rawRequest(link as Link, "worker.unregister", { worker: serverId });
        } catch {
          // The connection dropped: the sidecar forgets the worker anyway.
        }
      }
    };
    this.#workers.add(entry);
    if (this.#state === "open" && this.#link !== null) {
      try {
        await this.#registerOn(this.#link, entry, true);
      } catch (error) {
        // Not registered (refused, or the link dropped meanwhile): the caller gets no handle, so nothing may linger.
        entry.active = false;
        this.#workers.delete(entry);
        throw error;
      }
    } else {
      await new Promise<void>((resolve, reject) => {
        const off = this.onConnection((event) => {
          if (event.type === "open") {
            off();
            if (entry.active) resolve();
            else reject(entry.failure ?? TaskmillError.client("aborted", "worker stopped before it was registered"));
          } else if (event.type === "closed" && !event.willReconnect) {
            off();
            this.#workers.delete(entry);
            reject(TaskmillError.client("disconnected", "the connection closed before the worker was registered", { cause: event.error }));
          }
        });
      });
      if (!entry.active) throw entry.failure ?? TaskmillError.client("aborted", "worker stopped before it was registered");
    }
    return entry;
  }

  async #registerOn(link: Link, entry: WorkerEntry, rethrow = false): Promise<void> {
    try {
      const result = (await this.#rawRequest(link, "worker.register", entry.registerParams())) as { worker: string };
      if (!entry.active || link.closed) {
        if (!link.closed) void this.#rawRequest(link, "worker.unregister", { worker: result.worker }).catch(() => undefined);
        return;
      }
      entry.serverId = result.worker;
      entry.link = link;
    } catch (error) {
      if (isTaskmillError(error) && error.code !== 0) {
        entry.active = false;
        entry.failure = error;
        this.#workers.delete(entry);
        if (rethrow) throw error;
        this.#emit({ type: "error", error });
      } else if (rethrow) {
        throw error;
      }
    }
  }

  // -------------------------------------------------------------------------
  // waitFor

  /**
   * Resolves with the task's history record once it reaches a terminal state
   * (completed, failed, dead_letter, cancelled, superseded, expired,
   * dependency_failed). It subscribes to the task's events, then reads the
   * record, so a task that already finished resolves at once; after a
   * reconnect it reads the record again. Rejects with kind `"not_found"` for
   * an unknown id.
   */
  waitFor(id: TaskId, options: WaitForOptions = {}): Promise<HistoryTaskRecord> {
    return new Promise<HistoryTaskRecord>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (error: Error | null, record?: HistoryTaskRecord): void => {
        if (done) return;
        done = true;
        void off();
        offConnection();
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (error !== null) reject(error);
        else resolve(record as HistoryTaskRecord);
      };
      const check = async (): Promise<void> => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            if (done) return;
            const record = await this.get(id, options.signal === undefined ? {} : { signal: options.signal });
            if (isHistoryRecord(record)) {
              finish(null, record);
              return;
            }
          } while (again);
        } catch (error) {
          if (isTaskmillError(error) && (error.code !== 0 || error.kind === "closed" || error.kind === "aborted")) {
            finish(error);
          }
          // Timeouts and drops: the next event or the resync re-checks.
        } finally {
          checking = false;
        }
      };
      const off = this.subscribe({ task_ids: [id], kinds: TERMINAL_EVENT_KINDS }, (event) => {
        if (event.kind === "failed" && event.will_retry) return;
        if (event.kind === "superseded" && event.new_task_id === id) return;
        void check();
      });
      off.ready.then(
        () => void check(),
        (error: unknown) => finish(error instanceof Error ? error : new Error(String(error))),
      );
      const offConnection = this.onConnection((event) => {
        if (event.type === "resync") void check();
        else if (event.type === "closed" && this.#state === "closed") finish(TaskmillError.client("closed", "the client is closed"));
      });
      const onAbort = (): void => finish(TaskmillError.client("aborted", `waitFor(${id}) aborted`, { cause: options.signal?.reason }));
      if (options.signal?.aborted === true) onAbort();
      else options.signal?.addEventListener("abort", onAbort, { once: true });
      if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
        const ms = options.timeoutMs;
        timer = setTimeout(() => finish(TaskmillError.client("timeout", `task ${id} did not finish within ${ms} ms`)), ms);
      }
    });
  }

  // -------------------------------------------------------------------------
  // The API, one method per wire method

  /** `sidecar.info`. */
  info(options?: RequestOptions): Promise<SidecarInfo> {
    return this.request("sidecar.info", {}, options);
  }

  /** `sidecar.shutdown`: the sidecar answers, then exits 0. Call `close()` to stop reconnecting. */
  async shutdown(mode?: "graceful" | "hard", timeoutMs?: number, options?: RequestOptions): Promise<void> {
    await this.request("sidecar.shutdown", { ...(mode === undefined ? {} : { mode }), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }) }, options);
  }

  /** `task.submit`. */
  submit(params: SubmitParams, options?: RequestOptions): Promise<SubmitResult> {
    return this.request("task.submit", params, options);
  }

  /** `task.submit_batch` (one SQLite transaction); outcomes in input order. */
  async submitBatch(tasks: readonly SubmitParams[], options?: RequestOptions): Promise<readonly SubmitResult[]> {
    return (await this.request("task.submit_batch", { tasks }, options)).outcomes;
  }

  /** `task.get`: the active record, else the latest history record. Rejects with kind `"not_found"`. */
  get(id: TaskId, options?: RequestOptions): Promise<TaskRecord> {
    return this.request("task.get", { id }, options);
  }

  /** `task.lookup` by type and dedup key. */
  lookup(taskType: TaskType, key: string, options?: RequestOptions): Promise<LookupResult> {
    return this.request("task.lookup", { task_type: taskType, key }, options);
  }

  /** `task.list`. */
  list(params: ListParams = {}, options?: RequestOptions): Promise<ListResult> {
    return this.request("task.list", params, options);
  }

  /** `task.cancel` (cascades to children); resolves with whether it cancelled. */
  async cancel(id: TaskId, options?: RequestOptions): Promise<boolean> {
    return (await this.request("task.cancel", { id }, options)).cancelled;
  }

  /** `task.cancel_where` (at least one criterion); resolves with the cancelled ids. */
  async cancelWhere(params: CancelWhereParams, options?: RequestOptions): Promise<readonly TaskId[]> {
    return (await this.request("task.cancel_where", params, options)).cancelled;
  }

  /** `task.set_priority` (pending, paused or blocked tasks only). */
  async setPriority(id: TaskId, priority: PriorityInput, options?: RequestOptions): Promise<boolean> {
    return (await this.request("task.set_priority", { id, priority }, options)).updated;
  }

  /** `task.retry_dead_letter`: resubmits a dead-lettered task as a new task. */
  retryDeadLetter(id: TaskId, options?: RequestOptions): Promise<SubmitResult> {
    return this.request("task.retry_dead_letter", { id }, options);
  }

  /** `scheduler.snapshot`, optionally restricted to a domain. */
  snapshot(domain?: string, options?: RequestOptions): Promise<Snapshot> {
    return this.request("scheduler.snapshot", domain === undefined ? {} : { domain }, options);
  }

  /** `scheduler.pause`. */
  async pause(options?: RequestOptions): Promise<void> {
    await this.request("scheduler.pause", {}, options);
  }

  /** `scheduler.resume`. */
  async resume(options?: RequestOptions): Promise<void> {
    await this.request("scheduler.resume", {}, options);
  }

  /** `domain.pause`; resolves with the number of tasks paused. */
  async pauseDomain(domain: string, options?: RequestOptions): Promise<number> {
    return (await this.request("domain.pause", { domain }, options)).count;
  }

  /** `domain.resume`; resolves with the number of tasks resumed. */
  async resumeDomain(domain: string, options?: RequestOptions): Promise<number> {
    return (await this.request("domain.resume", { domain }, options)).count;
  }

  /** `group.pause`, auto-resuming after `durationMs` when given. */
  pauseGroup(group: string, durationMs?: number, options?: RequestOptions): Promise<{ readonly pending: number; readonly running: number }> {
    return this.request("group.pause", durationMs === undefined ? { group } : { group, duration_ms: durationMs }, options);
  }

  /** `group.resume`; resolves with the number of tasks resumed. */
  async resumeGroup(group: string, options?: RequestOptions): Promise<number> {
    return (await this.request("group.resume", { group }, options)).resumed;
  }

  /** `scheduler.set_max_concurrency`. */
  async setMaxConcurrency(value: number, options?: RequestOptions): Promise<void> {
    await this.request("scheduler.set_max_concurrency", { value }, options);
  }

  /** `domain.set_max_concurrency`; null removes the cap. */
  async setDomainMaxConcurrency(domain: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("domain.set_max_concurrency", { domain, value }, options);
  }

  /** `group.set_limit`; null removes it. */
  async setGroupLimit(group: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_limit", { group, value }, options);
  }

  /** `group.set_weight`; null removes it. */
  async setGroupWeight(group: string, weight: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_weight", { group, weight }, options);
  }

  /** `group.set_min_slots`; null removes it. */
  async setGroupMinSlots(group: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_min_slots", { group, value }, options);
  }

  /** `rate_limit.set` for a task type xor a group. */
  async setRateLimit(params: RateLimitParams, options?: RequestOptions): Promise<void> {
    await this.request("rate_limit.set", params, options);
  }

  /** `rate_limit.remove` for a task type xor a group. */
  async removeRateLimit(target: RateLimitTarget, options?: RequestOptions): Promise<void> {
    await this.request("rate_limit.remove", target, options);
  }

  /** `recurring.list`. */
  async recurringList(domain?: string, options?: RequestOptions): Promise<readonly RecurringSchedule[]> {
    return (await this.request("recurring.list", domain === undefined ? {} : { domain }, options)).schedules;
  }

  /** `recurring.pause`: the current occurrence runs, no next one is created. */
  async recurringPause(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.pause", { id }, options);
  }

  /** `recurring.resume`. */
  async recurringResume(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.resume", { id }, options);
  }

  /** `recurring.cancel`. */
  async recurringCancel(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.cancel", { id }, options);
  }

  /** `history.list`. */
  history(params: HistoryParams = {}, options?: RequestOptions): Promise<ListResult<HistoryTaskRecord>> {
    return this.request("history.list", params, options);
  }

  /** `history.stats` of a task type. */
  historyStats(taskType: TaskType, options?: RequestOptions): Promise<HistoryStats> {
    return this.request("history.stats", { task_type: taskType }, options);
  }

  /** `scheduler.metrics`: counters and gauges. */
  metrics(options?: RequestOptions): Promise<Metrics> {
    return this.request("scheduler.metrics", {}, options);
  }

  /** Alias of {@link TaskmillClient.metrics}. */
  stats(options?: RequestOptions): Promise<Metrics> {
    return this.metrics(options);
  }

  /** `dependencies.get`. */
  dependencies(id: TaskId, options?: RequestOptions): Promise<DependenciesResult> {
    return this.request("dependencies.get", { id }, options);
  }

  /** `tags.values`: the values of a tag key, with counts. */
  async tagValues(key: string, domain?: string, options?: RequestOptions): Promise<TagValuesResult["values"]> {
    return (await this.request("tags.values", domain === undefined ? { key } : { key, domain }, options)).values;
  }

  /** `tags.keys`: tag keys starting with `prefix`. */
  async tagKeys(prefix: string, domain?: string, options?: RequestOptions): Promise<TagKeysResult["keys"]> {
    return (await this.request("tags.keys", domain === undefined ? { prefix } : { prefix, domain }, options)).keys;
  }

  /** `pressure.set`: a host-set pressure source, 0..1; null removes it. */
  async setPressure(source: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("pressure.set", { source, value }, options);
  }
}

/** True when the record is a terminal history record. */
export function isHistoryRecord(record: TaskRecord): record is HistoryTaskRecord {
  return (HISTORY_STATUSES as readonly string[]).includes(record.status);
}

/** Creates a client without connecting. */
export function createClient(options: ClientOptions): TaskmillClient {
  return new TaskmillClient(options);
}
