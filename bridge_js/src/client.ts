/**
 * The taskmill client: the connection core ({@link Rpc}), subscriptions,
 * workers and the typed wire methods behind one class, plus `waitFor` and
 * `run`, which combine them.
 *
 * @packageDocumentation
 */

import { WireMethods } from "./api.js";
import { TaskFailedError, TaskmillError, isTaskmillError, toTaskmillError } from "./errors.js";
import type { EventFilter, EventKind, EventOf } from "./events.js";
import type { MethodName, MethodParams, MethodResult } from "./methods.js";
import { Rpc, type ClientOptions, type ConnectionEvent, type ConnectionState, type RequestOptions } from "./rpc.js";
import { Subscriptions, type EventStream, type EventStreamOptions, type Unsubscribe } from "./subscriptions.js";
import type { AnyTasks, ResultOf, TaskIdOf, TaskTypeOf } from "./tasks.js";
import { HISTORY_STATUSES, type HelloResult, type HistoryStatus, type HistoryTaskRecord, type SidecarReady, type SubmitParamsFor, type TaskRecord } from "./types.js";
import { Waiters, type Waiter } from "./waiters.js";
import { Workers, type WorkOptions, type WorkerHandle, type WorkerHandler, type WorkerTaskTypes } from "./worker.js";

/** Options of {@link TaskmillClient.waitFor}. */
export interface WaitForOptions {
  /** Rejects with kind `"timeout"` after this long. Defaults to no timeout. */
  readonly timeoutMs?: number;
  /** Rejects with kind `"aborted"` when it fires. */
  readonly signal?: AbortSignal;
}

/** Options of {@link TaskmillClient.run}: the submission's request options, and how long to wait for the end. */
export interface RunOptions extends WaitForOptions {}

/** Options of {@link TaskmillClient.shutdown}. */
export interface ShutdownOptions extends RequestOptions {
  /** `"graceful"` (default) drains running tasks; `"hard"` stops at once. */
  readonly mode?: "graceful" | "hard";
  /** How long the sidecar lets running tasks finish (`timeout_ms` on the wire). */
  readonly drainTimeoutMs?: number;
}

/**
 * A client of the taskmill sidecar, typed by an optional task map (see
 * `TaskMap`). Create it with a connector (or use `connectWebSocket`,
 * `spawnSidecar` from `taskmill-bridge/node`, `spawnTauriSidecar` from
 * `taskmill-bridge/tauri`), then `connect()`.
 */
export class TaskmillClient<Tasks = AnyTasks> extends WireMethods<Tasks> {
  readonly #rpc: Rpc;
  readonly #subs: Subscriptions;
  readonly #workers: Workers;
  readonly #waiters: Waiters;

  constructor(options: ClientOptions) {
    super();
    this.#rpc = new Rpc(options, {
      restore: (link) => [...this.#subs.restore(link), ...this.#workers.restore(link)],
      dropped: (link) => {
        this.#subs.dropped(link);
        this.#workers.dropped(link);
      },
      notification: (link, method, params) => {
        if (method === "event") this.#subs.event(link, params);
        else if (method === "worker.cancel") this.#workers.cancel(params);
        // Other notifications (a second sidecar.ready, future additions) are ignored.
      },
      serverRequest: (link, id, method, params) => this.#workers.request(link, id, method, params),
      terminated: (reason) => {
        this.#subs.terminated(reason);
        this.#workers.terminated();
      },
    });
    this.#subs = new Subscriptions(this.#rpc);
    this.#workers = new Workers(this.#rpc);
    this.#waiters = new Waiters(this.#rpc, this.#subs);
  }

  // -------------------------------------------------------------------------
  // Connection and life cycle

  /** The current connection state; `"closed"` is terminal. */
  get state(): ConnectionState {
    return this.#rpc.state;
  }

  /** The `session.hello` result of the current connection, if any. */
  get session(): HelloResult | null {
    return this.#rpc.openLink?.hello ?? null;
  }

  /** The `sidecar.ready` params of the current connection, when the connector spawned the sidecar. */
  get ready(): SidecarReady | null {
    return this.#rpc.link?.ready ?? null;
  }

  /** Why the client closed (kind `closed`, `disconnected`, `unauthorized` or `protocol_error`), or null while it lives. */
  get closeReason(): TaskmillError | null {
    return this.#rpc.reason;
  }

  /**
   * Resolves, with the reason, when the client reaches its terminal state:
   * `close()` or `shutdown()` (kind `closed`), the connection lost with no
   * reconnect or restart left (`disconnected`), or a handshake no retry can
   * fix (`unauthorized`, `protocol_error`). By then every pending request,
   * `waitFor`, `run` and `events()` stream has settled with that kind.
   */
  closed(): Promise<TaskmillError> {
    return this.#rpc.closed();
  }

  /** Listens to connection notices. Returns a function that stops listening. */
  onConnection(listener: (event: ConnectionEvent) => void): () => void {
    return this.#rpc.onConnection(listener);
  }

  /**
   * Connects (handshake, then subscriptions and workers made so far). Resolves
   * when open. A failing first attempt rejects and leaves the client
   * `disconnected`: call it again to retry.
   */
  connect(): Promise<void> {
    return this.#rpc.connect();
  }

  /**
   * Closes the client for good (kind `"closed"`): pending requests, `waitFor`
   * and event streams reject, running worker tasks are aborted. Over stdio
   * this closes the sidecar's stdin, which makes it shut down.
   */
  async close(): Promise<void> {
    this.#rpc.close();
  }

  /**
   * `sidecar.shutdown`: the sidecar answers, then exits 0. The client then
   * closes (kind `"closed"`) instead of reconnecting, and a spawned sidecar
   * is not restarted. (`shutdown(mode, drainTimeoutMs)` still works.)
   */
  async shutdown(options?: ShutdownOptions | "graceful" | "hard", drainTimeoutMs?: number, legacy?: RequestOptions): Promise<void> {
    const { mode, drainTimeoutMs: drain, ...request } = typeof options === "string" ? { mode: options, drainTimeoutMs, ...legacy } : (options ?? {});
    this.#rpc.expectShutdown(true);
    try {
      await this.request("sidecar.shutdown", { ...(mode === undefined ? {} : { mode }), ...(drain === undefined ? {} : { timeout_ms: drain }) }, request);
    } catch (error) {
      // Refused (or never sent): the sidecar is not going away.
      if (isTaskmillError(error) && (error.code !== 0 || error.kind === "aborted" || error.kind === "timeout")) this.#rpc.expectShutdown(false);
      throw error;
    }
  }

  // -------------------------------------------------------------------------
  // Requests

  /** Sends a typed request. Method and param names are the wire names (protocol.md section 5). */
  request<M extends MethodName>(method: M, params: MethodParams<M>, options?: RequestOptions): Promise<MethodResult<M>> {
    return this.#rpc.call(method, params, options) as Promise<MethodResult<M>>;
  }

  /**
   * Sends any request, untyped. While connecting or reconnecting the request
   * waits (within its timeout) and is sent once open; while disconnected or
   * closed it rejects at once. It is never re-sent after a drop.
   */
  call(method: string, params: object = {}, options: RequestOptions = {}): Promise<unknown> {
    return this.#rpc.call(method, params, options);
  }

  // -------------------------------------------------------------------------
  // Events

  /**
   * Subscribes to events matching `filter` (protocol section 6). Works before
   * `connect()` and survives reconnects (re-subscribed each time). With
   * `kinds` given, the handler's event type is narrowed to those kinds (and
   * `lagged` is delivered only if listed); with `task_types`, to those types.
   */
  subscribe<K extends EventKind = EventKind, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>>(
    filter: EventFilter<K, T> | undefined,
    handler: (event: EventOf<K, Tasks, T>) => void,
  ): Unsubscribe {
    return this.#subs.subscribe(filter, handler as (event: unknown) => void);
  }

  /** Calls `handler` for every event of one kind; the event type is narrowed to it. */
  on<K extends EventKind>(kind: K, handler: (event: EventOf<K, Tasks>) => void): Unsubscribe {
    return this.#subs.subscribe({ kinds: [kind] }, handler as (event: unknown) => void);
  }

  /**
   * Events matching `filter` as an async iterator; `break` (or `return()`)
   * unsubscribes. The buffer is bounded (`bufferSize`, default 1024): a
   * consumer that falls behind gets one `lagged {missed}` item in place of
   * the dropped events. When the client closes, the buffered events are
   * yielded, then `next()` rejects with the reason.
   */
  events<K extends EventKind = EventKind, T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>>(
    filter?: EventFilter<K, T>,
    options: EventStreamOptions = {},
  ): EventStream<EventOf<K | "lagged", Tasks, T>> {
    return this.#subs.events(filter, options);
  }

  // -------------------------------------------------------------------------
  // Workers

  /**
   * Executes tasks of `taskTypes` in this process (protocol section 8).
   * Resolves once registered; the worker is re-registered after every
   * reconnect. Rejects if the sidecar refuses the registration.
   */
  work<T extends TaskTypeOf<Tasks>>(taskTypes: WorkerTaskTypes<T>, handler: WorkerHandler<Tasks, T>, options: WorkOptions = {}): Promise<WorkerHandle> {
    return this.#workers.work(taskTypes, handler as never, options);
  }

  // -------------------------------------------------------------------------
  // waitFor and run

  /**
   * Resolves with the task's history record once it reaches a terminal state
   * (completed, failed, dead_letter, cancelled, superseded, expired,
   * dependency_failed): it resolves on failure too (see `run()` for a
   * version that throws). It subscribes to the task's events, then reads the
   * record, so a task that already finished resolves at once; after a
   * reconnect or a `lagged` it reads the record again. The `waitFor`s of a
   * client share at most 4 subscriptions (see the README), so any number of
   * tasks can be awaited at once. Rejects with kind `"not_found"` for an unknown
   * id, and with the client's reason when the client closes.
   */
  waitFor<T extends TaskTypeOf<Tasks> = TaskTypeOf<Tasks>>(id: TaskIdOf<T>, options: WaitForOptions = {}): Promise<HistoryTaskRecord<Tasks, T>> {
    return new Promise<HistoryTaskRecord<Tasks, T>>((resolve, reject) => {
      const refused = this.#rpc.reason;
      if (refused !== null) {
        reject(refused);
        return;
      }
      let done = false;
      let checking = false;
      let again = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (error: TaskmillError | null, record?: HistoryTaskRecord<Tasks, T>): void => {
        if (done) return;
        done = true;
        this.#waiters.remove(waiter);
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (error !== null) reject(error);
        else resolve(record as HistoryTaskRecord<Tasks, T>);
      };
      const check = async (): Promise<void> => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            if (done) return;
            const record: TaskRecord = await this.get(id, options.signal === undefined ? {} : { signal: options.signal });
            if (isHistoryRecord(record)) {
              finish(null, record as HistoryTaskRecord<Tasks, T>);
              return;
            }
          } while (again);
        } catch (error) {
          const err = toTaskmillError(error, "disconnected", `waitFor(${id})`);
          // Timeouts, drops and a sidecar shutting down: the next event, the resync or the terminal state decide.
          if ((err.code !== 0 && err.kind !== "shutting_down") || err.kind === "closed" || err.kind === "aborted") finish(err);
        } finally {
          checking = false;
        }
      };
      // Read the task once a shared subscription covers it, then after its terminal events, `resync` and `lagged`.
      const waiter: Waiter = { id, check: () => void check(), fail: (error) => finish(error) };
      const onAbort = (): void => finish(TaskmillError.client("aborted", `waitFor(${id}) aborted`, { cause: options.signal?.reason }));
      if (options.signal?.aborted === true) {
        onAbort();
        return;
      }
      this.#waiters.add(waiter);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
        const ms = options.timeoutMs;
        timer = setTimeout(() => finish(TaskmillError.client("timeout", `task ${id} did not finish within ${ms} ms`)), ms);
      }
    });
  }

  /**
   * Submits a task and waits for it: resolves with its result when it
   * completes, rejects with a `TaskFailedError` (kind `"task_failed"`,
   * carrying the terminal record) when it ends failed, dead_letter,
   * cancelled, superseded, expired or dependency_failed. A duplicate
   * submission waits for the task already queued.
   */
  async run<T extends TaskTypeOf<Tasks>>(params: SubmitParamsFor<Tasks, T>, options: RunOptions = {}): Promise<ResultOf<Tasks, T>> {
    const { id } = await this.submit<T>(params, options.signal === undefined ? {} : { signal: options.signal });
    const record = await this.waitFor<T>(id, options);
    if (record.status === "completed") return record.result as ResultOf<Tasks, T>;
    throw new TaskFailedError(record as HistoryTaskRecord, { method: "run" });
  }
}

/** True when the record is a terminal history record. */
export function isHistoryRecord<R extends { readonly status: string }>(record: R): record is Extract<R, { readonly status: HistoryStatus }> {
  return (HISTORY_STATUSES as readonly string[]).includes(record.status);
}

/** Creates a client without connecting. `Tasks` types task payloads, results and events. */
export function createClient<Tasks = AnyTasks>(options: ClientOptions): TaskmillClient<Tasks> {
  return new TaskmillClient<Tasks>(options);
}
