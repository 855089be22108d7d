/**
 * The requests of the connection core: ids and the answers that settle
 * them, each request's timeout and abort signal, the `maxInFlight` bound per
 * connection, and the requests waiting for a connection.
 *
 * A request is armed (its timeout and abort signal), waits in the queue
 * while no link is open, is held back on its link while `maxInFlight`
 * requests are unanswered there, is sent, and settles with its answer, its
 * timeout or abort, the loss of its link, or the end of the client.
 *
 * The core (`Rpc` in `rpc.ts`) decides when a link opens, drops or the
 * client ends, and tells {@link Calls}.
 *
 * @packageDocumentation
 */

import { TaskmillError, isRecord, isTaskmillError } from "./errors.js";
import type { Link, RequestOptions } from "./rpc.js";
import type { RpcFailure, RpcId } from "./transport.js";

/** One request, from the call until it settles. @internal */
export interface Pending {
  readonly method: string;
  readonly params: unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: TaskmillError) => void;
  /** Made for one link (handshake, restore, subscriptions): never moved to another. */
  readonly raw: boolean;
  id: RpcId | null;
  link: Link | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** What a request is made of, before it is armed. @internal */
export interface PendingBase {
  method: string;
  params: unknown;
  resolve: (value: unknown) => void;
  reject: (error: TaskmillError) => void;
  raw: boolean;
}

/** The same failure, for one request: its method in the message and `method`, the shared reason as `cause`. @internal */
export function forRequest(reason: TaskmillError, method: string): TaskmillError {
  return new TaskmillError(`${method}: ${reason.message}`, { code: reason.code, kind: reason.kind, field: reason.field, data: reason.data, method, cause: reason });
}

/** The requests of one client. @internal */
export class Calls {
  readonly #timeoutMs: number;
  readonly #maxInFlight: number;
  #nextId = 1;
  readonly #pending = new Map<RpcId, Pending>();
  #queued: Pending[] = [];

  /** `timeoutMs`: the default timeout of each request (0 = none); `maxInFlight`: sent and unanswered per link, at most. */
  constructor(timeoutMs: number, maxInFlight: number) {
    this.#timeoutMs = timeoutMs;
    this.#maxInFlight = Math.max(1, maxInFlight);
  }

  /** Starts the request's timeout and listens to its signal; null (and rejected) when the signal already fired. */
  arm(base: PendingBase, options: RequestOptions): Pending | null {
    const pending: Pending = { ...base, id: null, link: null, timer: undefined, signal: undefined, onAbort: undefined };
    const signal = options.signal;
    const aborted = (): TaskmillError => TaskmillError.client("aborted", `${base.method} aborted`, { method: base.method, cause: signal?.reason });
    if (signal?.aborted === true) {
      base.reject(aborted());
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
        base.reject(aborted());
      };
      signal.addEventListener("abort", pending.onAbort, { once: true });
    }
    return pending;
  }

  /** Keeps the request until a link opens ({@link flushQueued}). */
  queue(pending: Pending): void {
    this.#queued.push(pending);
  }

  /** Sends now, or holds the request back while `maxInFlight` requests are unanswered (link-bound requests first). */
  send(link: Link, pending: Pending): void {
    pending.link = link;
    if (!link.closed && (link.sent.size >= this.#maxInFlight || link.held.length > 0)) {
      const at = pending.raw ? link.held.findIndex((p) => !p.raw) : -1;
      link.held.splice(at < 0 ? link.held.length : at, 0, pending);
      return;
    }
    this.#transmit(link, pending);
  }

  /** `link` opened: what waited for a connection goes out on it, in order. */
  flushQueued(link: Link): void {
    for (const pending of this.#queued.splice(0)) this.send(link, pending);
  }

  /** No connection will come (a first connect failed, or the client ended): what waited for one rejects. */
  rejectQueued(reason: TaskmillError): void {
    for (const pending of this.#queued.splice(0)) {
      this.#settle(pending);
      pending.reject(forRequest(reason, pending.method));
    }
  }

  /**
   * `link` is gone: its requests reject with `error`. Requests held back by
   * `maxInFlight` were never sent: they wait for the next connection like
   * requests made while reconnecting, unless bound to the link or `final`
   * (the client ended).
   */
  dropped(link: Link, error: TaskmillError, final: boolean): void {
    const failed: Pending[] = [];
    const requeued: Pending[] = [];
    for (const pending of link.held.splice(0)) {
      pending.link = null;
      (pending.raw || final ? failed : requeued).push(pending);
    }
    this.#queued = requeued.concat(this.#queued);
    for (const [id, pending] of this.#pending) {
      if (pending.link !== link) continue;
      this.#pending.delete(id);
      failed.push(pending);
    }
    for (const pending of failed) {
      this.#settle(pending);
      pending.reject(forRequest(error, pending.method));
    }
  }

  /**
   * A response (`result` or `error`) came on `link`: settles its request and
   * sends what was held back. Returns the error of a failure no request is
   * waiting for (a late answer to one that timed out or was aborted), for
   * the caller to report.
   */
  answer(link: Link, message: Record<string, unknown>): TaskmillError | undefined {
    const id = message["id"];
    this.#answered(link, id);
    const pending = typeof id === "number" || typeof id === "string" ? this.#pending.get(id) : undefined;
    if (pending === undefined || pending.link !== link) {
      if ("error" in message && isRecord(message["error"])) return TaskmillError.fromRpc(message["error"] as unknown as RpcFailure["error"]);
      return undefined; // A late answer to a request that timed out or was aborted.
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
    return undefined;
  }

  #transmit(link: Link, pending: Pending): void {
    const id = this.#nextId++;
    pending.id = id;
    this.#pending.set(id, pending);
    try {
      if (link.closed || link.transport === null) throw TaskmillError.client("disconnected", "the connection is closed", { method: pending.method });
      link.sent.add(id);
      link.transport.send({ jsonrpc: "2.0", id, method: pending.method, params: pending.params });
    } catch (error) {
      link.sent.delete(id);
      this.#forget(pending);
      // The transport throws a TaskmillError when it cannot send; anything else is the encoder refusing the params.
      pending.reject(
        isTaskmillError(error)
          ? error
          : new TaskmillError(`${pending.method}: cannot encode the request: ${error instanceof Error ? error.message : String(error)}`, {
              code: -32600,
              kind: "invalid_request",
              method: pending.method,
              cause: error,
            }),
      );
    }
  }

  #forget(pending: Pending): void {
    this.#settle(pending);
    if (pending.id !== null && this.#pending.get(pending.id) === pending) this.#pending.delete(pending.id);
    for (const queue of [this.#queued, pending.link?.held ?? []]) {
      const index = queue.indexOf(pending);
      if (index >= 0) queue.splice(index, 1);
    }
  }

  /** An answer came back on `link`: send what was held back, within the bound. */
  #answered(link: Link, id: unknown): void {
    if (!link.sent.delete(id as RpcId)) return;
    while (link.held.length > 0 && link.sent.size < this.#maxInFlight && !link.closed) {
      this.#transmit(link, link.held.shift() as Pending);
    }
  }

  #settle(pending: Pending): void {
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    pending.timer = undefined;
    if (pending.signal !== undefined && pending.onAbort !== undefined) pending.signal.removeEventListener("abort", pending.onAbort);
    pending.onAbort = undefined;
  }
}
