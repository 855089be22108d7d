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
import { TaskmillClient, type ClientOptions, type ReconnectOptions } from "./client.js";
import { TaskmillError } from "./errors.js";
import { ReadyGate, createLineTransport, encodeJsonLine } from "./lines.js";
import type { Connector } from "./transport.js";
import type { SidecarReady } from "./types.js";

/** The part of the plugin's `Command` class the adapter uses (its static `sidecar`). */
export interface TauriCommandClass {
  sidecar(program: string, args?: string | string[], options?: SpawnOptions): Command<string> | Command<Uint8Array>;
}

export interface TauriSidecarOptions {
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
  /** Defaults to 30000. */
  readonly readyTimeoutMs?: number;
  /** Gets each stderr line (the sidecar's logs). */
  readonly onStderr?: (line: string) => void;
  /** Called with each spawned child (the first one and each restart). */
  readonly onSpawn?: (child: Child) => void;
  /** Called when a spawned child exits. */
  readonly onExit?: (payload: { readonly code: number | null; readonly signal: number | null }) => void;
  /** Defaults to 4 MiB. */
  readonly maxMessageBytes?: number;
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

/** A {@link Connector} that spawns the sidecar through the Tauri shell plugin on every (re)connect. */
export function tauriSidecarConnector(options: TauriSidecarOptions): Connector {
  return async (sink, signal) => {
    if (signal.aborted) throw TaskmillError.client("closed", "connect aborted", { cause: signal.reason });
    const CommandClass = await loadCommand(options);
    let stderrTail = "";
    const describe = (): string => (stderrTail.trim().length > 0 ? `; stderr: ${stderrTail.trim().slice(-1000)}` : "");
    const gate = new ReadyGate(sink, options.readyTimeoutMs ?? 30_000, describe);
    const spawnOptions: SpawnOptions = {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: { ...options.env } }),
      ...(options.encoding === undefined ? {} : { encoding: options.encoding }),
    };
    const command = CommandClass.sidecar(options.program, [...(options.args ?? [])], spawnOptions) as Command<string | Uint8Array>;
    let child: Child | null = null;
    const lines = createLineTransport(gate, {
      write: (text) => {
        if (child === null) throw new Error("the sidecar is not running");
        return child.write(text);
      },
      // There is no stdin EOF in the plugin: ask the sidecar to shut down instead.
      end: () => {
        if (child === null) return;
        child.write(encodeJsonLine({ jsonrpc: "2.0", id: "bridge-close", method: "sidecar.shutdown", params: { mode: "graceful" } })).catch(() => undefined);
      },
      decoder: { mode: "lines" },
      ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
    });
    command.stdout.on("data", (data: string | Uint8Array) => lines.feed(data));
    command.stderr.on("data", (data: string | Uint8Array) => {
      const text = typeof data === "string" ? data : decoder.decode(data);
      stderrTail = (stderrTail + text + "\n").slice(-4096);
      options.onStderr?.(text);
    });
    command.on("close", (payload) => {
      options.onExit?.(payload);
      lines.closed(new Error(payload.signal !== null ? `the sidecar was killed by signal ${payload.signal}` : `the sidecar exited with code ${String(payload.code)}`));
    });
    command.on("error", (error) => {
      // A stdout line that is not UTF-8 also arrives here; report it without closing.
      if (child === null) lines.closed(new Error(error));
      else sink.protocolError(new Error(`sidecar: ${error}`));
    });
    try {
      child = await command.spawn();
    } catch (error) {
      gate.fail(TaskmillError.client("connect_failed", `could not spawn ${options.program}: ${String(error)}`, { cause: error }));
      throw await gate.ready.then(
        () => new Error("unreachable"),
        (e: unknown) => e,
      );
    }
    options.onSpawn?.(child);
    const ready = await gate.wait(signal, () => child.kill().catch(() => undefined));
    return { transport: lines.transport, hello: null, ready };
  };
}

export interface SpawnTauriSidecarOptions extends TauriSidecarOptions, Omit<ClientOptions, "connector" | "reconnect"> {
  /** Respawn the sidecar when it dies (the client then re-subscribes and emits `resync`). Defaults to `false`. */
  readonly restart?: boolean | ReconnectOptions;
}

/** A sidecar spawned through the Tauri shell plugin and its connected client. */
export interface TauriSidecar {
  readonly client: TaskmillClient;
  /** The current child (a new one after each restart). */
  readonly child: Child;
  /** The `sidecar.ready` params: pid, db_path, WebSocket URL and token. */
  readonly ready: SidecarReady;
  /**
   * Closes the client, which asks the sidecar to shut down gracefully
   * (`sidecar.shutdown` on stdin: the plugin cannot close stdin), waits for
   * it to exit and kills it after `timeoutMs` (default 15000).
   */
  stop(options?: { readonly timeoutMs?: number }): Promise<void>;
}

/**
 * Spawns the sidecar with `Command.sidecar`, waits for its ready line and
 * returns a connected client.
 */
export async function spawnTauriSidecar(options: SpawnTauriSidecarOptions): Promise<TauriSidecar> {
  let current: { child: Child; exited: Promise<void>; markExited: () => void } | null = null;
  const connector = tauriSidecarConnector({
    ...options,
    onSpawn: (child) => {
      let markExited!: () => void;
      const exited = new Promise<void>((resolve) => (markExited = resolve));
      current = { child, exited, markExited };
      options.onSpawn?.(child);
    },
    onExit: (payload) => {
      current?.markExited();
      options.onExit?.(payload);
    },
  });
  const client = new TaskmillClient({ ...options, connector, reconnect: options.restart ?? false });
  await client.connect();
  const currentOf = (): { child: Child; exited: Promise<void> } => {
    if (current === null) throw new Error("no sidecar process");
    return current;
  };
  return {
    client,
    get child() {
      return currentOf().child;
    },
    get ready() {
      const ready = client.ready;
      if (ready === null) throw new Error("no sidecar.ready yet");
      return ready;
    },
    async stop(stopOptions = {}) {
      const { child, exited } = currentOf();
      await client.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), stopOptions.timeoutMs ?? 15_000)));
      const killNeeded = await Promise.race([exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (killNeeded) await child.kill().catch(() => undefined);
    },
  };
}
