/**
 * Node adapter (`taskmill-bridge/node`): spawn the sidecar with
 * `child_process`, read its `sidecar.ready` line, and talk JSON lines over its
 * stdin/stdout. For Electron's main process and Node tools.
 *
 * Closing the client closes the sidecar's stdin, which the sidecar takes as
 * "the parent is gone" and shuts down gracefully.
 *
 * @packageDocumentation
 */

import { spawn, type ChildProcess } from "node:child_process";
import { TaskmillClient, type ClientOptions, type ReconnectOptions } from "./client.js";
import { TaskmillError } from "./errors.js";
import { ReadyGate, createLineTransport } from "./lines.js";
import type { Connector } from "./transport.js";
import type { SidecarReady } from "./types.js";

export interface SidecarProcessOptions {
  /** The sidecar executable (a frozen binary, or a Python interpreter with `args: ["-m", "taskmill", ...]`). */
  readonly command: string;
  /** Arguments, e.g. `["--stdio", "--db", path]`. */
  readonly args?: readonly string[];
  readonly cwd?: string;
  /**
   * Environment, merged over `process.env` and over the defaults
   * `PYTHONUNBUFFERED=1`, `PYTHONIOENCODING=utf-8`. Pass the WebSocket token
   * here as `TASKMILL_TOKEN` rather than in `args` (argv is world-readable).
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** How long to wait for the `sidecar.ready` line. Defaults to 30000 (frozen builds can start slowly). */
  readonly readyTimeoutMs?: number;
  /**
   * What to do with the sidecar's stderr (its logs): `"inherit"` passes it
   * through, `"ignore"` drops it, a function gets each chunk. Either way the
   * last few KiB are kept for error messages. Defaults to `"ignore"`.
   */
  readonly stderr?: "inherit" | "ignore" | ((chunk: string) => void);
  /** Defaults to 4 MiB, the sidecar's default limit. */
  readonly maxMessageBytes?: number;
  /** Called with every process spawned (the first one and each restart). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

const STDERR_TAIL = 4096;

/** A {@link Connector} that spawns the sidecar process on every (re)connect. */
export function childProcessConnector(options: SidecarProcessOptions): Connector {
  return async (sink, signal) => {
    if (signal.aborted) throw TaskmillError.client("closed", "connect aborted", { cause: signal.reason });
    let stderrTail = "";
    const describe = (): string => (stderrTail.trim().length > 0 ? `; stderr: ${stderrTail.trim().slice(-1000)}` : "");
    const gate = new ReadyGate(sink, options.readyTimeoutMs ?? 30_000, describe);
    const child = spawn(options.command, [...(options.args ?? [])], {
      cwd: options.cwd,
      env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
      windowsHide: true,
    });
    options.onSpawn?.(child);
    const stdin = child.stdin;
    const stdout = child.stdout;
    const stderr = child.stderr;
    if (stdin === null || stdout === null || stderr === null) {
      child.kill("SIGKILL");
      throw TaskmillError.client("connect_failed", "the sidecar was spawned without pipes");
    }
    const lines = createLineTransport(gate, {
      write: (text) => {
        stdin.write(text);
      },
      end: () => {
        stdin.end();
      },
      ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
    });
    stdout.on("data", (chunk: Buffer) => lines.feed(chunk));
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL);
      const mode = options.stderr ?? "ignore";
      if (mode === "inherit") process.stderr.write(chunk);
      else if (typeof mode === "function") mode(chunk);
    });
    // EPIPE after the sidecar exited: the exit handler reports the close.
    stdin.on("error", () => undefined);

    let exitTimer: ReturnType<typeof setTimeout> | undefined;
    const exited = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (exitTimer !== undefined) clearTimeout(exitTimer);
      lines.closed(new Error(sig !== null ? `the sidecar was killed by ${sig}` : `the sidecar exited with code ${String(code)}`));
    };
    child.on("error", (error) => lines.closed(error));
    // "close" fires once stdout is drained; "exit" alone (a grandchild holding the pipe) falls back after a moment.
    child.on("close", exited);
    child.on("exit", (code, sig) => {
      exitTimer = setTimeout(() => exited(code, sig), 1000);
    });

    const ready = await gate.wait(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    return { transport: lines.transport, hello: null, ready };
  };
}

export interface SpawnSidecarOptions extends SidecarProcessOptions, Omit<ClientOptions, "connector" | "reconnect"> {
  /**
   * Respawn the sidecar (same command, same database) when it dies, with
   * backoff; the client then re-subscribes, re-registers workers and emits
   * `resync`. Defaults to `false`.
   */
  readonly restart?: boolean | ReconnectOptions;
}

/** A running sidecar and the client connected to it over stdio. */
export interface SpawnedSidecar {
  readonly client: TaskmillClient;
  /** The current process (a new one after each restart). */
  readonly process: ChildProcess;
  /** The `sidecar.ready` params of the current process: pid, db_path, WebSocket URL and token. */
  readonly ready: SidecarReady;
  /**
   * Closes the client (stdin EOF: the sidecar drains and exits), waits for
   * the process to exit, and kills it after `timeoutMs` (default 15000).
   */
  stop(options?: { readonly timeoutMs?: number }): Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
}

/**
 * Spawns the sidecar, waits for its ready line and returns a connected client.
 *
 * @example
 * ```ts
 * const sidecar = await spawnSidecar({ command: sidecarPath, args: ["--stdio", "--ws"] });
 * const { url, token } = sidecar.ready.transports.ws!; // hand these to the renderer
 * await sidecar.client.submit({ task_type: "demo::echo", payload: { hi: 1 } });
 * ```
 */
export async function spawnSidecar(options: SpawnSidecarOptions): Promise<SpawnedSidecar> {
  let current: ChildProcess | null = null;
  const connector = childProcessConnector({
    ...options,
    onSpawn: (child) => {
      current = child;
      options.onSpawn?.(child);
    },
  });
  const client = new TaskmillClient({ ...options, connector, reconnect: options.restart ?? false });
  await client.connect();
  const processOf = (): ChildProcess => {
    if (current === null) throw new Error("no sidecar process");
    return current;
  };
  return {
    client,
    get process() {
      return processOf();
    },
    get ready() {
      const ready = client.ready;
      if (ready === null) throw new Error("no sidecar.ready yet");
      return ready;
    },
    async stop(stopOptions = {}) {
      const child = processOf();
      const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
        else child.once("exit", (code, signal) => resolve({ code, signal }));
      });
      await client.close();
      const timeoutMs = stopOptions.timeoutMs ?? 15_000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, timeoutMs);
      });
      await Promise.race([exit, killed]);
      clearTimeout(timer);
      return exit;
    },
  };
}
