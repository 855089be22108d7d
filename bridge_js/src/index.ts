/**
 * taskmill-bridge: the TypeScript client of the taskmill sidecar.
 *
 * Entry points:
 * - `taskmill-bridge`: the client, live task state (`createTaskStore`), the
 *   WebSocket and JSON-lines transports, types, errors.
 * - `taskmill-bridge/node`: spawn the sidecar with `child_process` (Electron main, Node).
 * - `taskmill-bridge/tauri`: spawn the sidecar with the Tauri shell plugin.
 * - `taskmill-bridge/react`: React hooks over a task store.
 *
 * @packageDocumentation
 */

export type { DomainOptions, PauseGroupOptions, WireMethods } from "./api.js";

export { TaskmillClient, createClient, isHistoryRecord } from "./client.js";
export type { RunOptions, ShutdownOptions, WaitForOptions } from "./client.js";

export { createMsgpackDecoder, createMsgpackEncoder, decodeMsgpack, encodeMsgpack } from "./codec.js";
export type { MsgpackDecoder, MsgpackEncoder } from "./codec.js";

export { ErrorCode, TaskCancelledError, TaskFailedError, TaskFailure, TaskmillError, isTaskFailedError, isTaskmillError } from "./errors.js";
export type { ClientErrorKind, ErrorKind, RpcErrorObject, ServerErrorKind, TaskmillErrorOptions } from "./errors.js";

export { SCHEDULER_EVENT_KINDS, TASK_EVENT_KINDS, TERMINAL_EVENT_KINDS } from "./events.js";
export type {
  EventEnvelope,
  EventFilter,
  EventKind,
  EventOf,
  SchedulerEvent,
  SchedulerEventFields,
  SchedulerEventKind,
  SchedulerEventOf,
  TaskEvent,
  TaskEventFields,
  TaskEventHeader,
  TaskEventKind,
  TaskEventOf,
  TaskmillEvent,
} from "./events.js";

export { JsonLinesDecoder, createLineTransport, encodeJsonLine } from "./lines.js";
export type { JsonLinesDecoderOptions, LineTransport, LineTransportOptions } from "./lines.js";

export { estimateProgress } from "./livetasks.js";
export type { LiveProgress, LiveTask, LiveTaskShape, TaskCounts } from "./livetasks.js";

export type { ClientNotifications, MethodName, MethodParams, MethodResult, Methods } from "./methods.js";

export { VERSION, defaultShouldRetry } from "./rpc.js";
export type { ClientOptions, ConnectionEvent, ConnectionState, ReconnectOptions, RequestOptions } from "./rpc.js";

export { createTaskStore } from "./store.js";
export type { TaskStore, TaskStoreOptions, TaskStoreState, TaskStoreStatus } from "./store.js";

export type { EventStream, EventStreamOptions, Unsubscribe } from "./subscriptions.js";

export { parseReady } from "./supervisor.js";

export type { AnyTasks, PayloadField, PayloadOf, ResultOf, TaskId, TaskIdOf, TaskMap, TaskSpec, TaskTypeOf } from "./tasks.js";

export { DEFAULT_MAX_MESSAGE_BYTES } from "./transport.js";
export type {
  Connection,
  Connector,
  RpcFailure,
  RpcId,
  RpcMessage,
  RpcNotification,
  RpcRequest,
  RpcResponse,
  RpcSuccess,
  Transport,
  TransportSink,
} from "./transport.js";

export { ACTIVE_STATUSES, HISTORY_STATUSES, PROTOCOL_VERSION, Priority } from "./types.js";
export type {
  ActiveRecordShape,
  ActiveStatus,
  ActiveTaskRecord,
  CancelWhereParams,
  DependenciesResult,
  DurationMs,
  ExpectedIo,
  HelloParams,
  HelloResult,
  HistoryParams,
  HistoryRecordShape,
  HistoryStats,
  HistoryStatus,
  HistoryTaskRecord,
  IoBytes,
  IoPacingReason,
  ListParams,
  ListResult,
  LookupResult,
  Metrics,
  PressureSource,
  PriorityInput,
  PriorityName,
  RateLimitInfo,
  RateLimitParams,
  RateLimitTarget,
  RecordProgress,
  RecurringPolicy,
  RecurringSchedule,
  RetryPolicy,
  ShutdownParams,
  SidecarInfo,
  SidecarReady,
  Snapshot,
  SnapshotDomain,
  SnapshotGroup,
  SnapshotIoPacing,
  SnapshotProgress,
  SnapshotResources,
  SubmitOptions,
  SubmitOutcome,
  SubmitParams,
  SubmitParamsFor,
  SubmitResult,
  TagKeysResult,
  TagValuesResult,
  Tags,
  TaskRecord,
  TaskRecordFields,
  TaskStatus,
  TaskType,
  TaskTypeInfo,
  Timestamp,
  Transports,
  WorkerCancelParams,
  WorkerCancelReason,
  WorkerExecuteParams,
  WorkerIoParams,
  WorkerProgressParams,
  WorkerRegisterParams,
  WorkerSpawnChildParams,
  WorkerTaskTypeDeclaration,
  WsEndpoint,
} from "./types.js";

export type { WorkOptions, WorkerContext, WorkerHandle, WorkerHandler, WorkerTaskTypes } from "./worker.js";

export { connectWebSocket, webSocketConnector } from "./ws.js";
export type {
  ConnectWebSocketOptions,
  WebSocketConnectorOptions,
  WebSocketConstructor,
  WebSocketLike,
  WsEndpointInput,
  WsEndpointProvider,
} from "./ws.js";
