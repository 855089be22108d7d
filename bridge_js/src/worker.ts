/**
 * Remote workers (protocol section 8): the client executes tasks itself.
 *
 * The sidecar dispatches with a `worker.execute` request (id `s-N`) on the
 * connection that registered the worker; the handler's return value becomes
 * `{result}`, a thrown error `{code: -32010, message, data: {retryable}}`.
 *
 * @packageDocumentation
 */

import { ErrorCode, TaskCancelledError, TaskmillError, isRecord, isTaskmillError } from "./errors.js";
import type { Link, RequestOptions, Rpc } from "./rpc.js";
import type { AnyTasks, ResultOf, TaskTypeOf } from "./tasks.js";
import type { RpcFailure, RpcId, RpcSuccess } from "./transport.js";
import type {
  ActiveTaskRecord,
  SubmitParamsFor,
  SubmitResult,
  TaskType,
  WorkerCancelParams,
  WorkerExecuteParams,
  WorkerIoParams,
  WorkerTaskTypeDeclaration,
} from "./types.js";

/** What a worker handler gets besides the task record. */
export interface WorkerContext<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> {
  /** The task record the sidecar sent. */
  readonly task: ActiveTaskRecord<Tasks, T>;
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
  spawnChild<C extends TaskTypeOf<Tasks>>(params: SubmitParamsFor<Tasks, C>, options?: RequestOptions): Promise<SubmitResult<C>>;
}

/** A worker handler: returns the result (typed by the task map) or throws to fail the task. */
export type WorkerHandler<Tasks = AnyTasks, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>> = (
  task: ActiveTaskRecord<Tasks, T>,
  ctx: WorkerContext<Tasks, T>,
) => ResultOf<Tasks, T> | PromiseLike<ResultOf<Tasks, T>>;

/** The task types a worker executes: names of declared types, or inline declarations. */
export type WorkerTaskTypes<T extends string = TaskType> = T | WorkerTaskTypeDeclaration<T> | readonly (T | WorkerTaskTypeDeclaration<T>)[];

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

type AnyHandler = (task: ActiveTaskRecord, ctx: WorkerContext) => unknown;

/** The connection services a worker needs from the client. @internal */
export interface WorkerHost {
  /** Sends a response on `link` if it is still open. */
  respond(link: object, message: RpcSuccess | RpcFailure): void;
  notify(link: object, method: "worker.progress" | "worker.io", params: object): void;
  spawnChild(params: object, options?: RequestOptions): Promise<SubmitResult>;
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
  readonly #handler: AnyHandler;
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

  constructor(taskTypes: WorkerTaskTypes, handler: AnyHandler, options: WorkOptions, host: WorkerHost) {
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
      task: params.task as ActiveTaskRecord,
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
      spawnChild: (submit, options) => host.spawnChild({ ...submit, task_id: taskId }, options) as never,
    };
    let outcome: Promise<unknown>;
    try {
      outcome = Promise.resolve(this.#handler(params.task as ActiveTaskRecord, ctx));
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

  /** Aborts every running task with `reason` (the client is finished). */
  abortAll(reason: string): void {
    for (const run of [...this.#running.values()]) {
      run.controller.abort(new TaskCancelledError(reason));
      this.#finish(run);
    }
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

/** The workers of one client: registration, restore on reconnect, dispatch of `worker.execute`. @internal */
export class Workers {
  readonly #rpc: Rpc;
  readonly #entries = new Set<WorkerEntry>();
  readonly #host: WorkerHost;

  constructor(rpc: Rpc) {
    this.#rpc = rpc;
    this.#host = {
      respond: (link, message) => rpc.sendOn(link as Link, message),
      notify: (link, method, params) => rpc.sendOn(link as Link, { jsonrpc: "2.0", method, params }),
      spawnChild: (params, opts) => rpc.call("worker.spawn_child", params, opts) as Promise<SubmitResult>,
      report: (error) => rpc.emit({ type: "error", error }),
    };
  }

  /**
   * Registers a worker: at once when open, else during the next handshake.
   * Rejects if the sidecar refuses it or the client gives up first.
   */
  async work(taskTypes: WorkerTaskTypes, handler: AnyHandler, options: WorkOptions): Promise<WorkerHandle> {
    const refused = this.#rpc.refusal("worker.register");
    if (refused !== null) throw refused;
    const entry = new WorkerEntry(taskTypes, handler, options, this.#host);
    entry.onStop = async (w) => {
      this.#entries.delete(w);
      const { link, serverId } = w;
      if (link !== null && serverId !== null && !(link as Link).closed) {
        try {
          await this.#rpc.rawRequest(link as Link, "worker.unregister", { worker: serverId });
        } catch {
          // The connection dropped: the sidecar forgets the worker anyway.
        }
      }
    };
    this.#entries.add(entry);
    const open = this.#rpc.openLink;
    if (open !== null) {
      try {
        await this.#registerOn(open, entry, true);
      } catch (error) {
        // Not registered (refused, or the link dropped meanwhile): the caller gets no handle, so nothing may linger.
        entry.active = false;
        this.#entries.delete(entry);
        throw error;
      }
      return entry;
    }
    await new Promise<void>((resolve, reject) => {
      const off = this.#rpc.onConnection((event) => {
        if (event.type === "open") {
          off();
          if (entry.active) resolve();
          else reject(entry.failure ?? TaskmillError.client("aborted", "worker stopped before it was registered", { method: "worker.register" }));
        } else if (event.type === "closed" && !event.willReconnect) {
          off();
          this.#entries.delete(entry);
          const reason = event.error ?? TaskmillError.client("disconnected", "the connection closed");
          reject(TaskmillError.client(reason.kind === "closed" ? "closed" : "disconnected", `the connection closed before the worker was registered: ${reason.message}`, { method: "worker.register", cause: reason }));
        }
      });
    });
    return entry;
  }

  restore(link: Link): Promise<void>[] {
    return [...this.#entries].filter((w) => w.active && w.link !== link).map((w) => this.#registerOn(link, w));
  }

  dropped(link: Link): void {
    for (const worker of this.#entries) worker.disconnected(link);
  }

  terminated(): void {
    for (const worker of this.#entries) {
      worker.active = false;
      worker.abortAll("disconnected");
    }
    this.#entries.clear();
  }

  /** A `worker.cancel` notification. */
  cancel(params: unknown): void {
    if (!isRecord(params) || typeof params["task_id"] !== "number") return;
    for (const worker of this.#entries) if (worker.cancel(params as unknown as WorkerCancelParams)) break;
  }

  /** A request from the sidecar: `worker.execute` is the only one a client answers. */
  request(link: Link, id: RpcId, method: string, params: unknown): void {
    const fail = (code: number, message: string, kind: string): void => {
      try {
        this.#rpc.sendOn(link, { jsonrpc: "2.0", id, error: { code, message, data: { kind } } });
      } catch (error) {
        this.#rpc.emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
      }
    };
    if (method !== "worker.execute") {
      fail(-32601, `the client has no method ${method}`, "method_not_found");
      return;
    }
    if (!isRecord(params) || typeof params["worker"] !== "string" || !isRecord(params["task"]) || typeof params["task"]["id"] !== "number") {
      fail(-32602, "worker.execute needs worker and task", "invalid_params");
      return;
    }
    const execute = params as unknown as WorkerExecuteParams;
    const worker = [...this.#entries].find((w) => w.link === link && w.serverId === execute.worker && w.active);
    if (worker === undefined) {
      fail(-32002, `no worker ${execute.worker} on this connection`, "not_found");
      return;
    }
    worker.execute(link, id, execute);
  }

  async #registerOn(link: Link, entry: WorkerEntry, rethrow = false): Promise<void> {
    try {
      const result = (await this.#rpc.rawRequest(link, "worker.register", entry.registerParams())) as { worker: string };
      if (!entry.active || link.closed) {
        if (!link.closed) void this.#rpc.rawRequest(link, "worker.unregister", { worker: result.worker }).catch(() => undefined);
        return;
      }
      entry.serverId = result.worker;
      entry.link = link;
    } catch (error) {
      if (isTaskmillError(error) && error.code !== 0) {
        entry.active = false;
        entry.failure = error;
        this.#entries.delete(entry);
        if (rethrow) throw error;
        this.#rpc.emit({ type: "error", error });
      } else if (rethrow) {
        throw error;
      }
    }
  }
}
