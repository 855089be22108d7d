// @ts-check
/**
 * The Electron main process's side of the sidecar, with no Electron imports,
 * so it also runs under plain Node: `node sidecar.mjs` spawns a sidecar, runs
 * a demo task through it and exits (make test-examples does exactly that).
 */

import { readdirSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { spawnSidecar } from "taskmill-bridge/node";

/**
 * The command that starts the sidecar.
 * - Packaged: electron-builder's extraResources copied the onedir build to
 *   `<resources>/taskmill-sidecar/` (the executable keeps its target-triple suffix).
 * - Development: `$TASKMILL_SIDECAR` (a frozen binary), else `python3 -m taskmill`
 *   (`$TASKMILL_PYTHON` picks the interpreter).
 * @param {{ packaged: boolean, resourcesPath?: string }} where
 * @returns {{ command: string, args: string[] }}
 */
export function sidecarCommand({ packaged, resourcesPath }) {
  if (packaged && resourcesPath !== undefined) {
    const folder = path.join(resourcesPath, "taskmill-sidecar");
    const exe = readdirSync(folder).find((name) => name.startsWith("taskmill-sidecar-"));
    if (exe === undefined) throw new Error(`no taskmill-sidecar-* executable in ${folder}`);
    return { command: path.join(folder, exe), args: [] };
  }
  if (process.env["TASKMILL_SIDECAR"]) return { command: process.env["TASKMILL_SIDECAR"], args: [] };
  return { command: process.env["TASKMILL_PYTHON"] ?? "python3", args: ["-m", "taskmill"] };
}

/**
 * Spawns the sidecar over stdio and returns the connected client.
 * It gets this process's pid as --parent-pid: if the app dies without closing
 * the sidecar's stdin (or something else still holds it), the watchdog ends it.
 * @param {{ packaged: boolean, resourcesPath?: string, dbPath: string }} options
 */
export function startSidecar({ packaged, resourcesPath, dbPath }) {
  const { command, args } = sidecarCommand(resourcesPath === undefined ? { packaged } : { packaged, resourcesPath });
  return spawnSidecar({
    command,
    // A task still running at shutdown gets 2 s to finish, then goes back to pending.
    args: [...args, "--stdio", "--demo", "--db", dbPath, "--drain-timeout-ms", "2000", "--parent-pid", String(process.pid)],
    clientName: "taskmill-electron-example/0.1.0",
    stderr: "inherit", // the sidecar's logs; stdout is the protocol
    restart: { maxAttempts: 5 }, // respawn on a crash; the client then emits "resync"
  });
}

/** `node sidecar.mjs`: one demo task end to end, then a clean stop. */
async function selfCheck() {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(path.join(tmpdir(), "taskmill-electron-"));
  try {
    const sidecar = await startSidecar({ packaged: false, dbPath: path.join(dir, "tasks.db") });
    const { client, ready } = sidecar;
    console.log(`sidecar ${ready.version} ready (pid ${ready.pid})`);
    const { id } = await client.submit({ task_type: "demo::echo", payload: { from: "electron main" } });
    const record = await client.waitFor(id, { timeoutMs: 10_000 });
    console.log(`task ${id} ${record.status}: ${JSON.stringify(record.result)}`);
    const exit = await sidecar.stop({ timeoutMs: 10_000 });
    console.log(`sidecar exited with code ${exit.code}`);
    if (record.status !== "completed" || exit.code !== 0) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await selfCheck();
}
