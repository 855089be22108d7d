/**
 * Remote workers (protocol section 8): the client executes tasks itself.
 *
 * The sidecar dispatches with a `worker.execute` request (id `s-N`) on the
 * connection that registered the worker; the handler's return value becomes
 * `{result}`, a thrown error `{code: -32010, message, data: {retryable}}`.
 *
 * @packageDocumentation
 */

import { ErrorCode, TaskCancelledError, isRecord } from "./errors.js";
import type { RpcFailure, RpcId, RpcSuccess } from "./transport.js";
import type {
  SubmitParams,
  SubmitResult,
  TaskRecord,
  TaskType,
  WorkerCancelParams,
  WorkerExecuteParams,
  WorkerIoParams,
  WorkerTaskTypeDeclaration,
} from "./types.js";

/** Per-request options. */
export interface RequestOptions {
  /** Rejects with kind `"timeout"` after this long. Defaults to the client's `requestTimeoutMs`; 0 = never. */
  readonly timeoutMs?: number;
  /** Rejects with kind `"aborted"` when it fires. The late answer, if any, is ignored. */
  readonly signal?: AbortSignal;
}

/** What a worker handler gets besides the task record. */
export interface WorkerContext {
  /** The task record the sidecar sent. */
  readonly task: TaskRecord;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /**
   * Fires on `worker.cancel` (reason `"preempted" | "cancelled" | "paused" |
   * "shutdown"`), when the connection drops (`"disconnected"`) or on
   * `stop({ abort: true })` (`"stopped"`). `signal.reason` is a `TaskCancelledError`.
   */
  readonly signal: AbortSignal;
  /** Reports progress: `fraction` 0..1 (clamped), optional message. Sends `worker.progress`. */
  progress(fraction: number, message?: string): void;
  /** Records IO in bytes (added up by the sidecar). Sends `worker.io`. */
  io(bytes: Omit<WorkerIoParams, "task_id">): void;
  /** Spawns a child task of this one (`worker.spawn_child`). */
  spawnChild(params: SubmitParams, options?: RequestOptions): Promise<SubmitResult>;
}

/** A worker handler: returns the result (any JSON value) or throws to fail the task. */
export type WorkerHandler = (task: TaskRecord, ctx: WorkerContext) => unknown;

/** The task types a worker executes: names of declared types, or inline declarations. */
export type WorkerTaskTypes = TaskType | WorkerTaskTypeDeclaration | readonly (TaskType | WorkerTaskTypeDeclaration)[];

export interface WorkOptions {
  /** How many tasks the sidecar may run on this worker at once. Defaults to 1. */
  readonly concurrency?: number;
  /**
   * After `worker.cancel`, how long to wait for the handler to settle before
   * answering the sidecar with a cancellation error anyway. Defaults to 1000.
   */
  readonly cancelGraceMs?: number;
}

/** A registered worker. */
export interface WorkerHandle {
  /** The worker id the sidecar assigned on the current connection (changes on reconnect). */
  readonly id: string | null;
  /** Tasks currently executing. */
  readonly running: number;
  /**
   * Unregisters (`worker.unregister`): no new tasks are dispatched. Running
   * tasks finish and are answered; with `abort: true` their signals fire first.
   * Resolves once they are all answered.
   */
  stop(options?: { readonly abort?: boolean }): Promise<void>;
}

/** The connection services a worker needs from the client. @internal */
export interface WorkerHost {
  /** Sends a response on `link` if it is still open. */
  respond(link: object, message: RpcSuccess | RpcFailure): void;
  notify(link: object, method: "worker.progress" | "worker.io", params: object): void;
  spawnChild(params: SubmitParams & { task_id: number }, options?: RequestOptions): Promise<SubmitResult>;
  report(error: Error): void;
}

interface Running {
  readonly taskId: number;
  readonly link: object;
  readonly id: RpcId;
  readonly controller: AbortController;
  answered: boolean;
  graceTimer: ReturnType<typeof setTimeout> | undefined;
}

/** One registered worker and its running tasks. @internal */
export class WorkerEntry implements WorkerHandle {
  readonly taskTypes: readonly (TaskType | WorkerTaskTypeDeclaration)[];
  readonly concurrency: number | undefined;
  readonly #handler: WorkerHandler;
  readonly #host: WorkerHost;
  readonly #cancelGraceMs: number;
  readonly #running = new Map<number, Running>();
  readonly #idle = new Set<() => void>();
  /** Server id on the current link. */
  serverId: string | null = null;
  /** The link `serverId` belongs to. */
  link: object | null = null;
  active = true;
  /** Why the sidecar refused the registration, if it did. */
  failure: Error | undefined;
  /** Set by the client: unregisters on the server and forgets the entry. */
  onStop: (entry: WorkerEntry) => Promise<void> = async () => undefined;

  constructor(taskTypes: WorkerTaskTypes, handler: WorkerHandler, options: WorkOptions, host: WorkerHost) {
    this.taskTypes = typeof taskTypes === "string" || !Array.isArray(taskTypes) ? [taskTypes as TaskType | WorkerTaskTypeDeclaration] : taskTypes;
    this.concurrency = options.concurrency;
    this.#handler = handler;
    this.#host = host;
    this.#cancelGraceMs = options.cancelGraceMs ?? 1000;
  }

  get id(): string | null {
    return this.serverId;
  }

  get running(): number {
    return this.#running.size;
  }

  registerParams(): { task_types: readonly (TaskType | WorkerTaskTypeDeclaration)[]; concurrency?: number } {
    return this.concurrency === undefined ? { task_types: this.taskTypes } : { task_types: this.taskTypes, concurrency: this.concurrency };
  }

  async stop(options: { readonly abort?: boolean } = {}): Promise<void> {
    if (this.active) {
      this.active = false;
      await this.onStop(this);
    }
    if (options.abort === true) {
      for (const run of this.#running.values()) run.controller.abort(new TaskCancelledError("stopped"));
    }
    while (this.#running.size > 0) {
      await new Promise<void>((resolve) => this.#idle.add(resolve));
    }
  }

  /** Handles a `worker.execute` request that arrived on `link`. */
  execute(link: object, id: RpcId, params: WorkerExecuteParams): void {
    const taskId = params.task.id;
    const previous = this.#running.get(taskId);
    if (previous !== undefined) {
      // A re-dispatch of a task we think is still running: the sidecar has moved on.
      previous.controller.abort(new TaskCancelledError("cancelled"));
      this.#finish(previous);
    }
    const run: Running = { taskId, link, id, controller: new AbortController(), answered: false, graceTimer: undefined };
    this.#running.set(taskId, run);
    const host = this.#host;
    const ctx: WorkerContext = {
      task: params.task,
      attempt: params.attempt,
      signal: run.controller.signal,
      progress: (fraction, message) => {
        if (run.answered) return;
        const percent = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
        host.notify(link, "worker.progress", message === undefined ? { task_id: taskId, percent } : { task_id: taskId, percent, message });
      },
      io: (bytes) => {
        if (run.answered) return;
        host.notify(link, "worker.io", { ...bytes, task_id: taskId });
      },
      spawnChild: (submit, options) => host.spawnChild({ ...submit, task_id: taskId }, options),
    };
    let outcome: Promise<unknown>;
    try {
      outcome = Promise.resolve(this.#handler(params.task, ctx));
    } catch (error) {
      outcome = Promise.reject(error);
    }
    outcome.then(
      (result) => this.#answer(run, { jsonrpc: "2.0", id, result: { result: result === undefined ? null : result } }),
      (error: unknown) => this.#answer(run, failure(id, error)),
    );
  }

  /** Handles `worker.cancel` for a task of this worker; false if not ours. */
  cancel(params: WorkerCancelParams): boolean {
    const run = this.#running.get(params.task_id);
    if (run === undefined) return false;
    run.controller.abort(new TaskCancelledError(params.reason));
    if (run.graceTimer === undefined && !run.answered) {
      run.graceTimer = setTimeout(() => {
        this.#answer(run, failure(run.id, new TaskCancelledError(params.reason)));
      }, this.#cancelGraceMs);
    }
    return true;
  }

  /** The link closed: abort its tasks; their answers have nowhere to go. */
  disconnected(link: object): void {
    for (const run of [...this.#running.values()]) {
      if (run.link !== link) continue;
      run.controller.abort(new TaskCancelledError("disconnected"));
      this.#finish(run);
    }
    if (this.link === link) {
      this.link = null;
      this.serverId = null;
    }
  }

  #answer(run: Running, message: RpcSuccess | RpcFailure): void {
    if (run.answered) return;
    this.#finish(run);
    try {
      this.#host.respond(run.link, message);
    } catch (error) {
      // Typically a result that cannot be encoded or is over the size limit: fail the task instead.
      try {
        this.#host.respond(run.link, failure(run.id, error));
      } catch (inner) {
        this.#host.report(inner instanceof Error ? inner : new Error(String(inner)));
      }
    }
  }

  #finish(run: Running): void {
    run.answered = true;
    if (run.graceTimer !== undefined) clearTimeout(run.graceTimer);
    run.graceTimer = undefined;
    if (this.#running.get(run.taskId) === run) this.#running.delete(run.taskId);
    if (this.#running.size === 0) {
      for (const resolve of this.#idle) resolve();
      this.#idle.clear();
    }
  }
}

/** The error answer of a failed task: code -32010 with `data.retryable`. */
function failure(id: RpcId, error: unknown): RpcFailure {
  const message = error instanceof Error ? error.message : typeof error === "string" ? error : "task failed";
  const retryable = !(isRecord(error) && error["retryable"] === false);
  return { jsonrpc: "2.0", id, error: { code: ErrorCode.TaskFailed, message: message.length > 0 ? message : "task failed", data: { retryable } } };
}
