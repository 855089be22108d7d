/**
 * The method table: every client-to-sidecar method with its params and
 * result, wire names throughout (protocol section 5).
 *
 * @packageDocumentation
 */

import type { EventFilter } from "./events.js";
import type { TaskId } from "./tasks.js";
import type {
  CancelWhereParams,
  DependenciesResult,
  DurationMs,
  HelloParams,
  HelloResult,
  HistoryParams,
  HistoryStats,
  HistoryTaskRecord,
  ListParams,
  ListResult,
  LookupResult,
  Metrics,
  PriorityInput,
  RateLimitParams,
  RateLimitTarget,
  RecurringSchedule,
  ShutdownParams,
  SidecarInfo,
  Snapshot,
  SubmitParams,
  SubmitResult,
  TagKeysResult,
  TagValuesResult,
  TaskRecord,
  TaskType,
  WorkerIoParams,
  WorkerProgressParams,
  WorkerRegisterParams,
  WorkerSpawnChildParams,
} from "./types.js";

type NoParams = Readonly<Record<string, never>>;
type Empty = Readonly<Record<string, never>>;

/** Every client-to-sidecar method: its params and result. */
export interface Methods {
  "session.hello": { params: HelloParams; result: HelloResult };
  "sidecar.info": { params: NoParams; result: SidecarInfo };
  "sidecar.shutdown": { params: ShutdownParams; result: Empty };
  "task.submit": { params: SubmitParams; result: SubmitResult };
  "task.submit_batch": { params: { readonly tasks: readonly SubmitParams[] }; result: { readonly outcomes: readonly SubmitResult[] } };
  "task.get": { params: { readonly id: TaskId }; result: TaskRecord };
  "task.lookup": { params: { readonly task_type: TaskType; readonly key: string }; result: LookupResult };
  "task.list": { params: ListParams; result: ListResult };
  "task.cancel": { params: { readonly id: TaskId }; result: { readonly cancelled: boolean } };
  "task.cancel_where": { params: CancelWhereParams; result: { readonly cancelled: readonly TaskId[] } };
  "task.set_priority": { params: { readonly id: TaskId; readonly priority: PriorityInput }; result: { readonly updated: boolean } };
  "task.retry_dead_letter": { params: { readonly id: TaskId }; result: SubmitResult };
  "history.list": { params: HistoryParams; result: ListResult<HistoryTaskRecord> };
  "history.stats": { params: { readonly task_type: TaskType }; result: HistoryStats };
  "dependencies.get": { params: { readonly id: TaskId }; result: DependenciesResult };
  "tags.values": { params: { readonly key: string; readonly domain?: string }; result: TagValuesResult };
  "tags.keys": { params: { readonly prefix: string; readonly domain?: string }; result: TagKeysResult };
  "scheduler.snapshot": { params: { readonly domain?: string }; result: Snapshot };
  "scheduler.pause": { params: NoParams; result: Empty };
  "scheduler.resume": { params: NoParams; result: Empty };
  "scheduler.set_max_concurrency": { params: { readonly value: number }; result: Empty };
  "scheduler.metrics": { params: NoParams; result: Metrics };
  "domain.pause": { params: { readonly domain: string }; result: { readonly count: number } };
  "domain.resume": { params: { readonly domain: string }; result: { readonly count: number } };
  "domain.set_max_concurrency": { params: { readonly domain: string; readonly value: number | null }; result: Empty };
  "group.pause": { params: { readonly group: string; readonly duration_ms?: DurationMs }; result: { readonly pending: number; readonly running: number } };
  "group.resume": { params: { readonly group: string }; result: { readonly resumed: number } };
  "group.set_limit": { params: { readonly group: string; readonly value: number | null }; result: Empty };
  "group.set_weight": { params: { readonly group: string; readonly weight: number | null }; result: Empty };
  "group.set_min_slots": { params: { readonly group: string; readonly value: number | null }; result: Empty };
  "rate_limit.set": { params: RateLimitParams; result: Empty };
  "rate_limit.remove": { params: RateLimitTarget; result: Empty };
  "recurring.list": { params: { readonly domain?: string }; result: { readonly schedules: readonly RecurringSchedule[] } };
  "recurring.pause": { params: { readonly id: number }; result: Empty };
  "recurring.resume": { params: { readonly id: number }; result: Empty };
  "recurring.cancel": { params: { readonly id: number }; result: Empty };
  "pressure.set": { params: { readonly source: string; readonly value: number | null }; result: Empty };
  "events.subscribe": { params: { readonly filter?: EventFilter }; result: { readonly subscription: number } };
  "events.unsubscribe": { params: { readonly subscription: number }; result: Empty };
  "worker.register": { params: WorkerRegisterParams; result: { readonly worker: string } };
  "worker.unregister": { params: { readonly worker: string }; result: Empty };
  "worker.spawn_child": { params: WorkerSpawnChildParams; result: SubmitResult };
}

export type MethodName = keyof Methods;
export type MethodParams<M extends MethodName> = Methods[M]["params"];
export type MethodResult<M extends MethodName> = Methods[M]["result"];

/** Every notification a client may send to the sidecar. */
export interface ClientNotifications {
  "worker.progress": WorkerProgressParams;
  "worker.io": WorkerIoParams;
}
