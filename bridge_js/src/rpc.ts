/**
 * The connection core of the client: one link at a time to the sidecar,
 * request/response correlation, the handshake, reconnects with backoff, and
 * the life cycle that ends in the terminal state `closed`.
 *
 * ```
 * disconnected --connect()--> connecting --> open <--> reconnecting
 *       ^   (first connect failed)  |          |            |
 *       +---------------------------+          v            v
 *                         closed (terminal): close(), shutdown(), unauthorized,
 *                         protocol_error, reconnect off or exhausted
 * ```
 *
 * Requests in flight (ids, timeouts, `maxInFlight`, the queue while not
 * connected) are kept by {@link Calls} in `calls.ts`. Subscriptions and
 * workers live in their own modules and plug in through
 * {@link LinkServices}: the core tells them when a link opens (restore),
 * drops, or when the client is finished for good.
 *
 * @packageDocumentation
 */

import { Calls, forRequest, type Pending } from "./calls.js";
import { TaskmillError, isRecord, isTaskmillError, toTaskmillError } from "./errors.js";
import type { Connection, Connector, RpcId, RpcMessage, Transport, TransportSink } from "./transport.js";
import { PROTOCOL_VERSION, type HelloResult, type SidecarReady } from "./types.js";

/** This package's version, sent in `session.hello`. */
export const VERSION = "0.2.0";

/** Where the client is in its life. */
export type ConnectionState =
  /** Not connected and not trying: before `connect()`, or after a first `connect()` failed (call it again). */
  | "disconnected"
  /** The first `connect()` is in progress. */
  | "connecting"
  /** Connected, handshake done, subscriptions and workers restored. */
  | "open"
  /** Lost the connection; waiting to retry or retrying. */
  | "reconnecting"
  /** Terminal: the client gave up or was closed. `closed()` resolves with the reason. */
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
      /** Why. When `willReconnect` is false and the state is `closed`, this is the terminal reason. */
      readonly error: TaskmillError | undefined;
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
  /** Attempts after one drop before giving up (state `closed`, kind `disconnected`). Defaults to Infinity. */
  readonly maxAttempts?: number;
  /**
   * Called with every drop and every failed attempt (`attempt` counts the
   * failures since the drop, 0 for the drop itself); return false to give
   * up. Defaults to {@link defaultShouldRetry}: everything but `unauthorized`
   * and `protocol_error`, which no retry can fix.
   */
  readonly shouldRetry?: (error: TaskmillError, attempt: number) => boolean;
}

/** Retry anything but `unauthorized` and `protocol_error`. */
export function defaultShouldRetry(error: TaskmillError): boolean {
  return error.kind !== "unauthorized" && error.kind !== "protocol_error";
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
  /**
   * Requests sent and not yet answered, at most, per connection. Requests
   * beyond it wait in the client, in order, and go out as answers come back
   * (their timeout runs meanwhile). The sidecar answers -32008
   * `limit_exceeded` past 1,024. Defaults to 1000.
   */
  readonly maxInFlight?: number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Rejects with kind `"timeout"` after this long. Defaults to the client's `requestTimeoutMs`; 0 = never. */
  readonly timeoutMs?: number;
  /** Rejects with kind `"aborted"` when it fires. The late answer, if any, is ignored. */
  readonly signal?: AbortSignal;
}

/** One connection the core made. @internal */
export interface Link {
  readonly gen: number;
  transport: Transport | null;
  closed: boolean;
  hello: HelloResult | null;
  ready: SidecarReady | null;
  /** Ids sent on this link and not yet answered, including those the client stopped waiting for: the sidecar still counts them. */
  readonly sent: Set<RpcId>;
  /** Requests held back by `maxInFlight`, in sending order. */
  readonly held: Pending[];
}

/** What subscriptions and workers plug into the core. @internal */
export interface LinkServices {
  /** During a handshake: the work that re-creates server-side state on `link` (empty when nothing is left). */
  restore(link: Link): Promise<void>[];
  /** `link` is gone: forget what lived on it. */
  dropped(link: Link): void;
  notification(link: Link, method: string, params: unknown): void;
  serverRequest(link: Link, id: RpcId, method: string, params: unknown): void;
  /** The client reached its terminal state. */
  terminated(reason: TaskmillError): void;
}

const closedError = (): TaskmillError => TaskmillError.client("closed", "the client is closed");

/** Tokens refused in a row, each renewed by the connector, before an attempt fails as unauthorized. */
const MAX_RENEWALS = 3;

/** The connection core. @internal */
export class Rpc {
  readonly #connector: Connector;
  readonly #clientName: string;
  readonly #reconnect: Required<Omit<ReconnectOptions, "shouldRetry">> | null;
  readonly #shouldRetry: (error: TaskmillError, attempt: number) => boolean;
  readonly #lifetime = new AbortController();
  readonly #services: LinkServices;
  #state: ConnectionState = "disconnected";
  #link: Link | null = null;
  #gen = 0;
  #everOpened = false;
  #connecting: Promise<void> | null = null;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #shutdownRequested = false;
  #reason: TaskmillError | null = null;
  readonly #closed: Promise<TaskmillError>;
  #resolveClosed!: (reason: TaskmillError) => void;
  readonly #calls: Calls;
  readonly #listeners = new Set<(event: ConnectionEvent) => void>();

  constructor(options: ClientOptions, services: LinkServices) {
    this.#connector = options.connector;
    this.#services = services;
    this.#clientName = options.clientName ?? `taskmill-bridge/${VERSION}`;
    this.#calls = new Calls(options.requestTimeoutMs ?? 30_000, options.maxInFlight ?? 1000);
    const r = options.reconnect ?? true;
    const { shouldRetry, ...rest } = r === true || r === false ? ({} as ReconnectOptions) : r;
    this.#shouldRetry = shouldRetry ?? defaultShouldRetry;
    this.#reconnect =
      r === false ? null : { initialDelayMs: 250, maxDelayMs: 5000, factor: 1.6, jitter: 0.5, maxAttempts: Number.POSITIVE_INFINITY, ...rest };
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The open link, if any. */
  get openLink(): Link | null {
    return this.#state === "open" ? this.#link : null;
  }

  get link(): Link | null {
    return this.#link;
  }

  /** The terminal reason, once closed. */
  get reason(): TaskmillError | null {
    return this.#reason;
  }

  closed(): Promise<TaskmillError> {
    return this.#closed;
  }

  /** The error an operation gets while the client is closed or not connected, or null when it may proceed. */
  refusal(method?: string): TaskmillError | null {
    if (this.#reason !== null) return method === undefined ? this.#reason : forRequest(this.#reason, method);
    if (this.#state === "disconnected") return TaskmillError.client("disconnected", "not connected (call connect() first)", { method });
    return null;
  }

  onConnection(listener: (event: ConnectionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  emit(event: ConnectionEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        if (event.type !== "error") this.emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
      }
    }
  }

  // -------------------------------------------------------------------------
  // Life cycle

  connect(): Promise<void> {
    if (this.#reason !== null) return Promise.reject(this.#reason);
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
            reject(event.error ?? closedError());
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
        const err = toTaskmillError(error, "connect_failed", "could not connect");
        if (this.#reason !== null) throw this.#reason;
        this.#state = "disconnected";
        this.emit({ type: "closed", error: err, willReconnect: false, delayMs: undefined });
        this.#calls.rejectQueued(err);
        throw err;
      },
    );
    this.#connecting = attempt;
    return attempt;
  }

  /** Closes for good with kind `"closed"`. */
  close(): void {
    this.terminate(closedError());
  }

  /** The next drop ends the client instead of reconnecting (a `sidecar.shutdown` is on its way). */
  expectShutdown(expected: boolean): void {
    this.#shutdownRequested = expected;
  }

  /** Enters the terminal state: everything pending settles with `reason`. */
  terminate(reason: TaskmillError): void {
    if (this.#reason !== null) return;
    this.#reason = reason;
    this.#state = "closed";
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#lifetime.abort(reason);
    this.#calls.rejectQueued(reason);
    const link = this.#link;
    if (link !== null && !link.closed) {
      this.#dropLink(link, reason);
      link.transport?.close();
    }
    this.#services.terminated(reason);
    this.emit({ type: "closed", error: reason, willReconnect: false, delayMs: undefined });
    this.#resolveClosed(reason);
  }

  /**
   * One (re)connect attempt. Credentials the sidecar refused as unauthorized
   * are renewed when the connection says they can change
   * ({@link Connection.refused}, an endpoint provider): the connector is
   * called again, at most {@link MAX_RENEWALS} times in a row, before the
   * attempt fails with the refusal.
   */
  async #attempt(attempt: number): Promise<void> {
    for (let renewals = 0; ; renewals += 1) {
      if ((await this.#open(attempt, renewals < MAX_RENEWALS)) === "opened") return;
    }
  }

  /** Opens one connection and makes the handshake; "renew" when the token was refused and the connector will bring another. */
  async #open(attempt: number, mayRenew: boolean): Promise<"opened" | "renew"> {
    const link: Link = { gen: ++this.#gen, transport: null, closed: false, hello: null, ready: null, sent: new Set(), held: [] };
    this.#link = link;
    if (this.#state !== "reconnecting") this.#state = "connecting";
    this.emit({ type: "connecting", attempt });
    const sink: TransportSink = {
      message: (message) => this.#onMessage(link, message),
      protocolError: (error) => this.emit({ type: "error", error }),
      close: (error) => this.#onClose(link, error),
    };
    let connection: Connection;
    try {
      connection = await this.#connector(sink, this.#lifetime.signal);
    } catch (error) {
      link.closed = true;
      throw toTaskmillError(error, "connect_failed", "could not connect");
    }
    link.transport = connection.transport;
    link.ready = connection.ready ?? null;
    const stale = (): TaskmillError | undefined =>
      this.#reason ?? (link.closed ? TaskmillError.client("disconnected", "the connection closed during the handshake") : undefined);
    let refusal: TaskmillError | null = null;
    try {
      const early = stale();
      if (early !== undefined) throw early;
      if (connection.hello !== null) {
        let hello: HelloResult;
        try {
          hello = (await this.rawRequest(link, "session.hello", {
            token: connection.hello.token,
            protocol: PROTOCOL_VERSION,
            client: this.#clientName,
          })) as HelloResult;
        } catch (error) {
          if (isTaskmillError(error) && error.kind === "unauthorized") refusal = error;
          throw error;
        }
        if (!isRecord(hello) || hello.protocol !== PROTOCOL_VERSION) {
          throw TaskmillError.client("protocol_error", `the sidecar speaks protocol ${String(isRecord(hello) ? hello.protocol : "?")}, this client speaks ${PROTOCOL_VERSION}`);
        }
        link.hello = hello;
      }
      for (;;) {
        const work = this.#services.restore(link);
        if (work.length === 0) break;
        await Promise.all(work);
        const late = stale();
        if (late !== undefined) throw late;
      }
    } catch (error) {
      const err = toTaskmillError(error, "connect_failed", "the handshake failed");
      if (!link.closed) {
        this.#dropLink(link, err);
        connection.transport.close();
      }
      if (refusal !== null && connection.refused !== undefined && mayRenew && this.#reason === null) {
        connection.refused(refusal);
        return "renew";
      }
      throw err;
    }
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    this.#state = "open";
    this.#calls.flushQueued(link);
    this.emit({ type: "open", reconnected, session: link.hello, ready: link.ready });
    if (reconnected) this.emit({ type: "resync" });
    return "opened";
  }

  #onClose(link: Link, error: Error | undefined): void {
    if (link.closed) return;
    link.closed = true;
    if (link !== this.#link) return;
    const wasOpen = this.#state === "open";
    // A close the sidecar explained (WebSocket 4401: unauthorized) keeps its kind.
    const reason =
      isTaskmillError(error) && error.code !== 0
        ? error
        : TaskmillError.client("disconnected", `the connection closed${error ? `: ${error.message}` : ""}`, { cause: error });
    this.#dropLink(link, reason);
    if (!wasOpen) return; // A handshake in progress fails through its own requests.
    this.#afterDrop(reason, 0);
  }

  /** After a drop (attempt 0) or a failed reconnect attempt: schedule the next attempt or give up. */
  #afterDrop(error: TaskmillError, failedAttempts: number): void {
    if (this.#reason !== null) return;
    const r = this.#reconnect;
    if (this.#shutdownRequested) {
      this.terminate(TaskmillError.client("closed", "the sidecar was shut down (shutdown())", { cause: error }));
      return;
    }
    const fatal = (): TaskmillError =>
      error.kind === "unauthorized" || error.kind === "protocol_error"
        ? error
        : TaskmillError.client("disconnected", `gave up reconnecting: ${error.message}`, { cause: error });
    if (r === null || !this.#shouldRetry(error, failedAttempts)) {
      this.terminate(r === null && error.kind === "disconnected" ? error : fatal());
      return;
    }
    if (failedAttempts >= r.maxAttempts) {
      this.terminate(TaskmillError.client("disconnected", `gave up after ${failedAttempts} reconnect attempts: ${error.message}`, { cause: error }));
      return;
    }
    this.#state = "reconnecting";
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * r.factor ** failedAttempts);
    const delayMs = Math.round(base * (1 - r.jitter * Math.random()));
    this.emit({ type: "closed", error, willReconnect: true, delayMs });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#state !== "reconnecting") return;
      this.#attempt(failedAttempts + 1).catch((err: unknown) => {
        if (this.#state !== "reconnecting") return;
        this.#afterDrop(toTaskmillError(err, "connect_failed", "could not reconnect"), failedAttempts + 1);
      });
    }, delayMs);
  }

  /**
   * Forgets everything tied to a link: its requests reject, subscriptions and
   * workers let go of it. Requests held back by `maxInFlight` were never sent:
   * they wait for the next connection like requests made while reconnecting.
   */
  #dropLink(link: Link, error: TaskmillError): void {
    link.closed = true;
    this.#calls.dropped(link, error, this.#reason !== null);
    this.#services.dropped(link);
  }

  // -------------------------------------------------------------------------
  // Requests

  /**
   * Sends a request once the client is open. While connecting or
   * reconnecting it waits (within its timeout); while disconnected or closed
   * it rejects at once. It is never re-sent after a drop.
   */
  call(method: string, params: object = {}, options: RequestOptions = {}): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const refused = this.refusal(method);
      if (refused !== null) {
        reject(refused);
        return;
      }
      const pending = this.#calls.arm({ method, params, resolve, reject, raw: false }, options);
      if (pending === null) return;
      if (this.#state === "open" && this.#link !== null) this.#calls.send(this.#link, pending);
      else this.#calls.queue(pending);
    });
  }

  /** A request on a specific link, bypassing the open-gate (handshake and restore). */
  rawRequest(link: Link, method: string, params: object): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const pending = this.#calls.arm({ method, params, resolve, reject, raw: true }, {});
      if (pending !== null) this.#calls.send(link, pending);
    });
  }

  /** Sends a message on `link` if it is still open; throws what the transport throws. */
  sendOn(link: Link, message: RpcMessage): void {
    if (link.closed || link.transport === null) return;
    link.transport.send(message);
  }

  // -------------------------------------------------------------------------
  // Incoming messages

  #onMessage(link: Link, message: unknown): void {
    if (link.closed) return;
    if (!isRecord(message)) {
      this.emit({ type: "error", error: new Error("received a message that is not a JSON-RPC object") });
      return;
    }
    const method = message["method"];
    const id = message["id"];
    if (typeof method === "string") {
      if (id === undefined || id === null) this.#services.notification(link, method, message["params"]);
      else if (typeof id === "string" || typeof id === "number") this.#services.serverRequest(link, id, method, message["params"]);
      return;
    }
    if ("result" in message || "error" in message) {
      const stray = this.#calls.answer(link, message);
      if (stray !== undefined) this.emit({ type: "error", error: stray });
      return;
    }
    this.emit({ type: "error", error: new Error("received a message that is neither a request, a notification nor a response") });
  }
}
