/**
 * Tauri adapter (`taskmill-bridge/tauri`): spawn the sidecar with the shell
 * plugin's `Command.sidecar` and talk JSON lines over its stdin/stdout.
 *
 * `@tauri-apps/plugin-shell` is an optional peer dependency: it is imported
 * here for types only. Pass its `Command` class as the `Command` option
 * (recommended: your bundler then sees a plain import); without it the
 * adapter imports the plugin dynamically.
 *
 * The plugin emits one `data` event per line, splitting on `\n` or `\r`, so a
 * `\r\n` line can arrive as a line and an empty fragment; with
 * `encoding: "raw"` chunks are arbitrary. The decoder copes with both.
 *
 * Capabilities needed: `shell:allow-spawn` for the sidecar (with `"sidecar":
 * true` and its args), `shell:allow-stdin-write` and `shell:allow-kill`.
 *
 * @packageDocumentation
 */

import type { Child, Command, SpawnOptions } from "@tauri-apps/plugin-shell";
import type { TaskmillClient } from "./client.js";
import { TaskmillError } from "./errors.js";
import { encodeJsonLine } from "./lines.js";
import { processConnector, superviseSidecar, type Launch, type ProcessOptions, type SidecarExit, type SuperviseOptions } from "./supervisor.js";
import type { AnyTasks } from "./tasks.js";
import type { Connector } from "./transport.js";
import type { SidecarReady } from "./types.js";

export type { SidecarExit } from "./supervisor.js";

/** The part of the plugin's `Command` class the adapter uses (its static `sidecar`). */
export interface TauriCommandClass {
  sidecar(program: string, args?: string | string[], options?: SpawnOptions): Command<string> | Command<Uint8Array>;
}

export interface TauriSidecarOptions extends ProcessOptions {
  /** The exact `bundle.externalBin` entry, e.g. `"binaries/taskmill-sidecar"`. */
  readonly program: string;
  /** Arguments; must be allowed by the `shell:allow-spawn` capability. */
  readonly args?: readonly string[];
  readonly cwd?: string;
  /** Environment; pass the WebSocket token as `TASKMILL_TOKEN` here, not in `args`. */
  readonly env?: Readonly<Record<string, string>>;
  /** `"raw"` for byte chunks; by default the plugin decodes UTF-8 lines. */
  readonly encoding?: string;
  /** The plugin's `Command` class. Defaults to a dynamic `import("@tauri-apps/plugin-shell")`. */
  readonly Command?: TauriCommandClass;
  /** Gets each stderr line (the sidecar's logs). */
  readonly onStderr?: (line: string) => void;
  /** Called with each spawned child (the first one and each restart). */
  readonly onSpawn?: (child: Child) => void;
  /** Called when a spawned child exits. */
  readonly onExit?: (payload: { readonly code: number | null; readonly signal: number | null }) => void;
}

async function loadCommand(options: TauriSidecarOptions): Promise<TauriCommandClass> {
  if (options.Command !== undefined) return options.Command;
  try {
    const shell = await import("@tauri-apps/plugin-shell");
    return shell.Command;
  } catch (error) {
    throw TaskmillError.client("connect_failed", "@tauri-apps/plugin-shell is not installed: add it, or pass its Command class as the Command option", {
      cause: error,
    });
  }
}

const decoder = new TextDecoder();

function launcher(options: TauriSidecarOptions): Launch<Child> {
  return async (output) => {
    const CommandClass = await loadCommand(options);
    const spawnOptions: SpawnOptions = {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: { ...options.env } }),
      ...(options.encoding === undefined ? {} : { encoding: options.encoding }),
    };
    const command = CommandClass.sidecar(options.program, [...(options.args ?? [])], spawnOptions) as Command<string | Uint8Array>;
    let child: Child | null = null;
    command.stdout.on("data", (data: string | Uint8Array) => output.stdout(data));
    command.stderr.on("data", (data: string | Uint8Array) => {
      const text = typeof data === "string" ? data : decoder.decode(data);
      output.stderr(`${text}\n`);
      options.onStderr?.(text);
    });
    command.on("close", (payload) => {
      options.onExit?.(payload);
      output.exit(payload);
    });
    command.on("error", (error) => {
      // A stdout line that is not UTF-8 also arrives here; report it without closing.
      if (child === null) output.error(new Error(error));
    });
    try {
      child = await command.spawn();
    } catch (error) {
      throw TaskmillError.client("connect_failed", `could not spawn ${options.program}: ${String(error)}`, { cause: error });
    }
    options.onSpawn?.(child);
    const spawned = child;
    return {
      handle: spawned,
      write: (text) => spawned.write(text),
      // There is no stdin EOF in the plugin: ask the sidecar to shut down instead.
      end: () => {
        spawned.write(encodeJsonLine({ jsonrpc: "2.0", id: "bridge-close", method: "sidecar.shutdown", params: { mode: "graceful" } })).catch(() => undefined);
      },
      kill: () => spawned.kill().catch(() => undefined),
    };
  };
}

/** A {@link Connector} that spawns the sidecar through the Tauri shell plugin on every (re)connect. */
export function tauriSidecarConnector(options: TauriSidecarOptions): Connector {
  return processConnector(launcher(options), { ...options, decoder: { mode: "lines" } });
}

export interface SpawnTauriSidecarOptions extends TauriSidecarOptions, SuperviseOptions {}

/** A sidecar spawned through the Tauri shell plugin and its connected client. */
export interface TauriSidecar<Tasks = AnyTasks> {
  readonly client: TaskmillClient<Tasks>;
  /** The current child (a new one after each restart). */
  readonly child: Child;
  /** The `sidecar.ready` params: pid, db_path, WebSocket URL and token (while a restart starts, the previous process's). */
  readonly ready: SidecarReady;
  /**
   * Closes the client, which asks the sidecar to shut down gracefully
   * (`sidecar.shutdown` on stdin: the plugin cannot close stdin), waits for
   * it to exit and kills it after `timeoutMs` (default 15000).
   */
  stop(options?: { readonly timeoutMs?: number }): Promise<SidecarExit>;
}

/**
 * Spawns the sidecar with `Command.sidecar`, waits for its ready line and
 * returns a connected client. Rejects with a `TaskmillError` (kind
 * `connect_failed`) when it cannot start.
 */
export async function spawnTauriSidecar<Tasks = AnyTasks>(options: SpawnTauriSidecarOptions): Promise<TauriSidecar<Tasks>> {
  const supervised = await superviseSidecar<Tasks, Child>(launcher(options), { ...options, decoder: { mode: "lines" } });
  return {
    client: supervised.client,
    get child() {
      return supervised.current;
    },
    get ready() {
      return supervised.ready;
    },
    stop: (stopOptions) => supervised.stop(stopOptions),
  };
}
