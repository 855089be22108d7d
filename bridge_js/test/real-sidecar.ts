/**
 * Helpers for the integration tests against the REAL Python sidecar:
 * `$TASKMILL_PYTHON -m taskmill --stdio --ws --demo --db <tmp>`.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "vitest";
import WebSocket from "ws";
import { connectWebSocket, type ConnectWebSocketOptions, type TaskmillClient } from "../src/index.js";
import { spawnSidecar, type SpawnSidecarOptions, type SpawnedSidecar } from "../src/node.js";

export const PYTHON = process.env["TASKMILL_PYTHON"];
const SKIP_MESSAGE = "integration tests skipped: set TASKMILL_PYTHON to a python that can run `python -m taskmill --stdio --demo --db <tmp>`";

/** Registers the suite, or a skipped placeholder with a message when TASKMILL_PYTHON is unset. */
export function describeReal(name: string, body: (python: string) => void): void {
  if (PYTHON === undefined || PYTHON === "") {
    console.warn(SKIP_MESSAGE);
    describe(name, () => it.skip(SKIP_MESSAGE, () => undefined));
  } else {
    describe(name, () => body(PYTHON));
  }
}

export const unique = (): string => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts sidecars in temp folders and stops them (and their clients) at the end. */
export class Sidecars {
  readonly #dirs: string[] = [];
  readonly #sidecars: SpawnedSidecar[] = [];
  readonly #clients: TaskmillClient[] = [];
  readonly #python: string;

  constructor(python: string) {
    this.#python = python;
  }

  async spawn(options: Partial<SpawnSidecarOptions> & { extraArgs?: string[] } = {}): Promise<SpawnedSidecar> {
    const dir = mkdtempSync(join(tmpdir(), "taskmill-bridge-it-"));
    this.#dirs.push(dir);
    const { extraArgs = [], ...rest } = options;
    const sidecar = await spawnSidecar({
      command: this.#python,
      args: ["-m", "taskmill", "--stdio", "--ws", "--demo", "--db", join(dir, "tasks.db"), "--max-concurrency", "4", "--drain-timeout-ms", "1000", ...extraArgs],
      stderr: (chunk) => {
        if (process.env["TASKMILL_IT_VERBOSE"] !== undefined) process.stderr.write(chunk);
      },
      readyTimeoutMs: 30_000,
      ...rest,
    });
    this.#sidecars.push(sidecar);
    return sidecar;
  }

  /**
   * A WebSocket client that asks the sidecar for its current URL and token on
   * every (re)connect, as the README's Electron renderer does. During a
   * restart this can still be the previous process's token (the new process
   * listens before its ready line is read); the client then asks again.
   */
  async connect(sidecar: SpawnedSidecar, options: Partial<ConnectWebSocketOptions> = {}): Promise<TaskmillClient> {
    const client = await connectWebSocket({
      endpoint: () => {
        const ws = sidecar.ready.transports.ws;
        if (ws === null || ws.token === null) throw new Error("the ready line has no WebSocket URL/token");
        return { url: ws.url, token: ws.token };
      },
      WebSocket,
      clientName: "bridge-js-it/0",
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
      ...options,
    });
    this.#clients.push(client);
    return client;
  }

  track(client: TaskmillClient): TaskmillClient {
    this.#clients.push(client);
    return client;
  }

  async stopAll(): Promise<void> {
    for (const client of this.#clients.splice(0)) await client.close();
    for (const sidecar of this.#sidecars.splice(0)) {
      await sidecar.stop({ timeoutMs: 10_000 }).catch(() => undefined);
      if (sidecar.process.exitCode === null && sidecar.process.signalCode === null) sidecar.process.kill("SIGKILL");
    }
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
