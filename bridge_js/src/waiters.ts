/**
 * The subscriptions behind `waitFor` and `run`, shared by the waiters of a
 * client. The sidecar allows 1,000 subscriptions per connection, so one per
 * waiter would fail an app awaiting thousands of tasks at once.
 *
 * Waiters added in the same turn (a `Promise.all` over many ids) form a batch.
 * A batch of at most {@link MAX_FILTER_IDS} tasks gets one subscription to the
 * terminal kinds whose filter lists them (`task_ids`), so only their events
 * come through. A larger batch, or any batch while {@link MAX_FILTERED} such
 * subscriptions are open, joins the one subscription without a `task_ids`
 * filter (opened if needed), which receives the terminal events of every
 * task. Events are dispatched here by `task_id`. A waiter for a task that an
 * open subscription lists joins it at once. So there are at most
 * `MAX_FILTERED + 1` subscriptions, and none when nobody waits.
 *
 * A waiter stays with the subscription it joined, which stays open while any
 * of its waiters waits: the sidecar may answer a later `events.subscribe`
 * before it sends events it queued earlier on another subscription, so
 * closing a subscription that a waiter relies on could lose its task's end.
 *
 * A waiter reads its task (`task.get`) once its subscription is confirmed,
 * again after each terminal event of its task, after a `lagged` on its
 * subscription and after `resync`, when events may have been missed.
 *
 * @packageDocumentation
 */

import type { TaskmillError } from "./errors.js";
import { TERMINAL_EVENT_KINDS } from "./events.js";
import type { Rpc } from "./rpc.js";
import type { Subscriptions, Unsubscribe } from "./subscriptions.js";

/** Tasks a `task_ids` filter lists at most; a larger batch joins the unfiltered subscription. */
export const MAX_FILTER_IDS = 256;
/** Subscriptions with a `task_ids` filter open at once, at most. */
export const MAX_FILTERED = 3;

/** One pending `waitFor`. @internal */
export interface Waiter {
  readonly id: number;
  /** Reads the task again (coalesced by the waiter). */
  readonly check: () => void;
  /** Settles the waiter with an error (the client closed, the subscription was refused). */
  readonly fail: (error: TaskmillError) => void;
}

interface Shared {
  readonly off: Unsubscribe;
  /** The task ids the filter lists; null: every task. */
  readonly ids: ReadonlySet<number> | null;
  readonly waiters: Set<Waiter>;
  confirmed: boolean;
}

/** The waiters of one client and their subscriptions. @internal */
export class Waiters {
  readonly #subs: Subscriptions;
  readonly #shared = new Set<Shared>();
  /** Every waiter, by task id, for dispatching events. */
  readonly #byTask = new Map<number, Set<Waiter>>();
  /** The subscription each waiter joined. */
  readonly #joined = new Map<Waiter, Shared>();
  /** Waiters whose first read has started (their subscription is confirmed). */
  readonly #armed = new Set<Waiter>();
  /** Waiters not yet given a subscription. */
  #batch = new Set<Waiter>();
  #scheduled = false;
  /** Waiters left without a subscription by a sidecar shutting down: they get one on the next connection. */
  #orphaned = false;

  constructor(rpc: Rpc, subs: Subscriptions) {
    this.#subs = subs;
    rpc.onConnection((event) => {
      if (event.type === "resync") this.#check(this.#armed);
      if (event.type === "open" && this.#orphaned) this.#flush();
      // The client is finished: so is every waiter, with or without a subscription.
      if (event.type === "closed" && rpc.reason !== null) for (const set of [...this.#byTask.values()]) for (const w of [...set]) w.fail(rpc.reason);
    });
  }

  add(waiter: Waiter): void {
    let set = this.#byTask.get(waiter.id);
    if (set === undefined) this.#byTask.set(waiter.id, (set = new Set()));
    set.add(waiter);
    for (const shared of this.#shared) {
      if (shared.ids?.has(waiter.id) === true) {
        this.#join(shared, waiter);
        return;
      }
    }
    this.#batch.add(waiter);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (!this.#orphaned) this.#flush();
    });
  }

  remove(waiter: Waiter): void {
    const set = this.#byTask.get(waiter.id);
    if (set === undefined || !set.delete(waiter)) return;
    if (set.size === 0) this.#byTask.delete(waiter.id);
    this.#batch.delete(waiter);
    this.#armed.delete(waiter);
    const shared = this.#joined.get(waiter);
    this.#joined.delete(waiter);
    if (shared !== undefined && shared.waiters.delete(waiter) && shared.waiters.size === 0) {
      // Its last waiter left (an unconfirmed one is unsubscribed once confirmed).
      this.#shared.delete(shared);
      void shared.off();
    }
  }

  #join(shared: Shared, waiter: Waiter): void {
    shared.waiters.add(waiter);
    this.#joined.set(waiter, shared);
    if (shared.confirmed) this.#arm(waiter);
  }

  #arm(waiter: Waiter): void {
    this.#armed.add(waiter);
    waiter.check();
  }

  /** Gives the batch a subscription: a new filtered one, or the unfiltered one. */
  #flush(): void {
    this.#orphaned = false;
    const batch = [...this.#batch];
    this.#batch = new Set();
    if (batch.length === 0) return;
    const ids = new Set(batch.map((w) => w.id));
    let filtered = 0;
    let all: Shared | undefined;
    for (const shared of this.#shared) {
      if (shared.ids === null) all = shared;
      else filtered += 1;
    }
    const wide = ids.size > MAX_FILTER_IDS || filtered >= MAX_FILTERED;
    const shared = wide && all !== undefined ? all : this.#open(wide ? null : ids);
    for (const waiter of batch) this.#join(shared, waiter);
  }

  #open(ids: ReadonlySet<number> | null): Shared {
    const off = this.#subs.subscribe(
      ids === null ? { kinds: TERMINAL_EVENT_KINDS } : { kinds: TERMINAL_EVENT_KINDS, task_ids: [...ids] },
      (event) => this.#event(shared, event as Record<string, unknown>),
      { alwaysLagged: true, onEnd: (reason) => this.#ended(shared, reason) },
    );
    const shared: Shared = { off, ids, waiters: new Set(), confirmed: false };
    this.#shared.add(shared);
    off.ready.then(
      () => {
        shared.confirmed = true;
        for (const waiter of shared.waiters) this.#arm(waiter);
      },
      (error: TaskmillError) => this.#ended(shared, error),
    );
    return shared;
  }

  /** A subscription ended without being asked to: refused by the sidecar, or the client closed. */
  #ended(shared: Shared, reason: TaskmillError): void {
    if (!this.#shared.delete(shared)) return;
    const waiters = [...shared.waiters];
    for (const waiter of waiters) {
      this.#joined.delete(waiter);
      this.#armed.delete(waiter);
    }
    if (reason.kind === "shutting_down") {
      // Not final (as for task.get): the sidecar goes away, then the client reconnects or closes.
      for (const waiter of waiters) this.#batch.add(waiter);
      this.#orphaned = true;
    } else {
      for (const waiter of waiters) waiter.fail(reason);
    }
  }

  #event(shared: Shared, event: Record<string, unknown>): void {
    // Events of this subscription were dropped: its waiters read again.
    if (event["kind"] === "lagged") return this.#check(shared.waiters);
    const id = event["task_id"];
    // A retry follows; a task superseded in place keeps its id and goes on.
    if (event["kind"] === "failed" && event["will_retry"] === true) return;
    if (event["kind"] === "superseded" && event["new_task_id"] === id) return;
    if (typeof id === "number") this.#check(this.#byTask.get(id) ?? []);
  }

  #check(waiters: Iterable<Waiter>): void {
    for (const waiter of [...waiters]) if (this.#armed.has(waiter)) waiter.check();
  }
}
