/**
 * Event subscriptions: `events.subscribe` per handler, restored on every
 * reconnect, events routed by subscription id, and async-iterator streams
 * with a bounded buffer.
 *
 * @packageDocumentation
 */

import { TaskmillError, isRecord, isTaskmillError, toTaskmillError } from "./errors.js";
import type { EventFilter } from "./events.js";
import type { Link, Rpc } from "./rpc.js";

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

/** Options of `events()`. */
export interface EventStreamOptions {
  /** Ends the stream (done, no error) when it fires. */
  readonly signal?: AbortSignal;
  /**
   * Events held while the consumer is slower than the sidecar. Beyond this,
   * events are dropped and one `lagged {missed}` item takes their place, as
   * on the sidecar. Defaults to 1024.
   */
  readonly bufferSize?: number;
}

interface Sub {
  readonly filter: EventFilter | undefined;
  /** Deliver `lagged` even when `kinds` leaves it out (streams). */
  readonly alwaysLagged: boolean;
  readonly handler: (event: unknown) => void;
  readonly onEnd: ((reason: TaskmillError) => void) | undefined;
  serverId: number | null;
  link: Link | null;
  inflight: Link | null;
  active: boolean;
  confirmed: boolean;
  readonly ready: Promise<void>;
  readonly resolveReady: () => void;
  readonly rejectReady: (error: TaskmillError) => void;
}

const ORPHAN_LIMIT = 1000;

/** The subscriptions of one client. @internal */
export class Subscriptions {
  readonly #rpc: Rpc;
  readonly #subs = new Set<Sub>();
  readonly #byServerId = new Map<number, Sub>();
  readonly #orphans = new Map<number, unknown[]>();
  #orphanCount = 0;
  /** events.subscribe requests in flight on the current link; events for unknown ids are kept only meanwhile. */
  #subscribing = 0;

  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  subscribe(filter: EventFilter | undefined, handler: (event: unknown) => void, internal: { alwaysLagged?: boolean; onEnd?: (reason: TaskmillError) => void } = {}): Unsubscribe {
    let resolveReady!: () => void;
    let rejectReady!: (error: TaskmillError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    ready.catch(() => undefined);
    const sub: Sub = {
      filter,
      alwaysLagged: internal.alwaysLagged === true,
      handler,
      onEnd: internal.onEnd,
      serverId: null,
      link: null,
      inflight: null,
      active: true,
      confirmed: false,
      ready,
      resolveReady,
      rejectReady,
    };
    const reason = this.#rpc.reason;
    if (reason !== null) {
      sub.active = false;
      rejectReady(reason);
    } else {
      this.#subs.add(sub);
      const link = this.#rpc.openLink;
      if (link !== null) void this.#subscribeOn(link, sub);
    }
    return Object.assign(() => this.#unsubscribe(sub), { ready });
  }

  /** Events as an async iterator with a bounded buffer; see {@link EventStreamOptions}. */
  events<E extends { readonly kind: string; readonly seq: number }>(filter: EventFilter | undefined, options: EventStreamOptions = {}): EventStream<E> {
    const max = Math.max(1, options.bufferSize ?? 1024);
    const buffer: E[] = [];
    let missed = 0;
    let lastSeq = 0;
    let waiting: { resolve: (r: IteratorResult<E, undefined>) => void; reject: (e: TaskmillError) => void } | null = null;
    let done = false;
    let failure: TaskmillError | null = null;
    const lagged = (): E => {
      const item = { subscription: -1, seq: lastSeq, at: Date.now(), kind: "lagged", missed } as unknown as E;
      missed = 0;
      return item;
    };
    const finish = (error: TaskmillError | null): void => {
      if (done) return;
      done = true;
      failure = error;
      options.signal?.removeEventListener("abort", onAbort);
      void unsubscribe();
      if (waiting !== null) {
        const w = waiting;
        waiting = null;
        if (error !== null) {
          failure = null;
          w.reject(error);
        } else {
          w.resolve({ value: undefined, done: true });
        }
      }
    };
    const unsubscribe = this.subscribe(
      filter,
      (raw) => {
        if (done) return;
        const event = raw as E;
        lastSeq = Math.max(lastSeq, event.seq);
        if (waiting !== null) {
          const w = waiting;
          waiting = null;
          w.resolve({ value: event, done: false });
          return;
        }
        if (missed > 0 && buffer.length < max) buffer.push(lagged());
        if (buffer.length < max) buffer.push(event);
        else missed += 1;
      },
      { alwaysLagged: true, onEnd: (reason) => finish(reason) },
    );
    unsubscribe.ready.catch((error: unknown) => finish(toTaskmillError(error, "disconnected", "the subscription failed")));
    const onAbort = (): void => finish(null);
    if (options.signal?.aborted === true) finish(null);
    else options.signal?.addEventListener("abort", onAbort, { once: true });

    const stream: EventStream<E> = {
      ready: unsubscribe.ready,
      next: () => {
        const value = buffer.shift();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        if (missed > 0) return Promise.resolve({ value: lagged(), done: false });
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
        failure = null;
        buffer.length = 0;
        missed = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return stream;
      },
    };
    return stream;
  }

  /** The subscribe requests still to send on a fresh link. */
  restore(link: Link): Promise<void>[] {
    return [...this.#subs].filter((s) => s.active && s.link !== link && s.inflight !== link).map((s) => this.#subscribeOn(link, s));
  }

  dropped(link: Link): void {
    for (const sub of this.#subs) {
      if (sub.link === link) {
        sub.link = null;
        if (sub.serverId !== null) this.#byServerId.delete(sub.serverId);
        sub.serverId = null;
      }
      if (sub.inflight === link) sub.inflight = null;
    }
    this.#orphans.clear();
    this.#orphanCount = 0;
    this.#subscribing = 0;
  }

  terminated(reason: TaskmillError): void {
    const subs = [...this.#subs];
    this.#subs.clear();
    this.#byServerId.clear();
    for (const sub of subs) {
      sub.active = false;
      if (!sub.confirmed) sub.rejectReady(reason);
      sub.onEnd?.(reason);
    }
  }

  /** An `event` notification. */
  event(link: Link, params: unknown): void {
    if (!isRecord(params) || typeof params["subscription"] !== "number") return;
    const sub = this.#byServerId.get(params["subscription"]);
    if (sub === undefined || sub.link !== link) {
      // It may be for a subscription whose confirmation is still on its way.
      if (this.#subscribing > 0 && link === this.#rpc.link && this.#orphanCount < ORPHAN_LIMIT) {
        const list = this.#orphans.get(params["subscription"]) ?? [];
        list.push(params);
        this.#orphans.set(params["subscription"], list);
        this.#orphanCount += 1;
      }
      return;
    }
    this.#deliver(sub, params);
  }

  #deliver(sub: Sub, event: Record<string, unknown>): void {
    if (!sub.active) return;
    // The sidecar sends `lagged` whatever the kinds: a handler typed for other kinds must not see it.
    const kinds = sub.filter?.kinds;
    if (event["kind"] === "lagged" && kinds !== undefined && !sub.alwaysLagged && !(kinds as readonly string[]).includes("lagged")) return;
    try {
      sub.handler(event);
    } catch (error) {
      this.#rpc.emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
    }
  }

  async #subscribeOn(link: Link, sub: Sub): Promise<void> {
    if (!sub.active || sub.inflight === link) return;
    sub.inflight = link;
    this.#subscribing += 1;
    try {
      const result = (await this.#rpc.rawRequest(link, "events.subscribe", sub.filter === undefined ? {} : { filter: sub.filter })) as { subscription: number };
      if (sub.inflight === link) sub.inflight = null;
      this.#subscribeDone(link);
      const serverId = result.subscription;
      if (!sub.active || link.closed) {
        if (!link.closed) void this.#rpc.rawRequest(link, "events.unsubscribe", { subscription: serverId }).catch(() => undefined);
        return;
      }
      sub.serverId = serverId;
      sub.link = link;
      this.#byServerId.set(serverId, sub);
      if (!sub.confirmed) {
        sub.confirmed = true;
        sub.resolveReady();
      }
      const early = this.#orphans.get(serverId);
      if (early !== undefined) {
        this.#orphans.delete(serverId);
        this.#orphanCount -= early.length;
        for (const event of early) this.#deliver(sub, event as Record<string, unknown>);
      }
    } catch (error) {
      if (sub.inflight === link) sub.inflight = null;
      this.#subscribeDone(link);
      if (isTaskmillError(error) && error.code !== 0) {
        // The sidecar refused the filter: this subscription cannot work.
        sub.active = false;
        this.#subs.delete(sub);
        sub.rejectReady(error);
        sub.onEnd?.(error);
        if (sub.confirmed) this.#rpc.emit({ type: "error", error });
      }
      // Otherwise the link dropped: the subscription is restored on reconnect.
    }
  }

  #subscribeDone(link: Link): void {
    if (link !== this.#rpc.link || link.closed) return;
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
    this.#byServerId.delete(serverId);
    sub.serverId = null;
    sub.link = null;
    if (link.closed || this.#rpc.state !== "open") return;
    try {
      await this.#rpc.rawRequest(link, "events.unsubscribe", { subscription: serverId });
    } catch {
      // Gone already (connection dropped, or the sidecar forgot it): nothing to undo.
    }
  }
}
