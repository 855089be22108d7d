/**
 * Errors. Everything the client rejects with is a {@link TaskmillError}:
 *
 * ```
 * TaskmillError            code, kind, field, data, method, cause
 *   server errors          code < 0, kind from the wire (protocol.md section 2)
 *   client errors          code 0, kind "timeout" | "aborted" | "disconnected" | ...
 *     TaskFailedError      kind "task_failed": `run()` ended in failed, dead_letter,
 *                          cancelled, superseded, expired or dependency_failed
 * ```
 *
 * Three errors the client raises itself carry a wire code instead of 0,
 * because they mean exactly what the sidecar's would: a message over the size
 * limit is refused locally with -32600 `invalid_request`, a `submitBatch` of
 * more than 100,000 tasks with -32008 `limit_exceeded` (`batch_length`), and
 * a WebSocket the sidecar closed with code 4401 becomes -32001 `unauthorized`.
 *
 * Match on `kind`, the stable string; use {@link isTaskmillError} rather than
 * `instanceof`, which fails across JS realms (iframes, duplicated bundles).
 *
 * @packageDocumentation
 */

import type { HistoryStatus, HistoryTaskRecord } from "./types.js";

/** JSON-RPC error codes of the wire contract. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  Unauthorized: -32001,
  NotFound: -32002,
  UnknownTaskType: -32003,
  InvalidState: -32004,
  PayloadTooLarge: -32005,
  ShuttingDown: -32006,
  StorageError: -32007,
  LimitExceeded: -32008,
  /** A remote worker's answer to `worker.execute`: the task failed. */
  TaskFailed: -32010,
  /** Errors raised inside the client (no server involved). */
  Client: 0,
} as const;

/** `data.kind` values the sidecar sends. */
export type ServerErrorKind =
  | "parse_error"
  | "invalid_request"
  | "method_not_found"
  | "invalid_params"
  | "internal_error"
  | "unauthorized"
  | "not_found"
  | "unknown_task_type"
  | "invalid_state"
  | "payload_too_large"
  | "shutting_down"
  | "storage_error"
  | "limit_exceeded";

/** Kinds of the errors the client raises itself (code 0). */
export type ClientErrorKind =
  /** The request got no answer within its timeout. */
  | "timeout"
  /** The caller's `AbortSignal` fired. */
  | "aborted"
  /** The connection closed while the request was pending, or before it was sent. */
  | "disconnected"
  /** `close()` was called: the client will not connect again. */
  | "closed"
  /** The connection could not be opened (spawn failed, socket refused, no ready line). */
  | "connect_failed"
  /** The peer broke the protocol (bad frame, wrong protocol version). */
  | "protocol_error"
  /** `run()`: the task ended without completing (a {@link TaskFailedError}). */
  | "task_failed";

export type ErrorKind = ServerErrorKind | ClientErrorKind;

const KIND_BY_CODE: Readonly<Record<number, ServerErrorKind>> = {
  [-32700]: "parse_error",
  [-32600]: "invalid_request",
  [-32601]: "method_not_found",
  [-32602]: "invalid_params",
  [-32603]: "internal_error",
  [-32001]: "unauthorized",
  [-32002]: "not_found",
  [-32003]: "unknown_task_type",
  [-32004]: "invalid_state",
  [-32005]: "payload_too_large",
  [-32006]: "shutting_down",
  [-32007]: "storage_error",
  [-32008]: "limit_exceeded",
};

/** The `error` member of a JSON-RPC error response. */
export interface RpcErrorObject {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

export interface TaskmillErrorOptions {
  readonly code: number;
  /** Defaults to the kind of `code`, else `"internal_error"`. */
  readonly kind?: ErrorKind | (string & {});
  readonly field?: string | undefined;
  readonly data?: unknown;
  readonly method?: string | undefined;
  readonly cause?: unknown;
}

const BRAND = Symbol.for("taskmill-bridge.TaskmillError");

/** An error from the sidecar or from the client itself. */
export class TaskmillError extends Error {
  override readonly name: string = "TaskmillError";
  /** JSON-RPC code; 0 for errors raised by the client. */
  readonly code: number;
  /** Stable string to match on (`data.kind` on the wire). */
  readonly kind: ErrorKind | (string & {});
  /** The request field at fault (`data.field`), when the server named one. */
  readonly field: string | undefined;
  /** The raw `data` member of the error response. */
  readonly data: unknown;
  /** The method of the request that failed, when known. */
  readonly method: string | undefined;

  constructor(message: string, options: TaskmillErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    this.kind = options.kind ?? KIND_BY_CODE[options.code] ?? "internal_error";
    this.field = options.field;
    this.data = options.data;
    this.method = options.method;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Builds the error of a JSON-RPC error response. */
  static fromRpc(error: RpcErrorObject, method?: string): TaskmillError {
    const data = isRecord(error.data) ? error.data : undefined;
    const kind = typeof data?.["kind"] === "string" ? data["kind"] : undefined;
    const field = typeof data?.["field"] === "string" ? data["field"] : undefined;
    const prefix = method === undefined ? "" : `${method}: `;
    return new TaskmillError(`${prefix}${error.message}`, {
      code: error.code,
      ...(kind === undefined ? {} : { kind }),
      field,
      data: error.data,
      method,
    });
  }

  /** An error raised by the client itself (code 0). */
  static client(kind: ClientErrorKind, message: string, extra: { method?: string | undefined; cause?: unknown; data?: unknown } = {}): TaskmillError {
    return new TaskmillError(message, { code: ErrorCode.Client, kind, method: extra.method, cause: extra.cause, data: extra.data });
  }
}

/**
 * Wraps anything thrown into a {@link TaskmillError}: a TaskmillError is
 * returned as is, anything else becomes a client error of `kind` with the
 * original as `cause`.
 *
 * @internal
 */
export function toTaskmillError(error: unknown, kind: ClientErrorKind, message: string, method?: string): TaskmillError {
  if (isTaskmillError(error)) return error;
  const detail = error instanceof Error ? error.message : typeof error === "string" ? error : "";
  return TaskmillError.client(kind, detail.length > 0 ? `${message}: ${detail}` : message, { method, cause: error });
}

/**
 * True for a {@link TaskmillError}, including one created by another copy of
 * this package or in another realm (where `instanceof` is false).
 */
export function isTaskmillError(value: unknown): value is TaskmillError {
  if (value instanceof TaskmillError) return true;
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<PropertyKey, unknown>;
  return (
    (v[BRAND] === true || v["name"] === "TaskmillError") &&
    typeof v["code"] === "number" &&
    typeof v["kind"] === "string" &&
    typeof v["message"] === "string"
  );
}

/**
 * `run()` rejects with this when the task ends without completing. `record`
 * is the terminal history record (`status`, `last_error`, `traceback`...).
 */
export class TaskFailedError<R extends HistoryTaskRecord = HistoryTaskRecord> extends TaskmillError {
  override readonly name: string = "TaskFailedError";
  /** The terminal history record. */
  readonly record: R;
  /** `record.status`: failed, dead_letter, cancelled, superseded, expired or dependency_failed. */
  readonly status: HistoryStatus;

  constructor(record: R, options: { readonly method?: string } = {}) {
    super(`task ${record.id} (${record.task_type}) ended ${record.status}${record.last_error ? `: ${record.last_error}` : ""}`, {
      code: ErrorCode.Client,
      kind: "task_failed",
      data: record,
      method: options.method,
    });
    this.record = record;
    this.status = record.status;
  }
}

/** True for a {@link TaskFailedError} (also across realms). */
export function isTaskFailedError(value: unknown): value is TaskFailedError {
  return isTaskmillError(value) && value.kind === "task_failed" && isRecord((value as { record?: unknown }).record);
}

/**
 * Throw this (or any error with `retryable: false`) from a worker handler to
 * fail the task permanently; any other error is retryable.
 */
export class TaskFailure extends Error {
  override readonly name = "TaskFailure";
  readonly retryable: boolean;

  constructor(message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? true;
  }
}

/** The reason an aborted worker `ctx.signal` carries. */
export class TaskCancelledError extends Error {
  override readonly name = "TaskCancelledError";
  /** `"preempted" | "cancelled" | "paused" | "shutdown"` from the sidecar, or `"disconnected"` / `"stopped"` from the client. */
  readonly reason: string;

  constructor(reason: string) {
    super(`task cancelled: ${reason}`);
    this.reason = reason;
  }
}

/** @internal */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
