/**
 * The process supervisor shared by the Node (`child_process`) and Tauri
 * (shell plugin) adapters. An adapter only knows how to launch one process
 * and wire its pipes ({@link Launch}); this module does the rest, the same
 * way for both:
 *
 * - reads the `sidecar.ready` line (with a timeout and the stderr tail in
 *   the error), then speaks JSON lines over stdin/stdout;
 * - restarts the sidecar when it dies, through the client's reconnect loop
 *   (one loop, one backoff policy), unless the exit says a restart is
 *   pointless: code 0 (it was shut down on purpose: `shutdown()`, stdin EOF,
 *   SIGTERM), 2 (the database cannot be opened) or 3 (another sidecar holds
 *   the database);
 * - `stop()`: closes the client (the sidecar drains and exits), then kills
 *   the process if it has not exited in time.
 *
 * The ready line is read by {@link ReadyGate} (with {@link parseReady}), at
 * the end of this module.
 *
 * @packageDocumentation
 */

import { TaskmillClient } from "./client.js";
import { TaskmillError, isRecord, toTaskmillError } from "./errors.js";
import { createLineTransport, type JsonLinesDecoderOptions } from "./lines.js";
import { defaultShouldRetry, type ClientOptions, type ReconnectOptions } from "./rpc.js";
import type { AnyTasks } from "./tasks.js";
import type { Connector, TransportSink } from "./transport.js";
import type { SidecarReady } from "./types.js";

/** How a sidecar process ended. `signal` is a name (Node) or a number (Tauri). */
export interface SidecarExit {
  readonly code: number | null;
  readonly signal: string | number | null;
}

/** What a launcher's process reports; the supervisor feeds it to the line transport. */
export interface ProcessOutput {
  stdout(chunk: string | Uint8Array): void;
  stderr(text: string): void;
  /** The process is gone (called once; later calls are ignored). */
  exit(exit: SidecarExit): void;
  /** The process could not run or its pipes broke. */
  error(error: Error): void;
}

/** One launched process. */
export interface LaunchedProcess<Handle> {
  /** The platform's handle (`ChildProcess`, Tauri `Child`). */
  readonly handle: Handle;
  /** Writes to stdin; a returned promise orders later writes after it. */
  write(text: string): void | Promise<void>;
  /** Asks the process to stop gracefully (stdin EOF, or `sidecar.shutdown` where stdin cannot be closed). */
  end(): void;
  /** Kills it. */
  kill(): void | Promise<void>;
}

/** Launches one sidecar process, reporting its output to `output`. Throws when it cannot spawn. */
export type Launch<Handle> = (output: ProcessOutput) => Promise<LaunchedProcess<Handle>>;

/** Options shared by the adapters. */
export interface ProcessOptions {
  /** How long to wait for the `sidecar.ready` line. Defaults to 30000 (frozen builds can start slowly). */
  readonly readyTimeoutMs?: number;
  /** Defaults to 4 MiB, the sidecar's default limit. */
  readonly maxMessageBytes?: number;
}

/** Where an exit came from, found on a close error or its causes. @internal */
export function exitOf(error: unknown): SidecarExit | undefined {
  for (let e: unknown = error, depth = 0; isRecord(e) || e instanceof Error; depth += 1) {
    const data = (e as { data?: unknown }).data;
    if (isRecord(data) && "exit_code" in data) return { code: data["exit_code"] as number | null, signal: (data["signal"] ?? null) as string | number | null };
    if (depth > 8) break;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The restart policy: retry what {@link defaultShouldRetry} retries, except
 * a sidecar that exited with code 0 (shut down on purpose), 2 (cannot open
 * its database) or 3 (the database is in use by another sidecar).
 */
export function shouldRestart(error: TaskmillError): boolean {
  if (!defaultShouldRetry(error)) return false;
  const exit = exitOf(error);
  return exit === undefined || exit.code === null || ![0, 2, 3].includes(exit.code);
}

function describeExit(exit: SidecarExit): string {
  if (exit.signal !== null) return `the sidecar was killed by ${typeof exit.signal === "number" ? `signal ${exit.signal}` : exit.signal}`;
  const why = exit.code === 0 ? " (it was shut down)" : exit.code === 2 ? " (it cannot open its database)" : exit.code === 3 ? " (its database is in use by another sidecar)" : "";
  return `the sidecar exited with code ${String(exit.code)}${why}`;
}

/** A {@link Connector} that launches the sidecar on every (re)connect and reads its ready line. */
export function processConnector<Handle>(
  launch: Launch<Handle>,
  options: ProcessOptions & { readonly decoder?: JsonLinesDecoderOptions; readonly onLaunch?: (process: LaunchedProcess<Handle>, exited: Promise<SidecarExit>) => void },
): Connector {
  return async (sink, signal) => {
    if (signal.aborted) throw TaskmillError.client("closed", "connect aborted", { cause: signal.reason });
    let stderrTail = "";
    const describe = (): string => (stderrTail.trim().length > 0 ? `; stderr: ${stderrTail.trim().slice(-1000)}` : "");
    const gate = new ReadyGate(sink, options.readyTimeoutMs ?? 30_000, describe);
    let proc: LaunchedProcess<Handle> | null = null;
    let markExited!: (exit: SidecarExit) => void;
    const exited = new Promise<SidecarExit>((resolve) => (markExited = resolve));
    const lines = createLineTransport(gate, {
      write: (text) => {
        if (proc === null) throw new Error("the sidecar is not running");
        return proc.write(text);
      },
      end: () => proc?.end(),
      ...(options.decoder === undefined ? {} : { decoder: options.decoder }),
      ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
    });
    const output: ProcessOutput = {
      stdout: (chunk) => lines.feed(chunk),
      stderr: (text) => {
        stderrTail = (stderrTail + text).slice(-4096);
      },
      exit: (exit) => {
        markExited(exit);
        lines.closed(TaskmillError.client("disconnected", describeExit(exit), { data: { exit_code: exit.code, signal: exit.signal } }));
      },
      error: (error) => lines.closed(error),
    };
    try {
      proc = await launch(output);
    } catch (error) {
      const failure = toTaskmillError(error, "connect_failed", "could not spawn the sidecar");
      gate.fail(failure.kind === "connect_failed" ? failure : TaskmillError.client("connect_failed", failure.message, { cause: failure }));
      throw await gate.ready.then(
        () => failure,
        (e: unknown) => e,
      );
    }
    options.onLaunch?.(proc, exited);
    const launched = proc;
    const ready = await gate.wait(signal, () => launched.kill());
    return { transport: lines.transport, hello: null, ready };
  };
}

/** Options of {@link superviseSidecar}. */
export interface SuperviseOptions extends ProcessOptions, Omit<ClientOptions, "connector" | "reconnect"> {
  /**
   * Respawn the sidecar (same command, same database) when it dies, with
   * backoff; the client then re-subscribes, re-registers workers and emits
   * `resync`. No respawn after `client.shutdown()`, or after an exit with
   * code 0, 2 or 3 (see {@link shouldRestart}). Defaults to `false`.
   */
  readonly restart?: boolean | ReconnectOptions;
}

/** A running, supervised sidecar and its client. @internal */
export interface Supervised<Tasks, Handle> {
  readonly client: TaskmillClient<Tasks>;
  /** The current process (a new one after each restart). */
  readonly current: Handle;
  readonly ready: SidecarReady;
  stop(options?: { readonly timeoutMs?: number }): Promise<SidecarExit>;
}

/** Spawns through `launch`, connects, and supervises. @internal */
export async function superviseSidecar<Tasks = AnyTasks, Handle = unknown>(
  launch: Launch<Handle>,
  options: SuperviseOptions & { readonly decoder?: JsonLinesDecoderOptions },
): Promise<Supervised<Tasks, Handle>> {
  let current: { process: LaunchedProcess<Handle>; exited: Promise<SidecarExit> } | null = null;
  const connector = processConnector(launch, { ...options, onLaunch: (process, exited) => (current = { process, exited }) });
  const restart = options.restart ?? false;
  const reconnect: false | ReconnectOptions =
    restart === false ? false : { ...(restart === true ? {} : restart), shouldRetry: restart === true || restart.shouldRetry === undefined ? shouldRestart : restart.shouldRetry };
  const client = new TaskmillClient<Tasks>({ ...options, connector, reconnect });
  // The ready line of the latest process that got that far: during a restart, the previous one's.
  let lastReady: SidecarReady | null = null;
  client.onConnection((event) => {
    if (event.type === "open" && event.ready !== null) lastReady = event.ready;
  });
  await client.connect();
  const now = (): { process: LaunchedProcess<Handle>; exited: Promise<SidecarExit> } => {
    if (current === null) throw TaskmillError.client("disconnected", "no sidecar process");
    return current;
  };
  return {
    client,
    get current() {
      return now().process.handle;
    },
    get ready() {
      const ready = client.ready ?? lastReady;
      if (ready === null) throw TaskmillError.client("disconnected", "no sidecar.ready yet");
      return ready;
    },
    async stop(stopOptions = {}) {
      const { process, exited } = now();
      await client.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), stopOptions.timeoutMs ?? 15_000)));
      const late = await Promise.race([exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (!late) return exited;
      await process.kill();
      const unknown = new Promise<SidecarExit>((resolve) => (timer = setTimeout(() => resolve({ code: null, signal: null }), 5000)));
      const exit = await Promise.race([exited, unknown]);
      clearTimeout(timer);
      return exit;
    },
  };
}

/** Checks the shape of a `sidecar.ready` notification and returns its params. */
export function parseReady(message: unknown): SidecarReady | undefined {
  if (!isRecord(message) || message["method"] !== "sidecar.ready" || "id" in message) return undefined;
  const params = message["params"];
  if (!isRecord(params) || typeof params["protocol"] !== "number") return undefined;
  return params as unknown as SidecarReady;
}

/**
 * A sink that holds everything back until the sidecar's first line,
 * `sidecar.ready`, has arrived, then forwards to `target`.
 *
 * @internal
 */
export class ReadyGate implements TransportSink {
  readonly ready: Promise<SidecarReady>;
  #resolve!: (ready: SidecarReady) => void;
  #reject!: (error: Error) => void;
  #target: TransportSink;
  #open = false;
  #settled = false;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #describe: () => string;

  constructor(target: TransportSink, timeoutMs: number, describe: () => string = () => "") {
    this.#target = target;
    this.#describe = describe;
    this.ready = new Promise<SidecarReady>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Observed here so an early failure is never reported as unhandled.
    this.ready.catch(() => undefined);
    this.#timer = setTimeout(() => {
      this.fail(TaskmillError.client("connect_failed", `no sidecar.ready line within ${timeoutMs} ms${this.#describe()}`));
    }, timeoutMs);
  }

  message(message: unknown): void {
    if (this.#open) {
      this.#target.message(message);
      return;
    }
    if (this.#settled) return;
    const ready = parseReady(message);
    if (ready === undefined) {
      this.#target.protocolError(new Error(`expected sidecar.ready as the first message, got ${preview(message)}`));
      return;
    }
    if (ready.protocol !== 1) {
      this.fail(TaskmillError.client("protocol_error", `the sidecar speaks protocol ${ready.protocol}, this client speaks 1`));
      return;
    }
    this.#settle();
    this.#open = true;
    this.#resolve(ready);
  }

  protocolError(error: Error): void {
    this.#target.protocolError(error);
  }

  close(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#open) {
      this.#target.close(error);
    } else {
      this.fail(
        TaskmillError.client("connect_failed", `the sidecar exited before its ready line${error ? `: ${error.message}` : ""}${this.#describe()}`, {
          cause: error,
        }),
      );
    }
  }

  /**
   * Waits for `ready`, failing it when `signal` aborts; on any failure
   * stops the process with `kill` before rethrowing.
   */
  async wait(signal: AbortSignal, kill: () => unknown): Promise<SidecarReady> {
    const onAbort = (): void => this.fail(TaskmillError.client("closed", "connect aborted", { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await this.ready;
    } catch (error) {
      await kill();
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Rejects `ready` (before it resolved); later messages are dropped. */
  fail(error: Error): void {
    if (this.#settled) return;
    this.#settle();
    this.#reject(error);
  }

  #settle(): void {
    this.#settled = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
