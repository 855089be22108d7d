/**
 * taskmill-bridge: the TypeScript client of the taskmill sidecar.
 *
 * Entry points:
 * - `taskmill-bridge`: the client, WebSocket and JSON-lines transports, types, errors.
 * - `taskmill-bridge/node`: spawn the sidecar with `child_process` (Electron main, Node).
 * - `taskmill-bridge/tauri`: spawn the sidecar with the Tauri shell plugin.
 *
 * @packageDocumentation
 */

export { TERMINAL_EVENT_KINDS, TaskmillClient, VERSION, createClient, isHistoryRecord } from "./client.js";
export type {
  ClientOptions,
  ConnectionEvent,
  ConnectionState,
  EventStream,
  ReconnectOptions,
  Unsubscribe,
  WaitForOptions,
} from "./client.js";

export { createMsgpackDecoder, createMsgpackEncoder } from "./codec.js";

export { ErrorCode, TaskCancelledError, TaskFailure, TaskmillError, isTaskmillError } from "./errors.js";
export type { ClientErrorKind, ErrorKind, RpcErrorObject, ServerErrorKind, TaskmillErrorOptions } from "./errors.js";

export { JsonLinesDecoder, createLineTransport, encodeJsonLine, parseReady } from "./lines.js";
export type { JsonLinesDecoderOptions, LineTransport, LineTransportOptions } from "./lines.js";

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

export {
  ACTIVE_STATUSES,
  HISTORY_STATUSES,
  PROTOCOL_VERSION,
  Priority,
  SCHEDULER_EVENT_KINDS,
  TASK_EVENT_KINDS,
} from "./types.js";
export type {
  ActiveStatus,
  ActiveTaskRecord,
  CancelWhereParams,
  ClientNotifications,
  DependenciesResult,
  DurationMs,
  EventEnvelope,
  EventFilter,
  EventKind,
  EventOf,
  ExpectedIo,
  HelloParams,
  HelloResult,
  HistoryParams,
  HistoryStats,
  HistoryStatus,
  HistoryTaskRecord,
  IoBytes,
  ListParams,
  ListResult,
  LookupResult,
  MethodName,
  MethodParams,
  MethodResult,
  Methods,
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
  SchedulerEvent,
  SchedulerEventFields,
  SchedulerEventKind,
  ShutdownParams,
  SidecarInfo,
  SidecarReady,
  Snapshot,
  SnapshotDomain,
  SnapshotGroup,
  SnapshotProgress,
  SnapshotResources,
  SubmitOutcome,
  SubmitParams,
  SubmitResult,
  TagKeysResult,
  TagValuesResult,
  Tags,
  TaskEvent,
  TaskEventFields,
  TaskEventHeader,
  TaskEventKind,
  TaskId,
  TaskRecord,
  TaskStatus,
  TaskType,
  TaskTypeInfo,
  TaskmillEvent,
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

export type { RequestOptions, WorkOptions, WorkerContext, WorkerHandle, WorkerHandler, WorkerTaskTypes } from "./worker.js";

export { connectWebSocket, webSocketConnector } from "./ws.js";
export type {
  ConnectWebSocketOptions,
  WebSocketConnectorOptions,
  WebSocketConstructor,
  WebSocketLike,
  WsEndpointInput,
  WsEndpointProvider,
} from "./ws.js";
