/**
 * The subscriptions behind `waitFor` and `run`, shared by every waiter of a
 * client. The sidecar allows 1,000 subscriptions per connection, so one per
 * waiter would fail an app awaiting thousands of tasks at once.
 *
 * One subscription to the terminal kinds serves all the waiters. While few
 * tasks are awaited, its filter lists them (`task_ids`), so the client gets
 * only their events; when a task it does not cover is awaited, a new
 * subscription with the current ids replaces it (the new one confirmed before
 * the old one goes, so no event is missed). Beyond {@link MAX_FILTER_IDS}
 * tasks it has no `task_ids` filter and receives the terminal events of
 * every task, dispatched here by `task_id`, until no more than half that
 * many are awaited. At most two subscriptions exist at once (two only while
 * replacing), none when nobody waits.
 *
 * A waiter reads its task (`task.get`) once a subscription covering it is
 * confirmed, again after each terminal event of its task, and after `resync`
 * and `lagged`, when events may have been missed.
 *
 * @packageDocumentation
 */

import type { TaskmillError } from "./errors.js";
import { TERMINAL_EVENT_KINDS } from "./events.js";
import type { Rpc } from "./rpc.js";
import type { Subscriptions, Unsubscribe } from "./subscriptions.js";

/** Beyond this many awaited tasks, the shared subscription has no `task_ids` filter. */
export const MAX_FILTER_IDS = 256;

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
  confirmed: boolean;
}

/** The waiters of one client and their shared subscriptions. @internal */
export class Waiters {
  readonly #subs: Subscriptions;
  readonly #byTask = new Map<number, Set<Waiter>>();
  /** Waiters whose first read has been started (a confirmed subscription covers them). */
  readonly #armed = new Set<Waiter>();
  /** The confirmed subscription, and the one replacing it (or the first, not yet confirmed). */
  #current: Shared | null = null;
  #next: Shared | null = null;
  #scheduled = false;
  /** A subscription was refused by a sidecar shutting down: try again on the next connection. */
  #orphaned = false;

  constructor(rpc: Rpc, subs: Subscriptions) {
    this.#subs = subs;
    rpc.onConnection((event) => {
      if (event.type === "resync") this.#checkArmed();
      if (event.type === "open" && this.#orphaned) this.#open();
      // The client is finished: so is every waiter, with or without a subscription.
      if (event.type === "closed" && rpc.reason !== null) for (const waiter of this.#all()) waiter.fail(rpc.reason);
    });
  }

  add(waiter: Waiter): void {
    let set = this.#byTask.get(waiter.id);
    if (set === undefined) this.#byTask.set(waiter.id, (set = new Set()));
    set.add(waiter);
    if (this.#current !== null && covers(this.#current, waiter.id)) this.#arm(waiter);
    else if (this.#next === null || !covers(this.#next, waiter.id)) this.#schedule();
  }

  remove(waiter: Waiter): void {
    const set = this.#byTask.get(waiter.id);
    if (set === undefined || !set.delete(waiter)) return;
    if (set.size === 0) this.#byTask.delete(waiter.id);
    this.#armed.delete(waiter);
    if (this.#byTask.size > 0) {
      // Few waiters left: back to a filter listing them.
      if (this.#current?.ids === null && this.#byTask.size <= MAX_FILTER_IDS / 2) this.#schedule();
      return;
    }
    // Nobody waits: close what is open (an unconfirmed one is unsubscribed once confirmed).
    for (const shared of [this.#current, this.#next]) if (shared !== null) void shared.off();
    this.#current = this.#next = null;
  }

  #arm(waiter: Waiter): void {
    if (this.#armed.has(waiter)) return;
    this.#armed.add(waiter);
    waiter.check();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Waiters added in the same turn (a Promise.all over many ids) share one request.
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#open();
    });
  }

  /** Opens a subscription covering every waiter, unless one is already on its way. */
  #open(): void {
    if (this.#next !== null || this.#byTask.size === 0) return;
    this.#orphaned = false;
    const ids = this.#byTask.size > MAX_FILTER_IDS ? null : new Set(this.#byTask.keys());
    const off = this.#subs.subscribe(
      ids === null ? { kinds: TERMINAL_EVENT_KINDS } : { kinds: TERMINAL_EVENT_KINDS, task_ids: [...ids] },
      (event) => this.#event(event as Record<string, unknown>),
      { alwaysLagged: true, onEnd: (reason) => this.#ended(shared, reason) },
    );
    const shared: Shared = { off, ids, confirmed: false };
    this.#next = shared;
    off.ready.then(
      () => this.#confirmed(shared),
      (error: TaskmillError) => this.#ended(shared, error),
    );
  }

  #confirmed(shared: Shared): void {
    if (shared !== this.#next) return;
    shared.confirmed = true;
    const old = this.#current;
    this.#current = shared;
    this.#next = null;
    if (old !== null) void old.off();
    let uncovered = false;
    for (const [id, set] of this.#byTask) {
      if (covers(shared, id)) for (const waiter of set) this.#arm(waiter);
      else {
        // Awaited since this one was opened: no events until the next one, after which they read again.
        uncovered = true;
        for (const waiter of set) this.#armed.delete(waiter);
      }
    }
    if (uncovered) this.#open();
  }

  /** A subscription ended without being asked to: refused by the sidecar, or the client closed. */
  #ended(shared: Shared, reason: TaskmillError): void {
    if (shared === this.#current) {
      // The waiters lost their events.
      this.#current = null;
      this.#armed.clear();
    } else if (shared === this.#next) {
      // The waiters the current subscription covers (armed) go on with it.
      this.#next = null;
    } else {
      return;
    }
    if (reason.kind === "shutting_down") {
      // Not final (as for task.get): the sidecar goes away, then the client reconnects (the others read again then) or closes.
      this.#orphaned = true;
      return;
    }
    for (const waiter of this.#all()) if (!this.#armed.has(waiter)) waiter.fail(reason);
  }

  #all(): Waiter[] {
    return [...this.#byTask.values()].flatMap((set) => [...set]);
  }

  #event(event: Record<string, unknown>): void {
    if (event["kind"] === "lagged") {
      this.#checkArmed();
      return;
    }
    const id = event["task_id"];
    if (typeof id !== "number") return;
    // A retry follows; a task superseded in place keeps its id and goes on.
    if (event["kind"] === "failed" && event["will_retry"] === true) return;
    if (event["kind"] === "superseded" && event["new_task_id"] === id) return;
    for (const waiter of [...(this.#byTask.get(id) ?? [])]) if (this.#armed.has(waiter)) waiter.check();
  }

  #checkArmed(): void {
    for (const waiter of [...this.#armed]) waiter.check();
  }
}

function covers(shared: Shared, id: number): boolean {
  return shared.ids === null || shared.ids.has(id);
}
