/**
 * Wire types of the taskmill sidecar protocol, version 1 (shared/protocol.md).
 *
 * Every name here is the wire name: params, results, records and events are
 * snake_case exactly as they travel. Nothing in this module exists at run time
 * except a few `as const` tables.
 *
 * @packageDocumentation
 */

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

import type { AnyTasks, PayloadField, PayloadOf, ResultOf, TaskId, TaskIdOf, TaskTypeOf } from "./tasks.js";

export type { TaskId } from "./tasks.js";
/** Integer milliseconds since the Unix epoch. */
export type Timestamp = number;
/** Integer milliseconds. */
export type DurationMs = number;
/** A qualified task type, `"domain::name"`. */
export type TaskType = string;
/** String-to-string tags. */
export type Tags = Readonly<Record<string, string>>;

/** Named priorities and their integer values (0 is the most urgent). */
export const Priority = {
  realtime: 0,
  high: 64,
  normal: 128,
  background: 192,
  idle: 255,
} as const;

/** One of the priority names. */
export type PriorityName = keyof typeof Priority;
/** A priority as a request may carry it: an integer 0..255 or a name. Responses always carry integers. */
export type PriorityInput = number | PriorityName;

/** Statuses of a task that lives in the active queue. */
export const ACTIVE_STATUSES = ["pending", "running", "paused", "waiting", "blocked"] as const;
/** Statuses of a history (terminal) record. */
export const HISTORY_STATUSES = [
  "completed",
  "failed",
  "cancelled",
  "superseded",
  "expired",
  "dead_letter",
  "dependency_failed",
] as const;

export type ActiveStatus = (typeof ACTIVE_STATUSES)[number];
export type HistoryStatus = (typeof HISTORY_STATUSES)[number];
export type TaskStatus = ActiveStatus | HistoryStatus;

/** What a submission did. */
export type SubmitOutcome = "inserted" | "duplicate" | "upgraded" | "requeued" | "superseded";

/** Bytes of disk and network IO. */
export interface IoBytes {
  readonly disk_read: number;
  readonly disk_write: number;
  readonly net_rx: number;
  readonly net_tx: number;
}

/** A task's progress as stored in its record. */
export interface RecordProgress {
  /** 0..1. */
  readonly percent: number;
  readonly message: string | null;
  /** True when the percent was reported by the executor. */
  readonly reported: boolean;
  /** True when the percent is extrapolated from past durations. */
  readonly extrapolated: boolean;
}

/** The fields every task record carries, for one task type `T` with payload `P`. */
export interface TaskRecordFields<T extends string = TaskType, P = unknown> {
  readonly id: TaskId;
  readonly task_type: T;
  readonly domain: string;
  readonly key: string;
  readonly label: string;
  readonly priority: number;
  readonly effective_priority: number;
  readonly payload: P;
  readonly group: string | null;
  readonly tags: Tags;
  readonly parent_id: TaskId | null;
  readonly retry_count: number;
  readonly max_retries: number;
  readonly last_error: string | null;
  readonly created_at: Timestamp;
  readonly started_at: Timestamp | null;
  readonly run_after: Timestamp | null;
  readonly expires_at: Timestamp | null;
  readonly depends_on: readonly TaskId[];
  readonly progress: RecordProgress;
  readonly expected_io: IoBytes;
}

/** A task in the active queue, of one task type. */
export interface ActiveRecordShape<T extends string = TaskType, P = unknown> extends TaskRecordFields<T, P> {
  readonly status: ActiveStatus;
}

/** A terminal history record, of one task type. `result` is set when `status` is `completed`. */
export interface HistoryRecordShape<T extends string = TaskType, P = unknown, R = unknown> extends TaskRecordFields<T, P> {
  readonly status: HistoryStatus;
  readonly history_id: number;
  readonly finished_at: Timestamp;
  readonly duration_ms: DurationMs | null;
  readonly result: R | null;
  readonly actual_io: IoBytes;
  /** The Python traceback of the last failure, when the sidecar sends one. */
  readonly traceback?: string;
}

/** A task in the active queue; typed by the task map (one union member per task type). */
export type ActiveTaskRecord<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = {
  [K in T]: ActiveRecordShape<K, PayloadOf<Tasks, K>>;
}[T];

/** A terminal record from history. It carries the task's `id`; `history_id` tells runs apart. */
export type HistoryTaskRecord<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = {
  [K in T]: HistoryRecordShape<K, PayloadOf<Tasks, K>, ResultOf<Tasks, K>>;
}[T];

/** A task record, active or history; `status` tells which. */
export type TaskRecord<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = ActiveTaskRecord<Tasks, T> | HistoryTaskRecord<Tasks, T>;

// ---------------------------------------------------------------------------
// Submission

/** Retry policy of a submission. */
export interface RetryPolicy {
  readonly max_retries?: number;
  readonly backoff?: "constant" | "linear" | "exponential";
  readonly base_ms?: DurationMs;
  readonly max_ms?: DurationMs;
  /** Exponential base (sidecar addition). Defaults to 2. */
  readonly multiplier?: number;
  /** Draw each delay uniformly from [0, delay] (sidecar addition). */
  readonly jitter?: boolean;
}

/** Recurring schedule of a submission. */
export interface RecurringPolicy {
  readonly interval_ms: DurationMs;
  readonly max_occurrences?: number;
  readonly initial_delay_ms?: DurationMs;
}

/** Declared IO of a task; every field optional. */
export type ExpectedIo = Partial<IoBytes>;

/** The params of `task.submit` besides `task_type` and `payload`. */
export interface SubmitOptions {
  /** Dedup key. Defaults to the SHA-256 of the type and the canonical payload. */
  readonly key?: string;
  readonly label?: string;
  readonly priority?: PriorityInput;
  readonly group?: string;
  readonly tags?: Tags;
  readonly ttl_ms?: DurationMs;
  readonly ttl_from?: "submission" | "first_attempt";
  /** Delay before the task becomes eligible (exclusive with `run_at`). */
  readonly run_after_ms?: DurationMs;
  /** Time before which the task is not eligible (exclusive with `run_after_ms`). */
  readonly run_at?: Timestamp;
  readonly depends_on?: readonly TaskId[];
  readonly on_dependency_failure?: "cancel" | "fail" | "ignore";
  readonly expected_io?: ExpectedIo;
  readonly retry?: RetryPolicy;
  readonly recurring?: RecurringPolicy;
  /** Defaults to `"skip"`. */
  readonly on_duplicate?: "skip" | "supersede";
  readonly parent_id?: TaskId;
  readonly fail_fast?: boolean;
}

/** The params of `task.submit` for one task type `T` of a task map. */
export type SubmitParamsFor<Tasks, T extends TaskTypeOf<Tasks>> = SubmitOptions & { readonly task_type: T } & PayloadField<PayloadOf<Tasks, T>>;

/** Params of `task.submit` (and of each item of `task.submit_batch`); a union over the map's task types. */
export type SubmitParams<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = { [K in T]: SubmitParamsFor<Tasks, K> }[T];

/** Result of `task.submit`. For `duplicate`, `id` is the existing task's. */
export interface SubmitResult<T extends string = TaskType> {
  readonly outcome: SubmitOutcome;
  readonly id: TaskIdOf<T>;
}

// ---------------------------------------------------------------------------
// Queries and control

export interface ListParams {
  /** One active status or several. */
  readonly status?: ActiveStatus | readonly ActiveStatus[];
  readonly domain?: string;
  readonly task_type?: TaskType;
  readonly group?: string;
  readonly tags?: Tags;
  readonly tag_prefix?: string;
  /** Defaults to 100. */
  readonly limit?: number;
  readonly offset?: number;
}

export interface ListResult<R = TaskRecord> {
  readonly tasks: readonly R[];
  readonly total: number;
}

/** Params of `task.cancel_where`; at least one field must be given. */
export interface CancelWhereParams {
  readonly domain?: string;
  readonly task_type?: TaskType;
  readonly group?: string;
  readonly status?: ActiveStatus | readonly ActiveStatus[];
  readonly tags?: Tags;
  readonly tag_prefix?: string;
}

export interface HistoryParams {
  readonly status?: HistoryStatus | readonly HistoryStatus[];
  readonly task_type?: TaskType;
  readonly key?: string;
  readonly limit?: number;
  readonly offset?: number;
}

export interface LookupResult<R = TaskRecord> {
  readonly where: "active" | "history" | "not_found";
  readonly record?: R;
}

export interface HistoryStats {
  readonly count: number;
  readonly avg_duration_ms: number;
  readonly avg_read_bytes: number;
  readonly avg_write_bytes: number;
  readonly failure_rate: number;
}

export interface DependenciesResult {
  readonly depends_on: readonly TaskId[];
  readonly dependents: readonly TaskId[];
}

export interface TagValuesResult {
  readonly values: readonly { readonly value: string; readonly count: number }[];
}

export interface TagKeysResult {
  readonly keys: readonly string[];
}

/** Target of a rate limit: a task type xor a group. */
export type RateLimitTarget = { readonly task_type: TaskType; readonly group?: never } | { readonly group: string; readonly task_type?: never };

export type RateLimitParams = RateLimitTarget & {
  readonly per_second: number;
  readonly burst?: number;
};

/**
 * A recurring schedule as listed by `recurring.list` and the snapshot.
 * protocol.md does not fix its fields, so they are left open.
 */
export type RecurringSchedule = Readonly<Record<string, unknown>>;
/** A rate limit as listed in the snapshot; protocol.md does not fix its fields. */
export type RateLimitInfo = Readonly<Record<string, unknown>>;

export interface PressureSource {
  readonly source: string;
  readonly value: number;
}

export interface SnapshotProgress {
  readonly task_id: TaskId;
  readonly percent: number;
  readonly reported: boolean;
  readonly extrapolated: boolean;
  readonly message: string | null;
}

export interface SnapshotResources {
  readonly cpu: number;
  readonly disk_read_bps: number;
  readonly disk_write_bps: number;
  readonly net_rx_bps: number;
  readonly net_tx_bps: number;
  readonly memory: number;
  readonly battery?: { readonly percent: number; readonly plugged: boolean } | null;
  /** Of the disk bytes/s, this process's (sidecar addition). */
  readonly disk_own_bps?: number;
}

/** Why background IO goes at the rate it does (`SnapshotIoPacing.reason`). */
export type IoPacingReason = "alone" | "over_target" | "under_target" | "off" | "starting";

/** The executors' IO pacer and the latency target steering it (sidecar addition). */
export interface SnapshotIoPacing {
  /** Bytes/s paced reads and writes may each go at; null: unlimited. */
  readonly rate_bps: number | null;
  readonly reason: IoPacingReason;
  /** The disks' average request latency over the last sample (ms). */
  readonly latency_ms: number | null;
  /** The target (ms); null when there is none. */
  readonly target_ms: number | null;
  /** Bytes/s other processes moved when last listened for. */
  readonly others_bps: number;
  readonly own_bps: number;
  readonly others_busy: boolean;
  /** Bytes through the pacer since start, and seconds tasks waited for it. */
  readonly read_bytes: number;
  readonly write_bytes: number;
  readonly waited_s: number;
}

export interface SnapshotDomain {
  readonly domain: string;
  readonly paused: boolean;
  readonly running: number;
  readonly pending: number;
  /** Tasks of the domain in `paused` (sidecar addition). */
  readonly paused_count?: number;
  readonly max_concurrency: number | null;
}

export interface SnapshotGroup {
  readonly group: string;
  readonly running: number;
  readonly pending: number;
  /** Tasks of the group in `paused` (sidecar addition). */
  readonly paused_count?: number;
  readonly limit: number | null;
  readonly weight: number | null;
  readonly min_slots: number | null;
  readonly allocated_slots: number | null;
  readonly paused: boolean;
  readonly paused_until: Timestamp | null;
}

/** Result of `scheduler.snapshot` (protocol section 7). */
export interface Snapshot<Tasks = AnyTasks> {
  readonly running: readonly ActiveTaskRecord<Tasks>[];
  readonly pending_count: number;
  readonly paused_count: number;
  readonly blocked_count: number;
  readonly waiting_count: number;
  readonly progress: readonly SnapshotProgress[];
  readonly pressure: number;
  readonly pressure_breakdown: readonly PressureSource[];
  readonly resources: SnapshotResources;
  readonly max_concurrency: number;
  readonly is_paused: boolean;
  readonly domains: readonly SnapshotDomain[];
  readonly groups: readonly SnapshotGroup[];
  readonly rate_limits: readonly RateLimitInfo[];
  readonly recurring: readonly RecurringSchedule[];
  /** The aging configuration, or null when aging is off. */
  readonly aging: Readonly<Record<string, unknown>> | null;
  /** Sidecar additions: tasks running, whether weighted fairness is on, whether
   * resources are monitored, the throttle policy as [priority floor, pressure
   * limit] pairs, and the seq of the last event emitted before the snapshot. */
  readonly running_count?: number;
  readonly fair?: boolean;
  readonly monitoring?: boolean;
  readonly throttle?: readonly (readonly [number, number])[];
  readonly seq?: number;
  /** Sidecar addition: the executors' IO pacer and the latency target. */
  readonly io_pacing?: SnapshotIoPacing;
}

/** Result of `scheduler.metrics`. */
export interface Metrics {
  readonly counters: {
    readonly submitted: number;
    readonly dispatched: number;
    readonly completed: number;
    readonly failed: number;
    readonly retried: number;
    readonly dead_lettered: number;
    readonly superseded: number;
    readonly cancelled: number;
    readonly expired: number;
    readonly preempted: number;
    readonly recurring_skipped: number;
    readonly gate_denials: number;
    readonly rate_limited: number;
  };
  readonly gauges: {
    readonly pending: number;
    readonly running: number;
    readonly paused: number;
    readonly blocked: number;
    readonly waiting: number;
    readonly pressure: number;
  };
}

/** The WebSocket endpoint announced by the sidecar. */
export interface WsEndpoint {
  readonly url: string;
  /** Null when the launcher passed the token in `TASKMILL_TOKEN`. */
  readonly token: string | null;
}

export interface Transports {
  readonly stdio: boolean;
  readonly ws: WsEndpoint | null;
}

export interface TaskTypeInfo {
  readonly task_type: TaskType;
  readonly domain: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly executor: "python" | "worker" | "none";
}

/** Result of `sidecar.info`. */
export interface SidecarInfo {
  readonly version: string;
  readonly protocol: number;
  readonly db_path: string;
  readonly transports: Transports;
  readonly task_types: readonly TaskTypeInfo[];
  readonly config: Readonly<Record<string, unknown>>;
}

/** Params of the `sidecar.ready` notification, the first line on stdout. */
export interface SidecarReady {
  readonly protocol: number;
  readonly version: string;
  readonly pid: number;
  readonly transports: Transports;
  readonly db_path: string;
  /** protocol.md writes `[...]`: names or the records of `sidecar.info`. */
  readonly task_types: readonly (TaskType | TaskTypeInfo)[];
}

export interface HelloParams {
  readonly token: string;
  readonly protocol: number;
  /** `"name/version"`. */
  readonly client: string;
}

export interface HelloResult {
  readonly protocol: number;
  readonly version: string;
  readonly session: string;
}

export interface ShutdownParams {
  readonly mode?: "graceful" | "hard";
  readonly timeout_ms?: DurationMs;
}

// ---------------------------------------------------------------------------
// Remote workers (protocol section 8)

/** A task type declared inline by `worker.register`. */
export interface WorkerTaskTypeDeclaration<T extends string = TaskType> {
  readonly task_type: T;
  readonly config?: Readonly<Record<string, unknown>>;
}

export interface WorkerRegisterParams {
  readonly task_types: readonly (TaskType | WorkerTaskTypeDeclaration)[];
  /** Defaults to 1. */
  readonly concurrency?: number;
}

/** Params of the `worker.execute` request the sidecar sends. */
export interface WorkerExecuteParams {
  readonly worker: string;
  readonly task: TaskRecord;
  readonly attempt: number;
}

export type WorkerCancelReason = "preempted" | "cancelled" | "paused" | "shutdown";

/** Params of the `worker.cancel` notification the sidecar sends. */
export interface WorkerCancelParams {
  readonly task_id: TaskId;
  readonly reason: WorkerCancelReason;
}

export interface WorkerProgressParams {
  readonly task_id: TaskId;
  readonly percent: number;
  readonly message?: string;
}

export interface WorkerIoParams {
  readonly task_id: TaskId;
  readonly disk_read?: number;
  readonly disk_write?: number;
  readonly net_rx?: number;
  readonly net_tx?: number;
}

export type WorkerSpawnChildParams = SubmitParams & { readonly task_id: TaskId };

