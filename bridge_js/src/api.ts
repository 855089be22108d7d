/**
 * One client method per wire method (protocol section 5), typed by the
 * client's task map. Every method takes its optional parts as one options
 * object, which also carries `timeoutMs` and `signal`.
 *
 * @packageDocumentation
 */

import { TaskmillError } from "./errors.js";
import type { MethodName, MethodParams, MethodResult } from "./methods.js";
import type { RequestOptions } from "./rpc.js";
import type { AnyTasks, TaskId, TaskIdOf, TaskTypeOf } from "./tasks.js";
import type {
  ActiveTaskRecord,
  CancelWhereParams,
  DependenciesResult,
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
  SidecarInfo,
  Snapshot,
  SubmitParams,
  SubmitParamsFor,
  SubmitResult,
  TagKeysResult,
  TagValuesResult,
  TaskRecord,
} from "./types.js";

/** Tasks one `task.submit_batch` may hold (the sidecar answers -32008 beyond). */
const MAX_BATCH = 100_000;

/** Request options plus a domain filter. */
export interface DomainOptions extends RequestOptions {
  /** Restrict to one domain. */
  readonly domain?: string;
}

/** Options of `pauseGroup`. */
export interface PauseGroupOptions extends RequestOptions {
  /** Resume automatically after this long. */
  readonly durationMs?: number;
}

/** Reads `{domain, ...}` from the new options object or the old `(domain?, options?)` pair. */
function domainArgs(first: DomainOptions | string | undefined, legacy: RequestOptions | undefined): [{ domain?: string }, RequestOptions | undefined] {
  if (typeof first === "string") return [{ domain: first }, legacy];
  if (first === undefined) return [{}, legacy];
  const { domain, ...options } = first;
  return [domain === undefined ? {} : { domain }, options];
}

/** The typed wire methods of {@link TaskmillClient}. */
export abstract class WireMethods<Tasks = AnyTasks> {
  /** Sends a typed request. Method and param names are the wire names (protocol.md section 5). */
  abstract request<M extends MethodName>(method: M, params: MethodParams<M>, options?: RequestOptions): Promise<MethodResult<M>>;

  /** `sidecar.info`. */
  info(options?: RequestOptions): Promise<SidecarInfo> {
    return this.request("sidecar.info", {}, options);
  }

  /** `task.submit`. The id it resolves with remembers the task type, for `waitFor`. */
  submit<T extends TaskTypeOf<Tasks>>(params: SubmitParamsFor<Tasks, T>, options?: RequestOptions): Promise<SubmitResult<T>> {
    return this.request("task.submit", params as SubmitParams, options) as Promise<SubmitResult<T>>;
  }

  /**
   * `task.submit_batch` (one SQLite transaction); outcomes in input order.
   * More than 100,000 tasks reject at once, unsent, with the sidecar's error
   * (-32008 `limit_exceeded`, `data.limit` `"batch_length"`): split them
   * yourself, deciding what a partial success means.
   */
  async submitBatch(tasks: readonly SubmitParams<Tasks>[], options?: RequestOptions): Promise<readonly SubmitResult[]> {
    if (tasks.length > MAX_BATCH) {
      const message = `a batch holds at most ${MAX_BATCH} tasks (got ${tasks.length}): split it`;
      throw TaskmillError.fromRpc({ code: -32008, message, data: { kind: "limit_exceeded", field: "tasks", limit: "batch_length", max: MAX_BATCH } }, "task.submit_batch");
    }
    return (await this.request("task.submit_batch", { tasks: tasks as readonly SubmitParams[] }, options)).outcomes;
  }

  /** `task.get`: the active record, else the latest history record. Rejects with kind `"not_found"`. */
  get<T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>>(id: TaskIdOf<T>, options?: RequestOptions): Promise<TaskRecord<Tasks, T>> {
    return this.request("task.get", { id }, options) as Promise<never>;
  }

  /** `task.lookup` by type and dedup key. */
  lookup<T extends TaskTypeOf<Tasks>>(taskType: T, key: string, options?: RequestOptions): Promise<LookupResult<TaskRecord<Tasks, T>>> {
    return this.request("task.lookup", { task_type: taskType, key }, options) as Promise<never>;
  }

  /** `task.list`: active tasks. */
  list(params: ListParams = {}, options?: RequestOptions): Promise<ListResult<ActiveTaskRecord<Tasks>>> {
    return this.request("task.list", params, options) as Promise<never>;
  }

  /** `task.cancel` (cascades to children); resolves with whether it cancelled. */
  async cancel(id: TaskId, options?: RequestOptions): Promise<boolean> {
    return (await this.request("task.cancel", { id }, options)).cancelled;
  }

  /** `task.cancel_where` (at least one criterion); resolves with the cancelled ids. */
  async cancelWhere(params: CancelWhereParams, options?: RequestOptions): Promise<readonly TaskId[]> {
    return (await this.request("task.cancel_where", params, options)).cancelled;
  }

  /** `task.set_priority` (pending, paused or blocked tasks only). */
  async setPriority(id: TaskId, priority: PriorityInput, options?: RequestOptions): Promise<boolean> {
    return (await this.request("task.set_priority", { id, priority }, options)).updated;
  }

  /** `task.retry_dead_letter`: resubmits a dead-lettered task as a new task. */
  retryDeadLetter(id: TaskId, options?: RequestOptions): Promise<SubmitResult> {
    return this.request("task.retry_dead_letter", { id }, options);
  }

  /**
   * `scheduler.snapshot`, optionally restricted to a domain:
   * `snapshot({ domain: "media", signal })`. (`snapshot(domain, options)` still works.)
   */
  snapshot(options?: DomainOptions | string, legacy?: RequestOptions): Promise<Snapshot<Tasks>> {
    const [params, rest] = domainArgs(options, legacy);
    return this.request("scheduler.snapshot", params, rest) as Promise<never>;
  }

  /** `scheduler.pause`. */
  async pause(options?: RequestOptions): Promise<void> {
    await this.request("scheduler.pause", {}, options);
  }

  /** `scheduler.resume`. */
  async resume(options?: RequestOptions): Promise<void> {
    await this.request("scheduler.resume", {}, options);
  }

  /** `domain.pause`; resolves with the number of tasks paused. */
  async pauseDomain(domain: string, options?: RequestOptions): Promise<number> {
    return (await this.request("domain.pause", { domain }, options)).count;
  }

  /** `domain.resume`; resolves with the number of tasks resumed. */
  async resumeDomain(domain: string, options?: RequestOptions): Promise<number> {
    return (await this.request("domain.resume", { domain }, options)).count;
  }

  /** `group.pause`, auto-resuming after `durationMs` when given. (`pauseGroup(group, durationMs, options)` still works.) */
  pauseGroup(group: string, options?: PauseGroupOptions | number, legacy?: RequestOptions): Promise<{ readonly pending: number; readonly running: number }> {
    const { durationMs, ...rest } = typeof options === "number" ? { durationMs: options, ...legacy } : (options ?? {});
    return this.request("group.pause", durationMs === undefined ? { group } : { group, duration_ms: durationMs }, rest);
  }

  /** `group.resume`; resolves with the number of tasks resumed. */
  async resumeGroup(group: string, options?: RequestOptions): Promise<number> {
    return (await this.request("group.resume", { group }, options)).resumed;
  }

  /** `scheduler.set_max_concurrency`. */
  async setMaxConcurrency(value: number, options?: RequestOptions): Promise<void> {
    await this.request("scheduler.set_max_concurrency", { value }, options);
  }

  /** `domain.set_max_concurrency`; null removes the cap. */
  async setDomainMaxConcurrency(domain: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("domain.set_max_concurrency", { domain, value }, options);
  }

  /** `group.set_limit`; null removes it. */
  async setGroupLimit(group: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_limit", { group, value }, options);
  }

  /** `group.set_weight`; null removes it. */
  async setGroupWeight(group: string, weight: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_weight", { group, weight }, options);
  }

  /** `group.set_min_slots`; null removes it. */
  async setGroupMinSlots(group: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("group.set_min_slots", { group, value }, options);
  }

  /** `rate_limit.set` for a task type xor a group. */
  async setRateLimit(params: RateLimitParams, options?: RequestOptions): Promise<void> {
    await this.request("rate_limit.set", params, options);
  }

  /** `rate_limit.remove` for a task type xor a group. */
  async removeRateLimit(target: RateLimitTarget, options?: RequestOptions): Promise<void> {
    await this.request("rate_limit.remove", target, options);
  }

  /** `recurring.list`, optionally for one domain. */
  async recurringList(options?: DomainOptions | string, legacy?: RequestOptions): Promise<readonly RecurringSchedule[]> {
    const [params, rest] = domainArgs(options, legacy);
    return (await this.request("recurring.list", params, rest)).schedules;
  }

  /** `recurring.pause`: the current occurrence runs, no next one is created. */
  async recurringPause(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.pause", { id }, options);
  }

  /** `recurring.resume`. */
  async recurringResume(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.resume", { id }, options);
  }

  /** `recurring.cancel`. */
  async recurringCancel(id: number, options?: RequestOptions): Promise<void> {
    await this.request("recurring.cancel", { id }, options);
  }

  /** `history.list`. */
  history(params: HistoryParams = {}, options?: RequestOptions): Promise<ListResult<HistoryTaskRecord<Tasks>>> {
    return this.request("history.list", params, options) as Promise<never>;
  }

  /** `history.stats` of a task type. */
  historyStats(taskType: TaskTypeOf<Tasks>, options?: RequestOptions): Promise<HistoryStats> {
    return this.request("history.stats", { task_type: taskType }, options);
  }

  /** `scheduler.metrics`: counters and gauges. */
  metrics(options?: RequestOptions): Promise<Metrics> {
    return this.request("scheduler.metrics", {}, options);
  }

  /** Alias of {@link WireMethods.metrics}. */
  stats(options?: RequestOptions): Promise<Metrics> {
    return this.metrics(options);
  }

  /** `dependencies.get`. */
  dependencies(id: TaskId, options?: RequestOptions): Promise<DependenciesResult> {
    return this.request("dependencies.get", { id }, options);
  }

  /** `tags.values`: the values of a tag key, with counts. */
  async tagValues(key: string, options?: DomainOptions | string, legacy?: RequestOptions): Promise<TagValuesResult["values"]> {
    const [params, rest] = domainArgs(options, legacy);
    return (await this.request("tags.values", { key, ...params }, rest)).values;
  }

  /** `tags.keys`: tag keys starting with `prefix`. */
  async tagKeys(prefix: string, options?: DomainOptions | string, legacy?: RequestOptions): Promise<TagKeysResult["keys"]> {
    const [params, rest] = domainArgs(options, legacy);
    return (await this.request("tags.keys", { prefix, ...params }, rest)).keys;
  }

  /** `pressure.set`: a host-set pressure source, 0..1; null removes it. */
  async setPressure(source: string, value: number | null, options?: RequestOptions): Promise<void> {
    await this.request("pressure.set", { source, value }, options);
  }
}
