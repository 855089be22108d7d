/**
 * Live task state, pure: a table of tasks (running, queued, recently
 * finished) that a snapshot, a task list and history rebuild, and events
 * advance. No I/O, no timers, no clock: `store.ts` feeds it.
 *
 * Consistency rests on two rules:
 * - Events set absolute states (dispatched means running, completed means
 *   finished...), so replaying the events received since a rebuild began, in
 *   seq order, onto the rebuilt table converges to the sidecar's state,
 *   whatever moment each response was taken at.
 * - The snapshot is the newest source for the running set: events up to its
 *   `seq` are not replayed onto the tasks it lists as running.
 *
 * @packageDocumentation
 */

import type { EventOf, TaskmillEvent } from "./events.js";
import type { AnyTasks, PayloadOf, ResultOf, TaskId, TaskTypeOf } from "./tasks.js";
import {
  HISTORY_STATUSES,
  type ActiveTaskRecord,
  type DurationMs,
  type HistoryTaskRecord,
  type PressureSource,
  type Snapshot,
  type Tags,
  type TaskRecord,
  type TaskStatus,
  type Timestamp,
} from "./types.js";

/** A task's progress as the store tracks it. */
export interface LiveProgress {
  /** 0..1. */
  readonly percent: number;
  readonly message: string | null;
  /** Reported by the executor. */
  readonly reported: boolean;
  /** Estimated by the sidecar from past durations (`reported: false` progress). */
  readonly extrapolated: boolean;
  /** When `percent` was measured (ms since the epoch, the sidecar's clock), or null. */
  readonly at: Timestamp | null;
  /** Fraction per millisecond seen over the last reports (0 when unknown); see `estimateProgress`. */
  readonly rate: number;
}

/** One task as the store shows it, of one task type. */
export interface LiveTaskShape<T extends string = string, P = unknown, R = unknown> {
  readonly id: TaskId;
  readonly task_type: T;
  readonly domain: string;
  readonly key: string;
  readonly label: string;
  readonly tags: Tags;
  /** Null when the task has none, or when only its events were seen yet. */
  readonly group: string | null;
  readonly parent_id: TaskId | null;
  readonly status: TaskStatus;
  readonly priority: number;
  readonly effective_priority: number;
  readonly retry_count: number;
  /** From records; null when only the task's events were seen. */
  readonly max_retries: number | null;
  readonly progress: LiveProgress;
  readonly created_at: Timestamp | null;
  readonly started_at: Timestamp | null;
  readonly finished_at: Timestamp | null;
  readonly duration_ms: DurationMs | null;
  /** From records; undefined when only the task's events were seen. */
  readonly payload: P | undefined;
  /** Set when the task completed. */
  readonly result: R | undefined;
  /** The last error (failed, dead-lettered), or the cancel reason. */
  readonly error: string | null;
  readonly traceback: string | null;
}

/** One task as the store shows it; a union over the task map's types. */
export type LiveTask<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = {
  [K in T]: LiveTaskShape<K, PayloadOf<Tasks, K>, ResultOf<Tasks, K>>;
}[T];

/** Task counts by active status. */
export interface TaskCounts {
  readonly running: number;
  readonly pending: number;
  readonly paused: number;
  readonly blocked: number;
  readonly waiting: number;
  /** pending + paused + blocked + waiting. */
  readonly queued: number;
}

/** What a rebuild starts from. */
export interface TableSources<Tasks> {
  readonly snapshot: Snapshot<Tasks>;
  /** `task.list` of the queued statuses, in id order. */
  readonly queued: readonly ActiveTaskRecord<Tasks>[];
  /** `history.list`, newest first; omitted to keep the finished tasks already known. */
  readonly history?: readonly HistoryTaskRecord<Tasks>[];
  /** Events received since the requests went out, in arrival order. */
  readonly events: readonly TaskmillEvent<Tasks>[];
}

const FINISHED = new Set<string>(HISTORY_STATUSES);
const QUEUED = new Set<string>(["pending", "paused", "blocked", "waiting"]);
type CountKey = "pending" | "paused" | "blocked" | "waiting";

const NO_PROGRESS: LiveProgress = { percent: 0, message: null, reported: false, extrapolated: false, at: null, rate: 0 };

/** A live task from a record. */
export function liveFromRecord<Tasks>(record: TaskRecord<Tasks>): LiveTask<Tasks> {
  const r = record as TaskRecord;
  const history = "history_id" in r;
  const p = r.progress;
  return {
    id: r.id,
    task_type: r.task_type,
    domain: r.domain,
    key: r.key,
    label: r.label,
    tags: r.tags,
    group: r.group,
    parent_id: r.parent_id,
    status: r.status,
    priority: r.priority,
    effective_priority: r.effective_priority,
    retry_count: r.retry_count,
    max_retries: r.max_retries,
    progress:
      p === undefined || p === null
        ? NO_PROGRESS
        : { percent: history && r.status === "completed" ? 1 : p.percent, message: p.message, reported: p.reported, extrapolated: p.extrapolated, at: null, rate: 0 },
    created_at: r.created_at,
    started_at: r.started_at,
    finished_at: history ? r.finished_at : null,
    duration_ms: history ? r.duration_ms : null,
    payload: r.payload,
    result: history && r.status === "completed" ? r.result : undefined,
    error: r.last_error,
    traceback: history ? (r.traceback ?? null) : null,
  } as LiveTask<Tasks>;
}

/**
 * How far a running task probably is at `now`: its last percent, moved on at
 * the rate seen between its reports, capped at 0.99 (and at 1 for a
 * finished task). Use it to animate a bar between progress events.
 */
export function estimateProgress(task: { readonly status: string; readonly progress: LiveProgress }, now: number = Date.now()): number {
  const p = task.progress;
  if (task.status === "completed") return 1;
  if (task.status !== "running" || p.at === null || p.rate <= 0) return p.percent;
  return Math.max(p.percent, Math.min(0.99, p.percent + p.rate * Math.max(0, now - p.at)));
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The task table. @internal */
export class TaskTable<Tasks = AnyTasks> {
  readonly #queuedLimit: number;
  readonly #finishedLimit: number;
  readonly #tasks = new Map<TaskId, LiveTask<Tasks>>();
  #counts: Mutable<Omit<TaskCounts, "running" | "queued">> = { pending: 0, paused: 0, blocked: 0, waiting: 0 };
  pressure = 0;
  pressureBreakdown: readonly PressureSource[] = [];
  isPaused = false;
  snapshot: Snapshot<Tasks> | null = null;
  /** The highest seq applied. */
  seq = 0;
  /** Bumped on every change: views are memoized on it. */
  version = 0;

  constructor(options: { readonly queuedLimit: number; readonly finishedLimit: number }) {
    this.#queuedLimit = options.queuedLimit;
    this.#finishedLimit = options.finishedLimit;
  }

  get(id: TaskId): LiveTask<Tasks> | undefined {
    return this.#tasks.get(id);
  }

  /** Rebuilds from fresh sources, then replays the events received meanwhile. */
  rebuild(sources: TableSources<Tasks>): void {
    const snap = sources.snapshot;
    const kept = sources.history === undefined ? [...this.#tasks.values()].filter((t) => FINISHED.has(t.status)) : [];
    this.#tasks.clear();
    for (const task of kept) this.#tasks.set(task.id, task);
    for (const record of [...(sources.history ?? [])].reverse()) this.#tasks.set(record.id, liveFromRecord<Tasks>(record));
    for (const record of sources.queued) this.#tasks.set(record.id, liveFromRecord<Tasks>(record));
    const running = new Set<TaskId>();
    for (const record of snap.running) {
      running.add(record.id);
      this.#tasks.set(record.id, liveFromRecord<Tasks>(record));
    }
    for (const p of snap.progress) {
      const task = this.#tasks.get(p.task_id);
      if (task !== undefined) this.#put({ ...task, progress: { ...task.progress, percent: p.percent, message: p.message, reported: p.reported, extrapolated: p.extrapolated } });
    }
    this.#counts = { pending: snap.pending_count, paused: snap.paused_count, blocked: snap.blocked_count, waiting: snap.waiting_count };
    this.pressure = snap.pressure;
    this.pressureBreakdown = snap.pressure_breakdown;
    this.isPaused = snap.is_paused;
    this.snapshot = snap;
    const snapSeq = snap.seq ?? 0;
    this.seq = snapSeq;
    for (const event of sources.events) {
      const stale = event.seq <= snapSeq;
      if (stale && "task_id" in event && running.has(event.task_id)) continue;
      this.apply(event, { counts: !stale, force: true });
    }
    this.#trim();
    this.version += 1;
  }

  /**
   * Applies one event. Returns `"resync"` for `lagged` (the table can no
   * longer be trusted), `"dirty"` when the queued list or counts may need a
   * refresh from the sidecar, else `"ok"` (or `"skip"` for a duplicate).
   */
  apply(event: TaskmillEvent<Tasks>, options: { readonly counts?: boolean; readonly force?: boolean } = {}): "ok" | "dirty" | "resync" | "skip" {
    const e = event as TaskmillEvent;
    if (e.kind === "lagged") return "resync";
    if (options.force !== true && e.seq <= this.seq) return "skip";
    this.seq = Math.max(this.seq, e.seq);
    this.version += 1;
    const counts = options.counts !== false;
    switch (e.kind) {
      case "paused":
      case "resumed":
        this.isPaused = e.kind === "paused";
        return "dirty";
      case "pressure":
        this.pressure = e.pressure;
        this.pressureBreakdown = e.breakdown;
        return "ok";
      case "shutdown":
        return "ok";
      case "domain_paused":
      case "domain_resumed":
      case "group_paused":
      case "group_resumed":
      case "group_weight_changed":
      case "recurring_skipped":
      case "recurring_completed":
        return "dirty";
      default:
        return this.#applyTask(e, counts);
    }
  }

  #applyTask(e: EventOf<Exclude<TaskmillEvent["kind"], "paused" | "resumed" | "pressure" | "shutdown" | "lagged" | "domain_paused" | "domain_resumed" | "group_paused" | "group_resumed" | "group_weight_changed" | "recurring_skipped" | "recurring_completed">>, counts: boolean): "ok" | "dirty" {
    const known = this.#tasks.get(e.task_id) as LiveTaskShape | undefined;
    const base: LiveTaskShape = known ?? {
      id: e.task_id,
      task_type: e.task_type,
      domain: e.domain,
      key: e.key,
      label: e.label,
      tags: e.tags,
      group: null,
      parent_id: e.parent_id,
      status: "pending",
      priority: e.base_priority,
      effective_priority: e.effective_priority,
      retry_count: 0,
      max_retries: null,
      progress: NO_PROGRESS,
      created_at: null,
      started_at: null,
      finished_at: null,
      duration_ms: null,
      payload: undefined,
      result: undefined,
      error: null,
      traceback: null,
    };
    const header = { priority: e.base_priority, effective_priority: e.effective_priority, label: e.label, tags: e.tags };
    let next: LiveTaskShape | null = null;
    let from: string | undefined = known?.status;
    switch (e.kind) {
      case "submitted":
        if (e.outcome === "duplicate") return "ok";
        if (e.outcome === "upgraded") {
          if (known !== undefined) next = { ...known, ...header };
          break;
        }
        from = known !== undefined && QUEUED.has(known.status) ? known.status : undefined;
        next = { ...base, ...header, status: "pending", created_at: known?.created_at ?? e.at, finished_at: null, duration_ms: null, result: undefined, error: null, progress: NO_PROGRESS };
        break;
      case "dispatched":
        from ??= "pending";
        next = { ...base, ...header, status: "running", started_at: e.at, retry_count: e.attempt - 1, progress: { ...NO_PROGRESS, at: e.at } };
        break;
      case "progress": {
        from ??= "running";
        const p = base.progress;
        const started = base.started_at ?? e.at;
        const since = p.at ?? started;
        const rate = e.at > since && e.percent >= p.percent ? (e.percent - p.percent) / (e.at - since) : p.rate;
        next = { ...base, status: "running", started_at: started, progress: { percent: e.percent, message: e.message, reported: e.reported, extrapolated: !e.reported, at: e.at, rate } };
        break;
      }
      case "failed":
        from ??= "running";
        next = e.will_retry
          ? { ...base, ...header, status: "pending", retry_count: e.attempt, error: e.error, traceback: e.traceback ?? null, progress: NO_PROGRESS }
          : this.#finish(base, "failed", e.at, { error: e.error, traceback: e.traceback ?? null, retry_count: e.attempt - 1 });
        break;
      case "completed":
        from ??= "running";
        next = this.#finish(base, "completed", e.at, { result: e.result, duration_ms: e.duration_ms, progress: { ...base.progress, percent: 1, at: e.at } });
        break;
      case "dead_lettered":
        from ??= "running";
        next = this.#finish(base, "dead_letter", e.at, { error: e.error, traceback: e.traceback ?? null, retry_count: e.retry_count });
        break;
      case "cancelled":
        next = this.#finish(base, "cancelled", e.at, { error: e.reason });
        break;
      case "superseded":
        next = this.#finish(base, "superseded", e.at, {});
        break;
      case "expired":
        next = this.#finish(base, "expired", e.at, {});
        break;
      case "dependency_failed":
        next = this.#finish(base, "dependency_failed", e.at, { error: `dependency #${e.failed_dependency} failed` });
        break;
      case "preempted":
        from ??= "running";
        next = { ...base, ...header, status: "pending", progress: { ...base.progress, rate: 0 } };
        break;
      case "waiting":
        next = { ...base, ...header, status: "waiting" };
        break;
      case "unblocked":
        from ??= "blocked";
        next = { ...base, ...header, status: "pending" };
        break;
    }
    if (next === null) return "ok";
    if (counts) this.#count(from, next.status);
    this.#put(next as LiveTask<Tasks>);
    this.#trim();
    return e.kind === "progress" ? "ok" : "dirty";
  }

  #finish(base: LiveTaskShape, status: TaskStatus, at: Timestamp, extra: Partial<LiveTaskShape>): LiveTaskShape {
    const duration = base.started_at === null ? null : at - base.started_at;
    return { ...base, duration_ms: duration, ...extra, status, finished_at: at, progress: { ...(extra.progress ?? base.progress), rate: 0 } };
  }

  #count(from: string | undefined, to: string): void {
    if (from === to) return;
    if (from !== undefined && QUEUED.has(from)) this.#counts[from as CountKey] = Math.max(0, this.#counts[from as CountKey] - 1);
    if (QUEUED.has(to)) this.#counts[to as CountKey] += 1;
  }

  #put(task: LiveTask<Tasks>): void {
    this.#tasks.set(task.id, task);
  }

  /** Keeps at most `queuedLimit` queued tasks (the lowest ids, as `task.list` returns them) and `finishedLimit` finished ones. */
  #trim(): void {
    const queued: TaskId[] = [];
    const finished: LiveTask<Tasks>[] = [];
    for (const task of this.#tasks.values()) {
      if (QUEUED.has(task.status)) queued.push(task.id);
      else if (FINISHED.has(task.status)) finished.push(task);
    }
    if (queued.length > this.#queuedLimit) {
      queued.sort((a, b) => a - b);
      for (const id of queued.slice(this.#queuedLimit)) this.#tasks.delete(id);
    }
    if (finished.length > this.#finishedLimit) {
      finished.sort(byRecency);
      for (const task of finished.slice(this.#finishedLimit)) this.#tasks.delete(task.id);
    }
  }

  /** The lists and counts, sorted: running by start, queued by id, finished newest first. */
  lists(): { running: LiveTask<Tasks>[]; queued: LiveTask<Tasks>[]; finished: LiveTask<Tasks>[]; counts: TaskCounts } {
    const running: LiveTask<Tasks>[] = [];
    const queued: LiveTask<Tasks>[] = [];
    const finished: LiveTask<Tasks>[] = [];
    for (const task of this.#tasks.values()) {
      if (task.status === "running") running.push(task);
      else if (QUEUED.has(task.status)) queued.push(task);
      else finished.push(task);
    }
    running.sort((a, b) => (a.started_at ?? 0) - (b.started_at ?? 0) || a.id - b.id);
    queued.sort((a, b) => a.id - b.id);
    finished.sort(byRecency);
    const c = this.#counts;
    const counts: TaskCounts = { running: running.length, ...c, queued: c.pending + c.paused + c.blocked + c.waiting };
    return { running, queued, finished, counts };
  }
}

function byRecency(a: { readonly finished_at: number | null; readonly id: number }, b: { readonly finished_at: number | null; readonly id: number }): number {
  return (b.finished_at ?? 0) - (a.finished_at ?? 0) || b.id - a.id;
}
