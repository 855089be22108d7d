/**
 * The transport seam: JSON-RPC message shapes, the {@link Transport} interface
 * every concrete transport implements, and the {@link Connector} the client
 * calls to open (and re-open) one.
 *
 * A transport moves whole JSON-RPC messages; framing and encoding (MessagePack
 * frames, JSON lines) are its own business.
 *
 * @packageDocumentation
 */

import type { RpcErrorObject, TaskmillError } from "./errors.js";
import type { SidecarReady } from "./types.js";

export type RpcId = number | string;

export interface RpcRequest {
  readonly jsonrpc: "2.0";
  readonly id: RpcId;
  readonly method: string;
  readonly params?: unknown;
}

export interface RpcNotification {
  readonly jsonrpc: "2.0";
  readonly method: string;
  readonly params?: unknown;
}

export interface RpcSuccess {
  readonly jsonrpc: "2.0";
  readonly id: RpcId;
  readonly result: unknown;
}

export interface RpcFailure {
  readonly jsonrpc: "2.0";
  readonly id: RpcId | null;
  readonly error: RpcErrorObject;
}

export type RpcResponse = RpcSuccess | RpcFailure;
export type RpcMessage = RpcRequest | RpcNotification | RpcSuccess | RpcFailure;

/** An open, message-oriented connection to the sidecar. */
export interface Transport {
  /**
   * Encodes and sends one message. Throws a `TaskmillError` when the message
   * cannot be sent (connection closed, message over the size limit).
   */
  send(message: RpcMessage): void;
  /** Closes the connection. The sink's `close` is called once, soon after. */
  close(reason?: Error): void;
}

/** Where a transport delivers what it receives. */
export interface TransportSink {
  /** One decoded message (not yet validated: the client checks its shape). */
  message(message: unknown): void;
  /** A frame or line that could not be decoded; the connection stays open. */
  protocolError(error: Error): void;
  /** The connection is gone. Called exactly once. */
  close(error?: Error): void;
}

/** What a connector hands the client once the connection is open. */
export interface Connection {
  readonly transport: Transport;
  /**
   * Credentials for `session.hello`, which the client sends first. Null when
   * no handshake is needed (stdio: the `sidecar.ready` line stands in for it).
   */
  readonly hello: { readonly token: string } | null;
  /** The `sidecar.ready` params, when the connector read them (process launchers). */
  readonly ready?: SidecarReady;
  /**
   * Only for credentials that can change between calls (an endpoint
   * provider). When the sidecar refuses `hello.token` as unauthorized, the
   * client calls this, then calls the connector again (up to 3 times in a
   * row) instead of giving up. The connector should then not hand back the
   * refused token: wait, within a bound, for its source to change, or throw
   * an `unauthorized` error.
   */
  readonly refused?: (error: TaskmillError) => void;
}

/**
 * Opens one connection. The client calls it for the first connection and
 * again for every reconnect, so it must re-read anything that may change
 * (a restarted sidecar's port and token). It rejects when it cannot connect,
 * and should give up when `signal` fires.
 */
export type Connector = (sink: TransportSink, signal: AbortSignal) => Promise<Connection>;

/** Default message size limit of the sidecar (`--max-message-bytes`). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
