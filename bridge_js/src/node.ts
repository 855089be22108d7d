/**
 * Node adapter (`taskmill-bridge/node`): spawn the sidecar with
 * `child_process`, read its `sidecar.ready` line, and talk JSON lines over its
 * stdin/stdout. For Electron's main process and Node tools. Restarts and
 * `stop()` are the shared supervisor's (`supervisor.ts`).
 *
 * Closing the client closes the sidecar's stdin, which the sidecar takes as
 * "the parent is gone" and shuts down gracefully.
 *
 * @packageDocumentation
 */

import { spawn, type ChildProcess } from "node:child_process";
import type { TaskmillClient } from "./client.js";
import { TaskmillError } from "./errors.js";
import { processConnector, superviseSidecar, type Launch, type ProcessOptions, type SidecarExit, type SuperviseOptions } from "./supervisor.js";
import type { AnyTasks } from "./tasks.js";
import type { Connector } from "./transport.js";
import type { SidecarReady } from "./types.js";

export { shouldRestart } from "./supervisor.js";
export type { SidecarExit } from "./supervisor.js";

export interface SidecarProcessOptions extends ProcessOptions {
  /** The sidecar executable (a frozen binary `taskmill-sidecar-<triple>`, or a Python interpreter with `args: ["-m", "taskmill", ...]`). */
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
  /**
   * What to do with the sidecar's stderr (its logs): `"inherit"` passes it
   * through, `"ignore"` drops it, a function gets each chunk. Either way the
   * last few KiB are kept for error messages. Defaults to `"ignore"`.
   */
  readonly stderr?: "inherit" | "ignore" | ((chunk: string) => void);
  /** Called with every process spawned (the first one and each restart). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

function launcher(options: SidecarProcessOptions): Launch<ChildProcess> {
  return async (output) => {
    const child = spawn(options.command, [...(options.args ?? [])], {
      cwd: options.cwd,
      env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
      windowsHide: true,
    });
    const { stdin, stdout, stderr } = child;
    if (stdin === null || stdout === null || stderr === null) {
      child.kill("SIGKILL");
      throw TaskmillError.client("connect_failed", "the sidecar was spawned without pipes");
    }
    stdout.on("data", (chunk: Buffer) => output.stdout(chunk));
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk: string) => {
      output.stderr(chunk);
      const mode = options.stderr ?? "ignore";
      if (mode === "inherit") process.stderr.write(chunk);
      else if (typeof mode === "function") mode(chunk);
    });
    // EPIPE after the sidecar exited: the exit handler reports the close.
    stdin.on("error", () => undefined);
    let exitTimer: ReturnType<typeof setTimeout> | undefined;
    const exited = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (exitTimer !== undefined) clearTimeout(exitTimer);
      output.exit({ code, signal });
    };
    child.on("error", (error) => output.error(error));
    // "close" fires once stdout is drained; "exit" alone (a grandchild holding the pipe) falls back after a moment.
    child.on("close", exited);
    child.on("exit", (code, signal) => {
      exitTimer = setTimeout(() => exited(code, signal), 1000);
    });
    options.onSpawn?.(child);
    return {
      handle: child,
      write: (text) => {
        stdin.write(text);
      },
      end: () => {
        stdin.end();
      },
      kill: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      },
    };
  };
}

/** A {@link Connector} that spawns the sidecar process on every (re)connect. */
export function childProcessConnector(options: SidecarProcessOptions): Connector {
  return processConnector(launcher(options), options);
}

export interface SpawnSidecarOptions extends SidecarProcessOptions, SuperviseOptions {}

/** A running sidecar and the client connected to it over stdio. */
export interface SpawnedSidecar<Tasks = AnyTasks> {
  readonly client: TaskmillClient<Tasks>;
  /** The current process (a new one after each restart). */
  readonly process: ChildProcess;
  /**
   * The `sidecar.ready` params of the current process: pid, db_path, WebSocket
   * URL and token. While a restarted process is starting, the previous one's.
   */
  readonly ready: SidecarReady;
  /**
   * Closes the client (stdin EOF: the sidecar drains and exits), waits for
   * the process to exit, and kills it after `timeoutMs` (default 15000).
   */
  stop(options?: { readonly timeoutMs?: number }): Promise<SidecarExit>;
}

/**
 * Spawns the sidecar, waits for its ready line and returns a connected client.
 * Rejects with a `TaskmillError` (kind `connect_failed`, with the stderr tail)
 * when it cannot start.
 *
 * @example
 * ```ts
 * const sidecar = await spawnSidecar({ command: sidecarPath, args: ["--stdio", "--ws"] });
 * const { url, token } = sidecar.ready.transports.ws!; // hand these to the renderer
 * await sidecar.client.submit({ task_type: "demo::echo", payload: { hi: 1 } });
 * ```
 */
export async function spawnSidecar<Tasks = AnyTasks>(options: SpawnSidecarOptions): Promise<SpawnedSidecar<Tasks>> {
  const supervised = await superviseSidecar<Tasks, ChildProcess>(launcher(options), options);
  return {
    client: supervised.client,
    get process() {
      return supervised.current;
    },
    get ready() {
      return supervised.ready;
    },
    stop: (stopOptions) => supervised.stop(stopOptions),
  };
}
