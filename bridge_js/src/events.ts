/**
 * Event types (protocol section 6): a union discriminated by `kind`, whose
 * task events are also narrowed by `task_type` when the client has a task map.
 *
 * @packageDocumentation
 */

import type { AnyTasks, ResultOf, TaskId, TaskTypeOf } from "./tasks.js";
import type { DurationMs, PressureSource, SubmitOutcome, Tags, TaskType, Timestamp } from "./types.js";

/** Fields every task event carries. */
export interface TaskEventHeader<T extends string = TaskType> {
  readonly task_id: TaskId;
  readonly task_type: T;
  readonly domain: string;
  readonly key: string;
  readonly label: string;
  readonly tags: Tags;
  readonly base_priority: number;
  readonly effective_priority: number;
  readonly parent_id: TaskId | null;
}

/** Extra fields of each task event kind; `R` is the task type's result. */
export interface TaskEventFields<R = unknown> {
  submitted: { readonly outcome: SubmitOutcome };
  dispatched: { readonly attempt: number };
  progress: { readonly percent: number; readonly message: string | null; readonly reported: boolean };
  completed: { readonly duration_ms: DurationMs; readonly result: R };
  failed: {
    readonly error: string;
    readonly retryable: boolean;
    readonly will_retry: boolean;
    readonly retry_after_ms: DurationMs | null;
    readonly attempt: number;
    /** The Python traceback, when the sidecar sends one. */
    readonly traceback?: string;
  };
  dead_lettered: { readonly error: string; readonly retry_count: number; readonly traceback?: string };
  preempted: { readonly by_task_id: TaskId | null };
  cancelled: { readonly reason: string };
  superseded: { readonly new_task_id: TaskId };
  expired: { readonly age_ms: DurationMs };
  waiting: { readonly children_count: number };
  unblocked: {};
  dependency_failed: { readonly failed_dependency: TaskId };
  recurring_skipped: { readonly reason: string };
  recurring_completed: { readonly occurrences: number };
}

/** Fields of each scheduler event kind. */
export interface SchedulerEventFields {
  paused: {};
  resumed: {};
  domain_paused: { readonly domain: string };
  domain_resumed: { readonly domain: string };
  group_paused: { readonly group: string; readonly pending: number; readonly running: number };
  group_resumed: { readonly group: string; readonly resumed: number };
  group_weight_changed: { readonly group: string; readonly previous: number | null; readonly weight: number | null };
  pressure: { readonly pressure: number; readonly breakdown: readonly PressureSource[] };
  /** This subscription's buffer overflowed (on the sidecar, or in `events()`): refetch a snapshot. */
  lagged: { readonly missed: number };
  shutdown: { readonly mode: "graceful" | "hard" };
}

export type TaskEventKind = keyof TaskEventFields;
export type SchedulerEventKind = keyof SchedulerEventFields;
export type EventKind = TaskEventKind | SchedulerEventKind;

/** Every task event kind, as a run-time list. */
export const TASK_EVENT_KINDS = [
  "submitted",
  "dispatched",
  "progress",
  "completed",
  "failed",
  "dead_lettered",
  "preempted",
  "cancelled",
  "superseded",
  "expired",
  "waiting",
  "unblocked",
  "dependency_failed",
  "recurring_skipped",
  "recurring_completed",
] as const satisfies readonly TaskEventKind[];

/** Every scheduler event kind, as a run-time list. */
export const SCHEDULER_EVENT_KINDS = [
  "paused",
  "resumed",
  "domain_paused",
  "domain_resumed",
  "group_paused",
  "group_resumed",
  "group_weight_changed",
  "pressure",
  "lagged",
  "shutdown",
] as const satisfies readonly SchedulerEventKind[];

/** The envelope of every event notification. */
export interface EventEnvelope {
  /** The subscription id the server assigned (it changes on reconnect). */
  readonly subscription: number;
  /** Increases by one per event the scheduler emits, before filtering. */
  readonly seq: number;
  readonly at: Timestamp;
}

type Flatten<T> = { readonly [K in keyof T]: T[K] } & {};

/** The task event of kind `K` for the task types `T` of a map (one union member per type). */
export type TaskEventOf<K extends TaskEventKind, Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = K extends TaskEventKind
  ? { [X in T]: Flatten<EventEnvelope & { readonly kind: K } & TaskEventHeader<X> & TaskEventFields<ResultOf<Tasks, X>>[K]> }[T]
  : never;

/** The scheduler event of kind `K`. */
export type SchedulerEventOf<K extends SchedulerEventKind> = K extends SchedulerEventKind ? Flatten<EventEnvelope & { readonly kind: K } & SchedulerEventFields[K]> : never;

/** The event of one kind (or a union of kinds), task events typed by the task map. */
export type EventOf<K extends EventKind, Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = K extends TaskEventKind
  ? TaskEventOf<K, Tasks, T>
  : K extends SchedulerEventKind
    ? SchedulerEventOf<K>
    : never;

/** Any event: a union discriminated by `kind`. */
export type TaskmillEvent<Tasks = AnyTasks> = EventOf<EventKind, Tasks>;
/** Any task event. */
export type TaskEvent<Tasks = AnyTasks> = TaskEventOf<TaskEventKind, Tasks>;
/** Any scheduler event. */
export type SchedulerEvent = SchedulerEventOf<SchedulerEventKind>;

/** `events.subscribe` filter; every field optional, all AND-ed. */
export interface EventFilter<K extends EventKind = EventKind, T extends string = TaskType> {
  readonly kinds?: readonly K[];
  readonly domains?: readonly string[];
  readonly task_types?: readonly T[];
  readonly task_ids?: readonly TaskId[];
  readonly tags?: Tags;
  /** Progress events of one task are coalesced to one per interval. Defaults to 100; 0 = every report. */
  readonly progress_interval_ms?: DurationMs;
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
