/**
 * `createTaskStore(client)`: one consistent, immutable view of the tasks a
 * UI shows (running with progress, queued, recently finished, counts,
 * pressure), kept live from a snapshot plus events.
 *
 * - One subscription to every event (of one domain, optionally), progress
 *   coalesced by the sidecar.
 * - Rebuilt from `task.list` + `scheduler.snapshot` (+ `history.list`) at
 *   start, after a reconnect (`resync`), after `lagged`, and, while events
 *   change the queue, at most every `refreshMs` to pick up what events do
 *   not carry (counts of tasks beyond the lists, groups, resources).
 *   Events received while a rebuild is in flight are replayed onto it;
 *   duplicates are dropped by `seq`.
 * - Memory is bounded: `queued` and `finished` tasks are capped.
 * - Framework-agnostic: `subscribe(listener)` + `getSnapshot()` with
 *   referential stability (React's `useSyncExternalStore`), and
 *   `subscribe(run)` calls `run` at once with the current state (the Svelte
 *   store contract).
 *
 * @packageDocumentation
 */

import type { TaskmillClient } from "./client.js";
import { TaskmillError, isTaskmillError } from "./errors.js";
import type { TaskmillEvent } from "./events.js";
import { TaskTable, type LiveTask, type TaskCounts } from "./livetasks.js";
import type { AnyTasks, TaskId } from "./tasks.js";
import type { ActiveStatus, PressureSource, Snapshot } from "./types.js";

/** Options of {@link createTaskStore}. */
export interface TaskStoreOptions {
  /** Only this domain's tasks (events, snapshot and lists). Defaults to all. */
  readonly domain?: string;
  /** How many queued tasks to hold (the oldest, as `task.list` returns them). Defaults to 100. */
  readonly queued?: number;
  /** How many finished tasks to hold (the most recent). Defaults to 50. */
  readonly finished?: number;
  /** Progress events per task at most every this many ms (the subscription's `progress_interval_ms`). Defaults to 100. */
  readonly progressIntervalMs?: number;
  /** While events change the queue, refresh lists and counts at most this often. 0: only on start, reconnect and `lagged`. Defaults to 1000. */
  readonly refreshMs?: number;
}

/** Where the store's data stands. */
export type TaskStoreStatus =
  /** Waiting for the first snapshot. */
  | "connecting"
  /** In sync with the sidecar. */
  | "live"
  /** Rebuilding after a reconnect or `lagged`; the data shown may be behind. */
  | "syncing"
  /** Disconnected, the client is reconnecting; the data shown is from before. */
  | "stale"
  /** The client closed (see `error`), or `store.close()` was called. */
  | "closed";

/** The store's state: immutable; a new object after every change. */
export interface TaskStoreState<Tasks = AnyTasks> {
  readonly status: TaskStoreStatus;
  /** The client's close reason, or the last failed refresh. */
  readonly error: TaskmillError | null;
  /** Running tasks, oldest start first. */
  readonly running: readonly LiveTask<Tasks>[];
  /** Queued tasks (pending, paused, blocked, waiting), by id; at most `options.queued`. */
  readonly queued: readonly LiveTask<Tasks>[];
  /** Finished tasks, newest first; at most `options.finished`. */
  readonly finished: readonly LiveTask<Tasks>[];
  /** Every task above by id. */
  readonly byId: ReadonlyMap<TaskId, LiveTask<Tasks>>;
  readonly counts: TaskCounts;
  readonly pressure: number;
  readonly pressureBreakdown: readonly PressureSource[];
  readonly isPaused: boolean;
  /** The last `scheduler.snapshot` (domains, groups, resources...), or null before the first. */
  readonly snapshot: Snapshot<Tasks> | null;
  /** The seq of the last event applied. */
  readonly seq: number;
}

/** A live view of the sidecar's tasks. */
export interface TaskStore<Tasks = AnyTasks> {
  /** The current state; the same object until something changes. */
  getSnapshot(): TaskStoreState<Tasks>;
  /**
   * Calls `listener` with the state now and after every change (changes in
   * one tick are batched). Returns the function that stops it.
   */
  subscribe(listener: (state: TaskStoreState<Tasks>) => void): () => void;
  /** One task, if the store holds it. */
  get(id: TaskId): LiveTask<Tasks> | undefined;
  /** Rebuilds now (after an action whose effect no event reports, such as `setPriority`). */
  refresh(): Promise<void>;
  /** Stops following the client (which stays open). */
  close(): void;
}

const QUEUED_STATUSES: readonly ActiveStatus[] = ["pending", "paused", "blocked", "waiting"];
const BUFFER_LIMIT = 20_000;

/** Creates a live store of `client`'s tasks. It follows the client until `close()` or until the client closes. */
export function createTaskStore<Tasks = AnyTasks>(client: TaskmillClient<Tasks>, options: TaskStoreOptions = {}): TaskStore<Tasks> {
  const queuedLimit = Math.max(0, options.queued ?? 100);
  const finishedLimit = Math.max(0, options.finished ?? 50);
  const refreshMs = options.refreshMs ?? 1000;
  const domain = options.domain;
  const table = new TaskTable<Tasks>({ queuedLimit, finishedLimit });
  const listeners = new Set<(state: TaskStoreState<Tasks>) => void>();

  let status: TaskStoreStatus = "connecting";
  let error: TaskmillError | null = null;
  let closed = false;
  let view: TaskStoreState<Tasks> | null = null;
  let viewVersion = -1;
  let version = 0;
  let notifying = false;

  // Rebuilds: one at a time; asks made meanwhile coalesce into one more.
  let syncing: Promise<void> | null = null;
  let again: "none" | "light" | "full" = "none";
  let buffer: TaskmillEvent<Tasks>[] | null = null;
  let overflow = false;
  let dirty = false;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;

  const changed = (): void => {
    version += 1;
    if (notifying || listeners.size === 0) return;
    notifying = true;
    queueMicrotask(() => {
      notifying = false;
      const state = getSnapshot();
      for (const listener of [...listeners]) listener(state);
    });
  };

  const getSnapshot = (): TaskStoreState<Tasks> => {
    const v = version + table.version;
    if (view !== null && viewVersion === v) return view;
    const { running, queued, finished, counts } = table.lists();
    const byId = new Map<TaskId, LiveTask<Tasks>>();
    for (const list of [running, queued, finished]) for (const task of list) byId.set(task.id, task);
    view = {
      status,
      error,
      running: reuse(view?.running, running),
      queued: reuse(view?.queued, queued),
      finished: reuse(view?.finished, finished),
      byId,
      counts: view !== null && sameCounts(view.counts, counts) ? view.counts : counts,
      pressure: table.pressure,
      pressureBreakdown: table.pressureBreakdown,
      isPaused: table.isPaused,
      snapshot: table.snapshot,
      seq: table.seq,
    };
    viewVersion = v;
    return view;
  };

  const setStatus = (next: TaskStoreStatus, nextError: TaskmillError | null = error): void => {
    if (closed && next !== "closed") return;
    if (status === next && error === nextError) return;
    status = next;
    error = nextError;
    changed();
  };

  const scheduleRefresh = (): void => {
    dirty = true;
    if (refreshMs <= 0 || refreshTimer !== undefined || closed) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = undefined;
      if (dirty && client.state === "open") void sync("light");
    }, refreshMs);
  };

  const sync = (kind: "light" | "full"): Promise<void> => {
    if (closed) return Promise.resolve();
    if (syncing !== null) {
      if (again !== "full") again = kind;
      return syncing;
    }
    syncing = (async () => {
      let current: "light" | "full" | "none" = kind;
      while (current !== "none" && !closed) {
        again = "none";
        dirty = false;
        overflow = false;
        const events: TaskmillEvent<Tasks>[] = [];
        buffer = events;
        try {
          const [queued, snapshot, history] = await Promise.all([
            queuedLimit > 0 ? client.list({ status: QUEUED_STATUSES, limit: queuedLimit, ...(domain === undefined ? {} : { domain }) }) : null,
            client.snapshot(domain === undefined ? {} : { domain }),
            current === "full" && finishedLimit > 0 ? client.history({ limit: finishedLimit }) : null,
          ]);
          if (closed) break;
          buffer = null;
          if (overflow) {
            current = "full";
            continue;
          }
          const inDomain = <T extends { readonly domain: string }>(list: readonly T[]): T[] => (domain === undefined ? [...list] : list.filter((t) => t.domain === domain));
          table.rebuild({
            snapshot,
            queued: queued?.tasks ?? [],
            ...(history === null ? {} : { history: inDomain(history.tasks) }),
            events,
          });
          setStatus(client.state === "open" ? "live" : "stale", null);
          changed();
        } catch (failure) {
          buffer = null;
          if (closed) break;
          const err = isTaskmillError(failure) ? failure : TaskmillError.client("disconnected", String(failure), { cause: failure });
          // Not open: the reconnect's resync starts the next rebuild. Open (a timeout): try again later.
          if (client.state === "open") {
            setStatus(status === "connecting" ? "connecting" : "stale", err);
            scheduleRefresh();
          }
          break;
        }
        current = again;
      }
      syncing = null;
    })();
    return syncing;
  };

  const onEvent = (event: TaskmillEvent<Tasks>): void => {
    if (closed) return;
    if (buffer !== null) {
      if (buffer.length < BUFFER_LIMIT) buffer.push(event);
      else overflow = true;
    }
    const outcome = table.apply(event);
    if (outcome === "resync") {
      setStatus("syncing");
      void sync("full");
      return;
    }
    if (outcome === "skip") return;
    changed();
    if (outcome === "dirty") scheduleRefresh();
  };

  const unsubscribe = client.subscribe(
    { progress_interval_ms: options.progressIntervalMs ?? 100, ...(domain === undefined ? {} : { domains: [domain] }) },
    onEvent as (event: unknown) => void,
  );
  unsubscribe.ready.then(
    () => void sync("full"),
    (failure: unknown) => setStatus("closed", isTaskmillError(failure) ? failure : TaskmillError.client("closed", String(failure))),
  );
  const offConnection = client.onConnection((event) => {
    if (event.type === "closed") {
      if (event.willReconnect) setStatus("stale");
      else if (client.state === "closed") stop(event.error ?? TaskmillError.client("closed", "the client is closed"));
    } else if (event.type === "open" && event.reconnected) {
      // A restarted sidecar counts seq from 0 again; the rebuild sets the new baseline.
      table.seq = 0;
      setStatus("syncing");
    } else if (event.type === "resync") {
      void sync("full");
    }
  });

  const stop = (reason: TaskmillError): void => {
    if (closed) return;
    closed = true;
    if (refreshTimer !== undefined) clearTimeout(refreshTimer);
    refreshTimer = undefined;
    offConnection();
    void unsubscribe();
    status = "closed";
    error = reason;
    changed();
  };

  return {
    getSnapshot,
    subscribe(listener) {
      listeners.add(listener);
      listener(getSnapshot());
      return () => {
        listeners.delete(listener);
      };
    },
    get: (id) => table.get(id),
    refresh: () => sync("full"),
    close: () => stop(TaskmillError.client("closed", "the store is closed")),
  };
}

/** The previous array when it holds the same tasks (by reference), so unchanged lists keep their identity. */
function reuse<T>(previous: readonly T[] | undefined, next: T[]): readonly T[] {
  if (previous !== undefined && previous.length === next.length && previous.every((item, i) => item === next[i])) return previous;
  return next;
}

function sameCounts(a: TaskCounts, b: TaskCounts): boolean {
  return a.running === b.running && a.pending === b.pending && a.paused === b.paused && a.blocked === b.blocked && a.waiting === b.waiting;
}
